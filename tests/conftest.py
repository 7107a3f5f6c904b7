"""Fixtures shared by the whole suite (module-specific fixtures live in their own test files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import pytest


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (dicts, or raw strings for deliberately bad lines) as a JSONL manifest."""

    def write(rows: Iterable[dict | str], name: str = "manifest.json") -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
                f.write("\n")
        return path

    return write
