"""The "Audio quality" card of the Statistics page: `layout(dataset)` and `callbacks(app, …)`.

Two states:

* the dataset has no audio metric columns: a "Measure audio" button starts a Dash background
  callback (DiskcacheManager: a separate process, with a progress bar and a cancel button) that
  runs :func:`sde.audio.compute_audio_metrics` over every utterance and leaves the result as a
  Parquet file in a handoff folder (written to a temporary name, then ``os.replace``d: the server
  never sees half a file). A regular callback in the server process then reads it back, adds the
  columns to a copy of the utterance table, swaps the dataset in place and reloads the page, so the
  new columns are filterable in Samples and get histograms here. Cancelling kills the job before
  it reports: the dataset is never touched.
* the columns exist (``--estimate-audio-metrics``, or after the job): the summary of
  :func:`sde.audio_quality.audio_quality_summary` — files measured, unreadable files, duration
  mismatches, clipping, sample rates, channels and ASR/TTS readiness, each count linked to the
  Samples rows behind it.

Everything user-supplied (paths, error messages) is rendered as text children, never as HTML.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from dash import dcc, html

from sde.audio import AUDIO_METRIC_COLUMNS, compute_audio_metrics
from sde.audio_quality import (
    StaleMetrics,
    cached_audio_quality_summary,
    count_files,
    has_audio_metrics,
    with_audio_metrics,
)
from sde.engine import settings
from sde.durations import duration_text
from sde.web.components import fmt_float, fmt_int, stat_card
from sde.web.panels.jobs import (
    SetProgress,
    audio_inputs,
    buttons,
    job_ids,
    processes_text,
    progress,
    progress_values,
    register_job,
    throttled_progress,
    write_parquet,
)
from sde.web.state import samples_href

if TYPE_CHECKING:  # pragma: no cover
    import dash

    from sde.dataset import Dataset

log = logging.getLogger(__name__)

PANEL = "audioq-panel"
IDS = job_ids("audioq")
START, CANCEL, PROGRESS, STATUS, DONE, RELOAD = IDS
# Value ids of the measured state (tests and the browser test read them).
FILES = "audioq-files"
UNREADABLE = "audioq-unreadable"
MISMATCH = "audioq-mismatch"
CLIPPED = "audioq-clipped"
RATES = "audioq-rates"
CHANNELS = "audioq-channels"
READINESS = "audioq-readiness"

_TOKEN = re.compile(r"[0-9a-f]{32}")
_STALE_TMP_S = 3600.0
# Each tab that followed a job applies its result: one at a time, and the later ones find it applied.
_APPLYING = threading.Lock()


class HandoffError(Exception):
    """The measurement cannot be applied; ``str(exc)`` says why and what to do, for users."""


# ---------------------------------------------------------------- layout

def layout(dataset: Dataset) -> dbc.Card:
    """The card: the measure button when the dataset has no audio metrics, else their summary."""
    summary = cached_audio_quality_summary(dataset)
    if summary["measured"]:
        return _summary_card(summary)
    return _measure_card(summary["utterances"], summary["files"])


def _title(right: Any = None) -> html.Div:
    return html.Div([
        html.H5("Audio quality", className="card-title mb-0"),
        right,
    ], className="d-flex justify-content-between align-items-baseline mb-2")


def _unit(n_rows: int, n_files: int) -> str:
    # Progress counts rows; call them files when every row is its own file.
    return "files" if n_rows == n_files else "utterances"


def _measure_card(n_rows: int, n_files: int) -> dbc.Card:
    files = f"{n_files:,} file" + ("" if n_files == 1 else "s")
    if n_rows != n_files:
        files += f", {n_rows:,} utterances"
    return dbc.Card(dbc.CardBody([
        _title(),
        html.P(f"Measure sample rate, levels, clipping, silence and bandwidth of every file ({files}).",
               className="mb-1"),
        html.P("The measurements become columns you can filter on in Samples, with histograms on this "
               "page (the same as starting sde with --estimate-audio-metrics).",
               className="small text-muted mb-2"),
        html.Div(buttons(IDS, "Measure audio", disabled=n_rows == 0), className="d-flex gap-2 mb-2"),
        *progress(IDS, "Audio measurement progress"),
    ]), className="mb-3", id=PANEL)


def _count_sub(n: int, filter_text: str, what: str) -> Any:
    if not n:
        return what
    return [what, " · ", dcc.Link("show them", href=samples_href(filter=filter_text))]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str) -> dbc.Table:
    return dbc.Table([
        html.Thead(html.Tr([html.Th(h) for h in header])),
        html.Tbody([html.Tr([html.Td(c) for c in row]) for row in rows]),
    ], size="sm", hover=True, className="mb-0 small", id=table_id)


def _rate_label(rate: float) -> str:
    return f"{rate / 1000:g} kHz"


def _fmt_hours(hours: float | None) -> str:
    # duration_text fails on None and says "inf h" for inf: a rate without durations shows a dash
    return duration_text(hours) if hours is not None and math.isfinite(hours) else "–"


def _readiness_alert(name: str, r: dict) -> dbc.Alert:
    color = {"ok": "success", "warning": "warning"}.get(r["status"], "secondary")
    body: list[Any] = [html.Strong(f"{name}: "), r["message"]]
    if r["status"] == "warning" and r["utterances"]:
        body += [" · ", dcc.Link("show them", href=samples_href(filter=r["filter"]), className="alert-link")]
    return dbc.Alert(body, color=color, className="py-2 px-3 mb-2 small", id=f"audioq-ready-{r['kind']}")


def _summary_card(s: dict) -> dbc.Card:
    unread, mism, clip = s["unreadable"], s["duration_mismatch"], s["clipped"]
    files_sub = f"{fmt_int(s['measured_utterances'])} of {fmt_int(s['utterances'])} utterances readable"
    cards = [
        stat_card("Files measured", fmt_int(s["measured_files"]), value_id=FILES, sub=files_sub),
        stat_card("Unreadable or missing", fmt_int(unread["utterances"]), value_id=UNREADABLE,
                  tone="danger" if unread["utterances"] else None,
                  sub=_count_sub(unread["utterances"], unread["filter"],
                                 f"{fmt_int(unread['files'])} file" + ("" if unread["files"] == 1 else "s"))),
        stat_card(f"Duration mismatch > {mism['tolerance_s']:g} s", fmt_int(mism["utterances"]),
                  value_id=MISMATCH, tone="warning" if mism["utterances"] else None,
                  sub=_count_sub(mism["utterances"], mism["filter"],
                                 f"largest {fmt_float(mism['max_abs_diff_s'], 2)} s"
                                 if mism["max_abs_diff_s"] is not None else "manifest vs audio")),
        stat_card("Clipped utterances", fmt_int(clip["utterances"]), value_id=CLIPPED,
                  tone="warning" if clip["utterances"] else None,
                  sub=_count_sub(clip["utterances"], clip["filter"],
                                 f"> {clip['threshold'] * 100:g}% of samples at full scale")),
    ]
    rates = _table(["sample rate", "files", "utterances", "duration"],
                   [[dcc.Link(_rate_label(r["sample_rate"]),
                              href=samples_href(filter=f"{{sample_rate}} = {r['sample_rate']}")),
                     fmt_int(r["files"]), fmt_int(r["utterances"]), _fmt_hours(r["hours"])]
                    for r in s["sample_rates"]], RATES)
    channels = _table(["channels", "files", "utterances", "duration"],
                      [[dcc.Link({1: "mono", 2: "stereo"}.get(r["channels"], str(r["channels"])),
                                 href=samples_href(filter=f"{{channels}} = {r['channels']}")),
                        fmt_int(r["files"]), fmt_int(r["utterances"]), _fmt_hours(r["hours"])]
                       for r in s["channels"]], CHANNELS)
    lv = s["levels"]
    levels = html.P(
        f"Medians: peak {fmt_float(lv['median_peak_dbfs'], 1)} dBFS · RMS {fmt_float(lv['median_rms_dbfs'], 1)} dBFS"
        f" · leading silence {fmt_float(lv['median_silence_start_s'], 2)} s"
        f" · trailing silence {fmt_float(lv['median_silence_end_s'], 2)} s"
        f" · bandwidth {fmt_float((lv['median_bandwidth_hz'] or math.nan) / 1000, 1)} kHz",
        className="small text-muted mb-2", id="audioq-levels")
    reasons = None
    if unread["reasons"]:
        reasons = html.Div([
            html.Div("Why files could not be read:", className="small fw-semibold"),
            html.Ul([html.Li(f"{r['reason']} ({fmt_int(r['utterances'])})") for r in unread["reasons"]],
                    className="small mb-2", id="audioq-reasons"),
        ])
    return dbc.Card(dbc.CardBody([
        _title(html.A("JSON", href="/api/audio-quality", className="link-secondary small")),
        dbc.Row([dbc.Col(c, xs=6, lg=3, className="mb-2") for c in cards], className="g-2 mb-1"),
        html.Div([_readiness_alert("ASR", s["readiness"]["asr"]),
                  _readiness_alert("TTS", s["readiness"]["tts"])], id=READINESS),
        levels,
        reasons,
        dbc.Row([
            dbc.Col([html.Div("Sample rates", className="small fw-semibold"), rates], md=6, className="mb-2"),
            dbc.Col([html.Div("Channels", className="small fw-semibold"), channels], md=6, className="mb-2"),
        ], className="g-3"),
    ]), className="mb-3", id=PANEL)


# ---------------------------------------------------------------- the job (runs in the job process)

def handoff_path(handoff_dir: str | Path, token: str) -> Path:
    """Where the job with `token` leaves its result. The token comes back from the browser, so it
    is checked to be one of ours (32 hex digits) before it becomes part of a path."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise HandoffError("Unknown measurement; press Measure audio again.")
    return Path(handoff_dir) / f"audioq-{token}.parquet"


