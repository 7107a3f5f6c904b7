"""The "Speech activity" card (TTS readiness page): `layout(dataset)` and `callbacks(app, …)`.

A "Measure" button starts a Dash background job (a separate process, progress bar, cancel button,
as the audio metrics card) that reads every segment once and measures speech activity with Silero
VAD (``speech_duration``, ``leading_silence``, ``trailing_silence``, ``speech_ratio``), the audio
hash (duplicate audio) and the integrated loudness (``lufs``); and the audio metrics (sample rate,
clipping, …) when the dataset has none, since TTS readiness needs them too. Without Silero VAD
installed the card says what to install and the job measures the rest.

Results are cached: the job keeps them as a Parquet file named by a hash of what was measured (every
row's path, offset and duration, each file's size and modification time, the measures and sde's
version) in the job folder (under the cache folder), so pressing the button again, or after a
restart, applies them at once. A regular callback in the server process then swaps them into the
dataset (``sde.quality.apply.apply_segment_measures``) and reloads the page.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from dash import dcc, html

from sde import __version__
from sde.audio import AUDIO_METRIC_COLUMNS, compute_audio_metrics
from sde.audio_quality import StaleMetrics, has_audio_metrics, with_audio_metrics
from sde.quality.apply import (
    SEGMENT_COLUMNS,
    StaleMeasures,
    apply_segment_measures,
    has_vad,
    measure_workers,
    segment_kinds,
    speech_hours,
    vad_unavailable,
)
from sde.quality.segments import KINDS, Cancelled, measure_segments
from sde.durations import duration_text
from sde.web.components import fmt_float, fmt_int, stat_card
from sde.web.panels.audio_metrics import metric_columns
from sde.web.panels.jobs import (
    SetProgress,
    audio_inputs,
    buttons,
    job_ids,
    processes_text,
    progress,
    register_job,
    throttled_progress,
    write_parquet,
)
from sde.web.state import samples_href

if TYPE_CHECKING:  # pragma: no cover
    import dash

    from sde.dataset import Dataset

log = logging.getLogger(__name__)

PANEL = "vad-panel"
IDS = job_ids("vad")
START, CANCEL, PROGRESS, STATUS, DONE, RELOAD = IDS
SPEECH_HOURS = "vad-speech-hours"
NO_SPEECH = "vad-no-speech"
LOW_RATIO = "vad-low-ratio"
INSTALL = "vad-install"
_KEY = re.compile(r"[0-9a-f]{64}")
_KEEP_RESULTS = 20
# Each tab that followed a job applies its result: one at a time, and the later ones find it applied.
_APPLYING = threading.Lock()
#: Utterances whose speech covers less than this share of the segment are listed as "mostly silence".
LOW_SPEECH_RATIO = 0.5


class ResultError(Exception):
    """The measurement cannot be applied; ``str(exc)`` says why and what to do."""


# ---------------------------------------------------------------- layout


def _title(right: Any = None) -> html.Div:
    return html.Div([html.H5("Speech activity, loudness and audio hashes", className="card-title mb-0"), right],
                    className="d-flex justify-content-between align-items-baseline mb-2")


def _install_note() -> Any:
    missing = vad_unavailable()
    if missing is None:
        return None
    return dbc.Alert([html.Strong("Speech activity is not available here: "), missing,
                      ". Loudness and audio hashes are measured without it."],
                     color="info", className="py-2 small mb-2", id=INSTALL)


def missing_kinds(table: pd.DataFrame) -> tuple[str, ...]:
    """The segment measures (sde.quality.segments kinds) the table lacks and this machine can take."""
    return tuple(k for k in segment_kinds(vad=True) if not all(c in table.columns for c in KINDS[k]))


def layout(dataset: Dataset) -> dbc.Card:
    table = dataset.utterances
    if not missing_kinds(table) and has_audio_metrics(table):
        return _summary_card(dataset)
    what = "speech activity (Silero VAD), " if vad_unavailable() is None else ""
    extra = "" if has_audio_metrics(table) else " and the audio metrics (sample rate, clipping, levels)"
    return dbc.Card(dbc.CardBody([
        _title(),
        _install_note(),
        html.P(f"Read every segment once to measure {what}integrated loudness (LUFS), an audio hash for "
               f"duplicate detection{extra}: {fmt_int(len(table))} utterances.", className="mb-1"),
        html.P("The measures become filterable columns (speech_duration, leading_silence, trailing_silence, "
               "speech_ratio, lufs, dup_audio_group) and fill the table below; the same as starting sde with --vad. "
               "Results are cached: measuring the same audio again is instant.",
               className="small text-muted mb-2"),
        html.Div(buttons(IDS, "Measure", disabled=len(table) == 0), className="d-flex gap-2 mb-2"),
        *progress(IDS, "Speech measurement progress"),
    ]), className="mb-3", id=PANEL)


def _summary_card(dataset: Dataset) -> dbc.Card:
    table = dataset.utterances
    total_h = float(np.nansum(pd.to_numeric(table["duration"], errors="coerce"))) / 3600 if "duration" in table else 0
    cards = []
    if has_vad(table):
        speech_h = speech_hours(table) or 0.0
        ratio = pd.to_numeric(table["speech_ratio"], errors="coerce")
        no_speech = int((pd.to_numeric(table["speech_duration"], errors="coerce") == 0).sum())
        low = int((ratio < LOW_SPEECH_RATIO).sum())
        share = f"{100 * speech_h / total_h:.0f}% of {duration_text(total_h)}" if total_h else ""
        cards += [
            stat_card("Speech", duration_text(speech_h), value_id=SPEECH_HOURS, sub=share),
            stat_card("No speech found", fmt_int(no_speech), value_id=NO_SPEECH, tone="danger" if no_speech else None,
                      sub=dcc.Link("show them", href=samples_href(filter="{speech_duration} = 0"))
                      if no_speech else "utterances"),
            stat_card(f"Speech < {LOW_SPEECH_RATIO:.0%} of the audio", fmt_int(low), value_id=LOW_RATIO,
                      tone="warning" if low else None,
                      sub=dcc.Link("show them", href=samples_href(
                          filter=f"{{speech_ratio}} < {LOW_SPEECH_RATIO:g}", sort="speech_ratio"))
                      if low else "mostly silence or noise"),
            stat_card("Median leading / trailing silence",
                      f"{fmt_float(table['leading_silence'].median(), 2)} / "
                      f"{fmt_float(table['trailing_silence'].median(), 2)} s",
                      sub=dcc.Link("longest first", href=samples_href(sort="-leading_silence"))),
        ]
    errors = int(table["quality_error"].notna().sum()) if "quality_error" in table else 0
    return dbc.Card(dbc.CardBody([
        _title(),
        _install_note(),
        dbc.Row([dbc.Col(c, xs=6, lg=3, className="mb-2") for c in cards], className="g-2 mb-1") if cards else None,
        html.Div([f"{fmt_int(errors)} utterances could not be measured ",
                  dcc.Link("(show them)", href=samples_href(filter='{quality_error} != ""'))],
                 className="small text-warning-emphasis") if errors else None,
    ]), className="mb-3", id=PANEL)


# ---------------------------------------------------------------- the job (runs in the job process)


def file_stamps(paths: np.ndarray) -> bytes:
    """Size and mtime of each distinct local file (a remote or missing one: its name only)."""
    h = hashlib.sha256()
    for p in pd.unique(pd.Series(paths, dtype=object).dropna().astype(str)):
        try:
            st = os.stat(p) if "://" not in p else None
            stamp = f"{st.st_size}:{st.st_mtime_ns}" if st else "remote"
        except OSError:
            stamp = "missing"
        h.update(f"{p}\0{stamp}\n".encode("utf-8", "surrogateescape"))
    return h.digest()


def result_key(rows: pd.DataFrame, kinds: Sequence[str], metrics: bool) -> str:
    """What names a result: every row's segment, every file's stamp, the measures, sde's version."""
    h = hashlib.sha256(f"{__version__}|{','.join(kinds)}|{metrics}".encode())
    segments = rows[[c for c in ("audio_path", "offset", "duration") if c in rows.columns]]
    h.update(pd.util.hash_pandas_object(segments.astype(object), index=False).to_numpy().tobytes())
    h.update(rows["id"].to_numpy(dtype="int64").tobytes() if "id" in rows else b"")
    h.update(file_stamps(rows["audio_path"].to_numpy(dtype=object)))
    return h.hexdigest()


