"""The Errors and Comparison pages end to end in headless Chromium, served by the real CLI
(`python -m sde.cli demo --port 0 --no-cache`): the numbers shown equal the JSON twins
(/api/errors, /api/compare), a click on a substitution pair opens /samples?error=…, a click on
a utterance point opens the inspector, and the console stays clean.

Screenshots: tests/output/screenshots/errors.png and comparison.png (look at them after a change).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
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
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


class Watch:
    """Console errors, page errors and off-host requests of one page."""

    def __init__(self, page, base: str):
        self.errors: list[str] = []
        self.external: list[str] = []
        host = urlparse(base).netloc

        def on_console(msg):
            if msg.type == "error":
                self.errors.append(f"{msg.text} @ {(msg.location or {}).get('url', '')}")

        def on_request(req):
            u = urlparse(req.url)
            if u.scheme in ("http", "https", "ws", "wss") and u.netloc != host:
                self.external.append(req.url)

        page.on("console", on_console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("request", on_request)

    def check(self):
        assert self.errors == [], self.errors
        assert self.external == [], self.external


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


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


def grid_texts(page, grid: str, col: str) -> list[str]:
    return page.locator(f'#{grid} .ag-center-cols-container [col-id="{col}"]').all_inner_texts()


def test_errors_page_matches_the_api_and_links_to_samples(page, demo):
    watch = Watch(page, demo)
    summary = api(demo, "/api/summary")
    field = next(iter(summary["hypotheses"]))
    expected = api(demo, "/api/errors", hyp=field, limit=200)
    page.goto(demo + "/errors")
    page.wait_for_selector("#errors-sub-grid .ag-row")
    page.wait_for_function("document.querySelectorAll('#errors-tables .js-plotly-plot .main-svg').length >= 3")

    # The tables hold the API's rows (the grid renders what fits; compare those, in API order).
    subs = expected["substitutions"]
    shown_refs = grid_texts(page, "errors-sub-grid", "ref")
    shown_hyps = grid_texts(page, "errors-sub-grid", "hyp")
    shown_counts = grid_texts(page, "errors-sub-grid", "count")
    assert shown_refs and len(shown_refs) <= len(subs)
    assert [(r["ref"], r["hyp"], str(r["count"])) for r in subs[:len(shown_refs)]] == \
        list(zip(shown_refs, shown_hyps, shown_counts))
    for kind, grid in (("deletions", "errors-del-grid"), ("insertions", "errors-ins-grid")):
        words = grid_texts(page, grid, "word")
        counts = grid_texts(page, grid, "count")
        assert [(r["word"], str(r["count"])) for r in expected[kind][:len(words)]] == list(zip(words, counts))
    # The summary line's totals equal /api/summary's.
    h = summary["hypotheses"][field]
    text = page.inner_text("#errors-summary")
    assert f"{h['substitutions']:,} substitutions" in text
    assert f"{h['deletions']:,} deletions" in text
    assert f"{h['insertions']:,} insertions" in text
    assert f"WER {h['wer']:.2f}%" in text
    # Breakdown by speaker (the default): one row per speaker, as /api/breakdown says.
    page.wait_for_selector("#errors-breakdown-grid .ag-row")
    breakdown = api(demo, "/api/breakdown", by="speaker", hyp=field)["rows"]
    assert page.locator("#errors-breakdown-grid .ag-center-cols-container .ag-row").count() == len(breakdown)
    shot(page, "errors")

    # A bad filter shows a hint and changes nothing; a good one restricts and goes into the URL.
    box = page.locator("#errors-filter")
    box.fill("{wer} >> 10")
    box.press("Enter")
    page.locator("#errors-filter-feedback").wait_for(state="visible")
    q = "{duration} > 3"
    box.fill(q)
    box.press("Enter")
    page.wait_for_url(re.compile(r"/errors\?.*filter="))
    assert parse_qs(urlparse(page.url).query)["filter"] == [q]
    filtered = api(demo, "/api/errors", hyp=field, filter=q, limit=200)
    first = filtered["substitutions"][0]
    page.wait_for_function(
        "([ref, hyp]) => { const r = document.querySelector('#errors-sub-grid .ag-row[row-index=\"0\"]');"
        " return r && r.querySelector('[col-id=ref]').innerText === ref"
        " && r.querySelector('[col-id=hyp]').innerText === hyp; }", arg=[first["ref"], first["hyp"]])
    assert "match the filter" in page.inner_text("#errors-summary")

    # A click on a substitution pair opens the samples page with error=sub:REF:HYP.
    page.locator('#errors-sub-grid .ag-row[row-index="0"] [col-id="ref"]').click()
    page.wait_for_url(re.compile(r"/samples\?"))
    params = parse_qs(urlparse(page.url).query)
    assert params["error"] == [f"sub:{first['ref']}:{first['hyp']}"]
    assert params["hyp"] == [field]
    assert params["filter"] == [q]
    page.wait_for_selector("#samples-grid")
    # The samples page shows exactly the utterances where that substitution happens (within the filter).
    expected = api(demo, "/api/utterances", error=params["error"][0], hyp=field, filter=q)
    assert expected["total"] >= 1
    page.wait_for_function(
        f"document.querySelector('#samples-count') && "
        f"document.querySelector('#samples-count').innerText.startsWith('{expected['total']} of')")
    assert page.input_value("#samples-filter").startswith("{error")
    watch.check()


def test_errors_page_hypothesis_and_breakdown_controls(page, demo):
    watch = Watch(page, demo)
    fields = list(api(demo, "/api/summary")["hypotheses"])
    page.goto(demo + f"/errors?hyp={fields[1]}&by=duration_bucket")
    page.wait_for_selector("#errors-breakdown-grid .ag-row")
    expected = api(demo, "/api/breakdown", by="duration_bucket", hyp=fields[1])["rows"]
    values = grid_texts(page, "errors-breakdown-grid", "value")
    assert values == [r["value"] for r in expected]
    wers = grid_texts(page, "errors-breakdown-grid", "wer")
    assert wers == [f"{r['wer']:.2f}%" for r in expected]
    # A bar of the top-deletions chart is a link too.
    dels = api(demo, "/api/errors", hyp=fields[1])["deletions"]
    if dels:
        page.locator("#errors-del-fig .point").first.click(force=True)
        page.wait_for_url(re.compile(r"/samples\?"))
        assert parse_qs(urlparse(page.url).query)["error"] == [f"del:{dels[0]['word']}"]
    watch.check()


def test_comparison_page_matches_the_api(page, demo):
    watch = Watch(page, demo)
    fields = list(api(demo, "/api/summary")["hypotheses"])
    cmp = api(demo, "/api/compare", a=fields[0], b=fields[1])
    page.goto(demo + "/comparison")
    page.wait_for_selector("#cmp-a-wer")
    assert page.inner_text("#cmp-a-wer") == f"{cmp['a']['wer']:.2f}%"
    assert page.inner_text("#cmp-b-wer") == f"{cmp['b']['wer']:.2f}%"
    assert page.inner_text("#cmp-a-ci") == f"95% CI {cmp['a']['ci'][0]:.2f} – {cmp['a']['ci'][1]:.2f}%"
    assert page.inner_text("#cmp-b-ci") == f"95% CI {cmp['b']['ci'][0]:.2f} – {cmp['b']['ci'][1]:.2f}%"
    diff = cmp["diff"]["wer"]
    assert page.inner_text("#cmp-diff-wer") == f"{diff:+.2f} points".replace("-", "−")
    p, floor = cmp["diff"]["p"], 2 / (cmp["n_resamples"] + 1)
    assert page.inner_text("#cmp-diff-p") == (f"p ≤ {floor:.3f}" if p <= floor * (1 + 1e-6) else
                                              f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}")
    sentence = page.inner_text("#cmp-interpretation")
    if cmp["diff"]["ci"][1] < 0:
        assert sentence.startswith("B (") and "is better by" in sentence
    page.wait_for_function("document.querySelectorAll('.comparison-page .js-plotly-plot .main-svg').length >= 4")
    page.wait_for_selector("#cmp-word-grid .ag-row")
    shot(page, "comparison")

    # Swap A and B: the URL and the numbers follow.
    page.locator("#cmp-swap").click()
    page.wait_for_url(re.compile(rf"a={fields[1]}"))
    swapped = api(demo, "/api/compare", a=fields[1], b=fields[0])
    page.wait_for_function(
        f"document.querySelector('#cmp-a-wer').innerText === '{swapped['a']['wer']:.2f}%'")
    assert page.inner_text("#cmp-b-wer") == f"{swapped['b']['wer']:.2f}%"

    # CER for the utterance scatter goes into the URL.
    page.locator("#cmp-metric label", has_text="CER").click()
    page.wait_for_url(re.compile(r"metric=cer"))
    watch.check()


def test_comparison_clicks_open_samples_and_utterances(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/comparison")
    page.wait_for_selector("#cmp-word-grid .ag-row")
    word = page.inner_text('#cmp-word-grid .ag-row[row-index="0"] [col-id="word"]')
    page.locator('#cmp-word-grid .ag-row[row-index="0"] [col-id="word"]').click()
    page.wait_for_url(re.compile(r"/samples\?"))
    assert parse_qs(urlparse(page.url).query)["filter"] == [f'{{text}} contains "{word}"']
    page.wait_for_selector("#samples-grid .ag-row")

    page.goto(demo + "/comparison")
    page.wait_for_function("document.querySelectorAll('#cmp-utt-fig .main-svg').length >= 1")
    # WebGL points have no DOM nodes: click where plotly says the first point of a trace is.
    page.locator("#cmp-utt-fig").scroll_into_view_if_needed()
    xy = page.evaluate("""() => {
        const gd = document.getElementById('cmp-utt-fig').querySelector('.js-plotly-plot');
        const tr = gd._fullData.find(t => t.x && t.x.length);
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const box = gd.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(tr.x[0]), box.top + ya._offset + ya.l2p(tr.y[0])];
    }""")
    page.mouse.move(xy[0], xy[1])
    page.wait_for_timeout(300)
    page.mouse.click(xy[0], xy[1])
    page.wait_for_url(re.compile(r"/utterance/\d+"))
    watch.check()


def test_comparison_unavailable_with_one_hypothesis(browser, tmp_path):
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": "a b c", "pred_text": "a b d"}
            for i in range(3)]
    path = tmp_path / "one.json"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with sde_server(str(path)) as url:
        pg = browser.new_page()
        watch = Watch(pg, url)
        pg.goto(url + "/errors")
        pg.wait_for_selector("#errors-sub-grid .ag-row")
        assert pg.locator("#nav-comparison").count() == 0
        pg.goto(url + "/comparison")
        pg.wait_for_selector("#not-found, #cmp-unavailable")
        watch.check()
        pg.close()
