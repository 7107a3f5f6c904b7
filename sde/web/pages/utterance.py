"""The utterance inspector, /utterance/ID?filter=Q&sort=S (JSON twin: /api/utterances/ID).

Every field, a word diff per hypothesis, the audio player and the waveform + spectrogram. The list
it was opened from travels in the query string (sde.web.state.INSPECTOR_PARAMS), so previous/next
(buttons, j/k or →/←) walk it and "back" (u) returns to it with that row in view:

- from Samples (`filter`, `sort`, `cols`): that filtered, sorted list;
- from Comparison (`from=comparison&a=F&b=G&metric=M&filter=Q`): the ranked list of the utterances
  where A and B differ, largest difference first.

The error or word the list was filtered by (`{error} = "sub the of"`, `{text} has "word"`) is
highlighted in the diffs; with --normalize, each hypothesis also shows its normalised WER/CER and
diff beside the raw ones. sde.js adds the listening loop: a click on the waveform plays from there,
Space plays/pauses, ←/→ seek while the player has the focus, and the autoplay switch plays each
utterance as it opens.
"""

from __future__ import annotations

import logging
import numbers
from typing import TYPE_CHECKING, Any, Mapping

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from sde.audio_presence import COLUMN as AUDIO_EXISTS
from sde.filters import Clause, positive_leaves
from sde.metrics import align_words
from sde.query import QueryError
from sde.text import normalize
from sde.web import reviewing, state
from sde.web.figures import NO_CLOUD
from sde.audio import AudioError, SegmentReader
from sde.web.audio_service import UnknownUtterance, service_of, signal_for_page
from sde.web.grid import list_filter
from sde.web.components import (
    as_text,
    diff_legend,
    diff_view,
    fmt_int,
    fmt_pct,
    key_value_table,
    marked_words,
    page_header,
)
from sde.web.pages import comparison
from sde.web.pages.page import Page
from sde.web.panels import augment, review
from sde.web.present import ApiError, alignment_of, resolve_hypothesis, row_dict, selection, utterance_position

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.manifest import HypothesisField

TITLE = "Utterance"
PATH = "/utterance/"
FIELDS_REGION = "utt-fields-region"
log = logging.getLogger(__name__)


def neighbours(dataset: "Dataset", uid: int, params: Mapping[str, str]) -> dict:
    """Where `uid` sits in the list it was opened from: index, total, prev/next ids, and a warning
    when the link's filter is invalid (then the whole manifest, in order, is walked). From
    Comparison (`from=comparison`), the list is the ranking of the utterances where A and B differ."""
    if params.get("from") == state.FROM_COMPARISON:
        return ranked_neighbours(dataset, uid, params)
    warning = None
    filter_text, sort = list_filter(params), params.get("sort") or None
    try:
        positions = reviewing.utterance_query(dataset, filter_text, sort).select(filter_text, sort)
    except QueryError as e:
        which = "filter" if _filter_fails(dataset, filter_text) else "sort"
        warning = f"The {which} in the link is invalid ({e}); walking the whole manifest."
        positions = dataset.utterance_query.select(None, None)
    ids_ = dataset.utterances["id"].to_numpy()[positions] if "id" in dataset.utterances.columns else positions
    return _place(ids_, uid, warning, outside=bool(filter_text))


def _place(ids_: np.ndarray, uid: int, warning: str | None, outside: bool) -> dict:
    where = np.flatnonzero(ids_ == uid)
    if len(where) == 0:
        return {"index": None, "total": int(len(ids_)), "prev": None, "next": None, "warning": warning,
                "outside": outside}
    i = int(where[0])
    return {
        "index": i, "total": int(len(ids_)),
        "prev": int(ids_[i - 1]) if i > 0 else None,
        "next": int(ids_[i + 1]) if i + 1 < len(ids_) else None,
        "warning": warning, "outside": False,
    }


