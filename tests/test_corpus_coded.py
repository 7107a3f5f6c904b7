"""align_corpus on Arrow/pandas strings (words split by Arrow once, aligned as one code point per
distinct word) gives what it gives on plain lists (each text split by str.split and aligned word
list by word list): the same counts, error rows, reference word counts and long-utterance notes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sde.metrics import corpus
from sde.metrics.windows import MAX_EXACT_CHARS, MAX_EXACT_WORDS

MISSING = None

CASES = {
    "equal texts": (["a b c", "x"], ["a b c", "x"]),
    "substitution, deletion, insertion": (["a b c d", "a b c", "a c"], ["a x c d", "a c", "a b c"]),
    "unicode whitespace splits words": (["x\u2003y\u00a0 z", "tab\tsep\nnl"], ["x y z", "tab sep\u3000nl"]),
    "blank and empty texts": (["", "   ", "a b", ""], ["a b", "", "   ", ""]),
    "whitespace only differs: character edits, no word edits": (["a  b", " a b "], ["a b", "a b"]),
    # character edits are counted on texts stripped by Arrow where the lists path uses str.strip
    "unicode whitespace at the edges": (["\u3000a b\u2028", "\x1c\x1fa\x85", "\u200ba\u200b", "\ufeffab", "\u180ex y"],
                                        ["a b", "a", "a", "ab\u00a0", "x y\u180e"]),
    "missing hypothesis": (["a b", "c d e"], [MISSING, "c e"]),
    "missing reference": ([MISSING, "a"], ["a b", "a"]),
    "non-ascii words": (["héllo wörld 你好 😀", "😀 😀"], ["hello wörld 你好 😀", "😀"]),
    "reference over the word limit": ([" ".join(f"w{i % 50}" for i in range(MAX_EXACT_WORDS + 200)), "a"],
                                      [" ".join(f"w{i % 49}" for i in range(MAX_EXACT_WORDS + 100)), "b"]),
    "hypothesis over the character limit": (["abc def", "a"], ["abc " * (MAX_EXACT_CHARS // 4 + 10), "a"]),
    "reference over the character limit, hypothesis missing": (["abc " * (MAX_EXACT_CHARS // 4 + 10), "q"],
                                                                 [MISSING, "q"]),
    # characters, not bytes, are counted: "éé " is 3 characters in 5 bytes
    "two-byte characters at the limit: more bytes, not more characters": (
        [("éé " * MAX_EXACT_CHARS)[:MAX_EXACT_CHARS], "a"], [("ée " * MAX_EXACT_CHARS)[:MAX_EXACT_CHARS], "a"]),
    "two-byte characters one over the limit": (
        [("éé " * MAX_EXACT_CHARS)[:MAX_EXACT_CHARS + 1], "a"], [("éé " * MAX_EXACT_CHARS)[:MAX_EXACT_CHARS - 5], "b"]),
}


@pytest.mark.parametrize("text, longer", [
    ("a" * MAX_EXACT_CHARS, False), ("a" * (MAX_EXACT_CHARS + 1), True),
    ("😀" * MAX_EXACT_CHARS, False), ("😀" * (MAX_EXACT_CHARS + 1), True), (MISSING, False), ("", False)],
    ids=["ascii at the limit", "ascii over", "4-byte characters at the limit", "4-byte characters over", "missing", "empty"])
def test_a_text_is_long_by_its_characters_not_its_bytes(text: str | None, longer: bool) -> None:
    texts = pa.array(["short", text, "also short"], type=pa.large_string())
    assert corpus._longer_than(texts, MAX_EXACT_CHARS).tolist() == [False, longer, False]


def _word(i: int) -> str:
    return np.base_repr(i, 36).lower()


# More distinct words than code points below the surrogates (U+D800), in few utterances (each under
# the exact limits): their codes skip the surrogates.
PAST_SURROGATES = ([" ".join(_word(u * 100 + i) for i in range(100)) for u in range(600)],
                   [" ".join(_word(u * 100 + i) if i % 7 else "x" for i in range(98)) for u in range(600)])


def _as_list(texts: list) -> list:
    return list(texts)


def _as_series(texts: list) -> pd.Series:
    return pd.Series(pd.array(texts, dtype="string[pyarrow]"))


def _as_arrow(texts: list) -> pa.Array:
    return pa.array(texts, type=pa.string())


def _same(a: corpus.CorpusAlignment, b: corpus.CorpusAlignment) -> None:
    assert a.counts.keys() == b.counts.keys()
    for key in a.counts:
        np.testing.assert_array_equal(a.counts[key], b.counts[key], err_msg=key)
    pd.testing.assert_frame_equal(a.errors, b.errors)
    assert a.ref_word_counts == b.ref_word_counts
    assert a.long_utterances == b.long_utterances


@pytest.mark.parametrize("skip_missing", [True, False], ids=["missing skipped", "missing as empty"])
@pytest.mark.parametrize("convert", [_as_series, _as_arrow], ids=["pandas strings", "arrow strings"])
@pytest.mark.parametrize("refs,hyps", list(CASES.values()), ids=list(CASES))
def test_coded_alignment_equals_word_lists(refs: list, hyps: list, convert, skip_missing: bool) -> None:
    by_lists = corpus.align_corpus(_as_list(refs), _as_list(hyps), workers=1, count_ref_words=True,
                                   skip_missing=skip_missing)
    coded = corpus.align_corpus(convert(refs), convert(hyps), workers=1, count_ref_words=True,
                                skip_missing=skip_missing)
    _same(coded, by_lists)


def test_words_coded_past_the_surrogates() -> None:
    refs, hyps = PAST_SURROGATES
    assert len({w for text in refs + hyps for w in text.split()}) > 0xD800
    _same(corpus.align_corpus(_as_series(refs), _as_series(hyps), workers=1, count_ref_words=True),
          corpus.align_corpus(refs, hyps, workers=1, count_ref_words=True))


def test_coded_alignment_is_used_for_strings() -> None:
    refs, hyps = CASES["substitution, deletion, insertion"]
    got = corpus._aligned_range(_as_series(refs), _as_series(hyps), 0, len(refs), True, True)
    assert isinstance(got[8], pa.Array), "Arrow strings take the coded path (its error words are an Arrow array)"


def test_too_many_distinct_words_fall_back_to_word_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    refs, hyps = [f"a{i} b{i}" for i in range(50)], [f"a{i} c{i}" for i in range(50)]
    expected = corpus.align_corpus(refs, hyps, workers=1, count_ref_words=True)
    monkeypatch.setattr(corpus, "_MAX_CODED_WORDS", 10)  # the chunk has 150 distinct words
    assert corpus._align_coded(_as_arrow(refs).cast(pa.large_string()), _as_arrow(hyps).cast(pa.large_string()),
                               0, True, True) is None
    _same(corpus.align_corpus(_as_series(refs), _as_series(hyps), workers=1, count_ref_words=True), expected)


# Whitespace to str.strip(), and look-alikes that are not (zero-width, BOM, Mongolian vowel separator).
STRIP_EDGES = [chr(c) for c in range(0x110000) if chr(c).isspace()] + ["\u200b", "\u200c", "\ufeff", "\u180e", "\x00"]


@pytest.mark.parametrize("edge", STRIP_EDGES, ids=[f"U+{ord(c):04X}" for c in STRIP_EDGES])
def test_arrow_trim_is_str_strip(edge: str) -> None:
    """_align_coded strips texts with utf8_trim_whitespace before counting character edits (and
    characters): it must trim exactly what str.strip() does."""
    texts = [f"{edge}a{edge}", f"{edge}{edge}", f"a{edge}b", edge]
    trimmed = pc.utf8_trim_whitespace(pa.array(texts, type=pa.large_string())).to_pylist()
    assert trimmed == [t.strip() for t in texts]
