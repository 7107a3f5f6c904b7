"""The Errors and Comparison pages without a browser: layouts for the demo dataset (with and
without URL parameters, with bad ones), callbacks fired over HTTP as the browser fires them, the
numbers checked against sde.analysis / the JSON routes, and the figure builders."""

from __future__ import annotations

import itertools
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import plotly.graph_objects as go
import pytest

from sde import analysis
from sde.dataset import build_dataset
from sde.metrics import align_words
from sde.web import analysis_figures as af
from sde.web import state
from sde.web.app import AppConfig, create_app
from sde.web.pages import breakdown, comparison, comparison_stats, errors, load_pages
from tests.browser_kit import by_id, dash_update, prop, text_of

DEMO = Path(__file__).resolve().parent.parent / "sde" / "demo" / "manifest.json"
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def demo():
    return build_dataset(DEMO)


@pytest.fixture(scope="module")
def app(demo):
    return create_app(demo, AppConfig(title=demo.name, audio_routes=False))


@pytest.fixture()
def client(app):
    return app.server.test_client()


@pytest.fixture(scope="module")
def one_hyp(tmp_path_factory):
    rows = [
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "a b c", "pred_text": "a x c", "speaker": "s1"},
        {"audio_filepath": "b.wav", "duration": 6.0, "text": "b c d e", "pred_text": "b c e e f", "speaker": "s2"},
    ]
    path = tmp_path_factory.mktemp("one") / "one.json"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return build_dataset(path)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    rows = [
        {"audio_filepath": "a.wav", "duration": 1.0, "text": f"hello {XSS} a:b 100%",
         "pred_text": "hello world a:c 100%",
         f"pred_text_{'x'}": f"hello {XSS} a:b", "speaker": XSS},
        {"audio_filepath": "b.wav", "duration": 3.0, "text": "one two", "pred_text": "one",
         "pred_text_x": "one two three",
         "speaker": "plain"},
    ]
    path = tmp_path_factory.mktemp("hostile") / "h.json"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return build_dataset(path)


# ---------------------------------------------------------------- registry

def test_pages_are_registered_and_comparison_needs_two_hypotheses(demo, one_hyp):
    names = [p.name for p in load_pages(demo)]
    assert "Errors" in names and "Comparison" in names
    names = [p.name for p in load_pages(one_hyp)]
    assert "Errors" in names and "Comparison" not in names
    assert comparison.PAGE.available(demo) and not comparison.PAGE.available(one_hyp)
    layout = comparison.layout(one_hyp, "/comparison", {})
    assert "two hypotheses" in text_of(layout)
    by_id(layout, "cmp-unavailable")


def test_errors_page_without_hypotheses(tmp_path):
    path = tmp_path / "nohyp.json"
    path.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a b"}) + "\n")
    d = build_dataset(path)
    assert not errors.PAGE.available(d)
    layout = errors.layout(d, "/errors", {})
    by_id(layout, "errors-no-hyp")


# ---------------------------------------------------------------- errors page

def test_errors_layout_renders_with_and_without_params(demo):
    layout = errors.layout(demo, "/errors", {})
    for cid in (errors.HYP, errors.FILTER, breakdown.BY, errors.SUMMARY, "errors-sub-grid", "errors-del-grid",
                "errors-ins-grid", breakdown.GRID, breakdown.FIG):
        by_id(layout, cid)
    assert by_id(layout, errors.HYP).value == demo.hypotheses[0].field
    assert by_id(layout, breakdown.BY).value == "speaker"  # the demo has a speaker field
    # by label, with a filter and another breakdown column
    layout = errors.layout(demo, "/errors", {"hyp": "conformer", "filter": "{duration} > 3", "by": "duration_bucket"})
    assert by_id(layout, errors.HYP).value == "pred_text_conformer"
    assert by_id(layout, breakdown.BY).value == "duration_bucket"
    n = len(demo.utterance_query.select("{duration} > 3"))
    assert f"{n} of {len(demo.utterances)} utterances match the filter" in text_of(by_id(layout, errors.SUMMARY))
    assert by_id(layout, errors.STATE).data == {"hyp": "pred_text_conformer", "filter": "{duration} > 3",
                                                "by": "duration_bucket", "min_utts": 1, "show": "worst"}
    layout = errors.layout(demo, "/errors", {"min_utts": "3", "show": "best"})
    assert by_id(layout, breakdown.MIN_UTTS).value == 3 and by_id(layout, breakdown.SHOW).value == "best"


def test_errors_layout_with_bad_params_is_friendly(demo):
    layout = errors.layout(demo, "/errors", {"hyp": "nope", "filter": "{wer} >> 3", "by": "no_such_column"})
    warning = text_of(by_id(layout, errors.WARNING))
    assert 'no hypothesis "nope"' in warning and "pred_text_conformer" in warning
    assert "Cannot break down by" in warning
    assert "invalid" in warning
    box = by_id(layout, errors.FILTER)
    assert box.invalid is True and box.value == "{wer} >> 3"
    assert text_of(by_id(layout, errors.FILTER_FEEDBACK))  # the parser's message is shown
    assert by_id(layout, errors.HYP).value == demo.hypotheses[0].field
    assert by_id(layout, errors.STATE).data["filter"] == ""  # all utterances shown


