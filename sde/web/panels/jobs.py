"""What the panels share: a button that starts a background job (a Dash background callback run by
a DiskcacheManager in a separate process) with a cancel button, a progress bar and a status line,
and the message shown instead when no folder can hold the job queue.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

import dash
import dash_bootstrap_components as dbc
from dash import DiskcacheManager, Input, Output, State, dcc, html

from sde.cache import CacheUnusable, JobStore, open_job_store


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


def buttons(ids: JobIds, label: str, disabled: bool = False) -> list[dbc.Button]:
    return [dbc.Button(label, id=ids.start, color="primary", n_clicks=0, disabled=disabled),
            dbc.Button("Cancel", id=ids.cancel, color="secondary", outline=True, disabled=True, n_clicks=0)]


def progress(ids: JobIds) -> list:
    """The progress bar and status line, the store the job's result lands in, and the location the
    panel reloads once the result is applied."""
    return [dbc.Progress(id=ids.progress, value=0, max=100, label="", striped=True, animated=True,
                         className="mb-2", style={"height": "1.25rem"}),
            html.Div(id=ids.status, className="small text-muted"),
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
    While it runs, Start is disabled and Cancel enabled; `set_progress((percent, label, status))`."""
    extra: dict[str, Any] = {"interval": interval} if interval else {}
    return app.callback(
        Output(ids.done, "data"),
        Input(ids.start, "n_clicks"),
        *states,
        background=True,
        manager=DiskcacheManager(jobs.store),
        progress=[Output(ids.progress, "value"), Output(ids.progress, "label"), Output(ids.status, "children")],
        running=[(Output(ids.start, "disabled"), True, False), (Output(ids.cancel, "disabled"), False, True)],
        cancel=[Input(ids.cancel, "n_clicks")],
        prevent_initial_call=True,
        **extra,
    )
