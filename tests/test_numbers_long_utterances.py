"""WER/CER of utterances past the exact-alignment limits (aligned in windows) against jiwer's exact
numbers, in the ways long-form ASR output really goes wrong: a hypothesis that stops early, a
skipped passage, a repeated (hallucinated) loop, junk before the speech, and CJK text (CER only)."""

from __future__ import annotations

import random

import jiwer
import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from sde.dataset import DatasetOptions, build_dataset
from sde.metrics import MAX_EXACT_WORDS, align_corpus, windows

VOCAB = [f"w{i}" for i in range(4000)]


def _zipf_words(n: int, seed: int) -> list[str]:
    """Words with a natural (Zipf) frequency: "the"-like words repeat, most are rare."""
    ranks = np.random.default_rng(seed).zipf(1.3, n)
    return [VOCAB[min(int(r), len(VOCAB)) - 1] for r in ranks]


def _noisy(words: list[str], rate: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for word in words:
        r = rng.random()
        if r < rate / 2:
            out.append(rng.choice(VOCAB))      # substitution
        elif r >= rate * 3 / 4:
            out.append(word)                   # else a deletion
        if rng.random() < rate / 4:
            out.append(rng.choice(VOCAB))      # insertion
    return out


REF = _zipf_words(12_000, 1)
CASES = {
    "stops early": _noisy(REF[:7_000], 0.1, 2),
    "skips a passage": _noisy(REF[:4_000] + REF[6_500:], 0.1, 3),
    "repeats a loop": _noisy(REF[:6_000] + REF[3_000:6_000] * 2 + REF[6_000:], 0.1, 4),
    "junk first": _zipf_words(1_500, 5) + _noisy(REF, 0.1, 6),
}


def _exact(ref: str, hyp: str) -> tuple[int, int]:
    """(word errors, character edits) of the exact alignment (jiwer's, and rapidfuzz's distance)."""
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, Levenshtein.distance(ref, hyp)


@pytest.mark.parametrize("case", list(CASES))
def test_long_utterance_counts_match_the_exact_alignment(case):
    ref, hyp = " ".join(REF), " ".join(CASES[case])
    assert len(REF) > MAX_EXACT_WORDS  # aligned in windows
    exact_words, exact_chars = _exact(ref, hyp)
    out = align_corpus([ref], [hyp], workers=1)
    c = {k: int(v[0]) for k, v in out.counts.items()}
    errors = c["sub"] + c["del"] + c["ins"]
    # a real alignment (never below the exact one), and within 1 % of it (characters: 3 %; this
    # text's common words make many chance matches of a few characters): before, cuts near the
    # proportional position missed the gap (stops early: 9,412 errors counted for 5,722)
    assert exact_words <= errors <= exact_words * 1.01
    assert exact_chars <= c["char_edits"] <= exact_chars * 1.03
    assert len(out.errors) == errors and c["hits"] == len(REF) - c["sub"] - c["del"]


@pytest.mark.parametrize("cut", ["stops early", "skips"])
def test_long_cjk_text_cer_matches_the_exact_distance(cut):
    rng = random.Random(7)
    chars = [chr(0x4E00 + rng.randrange(3000)) for _ in range(40_000)]  # one "word": CER only
    kept = chars[:25_000] if cut == "stops early" else chars[:10_000] + chars[14_000:]
    ref, hyp = "".join(chars), "".join(kept)
    out = align_corpus([ref], [hyp], workers=1)
    exact = Levenshtein.distance(ref, hyp)
    assert exact <= int(out.counts["char_edits"][0]) <= exact * 1.01


def test_summary_wer_of_a_truncated_long_transcript(write_manifest):
    """The corpus numbers a user reads (/api/summary, `sde stats --json`) for a long-form manifest."""
    short = {"audio_filepath": "a.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the cat sat"}
    long = {"audio_filepath": "b.wav", "duration": 3600.0, "text": " ".join(REF),
            "pred_text": " ".join(CASES["stops early"])}
    dataset = build_dataset(write_manifest([short, long]), DatasetOptions(), workers=1)
    words, chars = _exact(long["text"], long["pred_text"])
    summary = dataset.summary()["hypotheses"]["pred_text"]
    assert summary["wer"] == pytest.approx(100 * words / (len(REF) + 3), rel=0.01)
    assert summary["cer"] == pytest.approx(100 * chars / (len(long["text"]) + len(short["text"])), rel=0.03)


@pytest.mark.parametrize("seed", range(5))
def test_anchored_cuts_cover_both_texts_in_pieces_of_bounded_area(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(2_000, 30_000)), int(rng.integers(0, 30_000))
    size = int(rng.integers(0, 200))
    chain_i = np.unique(rng.integers(1, n, size))
    chain_j = np.unique(rng.integers(1, max(m, 2), len(chain_i)))
    chain_i = chain_i[:len(chain_j)]
    cuts = windows.anchored_cuts(n, m, 1_000, (chain_i, chain_j), lambda i, j, lo, hi: None, 64)
    assert cuts[0] == (0, 0) and cuts[-1] == (n, m)
    for (i0, j0), (i1, j1) in zip(cuts, cuts[1:]):
        assert i1 >= i0 and j1 >= j0 and (i1, j1) != (i0, j0)
        assert (i1 - i0 <= 1_000 and j1 - j0 <= 1_000) or (i1 - i0) * (j1 - j0) <= 1_000 ** 2


def test_no_slightly_higher_note_when_the_long_counts_are_exact(write_manifest):
    """A 12,000-word hypothesis equal to its reference, or one that only stops early, is aligned in
    windows but its counts reach the length difference, the least any alignment has: exact, so no
    warning says its WER "may be slightly higher"; a noisy one still gets it."""
    rows = [{"audio_filepath": f"{i}.wav", "duration": 3600.0, "text": " ".join(REF), "pred_text": hyp}
            for i, hyp in enumerate([" ".join(REF), " ".join(REF[:7_000]), " ".join(CASES["stops early"])])]
    dataset = build_dataset(write_manifest(rows), DatasetOptions(), workers=1)
    assert [w.line for w in dataset.warnings] == [3]
    assert "may be slightly higher" in dataset.warnings[0].reason
    assert dataset.utterances["del"].tolist()[:2] == [0, 5_000] and dataset.utterances["wer"].tolist()[0] == 0.0


def test_text_of_few_distinct_words_is_never_cut_worse_than_proportionally():
    """20 distinct words, a passage said twice, another skipped: chance anchors abound, and the
    chain through them once counted 4,548 errors for 2,613 (characters: 15,331 for 4,802)."""
    rng = random.Random(19)
    vocab = [f"w{i}" for i in range(20)]
    ref = [rng.choice(vocab) for _ in range(8_096)]
    hyp = list(ref)
    del hyp[6_367:6_367 + 2_115]
    hyp[3_583:3_583] = hyp[3_583:3_583 + 2_406]
    hyp[1_638:1_638] = [rng.choice(vocab) for _ in range(116)]
    hyp = [w if rng.random() > 0.05 else rng.choice(vocab) for w in hyp]
    ref_text, hyp_text = " ".join(ref), " ".join(hyp)
    exact_words, exact_chars = _exact(ref_text, hyp_text)
    c = {k: int(v[0]) for k, v in align_corpus([ref_text], [hyp_text], workers=1).counts.items()}
    assert exact_words <= c["sub"] + c["del"] + c["ins"] <= exact_words * 1.02
    assert exact_chars <= c["char_edits"] <= exact_chars * 1.05