@pytest.mark.parametrize("filter_text", ["", "{duration} > 3", '{speaker} = "anna"'])
def test_top_error_rows_match_analysis(demo, filter_text):
    for h in demo.hypotheses:
        ids_ = demo.utterance_query.select(filter_text) if filter_text else None
        rows = errors.top_error_rows(demo, h, filter_text or None)
        expected = analysis.top_errors(demo.errors[h.field], utt_ids=ids_, limit=errors.TABLE_LIMIT)
        subs = expected["substitutions"]
        assert [(r["ref"], r["hyp"], r["count"]) for r in rows["substitutions"]] == \
            list(zip(subs["ref"].tolist(), subs["hyp"].tolist(), subs["count"].tolist()))
        for kind in ("deletions", "insertions"):
            assert [(r["word"], r["count"]) for r in rows[kind]] == \
                list(zip(expected[kind]["word"].tolist(), expected[kind]["count"].tolist()))
        selected = None if ids_ is None else set(np.asarray(ids_).tolist())
        for _kind, rs in rows.items():
            for r in rs:
                url = urlparse(r["href"])
                assert url.path == "/samples"
                q = parse_qs(url.query)
                assert q["hyp"] == [h.field]
                assert q.get("filter", [""]) == [filter_text]
                op, ref, hyp = state.parse_error_param(q["error"][0])
                found = analysis.utterances_with_error(demo.errors[h.field], op, ref, hyp)
                found = [u for u in found.tolist() if selected is None or u in selected]
                assert r["utterances"] == len(found) > 0


@pytest.mark.parametrize("op,ref,hyp", [
    ("sub", "light", "night"), ("sub", "a:b", "100%"), ("sub", "naïve", "a b&c=d"), ("del", "3:30", None),
    ("ins", None, "?x#y"), ("sub", "%3A", "::"),
])
def test_error_param_round_trips(op, ref, hyp):
    value = state.error_param(op, ref, hyp)
    assert state.parse_error_param(value) == (op, ref, hyp)
    href = state.error_href("pred_text", op, ref, hyp, '{text} contains "a&b"')
    q = parse_qs(urlparse(href).query)
    assert q["error"] == [value] and q["filter"] == ['{text} contains "a&b"']
    assert state.parse_error_param(q["error"][0]) == (op, ref, hyp)


def test_error_param_plain_words_stay_readable():
    assert state.error_href("pred_text", "sub", "light", "night") == "/samples?error=sub:light:night&hyp=pred_text"
    with pytest.raises(ValueError):
        state.parse_error_param("sub:only-one")
    with pytest.raises(ValueError):
        state.error_param("swap", "a", "b")


@pytest.mark.parametrize("by", ["speaker", "lang", "duration_bucket"])
def test_breakdown_rows_match_analysis_and_link_to_the_group(demo, by):
    h = demo.hypotheses[0]
    response = breakdown.grid_block(demo, {"hyp": h.field, "filter": "", "by": by},
                                    {"startRow": 0, "endRow": 100, "sortModel": []})["rows"]
    rows = response["rowData"]
    expected = analysis.breakdown(demo.utterances, by, h, sort="-wer", ci=True)
    assert response["rowCount"] == len(expected) == len(rows)
    assert [r["utterances"] for r in rows] == expected["utterances"].tolist()
    assert [r["wer"] for r in rows] == pytest.approx(expected["wer"].tolist(), abs=1e-4)
    assert [r["cer"] for r in rows] == pytest.approx(expected["cer"].tolist(), abs=1e-4)
    assert [r["ci_lo"] for r in rows] == pytest.approx(expected["ci_lo"].tolist(), abs=1e-4)
    for r in rows:
        q = parse_qs(urlparse(r["href"]).query)
        # The group's own filter selects exactly its utterances.
        assert len(demo.utterance_query.select(q["filter"][0])) == r["utterances"]


def test_selection_totals_match_the_summary(demo):
    for h in demo.hypotheses:
        t = analysis.selection_totals(demo.utterances, h, None)
        s = demo.summary()["hypotheses"][h.field]
        assert (t["sub"], t["del"], t["ins"]) == (s["substitutions"], s["deletions"], s["insertions"])
        assert t["wer"] == pytest.approx(s["wer"], abs=1e-6)


def errors_update(client, app, shown, triggered, hyp="pred_text", filter_value="", by="speaker", min_utts=1,
                  show="worst") -> dict:
    """The Errors page's controls changed (`triggered`): what the page's callback sends back."""
    return dash_update(client, app, "errors-summary-box.children",
                       {"errors-hyp.value": hyp, "errors-filter.value": filter_value, "errors-apply.n_clicks": 0,
                        "errors-by.value": by, "errors-min-utts.value": min_utts, "errors-show.value": show},
                       {"errors-state.data": shown}, triggered=f"{triggered}.value")


