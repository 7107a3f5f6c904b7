"""Problems: the manifest lines that were skipped, with file:line and reason (JSON twin: /api/problems)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import dash_bootstrap_components as dbc
from dash import html

from sde.web import ids
from sde.web.components import fmt_int, page_header
from sde.web.pages import Page

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "Problems"
MAX_SHOWN = 2000  # more would only slow the page; the JSON twin has them all


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    problems = dataset.problems
    loaded = len(dataset.utterances)
    header = page_header(TITLE, [f"{dataset.name} · ", html.A("JSON", href="/api/problems", className="link-secondary")])
    if not problems:
        return html.Div([header, dbc.Alert(
            [html.Strong("No problems: "), f"all {fmt_int(loaded)} lines loaded."],
            color="success", id="problems-empty")])
    shown = problems[:MAX_SHOWN]
    rows = [html.Tr([html.Td(p.path, className="text-break"), html.Td(str(p.line), className="text-end font-monospace"),
                     html.Td(p.reason, className="text-break")]) for p in shown]
    notes = [
        dbc.Alert([
            html.Strong(f"{fmt_int(len(problems))} line{'s' if len(problems) != 1 else ''} skipped"),
            (f"; {fmt_int(loaded)} utterances loaded. Fix the lines below (or run with --strict to stop at the "
             "first one)."),
        ], color="warning"),
    ]
    if len(problems) > MAX_SHOWN:
        notes.append(html.P([f"Showing the first {fmt_int(MAX_SHOWN)}; ",
                             html.A("all of them as JSON", href="/api/problems"), "."], className="text-muted"))
    table = dbc.Table([
        html.Thead(html.Tr([html.Th("file"), html.Th("line", className="text-end"), html.Th("reason")])),
        html.Tbody(rows),
    ], striped=True, hover=True, size="sm", className="problems-table bg-white", id=ids.PROBLEMS_TABLE)
    return html.Div([header, *notes, dbc.Card(dbc.CardBody(table, className="p-0"))])


PAGE = Page(path="/problems", name=TITLE, layout=layout, api="/api/problems")
