"""The web layer's pure helpers and callback bodies, called directly (no browser): grid request
translation, filter-box errors, routing, page layouts, escaping, figure builders."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
from dash import dcc, html, no_update

from sde.dataset import build_dataset
from sde.web import figures, ids
from sde.web.app import AppConfig, create_app
from sde.web.components import check_filter, diff_view, grid_rows
from sde.web.pages import PAGE_MODULES, load_pages, resolve

XSS = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"

ROWS = [
    {"audio_filepath": "a0.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the cat sat",
     "pred_text_b": "the bat sat", "speaker": "en-gb", "snr": 12.5},
    {"audio_filepath": "a1.wav", "duration": 3.0, "text": "hello world again", "pred_text": "hello word",
     "pred_text_b": "hello world again", "speaker": "en-us", "snr": 3.0},
    {"audio_filepath": "a2.wav", "duration": 1.5, "text": XSS, "pred_text": IMG, "pred_text_b": XSS,
     "speaker": "en-gb", "snr": 7.0},
    {"audio_filepath": "a3.wav", "duration": 4.0, "text": "a b c d", "pred_text": "a x c d e",
     "pred_text_b": "b c d", "speaker": "en-us", "snr": 25.0},
    "not json at all",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("web_cb") / "cb.json"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    return build_dataset(path)


@pytest.fixture(scope="module")
def app(dataset):
    return create_app(dataset, AppConfig(title=dataset.name, audio_routes=False))


def callback(app, fragment: str):
    """The undecorated body of the callback whose outputs contain `fragment`."""
    matches = [v for k, v in app.callback_map.items() if fragment in k and "callback" in v]
    assert len(matches) == 1, [k for k in app.callback_map if fragment in k]
    return matches[0]["callback"].__wrapped__


def texts(component) -> list[str]:
    """Every string in a component tree (children and string props), to look for user text."""
    out = []

    def walk(c):
        if c is None:
            return
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, (list, tuple)):
            for x in c:
                walk(x)
        elif hasattr(c, "to_plotly_json"):
            walk(getattr(c, "children", None))
    walk(component)
    return out


def components(component):
    if isinstance(component, (list, tuple)):
        for c in component:
            yield from components(c)
    elif hasattr(component, "to_plotly_json"):
        yield component
        yield from components(getattr(component, "children", None))


# ---------------------------------------------------------------- grid rows (infinite model)

def test_grid_rows_translates_filter_and_sort_models(dataset):
    q, df = dataset.utterance_query, dataset.utterances
    request = {
        "startRow": 0, "endRow": 100,
        "filterModel": {"snr": {"filterType": "number", "type": "greaterThan", "filter": 5}},
        "sortModel": [{"colId": "duration", "sort": "desc"}],
    }
    r = grid_rows(q, df, request, '{speaker} = "en-us"')
    assert r.error is None
    assert [row["id"] for row in r.response["rowData"]] == [3]
    assert r.response["rowCount"] == r.total == 1
    assert r.effective == '{speaker} = "en-us" && {snr} > 5'
    assert r.sort == "-duration"
    # The effective text means the same to the API and the CSV export.
    assert list(q.select(r.effective, r.sort)) == [3]


def test_grid_rows_blocks(dataset):
    r = grid_rows(dataset.utterance_query, dataset.utterances, {"startRow": 1, "endRow": 3, "sortModel": []}, "")
    assert [row["id"] for row in r.response["rowData"]] == [1, 2]
    assert r.response["rowCount"] == 4
    assert r.effective == "" and r.sort == ""


def test_grid_rows_json_safe_and_text_verbatim(dataset):
    r = grid_rows(dataset.utterance_query, dataset.utterances, {"startRow": 0, "endRow": 10}, None)
    json.dumps(r.response, allow_nan=False)
    assert r.response["rowData"][2]["text"] == XSS


def test_grid_rows_errors_are_messages(dataset):
    r = grid_rows(dataset.utterance_query, dataset.utterances, {"startRow": 0, "endRow": 10}, "{nope} > 1")
    assert r.error and "nope" in r.error
    assert r.response == {"rowData": [], "rowCount": 0}
    bad_grid = {"startRow": 0, "endRow": 10, "filterModel": {"text": {"filterType": "text", "type": "startsWith",
                                                                      "filter": "a"}}}
    r = grid_rows(dataset.utterance_query, dataset.utterances, bad_grid, "")
    assert r.error and "startsWith" in r.error


def test_check_filter(dataset):
    q = dataset.utterance_query
    assert check_filter(q, "") is None
    assert check_filter(q, '{wer} > 20 && {speaker} = "en-gb"') is None
    assert "number" in check_filter(q, "{wer} > abc")
    assert "Unknown column" in check_filter(q, "{werr} > 2")
    assert "Did you mean" in check_filter(q, "{werr} > 2")


# ---------------------------------------------------------------- callback bodies

def test_filter_box_callback(app):
    apply_filter = callback(app, "samples-filter.invalid")
    invalid, message, applied = apply_filter('{wer} >', 0, '{wer} >', "")
    assert invalid is True and "missing value" in message and applied is no_update
    invalid, message, applied = apply_filter(" {wer} > 10 ", 0, " {wer} > 10 ", "")
    assert (invalid, message, applied) == (False, "", "{wer} > 10")
    # Unchanged text: no refetch.
    assert apply_filter("{wer} > 10", 1, "{wer} > 10", "{wer} > 10")[2] is no_update


def test_get_rows_callback_writes_state_url_and_csv(app):
    get_rows = callback(app, "samples-grid.getRowsResponse")
    request = {"startRow": 0, "endRow": 100, "sortModel": [{"colId": "wer", "sort": "desc"}], "filterModel": {}}
    response, count, csv, state, search, rendered = get_rows(request, "{wer} > 0", "")
    assert response["rowCount"] == 3
    wers = [r["wer"] for r in response["rowData"]]
    assert wers == sorted(wers, reverse=True)
    assert "3" in json.dumps(count.to_plotly_json(), default=str) and "of" in texts(count)[-1]
    assert csv.startswith("/api/utterances.csv?") and "sort=-wer" in csv and "filter=" in csv
    assert state["effective"] == "{wer} > 0" and state["sort"] == "-wer"
    assert search == "?filter=%7Bwer%7D+%3E+0&sort=-wer"
    assert rendered["path"] == "/samples" and rendered["params"] == {"filter": "{wer} > 0", "sort": "-wer"}
    # Same state as the URL already has: the URL is left alone (no history entry, no re-render).
    again = get_rows(request, "{wer} > 0", search)
    assert again[4] is no_update and again[5] is no_update


def test_row_click_opens_the_inspector_on_the_filtered_list(app):
    open_row = [v["callback"].__wrapped__ for k, v in app.callback_map.items()
                if k.startswith("url.href") and "samples" in json.dumps(v.get("inputs", []))]
    assert len(open_row) == 1
    state = {"filter": "{wer} > 0", "effective": "{wer} > 0", "sort": "-wer", "colfilter": ""}
    href = open_row[0]({"rowIndex": 0, "colId": "text"}, state)
    assert href.startswith("/utterance/") and "filter=%7Bwer%7D+%3E+0" in href and "sort=-wer" in href
    assert open_row[0](None, state) is no_update
    assert open_row[0]({"rowIndex": 99}, state) is no_update


def test_vocabulary_row_click_lists_utterances_with_the_word(app, dataset):
    open_row = [v["callback"].__wrapped__ for k, v in app.callback_map.items()
                if k.startswith("url.href") and "vocabulary" in json.dumps(v.get("inputs", []))]
    href = open_row[0]({"rowIndex": 0}, {"effective": "", "sort": "-count"})
    assert href.startswith("/samples?filter=")


def test_column_picker_keeps_the_spec_order(app):
    pick = callback(app, "samples-grid.columnDefs")
    defs = pick(["wer", "id", "text"])
    shown = [d["field"] for d in defs if not d["hide"]]
    assert shown == ["id", "text", "wer"]
    assert all("sort" not in d for d in defs)        # the grid keeps its own sort


def test_router(app):
    route = callback(app, "page-content.children")
    layout, key = route("/samples", "?filter=%7Bwer%7D+%3E+0", None)
    assert key == {"path": "/samples", "params": {"filter": "{wer} > 0"}, "title": "Samples"}
    assert route("/samples", "?filter=%7Bwer%7D+%3E+0", key) == (no_update, no_update)
    layout, key = route("/nowhere", "", None)
    assert layout.id == "not-found"
    layout, key = route("/", "", None)
    assert key["title"] == "Statistics"
    layout, key = route("/utterance/1", "?sort=-wer", None)
    assert key["title"] == "Utterance"


def test_signal_callback_names_the_file_when_audio_is_missing(app):
    show = callback(app, "utt-signal.figure")
    _fig, style, message, audio_style = show("linear", 0)
    assert style == {"display": "none"} and audio_style == {"display": "none"}
    alert = json.dumps(message.to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert "a0.wav" in alert


# ---------------------------------------------------------------- pages

def test_registry():
    pages = load_pages()
    names = [p.name for p in pages]
    assert names[:5] == ["Statistics", "Samples", "Utterance", "Vocabulary", "Problems"]
    assert "statistics" in PAGE_MODULES
    assert resolve(pages, "/").name == "Statistics"
    assert resolve(pages, "/statistics").name == "Statistics"
    assert resolve(pages, "/utterance/12").name == "Utterance"
    assert resolve(pages, "/samples/").name == "Samples"
    assert resolve(pages, "/nope") is None
    assert all(p.api.startswith("/api/") for p in pages)


def test_utterance_layout_escapes_and_walks_the_filtered_list(dataset):
    from sde.web.pages import utterance

    layout = utterance.layout(dataset, "/utterance/2", {"filter": '{speaker} = "en-gb"', "sort": "-duration"})
    strings = texts(layout)
    assert XSS in strings and IMG in strings           # shown as text children (Dash escapes them)
    for c in components(layout):
        assert not getattr(c, "dangerously_allow_html", False)
        assert type(c).__name__ not in ("Iframe", "Script")
    prev = next(c for c in components(layout) if getattr(c, "id", None) == ids.UTT_PREV)
    nxt = next(c for c in components(layout) if getattr(c, "id", None) == ids.UTT_NEXT)
    # en-gb rows by duration desc: 0 (2.0 s), 2 (1.5 s): 2 is last, 0 before it.
    assert prev.href.startswith("/utterance/0?") and "filter=" in prev.href
    assert isinstance(nxt, html.Span) and "disabled" in nxt.className
    audio = next(c for c in components(layout) if isinstance(c, html.Audio))
    assert audio.src == "/audio/2.ogg"


def test_utterance_neighbours(dataset):
    from sde.web.pages.utterance import neighbours

    assert neighbours(dataset, 1, {}) == {"index": 1, "total": 4, "prev": 0, "next": 2, "warning": None,
                                          "outside": False}
    n = neighbours(dataset, 1, {"filter": '{speaker} = "en-gb"'})
    assert n["index"] is None and n["outside"]
    bad = neighbours(dataset, 1, {"filter": "{wer} >"})
    assert bad["warning"] and bad["index"] == 1


def test_unknown_utterance_page(dataset):
    from sde.web.pages import utterance

    assert utterance.layout(dataset, "/utterance/99", {}).id == "utt-not-found"
    assert utterance.layout(dataset, "/utterance/abc", {}).id == "utt-not-found"


def test_statistics_layout_shows_the_summary(dataset):
    from sde.web.pages import statistics

    layout = statistics.layout(dataset, "/", {})
    strings = texts(layout)
    s = dataset.summary()
    assert f"{s['hours']:.2f}" in strings
    assert f"{s['hypotheses']['pred_text']['wer']:.2f}%" in strings
    graphs = [c for c in components(layout) if isinstance(c, dcc.Graph)]
    keys = {g.id for g in graphs}
    assert {"hist-duration", "hist-num_words", "hist-wer", "hist-cer", "hist-word_accuracy", "hist-snr"} <= keys
    problems_links = [c for c in components(layout) if isinstance(c, dcc.Link) and c.href == "/problems"]
    assert problems_links, "skipped lines link to the Problems page"


def test_problems_layout(dataset, tmp_path):
    from sde.web.pages import problems

    layout = problems.layout(dataset, "/problems", {})
    assert "not json at all" not in texts(layout)
    table = next(c for c in components(layout) if getattr(c, "id", None) == ids.PROBLEMS_TABLE)
    assert "5" in texts(table)
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a"}) + "\n")
    empty = problems.layout(build_dataset(clean), "/problems", {})
    assert any("all 1 lines loaded" in t for t in texts(empty))


def test_table_pages_render_their_url_state(dataset):
    from sde.web.pages import samples, vocabulary

    layout = samples.layout(dataset, "/samples", {"filter": "{wer} > 0", "sort": "-wer"})
    box = next(c for c in components(layout) if getattr(c, "id", None) == "samples-filter")
    assert box.value == "{wer} > 0" and not box.invalid
    grid = next(c for c in components(layout) if getattr(c, "id", None) == "samples-grid")
    assert grid.rowModelType == "infinite"
    wer = next(d for d in grid.columnDefs if d["field"] == "wer")
    assert wer["sort"] == "desc"
    assert all("cellRenderer" not in d for d in grid.columnDefs)     # text cells only
    bad = samples.layout(dataset, "/samples", {"filter": "{wer} >"})
    box = next(c for c in components(bad) if getattr(c, "id", None) == "samples-filter")
    assert box.invalid is True
    feedback = next(c for c in components(bad) if getattr(c, "id", None) == "samples-filter-feedback")
    assert "missing value" in feedback.children
    vocab = vocabulary.layout(dataset, "/vocabulary", {})
    vgrid = next(c for c in components(vocab) if getattr(c, "id", None) == "vocabulary-grid")
    assert [d["field"] for d in vgrid.columnDefs if not d["hide"]][:4] == ["word", "count", "accuracy", "accuracy_b"]


# ---------------------------------------------------------------- word diff

def test_diff_view_classes():
    from sde.metrics import align_words

    view = diff_view(align_words("a b c d", "a x c d e"))
    classes = [getattr(c, "className", None) for c in components(view)]
    assert "diff-eq" in classes and "diff-sub" in classes and "diff-ins" in classes
    sub = next(c for c in components(view) if getattr(c, "className", None) == "diff-sub")
    assert [type(x).__name__ for x in sub.children] == ["Del", "Ins"]
    deleted = diff_view([{"op": "del", "ref": XSS, "hyp": None}])
    assert XSS in texts(deleted)
    assert "empty" in texts(diff_view([]))[0]


# ---------------------------------------------------------------- figures

def test_histogram_counts_every_value_and_folds_outliers():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(5, 1, 10_000), [3600.0], [np.nan, np.inf]])
    h = figures.histogram([values], bins=40)
    assert int(h.counts[0].sum()) == 10_001              # NaN/inf dropped, the outlier kept
    assert h.overflow_at is not None and h.edges[-1] < 100
    assert h.counts[0][-1] >= 1


def test_histogram_integer_bins_and_shared_edges():
    h = figures.histogram([np.array([1, 2, 2, 3]), np.array([3, 3, 4])])
    assert h.integer and list(h.edges) == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert [list(c) for c in h.counts] == [[1, 2, 1, 0], [0, 0, 2, 1]]


def test_histogram_figure_sends_bins_not_points():
    values = np.random.default_rng(1).uniform(0, 30, 100_000)
    fig = figures.histogram_figure({"duration": values}, "Duration", "duration", unit="s", bins=40)
    assert isinstance(fig, go.Figure)
    (trace,) = fig.data
    assert len(trace.x) == 40 and sum(trace.y) == 100_000
    assert fig.layout.title.text == "Duration"
    assert fig.layout.xaxis.title.text == "duration (s)" and fig.layout.yaxis.title.text == "utterances"
    assert len(fig.to_json()) < 20_000
    multi = figures.histogram_figure({"a": values, "b": values / 2}, "WER", "WER (%)")
    assert len(multi.data) == 2 and multi.layout.showlegend
    empty = figures.histogram_figure({"x": np.array([np.nan])}, "Empty", "x")
    assert empty.layout.annotations[0].text == "no data"


def test_word_accuracy_buckets_and_figure():
    acc = np.array([0.0, 0.0, 50.0, 100.0, 100.0, 100.0, np.nan])
    assert figures.word_accuracy_buckets(acc) == {"never": 2, "sometimes": 1, "always": 3}
    fig = figures.word_accuracy_figure({"pred_text": acc, "b": acc})
    assert len(fig.data) == 2 and list(fig.data[0].y) == [2, 1, 3]
    assert fig.layout.title.text and fig.layout.yaxis.title.text == "words"


def test_statistics_figures_cover_every_numeric_field(dataset):
    from sde.web.pages.statistics import build_figures, other_numeric_columns

    assert other_numeric_columns(dataset) == ["snr"]
    keys = [k for k, _ in build_figures(dataset)]
    assert keys[:5] == ["duration", "num_words", "num_chars", "word_rate", "char_rate"]
    assert {"wer", "cer", "word_accuracy", "snr"} <= set(keys)
    for _, fig in build_figures(dataset):
        assert fig.layout.title.text
