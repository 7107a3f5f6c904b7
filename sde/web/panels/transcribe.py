"""The "Transcribe with NeMo" panel, shown on the Statistics page when a dataset has no predictions:
`layout(dataset)` and `callbacks(app, dataset, cache_dir)`.

The transcription runs as a Dash background callback (DiskcacheManager: a separate process, with a
progress bar and a cancel button). The job stores its predictions in sde's predictions cache; when it
finishes, a regular callback in the server process reads them back, scores them, swaps the dataset in
place and reloads the page, so the error-analysis views appear without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import dash_bootstrap_components as dbc
from dash import Input, Output, State, html, no_update

from sde.nemo import model as transcribe
from sde.nemo.jobs import predictions_for, transcribe_dataset
from sde.web.panels.jobs import background_job, buttons, job_ids, job_queue, progress, shared_job

if TYPE_CHECKING:  # pragma: no cover
    import dash

    from sde.dataset import Dataset

log = logging.getLogger(__name__)

MODEL = "transcribe-model"
DEVICE = "transcribe-device"
IDS = job_ids("transcribe")
START, CANCEL, PROGRESS, STATUS, DONE, RELOAD = IDS
_APPLYING = threading.Lock()


def layout(dataset: "Dataset") -> dbc.Card | None:
    """The panel, or None when the dataset already has predictions."""
    if dataset.hypotheses:
        return None
    header = html.H5("No predictions in this manifest", className="card-title")
    if not transcribe.nemo_available():
        return dbc.Card(dbc.CardBody([
            header,
            html.P("Error analysis needs a hypothesis field (pred_text). Either restart sde with "
                   "--predictions FILE, or install NeMo and transcribe here:"),
            html.Pre('pip install "sde[nemo]"', className="mb-0"),
        ]), className="mb-3 border-warning", id="transcribe-panel")
    return dbc.Card(dbc.CardBody([
        header,
        html.P("Transcribe every utterance with a NeMo ASR model (a pretrained name, or the path of a "
               ".nemo file on this machine); the error-analysis pages appear when it finishes."),
        dbc.Row([
            dbc.Col(dbc.Input(id=MODEL, value=transcribe.DEFAULT_MODEL, type="text",
                              placeholder="model name or /path/to/model.nemo"), md=6),
            dbc.Col(dbc.Select(id=DEVICE, value="auto", options=[
                {"label": "device: auto (GPU when there is one)", "value": "auto"},
                {"label": "device: CPU", "value": "cpu"},
                {"label": "device: CUDA", "value": "cuda"},
            ]), md=3),
            dbc.Col(html.Div(buttons(IDS, "Transcribe with NeMo"), className="d-flex gap-2"), md=3),
        ], className="g-2 mb-2"),
        *progress(IDS, "Transcription progress"),
    ]), className="mb-3 border-primary", id="transcribe-panel")


def callbacks(app: "dash.Dash", dataset: "Dataset", cache_dir: str | Path | None = None) -> None:
    """Background job + the swap. `cache_dir` is where predictions are handed over (and kept); a
    private temporary folder when None or unusable (see sde.cache.open_job_store)."""
    jobs = job_queue(app, IDS, cache_dir, "background-jobs", "Transcribe with NeMo")
    if jobs is None:
        return
    handoff = jobs.folder

    server = os.getpid()  # the queue's folder may be shared by servers of other datasets

    @background_job(app, IDS, jobs, State(MODEL, "value"), State(DEVICE, "value"))
    def run_transcription(set_progress, n_clicks, model, device):
        if not n_clicks or not model:
            return no_update
        model, device = model.strip(), device or "auto"

        def run(shown) -> dict:
            def report(done: int, total: int) -> None:
                pct = int(100 * done / total) if total else 100
                shown((pct, f"{done:,} / {total:,}", f"transcribing with {model} …"))

            shown((0, "", f"loading {model} …"))
            try:
                predictions_for(dataset, model, device=device, cache_dir=handoff, on_progress=report, warn=log.warning)
            except transcribe.TranscribeError as e:
                return {"error": str(e)}
            return {"model": model}

        # Two tabs transcribing with the same model share one run (see shared_job).
        return shared_job(jobs.store, f"transcribe:{server}:{device}:{model}", set_progress, run)

    @app.callback(
        output={"status": Output(STATUS, "children", allow_duplicate=True), "reload": Output(RELOAD, "href")},
        inputs={"done": Input(DONE, "data")},
        prevent_initial_call=True,
    )
    def apply_predictions(done):
        return applied(dataset, handoff, done)


def applied(dataset: "Dataset", handoff: Path, done: dict | None) -> dict:
    """After the job: score its predictions, swap the dataset in place and reload, or say why not."""
    if not done:
        return {"status": no_update, "reload": no_update}
    if "error" in done:
        return {"status": dbc.Alert(done["error"], color="danger", className="mb-0 mt-2"), "reload": no_update}
    with _APPLYING:
        # Another tab that followed the same job applied it: scoring the scored dataset again would
        # ask the cache for predictions of a dataset it has none for, and transcribe in the server.
        if not dataset.hypotheses:
            # The job left the predictions in the cache: this reads them back, it does not transcribe.
            dataset.replace_with(transcribe_dataset(dataset, done["model"], cache_dir=handoff, warn=log.warning))
    return {"status": "done: scoring finished, reloading …", "reload": "/"}