def test_errors_update_callback(app, client, demo):
    state = {"hyp": "pred_text", "filter": "", "by": "speaker", "min_utts": 1, "show": "worst"}
    out = errors_update(client, app, state, errors.HYP, hyp="pred_text_conformer")
    new = out["errors-state.data"]
    assert new == {"hyp": "pred_text_conformer", "filter": "", "by": "speaker", "min_utts": 1, "show": "worst"}
    assert "errors-breakdown-grid.columnDefs" not in out  # same column: the grid keeps its columns
    assert out["url.search"] == "?hyp=pred_text_conformer" and out["errors-filter.invalid"] is False
    assert out["errors-filter-feedback.children"] == ""
    assert out["rendered.data"]["path"] == "/errors" and out["rendered.data"]["params"] == {"hyp": "pred_text_conformer"}
    grid = by_id(out["errors-tables-box.children"], "errors-sub-grid")
    expected = analysis.top_errors(demo.errors["pred_text_conformer"], limit=errors.TABLE_LIMIT)["substitutions"]
    assert [r["ref"] for r in prop(grid, "rowData")] == expected["ref"].tolist()
    assert "conformer" in text_of(out["errors-summary-box.children"])

    # Only the breakdown column changed: the top-error tables are left alone.
    out = errors_update(client, app, new, breakdown.BY, hyp="pred_text_conformer", by="duration_bucket")
    assert "errors-summary-box.children" not in out and "errors-tables-box.children" not in out
    chart = go.Figure(prop(by_id(out["errors-breakdown-content.children"], breakdown.FIG), "figure"))
    assert set(chart.layout.xaxis.ticktext) <= set(analysis.DURATION_BUCKET_LABELS)
    assert out["errors-breakdown-grid.columnDefs"][0]["headerName"] == "duration_bucket"
    assert "by=duration_bucket" in out["url.search"]

    # The threshold and the best/worst toggle go into the state and the URL, not the tables.
    out = errors_update(client, app, state, breakdown.MIN_UTTS, min_utts="2", show="best")
    assert "errors-summary-box.children" not in out
    assert out["errors-state.data"]["min_utts"] == 2 and out["errors-state.data"]["show"] == "best"
    assert parse_qs(out["url.search"].lstrip("?")) == {"min_utts": ["2"], "show": ["best"]}
    assert "min_utterances=2" in prop(by_id(out["errors-breakdown-links.children"], breakdown.CSV), "href")

    # An invalid filter: the hint, nothing else changes.
    out = errors_update(client, app, state, errors.FILTER, filter_value="{wer} >> 1")
    assert set(out) == {"errors-filter.invalid", "errors-filter-feedback.children"}
    assert out["errors-filter.invalid"] is True and out["errors-filter-feedback.children"]

    # A valid filter restricts everything and goes into the URL.
    out = errors_update(client, app, state, errors.FILTER, filter_value="{duration} > 3")
    assert parse_qs(out["url.search"].lstrip("?")) == {"filter": ["{duration} > 3"]}
    ids_ = demo.utterance_query.select("{duration} > 3")
    exp = analysis.breakdown(demo.utterances, "speaker", demo.hypotheses[0], utt_ids=ids_)
    bars = go.Figure(prop(by_id(out["errors-breakdown-content.children"], breakdown.FIG), "figure")).data[0]
    assert [c[1] for c in bars.customdata] == exp["utterances"].tolist()
    rows = dash_update(client, app, "errors-breakdown-grid.getRowsResponse",
                       {"errors-breakdown-grid.getRowsRequest": {"startRow": 0, "endRow": 100}},
                       {"errors-state.data": out["errors-state.data"]})["errors-breakdown-grid.getRowsResponse"]
    assert sorted(r["utterances"] for r in rows["rowData"]) == sorted(exp["utterances"].tolist())

    # Nothing changed: no re-render.
    out = errors_update(client, app, state, errors.HYP)
    assert "errors-summary-box.children" not in out and "url.search" not in out


HREF = "/samples?error=sub:a:b&hyp=pred_text"


@pytest.mark.parametrize("source, value, expected", [
    ("errors-sub-grid.cellClicked", {"rowId": HREF, "colId": "ref"}, HREF),
    ("errors-del-grid.cellClicked", {"rowId": "javascript:alert(1)"}, None),
    ("errors-ins-grid.cellClicked", {"rowId": "//evil.example/x"}, None),
    ("errors-sub-fig.clickData", {"points": [{"customdata": [HREF, "a → b"]}]}, HREF),
    ("errors-del-fig.clickData", {"points": []}, None),
    ("errors-breakdown-grid.cellClicked", {"rowId": "/samples?filter=x"}, "/samples?filter=x"),
    ("errors-breakdown-grid.cellClicked", {"rowId": "#group-3"}, None),
], ids=["table row", "a script", "another host", "bar", "no bar", "breakdown row", "a group without a filter"])
def test_errors_clicks_open_their_href(app, client, source, value, expected):
    out = dash_update(client, app, "url.href", {source: value}, triggered=source)
    assert out.get("url.href") == expected


