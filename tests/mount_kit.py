"""Real small or read-only file systems for the tests (root and CAP_SYS_ADMIN; a test is skipped
with the reason where mounting is not allowed): a tmpfs that fills up, a read-only bind mount."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True)


@contextmanager
def small_tmpfs(where: Path, size: str, mode: str = "700") -> Iterator[Path]:
    """``where`` (created) as a tmpfs of ``size`` (e.g. "16k", "1m") for the block; mode 700, as a
    cache folder must be (sde refuses one others may write)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode={mode}", "tmpfs", str(where))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        _run("umount", str(where))


@contextmanager
def read_only_view(folder: Path, where: Path) -> Iterator[Path]:
    """``where`` (created) as a read-only bind mount of ``folder`` for the block."""
    where.mkdir(parents=True, exist_ok=True)
    bound = _run("mount", "--bind", str(folder), str(where))
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bound.stderr.strip()}")
    try:
        made_ro = _run("mount", "-o", "remount,bind,ro", str(where))
        if made_ro.returncode != 0:
            pytest.skip(f"cannot make a bind mount read-only here: {made_ro.stderr.strip()}")
        yield where
    finally:
        # lazily where something still maps a file of it (a failed test's frames): detached now,
        # gone when they are, so the folder never stays mounted under pytest's temporary folders
        if _run("umount", str(where)).returncode != 0:
            _run("umount", "--lazy", str(where))
