"""Measure every utterance's audio once: speech activity, audio hash, loudness, levels.

:func:`measure_segments` reads each row's segment (``audio_path``, ``offset``, ``duration``) with
``sde.audio.open_segment`` and feeds it to the chosen measures block by block, in worker processes,
reporting progress and stopping when asked. One read serves every measure, so asking for all of
them costs little more than the slowest one (the VAD); and a segment hours long costs a worker a
few MB (a block, and one number per 32 ms of VAD frames and per 100 ms of loudness steps), where
reading it whole took ~0.5 GB per 30 minutes at 16 kHz.

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

from sde.audio import AudioError, open_segment, segment_channels
from sde.audio.inputs import install_openers, installed_openers
from sde.quality.duplicates import AudioHasher
from sde.quality.loudness import CLIP_LEVEL, LoudnessMeter
from sde.quality.vad import VAD_COLUMNS, SpeechActivity, VadError, VadParams
from sde.workers import in_processes_or_here

__all__ = ["KINDS", "MEASURE_BLOCK_FRAMES", "Cancelled", "SegmentMeasures", "measure_segment",
           "measure_segments", "vad_columns"]

KINDS: dict[str, tuple[str, ...]] = {
    "vad": VAD_COLUMNS,
    "hash": ("audio_hash",),
    "loudness": ("lufs",),
    "levels": ("sample_rate", "clipping_ratio"),
}
_STRING_COLUMNS = {"audio_hash", "quality_error"}
# Most rows per task: small enough that cancelling waits for little, large enough to amortise IPC.
_CHUNK_ROWS = 16
#: Frames read and fed to the measures at a time (1 MB of mono float32) when a segment is too
#: long to decode whole (``SegmentReader.fits_in_memory``).
MEASURE_BLOCK_FRAMES = 1 << 18


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

    def start(self, sample_rate: int) -> _Feed:
        """The measures of one segment at ``sample_rate``, to feed block by block."""
        return _Feed(self, sample_rate)

    def __call__(self, samples: np.ndarray, sample_rate: int) -> dict[str, Any]:
        """The measures of one segment held whole."""
        feed = self.start(sample_rate)
        feed.feed(samples)
        return feed.result()


class _Feed:
    """Every chosen measure of one segment, fed the same mono blocks in order."""

    def __init__(self, measures: SegmentMeasures, sample_rate: int) -> None:
        kinds = measures.kinds
        self.sample_rate = sample_rate
        self.vad = SpeechActivity(sample_rate, measures.vad) if "vad" in kinds else None
        self.hasher = AudioHasher(sample_rate) if "hash" in kinds else None
        self.loudness = LoudnessMeter(sample_rate) if "loudness" in kinds else None
        self.levels = "levels" in kinds
        self.samples = 0
        self.clipped = 0

    def feed(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        # A whole segment in one array goes in blocks too: each measure's temporaries stay small.
        for i in range(0, len(x), MEASURE_BLOCK_FRAMES):
            block = x[i:i + MEASURE_BLOCK_FRAMES]
            self.samples += len(block)
            if self.vad is not None:
                self.vad.feed(block)
            if self.hasher is not None:
                self.hasher.feed(block)
            if self.loudness is not None:
                self.loudness.feed(block)
            if self.levels:
                self.clipped += int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL))

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.vad is not None:
            out.update(self.vad.result())
        if self.hasher is not None:
            # no audio is no evidence of a copy: every empty segment would be one "duplicate" group
            out["audio_hash"] = self.hasher.result() if self.samples else None
        if self.loudness is not None:
            out["lufs"] = self.loudness.result()
        if self.levels:
            out["sample_rate"] = float(self.sample_rate)
            out["clipping_ratio"] = self.clipped / self.samples if self.samples else float("nan")
        return out


def measure_segment(measures: SegmentMeasures, path: str, offset: float = 0.0,
                    duration: float | None = None, channel: object = None) -> dict[str, Any]:
    """The measures of one segment, read block by block (:class:`AudioError` when unreadable);
    ``channel``: the row's ``audio_channel`` as it came (a supervision on one side of a call: the
    measures are of that channel alone, not the mix; None: every channel, mixed). It is checked when
    the file is opened, by :func:`sde.audio.channel_selection` (the player's rule: a list of
    channels is their mean, read block by block), so an unusable value such as ``1.5``,
    ``"left"`` or ``[0, 0]`` is an :class:`AudioError` naming it, never a guess.

    A segment short enough to decode whole is read so (a file ending early within the manifest's
    rounding is measured as far as it goes, one ending earlier is an error); a longer one was
    checked for a truncated end when opened and is read a block at a time.
    """
    with open_segment(path, offset, duration, channel=channel) as reader:
        feed = measures.start(reader.sample_rate)
        if reader.fits_in_memory:
            feed.feed(reader.segment().samples)
        else:
            for block in reader.blocks(MEASURE_BLOCK_FRAMES, strict=True):
                feed.feed(block)
    return feed.result()


# position, path, offset, duration, and audio_channel as the row has it (checked when opened)
Row = tuple[int, str, float, float | None, object]


def _measure_rows(measures: SegmentMeasures, rows: list[Row]) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    for pos, path, offset, duration, channel in rows:
        if not path:
            out.append((pos, {"quality_error": "(no audio path): the manifest line names no audio file"}))
            continue
        try:
            out.append((pos, measure_segment(measures, path, offset, duration, channel)))
        except AudioError as exc:
            out.append((pos, {"quality_error": str(exc)}))
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
    channels = segment_channels(table)
    rows: list[Row] = []
    for pos in range(n):
        p = paths[pos]
        path = "" if p is None or p is pd.NA or (isinstance(p, float) and math.isnan(p)) else str(p)
        d = durations[pos]
        # Only a missing duration means "to the end of the file". 0 s is an empty segment and a
        # negative one a manifest error the reader names; both once measured the rest of the file
        # (a 0 s line in a 30-minute recording got its 10 s of speech).
        rows.append((pos, path, float(offsets[pos]), None if not math.isfinite(d) else float(d), channels[pos]))
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
