"""Worker processes that stop with their parent: forked pools whose workers ignore Ctrl-C.

Ctrl-C reaches the whole process group; only the parent reacts (leaving its ``with worker_pool``
block terminates the workers), so an interrupted load prints no worker traceback and leaves no
orphan: an orphan keeps the parent's stdout and stderr open, so whoever reads them (a pipe, a
test) waits for ever.

:func:`in_processes` serves a process that has threads of its own (the server): its workers are
started without forking it, and it draws its jobs lazily, a few ahead of the workers.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.context
import multiprocessing.pool
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing, contextmanager
from typing import Any, TypeVar

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_Job = TypeVar("_Job")
_Result = TypeVar("_Result")


def _worker_signals(parent: int) -> None:
    """Pool worker start-up: Ctrl-C reaches the whole process group, but only the parent should
    react (it terminates the pool); a worker's own KeyboardInterrupt printed a traceback. SIGTERM
    ends a worker (it also arrives when the parent dies without terminating the pool: kill -9), by
    an exception that unwinds it (:func:`_end_worker`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_worker)
    sys.unraisablehook = _StopSwallowedElsewhere(sys.unraisablehook)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by _start_pool
    if sys.platform == "linux":
        # sent when the thread that forked this worker ends: a pool lives inside that thread's
        # ``with worker_pool`` block, and Pool's own handler thread only forks while the pool runs
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl: no signal will come
        os._exit(0)
    threading.Thread(target=_end_when_orphaned, args=(parent,), name="sde-orphan-watch", daemon=True).start()


# How often a worker checks that its parent lives (a getppid call: nothing).
ORPHAN_CHECK_S = 1.0


def _end_when_orphaned(owner: int) -> None:
    """A worker's watch: end it once the process ``owner`` that made its pool is gone. A parent's
    SIGTERM can land just before the worker blocks waiting for its next task, and is then never
    acted on (see :func:`_terminate_pool`); with no parent left to SIGKILL it, the worker would wait
    for ever (e.g. after the kernel's OOM killer took the parent). Also where there is no prctl, and
    for a worker the forkserver started (``owner`` is then no parent of it)."""
    while True:
        try:
            os.kill(owner, 0)
        except (ProcessLookupError, PermissionError):  # gone (its pid taken by another user's process)
            os._exit(1)
        time.sleep(ORPHAN_CHECK_S)


def _end_worker(signum: int, _frame: Any) -> None:
    """A worker's SIGTERM: raised, so that unwinding releases the pool's queue locks it holds. Killed
    outright while sending its result (SIGTERM to the whole process group: timeout, Slurm, kill --
    -PGID), a worker left the result queue's lock held, and the parent's pool.terminate() waited for
    it for ever."""
    raise _WorkerStopped(128 + signum)


class _WorkerStopped(SystemExit):
    """The exit :func:`_end_worker` raises, told apart from any other in :class:`_StopSwallowedElsewhere`."""


# How soon a worker whose stop was swallowed signals itself again: once the code that swallowed it
# has returned, however short.
STOP_AGAIN_S = 0.01


class _StopSwallowedElsewhere:
    """A worker's ``sys.unraisablehook``. The SIGTERM handler runs between any two bytecodes, also
    inside a weakref callback or a ``__del__`` (a WeakSet's, in multiprocessing), where Python
    cannot propagate an exception: it printed "Exception ignored in ..." with the traceback (seen
    on stderr after a Ctrl-C of a build) and the worker carried on. Here the stop is swallowed
    silently, and the worker signals itself again from a thread, so that the next SIGTERM is acted
    on after that code has returned. Any other exception goes to the hook that was there."""

    def __init__(self, previous: Callable[[Any], object]) -> None:
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, _WorkerStopped):
            self.previous(unraisable)
            return
        again = threading.Timer(STOP_AGAIN_S, os.kill, (os.getpid(), signal.SIGTERM))
        again.daemon = True
        again.start()


