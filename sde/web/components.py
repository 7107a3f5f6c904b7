"""Widgets the pages share: number formatting, the navbar, page headers, stat cards, the word diff,
key/value tables, the filter box and a small client-side grid. Pure functions that return Dash
components; no callbacks, no dataset.

Every user-supplied string goes into components as text children or props (Dash escapes them);
nothing here builds raw HTML, and the grids use no HTML cell renderer.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Callable, Mapping, Sequence

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import dcc, html

from sde.filters import combine_filters
from sde.web import state

# ---------------------------------------------------------------- number formatting

def fmt_int(n: Any) -> str:
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return "–"


def fmt_float(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    try:
        return f"{float(x):,.{digits}f}"
    except (TypeError, ValueError):
        return "–"


def fmt_pct(x: Any, digits: int = 2) -> str:
    s = fmt_float(x, digits)
    return s if s == "–" else s + "%"


def fmt_value(v: Any) -> str:
    """Any cell value as display text (the inspector's key/value table)."""
    if v is None or v is pd.NA:
        return "–"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}" if abs(int(v)) >= 10_000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return "–"
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else f"{f:.4g}" if abs(f) < 1e-3 else f"{f:,.4f}".rstrip("0").rstrip(".")
    return str(v)


def char_label(ch: str) -> str:
    """A visible, unambiguous label for one alphabet character (space, controls, combining marks)."""
    if ch == " ":
        return "␣"
    if ch == "\t":
        return "\\t"
    cat = unicodedata.category(ch)
    if cat.startswith("C") or cat in ("Zs", "Zl", "Zp") or ch in "\u200b\u200c\u200d\ufeff":
        return f"U+{ord(ch):04X}"
    if cat.startswith("M"):  # combining mark: show it on a dotted circle
        return "◌" + ch
    return ch


def char_title(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}".strip()


# ---------------------------------------------------------------- shell pieces

def nav_item_id(label: str) -> str:
    """The DOM id of a page's navbar item: `nav-` and the label in lower case, each run of anything
    but letters and digits a hyphen ("TTS readiness" → nav-tts-readiness), so it works as a CSS
    selector (#nav-tts-readiness) without escaping."""
    return "nav-" + (re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "page")


#: Navbar labels shortened on medium screens (768-1199 px), where the full ones took two rows.
NAV_SHORT_LABELS = {"Statistics": "Stats", "Vocabulary": "Vocab", "Comparison": "Compare", "TTS readiness": "TTS"}


def nav_label(label: str) -> Any:
    """A navbar link's text: the label, and where it has a short form, both (CSS shows one)."""
    short = NAV_SHORT_LABELS.get(label)
    if short is None:
        return label
    # the full label stays in the link for screen readers (visually hidden, not removed); the
    # short one is what the eye reads, with the full one as its tooltip
    return [html.Span(label, className="nav-label-full"),
            html.Span(short, className="nav-label-short", title=label, **{"aria-hidden": "true"})]


MAIN = "main"  # the <main> landmark around every page (sde.web.app's shell), the skip link's target


def navbar(links: Sequence[tuple[str, str, bool]], title: str) -> dbc.Navbar:
    """The top bar: the manifest's name and a link per (label, href, active only on exactly href)."""
    # Each link returns to its page as the user left it (filter, sort, hypothesis, tab): the app's
    # NAV_JS sets its href and whether it is active, which dbc's own matching of the path against
    # an href with a query string would get wrong.
    # Between Bootstrap's md and xl breakpoints (768-1199 px) the longer labels are shortened
    # (sde.css), so that the links stay on one row beside the manifest's name (nav_label).
    items = [
        dbc.NavItem(dbc.NavLink(nav_label(label), href=href, active=False, id={"type": state.NAV_LINK, "index": href}),
                    id=nav_item_id(label))
        for label, href, _exact in links
    ]
    return dbc.Navbar(
        dbc.Container([
            # The bar's first Tab stop, shown when focused: past its links (ten) straight to the page.
            html.A("Skip to content", href=f"#{MAIN}", className="skip-link visually-hidden-focusable"),
            dcc.Link(
                html.Span([html.Span("sde", className="brand-mark"),
                           html.Span(title, className="brand-title", title=title)]),
                href="/", className="navbar-brand d-flex align-items-center",
            ),
            # not dbc.NavbarToggler: dbc 2 renders it without aria-expanded (a screen reader could
            # not tell the menu open from closed); the app's toggle callback keeps this one's true
            html.Button(html.Span(className="navbar-toggler-icon"), id=state.NAVBAR_TOGGLER, n_clicks=0,
                        type="button", className="navbar-toggler",
                        **{"aria-label": "Toggle navigation", "aria-controls": state.NAVBAR_COLLAPSE,
                           "aria-expanded": "false"}),
            dbc.Collapse(dbc.Nav(items, navbar=True, className="ms-auto"), id=state.NAVBAR_COLLAPSE,
                         navbar=True, is_open=False),
        ], fluid=True),
        id=state.NAVBAR, color="primary", dark=True, className="mb-3 shadow-sm", sticky="top",
    )


