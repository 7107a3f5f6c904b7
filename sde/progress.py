"""Progress bars that suit where stderr goes.

On a terminal: a tqdm bar, redrawn in place. Anywhere else (a log file, a pipe, a CI job, a
scheduler's output), redrawing writes "\\r" and one bar state after another into the log (the
`reading manifest.json:   0%|` residue), so instead nothing is printed while the work runs and one
plain line when it is done: `reading manifest.json: 5.4 MB, 101 lines in 1.2 s`.

Every progress bar of sde goes through :func:`progress_bar`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["PlainProgress", "is_terminal", "progress_bar", "where_measured"]


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is an interactive terminal (a closed or odd stream is not)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _amount(value: float, unit: str, unit_scale: bool) -> str:
    if unit == "B" and unit_scale:
        for prefix in ("", "k", "M", "G", "T"):
            if abs(value) < 1000 or prefix == "T":
                return f"{value:.0f} B" if not prefix else f"{value:.1f} {prefix}B"
            value /= 1000
    return f"{int(value):,} {unit}"


class PlainProgress:
    """The part of tqdm's interface sde uses, writing one line when the work is complete.

    Nothing is written when the work stops early (an error, Ctrl-C): the line would claim a result
    that does not exist, and the caller reports what happened.
    """

    def __init__(self, total: float | None, desc: str, unit: str, unit_scale: bool, initial: float,
                 stream: TextIO, elapsed: float = 0.0) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self.n = initial
        self.initial = initial
        self.postfix = ""
        self._stream = stream
        self._start = time.perf_counter() - elapsed
        self._closed = False

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:  # noqa: ARG002 - tqdm's signature
        self.postfix = s

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.total is not None and self.n < self.total:
            return
        done = _amount(self.n - self.initial, self.unit, self.unit_scale)
        extra = f", {self.postfix}" if self.postfix else ""
        seconds = time.perf_counter() - self._start
        print(f"{self.desc}: {done}{extra} in {seconds:.1f} s", file=self._stream, flush=True)

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._closed = True


class _Silent(PlainProgress):
    def close(self) -> None:
        self._closed = True


def progress_bar(total: float | None, desc: str, *, unit: str = "it", enabled: bool = True,
                 initial: float = 0, unit_scale: bool = False, stream: TextIO | None = None,
                 elapsed: float = 0.0, **tqdm_options: Any) -> Any:
    """A tqdm bar on ``stream`` (default stderr) when it is a terminal, else a :class:`PlainProgress`;
    with ``enabled=False`` an object with the same methods that prints nothing. ``elapsed``: the
    seconds the work ran before the bar was made, counted in its time."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        return _Silent(total, desc, unit, unit_scale, initial, stream)
    if not is_terminal(stream):
        return PlainProgress(total, desc, unit, unit_scale, initial, stream, elapsed)
    from tqdm import tqdm  # imported here: only a terminal shows it

    bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale, file=stream,
               **tqdm_options)
    bar.start_t -= elapsed  # tqdm's rate and elapsed time are measured from start_t
    return bar


class WorkerProgress:
    """Progress of work done in worker processes: ``report(done, total)`` feeds the bar (when
    ``enabled``) and forwards to ``callback``. The bar is made at the first report, once the worker
    processes exist: tqdm starts a monitor thread, and a process with threads does not fork its
    workers. Close it when the work ends (a context manager)."""

    def __init__(self, desc: str, *, enabled: bool, unit: str = "utt",
                 callback: Callable[[int, int], None] | None = None) -> None:
        self.desc, self.enabled, self.unit, self.callback = desc, enabled, unit, callback
        self.bar: Any = None
        self.reported = 0
        self._start = time.perf_counter()  # the work starts now; its bar only at the first report

    def report(self, done: int, total: int) -> None:
        if self.enabled and self.bar is None:
            self.bar = progress_bar(total, self.desc, unit=self.unit, initial=self.reported,
                                    elapsed=time.perf_counter() - self._start)
        if self.bar is not None:
            self.bar.update(done - self.reported)
        self.reported = done
        if self.callback is not None:
            self.callback(done, total)

    def __enter__(self) -> "WorkerProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def where_measured(workers: int) -> str:
    """Where a measuring job runs, for its first line: the user sets how many with --threads."""
    return f"{'here' if workers <= 1 else f'in {workers} worker processes'}; --threads sets how many"