def write_handoff(metrics: pd.DataFrame, handoff_dir: str | Path, token: str) -> Path:
    """Write `metrics` as Parquet under the job's name atomically (temp file + os.replace)."""
    final = handoff_path(handoff_dir, token)
    write_parquet(metrics, final, ".audioq-")
    return final


def _clean_stale(handoff_dir: Path) -> None:
    """Temp files of jobs killed mid-write, and results never applied (cancelled, tab closed)."""
    now = time.time()
    for p in handoff_dir.glob("*audioq-*.parquet*"):
        try:
            if now - p.stat().st_mtime > _STALE_TMP_S:
                p.unlink()
        except OSError:
            pass


def measure_audio_job(dataset: Dataset, handoff_dir: str | Path, set_progress: SetProgress, *,
                      workers: int | None = None, clock: Callable[[], float] = time.monotonic) -> dict:
    """The background callback's body: measure every utterance, leave the result in `handoff_dir`.

    Returns what goes to the DONE store: ``{"token", "rows", "seconds"}``, or ``{"error": message}``.
    ``set_progress((percent, label, status))`` is called as results come in (throttled).
    """
    handoff_dir = Path(handoff_dir)
    rows = audio_inputs(dataset.utterances, dataset.tar_shards)
    if rows is None:
        return {"error": "This dataset has no audio paths to measure."}
    total = len(rows)
    unit = _unit(total, count_files(rows))
    workers = workers or settings().processes   # the server's --threads, as the CLI's --estimate-audio-metrics
    start = clock()
    report = throttled_progress(set_progress, clock, start, unit)
    set_progress((0, "", f"measuring {total:,} {unit} {processes_text(workers)} …"))
    try:
        handoff_dir.mkdir(parents=True, exist_ok=True)
        _clean_stale(handoff_dir)
        metrics = compute_audio_metrics(rows, workers=workers, callback=report)
        metrics.insert(0, "id", rows["id"].to_numpy(dtype="int64") if "id" in rows.columns
                       else np.arange(total, dtype="int64"))
        token = uuid.uuid4().hex
        write_handoff(metrics, handoff_dir, token)
    except Exception as exc:
        log.exception("measuring audio failed")
        return {"error": f"Measuring the audio failed: {type(exc).__name__}: {exc}"}
    seconds = clock() - start
    set_progress(progress_values(total, total, seconds, unit))
    return {"token": token, "rows": total, "seconds": round(seconds, 2)}


