"""Word/character alignment and the metrics of DESIGN.md ("Metrics").

Two paths compute the same numbers:

- ``align_corpus``: the bulk path used at load time (up to 1M utterances). It calls rapidfuzz's
  Levenshtein directly (jiwer's own engine) on whitespace-split word lists and on stripped
  strings, skipping jiwer's per-call overhead, and splits the work over forked processes.
- ``align_words``: one utterance through ``jiwer.process_words`` (the inspector's diff).

Agreement with jiwer 4 (tests check both, pair by pair, against jiwer):

* Words. jiwer's default word transform collapses runs of >= 2 whitespace characters to one space,
  strips, then splits on " " only, so a *single* tab/newline/NBSP between two words stays inside
  one jiwer "word". DESIGN.md says words = whitespace split, so we use ``str.split()``: S, D, I and
  hits equal ``jiwer.process_words(" ".join(ref.split()), " ".join(hyp.split()))``, which is
  ``jiwer.process_words(ref, hyp)`` whenever words are separated by spaces (or runs of any
  whitespace). jiwer derives S/D/I/hits from ``Levenshtein.opcodes`` on integer word ids; opcodes
  are built from ``Levenshtein.editops``, and rapidfuzz's alignment depends only on which
  elements are equal, so ``editops`` on the word lists gives the same split of the same distance.
* Characters. jiwer's default character transform only strips leading/trailing whitespace
  (``str.strip()``); repeated spaces, tabs etc. inside the string are kept and count as
  characters. So ``char_edits = Levenshtein.distance(ref.strip(), hyp.strip())`` and
  ``num_chars = len(ref.strip())``: our CER equals ``jiwer.cer(ref, hyp)`` for every non-empty
  reference, and for a manifest without leading/trailing whitespace C is NeMo SDE's ``len(text)``.

Long utterances. Exact Levenshtein costs time ~ length² per utterance: one 330,000-word line took
minutes. An utterance whose reference or hypothesis has more than ``MAX_EXACT_WORDS`` words or
``MAX_EXACT_CHARS`` characters is aligned in windows instead: both texts are cut into consecutive
pieces of at most ``WINDOW_WORDS`` words (``WINDOW_CHARS`` characters for CER), each cut placed
where a run of equal words (characters) lines the two texts up, else proportionally; each pair of
pieces is aligned exactly. Time and memory are linear in the text. The pieces concatenate to the
whole texts, so the result is a real alignment: its error counts are never below the exact ones,
and equal to them unless an optimal alignment crosses a cut. It is not skipped, so every corpus sum
keeps the utterance. ``CorpusAlignment.long_utterances`` lists these utterances (the app shows one
warning per utterance). The inspector's ``align_words`` gives no word diff beyond ``MAX_EXACT_WORDS``.
"""

from __future__ import annotations

import gc
import itertools
import math
import multiprocessing
import multiprocessing.pool
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz.distance import Levenshtein

from sde.text import split_words, to_arrow_strings

__all__ = [
    "COUNT_KEYS",
    "MAX_EXACT_CHARS",
    "MAX_EXACT_WORDS",
    "OPS",
    "AlignedWord",
    "CorpusAlignment",
    "LongUtterance",
    "align_corpus",
    "align_words",
    "corpus_rates",
    "mean_word_accuracy",
    "utterance_rates",
    "word_counts",
    "word_hits",
]

COUNT_KEYS: tuple[str, ...] = (
    "sub",
    "del",
    "ins",
    "hits",
    "char_edits",
    "num_words",
    "num_chars",
)
OPS: tuple[str, ...] = ("sub", "del", "ins")  # category order of CorpusAlignment.errors["op"]
_SUB, _DEL, _INS = 0, 1, 2

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

# Below this many pairs forking costs more than it saves.
_MIN_PAIRS_PER_PROCESS = 20_000
_CHUNKS_PER_WORKER = 4  # several chunks per worker even out uneven utterance lengths

_STRING_DTYPE = pd.StringDtype("pyarrow")


