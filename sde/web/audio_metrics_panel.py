"""The "Audio quality" card of the Statistics page.

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

import dataclasses
import logging
import math
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from sde.audio import AUDIO_METRIC_COLUMNS
from sde.audio_quality import (
    cached_audio_quality_summary,
    count_files,
    has_audio_metrics,
)
from sde.web.components import fmt_float, fmt_int, stat_card

if TYPE_CHECKING:  # pragma: no cover
    import dash

    from sde.dataset import Dataset

log = logging.getLogger(__name__)

PANEL = "audioq-panel"
START = "audioq-start"
CANCEL = "audioq-cancel"
PROGRESS = "audioq-progress"
STATUS = "audioq-status"
DONE = "audioq-done"
RELOAD = "audioq-reload"
# Value ids of the measured state (tests and the browser test read them).
FILES = "audioq-files"
UNREADABLE = "audioq-unreadable"
MISMATCH = "audioq-mismatch"
CLIPPED = "audioq-clipped"
RATES = "audioq-rates"
CHANNELS = "audioq-channels"
READINESS = "audioq-readiness"

INPUT_COLUMNS = ("id", "audio_path", "offset", "duration")
_TOKEN = re.compile(r"[0-9a-f]{32}")
_PROGRESS_EVERY_S = 0.25
_STALE_TMP_S = 3600.0

SetProgress = Callable[[Sequence[Any]], None]


class HandoffError(Exception):
    """The measurement cannot be applied; ``str(exc)`` says why and what to do, for users."""


# ---------------------------------------------------------------- layout

def samples_href(filter_text: str) -> str:
    return "/samples?" + urlencode({"filter": filter_text})


def cached_summary(dataset: Dataset) -> dict:
    """The dataset's audio-quality summary, computed once per utterance table."""
    return cached_audio_quality_summary(dataset)


def audio_metrics_panel(dataset: Dataset) -> dbc.Card:
    """The card: the measure button when the dataset has no audio metrics, else their summary."""
    summary = cached_summary(dataset)
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
        html.Div([
            dbc.Button("Measure audio", id=START, color="primary", n_clicks=0, disabled=n_rows == 0),
            dbc.Button("Cancel", id=CANCEL, color="secondary", outline=True, disabled=True, n_clicks=0),
        ], className="d-flex gap-2 mb-2"),
        dbc.Progress(id=PROGRESS, value=0, max=100, label="", striped=True, animated=True,
                     className="mb-2", style={"height": "1.25rem"}),
        html.Div(id=STATUS, className="small text-muted"),
        dcc.Store(id=DONE),
        dcc.Location(id=RELOAD, refresh=True),
    ]), className="mb-3", id=PANEL)


def _count_sub(n: int, filter_text: str, what: str) -> Any:
    if not n:
        return what
    return [what, " · ", dcc.Link("show them", href=samples_href(filter_text))]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str) -> dbc.Table:
    return dbc.Table([
        html.Thead(html.Tr([html.Th(h) for h in header])),
        html.Tbody([html.Tr([html.Td(c) for c in row]) for row in rows]),
    ], size="sm", hover=True, className="mb-0 small", id=table_id)


def _rate_label(rate: float) -> str:
    return f"{rate / 1000:g} kHz"


def _fmt_hours(hours: float | None) -> str:
    if hours is None or not math.isfinite(hours):
        return "–"
    if hours >= 1:
        return f"{hours:,.2f} h"
    if hours * 60 >= 1:
        return f"{hours * 60:.1f} min"
    return f"{hours * 3600:.1f} s"


