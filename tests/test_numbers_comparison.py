"""The Comparison numbers checked against an independent count with jiwer, on real manifests:
the word-level table is paired (only lines both hypotheses score), and a comparison the bootstrap
cannot measure (one utterance) claims no significance."""

from __future__ import annotations

import collections
import math

import flask
import jiwer
import numpy as np
import pytest

from sde import analysis
from sde.dataset import DatasetOptions, build_dataset
from sde.web.api import register_api
from sde.web.pages import comparison_stats
from tests.browser_kit import by_id, get_json, text_of

# pred_text_b is missing on line 1, where pred_text gets "x" wrong: over the lines both score,
# A recognises every "x" and B misses one.
PARTLY_MISSING = [
    {"audio_filepath": "a0.wav", "duration": 1.0, "text": "x y", "pred_text": "q y"},
    {"audio_filepath": "a1.wav", "duration": 1.0, "text": "x y", "pred_text": "x y", "pred_text_b": "x y"},
    {"audio_filepath": "a2.wav", "duration": 1.0, "text": "x y z", "pred_text": "x z", "pred_text_b": "x y z"},
    {"audio_filepath": "a3.wav", "duration": 1.0, "text": "z x", "pred_text": "z x", "pred_text_b": "z w"},
]


def _paired_word_accuracy(rows: list[dict], a: str, b: str) -> dict[str, tuple[int, float, float]]:
    """word → (occurrences, accuracy of a, accuracy of b) over the lines with both, with jiwer."""
    count: collections.Counter[str] = collections.Counter()
    hits = {a: collections.Counter(), b: collections.Counter()}
    for row in rows:
        if a not in row or b not in row:
            continue
        ref = row["text"].split()
        count.update(ref)
        for field in (a, b):
            out = jiwer.process_words(" ".join(ref), row[field])
            for chunk in out.alignments[0]:
                if chunk.type == "equal":
                    hits[field].update(ref[chunk.ref_start_idx:chunk.ref_end_idx])
    return {w: (n, 100.0 * hits[a][w] / n, 100.0 * hits[b][w] / n) for w, n in count.items()}


def test_word_comparison_counts_only_lines_both_hypotheses_score(write_manifest):
    dataset = build_dataset(write_manifest(PARTLY_MISSING), DatasetOptions(), workers=1)
    a, b = dataset.hypotheses
    expected = _paired_word_accuracy(PARTLY_MISSING, "pred_text", "pred_text_b")
    for utt_ids in (None, np.arange(len(PARTLY_MISSING))):  # no filter, and a filter keeping every line
        got = analysis.word_comparison(dataset.utterances, dataset.vocabulary, dataset.errors, a, b, utt_ids)
        assert set(got["word"]) == set(expected)
        for row in got.itertuples():
            n, acc_a, acc_b = expected[row.word]
            assert row.count == n
            assert row.acc_a == pytest.approx(acc_a) and row.acc_b == pytest.approx(acc_b)
            assert row.diff == pytest.approx(acc_b - acc_a)
            assert row.net == round(n * (acc_b - acc_a) / 100)
    # "x": A recognises all 3 on the lines both score (its miss is on the line B lacks; counted, A
    # got 75 %), B 2 of 3
    x = got.set_index("word").loc["x"]
    assert (x["count"], x["acc_a"], x["net"]) == (3, 100.0, -1)


# ------------------------------------------------------------------ significance of tiny selections

ONE_LINE = [{"audio_filepath": "a0.wav", "duration": 1.0, "text": "the cat sat on the mat",
             "pred_text": "the cat sat on a mat", "pred_text_b": "the cat sat on the mat"}]


def _client(dataset) -> flask.testing.FlaskClient:
    server = flask.Flask("test")
    register_api(server, dataset)
    return server.test_client()


def test_one_utterance_has_no_p_value_and_no_significance(write_manifest):
    dataset = build_dataset(write_manifest(ONE_LINE), DatasetOptions(), workers=1)
    payload = get_json(_client(dataset), "/api/compare?a=pred_text&b=pred_text_b")
    # the numbers themselves are right: 1 error in 6 words against none
    assert payload["a"]["wer"] == pytest.approx(100 / 6, abs=1e-6)
    assert payload["b"]["wer"] == 0.0
    assert payload["diff"]["wer"] == pytest.approx(-100 / 6, abs=1e-6)
    # every resample is that one utterance: no variation measured, so no p-value (was 2/(B+1))
    assert payload["diff"]["p"] is None
    sentence, tone = comparison_stats.interpretation(payload, "a", "b")
    assert tone == "secondary" and sentence.startswith("Cannot tell whether A (a) or B (b) is better")
    assert "is better by" not in sentence
    # the page's cards say the same, of "1 utterance"
    a, b = dataset.hypotheses
    section = comparison_stats.section(payload, a, b)
    assert text_of(by_id(section, comparison_stats.INTERPRETATION)) == \
        comparison_stats.interpretation(payload, a.name, b.name)[0]
    assert text_of(by_id(section, comparison_stats.DIFF_P)) == "p = –"
    assert "1 utterance · 1,000 bootstrap resamples" in text_of(section)


