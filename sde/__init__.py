"""sde — the speech data explorer."""

__version__ = "0.1.0"
