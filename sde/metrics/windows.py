"""Long utterances: texts over the exact limits aligned in windows cut where both texts agree
(see sde.metrics). Time and memory are linear in the text; the result is a real alignment.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pyarrow as pa
from rapidfuzz.distance import Levenshtein

from sde.text import split_words

OPS: tuple[str, ...] = ("sub", "del", "ins")  # category order of CorpusAlignment.errors["op"]
SUB, DEL, INS = 0, 1, 2  # the codes of OPS


# Longest texts aligned exactly. At these sizes one utterance costs at most ~10 ms (words) and
# ~30 ms (characters, completely different texts); half an hour of speech is ~5,000 words.
MAX_EXACT_WORDS = 5_000
MAX_EXACT_CHARS = 30_000
# Pieces of the windowed alignment of longer texts. Its cost is ~ window x length, so smaller pieces
# are cheaper (~0.4 us a word, ~0.15 us a character) but have more cuts where it may be inexact.
WINDOW_WORDS = 1_000
WINDOW_CHARS = 2_000
# A cut is placed before this many equal items in a row in both texts (an "anchor"), searched for
# within a quarter window of the proportional position.
_ANCHOR_WORDS = 4
_ANCHOR_CHARS = 16
# Starts of a run tried per cut, when an error hides the first (a character error hides 16 starts).
_ANCHOR_TRIES_WORDS = 64
_ANCHOR_TRIES_CHARS = 256


OP_CODES = {"replace": SUB, "delete": DEL, "insert": INS}


FindAnchor = Callable[[int, int, int, int], "int | None"]


def window_cuts(n: int, m: int, window: int, find_anchor: FindAnchor, tries: int) -> list[tuple[int, int]]:
    """Cut points (i, j) from (0, 0) to (n, m): consecutive pieces a[i0:i1], b[j0:j1] of two
    sequences of lengths n and m, each at most ``window`` long on both sides.

    The longer remainder advances by three quarters of a window (less ``tries``), the other
    proportionally; then ``find_anchor(i, j, lo, hi)`` may move j by up to a quarter window either
    way, to a position in [lo, hi] where both sequences agree from i on; when they do not agree
    anywhere there, the next of ``tries`` starts i + 1, i + 2... is tried.
    """
    reach = window // 4
    stride = window - reach - tries
    cuts = [(0, 0)]
    i = j = 0
    while n - i > window or m - j > window:
        if n - i >= m - j:
            step_a, step_b = stride, (m - j) * stride // (n - i)
        else:
            step_a, step_b = (n - i) * stride // (m - j), stride
        cut_i, cut_j = i + step_a, j + step_b
        if step_a:  # (without progress in a, an anchor could stop progress in b)
            # An error inside the run at cut_i hides the anchor: try the next few starts in a.
            for shift in range(min(tries, n - cut_i)):
                anchor = find_anchor(cut_i + shift, cut_j, max(j, cut_j - reach), min(m, cut_j + reach))
                if anchor is not None:
                    cut_i, cut_j = cut_i + shift, anchor
                    break
        cuts.append((cut_i, cut_j))
        i, j = cut_i, cut_j
    cuts.append((n, m))
    return cuts


def _nearest(candidates: list[int], target: int) -> int | None:
    return min(candidates, key=lambda p: abs(p - target)) if candidates else None


def _word_taker(words: list[str] | pa.Array) -> Callable[[int, int], list[str]]:
    if isinstance(words, list):
        return lambda lo, hi: words[lo:hi]
    return lambda lo, hi: words.slice(lo, max(hi - lo, 0)).to_pylist()


def _windowed_word_errors(ref_words: list[str] | pa.Array,
                          hyp_words: list[str] | pa.Array) -> list[tuple[int, str, str]]:
    """(op code, ref word, hyp word) of every word error, aligning window by window."""
    take_ref, take_hyp = _word_taker(ref_words), _word_taker(hyp_words)

    def find_anchor(i: int, j: int, lo: int, hi: int) -> int | None:
        key = take_ref(i, i + _ANCHOR_WORDS)
        if len(key) < _ANCHOR_WORDS:
            return None
        region = take_hyp(lo, hi + _ANCHOR_WORDS)
        found, p = [], -1
        while True:
            try:
                p = region.index(key[0], p + 1, hi - lo + 1)
            except ValueError:
                break
            if region[p:p + _ANCHOR_WORDS] == key:
                found.append(lo + p)
        return _nearest(found, j)

    errors: list[tuple[int, str, str]] = []
    cuts = window_cuts(len(ref_words), len(hyp_words), WINDOW_WORDS, find_anchor, _ANCHOR_TRIES_WORDS)
    for (i0, j0), (i1, j1) in itertools.pairwise(cuts):
        a, b = take_ref(i0, i1), take_hyp(j0, j1)
        if a == b:
            continue
        for tag, ref_pos, hyp_pos in Levenshtein.editops(a, b).as_list():
            code = OP_CODES[tag]
            errors.append((code, a[ref_pos] if code != INS else "", b[hyp_pos] if code != DEL else ""))
    return errors


def _windowed_char_distance(ref: str, hyp: str) -> int:
    """Levenshtein distance of two long strings, window by window (an upper bound, see above)."""

    def find_anchor(i: int, j: int, lo: int, hi: int) -> int | None:
        key = ref[i:i + _ANCHOR_CHARS]
        if len(key) < _ANCHOR_CHARS:
            return None
        after = hyp.find(key, j, hi + _ANCHOR_CHARS)
        before = hyp.rfind(key, lo, j + _ANCHOR_CHARS)
        return _nearest([p for p in (after, before) if p >= 0], j)

    cuts = window_cuts(len(ref), len(hyp), WINDOW_CHARS, find_anchor, _ANCHOR_TRIES_CHARS)
    return sum(Levenshtein.distance(ref[i0:i1], hyp[j0:j1])
               for (i0, j0), (i1, j1) in itertools.pairwise(cuts))


def _words_of(text: str) -> list[str] | pa.Array:
    """``text.split()``; as one Arrow array when the text is long: a Python object per word would
    cost ~60 bytes each (a 50 MB line: ~500 MB)."""
    if len(text) <= MAX_EXACT_CHARS:
        return text.split()
    return split_words(pa.array([text], type=pa.large_string()))


def align_long(ref: str, hyp: str) -> tuple[list[tuple[int, str, str]], tuple[int, ...], tuple[int, ...]]:
    """An utterance over an exact limit: its errors as (op code, ref word, hyp word), its counts
    (sub, del, ins, words, char edits, chars: _align_chunk's order) and its sizes (reference and
    hypothesis words, then characters)."""
    ref_words, hyp_words = _words_of(ref), _words_of(hyp)
    n, m = len(ref_words), len(hyp_words)
    if n > MAX_EXACT_WORDS or m > MAX_EXACT_WORDS:
        errors = _windowed_word_errors(ref_words, hyp_words)
    else:
        a, b = _word_taker(ref_words)(0, n), _word_taker(hyp_words)(0, m)
        errors = [(OP_CODES[tag], a[i] if tag != "insert" else "", b[j] if tag != "delete" else "")
                  for tag, i, j in (Levenshtein.editops(a, b).as_list() if a != b else [])]
    ref_stripped, hyp_stripped = ref.strip(), hyp.strip()
    if len(ref_stripped) > MAX_EXACT_CHARS or len(hyp_stripped) > MAX_EXACT_CHARS:
        char_edits = _windowed_char_distance(ref_stripped, hyp_stripped)
    else:
        char_edits = Levenshtein.distance(ref_stripped, hyp_stripped)
    ops = [code for code, _, _ in errors]
    counts = (ops.count(SUB), ops.count(DEL), ops.count(INS), n, char_edits, len(ref_stripped))
    return errors, counts, (n, m, len(ref_stripped), len(hyp_stripped))


def is_windowed(ref_words: int, hyp_words: int, ref_chars: int, hyp_chars: int) -> bool:
    return max(ref_words, hyp_words) > MAX_EXACT_WORDS or max(ref_chars, hyp_chars) > MAX_EXACT_CHARS
