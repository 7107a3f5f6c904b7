"""End to end in headless Chromium: `sde demo --port 0` (and a hostile manifest) served by the real
CLI, every page opened, the grid filtered, sorted and clicked, the inspector walked with buttons and
keys. The console must stay clean and no request may leave 127.0.0.1.

Full-page screenshots land in tests/output/screenshots/ (look at them after a UI change).
"""

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
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("SDE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(__file__).resolve().parent / "output" / "screenshots"
TIMEOUT_MS = 15_000

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # pragma: no cover
    pytest.skip(f"no Chromium at {CHROMIUM} (set SDE_CHROMIUM)", allow_module_level=True)


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
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


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


@pytest.fixture(scope="module")
def demo():
    with sde_server("demo") as url:
        yield url


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    yield pg
    ctx.close()


def test_statistics_page_shows_the_summary(page, demo):
    watch = Watch(page, demo)
    summary = api(demo, "/api/summary")
    page.goto(demo + "/")
    page.wait_for_selector("#stat-utterances")
    assert page.inner_text("#stat-utterances") == f"{summary['utterances']:,}"
    assert page.inner_text("#stat-hours") == f"{summary['hours']:,.2f}"
    assert page.inner_text("#stat-vocabulary_size") == f"{summary['vocabulary_size']:,}"
    assert page.inner_text("#stat-alphabet_size") == f"{summary['alphabet_size']:,}"
    assert page.inner_text("#stat-skipped_lines") == f"{summary['skipped_lines']:,}"
    for field, h in summary["hypotheses"].items():
        for metric in ("wer", "cer", "wmr", "mwa"):
            assert page.inner_text(f"#stat-{field}-{metric}") == f"{h[metric]:,.2f}%"
    assert page.locator("#stats-alphabet .alpha-char").count() == summary["alphabet_size"]
    # Histograms drawn (plotly renders asynchronously).
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 8")
    assert page.title().startswith("Statistics · ")
    shot(page, "statistics")
    watch.check()


def test_samples_filter_sort_and_open(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples")
    page.wait_for_selector("#samples-grid .ag-row")
    total = api(demo, "/api/utterances")["total"]
    assert page.inner_text("#samples-count") == f"{total} utterances"

    # The filter box: a bad filter shows its message, a good one filters on the server.
    box = page.locator("#samples-filter")
    box.fill("{wer} >> 10")
    box.press("Enter")
    feedback = page.locator("#samples-filter-feedback")
    feedback.wait_for(state="visible")
    assert "not a number" in feedback.inner_text()
    q = "{wer} > 10"
    box.fill(q)
    box.press("Enter")
    expected = api(demo, "/api/utterances", filter=q, page_size=1000)
    page.wait_for_function(
        f"document.querySelector('#samples-count').innerText.startsWith('{expected['total']} of')")
    assert not feedback.is_visible()
    wait_url(page, r"/samples\?filter=")
    assert parse_qs(urlparse(page.url).query)["filter"] == [q]

    # Sort by clicking the WER header (ascending first).
    page.locator('#samples-grid .ag-header-cell[col-id="wer"] .ag-header-cell-label').click()
    wait_url(page, r"sort=wer")
    ordered = api(demo, "/api/utterances", filter=q, sort="wer", page_size=1000)["rows"]
    page.wait_for_function(
        f"""() => {{ const c = document.querySelector('#samples-grid .ag-row[row-index="0"] [col-id="id"]');
                   return c && c.innerText.trim() === '{ordered[0]['id']}'; }}""")
    assert first_cell(page, "wer") == f"{ordered[0]['wer']:.2f}%"
    csv_href = page.get_attribute("#samples-csv", "href")
    assert csv_href.startswith("/api/utterances.csv?") and "sort=wer" in csv_href
    assert parse_qs(urlparse(csv_href).query)["filter"] == [q]
    shot(page, "samples")

    # Reload: the URL alone restores the view.
    page.reload()
    page.wait_for_selector("#samples-grid .ag-row")
    assert page.input_value("#samples-filter") == q
    page.wait_for_function(
        f"document.querySelector('#samples-count').innerText.startsWith('{expected['total']} of')")

    # Click a row: the inspector opens on the same filtered, sorted list.
    page.locator('#samples-grid .ag-row[row-index="0"] [col-id="text"]').click()
    wait_url(page, rf"/utterance/{ordered[0]['id']}\?")
    assert parse_qs(urlparse(page.url).query) == {"filter": [q], "sort": ["wer"]}
    page.wait_for_selector("#utt-diff")
    watch.check()


def test_inspector_diff_player_and_navigation(page, demo):
    watch = Watch(page, demo)
    q, sort = "{wer} > 0", "-wer"
    rows = api(demo, "/api/utterances", filter=q, sort=sort, page_size=1000)["rows"]
    ids = [r["id"] for r in rows]
    assert len(ids) >= 3
    page.goto(demo + f"/utterance/{ids[1]}?" + urlencode({"filter": q, "sort": sort}))
    page.wait_for_selector("#utt-diff")
    assert page.inner_text("h4.page-title") == f"Utterance {ids[1]}"
    # Diff: legend and coloured spans for the errors of this utterance.
    assert page.locator("#diff-legend").is_visible()
    one = api(demo, f"/api/utterances/{ids[1]}")
    ops = {w["op"] for w in one["alignment"]["pred_text"]}
    for op, cls in (("sub", ".diff-sub"), ("del", ".diff-del"), ("ins", ".diff-ins")):
        if op in ops:
            assert page.locator(f"#utt-diff-pred_text {cls}").count() >= 1
    color = page.locator("#diff-legend .diff-del").evaluate("e => getComputedStyle(e).color")
    assert color == "rgb(192, 57, 43)"
    # Player and signal figure.
    assert page.get_attribute("#utt-audio", "src") == f"/audio/{ids[1]}.ogg"
    assert page.locator("#utt-audio").evaluate("e => e.tagName") == "AUDIO"
    page.wait_for_selector("#utt-signal .js-plotly-plot .main-svg")
    page.wait_for_function("document.querySelector('#utt-audio').readyState >= 1")  # metadata loaded
    # Clicking the waveform seeks the player there; the playhead line follows the player.
    plot = page.locator("#utt-signal .js-plotly-plot .nsewdrag").first
    box = plot.bounding_box()
    page.wait_for_function("document.querySelector('#utt-signal .js-plotly-plot').__sdeBound !== undefined")
    x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    for _ in range(10):  # plotly reports clicks once it has hover data for the point: retry briefly
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        if page.evaluate("document.querySelector('#utt-audio').currentTime") > 0.3:
            break
        page.wait_for_timeout(300)
    page.wait_for_function("document.querySelector('#utt-audio').currentTime > 0.3")
    seek = page.evaluate("document.querySelector('#utt-audio').currentTime")
    assert 0.25 * one["duration"] < seek < 0.75 * one["duration"]
    page.wait_for_function("document.querySelector('#utt-signal .js-plotly-plot').getAttribute('data-playhead')")
    assert page.locator("#utt-signal .js-plotly-plot .shapelayer path").count() >= 1
    assert page.inner_text("#utt-position") == f"2 of {len(ids)} (filtered)"
    shot(page, "utterance")

    # Buttons, then keys, walk the filtered list.
    def arrived(uid: int) -> None:
        wait_url(page, rf"/utterance/{uid}\?")
        page.wait_for_function(f"document.querySelector('h4.page-title').innerText === 'Utterance {uid}'")

    page.click("#utt-next")
    arrived(ids[2])
    page.keyboard.press("ArrowLeft")
    arrived(ids[1])
    page.keyboard.press("k")
    arrived(ids[0])
    assert "disabled" in page.get_attribute("#utt-prev", "class")
    page.keyboard.press("j")
    arrived(ids[1])
    page.keyboard.press("ArrowRight")
    arrived(ids[2])
    page.click("#utt-prev")
    arrived(ids[1])
    page.keyboard.press("u")
    wait_url(page, r"/samples\?")
    page.wait_for_selector("#samples-grid .ag-row")
    assert page.input_value("#samples-filter") == q
    watch.check()


def test_vocabulary_and_problems_pages(page, demo):
    watch = Watch(page, demo)
    vocab = api(demo, "/api/vocabulary")
    page.goto(demo + "/vocabulary")
    page.wait_for_selector("#vocabulary-grid .ag-row")
    assert page.inner_text("#vocabulary-count") == f"{vocab['total']} words"
    assert first_cell(page, "word", "#vocabulary-grid") == vocab["rows"][0]["word"]
    shot(page, "vocabulary")
    # A grid column filter (floating filter under the header) filters on the server too.
    page.locator('#vocabulary-grid .ag-floating-filter[col-id="word"] input').fill("the")
    matching = api(demo, "/api/vocabulary", filter='{word} contains "the"')["total"]
    page.wait_for_function(
        f"document.querySelector('#vocabulary-count').innerText.startsWith('{matching} of')")
    wait_url(page, r"/vocabulary\?colfilter=")
    csv_href = page.get_attribute("#vocabulary-csv", "href")
    assert parse_qs(urlparse(csv_href).query)["filter"] == ['{word} contains "the"']
    page.click("#nav-problems")
    wait_url(page, r"/problems$")
    page.wait_for_selector("#problems-empty")
    summary = api(demo, "/api/summary")
    assert page.inner_text("#problems-empty") == f"No problems: all {summary['utterances']} lines loaded."
    shot(page, "problems_none")
    page.click("#nav-samples")
    wait_url(page, r"/samples$")
    page.wait_for_selector("#samples-grid .ag-row")
    watch.check()


HOSTILE = [
    {"audio_filepath": "missing.wav", "duration": 1.0, "text": "<script>alert(1)</script> hello",
     "pred_text": "<img src=x onerror=alert(1)> hello", "speaker": "<b>bold</b>"},
    {"audio_filepath": "missing2.wav", "duration": 2.0, "text": "plain words here", "pred_text": "plain word here"},
    '{"audio_filepath": "x.wav", "text": "no duration"}',
]


def test_hostile_text_is_shown_as_text(browser, tmp_path):
    manifest = tmp_path / "hostile.json"
    manifest.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in HOSTILE) + "\n")
    with sde_server(str(manifest)) as url:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        # The missing audio files answer 404 to the <audio> element: expected here, nothing else is.
        watch = Watch(page, url, allow_console=("/audio/",))
        page.goto(url + "/samples")
        page.wait_for_selector("#samples-grid .ag-row")
        cell = '#samples-grid .ag-row[row-index="0"] [col-id="text"]'
        page.wait_for_function(f"(document.querySelector('{cell}') || {{}}).innerText > ''")  # block loaded
        assert page.inner_text(cell) == "<script>alert(1)</script> hello"
        assert page.locator("#samples-grid img").count() == 0
        page.goto(url + "/utterance/0")
        page.wait_for_selector("#utt-diff")
        assert page.get_by_text("<script>alert(1)</script> hello", exact=True).first.is_visible()
        assert page.locator("#utt-diff img, #utt-fields img, #utt-fields b").count() == 0
        # No waveform for a missing file: a message naming the file and the reason instead.
        alert = page.locator("#utt-audio-error")
        alert.wait_for(state="visible")
        assert "missing.wav" in alert.inner_text() and "not found" in alert.inner_text().lower()
        assert not page.locator("#utt-signal").is_visible()
        page.locator("#utt-audio").wait_for(state="hidden")   # no dead player beside the message
        shot(page, "hostile_utterance")
        page.goto(url + "/problems")
        page.wait_for_selector("#problems-table")
        row = page.locator("#problems-table tbody tr").first.inner_text()
        assert "hostile.json" in row and "3" in row and "duration" in row
        shot(page, "problems")
        page.goto(url + "/")
        page.wait_for_selector("#stat-skipped_lines")
        assert page.inner_text("#stat-skipped_lines") == "1"
        page.click("text=see Problems")
        wait_url(page, r"/problems$")
        page.wait_for_selector("#problems-table")
        time.sleep(0.3)  # let any late script run before checking for dialogs
        watch.check()
        ctx.close()
