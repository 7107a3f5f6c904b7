"""The bulk alignment used at load time: every reference with its hypothesis, rapidfuzz's
Levenshtein on word lists and stripped strings, split over forked processes.
"""

from __future__ import annotations

import gc
import itertools
import math
import re
from operator import itemgetter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz.distance import Editops, Levenshtein

from sde.metrics.windows import (
    DEL,
    INS,
    MAX_EXACT_CHARS,
    MAX_EXACT_WORDS,
    OP_CODES,
    OPS,
    SUB,
    WINDOW_CHARS,
    WINDOW_WORDS,
    align_long,
    is_windowed,
)
from sde.text import split_words, to_arrow_strings, word_lists
from sde.workers import fork_context, worker_pool

COUNT_KEYS: tuple[str, ...] = (
    "sub",
    "del",
    "ins",
    "hits",
    "char_edits",
    "num_words",
    "num_chars",
)


# Below this many pairs forking costs more than it saves.
MIN_PAIRS_PER_PROCESS = 20_000


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
    # The same as a table (word, count), for a caller that goes on in Arrow (sde.vocabulary.counts_table)
    ref_word_table: pa.Table | None = None
    # Utterances over the exact-alignment limits, aligned in windows (see the module docstring),
    # but for those whose counts are exact all the same (_provably_exact).
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


# The inputs of the running align_corpus, read by forked workers (fork shares them copy-on-write,
# so the texts are never pickled to the workers).
_SHARED: tuple[Any, ...] | None = None


def _is_missing(value: Any) -> bool:
    """None, <NA> or NaN: no transcript."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _coerce_text(value: Any) -> str:
    """A missing value (:func:`_is_missing`) is an empty transcript; anything else is its str."""
    return "" if _is_missing(value) else str(value)


def _slice_texts(texts: Any, lo: int, hi: int) -> list:
    if isinstance(texts, pd.Series):
        return texts.iloc[lo:hi].tolist()
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return texts.slice(lo, hi - lo).to_pylist()
    if isinstance(texts, np.ndarray):
        return texts[lo:hi].tolist()
    return list(texts[lo:hi])


def _word_count(text: str) -> int:
    """``len(text.split())``, without a list of words for a text too long to align whole (50 MB)."""
    if len(text) <= MAX_EXACT_CHARS:
        return len(text.split())
    return sum(1 for _ in re.finditer(r"\S+", text))


def _align_chunk(refs: list, hyps: list, base: int, skip_missing: bool = False) -> tuple:
    """Align refs[i] with hyps[i]; utterance ids start at ``base``. ``skip_missing``: a missing
    hypothesis (None, <NA>, NaN) is not aligned at all (the caller leaves its row unscored): its
    counts are the reference's words and characters, zero edits, and it has no error rows.

    Returns the seven count lists as int64 arrays, then the errors: utt ids, op codes, and the
    ref/hyp words each joined with "\\n" ("" where absent). Words never contain whitespace, so
    the join is lossless, and one string pickles back from a worker far faster than a list. Last,
    the (utt, ref words, hyp words, ref chars, hyp chars) of the utterances aligned in windows
    whose counts may be above the exact ones.
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
                if skip_missing and _is_missing(hyp):
                    for values, value in zip(per_utterance, _unaligned_counts(ref)):
                        values.append(value)
                    continue
                hyp = _coerce_text(hyp)
            # Long texts are measured before any split: a 50 MB text is never one Python list.
            short = len(ref) <= MAX_EXACT_CHARS and len(hyp) <= MAX_EXACT_CHARS
            if short:
                ref_words = ref.split()
                hyp_words = hyp.split()
            if not short or len(ref_words) > MAX_EXACT_WORDS or len(hyp_words) > MAX_EXACT_WORDS:
                utt = base + offset
                errors, counts, long_sizes = _aligned_long(ref, hyp)
                for code, ref_word, hyp_word in errors:
                    add_utt(utt)
                    add_op(code)
                    add_ref(ref_word)
                    add_hyp(hyp_word)
                for values, value in zip(per_utterance, counts):
                    values.append(value)
                if long_sizes is not None:
                    long_utts.append((utt, *long_sizes))
                continue
            subs = dels = inss = 0
            if ref_words != hyp_words:
                utt = base + offset
                for tag, ref_pos, hyp_pos in editops(ref_words, hyp_words).as_list():
                    add_utt(utt)
                    if tag == "replace":
                        subs += 1
                        add_op(SUB)
                        add_ref(ref_words[ref_pos])
                        add_hyp(hyp_words[hyp_pos])
                    elif tag == "delete":
                        dels += 1
                        add_op(DEL)
                        add_ref(ref_words[ref_pos])
                        add_hyp("")
                    else:  # "insert"
                        inss += 1
                        add_op(INS)
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


