"""sde.metrics: numbers equal jiwer's, hand-computed cases, properties."""

from __future__ import annotations

import multiprocessing.pool
import random

import jiwer
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sde import metrics
from sde.metrics import corpus, windows
from sde.metrics import (
    COUNT_KEYS,
    AlignedWord,
    align_corpus,
    align_words,
    corpus_rates,
    mean_word_accuracy,
    utterance_rates,
    word_counts,
    word_hits,
)

STRING = pd.StringDtype("pyarrow")

# Few distinct words so that random pairs share words and produce ties between alignments.
VOCAB = ["the", "a", "cat", "sat", "naïve", "日本語", "😀", "don't", "Cat", "x", "xy", "ü"]
SEPARATORS = [" ", " ", " ", " ", "  ", "\t", " \t ", "\n", "\u3000"]


def _text(rng: random.Random, words: list[str]) -> str:
    if not words:
        return rng.choice(["", "", " ", "  \t "])
    out = rng.choice(["", "", "", " ", "  ", "\t"])
    for i, word in enumerate(words):
        if i:
            out += rng.choice(SEPARATORS)
        out += word
    return out + rng.choice(["", "", "", " ", "   ", "\n"])


def _mutate(rng: random.Random, words: list[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        r = rng.random()
        if r < 0.12:
            out.append(rng.choice(VOCAB))  # substitution (sometimes by the same word)
        elif r < 0.2:
            continue  # deletion
        else:
            out.append(word)
        if rng.random() < 0.08:
            out.append(rng.choice(VOCAB))  # insertion
    return out


def random_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(n):
        ref_words = [rng.choice(VOCAB) for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 13, 25]))]
        kind = rng.random()
        if kind < 0.05:
            hyp_words = []
        elif kind < 0.1:
            hyp_words = [rng.choice(VOCAB) for _ in range(rng.randint(0, 6))]  # unrelated
        else:
            hyp_words = _mutate(rng, ref_words)
        refs.append(_text(rng, ref_words))
        hyps.append(_text(rng, hyp_words))
    return refs, hyps


