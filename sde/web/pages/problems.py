"""Problems: the manifest lines that were skipped, with file:line and reason, the warnings about lines
kept and the audio files not found (JSON twin: /api/problems, which carries all three).

Paged (`/problems?page=P`, 0-based, PAGE_SIZE lines a page) like its JSON twin: a manifest with a
million bad lines costs one page of table rows, not a million.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import dcc, html

from sde.audio_presence import MISSING_AUDIO_FILTER, missing_audio_listing
from sde.web import state
from sde.web.components import alert_code, fmt_int, page_header
from sde.web.pages.page import Page, link_value_notes
from sde.web.present import MAX_PAGE, MISSING_AUDIO_SHOWN, PROBLEMS_PAGE_LINES, int_param

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "Problems"
PAGE_SIZE = PROBLEMS_PAGE_LINES  # more rows only slow the page down; the pager and the JSON twin reach the rest


def _api_href(page: int) -> str:
    return "/api/problems?" + urlencode({"page": page, "page_size": PAGE_SIZE})


def _pager(page: int, pages: int, total: int) -> html.Div:
    first, last = page * PAGE_SIZE + 1, min((page + 1) * PAGE_SIZE, total)

    def link(label: str, target: int, link_id: str):
        if not 0 <= target < pages or target == page:
            return html.Span(label, className="btn btn-sm btn-outline-secondary disabled", id=link_id)
        return dcc.Link(label, href=f"/problems?page={target}", className="btn btn-sm btn-outline-primary",
                        id=link_id)

    return html.Div([
        html.Span([f"Lines {fmt_int(first)}–{fmt_int(last)} of {fmt_int(total)} · page {fmt_int(page + 1)} of "
                   f"{fmt_int(pages)} · ", html.A("this page as JSON", href=_api_href(page))],
                  className="text-muted small me-auto", id="problems-range"),
        link("← Previous", page - 1, "problems-prev"),
        link("Next →", page + 1, "problems-next"),
    ], className="d-flex align-items-center gap-2 mb-2 flex-wrap", id="problems-pager")


def _warnings_block(dataset: "Dataset"):
    """Notes about lines that were kept (e.g. a hypothesis missing on some lines)."""
    warnings = list(getattr(dataset, "warnings", None) or [])
    if not warnings:
        return None
    return dbc.Alert([html.Strong("Warnings (lines kept):"),
                      html.Ul([html.Li(str(w)) for w in warnings[:PAGE_SIZE]], className="mb-0")],
                     color="info", id="problems-warnings")


MISSING_AUDIO = "problems-missing-audio"
MISSING_AUDIO_LINK = "problems-missing-audio-link"


def shown_path(path: str) -> str:
    """A path as the page shows it: quoted with escapes where it holds what a page does not show
    (a NUL, a line break, a space at either end), which may be why the file is not found."""
    if path.isprintable() and path == path.strip():
        return path
    return repr(path)


def missing_audio_block(dataset: "Dataset"):
    """The audio files that were not found at load time (sde.audio_presence), with a link to the
    utterances that name them."""
    missing = missing_audio_listing(dataset.utterances, dataset.name, MISSING_AUDIO_SHOWN)
    if missing is None:
        return None
    files, utterances = missing["files"], missing["utterances"]
    items = [html.Li([alert_code(shown_path(m["audio_path"])), f" ({m['file']}:{m['line']})"])
             for m in missing["listed"]]
    more = missing["more"]
    return dbc.Alert([
        html.Strong(f"{fmt_int(files)} audio file{'s' if files != 1 else ''} not found"),
        f" ({fmt_int(utterances)} utterance{'s' if utterances != 1 else ''}): they cannot be played or measured. ",
        dcc.Link("Show them in Samples", href=state.samples_href(filter=MISSING_AUDIO_FILTER),
                 id=MISSING_AUDIO_LINK, className="alert-link"),
        html.Ul(items + ([html.Li(f"… and {fmt_int(more)} more")] if more > 0 else []), className="mb-0 mt-2 small"),
    ], color="danger", id=MISSING_AUDIO)


def _no_lines_skipped(loaded: int, missing_audio_listed: bool, warned: bool) -> dbc.Alert:
    """The note of a manifest with no skipped line: "No problems" only when the page lists nothing
    else (missing audio files above are problems, and saying none right under them contradicted them)."""
    if missing_audio_listed:
        return dbc.Alert([html.Strong("No lines skipped: "),
                          f"all {fmt_int(loaded)} lines loaded; the missing audio files above are the problems "
                          "to fix."], color="info", id="problems-empty")
    if warned:
        return dbc.Alert([html.Strong("No lines skipped: "),
                          f"all {fmt_int(loaded)} lines loaded (see the warnings above)."],
                         color="success", id="problems-empty")
    return dbc.Alert([html.Strong("No problems: "), f"all {fmt_int(loaded)} lines loaded."],
                     color="success", id="problems-empty")


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    problems = dataset.problems
    loaded = len(dataset.utterances)
    header = page_header(TITLE, [f"{dataset.name} · ", html.A("JSON", href="/api/problems", className="link-secondary")])
    warnings = [_warnings_block(dataset), missing_audio_block(dataset)]
    asked = int_param(params, "page", 0, 0, MAX_PAGE, link_value_notes())  # the rule of /api/problems?page=
    if not problems:
        return html.Div([header, *warnings, _no_lines_skipped(loaded, warnings[1] is not None, warnings[0] is not None)])
    pages = -(-len(problems) // PAGE_SIZE)
    page = min(asked, pages - 1)  # past the last page: the last one
    shown = problems[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
    rows = [html.Tr([html.Td(p.path, className="text-break"), html.Td(str(p.line), className="text-end font-monospace"),
                     html.Td(p.reason, className="text-break")]) for p in shown]
    notes = [
        dbc.Alert([
            html.Strong(f"{fmt_int(len(problems))} line{'s' if len(problems) != 1 else ''} skipped"),
            (f"; {fmt_int(loaded)} utterances loaded. Fix the lines below (or run with --strict to stop at the "
             "first one)."),
        ], color="warning"),
    ]
    if pages > 1:
        notes.append(_pager(page, pages, len(problems)))
    table = dbc.Table([
        html.Thead(html.Tr([html.Th("file"), html.Th("line", className="text-end"), html.Th("reason")])),
        html.Tbody(rows),
    ], striped=True, hover=True, size="sm", className="problems-table bg-white", id=state.PROBLEMS_TABLE)
    return html.Div([header, *warnings, *notes, dbc.Card(dbc.CardBody(table, className="p-0"))])


PAGE = Page(path="/problems", name=TITLE, layout=layout, api="/api/problems", takes=("page",))
