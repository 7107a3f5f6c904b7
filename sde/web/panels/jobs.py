"""What the panels share: a button that starts a background job (a Dash background callback run by
a DiskcacheManager in a separate process) with a cancel button, a progress bar and a status line,
and the message shown instead when no folder can hold the job queue; the job's throttled progress,
its result written atomically as Parquet, and the server-side callback that applies the result
and reloads the page (`register_job` wires both callbacks).

Dash starts one job process per click, so two tabs (or a tab reloaded mid-job) would measure the
same audio side by side; `shared_job` makes the later ones follow the running one instead.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import dash
import dash_bootstrap_components as dbc
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from dash import DiskcacheManager, Input, Output, State, ctx, dcc, html, no_update

from sde.cache import CacheUnusable, JobStore, open_job_store
from sde.sources.members import job_audio_table


class JobIds(NamedTuple):
    """The component ids of one panel's job."""

    start: str
    cancel: str
    progress: str
    status: str
    done: str
    reload: str


def job_ids(prefix: str) -> JobIds:
    """`prefix`-start, `prefix`-cancel, …: a panel's ids, prefixed with its name."""
    return JobIds(*(f"{prefix}-{part}" for part in JobIds._fields))


def cancelled_id(ids: JobIds) -> str:
    """The line that says the job was cancelled: apart from the status line, which Dash resets
    when the job ends (after a Cancel, the last poll may still land after any other callback)."""
    return f"{ids.status}-cancelled"


CANCELLED = "Cancelled."


def buttons(ids: JobIds, label: str, disabled: bool = False) -> list[dbc.Button]:
    return [dbc.Button(label, id=ids.start, color="primary", n_clicks=0, disabled=disabled),
            dbc.Button("Cancel", id=ids.cancel, color="secondary", outline=True, disabled=True, n_clicks=0)]


def meter_id(ids: JobIds) -> str:
    """The progress bar as assistive technology sees it (see `progress`)."""
    return f"{ids.progress}-meter"


def progress(ids: JobIds, name: str) -> list:
    """The progress bar named ``name`` and the status line, the store the job's result lands in, and
    the location the panel reloads once the result is applied.

    dbc.Progress puts role="progressbar" on its inner bar and takes no aria-label, so a screen
    reader met an unnamed progress bar: the bar is shown as it is but hidden from assistive
    technology, inside one named progressbar whose value `background_job` keeps in step with it."""
    bar = dbc.Progress(id=ids.progress, value=0, max=100, label="", striped=True, animated=True,
                       style={"height": "1.25rem"})
    return [html.Div(html.Div(bar, **{"aria-hidden": "true"}), id=meter_id(ids), role="progressbar",
                     className="mb-2", **{"aria-label": name, "aria-valuemin": 0, "aria-valuemax": 100,
                                          "aria-valuenow": 0}),
            html.Div(id=ids.status, className="small text-muted"),
            html.Div(id=cancelled_id(ids), className="small text-muted"),
            dcc.Store(id=ids.done),
            dcc.Location(id=ids.reload, refresh=True)]


def jobs_disabled_message(error: Exception) -> str:
    return f"Background jobs are disabled: {error}"


def _register_disabled(app: dash.Dash, ids: JobIds, error: Exception, what: str) -> None:
    """No folder can hold background jobs: the panel's button is disabled and the panel says why
    (once its page renders) instead of the server failing to start."""
    message = jobs_disabled_message(error)
    print(f"warning: {what} is disabled: {error}", file=sys.stderr)

    @app.callback(Output(ids.start, "disabled"), Output(ids.status, "children"), Input(ids.start, "n_clicks"))
    def _explain_disabled(_n):
        return True, dbc.Alert(message, color="warning", className="mb-0 mt-2 small")


def job_queue(app: dash.Dash, ids: JobIds, folder: str | Path | None, name: str, what: str,
              root: str | Path | None = None) -> JobStore | None:
    """The job store of sde.cache.open_job_store, or None when no folder is usable (then the
    panel's button is disabled with the reason, see `_register_disabled`)."""
    try:
        return open_job_store(folder, name, root=root)
    except CacheUnusable as e:
        _register_disabled(app, ids, e, what)
        return None