# ---------------------------------------------------------------- comparison page

def test_comparison_stats_equal_analysis_and_the_api(demo):
    from flask import Flask

    from sde.web.api import register_api

    a, b = demo.hypotheses
    payload = comparison.compare_stats(demo, a, b, "")
    direct = analysis.compare(demo.utterances, a, b)
    assert payload["a"]["wer"] == pytest.approx(direct["a"]["wer"], abs=1e-6)
    assert payload["b"]["ci"] == pytest.approx(direct["b"]["ci"], abs=1e-6)
    assert payload["diff"]["p"] == pytest.approx(direct["diff"]["p"], abs=1e-6)
    server = Flask("t")
    register_api(server, demo)
    api = server.test_client().get("/api/compare", query_string={"a": a.field, "b": b.field}).get_json()
    assert api == payload

    layout = comparison.layout(demo, "/comparison", {})
    assert text_of(by_id(layout, comparison_stats.A_WER)) == f"{api['a']['wer']:.2f}%"
    assert text_of(by_id(layout, comparison_stats.B_WER)) == f"{api['b']['wer']:.2f}%"
    lo, hi = api["a"]["ci"]
    assert text_of(by_id(layout, comparison_stats.A_CI)) == f"95% CI {lo:.2f} – {hi:.2f}%"
    assert text_of(by_id(layout, comparison_stats.DIFF_WER)) == f"{api['diff']['wer']:+.2f} points".replace("-", "−")
    sentence = text_of(by_id(layout, comparison_stats.INTERPRETATION))
    assert sentence.startswith("B (conformer) is better by 8.0 points (95% CI")
    assert text_of(by_id(layout, comparison_stats.DIFF_P)) == comparison_stats.fmt_p(api["diff"]["p"], 1000)


def _values(x) -> np.ndarray:
    """A trace's values from plotly JSON, where numbers are a typed array ({"dtype", "bdata"})."""
    if isinstance(x, dict) and "bdata" in x:
        import base64
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"])
    return np.asarray(x)


def test_comparison_layout_params(demo):
    layout = comparison.layout(demo, "/comparison", {"a": "conformer", "b": "pred_text", "metric": "cer",
                                                     "filter": "{duration} > 3"})
    assert by_id(layout, comparison.A).value == "pred_text_conformer"
    assert by_id(layout, comparison.METRIC).value == "cer"
    fig = go.Figure(by_id(layout, comparison.UTT_FIG).figure)  # kept as plotly JSON
    assert "CER" in fig.layout.xaxis.title.text
    n = len(demo.utterance_query.select("{duration} > 3"))
    assert sum(len(_values(t.x)) for t in fig.data) == n
    assert f"{n} utterances" in text_of(by_id(layout, comparison_stats.STATS))
    # Bad params: messages, not a crash.
    layout = comparison.layout(demo, "/comparison", {"a": "zzz", "b": "pred_text", "metric": "mse",
                                                     "filter": "{nope} = 1"})
    warning = text_of(by_id(layout, comparison.WARNING))
    assert 'no hypothesis "zzz"' in warning and "same hypothesis" in warning and "Unknown metric" in warning
    assert by_id(layout, comparison.FILTER).invalid is True


@pytest.mark.parametrize("diff,ci,p,start,tone", [
    (-8.0, [-12.9, -3.1], 0.002, "B (b) is better by 8.0 points (95% CI 3.1 – 12.9, p = 0.002).", "success"),
    (-2.98, [-3.01, -2.96], 0.001998, "B (b) is better by 2.98 points (95% CI 2.96 – 3.01, p ≤ 0.002).",
     "success"),
    (2.5, [0.4, 4.6], 0.03, "A (a) is better by 2.5 points (95% CI 0.40 – 4.6, p = 0.03).", "danger"),
    (-0.5, [-1.2, 0.3], 0.4, "No significant difference: B (b) is ahead by 0.50 points", "secondary"),
    (0.0, [0.0, 0.0], 1.0, "A (a) and B (b) make exactly as many", "secondary"),
    (0.0, [-12.9, 16.7], 1.0, "No difference: A (a) and B (b) have the same WER on these utterances (95% CI of "
     "B − A −12.9 – 16.7 points, p = 1.00).", "secondary"),
    (25.0, [-0.0, 33.3], 0.06, "No significant difference: A (a) is ahead by 25.0 points, but the 95% CI 0.00 – 33.3 "
     "includes 0", "secondary"),
    (-25.0, [-33.3, 0.0], 0.06, "No significant difference: B (b) is ahead by 25.0 points, but the 95% CI 0.00 – 33.3",
     "secondary"),
    (0.5, [-1.2, 0.3], 0.4, "No significant difference: A (a) is ahead by 0.50 points, but the 95% CI −1.2 – 0.30",
     "secondary"),
    (None, [None, None], None, "No utterances selected", "secondary"),
])
def test_interpretation(diff, ci, p, start, tone):
    payload = {"diff": {"wer": diff, "ci": ci, "p": p}, "n_resamples": 1000}
    sentence, got_tone = comparison_stats.interpretation(payload, "a", "b")
    assert sentence.startswith(start) and got_tone == tone


