"""The error-analysis session (issue 17) below the browser: histogram bins that are filters, the
inspector's list context and highlights, the table's URL state and hints over HTTP, missing audio
found at load, and the port taken before the data loads (the real CLI). The user's side of each
is in tests/test_session_browser.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde.audio_presence import audio_presence_summary, check_paths, with_audio_presence
from sde.dataset import DatasetOptions, build_dataset
from sde.demo import DEMO_MANIFEST
from sde.histograms import histogram, histogram_of_arrays, nice_edges
from sde.query import TableQuery
from sde.web import figures, state
from sde.web.grid import categorical_columns, column_defs, example_filter
from tests.browser_kit import by_id, dash_update, text_of

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo():
    return build_dataset(DEMO_MANIFEST, DatasetOptions(normalize=("lower", "punct", "numbers")))


# ---------------------------------------------------------------- histogram bins are filters

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("values", [
    RNG.uniform(0, 30, 3000),                                    # plain
    np.concatenate([RNG.normal(5, 1, 3000), [3600.0]]),          # an outlier folded into the last bar
    np.concatenate([RNG.normal(-3, 2, 3000), [-500.0]]),         # ... into the first
    RNG.integers(0, 40, 800).astype(float),                      # integer bins: {c} = k
    np.array([2.5, 2.5, 2.5]),                                   # one value
    np.array([0.1, 0.2, 0.30000000000000004, np.nan]),           # edges that float arithmetic blurs
], ids=["uniform", "overflow", "underflow", "integers", "constant", "float-edges"])
def test_each_bin_filter_selects_exactly_that_bins_values(values):
    frame = pd.DataFrame({"x": values})
    h = histogram(frame, ["x"])
    filters = figures.bin_filters(h, "x")
    query = TableQuery(frame)
    assert [len(query.select(f)) for f in filters] == h.counts[0].tolist()


@pytest.mark.parametrize("lo, hi, bins, step", [(0, 30, 40, 1.0), (1.23, 7.9, 40, 0.2), (0, 0.9, 40, 0.025),
                                                (100, 20_000, 40, 500.0)])
def test_bin_edges_are_round_numbers(lo, hi, bins, step):
    edges = nice_edges(lo, hi, bins)
    assert edges[0] <= lo and edges[-1] >= hi and len(edges) - 1 <= bins
    assert np.allclose(np.diff(edges), step)
    assert all(len(f"{e:g}") <= 8 for e in edges)               # "2.5", not "2.4999999997"


def test_histogram_bars_carry_their_filter_and_axes_one_number_style():
    h = histogram_of_arrays([np.array([0.0, 0.0, 50.0, 100.0])])
    fig = figures.histogram_figure(h, ["WER A"], "WER", "WER (%)", columns={"WER A": "wer_b"})
    custom = fig.data[0].customdata
    assert all(len(c) == 5 and c[2].startswith("{wer_b}") and "&gt;=" in c[2] for c in custom)   # escaped
    assert fig.layout.yaxis.tickformat == fig.layout.xaxis.tickformat == figures.AXIS_NUMBER_FORMAT
    figures.log_y(fig, True)
    assert fig.layout.yaxis.type == "log"



def test_a_log_scaled_view_leaves_the_kept_histograms_linear(demo):
    """The page keeps its histograms once, as plotly JSON; each view copies what it changes."""
    from sde.web.pages import statistics
    from tests.browser_kit import by_id, prop

    def count_axes(log: bool) -> list:
        block = statistics.histograms_block(demo, log)
        return [prop(by_id(block, {"type": statistics.HISTOGRAM, "key": key}), "figure")["layout"]["yaxis"]["type"]
                for key, _ in statistics._cached_figures(demo)]

    assert set(count_axes(True)) == {"log"}
    kept = statistics._cached_figures(demo)
    assert all(isinstance(fig, dict) and fig["layout"].get("yaxis", {}).get("type") != "log" for _, fig in kept)
    assert set(count_axes(False)) == {"linear"} and statistics._cached_figures(demo) is kept

@pytest.mark.parametrize("click, href", [
    ({"points": [{"customdata": [2, 4, "{duration} >= 2 && {duration} < 4"]}]},
     "/samples?filter=%7Bduration%7D+%3E%3D+2+%26%26+%7Bduration%7D+%3C+4"),
    ({"points": [{"customdata": [0, 1, "{&lt;b&gt;} &gt;= 0 &amp;&amp; {&lt;b&gt;} &lt; 1"]}]},   # escaped user text
     "/samples?filter=%7B%3Cb%3E%7D+%3E%3D+0+%26%26+%7B%3Cb%3E%7D+%3C+1"),
    ({"points": [{"customdata": [2, 4]}]}, None),                # a bar without a filter (vocabulary chart)
    ({"points": []}, None),
    (None, None),
])
def test_a_bar_click_opens_samples_with_its_filter(click, href):
    from sde.web.pages import statistics

    assert statistics.bin_href(click) == href


def test_log_y_switch_patches_every_histogram_and_writes_the_url():
    from sde.web.pages import statistics

    out = statistics.log_y_update(True, [{"type": "stats-hist", "key": "a"}] * 3, "/statistics", "?x=1")
    assert len(out["figures"]) == 3 and out["search"] == "?x=1&logy=1"
    assert out["rendered"]["params"] == {"x": "1", "logy": "1"}
    assert statistics.log_y_update(False, [], "/", "?logy=1")["search"] == ""


@pytest.mark.parametrize("on, search", [(True, "?logy=1"), (False, ""), (False, "?x=1"), (True, "?x=1&logy=1")])
def test_a_log_y_switch_that_says_what_the_url_says_changes_nothing(on, search):
    from dash import no_update

    from sde.web.pages import statistics

    out = statistics.log_y_update(on, [{"type": "stats-hist", "key": "a"}] * 2, "/", search)
    assert out == {"figures": [no_update, no_update], "search": no_update, "rendered": no_update}


# The demo scores all three steps by default (--normalize lower,punct,numbers): the URL names a
# choice only when it differs, "none" for no step ticked.
@pytest.mark.parametrize("steps, search, written", [
    (["lower"], "", "?normalize=lower"),
    (["punct", "lower"], "?x=1", "?x=1&normalize=lower%2Cpunct"),        # one order for one choice
    ([], "", "?normalize=none"),
    (["lower", "punct", "numbers"], "?normalize=lower", ""),              # back to the default
])
def test_the_normalisation_boxes_write_the_url_and_the_json_link(demo, steps, search, written):
    from sde.web.pages import statistics

    out = statistics.normalize_update(demo, steps, "/", search)
    assert out["search"] == written
    assert out["json"] == statistics.summary_json_href([s for s in ("lower", "punct", "numbers") if s in steps])
    assert out["rendered"]["params"] == statistics.query_params(written)
    assert ("normalised" in str(out["sections"])) == bool(steps)


@pytest.mark.parametrize("steps, search", [
    (["lower", "punct", "numbers"], ""), (["lower"], "?normalize=lower"), ([], "?normalize=none")])
def test_boxes_that_say_what_the_url_says_change_nothing(demo, steps, search):
    from dash import no_update

    from sde.web.pages import statistics

    assert set(statistics.normalize_update(demo, steps, "/", search).values()) == {no_update}


@pytest.mark.parametrize("search, ticked, json_href", [
    ("", ["lower", "punct", "numbers"], "/api/summary?normalize=lower%2Cpunct%2Cnumbers"),
    ("?normalize=lower", ["lower"], "/api/summary?normalize=lower"),
    ("?normalize=none", [], "/api/summary"),
])
def test_a_reloaded_statistics_page_shows_the_urls_normalisation(demo, search, ticked, json_href):
    from sde.web.pages import statistics
    from tests.browser_kit import by_id, prop

    layout = statistics.layout(demo, "/", statistics.query_params(search))
    assert prop(by_id(layout, statistics.NORMALIZE), "value") == ticked
    assert prop(by_id(layout, statistics.SUMMARY_JSON), "href") == json_href
    shown = str(by_id(layout, statistics.RECOGNITION))
    pending = prop(by_id(layout, statistics.NORMALIZE_PENDING), "data")
    if pending is None:  # scored already (the build's own steps, or asked before): shown at once
        assert ("normalised:" in shown) == bool(ticked)
    else:  # the page comes at once with the raw numbers; the normalised ones follow
        assert pending == ticked and "normalised:" not in shown and "normalize-pending" in shown
        assert "normalised:" in str(statistics.renormalized(demo, pending))


def test_a_link_to_normalised_numbers_not_scored_yet_lays_the_page_out_without_them(tmp_path):
    from sde.dataset import normalized_summary_ready
    from sde.web.pages import statistics
    from tests.browser_kit import by_id, prop

    fresh = build_dataset(DEMO_MANIFEST, DatasetOptions(normalize=("lower", "punct", "numbers")))
    assert not normalized_summary_ready(fresh, ["punct"])
    layout = statistics.layout(fresh, "/", {"normalize": "punct"})
    assert prop(by_id(layout, statistics.NORMALIZE_PENDING), "data") == ["punct"]
    assert not normalized_summary_ready(fresh, ["punct"])  # laying the page out scored nothing


# ---------------------------------------------------------------- categorical fields, placeholders

def test_categorical_fields_are_the_repeating_text_columns(demo):
    found = categorical_columns(demo.utterances, {"text", "audio_filepath", "audio_path", "pred_text",
                                                  "pred_text_conformer"})
    assert found == {"speaker": demo.utterances["speaker"].nunique(), "lang": 2}


@pytest.mark.parametrize("frame, expected", [
    (pd.DataFrame({"speaker": ["anna", "ben", "anna"], "lang": ["en", "en", "de"]}), '{x} > 1 && {speaker} = "anna"'),
    (pd.DataFrame({"id": ["u1", "u2", "u3", "u4"], "lang": ["en", "de", "en", "en"]}), '{x} > 1 && {lang} = "en"'),
    (pd.DataFrame({"id": ["u1", "u2", "u3"]}), "{x} > 1"),       # nothing repeats: no made-up value
])
def test_placeholder_example_uses_a_real_value(frame, expected):
    assert example_filter(frame, "{x} > 1") == expected


def test_the_filter_example_is_counted_at_the_first_layout_once_not_at_start(write_manifest, monkeypatch):
    from sde.web.pages import errors, samples

    counted = []
    real = samples.example_filter
    monkeypatch.setattr(samples, "example_filter", lambda *a, **k: counted.append(a[1]) or real(*a, **k))
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": "a b", "pred_text": "a c",
             "speaker": "anna" if i % 3 else "ben"} for i in range(6)]
    dataset = build_dataset(write_manifest(rows))
    samples.spec_for(dataset)  # what the server's start makes (create_app registers the callbacks)
    assert counted == []
    assert samples.placeholder(dataset) == '{wer} > 20 && {speaker} = "anna"'
    assert samples.placeholder(dataset, "{duration} > 5") == '{duration} > 5 && {speaker} = "anna"'
    samples.layout(dataset, samples.PATH, {})
    errors.PAGE.layout(dataset, errors.PAGE.path, {})
    assert counted == [""]  # one count for every page and lead


def test_numeric_column_filters_default_to_at_least(demo):
    from sde.web.pages import samples

    defs = {d["field"]: d for d in column_defs(samples.spec_for(demo), ["id", "wer"])}
    assert defs["wer"]["filterParams"]["defaultOption"] == "greaterThanOrEqual"
    assert "defaultOption" not in defs["text"]["filterParams"]


# ---------------------------------------------------------------- the inspector's list and highlights

def test_inspector_from_comparison_walks_the_ranked_differences(demo):
    from sde.web.pages import comparison, utterance

    a, b = demo.hypotheses
    ranked = comparison.ranked_differences(demo, a, b, "wer", None)["id"].tolist()
    params = {"from": "comparison", "a": a.field, "b": b.field}
    nav = utterance.neighbours(demo, ranked[1], params)
    assert (nav["prev"], nav["next"], nav["index"]) == (ranked[0], ranked[2], 1)
    agreeing = next(i for i in range(len(demo.utterances)) if i not in ranked)
    outside = utterance.neighbours(demo, agreeing, params)
    assert outside["index"] is None and outside["next"] == ranked[0]
    assert utterance.back_href(nav, params, ranked[1]) == state.comparison_href(a.field, b.field)


def test_comparison_clicks_open_the_ranked_walk():
    from sde.web.pages import comparison

    shown = {"a": "pred_text", "b": "pred_text_b", "metric": "cer", "filter": "{duration} > 3"}
    href = comparison.click_href(comparison.UTT_FIG, None, None, {"points": [{"customdata": 17}]}, shown)
    assert href == state.ranked_utterance_href(17, "pred_text", "pred_text_b", "cer", "{duration} > 3")
    assert href.startswith("/utterance/17?from=comparison&")


@pytest.mark.parametrize("filter_text, field, hit, miss", [
    ('{error} = "sub light night"', "pred_text", ("sub", "light", "night"), ("sub", "light", "lite")),
    ('{error} = "del and"', "pred_text", ("del", "and", None), ("ins", None, "and")),
    ('{text} has "light" && {duration} > 1', "pred_text_conformer", ("equal", "light", "light"),
     ("equal", "night", "night")),
    ('{pred_text} has "night"', "pred_text", ("sub", "light", "night"), ("equal", "light", "light")),
])
def test_the_list_filter_says_what_to_highlight(demo, filter_text, field, hit, miss):
    from sde.web.pages import utterance

    marks, _ref = utterance.highlights(demo, filter_text)
    assert marks[field](*hit) and not marks[field](*miss)


def test_no_highlight_under_a_negation_or_without_a_filter(demo):
    from sde.web.pages import utterance

    assert utterance.highlights(demo, '!({text} has "light")') == ({}, None)
    assert utterance.highlights(demo, None) == ({}, None)


def test_normalized_diff_is_shown_with_the_normalized_scores(demo):
    from sde.web.pages import utterance

    uid = int(demo.utterances.index[demo.utterances["text"].str.contains("2021")][0])
    layout = utterance.layout(demo, f"/utterance/{uid}", {})
    row = demo.utterances.iloc[uid]
    assert text_of(by_id(layout, "utt-wer-norm-pred_text")) == f"WER {row['wer_norm']:.2f}%"
    assert "twenty" in text_of(by_id(layout, "utt-diff-norm-pred_text"))


# ---------------------------------------------------------------- the table page's URL state over HTTP

@pytest.fixture(scope="module")
def demo_app(demo):
    from sde.web.app import AppConfig, create_app

    return create_app(demo, AppConfig(title=demo.name, audio_routes=False))


def test_picked_columns_go_into_the_url_and_come_back(demo_app, demo):
    from sde.web.pages import samples

    client = demo_app.server.test_client()
    out = dash_update(client, demo_app, "samples-grid.columnDefs", {"samples-columns.value": ["id", "text", "line"]},
                      {"samples-state.data": {"filter": "", "sort": "-wer"}, "url.search": "?sort=-wer"})
    assert out["url.search"] == "?sort=-wer&cols=id%2Ctext%2Cline"
    layout = samples.layout(demo, "/samples", state.query_params(out["url.search"]))
    shown = [d["field"] for d in by_id(layout, "samples-grid").columnDefs if not d["hide"]]
    assert shown == ["id", "text", "line"]


def test_an_empty_case_mismatch_gets_the_case_insensitive_hint(demo_app):
    client = demo_app.server.test_client()
    out = dash_update(client, demo_app, "samples-grid.getRowsResponse",
                      {"samples-grid.getRowsRequest": {"startRow": 0, "endRow": 100}},
                      {"samples-applied.data": '{lang} = "en-us"', "url.search": ""})
    assert out["samples-grid.getRowsResponse"]["rowCount"] == 0
    hint = out["samples-filter-hint.children"]
    assert "=~" in text_of(hint)
    assert by_id(hint, "samples-hint-link")["props"]["href"] == state.samples_href(filter='{lang} =~ "en-us"')


@pytest.mark.parametrize("typed, hint", [
    ("{wer} >> 10", None),                   # rejected: the advice about the filter before goes
    ('{speaker} = "nobody"', "unchanged"),   # applied: the rows' callback says what to advise
    ("", "unchanged"),
], ids=["a rejected filter takes the hint away", "an applied filter leaves it to the rows",
        "an empty filter leaves it to the rows"])
def test_the_filter_box_and_the_hint_under_it(demo_app, typed, hint):
    client = demo_app.server.test_client()
    out = dash_update(client, demo_app, "samples-filter.invalid", {"samples-filter.value": typed},
                      {"samples-applied.data": '{lang} = "en-us"'})
    assert out.get("samples-filter-hint.children", "unchanged") == hint
    assert out["samples-filter.invalid"] is (hint is None)


def test_grid_column_filters_are_shown_with_their_operator(demo_app):
    client = demo_app.server.test_client()
    model = {"wer": {"filterType": "number", "type": "greaterThanOrEqual", "filter": 50}}
    out = dash_update(client, demo_app, "samples-grid.getRowsResponse",
                      {"samples-grid.getRowsRequest": {"startRow": 0, "endRow": 100, "filterModel": model}},
                      {"samples-applied.data": "", "url.search": ""})
    assert text_of(out["samples-colfilter-text.children"]) == "column filters: {wer} >= 50"


@pytest.mark.parametrize("params, expected", [
    ({"focus": "7"}, {"uid": 7, "index": 7}),
    ({"focus": "7", "sort": "-id"}, {"uid": 7, "index": 22}),
    ({"focus": "7", "filter": "{id} > 10"}, None),               # not in the list
    ({"focus": "x"}, None),
])
def test_back_from_the_inspector_focuses_its_row(demo, params, expected):
    from sde.web.pages import samples

    layout = samples.layout(demo, "/samples", params)
    assert by_id(layout, "samples-focus").data == expected


def test_a_bad_filter_shows_the_caret_excerpt(demo):
    from sde.web.pages import samples

    layout = samples.layout(demo, "/samples", {"filter": "{wer} >> 10"})
    excerpt = text_of(by_id(layout, "samples-filter-excerpt"))
    assert excerpt.splitlines() == ["{wer} >> 10", "      ^"]  # ">>" is not an operator


# ---------------------------------------------------------------- missing audio, found at load

def test_missing_files_are_counted_once_each_and_urls_left_unchecked(tmp_path):
    (tmp_path / "here.wav").write_bytes(b"RIFF")
    (tmp_path / "a-folder.wav").mkdir()
    paths = [str(tmp_path / n) for n in ("here.wav", "gone.wav", "gone.wav", "a-folder.wav")] + ["s3://b/x.wav"]
    found = check_paths(paths)
    assert found.exists == {paths[0]: True, paths[1]: False, paths[3]: False, paths[4]: None}
    assert (found.missing, found.checked, found.timed_out) == (2, 3, False)


def test_the_check_stops_at_its_time_budget(tmp_path):
    """A slow network mount: each stat takes 50 ms (here a real sleep per real stat)."""
    def slow_is_file(path: str) -> bool:
        time.sleep(0.05)
        return os.path.isfile(path)

    paths = [str(tmp_path / f"f{i}.wav") for i in range(2_000)]   # 25 s of stats on 4 threads
    start = time.monotonic()
    found = check_paths(paths, workers=4, budget_s=0.5, is_file=slow_is_file)
    assert time.monotonic() - start < 2.0
    assert found.timed_out and 0 < found.checked < len(paths)
    assert None in found.exists.values()                        # unchecked: unknown, never "missing"


def test_audio_exists_column_and_summary(tmp_path, write_manifest):
    sf.write(tmp_path / "ok.wav", np.zeros(1600, dtype="float32"), 16000)
    manifest = write_manifest([{"audio_filepath": name, "duration": 0.1, "text": "a"}
                               for name in ("ok.wav", "gone.wav", "ok.wav", "gone.wav", "gone2.wav")])
    built = build_dataset(manifest)
    assert built.summary()["audio_missing"] is None             # not checked yet
    checked = with_audio_presence(built)
    assert "audio_exists" not in built.utterances.columns        # a copy: the cache may be writing `built`
    assert checked.utterances["audio_exists"].tolist() == [True, False, True, False, False]
    assert list(checked.utterances.columns[:5]) == ["id", "line", "audio_filepath", "audio_path", "audio_exists"]
    assert audio_presence_summary(checked.utterances) == {"audio_missing": 3, "audio_missing_files": 2}
    assert checked.utterance_query.select("{audio_exists} = false").tolist() == [1, 3, 4]


def test_sde_stats_reports_missing_audio(tmp_path, write_manifest):
    manifest = write_manifest([{"audio_filepath": "nowhere.wav", "duration": 1.0, "text": "a b"}])
    r = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--json", "--no-cache"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["audio_missing"] == 1


# ---------------------------------------------------------------- the port, taken before the data loads

@pytest.fixture(scope="module")
def big_manifest(tmp_path_factory) -> Path:
    """200,000 scored lines: `sde` needs several seconds to load them on this machine."""
    path = tmp_path_factory.mktemp("big") / "big.json"
    line = '{"audio_filepath": "a%d.wav", "duration": 2.5, "text": "the cat sat %d", "pred_text": "the bat sat %d"}\n'
    with path.open("w") as f:
        f.writelines(line % (i, i, i) for i in range(200_000))
    return path


def _elapsed(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=120)
    return time.monotonic() - start, r


@pytest.mark.parametrize("command", [["SOURCE"], ["demo"]], ids=["manifest", "demo"])
def test_a_busy_port_is_reported_before_anything_loads(big_manifest, command):
    baseline, _ = _elapsed("--version")                          # the interpreter's start on this machine, now
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        args = [str(big_manifest) if a == "SOURCE" else a for a in command]
        took, r = _elapsed(*args, "--port", str(port), "--no-cache")
    assert r.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in r.stderr and "--port 0" in r.stderr
    assert "scoring" not in r.stderr and "Traceback" not in r.stderr   # nothing was loaded
    assert took < baseline + 1.0, (took, baseline)


def test_lines_without_one_hypothesis_are_not_compared_nor_counted_equal(tmp_path):
    # they were counted among the compared utterances and as ties ("equal (855)", 429 of them missing)
    import json

    from sde.analysis import utterance_comparison
    from sde.dataset import build_dataset
    from sde.web.pages import utterance
    from sde.web.present import compare_payload

    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": "the cat sat on the mat",
             "pred_text": "the cat sat on a mat" if i % 2 else "the cat sat on the mat",
             **({"pred_text_b": "the bat sat on the mat"} if i % 3 else {})} for i in range(12)]
    (tmp_path / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = build_dataset(tmp_path / "m.json")
    a, b = dataset.hypotheses
    both = [i for i in range(12) if i % 3]
    assert compare_payload(dataset, a.field, b.field, None)["utterances"] == len(both) == 8
    compared = utterance_comparison(dataset.utterances, a, b)
    assert compared["id"].tolist() == both and not compared["diff"].isna().any()
    params = {"from": "comparison", "a": a.field, "b": b.field}
    nav = utterance.neighbours(dataset, 3, params)  # line 3 has no pred_text_b
    assert nav["index"] is None
    assert utterance.position_text(nav, params) == "not in the ranking of differences: this line has no pred_text_b"
    unknown = utterance.neighbours(dataset, 1, {**params, "a": "nope"})
    assert 'There is no hypothesis "nope"' in unknown["warning"]


@pytest.mark.parametrize("sort", ["nosuchcol", "-wer,foo"])
def test_a_sort_in_a_link_that_names_no_column_is_said_not_dropped_silently(demo, sort):
    # Samples dropped it without a word (and -wer with it); the inspector called it "the filter"
    import json

    from sde.web.pages import samples, utterance

    page = json.dumps(samples.layout(demo, "/samples", {"sort": sort}).to_plotly_json(),
                      default=lambda o: o.to_plotly_json())
    assert "The sort in the link is invalid" in page and "Unknown column" in page
    nav = utterance.neighbours(demo, 3, {"sort": sort})
    assert nav["warning"].startswith("The sort in the link is invalid")
    assert utterance.neighbours(demo, 3, {"filter": "{nope} > 1"})["warning"].startswith("The filter in the link")


@pytest.mark.parametrize("sort", ["nosuchcol", "-count,foo"])
def test_vocabulary_says_when_the_sort_in_its_link_names_no_column(demo, sort):
    # Vocabulary showed the words unsorted without a word, where Samples says why.
    import json

    from sde.web.pages import vocabulary

    page = json.dumps(vocabulary.layout(demo, "/vocabulary", {"sort": sort}).to_plotly_json(),
                      default=lambda o: o.to_plotly_json())
    assert "The sort in the link is invalid" in page and "Unknown column" in page
    fine = json.dumps(vocabulary.layout(demo, "/vocabulary", {"sort": "-count"}).to_plotly_json(),
                      default=lambda o: o.to_plotly_json())
    assert "The sort in the link is invalid" not in fine
