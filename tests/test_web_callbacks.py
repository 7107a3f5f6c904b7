"""The pages without a browser: callbacks fired over HTTP as the browser fires them (POST
/_dash-update-component), routing, page layouts, escaping, figure builders. Over the hostile
manifest of conftest.py (rows 0-5; line 5 is bad)."""

from __future__ import annotations

import json

import numpy as np
import dash_bootstrap_components as dbc
import plotly.graph_objects as go
import pytest
from dash import dcc, html

from sde.dataset import build_dataset
from sde.histograms import histogram_of_arrays
from sde.web import figures, state
from sde.filters import parse
from sde.web.components import FILTER_EXAMPLES, diff_view, filter_box
from sde.web.pages import PAGE_MODULES, load_pages, resolve
from tests.browser_kit import by_id, dash_update, get_json, prop, text_of
from tests.conftest import IMG, XSS


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


# ---------------------------------------------------------------- callbacks, over HTTP

def test_the_filter_box_help_names_the_whole_language_and_its_examples_parse():
    box = filter_box("f", "f-apply", "f-feedback", "", None, "")
    help_text = text_of(box)
    for piece in ("&& || !", "parentheses", "is null", "{column}", "matches"):
        assert piece in help_text
    tip = by_id(box, "f-examples")
    assert [c for c in components(box) if type(c).__name__ == "Tooltip" and c.target == "f-examples"]
    assert prop(tip, "children") == "Examples"
    assert FILTER_EXAMPLES and all(parse(example) is not None for example in FILTER_EXAMPLES)
    shown = text_of([c for c in components(box) if type(c).__name__ == "Tooltip"])
    assert all(example in shown for example in FILTER_EXAMPLES)

@pytest.mark.parametrize("typed, applied, expected", [
    ("{wer} >", "", {"samples-filter.invalid": True}),
    (" {wer} > 10 ", "", {"samples-filter.invalid": False, "samples-filter-feedback.children": "",
                          "samples-applied.data": "{wer} > 10"}),
    ("{wer} > 10", "{wer} > 10", {"samples-filter.invalid": False, "samples-filter-feedback.children": ""}),
], ids=["invalid", "applied", "unchanged: no refetch"])
def test_filter_box(web_app, web_client, typed, applied, expected):
    out = dash_update(web_client, web_app, "samples-filter.invalid", {"samples-filter.value": typed},
                      {"samples-applied.data": applied})
    assert {k: out[k] for k in expected} == expected
    assert ("samples-applied.data" in out) == ("samples-applied.data" in expected)
    if expected["samples-filter.invalid"]:
        assert "missing value" in out["samples-filter-feedback.children"]


def test_get_rows_writes_state_url_and_csv(web_app, web_client):
    request = {"startRow": 0, "endRow": 100, "sortModel": [{"colId": "wer", "sort": "desc"}], "filterModel": {}}
    inputs = {"samples-grid.getRowsRequest": request}
    out = dash_update(web_client, web_app, "samples-grid.getRowsResponse", inputs,
                      {"samples-applied.data": "{wer} > 0", "url.search": ""})
    response = out["samples-grid.getRowsResponse"]
    assert response["rowCount"] == 5
    wers = [r["wer"] for r in response["rowData"]]
    assert wers == sorted(wers, reverse=True)
    assert text_of(out["samples-count.children"]) == "5 of 6 utterances match"
    csv = out["samples-csv.href"]
    assert csv.startswith("/api/utterances.csv?") and "sort=-wer" in csv and "filter=" in csv
    assert out["samples-state.data"]["effective"] == "{wer} > 0" and out["samples-state.data"]["sort"] == "-wer"
    search = out["url.search"]
    assert search == "?filter=%7Bwer%7D+%3E+0&sort=-wer"
    assert out["rendered.data"]["path"] == "/samples"
    assert out["rendered.data"]["params"] == {"filter": "{wer} > 0", "sort": "-wer"}
    # Same state as the URL already has: the URL is left alone (no history entry, no re-render).
    again = dash_update(web_client, web_app, "samples-grid.getRowsResponse", inputs,
                        {"samples-applied.data": "{wer} > 0", "url.search": search})
    assert "url.search" not in again and "rendered.data" not in again


