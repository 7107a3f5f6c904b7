"""The Statistics page's "Suspicious utterances" card: counts of transcripts that loop, hypotheses
that hallucinate, rates no speaker reaches, empty references, duplicates; each count links to the
Samples rows behind it (the flag's filter). JSON twin: ``/api/suspicious``.

The columns behind it are computed on first use (``sde.quality.apply.quality_frame``: ~20 s per
million utterances with two hypotheses, minutes at 10M), so the card starts that computation on a
background thread and polls until it is done, saying how long it has been running: the Statistics
page never waits for it, and no request is held open for minutes (a proxy in front of sde may cut
one). Once computed (until the dataset's tables change) the card renders at once. Counting does
not add the columns to the dataset; following a count's link does (a filter naming them, see
sde.web.api.quality).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, dcc, html, no_update

from sde.caching import for_dataset, keeping
from sde.quality.apply import quality_frame, speech_hours
from sde.quality.suspicious import suspicious_summary
from sde.durations import duration_text
from sde.web.components import fmt_int
from sde.web.panels.background import FIRST_WAIT_S, POLL_MS, in_background
from sde.web.state import samples_href

if TYPE_CHECKING:  # pragma: no cover
    import dash

    from sde.dataset import Dataset

PANEL = "suspicious-panel"
BODY = "suspicious-body"
TRIGGER = "suspicious-trigger"
POLL = "suspicious-poll"
FLAGS_TABLE = "suspicious-flags"
DUPLICATES = "suspicious-duplicates"
SPEECH = "suspicious-speech"
KINDS = ("duplicates", "suspicious")


def flag_id(flag: str) -> str:
    return f"suspicious-count-{flag}"


def summary(dataset: Dataset) -> dict[str, Any]:
    """The ``/api/suspicious`` JSON: every flag with its count and filter, the duplicate counts,
    speech hours when measured (computing the columns first when needed)."""
    # Counted once per generation of the tables, from the columns computed beside the dataset
    # (not added to it: that would rebuild every page's view of it while they are being used), and
    # kept with its build (minutes of work at 10M utterances: a later start reads the counts).
    with keeping():
        return for_dataset(dataset, "suspicious", 1, kept=1).get_or_compute_once("summary", lambda: _summary(dataset))


def _summary(dataset: Dataset) -> dict[str, Any]:
    # each kind's columns read where they are kept: joined, they were copied (~1 GB at 10M rows)
    duplicates, checks = (quality_frame(dataset, kind) for kind in KINDS)
    flags = suspicious_summary(checks)
    dup: dict[str, Any] = {}
    for kind in ("text", "audio"):
        col = f"dup_{kind}_group"
        groups = duplicates[col]
        dup[kind] = {"groups": int(groups.nunique(dropna=True)), "utterances": int(groups.notna().sum()),
                     "filter": f"{{{col}}} is not null"}
    conflicts = int(duplicates["dup_audio_text_conflict"].sum())
    dup["audio_text_conflict"] = {"utterances": conflicts, "filter": "{dup_audio_text_conflict} = true"}
    dup["audio_measured"] = "audio_hash" in dataset.utterances.columns
    hours = speech_hours(dataset.utterances)
    return {"utterances": int(len(checks)), "flags": flags, "duplicates": dup,
            "speech_hours": None if hours is None else round(hours, 4)}


def _count(n: int, filter_text: str, element_id: str) -> Any:
    if not n:
        return html.Span("0", id=element_id, className="text-muted")
    return dcc.Link(fmt_int(n), href=samples_href(filter=filter_text), id=element_id, className="fw-semibold")


def body(dataset: Dataset) -> list:
    """The card's content (computes the columns when they are missing)."""
    s = summary(dataset)
    rows = [html.Tr([html.Td(f["description"]), html.Td(html.Code(f["column"]), className="small"),
                     html.Td(_count(f["count"], f["filter"], flag_id(f["flag"])), className="text-end")])
            for f in s["flags"]]
    flags = dbc.Table([html.Thead(html.Tr([html.Th("check"), html.Th("column"), html.Th("utterances",
                                                                                          className="text-end")])),
                       html.Tbody(rows)], size="sm", hover=True, className="small mb-2", id=FLAGS_TABLE)
    d = s["duplicates"]
    dup_parts: list[Any] = [
        "Duplicates: ", _count(d["text"]["utterances"], d["text"]["filter"], "suspicious-dup-text"),
        f" utterances share a transcript with another ({fmt_int(d['text']['groups'])} groups)",
    ]
    if d["audio_measured"]:
        dup_parts += [" · ", _count(d["audio"]["utterances"], d["audio"]["filter"], "suspicious-dup-audio"),
                      f" share their audio ({fmt_int(d['audio']['groups'])} groups), ",
                      _count(d["audio_text_conflict"]["utterances"], d["audio_text_conflict"]["filter"],
                             "suspicious-dup-conflict"), " of them with different transcripts"]
    else:
        dup_parts.append(" · identical audio: measure it on ")
        dup_parts.append(dcc.Link("TTS readiness", href="/tts"))
    dup_parts += [" · ", dcc.Link("Duplicates view", href="/duplicates")]
    hours = s["speech_hours"]
    speech = (["Speech (VAD): ", html.Strong(duration_text(hours)), " of ",
               f"{duration_text(_total_hours(dataset))} audio"] if hours is not None else
              ["Speech activity not measured: ", dcc.Link("measure it on TTS readiness", href="/tts"),
               " (or start sde with --vad)"])
    return [html.Div(speech, className="small mb-2", id=SPEECH), flags,
            html.Div(dup_parts, className="small", id=DUPLICATES)]


