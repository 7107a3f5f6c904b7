"""Rules: drop rules decided while looking at the data, replayed by `sde export --rules` in a pipeline
(JSON twin: POST /api/rules/preview).

    /rules?filter=Q&add=F

Save a filter as a named rule (Samples' "Save as rule" opens this page with `add=` its filter),
see how many utterances and hours each rule removes, how many only that rule removes, and the
union (an utterance two rules match counts once), within the view `filter` when one is given.
The counts come from the same function as `sde export --rules` (sde.rules.evaluate_rules), so
what the page shows is what the export removes. The rules live in the browser (local storage)
until downloaded as rules.yaml; a rules.yaml can be loaded back. The kept and the removed lines
download as manifests (the user's own lines, byte for byte).
"""

from __future__ import annotations

import base64
import shlex
from pathlib import Path
from urllib.parse import urlencode
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update

from sde.replay import data_args, source_args
from sde.durations import duration_text
from sde.rules import (MAX_RULES, MAX_RULES_BYTES, Rule, RulesError, check_rules, dump_rules, parse_rules,
                       rules_preview_route)
from sde.web import reviewing, state
from sde.web.served import served_cache_args
from sde.web.components import MANIFEST_API, as_text, fmt_int, page_header
from sde.web.pages.page import Page
from sde.web.present import check_filter
from sde.web.state import query_params, rendered_key, search_of

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "Rules"
PATH = "/rules"

STORE = "rules-store"             # dcc.Store (local storage): {"rules": [{name, filter, ...}]}
VIEW = "rules-view"               # the view the rules apply within (a filter)
VIEW_FEEDBACK = "rules-view-feedback"
NAME = "rules-name"
FILTER = "rules-filter"
ADD = "rules-add"
FEEDBACK = "rules-feedback"
TABLE = "rules-table"
UNION = "rules-union"
KEPT = "rules-kept"               # download: the lines no rule removes
REMOVED = "rules-removed"         # download: the lines the rules remove
COMMAND = "rules-command"
YAML_BUTTON = "rules-yaml-button"
YAML = "rules-yaml"               # dcc.Download of rules.yaml
UPLOAD = "rules-upload"
CLEAR = "rules-clear"
REMOVE = "rules-remove"           # pattern-matching id type of each rule's remove button


# ---------------------------------------------------------------- rules as the store holds them

def stored_rules(data: Any) -> list[dict]:
    """The rules of the local store (any JSON may be there: what is not a rule is left out)."""
    items = data.get("rules") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        return []
    return [dict(r) for r in items[:MAX_RULES]
            if isinstance(r, Mapping) and isinstance(r.get("name"), str) and isinstance(r.get("filter"), str)]


def as_rules(items: Sequence[Mapping]) -> list[Rule]:
    return [Rule(r["name"], r["filter"], r.get("description") or "", r.get("enabled", True) is not False)
            for r in items]


def add_rule(dataset: "Dataset", items: list[dict], name: str | None, flt: str | None) -> tuple[list[dict], str | None]:
    """The rules with a new one, or (the same rules, why it cannot be added)."""
    name, flt = as_text(name).strip(), as_text(flt).strip()
    if not name:
        return items, "give the rule a name, e.g. high WER"
    if not flt:
        return items, 'give the rule a filter, e.g. {wer} > 60'
    if any(r["name"] == name for r in items):
        return items, f"there is already a rule named {name!r}: give each rule its own name"
    if len(items) >= MAX_RULES:
        return items, f"at most {MAX_RULES} rules"
    code, payload = rules_preview_route(dataset, reviewing.current_store(), {"rules": [{"name": name, "filter": flt}]})
    if code != 200:
        return items, payload.get("error", "invalid rule")
    return [*items, {"name": name, "filter": flt}], None


def uploaded_rules(contents: Any, filename: Any, dataset: "Dataset | None" = None) -> tuple[list[dict] | None, str | None]:
    """The rules of an uploaded rules.yaml (a data: URL), or why they cannot be read; with
    `dataset`, every rule's filter (a disabled one's too) is checked against its columns, as
    `sde export --rules` does."""
    name = as_text(filename)[:200] or "rules.yaml"
    if not isinstance(contents, str):  # what the upload holds is always a data: URL
        return None, f"{name}: could not read the upload (not a data: URL)"
    try:
        raw = base64.b64decode(contents.split(",", 1)[1], validate=False)
    except (IndexError, ValueError):
        return None, f"{name}: could not read the upload"
    if len(raw) > MAX_RULES_BYTES:
        return None, f"{name}: larger than {MAX_RULES_BYTES >> 20} MiB; a rules file is a short list of named filters"
    try:
        rules = parse_rules(raw.decode("utf-8-sig"), name)
        if dataset is not None:
            check_rules(dataset, reviewing.current_store(), rules, name)
    except UnicodeDecodeError as e:
        return None, f"{name}: not UTF-8 text (byte {e.start + 1}); save it as UTF-8"
    except RulesError as e:
        return None, str(e)
    return [r.to_json() for r in rules], None


