"""The Dash app factory, `create_app(dataset, config) -> dash.Dash`: the composition root that
puts the pages, the API and the panels together (nothing imports it but the CLI and tests).

The shell is a navbar, a `dcc.Location` and a page container. A router callback renders the page
of sde.web.pages whose path matches (layouts are pure functions of dataset + URL, so every view
is a shareable link). Every callback is registered on this app object, never on global
`dash.callback`, so several apps can live in one process (tests do).

Nothing is loaded from a CDN: Dash serves its own bundles (serve_locally) and sde/assets holds the
Bootstrap theme, fonts, CSS, favicon and the keyboard-shortcut script.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from html import escape as html_escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, dcc, html, no_update
from dash.exceptions import DependencyException
from flask import Response, make_response, request, send_from_directory

from sde.audio_quality import has_audio_metrics
from sde.web import reviewing, served, sites, state
from sde.web.api import register_api
from sde.web.auth import install_basic_auth
from sde.web.components import MAIN, alert_code, navbar
from sde.web.pages import Page, load_pages, resolve
from sde.web.panels import audio_metrics, augment, review, suspicious, transcribe, vad
from sde.web.state import query_params, rendered_key

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

ASSETS = Path(__file__).resolve().parent.parent / "assets"
log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 4 << 20
CALLBACK_PATH = "/_dash-update-component"


@dataclass(frozen=True)
class AppConfig:
    title: str = "sde"            # shown in the navbar and the browser tab: the manifest's name
    debug: bool = False           # Dash dev tools (the CLI's --debug)
    auth: str | None = None       # "USER:PASSWORD": HTTP basic auth on every route
    audio_routes: bool = True     # register /audio/<id>.wav and /api/utterances/<id>/signal
    cache_dir: str | None = None  # where background jobs (transcription, audio metrics) hand results over
    reviews: str | None = None    # the reviews file (SQLite; created when missing); None: reviews are off
    read_only: bool = False       # --read-only: reviews are shown, never edited
    # The dataset cache the served build was read from or stored in, for the commands the pages
    # print (sde.replay.cache_args): a pasted `sde export` without them builds the dataset again.
    dataset_cache_dir: str | None = None  # --cache-dir, else $SDE_CACHE_DIR (None: the platform's default)
    no_cache: bool = False                # --no-cache
    vad: bool = False                     # --vad: a build of its own, with the columns rules may name
    # --allow-host: the names besides localhost and loopback IPs a server bound to loopback answers
    # ("*": any), e.g. a reverse proxy's; sde.web.sites refuses other Host values (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()


# Dash's page shell with the document's language (screen readers pick their voice by it; Dash's
# own shell has no lang).
INDEX_STRING = """<!DOCTYPE html>
<html lang="en">
    <head>
        {%metas%}
        <title>{%title%}</title>
        {%favicon%}
        {%css%}
    </head>
    <body>
        {%app_entry%}
        <footer>
            {%config%}
            {%scripts%}
            {%renderer%}
        </footer>
    </body>