def _total_hours(dataset: Dataset) -> float:
    return float(pd.to_numeric(dataset.utterances["duration"], errors="coerce").sum()) / 3600.0


def _computed(dataset: Dataset) -> bool:
    """Whether the counts are known: computed here, or kept with the build by an earlier start."""
    return for_dataset(dataset, "suspicious", 1, kept=1).get("summary") is not None


def card_state(dataset: Dataset, wait_s: float = 0.0) -> tuple[list | Any, bool]:
    """(the card's content, whether it is final): the counts once computed, the error if the
    computation failed, else a line saying it runs (on a thread of its own: sde.web.panels.background)."""
    if _computed(dataset):
        return body(dataset), True
    progress = in_background(dataset, "suspicious", None, lambda: summary(dataset), wait_s)
    if progress.error is not None:
        return dbc.Alert(f"The checks failed: {progress.error}", color="danger", className="small mb-0",
                         id="suspicious-error"), True
    if progress.done:
        return body(dataset), True
    return html.Div(f"Checking the transcripts of {fmt_int(len(dataset.utterances))} utterances for loops, "
                    f"hallucinations, implausible rates and duplicates … ({progress.seconds:.0f} s; "
                    "about 20 s per million utterances)", className="small text-muted", id="suspicious-running"), False


def layout(dataset: Dataset) -> dbc.Card:
    """The card: filled at once when the columns exist, else by the callback after the page shows."""
    ready = _computed(dataset)
    return dbc.Card(dbc.CardBody([
        html.Div([html.H5("Suspicious utterances", className="card-title mb-0"),
                  html.A("JSON", href="/api/suspicious", className="link-secondary small")],
                 className="d-flex justify-content-between align-items-baseline mb-2"),
        dcc.Store(id=TRIGGER, data=None if ready else dataset.generation),
        dcc.Interval(id=POLL, interval=POLL_MS, disabled=True),
        html.Div(body(dataset) if ready else html.Div(
            "Checking the transcripts for loops, hallucinations, implausible rates and duplicates …",
            className="small text-muted"), id=BODY),
    ]), className="mb-3", id=PANEL)


def callbacks(app: dash.Dash, dataset: Dataset) -> None:
    @app.callback(Output(BODY, "children"), Output(POLL, "disabled"), Input(TRIGGER, "data"),
                  Input(POLL, "n_intervals"), prevent_initial_call=False)
    def fill_suspicious(trigger, _ticks):
        if trigger is None:  # rendered filled already
            return no_update, True
        # the first ask (no poll yet) waits a moment: a small dataset's counts come without a poll
        children, final = card_state(dataset, wait_s=FIRST_WAIT_S if not _ticks else 0.0)
        return children, final


__all__ = ["PANEL", "body", "callbacks", "card_state", "flag_id", "layout", "summary"]