def enabled_filters(items: Sequence[Mapping]) -> list[str]:
    return [r["filter"] for r in items if r.get("enabled", True) is not False]


def download_hrefs(view: str | None, items: Sequence[Mapping]) -> tuple[str, str | None]:
    """(kept, removed) manifest downloads of the view: each enabled rule travels as its own `drop=`,
    evaluated like `sde export --rules` (a negated filter would also leave out the lines where a
    rule's column is missing, which no rule removes)."""
    params = [("filter", (view or "").strip())] + [("drop", f) for f in enabled_filters(items)]
    params = [(k, v) for k, v in params if v]
    kept = MANIFEST_API + ("?" + urlencode(params) if params else "")
    removed = MANIFEST_API + "?" + urlencode([*params, ("removed", "1")]) if enabled_filters(items) else None
    return kept, removed


# ---------------------------------------------------------------- what the page shows

def _rule_row(i: int, item: Mapping, count: Mapping | None) -> html.Tr:
    enabled = item.get("enabled", True) is not False
    cells = [
        html.Td(item["name"], className="fw-bold"),
        html.Td(html.Code(item["filter"]), className="rules-filter-cell"),
        html.Td(fmt_int(count["utterances"]) if count and enabled else "off", className="text-end",
                id=f"rules-count-{i}"),
        html.Td(duration_text(count["hours"]) if count and enabled else "–", className="text-end",
                id=f"rules-hours-{i}"),
        html.Td(fmt_int(count["only"]) if count and enabled else "–", className="text-end", id=f"rules-only-{i}"),
        html.Td(dbc.Button("×", id={"type": REMOVE, "index": i}, color="link", size="sm", className="p-0",
                           title=f"remove {item['name']}")),
    ]
    return html.Tr(cells, id=f"rules-row-{i}")


def rules_table(items: Sequence[Mapping], report: Mapping | None) -> Any:
    if not items:
        return html.Div("No rules yet: add one above, load a rules.yaml, or use \"Save as rule\" on Samples.",
                        className="text-muted", id="rules-empty")
    counts = report["rules"] if report else [None] * len(items)
    head = html.Thead(html.Tr([html.Th("rule"), html.Th("filter"), html.Th("utterances", className="text-end"),
                               html.Th("duration", className="text-end"),
                               html.Th("only this rule", className="text-end",
                                       title="what removing this rule would bring back"), html.Th("")]))
    return dbc.Table([head, html.Tbody([_rule_row(i, r, c) for i, (r, c) in enumerate(zip(items, counts))])],
                     size="sm", hover=True, className="mb-2 rules-table")


def union_view(report: Mapping | None, error: str | None) -> Any:
    if error:
        return html.Span(error, className="text-danger")
    if not report or not report["rules"]:
        return None
    u = report["union"]
    return html.Span([html.B(f"{fmt_int(u['utterances'])} utterances · {duration_text(u['hours'])}"),
                      f" removed by all rules together (an utterance two rules match counts once), of "
                      f"{fmt_int(report['considered'])} in the view"])


def export_command(dataset: "Dataset", view: str | None, filters: Sequence[str] = ()) -> str:
    """The `sde export` that replays this page: the manifest where it is (a command copied to
    another folder still finds it), the data options the server was started with (a rule or view
    may name a column only they make: a hypothesis, a normalised score, an OOV count), and the
    server's reviews file when the view or a rule (`filters`) names a review column, and its cache
    options (the build it reads, not one made again)."""
    parts = ["sde", "export", *source_args(dataset), *data_args(dataset), *served_cache_args()]
    store = reviewing.current_store()
    if store is not None and any("review" in f for f in [view or "", *filters]):
        parts += ["--reviews", str(Path(store.path).resolve())]
    if view:
        parts += ["--filter", view]
    parts += ["--rules", "rules.yaml", "-o", "kept.json", "--rejected", "dropped.json"]
    return " ".join(shlex.quote(p) for p in parts)


