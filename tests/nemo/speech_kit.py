"""Manifests over the espeak-ng speech of tests/conftest.py (`audio_dir`) for the NeMo tests."""

from __future__ import annotations

import json
import os
from pathlib import Path


def speech_rows(audio_dir: tuple[Path, dict[str, float]], folder: Path) -> list[dict]:
    """Whole files, two offset segments of one longer file, and last a path relative to ``folder``
    (where the manifest goes) under NeMo's older key ``audio_filename``."""
    d, dur = audio_dir
    return [
        {"audio_filepath": str(d / "one.wav"), "duration": round(dur["one.wav"], 3), "text": "hello world"},
        {"audio_filepath": str(d / "long.wav"), "offset": 0.4, "duration": 1.1, "text": "quick brown fox"},
        {"audio_filepath": str(d / "two.wav"), "duration": round(dur["two.wav"], 3), "text": "speech data explorer"},
        {"audio_filepath": str(d / "long.wav"), "offset": 2.0, "duration": 1.6, "text": "over the lazy dog"},
        {"audio_filename": os.path.relpath(d / "three.wav", folder), "duration": round(dur["three.wav"], 3),
         "text": "good morning"},
    ]


def write_jsonl(path: Path, rows: list[dict], blank_after: int | None = None) -> Path:
    """``rows`` as JSON Lines; ``blank_after``: a blank line after that many rows (a line number gap)."""
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
