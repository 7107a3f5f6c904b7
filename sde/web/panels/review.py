"""The inspector's review panel: mark an utterance keep / drop / fix, correct its transcript, add a
note and tags; see what is saved (with its version), a conflict with both values, undo. Also the
review counts card of the Statistics page and the curation links of the Samples toolbar.

`layout(dataset, uid, params)` renders the panel from the store; `summary_card(dataset)` the
counts; `callbacks(app, dataset)` registers everything. Every edit goes through the same
functions as the HTTP API (sde.reviews' route twins), so the browser and a script see the same
versions, conflicts and limits.

Review mode (the switch, remembered for the browser tab) walks the list the inspector was opened
on (its filter and sort): a mark moves on to the next unreviewed utterance, and undo takes back the
last mark made in this tab, going back to it. Keys (sde/assets/review.js, in review mode only):
`a` keep, `d` drop, `f` fix (the caret at the end of the corrected transcript: type, Enter saves it),
`n` next unreviewed, `z` undo.
Until the next utterance's panel is shown the keys wait (the status's data-uid, its "opening
utterance …" line and its answer marker tell review.js): no key marks an utterance not yet seen, and
a correction typed meanwhile goes to the new panel's box. What a mark did is said in words (the
answer's data-said), which review.js reads out through a live region for a screen reader.
"""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path
from urllib.parse import urlencode
from typing import TYPE_CHECKING, Any, Mapping

import dash_bootstrap_components as dbc
import numpy as np
from dash import Input, Output, State, ctx, dcc, html, no_update

from sde.query import QueryError
from sde.replay import data_args, source_args
from sde.reviews import (
    STATUSES,
    aligned_reviews,
    review_get_route,
    review_post_route,
    review_summary,
    review_undo_route,
)
from sde.durations import duration_text
from sde.export import manifest_download_name
from sde.web import reviewing, state
from sde.web.components import MANIFEST_API, as_mapping, as_text, fmt_int, manifest_href, stat_card
from sde.web.grid import list_filter
from sde.web.served import served_cache_args
from sde.web.present import row_dict

if TYPE_CHECKING:  # pragma: no cover
    import dash

    from sde.dataset import Dataset

# Component ids (the keyboard script and the browser tests use them).
CARD = "review-card"
MODE = "review-mode"              # dbc.Switch: review mode, remembered for the tab
KEEP, DROP, FIX = "review-keep", "review-drop", "review-fix"
BUTTONS = {"keep": KEEP, "drop": DROP, "fix": FIX}
TEXT = "review-text"              # the corrected transcript (Enter saves it as a fix)
NOTE = "review-note"
TAGS = "review-tags"
UNDO = "review-undo"
NEXT = "review-next"              # next unreviewed utterance of the list
STATUS = "review-status"          # what is saved: status, version, who, when (or the error); its
                                  # data-uid is the utterance this panel shows (review.js waits on it)
ANSWER = "review-answer"          # hidden in the status: a new data-answer with every answer of a mark,
                                  # data-said (what it did, in words) and data-to (the utterance it opens)
LEAVING = "review-leaving"        # in the status while review mode moves on to another utterance
SAVED = "review-saved"            # dcc.Store: {"id", "version", "review", "conflict"}
LAST = "review-last"              # dcc.Store (tab): {"id", "search"} of this tab's last mark
CONFLICT = "review-conflict"
CONFLICT_VALUES = "review-conflict-values"
MINE, THEIRS = "review-take-mine", "review-take-theirs"
READ_ONLY = "review-read-only"
SUMMARY = "review-summary"
SAMPLES_MANIFEST = "samples-manifest"
SAMPLES_RULE = "samples-save-rule"
KEYS_HINT = "keys: a keep · d drop · f fix (Enter saves) · n next unreviewed · z undo"
OUTPUTS = ("status", "saved", "conflict", "conflict_style", "text", "note", "tags", "href", "last",
           *(f"outline_{name}" for name in BUTTONS))
_TONES = {"keep": "success", "drop": "danger", "fix": "warning"}
_DONE = {"keep": "Kept", "drop": "Dropped", "fix": "Fixed"}
_TAG_SPLIT = re.compile(r"[\s,]+")


# ---------------------------------------------------------------- what the panel shows

def parse_tags(text: str | None) -> list[str]:
    """Tags as typed: words separated by spaces or commas."""
    return [t for t in _TAG_SPLIT.split(text or "") if t]


