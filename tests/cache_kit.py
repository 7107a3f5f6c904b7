"""A built dataset as a server reads it back from its cache: text columns as compressed files, or
as labels where a value repeats often enough (the rule relaxed here, as a big dataset meets it); and
another sde process holding a cached dataset (sde.cache.in_use)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sde import compressed_columns
from sde.cache import DatasetCache
from sde.dataset import Dataset

ROOT = Path(__file__).resolve().parent.parent


def stored(built: Dataset, folder: Path, *, label_min_rows: int) -> Dataset:
    """``built`` put in a cache in ``folder`` and got back; a text column whose values repeat on at
    least ``label_min_rows`` rows each on average becomes a label column."""
    cache = DatasetCache(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compressed_columns, "LABEL_MIN_ROWS_PER_VALUE", label_min_rows)
        cache.put("key", built)
    got = cache.get("key")
    assert got is not None
    return got


@contextmanager
def entry_held_elsewhere(folder: str | Path, key: str) -> Iterator[None]:
    """Within the block, a separate Python process has read entry ``key`` of the cache in
    ``folder`` (as a server serving it has), and holds it until the block ends."""
    reader = subprocess.Popen([sys.executable, "-c", "import sys; from sde.cache import DatasetCache; "
                               f"c = DatasetCache({str(folder)!r}); assert c.get({key!r}) is not None; "
                               "print('read', flush=True); sys.stdin.read()"],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert reader.stdout.readline().strip() == "read"  # type: ignore[union-attr]
        yield
    finally:
        reader.communicate("", timeout=60)