def test_word_comparison_matches_analysis_and_brute_force(demo):
    a, b = demo.hypotheses
    words = comparison.word_comparison(demo, a, b, None)
    expected = analysis.word_accuracy_comparison(demo.vocabulary, a.column("accuracy"), b.column("accuracy"))
    assert sorted(words["word"].tolist()) == sorted(expected["word"].tolist())
    merged = words.merge(expected, on="word", suffixes=("", "_e"))
    assert np.allclose(merged["diff"], merged["diff_e"])
    assert (np.abs(words["net"].to_numpy())[:-1] >= np.abs(words["net"].to_numpy())[1:]).all()
    # Over a subset, accuracies are recomputed from that subset's alignments.
    ids_ = demo.utterance_query.select("{duration} > 3")
    sub = comparison.word_comparison(demo, a, b, np.asarray(ids_)).set_index("word")
    counts: dict[str, list[int]] = {}
    for uid in np.asarray(ids_).tolist():
        row = demo.utterances.iloc[uid]
        for k, h in enumerate((a, b)):
            for w in align_words(row["text"], row[h.field]):
                if w.ref is None:
                    continue
                c = counts.setdefault(w.ref, [0, 0, 0])
                if k == 0:
                    c[0] += 1
                c[1 + k] += w.op == "equal"
    for word, (n, hits_a, hits_b) in counts.items():
        assert sub.loc[word, "count"] == n
        assert sub.loc[word, "acc_a"] == pytest.approx(100 * hits_a / n)
        assert sub.loc[word, "acc_b"] == pytest.approx(100 * hits_b / n)


def comparison_update(client, app, shown, triggered, a="pred_text", b="pred_text_conformer", metric="wer",
                      filter_value="") -> dict:
    return dash_update(client, app, "cmp-stats-box.children",
                       {"cmp-a.value": a, "cmp-b.value": b, "cmp-metric.value": metric, "cmp-filter.value": filter_value,
                        "cmp-apply.n_clicks": 0}, {"cmp-state.data": shown}, triggered=f"{triggered}.value")


def updated(out: dict, *outputs: str) -> dict:
    """``out``, having updated ``outputs``; else the failure shows what the callback answered
    instead (its filter feedback says why a selection failed, e.g. a query over its time limit)."""
    missing = [o for o in outputs if o not in out]
    assert not missing, (missing, sorted(out), out.get("cmp-filter-feedback.children"))
    return out


def test_comparison_update_callback(app, client, demo):
    state = {"a": "pred_text", "b": "pred_text_conformer", "metric": "wer", "filter": ""}
    out = updated(comparison_update(client, app, state, comparison.METRIC, metric="cer"),
                  "cmp-utt-fig.figure", "cmp-state.data", "url.search")
    assert "cmp-stats-box.children" not in out and "cmp-words-box.children" not in out  # the utterance level only
    assert "CER" in go.Figure(out["cmp-utt-fig.figure"]).layout.xaxis.title.text
    assert out["cmp-state.data"]["metric"] == "cer"
    assert parse_qs(out["url.search"].lstrip("?")) == {"a": ["pred_text"], "b": ["pred_text_conformer"],
                                                       "metric": ["cer"]}
    # Swapped systems: new numbers.
    out = updated(comparison_update(client, app, state, comparison.A, a="pred_text_conformer", b="pred_text"),
                  "cmp-stats-box.children")
    direct = analysis.compare(demo.utterances, demo.hypotheses[1], demo.hypotheses[0])
    stats = out["cmp-stats-box.children"]
    assert text_of(by_id(stats, comparison_stats.A_WER)) == f"{direct['a']['wer']:.2f}%"
    assert "A (conformer) is better" in text_of(by_id(stats, comparison_stats.INTERPRETATION))
    # The same hypothesis twice: a warning.
    out = updated(comparison_update(client, app, state, comparison.B, b="pred_text"), "cmp-warning.children")
    assert "same hypothesis" in text_of(out["cmp-warning.children"])
    # Invalid filter: hint only.
    out = comparison_update(client, app, state, comparison.FILTER, filter_value="{x")
    assert set(out) == {"cmp-filter.invalid", "cmp-filter-feedback.children"} and out["cmp-filter.invalid"] is True
    # A filter that matches nothing: stats say so, no crash.
    out = updated(comparison_update(client, app, state, comparison.FILTER, filter_value="{duration} > 1000"),
                  "cmp-stats-box.children", "cmp-utt-fig.figure")
    assert "No utterances selected" in text_of(out["cmp-stats-box.children"])
    assert sum(len(getattr(t, "x", None) or []) for t in go.Figure(out["cmp-utt-fig.figure"]).data) == 0