def page_header(title: str, subtitle: Any = None, right: Any = None) -> html.Div:
    return html.Div([
        # min-width 0 and break-anywhere: a subtitle holding a long path without spaces (the
        # inspector's audio path) wraps instead of widening the whole page past the screen
        html.Div([
            # the page's one level-1 heading, as it looks (an h4 in size: tests and CSS find it so)
            html.H4(title, className="mb-0 page-title", role="heading", **{"aria-level": "1"}),
            html.Div(subtitle, className="text-muted small page-subtitle") if subtitle is not None else None,
        ], className="page-heading"),
        html.Div(right, className="d-flex gap-2 align-items-center flex-wrap") if right is not None else None,
    ], className="d-flex justify-content-between align-items-end flex-wrap gap-2 mb-3")


def stat_card(label: str, value: str, *, value_id: str | None = None, sub: Any = None,
              href: str | None = None, tone: str | None = None, title: str | None = None) -> dbc.Card:
    value_props = {"id": value_id} if value_id else {}
    body = [
        html.Div(label, className="stat-label"),
        html.Div(value, className="stat-value" + (f" text-{tone}" if tone else ""), **value_props),
    ]
    if sub is not None:
        body.append(html.Div(sub, className="stat-sub"))
    card = dbc.Card(dbc.CardBody(body), className="stat-card h-100")
    if title:
        card = html.Div(card, title=title, className="h-100")
    if href:
        return dcc.Link(card, href=href, className="stat-link")
    return card


def alphabet_view(chars: Sequence[str]) -> html.Div:
    if not chars:
        return html.Div("The references are empty: no characters.", className="text-muted")
    # Each character lists the references that contain it: an odd one (U+200B, a stray tag) is
    # something to look at, not only to count.
    return html.Div(
        [dcc.Link(char_label(c), href=state.char_href(c), className="alpha-char",
                  title=f"{char_title(c)} · click to list the references that contain it") for c in chars],
        className="alphabet", id=state.STATS_ALPHABET,
    )


def key_value_table(row: Mapping[str, Any], table_id: str | None = None) -> dbc.Table:
    body = [html.Tr([html.Th(str(k), scope="row", className="kv-key"), html.Td(fmt_value(v), className="kv-value")])
            for k, v in row.items()]
    props = {"id": table_id} if table_id else {}
    return dbc.Table(html.Tbody(body), bordered=False, hover=True, size="sm",
                     className="kv-table mb-0", **props)


# ---------------------------------------------------------------- word diff

DIFF_CLASSES = {"equal": "diff-eq", "sub": "diff-sub", "del": "diff-del", "ins": "diff-ins"}


Highlight = Callable[[str, "str | None", "str | None"], bool]


def substitution(ref: str, hyp: str, class_name: str, title: str) -> list[Any]:
    """A substituted word as seen (the struck reference word, a space, the hypothesis word) and as
    said: a screen reader read the pair as a deletion and an insertion, and a title is not read, so
    it hears "substitution: sea, said as seashells" from visually hidden text instead. A space, not
    a margin, between the two words: a margin lands on the outer side in right-to-left text, and
    Arabic letters join across the element boundary into one non-existent word."""
    return [html.Span(f"substitution: {ref}, said as {hyp}", className="visually-hidden"),
            html.Span([html.Del(ref, className="diff-sub-ref"), " ", html.Ins(hyp, className="diff-sub-hyp")],
                      className=class_name, title=title, **{"aria-hidden": "true"})]