def ranked_neighbours(dataset: "Dataset", uid: int, params: Mapping[str, str]) -> dict:
    """The place of `uid` in Comparison's ranking of A vs B (largest |B − A| first); an utterance
    where they agree is outside it, and "next" then leads to the largest difference."""
    if len(dataset.hypotheses) < 2:
        return {**neighbours(dataset, uid, {}), "warning": "Comparison needs two hypotheses; walking the manifest."}
    a, unknown_a = resolve_hypothesis(dataset, params.get("a"), 0)
    b, unknown_b = resolve_hypothesis(dataset, params.get("b"), 1)
    metric = params.get("metric") if params.get("metric") in comparison.METRICS else "wer"
    filter_text = params.get("filter") or None
    warning = " ".join(w for w in (unknown_a, unknown_b) if w) or None  # as Comparison says it
    if filter_text and selection(dataset, filter_text)[1]:
        warning = "The filter in the link is invalid; walking the ranking over all utterances."
        filter_text = None
    ranked = comparison.ranked_differences(dataset, a, b, metric, filter_text)
    place = _place(ranked["id"].to_numpy(), uid, warning, outside=True)
    if place["index"] is None:
        place["next"] = int(ranked["id"].iat[0]) if len(ranked) else None
        place["diff"] = None
    else:
        place["diff"] = float(ranked["diff"].iat[place["index"]])
    place.update(ranked=True, a=a, b=b, metric=metric, missing=_missing_hypothesis(dataset, uid, a, b))
    return place


def _missing_hypothesis(dataset: "Dataset", uid: int, *hypotheses: "HypothesisField") -> str | None:
    """The field of the first of these hypotheses the line lacks (not scored: its metric is missing)."""
    for h in hypotheses:
        column = h.column("wer")
        if column in dataset.utterances.columns and pd.isna(dataset.utterances[column].iat[uid]):
            return h.field
    return None


def _filter_fails(dataset: "Dataset", filter_text: str | None) -> bool:
    """Whether the link's filter is what a failed list query failed on (else it was its sort)."""
    if not filter_text:
        return False
    try:
        dataset.utterance_query.count(filter_text)
    except QueryError:
        return True
    return False


def position_text(nav: Mapping, params: Mapping[str, str]) -> str:
    """"3 of 120 (filtered)", or for the ranked walk "difference 3 of 57 · B − A +12.5 WER points"."""
    if nav.get("ranked"):
        if nav["index"] is None:
            if nav.get("missing"):
                return f"not in the ranking of differences: this line has no {nav['missing']}"
            return "A and B agree here (not in the ranking of differences)"
        return (f"difference {fmt_int(nav['index'] + 1)} of {fmt_int(nav['total'])} · "
                f"B − A {nav['diff']:+.1f} {nav['metric'].upper()} points")
    if nav["index"] is not None:
        return f"{fmt_int(nav['index'] + 1)} of {fmt_int(nav['total'])}" + (" (filtered)" if list_filter(params) else "")
    return "not in the filtered list" if nav["outside"] else ""


def back_href(nav: Mapping, params: Mapping[str, str], uid: int) -> str:
    """Back to the list: Comparison, or Samples with this utterance in view and selected (`focus`)."""
    ranked = (nav["a"].field, nav["b"].field, nav["metric"]) if nav.get("ranked") else None
    return list_href(params, ranked, focus=str(uid))


def list_href(params: Mapping[str, str], ranked: tuple[str, str, str | None] | None, focus: str | None = None) -> str:
    """The list the inspector's URL came from, with its filter: Comparison of ``ranked`` (A, B,
    metric), or Samples with the URL's column filters, sort and columns."""
    if ranked is not None:
        return state.comparison_href(*ranked, params.get("filter"))
    return state.samples_href(filter=params.get("filter"), colfilter=params.get("colfilter"), sort=params.get("sort"),
                              cols=params.get("cols"), focus=focus)


# ---------------------------------------------------------------- what the diff highlights

