"""Measure every utterance's audio once: speech activity, audio hash, loudness, levels.

:func:`measure_segments` reads each row's segment (``audio_path``, ``offset``, ``duration``) with
``sde.audio.read_segment`` and applies the chosen measures to it, in worker processes, reporting
progress and stopping when asked. One read serves every measure, so asking for all of them costs
little more than the slowest one (the VAD).

Measures (``kinds``) and the columns they add:

- ``vad``:      ``speech_duration``, ``leading_silence``, ``trailing_silence``, ``speech_ratio``
- ``hash``:     ``audio_hash`` (see ``sde.quality.duplicates.audio_hash``)
- ``loudness``: ``lufs`` (integrated loudness)
- ``levels``:   ``sample_rate``, ``clipping_ratio`` (the same columns as sde.audio's audio metrics:
                skip it when those were computed)

plus ``quality_error`` (why the segment could not be read; <NA> when it could).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sde.audio import AudioError, read_segment
from sde.audio.inputs import install_openers, installed_openers
from sde.quality.duplicates import audio_hash
from sde.quality.loudness import clipping_ratio, integrated_loudness
from sde.quality.vad import VAD_COLUMNS, VadError, VadParams, speech_activity
from sde.workers import in_processes_or_here

__all__ = ["KINDS", "Cancelled", "SegmentMeasures", "measure_segments", "vad_columns"]

KINDS: dict[str, tuple[str, ...]] = {
    "vad": VAD_COLUMNS,
    "hash": ("audio_hash",),
    "loudness": ("lufs",),
    "levels": ("sample_rate", "clipping_ratio"),
}
_STRING_COLUMNS = {"audio_hash", "quality_error"}
# Most rows per task: small enough that cancelling waits for little, large enough to amortise IPC.
_CHUNK_ROWS = 16


class Cancelled(Exception):
    """``measure_segments`` stopped because ``cancel`` said so; nothing is returned."""

    def __init__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        super().__init__(f"cancelled after {done} of {total} utterances")


@dataclass(frozen=True)
class SegmentMeasures:
    """What to measure on each segment (picklable: it travels to the worker processes)."""

    kinds: tuple[str, ...] = ("vad",)
    vad: VadParams = field(default_factory=VadParams)

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown measure {unknown[0]!r}; choose from {', '.join(KINDS)}")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for k in self.kinds for c in KINDS[k]) + ("quality_error",)

    def __call__(self, samples: np.ndarray, sample_rate: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "vad" in self.kinds:
            out.update(speech_activity(samples, sample_rate, self.vad))
        if "hash" in self.kinds:
            out["audio_hash"] = audio_hash(samples, sample_rate)
        if "loudness" in self.kinds:
            out["lufs"] = integrated_loudness(samples, sample_rate)
        if "levels" in self.kinds:
            out["sample_rate"] = float(sample_rate)
            out["clipping_ratio"] = clipping_ratio(samples)
        return out


Row = tuple[int, str, float, float | None]  # position, path, offset, duration


def _measure_rows(measures: SegmentMeasures, rows: list[Row]) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    for pos, path, offset, duration in rows:
        if not path:
            out.append((pos, {"quality_error": "(no audio path): the manifest line names no audio file"}))
            continue
        try:
            seg = read_segment(path, offset, duration)
        except AudioError as exc:
            out.append((pos, {"quality_error": str(exc)}))
            continue
        try:
            out.append((pos, measures(seg.samples, seg.sample_rate)))
        except VadError:
            raise  # the VAD cannot run at all here: every row would fail the same way
        except Exception as exc:  # noqa: BLE001 - one odd segment must not sink the whole run
            out.append((pos, {"quality_error": f"{path}: cannot measure this segment ({exc})"}))
    return out


def _rows(table: pd.DataFrame) -> list[Row]:
    n = len(table)
    paths = table["audio_path"].astype(object).to_numpy() if "audio_path" in table else np.full(n, None)
    offsets = (pd.to_numeric(table["offset"], errors="coerce").fillna(0.0).to_numpy(np.float64)
               if "offset" in table else np.zeros(n))
    durations = (pd.to_numeric(table["duration"], errors="coerce").to_numpy(np.float64)
                 if "duration" in table else np.full(n, np.nan))
    rows: list[Row] = []
    for pos in range(n):
        p = paths[pos]
        path = "" if p is None or p is pd.NA or (isinstance(p, float) and math.isnan(p)) else str(p)
        d = durations[pos]
        rows.append((pos, path, float(offsets[pos]), None if not math.isfinite(d) or d <= 0 else float(d)))
    return rows


def _is_cancelled(cancel: Callable[[], bool] | threading.Event | None) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _results(measures: SegmentMeasures, chunks: list[list[Row]], workers: int,
             cancel: Callable[[], bool] | threading.Event | None
             ) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """Results of every chunk: in ``workers`` processes when asked (a bounded window of tasks in
    flight: memory stays flat and a cancel waits for at most that window), finishing here if the
    pool breaks."""
    pooled = workers if workers > 1 and len(chunks) > 1 else 0
    # the openers of URLs and tar members (installed by sde.sources) go with the workers
    for _, batch in in_processes_or_here(functools.partial(_measure_rows, measures), chunks, pooled,
                                         initializer=install_openers, initargs=(installed_openers(),),
                                         cancelled=lambda: _is_cancelled(cancel)):
        yield batch


def measure_segments(table: pd.DataFrame, measures: SegmentMeasures | Sequence[str] = ("vad",), *,
                     workers: int = 2, callback: Callable[[int, int], None] | None = None,
                     cancel: Callable[[], bool] | threading.Event | None = None) -> pd.DataFrame:
    """Measure every row's segment; a DataFrame of ``measures.columns`` with ``table``'s index.

    ``workers`` processes (models load once per process, on first use); ``workers <= 1`` runs
    here. ``callback(done, total)`` is called in this process after each batch of rows.
    ``cancel`` (an Event or a no-argument callable) is polled between batches; when it is set,
    the remaining work is dropped and :class:`Cancelled` is raised. Unreadable audio gives NaN
    measures and the reason in ``quality_error``.
    """
    if not isinstance(measures, SegmentMeasures):
        measures = SegmentMeasures(tuple(measures))
    rows = _rows(table)
    total = len(rows)
    cols: dict[str, np.ndarray] = {
        c: np.full(total, None, dtype=object) if c in _STRING_COLUMNS else np.full(total, np.nan)
        for c in measures.columns}
    # Enough chunks to keep every worker busy, none over _CHUNK_ROWS.
    size = max(1, min(_CHUNK_ROWS, -(-total // (max(workers, 1) * 4))))
    chunks = [rows[i:i + size] for i in range(0, total, size)]
    done = 0
    with contextlib.closing(_results(measures, chunks, workers, cancel)) as results:
        for batch in results:
            for pos, values in batch:
                for name, value in values.items():
                    cols[name][pos] = value
            done += len(batch)
            if callback is not None:
                callback(done, total)
            if done < total and _is_cancelled(cancel):
                raise Cancelled(done, total)  # leaving the with-block stops the workers
    frame = pd.DataFrame(cols, index=table.index)
    for c in _STRING_COLUMNS & set(frame.columns):
        frame[c] = frame[c].astype(pd.StringDtype("pyarrow"))
    return frame


def vad_columns(table: pd.DataFrame, *, params: VadParams = VadParams(), workers: int = 2,
                callback: Callable[[int, int], None] | None = None,
                cancel: Callable[[], bool] | threading.Event | None = None) -> pd.DataFrame:
    """The speech-activity columns (``--vad``) for every row of ``table``."""
    return measure_segments(table, SegmentMeasures(("vad",), params), workers=workers,
                            callback=callback, cancel=cancel)