@dataclass
class CorpusAlignment:
    """Per-utterance counts and the word errors of one hypothesis against the references.

    ``counts``: keys of ``COUNT_KEYS``, int64 arrays with one value per utterance.
    ``errors``: one row per word error, in utterance then alignment order; columns ``utt``
    (int64 id), ``op`` (category "sub"/"del"/"ins"), ``ref`` (string[pyarrow], <NA> for ins),
    ``hyp`` (string[pyarrow], <NA> for del).
    """

    counts: dict[str, np.ndarray]
    errors: pd.DataFrame
    # Occurrences of each reference word, when asked for: counted where the words are split anyway,
    # which is far cheaper than splitting every reference a second time for the vocabulary.
    ref_word_counts: dict[str, int] | None = None
    # Utterances over the exact-alignment limits, aligned in windows (see the module docstring).
    long_utterances: list[LongUtterance] = field(default_factory=list)


@dataclass(frozen=True)
class LongUtterance:
    """An utterance aligned in windows: its sizes, and ``reason()``, the note users see."""

    utt: int
    ref_words: int
    hyp_words: int
    ref_chars: int
    hyp_chars: int

    def reason(self) -> str:
        sizes = []
        for side, words, chars in (("reference", self.ref_words, self.ref_chars),
                                   ("hypothesis", self.hyp_words, self.hyp_chars)):
            if words > MAX_EXACT_WORDS:
                sizes.append(f"{side} has {words:,} words (limit {MAX_EXACT_WORDS:,})")
            elif chars > MAX_EXACT_CHARS:
                sizes.append(f"{side} has {chars:,} characters (limit {MAX_EXACT_CHARS:,})")
        return (f"{' and '.join(sizes)}: aligned in windows of {WINDOW_WORDS:,} words and "
                f"{WINDOW_CHARS:,} characters, not exactly; its WER/CER may be slightly higher than "
                "an exact alignment's")


@dataclass(frozen=True)
class AlignedWord:
    """One position of a word alignment: ``op`` is "equal", "sub", "del" or "ins".

    For texts too long to diff (``MAX_EXACT_WORDS``) the alignment is one ``AlignedWord`` with op
    "unaligned", ``hyp`` the whole hypothesis and ``note`` saying why.
    """

    op: str
    ref: str | None
    hyp: str | None
    note: str | None = None


# --- bulk alignment ------------------------------------------------------------------------------

# The inputs of the running align_corpus, read by forked workers (fork shares them copy-on-write,
# so the texts are never pickled to the workers).
_SHARED: tuple[Any, Any] | None = None