def test_comparison_click_targets(app, client):
    shown = {"filter": "{duration} > 3"}
    assert comparison.click_href(comparison.UTT_FIG, None, None, {"points": [{"customdata": 17}]}, shown) == \
        "/utterance/17?filter=%7Bduration%7D+%3E+3"
    href = comparison.click_href(comparison.WORD_FIG, None, {"points": [{"customdata": '"hi"'}]}, None, {})
    q = parse_qs(urlparse(href).query)
    assert q["filter"] == ['{text} has "\\"hi\\""']
    assert comparison.click_href(comparison.WORD_GRID, {"rowId": "/samples?filter=x"}, None, None, {}) == \
        "/samples?filter=x"
    assert comparison.click_href(comparison.UTT_FIG, None, None, {"points": [{}]}, {}) is None
    out = dash_update(client, app, "url.href", {"cmp-word-fig.clickData": {"points": [{"customdata": "and"}]}},
                      {"cmp-state.data": {}})
    assert out["url.href"] == "/samples?filter=%7Btext%7D+has+%22and%22" == state.word_href("and")
    out = dash_update(client, app, "url.href", {"cmp-utt-grid.cellClicked": {"rowId": "/utterance/3"}},
                      {"cmp-state.data": {}})
    assert out["url.href"] == "/utterance/3"


def test_utterance_rows_are_the_largest_differences(demo):
    a, b = demo.hypotheses
    rows = comparison.utterance_rows(demo, a, b, "wer", None, None)
    frame = analysis.utterance_comparison(demo.utterances, a, b)
    nonzero = frame[frame["diff"] != 0]
    assert len(rows) == len(nonzero)
    assert abs(rows[0]["diff"]) == pytest.approx(np.abs(nonzero["diff"]).max(), abs=1e-4)
    assert all(abs(x["diff"]) >= abs(y["diff"]) for x, y in itertools.pairwise(rows))
    # the inspector walks this ranking: from=comparison&a=…&b=…
    assert rows[0]["href"] == state.ranked_utterance_href(rows[0]["id"], a.field, b.field)


def test_user_text_is_escaped(hostile):
    layout = errors.layout(hostile, "/errors", {"by": "speaker"})
    rows = by_id(layout, "errors-sub-grid").rowData
    # Grid cells are data (rendered as text by the grid: no HTML renderer), links round-trip the word.
    row = next(r for r in rows if r["ref"] == XSS)
    op, ref, hyp = state.parse_error_param(parse_qs(urlparse(row["href"]).query)["error"][0])
    assert (op, ref, hyp) == ("sub", XSS, "world")
    colon = next(r for r in rows if r["ref"] == "a:b")
    assert state.parse_error_param(parse_qs(urlparse(colon["href"]).query)["error"][0]) == ("sub", "a:b", "a:c")
    fig = by_id(layout, "errors-sub-fig").figure
    assert all("<script" not in str(t) for t in fig.layout.yaxis.ticktext)
    bfig = by_id(layout, breakdown.FIG).figure
    assert all("<script" not in t for t in bfig.layout.xaxis.ticktext)
    layout = comparison.layout(hostile, "/comparison", {})
    wfig = go.Figure(by_id(layout, comparison.WORD_FIG).figure)  # kept as plotly JSON
    for t in wfig.data:
        assert all("<script" not in s for s in (t.text if t.text is not None else ()))
    # The word a click opens is the raw word (customdata), the hover shows it escaped (text).
    words = [w for t in wfig.data for w in (t.customdata if t.customdata is not None else ())]
    assert "<script>alert(1)</script>" in words


# ---------------------------------------------------------------- figures

def test_top_errors_figure():
    fig = af.top_errors_figure([f"w{i} → x" for i in range(30)], list(range(30, 0, -1)), "",
                               hrefs=[f"/samples?error=sub:w{i}:x" for i in range(30)])
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Bar) and fig.data[0].orientation == "h"
    assert len(fig.data[0].x) == af.MAX_BARS
    assert fig.data[0].customdata[0][0] == "/samples?error=sub:w0:x"
    assert list(fig.layout.yaxis.range) == [af.MAX_BARS - 0.5, -0.5]  # most frequent on top
    empty = af.top_errors_figure([], [], "", kind="insertions")
    assert len(empty.data) == 0 and empty.layout.height == fig.layout.height