def highlights(dataset: "Dataset", filter_text: str | None) -> tuple[dict[str, Any], Any]:
    """What the list's filter was about, to highlight: ({hypothesis field: highlight(op, ref,
    hyp)}, reference-word predicate or None), from its positive clauses `{error} = "sub REF HYP"`
    (or "del W", "ins W"), `{text} has "W"` and `{pred_text} has "W"`."""
    if not filter_text:
        return {}, None
    try:
        parts = reviewing.utterance_query(dataset, filter_text).clauses(filter_text)
    except QueryError:
        return {}, None
    error_columns = {h.column("error"): h.field for h in dataset.hypotheses}
    hyp_fields = {h.field for h in dataset.hypotheses}
    tests: dict[str, list] = {}
    ref_words: set[str] = set()
    for leaf in (leaf for part in parts for leaf in positive_leaves(part)):
        if not isinstance(leaf, Clause):
            continue
        if leaf.column in error_columns and leaf.op == "=":
            test = _error_test(str(leaf.value))
            if test is not None:
                tests.setdefault(error_columns[leaf.column], []).append(test)
        elif leaf.op == "has" and leaf.column == "text":
            ref_words.add(str(leaf.value))
        elif leaf.op == "has" and leaf.column in hyp_fields:
            tests.setdefault(leaf.column, []).append(lambda op, ref, hyp, w=str(leaf.value): hyp == w)
    if ref_words:
        for field in hyp_fields:
            tests.setdefault(field, []).append(lambda op, ref, hyp: ref in ref_words)
    combined = {field: (lambda op, ref, hyp, fs=fs: any(f(op, ref, hyp) for f in fs)) for field, fs in tests.items()}
    return combined, (ref_words.__contains__ if ref_words else None)


def _error_test(value: str):
    """The highlight test of one `{error}` value: "sub REF HYP", "del WORD" or "ins WORD"."""
    words = value.split()
    if len(words) == 3 and words[0] == "sub":
        kind, ref, hyp = "sub", words[1], words[2]
    elif len(words) == 2 and words[0] == "del":
        kind, ref, hyp = "del", words[1], None
    elif len(words) == 2 and words[0] == "ins":
        kind, ref, hyp = "ins", None, words[1]
    else:
        return None

    def test(op: str, r: str | None, h: str | None) -> bool:
        return op == kind and (ref is None or r == ref) and (hyp is None or h == hyp)

    return test


def normalized_alignment(dataset: "Dataset", uid: int, field: str) -> list | None:
    """The word diff of the normalised reference and hypothesis (--normalize), or None."""
    steps = list(dataset.options.normalize)
    if not steps:
        return None
    table = dataset.utterances
    ref, hyp = table["text"].iat[uid], table[field].iat[uid]
    if hyp is None or hyp is pd.NA:
        return None
    ref = "" if ref is None or ref is pd.NA else str(ref)
    return align_words(normalize(ref, steps), normalize(str(hyp), steps))


def _hypothesis_block(dataset: "Dataset", uid: int, row: Mapping, h, aligned, highlight, nav: Mapping) -> html.Div:
    wer, cer = row.get(h.column("wer")), row.get(h.column("cer"))
    role = None
    if nav.get("ranked"):
        role = "A" if h.field == nav["a"].field else "B" if h.field == nav["b"].field else None
    head = [
        dbc.Badge(role, color="dark", className="me-1", id=f"utt-role-{h.field}") if role else None,
        html.Span(h.name or h.field, className="fw-bold hyp-name"),
        html.Span(h.field, className="text-muted small") if h.label else None,
        dbc.Badge(f"WER {fmt_pct(wer)}", color="danger" if (wer or 0) > 0 else "success",
                  className="ms-auto", id=f"utt-wer-{h.field}"),
        dbc.Badge(f"CER {fmt_pct(cer)}", color="secondary", id=f"utt-cer-{h.field}"),
    ]
    body = [html.Div(head, className="d-flex align-items-center gap-2 mb-1"),
            diff_view(aligned, highlight)]
    norm = normalized_alignment(dataset, uid, h.field)
    if norm is not None:
        nwer, ncer = row.get(h.column("wer") + "_norm"), row.get(h.column("cer") + "_norm")
        body.append(html.Div([
            html.Div([
                html.Span(f"normalised ({', '.join(dataset.options.normalize)})", className="small text-muted"),
                dbc.Badge(f"WER {fmt_pct(nwer)}", color="danger" if (nwer or 0) > 0 else "success",
                          className="ms-auto", id=f"utt-wer-norm-{h.field}"),
                dbc.Badge(f"CER {fmt_pct(ncer)}", color="secondary", id=f"utt-cer-norm-{h.field}"),
            ], className="d-flex align-items-center gap-2 mb-1"),
            diff_view(norm, highlight),
        ], className="hyp-norm mt-1 ps-3", id=f"utt-diff-norm-{h.field}"))
    return html.Div(body, className="hyp-diff mb-3" + (" hyp-compared" if role else ""), id=f"utt-diff-{h.field}")