def diff_view(aligned: Sequence[Any], highlight: Highlight | None = None) -> html.Div:
    """Word diff of one hypothesis vs its reference: equal words plain, substitutions as struck
    reference + hypothesis, deletions struck in red, insertions in green. `aligned` holds
    sde.metrics.AlignedWord (or dicts with op/ref/hyp). `highlight(op, ref, hyp)` marks the
    words the inspector was opened for (an error, a word) with the class `diff-hit`."""
    spans: list[Any] = []
    for w in aligned:
        op, ref, hyp = (w["op"], w["ref"], w["hyp"]) if isinstance(w, Mapping) else (w.op, w.ref, w.hyp)
        hit = " diff-hit" if highlight is not None and op in DIFF_CLASSES and highlight(op, ref, hyp) else ""
        if spans:
            spans.append(" ")
        if op == "equal":
            spans.append(html.Span(ref, className="diff-eq" + hit))
        elif op == "sub":
            spans += substitution(ref, hyp, "diff-sub" + hit, f"substitution: {ref} → {hyp}")
        elif op == "del":
            spans.append(html.Del(ref, className="diff-del" + hit, title=f"deletion: {ref}"))
        elif op == "ins":
            spans.append(html.Ins(hyp, className="diff-ins" + hit, title=f"insertion: {hyp}"))
        elif op in ("unaligned", "missing"):  # too long to diff, or no hypothesis: the text as it is, and why
            note = w.get("note") if isinstance(w, Mapping) else w.note
            spans.append(html.Div(note, className="text-muted small diff-note"))
            if hyp is not None:
                spans.append(html.Span(hyp, className="diff-plain"))
    if not spans:
        spans = [html.Span("(empty reference and hypothesis)", className="text-muted")]
    return html.Div(spans, className="diff")


def marked_words(text: str, marked: Callable[[str], bool] | None = None) -> list[Any]:
    """`text` as words, those for which `marked(word)` holds in a `diff-hit` span (the reference
    line of the inspector, when it was opened for a word)."""
    if marked is None:
        return [text]
    out: list[Any] = []
    for i, word in enumerate(text.split()):
        out.append(" " if i else "")
        out.append(html.Mark(word, className="diff-hit") if marked(word) else word)
    return out


def diff_legend() -> html.Div:
    return html.Div([
        html.Span("Legend:", className="me-2 text-muted"),
        html.Span("correct", className="diff-eq legend-item"),
        *substitution("ref", "hyp", "diff-sub legend-item", "substitution"),
        html.Del("deleted", className="diff-del legend-item", title="deletion"),
        html.Ins("inserted", className="diff-ins legend-item", title="insertion"),
    ], className="diff-legend small", id="diff-legend")


# ---------------------------------------------------------------- filter box and small grids

FILTER_OPS = "= != < <= > >= =~ contains has matches in"  # =~ ignores case
# Shown on hover over "Examples" under every filter box: one of each kind of clause users ask about.
FILTER_EXAMPLES = (
    '{wer} > 20 && {duration} < 10',
    '{speaker} in ("spk_7", "spk_9") || {lang} =~ "EN"',
    '{text} contains "hello" && !({text} matches "^(uh|um) ")',
    '{wer_b} - {wer} > 10',
    '{snr} is null',
)

# AG Grid's quartz theme in sde's colours (the table pages use a roomier spacing).
GRID_THEME = {"function": "themeQuartz.withParams({fontFamily: 'inherit', fontSize: 13, headerFontWeight: 700, "
                          "accentColor: '#18bc9c', headerBackgroundColor: '#f3f6f9', rowHoverColor: '#eaf6f3', "
                          "spacing: 5, wrapperBorderRadius: 6})"}
TABLE_GRID_THEME = {"function": GRID_THEME["function"].replace("spacing: 5", "spacing: 6")}
# A clientside callback body: the grid re-asks for its rows (the infinite model caches blocks),
# after a new filter on a table page or a new breakdown on the Errors page.
PURGE_GRID_JS = """function(_changed, gridId) {
    if (window.dash_ag_grid && window.dash_ag_grid.getApiAsync) {
        window.dash_ag_grid.getApiAsync(gridId).then(function (api) {
            api.purgeInfiniteCache();
            api.ensureIndexVisible(0, 'top');
        });
    }
    return Date.now();
}"""
INT_FORMAT = {"function": "params.value == null ? '' : d3.format(',')(params.value)"}
PCT_FORMAT = {"function": "params.value == null ? '–' : d3.format('.2f')(params.value) + '%'"}


