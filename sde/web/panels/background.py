"""Work a page starts once and then polls: a computation too long for one request (the suspicious-
utterance checks, the TTS report: minutes at 10M utterances) runs on a thread of its own, once per
generation of the dataset's tables and key, and every poll (a ``dcc.Interval``) asks how it is
going. No request is held open for minutes (a proxy in front of sde may cut one), and two tabs
share one computation instead of running two side by side.
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
from sde.query import QueryError
from sde.web.present import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = ["FIRST_WAIT_S", "POLL_MS", "Progress", "in_background"]

#: How often a page polls its background work.
POLL_MS = 2000
#: How long a page's first ask waits for the answer before it shows that the work runs.
FIRST_WAIT_S = 1.0

log = logging.getLogger(__name__)
# Errors that answer the question rather than break (a query over --memory-limit, a check refused
# over its size): a request answers them 400/422 without a traceback in the log, and so does this.
_REFUSALS = (ApiError, QueryError, TooLarge)


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


class _Job:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.value: Any = None
        self.error: str | None = None
        self.exception: Exception | None = None
        self.done = threading.Event()

    def run(self, compute: Callable[[], Any]) -> None:
        try:
            self.value = compute()
        except Exception as exc:  # noqa: BLE001 - the page shows it; the server goes on
            if isinstance(exc, _REFUSALS):
                log.info("background work refused: %s", exc)
            else:
                log.exception("background work failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self.exception = exc
        finally:
            self.done.set()

    def progress(self) -> Progress:
        return Progress(self.done.is_set(), time.monotonic() - self.started, self.value, self.error, self.exception)


def in_background(dataset: Dataset, name: str, key: Hashable, compute: Callable[[], Any],
                  wait_s: float = 0.0) -> Progress:
    """How ``compute`` (``name`` / ``key`` for this generation of the dataset's tables) is going,
    started on a thread of its own on the first ask, after waiting up to ``wait_s`` for it (a small
    dataset's answer then comes at once, without a poll). A finished one is kept with the
    generation (a failed one too: the page says why, a new generation of the tables tries again)."""
    def start() -> _Job:
        job = _Job()
        threading.Thread(target=job.run, args=(compute,), name=f"sde-{name}", daemon=True).start()
        return job

    job = for_dataset(dataset, "background-work", 64).get_or_compute_once((name, key), start)
    job.done.wait(wait_s)
    return job.progress()