def view_url(view: str, search: str | None) -> dict:
    """The view written into the URL (`filter=`), as Samples keeps its filter, so a reload or a
    shared link shows the same view; nothing when the URL says it already."""
    params = query_params(as_text(search))
    if (params.get("filter") or "").strip() == view:
        return {"search": no_update, "rendered": no_update}
    params = {**params, "filter": view}
    written = {k: v for k, v in params.items() if v}
    return {"search": search_of(written), "rendered": rendered_key(PATH, written, TITLE)}


def form_spent(search: str | None) -> dict:
    """The URL without `add=` once its filter became a rule (the other parameters kept): a reload
    would otherwise fill the form with it again; nothing when the URL carries no `add=`."""
    params = query_params(as_text(search))
    if "add" not in params:
        return {"search": no_update, "rendered": no_update}
    written = {k: v for k, v in params.items() if k != "add"}
    return {"search": search_of(written), "rendered": rendered_key(PATH, written, TITLE)}


def view_state(dataset: "Dataset", data: Any, view: str | None, search: str | None = None) -> dict:
    """Everything that follows from the rules and the view: counts, union, downloads, command,
    and the URL that keeps the view (when `search`, the URL's now, is given)."""
    items = stored_rules(data)
    view = as_text(view).strip()
    # check_filter also names the option that measures a column this server lacks (sde.rules)
    view_error = check_filter(reviewing.utterance_query(dataset, view), view) if view else None
    report, error = None, None
    if items and not view_error:
        code, payload = rules_preview_route(dataset, reviewing.current_store(),
                                            {"rules": [{k: r[k] for k in ("name", "filter", "enabled") if k in r}
                                                       for r in items], "filter": view or None})
        report, error = (payload, None) if code == 200 else (None, payload.get("error"))
    kept_href = removed_href = None
    if not view_error and not error:
        kept_href, removed_href = download_hrefs(view, items)
    return {
        "table": rules_table(items, report),
        "union": union_view(report, error),
        "kept": kept_href, "kept_disabled": kept_href is None,
        "removed": removed_href, "removed_disabled": removed_href is None,
        "command": export_command(dataset, view, enabled_filters(items)),
        "view_invalid": bool(view_error), "view_feedback": view_error or "",
        **(view_url(view, search) if search is not None else {}),
    }


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    view = params.get("filter", "")
    add = params.get("add", "")
    form = dbc.Card(dbc.CardBody([
        html.H6("Save a filter as a rule", className="fw-bold"),
        dbc.Row([
            dbc.Col(dbc.Input(id=NAME, placeholder="name, e.g. high WER", autoComplete="off", n_submit=0,
                              autoFocus=bool(add)), md=3),
            dbc.Col(dbc.Input(id=FILTER, value=add, placeholder="filter, e.g. {wer} > 60", autoComplete="off",
                              className="font-monospace", n_submit=0), md=7),
            dbc.Col(dbc.Button("Add rule", id=ADD, color="danger", n_clicks=0, className="w-100"), md=2),
        ], className="g-2"),
        html.Div(id=FEEDBACK, className="small mt-1"),
    ]), className="mb-3")
    view_box = dbc.InputGroup([
        dbc.InputGroupText("Within", className="fw-bold"),
        dbc.Input(id=VIEW, value=view, debounce=True, placeholder="all utterances (or a filter: the export's --filter)",
                  autoComplete="off", className="font-monospace"),
        dbc.FormFeedback(id=VIEW_FEEDBACK, type="invalid"),
    ], className="has-validation mb-3")
    downloads = html.Div([
        html.A("Download kept manifest", id=KEPT, className="btn btn-sm btn-success", download="kept.jsonl"),
        html.A("Download removed", id=REMOVED, className="btn btn-sm btn-outline-danger", download="dropped.jsonl"),
        dbc.Button("Download rules.yaml", id=YAML_BUTTON, color="primary", outline=True, size="sm", n_clicks=0),
        dcc.Upload(dbc.Button("Load rules.yaml", color="secondary", outline=True, size="sm"), id=UPLOAD,
                   accept=".yaml,.yml,text/yaml", max_size=MAX_RULES_BYTES, multiple=False),
        dbc.Button("Remove all", id=CLEAR, color="link", size="sm", n_clicks=0, className="text-danger"),
        dcc.Download(id=YAML),
    ], className="d-flex gap-2 align-items-center flex-wrap mb-2")
    return html.Div([
        dcc.Store(id=STORE, storage_type="local"),
        page_header(TITLE, ["Named filters whose matches an export removes · JSON twin: ",
                            html.Code("POST /api/rules/preview")]),
        view_box,
        form,
        dbc.Card(dbc.CardBody([
            html.Div(id=TABLE),
            html.Div(id=UNION, className="mb-2"),
            downloads,
            html.Div(["Replay in a pipeline: ", html.Code(id=COMMAND)], className="small text-muted"),
        ]), className="mb-3"),
    ], className="rules-page")


