"""sde.analysis: confusions, breakdowns, bootstrap, comparisons, alphabet check.

Expected numbers in the small cases are worked out by hand (see the comments)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sde import analysis as A
from sde.analysis import bootstrap as B
from sde.manifest import HypothesisField

S = "string[pyarrow]"


PRED = HypothesisField("pred_text", "")
CONF = HypothesisField("pred_text_conformer", "conformer")


def errors_table(rows: list[tuple[int, str, str | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame({
        "utt": np.array([r[0] for r in rows], dtype=np.int64),
        "op": pd.Categorical([r[1] for r in rows], categories=["sub", "del", "ins"]),
        "ref": pd.array([r[2] for r in rows], dtype=S),
        "hyp": pd.array([r[3] for r in rows], dtype=S),
    })


ERRORS = errors_table([
    (0, "sub", "the", "a"),
    (0, "del", "of", None),
    (1, "sub", "the", "a"),
    (1, "sub", "cat", "hat"),
    (1, "ins", None, "uh"),
    (2, "sub", "cat", "bat"),
    (2, "del", "of", None),
    (2, "del", "and", None),
    (3, "sub", "the", "a"),
    (3, "ins", None, "um"),
    (3, "ins", None, "uh"),
    (4, "sub", "dog", "bog"),
])


# ---------------------------------------------------------------------------------- top_errors

def test_top_errors_counts_and_order():
    r = A.top_errors(ERRORS)
    subs = r["substitutions"]
    # the→a ×3 (utts 0, 1, 3); then the count-1 pairs alphabetically by ref, hyp:
    # cat→bat, cat→hat, dog→bog
    assert subs[["ref", "hyp"]].values.tolist() == [["the", "a"], ["cat", "bat"], ["cat", "hat"], ["dog", "bog"]]
    assert subs["count"].tolist() == [3, 1, 1, 1]
    assert r["deletions"].values.tolist() == [["of", 2], ["and", 1]]
    assert r["insertions"].values.tolist() == [["uh", 2], ["um", 1]]
    assert list(subs.columns) == ["ref", "hyp", "count"]
    assert list(r["deletions"].columns) == ["word", "count"]
    assert subs["count"].dtype == np.int64


def test_top_errors_limit_keeps_alphabetical_ties():
    r = A.top_errors(ERRORS, limit=2)
    assert r["substitutions"][["ref", "hyp"]].values.tolist() == [["the", "a"], ["cat", "bat"]]
    assert r["deletions"]["word"].tolist() == ["of", "and"]
    assert A.top_errors(ERRORS, limit=1)["insertions"]["word"].tolist() == ["uh"]
    assert len(A.top_errors(ERRORS, limit=0)["substitutions"]) == 0
    assert len(A.top_errors(ERRORS, limit=None)["substitutions"]) == 4


def test_top_errors_restricted_by_ids_and_mask():
    by_ids = A.top_errors(ERRORS, utt_ids=np.array([1, 2]))
    # utt 1: the→a, cat→hat, +uh; utt 2: cat→bat, -of, -and
    assert by_ids["substitutions"].values.tolist() == [["cat", "bat", 1], ["cat", "hat", 1], ["the", "a", 1]]
    assert by_ids["deletions"].values.tolist() == [["and", 1], ["of", 1]]
    assert by_ids["insertions"].values.tolist() == [["uh", 1]]
    mask = np.array([False, True, True, False, False, False])  # mask over a 6-utterance table
    by_mask = A.top_errors(ERRORS, utt_ids=mask)
    for k in by_ids:
        pd.testing.assert_frame_equal(by_ids[k], by_mask[k])
    nothing = A.top_errors(ERRORS, utt_ids=np.array([], dtype=np.int64))
    assert all(len(v) == 0 for v in nothing.values())


def test_top_errors_of_many_pairs_are_a_plain_tally_ordered():
    """Thousands of distinct pairs, ties at every count: the counts a Counter makes, most frequent
    first, ties by ref then hyp; and coding the table ahead (prepare_errors) changes nothing."""
    rng = np.random.default_rng(3)
    words = [f"w{i:02d}" for i in range(60)]
    rows = []
    for utt in range(20_000):
        op = ("sub", "del", "ins")[int(rng.choice(3, p=[0.7, 0.15, 0.15]))]
        ref, hyp = words[int(rng.zipf(1.3)) % 60], words[int(rng.integers(0, 60))]
        rows.append((utt, op, None if op == "ins" else ref, None if op == "del" else hyp))
    table = errors_table(rows)
    A.prepare_errors(table)
    tally = Counter((r, h) for _, op, r, h in rows if op == "sub")
    want = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))[:150]
    got = A.top_errors(table, limit=150)["substitutions"]
    assert [(r, h, n) for r, h, n in got.values.tolist()] == [(r, h, n) for (r, h), n in want]


def test_top_errors_empty_table():
    r = A.top_errors(errors_table([]))
    assert [len(v) for v in r.values()] == [0, 0, 0]
    assert list(r["substitutions"].columns) == ["ref", "hyp", "count"]


def test_top_errors_works_with_object_columns_and_pandas_default_strings():
    e = ERRORS.copy()
    e["ref"] = e["ref"].astype(object)
    e["hyp"] = e["hyp"].astype(object)
    e["op"] = e["op"].astype(str)
    pd.testing.assert_frame_equal(A.top_errors(e)["substitutions"], A.top_errors(ERRORS)["substitutions"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["sub", "del", "ins"]),
                          st.sampled_from(["a", "b", "c", "é", "ab"]), st.sampled_from(["a", "b", "x", "ß"])),
                max_size=60),
       st.integers(1, 5))
def test_top_errors_matches_a_counter(rows, limit):
    table = errors_table([(u, op, None if op == "ins" else r, None if op == "del" else h) for u, op, r, h in rows])
    r = A.top_errors(table, limit=limit)
    subs = Counter((ref, hyp) for _, op, ref, hyp in rows if op == "sub")
    expect = sorted(subs.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))[:limit]
    assert [((a, b), c) for a, b, c in r["substitutions"].values.tolist()] == expect
    dels = Counter(ref for _, op, ref, _ in rows if op == "del")
    assert [tuple(x) for x in r["deletions"].values.tolist()] == \
        sorted(dels.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


# ----------------------------------------------------------------------- utterances_with_error

def test_utterances_with_error():
    assert A.utterances_with_error(ERRORS, "sub", "the", "a").tolist() == [0, 1, 3]
    assert A.utterances_with_error(ERRORS, "sub", ref="cat").tolist() == [1, 2]
    assert A.utterances_with_error(ERRORS, "sub", hyp="bog").tolist() == [4]
    assert A.utterances_with_error(ERRORS, "del", "of").tolist() == [0, 2]
    assert A.utterances_with_error(ERRORS, "ins", hyp="uh").tolist() == [1, 3]
    assert A.utterances_with_error(ERRORS, "ins").tolist() == [1, 3]
    assert A.utterances_with_error(ERRORS, "deletions").tolist() == [0, 2]
    assert A.utterances_with_error(ERRORS, "sub", "nope", "a").tolist() == []
    assert A.utterances_with_error(ERRORS, "sub", "of").tolist() == []  # "of" is only ever deleted
    assert A.utterances_with_error(ERRORS, "sub").dtype == np.int64
    with pytest.raises(ValueError, match="sub, del or ins"):
        A.utterances_with_error(ERRORS, "swap")


# ----------------------------------------------------------------------------- duration_bucket

def test_duration_bucket_edges():
    d = pd.Series([0.0, 1.99, 2.0, 4.99, 5.0, 9.99, 10.0, 19.9, 20.0, 29.99, 30.0, 3600.0, np.nan, -1.0])
    b = A.duration_bucket(d)
    assert b.tolist()[:12] == ["0-2 s", "0-2 s", "2-5 s", "2-5 s", "5-10 s", "5-10 s", "10-20 s", "10-20 s",
                               "20-30 s", "20-30 s", "30+ s", "30+ s"]
    assert b.isna().tolist()[12:] == [True, True]
    infinite = A.duration_bucket(pd.Series([np.inf, -np.inf, -0.0]))
    assert infinite.isna().tolist() == [True, True, False] and infinite.iloc[2] == "0-2 s"
    assert list(b.cat.categories) == list(A.DURATION_BUCKET_LABELS)
    assert b.cat.ordered
    assert b.name == "duration_bucket"


def test_duration_bucket_keeps_index_and_accepts_arrays():
    b = A.duration_bucket(pd.Series([1.0, 7.0], index=[10, 20]))
    assert b.index.tolist() == [10, 20]
    assert A.duration_bucket(np.array([25.0])).tolist() == ["20-30 s"]


# ----------------------------------------------------------------------------------- breakdown

def utterance_table() -> pd.DataFrame:
    """Six utterances, hypothesis pred_text (no suffix) and conformer.

    id speaker dur  N  C  sub del ins  CE | conf: sub del ins CE
    0  a       1.0  4 20   1   0   0   2  |       0   0   0  0
    1  a       3.0  6 30   0   1   1   5  |       1   0   0  1
    2  b       1.5  2 10   0   0   0   0  |       0   0   0  0
    3  b      12.0 10 50   2   1   0   8  |       1   0   0  2
    4  <NA>    4.0  0  0   0   0   2   6  |       0   0   0  0   (empty reference)
    5  c      31.0  8 40   1   1   1   9  |       0   0   1  3
    """
    t = pd.DataFrame({
        "id": np.arange(6, dtype=np.int64),
        "duration": [1.0, 3.0, 1.5, 12.0, 4.0, 31.0],
        "speaker": pd.array(["a", "a", "b", "b", None, "c"], dtype=S),
        "num_words": np.array([4, 6, 2, 10, 0, 8], dtype=np.int64),
        "num_chars": np.array([20, 30, 10, 50, 0, 40], dtype=np.int64),
        "sub": np.array([1, 0, 0, 2, 0, 1], dtype=np.int64),
        "del": np.array([0, 1, 0, 1, 0, 1], dtype=np.int64),
        "ins": np.array([0, 1, 0, 0, 2, 1], dtype=np.int64),
        "char_edits": np.array([2, 5, 0, 8, 6, 9], dtype=np.int64),
        "sub_conformer": np.array([0, 1, 0, 1, 0, 0], dtype=np.int64),
        "del_conformer": np.zeros(6, dtype=np.int64),
        "ins_conformer": np.array([0, 0, 0, 0, 0, 1], dtype=np.int64),
        "char_edits_conformer": np.array([0, 1, 0, 2, 0, 3], dtype=np.int64),
        "channel": np.array([1, 2, 1, 1, 2, 2], dtype=np.int64),
    })
    e = t["sub"] + t["del"] + t["ins"]
    t["wer"] = np.where(t["num_words"] > 0, 100 * e / t["num_words"].clip(lower=1), np.where(e > 0, 100.0, 0.0))
    t["cer"] = np.where(t["num_chars"] > 0, 100 * t["char_edits"] / t["num_chars"].clip(lower=1),
                        np.where(t["char_edits"] > 0, 100.0, 0.0))
    ec = t["sub_conformer"] + t["del_conformer"] + t["ins_conformer"]
    t["wer_conformer"] = np.where(t["num_words"] > 0, 100 * ec / t["num_words"].clip(lower=1), 0.0)
    return t


def test_breakdown_by_speaker():
    r = A.breakdown(utterance_table(), "speaker", PRED)
    assert list(r.columns) == ["value", "utterances", "words", "wer", "cer"]
    assert r["value"].tolist() == ["a", "b", "c", None]  # sorted, missing last
    assert r["utterances"].tolist() == [2, 2, 1, 1]
    assert r["words"].tolist() == [10, 12, 8, 0]
    # a: E = 1 + 2 = 3 over N = 10 → 30 %; CE = 2 + 5 = 7 over C = 50 → 14 %
    # b: E = 0 + 3 = 3 over 12 → 25 %;      CE = 8 over 60 → 13.33 %
    # c: E = 3 over 8 → 37.5 %;             CE = 9 over 40 → 22.5 %
    # <NA>: only an empty reference with 2 insertions → 100 % (DESIGN's empty-reference rule)
    assert r["wer"].tolist() == pytest.approx([30.0, 25.0, 37.5, 100.0])
    assert r["cer"].tolist() == pytest.approx([14.0, 100 * 8 / 60, 22.5, 100.0])


def test_breakdown_other_hypothesis_and_subset():
    t = utterance_table()
    r = A.breakdown(t, "speaker", CONF)
    # a: E = 0 + 1 over 10 → 10 %; b: 1 over 12; c: 1 over 8; <NA>: 0 errors, empty ref → 0 %
    assert r["wer"].tolist() == pytest.approx([10.0, 100 / 12, 12.5, 0.0])
    # CE: a 1/50, b 2/60, c 3/40, <NA> 0/0 → 0
    assert r["cer"].tolist() == pytest.approx([2.0, 100 * 2 / 60, 7.5, 0.0])
    sub = A.breakdown(t, "speaker", PRED, utt_ids=np.array([0, 3, 5]))
    assert sub["value"].tolist() == ["a", "b", "c"]
    assert sub["wer"].tolist() == pytest.approx([25.0, 30.0, 37.5])
    mask = np.zeros(6, dtype=bool)
    mask[[0, 3, 5]] = True
    pd.testing.assert_frame_equal(sub, A.breakdown(t, "speaker", PRED, utt_ids=mask))


def test_breakdown_by_duration_bucket():
    r = A.breakdown(utterance_table(), "duration_bucket", PRED)
    # 0-2 s: utts 0, 2 (E 1, N 6); 2-5 s: utts 1, 4 (E 4, N 6); 10-20 s: utt 3 (E 3, N 10);
    # 30+ s: utt 5 (E 3, N 8). Empty buckets are left out; rows in bucket order.
    assert r["value"].tolist() == ["0-2 s", "2-5 s", "10-20 s", "30+ s"]
    assert r["utterances"].tolist() == [2, 2, 1, 1]
    assert r["wer"].tolist() == pytest.approx([100 / 6, 100 * 4 / 6, 30.0, 37.5])
    # 2-5 s chars: CE 5 + 6 over C 30 + 0
    assert r["cer"].tolist()[1] == pytest.approx(100 * 11 / 30)


def test_breakdown_numeric_column_and_sorting():
    t = utterance_table()
    r = A.breakdown(t, "channel", PRED)
    # channel 1: utts 0, 2, 3 (E 4, N 16); channel 2: utts 1, 4, 5 (E 7, N 14)
    assert r["value"].tolist() == [1, 2]
    assert r["wer"].tolist() == pytest.approx([25.0, 50.0])

@pytest.mark.parametrize("sort,expected", [
    ("wer", ["b", "a", "c", None]),       # WER 25, 30, 37.5, 100: ascending
    ("-wer", [None, "c", "a", "b"]),
    ("value", ["a", "b", "c", None]),
    ("-value", ["c", "b", "a", None]),    # missing values stay last
    ("-utterances", ["a", "b", "c", None]),  # 2, 2, 1, 1: ties in value order
    ("words", [None, "c", "a", "b"]),     # 0, 8, 10, 12
])
def test_breakdown_sorts(sort, expected):
    assert A.breakdown(utterance_table(), "speaker", PRED, sort=sort)["value"].tolist() == expected


@pytest.mark.parametrize("sort", ["nope", "wer+", "--wer", "ci"])
def test_breakdown_rejects_an_unknown_sort(sort):
    with pytest.raises(ValueError, match="unknown breakdown sort.*value, utterances, words, wer, cer"):
        A.breakdown(utterance_table(), "speaker", PRED, sort=sort)


def test_breakdown_rejects_unknown_columns_and_takes_any_cardinality():
    t = utterance_table()
    with pytest.raises(ValueError) as exc:
        A.breakdown(t, "nope", PRED)
    assert "unknown column 'nope'" in str(exc.value)
    assert "speaker" in str(exc.value) and "duration_bucket" in str(exc.value)
    t["utt_name"] = pd.array([f"u{i}" for i in range(6)], dtype=S)
    assert A.breakdown(t, "utt_name", PRED)["utterances"].tolist() == [1] * 6
    with pytest.raises(ValueError, match="'speaker' has 4 groups, more than max_groups=3"):
        A.breakdown(t, "speaker", PRED, max_groups=3)  # the missing values' group counts


def test_breakdown_columns_lists_the_categorical_ones():
    t = utterance_table()
    t["utt_name"] = pd.array([f"u{i}" for i in range(6)], dtype=S)  # all distinct: an identifier
    counts = A.group_counts(t)
    assert list(counts)[0] == "duration_bucket" and counts["duration_bucket"] == 4
    assert counts["speaker"] == 3 and counts["channel"] == 2
    assert not {"duration", "wer", "id", "utt_name"} & set(counts)
    # the columns error messages name: without the per-hypothesis metrics (sub, del_conformer, ...)
    assert A.breakdown_columns(t) == ["duration_bucket", "speaker", "channel"]


def test_breakdown_derives_char_edits_when_the_column_is_missing():
    t = utterance_table().drop(columns=["char_edits"])
    r = A.breakdown(t, "speaker", PRED)
    # same CER for non-empty references; the empty reference (C = 0) contributes nothing
    assert r["cer"].tolist() == pytest.approx([14.0, 100 * 8 / 60, 22.5, 0.0])


def test_breakdown_cer_uses_the_hypothesis_ref_chars_when_present():
    t = utterance_table()
    t["ref_chars_conformer"] = np.array([10, 30, 10, 50, 0, 40])  # aligner's count differs for utt 0
    r = A.breakdown(t, "speaker", CONF)
    # a: CE 1 over C 10 + 30 → 2.5 %
    assert r["cer"].tolist()[0] == pytest.approx(2.5)
    assert A.breakdown(t, "speaker", PRED)["cer"].tolist()[0] == pytest.approx(14.0)  # pred: num_chars


def test_breakdown_matches_pandas_groupby_on_random_data():
    rng = np.random.default_rng(3)
    n = 500
    t = pd.DataFrame({
        "g": pd.array(rng.choice(["x", "y", "z", "w"], n), dtype=S),
        "num_words": rng.integers(0, 20, n), "num_chars": rng.integers(0, 90, n),
        "sub": rng.integers(0, 3, n), "del": rng.integers(0, 3, n), "ins": rng.integers(0, 3, n),
        "char_edits": rng.integers(0, 9, n),
    })
    r = A.breakdown(t, "g", {})
    t["e"] = t["sub"] + t["del"] + t["ins"]
    g = t.groupby("g").sum(numeric_only=True)
    assert r["value"].tolist() == sorted(g.index)
    assert r["wer"].to_numpy() == pytest.approx((100 * g["e"] / g["num_words"]).to_numpy())
    assert r["cer"].to_numpy() == pytest.approx((100 * g["char_edits"] / g["num_chars"]).to_numpy())


# ----------------------------------------------------------------------------------- bootstrap

def synthetic(n: int, p: float, rng: np.random.Generator, label: str = "") -> pd.DataFrame:
    words = rng.integers(1, 30, n)
    errors = rng.binomial(words, p)
    suffix = f"_{label}" if label else ""
    return pd.DataFrame({"num_words": words, f"sub{suffix}": errors,
                         f"del{suffix}": np.zeros(n, dtype=np.int64), f"ins{suffix}": np.zeros(n, dtype=np.int64)})


def test_corpus_wer_is_a_ratio_of_sums():
    t = utterance_table()
    # E = 1+2+0+3+2+3 = 11 over N = 30
    assert A.corpus_wer(t, PRED) == pytest.approx(100 * 11 / 30)
    assert A.corpus_wer(t, PRED, utt_ids=np.array([4])) == 100.0  # empty reference, insertions
    assert np.isnan(A.corpus_wer(t, PRED, utt_ids=np.array([], dtype=np.int64)))


def test_bootstrap_reproducible_and_contains_estimate():
    t = synthetic(3000, 0.1, np.random.default_rng(1))
    a = A.bootstrap_wer(t, {}, n_resamples=500, seed=7)
    b = A.bootstrap_wer(t, {}, n_resamples=500, seed=7)
    c = A.bootstrap_wer(t, {}, n_resamples=500, seed=8)
    assert a == b
    assert a[0] == c[0] and a[1:] != c[1:]
    wer, lo, hi = a
    e = t["sub"].sum()
    assert wer == pytest.approx(100 * e / t["num_words"].sum())
    assert lo < wer < hi
    assert 0.5 < hi - lo < 2.0  # ~ 2·1.96·sd; sd ≈ 0.25 points here


def test_bootstrap_does_not_depend_on_utterance_order():
    t = synthetic(2000, 0.2, np.random.default_rng(2))
    shuffled = t.sample(frac=1.0, random_state=0).reset_index(drop=True)
    assert A.bootstrap_wer(t, {}, n_resamples=300) == pytest.approx(A.bootstrap_wer(shuffled, {}, n_resamples=300))


def test_bootstrap_coverage_on_synthetic_data():
    # Every word is an error with p = 0.1, so the true corpus WER is 10 %.
    rng = np.random.default_rng(12345)
    hits = 0
    runs = 200
    for i in range(runs):
        _, lo, hi = A.bootstrap_wer(synthetic(2000, 0.1, rng), {}, n_resamples=300, seed=i)
        hits += lo <= 10.0 <= hi
    assert 0.88 * runs <= hits <= 0.99 * runs


@pytest.mark.parametrize("rare_count", [0, 10**9])  # only the multinomial / only index draws
def test_bootstrap_sampling_paths_agree(monkeypatch, rare_count):
    t = synthetic(4000, 0.15, np.random.default_rng(4))
    wer, lo, hi = A.bootstrap_wer(t, {}, n_resamples=1000)  # default: both, mixed
    monkeypatch.setattr(B, "_RARE_COUNT", rare_count)
    wer2, lo2, hi2 = A.bootstrap_wer(t, {}, n_resamples=1000)
    assert A.bootstrap_wer(t, {}, n_resamples=1000) == (wer2, lo2, hi2)
    assert wer2 == wer
    assert lo2 < wer2 < hi2
    assert (hi2 - lo2) == pytest.approx(hi - lo, rel=0.15)
    assert (lo2 + hi2) / 2 == pytest.approx((lo + hi) / 2, abs=0.1 * (hi - lo))


def test_bootstrap_sums_have_the_resampling_mean_and_variance(monkeypatch):
    # Sum of n draws with replacement: mean n·mean(x), variance n·var(x) (population variance).
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.integers(0, 4, 300), rng.integers(0, 1000, 40)])  # frequent + rare rows
    n = len(x)
    for rare_count in (0, 8, 10**9):
        monkeypatch.setattr(B, "_RARE_COUNT", rare_count)
        s = B._bootstrap_sums([x, np.ones(n, dtype=np.int64)], 20000, np.random.SeedSequence(0))
        assert (s[:, 1] == n).all()
        assert s[:, 0].mean() == pytest.approx(x.sum(), rel=0.01)
        assert s[:, 0].var() == pytest.approx(n * x.var(), rel=0.05)


def test_bootstrap_sums_are_exact_totals_of_resamples():
    # With one distinct row every resample has the same sums: n copies of it.
    cols = [np.full(50, 3), np.full(50, 7)]
    s = B._bootstrap_sums(cols, 20, np.random.SeedSequence(0))
    assert (s == [[150, 350]] * 20).all()
    rows = [np.array([0, 1, 2, 3]), np.array([10, 10, 10, 10])]
    s = B._bootstrap_sums(rows, 200, np.random.SeedSequence(1))
    assert (s[:, 1] == 40).all() and s[:, 0].min() >= 0 and s[:, 0].max() <= 12


def test_bootstrap_edge_cases():
    t = utterance_table()
    assert all(np.isnan(v) for v in A.bootstrap_wer(t, PRED, utt_ids=np.zeros(6, dtype=bool)))
    assert A.bootstrap_wer(t, PRED, utt_ids=np.array([4]), n_resamples=50) == (100.0, 100.0, 100.0)
    with pytest.raises(ValueError, match="n_resamples"):
        A.bootstrap_wer(t, PRED, n_resamples=0)
    with pytest.raises(ValueError, match="alpha"):
        A.bootstrap_wer(t, PRED, alpha=1.5)


# ------------------------------------------------------------------------------------- compare

def two_systems(n: int, pa: float, pb: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = synthetic(n, pa, rng)
    t["sub_b"] = rng.binomial(t["num_words"], pb)
    t["del_b"] = 0
    t["ins_b"] = 0
    return t


B_COLS = {"sub": "sub_b", "del": "del_b", "ins": "ins_b"}


def test_compare_identical_systems():
    t = two_systems(2000, 0.1, 0.1, 0)
    r = A.compare(t, {}, {}, n_resamples=500)
    assert r["diff"]["wer"] == 0.0
    assert r["diff"]["ci"] == [0.0, 0.0]
    assert r["diff"]["p"] == 1.0
    assert r["a"]["wer"] == r["b"]["wer"]
    assert set(r) == {"a", "b", "diff"}


def test_compare_clearly_better_system():
    t = two_systems(2000, 0.15, 0.10, 1)
    r = A.compare(t, {}, B_COLS, n_resamples=1000, seed=3)
    assert r["b"]["wer"] < r["a"]["wer"]
    assert r["diff"]["wer"] == pytest.approx(r["b"]["wer"] - r["a"]["wer"])  # B − A, negative: B better
    lo, hi = r["diff"]["ci"]
    assert lo <= r["diff"]["wer"] <= hi < 0
    assert r["diff"]["p"] < 0.01
    assert r["diff"]["p"] == pytest.approx(2 / 1001)
    for k in ("a", "b"):
        assert r[k]["ci"][0] <= r[k]["wer"] <= r[k]["ci"][1]
    assert r == A.compare(t, {}, B_COLS, n_resamples=1000, seed=3)
    # the single-system intervals are bootstrap_wer's, so every view shows the same numbers
    assert (r["a"]["wer"], *r["a"]["ci"]) == A.bootstrap_wer(t, {}, n_resamples=1000, seed=3)
    assert (r["b"]["wer"], *r["b"]["ci"]) == A.bootstrap_wer(t, B_COLS, n_resamples=1000, seed=3)


def test_compare_pairing_narrows_the_interval():
    # B = A plus one extra error in 5 % of utterances: strongly correlated systems, so the paired
    # interval of the difference is much narrower than the marginal intervals.
    rng = np.random.default_rng(5)
    t = synthetic(3000, 0.2, rng)
    t["sub_b"] = t["sub"] + (rng.random(3000) < 0.05)
    t["del_b"] = 0
    t["ins_b"] = 0
    r = A.compare(t, {}, B_COLS, n_resamples=500)
    width = r["diff"]["ci"][1] - r["diff"]["ci"][0]
    assert width < 0.5 * (r["a"]["ci"][1] - r["a"]["ci"][0])
    assert r["diff"]["p"] < 0.01


def test_compare_no_difference_gives_large_p():
    t = two_systems(1000, 0.1, 0.1, 9)  # independent draws with the same true WER
    r = A.compare(t, {}, B_COLS, n_resamples=500)
    lo, hi = r["diff"]["ci"]
    assert lo < 0 < hi
    assert r["diff"]["p"] > 0.05


def test_compare_with_hypothesis_fields_and_subsets():
    t = utterance_table()
    r = A.compare(t, PRED, CONF, n_resamples=200, utt_ids=np.array([0, 1, 2, 3, 5]))
    # pred: E = 1+2+0+3+3 = 9 over 30; conformer: 0+1+0+1+1 = 3 over 30
    assert r["a"]["wer"] == pytest.approx(30.0)
    assert r["b"]["wer"] == pytest.approx(10.0)
    assert r["diff"]["wer"] == pytest.approx(-20.0)
    empty = A.compare(t, PRED, CONF, utt_ids=np.array([], dtype=np.int64))
    assert np.isnan(empty["diff"]["p"]) and np.isnan(empty["a"]["wer"])


def test_compare_only_empty_references_uses_the_empty_reference_rule():
    t = utterance_table()
    r = A.compare(t, PRED, CONF, n_resamples=50, utt_ids=np.array([4]))
    # utt 4: empty reference; pred inserted 2 words (100 %), conformer none (0 %)
    assert r["a"] == {"wer": 100.0, "ci": [100.0, 100.0]}
    assert r["b"] == {"wer": 0.0, "ci": [0.0, 0.0]}
    assert r["diff"]["wer"] == -100.0 and r["diff"]["ci"] == [-100.0, -100.0]


def test_bootstrap_p_value_formula():
    assert B._bootstrap_p(np.zeros(99)) == 1.0
    assert B._bootstrap_p(np.full(99, -1.0)) == pytest.approx(2 / 100)
    assert B._bootstrap_p(np.full(99, 1.0)) == pytest.approx(2 / 100)
    d = np.concatenate([np.full(10, -1.0), np.full(89, 1.0)])  # 10 of 99 below 0
    assert B._bootstrap_p(d) == pytest.approx(2 * 11 / 100)


@pytest.mark.parametrize("resamples", [10, 38, 39, 40, 99, 999, 1000, 1001, 5000])
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_paired_interval_excludes_zero_exactly_when_p_is_below_alpha(resamples, alpha):
    rng = np.random.default_rng(resamples)
    for at_or_below in range(0, min(resamples, 80)):  # the resamples on 0's side of the difference
        d = np.concatenate([np.zeros(at_or_below), rng.uniform(0.5, 30.0, resamples - at_or_below)])
        for diffs in (d, -d):
            lo, hi = B._paired_ci(diffs, alpha)
            assert lo <= hi
            assert (B._bootstrap_p(diffs) < alpha) == (lo > 0 or hi < 0), (at_or_below, diffs[0])


def test_paired_interval_of_25_differences_at_zero_in_1000_reaches_zero():
    # an interpolated 2.5% quantile put the lower end at 5.4 here while p was 0.052
    d = np.concatenate([np.zeros(25), np.linspace(5.55, 33.3, 975)])
    assert B._bootstrap_p(d) == pytest.approx(52 / 1001)
    assert B._paired_ci(d, 0.05)[0] == 0.0


@pytest.mark.parametrize("resamples", [39, 1000])
def test_swapping_the_systems_negates_every_resampled_difference(resamples):
    rng = np.random.default_rng(7)
    for trial in range(40):
        n = int(rng.integers(1, 60))
        words, ea, eb = rng.integers(0, 5, n), rng.integers(0, 4, n), rng.integers(0, 4, n)
        ab = B._paired_diffs(ea, eb, words, resamples, np.random.SeedSequence(trial))
        ba = B._paired_diffs(eb, ea, words, resamples, np.random.SeedSequence(trial))
        assert np.array_equal(ab, -ba)
        assert not np.signbit(ab[ab == 0]).any()


def test_swapping_systems_with_mirrored_errors_negates_the_differences_by_their_names():
    # every utterance A gets wrong B gets right and the other way round: the table looks the same
    # from both sides, so only the systems' names can tell the two orders apart
    ea, eb, words = np.array([2, 0, 1, 0, 3, 0]), np.array([0, 2, 0, 1, 0, 3]), np.array([4, 4, 3, 3, 5, 5])
    ab = B._paired_diffs(ea, eb, words, 500, np.random.SeedSequence(0), b_first=False)
    ba = B._paired_diffs(eb, ea, words, 500, np.random.SeedSequence(0), b_first=True)
    assert np.array_equal(ab, -ba) and not np.array_equal(ab, ba)


# -------------------------------------------------------------------------- comparisons for plots

def test_word_accuracy_comparison():
    vocab = pd.DataFrame({
        "word": pd.array(["the", "cat", "sat", "mat", "on", "zebra"], dtype=S),
        "count": [100, 10, 10, 1, 50, 3],
        "accuracy": [90.0, 50.0, 80.0, 0.0, 96.0, np.nan],
        "accuracy_b": [95.0, 70.0, 60.0, 100.0, 96.0, 50.0],
    })
    r = A.word_accuracy_comparison(vocab, "accuracy", "accuracy_b")
    # |diff|: mat 100, cat 20, sat 20 (tie → same count 10 → alphabetical), the 5, on 0; zebra has no accuracy
    assert r["word"].tolist() == ["mat", "cat", "sat", "the", "on"]
    assert r["diff"].tolist() == [100.0, 20.0, -20.0, 5.0, 0.0]
    assert list(r.columns) == ["word", "count", "acc_a", "acc_b", "diff"]
    r2 = A.word_accuracy_comparison(vocab, "accuracy", "accuracy_b", min_count=10)
    assert r2["word"].tolist() == ["cat", "sat", "the", "on"]
    with pytest.raises(KeyError, match="accuracy_x"):
        A.word_accuracy_comparison(vocab, "accuracy", "accuracy_x")


def test_utterance_comparison():
    t = utterance_table()
    r = A.utterance_comparison(t, PRED, CONF)
    assert list(r.columns) == ["id", "a", "b", "diff"]
    assert r["id"].tolist() == list(range(6))
    assert r["a"].tolist() == pytest.approx([25.0, 100 * 2 / 6, 0.0, 30.0, 100.0, 37.5])
    assert r["b"].tolist() == pytest.approx([0.0, 100 / 6, 0.0, 10.0, 0.0, 12.5])
    assert r["diff"].tolist() == pytest.approx((r["b"] - r["a"]).tolist())
    s = A.utterance_comparison(t, PRED, CONF, metric="sub", utt_ids=np.array([3, 5]))
    assert s.values.tolist() == [[3, 2, 1, -1], [5, 1, 0, -1]]
    with pytest.raises(ValueError, match="unknown metric"):
        A.utterance_comparison(t, PRED, CONF, metric="speed")


def test_hypothesis_columns():
    assert A.hypothesis_columns(CONF)["sub"] == "sub_conformer"
    assert A.hypothesis_columns(CONF)["num_words"] == "num_words"
    assert A.hypothesis_columns(PRED)["char_edits"] == "char_edits"
    assert A.hypothesis_columns({"sub": "s"})["sub"] == "s"
    assert A.hypothesis_columns({"sub": "s"})["del"] == "del"
    with pytest.raises(TypeError):
        A.hypothesis_columns(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- alphabet check

NEMO_EN = "abcdefghijklmnopqrstuvwxyz '"


def test_alphabet_check_hand_case():
    texts = pd.Series(["hello world", "Hello, world 42!", "ça va", None, "don't", "über über", "x\ty"], dtype=S)
    r = A.alphabet_check(texts, NEMO_EN)
    assert r.oov_chars.tolist() == ["", "!,24H", "ç", "", "", "ü", "\t"]
    assert A.has_digits(texts).tolist() == [False, True, False, False, False, False, False]
    assert A.has_digits(texts).index.equals(texts.index)
    oov, counts = r  # the pair unpacks (sde.dataset relies on it)
    assert oov is r.oov_chars and counts is r.counts
    # occurrences: ü 2 (one utterance), then the count-1 chars in code point order
    assert r.counts.values.tolist() == [
        ["ü", 2, 1, 5],
        ["\t", 1, 1, 6], ["!", 1, 1, 1], [",", 1, 1, 1], ["2", 1, 1, 1], ["4", 1, 1, 1],
        ["H", 1, 1, 1], ["ç", 1, 1, 2],
    ]
    assert list(r.counts.columns) == ["char", "count", "utterances", "example_id"]
    assert r.oov_chars.index.equals(texts.index)


@pytest.mark.parametrize("chars, expected", [
    ("abc '", False), ("", False), ("a1", True), ("١", True),  # Arabic-Indic one: Nd
    ("½²", False),  # a fraction and a superscript are numbers, not decimal digits (No)
])
def test_any_digit_is_true_for_the_characters_has_digits_flags(chars, expected):
    assert A.any_digit(chars) is expected
    assert bool(A.has_digits(pd.Series(list(chars) or [""], dtype=S)).any()) is expected


def test_alphabet_check_examples_are_ids_and_first_occurrences():
    texts = pd.Series(["ok", "A", "bA", "AA"], index=[10, 11, 12, 13], dtype=S)
    r = A.alphabet_check(texts, "abcdefghijklmnopqrstuvwxyz")
    assert r.counts.values.tolist() == [["A", 4, 3, 11]]
    assert r.oov_chars.tolist() == ["", "A", "A", "A"]
    assert r.oov_chars.index.tolist() == [10, 11, 12, 13]


def test_alphabet_check_special_characters_in_the_alphabet_and_object_input():
    texts = pd.Series(["a-b]c\\d", "^x", "١٢"], dtype=object)  # Arabic-Indic digits count as digits
    r = A.alphabet_check(texts, "abcd-]\\^")
    assert r.oov_chars.tolist() == ["", "x", "١٢"]
    assert A.has_digits(texts).tolist() == [False, False, True]
    assert A.alphabet_check(texts, "").oov_chars.tolist()[1] == "^x"


def test_alphabet_check_all_clean_and_empty():
    r = A.alphabet_check(pd.Series(["abc", ""], dtype=S), NEMO_EN)
    assert r.oov_chars.tolist() == ["", ""]
    assert len(r.counts) == 0
    r = A.alphabet_check(pd.Series([], dtype=S), NEMO_EN)
    assert len(r.oov_chars) == 0 and len(r.counts) == 0
    assert len(A.has_digits(pd.Series([], dtype=S))) == 0
