"""Suspicious utterances: looping texts, insertion bursts, implausible speaking rates (durations of
real espeak-ng speech), length ratios, empty and non-alphabet references, and the summary's filter
expressions run through sde's own query engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sde.metrics import align_words
from sde.quality.suspicious import (
    insertion_bursts,
    length_ratios,
    non_alphabet,
    repeated_ngrams,
    robust_z,
    suspicious_columns,
    suspicious_summary,
)
from tests.quality_kit import need_espeak, speak


@pytest.mark.parametrize("text,expected", [
    ("", 0),
    ("hello", 1),
    ("the cat sat on the mat", 1),
    ("the the cat", 2),
    ("go go go", 3),
    ("No, no. NO! no", 4),                                             # normalised before comparing
    ("thank you thank you thank you for watching", 3),                 # a looping bigram
    ("i said that i said that i said", 2),                             # only whole copies count
    ("a b c d e f g h i j k l " * 3, 3),                               # a 12-gram three times
    ("one two three four five six seven eight nine ten eleven twelve thirteen " * 2, 1),  # 13 > MAX_NGRAM
], ids=["empty", "one-word", "no-repeat", "stutter", "word-loop", "normalised", "bigram-loop", "partial",
        "long-loop", "beyond-max-n"])
def test_repeated_ngram_counts_back_to_back_copies(text, expected):
    assert repeated_ngrams([text]).tolist() == [expected]


def _copies_by_brute_force(text: str, max_n: int = 12) -> int:
    words = text.split()
    best = 1 if words else 0
    for n in range(1, max_n + 1):
        for i in range(len(words) - n + 1):
            k = 1
            while words[i + k * n:i + (k + 1) * n] == words[i:i + n]:
                k += 1
            best = max(best, k)
    return best


def test_repeated_ngram_agrees_with_brute_force():
    rng = np.random.default_rng(2)
    texts = [" ".join(rng.choice(["a", "b", "c"], rng.integers(0, 20))) for _ in range(400)]
    assert repeated_ngrams(texts).tolist() == [_copies_by_brute_force(t) for t in texts]


def test_repeated_ngram_never_runs_across_utterances():
    assert repeated_ngrams(["a b", "a b", "a b"]).tolist() == [1, 1, 1]


@pytest.mark.parametrize("ref,hyp,expected", [
    ("a b c", "a b c", 0),
    ("a b c", "a x b c", 1),
    ("a b c", "a x y z b c", 3),
    ("a b c", "x y a b c p q r s", 4),
    ("a b c", "", 0),
    ("", "x y", 2),
    ("Hello, world", "hello world", 0),
    ("the end", "the end thank you for watching thank you for watching", 8),
], ids=["equal", "one", "run", "longest-of-two", "deleted", "empty-ref", "normalised", "hallucinated-tail"])
def test_insertion_burst_is_the_longest_inserted_run(ref, hyp, expected):
    assert insertion_bursts([ref], [hyp]).tolist() == [expected]


def _longest_ins_run(ref: str, hyp: str) -> int:
    best = run = 0
    for word in align_words(ref, hyp):
        run = run + 1 if word.op == "ins" else 0
        best = max(best, run)
    return best


def test_insertion_bursts_agree_with_the_inspector_alignment():
    rng = np.random.default_rng(1)
    vocab = "a b c d e f".split()
    refs = [" ".join(rng.choice(vocab, rng.integers(1, 8))) for _ in range(300)]
    hyps = [" ".join(rng.choice(vocab, rng.integers(1, 14))) for _ in range(300)]
    assert insertion_bursts(refs, hyps).tolist() == [_longest_ins_run(r, h) for r, h in zip(refs, hyps)]


@pytest.mark.parametrize("refs,hyps,expected", [
    (["a b c d"], ["a b"], [0.5]),
    (["a b"], ["a b c d e"], [2.5]),
    ([""], ["a"], [np.nan]),
    (["a"], [None], [np.nan]),
    (["a b"], [""], [0.0]),
])
def test_length_ratio(refs, hyps, expected):
    assert np.allclose(length_ratios(refs, hyps), expected, equal_nan=True)


@pytest.mark.parametrize("values,groups,expected", [
    ([1, 2, 3, 4, 5], None, [-1.349, -0.674, 0.0, 0.674, 1.349]),
    ([1, 1, 1, 1, 1], None, [0, 0, 0, 0, 0]),
    ([5, 5, 5, 5, 9], None, [0, 0, 0, 0, 3.989]),  # MAD 0: 4 / (1.2533 · mean |x - 5| = 0.8)
    ([1, 2, np.nan, np.inf], None, [-0.674, 0.674, np.nan, np.nan]),
    # speaker b talks twice as fast: each is compared with itself, so nobody stands out
    ([1, 2, 3, 4, 5, 2, 4, 6, 8, 10], list("aaaaabbbbb"), [-1.349, -0.674, 0, 0.674, 1.349] * 2),
    # groups under 5 utterances use the global median (3.5) and MAD (1.5): (100 - 3.5) / 2.224
    ([1, 2, 3, 4, 5, 100], list("aaaaab"), [-1.349, -0.674, 0, 0.674, 1.349, 43.39]),
], ids=["plain", "constant", "mad-zero", "nan-inf", "per-speaker", "small-group-global"])
def test_robust_z(values, groups, expected):
    assert np.allclose(robust_z(values, groups), expected, atol=0.01, equal_nan=True)


def _robust_z_row_by_row(x: np.ndarray, groups: list) -> np.ndarray:
    """The definition, one row at a time: (x - median) / spread of the row's group when that has 5
    finite values or more, else of the whole column; spread 1.4826 MAD, or 1.2533 mean |x - median|
    where the MAD is 0."""
    def centre_spread(values: np.ndarray) -> tuple[float, float]:
        med = float(np.median(values))
        dev = np.abs(values - med)
        mad = float(np.median(dev)) * 1.4826
        return med, mad if mad > 0 else float(np.mean(dev)) * 1.2533

    finite = np.isfinite(x)
    whole = centre_spread(x[finite])
    out = np.full(len(x), np.nan)
    for i in np.flatnonzero(finite):
        mine = finite & np.array([g == groups[i] and g is not None for g in groups])
        med, spread = centre_spread(x[mine]) if groups[i] is not None and mine.sum() >= 5 else whole
        dev = x[i] - med
        out[i] = dev / spread if spread > 0 else (0.0 if dev == 0 else np.nan)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_robust_z_is_the_per_group_definition_on_random_data(seed):
    """Per-group statistics mapped back to the rows (not one per-row transform per step: that held
    a dozen full-length columns at 10M rows) give the definition's value on every row: groups of
    every size around the threshold, missing groups, ties (MAD 0), NaN and inf."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(10, 3, 400), 0 if seed % 2 else 3)
    x[rng.random(400) < 0.05] = np.nan
    x[rng.random(400) < 0.02] = np.inf
    labels = rng.integers(-1, 40, 400)
    groups = [None if g < 0 else f"spk{g}" for g in labels]
    expected = _robust_z_row_by_row(x, groups)
    assert np.allclose(robust_z(x, np.array(groups, dtype=object)), expected, equal_nan=True, rtol=1e-9, atol=1e-9)
    assert np.allclose(robust_z(x, labels), expected, equal_nan=True, rtol=1e-9, atol=1e-9)  # integer codes, -1: none


