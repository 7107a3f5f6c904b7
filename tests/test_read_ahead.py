"""sde.cache.read_ahead: a start asks the OS to read its build's files into the page cache, in the
order its first queries need them, within a budget; checked on the page cache itself (mincore)."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sde import compressed_columns as cc
from sde.build.load import load_dataset
from sde.cache import read_ahead as ra
from sde.index_files import SUFFIX
from tests.test_word_index import _budget

needs_page_cache = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="posix_fadvise and mincore: Linux")
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
if _LIBC is not None:
    _LIBC.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]

ROWS = [
    {"audio_filepath": f"audio/a{i}.wav", "duration": 1.0 + i % 7, "text": f"the word{i} of the day",
     "pred_text": f"the word{i} of a day {i % 3}", "speaker": f"s{i % 3}"}  # transcripts compressed, speakers labels
    for i in range(400)
]


def _resident(path: Path) -> int:
    """Bytes of ``path`` in the page cache, as mincore(2) sees them through a mapping of the file
    (the mapping itself reads nothing)."""
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vec = (ctypes.c_ubyte * pages)()
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)
        try:
            if _LIBC.mincore(ctypes.addressof(start), size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            del start  # the mapping cannot close while a pointer into it exists
    return sum(v & 1 for v in vec) * mmap.PAGESIZE


def _evicted(*paths: Path) -> None:
    """Drop the files from the page cache, or skip where the file system keeps them (tmpfs)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        if _resident(path) > 0:
            pytest.skip(f"the file system of {path.parent} keeps its files in memory")


def _file(path: Path, size: int) -> Path:
    path.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


@needs_page_cache
def test_a_file_read_ahead_is_in_the_page_cache_when_it_returns(tmp_path):
    big = _file(tmp_path / "column.val", 3 * ra.CHUNK_BYTES + 12_345)  # windows, and a part of one
    _evicted(big)
    assert ra.read_ahead([str(big)], budget=10**10) == big.stat().st_size
    assert _resident_soon(big) >= big.stat().st_size  # whole pages


def _resident_soon(path: Path, seconds: float = 2.0) -> int:
    """The bytes of ``path`` in the page cache once the reads asked for are done: the wait on each
    window's last page returns while a page before it may still be in flight (seen once in 4,000
    tests: one page of 6,148 missing)."""
    deadline = time.monotonic() + seconds
    while (resident := _resident(path)) < path.stat().st_size and time.monotonic() < deadline:
        time.sleep(0.01)
    return resident


@needs_page_cache
def test_read_ahead_stops_where_the_budget_ends_and_skips_a_missing_file(tmp_path):
    first, second = _file(tmp_path / "first.val", 1_000_000), _file(tmp_path / "second.val", 2_000_000)
    _evicted(first, second)
    missing = str(tmp_path / "gone.val")
    assert ra.read_ahead([missing, str(first), str(second)], budget=2_500_000) == 1_000_000
    assert _resident(first) >= 1_000_000 and _resident(second) == 0


def test_the_default_budget_is_a_share_of_the_memory_available():
    import psutil

    assert ra.read_ahead_budget() == pytest.approx(psutil.virtual_memory().available / ra.AVAILABLE_SHARE, rel=0.2)


def test_without_posix_fadvise_nothing_is_asked(monkeypatch, tmp_path):
    monkeypatch.delattr(os, "posix_fadvise", raising=False)
    assert ra.read_ahead([str(_file(tmp_path / "a.val", 1000))], budget=10**9) == 0


def test_a_stored_dataset_names_its_files_in_the_order_its_first_queries_need_them(monkeypatch, write_manifest,
                                                                                  tmp_path):
    manifest, folder = write_manifest(ROWS), tmp_path / "cache"
    built = load_dataset(manifest, cache_dir=folder)
    assert built.files == ()  # built in this process: its files were just written, nothing to read ahead
    _budget(monkeypatch, 10**9, files=True)  # word indexes written beside their columns
    first = load_dataset(manifest, cache_dir=folder)
    assert first.utterance_query.warm_search(["text", "pred_text"]) == ["text", "pred_text"]
    assert first.utterance_query.warm_phrases(["text"]) == ["text"]

    files = [Path(f) for f in load_dataset(manifest, cache_dir=folder).files]
    assert len(files) == len(set(files)) and all(f.is_file() and folder in f.parents for f in files)
    tables = {p for p in folder.rglob("*.val") if not _is_store_value(p)}
    assert set(files) == tables | set(folder.rglob(f"*{SUFFIX}"))

    kinds = [_kind(f) for f in files]
    assert kinds == sorted(kinds, key=["mapped", "words", "pairs", "compressed"].index), kinds
    assert kinds.count("words") == 2 and kinds.count("pairs") == 1 and "compressed" in kinds and "mapped" in kinds


def _kind(path: Path) -> str:
    if path.name.endswith(SUFFIX):
        return path.name[:-len(SUFFIX)].rsplit(".", 1)[1]
    if not cc.is_compressed(_schema(path)):
        return "mapped"  # numbers and the like
    # labels: their codes are mapped
    return "compressed" if isinstance(cc.open_column(path), cc.CompressedColumn) else "mapped"


def _schema(path: Path):
    import pyarrow as pa

    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).schema


def _is_store_value(path: Path) -> bool:
    """A value of the cache's store that is not a table file (a pickled entry: kept values, meta)."""
    try:
        _schema(path)
        return False
    except Exception:  # noqa: BLE001 - not an Arrow file
        return True