def filter_box(input_id: str, apply_id: str, feedback_id: str, value: str, error: str | None, placeholder: str,
               *, lead: str = "Clauses ", tail: str = ". Press Enter to apply.", help_id: str | None = None,
               className: str | None = None, excerpt: str | None = None,
               excerpt_id: str | None = None) -> html.Div:
    """The filter box (DESIGN filter language): the input, an Apply button, the parser's message
    under it when `error` (with `excerpt`, the filter with a caret under the place it goes wrong,
    in a second feedback line `excerpt_id`), and a line of help between `lead` and `tail`."""
    help_props = {"id": help_id} if help_id else {}
    examples_id = f"{input_id}-examples"
    excerpt_line = ([dbc.FormFeedback(html.Pre(excerpt, className="filter-excerpt mb-0") if excerpt else None,
                                      type="invalid", id=excerpt_id)] if excerpt_id else [])
    return html.Div([
        dbc.InputGroup([
            # a label, not InputGroupText: the box's name ("Filter") besides its placeholder
            html.Label("Filter", htmlFor=input_id, className="input-group-text fw-bold"),
            dbc.Input(id=input_id, value=value, placeholder=placeholder, debounce=True, type="text",
                      autoComplete="off", invalid=bool(error), className="font-monospace filter-input"),
            dbc.Button("Apply", id=apply_id, color="primary", n_clicks=0),
            dbc.FormFeedback(error or "", type="invalid", id=feedback_id),
            *excerpt_line,
        ], className="has-validation"),
        html.Div([lead, html.Code("{column} OP value"), " combined with ", html.Code("&& || !"), " and parentheses; OP is one of ",
                  html.Code(FILTER_OPS), ", or ", html.Code("is null"), "; a value may be another ",
                  html.Code("{column}"), tail, " ", html.Span("Examples", id=examples_id, className="filter-examples", tabIndex="0"),
                  dbc.Tooltip([html.Div(html.Code(example, className="text-nowrap")) for example in FILTER_EXAMPLES],
                              target=examples_id, placement="bottom", className="filter-examples-tip")],
                 className="form-text", **help_props),
    ], className=className)


def filter_hints_view(hints: Sequence[Any], href_of: Any, link_id: str) -> html.Div | None:
    """Advice about a filter that matched nothing (sde.query.Hint: a message and, when there is
    one, the rewritten filter), each with a link that applies the rewrite (`href_of(filter)`)."""
    if not hints:
        return None
    items = []
    for i, hint in enumerate(hints):
        line: list[Any] = [hint.message]
        if hint.filter:
            line += [" ", dcc.Link(["Use ", html.Code(hint.filter)], href=href_of(hint.filter),
                                   id=link_id if i == 0 else f"{link_id}-{i}", className="alert-link")]
        items.append(html.Div(line))
    return dbc.Alert(items, color="info", className="py-2 mb-0 small filter-hint")


def alert_code(text: str) -> html.Code:
    """Code inside a coloured alert: in the alert's own colour, as the theme's pink `code` is
    unreadable there (contrast 1.0 on the danger alert's red, 1.2 on info blue, 1.7 on warning)."""
    return html.Code(text, className="text-reset")


def labelled(label: str, control: Any, width: str | None = None) -> html.Div:
    style = {"minWidth": width} if width else {}
    return html.Div([html.Label(label, className="form-label small fw-bold text-muted mb-1"), control], style=style)


#: The class of a grid whose rows are links: sde.js opens the focused row on Enter, and Tab leaves it.
LINK_GRID_CLASS = "sde-grid sde-link-grid"