@pytest.mark.parametrize("seed", range(3))
def test_robust_z_is_the_definition_where_most_rows_have_no_group_of_their_own(seed):
    """Most rows without a speaker (or in one under 5 values) take the whole column's statistics,
    which the per-group ones leave out; the few big groups still take their own."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(10, 3, 600), 0 if seed % 2 else 3)
    x[rng.random(600) < 0.05] = np.nan
    labels = np.where(rng.random(600) < 0.8, -1, rng.integers(0, 12, 600))
    labels[rng.choice(600, 3, replace=False)] = 12  # a group of 3: too small for statistics of its own
    groups = [None if g < 0 else f"spk{g}" for g in labels]
    sizes = np.bincount(labels[labels >= 0])
    assert (labels < 0).mean() > 0.75 and (sizes >= 5).sum() >= 6 and sizes[12] == 3
    expected = _robust_z_row_by_row(x, groups)
    assert np.allclose(robust_z(x, np.array(groups, dtype=object)), expected, equal_nan=True, rtol=1e-9, atol=1e-9)
    assert np.allclose(robust_z(x, labels), expected, equal_nan=True, rtol=1e-9, atol=1e-9)


def test_the_suspicious_columns_keep_word_counts_in_four_bytes():
    """The columns a server keeps for the dataset's life (10M rows: ~0.5 GB): counts of words as
    int32, rates and ratios float64, flags bool, and no copy of them joined into one block."""
    table = pd.DataFrame({"text": ["go go go", "a b c", ""] * 10, "pred_text": ["go go", "a b c d e f", "x"] * 10,
                          "duration": [1.0, 2.0, 0.5] * 10, "speaker": ["s1", "s2", "s3"] * 10})
    columns = suspicious_columns(table, ["pred_text"], workers=0)
    counts = ["repeated_ngram", "hyp_repeated_ngram", "ins_burst"]
    assert {c: columns[c].dtype for c in counts} == dict.fromkeys(counts, np.dtype(np.int32))
    assert columns["repeated_ngram"].tolist()[:3] == [3, 1, 0]
    assert columns["ins_burst"].tolist()[:3] == [0, 3, 1]
    assert columns["length_ratio"].dtype == np.float64 and columns["empty_reference"].dtype == bool
    assert columns.memory_usage(index=False).sum() == len(table) * (3 * 4 + 3 * 8 + 1)


@pytest.mark.parametrize("text,flagged", [
    ("hello world", False), ("don't", False), ("Hello", True), ("naïve", True), ("two  spaces\t", False),
    ("3 cats", True), ("", False),
])
def test_non_alphabet(text, flagged):
    assert non_alphabet([text], "abcdefghijklmnopqrstuvwxyz'").tolist() == [flagged]


SENTENCES = ["good morning everybody", "the train leaves at noon", "please open the window",
             "we will meet again soon", "this is a short test", "my brother lives in paris"]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Two espeak voices (speakers) with real durations; one reference far too long for its audio,
    one empty, one with digits; and a hypothesis that loops."""
    need_espeak()
    rows = []
    for speaker, voice in (("anna", "en+f3"), ("bob", "en+m3")):
        for text in SENTENCES:
            y, sr = speak(text, voice=voice)
            rows.append({"speaker": speaker, "duration": len(y) / sr, "text": text, "pred_text": text})
    rows[2]["text"] = rows[2]["text"] + " and then a whole paragraph that was never said in this recording"
    rows[4]["text"] = ""
    rows[5]["text"] = "my brother lives in paris 75"
    rows[7]["pred_text"] = "the train leaves at noon at noon at noon at noon"
    rows[9]["pred_text"] = "thank you " * 6 + SENTENCES[3]
    table = pd.DataFrame(rows)
    table.insert(0, "id", range(len(table)))
    table["pred_text_b"] = table["text"]
    return table