@pytest.mark.parametrize("prefix, colfilter", [
    ("samples", {"speaker": {"filterType": "text", "type": "contains", "filter": "en-"}}),
    ("vocabulary", {"count": {"filterType": "number", "type": "greaterThanOrEqual", "filter": 2}}),
])
def test_the_json_link_follows_the_view(web_app, web_client, prefix, colfilter):
    # The page's JSON twin kept the filter the page was opened with: after typing a filter (or a
    # column filter), "JSON" still gave every row while the CSV link and the count followed.
    box = "{wer} > 0" if prefix == "samples" else "{accuracy} < 100"
    request = {"startRow": 0, "endRow": 100, "sortModel": [{"colId": "count" if prefix == "vocabulary" else "wer",
                                                            "sort": "desc"}], "filterModel": colfilter}
    out = dash_update(web_client, web_app, f"{prefix}-grid.getRowsResponse", {f"{prefix}-grid.getRowsRequest": request},
                      {f"{prefix}-applied.data": box, "url.search": ""})
    href = out[f"{prefix}-json.href"]
    assert href.startswith(f"/api/{prefix.replace('samples', 'utterances')}?") and "sort=-" in href
    body = get_json(web_client, href)
    assert body["total"] == out[f"{prefix}-grid.getRowsResponse"]["rowCount"]
    assert 0 < body["total"] < len(get_json(web_client, href.split("?")[0] + "?page_size=1000")["rows"])
    csv = out[f"{prefix}-csv.href"]
    assert csv.split("?")[1] == href.split("?")[1]  # the same view as the CSV


def test_columns_added_while_serving_leave_the_samples_url_alone(write_manifest):
    # A filter naming {dup_text_group} (Duplicates' "all of them in Samples") adds the duplicate
    # columns to the table. The grid's callbacks kept the spec of start-up, took the layout's new
    # default columns for a choice and wrote them all into the URL as cols=…: a history entry at
    # every visit of Samples, so the back button came back to Samples instead of leaving it.
    from sde.web.app import AppConfig, create_app
    from sde.web.pages import samples

    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": "same words here" if i < 2 else f"other {i}",
             "pred_text": "same word here", "speaker": "s"} for i in range(4)]
    dataset = build_dataset(write_manifest(rows))
    app = create_app(dataset, AppConfig(title="dup", audio_routes=False))
    client = app.server.test_client()
    assert get_json(client, "/api/utterances?filter=%7Bdup_text_group%7D+is+not+null")["total"] == 2
    assert "dup_text_group" in dataset.utterances.columns
    layout = samples.layout(dataset, "/samples", {})
    visible = prop(by_id(layout, "samples-columns"), "value")
    assert "dup_text_group" in visible                       # the layout's default columns now
    request = {"startRow": 0, "endRow": 100, "sortModel": [], "filterModel": {}}
    out = dash_update(client, app, "samples-grid.getRowsResponse", {"samples-grid.getRowsRequest": request},
                      {"samples-applied.data": "", "url.search": "", "samples-columns.value": visible})
    assert out["samples-grid.getRowsResponse"]["rowCount"] == 4
    assert "url.search" not in out                           # the default columns are not a choice


@pytest.mark.parametrize("clicked, expected", [
    ({"rowIndex": 0, "colId": "text"}, "/utterance/"),
    (None, None),
    ({"rowIndex": 99}, None),
    ({"rowIndex": "0"}, None),
], ids=["first row", "no click", "past the end", "not a number"])
def test_row_click_opens_the_inspector_on_the_filtered_list(web_app, web_client, clicked, expected):
    table_state = {"filter": "{wer} > 0", "effective": "{wer} > 0", "sort": "-wer", "colfilter": ""}
    out = dash_update(web_client, web_app, "url.href", {"samples-grid.cellClicked": clicked},
                      {"samples-state.data": table_state})
    if expected is None:
        assert out == {}
        return
    href = out["url.href"]
    assert href.startswith(expected) and "filter=%7Bwer%7D+%3E+0" in href and "sort=-wer" in href


def test_vocabulary_row_click_lists_utterances_with_the_word(web_app, web_client, web_dataset):
    out = dash_update(web_client, web_app, "url.href", {"vocabulary-grid.cellClicked": {"rowIndex": 0}},
                      {"vocabulary-state.data": {"effective": "", "sort": "-count"}})
    assert out["url.href"] == state.word_href("the") == "/samples?filter=%7Btext%7D+has+%22the%22"


def test_column_picker_keeps_the_spec_order(web_app, web_client):
    out = dash_update(web_client, web_app, "samples-grid.columnDefs", {"samples-columns.value": ["wer", "id", "text"]})
    defs = out["samples-grid.columnDefs"]
    assert [d["field"] for d in defs if not d["hide"]] == ["id", "text", "wer"]
    assert all("sort" not in d for d in defs)        # the grid keeps its own sort