def test_copies_of_one_utterance_give_no_p_value_but_identical_systems_keep_p_1(write_manifest):
    dataset = build_dataset(write_manifest(ONE_LINE * 3), DatasetOptions(), workers=1)
    a, b = dataset.hypotheses
    r = analysis.compare(dataset.utterances, a, b, n_resamples=200, seed=4)
    assert math.isnan(r["diff"]["p"]) and r["diff"]["ci"] == pytest.approx([-100 / 6] * 2)
    same = analysis.compare(dataset.utterances, a, a, n_resamples=200, seed=4)
    assert same["diff"] == {"wer": 0.0, "ci": [0.0, 0.0], "p": 1.0}


def test_two_differing_utterances_keep_a_bootstrap_p_value(write_manifest):
    rows = ONE_LINE + [{"audio_filepath": "a1.wav", "duration": 1.0, "text": "a b", "pred_text": "a b",
                        "pred_text_b": "a c"}]
    dataset = build_dataset(write_manifest(rows), DatasetOptions(), workers=1)
    a, b = dataset.hypotheses
    r = analysis.compare(dataset.utterances, a, b, n_resamples=500, seed=1)
    assert 0 < r["diff"]["p"] <= 1
    assert r == analysis.compare(dataset.utterances, a, b, n_resamples=500, seed=1)  # seeded


def test_a_significant_difference_on_few_utterances_comes_with_a_caution(write_manifest):
    # three utterances, B better on each: every resample has B better, so the bootstrap's p is its
    # floor 2/(B+1), where an exact sign test over 3 utterances cannot go below 0.25
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"one two three {w}",
             "pred_text": f"one two tree {w}", "pred_text_b": f"one two three {w}"}
            for i, w in enumerate(["x", "y y", "z z z"])]  # different lengths: the resamples vary
    dataset = build_dataset(write_manifest(rows), DatasetOptions(), workers=1)
    payload = get_json(_client(dataset), "/api/compare")
    assert payload["utterances"] == 3 and payload["diff"]["wer"] == pytest.approx(-100 * 3 / 15, abs=1e-6)
    assert payload["diff"]["p"] == pytest.approx(2 / 1001, abs=1e-6)
    sentence, tone = comparison_stats.interpretation(payload, "a", "b")
    assert sentence.startswith("B (b) is better by 20") and tone == "success"
    assert "Only 3 utterances: a bootstrap this small understates the uncertainty" in sentence
    # with enough utterances the sentence stands alone
    many = dict(payload, utterances=comparison_stats.FEW_UTTERANCES)
    assert "Only" not in comparison_stats.interpretation(many, "a", "b")[0]


# Four empty references (A says "uh" on two of them, B nothing) and eight where B gets one word of
# three wrong: 25 of 1,000 resamples draw only empty references, where B − A is 0 or below. p is
# just above 0.05 and the interval must reach 0 with it, whichever system is A.
EMPTY_REFERENCES_AND_ONE_BETTER_SYSTEM = [
    {"audio_filepath": f"a/{i}.wav", "duration": 1.0 + i, "text": "" if i < 4 else "a b c",
     "pred_text": ("uh" if i % 2 else "") if i < 4 else "a b c", "pred_text_b": "" if i < 4 else "a x c"}
    for i in range(12)]


def test_swapping_a_and_b_negates_the_difference_and_keeps_the_verdict(write_manifest):
    dataset = build_dataset(write_manifest(EMPTY_REFERENCES_AND_ONE_BETTER_SYSTEM), DatasetOptions(), workers=1)
    client = _client(dataset)
    ab = get_json(client, "/api/compare?a=pred_text&b=pred_text_b")
    ba = get_json(client, "/api/compare?a=pred_text_b&b=pred_text")
    assert ab["diff"]["wer"] == pytest.approx(25.0) and ba["diff"]["wer"] == pytest.approx(-25.0)
    assert ba["diff"]["ci"] == pytest.approx([-ab["diff"]["ci"][1], -ab["diff"]["ci"][0]])
    assert ba["diff"]["p"] == pytest.approx(ab["diff"]["p"])
    assert ab["diff"]["p"] > 0.05 and ab["diff"]["ci"][0] <= 0  # not significant: the interval holds 0
    for payload, a, b, ahead in ((ab, "pred_text", "pred_text_b", "A"), (ba, "pred_text_b", "pred_text", "B")):
        sentence, tone = comparison_stats.interpretation(payload, a, b)
        assert sentence.startswith(f"No significant difference: {ahead} (pred_text) is ahead by 25.0 points")
        assert "p = 0.052" in sentence  # not "0.05", the line itself
        assert tone == "secondary" and "-" not in sentence  # minus signs are "−", and no "−0.00"
