"""More loose ends a user meets in the browser:

- TTS readiness shows a speaker's audio as people say it ("14.0 s", "1.5 min"), not "0.00" hours
  (its JSON twin keeps the numbers);
- the Rules page's `sde export` names the server's cache options: pasted into a shell without
  them (another folder, no $SDE_CACHE_DIR), it reads the server's build instead of building again;
- Shift+Tab into a grid whose rows are links lands on the row the user was on, else the first row
  (it landed on the last rendered cell);
- review mode's "keys ignored" note is styled by sde.css, not inline.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.dataset import DatasetOptions, build_dataset
from sde.web.app import AppConfig, create_app
from tests.browser_kit import DASH_CALLBACKS, ROOT, Watch, _outputs, by_id, dash_update, get_json, sde_server, text_of

RATE = 16_000


def tone(path: Path, seconds: float, freq: float = 220.0) -> float:
    """A real WAV of `seconds` (soundfile); its duration as written."""
    t = np.arange(int(RATE * seconds)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), RATE, subtype="PCM_16")
    return len(t) / RATE


def write_manifest(folder: Path, speakers: dict[str, list[float]]) -> Path:
    lines = []
    for speaker, lengths in speakers.items():
        for i, seconds in enumerate(lengths):
            wav = folder / f"{speaker}_{i}.wav"
            lines.append(json.dumps({"audio_filepath": wav.name, "duration": tone(wav, seconds),
                                     "text": f"the cat sat on mat {i}", "pred_text": f"the cat sat on a mat {i}",
                                     "speaker": speaker}))
    manifest = folder / "m.json"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


# ---------------------------------------------------------------- 1. TTS durations people read

SPEAKERS = {"short": [2.0] * 7, "longer": [45.0, 45.0]}


@pytest.fixture(scope="module")
def tts_app(tmp_path_factory):
    dataset = build_dataset(write_manifest(tmp_path_factory.mktemp("tts"), SPEAKERS))
    return create_app(dataset, AppConfig(title="tts"))


def tts_page(client, app) -> dict:
    """The TTS page as the browser gets it: the router's layout, polled until the report is made."""
    page = dash_update(client, app, "page-content.children", {"url.pathname": "/tts", "url.search": ""})
    body = by_id(page["page-content.children"], "tts-report")
    for _ in range(600):  # the report is made on a thread of its own; the page polls for it
        if "tts-running" not in json.dumps(body):
            return body
        time.sleep(0.05)
        body = dash_update(client, app, "tts-report.children", {"tts-poll.n_intervals": 1},
                           {"tts-report-params.data": {"lang": "en", "speaker": "speaker"}})["tts-report.children"]
    raise AssertionError("the TTS report was never made")


@pytest.mark.parametrize("speaker,shown,hours", [
    ("short", "14.0 s", 14 / 3600),          # 7 × 2 s: was "0.00"
    ("longer", "1.5 min", 90 / 3600),        # was "0.03"
], ids=["seconds-under-a-minute", "minutes-under-an-hour"])
def test_tts_readiness_shows_a_speakers_audio_as_people_say_it(tts_app, speaker, shown, hours):
    client = tts_app.server.test_client()
    report = tts_page(client, tts_app)
    rows = [[text_of(td) for td in tr["props"]["children"]]
            for tr in by_id(report, "tts-speakers")["props"]["children"][1]["props"]["children"]]
    row = next(r for r in rows if r[0] == speaker)
    assert row[2] == shown, row
    assert not any(re.fullmatch(r"\d+\.\d\d", cell) for cell in row[2:4]), row
    twin = next(s for s in get_json(client, "/api/tts?lang=en")["speakers"] if s["speaker"] == speaker)
    assert twin["hours"] == pytest.approx(hours, abs=1e-4)  # the JSON keeps the number


# ---------------------------------------------------------------- 2. the replay command's cache