def _unaligned_counts(ref: str) -> tuple[int, ...]:
    """The counts of a reference whose hypothesis is missing (not aligned): its words and
    characters, no edits. Aligned against "" it cost as much as the reference is long (a 50 MB
    line: 41 s and 3.8 GB) for error rows the caller drops."""
    return 0, 0, 0, _word_count(ref), 0, len(ref.strip())


def _aligned_long(ref: str, hyp: str) -> tuple[list[tuple[int, str, str]], tuple[int, ...], tuple[int, ...] | None]:
    """An utterance over an exact limit: align_long's errors and counts, and its sizes where its
    counts may be above the exact ones (None where they are exact all the same)."""
    errors, counts, sizes = align_long(ref, hyp)
    return errors, counts, sizes if is_windowed(*sizes) and not _provably_exact(counts, sizes) else None


# Distinct words one chunk may have for _align_coded: each becomes one code point, surrogates skipped.
_MAX_CODED_WORDS = 0x110000 - 0x800
_SURROGATES = 0xD800


def _string_array(texts: Any, lo: int, hi: int) -> pa.Array | None:
    """texts[lo:hi] as one Arrow large_string array (missing values null) where ``texts`` holds
    strings in Arrow or pandas' string dtype; None for any other sequence (a list, object dtype:
    values that are not str are coerced one by one, by _align_chunk)."""
    if isinstance(texts, pd.Series):
        if not isinstance(texts.dtype, pd.StringDtype):
            return None
        arr = pa.array(texts.array[lo:hi], from_pandas=True)
    elif isinstance(texts, (pa.Array, pa.ChunkedArray)):
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            return None
        arr = texts.slice(lo, hi - lo)
    else:
        return None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())


