"""Duplicates: utterances that share a transcript (after lower-casing and removing punctuation),
nearly share one (a few character edits), or share their audio (the same decoded samples), each
group with its size, transcripts and a link to Samples filtered to it (`{dup_text_group} = 12`).
JSON twin: /api/duplicates?kind=text|near|audio.

A near-duplicate group is built around its most frequent transcript, its centre: every member is
within NEAR_DUPLICATE_EDITS of the centre, so groups do not chain ("set a timer for N minutes",
N = 1…120, is several groups, not one; see ``sde.quality.duplicates``).

`/duplicates?kind=text&page=P`: groups largest first, PAGE_SIZE a page. The group columns are
computed on the first visit (``sde.quality.apply.quality_frame``, ~3 s per million
utterances; near-duplicates 40–75 s of CPU per million distinct transcripts,
benchmarks/bench_near_duplicates.py); audio groups need the audio hashes of the TTS page's
measurement (or ``--vad``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from sde.quality.apply import NEAR_DUPLICATE_EDITS
from sde.quality.duplicates import NEAR_MIN_CHARS
from sde.web.components import fmt_int, page_header
from sde.web.pages.page import Page, link_value_notes
from sde.web.panels.background import FIRST_WAIT_S, POLL_MS, in_background
from sde.web.panels.quality_data import KIND_COLUMNS, duplicate_groups_found, duplicates_page
from sde.web.present import MAX_PAGE, choice_param, int_param
from sde.web.state import samples_href, search_of, utterance_href

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "Duplicates"
PAGE_SIZE = 50
SHOWN_IDS = 12
SHOWN_TEXTS = 3
TEXT_CHARS = 200
TABLE = "dup-table"
BODY = "dup-body"
POLL = "dup-poll"
PARAMS = "dup-params"
KIND_LABELS = {"text": "Same transcript", "near": "Nearly the same transcript", "audio": "Same audio"}


def _page_number(raw: str | None) -> int:
    text = (raw or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else 0


def _tabs(kind: str) -> html.Div:
    return dbc.Nav([dbc.NavItem(dbc.NavLink(label, href="/duplicates" + search_of({"kind": k}), active=k == kind,
                                            id=f"dup-tab-{k}"))
                    for k, label in KIND_LABELS.items()], pills=True, className="mb-3")


def _texts(texts: list[str], total: int) -> Any:
    """The first transcripts of a group; ``total`` counts them all (a group lists at most
    GROUP_MAX_TEXTS of them)."""
    shown = [t if len(t) <= TEXT_CHARS else t[:TEXT_CHARS] + "…" for t in texts[:SHOWN_TEXTS]]
    more = max(total, len(texts)) - len(shown)
    return html.Div([html.Div(t, className="text-break") for t in shown]
                    + ([html.Div(f"… and {fmt_int(more)} other transcripts", className="text-muted")] if more > 0 else []))


def _ids(kind: str, group: dict) -> Any:
    links: list[Any] = []
    for uid in group["ids"][:SHOWN_IDS]:
        links += [dcc.Link(str(uid), href=utterance_href(uid, filter=group["filter"])), " "]
    if group["size"] > SHOWN_IDS:
        links.append(html.Span(f"… +{fmt_int(group['size'] - SHOWN_IDS)}", className="text-muted"))
    return links


def _pager(kind: str, page: int, total_groups: int) -> html.Div:
    pages = max(1, -(-total_groups // PAGE_SIZE))

    def link(label: str, target: int, link_id: str):
        if not 0 <= target < pages or target == page:
            return html.Span(label, className="btn btn-sm btn-outline-secondary disabled", id=link_id)
        return dcc.Link(label, href="/duplicates" + search_of({"kind": kind, "page": str(target)}),
                        className="btn btn-sm btn-outline-primary", id=link_id)

    return html.Div([html.Span(f"page {fmt_int(page + 1)} of {fmt_int(pages)}", className="text-muted small me-auto"),
                     link("← Previous", page - 1, "dup-prev"), link("Next →", page + 1, "dup-next")],
                    className="d-flex align-items-center gap-2 mb-2")


def _near_rule(kind: str) -> list[Any]:
    """What "nearly the same" means, on the near tab only: without it a group of ten different
    sentences looks like a bug, and one sentence per group looks like missed pairs."""
    if kind != "near":
        return []
    return [html.P(f"Every transcript of a group is within {NEAR_DUPLICATE_EDITS} character edits of the group's "
                   "centre, its most frequent transcript (ties: the first alphabetically), after lower-casing and "
                   "removing punctuation; one near two centres joins the more frequent. Transcripts under "
                   f"{NEAR_MIN_CHARS} characters only match exactly. Groups do not chain: members are at most "
                   f"{2 * NEAR_DUPLICATE_EDITS} edits apart.",
                   className="text-muted small mb-2", id="dup-near-rule")]


def _drill_downs(kind: str, column: str, groups: int) -> list[Any]:
    """" · all of them in Samples" (and for audio, the groups whose transcripts differ): only when
    there are groups, as a link to an empty list offers what is not there."""
    if not groups:
        return []
    return [" · ", dcc.Link("all of them in Samples", href=samples_href(filter=f"{{{column}}} is not null", sort=column),
                            id="dup-all-samples"),
            *([" · ", dcc.Link("same audio, different transcripts", id="dup-conflicts",
                               href=samples_href(filter="{dup_audio_text_conflict} = true", sort="dup_audio_group"))]
              if kind == "audio" else [])]


def layout(dataset: Dataset, path: str, params: Mapping[str, str]):
    notes = link_value_notes()
    kind = choice_param(params, "kind", tuple(KIND_COLUMNS), "text", notes)
    page = int_param(params, "page", 0, 0, MAX_PAGE, notes)   # the API's rule for /api/duplicates?page=
    api = "/api/duplicates" + search_of({"kind": kind, **({"page": page, "page_size": PAGE_SIZE} if page else {})})
    header = page_header(TITLE, [f"{dataset.name} · ", html.A("JSON", href=api, className="link-secondary")])
    content, final = groups_state(dataset, kind, page, wait_s=FIRST_WAIT_S)
    return html.Div([header, _tabs(kind), dcc.Store(id=PARAMS, data={"kind": kind, "page": page}),
                     dcc.Interval(id=POLL, interval=POLL_MS, disabled=final), html.Div(content, id=BODY)])


def groups_state(dataset: Dataset, kind: str, page: int, wait_s: float = 0.0) -> tuple[Any, bool]:
    """(the page below its tabs, whether it is final): the groups once computed (on a thread of
    their own, sde.web.panels.background: near-duplicates take ~20-30 s per million utterances on
    the first visit after a start, which left the page blank), why there are none, or a line
    saying the search runs."""
    progress = in_background(dataset, "duplicate-groups", kind, lambda: duplicate_groups_found(dataset, kind), wait_s)
    if progress.error is not None:
        return dbc.Alert(f"Finding the groups failed: {progress.error}", color="danger", id="dup-error"), True
    if not progress.done:
        what = "nearly the same transcript" if kind == "near" else KIND_LABELS[kind].lower()
        return html.Div(f"Finding the utterances with {what} among {fmt_int(len(dataset.utterances))} … "
                        f"({progress.seconds:.0f} s; near-duplicates take about 20-30 s per million utterances, "
                        "once per start)", className="text-muted", id="dup-running"), False
    if progress.value is None:
        return _groups_view(dataset, kind, page), True
    alert_id, message = progress.value
    if alert_id == "dup-not-measured":
        return dbc.Alert([message, " · ", dcc.Link("TTS readiness", href="/tts")], color="info", id=alert_id), True
    return dbc.Alert(message, color="warning", id=alert_id), True


def _groups_view(dataset: Dataset, kind: str, page: int) -> Any:
    data = duplicates_page(dataset, kind, page, PAGE_SIZE)
    summary = html.P([
        html.Strong(fmt_int(data["utterances"]), id="dup-utterances"), " utterances in ",
        html.Strong(fmt_int(data["groups_total"]), id="dup-groups"), f" groups ({KIND_LABELS[kind].lower()})",
        *_drill_downs(kind, data["column"], data["groups_total"]),
    ], className="mb-2")
    if not data["groups_total"]:
        return html.Div([summary, *_near_rule(kind),
                         dbc.Alert("No duplicates of this kind.", color="success", id="dup-none")])
    if not data["groups"]:  # a page past the last one (an old link)
        return html.Div([summary, *_near_rule(kind), dbc.Alert([
            f"There is no page {fmt_int(page + 1)}: the {fmt_int(data['groups_total'])} groups fill "
            f"{fmt_int(-(-data['groups_total'] // PAGE_SIZE))}. ",
            dcc.Link("Go to the first page", href="/duplicates" + search_of({"kind": kind}), className="alert-link")],
            color="warning", id="dup-past-end")])
    rows = [html.Tr([
        html.Td(dcc.Link(f"#{g['group']}", href=samples_href(filter=g["filter"]), id=f"dup-group-{g['group']}")),
        html.Td(fmt_int(g["size"]), className="text-end"),
        html.Td(_texts(g["texts"], g.get("texts_total", len(g["texts"])))),
        html.Td(_ids(kind, g), className="small"),
        *([html.Td(dbc.Badge("different transcripts", color="warning") if g.get("conflict") else "")]
          if kind == "audio" else []),
    ]) for g in data["groups"]]
    head = ["group", "utterances", "transcripts", "ids"] + ([""] if kind == "audio" else [])
    table = dbc.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                      size="sm", hover=True, striped=True, className="bg-white small", id=TABLE)
    return html.Div([summary, *_near_rule(kind), _pager(kind, page, data["groups_total"]),
                     dbc.Card(dbc.CardBody(table, className="p-0"))])


def callbacks(app, dataset: Dataset) -> None:
    @app.callback(Output(BODY, "children"), Output(POLL, "disabled"), Input(POLL, "n_intervals"),
                  State(PARAMS, "data"), prevent_initial_call=True)
    def poll_groups(_ticks, params):
        params = params if isinstance(params, dict) else {}
        kind = params.get("kind") if params.get("kind") in KIND_COLUMNS else "text"
        return groups_state(dataset, kind, _page_number(str(params.get("page", ""))))

PAGE = Page(path="/duplicates", name=TITLE, layout=layout, callbacks=callbacks, api="/api/duplicates",
            takes=("kind", "page"))