def status_view(review: Mapping | None, message: str | None = None, error: bool = False) -> list:
    """The saved state ("drop · saved, version 3 · ann · time"), and a message under it."""
    review = review or {}
    status, version = review.get("status"), int(review.get("version") or 0)
    if status:
        head = [dbc.Badge(status, color=_TONES.get(status, "secondary"), className="me-2", id="review-badge"),
                html.Span(f"saved · version {version}", id="review-version")]
    elif version:
        head = [html.Span("not reviewed (undone)", className="text-muted me-1", id="review-badge"),
                html.Span(f"· version {version}", id="review-version")]
    else:
        head = [html.Span("not reviewed yet", className="text-muted", id="review-badge")]
    # Flex items drop leading spaces: the separators are margins.
    if review.get("user"):
        head.append(html.Span(f"· by {review['user']}", className="text-muted ms-1"))
    if review.get("time"):
        head.append(html.Span(f"· {str(review['time']).replace('T', ' ')[:19]} UTC", className="text-muted small ms-1"))
    out: list = [html.Div(head, className="d-flex align-items-center flex-wrap")]
    if message:
        out.append(html.Div(message, className="small mt-1 " + ("text-danger" if error else "text-muted"),
                            id="review-message"))
    return out


def _value_lines(values: Mapping) -> list:
    if values.get("undo"):
        return [html.Div("undo the last change")]
    lines = [html.Div([html.B(values.get("status") or "no review")])]
    if values.get("status") == "fix" or values.get("text"):
        lines.append(html.Div(["text: ", html.Span(values.get("text") or "", className="font-monospace")]))
    if values.get("note"):
        lines.append(html.Div(["note: ", html.Span(values["note"])]))
    if values.get("tags"):
        lines.append(html.Div(["tags: ", html.Span(" ".join(values["tags"]))]))
    return lines


def conflict_view(conflict: Mapping | None) -> list:
    """Both values of a conflict, side by side, with "take mine" / "take theirs"."""
    if not conflict:
        return []
    stored, attempted = conflict["stored"], conflict["attempted"]
    who = f" by {stored['user']}" if stored.get("user") else ""
    return [
        html.Div([html.B("Changed elsewhere"), f" since you opened it (now version {stored.get('version')}{who}); "
                  "nothing was overwritten. Choose:"], className="mb-2"),
        dbc.Row([
            dbc.Col(html.Div([html.Div("Theirs (saved)", className="fw-bold small text-muted"),
                              *_value_lines(stored)], id="review-theirs"), xs=6),
            dbc.Col(html.Div([html.Div("Yours (not saved)", className="fw-bold small text-muted"),
                              *_value_lines(attempted)], id="review-mine"), xs=6),
        ], className="g-2 mb-2"),
    ]


def _conflict_style(conflict: Mapping | None) -> dict:
    return {} if conflict else {"display": "none"}


def _conflict_box(conflict: Mapping | None) -> html.Div:
    """Both values and the two buttons; always in the layout (a callback's inputs must be), seen
    only while there is a conflict."""
    return html.Div([
        html.Div(conflict_view(conflict), id=CONFLICT_VALUES),
        dbc.ButtonGroup([dbc.Button("Take mine", id=MINE, color="warning", size="sm"),
                         dbc.Button("Take theirs", id=THEIRS, color="secondary", size="sm")]),
    ], id=CONFLICT, className="review-conflict border border-warning rounded p-2 mb-2", style=_conflict_style(conflict))


def _outlines(status: str | None) -> dict:
    return {name: status != name for name in STATUSES}


def _text_value(review: Mapping, reference: str) -> str:
    return review.get("text") if review.get("status") == "fix" and review.get("text") is not None else reference


