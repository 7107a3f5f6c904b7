"""The error-analysis routes (/api/errors, /api/breakdown, /api/compare and their CSV twins),
over a real dataset built from a manifest; expected numbers worked out by hand."""

from __future__ import annotations

import flask
import pytest

from sde import analysis
from sde.dataset import DatasetOptions, build_dataset
from sde.web.api import register_api
from tests.browser_kit import get_csv, get_json

# pred_text:            utt 0 sub the→a; utt 1 sub world→word; utt 2 del morning; utt 3 correct
# pred_text_conformer:  utt 1 ins um; utt 3 sub end→and
# N = 6 + 2 + 2 + 2 = 12 → WER pred 3/12 = 25 %, conformer 2/12 = 16.67 %
ROWS = [
    {"audio_filepath": "a0.wav", "duration": 1.0, "text": "the cat sat on the mat",
     "pred_text": "the cat sat on a mat", "pred_text_conformer": "the cat sat on the mat", "speaker": "a"},
    {"audio_filepath": "a1.wav", "duration": 3.0, "text": "hello world",
     "pred_text": "hello word", "pred_text_conformer": "hello world um", "speaker": "b"},
    {"audio_filepath": "a2.wav", "duration": 12.0, "text": "good morning",
     "pred_text": "good", "pred_text_conformer": "good morning", "speaker": "a"},
    {"audio_filepath": "a3.wav", "duration": 25.0, "text": "the end",
     "pred_text": "the end", "pred_text_conformer": "the and", "speaker": "c"},
]


def make_client(dataset) -> flask.testing.FlaskClient:
    # Every route, as the app has them: the catch-all /api/<path> must not shadow these.
    server = flask.Flask("test")
    register_api(server, dataset)
    return server.test_client()


@pytest.fixture
def dataset(write_manifest):
    return build_dataset(write_manifest(ROWS), DatasetOptions(), workers=1)


@pytest.fixture
def client(dataset):
    return make_client(dataset)


# ---------------------------------------------------------------------------------- /api/errors

def test_errors_default_hypothesis(client):
    r = get_json(client, "/api/errors")
    assert r == {
        "substitutions": [{"ref": "the", "hyp": "a", "count": 1, "utterances": 1},
                          {"ref": "world", "hyp": "word", "count": 1, "utterances": 1}],
        "deletions": [{"word": "morning", "count": 1, "utterances": 1}],
        "insertions": [],
    }


@pytest.mark.parametrize("name", ["conformer", "pred_text_conformer"])
def test_errors_by_field_or_label(client, name):
    r = get_json(client, f"/api/errors?hyp={name}")
    assert r["substitutions"] == [{"ref": "end", "hyp": "and", "count": 1, "utterances": 1}]
    assert r["insertions"] == [{"word": "um", "count": 1, "utterances": 1}]
    assert r["deletions"] == []


def test_errors_filter_and_limit(client):
    r = get_json(client, '/api/errors?filter={speaker} = "a"')
    assert r["substitutions"] == [{"ref": "the", "hyp": "a", "count": 1, "utterances": 1}]
    assert r["deletions"] == [{"word": "morning", "count": 1, "utterances": 1}]
    r = get_json(client, "/api/errors?limit=1")
    assert r["substitutions"] == [{"ref": "the", "hyp": "a", "count": 1, "utterances": 1}]
    r = get_json(client, "/api/errors?filter={duration} > 100")
    assert r == {"substitutions": [], "deletions": [], "insertions": []}


def test_errors_shorter_tables_are_the_first_rows_of_the_pages_table(write_manifest, monkeypatch):
    """A table shorter than the Errors page's (200 rows, laid out in the warm-up) is cut from it,
    not counted again: /api/errors' default of 100 counted each error's utterances a second time
    (0.6-0.8 s at 10M). 260 distinct substitutions, most of them tied, so the cut must keep the
    order's tie-break (the words) as well as its counts."""
    rows = [{"audio_filepath": f"a{k}_{i}.wav", "duration": 1.0, "text": f"ref{k:03d} common",
             "pred_text": f"hyp{k:03d} common {'um' if k % 7 == 0 else ''}".strip()}
            for k in range(260) for i in range(k % 3 + 1)]
    client = make_client(build_dataset(write_manifest(rows), DatasetOptions(), workers=1))
    counted = []
    count_utterances = analysis.affected_utterances
    monkeypatch.setattr(analysis, "affected_utterances",
                        lambda *args, **kwargs: counted.append(args[1]) or count_utterances(*args, **kwargs))
    page = get_json(client, "/api/errors?limit=200")
    assert len(page["substitutions"]) == 200
    assert page["substitutions"][:2] == [{"ref": "ref002", "hyp": "hyp002", "count": 3, "utterances": 3},
                                         {"ref": "ref005", "hyp": "hyp005", "count": 3, "utterances": 3}]
    for n in (1, 37, 100, 199):
        assert get_json(client, f"/api/errors?limit={n}") == {kind: table[:n] for kind, table in page.items()}
    assert sorted(counted) == ["deletions", "insertions", "substitutions"]  # the page's table only
    longer = get_json(client, "/api/errors?limit=250")
    assert longer["substitutions"][:200] == page["substitutions"]
    assert len(longer["substitutions"]) == 250