# ---------------------------------------------------------------- applying it (server process)

def read_handoff(handoff_dir: str | Path, token: str) -> pd.DataFrame:
    """The job's result: `id` + AUDIO_METRIC_COLUMNS with sde's dtypes."""
    path = handoff_path(handoff_dir, token)
    try:
        df = pq.read_table(path).to_pandas()
    except FileNotFoundError:
        raise HandoffError("The measurement's results are gone (already applied, or the server restarted); "
                           "reload the page.") from None
    except Exception as exc:  # noqa: BLE001
        raise HandoffError(f"Cannot read the measurement's results ({exc}); press Measure audio again.") from None
    missing = [c for c in ("id", *AUDIO_METRIC_COLUMNS) if c not in df.columns]
    if missing:
        raise HandoffError(f"The measurement's results lack {', '.join(missing)}; press Measure audio again.")
    return metric_columns(df)


def metric_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``id`` + AUDIO_METRIC_COLUMNS of a stored result, with sde's dtypes (Parquet keeps NaN,
    not the missing values of a boolean, and object columns for strings)."""
    out = pd.DataFrame({"id": df["id"].to_numpy(dtype="int64")})
    for c in AUDIO_METRIC_COLUMNS:
        if c == "duration_mismatch":
            out[c] = df[c].fillna(False).to_numpy(dtype=bool)
        elif c == "audio_error":
            out[c] = df[c].astype(pd.StringDtype("pyarrow")).reset_index(drop=True)
        else:
            out[c] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64")
    return out


def apply_measurement(dataset: Dataset, handoff_dir: str | Path, token: str) -> None:
    """Read the job's result, swap `dataset` in place (every holder sees the new columns; caches
    built from the old table are dropped with it) and delete the handoff file. A result another
    tab already applied (both followed one job) is left at that."""
    with _APPLYING:
        if not has_audio_metrics(dataset.utterances):
            metrics = read_handoff(handoff_dir, token)
            try:
                measured = with_audio_metrics(dataset, metrics)
            except StaleMetrics as e:
                raise HandoffError(f"{str(e).rstrip('.')}; press Measure audio again.") from None
            dataset.replace_with(measured)
        handoff_path(handoff_dir, token).unlink(missing_ok=True)


# ---------------------------------------------------------------- callbacks

def callbacks(app: dash.Dash, dataset: Dataset, handoff_dir: str | Path | None = None,
              *, cache_root: str | Path | None = None) -> None:
    """The background job + the swap, registered on `app`. `handoff_dir` holds the job queue and
    the results in transit (a private temporary folder when None or unusable, or when `cache_root`,
    the cache folder it lies in, is refused; when no folder is usable, the button says why
    instead: see sde.cache.open_job_store)."""
    register_job(app, IDS, handoff_dir, "audioq-jobs", "Measure audio", cache_root,
                 run=lambda set_progress, handoff: measure_audio_job(dataset, handoff, set_progress),
                 apply=lambda handoff, done: apply_measurement(dataset, handoff, done.get("token")),
                 refused=HandoffError)


__all__ = [
    "HandoffError",
    "apply_measurement",
    "callbacks",
    "handoff_path",
    "layout",
    "measure_audio_job",
    "read_handoff",
    "write_handoff",
]
