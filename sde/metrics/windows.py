"""Long utterances: texts over the exact limits aligned in windows cut where both texts agree
(see sde.metrics): at the anchors of :func:`anchor_chain` through :func:`anchored_cuts`, and where
the texts have no anchors, as :func:`window_cuts` cuts; where window_cuts' cuts alone align with
fewer edits, those (:func:`_cheaper`). Time and memory are linear in the text; the result is a
real alignment.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable

import numpy as np
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
# An anchor chosen as a cut, where it can be, starts a longer run of equal items (anchored_cuts).
_CONFIRM_WORDS = 12
_CONFIRM_CHARS = 48
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


# Anchors of the whole texts (anchor_chain): runs of _ANCHOR_* items of the reference, tried at
# every position up to this many positions (sparser beyond, still several per window).
_CHAIN_KEYS = 25_000
_HASH_CHUNK = 1 << 20  # items hashed at once (a 50 MB line: bounded memory)
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MAX_REPEATS = 4  # a run of b found more often than this is no anchor
_FILTER_SIZE = 1 << 20  # slots of the table that rules out most runs of b (a power of two)
_CONFIRM_TRIES = 64  # anchors tried per cut for one where the texts agree for longer

# ids of items[lo:hi] (uint64; equal items, equal ids), for the anchor chain
ItemIds = Callable[[int, int], np.ndarray]


def _kgram_hashes(ids: np.ndarray, k: int) -> np.ndarray:
    """A 64-bit polynomial hash of each run ids[t:t+k] (t = 0 .. len - k), Σ (id + 1)·M^(k-1-q)
    modulo 2^64 (numpy's wrap-around, as meant). Runs of 2L are made of two runs of L (h·M^L + h'),
    so a run of 16 costs 5 passes over the items, not 16."""
    if len(ids) < k:
        return np.zeros(0, dtype=np.uint64)
    h = ids + np.uint64(1)
    length = 1
    while length * 2 <= k:
        power = np.uint64(pow(int(_HASH_MULTIPLIER), length, 1 << 64))
        h = h[:len(h) - length] * power + h[length:]
        length *= 2
    for q in range(length, k):  # the rest of a k that is not a power of two, an item at a time
        h = h[:len(ids) - q] * _HASH_MULTIPLIER + (ids[q:] + np.uint64(1))
    return h


def _hashes_at(ids_of: ItemIds, size: int, k: int, starts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(positions, hashes) of the k-runs starting at ``starts`` (None: every position), a chunk at
    a time."""
    positions, hashes = [], []
    for lo in range(0, max(size - k + 1, 0), _HASH_CHUNK):
        hi = min(lo + _HASH_CHUNK, size - k + 1)
        h = _kgram_hashes(ids_of(lo, hi + k - 1), k)
        if starts is None:
            positions.append(np.arange(lo, hi, dtype=np.int64))
            hashes.append(h)
        else:
            at = starts[(starts >= lo) & (starts < hi)]
            positions.append(at)
            hashes.append(h[at - lo])
    if not positions:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    return np.concatenate(positions), np.concatenate(hashes)


def _at_most(hashes: np.ndarray, times: int) -> np.ndarray:
    """Per hash, whether it occurs at most ``times`` times."""
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    return counts[inverse] <= times