def canon(text: str) -> str:
    """What jiwer must see to split words like str.split() (see sde.metrics' docstring)."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def pairs() -> tuple[list[str], list[str]]:
    return random_pairs(1500, seed=20240501)


@pytest.fixture(scope="module")
def aligned(pairs) -> object:
    return align_corpus(*pairs, workers=1)


# --- agreement with jiwer ------------------------------------------------------------------------


def test_random_pairs_cover_the_edge_cases(pairs):
    refs, hyps = pairs
    assert sum(not r.strip() for r in refs) > 50
    assert sum(not h.strip() for h in hyps) > 50
    assert any("\t" in r for r in refs) and any(r != r.strip() for r in refs)
    assert any("  " in h for h in hyps)


def test_word_counts_equal_jiwer_per_utterance(pairs, aligned):
    refs, hyps = pairs
    c = aligned.counts
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        got = (c["sub"][i], c["del"][i], c["ins"][i], c["hits"][i])
        assert c["num_words"][i] == len(ref.split())
        if not ref.split():
            # jiwer 3.x (the declared floor) refuses an empty reference, so sde's own definition
            # is the oracle here: every hypothesis word is an insertion (sde.metrics.align_corpus)
            assert got == (0, 0, len(hyp.split()), 0), (ref, hyp)
            continue
        out = jiwer.process_words(canon(ref), canon(hyp))
        assert got == (out.substitutions, out.deletions, out.insertions, out.hits), (ref, hyp)
        if not any(ch.isspace() and ch != " " for ch in ref + hyp):
            # space-separated text: jiwer's own word splitting gives the same counts
            raw = jiwer.process_words(ref, hyp)
            assert (raw.substitutions, raw.deletions, raw.insertions, raw.hits) == got


def test_word_rates_equal_jiwer_wer_per_utterance(pairs, aligned):
    refs, hyps = pairs
    rates = utterance_rates(aligned.counts)
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        if ref.split():
            assert rates["wer"][i] == pytest.approx(100 * jiwer.wer(canon(ref), canon(hyp)))
        else:  # empty-reference rule
            assert rates["wer"][i] == (100.0 if hyp.split() else 0.0)
            assert rates["wmr"][i] == 0.0


def test_char_rates_equal_jiwer_cer_per_utterance(pairs, aligned):
    refs, hyps = pairs
    c = aligned.counts
    rates = utterance_rates(c)
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        assert c["num_chars"][i] == len(ref.strip())
        if not ref.strip():
            # jiwer 3.x refuses an empty reference: every hypothesis character is an insertion,
            # and the empty-reference rule gives the rate
            assert c["char_edits"][i] == len(hyp.strip()), (ref, hyp)
            assert rates["cer"][i] == (100.0 if hyp.strip() else 0.0)
            continue
        chars = jiwer.process_characters(ref, hyp)  # raw strings: jiwer only strips the ends
        edits = chars.substitutions + chars.deletions + chars.insertions
        assert c["char_edits"][i] == edits, (ref, hyp)
        assert rates["cer"][i] == pytest.approx(100 * jiwer.cer(ref, hyp))


def test_corpus_rates_equal_jiwer(pairs, aligned):
    refs, hyps = pairs
    rates = corpus_rates(aligned.counts)
    # jiwer 3.x refuses empty references: jiwer counts the others, and each empty reference adds
    # its hypothesis' words (characters) as insertions and nothing to N (C), by sde's definition
    keep = np.array([bool(r.strip()) for r in refs])
    kept_refs = [r for r, k in zip(refs, keep) if k]
    kept_hyps = [h for h, k in zip(hyps, keep) if k]
    empty_hyps = [h for h, k in zip(hyps, keep) if not k]
    out = jiwer.process_words([canon(r) for r in kept_refs], [canon(h) for h in kept_hyps])
    word_edits = out.substitutions + out.deletions + out.insertions
    word_edits += sum(len(h.split()) for h in empty_hyps)
    chars = jiwer.process_characters(kept_refs, kept_hyps)
    char_edits = chars.substitutions + chars.deletions + chars.insertions
    char_edits += sum(len(h.strip()) for h in empty_hyps)
    n = sum(len(r.split()) for r in refs)
    assert rates["wer"] == pytest.approx(100 * word_edits / n)
    assert rates["cer"] == pytest.approx(100 * char_edits / sum(len(r.strip()) for r in refs))
    assert rates["wmr"] == pytest.approx(100 * out.hits / n)

    # the brief's variant: only the non-empty references, selected with a mask
    masked = corpus_rates(aligned.counts, mask=keep)
    assert masked["wer"] == pytest.approx(
        100 * jiwer.wer([canon(r) for r in kept_refs], [canon(h) for h in kept_hyps])
    )
    assert masked["cer"] == pytest.approx(100 * jiwer.cer(kept_refs, kept_hyps))


def test_corpus_rates_of_a_mask_equal_those_of_its_positions(aligned):
    keep = np.arange(len(aligned.counts["sub"])) % 3 != 1
    assert corpus_rates(aligned.counts, mask=keep) == corpus_rates(aligned.counts, mask=np.flatnonzero(keep))
    assert corpus_rates(aligned.counts, mask=np.ones(len(keep), dtype=bool)) == corpus_rates(aligned.counts)


def test_errors_table_matches_counts(pairs, aligned):
    errors = aligned.errors
    n = len(pairs[0])
    for op in ("sub", "del", "ins"):
        per_utt = np.bincount(errors.loc[errors["op"] == op, "utt"], minlength=n)
        np.testing.assert_array_equal(per_utt, aligned.counts[op])
    assert errors["ref"].isna().equals(errors["op"] == "ins")
    assert errors["hyp"].isna().equals(errors["op"] == "del")
    assert errors["utt"].is_monotonic_increasing


def test_errors_agree_with_align_words(pairs, aligned):
    refs, hyps = pairs
    errors = aligned.errors
    by_utt = {u: g for u, g in errors.groupby("utt")}
    for i in range(0, len(refs), 7):
        diff = [w for w in align_words(refs[i], hyps[i]) if w.op != "equal"]
        got = by_utt.get(i)
        rows = [] if got is None else list(got[["op", "ref", "hyp"]].itertuples(index=False))
        assert [(w.op, w.ref, w.hyp) for w in diff] == [
            (op, None if pd.isna(r) else r, None if pd.isna(h) else h) for op, r, h in rows
        ]


def test_two_workers_equal_one(pairs, monkeypatch):
    refs, hyps = pairs
    one = align_corpus(refs, hyps, workers=1)
    # let 1,500 pairs fork (the default keeps small inputs in-process), and check that they did
    monkeypatch.setattr(corpus, "MIN_PAIRS_PER_PROCESS", 100)
    ranges = []
    pool_map = multiprocessing.pool.Pool.map

    def spy(self, func, iterable, chunksize=None):
        ranges.extend(iterable)
        return pool_map(self, func, ranges, chunksize)

    monkeypatch.setattr(multiprocessing.pool.Pool, "map", spy)
    two = align_corpus(refs, hyps, workers=2)
    assert len(ranges) > 2 and ranges[0][0] == 0 and ranges[-1][1] == len(refs)
    for key in COUNT_KEYS:
        np.testing.assert_array_equal(one.counts[key], two.counts[key])
    pd.testing.assert_frame_equal(one.errors, two.errors)


def test_series_and_missing_values():
    refs = pd.Series(["a b", None, "c"], dtype=STRING)
    hyps = pd.Series(["a", "x", pd.NA], dtype=STRING)
    out = align_corpus(refs, hyps, workers=1)
    assert out.counts["del"].tolist() == [1, 0, 1]
    assert out.counts["ins"].tolist() == [0, 1, 0]
    assert out.counts["num_words"].tolist() == [2, 0, 1]


# --- hand-computed cases -------------------------------------------------------------------------


def test_hand_computed_utterance():
    out = align_corpus(["the cat sat"], ["the bat sat down"], workers=1)
    c = {k: v.tolist() for k, v in out.counts.items()}
    assert c == {
        "sub": [1],
        "del": [0],
        "ins": [1],
        "hits": [2],
        # "the cat sat" → "the bat sat down": c→b, then insert " down" (5 characters)
        "char_edits": [6],
        "num_words": [3],
        "num_chars": [11],
    }
    rates = utterance_rates(out.counts)
    assert rates["wer"][0] == pytest.approx(66.6667, abs=1e-4)  # 2 errors / 3 words
    assert rates["wmr"][0] == pytest.approx(66.6667, abs=1e-4)  # 2 hits / 3 words
    assert rates["cer"][0] == pytest.approx(54.5455, abs=1e-4)  # 6 / 11
    assert out.errors["utt"].tolist() == [0, 0]
    assert out.errors["op"].tolist() == ["sub", "ins"]
    assert out.errors["ref"].tolist() == ["cat", pd.NA]
    assert out.errors["hyp"].tolist() == ["bat", "down"]


def test_errors_table_by_hand_and_dtypes():
    refs = ["a b c", "x y", "", "same words"]
    hyps = ["a c", "x y z", "new", "same words"]
    errors = align_corpus(refs, hyps, workers=1).errors
    expected = pd.DataFrame(
        {
            "utt": np.array([0, 1, 2], dtype=np.int64),
            "op": pd.Categorical(["del", "ins", "ins"], categories=["sub", "del", "ins"]),
            "ref": pd.array(["b", None, None], dtype=STRING),
            "hyp": pd.array([None, "z", "new"], dtype=STRING),
        }
    )
    pd.testing.assert_frame_equal(errors, expected)
    assert errors["ref"].dtype == STRING and errors["hyp"].dtype == STRING


def test_no_errors_gives_typed_empty_table():
    out = align_corpus(["a b", ""], ["a b", ""], workers=1)
    assert len(out.errors) == 0
    assert list(out.errors.columns) == ["utt", "op", "ref", "hyp"]
    assert out.errors["utt"].dtype == np.int64
    assert isinstance(out.errors["op"].dtype, pd.CategoricalDtype)
    assert out.errors["ref"].dtype == STRING
    assert corpus_rates(out.counts) == {"wer": 0.0, "cer": 0.0, "wmr": 100.0}


def test_empty_input():
    out = align_corpus([], [], workers=2)
    assert all(len(v) == 0 for v in out.counts.values())
    assert corpus_rates(out.counts) == {"wer": 0.0, "cer": 0.0, "wmr": 0.0}


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        align_corpus(["a", "b"], ["a"], workers=1)


def test_empty_reference_rule():
    out = align_corpus(["", "", "  ", "a"], ["", "x y", "z", ""], workers=1)
    rates = utterance_rates(out.counts)
    assert rates["wer"].tolist() == [0.0, 100.0, 100.0, 100.0]
    assert rates["cer"].tolist() == [0.0, 100.0, 100.0, 100.0]
    assert rates["wmr"].tolist() == [0.0, 0.0, 0.0, 0.0]
    for values in rates.values():
        assert np.isfinite(values).all()
    # corpus: only the empty references selected → the same rule on the sums
    assert corpus_rates(out.counts, mask=np.array([True, False, False, False]))["wer"] == 0.0
    assert corpus_rates(out.counts, mask=np.array([True, True, False, False]))["wer"] == 100.0
    # all four: 1 deletion + 3 insertions over 1 reference word
    assert corpus_rates(out.counts)["wer"] == pytest.approx(400.0)


def test_corpus_rates_are_sums_not_means():
    # utt 0: 1 error / 1 word (100%); utt 1: 0 errors / 3 words (0%) → 25%, not 50%
    out = align_corpus(["a", "b c d"], ["x", "b c d"], workers=1)
    assert corpus_rates(out.counts)["wer"] == pytest.approx(25.0)
    assert corpus_rates(out.counts)["wmr"] == pytest.approx(75.0)
    assert corpus_rates(out.counts, mask=np.array([1]))["wer"] == 0.0  # positions work too


def test_word_accuracy_and_mwa_by_hand():
    refs = ["the cat sat", "the dog", "the cat"]
    hyps = ["the bat sat", "a dog", "the cat"]
    out = align_corpus(refs, hyps, workers=1)
    vocab = word_hits(refs, out.errors)
    assert vocab["word"].dtype == STRING
    table = {w: (c, h) for w, c, h in vocab.itertuples(index=False)}
    # the: 3 occurrences, 1 substituted (by "a") → 2 hits; cat: 2, 1 substituted → 1
    assert table == {"the": (3, 2), "cat": (2, 1), "sat": (1, 1), "dog": (1, 1)}
    assert vocab["word"].tolist() == ["the", "cat", "dog", "sat"]  # count desc, then word
    # accuracies 66.67, 50, 100, 100 → mean 79.1667
    assert mean_word_accuracy(vocab) == pytest.approx((200 / 3 + 50 + 100 + 100) / 4)
    # the same from a precomputed word_counts table
    pd.testing.assert_frame_equal(word_hits(word_counts(refs), out.errors), vocab)


def test_word_hits_counts_deletions_not_insertions():
    refs = ["a a b", "  b\tc  "]
    hyps = ["a b b", "b c d"]
    out = align_corpus(refs, hyps, workers=1)
    table = {w: (c, h) for w, c, h in word_hits(refs, out.errors).itertuples(index=False)}
    assert table == {"a": (2, 1), "b": (2, 2), "c": (1, 1)}


def test_mean_word_accuracy_empty_vocabulary():
    empty = word_hits(["", "  "], align_corpus(["", "  "], ["x", ""], workers=1).errors)
    assert len(empty) == 0
    assert mean_word_accuracy(empty) == 0.0


def test_align_words_by_hand():
    assert align_words("the cat sat", "the bat sat down") == [
        AlignedWord("equal", "the", "the"),
        AlignedWord("sub", "cat", "bat"),
        AlignedWord("equal", "sat", "sat"),
        AlignedWord("ins", None, "down"),
    ]
    assert align_words("a  b", "\ta b ") == [
        AlignedWord("equal", "a", "a"),
        AlignedWord("equal", "b", "b"),
    ]
    assert align_words("", "x y") == [AlignedWord("ins", None, "x"), AlignedWord("ins", None, "y")]
    assert align_words("x", "") == [AlignedWord("del", "x", None)]
    assert align_words("", "  ") == []


def test_align_words_covers_every_word(pairs):
    refs, hyps = pairs
    for ref, hyp in zip(refs[:300], hyps[:300]):
        diff = align_words(ref, hyp)
        assert [w.ref for w in diff if w.ref is not None] == ref.split()
        assert [w.hyp for w in diff if w.hyp is not None] == hyp.split()
        for w in diff:
            if w.op == "equal":
                assert w.ref == w.hyp is not None
            elif w.op == "sub":
                assert None not in (w.ref, w.hyp) and w.ref != w.hyp


# --- properties ----------------------------------------------------------------------------------

texts = st.lists(st.sampled_from(["a", "b", "c", "ä", "日", " ", " ", "\t"]), max_size=30).map(
    "".join
)


@settings(max_examples=100, deadline=None)
@given(st.lists(texts, min_size=1, max_size=8))
def test_identical_strings_have_no_errors(refs):
    out = align_corpus(refs, list(refs), workers=1)
    rates = utterance_rates(out.counts)
    assert (rates["wer"] == 0).all() and (rates["cer"] == 0).all()
    assert len(out.errors) == 0
    assert corpus_rates(out.counts)["wer"] == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=8))
def test_rates_are_finite_non_negative_and_sums_add_up(pairs):
    refs = [r for r, _ in pairs]
    hyps = [h for _, h in pairs]
    out = align_corpus(refs, hyps, workers=1)
    c = out.counts
    rates = utterance_rates(c)
    for values in rates.values():
        assert np.isfinite(values).all() and (values >= 0).all()
    assert (rates["wmr"] <= 100).all()
    assert (c["hits"] + c["sub"] + c["del"] == c["num_words"]).all()
    errors = c["sub"] + c["del"] + c["ins"]
    assert len(out.errors) == errors.sum()
    total = corpus_rates(c)
    if c["num_words"].sum():
        assert total["wer"] == pytest.approx(100 * errors.sum() / c["num_words"].sum())
        assert total["wmr"] == pytest.approx(100 * c["hits"].sum() / c["num_words"].sum())
    if c["num_chars"].sum():
        assert total["cer"] == pytest.approx(100 * c["char_edits"].sum() / c["num_chars"].sum())


# --- long utterances: windowed alignment ---------------------------------------------------------

LONG_VOCAB = [f"w{i}" for i in range(1500)] + ["the"] * 150 + ["of"] * 80  # frequent words repeat


def _long_pair(words: int, kind: str, seed: int = 0) -> tuple[str, str]:
    rng = random.Random(seed)
    ref_words = [rng.choice(LONG_VOCAB) for _ in range(words)]
    if kind == "identical":
        hyp_words = list(ref_words)
    elif kind == "unrelated":
        hyp_words = [rng.choice(LONG_VOCAB) for _ in range(words)]
    elif kind == "short hypothesis":
        hyp_words = ref_words[100:110]
    else:  # "N% errors": substitutions, deletions and insertions
        rate = int(kind.split("%")[0]) / 100
        hyp_words = []
        for word in ref_words:
            r = rng.random()
            if r < 0.6 * rate:
                hyp_words.append(rng.choice(LONG_VOCAB))
            elif r >= 0.8 * rate:
                hyp_words.append(word)
            if rng.random() < 0.2 * rate:
                hyp_words.append(rng.choice(LONG_VOCAB))
    return " ".join(ref_words), " ".join(hyp_words)


@pytest.mark.parametrize("words, kind, slack", [
    (9_000, "10% errors", 0.0),        # typical: every cut lands on an anchor, result is exact
    (7_000, "30% errors", 0.005),
    (9_000, "identical", 0.0),
    (6_000, "unrelated", 0.02),         # no anchors: proportional cuts, still within 2%
    (6_000, "short hypothesis", 0.01),
])
def test_long_utterance_is_windowed_within_slack_of_the_exact_alignment(words, kind, slack):
    from rapidfuzz.distance import Levenshtein

    ref, hyp = _long_pair(words, kind)
    out = align_corpus([ref], [hyp], workers=1)
    c = {k: int(v[0]) for k, v in out.counts.items()}
    errors = c["sub"] + c["del"] + c["ins"]
    exact_words = Levenshtein.distance(ref.split(), hyp.split())
    exact_chars = Levenshtein.distance(ref.strip(), hyp.strip())
    # a windowed alignment is a real alignment: never below the exact distance
    assert exact_words <= errors <= exact_words * (1 + slack)
    assert exact_chars <= c["char_edits"] <= exact_chars * (1 + slack)
    assert c["num_words"] == words and c["hits"] == words - c["sub"] - c["del"]
    assert len(out.errors) == errors
    assert out.errors["op"].value_counts().reindex(list(metrics.OPS)).tolist() == [c["sub"], c["del"], c["ins"]]
    # an utterance whose counts reach the length difference is exact all the same: no note
    provably_exact = errors == abs(words - len(hyp.split())) and c["char_edits"] == abs(len(ref) - len(hyp))
    assert provably_exact == (kind in ("identical", "short hypothesis"))
    noted = [] if provably_exact else [metrics.LongUtterance(0, words, len(hyp.split()), len(ref), len(hyp))]
    assert out.long_utterances == noted


@pytest.mark.parametrize("ref, hyp, windowed, reason", [
    (" ".join(["a"] * 5_000), " ".join(["b"] * 5_000), False, None),   # at the limit: exact
    (" ".join(["a"] * 5_001), "b", True, "reference has 5,001 words (limit 5,000)"),
    ("b", " ".join(["a"] * 5_001), True, "hypothesis has 5,001 words (limit 5,000)"),
    ("x" * 30_001, "y" + "x" * 28_999, True, "reference has 30,001 characters (limit 30,000)"),
    # counts that reach the difference in length are exact all the same: no note
    (" ".join(["a"] * 5_001), "a", False, None),
    ("x" * 30_001, "x" * 29_000, False, None),
    ("  " + "x" * 29_990 + "      ", "x", False, None),  # long only with the whitespace strip removes
])
def test_which_utterances_are_windowed_and_the_reason(ref, hyp, windowed, reason):
    out = align_corpus(["the cat", ref], ["the bat", hyp], workers=1)
    assert [u.utt for u in out.long_utterances] == ([1] if windowed else [])
    if windowed:
        assert out.long_utterances[0].reason().startswith(reason + ": aligned in windows of 1,000 words")
    assert out.counts["sub"][0] == 1  # the short neighbour is unaffected


@pytest.mark.parametrize("n, m", [(10_000, 10_000), (10_000, 3), (3, 10_000), (25_000, 9_000), (1_001, 1_000)])
@pytest.mark.parametrize("anchor", ["none", "lowest", "highest"])
def test_window_cuts_cover_both_sequences_in_bounded_pieces(n, m, anchor):
    pick = {"none": lambda i, j, lo, hi: None, "lowest": lambda i, j, lo, hi: lo,
            "highest": lambda i, j, lo, hi: hi}[anchor]
    cuts = windows.window_cuts(n, m, 1_000, pick, 64)
    assert cuts[0] == (0, 0) and cuts[-1] == (n, m)
    for (i0, j0), (i1, j1) in zip(cuts, cuts[1:]):
        assert 0 <= i1 - i0 <= 1_000 and 0 <= j1 - j0 <= 1_000
        assert (i1, j1) != (i0, j0)


def test_align_words_beyond_the_limit_shows_the_text_with_a_note():
    long_ref = " ".join(["a"] * 5_001)
    [entry] = align_words(long_ref, "a b")
    assert entry == AlignedWord("unaligned", None, "a b", note=entry.note)
    assert entry.note.startswith("No word diff: the reference has 5,001 words (at most 5,000")
    at_limit = align_words(" ".join(["a"] * 5_000), "a")
    assert [w.op for w in at_limit] == ["equal"] + ["del"] * 4_999


@pytest.mark.parametrize("workers", [1, 2])
def test_a_missing_hypothesis_left_unscored_is_not_aligned(workers):
    """skip_missing (the dataset's build: such rows are unscored): a missing hypothesis costs no
    alignment (against "", a 50 MB reference took 41 s and 3.8 GB) and gives no error rows; the
    reference's words and characters are counted as the alignment counts them."""
    long_ref = " ".join(f"w{i % 97}" for i in range(40_000))  # past the exact-alignment limits
    # 40,004 rows: two workers align them in chunks (MIN_PAIRS_PER_PROCESS); the long line once
    refs = pd.Series(["a b c", "  d  e ", "f", ""] * 10_000 + [long_ref] * 2 + ["g h"] * 2, dtype=STRING)
    hyps = pd.Series(["a x c", pd.NA, "f", pd.NA] * 10_000 + [None, "zz"] + ["g", pd.NA], dtype=STRING)
    plain = align_corpus(refs, hyps, workers=workers)
    skipped = align_corpus(refs, hyps, workers=workers, skip_missing=True)
    missing = hyps.isna().to_numpy()
    for key in ("num_words", "num_chars"):
        np.testing.assert_array_equal(skipped.counts[key], plain.counts[key])
    for key in ("sub", "del", "ins", "hits", "char_edits"):  # the scored rows: as before
        np.testing.assert_array_equal(skipped.counts[key][~missing], plain.counts[key][~missing])
    assert skipped.counts["del"][missing].sum() == 0 and skipped.counts["char_edits"][missing].sum() == 0
    assert set(skipped.errors["utt"]) == set(np.flatnonzero(~missing)) & set(plain.errors["utt"])
    assert [u.utt for u in skipped.long_utterances] == [40_001]  # the scored one
    # aligned against "", the missing one has every word deleted: exact, so no note either
    assert [u.utt for u in plain.long_utterances] == [40_001]