</html>"""


def not_found_layout(pathname: str) -> html.Div:
    return dbc.Alert([
        html.H5("Page not found", className="alert-heading"),
        html.P(["There is no page at ", alert_code(pathname), "."]),
        dcc.Link("Go to the statistics", href="/", className="alert-link"),
    ], color="warning", id="not-found")


def is_page_path(pathname: str, dataset: "Dataset | None" = None) -> bool:
    """Whether `pathname` is one of the app's pages. All registered pages count, available or not
    (Errors appears once a transcription adds a hypothesis; until then its page says why not).
    With `dataset`, the inspector's page is one only for an utterance it has: /utterance/99999
    past the end is as missing as /utterance/abc (the page says so, naming the id and how many
    utterances there are)."""
    page = resolve(load_pages(None), pathname)
    if page is None:
        return False
    if page.prefix:  # the one prefix page, the inspector, takes an utterance id: /utterance/17
        rest = pathname[len(page.path):].strip("/")
        if not (rest.isascii() and rest.isdigit()):
            return False
        return dataset is None or int(rest) < len(dataset.utterances)
    return True


def answer_404_off_pages(app: dash.Dash, dataset: "Dataset | None" = None) -> None:
    """Dash serves its page shell for every path; send that shell with status 404 for paths that
    are no page (`/../etc/passwd`, `/nope`, an utterance the dataset does not have): the browser
    still shows the app's "Page not found" view (or the inspector's "No such utterance") with the
    navbar, and a crawler or scanner learns the truth."""
    server = app.server
    for rule in server.url_map.iter_rules():
        if rule.rule == "/<path:path>":
            catch_all = server.view_functions[rule.endpoint]

            def page_or_404(path: str, _shell=catch_all):
                resp = make_response(_shell(path))
                if not is_page_path(request.path, dataset):
                    resp.status_code = 404
                return resp

            server.view_functions[rule.endpoint] = page_or_404
            return
    log.warning("Dash's catch-all route was not found: unknown paths answer with its shell")


def _unknown_bundle(_e: DependencyException) -> Response:
    # Dash raises this for a /_dash-component-suites path that is not one of its registered
    # files (typos, probes, "../" attempts): a 404, not a 500 with a traceback in the log.
    return Response('{"error": "no such file: /_dash-component-suites serves only Dash\'s registered bundles"}',
                    404, mimetype="application/json")


def _is_prop(item: Any) -> bool:
    """One `{"id", "property", ...}` of a callback request (its id a string, or a dict for a pattern)."""
    return (isinstance(item, dict) and isinstance(item.get("id"), (str, dict))
            and isinstance(item.get("property"), str))


def _are_props(items: Any) -> bool:
    """A callback request's inputs or state: props, or lists of props (an ALL pattern's matches)."""
    return isinstance(items, list) and all(
        _is_prop(i) or (isinstance(i, list) and all(_is_prop(j) for j in i)) for i in items)


def callback_body_problem(body: Any, callbacks: Mapping[str, dict]) -> str | None:
    """Why `body` is no callback request the browser sends (None when it is one): the output of a
    registered callback, with as many inputs and states as that callback has, each an {id,
    property}. Dash assumes all of it and answered anything else with a 500 and a traceback in the
    log (one per request a script or scanner sends)."""
    if not isinstance(body, dict):
        return "a callback request is a JSON object {output, outputs, inputs, state, changedPropIds}"
    output = body.get("output")
    if not isinstance(output, str) or output not in callbacks:
        shown = repr(output) if len(repr(output)) <= 80 else repr(output)[:80] + "…"
        return f"no callback has the output {shown}: reload the page (the server may have been restarted)"
    registered = callbacks[output]
    if "callback" not in registered:  # a clientside callback: the browser runs it, the server has none
        return f"the output {output!r} is computed in the browser (a clientside callback): the server does not run it"
    for field, key in (("inputs", "inputs"), ("state", "state")):
        items = body.get(field, [])
        if not _are_props(items) or len(items) != len(registered.get(key, ())):
            return (f"the callback request's {field!r} must be a list of {len(registered.get(key, ()))} "
                    "{id, property, value} objects")
    outputs = body.get("outputs")
    if outputs is not None and not (_is_prop(outputs) or _are_props(outputs)):
        return "the callback request's 'outputs' must be an {id, property} object or a list of them"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        return "the callback request's 'changedPropIds' must be a list of strings"
    return None


def _callback_body() -> Any:
    """The request's JSON (None when it is not JSON), parsed once: Dash reads Flask's cached copy."""
    try:
        return request.get_json(silent=True)
    except RecursionError:  # json's parser recurses per [ or {: 100,000 of them in a 200 KB body
        return None


def refuse_malformed_callbacks(app: dash.Dash) -> None:
    """Answer a POST to Dash's callback route that is no callback request with a JSON 400 naming
    what is wrong, before Dash dispatches it."""
    server = app.server
    for rule in server.url_map.iter_rules():
        if rule.rule == CALLBACK_PATH:
            dispatch = server.view_functions[rule.endpoint]
            server.view_functions[rule.endpoint] = _checked(dispatch, app)
            return
    log.warning("Dash's callback route was not found: malformed callback requests reach Dash")


def _checked(dispatch: Callable, app: dash.Dash) -> Callable:
    @functools.wraps(dispatch)
    def checked(*args: Any, **kwargs: Any) -> Any:
        problem = callback_body_problem(_callback_body(), app.callback_map)
        if problem is not None:
            return Response(json.dumps({"error": problem}), 400, mimetype="application/json")
        return dispatch(*args, **kwargs)

    return checked


def _security_headers(resp: Response) -> Response:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    return resp


def page_title(dataset: "Dataset", page: Page, pathname: str) -> str:
    """The page's part of the window title. The inspector's names the utterance it shows
    ("Utterance 17"), as its heading does: a screen reader's user switching windows or tabs hears
    which one, and the title is set once per page, never rewritten by a script after the shell."""
    if page.prefix and is_page_path(pathname, dataset):
        return f"{page.name} {int(pathname[len(page.path):].strip('/'))}"
    return page.name


def render(dataset: "Dataset", pathname: str | None, search: str | None, rendered: dict | None) -> dict:
    """The router: the layout of the page at `pathname`, unless it is the one already shown."""
    # The browser sends strings (and a dict it was given); a script posting other JSON gets the
    # statistics page, not a 500 with a traceback in the log.
    pathname = pathname if isinstance(pathname, str) and pathname else "/"
    search = search if isinstance(search, str) else None
    rendered = rendered if isinstance(rendered, dict) else None
    # A page this dataset does not have in the navbar (Comparison of one hypothesis, a bookmarked
    # link) still answers: its layout says why it does not apply, not "Page not found".
    page = resolve(load_pages(dataset), pathname) or resolve(load_pages(None), pathname)
    if page is None:
        return {"page": not_found_layout(pathname), "rendered": rendered_key(pathname, {}, "Not found")}
    key = rendered_key(pathname, query_params(search), page_title(dataset, page, pathname))
    if rendered and rendered.get("path") == key["path"] and rendered.get("params") == key["params"]:
        return {"page": no_update, "rendered": no_update}
    try:
        layout = page.layout(dataset, pathname, key["params"])
    except Exception as e:  # a broken page shows why instead of a blank screen
        log.exception("page %s failed", pathname)
        layout = dbc.Alert([html.H5("This page failed to render", className="alert-heading"),
                            html.Pre(f"{type(e).__name__}: {e}", className="mb-0")], color="danger")
    return {"page": layout, "rendered": key}


def _nav_links(pages: list[Page]) -> list[tuple[str, str, bool]]:
    return [(p.name, p.href, p.exact) for p in pages if p.nav]


def nav_paths(pages: list[Page]) -> dict[str, str]:
    """{path or alias: the href of the navbar link of its page} ("/statistics" → "/")."""
    return {path: p.href for p in pages if p.nav for path in (p.path.rstrip("/") or "/", *p.aliases)}


# The navbar remembers, per browser tab, the query string each page had when the user left it
# (Samples' filter and sort, Errors' hypothesis and breakdown, Duplicates' kind, Statistics' log
# scale), and its links lead back there; the link of the page shown is the active one.
NAV_JS = """function(pathname, search, links, memory, paths) {
    var kept = Object.assign({}, memory || {});
    var path = pathname || '/';
    if (path.length > 1) { path = path.replace(/[/]+$/, '') || '/'; }
    var here = (paths || {})[path];
    if (here !== undefined) {
        if (search && search !== '?') { kept[here] = search; } else { delete kept[here]; }
    }
    var hrefs = links.map(function (l) { return l.index + (kept[l.index] || ''); });
    var active = links.map(function (l) { return l.index === here; });
    return [kept, hrefs, active];
}"""


def create_app(dataset: "Dataset", config: AppConfig | None = None) -> dash.Dash:
    config = config or AppConfig(title=getattr(dataset, "name", "sde"))
    title = config.title or dataset.name
    app = dash.Dash(
        __name__,
        assets_folder=str(ASSETS),
        serve_locally=True,
        # Dash pastes `title` into the HTML unescaped: escape the user's manifest name ourselves.
        title=html_escape(f"{title} · sde"),
        update_title=None,
        suppress_callback_exceptions=True,  # page components exist only while their page is shown
        # flask-compress: scripts, pages and JSON answers gzip/brotli/zstd-compressed for browsers
        # that ask (~5 MB of scripts on a first load, a few MB per figure of 10k points: slow over an
        # SSH tunnel); audio, images and CSV downloads pass as they are.
        compress=True,
        external_stylesheets=[],
        external_scripts=[],
    )
    app.config.include_assets_files = True
    server = app.server
    # A callback's inputs are a few KB; a client posting megabytes gets 413 instead of our memory.
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    served.install(server, config.dataset_cache_dir, config.no_cache, config.vad)  # for the commands the pages print
    answer_404_off_pages(app, dataset)
    refuse_malformed_callbacks(app)
    if config.auth:
        install_basic_auth(server, config.auth)
    sites.install(server, config.allowed_hosts)  # after the auth: first, so another site's request gets no prompt
    server.register_error_handler(DependencyException, _unknown_bundle)
    server.after_request(_security_headers)
    register_api(server, dataset, audio_routes=config.audio_routes)
    # A browser showing a JSON twin (/api/summary) or a download asks for /favicon.ico, the
    # pages' icon being declared only in Dash's shell: the same icon, not a 404 in the console.
    server.add_url_rule("/favicon.ico", "sde_favicon",
                        lambda: send_from_directory(ASSETS, "favicon.ico", max_age=86400))
    # Opened once: a reviews file that cannot be used turns editing off (the inspector says why).
    reviewing.install(server, reviewing.open_for(dataset, config.reviews, read_only=config.read_only,
                                                 record_users=bool(config.auth)))
    review.callbacks(app, dataset)

    def shell() -> html.Div:
        # A function, so each page load reflects the dataset as it is now: pages such as Errors
        # appear once predictions arrive (transcription in the UI) without a restart.
        return html.Div([
            dcc.Location(id=state.URL, refresh="callback-nav"),
            dcc.Store(id=state.RENDERED),
            dcc.Store(id=state.DOC_TITLE),
            dcc.Store(id=state.APP_TITLE, data=title),
            dcc.Store(id=state.NAV_MEMORY, storage_type="session"),
            dcc.Store(id=state.NAV_PATHS, data=nav_paths(load_pages(dataset))),
            navbar(_nav_links(load_pages(dataset)), title),
            # tabIndex -1: the skip link's target takes the focus (a screen reader reads on from there)
            html.Main(dbc.Container(id=state.PAGE, fluid=True, className="page-container pb-4"),
                      id=MAIN, tabIndex="-1"),
        ])

    app.layout = shell
    app.index_string = INDEX_STRING

    # Every page's callbacks are registered, available or not: availability can change at run time.
    for page in load_pages(None):
        if page.callbacks is not None:
            page.callbacks(app, dataset)
    if not dataset.hypotheses:
        transcribe.callbacks(app, dataset, config.cache_dir)
    if not has_audio_metrics(dataset.utterances):
        audio_metrics.callbacks(app, dataset, Path(config.cache_dir) / "audio-metrics" if config.cache_dir else None,
                                cache_root=config.cache_dir)
    # Data quality: the speech job (TTS page), the Statistics card, the inspector's augmentation preview.
    vad.callbacks(app, dataset, Path(config.cache_dir) / "speech" if config.cache_dir else None,
                  cache_root=config.cache_dir)
    suspicious.callbacks(app, dataset)
    augment.callbacks(app, dataset)

    @app.callback(
        output={"page": Output(state.PAGE, "children"), "rendered": Output(state.RENDERED, "data")},
        inputs={"pathname": Input(state.URL, "pathname"), "search": Input(state.URL, "search"),
                "rendered": State(state.RENDERED, "data")},
    )
    def route(pathname, search, rendered):
        return render(dataset, pathname, search, rendered)

    # The manifest name travels as data (never pasted into the script: it is user text).
    app.clientside_callback(
        """function(rendered, appTitle) {
            var page = rendered && rendered.title ? rendered.title + ' · ' : '';
            document.title = page + appTitle + ' · sde';
            return window.dash_clientside.no_update;
        }""",
        Output(state.DOC_TITLE, "data"),
        Input(state.RENDERED, "data"),
        State(state.APP_TITLE, "data"),
    )

    nav_link = {"type": state.NAV_LINK, "index": ALL}
    app.clientside_callback(
        NAV_JS,
        Output(state.NAV_MEMORY, "data"),
        Output(nav_link, "href"),
        Output(nav_link, "active"),
        Input(state.URL, "pathname"),
        Input(state.URL, "search"),
        State(nav_link, "id"),
        State(state.NAV_MEMORY, "data"),
        State(state.NAV_PATHS, "data"),
    )

    # The narrow screen's menu: its button opens and closes it, and picking a page closes it (the
    # bar is sticky: left open, the list covered half a phone's screen on the page it opened).
    app.clientside_callback(
        f"""function (_clicks, _path, open) {{
            var by = (window.dash_clientside.callback_context.triggered_id || "");
            var opened = by === "{state.NAVBAR_TOGGLER}" ? !open : false;
            return [opened, opened ? "true" : "false"];
        }}""",
        Output(state.NAVBAR_COLLAPSE, "is_open"),
        Output(state.NAVBAR_TOGGLER, "aria-expanded"),
        Input(state.NAVBAR_TOGGLER, "n_clicks"),
        Input(state.URL, "pathname"),
        State(state.NAVBAR_COLLAPSE, "is_open"),
        prevent_initial_call=True,
    )

    return app


__all__ = ["ASSETS", "AppConfig", "create_app", "is_page_path"]
