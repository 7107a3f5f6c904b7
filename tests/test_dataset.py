"""The built dataset: derived columns, per-hypothesis metrics, vocabulary, summary."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from sde.cli import _summary_ahead
from sde.dataset import DatasetError, DatasetOptions, build_dataset

ROWS = [
    {"audio_filepath": "a.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the bat sat down",
     "pred_text_b": "the cat sat", "speaker": "s1", "snr": 10.5},
    {"audio_filepath": "b.wav", "duration": 1.0, "text": "hello world", "pred_text": "hello world",
     "pred_text_b": "hello", "speaker": "s2", "snr": 3},
    {"audio_filepath": "c.wav", "duration": 0.0, "text": "", "pred_text": "", "pred_text_b": "uh",
     "speaker": "s1", "snr": 7},
    {"audio_filepath": "d.wav", "duration": 4.0, "text": "a b", "pred_text": "", "pred_text_b": "a b",
     "speaker": "s2", "snr": 1},
]


@pytest.fixture
def dataset(write_manifest):
    return build_dataset(write_manifest(ROWS), DatasetOptions(), workers=1)


def test_per_utterance_counts_and_rates_by_hand(dataset):
    u = dataset.utterances
    assert list(u["id"]) == [0, 1, 2, 3]
    assert list(u["num_words"]) == [3, 2, 0, 2]
    assert list(u["num_chars"]) == [11, 11, 0, 3]
    assert list(u["sub"]) == [1, 0, 0, 0]
    assert list(u["ins"]) == [1, 0, 0, 0]
    assert list(u["del"]) == [0, 0, 0, 2]
    assert list(u["hits"]) == [2, 2, 0, 0]
    assert u["wer"].round(4).tolist() == [66.6667, 0.0, 0.0, 100.0]
    assert u["wmr"].round(4).tolist() == [66.6667, 100.0, 0.0, 0.0]
    # pred_text_b → columns with the label as suffix; "uh" against an empty reference is 100.
    assert u["wer_b"].round(4).tolist() == [0.0, 50.0, 100.0, 0.0]
    assert u["cer_b"].iloc[2] == 100.0


def test_rates_and_zero_duration(dataset):
    u = dataset.utterances
    assert u["word_rate"].iloc[0] == pytest.approx(1.5)
    assert u["char_rate"].iloc[1] == pytest.approx(11.0)
    assert math.isnan(u["word_rate"].iloc[2])  # zero duration: NaN, never infinity
    assert not np.isinf(u["char_rate"].to_numpy()).any()


def test_the_summary_asked_while_it_is_computed_waits_for_it(dataset, monkeypatch):
    computed, real = [], type(dataset)._summary

    def slow(self):
        computed.append(1)
        time.sleep(0.2)  # a 10M dataset's sums
        return real(self)

    monkeypatch.setattr(type(dataset), "_summary", slow)
    ahead = threading.Thread(target=_summary_ahead, args=(dataset,))  # what the server starts with
    ahead.start()
    time.sleep(0.05)
    assert dataset.summary()["utterances"] == 4
    ahead.join()
    assert computed == [1]


def test_the_summary_made_ahead_leaves_its_error_to_the_request(dataset, monkeypatch, capsys):
    monkeypatch.setattr(type(dataset), "_summary", lambda self: 1 / 0)
    _summary_ahead(dataset)  # no traceback on the server's console
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ZeroDivisionError):
        dataset.summary()


def _sums_changed(**changes):
    def change(sums):
        return {**sums, **changes}
    return change


PRESET_SUMS = {
    "its own sums": (lambda sums: sums, True),
    "another row count": (_sums_changed(utterances=5), False),
    "another hypothesis": (lambda sums: {**sums, "hypotheses": {"pred_text": sums["hypotheses"]["pred_text"]}}, False),
    "an older layout": (_sums_changed(format=0), False),
    "not sums at all": (lambda sums: "garbage", False),
    "nothing kept": (lambda sums: None, False),
}


@pytest.mark.parametrize("kept, taken", PRESET_SUMS.values(), ids=PRESET_SUMS.keys())
def test_kept_summary_sums_are_taken_only_when_they_are_this_datasets(dataset, write_manifest, kept, taken):
    import dataclasses

    fresh = dataclasses.replace(dataset)  # a copy: caches of its own
    sums = dataset.summary_sums()
    offered = kept({**sums, "hours": 99.0})  # marked, to see which sums the summary used
    assert fresh.preset_summary_sums(offered) is taken
    assert fresh.summary()["hours"] == (99.0 if taken else pytest.approx(7.0 / 3600, abs=1e-6))
    assert fresh.summary()["hypotheses"]["pred_text"]["wer"] == pytest.approx(dataset.summary()["hypotheses"]["pred_text"]["wer"])


def test_a_new_generation_computes_its_own_sums(dataset, write_manifest):
    other = build_dataset(write_manifest(ROWS[:2], name="two.json"), DatasetOptions(), workers=1)
    assert dataset.preset_summary_sums({**dataset.summary_sums(), "hours": 99.0})
    dataset.replace_with(other)
    assert dataset.summary()["utterances"] == 2 and dataset.summary()["hours"] == pytest.approx(3.0 / 3600, abs=1e-6)


def test_summary_shape_and_corpus_numbers(dataset):
    s = dataset.summary()
    assert s["utterances"] == 4
    assert s["hours"] == pytest.approx(7.0 / 3600, abs=1e-6)
    assert s["skipped_lines"] == 0
    assert set(s["hypotheses"]) == {"pred_text", "pred_text_b"}
    a = s["hypotheses"]["pred_text"]
    # ΣE/ΣN = (2 + 0 + 0 + 2) / (3 + 2 + 0 + 2)
    assert a["wer"] == pytest.approx(100 * 4 / 7, abs=1e-4)
    assert a["wmr"] == pytest.approx(100 * 4 / 7, abs=1e-4)
    b = s["hypotheses"]["pred_text_b"]
    assert b["wer"] == pytest.approx(100 * 2 / 7, abs=1e-4)  # one deletion, one insertion
    assert s["vocabulary_size"] == 7
    assert s["alphabet"] == " abcdehlorstw"
    assert s["alphabet_size"] == 13


def test_vocabulary_accuracy_and_mwa(dataset):
    v = dataset.vocabulary.set_index("word")
    assert v.loc["the", "count"] == 1
    assert v.loc["cat", "accuracy"] == 0.0
    assert v.loc["sat", "accuracy"] == 100.0
    assert v.loc["a", "accuracy"] == 0.0
    assert v.loc["world", "accuracy_b"] == 0.0
    # MWA over 7 reference words: the, sat, hello, world recognised by pred_text.
    assert dataset.summary()["hypotheses"]["pred_text"]["mwa"] == pytest.approx(100 * 4 / 7, abs=1e-4)


def test_oov_with_vocab_file(write_manifest, tmp_path):
    vocab = tmp_path / "vocab.tsv"
    vocab.write_text("the\t10\ncat\t3\nhello\t1\n", encoding="utf-8")
    ds = build_dataset(write_manifest(ROWS), DatasetOptions(vocab=str(vocab)), workers=1)
    v = ds.vocabulary.set_index("word")
    assert not v.loc["the", "oov"] and v.loc["world", "oov"]


def test_missing_vocab_file_is_a_clear_error(write_manifest, tmp_path):
    with pytest.raises(DatasetError, match="vocabulary file not found"):
        build_dataset(write_manifest(ROWS), DatasetOptions(vocab=str(tmp_path / "nope.txt")), workers=1)


def test_normalised_metrics_sit_next_to_raw(write_manifest):
    rows = [{"audio_filepath": "a.wav", "duration": 1, "text": "Hello, World! I have 25 cats.",
             "pred_text": "hello world i have twenty five cats"}]
    ds = build_dataset(write_manifest(rows), DatasetOptions(normalize=("lower", "punct", "numbers")), workers=1)
    h = ds.summary()["hypotheses"]["pred_text"]
    assert h["wer"] > 50
    assert h["normalized"]["wer"] == 0.0
    assert ds.utterances["wer_norm"].iloc[0] == 0.0


def test_hypothesis_lookup(dataset):
    assert dataset.hypothesis("pred_text_b").label == "b"
    assert dataset.hypothesis("b").field == "pred_text_b"
    with pytest.raises(KeyError, match="choose one of"):
        dataset.hypothesis("nope")


def test_no_predictions_still_builds(write_manifest):
    rows = [{"audio_filepath": "a.wav", "duration": 1.5, "text": "just text"}]
    ds = build_dataset(write_manifest(rows), workers=1)
    s = ds.summary()
    assert s["hypotheses"] == {} and s["vocabulary_size"] == 2
    assert list(ds.vocabulary.columns) == ["word", "count"]


def test_queries_work_on_the_tables(dataset):
    total, page = dataset.utterance_query.page("{wer} > 10", "-wer", 0, 10)
    assert total == 2 and page["id"].tolist() == [3, 0]


def test_alphabet_with_unicode(write_manifest):
    rows = [{"audio_filepath": "a.wav", "duration": 1, "text": "naïve café"},
            {"audio_filepath": "b.wav", "duration": 1, "text": "日本 ok"},
            {"audio_filepath": "c.wav", "duration": 1, "text": ""}]
    ds = build_dataset(write_manifest(rows), workers=1)
    assert ds.alphabet == sorted(set("naïve café日本 ok"))
    assert list(ds.utterances["num_words"]) == [2, 2, 0]


def test_manifest_fields_named_like_computed_columns_are_kept_aside(write_manifest):
    rows = [{"audio_filepath": "a.wav", "duration": 1, "text": "a b", "pred_text": "a c", "wer": 3.5,
             "num_words": "two"}]
    ds = build_dataset(write_manifest(rows), workers=1)
    u = ds.utterances
    assert u["wer"].iloc[0] == 50.0 and u["manifest_wer"].iloc[0] == 3.5
    assert u["num_words"].iloc[0] == 2 and u["manifest_num_words"].iloc[0] == "two"


def test_prediction_warnings_reach_the_summary(write_manifest, tmp_path):
    rows = [{"audio_filepath": "a.wav", "duration": 1, "text": "a b"},
            {"audio_filepath": "b.wav", "duration": 1, "text": "c d"}]
    preds = write_manifest([{"audio_filepath": "a.wav", "duration": 1, "text": "a b", "pred_text": "a b"}],
                           name="preds.json")
    ds = build_dataset(write_manifest(rows), DatasetOptions(predictions=str(preds)), workers=1)
    s = ds.summary()
    # b.wav has no prediction: left out of the scores, not scored as an empty transcript
    assert s["hypotheses"]["pred_text"]["wer"] == 0.0 and s["hypotheses"]["pred_text"]["missing"] == 1
    assert len(s["warnings"]) == 1 and "1 of 2" in s["warnings"][0]


def test_alphabet_check_marks_utterances_and_reports_characters(write_manifest):
    rows = [{"audio_filepath": "a.wav", "duration": 1, "text": "hello world"},
            {"audio_filepath": "b.wav", "duration": 1, "text": "Hello, 25 worlds!"},
            {"audio_filepath": "c.wav", "duration": 1, "text": "it's fine"}]
    ds = build_dataset(write_manifest(rows), DatasetOptions(alphabet="abcdefghijklmnopqrstuvwxyz' "), workers=1)
    u = ds.utterances
    assert u["oov_chars"].fillna("").tolist() == ["", "!,25H", ""]
    assert u["has_digits"].tolist() == [False, True, False]
    report = ds.summary()["alphabet_check"]
    assert report["utterances"] == 1 and report["digits"] == 1
    assert {c["char"]: c["count"] for c in report["chars"]} == {"H": 1, ",": 1, "2": 1, "5": 1, "!": 1}
    total, _ = ds.utterance_query.page('{oov_chars} != ""', None, 0, 10)
    assert total == 1


def test_error_filter_selects_utterances_with_one_word_error(dataset):
    q = dataset.utterance_query
    total, page = q.page('{error} = "sub cat bat"', None, 0, 10)
    assert total == 1 and page["id"].tolist() == [0]
    assert q.page('{error} = "ins down"', None, 0, 10)[0] == 1
    assert q.page('{error} = "del a" && {duration} > 1', None, 0, 10)[1]["id"].tolist() == [3]
    assert q.page('{error_b} = "del world"', None, 0, 10)[1]["id"].tolist() == [1]
    assert q.page('{error} = "sub cat dog"', None, 0, 10)[0] == 0
    from sde.query import QueryError

    with pytest.raises(QueryError, match="sub REF HYP"):
        q.select('{error} = "cat"')
    with pytest.raises(QueryError, match="sub REF HYP"):
        q.select('{error} contains "cat"')
    with pytest.raises(QueryError):
        q.select(None, "error")  # filter-only: not sortable


def test_normalized_summary_per_choice_equals_building_with_the_option(write_manifest):
    from sde.dataset import normalized_summary

    rows = [{"audio_filepath": "a.wav", "duration": 1, "text": "Hello, World! I have 25 cats.",
             "pred_text": "hello world i have twenty five cats"},
            {"audio_filepath": "b.wav", "duration": 1, "text": "It's 3 PM.", "pred_text": "its three pm"}]
    path = write_manifest(rows)
    plain = build_dataset(path, workers=1)
    for steps in (("lower",), ("lower", "punct"), ("lower", "punct", "numbers")):
        built = build_dataset(path, DatasetOptions(normalize=steps), workers=1)
        expected = {f: h["normalized"] for f, h in built.summary()["hypotheses"].items()}
        assert normalized_summary(plain, list(steps)) == expected
    assert normalized_summary(plain, []) == {}
    # raw numbers never change
    assert plain.summary()["hypotheses"]["pred_text"]["wer"] > 50
