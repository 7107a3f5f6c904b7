"""A cached build that cannot be read for want of memory or threads (a login node's ulimit, a busy
machine) is kept: it was deleted as "unreadable", and the next start built 10M utterances again."""

from __future__ import annotations

import errno
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sde.cache.datasets import _short_of_resources
from tests.build.memory_kit import generate_manifest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("error, short", [
    (RuntimeError("can't start new thread"), True),
    (RuntimeError("Unknown error: Failed to launch worker thread: Resource temporarily unavailable"), True),
    (MemoryError(), True),
    (OSError(errno.ENOMEM, "Cannot allocate memory"), True),
    (OSError(errno.EMFILE, "Too many open files"), True),
    (ValueError("format 14 is not 15"), False),
    (OSError(errno.ENOENT, "No such file or directory"), False),
    (RuntimeError("Not an Arrow file"), False),
], ids=["thread", "duckdb-thread", "memory", "enomem", "fds", "other-format", "file-gone", "damaged"])
def test_only_the_processs_own_shortage_keeps_an_entry_it_cannot_read(error, short):
    assert _short_of_resources(error) is short


def _under_address_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_a_start_short_of_memory_keeps_the_cached_build(tmp_path):
    manifest = generate_manifest(tmp_path / "m.json", 100_000)
    cache = tmp_path / "cache"
    built = subprocess.run([sys.executable, "-m", "sde.cli", "index", str(manifest), "--cache-dir", str(cache)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    # 1.2 GB of address space: Python and its libraries load, DuckDB's worker threads do not start
    short = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--cache-dir", str(cache)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           preexec_fn=_under_address_limit(1_200_000 << 10))
    assert "is unreadable" not in short.stderr and "rebuilding it" not in short.stderr, short.stderr[-2000:]
    again = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--cache-dir", str(cache)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "loaded from cache" in again.stderr, again.stderr[-2000:]


class _ShortThenCut:
    """Reading a table fails as a process short of threads fails: first with DuckDB's whole
    message, then (memory gone) with the same message cut short, as a CI run saw it."""

    def __init__(self) -> None:
        self.errors = [RuntimeError("Unknown error: Failed to launch worker thread: Resource temporarily unavailable"),
                       RuntimeError("Unknown error: Failed to launc")]

    def __call__(self, *args, **kwargs):
        raise self.errors.pop(0)


def test_a_failure_after_a_shortage_in_the_same_process_keeps_the_entry(tmp_path, monkeypatch):
    from sde.cache import DatasetCache
    from sde.dataset import DatasetOptions, build_dataset

    manifest = generate_manifest(tmp_path / "m.json", 200)
    warnings: list[str] = []
    cache = DatasetCache(tmp_path / "cache", warn=warnings.append)
    cache.put("key", build_dataset(manifest, DatasetOptions()))
    failing = _ShortThenCut()
    monkeypatch.setattr(cache, "_read_table", failing)
    assert cache.get("key") is None and cache.get("key") is None
    assert not failing.errors  # both reads failed
    assert not any("unreadable" in w for w in warnings), warnings
    monkeypatch.undo()
    again = DatasetCache(tmp_path / "cache").get("key")  # the next start, not short: the build is there
    assert again is not None and len(again.utterances) == 200