def _nav_button(label: str, target: int | None, params: Mapping[str, str], element_id: str, key_hint: str):
    if target is None:
        return html.Span(label, id=element_id, className="btn btn-outline-secondary btn-sm disabled",
                         **{"aria-disabled": "true"})
    href = state.utterance_href(target, **state.inspector_context(params))
    return dcc.Link(label, href=href, id=element_id, className="btn btn-outline-primary btn-sm",
                    title=key_hint)


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    raw = path[len(PATH):].strip("/")
    try:  # digits only (as the server's status reads it): "/utterance/+5" is missing, not utterance 5
        uid = utterance_position(dataset, raw)
    except ApiError as e:
        return not_found(e.message, params)
    row = row_dict(dataset.utterances, uid)
    nav = neighbours(dataset, uid, params)
    buttons = [
        html.Span(position_text(nav, params), className="text-muted small me-1", id="utt-position"),
        _nav_button("← Previous", nav["prev"], params, state.UTT_PREV, "previous (k or ←)"),
        _nav_button("Next →", nav["next"], params, state.UTT_NEXT, "next (j or →)"),
        dcc.Link("Back to comparison" if nav.get("ranked") else "Back to list", href=back_href(nav, params, uid),
                 id=state.UTT_BACK, className="btn btn-outline-primary btn-sm", title="back (u)"),
    ]
    header = page_header(f"Utterance {uid}", [
        html.Span(str(row.get("audio_filepath") or ""), className="font-monospace"), " · ",
        html.A("JSON", href=f"/api/utterances/{uid}", className="link-secondary"),
        html.Span(" · keys: j / k next / previous (also → / ←), u back, Space play / pause, ← / → seek 2 s "
                  "while the player has the focus", className="d-none d-md-inline"),
    ], buttons)
    warnings = [dbc.Alert(nav["warning"], color="warning", className="py-2")] if nav["warning"] else []

    duration = row.get("duration")
    offset = row.get("offset") or 0.0
    # a file the start-up check found missing is not read again (show_signal says why)
    known_missing = row.get(AUDIO_EXISTS) is False
    problem = None if known_missing else audio_problem(dataset, uid)
    silent = known_missing or problem is not None
    # what only playable audio is for (the player, its hint, the WAV) is hidden with it
    hidden = {"display": "none"}
    audio_card = dbc.Card([
        dbc.CardHeader(html.Div([
            html.Span("Audio", className="fw-bold"),
            html.Span(f"{duration:.2f} s" + (f" from {offset:.2f} s" if offset else ""), className="text-muted small")
            if isinstance(duration, (int, float)) else None,
            dbc.Switch(id=state.UTT_AUTOPLAY, label="autoplay", value=False, className="small mb-0 ms-auto",
                       persistence=True, persistence_type="session"),
            html.A("WAV", href=state.audio_href(uid, "wav"), className="small", id=state.UTT_WAV,
                   download=f"utterance-{uid}.wav", title="the segment as lossless 16-bit WAV",
                   style=hidden if silent else {}),
            # Remembered for the browser tab, as autoplay is: a user comparing mel spectrograms
            # keeps them from one utterance to the next (and through a reload).
            dbc.RadioItems(
                id=state.UTT_SIGNAL_KIND, value="mel" if params.get("spectrogram") == "mel" else "linear", inline=True,
                options=[{"label": "linear", "value": "linear"}, {"label": "mel", "value": "mel"}],
                className="small", input_class_name="me-1", persistence=True, persistence_type="session",
            ),
        ], className="d-flex align-items-center gap-3")),
        dbc.CardBody([
            # Ogg Vorbis (~7x smaller than the WAV) up to 40 s; longer ones play the WAV, which
            # the server streams with Range support so seeking works (see the audio routes).
            # audio that cannot play is not asked for: the page says why at once
            html.Audio(src=None if silent else state.player_src(uid, duration),
                       controls=True, preload="metadata", id=state.UTT_AUDIO, className="w-100 mb-2",
                       style=hidden if silent else {}),
            html.Div("Click the waveform or spectrogram to play from there · Space plays and pauses · autoplay "
                     "plays each utterance as it opens (for this browser tab).", className="text-muted small mb-1",
                     id=state.UTT_PLAY_HINT, style=hidden if silent else {}),
            _zero_duration_note(duration),
            html.Div(audio_alert(problem) if problem else None, id=state.UTT_SIGNAL_MESSAGE),
            dcc.Loading(dcc.Graph(id=state.UTT_SIGNAL, config={"displaylogo": False, "responsive": True, **NO_CLOUD},
                                  style={"height": "420px"}), type="dot", delay_show=300),
        ]),
    ], className="mb-3")

    text = row.get("text") or ""
    hyp_cards = []
    marks, ref_marked = highlights(dataset, list_filter(params))
    # an empty reference said nothing at all: a blank beside "Reference" reads as a page still loading
    reference = html.Span(marked_words(text, ref_marked) if str(text).strip() else
                          html.Span("(empty reference)", className="text-muted fst-italic"),
                          className="ref-text", id="utt-reference")
    if dataset.hypotheses:
        alignment = alignment_of(dataset, uid)
        for h in dataset.hypotheses:
            hyp_cards.append(_hypothesis_block(dataset, uid, row, h, alignment[h.field], marks.get(h.field), nav))
        diff_body = [html.Div([html.Span("Reference", className="fw-bold me-2"), reference], className="mb-3"),
                     *hyp_cards, diff_legend()]
    else:
        diff_body = [html.Div([html.Span("Reference", className="fw-bold me-2"), reference]),
                     html.Div("No hypotheses to compare with.", className="text-muted small mt-2")]
    diff_card = dbc.Card([dbc.CardHeader("Transcripts", className="fw-bold"),
                          dbc.CardBody(diff_body, id=state.UTT_DIFF)], className="mb-3")
    # The body scrolls (a line with many fields): focusable and named, so a keyboard user can scroll
    # it with the arrow keys (axe's scrollable-region-focusable). dbc.CardBody takes no tabIndex.
    fields_card = dbc.Card([dbc.CardHeader("Fields", className="fw-bold"),
                            html.Div(key_value_table(row, state.UTT_FIELDS), className="card-body p-0 kv-body",
                                     id=FIELDS_REGION, tabIndex="0", role="region", **{"aria-label": "Fields"})],
                           className="mb-3")
    return html.Div([
        dcc.Store(id=state.UTT_ID, data=uid),
        header,
        *warnings,
        dbc.Row([
            dbc.Col([diff_card, audio_card, augment.layout(dataset, uid, row.get("duration"))], lg=8),
            dbc.Col([review.layout(dataset, uid, params), fields_card], lg=4),
        ]),
    ], className="utterance-page")