def test_errors_bad_requests(client):
    e = get_json(client, "/api/errors?hyp=nope", 400)["error"]
    assert "nope" in e and "pred_text" in e and "pred_text_conformer" in e
    e = get_json(client, "/api/errors?filter={nope} > 3", 400)["error"]
    assert "nope" in e
    assert "limit" in get_json(client, "/api/errors?limit=abc", 400)["error"]
    assert "limit" in get_json(client, "/api/errors?limit=0", 400)["error"]


def test_errors_csv(client):
    assert get_csv(client, "/api/errors.csv") == [
        {"ref": "the", "hyp": "a", "count": "1"}, {"ref": "world", "hyp": "word", "count": "1"}]
    assert get_csv(client, "/api/errors.csv?kind=deletions") == [{"word": "morning", "count": "1"}]
    assert get_csv(client, "/api/errors.csv?kind=insertions&hyp=conformer") == [{"word": "um", "count": "1"}]
    assert len(get_csv(client, "/api/errors.csv?limit=1")) == 1
    r = client.get("/api/errors.csv?hyp=conformer&kind=insertions")
    assert 'filename="manifest-conformer-insertions.csv"' in r.headers["Content-Disposition"]
    e = get_json(client, "/api/errors.csv?kind=swaps", 400)["error"]
    assert "substitutions, deletions, insertions" in e


def test_errors_csv_escapes_formulas(write_manifest):
    rows = [{"audio_filepath": "x.wav", "duration": 1.0, "text": "=cmd ok", "pred_text": "ok"}]
    client = make_client(build_dataset(write_manifest(rows), DatasetOptions(), workers=1))
    assert get_csv(client, "/api/errors.csv?kind=deletions") == [{"word": "'=cmd", "count": "1"}]
    assert get_json(client, "/api/errors")["deletions"] == [{"word": "=cmd", "count": 1, "utterances": 1}]


# ------------------------------------------------------------------------------- /api/breakdown

def test_breakdown_by_speaker(client):
    rows = get_json(client, "/api/breakdown?by=speaker")["rows"]
    assert [r["value"] for r in rows] == ["a", "b", "c"]
    assert [r["utterances"] for r in rows] == [2, 1, 1]
    assert [r["words"] for r in rows] == [8, 2, 2]
    # a: E 1 + 1 over N 8 = 25 %; b: 1/2 = 50 %; c: 0 %
    assert [r["wer"] for r in rows] == [25.0, 50.0, 0.0]
    # a: char edits "the"→"a" 3 and " morning" deleted 8, over 22 + 12 characters
    assert rows[0]["cer"] == pytest.approx(100 * 11 / 34, abs=1e-6)
    assert set(rows[0]) == {"value", "utterances", "words", "wer", "cer", "ci"}
    # b is one utterance: every resample is that utterance, so its interval is the point itself
    assert rows[1]["ci"] == [50.0, 50.0]
    lo, hi = rows[0]["ci"]
    assert 0.0 <= lo <= 25.0 <= hi <= 100.0


def test_breakdown_other_hypothesis_filter_and_duration_bucket(client):
    rows = get_json(client, "/api/breakdown?by=speaker&hyp=conformer")["rows"]
    assert [r["wer"] for r in rows] == [0.0, 50.0, 50.0]
    rows = get_json(client, "/api/breakdown?by=speaker&filter={duration} < 5")["rows"]
    assert [(r["value"], r["utterances"]) for r in rows] == [("a", 1), ("b", 1)]
    rows = get_json(client, "/api/breakdown?by=duration_bucket")["rows"]
    # 1 s → 0-2 s (utt 0), 3 s → 2-5 s (utt 1), 12 s → 10-20 s (utt 2), 25 s → 20-30 s (utt 3)
    assert [r["value"] for r in rows] == ["0-2 s", "2-5 s", "10-20 s", "20-30 s"]
    assert [r["wer"] for r in rows] == pytest.approx([100 / 6, 50.0, 50.0, 0.0], abs=1e-6)
    rows = get_json(client, "/api/breakdown?by=speaker&sort=-wer")["rows"]
    assert [r["value"] for r in rows] == ["b", "a", "c"]


def test_breakdown_bad_requests(client):
    e = get_json(client, "/api/breakdown", 400)["error"]
    assert "by is required" in e and "speaker" in e and "duration_bucket" in e
    e = get_json(client, "/api/breakdown?by=nope", 400)["error"]
    assert "nope" in e and "speaker" in e
    assert "pred_text" in get_json(client, "/api/breakdown?by=speaker&hyp=x", 400)["error"]
    get_json(client, "/api/breakdown?by=speaker&filter={speaker} >", 400)


def test_breakdown_csv(client):
    rows = get_csv(client, "/api/breakdown.csv?by=speaker")
    assert [r["value"] for r in rows] == ["a", "b", "c"]
    assert list(rows[0]) == ["value", "utterances", "words", "wer", "cer"]
    assert float(rows[1]["wer"]) == 50.0
    r = client.get("/api/breakdown.csv?by=speaker&hyp=conformer")
    assert 'filename="manifest-conformer-by-speaker.csv"' in r.headers["Content-Disposition"]
    get_json(client, "/api/breakdown.csv?by=nope", 400)