@pytest.mark.parametrize("path, search, title", [
    ("/samples", "?filter=%7Bwer%7D+%3E+0", "Samples"),
    ("/", "", "Statistics"),
    ("/utterance/1", "?sort=-wer", "Utterance 1"),   # the window's title names the utterance shown
    ("/nowhere", "", "Not found"),
])
def test_router(web_app, web_client, path, search, title):
    inputs = {"url.pathname": path, "url.search": search}
    out = dash_update(web_client, web_app, "page-content.children", inputs, {"rendered.data": None})
    key = out["rendered.data"]
    assert key["title"] == title and key["path"] == path
    if title == "Not found":
        assert prop(out["page-content.children"], "id") == "not-found"
        return
    # The page already shown is not rendered again.
    assert dash_update(web_client, web_app, "page-content.children", inputs, {"rendered.data": key}) == {}


def test_samples_params_in_the_router_key(web_app, web_client):
    out = dash_update(web_client, web_app, "page-content.children",
                      {"url.pathname": "/samples", "url.search": "?filter=%7Bwer%7D+%3E+0"}, {"rendered.data": None})
    assert out["rendered.data"] == {"path": "/samples", "params": {"filter": "{wer} > 0"}, "title": "Samples"}


def test_signal_callback_names_the_file_when_audio_is_missing(web_app, web_client):
    out = dash_update(web_client, web_app, "utt-signal.figure", {"utt-signal-kind.value": "linear"}, {"utt-id.data": 0})
    assert out["utt-signal.style"] == {"display": "none"} and out["utt-audio.style"] == {"display": "none"}
    assert "a0.wav" in text_of(out["utt-signal-message.children"])


# ---------------------------------------------------------------- error links on the samples page

@pytest.mark.parametrize("params, fragment", [
    ({"error": "sub:cat:bat", "hyp": "pred_text_b"}, '{error_b} = "sub cat bat"'),
    ({"error": "del:again", "filter": "{duration} > 1"}, '{error} = "del again" && {duration} > 1'),
], ids=["substitution", "with a filter"])
def test_error_links_fold_into_the_samples_filter(web_dataset, params, fragment):
    from sde.web.pages import samples

    layout = samples.layout(web_dataset, "/samples", params)
    assert by_id(layout, "samples-filter").value == fragment
    assert not [c for c in components(layout) if getattr(c, "id", None) == "samples-hint"]


@pytest.mark.parametrize("params, words", [
    ({"error": "sub:only-one"}, "invalid error"),
    ({"error": "sub:a:b", "hyp": "nope"}, "unknown hypothesis"),
], ids=["mangled", "unknown hypothesis"])
def test_a_bad_error_link_shows_everything_and_says_why(web_dataset, params, words):
    from sde.web.pages import samples

    layout = samples.layout(web_dataset, "/samples", params)
    assert by_id(layout, "samples-filter").value == ""
    hint = by_id(layout, "samples-hint")
    assert words in text_of(hint)


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


def test_utterance_layout_escapes_and_walks_the_filtered_list(web_dataset):
    from sde.web.pages import utterance

    layout = utterance.layout(web_dataset, "/utterance/2", {"filter": '{speaker} = "en-gb"', "sort": "-duration"})
    strings = texts(layout)
    assert XSS in strings and IMG in strings           # shown as text children (Dash escapes them)
    for c in components(layout):
        assert not getattr(c, "dangerously_allow_html", False)
        assert type(c).__name__ not in ("Iframe", "Script")
    prev = next(c for c in components(layout) if getattr(c, "id", None) == state.UTT_PREV)
    nxt = next(c for c in components(layout) if getattr(c, "id", None) == state.UTT_NEXT)
    # en-gb rows by duration desc: 5 (2.5 s), 0 (2.0 s), 2 (1.5 s): 2 is last, 0 before it.
    assert prev.href.startswith("/utterance/0?") and "filter=" in prev.href
    assert isinstance(nxt, html.Span) and "disabled" in nxt.className
    # a2.wav does not exist: the player does not ask for it (no 404 in the console), the page says why
    audio = next(c for c in components(layout) if isinstance(c, html.Audio))
    assert audio.src is None
    message = next(c for c in components(layout) if getattr(c, "id", None) == state.UTT_SIGNAL_MESSAGE)
    assert "a2.wav" in " ".join(texts(message))


