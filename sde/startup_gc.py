"""Python's full garbage collections paused while a command imports its libraries.

Python's full collections pass over every object it tracks, and the imports before a command runs
(pandas, pyarrow, DuckDB, Flask, Dash: ~1M objects) trigger one after another of them: ~0.1 s of a
server's ~1 s warm start at 10M utterances (benchmarks/bench_scale.py). The young generations are
still collected meanwhile, so a cycle made and dropped during the imports is freed as before.
``sde.entry`` and ``sde.cli.main`` pause them; ``sde.cli`` resumes them before any work. A module
of its own, with no effect at import: sde.entry's import installs signal handlers, which a process
calling sde's commands in its own process (tests, a notebook) must not get.
"""

from __future__ import annotations

import gc
import os

_FULL_COLLECTIONS_PAUSED = 10**9
_paused_thresholds: tuple[int, int, int] | None = None
_fork_hooked = False


def pause_full_collections() -> None:
    """Until :func:`resume_full_collections`, no full garbage collection: for imports, never for
    work (a build's middle-aged cycles would pile up)."""
    global _paused_thresholds, _fork_hooked
    if _paused_thresholds is not None:
        return
    _paused_thresholds = gc.get_threshold()
    gc.set_threshold(_paused_thresholds[0], _paused_thresholds[1], _FULL_COLLECTIONS_PAUSED)
    if not _fork_hooked and hasattr(os, "register_at_fork"):  # a forked worker collects as Python does
        os.register_at_fork(after_in_child=_restore_thresholds)
        _fork_hooked = True


def _restore_thresholds() -> None:
    global _paused_thresholds
    if _paused_thresholds is not None:
        gc.set_threshold(*_paused_thresholds)
        _paused_thresholds = None


def resume_full_collections() -> None:
    """The imports are done: full collections resume. Nothing is frozen (gc.freeze), though later
    collections would then pass over less: a dataset replaced while serving (audio measured,
    transcribed) can sit in reference cycles that only a full collection frees. A no-op where
    nothing was paused (tests that call the commands in their own process)."""
    if _paused_thresholds is not None:
        _restore_thresholds()