def _zero_duration_note(duration: Any) -> html.Div | None:
    """A line of 0 s: the player reads the whole file from its offset, as NeMo's loader does, while
    the measures (speech, levels) take it as the empty segment it names; said where it is heard."""
    if not isinstance(duration, (int, float)) or duration != 0:
        return None
    return html.Div("duration 0 in the manifest: this plays the file from the offset to its end, as NeMo's "
                    "audio loader reads it, while sde's measures count an empty segment, and a training "
                    "config's min_duration drops the line; write the segment's real duration in the manifest.",
                    className="small text-warning-emphasis mb-1", id="utt-zero-duration")


def not_found(message: str, params: Mapping[str, str]) -> dbc.Alert:
    """The inspector of an utterance the dataset does not have (the server answers 404), with the
    way back to the list its URL names (a bookmark of a filtered walk keeps its filter)."""
    ranked = (params["a"], params["b"], params.get("metric")) \
        if params.get("from") == state.FROM_COMPARISON and params.get("a") and params.get("b") else None
    label = "Back to the samples" if ranked is None else "Back to comparison"
    href = list_href(params, ranked)
    return dbc.Alert([html.H5("No such utterance", className="alert-heading"),
                      html.P(message[:1].upper() + message[1:] + ".", id="utt-not-found-message"),
                      dcc.Link(label, href=href, className="alert-link", id="utt-not-found-back")],
                     color="warning", id="utt-not-found")


