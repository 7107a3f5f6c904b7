"""Lengths of audio as people read them, for every message and page that shows one."""

from __future__ import annotations


def duration_text(hours: float) -> str:
    """A length of audio as people say it: "12.3 s" under a minute, "4.5 min" under an hour, else
    "1.25 h" (a count in hours would read "0.00 h" for a selection of half a minute)."""
    seconds = float(hours) * 3600.0
    if seconds != seconds:  # NaN: no duration known
        return "–"
    if seconds < 59.95:
        return "0 s" if seconds <= 0 else f"{seconds:.1f} s"
    if seconds < 3600 - 3:
        return f"{seconds / 60:.1f} min"
    return f"{hours:,.2f} h"