# --------------------------------------------------------------------------------- /api/compare

def test_compare_defaults_to_the_first_two_hypotheses(client):
    r = get_json(client, "/api/compare?n_resamples=200")
    assert r["a"]["field"] == "pred_text" and r["b"]["field"] == "pred_text_conformer"
    assert r["a"]["wer"] == 25.0
    assert r["b"]["wer"] == pytest.approx(100 * 2 / 12, abs=1e-6)
    assert r["diff"]["wer"] == pytest.approx(100 * 2 / 12 - 25.0, abs=1e-5)  # B − A
    for k in ("a", "b", "diff"):
        lo, hi = r[k]["ci"]
        assert lo <= r[k]["wer"] <= hi
    assert 0 < r["diff"]["p"] <= 1
    assert r["utterances"] == 4 and r["n_resamples"] == 200 and r["seed"] == 0
    assert r == get_json(client, "/api/compare?a=pred_text&b=conformer&n_resamples=200")  # seeded


def test_compare_swapped_identical_and_filtered(client):
    r = get_json(client, "/api/compare?a=conformer&b=pred_text&n_resamples=100")
    assert r["diff"]["wer"] == pytest.approx(25.0 - 100 * 2 / 12, abs=1e-5)
    same = get_json(client, "/api/compare?a=pred_text&b=pred_text&n_resamples=100")
    assert same["diff"] == {"wer": 0.0, "ci": [0.0, 0.0], "p": 1.0}
    r = get_json(client, '/api/compare?filter={speaker} = "a"&n_resamples=100')
    assert r["utterances"] == 2
    assert r["a"]["wer"] == 25.0 and r["b"]["wer"] == 0.0
    empty = get_json(client, "/api/compare?filter={duration} > 100")
    assert empty["utterances"] == 0
    assert empty["a"]["wer"] is None and empty["diff"]["p"] is None


def test_compare_bad_requests(client, write_manifest):
    assert "pred_text_conformer" in get_json(client, "/api/compare?b=nope", 400)["error"]
    assert "n_resamples" in get_json(client, "/api/compare?n_resamples=0", 400)["error"]
    assert "seed" in get_json(client, "/api/compare?seed=x", 400)["error"]
    get_json(client, "/api/compare?filter=nonsense", 400)
    one = [{k: v for k, v in row.items() if k != "pred_text_conformer"} for row in ROWS]
    single = make_client(build_dataset(write_manifest(one, "one.json"), DatasetOptions(), workers=1))
    e = get_json(single, "/api/compare", 400)["error"]
    assert "b is required" in e and "two" in e
    assert get_json(single, "/api/compare?b=pred_text&n_resamples=50")["diff"]["p"] == 1.0


def test_compare_csv(client):
    rows = get_csv(client, "/api/compare.csv?n_resamples=100")
    assert [r["system"] for r in rows] == ["a", "b", "diff"]
    assert [r["field"] for r in rows] == ["pred_text", "pred_text_conformer", ""]
    assert list(rows[0]) == ["system", "field", "wer", "ci_lo", "ci_hi", "p"]
    assert float(rows[0]["wer"]) == 25.0 and rows[0]["p"] == "" and rows[2]["p"] != ""


# ------------------------------------------------------------------------------- no hypotheses

def test_manifest_without_hypotheses(write_manifest):
    rows = [{"audio_filepath": "x.wav", "duration": 1.0, "text": "hello"}]
    client = make_client(build_dataset(write_manifest(rows), DatasetOptions(), workers=1))
    for url in ("/api/errors", "/api/breakdown?by=duration_bucket", "/api/compare", "/api/errors.csv"):
        assert "no hypothesis" in get_json(client, url, 400)["error"]


# ------------------------------------------------------------------------- a replaced dataset

@pytest.mark.parametrize("url, key", [
    ("/api/compare?n_resamples=50", lambda r: r["b"]["wer"]),
    ("/api/breakdown?by=speaker&ci=0&hyp=conformer", lambda r: [row["wer"] for row in r["rows"]]),
], ids=["compare", "breakdown"])
def test_cached_results_follow_a_replaced_dataset(write_manifest, url, key):
    """A transcription or an audio measurement swaps the dataset in place (replace_with): the
    cached comparisons and breakdowns of the old tables must not be served for the new ones."""
    dataset = build_dataset(write_manifest(ROWS), DatasetOptions(), workers=1)
    client = make_client(dataset)
    before = key(get_json(client, url))
    perfect = [{**row, "pred_text_conformer": row["text"]} for row in ROWS]
    dataset.replace_with(build_dataset(write_manifest(perfect, "perfect.json"), DatasetOptions(), workers=1))
    after = key(get_json(client, url))
    assert after != before
    expected = key(get_json(make_client(build_dataset(write_manifest(perfect, "again.json"), DatasetOptions(),
                                                      workers=1)), url))
    assert after == pytest.approx(expected)