def _coerce_text(value: Any) -> str:
    """A missing value (None, <NA>, NaN) is an empty transcript; anything else is its str."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def _slice_texts(texts: Any, lo: int, hi: int) -> list:
    if isinstance(texts, pd.Series):
        return texts.iloc[lo:hi].tolist()
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return texts.slice(lo, hi - lo).to_pylist()
    if isinstance(texts, np.ndarray):
        return texts[lo:hi].tolist()
    return list(texts[lo:hi])


# --- long utterances: windowed alignment ---------------------------------------------------------

_OP_CODES = {"replace": _SUB, "delete": _DEL, "insert": _INS}
FindAnchor = Callable[[int, int, int, int], "int | None"]


def _window_cuts(n: int, m: int, window: int, find_anchor: FindAnchor, tries: int) -> list[tuple[int, int]]:
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
    cuts = _window_cuts(len(ref_words), len(hyp_words), WINDOW_WORDS, find_anchor, _ANCHOR_TRIES_WORDS)
    for (i0, j0), (i1, j1) in itertools.pairwise(cuts):
        a, b = take_ref(i0, i1), take_hyp(j0, j1)
        if a == b:
            continue
        for tag, ref_pos, hyp_pos in Levenshtein.editops(a, b).as_list():
            code = _OP_CODES[tag]
            errors.append((code, a[ref_pos] if code != _INS else "", b[hyp_pos] if code != _DEL else ""))
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

    cuts = _window_cuts(len(ref), len(hyp), WINDOW_CHARS, find_anchor, _ANCHOR_TRIES_CHARS)
    return sum(Levenshtein.distance(ref[i0:i1], hyp[j0:j1])
               for (i0, j0), (i1, j1) in itertools.pairwise(cuts))


def _words_of(text: str) -> list[str] | pa.Array:
    """``text.split()``; as one Arrow array when the text is long: a Python object per word would
    cost ~60 bytes each (a 50 MB line: ~500 MB)."""
    if len(text) <= MAX_EXACT_CHARS:
        return text.split()
    return split_words(pa.array([text], type=pa.large_string()))


def _align_long(ref: str, hyp: str) -> tuple[list[tuple[int, str, str]], tuple[int, ...], tuple[int, ...]]:
    """An utterance over an exact limit: its errors as (op code, ref word, hyp word), its counts
    (sub, del, ins, words, char edits, chars: _align_chunk's order) and its sizes (reference and
    hypothesis words, then characters)."""
    ref_words, hyp_words = _words_of(ref), _words_of(hyp)
    n, m = len(ref_words), len(hyp_words)
    if n > MAX_EXACT_WORDS or m > MAX_EXACT_WORDS:
        errors = _windowed_word_errors(ref_words, hyp_words)
    else:
        a, b = _word_taker(ref_words)(0, n), _word_taker(hyp_words)(0, m)
        errors = [(_OP_CODES[tag], a[i] if tag != "insert" else "", b[j] if tag != "delete" else "")
                  for tag, i, j in (Levenshtein.editops(a, b).as_list() if a != b else [])]
    ref_stripped, hyp_stripped = ref.strip(), hyp.strip()
    if len(ref_stripped) > MAX_EXACT_CHARS or len(hyp_stripped) > MAX_EXACT_CHARS:
        char_edits = _windowed_char_distance(ref_stripped, hyp_stripped)
    else:
        char_edits = Levenshtein.distance(ref_stripped, hyp_stripped)
    ops = [code for code, _, _ in errors]
    counts = (ops.count(_SUB), ops.count(_DEL), ops.count(_INS), n, char_edits, len(ref_stripped))
    return errors, counts, (n, m, len(ref_stripped), len(hyp_stripped))


def _windowed(ref_words: int, hyp_words: int, ref_chars: int, hyp_chars: int) -> bool:
    return max(ref_words, hyp_words) > MAX_EXACT_WORDS or max(ref_chars, hyp_chars) > MAX_EXACT_CHARS


# --- bulk alignment: the loop --------------------------------------------------------------------


def _align_chunk(refs: list, hyps: list, base: int) -> tuple:
    """Align refs[i] with hyps[i]; utterance ids start at ``base``.

    Returns the seven count lists as int64 arrays, then the errors: utt ids, op codes, and the
    ref/hyp words each joined with "\\n" ("" where absent). Words never contain whitespace, so
    the join is lossless, and one string pickles back from a worker far faster than a list. Last,
    the (utt, ref words, hyp words, ref chars, hyp chars) of the utterances aligned in windows.
    """
    editops = Levenshtein.editops
    distance = Levenshtein.distance
    n_sub: list[int] = []
    n_del: list[int] = []
    n_ins: list[int] = []
    n_words: list[int] = []
    n_chars: list[int] = []
    n_char_edits: list[int] = []
    err_utt: list[int] = []
    err_op: list[int] = []
    err_ref: list[str] = []
    err_hyp: list[str] = []
    long_utts: list[tuple] = []
    per_utterance = (n_sub, n_del, n_ins, n_words, n_char_edits, n_chars)
    add_utt, add_op, add_ref, add_hyp = (
        err_utt.append,
        err_op.append,
        err_ref.append,
        err_hyp.append,
    )

    # Millions of short-lived lists would trigger the cyclic GC over and over for nothing (no
    # cycles are created here); pausing it makes this loop ~30% faster.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for offset, (ref, hyp) in enumerate(zip(refs, hyps)):
            if type(ref) is not str:
                ref = _coerce_text(ref)
            if type(hyp) is not str:
                hyp = _coerce_text(hyp)
            # Long texts are measured before any split: a 50 MB text is never one Python list.
            short = len(ref) <= MAX_EXACT_CHARS and len(hyp) <= MAX_EXACT_CHARS
            if short:
                ref_words = ref.split()
                hyp_words = hyp.split()
            if not short or len(ref_words) > MAX_EXACT_WORDS or len(hyp_words) > MAX_EXACT_WORDS:
                utt = base + offset
                errors, counts, sizes = _align_long(ref, hyp)
                for code, ref_word, hyp_word in errors:
                    add_utt(utt)
                    add_op(code)
                    add_ref(ref_word)
                    add_hyp(hyp_word)
                for values, value in zip(per_utterance, counts):
                    values.append(value)
                if _windowed(*sizes):
                    long_utts.append((utt, *sizes))
                continue
            subs = dels = inss = 0
            if ref_words != hyp_words:
                utt = base + offset
                for tag, ref_pos, hyp_pos in editops(ref_words, hyp_words).as_list():
                    add_utt(utt)
                    if tag == "replace":
                        subs += 1
                        add_op(_SUB)
                        add_ref(ref_words[ref_pos])
                        add_hyp(hyp_words[hyp_pos])
                    elif tag == "delete":
                        dels += 1
                        add_op(_DEL)
                        add_ref(ref_words[ref_pos])
                        add_hyp("")
                    else:  # "insert"
                        inss += 1
                        add_op(_INS)
                        add_ref("")
                        add_hyp(hyp_words[hyp_pos])
            n_sub.append(subs)
            n_del.append(dels)
            n_ins.append(inss)
            n_words.append(len(ref_words))
            if ref == hyp:
                n_char_edits.append(0)
                n_chars.append(len(ref.strip()))
            else:
                ref_stripped = ref.strip()
                n_char_edits.append(distance(ref_stripped, hyp.strip()))
                n_chars.append(len(ref_stripped))
    finally:
        if gc_was_enabled:
            gc.enable()

    def as_int64(values: list[int]) -> np.ndarray:
        return np.array(values, dtype=np.int64)

    return (
        as_int64(n_sub),
        as_int64(n_del),
        as_int64(n_ins),
        as_int64(n_char_edits),
        as_int64(n_words),
        as_int64(n_chars),
        as_int64(err_utt),
        np.array(err_op, dtype=np.int8),
        "\n".join(err_ref),
        "\n".join(err_hyp),
        long_utts,
    )


def _align_range(bounds: tuple[int, int]) -> tuple:
    """Worker entry point: align the pairs [lo, hi) of the shared inputs."""
    lo, hi = bounds
    assert _SHARED is not None, "align_corpus inputs are not shared with this process"
    refs, hyps, count_words = _SHARED
    counted = _count_words_range(refs, lo, hi) if count_words else None
    return (*_align_chunk(_slice_texts(refs, lo, hi), _slice_texts(hyps, lo, hi), lo), counted)


def _count_words_range(texts: Any, lo: int, hi: int) -> pa.Table:
    """(word, count) of the references [lo, hi), with Arrow: ~10x cheaper than a Python Counter."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        part = texts.slice(lo, hi - lo)
    elif isinstance(texts, pd.Series):
        part = texts.iloc[lo:hi]
    else:
        part = list(texts[lo:hi])
    counts = pc.value_counts(split_words(to_arrow_strings(part)))
    return pa.table({"word": counts.field(0), "count": counts.field(1)})


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _worker_signals() -> None:
    """Pool worker start-up: Ctrl-C reaches the whole process group, but only the parent should
    react (it terminates the pool); a worker's own KeyboardInterrupt printed a traceback. SIGTERM
    gets its default action back (the parent's handler unwinds, a worker just ends)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by _start_pool


def _start_pool(context: multiprocessing.context.BaseContext, processes: int) -> multiprocessing.pool.Pool:
    """A pool whose workers ignore Ctrl-C. The stop signals stay blocked while the workers are
    forked (they inherit the mask), so one landing before a worker's initializer ran waits and is
    then ignored there, while the parent receives it as soon as the pool exists."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return context.Pool(processes, initializer=_worker_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _fork_context() -> multiprocessing.context.BaseContext | None:
    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform (Windows): align in this process
        return None