def anchor_chain(n: int, m: int, ids_a: ItemIds, ids_b: ItemIds, k: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (I, J), both increasing, where runs of ``k`` equal items start in both sequences
    (a unique run of a, taken every ``step`` positions, that occurs at most a few times in b): the
    longest chain of such matches in order (as patience diff chains unique lines), in runs
    (:func:`_supported`). A long stretch one text lacks (a truncated hypothesis, a skipped
    passage, a hallucinated loop) is lined up wherever it is: cuts placed near the proportional
    position only found it within a quarter window (a 10,000-word reference whose hypothesis
    stopped at 6,000 words had 9,412 errors counted for 4,000)."""
    starts = np.arange(0, max(n - k + 1, 0), step, dtype=np.int64)
    pos_a, hash_a = _hashes_at(ids_a, n, k, starts)
    keep = _at_most(hash_a, 1)
    pos_a, hash_a = pos_a[keep], hash_a[keep]
    order = np.argsort(hash_a)
    pos_a, hash_a = pos_a[order], hash_a[order]
    mask = np.uint64(_FILTER_SIZE - 1)
    seen = np.zeros(_FILTER_SIZE, dtype=bool)
    seen[hash_a & mask] = True
    found_j, found_h = [], []
    for lo in range(0, max(m - k + 1, 0), _HASH_CHUNK):
        hi = min(lo + _HASH_CHUNK, m - k + 1)
        h = _kgram_hashes(ids_b(lo, hi + k - 1), k)
        maybe = np.flatnonzero(seen[h & mask])  # a table lookup first: most runs of b are in no key
        at = np.minimum(np.searchsorted(hash_a, h[maybe]), max(len(hash_a) - 1, 0))
        hit = maybe[hash_a[at] == h[maybe]] if len(hash_a) else np.zeros(0, dtype=np.int64)
        found_j.append(hit + lo)
        found_h.append(h[hit])
    if not found_j:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    j_all, h_all = np.concatenate(found_j), np.concatenate(found_h)
    # a run b repeats a few times (a passage said, or hallucinated, twice) stays a candidate at
    # each place: the chain takes one; runs found everywhere ("the the the") do not
    keep = _at_most(h_all, _MAX_REPEATS)
    j_all, h_all = j_all[keep], h_all[keep]
    i_all = pos_a[np.searchsorted(hash_a, h_all)]
    order = np.lexsort((-j_all, i_all))  # by i, then j descending: at most one pair per i in the chain
    return _supported(*_increasing_chain(i_all[order], j_all[order]), max(4 * step, 64), k)


def _supported(i: np.ndarray, j: np.ndarray, reach: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The anchors of a chain in runs: consecutive anchors at most ``reach`` items apart on nearly
    the same diagonal (j - i), covering at least 4·k items of a. Where the texts agree anchors come
    in such runs; a short one is a chance match of unrelated text (common words), and a cut
    through it, far off the diagonal, costs errors that proportional cuts there do not."""
    if len(i) < 2:
        return i[:0], j[:0]
    near = (np.diff(i) <= reach) & (np.abs(np.diff(j - i)) <= max(reach // 8, 2))
    run = np.concatenate([[0], np.cumsum(~near)])
    first = np.flatnonzero(np.concatenate([[True], ~near]))
    last = np.concatenate([first[1:] - 1, [len(i) - 1]])
    covered = i[last] - i[first] + k
    keep = (covered >= 4 * k)[run]
    return i[keep], j[keep]


def _increasing_chain(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The longest subsequence of the pairs (sorted by i, then j descending) whose i and j both
    increase."""
    if len(i) < 2 or (np.all(np.diff(i) > 0) and np.all(np.diff(j) > 0)):
        return i, j  # already in order (similar texts): the whole of it
    tails: list[int] = []        # tails[L]: the smallest j ending a chain of length L + 1
    tail_at: list[int] = []      # the pair index of that tail
    previous = np.full(len(j), -1, dtype=np.int64)
    for t, value in enumerate(j.tolist()):
        length = bisect.bisect_left(tails, value)
        if length:
            previous[t] = tail_at[length - 1]
        if length == len(tails):
            tails.append(value)
            tail_at.append(t)
        else:
            tails[length] = value
            tail_at[length] = t
    chain = []
    t = tail_at[-1] if tail_at else -1
    while t >= 0:
        chain.append(t)
        t = int(previous[t])
    chain.reverse()
    return i[chain], j[chain]


def anchored_cuts(n: int, m: int, window: int, chain: tuple[np.ndarray, np.ndarray], find_anchor: FindAnchor,
                  tries: int, confirm: Callable[[int, int], bool] = lambda i, j: True) -> list[tuple[int, int]]:
    """Cut points from (0, 0) to (n, m) through the anchors of ``chain`` (:func:`anchor_chain`).

    From each cut, the next is the farthest anchor within 3/4 of a window on both sides. Past a
    longer stretch without anchors, a piece that is short on one side (n' x m' at most window², a long
    deletion or insertion: cheap to align exactly) goes to the next anchor whole; otherwise the
    stretch is cut as :func:`window_cuts` cuts (the texts differ there anyway)."""
    chain_i, chain_j = chain
    cuts = [(0, 0)]
    i = j = t = 0
    limit = window * window
    stride = window - window // 4
    while (n - i > window or m - j > window) and (n - i) * (m - j) > limit:
        while t < len(chain_i) and (chain_i[t] <= i or chain_j[t] <= j):
            t += 1
        # the farthest anchor within three quarters of a window on both sides (the cost of a piece
        # grows with its area: smaller pieces cost less per item, as in window_cuts)
        far = min(bisect.bisect_right(chain_i, i + stride, lo=t), bisect.bisect_right(chain_j, j + stride, lo=t)) - 1
        if far >= t:
            # rather one where the texts agree for longer: a chance match next to the true one (the
            # same common words a few items off the diagonal) would pull the cut off it
            for candidate in range(far, max(t, far - _CONFIRM_TRIES) - 1, -1):
                if confirm(int(chain_i[candidate]), int(chain_j[candidate])):
                    far = candidate
                    break
            i, j = int(chain_i[far]), int(chain_j[far])
            cuts.append((i, j))
            t = far + 1
            continue
        next_i, next_j = (int(chain_i[t]), int(chain_j[t])) if t < len(chain_i) else (n, m)
        if (next_i - i) * (next_j - j) > limit:
            cuts.extend(_gap_cuts(i, j, next_i, next_j, window, find_anchor, tries)[1:])
        else:
            cuts.append((next_i, next_j))
        i, j = next_i, next_j
    if cuts[-1] != (n, m):
        cuts.append((n, m))
    return cuts


def _gap_cuts(i0: int, j0: int, i1: int, j1: int, window: int, find_anchor: FindAnchor,
              tries: int) -> list[tuple[int, int]]:
    """:func:`window_cuts` of the stretch a[i0:i1], b[j0:j1], in the positions of the whole texts."""

    def shifted(a: int, b: int, lo: int, hi: int) -> int | None:
        found = find_anchor(a + i0, b + j0, lo + j0, hi + j0)
        return None if found is None else found - j0

    return [(a + i0, b + j0) for a, b in window_cuts(i1 - i0, j1 - j0, window, shifted, tries)]


# the edits of the piece a[i0:i1], b[j0:j1]
PieceCost = Callable[[int, int, int, int], int]


def _cheaper(cuts: list[tuple[int, int]], plain_cuts: Callable[[], list[tuple[int, int]]], piece_cost: PieceCost,
             least: int) -> tuple[list[tuple[int, int]], int]:
    """(cuts, edits): the anchored ``cuts``, or :func:`window_cuts`' where those cost fewer edits.

    Both give a real alignment, so the smaller count is the better one: in text of very few
    distinct words (a 20-word vocabulary) chance anchors can misplace cuts that proportional ones
    do not, and then the result is never worse than before the anchors. Not tried when the anchored
    cuts reach ``least`` (the length difference: no alignment has fewer edits)."""
    cost = _cost(cuts, piece_cost)
    if cost <= least:
        return cuts, cost
    other = plain_cuts()
    if other == cuts:
        return cuts, cost
    other_cost = _cost(other, piece_cost)
    return (other, other_cost) if other_cost < cost else (cuts, cost)


def _cost(cuts: list[tuple[int, int]], piece_cost: PieceCost) -> int:
    return sum(piece_cost(i0, j0, i1, j1) for (i0, j0), (i1, j1) in itertools.pairwise(cuts))


def _chain_step(size: int, window: int) -> int:
    """Every position is tried as an anchor up to _CHAIN_KEYS; beyond, every step-th (still
    several per window)."""
    return max(1, min(window // 8, -(-size // _CHAIN_KEYS)))


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
    n, m = len(ref_words), len(hyp_words)
    ids = _word_ids(ref_words, hyp_words)
    chain = anchor_chain(n, m, lambda lo, hi: ids[lo:min(hi, n)], lambda lo, hi: ids[n + lo:n + min(hi, m)],
                         _ANCHOR_WORDS, _chain_step(n, WINDOW_WORDS))
    cuts = _cheaper(
        anchored_cuts(n, m, WINDOW_WORDS, chain, find_anchor, _ANCHOR_TRIES_WORDS,
                      lambda i, j: take_ref(i, i + _CONFIRM_WORDS) == take_hyp(j, j + _CONFIRM_WORDS)),
        lambda: window_cuts(n, m, WINDOW_WORDS, find_anchor, _ANCHOR_TRIES_WORDS),
        lambda i0, j0, i1, j1: Levenshtein.distance(take_ref(i0, i1), take_hyp(j0, j1)), abs(n - m))[0]
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

    chain = anchor_chain(len(ref), len(hyp), lambda lo, hi: _code_points(ref, lo, hi),
                         lambda lo, hi: _code_points(hyp, lo, hi), _ANCHOR_CHARS, _chain_step(len(ref), WINDOW_CHARS))
    cuts = anchored_cuts(len(ref), len(hyp), WINDOW_CHARS, chain, find_anchor, _ANCHOR_TRIES_CHARS,
                         lambda i, j: ref[i:i + _CONFIRM_CHARS] == hyp[j:j + _CONFIRM_CHARS])
    return _cheaper(cuts, lambda: window_cuts(len(ref), len(hyp), WINDOW_CHARS, find_anchor, _ANCHOR_TRIES_CHARS),
                    lambda i0, j0, i1, j1: Levenshtein.distance(ref[i0:i1], hyp[j0:j1]), abs(len(ref) - len(hyp)))[1]


def _word_ids(ref_words: list[str] | pa.Array, hyp_words: list[str] | pa.Array) -> np.ndarray:
    """One id per word of ref then hyp (uint64; equal words, equal ids)."""
    parts = [w if isinstance(w, pa.Array) else pa.array(w, type=pa.large_string()) for w in (ref_words, hyp_words)]
    parts = [p.cast(pa.large_string()) for p in parts]
    indices = pa.concat_arrays(parts).dictionary_encode().indices
    return indices.to_numpy(zero_copy_only=False).astype(np.uint64)


def _code_points(text: str, lo: int, hi: int) -> np.ndarray:
    return np.frombuffer(text[lo:hi].encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)


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