def test_breakdown_figure(demo):
    frame = analysis.breakdown(demo.utterances, "speaker", demo.hypotheses[0])
    fig = af.breakdown_figure(frame, "speaker", "pred_text")
    assert [t.name for t in fig.data] == ["WER", "CER"]
    assert list(fig.data[0].y) == pytest.approx(frame["wer"].tolist(), abs=1e-3)
    assert "utterances" in fig.data[0].hovertemplate
    assert [c[1] for c in fig.data[0].customdata] == frame["utterances"].tolist()
    assert fig.layout.xaxis.title.text == "speaker"
    many = frame.loc[np.repeat(frame.index, 10)].reset_index(drop=True)
    many["utterances"] = np.arange(len(many))
    fig = af.breakdown_figure(many, "speaker", "h", max_groups=5)
    assert len(fig.data[0].y) == 5


def test_word_scatter_figure(demo):
    a, b = demo.hypotheses
    words = comparison.word_comparison(demo, a, b, None)
    fig = af.word_scatter_figure(words, "a", "b")
    names = [t.name.split(" (")[0] for t in fig.data]
    assert names == ["B better", "A better", "equal"]
    assert sum(len(t.x) for t in fig.data) == len(words)
    better = fig.data[0]
    assert all(y > x for x, y in zip(better.x, better.y))
    assert fig.layout.shapes[0].type == "line"  # the diagonal
    assert "accuracy of A" in fig.layout.xaxis.title.text
    sizes = np.concatenate([np.asarray(t.marker.size) for t in fig.data])
    assert sizes.min() >= 5
    big = words.loc[np.repeat(words.index, 40)].reset_index(drop=True)
    fig = af.word_scatter_figure(big, "a", "b", max_points=100)
    assert sum(len(t.x) for t in fig.data) == 100
    assert any("most frequent" in (a.text or "") for a in fig.layout.annotations)


def test_utterance_scatter_subsamples_deterministically():
    rng = np.random.default_rng(1)
    n = 50_000
    a = rng.uniform(0, 60, n).round(1)
    b = np.clip(a + rng.normal(0, 5, n), 0, None).round(1)
    b[123] = 400.0  # the largest difference must be kept
    ids_ = np.arange(n) + 1000
    fig = af.utterance_scatter_figure(ids_, a, b, "a", "b", "wer")
    fig2 = af.utterance_scatter_figure(ids_, a, b, "a", "b", "wer")
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    shown = sum(len(t.x) for t in fig.data)
    assert shown == af.MAX_POINTS
    assert [list(t.customdata) for t in fig.data] == [list(t.customdata) for t in fig2.data]
    assert any(1123 in t.customdata for t in fig.data)
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert f"showing {af.MAX_POINTS:,} of {n:,} utterances" in notes
    assert f"over all {n:,} utterances" in notes
    better_b = int(np.count_nonzero(b < a))
    assert f"B better on {better_b:,}" in notes
    small = af.utterance_scatter_figure(np.arange(3), np.array([10.0, 0, 5]), np.array([0.0, 10, 5]), "a", "b", "cer")
    assert sum(len(t.x) for t in small.data) == 3
    assert "CER" in small.layout.yaxis.title.text
    assert math.isclose(small.layout.xaxis.range[1], small.layout.yaxis.range[1])


def test_subsample_keeps_extremes():
    diff = np.zeros(100_000)
    diff[[5, 99_999]] = [50, -70]
    s = af.subsample(diff, max_points=1000)
    assert len(s.positions) == 1000 and s.total == 100_000 and s.subsampled
    assert {5, 99_999} <= set(s.positions.tolist())
    assert (np.diff(s.positions) > 0).all()


def test_errors_page_counts_its_tables_once_per_hypothesis_and_filter(demo, monkeypatch):
    """A second visit (or a control round trip back) reuses the counts: at 10M utterances they
    cost seconds per visit."""
    calls = []
    counted = analysis.affected_utterances

    def counting(*args, **kwargs):
        calls.append(args[1])
        return counted(*args, **kwargs)

    monkeypatch.setattr(analysis, "affected_utterances", counting)
    params = {"filter": "{duration} > 1.25"}
    first = text_of(by_id(errors.layout(demo, "/errors", params), errors.TABLES_BOX))
    assert sorted(calls) == sorted(errors.KINDS)
    again = text_of(by_id(errors.layout(demo, "/errors", params), errors.TABLES_BOX))
    assert again == first and len(calls) == 3
    errors.layout(demo, "/errors", {"filter": "{duration} > 1.5"})
    assert len(calls) == 6


def test_comparison_page_compares_the_utterances_once_per_view(demo, monkeypatch):
    """The scatter and the ranked table read one per-utterance comparison (10M utterances: ~0.3 s
    each), and they agree: the table's rows are the scatter's points that differ."""
    calls = []
    compared = analysis.utterance_comparison

    def counting(*args, **kwargs):
        calls.append(kwargs.get("metric"))
        return compared(*args, **kwargs)

    monkeypatch.setattr(analysis, "utterance_comparison", counting)
    a, b = demo.hypotheses[:2]
    params = {"a": a.field, "b": b.field, "filter": "{duration} > 1.25"}
    comparison.layout(demo, "/comparison", params)
    assert calls == ["wer"]
    ranked = comparison.ranked_differences(demo, a, b, "wer", params["filter"])
    frame = compared(demo.utterances, a, b, metric="wer",
                     utt_ids=np.flatnonzero(demo.utterances["duration"].to_numpy() > 1.25))
    differ = frame[frame["diff"] != 0]
    assert sorted(ranked["id"].tolist()) == sorted(differ["id"].tolist()) and len(calls) == 1