def align_corpus(
    refs: Sequence[str], hyps: Sequence[str], workers: int = 2, count_ref_words: bool = False
) -> CorpusAlignment:
    """Align every reference with its hypothesis: per-utterance counts and the word errors.

    ``refs``/``hyps``: equal-length sequences of str (lists, pandas Series or Arrow arrays;
    missing values count as ""). ``workers``: processes to use (forked, each aligning chunks of
    the pairs); 1 aligns in this process. Small inputs are always aligned in this process.
    ``count_ref_words``: also count reference word occurrences (``ref_word_counts``).

    Empty references need no special case here: their words all count as insertions and
    ``utterance_rates``/``corpus_rates`` apply the empty-reference rule.
    """
    n = len(refs)
    if len(hyps) != n:
        raise ValueError(f"align_corpus: {n} references but {len(hyps)} hypotheses")
    workers = max(1, int(workers))
    processes = min(workers, n // _MIN_PAIRS_PER_PROCESS)
    context = _fork_context() if processes > 1 else None

    if context is None:
        counted = _count_words_range(refs, 0, n) if count_ref_words else None
        parts = [(*_align_chunk(_slice_texts(refs, 0, n), _slice_texts(hyps, 0, n), 0), counted)]
    else:
        global _SHARED
        n_chunks = processes * _CHUNKS_PER_WORKER
        edges = np.linspace(0, n, n_chunks + 1).astype(int)
        ranges = [(int(lo), int(hi)) for lo, hi in itertools.pairwise(edges) if hi > lo]
        _SHARED = (refs, hyps, count_ref_words)
        try:
            # On any exception (KeyboardInterrupt, SystemExit from SIGTERM) leaving the block
            # terminates the workers: none outlives the interrupted load.
            with _start_pool(context, processes) as pool:
                parts = pool.map(_align_range, ranges, chunksize=1)
        finally:
            _SHARED = None
    return _assemble(parts, n)


def _assemble(parts: list[tuple], n: int) -> CorpusAlignment:
    def cat(i: int, dtype: type) -> np.ndarray:
        arrays = [p[i] for p in parts]
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)

    sub, dele, ins, char_edits, num_words, num_chars = (cat(i, np.int64) for i in range(6))
    counts = {
        "sub": sub,
        "del": dele,
        "ins": ins,
        "hits": num_words - sub - dele,
        "char_edits": char_edits,
        "num_words": num_words,
        "num_chars": num_chars,
    }
    assert len(sub) == n

    utt = cat(6, np.int64)
    op = cat(7, np.int8)
    # Split the joined words with Arrow: millions of error words never become Python objects.
    ref_parts = [_split_joined(p[8]) for p in parts if len(p[6])]
    hyp_parts = [_split_joined(p[9]) for p in parts if len(p[6])]
    errors = pd.DataFrame(
        {
            "utt": utt,
            "op": pd.Categorical.from_codes(op, categories=list(OPS)),
            "ref": _string_column(ref_parts, op == _INS),
            "hyp": _string_column(hyp_parts, op == _DEL),
        }
    )
    word_counts_total: dict[str, int] | None = None
    if parts and parts[0][11] is not None:
        merged = pa.concat_tables([p[11] for p in parts]).group_by("word").aggregate([("count", "sum")])
        word_counts_total = dict(zip(merged["word"].to_pylist(), merged["count_sum"].to_pylist()))
    long_utterances = [LongUtterance(*fields) for p in parts for fields in p[10]]
    return CorpusAlignment(counts=counts, errors=errors, ref_word_counts=word_counts_total,
                           long_utterances=long_utterances)


