"""The utterance inspector, /utterance/ID?filter=Q&sort=S (JSON twin: /api/utterances/ID).

Every field, a word diff per hypothesis, the audio player and the waveform + spectrogram. The
filter and sort of the list it was opened from travel in the query string, so previous/next (buttons,
←/→ or k/j) walk that filtered, sorted list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import numpy as np
from dash import Input, Output, State, dcc, html, no_update

from sde.web import ids
from sde.web.api import ApiError, alignment_of, row_dict, utterance_position
from sde.web.components import diff_legend, diff_view, fmt_int, fmt_pct, key_value_table, page_header
from sde.web.pages import Page

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "Utterance"
PATH = "/utterance/"


def _href(uid: int, params: Mapping[str, str]) -> str:
    q = {k: params[k] for k in ("filter", "sort") if params.get(k)}
    return f"{PATH}{uid}" + (f"?{urlencode(q)}" if q else "")


def neighbours(dataset: "Dataset", uid: int, params: Mapping[str, str]) -> dict:
    """Where `uid` sits in the filtered, sorted list: index, total, prev/next ids, and a warning
    when the filter is invalid (then the whole manifest, in order, is walked)."""
    from sde.query import QueryError

    warning = None
    filter_text, sort = params.get("filter") or None, params.get("sort") or None
    try:
        positions = dataset.utterance_query.select(filter_text, sort)
    except QueryError as e:
        warning = f"The filter in the link is invalid ({e}); walking the whole manifest."
        positions = dataset.utterance_query.select(None, None)
    ids_ = dataset.utterances["id"].to_numpy()[positions] if "id" in dataset.utterances.columns else positions
    where = np.flatnonzero(ids_ == uid)
    if len(where) == 0:
        return {"index": None, "total": int(len(ids_)), "prev": None, "next": None, "warning": warning,
                "outside": bool(filter_text)}
    i = int(where[0])
    return {
        "index": i, "total": int(len(ids_)),
        "prev": int(ids_[i - 1]) if i > 0 else None,
        "next": int(ids_[i + 1]) if i + 1 < len(ids_) else None,
        "warning": warning, "outside": False,
    }


def _nav_button(label: str, target: int | None, params: Mapping[str, str], element_id: str, key_hint: str):
    if target is None:
        return html.Span(label, id=element_id, className="btn btn-outline-secondary btn-sm disabled",
                         **{"aria-disabled": "true"})
    return dcc.Link(label, href=_href(target, params), id=element_id, className="btn btn-outline-primary btn-sm",
                    title=key_hint)


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    raw = path[len(PATH):].strip("/")
    try:
        uid = utterance_position(dataset, raw)
    except ApiError as e:
        return dbc.Alert([html.H5("No such utterance", className="alert-heading"), html.P(str(e)),
                          dcc.Link("Back to the samples", href="/samples", className="alert-link")],
                         color="warning", id="utt-not-found")
    row = row_dict(dataset.utterances, uid)
    nav = neighbours(dataset, uid, params)
    back_q = {k: params[k] for k in ("filter", "sort") if params.get(k)}
    back = "/samples" + (f"?{urlencode(back_q)}" if back_q else "")
    if nav["index"] is not None:
        where = f"{fmt_int(nav['index'] + 1)} of {fmt_int(nav['total'])}" + (" (filtered)" if params.get("filter") else "")
    else:
        where = "not in the filtered list" if nav["outside"] else ""
    buttons = [
        html.Span(where, className="text-muted small me-1", id="utt-position"),
        _nav_button("← Previous", nav["prev"], params, ids.UTT_PREV, "previous (← or k)"),
        _nav_button("Next →", nav["next"], params, ids.UTT_NEXT, "next (→ or j)"),
        dcc.Link("Back to list", href=back, id=ids.UTT_BACK, className="btn btn-outline-primary btn-sm",
                 title="back (u)"),
    ]
    header = page_header(f"Utterance {uid}", [
        html.Span(str(row.get("audio_filepath") or ""), className="font-monospace"), " · ",
        html.A("JSON", href=f"/api/utterances/{uid}", className="link-secondary"),
        html.Span(" · keys: ← / k previous, → / j next, u back", className="d-none d-md-inline"),
    ], buttons)
    warnings = [dbc.Alert(nav["warning"], color="warning", className="py-2")] if nav["warning"] else []

    duration = row.get("duration")
    offset = row.get("offset") or 0.0
    audio_card = dbc.Card([
        dbc.CardHeader(html.Div([
            html.Span("Audio", className="fw-bold"),
            html.Span(f"{duration:.2f} s" + (f" from {offset:.2f} s" if offset else ""), className="text-muted small")
            if isinstance(duration, (int, float)) else None,
            html.A("WAV", href=f"/audio/{uid}.wav", className="small ms-auto", download=f"utterance-{uid}.wav",
                   title="the segment as lossless 16-bit WAV"),
            dbc.RadioItems(
                id=ids.UTT_SIGNAL_KIND, value="mel" if params.get("spectrogram") == "mel" else "linear", inline=True,
                options=[{"label": "linear", "value": "linear"}, {"label": "mel", "value": "mel"}],
                className="small", input_class_name="me-1",
            ),
        ], className="d-flex align-items-center gap-3")),
        dbc.CardBody([
            # Ogg Vorbis (~7x smaller than the WAV) up to 40 s; longer ones play the WAV, which
            # the server streams with Range support so seeking works (see the audio routes).
            html.Audio(src=_player_src(uid, duration), controls=True, preload="metadata",
                       id=ids.UTT_AUDIO, className="w-100 mb-2"),
            html.Div("Click the waveform or spectrogram to play from there.", className="text-muted small mb-1"),
            html.Div(id=ids.UTT_SIGNAL_MESSAGE),
            dcc.Loading(dcc.Graph(id=ids.UTT_SIGNAL, config={"displaylogo": False, "responsive": True},
                                  style={"height": "420px"}), type="dot", delay_show=300),
        ]),
    ], className="mb-3")

    text = row.get("text") or ""
    hyp_cards = []
    if dataset.hypotheses:
        alignment = alignment_of(dataset, uid)
        for h in dataset.hypotheses:
            wer, cer = row.get(h.column("wer")), row.get(h.column("cer"))
            hyp_cards.append(html.Div([
                html.Div([
                    html.Span(h.name or h.field, className="fw-bold hyp-name"),
                    html.Span(h.field, className="text-muted small") if h.label else None,
                    dbc.Badge(f"WER {fmt_pct(wer)}", color="danger" if (wer or 0) > 0 else "success",
                              className="ms-auto", id=f"utt-wer-{h.field}"),
                    dbc.Badge(f"CER {fmt_pct(cer)}", color="secondary", id=f"utt-cer-{h.field}"),
                ], className="d-flex align-items-center gap-2 mb-1"),
                diff_view(alignment[h.field]),
            ], className="hyp-diff mb-3", id=f"utt-diff-{h.field}"))
        diff_body = [html.Div([html.Span("Reference", className="fw-bold me-2"),
                               html.Span(text, className="ref-text")], className="mb-3"),
                     *hyp_cards, diff_legend()]
    else:
        diff_body = [html.Div([html.Span("Reference", className="fw-bold me-2"), html.Span(text, className="ref-text")]),
                     html.Div("No hypotheses to compare with.", className="text-muted small mt-2")]
    diff_card = dbc.Card([dbc.CardHeader("Transcripts", className="fw-bold"),
                          dbc.CardBody(diff_body, id=ids.UTT_DIFF)], className="mb-3")
    fields_card = dbc.Card([dbc.CardHeader("Fields", className="fw-bold"),
                            dbc.CardBody(key_value_table(row, ids.UTT_FIELDS), className="p-0 kv-body")],
                           className="mb-3")
    return html.Div([
        dcc.Store(id=ids.UTT_ID, data=uid),
        header,
        *warnings,
        dbc.Row([
            dbc.Col([diff_card, audio_card], lg=8),
            dbc.Col(fields_card, lg=4),
        ]),
    ], className="utterance-page")


def _player_src(uid: int, duration) -> str:
    from sde.web.audio_routes import player_src

    return player_src(uid, float(duration) if isinstance(duration, (int, float)) else None)


def signal(dataset: "Dataset", uid: int, kind: str):
    """(figure or None, message or None) for the waveform + spectrogram of one utterance: the
    audio routes' service (shared cache, bounded memory for segments of any length)."""
    from sde.web.audio_routes import signal_for_page

    return signal_for_page(dataset, uid, kind)


def register_callbacks(app, dataset: "Dataset") -> None:
    @app.callback(
        Output(ids.UTT_SIGNAL, "figure"),
        Output(ids.UTT_SIGNAL, "style"),
        Output(ids.UTT_SIGNAL_MESSAGE, "children"),
        Output(ids.UTT_AUDIO, "style"),
        Input(ids.UTT_SIGNAL_KIND, "value"),
        State(ids.UTT_ID, "data"),
    )
    def show_signal(kind, uid):
        if uid is None:
            return {}, {"display": "none"}, None, no_update
        fig, message = signal(dataset, int(uid), kind or "linear")
        if fig is None:
            alert = dbc.Alert([html.Strong("Cannot show the waveform and spectrogram: "), html.Span(message)],
                              color="danger", className="mb-0", id="utt-audio-error")
            # The player could not play it either: say why once, instead of a dead player.
            return {}, {"display": "none"}, alert, {"display": "none"}
        return fig, {"height": "420px"}, None, {}


PAGE = Page(path=PATH, name=TITLE, layout=layout, register_callbacks=register_callbacks, nav=False, prefix=True,
            api="/api/utterances/ID")
