"""A built dataset as a server reads it back from its cache: text columns as compressed files, or
as labels where a value repeats often enough (the rule relaxed here, as a big dataset meets it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sde import compressed_columns
from sde.cache import DatasetCache
from sde.dataset import Dataset


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
