"""TTS readiness: is each speaker a voice a TTS model can be trained on? (JSON twin: /api/tts)

Per speaker, against the usual guidance for a single-speaker voice (~20 h of speech, 22.05 kHz or
more, one loudness, no clipping, every phoneme of the language): hours (total and VAD speech),
sample rates (under 22.05 kHz flagged), loudness (median LUFS and its interquartile spread),
clipping, phoneme coverage (espeak-ng phonemes of the transcripts: the language's phonemes never
heard, the rare ones) and a phoneme histogram per speaker. The "Speech activity" card measures
what the table needs from the audio (sde.web.panels.vad).

`/tts?lang=de&speaker=COLUMN`: the espeak-ng voice for the phonemes (default: the manifest's
`lang` field when it has one, else en) and the speaker column (default: speaker, speaker_id, …).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from sde.filters import TEXT, Clause, column_kind
from sde.quality.tts import GUIDANCE
from sde.durations import duration_text
from sde.web.components import fmt_float, fmt_int, page_header
from sde.web.figures import GRAPH_CONFIG
from sde.web.pages.page import Page, link_value_notes
from sde.web.panels import vad
from sde.web.panels.background import FIRST_WAIT_S, POLL_MS, in_background
from sde.web.panels.quality_data import checked_lang, default_lang, speaker_column, tts, valid_lang
from sde.web.present import ApiError
from sde.web.state import samples_href, search_of

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "TTS readiness"
TABLE = "tts-speakers"
CHART = "tts-phonemes"
CHART_SPEAKER = "tts-phoneme-speaker"
CHART_PARAMS = "tts-params"
REPORT_BODY = "tts-report"
REPORT_POLL = "tts-poll"
REPORT_PARAMS = "tts-report-params"
GUIDE = "tts-guidance"
SHOWN_SPEAKERS = 200
LANGUAGES = ("en", "en-us", "de", "fr", "es")


def _speaker_href(column: str, speaker: str | None, text: bool) -> str:
    if speaker is None:  # the report's group without a speaker: missing, or in a text column empty too
        missing = Clause(column, "is null").to_q()
        return samples_href(filter=f'{missing} || {Clause(column, "=", "").to_q()}' if text else missing)
    return samples_href(filter=Clause(column, "=", speaker).to_q())


def _rates(rates: list[int]) -> Any:
    if not rates:
        return html.Span("–", className="text-muted", title="measure the audio to see sample rates")
    return [dbc.Badge(f"{r / 1000:g} kHz", color="danger" if r < GUIDANCE["min_sample_rate"] else "success",
                      className="me-1") for r in rates]


def _hours_cell(hours: float | None) -> Any:
    if hours is None:
        return html.Span("–", className="text-muted")
    color = "text-success" if hours >= GUIDANCE["target_hours"] else "text-danger"
    # A speaker of a few short utterances read "0.00" in hours: seconds and minutes say how far off it is.
    return html.Span(duration_text(hours), className=color)


def _phonemes(s: dict) -> Any:
    missing, rare = s["phonemes_missing"], s["phonemes_rare"]
    if missing is None:  # espeak-ng could not count them (the guidance says why): nothing is covered
        return html.Span("not checked", className="text-muted", title="phoneme coverage was not measured")
    parts: list[Any] = []
    if missing:
        parts.append(html.Div([html.Span(f"{len(missing)} missing: ", className="text-danger"),
                               html.Span(" ".join(missing[:24]) + (" …" if len(missing) > 24 else ""),
                                         className="font-monospace")]))
    if rare:
        parts.append(html.Div([html.Span(f"{len(rare)} rare: ", className="text-warning-emphasis"),
                               html.Span(" ".join(rare[:24]) + (" …" if len(rare) > 24 else ""),
                                         className="font-monospace")]))
    return parts or html.Span("all covered", className="text-success")


def _ready(s: dict) -> bool:
    """No flags, and its phonemes were counted (without them missing_phonemes could not be raised)."""
    return not s["flags"] and s["phonemes_missing"] is not None


def _no_flags(s: dict) -> dbc.Badge:
    if _ready(s):
        return dbc.Badge("ready", color="success")
    return dbc.Badge("phonemes not checked", color="secondary", title="no flags, but phoneme coverage was not measured")


def _table(r: dict, column: str, text: bool) -> dbc.Table:
    head = ["speaker", "utterances", "audio", "speech", "sample rates", "LUFS median", "LUFS spread",
            "clipping", "phonemes", "flags"]
    rows = []
    for s in r["speakers"][:SHOWN_SPEAKERS]:
        rows.append(html.Tr([
            html.Td(dcc.Link(s["speaker"] or "(none)", href=_speaker_href(column, s["speaker"], text))),
            html.Td(fmt_int(s["utterances"]), className="text-end"),
            html.Td(_hours_cell(s["hours"]), className="text-end"),
            html.Td(_hours_cell(s["speech_hours"]), className="text-end"),
            html.Td(_rates(s["sample_rates"])),
            html.Td(fmt_float(s["lufs_median"], 1), className="text-end"),
            html.Td(fmt_float(s["lufs_spread"], 1), className="text-end"),
            html.Td("–" if s["clipping_share"] is None else f"{100 * s['clipping_share']:.1f}%", className="text-end"),
            html.Td(_phonemes(s), className="small"),
            html.Td([dbc.Badge(f["flag"].replace("_", " "), color="warning", className="me-1", title=f["message"])
                     for f in s["flags"]] or _no_flags(s)),
        ]))
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)], size="sm", hover=True,
                     responsive=True, className="small mb-0", id=TABLE)


def phoneme_figure(r: dict, speaker: str | None) -> go.Figure:
    """Bar chart of how often ``speaker`` says each phoneme: the language's inventory first (never
    heard: red, rare: orange), then phonemes outside it."""
    # the picker's value: the speaker, "" for the report's null speaker (a select's values are text)
    entry = next((s for s in r["speakers"] if (s["speaker"] or "") == speaker),
                 r["speakers"][0] if r["speakers"] else None)
    counts = dict(entry.get("phoneme_counts") or {}) if entry else {}
    inventory = list(r.get("phoneme_inventory") or [])
    order = sorted(inventory, key=lambda p: (-counts.get(p, 0), p)) + sorted(
        (p for p in counts if p not in set(inventory)), key=lambda p: (-counts[p], p))
    rare = GUIDANCE["rare_phoneme_count"]
    colors = ["#dc3545" if counts.get(p, 0) == 0 else "#fd7e14" if counts[p] < rare else "#0d6efd" for p in order]
    name = (entry["speaker"] or "(none)") if entry else ""
    fig = go.Figure(go.Bar(x=order, y=[counts.get(p, 0) for p in order], marker_color=colors, name="heard",
                           hovertemplate="%{x}: %{y}<extra></extra>"))
    missing = [p for p in order if counts.get(p, 0) == 0]
    if missing:  # a bar of height 0 shows nothing (on a log axis it cannot exist): mark the gaps
        fig.add_trace(go.Scatter(x=missing, y=[1] * len(missing), mode="markers", name="never heard",
                                 marker={"symbol": "x", "color": "#dc3545", "size": 9},
                                 hovertemplate="%{x}: never heard<extra></extra>"))
    fig.update_layout(template={}, height=320, margin={"l": 50, "r": 10, "t": 30, "b": 40},
                      title={"text": f"Phonemes of {name} (red: never heard, orange: < {rare}×)", "x": 0.01,
                             "font": {"size": 12}},
                      xaxis={"type": "category", "title": "phoneme (IPA, espeak-ng)"},
                      yaxis={"title": "times heard", "type": "log" if counts else "linear"},
                      plot_bgcolor="white", paper_bgcolor="white", showlegend=False)
    return fig


def _guidance(r: dict, lang: str) -> dbc.Alert:
    g = r["guidance"]
    ready = sum(1 for s in r["speakers"] if _ready(s))
    source = {"reference text": f"sde's reference text for {lang}", "dataset": "the phonemes this dataset uses"}.get(
        r.get("inventory_source"))
    # without an inventory "0 phonemes from )" read as a measured, empty one
    inventory = (f"inventory: {len(r['phoneme_inventory'])} phonemes from {source}" if source
                 else "phoneme coverage not checked")
    return dbc.Alert([
        html.Strong(f"{fmt_int(ready)} of {fmt_int(r.get('total_speakers', len(r['speakers'])))} speakers ready. "),
        f"A single-speaker TTS voice usually wants ~{g['target_hours']:g} h of speech, audio at "
        f"{g['min_sample_rate'] / 1000:g} kHz or more, loudness within {g['lufs_spread_max']:g} LU, no clipping and "
        f"every phoneme of the language ({inventory}).",
        html.Div(r["phoneme_error"], className="text-danger") if r.get("phoneme_error") else None,
    ], color="light", className="small", id=GUIDE)


def _language_links(dataset: Dataset, lang: str, column: str) -> html.Div:
    langs = list(dict.fromkeys([lang, *LANGUAGES]))
    return html.Div(["Phonemes for: "] + [
        x for code in langs for x in (
            html.Strong(code) if code == lang else dcc.Link(code, href="/tts" + search_of({"lang": code,
                                                                                          "speaker": column})),
            " ")], className="small mb-2", id="tts-languages")


def lang_param(dataset: Dataset, params: Mapping[str, str], notes: list[str]) -> str:
    """The link's espeak-ng voice, checked as /api/tts checks it; the default (and a note) when it
    is none: a report in a language espeak-ng lacks showed only a phoneme error under its guidance."""
    default = default_lang(dataset)
    raw = params.get("lang")
    if not raw:
        return default
    try:
        return checked_lang(raw)
    except ApiError as e:
        notes.append(f"The link's {e.message}, so lang={default} (the default) is used.")
        return default


def layout(dataset: Dataset, path: str, params: Mapping[str, str]):
    lang = lang_param(dataset, params, link_value_notes())
    column = speaker_column(dataset, params.get("speaker"))
    api = "/api/tts" + search_of({"lang": lang, "speaker": column})
    header = page_header(TITLE, [f"{dataset.name} · speakers by the {column} field · ",
                                 html.A("JSON", href=api, className="link-secondary")])
    content, final = report_state(dataset, lang, column, wait_s=FIRST_WAIT_S)
    return html.Div([header, dcc.Store(id=REPORT_PARAMS, data={"lang": lang, "speaker": column}),
                     dcc.Interval(id=REPORT_POLL, interval=POLL_MS, disabled=final),
                     html.Div(content, id=REPORT_BODY)])


def report_state(dataset: Dataset, lang: str, column: str, wait_s: float = 0.0) -> tuple[Any, bool]:
    """(the page below its header, whether it is final): the report once made (on a thread of its
    own, sde.web.panels.background: the transcripts' phonemes take ~45 s at 10M utterances), why it
    failed, or a line saying it runs."""
    progress = in_background(dataset, "tts", (lang, column), lambda: tts(dataset, lang, column), wait_s)
    if progress.error is not None:
        return dbc.Alert(f"The report failed: {progress.error}", color="danger", id="tts-error"), True
    if not progress.done:
        return html.Div(f"Counting the hours, loudness and phonemes of {fmt_int(len(dataset.utterances))} utterances "
                        f"per speaker … ({progress.seconds:.0f} s; about 5 s per million utterances)",
                        className="text-muted", id="tts-running"), False
    return _report(dataset, progress.value, lang, column), True


def _report(dataset: Dataset, r: dict[str, Any], lang: str, column: str) -> list:
    speakers = [s["speaker"] for s in r["speakers"][:SHOWN_SPEAKERS]]
    first = (speakers[0] or "") if speakers else None
    shown = len(r["speakers"][:SHOWN_SPEAKERS])
    more = (f"the {shown} speakers with the most hours of {fmt_int(r['total_speakers'])}; the JSON lists them all, "
            "a page at a time (/api/tts?page=P&limit=N)"
            if r.get("total_speakers", 0) > shown else None)
    chart = dbc.Card(dbc.CardBody([
        html.Div([html.H5("Phoneme coverage", className="card-title mb-0"),
                  html.Label("Speaker", htmlFor=CHART_SPEAKER, className="visually-hidden"),
                  dbc.Select(id=CHART_SPEAKER, options=[{"label": s or "(none)", "value": s or ""} for s in speakers],
                             value=first, size="sm", style={"maxWidth": "20rem"})],
                 className="d-flex justify-content-between align-items-center gap-2 mb-2"),
        dcc.Store(id=CHART_PARAMS, data={"lang": lang, "speaker": column}),
        dcc.Graph(id=CHART, figure=phoneme_figure(r, first), config=GRAPH_CONFIG),
    ]), className="mb-3")
    table = dbc.Card(dbc.CardBody([
        html.H5("Speakers", className="card-title"),
        html.Div(more, className="small text-muted mb-1") if more else None,
        _table(r, column, column in dataset.utterances.columns
               and column_kind(dataset.utterances[column].dtype) == TEXT),
    ]), className="mb-3")
    return [_guidance(r, lang), _language_links(dataset, lang, column), vad.layout(dataset), table, chart]


def chart_for(dataset: Dataset, speaker: Any, params: Any) -> go.Figure:
    params = params if isinstance(params, dict) else {}
    lang = valid_lang(params.get("lang")) or default_lang(dataset)
    return phoneme_figure(tts(dataset, lang, speaker_column(dataset, params.get("speaker"))),
                          speaker if isinstance(speaker, str) else None)


def callbacks(app, dataset: Dataset) -> None:
    @app.callback(Output(CHART, "figure"), Input(CHART_SPEAKER, "value"), State(CHART_PARAMS, "data"),
                  prevent_initial_call=True)
    def show_phonemes(speaker, params):
        return chart_for(dataset, speaker, params)

    @app.callback(Output(REPORT_BODY, "children"), Output(REPORT_POLL, "disabled"), Input(REPORT_POLL, "n_intervals"),
                  State(REPORT_PARAMS, "data"), prevent_initial_call=True)
    def poll_report(_ticks, params):
        params = params if isinstance(params, dict) else {}
        lang = valid_lang(params.get("lang")) or default_lang(dataset)
        return report_state(dataset, lang, speaker_column(dataset, params.get("speaker")))


PAGE = Page(path="/tts", name=TITLE, layout=layout, callbacks=callbacks, api="/api/tts", takes=("lang", "speaker"))

__all__ = ["PAGE", "chart_for", "phoneme_figure", "report_state"]
