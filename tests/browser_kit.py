"""What the browser tests share: the sde server subprocess, the JSON API, Chromium's settings and
a watch on the console, dialogs and off-host requests; and what the tests of the pages share
without a browser: `dash_update`, a callback request as the browser sends it, over HTTP, and
`by_id` / `text_of` to read the components that come back. The fixtures `browser`, `demo` and
`page` are in conftest.py."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlparse

CHROMIUM = os.environ.get("SDE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(__file__).resolve().parent / "output" / "screenshots"
TIMEOUT_MS = 15_000
#: The requests of Dash's callbacks, for a test to route (Dash 4 adds a query: ``?endId=…``).
DASH_CALLBACKS = re.compile(r"/_dash-update-component(\?|$)")

@contextmanager
def sde_server(*args: str, cwd: Path | str = ROOT, no_cache: bool = True):
    """Run `python -m sde.cli ARGS --port 0` (and --no-cache, unless ``no_cache`` is False: a server
    whose cache a test reads) from ``cwd``, yield the URL it prints, stop it after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "sde.cli", *args, "--port", "0", *(["--no-cache"] if no_cache else [])],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    found: dict[str, str] = {}

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if m and "url" not in found:
                found["url"] = m.group(1)

    threading.Thread(target=read, daemon=True).start()
    # A bound for a stuck server, not a speed test: a loaded 2-core machine took over 90 s to start one.
    deadline = time.monotonic() + 240
    while "url" not in found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        if "url" not in found:
            raise AssertionError("sde did not print its URL:\n" + "".join(lines))
        yield found["url"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


def get_json(client, url: str, status: int = 200):
    """The JSON body of a Flask test client's GET, after checking its status and mimetype."""
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == "application/json"
    return r.get_json()


def get_csv(client, url: str) -> list[dict]:
    """The rows of a CSV download (streamed, as an attachment) of a Flask test client's GET."""
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == "text/csv" and r.is_streamed
    assert "attachment" in r.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))


def api(base: str, path: str, **params) -> dict:
    url = base + path + (f"?{urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


class Watch:
    """Console errors, page errors, dialogs and off-host requests of one page."""

    def __init__(self, page, base: str, allow_console=()):
        self.errors: list[str] = []
        self.external: list[str] = []
        self.dialogs: list[str] = []
        host = urlparse(base).netloc

        def on_console(msg):
            if msg.type == "error":
                where = (msg.location or {}).get("url", "")
                if not any(a in where or a in msg.text for a in allow_console):
                    self.errors.append(f"{msg.text} @ {where}")

        def on_request(req):
            u = urlparse(req.url)
            if u.scheme in ("http", "https", "ws", "wss") and u.netloc != host:
                self.external.append(req.url)

        def on_dialog(dialog):
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("request", on_request)
        page.on("dialog", on_dialog)

    def check(self):
        assert self.errors == [], self.errors
        assert self.external == [], self.external
        assert self.dialogs == [], self.dialogs


@contextmanager
def sized_page(browser, base: str, width: int, height: int = 900):
    """A page of a ``width`` × ``height`` window on the server at ``base``, watched (:class:`Watch`):
    its console errors and failed requests fail the test once the block ends without another error."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        watch = Watch(page, base)
        yield page
        watch.check()
    finally:
        ctx.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def shows_utterance_reviewed(uid: int) -> str:
    """A JS condition (page.wait_for_function): the page is utterance ``uid``'s, its review panel
    rendered."""
    return (f"(document.querySelector('.page-title') || {{}}).innerText === 'Utterance {uid}'"
            " && !!document.querySelector('#review-card #review-status')")


def wait_url(page, pattern: str) -> None:
    page.wait_for_url(re.compile(pattern), timeout=TIMEOUT_MS)


def first_cell(page, col: str, grid: str = "#samples-grid") -> str:
    sel = f'{grid} .ag-row[row-index="0"] [col-id="{col}"]'
    # Infinite-model rows appear before their block arrives: wait for the text.
    page.wait_for_function(f"(document.querySelector('{sel}') || {{}}).innerText > ''")
    return page.inner_text(sel)


# ---------------------------------------------------------------- callbacks over HTTP

def _outputs(key: str) -> list[dict]:
    parts = key.strip(".").split("...") if key.startswith("..") else [key]
    return [dict(zip(("id", "property"), part.split(".", 1))) for part in parts]


def _find_callback(app, output: str, inputs: dict) -> str:
    keys = [k for k, v in app.callback_map.items() if output in k.split("@")[0] or output in k]
    given = set(inputs)
    keys = [k for k in keys
            if given <= {f"{d['id']}.{d['property']}" for d in app.callback_map[k]["inputs"] + app.callback_map[k]["state"]}]
    assert len(keys) == 1, (output, sorted(inputs), keys)
    return keys[0]


def dash_update(client, app, output: str, inputs: dict, state: dict | None = None,
                triggered: str | None = None) -> dict:
    """Fire the callback whose outputs include `output` ("id.prop") the way the browser does: a
    POST to /_dash-update-component. `inputs` and `state` map "id.prop" to values (those left
    out are sent as None), `triggered` is the input that changed (default: the first given).
    Returns {"id.prop": value} of the outputs the callback updated ({} when it updated none);
    components come back as JSON (read them with `by_id` and `text_of`)."""
    values = {**inputs, **(state or {})}
    key = _find_callback(app, output, values)
    spec = app.callback_map[key]

    def listed(deps):
        return [{**d, "value": values.get(f"{d['id']}.{d['property']}")} for d in deps]

    outputs = _outputs(key)
    body = {"output": key, "outputs": outputs if key.startswith("..") else outputs[0],
            "inputs": listed(spec["inputs"]), "state": listed(spec["state"]),
            "changedPropIds": [triggered or next(iter(inputs))]}
    r = client.post("/_dash-update-component", json=body)
    if r.status_code == 204:
        return {}
    assert r.status_code == 200, (r.status_code, r.get_data(as_text=True)[:1000])
    response = r.get_json()["response"]
    return {f"{cid}.{prop}": value for cid, props in response.items() for prop, value in props.items()}


def _children(node):
    if isinstance(node, dict) and "props" in node:
        return node["props"].get("children")
    return getattr(node, "children", None)


def _id(node):
    if isinstance(node, dict) and "props" in node:
        return node["props"].get("id")
    return getattr(node, "id", None)


def components(tree):
    """Every component in a tree (Dash objects or their JSON), depth first."""
    if isinstance(tree, (list, tuple)):
        for c in tree:
            yield from components(c)
    elif (isinstance(tree, dict) and "props" in tree) or hasattr(tree, "to_plotly_json"):
        yield tree
        yield from components(_children(tree))


def by_id(tree, cid: str):
    found = [c for c in components(tree) if _id(c) == cid]
    assert found, f"no component with id {cid!r}"
    return found[0]


def prop(component, name: str):
    """A property of a component (a Dash object or its JSON)."""
    if isinstance(component, dict) and "props" in component:
        return component["props"].get(name)
    return getattr(component, name, None)


def text_of(tree) -> str:
    """The text a tree shows (its string children, joined)."""
    if tree is None:
        return ""
    if isinstance(tree, str):
        return tree
    if isinstance(tree, (int, float)):
        return str(tree)
    if isinstance(tree, (list, tuple)):
        return "".join(text_of(c) for c in tree)
    return text_of(_children(tree))