def layout(dataset: "Dataset", uid: int, params: Mapping[str, str]) -> dbc.Card:
    """The review panel of utterance `uid` (controls disabled, and why, when editing is off)."""
    current = reviewing.current()
    _code, review = review_get_route(dataset, current.store, uid)
    reference = row_dict(dataset.utterances, uid).get("text") or ""
    off = not current.editable
    outline = _outlines(review.get("status"))
    disabled = {"disabled": off}
    buttons = dbc.ButtonGroup([
        dbc.Button("Keep", id=KEEP, color="success", outline=outline["keep"], title="keep (a)", **disabled),
        dbc.Button("Drop", id=DROP, color="danger", outline=outline["drop"], title="drop (d)", **disabled),
        dbc.Button("Fix", id=FIX, color="warning", outline=outline["fix"],
                   title="save the corrected transcript (f, type, Enter)", **disabled),
    ], size="sm")
    header = html.Div([
        html.Span("Review", className="fw-bold me-auto"),
        dbc.Switch(id=MODE, label="review mode", value=False, persistence=True, persistence_type="session",
                   className="small mb-0", input_class_name="me-1", disabled=off),
    ], className="d-flex align-items-center gap-2")
    body = [
        dbc.Alert(current.why_not_editable(), color="secondary", className="py-1 px-2 small",
                  id=READ_ONLY) if off else None,
        html.Div(status_view(review), id=STATUS, className="mb-2", **{"data-uid": str(uid)}),
        _conflict_box(None),
        html.Div([buttons,
                  dbc.Button("Undo", id=UNDO, color="secondary", outline=True, size="sm", title="undo (z)", **disabled),
                  dbc.Button("Next unreviewed", id=NEXT, color="primary", outline=True, size="sm",
                             title="next unreviewed utterance of the list (n)")],
                 className="d-flex gap-2 flex-wrap mb-2"),
        dbc.Label("Corrected transcript", html_for=TEXT, className="small fw-bold mb-0"),
        dbc.Input(id=TEXT, value=_text_value(review, reference), type="text", autoComplete="off",
                  className="font-monospace mb-2", n_submit=0, **disabled),
        dbc.Label("Note", html_for=NOTE, className="small fw-bold mb-0"),
        dbc.Textarea(id=NOTE, value=review.get("note") or "", rows=2, className="mb-2", **disabled),
        dbc.Label("Tags", html_for=TAGS, className="small fw-bold mb-0"),
        dbc.Input(id=TAGS, value=" ".join(review.get("tags") or []), type="text", autoComplete="off",
                  placeholder="words, e.g. noise accent", className="mb-2", **disabled),
        html.Div("Keep / drop / fix save the note and tags too. In review mode a mark moves on to the next "
                 "unreviewed utterance; " + KEYS_HINT + ".", className="form-text"),
    ]
    return dbc.Card([
        dbc.CardHeader(header),
        dbc.CardBody([dcc.Store(id=SAVED, data={"id": uid, "version": review.get("version", 0), "review": review,
                                                "conflict": None}),
                      dcc.Store(id=LAST, storage_type="session"),
                      *body]),
    ], className="mb-3 review-card", id=CARD)


# ---------------------------------------------------------------- what a click does

def next_unreviewed(dataset: "Dataset", uid: int, params: Mapping[str, str]) -> int | None:
    """The first utterance after `uid` in the filtered, sorted list with no review (wrapping
    around to the start of the list); None when every other one is reviewed."""
    filter_text, sort = list_filter(params), params.get("sort") or None
    try:
        positions = reviewing.utterance_query(dataset, filter_text, sort).select(filter_text, sort)
    except QueryError:
        positions = np.arange(len(dataset.utterances))
    positions = np.asarray(positions, dtype=np.int64)
    reviewed = np.zeros(len(dataset.utterances), dtype=bool)
    store = reviewing.current_store()
    if store is not None:
        aligned = aligned_reviews(dataset, store)
        done = [p for p, r in zip(aligned.positions.tolist(), aligned.reviews) if r.status is not None]
        reviewed[done] = True
    here = np.flatnonzero(positions == uid)
    start = int(here[0]) + 1 if len(here) else 0
    walk = np.concatenate([positions[start:], positions[:start]])
    todo = walk[~reviewed[walk] & (walk != uid)]
    return int(todo[0]) if len(todo) else None


def _href(uid: int, search: str | None) -> str:
    return f"/utterance/{int(uid)}{search or ''}"


def _saved(uid: int, review: Mapping, conflict: Mapping | None = None) -> dict:
    return {"id": uid, "version": review.get("version", 0), "review": dict(review), "conflict": conflict}


def _done(uid: int, review: Mapping) -> str:
    """A saved mark in words, for a screen reader: "Kept utterance 12", "Fixed utterance 3: its text"."""
    said = f"{_DONE.get(review.get('status'), 'Saved')} utterance {uid}"
    return said + (f": {review.get('text')}" if review.get("status") == "fix" and review.get("text") else "")