@contextmanager
def cli_server(args: list[str], env: dict[str, str]):
    """`python -m sde.cli ARGS --port 0` (its cache options as given), the URL it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "sde.cli", *args, "--port", "0"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if re.search(r"http://127\.0\.0\.1:\d+/", line):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not found.wait(120):
            raise AssertionError("sde did not print its URL:\n" + "".join(lines))
        yield re.search(r"(http://127\.0\.0\.1:\d+)/", "".join(lines)).group(1)
    finally:
        proc.terminate()
        proc.wait(20)


def http_update(base: str, output: str, values: dict) -> dict:
    """browser_kit.dash_update over HTTP, against a real server (its /_dash-dependencies)."""
    with urllib.request.urlopen(base + "/_dash-dependencies", timeout=60) as r:
        dep = next(d for d in json.loads(r.read()) if output in d["output"])

    def listed(deps):
        return [{**d, "value": values.get(f"{d['id']}.{d['property']}")} for d in deps]

    outputs = _outputs(dep["output"])
    body = {"output": dep["output"], "outputs": outputs if dep["output"].startswith("..") else outputs[0],
            "inputs": listed(dep["inputs"]), "state": listed(dep["state"]), "changedPropIds": [next(iter(values))]}
    request = urllib.request.Request(base + "/_dash-update-component", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        response = json.loads(r.read())["response"]
    return {f"{cid}.{prop}": value for cid, props in response.items() for prop, value in props.items()}


RULES_INPUTS = {"rules-store.data": {"rules": [{"name": "long", "filter": "{duration} > 1", "enabled": True}]},
                "rules-view.value": "", "url.search": ""}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A manifest of real audio and its build in a cache folder of its own (as the CLI stores it)."""
    from sde.cli import load

    folder = tmp_path_factory.mktemp("replay")
    manifest = write_manifest(folder, {"a": [0.5, 1.5], "b": [2.0]})
    cache = folder / "cache"
    load((str(manifest),), DatasetOptions(), str(cache), False, quiet=True)
    assert entries(cache)
    return manifest, cache


def entries(cache: Path) -> set[str]:
    return {str(p.relative_to(cache)) for p in cache.rglob("*.val")}


