"""Another sde process holding a cached dataset (sde.cache.in_use), for tests of what a second
process sharing the cache folder may do to it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