def _split_joined(joined: str) -> pa.Array:
    return pc.split_pattern(pa.array([joined], type=pa.large_string()), "\n").flatten()


def _string_column(parts: list[pa.Array], missing: np.ndarray) -> pd.arrays.ArrowStringArray:
    """Concatenated words; positions in ``missing`` (the absent side of an ins/del) become <NA>."""
    words = pa.concat_arrays(parts) if parts else pa.array([], type=pa.large_string())
    if len(words):
        words = pc.if_else(pa.array(missing), pa.scalar(None, pa.large_string()), words)
    return pd.array(words, dtype=_STRING_DTYPE)


# --- rates -------------------------------------------------------------------------------------


def _rate(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """100·num/den, and the empty-reference rule where den == 0: 0 if num == 0 else 100."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    empty_rate = np.where(numerator > 0, 100.0, 0.0)
    return np.where(denominator > 0, 100.0 * numerator / safe, empty_rate)


def utterance_rates(counts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-utterance ``wer``, ``cer``, ``wmr`` (percent, float64) from ``align_corpus`` counts.

    Empty reference (N = 0, hence C = 0): wer and cer are 0 when the hypothesis is empty too,
    else 100. wmr is 0 for an empty reference (no reference word can be matched; this is also
    what NeMo SDE's hits/1e-9 gives), never NaN.
    """
    errors = np.asarray(counts["sub"]) + np.asarray(counts["del"]) + np.asarray(counts["ins"])
    return {
        "wer": _rate(errors, counts["num_words"]),
        "cer": _rate(counts["char_edits"], counts["num_chars"]),
        "wmr": _rate(counts["hits"], counts["num_words"]),  # hits = 0 when N = 0 → 0
    }


def corpus_rates(
    counts: Mapping[str, np.ndarray], mask: np.ndarray | None = None
) -> dict[str, float]:
    """Corpus ``wer``, ``cer``, ``wmr`` in percent: 100·ΣE/ΣN, 100·ΣCE/ΣC, 100·Σhits/ΣN.

    ``mask`` (boolean array, or integer positions) restricts the utterances. When ΣN = 0 (no
    reference words selected) the empty-reference rule applies to the sums, as for one utterance.
    """

    def total(key: str) -> int:
        values = np.asarray(counts[key])
        return int(values.sum() if mask is None else values[mask].sum())

    errors = total("sub") + total("del") + total("ins")
    rates = {
        "wer": _rate(np.array([errors]), np.array([total("num_words")])),
        "cer": _rate(np.array([total("char_edits")]), np.array([total("num_chars")])),
        "wmr": _rate(np.array([total("hits")]), np.array([total("num_words")])),
    }
    return {name: float(value[0]) for name, value in rates.items()}


# --- word accuracy -----------------------------------------------------------------------------


def word_counts(ref_texts: Sequence[str] | pd.Series | pa.Array) -> pd.DataFrame:
    """Reference vocabulary: ``word`` (string[pyarrow]) and ``count`` (int64, occurrences).

    Sorted by count descending, then word. Vectorised with Arrow (split + hash count), because it
    runs over every reference word at load time. Words are ``str.split()`` tokens.
    """
    tokens = split_words(to_arrow_strings(ref_texts))
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    encoded = pc.dictionary_encode(tokens)
    counts = np.bincount(
        encoded.indices.to_numpy(zero_copy_only=False), minlength=len(encoded.dictionary)
    ).astype(np.int64)
    vocab = pd.DataFrame(
        {
            "word": pd.array(encoded.dictionary.cast(pa.large_string()), dtype=_STRING_DTYPE),
            "count": counts,
        }
    )
    return _sort_vocab(vocab)


def _sort_vocab(vocab: pd.DataFrame) -> pd.DataFrame:
    order = np.lexsort((vocab["word"].to_numpy(dtype=object), -vocab["count"].to_numpy()))
    return vocab.iloc[order].reset_index(drop=True)


def word_hits(
    ref_texts: Sequence[str] | pd.Series | pa.Array | pd.DataFrame, errors: pd.DataFrame
) -> pd.DataFrame:
    """Per reference word: ``word``, ``count`` (reference occurrences), ``hits`` (int64).

    hits = count − occurrences of the word as the reference side of a sub/del error, i.e. the
    reference occurrences aligned as hits; word accuracy = 100·hits/count. ``ref_texts`` may also
    be a ``word_counts`` table, so several hypotheses can share one count of the references.
    ``errors`` is ``CorpusAlignment.errors`` of the same references.
    """
    vocab = ref_texts if isinstance(ref_texts, pd.DataFrame) else word_counts(ref_texts)
    vocab = vocab[["word", "count"]].reset_index(drop=True)
    missed_refs = errors.loc[errors["op"] != "ins", "ref"]
    missed = missed_refs.value_counts()  # index: word, value: sub + del occurrences
    missed_per_word = missed.reindex(vocab["word"].to_numpy(dtype=object), fill_value=0)
    vocab["hits"] = vocab["count"].to_numpy(dtype=np.int64) - missed_per_word.to_numpy(
        dtype=np.int64
    )
    return vocab


def mean_word_accuracy(vocab_hits: pd.DataFrame) -> float:
    """MWA: mean over the reference vocabulary of word accuracy 100·hits/count, in percent.

    Words with count 0 are ignored; an empty vocabulary gives 0.0 (never NaN, like the rates).
    """
    count = vocab_hits["count"].to_numpy(dtype=np.float64)
    hits = vocab_hits["hits"].to_numpy(dtype=np.float64)
    present = count > 0
    if not present.any():
        return 0.0
    return float(np.mean(100.0 * hits[present] / count[present]))


# --- one utterance -----------------------------------------------------------------------------

_JIWER_OPS = {"equal": "equal", "substitute": "sub", "delete": "del", "insert": "ins"}


def align_words(ref: str, hyp: str) -> list[AlignedWord]:
    """Word alignment of one utterance (the inspector's diff), via ``jiwer.process_words``.

    Every reference and hypothesis word appears once, in order; ops are "equal", "sub", "del",
    "ins". Words are ``str.split()`` tokens (texts are re-joined with single spaces before jiwer
    sees them, see the module docstring), so the ops agree with ``align_corpus``. Beyond
    ``MAX_EXACT_WORDS`` words on either side: one "unaligned" entry (see ``AlignedWord``).
    """
    ref_words = (ref or "").split()
    hyp_words = (hyp or "").split()
    too_long = [f"the {side} has {len(words):,} words" for side, words in (("reference", ref_words),
                                                                          ("hypothesis", hyp_words))
                if len(words) > MAX_EXACT_WORDS]
    if too_long:
        # An exact diff would take seconds to minutes, and hundreds of thousands of spans no
        # browser shows usefully: the hypothesis as it is, and why.
        note = (f"No word diff: {' and '.join(too_long)} (at most {MAX_EXACT_WORDS:,} are aligned "
                "word by word); the hypothesis is shown as it is.")
        return [AlignedWord("unaligned", None, hyp or "", note=note)]
    # Older jiwer versions raise on an empty reference; no alignment is needed for these anyway.
    if not ref_words:
        return [AlignedWord("ins", None, w) for w in hyp_words]
    if not hyp_words:
        return [AlignedWord("del", w, None) for w in ref_words]

    import jiwer  # imported here: the bulk path does not need it

    output = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words))
    aligned: list[AlignedWord] = []
    for chunk in output.alignments[0]:
        op = _JIWER_OPS[chunk.type]
        refs = ref_words[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if op in ("equal", "sub"):  # equal-length blocks in a Levenshtein alignment
            aligned.extend(AlignedWord(op, r, h) for r, h in zip(refs, hyps))
        elif op == "del":
            aligned.extend(AlignedWord("del", r, None) for r in refs)
        else:
            aligned.extend(AlignedWord("ins", None, h) for h in hyps)
    return aligned