def audio_problem(dataset: "Dataset", uid: int) -> str | None:
    """Why the utterance's audio cannot play (an offset past the file's end, a file gone or
    corrupt), found as the page is made, so the player never asks for it and the browser's
    console shows no failed request; None when it can. The same read and cache as the audio
    routes' (the player's request then finds the segment decoded)."""
    try:
        source = service_of(dataset).source(uid)
    except (AudioError, UnknownUtterance) as e:
        return str(e)
    except Exception:  # noqa: BLE001 - a decoder failure must not break the page; the figure says why
        log.exception("audio of utterance %s failed", uid)
        return None
    if isinstance(source, SegmentReader):
        source.close()
    return None


def audio_alert(message: str) -> dbc.Alert:
    return dbc.Alert([html.Strong("Cannot show the waveform and spectrogram: "), html.Span(message)],
                     color="danger", className="mb-0", id="utt-audio-error")


def signal_view(dataset: "Dataset", uid: Any, kind: str | None) -> dict:
    """The waveform + spectrogram of one utterance (the audio routes' service: shared cache,
    bounded memory for segments of any length), or why there is none."""
    hidden = {"display": "none"}
    if not isinstance(uid, numbers.Integral) or isinstance(uid, bool) or not 0 <= uid < len(dataset.utterances):
        # None (no utterance), or no position the page holds (a script's POST): nothing to draw
        return {"figure": {}, "style": hidden, "message": None, "player": no_update, "wav": no_update,
                "hint": no_update}
    fig, message = signal_for_page(dataset, int(uid), as_text(kind) or "linear")
    if fig is None:
        # The player could not play it either: say why once, instead of a dead player (and no
        # download or play hint for audio that cannot be read).
        return {"figure": {}, "style": hidden, "message": audio_alert(message), "player": hidden, "wav": hidden,
                "hint": hidden}
    return {"figure": fig, "style": {"height": "420px"}, "message": None, "player": {}, "wav": {}, "hint": {}}


def callbacks(app, dataset: "Dataset") -> None:
    @app.callback(
        output={"figure": Output(state.UTT_SIGNAL, "figure"), "style": Output(state.UTT_SIGNAL, "style"),
                "message": Output(state.UTT_SIGNAL_MESSAGE, "children"), "player": Output(state.UTT_AUDIO, "style"),
                "wav": Output(state.UTT_WAV, "style"), "hint": Output(state.UTT_PLAY_HINT, "style")},
        inputs={"kind": Input(state.UTT_SIGNAL_KIND, "value"), "uid": State(state.UTT_ID, "data")},
    )
    def show_signal(kind, uid):
        return signal_view(dataset, uid, kind)


PAGE = Page(path=PATH, name=TITLE, layout=layout, callbacks=callbacks, nav=False, prefix=True,
            api="/api/utterances/ID", takes=(*state.INSPECTOR_PARAMS, "spectrogram"))