def background_job(app: dash.Dash, ids: JobIds, jobs: JobStore, *states: State,
                   interval: int | None = None) -> Callable:
    """The decorator of the job's callback: `fn(set_progress, n_clicks, *states)` → the done store.
    While it runs, Start is disabled and Cancel enabled; `set_progress((percent, label, status))`.
    When it ends (done, failed or cancelled) the bar and the status line are reset, and a Cancel
    says so on its own line (see `cancelled_id`)."""
    extra: dict[str, Any] = {"interval": interval} if interval else {}

    @app.callback(Output(cancelled_id(ids), "children"), Input(ids.start, "n_clicks"),
                  Input(ids.cancel, "n_clicks"), prevent_initial_call=True)
    def _say_cancelled(_start, _cancel):
        return CANCELLED if ctx.triggered_id == ids.cancel else ""

    # The named progressbar (see `progress`) says what the bar shows: its percent, and its label
    # ("32 / 300") as the value's text while there is one.
    app.clientside_callback(
        "function (value, label) { return [value || 0, label || null]; }",
        Output(meter_id(ids), "aria-valuenow"), Output(meter_id(ids), "aria-valuetext"),
        Input(ids.progress, "value"), Input(ids.progress, "label"),
        prevent_initial_call=True,
    )

    return app.callback(
        Output(ids.done, "data"),
        Input(ids.start, "n_clicks"),
        *states,
        background=True,
        # Dash names a job's result and progress by its inputs: two tabs that each clicked once
        # would share them, and the first tab to poll takes the other's result. A fresh name per
        # start keeps them apart (read results then expire instead of being deleted).
        manager=DiskcacheManager(jobs.store, cache_by=[lambda: uuid.uuid4().hex], expire=SHARED_RESULT_S),
        progress=[Output(ids.progress, "value"), Output(ids.progress, "label"), Output(ids.status, "children")],
        # Without it the last progress ("32 / 300 utterances · about 20 s left") outlives a cancelled
        # job: the renderer applies these when the job ends, however it ends.
        progress_default=[0, "", ""],
        running=[(Output(ids.start, "disabled"), True, False), (Output(ids.cancel, "disabled"), False, True)],
        cancel=[Input(ids.cancel, "n_clicks")],
        prevent_initial_call=True,
        **extra,
    )


# ---------------------------------------------------------------- the job's side (job process)

SetProgress = Callable[[Sequence[Any]], None]
# set_progress crosses to the server through the job queue: more often than this is wasted work.
PROGRESS_EVERY_S = 0.25


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


def throttled_progress(set_progress: SetProgress, clock: Callable[[], float], start: float, unit: str,
                       shown: Callable[[int, str, str], Sequence[Any]] = lambda *values: values,
                       ) -> Callable[[int, int], None]:
    """``report(done, total)`` for a runner's callback: progress since ``start`` at most every
    PROGRESS_EVERY_S, and always at the end; ``shown`` turns (percent, label, status) into what
    set_progress gets (a job of several phases shows each as its share of the whole)."""
    last = [-math.inf]

    def report(done: int, total: int) -> None:
        now = clock()
        if done < total and now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        set_progress(shown(*progress_values(done, total, now - start, unit)))

    return report


# How often a job that follows another (`shared_job`) looks at it.
FOLLOW_EVERY_S = 0.25
# How long a finished shared job's result waits for the jobs that follow it.
SHARED_RESULT_S = 3600


def _process_stamp(pid: int) -> float | None:
    """When process ``pid`` started (a pid alone may be reused), None when it is gone or a zombie."""
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except psutil.Error:
        return None


def shared_job(store: Any, name: str, set_progress: SetProgress, run: Callable[[SetProgress], dict],
               follow_every_s: float = FOLLOW_EVERY_S) -> dict:
    """``run(set_progress)`` in this job process, unless a live job process already runs ``name``:
    then this one follows it instead, showing its progress and returning its result, so two tabs
    (or a tab reloaded mid-job) share one measurement. ``store`` is the job queue's diskcache,
    which every job process of the server opens. A followed job that dies without a result (its
    tab's Cancel kills it) ends the followers with an error that says so."""
    claim_key = f"sde-shared-job:{name}"
    me = {"pid": os.getpid(), "started": _process_stamp(os.getpid()), "run": uuid.uuid4().hex}
    with store.transact():
        claim = store.get(claim_key)
        if not isinstance(claim, dict) or _process_stamp(claim.get("pid", 0)) != claim.get("started"):
            store.set(claim_key, me)
            claim = me
    progress_key, done_key = f"{claim_key}:progress:{claim['run']}", f"{claim_key}:done:{claim['run']}"
    if claim is not me:
        return _follow(store, claim, progress_key, done_key, set_progress, follow_every_s)

    def shown(values: Sequence[Any]) -> None:
        set_progress(values)
        store.set(progress_key, list(values), expire=SHARED_RESULT_S)

    result: dict = {"error": "The measurement failed in another tab; press the button again."}
    try:
        result = run(shown)
        return result
    finally:
        store.set(done_key, result, expire=SHARED_RESULT_S)
        with store.transact():
            if store.get(claim_key) == me:
                store.delete(claim_key)