def _result(saved: dict, message: str | None = None, error: bool = False, *, form: Mapping | None = None,
            reference: str = "", href: Any = no_update, last: Any = no_update, said: str | None = None) -> dict:
    """The callback's outputs for a panel now showing `saved` (and `form` values, when they change);
    `said`: what was done, in words (default: the message). In a conflict the status says what is
    saved now (theirs), not what this page had loaded."""
    conflict = saved.get("conflict")
    review = conflict["stored"] if conflict else saved["review"]
    status = status_view(review, message, error)
    moving = re.match(r"/utterance/(\d+)", href) if isinstance(href, str) else None
    if moving:
        # The keys wait while this shows (sde/assets/review.js): none acts on an utterance not yet seen.
        status.append(html.Div(f"opening utterance {moving.group(1)}…", id=LEAVING, className="small mt-1 text-muted"))
    # Every answer differs: the keys held since the mark (review.js) go on once it is shown, and
    # its words are said once (after the utterance it opens is shown).
    status.append(html.Span(hidden=True, id=ANSWER, **{"data-answer": uuid.uuid4().hex,
                                                       "data-said": message if said is None else said,
                                                       "data-to": moving.group(1) if moving else ""}))
    out = {
        "status": status,
        "saved": saved,
        "conflict": conflict_view(conflict),
        "conflict_style": _conflict_style(conflict),
        "text": no_update, "note": no_update, "tags": no_update,
        "href": href, "last": last,
        **{f"outline_{name}": value for name, value in _outlines(review.get("status")).items()},
    }
    if form is not None:
        out.update(text=_text_value(form, reference), note=form.get("note") or "", tags=" ".join(form.get("tags") or []))
    return out


def _form_body(status: str, values: Mapping, version: int | None) -> dict:
    note, text = values.get("note"), values.get("text")
    # Spaces around a typed correction are never meant (a space typed after the caret f puts at
    # the end, then nothing more): they would reach the exported manifest's text.
    text = text.strip() if isinstance(text, str) else text
    return {"status": status, "text": text if status == "fix" else None,
            "note": note if note else None, "tags": parse_tags(values.get("tags")), "version": version}


def _panel_state(dataset: "Dataset", uid: Any, saved: Any) -> bool:
    """Whether `uid` and `saved` (the panel's store) are what this panel keeps: an utterance's
    position, and the review shown of it (and a conflict's two reviews)."""
    if not isinstance(uid, int) or isinstance(uid, bool) or not 0 <= uid < len(dataset.utterances):
        return False
    if not isinstance(saved, Mapping) or saved.get("id") != uid or not isinstance(saved.get("review"), Mapping):
        return False
    conflict = saved.get("conflict")
    return not conflict or (isinstance(conflict, Mapping) and isinstance(conflict.get("stored"), Mapping)
                            and isinstance(conflict.get("attempted"), Mapping))


def review_action(dataset: "Dataset", action: str | None, values: Mapping[str, Any]) -> dict:
    """Do what the clicked control (or key) asks; `values` are the panel's inputs and states."""
    uid, saved = values.get("uid"), values.get("saved")
    if not _panel_state(dataset, uid, saved):  # None, or what no page of this server holds (a script's POST)
        return {}
    values = {**values, "search": as_text(values.get("search"))}
    params = state.query_params(values["search"])
    reference = row_dict(dataset.utterances, uid).get("text") or ""
    store, user = reviewing.current_store(), reviewing.request_user()
    mode = bool(values.get("mode"))
    if action == NEXT:
        nxt = next_unreviewed(dataset, uid, params)
        if nxt is None:
            return _result(saved, "every utterance of this list is reviewed")
        return _result(saved, href=_href(nxt, values.get("search")), said="Next unreviewed")
    if action == THEIRS and saved.get("conflict"):
        stored = saved["conflict"]["stored"]
        return _result(_saved(uid, stored), "showing their review: yours was not saved", form=stored,
                       reference=reference)
    if action == UNDO:
        return _undo(dataset, uid, saved, values, mode, reference)
    if action == MINE and saved.get("conflict"):
        attempted = saved["conflict"]["attempted"]
        if attempted.get("undo"):
            return _undo(dataset, uid, _saved(uid, saved["conflict"]["stored"]), values, False, reference)
        body = {**{k: attempted.get(k) for k in ("status", "text", "note", "tags")},
                "version": saved["conflict"]["stored"].get("version", 0)}
    elif action in (KEEP, DROP, FIX, TEXT):
        status = "fix" if action in (FIX, TEXT) else "keep" if action == KEEP else "drop"
        body = _form_body(status, values, saved.get("version", 0))
    else:
        return {}
    code, payload = review_post_route(dataset, store, uid, body, user=user)
    return _after_save(dataset, uid, saved, code, payload, body, mode, values.get("search"), reference)