def small_grid(grid_id: str, rows: list[dict], column_defs: list[dict], height: int = 320,
               clickable: bool = True) -> dag.AgGrid:
    """A client-side grid for a few hundred rows (sortable; a click opens the row's href)."""
    return dag.AgGrid(
        id=grid_id,
        rowData=rows,
        columnDefs=column_defs,
        defaultColDef={"sortable": True, "resizable": True, "suppressHeaderMenuButton": True,
                       "filter": False},
        getRowId="params.data.href",
        columnSize="responsiveSizeToFit",
        dashGridOptions={"theme": GRID_THEME, "animateRows": False, "enableCellTextSelection": True,
                         "rowClass": "grid-row-link" if clickable else "", "tooltipShowDelay": 400,
                         # rows that are links take the focus: ↑/↓ walk them, Enter opens one (sde.js)
                         "suppressCellFocus": not clickable,
                         "localeText": {"noRowsToShow": "none"}},
        style={"height": f"{height}px", "width": "100%"},
        className=LINK_GRID_CLASS if clickable else "sde-grid",
    )


def graph_height(fig: Any) -> str:
    """A dcc.Graph's CSS height: its figure's (a go.Figure or its plotly JSON; else a responsive
    graph takes the default 450 px)."""
    height = fig.get("layout", {}).get("height") if isinstance(fig, dict) else fig.layout.height
    return f"{int(height or 450)}px"


def warnings_view(warnings: Sequence[str]) -> list[dbc.Alert]:
    """Warnings about a page's URL (an unknown hypothesis, a bad filter) above its controls."""
    return [dbc.Alert(w, color="warning", className="py-2 mb-2") for w in warnings]


# ---------------------------------------------------------------- callback inputs, as a browser sends them
# A callback's inputs come from a POST any client can send: a script may post a number where the
# page holds text, a dict where it holds a list, null, a list of a million items. Callbacks read
# them through these, which answer what the browser would have sent (nothing) for anything else.

def as_text(value: Any) -> str:
    """``value`` if it is text, else ""."""
    return value if isinstance(value, str) else ""


def as_mapping(value: Any) -> Mapping:
    """``value`` if it is a JSON object, else {}."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list:
    """``value`` if it is a JSON array, else []."""
    return value if isinstance(value, list) else []


def first_point(click: Any) -> Mapping:
    """The first point of a figure's clickData ({} when there is none, or it is not one)."""
    points = as_list(as_mapping(click).get("points"))
    return as_mapping(points[0]) if points else {}


def href_of_click(cell: Mapping | None = None, point: Mapping | None = None, index: int = 0) -> str | None:
    """The href a small-grid click (its row id) or a bar click (customdata[index]) points to; only
    a path of this app ("/…"), never another scheme."""
    cell, clicked = as_mapping(cell), first_point(point)
    if cell:
        href = cell.get("rowId")
    elif clicked:
        custom = clicked.get("customdata")
        href = custom[index] if isinstance(custom, (list, tuple)) and len(custom) > index else custom
    else:
        return None
    return href if isinstance(href, str) and href.startswith("/") and not href.startswith("//") else None


# ---------------------------------------------------------------- manifest downloads (curation)

MANIFEST_API = "/api/utterances.jsonl"


def manifest_href(filter_text: str | None = None, sort: str | None = None) -> str:
    """The JSONL export of the utterances that `filter_text` selects (sorted by `sort`, else in
    manifest order): the user's own manifest lines, byte for byte."""
    return MANIFEST_API + state.search_of({"filter": (filter_text or "").strip(), "sort": sort})


def manifest_button(filter_text: str | None = None, sort: str | None = None, *, also: str | None = None,
                    element_id: str | None = None, label: str = "Download manifest") -> html.A:
    """The "Download manifest" button beside a CSV link: the same selection (narrowed by the
    clause `also`, e.g. one group or one kind of error) as a NeMo manifest."""
    props = {"id": element_id} if element_id else {}
    return html.A(label, href=manifest_href(combine_filters(filter_text, also), sort), download="manifest.jsonl",
                  className="btn btn-sm btn-outline-success manifest-link",
                  title="the selected lines of your manifest, byte for byte (JSONL)", **props)


LINK_NOTES = "link-notes"   # the alert about a page's link parameters it could not use


def link_notes_alert(notes: Sequence[str]) -> dbc.Alert:
    """What a page says about its link (sde.web.present.link_notes, int_param, choice_param): one
    line per parameter, which the user can close."""
    return dbc.Alert([html.Div(note) for note in notes], id=LINK_NOTES, color="warning", dismissable=True,
                     className="small")
