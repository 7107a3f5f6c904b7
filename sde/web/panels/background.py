"""Work a page starts once and then polls: a computation too long for one request (the suspicious-
utterance checks, the TTS report: minutes at 10M utterances) runs on a thread of its own, once per
generation of the dataset's tables and key, and every poll (a ``dcc.Interval``) asks how it is
going. No request is held open for minutes (a proxy in front of sde may cut one), and two tabs
share one computation instead of running two side by side.

Computations of one name (the TTS reports of several languages, the duplicate groups of several
kinds) run one at a time, the others waiting their turn: each may hold a gigabyte at 10M
utterances, and a client asking for many at once would otherwise run them all side by side. At
most :data:`MAX_WAITING` wait; past them a new one is not started (its progress says it waits,
and the next poll asks again), so no number of requests holds more threads or memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sde.caching import for_dataset
from sde.quality.apply import TooLarge
from sde.quality.tts import TooManySpeakers
from sde.query import QueryError
from sde.web.present import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = ["FIRST_WAIT_S", "MAX_WAITING", "POLL_MS", "Progress", "in_background"]

#: How often a page polls its background work.
POLL_MS = 2000
#: How long a page's first ask waits for the answer before it shows that the work runs.
FIRST_WAIT_S = 1.0
#: Computations of one name that may wait for the one running.
MAX_WAITING = 4
#: Computations held with their values (the least recently asked go first): a TTS report of 10,000
#: speakers is tens of MB, and a client may ask for one per language.
FINISHED_HELD = 16

log = logging.getLogger(__name__)
# Errors that answer the question rather than break (a query over --memory-limit, a check refused
# over its size): a request answers them 400/422 without a traceback in the log, and so does this.
_REFUSALS = (ApiError, QueryError, TooLarge, TooManySpeakers)


@dataclass(frozen=True)
class Progress:
    """Where a background computation is: ``done`` with its ``value``, or with the ``error`` (its
    type and message) that ended it and the ``exception`` itself (a route answers by its kind: a
    refused query 400, a bug 500); ``seconds`` since it started."""

    done: bool
    seconds: float
    value: Any = None
    error: str | None = None
    exception: Exception | None = None
    #: not running yet: it waits for another computation of its name (or for room to wait)
    waiting: bool = False


class _Turns:
    """One computation of each name at a time, and a bounded number waiting for their turn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Lock] = {}
        self._held: dict[str, int] = {}  # computations of each name running or waiting

    def enter(self, name: str) -> bool:
        """Count a new computation of ``name`` in, unless :data:`MAX_WAITING` already wait."""
        with self._lock:
            if self._held.get(name, 0) > MAX_WAITING:
                return False
            self._held[name] = self._held.get(name, 0) + 1
            self._running.setdefault(name, threading.Lock())
            return True

    def turn(self, name: str) -> threading.Lock:
        return self._running[name]

    def leave(self, name: str) -> None:
        with self._lock:
            self._held[name] -= 1


_turns = _Turns()


class _NotStarted(Exception):
    """Too many computations of a name wait already: this one is not started (nor remembered)."""


class _Job:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.value: Any = None
        self.exception: Exception | None = None
        self.running = threading.Event()
        self.done = threading.Event()

    def take_turn_now(self, name: str) -> None:
        """Take ``name``'s turn here where it is free (the asking thread: its progress then says
        it runs from the first answer on, not whenever the new thread gets to run)."""
        if _turns.turn(name).acquire(blocking=False):
            self.running.set()

    def run(self, name: str, compute: Callable[[], Any]) -> None:
        turn = _turns.turn(name)
        try:
            if not self.running.is_set():
                turn.acquire()
                self.running.set()
            try:
                self.value = compute()
            finally:
                turn.release()
        except Exception as exc:  # noqa: BLE001 - the page shows it; the server goes on
            if isinstance(exc, _REFUSALS):
                log.info("background work refused: %s", exc)
            else:
                log.exception("background work failed")
            self.exception = exc
        finally:
            _turns.leave(name)
            self.done.set()

    def progress(self) -> Progress:
        exc = self.exception
        return Progress(self.done.is_set(), time.monotonic() - self.started, self.value,
                        None if exc is None else f"{type(exc).__name__}: {exc}", exc, waiting=not self.running.is_set())


def in_background(dataset: Dataset, name: str, key: Hashable, compute: Callable[[], Any],
                  wait_s: float = 0.0) -> Progress:
    """How ``compute`` (``name`` / ``key`` for this generation of the dataset's tables) is going,
    started on a thread of its own on the first ask, after waiting up to ``wait_s`` for it (a small
    dataset's answer then comes at once, without a poll). A finished one is kept with the
    generation (a failed one too: the page says why, a new generation of the tables tries again).
    It waits its turn after the other computations of ``name`` (see the module's doc)."""
    def start() -> _Job:
        if not _turns.enter(name):
            raise _NotStarted
        job = _Job()
        job.take_turn_now(name)
        try:
            threading.Thread(target=job.run, args=(name, compute), name=f"sde-{name}", daemon=True).start()
        except BaseException:  # no thread to be had (a ulimit -u): counted out again
            if job.running.is_set():
                _turns.turn(name).release()
            _turns.leave(name)
            raise
        return job

    try:
        job = for_dataset(dataset, "background-work", FINISHED_HELD).get_or_compute_once((name, key), start)
    except _NotStarted:
        return Progress(False, 0.0, waiting=True)
    job.done.wait(wait_s)
    return job.progress()