def _after_save(dataset: "Dataset", uid: int, saved: dict, code: int, payload: dict, body: Mapping, mode: bool,
                search: str | None, reference: str) -> dict:
    if code == 409 and "stored" in payload:
        attempted = {k: body.get(k) for k in ("status", "text", "note", "tags")}
        if _same_review(payload["stored"], attempted):
            # A key pressed twice, or two people agreeing: what is saved is already this.
            code, payload = 200, payload["stored"]
        else:
            return _result({**saved, "conflict": {"stored": payload["stored"], "attempted": attempted}},
                           payload["error"], True)
    if code != 200:
        return _result(saved, payload.get("error", "not saved"), True)
    last = {"id": uid, "search": search or ""}
    said = _done(uid, payload)
    if mode:
        nxt = next_unreviewed(dataset, uid, state.query_params(search))
        if nxt is not None:
            return _result(_saved(uid, payload), href=_href(nxt, search), last=last, said=said)
        return _result(_saved(uid, payload), "saved · every utterance of this list is reviewed", last=last,
                       said=f"{said}; every utterance of this list is reviewed")
    return _result(_saved(uid, payload), form=payload, reference=reference, last=last, said=said)


def _same_review(stored: Mapping, attempted: Mapping) -> bool:
    return (stored.get("status"), stored.get("text") if stored.get("status") == "fix" else None,
            stored.get("note") or None, list(stored.get("tags") or [])) == \
        (attempted.get("status"), attempted.get("text") if attempted.get("status") == "fix" else None,
         attempted.get("note") or None, list(attempted.get("tags") or []))


def _undo(dataset: "Dataset", uid: int, saved: dict, values: Mapping, mode: bool, reference: str) -> dict:
    store, user = reviewing.current_store(), reviewing.request_user()
    last = values.get("last") or {}
    if mode and isinstance(last.get("id"), int) and last["id"] != uid:
        # Review mode moved on after the last mark: undo that one, and go back to it.
        code, payload = review_undo_route(dataset, store, last["id"], {}, user=user)
        if code != 200:
            return _result(saved, payload.get("error", "not undone"), True)
        return _result(saved, href=_href(last["id"], last.get("search")), last=None,
                       said=f"Undone the last mark, of utterance {last['id']}")
    code, payload = review_undo_route(dataset, store, uid, {"version": saved.get("version", 0)}, user=user)
    if code == 409 and "stored" in payload:
        return _result({**saved, "conflict": {"stored": payload["stored"], "attempted": {"undo": True}}},
                       payload["error"], True)
    if code != 200:
        return _result(saved, payload.get("error", "not undone"), True)
    return _result(_saved(uid, payload), "undone", form=payload, reference=reference, last=None,
                   said=f"Undone the last change of utterance {uid}")


# ---------------------------------------------------------------- Statistics and Samples

def _count_link(label: str, count: int, hours: float, flt: str, element_id: str) -> Any:
    return stat_card(label, fmt_int(count), value_id=element_id,
                     sub=html.Span(duration_text(hours), id=f"{element_id}-duration"),
                     href=state.samples_href(filter=flt))


#: The drop rule of the utterances reviewed "drop": the manifest without them is what `sde export
#: --rules` writes of it (its download is named <manifest>.kept.jsonl, as the link says).
_DROPPED = '{review} = "drop"'


def summary_card(dataset: "Dataset") -> dbc.Card | None:
    """Reviewed / kept / dropped / fixed utterances and their hours (None when reviews are off)."""
    current = reviewing.current()
    if current.store is None:
        return None
    s = review_summary(dataset, current.store)
    cards = [_count_link("Reviewed", s["reviewed"], s["hours_reviewed"], "{review} is not null", "stat-review-reviewed")]
    for status, label in (("keep", "Kept"), ("drop", "Dropped"), ("fix", "Fixed")):
        cards.append(_count_link(label, s[status], s[f"hours_{status}"], f'{{review}} = "{status}"',
                                 f"stat-review-{status}"))
    # how the reviews were found: those of this manifest before it was renamed or moved
    found = [html.Div(f"note: {note}", className="text-info-emphasis") for note in current.store.notes]
    notes = [*found,
             html.Span(f"{fmt_int(s['stale'])} reviews match no line any more (the manifest changed) · ",
                       className="text-warning-emphasis") if s["stale"] else None,
             html.A("Download manifest without the drops", href=MANIFEST_API + "?" + urlencode({"drop": _DROPPED}),
                    download=manifest_download_name(dataset.name, "kept"), id="review-kept-manifest"),
             " · ", dcc.Link("drop rules", href="/rules"), " · fixes are applied by ",
             html.Code(apply_command(dataset, current.store.path), id="review-apply-command")]
    return dbc.Card(dbc.CardBody([
        html.H5(["Reviews ", html.Span(str(current.store.path), className="text-muted small font-monospace")],
                className="card-title"),
        dbc.Row([dbc.Col(c, xs=6, md=3, className="mb-2") for c in cards], className="g-2"),
        html.Div(notes, className="small text-muted"),
    ]), className="mb-3", id=SUMMARY)


