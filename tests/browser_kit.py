"""What the browser tests share: the sde server subprocess, the JSON API, Chromium's settings and
a watch on the console, dialogs and off-host requests. The fixtures `browser`, `demo` and `page`
are in conftest.py."""

from __future__ import annotations

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

@contextmanager
def sde_server(*args: str):
    """Run `python -m sde.cli ARGS --port 0 --no-cache`, yield the URL it prints, stop it after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sde.cli", *args, "--port", "0", "--no-cache"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    found: dict[str, str] = {}

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if m and "url" not in found:
                found["url"] = m.group(1)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 90
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


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_url(page, pattern: str) -> None:
    page.wait_for_url(re.compile(pattern), timeout=TIMEOUT_MS)


def first_cell(page, col: str, grid: str = "#samples-grid") -> str:
    sel = f'{grid} .ag-row[row-index="0"] [col-id="{col}"]'
    # Infinite-model rows appear before their block arrives: wait for the text.
    page.wait_for_function(f"(document.querySelector('{sel}') || {{}}).innerText > ''")
    return page.inner_text(sel)
