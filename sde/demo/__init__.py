"""The small demo dataset shipped with sde (`sde demo`).

Real speech synthesised with espeak-ng, with references and two hypothesis fields (`pred_text`,
`pred_text_conformer`). Audio paths in the manifest are relative to its folder, so it works from
wherever the package is installed. Regenerate with `python scripts/make_demo.py`.
"""

from pathlib import Path

DEMO_DIR: Path = Path(__file__).resolve().parent
DEMO_MANIFEST: Path = DEMO_DIR / "manifest.json"

__all__ = ["DEMO_DIR", "DEMO_MANIFEST"]