def result_path(folder: str | Path, key: str) -> Path:
    """Where the result named ``key`` lies (the key comes back from the browser: checked first)."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ResultError("Unknown measurement; press Measure again.")
    return Path(folder) / "results" / f"speech-{key}.parquet"


def _write_result(frame: pd.DataFrame, path: Path) -> None:
    write_parquet(frame, path, ".speech-")
    old = sorted(path.parent.glob("speech-*.parquet"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in old[_KEEP_RESULTS:]:
        stale.unlink(missing_ok=True)


def _reporter(set_progress: SetProgress, clock: Callable[[], float], phase: int, phases: int,
              label: str) -> Callable[[int, int], None]:
    """Progress of one phase of the job as a share of the whole, throttled."""
    return throttled_progress(set_progress, clock, clock(), "utterances",
                              lambda pct, bar, status: ((100 * phase + pct) // phases, bar, f"{label}: {status}"))


def measure_job(dataset: Dataset, folder: str | Path, set_progress: SetProgress, *, workers: int | None = None,
                clock: Callable[[], float] = time.monotonic,
                cancel: Callable[[], bool] | None = None) -> dict:
    """The background callback's body: measure (or find cached) and leave the result in ``folder``.
    Returns ``{"key", "rows", "seconds", "cached"}`` for the DONE store, or ``{"error": message}``."""
    table = dataset.utterances
    rows = audio_inputs(table, dataset.tar_shards)
    if rows is None:
        return {"error": "This dataset has no audio paths to measure."}
    kinds = missing_kinds(table)
    metrics = not has_audio_metrics(table)
    workers = workers or measure_workers()   # the server's --threads (capped), as the CLI's --vad
    start = clock()
    set_progress((0, "", f"checking for a cached result of {len(rows):,} utterances …"))
    try:
        key = result_key(rows, kinds, metrics)
        path = result_path(folder, key)
        if path.is_file():
            os.utime(path)  # most recently used: kept longest
            set_progress((100, "cached", "found a cached measurement"))
            return {"key": key, "rows": len(rows), "seconds": round(clock() - start, 2), "cached": True}
        phases = [p for p, wanted in (("segments", bool(kinds)), ("metrics", metrics)) if wanted]
        set_progress((0, "", f"measuring {len(rows):,} utterances {processes_text(workers)} …"))
        frame = pd.DataFrame({"id": rows["id"].to_numpy(dtype="int64") if "id" in rows
                              else np.arange(len(rows), dtype="int64")})
        for i, phase in enumerate(phases):
            label = "speech, loudness, hashes" if phase == "segments" else "audio metrics"
            report = _reporter(set_progress, clock, i, len(phases), label)
            if phase == "segments":
                measured = measure_segments(rows, kinds, workers=workers, callback=report, cancel=cancel)
            else:
                measured = compute_audio_metrics(rows, workers=workers, callback=report)
            for c in measured.columns:
                frame[c] = measured[c].to_numpy() if not isinstance(measured[c].dtype, pd.StringDtype) \
                    else measured[c].astype(object).to_numpy()
        _write_result(frame, path)
    except Cancelled:
        return {"error": "Cancelled."}
    except Exception as exc:  # noqa: BLE001 - the card says what failed instead of a dead job
        log.exception("measuring speech activity failed")
        return {"error": f"Measuring failed: {type(exc).__name__}: {exc}"}
    seconds = clock() - start
    set_progress((100, "done", f"measured {len(rows):,} utterances in {seconds:.1f} s"))
    return {"key": key, "rows": len(rows), "seconds": round(seconds, 2), "cached": False}


# ---------------------------------------------------------------- applying it (server process)


def read_result(folder: str | Path, key: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(segment measures with ``id``, audio metrics with ``id`` or None) of a stored result."""
    path = result_path(folder, key)
    try:
        df = pq.read_table(path).to_pandas()
    except FileNotFoundError:
        raise ResultError("The measurement's results are gone; press Measure again.") from None
    except Exception as exc:  # noqa: BLE001
        raise ResultError(f"Cannot read the measurement's results ({exc}); press Measure again.") from None
    ids = df["id"].to_numpy(dtype="int64")
    segment = pd.DataFrame({"id": ids})
    for c in SEGMENT_COLUMNS:
        if c in df.columns:
            segment[c] = (df[c].astype(pd.StringDtype("pyarrow")).to_numpy() if c in ("audio_hash", "quality_error")
                          else pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64"))
    metrics = metric_columns(df) if all(c in df.columns for c in AUDIO_METRIC_COLUMNS) else None
    return segment, metrics


def apply_result(dataset: Dataset, folder: str | Path, key: str) -> None:
    """Swap a stored result into ``dataset`` in place (kept in ``folder``: it is the cache). A
    dataset measured already (another tab that followed the same job applied it) is left as it is."""
    with _APPLYING:  # the check and the swap together: two tabs applying at once swapped twice
        if not missing_kinds(dataset.utterances) and has_audio_metrics(dataset.utterances):
            result_path(folder, key)  # a key that is not one of ours is still refused
            return
        segment, metrics = read_result(folder, key)
        try:
            apply_segment_measures(dataset, segment,
                                   also=(lambda d: with_audio_metrics(d, metrics)) if metrics is not None else None)
        except (StaleMeasures, StaleMetrics) as exc:
            raise ResultError(f"{str(exc).rstrip('.')}; press Measure again.") from None


# ---------------------------------------------------------------- callbacks


def callbacks(app: dash.Dash, dataset: Dataset, folder: str | Path | None = None,
              *, cache_root: str | Path | None = None) -> None:
    """The job + the swap on ``app``; ``folder`` holds the job queue and the cached results (a
    private temporary folder when None or unusable: results then last as long as the server)."""
    register_job(app, IDS, folder, "speech-jobs", "Measure speech", cache_root,
                 run=lambda set_progress, results: measure_job(dataset, results, set_progress),
                 apply=lambda results, done: apply_result(dataset, results, done.get("key")),
                 refused=ResultError)


__all__ = ["PANEL", "ResultError", "apply_result", "callbacks", "layout", "measure_job", "read_result",
           "result_key", "result_path"]