@pytest.fixture(scope="module")
def columns(table) -> pd.DataFrame:
    return suspicious_columns(table, ["pred_text", "pred_text_b"], alphabet="abcdefghijklmnopqrstuvwxyz ")


def test_columns_per_check_and_hypothesis(table, columns):
    assert columns.index.equals(table.index)
    assert list(columns.columns) == [
        "repeated_ngram", "char_rate_z", "word_rate_z", "empty_reference", "non_alphabet",
        "hyp_repeated_ngram", "ins_burst", "length_ratio",
        "hyp_repeated_ngram_b", "ins_burst_b", "length_ratio_b"]


def test_rates_flag_a_text_too_long_for_its_audio(columns):
    z = columns["char_rate_z"]
    assert z[2] > 3
    others = z.drop([2, 4])
    assert (others.abs() < 3).all()


def test_looping_hypothesis_and_insertion_burst(columns):
    assert columns["hyp_repeated_ngram"][7] == 4       # "at noon" four times
    assert columns["ins_burst"][9] == 12               # "thank you" x 6 inserted before the sentence
    assert columns["ins_burst"].drop([4, 7, 9]).eq(0).all()


def test_summary_filters_select_exactly_the_counted_rows(table, columns):
    from sde.query import TableQuery

    summary = suspicious_summary(columns)
    by_flag = {s["flag"]: s for s in summary}
    assert by_flag["hyp_repeated_ngram"]["filter"] == "{hyp_repeated_ngram} >= 3"
    assert by_flag["empty_reference"]["filter"] == "{empty_reference} = true"
    expected_counts = {"char_rate_z_high": 1, "empty_reference": 1, "non_alphabet": 1,
                       "hyp_repeated_ngram": 2, "ins_burst": 3, "length_ratio_high": 2,  # ins: rows 4 (empty ref), 7, 9
                       "hyp_repeated_ngram_b": 0, "length_ratio_b_low": 0}
    assert {k: by_flag[k]["count"] for k in expected_counts} == expected_counts
    query = TableQuery(pd.concat([table, columns], axis=1))
    for flag in summary:
        assert len(query.select(flag["filter"])) == flag["count"], flag