@pytest.mark.parametrize("how", ["--cache-dir", "$SDE_CACHE_DIR"])
def test_the_pasted_replay_command_reads_the_servers_cached_build(indexed, tmp_path, how):
    manifest, cache = indexed
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("SDE_CACHE_DIR", None)
    args = [str(manifest)]
    if how == "--cache-dir":
        args += ["--cache-dir", str(cache)]
    else:
        env["SDE_CACHE_DIR"] = str(cache)
    with cli_server(args, env) as url:
        command = http_update(url, "rules-command.children", RULES_INPUTS)["rules-command.children"]
    argv = shlex.split(command)
    assert argv[argv.index("--cache-dir") + 1] == str(cache), command

    # pasted in another folder, in a shell without $SDE_CACHE_DIR and another user cache dir
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "rules.yaml").write_text('rules:\n  - name: long\n    filter: "{duration} > 1"\n', encoding="utf-8")
    pasted_env = {k: v for k, v in env.items() if k != "SDE_CACHE_DIR"}
    pasted_env["XDG_CACHE_HOME"] = str(tmp_path / "user-cache")
    before = entries(cache)
    done = subprocess.run([sys.executable, "-m", "sde.cli", *argv[1:]], cwd=elsewhere, env=pasted_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "loaded from cache" in done.stderr, done.stderr
    assert entries(cache) == before                       # no second build stored beside the first
    assert not (tmp_path / "user-cache").exists()         # nor one in the default cache folder
    assert len((elsewhere / "kept.json").read_text().splitlines()) == 1   # a0 (0.5 s) kept


@pytest.mark.parametrize("options,expected", [
    ({}, None),
    ({"dataset_cache_dir": "/data/sde-cache"}, ["--cache-dir", "/data/sde-cache"]),
    ({"no_cache": True}, ["--no-cache"]),
], ids=["default-cache-no-option", "cache-dir-named", "no-cache-kept"])
def test_the_replay_command_names_the_cache_options_unless_default(indexed, options, expected):
    manifest, _ = indexed
    app = create_app(build_dataset(manifest), AppConfig(**options))
    out = dash_update(app.server.test_client(), app, "rules-command.children",
                      {"rules-store.data": RULES_INPUTS["rules-store.data"], "rules-view.value": ""},
                      {"url.search": ""})
    assert_cache_words(shlex.split(out["rules-command.children"]), expected)


def assert_cache_words(argv: list[str], expected: list[str] | None) -> None:
    """``argv`` names the cache options ``expected`` (None: none at all)."""
    cache_words = [w for w in argv if w in ("--cache-dir", "--no-cache")]
    if expected is None:
        assert cache_words == [], argv
    else:
        i = argv.index(expected[0])
        assert argv[i:i + len(expected)] == expected, argv


# ---------------------------------------------------------------- 3. Shift+Tab into a link grid

def focused(page) -> dict:
    return page.evaluate("""(() => { const e = document.activeElement, row = e.closest('.ag-row');
        return {grid: (e.closest('.sde-grid') || {}).id || null,
                row: row ? +row.getAttribute('row-index') : null, cell: e.classList.contains('ag-cell')}; })()""")


def wait_rows(page, grid: str, rows: int = 3) -> None:
    page.wait_for_selector(f"#{grid} .ag-row")
    page.wait_for_function("""([g, n]) => { const api = window.dash_ag_grid && dash_ag_grid.getApi(g);
        if (!api || api.getDisplayedRowCount() < n) return false;
        const node = api.getDisplayedRowAtIndex(n - 1); return !!(node && node.data); }""", arg=[grid, rows])


@pytest.mark.browser
@pytest.mark.parametrize("path,grid,after,walked,lands", [
    ("/errors?hyp=pred_text", "errors-sub-grid", "#errors-del-csv", None, 0),
    ("/errors?hyp=pred_text", "errors-sub-grid", "#errors-del-csv", 21, 21),          # scrolled away since
    ("/comparison", "cmp-word-grid", "#cmp-metric input:checked", 1, 1),
], ids=["first-row-of-a-fresh-grid", "the-row-left-scrolled-back-into-view", "the-row-left-comparison"])
def test_shift_tab_into_a_link_grid_lands_on_its_current_or_first_row(page, demo, path, grid, after, walked, lands):
    watch = Watch(page, demo)
    page.goto(demo + path)
    wait_rows(page, grid)
    if walked is not None:
        page.focus(f"#{grid} .ag-header-cell[aria-colindex='1']")
        for _ in range(walked + 1):
            page.keyboard.press("ArrowDown")
        assert focused(page)["row"] == walked
        page.keyboard.press("Tab")
        assert focused(page)["grid"] is None
        page.evaluate("(g) => dash_ag_grid.getApi(g).ensureIndexVisible(0, 'top')", grid)
    page.focus(after)
    page.keyboard.press("Shift+Tab")
    page.wait_for_function("(g) => !!document.activeElement.closest('#' + g + ' .ag-cell')", arg=grid)
    assert focused(page) == {"grid": grid, "row": lands, "cell": True}
    page.keyboard.press("ArrowDown")                     # the keys of the grid go on from there
    assert focused(page)["row"] == lands + 1
    watch.check()


# ---------------------------------------------------------------- 4. the keys-ignored note's looks

@pytest.mark.browser
def test_the_keys_ignored_note_is_styled_by_the_stylesheet(page, tmp_path):
    manifest = write_manifest(tmp_path, {"s": [1.0, 1.2, 1.4]})
    with sde_server(str(manifest), "--reviews", str(tmp_path / "reviews.sqlite")) as url:
        page.goto(url + "/utterance/0")
        page.wait_for_function("!!document.querySelector('#review-card #review-status')")
        page.locator("label[for=review-mode]").click()
        held = []
        # the next utterance does not come while the callbacks are held: its keys are ignored
        page.route(DASH_CALLBACKS, lambda route: held.append(route))
        with page.expect_request(DASH_CALLBACKS):
            page.keyboard.press("d")
        page.keyboard.press("a")
        page.wait_for_function("(document.getElementById('review-keys-note') || {}).textContent > ''")
        note = page.evaluate("""(() => { const e = document.getElementById('review-keys-note'), s = getComputedStyle(e);
            return {inline: e.getAttribute('style'), position: s.position, color: s.color,
                    background: s.backgroundColor, z: s.zIndex}; })()""")
        assert held  # the drop's answer was held back
        for route in list(held):
            route.abort()
        page.unroute(DASH_CALLBACKS)
    assert note == {"inline": None, "position": "fixed", "color": "rgb(255, 255, 255)",
                    "background": "rgb(52, 58, 64)", "z": "2000"}


@pytest.mark.parametrize("options,expected", [
    ({}, None),
    ({"dataset_cache_dir": "/data/sde-cache"}, ["--cache-dir", "/data/sde-cache"]),
    ({"no_cache": True}, ["--no-cache"]),
], ids=["default-cache-no-option", "cache-dir-named", "no-cache-kept"])
def test_the_apply_reviews_command_names_the_cache_options_unless_default(indexed, tmp_path, options, expected):
    from sde.web.panels.review import apply_command

    manifest, _ = indexed
    dataset = build_dataset(manifest)
    app = create_app(dataset, AppConfig(**options))
    with app.server.test_request_context("/"):
        argv = shlex.split(apply_command(dataset, tmp_path / "r.sqlite"))
    assert_cache_words(argv, expected)
    assert argv[-3:] == ["--apply-reviews", "-o", "clean.json"]