def test_audio_that_cannot_play_offers_no_download_or_play_hint(tmp_path, write_manifest, web_app, web_client):
    import soundfile as sf

    from sde.web.pages import utterance

    sf.write(tmp_path / "tone.wav", (0.1 * np.sin(np.arange(16000) * 0.2)).astype("float32"), 16000)
    rows = [{"audio_filepath": str(tmp_path / "tone.wav"), "duration": 0.5, "text": "plays"},
            {"audio_filepath": str(tmp_path / "gone.wav"), "duration": 0.5, "text": "no file"},
            {"audio_filepath": str(tmp_path / "tone.wav"), "offset": 5.0, "duration": 0.5, "text": "past the end"}]
    dataset = build_dataset(write_manifest(rows))
    hidden = {"display": "none"}

    def shown(uid: int) -> dict:
        page = utterance.layout(dataset, f"/utterance/{uid}", {})
        return {name: prop(by_id(page, cid), "style") for name, cid in
                (("player", state.UTT_AUDIO), ("wav", state.UTT_WAV), ("hint", state.UTT_PLAY_HINT))}

    assert shown(0) == {"player": {}, "wav": {}, "hint": {}}
    for uid in (1, 2):   # the page says why at once: a link to a WAV that cannot be made, a hint to click, are noise
        assert shown(uid) == {"player": hidden, "wav": hidden, "hint": hidden}, uid
        # ... and the signal callback, which hides the player when the audio cannot be read, hides them too
        signal = utterance.signal_view(dataset, uid, "linear")
        assert signal["message"] is not None
        assert {k: signal[k] for k in ("player", "wav", "hint")} == {"player": hidden, "wav": hidden, "hint": hidden}
    signal = utterance.signal_view(dataset, 0, "linear")
    assert signal["message"] is None and {k: signal[k] for k in ("player", "wav", "hint")} == \
        {"player": {}, "wav": {}, "hint": {}}
    # as the browser fires it (a2.wav of the hostile manifest does not exist)
    out = dash_update(web_client, web_app, "utt-signal.figure", {"utt-signal-kind.value": "linear"},
                      {"utt-id.data": 2})
    assert out["utt-wav.style"] == out["utt-play-hint.style"] == out["utt-audio.style"] == hidden


def test_every_navbar_item_id_is_a_css_selector_as_it_is(web_app):
    import re

    from sde.web.components import navbar
    from sde.web.app import _nav_links

    # what a test or a script writes, `#id`, selects the item only when the id is a CSS identifier
    identifier = re.compile(r"-?[_a-zA-Z][_a-zA-Z0-9-]*")
    served = [c.id for c in components(web_app.layout()) if isinstance(c, dbc.NavItem)]
    every_page = [c.id for c in components(navbar(_nav_links(load_pages(None)), "t")) if isinstance(c, dbc.NavItem)]
    assert served and set(served) <= set(every_page)
    assert [i for i in every_page if not identifier.fullmatch(i)] == []
    assert len(set(every_page)) == len(every_page)
    assert {"nav-samples", "nav-statistics", "nav-problems", "nav-tts-readiness"} <= set(every_page)


def test_utterance_neighbours(web_dataset):
    from sde.web.pages.utterance import neighbours

    assert neighbours(web_dataset, 1, {}) == {"index": 1, "total": 6, "prev": 0, "next": 2, "warning": None,
                                          "outside": False}
    n = neighbours(web_dataset, 1, {"filter": '{speaker} = "en-gb"'})
    assert n["index"] is None and n["outside"]
    bad = neighbours(web_dataset, 1, {"filter": "{wer} >"})
    assert bad["warning"] and bad["index"] == 1


def test_unknown_utterance_page(web_dataset):
    from sde.web.pages import utterance

    assert utterance.layout(web_dataset, "/utterance/99", {}).id == "utt-not-found"
    assert utterance.layout(web_dataset, "/utterance/abc", {}).id == "utt-not-found"


def test_statistics_layout_shows_the_summary(web_dataset):
    from sde.web.pages import statistics

    layout = statistics.layout(web_dataset, "/", {})
    strings = texts(layout)
    s = web_dataset.summary()
    assert f"{s['hours']:.2f}" in strings
    assert f"{s['hypotheses']['pred_text']['wer']:.2f}%" in strings
    graphs = [c for c in components(layout) if isinstance(c, dcc.Graph)]
    keys = {g.id["key"] for g in graphs if isinstance(g.id, dict)}
    assert {"duration", "num_words", "wer", "cer", "word_accuracy", "snr"} <= keys
    problems_links = [c for c in components(layout) if isinstance(c, dcc.Link) and c.href == "/problems"]
    assert problems_links, "skipped lines link to the Problems page"