def _coded_words(texts: pa.Array, too_long: np.ndarray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The words of each text (str.split()), flattened: (words, where each text's words start, how
    many it has). A text ``too_long`` is not split (a 50 MB text would be millions of words) and
    has none here; a blank or missing one has none either (its one token is "")."""
    kept = pc.if_else(pa.array(too_long), pa.scalar("", pa.large_string()), pc.fill_null(texts, ""))
    lists = word_lists(kept)
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    words = pc.list_flatten(lists)
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    blank = np.zeros(len(lengths), dtype=bool)
    single = np.flatnonzero(lengths == 1)
    if len(single):
        blank[single] = pc.equal(words.take(pa.array(starts[single])), "").to_numpy(zero_copy_only=False)
    return words, starts, np.where(blank, 0, lengths)


def _longer_than(texts: pa.Array, limit: int) -> np.ndarray:
    """Which texts have more than ``limit`` code points (a missing one has none). Only a text of
    more than ``limit`` bytes can: the others are not scanned (their byte counts are offsets)."""
    longer = pc.fill_null(pc.greater(pc.binary_length(texts), limit), False).to_numpy(zero_copy_only=False)
    maybe = np.flatnonzero(longer)
    if len(maybe):
        longer[maybe] = pc.greater(pc.utf8_length(texts.take(pa.array(maybe))), limit).to_numpy(zero_copy_only=False)
    return longer


def _align_coded(refs: pa.Array, hyps: pa.Array, base: int, skip_missing: bool, count_words: bool) -> tuple | None:
    """_align_chunk's result (and the reference word counts, with ``count_words``) for Arrow
    texts, split into words by Arrow once and aligned as strings of one code point per distinct
    word: rapidfuzz's alignment depends only on which elements are equal, so the edit operations
    are those of the word lists. The words are split once for the alignment and the word count
    (they were split twice, by Python and by Arrow), each word is hashed once per chunk rather
    than once per alignment (editops ~2.4x faster), and error rows are made by numpy from each
    utterance's edit operations. The utterances are aligned by maps over the whole chunk, and
    only the texts with character edits to count become Python strings (stripped by Arrow).
    Error words are taken from the split words by position. None where the chunk has more
    distinct words than code points (then align it word list by word list)."""
    hyp_missing = hyps.is_null().to_numpy(zero_copy_only=False)
    # A long text is measured before any split (a 50 MB text is never split here), and its
    # utterance aligned on its own as _align_chunk does, as is one over the word limit and, with
    # ``skip_missing``, one whose hypothesis is missing (not aligned at all).
    ref_long = _longer_than(refs, MAX_EXACT_CHARS)
    hyp_long = _longer_than(hyps, MAX_EXACT_CHARS)
    ref_words, ref_starts, ref_counts = _coded_words(refs, ref_long)
    # a hypothesis equal to its reference needs no words: it has no edits (it is not aligned)
    same = pc.fill_null(pc.equal(refs, hyps), False).to_numpy(zero_copy_only=False)
    hyp_words, hyp_starts, hyp_counts = _coded_words(hyps, hyp_long | same)
    apart = (ref_long | hyp_long | (hyp_missing & skip_missing)
             | (ref_counts > MAX_EXACT_WORDS) | (hyp_counts > MAX_EXACT_WORDS))
    encoded = pc.dictionary_encode(pa.concat_arrays([ref_words, hyp_words]))
    if len(encoded.dictionary) > _MAX_CODED_WORDS:
        return None
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.uint32)
    codes[codes >= _SURROGATES] += 0x800
    ref_coded = codes[:len(ref_words)].tobytes().decode("utf-32-le")
    hyp_coded = codes[len(ref_words):].tobytes().decode("utf-32-le")
    n = len(refs)
    ref_texts = pc.fill_null(refs, "")
    ref_stripped = pc.utf8_trim_whitespace(ref_texts)  # str.strip(): Arrow trims what str.isspace is
    n_chars = pc.utf8_length(ref_stripped).to_numpy(zero_copy_only=False).astype(np.int64)
    n_words = ref_counts.copy()
    n_char_edits = np.zeros(n, dtype=np.int64)

    # Texts that are equal, or both without words, have no edits of either kind; the rest are
    # aligned by C-level maps over the whole chunk (a Python step per utterance cost about as
    # much as the alignments themselves).
    aligned = ~(apart | same | ((ref_counts == 0) & (hyp_counts == 0)))
    at = np.flatnonzero(aligned)
    ref_from, hyp_from = ref_starts[at], hyp_starts[at]
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as in _align_chunk: hundreds of thousands of tuples, no cycles
    try:
        # (a comprehension slices ~1.5x faster than map(str.__getitem__, map(slice, ...)))
        ref_parts = [ref_coded[lo:hi] for lo, hi in zip(ref_from.tolist(), (ref_from + ref_counts[at]).tolist())]
        hyp_parts = [hyp_coded[lo:hi] for lo, hi in zip(hyp_from.tolist(), (hyp_from + hyp_counts[at]).tolist())]
        found = list(map(Levenshtein.editops, ref_parts, hyp_parts))
        del ref_parts, hyp_parts
        op_counts = np.fromiter(map(len, found), dtype=np.int64, count=len(found))
        ops = list(itertools.chain.from_iterable(map(Editops.as_list, found)))
    finally:
        if gc_was_enabled:
            gc.enable()
    del found
    mask = pa.array(aligned)
    hyp_stripped = pc.utf8_trim_whitespace(pc.fill_null(hyps.filter(mask), ""))
    n_char_edits[at] = list(map(Levenshtein.distance, ref_stripped.filter(mask).to_pylist(), hyp_stripped.to_pylist()))
    err_op = np.fromiter(map(OP_CODES.__getitem__, map(itemgetter(0), ops)), dtype=np.int8, count=len(ops))
    ref_at = np.fromiter(map(itemgetter(1), ops), dtype=np.int64, count=len(ops))
    hyp_at = np.fromiter(map(itemgetter(2), ops), dtype=np.int64, count=len(ops))
    del ops
    # positions made absolute by each utterance's first word in ref_words/hyp_words
    ref_at += np.repeat(ref_from, op_counts)
    hyp_at += np.repeat(hyp_from, op_counts)
    err_utt = np.repeat(at, op_counts)

    # An utterance aligned on its own gets its error words from align_long; they are numbered
    # after the split words.
    apart_ref: list[str] = []
    apart_hyp: list[str] = []
    long_utts: list[tuple] = []
    alone = np.flatnonzero(apart)
    if len(alone):
        indices = pa.array(alone)
        apart_utt: list[int] = []
        apart_op: list[int] = []
        for offset, ref, hyp in zip(alone.tolist(), ref_texts.take(indices).to_pylist(), hyps.take(indices).to_pylist()):
            if hyp is None and skip_missing:
                n_words[offset] = _word_count(ref)
                continue
            errors, counts, long_sizes = _aligned_long(ref, hyp or "")
            apart_utt += [offset] * len(errors)
            apart_op += [code for code, _, _ in errors]
            apart_ref += [ref_word for _, ref_word, _ in errors]
            apart_hyp += [hyp_word for _, _, hyp_word in errors]
            if long_sizes is not None:
                long_utts.append((base + offset, *long_sizes))
            n_words[offset] = counts[3]
            n_char_edits[offset] = counts[4]
        if apart_utt:
            # each utterance's rows stay together and in order: the sort is stable
            order = np.argsort(np.concatenate([err_utt, apart_utt]), kind="stable")
            numbered = np.arange(len(apart_utt), dtype=np.int64)
            err_utt = np.concatenate([err_utt, apart_utt])[order]
            err_op = np.concatenate([err_op, np.array(apart_op, dtype=np.int8)])[order]
            ref_at = np.concatenate([ref_at, numbered + len(ref_words)])[order]
            hyp_at = np.concatenate([hyp_at, numbered + len(hyp_words)])[order]
    ref_at[err_op == INS] = -1
    hyp_at[err_op == DEL] = -1
    n_sub, n_del, n_ins = (np.bincount(err_utt[err_op == code], minlength=n).astype(np.int64) for code in (SUB, DEL, INS))
    counted = _counted_words(refs, ref_words, encoded, ref_long) if count_words else None
    return (n_sub, n_del, n_ins, n_char_edits, n_words, n_chars, err_utt + base, err_op,
            _taken_words(ref_words, apart_ref, ref_at), _taken_words(hyp_words, apart_hyp, hyp_at),
            long_utts, counted)


def _taken_words(words: pa.Array, apart: list[str], at: np.ndarray) -> pa.Array:
    """The words at positions ``at`` of ``words`` followed by ``apart`` (null at -1)."""
    if apart:
        words = pa.concat_arrays([words, pa.array(apart, type=pa.large_string())])
    return words.take(pa.array(at, mask=at < 0))


def _counted_words(refs: pa.Array, ref_words: pa.Array, encoded: pa.DictionaryArray, ref_long: np.ndarray) -> pa.Table:
    """(word, count) of the references, as _count_words_range counts them, from their words split
    and encoded for the alignment (the texts too long to split there are split here)."""
    words = encoded.dictionary
    counts = np.bincount(encoded.indices.to_numpy(zero_copy_only=False)[:len(ref_words)], minlength=len(words))
    counts[pc.equal(words, "").to_numpy(zero_copy_only=False)] = 0  # a blank text's token
    # first seen first, as value_counts orders them: a word of the references is encoded before
    # any word only the hypotheses have
    found = np.flatnonzero(counts)
    table = pa.table({"word": words.take(pa.array(found)), "count": pa.array(counts[found], type=pa.int64())})
    if ref_long.any():
        longer = pc.value_counts(split_words(refs.filter(pa.array(ref_long))))
        table = pa.concat_tables([table, pa.table({"word": longer.field(0), "count": longer.field(1)})])
    return table


def _provably_exact(counts: tuple[int, ...], sizes: tuple[int, ...]) -> bool:
    """Whether a windowed alignment's counts are the exact ones all the same: no alignment has
    fewer edits than the difference in length, so counts that reach it are exact (an identical,
    or only truncated, hypothesis). Such an utterance gets no "may be slightly higher" note."""
    sub, dele, ins, _, char_edits, _ = counts
    ref_words, hyp_words, ref_chars, hyp_chars = sizes
    words_exact = max(ref_words, hyp_words) <= MAX_EXACT_WORDS or sub + dele + ins == abs(ref_words - hyp_words)
    chars_exact = max(ref_chars, hyp_chars) <= MAX_EXACT_CHARS or char_edits == abs(ref_chars - hyp_chars)
    return words_exact and chars_exact


def _align_range(bounds: tuple[int, int]) -> tuple:
    """Worker entry point: align the pairs [lo, hi) of the shared inputs."""
    lo, hi = bounds
    assert _SHARED is not None, "align_corpus inputs are not shared with this process"
    refs, hyps, count_words, skip_missing = _SHARED
    return _aligned_range(refs, hyps, lo, hi, count_words, skip_missing)


def _aligned_range(refs: Any, hyps: Any, lo: int, hi: int, count_words: bool, skip_missing: bool) -> tuple:
    """The pairs [lo, hi) aligned: _align_chunk's result and the reference word counts (None
    without ``count_words``); by _align_coded where the texts are Arrow or pandas strings."""
    ref_array, hyp_array = _string_array(refs, lo, hi), _string_array(hyps, lo, hi)
    if ref_array is not None and hyp_array is not None:
        coded = _align_coded(ref_array, hyp_array, lo, skip_missing, count_words)
        if coded is not None:
            return coded
    counted = _count_words_range(refs, lo, hi) if count_words else None
    return (*_align_chunk(_slice_texts(refs, lo, hi), _slice_texts(hyps, lo, hi), lo, skip_missing), counted)


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


def align_corpus(
    refs: Sequence[str], hyps: Sequence[str], workers: int = 2, count_ref_words: bool = False,
    skip_missing: bool = False,
) -> CorpusAlignment:
    """Align every reference with its hypothesis: per-utterance counts and the word errors.

    ``refs``/``hyps``: equal-length sequences of str (lists, pandas Series or Arrow arrays;
    missing values count as ""). ``workers``: processes to use (forked, each aligning chunks of
    the pairs); 1 aligns in this process. Small inputs are always aligned in this process.
    ``count_ref_words``: also count reference word occurrences (``ref_word_counts``).
    ``skip_missing``: a missing hypothesis is not aligned (for a caller that leaves such rows
    unscored): zero edits, no error rows, the reference's word and character counts.

    Empty references need no special case here: their words all count as insertions and
    ``utterance_rates``/``corpus_rates`` apply the empty-reference rule.
    """
    n = len(refs)
    if len(hyps) != n:
        raise ValueError(f"align_corpus: {n} references but {len(hyps)} hypotheses")
    workers = max(1, int(workers))
    processes = min(workers, n // MIN_PAIRS_PER_PROCESS)
    context = fork_context() if processes > 1 else None

    if context is None:
        parts = [_aligned_range(refs, hyps, 0, n, count_ref_words, skip_missing)]
    else:
        global _SHARED
        n_chunks = processes * _CHUNKS_PER_WORKER
        edges = np.linspace(0, n, n_chunks + 1).astype(int)
        ranges = [(int(lo), int(hi)) for lo, hi in itertools.pairwise(edges) if hi > lo]
        _SHARED = (refs, hyps, count_ref_words, skip_missing)
        try:
            # On any exception (KeyboardInterrupt, SystemExit from SIGTERM) leaving the block
            # terminates the workers: none outlives the interrupted load.
            with worker_pool(context, processes) as pool:
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
    ref_parts = [_word_array(p[8]) for p in parts if len(p[6])]
    hyp_parts = [_word_array(p[9]) for p in parts if len(p[6])]
    errors = pd.DataFrame(
        {
            "utt": utt,
            "op": pd.Categorical.from_codes(op, categories=list(OPS)),
            "ref": _string_column(ref_parts, op == INS),
            "hyp": _string_column(hyp_parts, op == DEL),
        }
    )
    word_counts_total: dict[str, int] | None = None
    word_table: pa.Table | None = None
    if parts and parts[0][11] is not None:
        merged = pa.concat_tables([p[11] for p in parts]).group_by("word").aggregate([("count", "sum")])
        word_table = pa.table({"word": merged["word"], "count": merged["count_sum"]})
        word_counts_total = dict(zip(merged["word"].to_pylist(), merged["count_sum"].to_pylist()))
    long_utterances = [LongUtterance(*fields) for p in parts for fields in p[10]]
    return CorpusAlignment(counts=counts, errors=errors, ref_word_counts=word_counts_total,
                           ref_word_table=word_table, long_utterances=long_utterances)


def _word_array(words: str | pa.Array) -> pa.Array:
    """A chunk's error words: _align_coded's array, or _align_chunk's words joined with "\n"."""
    if isinstance(words, pa.Array):
        return words
    return pc.split_pattern(pa.array([words], type=pa.large_string()), "\n").flatten()


def _string_column(parts: list[pa.Array], missing: np.ndarray) -> pd.arrays.ArrowStringArray:
    """Concatenated words; positions in ``missing`` (the absent side of an ins/del) become <NA>."""
    words = pa.concat_arrays(parts) if parts else pa.array([], type=pa.large_string())
    if len(words):
        words = pc.if_else(pa.array(missing), pa.scalar(None, pa.large_string()), words)
    return pd.array(words, dtype=_STRING_DTYPE)
