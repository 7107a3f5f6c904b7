"""The bulk alignment used at load time: every reference with its hypothesis, rapidfuzz's
Levenshtein on word lists and stripped strings, split over forked processes.
"""

from __future__ import annotations

import gc
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz.distance import Levenshtein

from sde.metrics.windows import (
    DEL,
    INS,
    MAX_EXACT_CHARS,
    MAX_EXACT_WORDS,
    OPS,
    SUB,
    WINDOW_CHARS,
    WINDOW_WORDS,
    align_long,
    is_windowed,
)
from sde.text import split_words, to_arrow_strings
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
                    # aligned against "" it cost as much as the reference is long (a 50 MB line:
                    # 41 s and 3.8 GB) for error rows the caller drops
                    stripped = ref.strip()
                    for values, value in zip(per_utterance, (0, 0, 0, _word_count(ref), 0, len(stripped))):
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
                errors, counts, sizes = align_long(ref, hyp)
                for code, ref_word, hyp_word in errors:
                    add_utt(utt)
                    add_op(code)
                    add_ref(ref_word)
                    add_hyp(hyp_word)
                for values, value in zip(per_utterance, counts):
                    values.append(value)
                if is_windowed(*sizes) and not _provably_exact(counts, sizes):
                    long_utts.append((utt, *sizes))
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
        counted = _count_words_range(refs, 0, n) if count_ref_words else None
        parts = [(*_align_chunk(_slice_texts(refs, 0, n), _slice_texts(hyps, 0, n), 0, skip_missing), counted)]
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
    ref_parts = [_split_joined(p[8]) for p in parts if len(p[6])]
    hyp_parts = [_split_joined(p[9]) for p in parts if len(p[6])]
    errors = pd.DataFrame(
        {
            "utt": utt,
            "op": pd.Categorical.from_codes(op, categories=list(OPS)),
            "ref": _string_column(ref_parts, op == INS),
            "hyp": _string_column(hyp_parts, op == DEL),
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
