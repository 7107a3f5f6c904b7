"""Loose ends a user meets, over HTTP without a browser: an utterance past the end is a 404 on its
page and its JSON twin alike (naming the id and how many utterances there are), and the
Comparison word table's JSON/CSV twin counts what the table shows: the utterances a word's link
lists beside its occurrences."""

from __future__ import annotations

import pytest

from tests.browser_kit import by_id, get_csv, get_json, text_of

N = 6  # WEB_ROWS: seven lines, one of them bad


@pytest.mark.parametrize("raw", ["6", "99999", "-1", "1.5", "abc", "+5", " 5", "5_0", str(10**30), "٥"])
def test_a_missing_utterance_is_404_on_its_page_and_its_json_twin(web_client, raw):
    from urllib.parse import quote

    page = web_client.get("/utterance/" + quote(raw))
    assert page.status_code == 404, (raw, page.status_code)
    body = get_json(web_client, "/api/utterances/" + quote(raw), status=404)
    assert f"{N} utterances" in body["error"] and body["utterances"] == N, body
    shown = raw if raw.lstrip("-").isdigit() and raw.isascii() else repr(raw)
    assert shown[:40] in body["error"], body


@pytest.mark.parametrize("raw", ["0", "5", "005"])
def test_an_utterance_the_dataset_has_answers_200(web_client, raw):
    assert web_client.get("/utterance/" + raw).status_code == 200
    assert get_json(web_client, "/api/utterances/" + raw)["id"] == int(raw)


@pytest.mark.parametrize("raw,says", [
    ("99999", "no utterance with id 99999: there are 6 utterances, with ids 0 to 5"),
    ("-1", "no utterance with id -1: there are 6 utterances"),
    ("+5", "no utterance with id '+5': ids are whole numbers; there are 6 utterances"),
    (str(10**30), "no utterance with id 1000000000000000000000000000000: there are 6"),
])
def test_the_inspector_of_a_missing_utterance_names_it_and_the_count(web_dataset, raw, says):
    from sde.web.pages import utterance

    view = utterance.layout(web_dataset, "/utterance/" + raw, {})
    assert says.lower() in text_of(by_id(view, "utt-not-found-message")).lower()
    assert by_id(view, "utt-not-found-back").href == "/samples"


@pytest.mark.parametrize("params,label,back", [
    ({"filter": "{duration} > 1", "sort": "-wer"}, "Back to the samples",
     {"path": "/samples", "filter": ["{duration} > 1"], "sort": ["-wer"]}),
    ({"from": "comparison", "a": "pred_text", "b": "pred_text_b", "metric": "cer", "filter": "{wer} > 0"},
     "Back to comparison",
     {"path": "/comparison", "a": ["pred_text"], "b": ["pred_text_b"], "metric": ["cer"], "filter": ["{wer} > 0"]}),
], ids=["a filtered list", "a walk from Comparison"])
def test_the_inspector_of_a_missing_utterance_goes_back_to_the_list_its_url_names(web_dataset, params, label, back):
    """A bookmarked walk of a filtered list whose utterance is gone (a rebuilt dataset) went back to
    every utterance, its filter lost (QA)."""
    from urllib.parse import parse_qs, urlparse

    from sde.web.pages import utterance

    link = by_id(utterance.layout(web_dataset, "/utterance/99999", params), "utt-not-found-back")
    got = urlparse(link.href)
    assert {"path": got.path, **parse_qs(got.query)} == back
    assert text_of(link) == label


WORD_KEYS = ["word", "utterances", "occurrences", "acc_a", "acc_b", "diff", "net"]


@pytest.mark.parametrize("query", ["", "&filter={duration} > 1"])
def test_the_word_table_counts_the_utterances_its_links_list(web_app, web_client, web_dataset, query):
    from urllib.parse import parse_qs, quote, urlparse

    from sde.web.pages import comparison

    body = get_json(web_client, "/api/compare/words?a=pred_text&b=pred_text_b" + query)
    assert body["a"] == "pred_text" and body["b"] == "pred_text_b" and body["rows"]
    a, b = web_dataset.hypotheses[:2]
    filter_text = query.partition("filter=")[2]
    page_rows = comparison.word_rows(web_dataset, a, b, filter_text)
    assert [{k: r[k] for k in WORD_KEYS[:3]} for r in page_rows] == [{k: r[k] for k in WORD_KEYS[:3]}
                                                                     for r in body["rows"]]
    for row in page_rows:
        listed = parse_qs(urlparse(row["href"]).query)["filter"][0]
        total = get_json(web_client, "/api/utterances?page_size=1&filter=" + quote(listed))["total"]
        assert total == row["utterances"], (row, listed)
        assert row["occurrences"] >= row["utterances"]
    csv_rows = get_csv(web_client, "/api/compare/words.csv?a=pred_text&b=pred_text_b" + query)
    assert list(csv_rows[0]) == WORD_KEYS
    # (a word a spreadsheet would run as a formula, "=1+2", is quoted in the CSV)
    assert [(r["word"], int(r["utterances"]), int(r["occurrences"])) for r in csv_rows] == \
        [(("'" if r["word"][:1] in "=+-@" else "") + r["word"], r["utterances"], r["occurrences"]) for r in body["rows"]]


def test_a_word_in_an_utterance_twice_counts_one_utterance_two_occurrences(web_client):
    # "the dog sat on the mat": "the" twice in one utterance, once in "the cat sat"
    rows = {r["word"]: r for r in get_json(web_client, "/api/compare/words?a=pred_text&b=pred_text_b&limit=1000")["rows"]}
    assert (rows["the"]["utterances"], rows["the"]["occurrences"]) == (2, 3)


def test_a_word_link_lists_only_the_lines_both_hypotheses_score(write_manifest):
    """A line without B's hypothesis is not in the word table's numbers: nor in its link's list."""
    from urllib.parse import parse_qs, quote, urlparse

    from sde.dataset import build_dataset
    from sde.web.app import AppConfig, create_app
    from sde.web.pages import comparison

    path = write_manifest([
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "the cat", "pred_text": "the cat", "pred_text_b": "a cat"},
        {"audio_filepath": "b.wav", "duration": 1.0, "text": "the dog", "pred_text": "the dog", "pred_text_b": "the dog"},
        {"audio_filepath": "c.wav", "duration": 1.0, "text": "the end", "pred_text": "the end"},  # no B
    ])
    dataset = build_dataset(path)
    client = create_app(dataset, AppConfig(audio_routes=False)).server.test_client()
    rows = {r["word"]: r for r in comparison.word_rows(dataset, *dataset.hypotheses[:2], "")}
    assert rows["the"]["utterances"] == 2
    listed = parse_qs(urlparse(rows["the"]["href"]).query)["filter"][0]
    assert get_json(client, "/api/utterances?filter=" + quote(listed))["total"] == 2