def test_prepared_pages_are_first_visited_from_their_caches(monkeypatch):
    """The server's warm-up lays out Statistics, Errors and Comparison once (prepare_pages), and the
    error tables of the other hypothesis; the first visit then computes no histogram, counts no
    error and compares nothing again."""
    from sde.web.pages import prepare_pages, statistics

    ds = build_dataset(DEMO)  # its own: the caches are the dataset's
    counted = {"figures": 0, "affected": 0, "compared": 0, "bootstrap": 0}

    def counted_as(name, real):
        def count(*args, **kwargs):
            counted[name] += 1
            return real(*args, **kwargs)
        return count

    monkeypatch.setattr(statistics, "build_figures", counted_as("figures", statistics.build_figures))
    monkeypatch.setattr(analysis, "affected_utterances", counted_as("affected", analysis.affected_utterances))
    monkeypatch.setattr(analysis, "utterance_comparison", counted_as("compared", analysis.utterance_comparison))
    monkeypatch.setattr(analysis, "compare", counted_as("bootstrap", analysis.compare))
    assert prepare_pages(ds) == ["Statistics", "Errors", "Comparison"]
    prepared = {"figures": 1, "affected": len(errors.KINDS) * len(ds.hypotheses), "compared": 1, "bootstrap": 1}
    assert counted == prepared
    shown = (text_of(statistics.layout(ds, "/", {})), text_of(errors.layout(ds, "/errors", {})),
             text_of(comparison.layout(ds, "/comparison", {})))
    assert counted == prepared
    assert "Utterances30" in shown[0] and "Substitutions" in shown[1] and "B − A" in shown[2]


def test_sde_index_keeps_the_pages_and_a_start_from_its_build_computes_none_of_them(tmp_path, monkeypatch):
    """`sde index` lays out the prepared pages on the build and keeps what they computed beside it
    (sde.caching.keeping); a start from that build shows the same pages without computing them."""
    import subprocess
    import sys

    from sde.build.load import load_dataset
    from sde.web.pages import prepare_pages, statistics

    cache_dir = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-m", "sde.cli", "index", str(DEMO), "--cache-dir", str(cache_dir)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pages laid out in" in done.stderr and "kept with the dataset: Statistics, Errors, Comparison" in done.stderr

    def lay_out(ds) -> list[str]:
        return [text_of(statistics.layout(ds, "/", {})), text_of(errors.layout(ds, "/errors", {})),
                text_of(comparison.layout(ds, "/comparison", {}))]

    computed = lay_out(build_dataset(DEMO))
    counted: list[str] = []

    def refuse(name):
        def count(*args, **kwargs):
            counted.append(name)
            raise AssertionError(f"{name} computed again")
        return count

    monkeypatch.setattr(statistics, "build_figures", refuse("figures"))
    for name in ("top_errors", "affected_utterances", "utterance_comparison", "compare", "word_comparison"):
        monkeypatch.setattr(analysis, name, refuse(name))
    started = load_dataset(DEMO, cache_dir=cache_dir)
    assert prepare_pages(started) == ["Statistics", "Errors", "Comparison"]
    assert lay_out(started) == computed and counted == []


def test_a_comparison_visited_while_it_is_laid_out_waits_for_that_work(monkeypatch):
    ds = build_dataset(DEMO)
    calls = []
    compared = analysis.utterance_comparison

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)  # long enough for the second visit to arrive meanwhile
        return compared(*args, **kwargs)

    monkeypatch.setattr(analysis, "utterance_comparison", slow)
    with ThreadPoolExecutor(2) as pool:
        shown = list(pool.map(lambda _: text_of(comparison.layout(ds, "/comparison", {})), range(2)))
    assert len(calls) == 1 and shown[0] == shown[1]


def test_the_errors_summary_counts_the_lines_the_hypothesis_was_scored_on(tmp_path):
    # "over all 202 utterances" of a hypothesis one line lacks; "6 of 202 … match the filter" when 7 did
    import json

    from sde.dataset import build_dataset

    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": "the cat sat",
             **({"pred_text": "the bat sat"} if i != 3 else {})} for i in range(10)]
    (tmp_path / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = build_dataset(tmp_path / "m.json")
    said = text_of(by_id(errors.layout(dataset, "/errors", {}), errors.SUMMARY))
    assert "over the 9 utterances with pred_text" in said, said
    said = text_of(by_id(errors.layout(dataset, "/errors", {"filter": "{duration} > 2"}), errors.SUMMARY))
    assert "over 7 of 10 utterances: those with pred_text the filter selects" in said, said
