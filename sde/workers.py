"""Worker processes that stop with their parent: forked pools whose workers ignore Ctrl-C.

Ctrl-C reaches the whole process group; only the parent reacts (leaving its ``with pool`` block
terminates the workers), so an interrupted load prints no worker traceback and leaves no orphan.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.pool
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_Job = TypeVar("_Job")
_Result = TypeVar("_Result")


def _worker_signals() -> None:
    """Pool worker start-up: Ctrl-C reaches the whole process group, but only the parent should
    react (it terminates the pool); a worker's own KeyboardInterrupt printed a traceback. SIGTERM
    gets its default action back (the parent's handler unwinds, a worker just ends)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by _start_pool


def start_pool(context: multiprocessing.context.BaseContext, processes: int) -> multiprocessing.pool.Pool:
    """A pool whose workers ignore Ctrl-C. The stop signals stay blocked while the workers are
    forked (they inherit the mask), so one landing before a worker's initializer ran waits and is
    then ignored there, while the parent receives it as soon as the pool exists."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return context.Pool(processes, initializer=_worker_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def fork_context() -> multiprocessing.context.BaseContext | None:
    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform (Windows): align in this process
        return None


def run_unordered(function: Callable[[_Job], _Result], jobs: Sequence[_Job], processes: int) -> Iterator[_Result]:
    """``function(job)`` of every job, each result as it comes: on ``processes`` forked workers
    (``function`` a module-level one) when there are several jobs and processes, else here, in
    order. Closing the iterator early (done, Ctrl-C, SIGTERM, an error) terminates the workers."""
    context = fork_context() if processes > 1 and len(jobs) > 1 else None
    if context is None:
        yield from map(function, jobs)
        return
    with start_pool(context, processes) as pool:
        yield from pool.imap_unordered(function, jobs, chunksize=1)