def _start_pool(context: multiprocessing.context.BaseContext, processes: int) -> multiprocessing.pool.Pool:
    """The stop signals stay blocked while the workers are forked (they inherit the mask), so one
    landing before a worker's initializer ran waits and is then ignored there."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return context.Pool(processes, initializer=_worker_signals, initargs=(os.getpid(),))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def stop_signals_held() -> Iterator[None]:
    """Handle Ctrl-C and SIGTERM after the block rather than inside it. Python raises the handler's
    exception in the main thread between any two bytecodes: one raised inside ``Pool()``, after its
    handler threads started, lost the pool; at exit multiprocessing ended the workers, the lost
    pool's handler thread forked new ones, and those outlived the process."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only: nothing can be raised here
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    held = [s for s, handler in previous.items() if handler is not None]  # None: installed outside Python
    for s in held:
        signal.signal(s, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for s in held:
            signal.signal(s, previous[s])
        if received:
            _deliver(received[0], previous[received[0]])


def _deliver(signum: int, handler: Any) -> None:
    if callable(handler):
        handler(signum, None)  # raises KeyboardInterrupt, or SystemExit from sde's SIGTERM handler
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


@contextmanager
def worker_pool(context: multiprocessing.context.BaseContext, processes: int) -> Iterator[multiprocessing.pool.Pool]:
    """A pool whose workers ignore Ctrl-C, ended when the block ends, however it ends. A block that
    ends with every job answered closes the pool (its workers end by themselves); one that ends
    early (Ctrl-C, SIGTERM, an error, a generator closed early, jobs still running) terminates
    them."""
    pool = None
    try:
        with stop_signals_held():
            pool = _start_pool(context, processes)
        yield pool
    except BaseException:
        if pool is not None:
            with stop_signals_held():  # a second Ctrl-C must not leave it half terminated
                _terminate_pool(pool)
        raise
    else:
        with stop_signals_held():
            if getattr(pool, "_cache", None):  # jobs still running (apply_async): not waited for
                _terminate_pool(pool)
            else:
                pool.close()
                pool.join()


# Long enough for a worker to unwind from SIGTERM, the end of a C call included; a worker that
# missed its SIGTERM would otherwise be waited for ever.
TERMINATE_GRACE_S = 5.0
# How often a worker still alive is sent SIGTERM again within the grace: one that missed the first
# (below) acts on the next, so a stop takes a fraction of a second, not the whole grace.
TERMINATE_AGAIN_S = 0.25


def _terminate_pool(pool: multiprocessing.pool.Pool) -> None:
    """``pool.terminate()``, then SIGKILL for a worker still alive after :data:`TERMINATE_GRACE_S`.

    terminate() sends SIGTERM once and waits for every worker. A worker's SIGTERM handler is Python
    (:func:`_end_worker`), and a signal landing just before the worker blocks in a lock wait is
    never acted on: the C handler notes it, the wait starts, and nothing wakes the worker again.
    That happened about once in 30 loads on a busy 2-core machine, and the load waited for ever.
    A second SIGTERM, sent while the worker waits, interrupts the wait and is acted on: so the
    workers still alive get one every :data:`TERMINATE_AGAIN_S` (a stop took the whole grace, 5 s,
    where it takes a quarter of a second). One still alive after the grace is killed: it is then
    only waiting for a task, killing it loses nothing, and the parent needs none of the queue's
    locks any more by the time it waits for its workers."""
    finished = threading.Event()

    def end_the_workers_left() -> None:
        deadline = time.monotonic() + TERMINATE_GRACE_S
        while not finished.wait(max(0.0, min(TERMINATE_AGAIN_S, deadline - time.monotonic()))):
            left = [p for p in list(getattr(pool, "_pool", ())) if p.exitcode is None]  # Pool lists no workers publicly
            if time.monotonic() >= deadline:
                for process in left:
                    process.kill()
                return
            for process in left:
                process.terminate()

    guard = threading.Thread(target=end_the_workers_left, name="sde-pool-guard", daemon=True)
    guard.start()
    try:
        pool.terminate()
    finally:
        finished.set()
        guard.join()


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
    with worker_pool(context, processes) as pool:
        yield from pool.imap_unordered(function, jobs, chunksize=1)


def process_context() -> multiprocessing.context.BaseContext:
    """fork when this process has one thread (instant, children inherit imports), else
    forkserver/spawn: forking a threaded process can copy a lock some other thread holds."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def in_processes(function: Callable[[_Job], _Result], jobs: Iterable[_Job], workers: int, *,
                 initializer: Callable[..., object] | None = None, initargs: tuple = (),
                 cancelled: Callable[[], bool] | None = None) -> Iterator[tuple[int, _Result]]:
    """(job's position in ``jobs``, ``function(job)``) of every job, as each ends, from ``workers``
    processes (``function`` a module-level one, or a partial of one). Jobs are drawn from ``jobs``
    only while fewer than two per worker are in flight, so an iterator that reads its data as it
    goes keeps memory flat; once ``cancelled()`` says so no more are drawn, and those in flight
    still answer. Closing the iterator early ends the workers, jobs running or not. A worker that
    dies raises BrokenProcessPool: the caller may finish the jobs not answered itself
    (:func:`in_processes_or_here`). Workers ignore Ctrl-C (the parent reacts; a worker printed its
    own KeyboardInterrupt traceback)."""
    pending = enumerate(jobs)
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=process_context(),
                             initializer=_ignoring_interrupts, initargs=(initializer, initargs, os.getpid())) as pool:
        futures: dict[Future, int] = {}
        for index, job in pending:
            futures[pool.submit(function, job)] = index
            if len(futures) >= 2 * max(1, workers):
                break
        try:
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    yield futures.pop(future), future.result()
                    following = None if cancelled is not None and cancelled() else next(pending, None)
                    if following is not None:
                        futures[pool.submit(function, following[1])] = following[0]
        finally:
            for future in futures:
                future.cancel()
            if futures:  # left early (closed, Ctrl-C, an error): the jobs running are not waited for
                _terminate_workers(pool)


def in_processes_or_here(function: Callable[[Any], _Result], jobs: Sequence[_Job], workers: int, *,
                         read: Callable[[_Job], Any] | None = None, **options: Any) -> Iterator[tuple[int, _Result]]:
    """(job's position, ``function(read(job))``) of every job: :func:`in_processes` on ``workers``
    processes (0: none), then here, in order, the jobs a broken pool left (a worker killed, a
    ``__main__`` that spawned workers cannot import): slower, never stuck. ``read`` makes a job's
    data as it is drawn (default: the job itself); ``options`` go to :func:`in_processes`."""
    made = (lambda job: job) if read is None else read
    finished: set[int] = set()
    if workers > 0:
        try:
            with closing(in_processes(function, map(made, jobs), workers, **options)) as pooled:
                for index, result in pooled:
                    finished.add(index)
                    yield index, result
        except (BrokenProcessPool, OSError):
            pass
    for index, job in enumerate(jobs):
        if index not in finished:
            yield index, function(made(job))


def _ignoring_interrupts(initializer: Callable[..., object] | None, initargs: tuple, owner: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a parent killed outright (kill -9, the OOM killer) cannot end its workers: one blocked sending
    # its result to it lived on, holding its memory and the parent's stdout and stderr. Once the
    # process that made the pool is gone it ends itself (from a forkserver, that is no parent of it).
    threading.Thread(target=_end_when_orphaned, args=(owner,), name="sde-orphan-watch", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