def test_problems_layout(web_dataset, tmp_path):
    from sde.web.pages import problems

    layout = problems.layout(web_dataset, "/problems", {})
    assert "{not json" not in texts(layout)
    table = next(c for c in components(layout) if getattr(c, "id", None) == state.PROBLEMS_TABLE)
    assert "5" in texts(table)
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a"}) + "\n")
    empty = problems.layout(build_dataset(clean), "/problems", {})
    assert any("all 1 lines loaded" in t for t in texts(empty))


def test_table_pages_render_their_url_state(web_dataset):
    from sde.web.pages import samples, vocabulary

    layout = samples.layout(web_dataset, "/samples", {"filter": "{wer} > 0", "sort": "-wer"})
    box = next(c for c in components(layout) if getattr(c, "id", None) == "samples-filter")
    assert box.value == "{wer} > 0" and not box.invalid
    grid = next(c for c in components(layout) if getattr(c, "id", None) == "samples-grid")
    assert grid.rowModelType == "infinite"
    wer = next(d for d in grid.columnDefs if d["field"] == "wer")
    assert wer["sort"] == "desc"
    assert all("cellRenderer" not in d for d in grid.columnDefs)     # text cells only
    bad = samples.layout(web_dataset, "/samples", {"filter": "{wer} >"})
    box = next(c for c in components(bad) if getattr(c, "id", None) == "samples-filter")
    assert box.invalid is True
    feedback = next(c for c in components(bad) if getattr(c, "id", None) == "samples-filter-feedback")
    assert "missing value" in feedback.children
    vocab = vocabulary.layout(web_dataset, "/vocabulary", {})
    vgrid = next(c for c in components(vocab) if getattr(c, "id", None) == "vocabulary-grid")
    assert [d["field"] for d in vgrid.columnDefs if not d["hide"]][:4] == ["word", "count", "accuracy", "accuracy_b"]


# ---------------------------------------------------------------- word diff

def test_diff_view_classes():
    from sde.metrics import align_words

    view = diff_view(align_words("a b c d", "a x c d e"))
    classes = [getattr(c, "className", None) for c in components(view)]
    assert "diff-eq" in classes and "diff-sub" in classes and "diff-ins" in classes
    sub = next(c for c in components(view) if getattr(c, "className", None) == "diff-sub")
    assert [type(x).__name__ for x in sub.children] == ["Del", "str", "Ins"]  # a space between the words
    deleted = diff_view([{"op": "del", "ref": XSS, "hyp": None}])
    assert XSS in texts(deleted)
    assert "empty" in texts(diff_view([]))[0]


# ---------------------------------------------------------------- figures

def test_histogram_counts_every_value_and_folds_outliers():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(5, 1, 10_000), [3600.0], [np.nan, np.inf]])
    h = histogram_of_arrays([values], bins=40)
    assert int(h.counts[0].sum()) == 10_001              # NaN/inf dropped, the outlier kept
    assert h.overflow_at is not None and h.edges[-1] < 100
    assert h.counts[0][-1] >= 1


def test_histogram_integer_bins_and_shared_edges():
    h = histogram_of_arrays([np.array([1, 2, 2, 3]), np.array([3, 3, 4])])
    assert h.integer and list(h.edges) == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert [list(c) for c in h.counts] == [[1, 2, 1, 0], [0, 0, 2, 1]]


def test_histogram_figure_sends_bins_not_points():
    values = np.random.default_rng(1).uniform(0, 30, 100_000)
    fig = figures.histogram_figure(histogram_of_arrays([values], bins=40), ["duration"], "Duration", "duration",
                                   unit="s")
    assert isinstance(fig, go.Figure)
    (trace,) = fig.data
    assert 20 <= len(trace.x) <= 40 and sum(trace.y) == 100_000   # round bin widths: at most `bins` bars
    assert fig.layout.title.text == "Duration"
    assert fig.layout.xaxis.title.text == "duration (s)" and fig.layout.yaxis.title.text == "utterances"
    assert len(fig.to_json()) < 20_000
    multi = figures.histogram_figure(histogram_of_arrays([values, values / 2]), ["a", "b"], "WER", "WER (%)")
    assert len(multi.data) == 2 and multi.layout.showlegend
    empty = figures.histogram_figure(histogram_of_arrays([np.array([np.nan])]), ["x"], "Empty", "x")
    assert empty.layout.annotations[0].text == "no data"