def apply_command(dataset: "Dataset", reviews_path: Any) -> str:
    """The `sde export --apply-reviews` of this server's manifest, data options and reviews file,
    ready to paste (from any folder)."""
    parts = ["sde", "export", *source_args(dataset), *data_args(dataset), *served_cache_args(), "--reviews",
             str(Path(reviews_path).resolve()), "--apply-reviews", "-o", "clean.json"]
    return " ".join(shlex.quote(p) for p in parts)


def samples_links(table_state: Mapping | None) -> dict:
    """The Samples toolbar's manifest download and "save as rule" link for the grid's view."""
    table_state = as_mapping(table_state)
    flt = as_text(table_state.get("effective")) or as_text(table_state.get("filter"))
    sort = as_text(table_state.get("sort"))
    return {"manifest": manifest_href(flt, sort), "rule": "/rules" + state.search_of({"add": flt})}


def samples_toolbar_links(filter_text: str | None, sort: str | None) -> list:
    """"Download manifest" and "Save as rule" beside the Samples CSV link (their hrefs follow the grid)."""
    links = samples_links({"filter": filter_text, "sort": sort})
    return [html.A("Download manifest", id=SAMPLES_MANIFEST, href=links["manifest"], download="manifest.jsonl",
                   className="btn btn-sm btn-outline-success manifest-link",
                   title="the lines of your manifest this view selects, byte for byte (JSONL)"),
            dcc.Link("Save as rule", id=SAMPLES_RULE, href=links["rule"], className="btn btn-sm btn-outline-danger",
                     title="save this filter as a named drop rule")]


# ---------------------------------------------------------------- callbacks

def callbacks(app: "dash.Dash", dataset: "Dataset") -> None:
    @app.callback(
        output={"status": Output(STATUS, "children"), "saved": Output(SAVED, "data"),
                "conflict": Output(CONFLICT_VALUES, "children"), "conflict_style": Output(CONFLICT, "style"),
                "text": Output(TEXT, "value"), "note": Output(NOTE, "value"), "tags": Output(TAGS, "value"),
                "href": Output(state.URL, "href", allow_duplicate=True), "last": Output(LAST, "data"),
                **{f"outline_{name}": Output(button, "outline") for name, button in BUTTONS.items()}},
        inputs={"_keep": Input(KEEP, "n_clicks"), "_drop": Input(DROP, "n_clicks"), "_fix": Input(FIX, "n_clicks"),
                "_submit": Input(TEXT, "n_submit"), "_undo": Input(UNDO, "n_clicks"), "_next": Input(NEXT, "n_clicks"),
                "_mine": Input(MINE, "n_clicks"), "_theirs": Input(THEIRS, "n_clicks"),
                "uid": State(state.UTT_ID, "data"), "saved": State(SAVED, "data"), "text": State(TEXT, "value"),
                "note": State(NOTE, "value"), "tags": State(TAGS, "value"), "mode": State(MODE, "value"),
                "search": State(state.URL, "search"), "last": State(LAST, "data")},
        prevent_initial_call=True,
    )
    def act(**values):
        # The control clicked: the input that changed to a count. A page's panel is rendered with a
        # call of every input (counts None / 0); a click or key right then joins that call, as
        # one of its inputs, not always the first.
        clicked = next((t["prop_id"].rsplit(".", 1)[0] for t in ctx.triggered if t.get("value")), None)
        return review_action(dataset, clicked, values) or {k: no_update for k in OUTPUTS}

    @app.callback(
        output={"manifest": Output(SAMPLES_MANIFEST, "href"), "rule": Output(SAMPLES_RULE, "href")},
        inputs={"table_state": Input(state.table_id(state.SAMPLES, state.STATE), "data")},
    )
    def follow_grid(table_state):
        return samples_links(table_state)


__all__ = ["apply_command", "callbacks", "layout", "next_unreviewed", "parse_tags", "review_action", "samples_links",
           "samples_toolbar_links", "summary_card"]