def _follow(store: Any, leader: dict, progress_key: str, done_key: str, set_progress: SetProgress,
            every_s: float) -> dict:
    shown = None
    while True:
        alive = _process_stamp(leader["pid"]) == leader["started"]
        # Read after the liveness check: a leader that wrote its result and exited is not a cancel.
        done = store.get(done_key)
        if isinstance(done, dict):
            return done
        if not alive:
            return {"error": "Cancelled in another tab; press the button again to start it anew."}
        values = store.get(progress_key)
        if values is not None and values != shown:
            set_progress(values)
            shown = values
        time.sleep(every_s)


def processes_text(workers: int) -> str:
    """Where a job measures, for its status line (the server's --threads sets how many, as the CLI's)."""
    return "in 1 process" if workers <= 1 else f"in {workers} worker processes"


# What the audio jobs (audio metrics, speech activity) read of each utterance.
AUDIO_INPUT_COLUMNS = ("id", "audio_path", "offset", "duration")


def audio_inputs(table: pd.DataFrame, tars: Sequence[str] = ()) -> pd.DataFrame | None:
    """The columns an audio job reads; None when the dataset has no audio paths to measure. Rows
    of a tarred dataset name their tar member (the jobs' workers open it by that name)."""
    if "audio_path" not in table.columns:
        return None
    return job_audio_table(table, tars)[[c for c in AUDIO_INPUT_COLUMNS if c in table.columns]]


def write_parquet(frame: pd.DataFrame, path: Path, prefix: str) -> None:
    """``frame`` as Parquet at ``path``, atomically (temp file + os.replace): the server that
    applies it never reads half a file, and a job killed mid-write leaves only a temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".parquet.tmp")
    os.close(fd)
    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- the server's side

def reload_target(pathname: Any, search: Any) -> str:
    """The page to reload after the swap: the one shown (only a path of this app, never "//host")."""
    ok = isinstance(pathname, str) and pathname.startswith("/") and not pathname.startswith("//")
    query = search if isinstance(search, str) and search.startswith("?") else ""
    return (pathname if ok else "/") + query


def applied(done: Any, pathname: Any, search: Any, apply: Callable[[dict], None],
            refused: type[Exception]) -> dict:
    """After the job: ``apply(done)`` swaps its result in, then the page reloads; a job error or a
    ``refused`` result (its message says what to do) is shown instead."""
    if not isinstance(done, dict) or not done:
        return {"status": no_update, "reload": no_update}
    if "error" in done:
        return {"status": dbc.Alert(str(done["error"]), color="danger", className="mb-0 mt-2"), "reload": no_update}
    try:
        apply(done)
    except refused as exc:
        return {"status": dbc.Alert(str(exc), color="danger", className="mb-0 mt-2"), "reload": no_update}
    # An href that differs from window.location.href (always: this one is relative) makes a
    # refresh=True Location load it: the same page, rebuilt with the new columns.
    return {"status": "done: reloading …", "reload": reload_target(pathname, search)}


def register_job(app: dash.Dash, ids: JobIds, folder: str | Path | None, queue: str, what: str,
                 root: str | Path | None, run: Callable[[SetProgress, Path], dict],
                 apply: Callable[[Path, dict], None], refused: type[Exception]) -> None:
    """A panel's two callbacks: the background job ``run(set_progress, folder)`` (its dict goes to
    the done store; one at a time per server and panel, see `shared_job`) and, in the server,
    ``apply(folder, done)`` then a reload. ``folder`` holds the job queue and the results (see
    `job_queue`; none usable: the button says why instead). ``apply`` may see the same result
    twice (once per tab that followed the job)."""
    jobs = job_queue(app, ids, folder, queue, what, root=root)
    if jobs is None:
        return
    results = jobs.folder
    # The job queue's folder may be shared by servers of other datasets: the server names the job.
    name = f"{queue}:{os.getpid()}"

    @background_job(app, ids, jobs, interval=500)
    def run_job(set_progress, n_clicks):
        if not n_clicks:
            return no_update
        return shared_job(jobs.store, name, set_progress, lambda shown: run(shown, results))

    @app.callback(
        output={"status": Output(ids.status, "children", allow_duplicate=True), "reload": Output(ids.reload, "href")},
        inputs={"done": Input(ids.done, "data"), "pathname": State(ids.reload, "pathname"),
                "search": State(ids.reload, "search")},
        prevent_initial_call=True,
    )
    def apply_result(done, pathname, search):
        return applied(done, pathname, search, lambda result: apply(results, result), refused)