# ---------------------------------------------------------------- callbacks

def edit(dataset: "Dataset", action: Any, data: Any, values: Mapping[str, Any]) -> dict:
    """A rule added, removed or loaded, or all removed: the new store, the form's message, and the
    URL (without `add=` once the rule it brought is added)."""
    items = stored_rules(data)
    unchanged = {"store": no_update, "feedback": no_update, "name": no_update, "filter": no_update,
                 "search": no_update, "rendered": no_update}
    if action in (ADD, NAME, FILTER):
        new, error = add_rule(dataset, items, values.get("name"), values.get("filter"))
        if error:
            return {**unchanged, "feedback": html.Span(error, className="text-danger", id="rules-error")}
        return {"store": {"rules": new}, "feedback": html.Span(f"added {new[-1]['name']!r}", className="text-success"),
                "name": "", "filter": "", **form_spent(values.get("search"))}
    if isinstance(action, Mapping) and action.get("type") == REMOVE:
        i = action.get("index")
        if not isinstance(i, int) or not 0 <= i < len(items):
            return unchanged
        return {**unchanged, "store": {"rules": items[:i] + items[i + 1:]},
                "feedback": html.Span(f"removed {items[i]['name']!r}", className="text-muted")}
    if action == UPLOAD and values.get("contents"):
        loaded, error = uploaded_rules(values["contents"], values.get("filename"), dataset)
        if error:
            return {**unchanged, "feedback": html.Span(error, className="text-danger", id="rules-error")}
        return {**unchanged, "store": {"rules": loaded},
                "feedback": html.Span(f"loaded {len(loaded)} rules", className="text-success")}
    if action == CLEAR:
        return {**unchanged, "store": {"rules": []}, "feedback": ""}
    return unchanged


def callbacks(app, dataset: "Dataset") -> None:
    @app.callback(
        output={"store": Output(STORE, "data"), "feedback": Output(FEEDBACK, "children"),
                "name": Output(NAME, "value"), "filter": Output(FILTER, "value"),
                "search": Output(state.URL, "search", allow_duplicate=True),
                "rendered": Output(state.RENDERED, "data", allow_duplicate=True)},
        inputs={"_add": Input(ADD, "n_clicks"), "_name": Input(NAME, "n_submit"), "_filter": Input(FILTER, "n_submit"),
                "_remove": Input({"type": REMOVE, "index": ALL}, "n_clicks"), "contents": Input(UPLOAD, "contents"),
                "_clear": Input(CLEAR, "n_clicks"), "filename": State(UPLOAD, "filename"),
                "name": State(NAME, "value"), "filter": State(FILTER, "value"), "data": State(STORE, "data"),
                "search": State(state.URL, "search")},
        prevent_initial_call=True,
    )
    def change(**values):
        clicked = ctx.triggered_id if ctx.triggered and ctx.triggered[0].get("value") else None
        return edit(dataset, clicked, values.pop("data"), values)

    @app.callback(
        output={"table": Output(TABLE, "children"), "union": Output(UNION, "children"),
                "kept": Output(KEPT, "href"), "kept_disabled": Output(KEPT, "hidden"),
                "removed": Output(REMOVED, "href"), "removed_disabled": Output(REMOVED, "hidden"),
                "command": Output(COMMAND, "children"),
                "view_invalid": Output(VIEW, "invalid"), "view_feedback": Output(VIEW_FEEDBACK, "children"),
                "search": Output(state.URL, "search", allow_duplicate=True),
                "rendered": Output(state.RENDERED, "data", allow_duplicate=True)},
        inputs={"data": Input(STORE, "data"), "view": Input(VIEW, "value"), "search": State(state.URL, "search")},
        prevent_initial_call="initial_duplicate",
    )
    def show(data, view, search):
        return view_state(dataset, data, view, as_text(search))

    @app.callback(Output(YAML, "data"), Input(YAML_BUTTON, "n_clicks"), State(STORE, "data"),
                  prevent_initial_call=True)
    def download_yaml(_n, data):
        return dict(content=dump_rules(as_rules(stored_rules(data))), filename="rules.yaml")


PAGE = Page(path=PATH, name=TITLE, layout=layout, callbacks=callbacks, api="/api/rules/preview",
            takes=("filter", "add"))