def test_summary_leaves_out_columns_not_computed(columns):
    flags = {s["flag"] for s in suspicious_summary(columns[["repeated_ngram"]])}
    assert flags == {"repeated_ngram"}


@pytest.mark.parametrize("chunk_rows, workers", [(1, 0), (5, 0), (7, 0), (11, 0), (2, 2), (3, 1)])
def test_checks_by_chunks_equal_the_checks_at_once(table, columns, chunk_rows, workers):
    # workers > 0 with four chunks or more: checked in worker processes, started without forking
    # while another thread runs, as in the server
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        chunked = suspicious_columns(table, ["pred_text", "pred_text_b"], alphabet="abcdefghijklmnopqrstuvwxyz ",
                                     chunk_rows=chunk_rows, workers=workers)
    finally:
        stop.set()
    pd.testing.assert_frame_equal(chunked, columns, check_exact=False, rtol=1e-9)


@pytest.mark.parametrize("processes, memory_limited, workers", [
    (1, False, 1), (2, False, 1), (3, False, 2), (9, False, 8), (64, False, 8), (64, True, 1), (2, True, 1),
])
def test_default_workers_leave_a_core_to_the_server_within_a_bound(processes, memory_limited, workers):
    from sde.quality.suspicious import default_workers

    assert default_workers(processes, memory_limited) == workers


def test_chunks_a_broken_pool_left_are_checked_here(table, columns, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    from sde import workers

    answered, real = [], workers.in_processes

    def breaking_after_two(function, jobs, workers, **kwargs):
        for got in real(function, jobs, workers, **kwargs):
            answered.append(got[0])
            yield got
            if len(answered) == 2:
                raise BrokenProcessPool("a worker died")

    monkeypatch.setattr(workers, "in_processes", breaking_after_two)
    got = suspicious_columns(table, ["pred_text", "pred_text_b"], alphabet="abcdefghijklmnopqrstuvwxyz ",
                             chunk_rows=2, workers=2)
    assert len(answered) == 2
    pd.testing.assert_frame_equal(got, columns, check_exact=False, rtol=1e-9)


def test_checks_of_stored_columns_equal_those_of_plain_ones(tmp_path, table, columns):
    # as a dataset stores them: the speakers as labels (their codes group the rates), texts compressed
    import pyarrow as pa

    from sde.compressed_columns import CompressedStringArray, LabelColumn, open_column, write_compressed

    stored = pd.concat([table, table], ignore_index=True)  # rows enough for labels (8 a value)
    stored.loc[3, "speaker"] = None  # a missing speaker: compared with everybody
    plain = stored.copy()
    for name in ("speaker", "text", "pred_text", "pred_text_b"):
        path = tmp_path / f"{name}.arrow"
        values = [None if pd.isna(v) else v for v in stored[name].tolist()]
        write_compressed(path, name, [pa.array(values, pa.large_string())], labels=name == "speaker")
        column = open_column(path)
        assert isinstance(column, LabelColumn) == (name == "speaker")
        stored[name] = pd.Series(CompressedStringArray.over(column), copy=False)
    want = suspicious_columns(plain, ["pred_text", "pred_text_b"], alphabet="abcdefghijklmnopqrstuvwxyz ")
    got = suspicious_columns(stored, ["pred_text", "pred_text_b"], alphabet="abcdefghijklmnopqrstuvwxyz ",
                             chunk_rows=4, workers=2)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)
    assert np.isfinite(got["char_rate_z"][3])