def test_word_accuracy_buckets_and_figure():
    acc = np.array([0.0, 0.0, 50.0, 100.0, 100.0, 100.0, np.nan])
    assert figures.word_accuracy_buckets(acc) == {"never": 2, "sometimes": 1, "always": 3}
    fig = figures.word_accuracy_figure({"pred_text": acc, "b": acc})
    assert len(fig.data) == 2 and list(fig.data[0].y) == [2, 1, 3]
    assert fig.layout.title.text and fig.layout.yaxis.title.text == "words"


def test_statistics_figures_cover_every_numeric_field(web_dataset):
    from sde.web.pages.statistics import build_figures, other_numeric_columns

    assert other_numeric_columns(web_dataset) == ["snr"]
    keys = [k for k, _ in build_figures(web_dataset)]
    assert keys[:5] == ["duration", "num_words", "num_chars", "word_rate", "char_rate"]
    assert {"wer", "cer", "word_accuracy", "snr"} <= set(keys)
    for _, fig in build_figures(web_dataset):
        assert fig.layout.title.text


def test_statistics_reads_no_reference_for_digits_when_the_alphabet_has_none(web_dataset, monkeypatch):
    import dataclasses

    from sde.web.pages import statistics

    no_digits = dataclasses.replace(web_dataset, alphabet=[c for c in web_dataset.alphabet if not c.isdigit()])
    read = []
    monkeypatch.setattr(statistics, "count_with_digits", lambda texts: read.append(1) or 99)
    assert statistics.alphabet_check_summary(no_digits) is None and not read
    assert statistics.alphabet_check_summary(web_dataset)["digits"] == 99 and read


def test_statistics_counts_the_references_with_digits(web_dataset):
    from sde.analysis import has_digits
    from sde.web.pages import statistics

    want = int(has_digits(web_dataset.utterances["text"]).sum())
    assert want >= 1  # "=1+2 is a formula"
    alert = by_id(statistics.layout(web_dataset, "/statistics", {}), "alphabet-digits")
    assert text_of(alert).startswith(f"{want} reference contains digits" if want == 1 else
                                     f"{want} references contain digits")


def test_the_statistics_page_draws_the_other_fields_when_one_cannot_be_binned(tmp_path):
    # a field of 64-bit ids (1e16) took the whole Statistics page down ("This page failed to render")
    import json

    from sde.dataset import build_dataset
    from sde.web.pages.statistics import build_figures

    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1 + i, "text": "a b", "id64": 1e16, "ts": 1.7e18 + i,
             "huge": 1.7976931348623157e308, "snr": 5 + i} for i in range(4)]
    (tmp_path / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    figures_by_key = dict(build_figures(build_dataset(tmp_path / "m.json")))
    for key in ("duration", "id64", "ts", "snr"):
        assert figures_by_key[key].data and sum(figures_by_key[key].data[0].y) == 4, key
    assert not figures_by_key["huge"].data
    assert "no histogram: the values" in figures_by_key["huge"].layout.annotations[0].text


def test_the_statistics_page_draws_the_fields_with_the_most_values_and_names_the_others(tmp_path):
    # a thousand sparse per-line keys drew a thousand histograms: 25 s to lay out, a minute to render
    import json

    from sde.dataset import build_dataset
    from sde.web.pages.statistics import FIELDS_NOT_DRAWN, MAX_FIELD_HISTOGRAMS, build_figures, histograms_block

    fields = MAX_FIELD_HISTOGRAMS + 16
    rows = []
    for i in range(400):
        row = {"audio_filepath": f"a{i}.wav", "duration": 1 + i % 5, "text": "a b"}
        row.update({f"k{f}": i for f in range(fields) if i % (f + 1) == 0})  # k0 on every line, k39 on 1 in 40
        rows.append(row)
    (tmp_path / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = build_dataset(tmp_path / "m.json")
    drawn = [key for key, _ in build_figures(dataset) if key.startswith("k")]
    assert drawn == [f"k{f}" for f in range(MAX_FIELD_HISTOGRAMS)]
    block = json.dumps(histograms_block(dataset, log=False).to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert f'"id": "{FIELDS_NOT_DRAWN}"' in block and "16 more numeric fields have no histogram here" in block
    for f in range(MAX_FIELD_HISTOGRAMS, fields):
        assert f'/samples?sort=-k{f}"' in block, f