def _readiness_alert(name: str, r: dict) -> dbc.Alert:
    color = {"ok": "success", "warning": "warning"}.get(r["status"], "secondary")
    body: list[Any] = [html.Strong(f"{name}: "), r["message"]]
    if r["status"] == "warning" and r["utterances"]:
        body += [" · ", dcc.Link("show them", href=samples_href(r["filter"]), className="alert-link")]
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
                              href=samples_href(f"{{sample_rate}} = {r['sample_rate']}")),
                     fmt_int(r["files"]), fmt_int(r["utterances"]), _fmt_hours(r["hours"])]
                    for r in s["sample_rates"]], RATES)
    channels = _table(["channels", "files", "utterances", "duration"],
                      [[dcc.Link({1: "mono", 2: "stereo"}.get(r["channels"], str(r["channels"])),
                                 href=samples_href(f"{{channels}} = {r['channels']}")),
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
    import pyarrow as pa
    import pyarrow.parquet as pq

    final = handoff_path(handoff_dir, token)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".audioq-", suffix=".parquet.tmp")
    os.close(fd)
    try:
        pq.write_table(pa.Table.from_pandas(metrics, preserve_index=False), tmp)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return ""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"about {minutes} min {sec:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


def progress_values(done: int, total: int, elapsed: float, unit: str = "files") -> tuple[int, str, str]:
    """(percent, bar label, status line) for the progress outputs."""
    pct = int(100 * done / total) if total else 100
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [f"{done:,} / {total:,} {unit}"]
    if rate > 0:
        parts.append(f"{rate:,.1f} {unit}/s")
        if done < total:
            parts.append(_eta((total - done) / rate))
    return pct, f"{done:,} / {total:,}", " · ".join(p for p in parts if p)


def measure_audio_job(dataset: Dataset, handoff_dir: str | Path, set_progress: SetProgress, *,
                      workers: int | None = None, clock: Callable[[], float] = time.monotonic) -> dict:
    """The background callback's body: measure every utterance, leave the result in `handoff_dir`.

    Returns what goes to the DONE store: ``{"token", "rows", "seconds"}``, or ``{"error": message}``.
    ``set_progress((percent, label, status))`` is called as results come in (throttled).
    """
    handoff_dir = Path(handoff_dir)
    table = dataset.utterances
    missing = [c for c in ("audio_path",) if c not in table.columns]
    if missing:
        return {"error": "This dataset has no audio paths to measure."}
    rows = table[[c for c in INPUT_COLUMNS if c in table.columns]]
    total = len(rows)
    unit = _unit(total, count_files(rows))
    workers = workers or min(2, os.cpu_count() or 1)
    start = clock()
    last = [-math.inf]

    def report(done: int, n: int) -> None:
        now = clock()
        if done < n and now - last[0] < _PROGRESS_EVERY_S:
            return
        last[0] = now
        set_progress(progress_values(done, n, now - start, unit))

    set_progress((0, "", f"measuring {total:,} {unit} …"))
    try:
        from sde.audio import compute_audio_metrics

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
    import pyarrow.parquet as pq

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
    out = pd.DataFrame({"id": df["id"].to_numpy(dtype="int64")})
    for c in AUDIO_METRIC_COLUMNS:
        if c == "duration_mismatch":
            out[c] = df[c].fillna(False).to_numpy(dtype=bool)
        elif c == "audio_error":
            out[c] = df[c].astype(pd.StringDtype("pyarrow")).reset_index(drop=True)
        else:
            out[c] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64")
    return out


def with_audio_metrics(dataset: Dataset, metrics: pd.DataFrame) -> Dataset:
    """A copy of `dataset` whose utterance table carries the audio metric columns of `metrics`
    (matched by utterance id). Manifest fields that share a metric's name are kept as
    ``manifest_<name>``, as `build_dataset` does; existing metric columns are replaced."""
    table = dataset.utterances.copy()
    ids = table["id"].to_numpy(dtype="int64") if "id" in table.columns else np.arange(len(table))
    mids = metrics["id"].to_numpy(dtype="int64")
    if len(mids) == len(ids) and np.array_equal(mids, ids):
        order = None
    else:
        pos = pd.Index(mids).get_indexer(ids)
        if len(mids) != len(ids) or (pos < 0).any():
            raise HandoffError("The dataset changed while its audio was being measured; "
                               "press Measure audio again.")
        order = pos
    replace = has_audio_metrics(table)
    for c in AUDIO_METRIC_COLUMNS:
        if c in table.columns and not replace:
            table = table.rename(columns={c: f"manifest_{c}"})
    for c in AUDIO_METRIC_COLUMNS:
        values = metrics[c]
        if order is not None:
            values = values.iloc[order]
        table[c] = pd.Series(values.to_numpy(), index=table.index, dtype=metrics[c].dtype)
    options = dataset.options
    if hasattr(options, "estimate_audio_metrics"):
        options = dataclasses.replace(options, estimate_audio_metrics=True)
    return dataclasses.replace(dataset, utterances=table, options=options, _queries={}, _lock=threading.Lock())


def apply_measurement(dataset: Dataset, handoff_dir: str | Path, token: str) -> None:
    """Read the job's result, swap `dataset` in place (every holder sees the new columns), drop the
    page caches built from the old table, and delete the handoff file."""
    metrics = read_handoff(handoff_dir, token)
    dataset.replace_with(with_audio_metrics(dataset, metrics))
    # Statistics caches its histograms per dataset object: the new columns need new ones.
    dataset.__dict__.pop("_sde_web_cache", None)
    handoff_path(handoff_dir, token).unlink(missing_ok=True)


# ---------------------------------------------------------------- callbacks

def jobs_disabled_message(error: Exception) -> str:
    return f"Background jobs are disabled: {error}"


def register_jobs_disabled(app: dash.Dash, start: str, status: str, error: Exception, what: str) -> None:
    """No folder can hold background jobs: the panel's button is disabled and the panel says why
    (once its page renders) instead of the server failing to start."""
    from sde.cache import _stderr_warning

    message = jobs_disabled_message(error)
    _stderr_warning(f"{what} is disabled: {error}")

    @app.callback(Output(start, "disabled"), Output(status, "children"), Input(start, "n_clicks"))
    def _explain_disabled(_n):
        return True, dbc.Alert(message, color="warning", className="mb-0 mt-2 small")


def register_audio_metrics_callbacks(app: dash.Dash, dataset: Dataset, handoff_dir: str | Path | None = None,
                                     *, cache_root: str | Path | None = None) -> None:
    """The background job + the swap, registered on `app`. `handoff_dir` holds the job queue and
    the results in transit (a private temporary folder when None or unusable, or when `cache_root`,
    the cache folder it lies in, is refused; when no folder is usable, the button says why
    instead: see sde.cache.open_job_store)."""
    from dash import DiskcacheManager

    from sde.cache import CacheUnusable, open_job_store

    try:
        jobs = open_job_store(handoff_dir, "audioq-jobs", root=cache_root)
    except CacheUnusable as e:
        register_jobs_disabled(app, START, STATUS, e, "Measure audio")
        return
    handoff = jobs.folder
    manager = DiskcacheManager(jobs.store)

    @app.callback(
        Output(DONE, "data"),
        Input(START, "n_clicks"),
        background=True,
        manager=manager,
        interval=500,
        progress=[Output(PROGRESS, "value"), Output(PROGRESS, "label"), Output(STATUS, "children")],
        running=[(Output(START, "disabled"), True, False), (Output(CANCEL, "disabled"), False, True)],
        cancel=[Input(CANCEL, "n_clicks")],
        prevent_initial_call=True,
    )
    def measure_audio(set_progress, n_clicks):
        if not n_clicks:
            return no_update
        return measure_audio_job(dataset, handoff, set_progress)

    @app.callback(
        Output(STATUS, "children", allow_duplicate=True),
        Output(RELOAD, "href"),
        Input(DONE, "data"),
        State(RELOAD, "pathname"),
        State(RELOAD, "search"),
        prevent_initial_call=True,
    )
    def apply_audio_metrics(done, pathname, search):
        if not isinstance(done, dict) or not done:
            return no_update, no_update
        if "error" in done:
            return dbc.Alert(str(done["error"]), color="danger", className="mb-0 mt-2"), no_update
        try:
            apply_measurement(dataset, handoff, done.get("token"))
        except HandoffError as e:
            return dbc.Alert(str(e), color="danger", className="mb-0 mt-2"), no_update
        # An href that differs from window.location.href (always: this one is relative) makes a
        # refresh=True Location load it: the same page, rebuilt with the new columns.
        ok = isinstance(pathname, str) and pathname.startswith("/") and not pathname.startswith("//")
        path = pathname if ok else "/"
        query = search if isinstance(search, str) and search.startswith("?") else ""
        return "done: reloading …", path + query


__all__ = [
    "HandoffError",
    "apply_measurement",
    "audio_metrics_panel",
    "cached_summary",
    "handoff_path",
    "measure_audio_job",
    "progress_values",
    "read_handoff",
    "register_audio_metrics_callbacks",
    "register_jobs_disabled",
    "samples_href",
    "with_audio_metrics",
    "write_handoff",
]
