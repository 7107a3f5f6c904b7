"""Suspicious utterances: transcripts that loop, hypotheses that hallucinate, rates that cannot be.

Every check is a column (one value per utterance) plus, in :func:`suspicious_summary`, a flag with
the filter expression (sde's filter language) that selects the flagged utterances, so the UI can
link a count to the rows behind it.

Texts are compared lower-cased with punctuation removed (``sde.text`` steps ``lower``, ``punct``):
"No, no. No!" loops as much as "no no no". Rates use the text as written (characters, spaces
included, per second, as ``char_rate`` in the dataset).

Per hypothesis field F the columns follow the dataset's naming: for ``pred_text`` plain names
(``ins_burst``), for ``pred_text_<label>`` suffixed ones (``ins_burst_<label>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz.distance import Levenshtein

from sde.compressed_columns import row_reader, value_codes
from sde.engine import settings
from sde.filters import column_ref
from sde.text import collapse_whitespace, normalize_many, to_arrow_strings
from sde.workers import in_processes_or_here

__all__ = [
    "CHUNK_ROWS",
    "FLAGS",
    "MAX_NGRAM",
    "MAX_WORKERS",
    "MIN_CHUNKS_IN_WORKERS",
    "MIN_SPEAKER_UTTERANCES",
    "default_workers",
    "hypothesis_column",
    "insertion_bursts",
    "length_ratios",
    "non_alphabet",
    "repeated_ngrams",
    "robust_z",
    "suspicious_columns",
    "suspicious_summary",
]

#: Longest n-gram (in words) whose back-to-back repetition is looked for.
MAX_NGRAM = 12
#: A speaker with fewer utterances is compared with everybody (its own median means little).
MIN_SPEAKER_UTTERANCES = 5
#: 1.4826·MAD estimates the standard deviation of normal data; 1.2533·mean |x - median| is the
#: fallback when more than half the values are equal (MAD = 0).
_MAD_SCALE = 1.4826
_MEANAD_SCALE = 1.2533
_TEXT_STEPS = ("lower", "punct")

#: (column, flag suffix, operator, value, description) of each flag :func:`suspicious_summary`
#: counts. A column also stands for its per-hypothesis columns (``ins_burst_<label>``); the flag
#: is the column's name plus the suffix.
FLAGS: tuple[tuple[str, str, str, Any, str], ...] = (
    ("repeated_ngram", "", ">=", 3, "reference repeats a word sequence 3+ times in a row"),
    ("hyp_repeated_ngram", "", ">=", 3, "hypothesis repeats a word sequence 3+ times in a row (looping)"),
    ("ins_burst", "", ">=", 5, "5+ consecutive inserted words (hallucination, or speech the reference lacks)"),
    ("length_ratio", "_high", ">=", 2, "hypothesis has twice the reference's words or more"),
    ("length_ratio", "_low", "<=", 0.5, "hypothesis has half the reference's words or fewer"),
    ("char_rate_z", "_high", ">=", 3,
     "characters per second far above the speaker's usual (text too long for the audio)"),
    ("char_rate_z", "_low", "<=", -3,
     "characters per second far below the speaker's usual (text too short for the audio)"),
    ("word_rate_z", "_high", ">=", 3, "words per second far above the speaker's usual"),
    ("word_rate_z", "_low", "<=", -3, "words per second far below the speaker's usual"),
    ("empty_reference", "", "=", True, "empty reference transcript"),
    ("non_alphabet", "", "=", True, "reference has characters outside the alphabet"),
)


def hypothesis_column(hypothesis: Any, metric: str) -> str:
    """Column name of ``metric`` for a hypothesis (a ``HypothesisField`` or a field name)."""
    if hasattr(hypothesis, "column"):
        return hypothesis.column(metric)
    field = str(hypothesis)
    if field == "pred_text":
        return metric
    label = field[len("pred_text_"):] if field.startswith("pred_text_") else field
    return f"{metric}_{label}"


def _field(hypothesis: Any) -> str:
    return getattr(hypothesis, "field", hypothesis)


Texts = Sequence[str] | pd.Series


@dataclass(frozen=True)
class _Normalized:
    """Texts normalised once and shared by every check that reads them."""

    arr: pa.Array          # large_string, lower-cased, no punctuation, single spaces
    missing: np.ndarray    # bool: the input value was missing (None / NA)

    def words(self) -> list[list[str]]:
        return [t.split() for t in self.arr.to_pylist()]

    def word_counts(self) -> np.ndarray:
        return _count_words(self.arr)


def _normalized(texts: Texts | pa.Array | _Normalized) -> _Normalized:
    if isinstance(texts, _Normalized):
        return texts
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        missing = np.asarray(texts.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    elif isinstance(texts, pd.Series):
        missing = texts.isna().to_numpy()
    else:
        missing = pd.isna(pd.Series(texts, dtype="object")).to_numpy()
    return _Normalized(pa.array(normalize_many(texts, _TEXT_STEPS), type=pa.large_string()), missing)


def _split(norm: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(all words, words per text) of normalised texts; "" has no words (split gives [""])."""
    lists = pc.split_pattern(norm, " ")
    empty = np.asarray(pc.equal(norm, "").to_numpy(zero_copy_only=False), dtype=bool)
    counts = np.where(empty, 0, pc.list_value_length(lists).to_numpy(zero_copy_only=False)).astype(np.int64)
    flat = pc.list_flatten(lists)
    return pc.filter(flat, pc.not_equal(flat, "")), counts


def _encode(words: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A dense integer id per distinct word."""
    if len(words) == 0:
        return np.zeros(0, dtype=np.int64)
    encoded = pc.dictionary_encode(words)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def _tokens(texts: Texts | _Normalized) -> tuple[np.ndarray, np.ndarray, int]:
    """(word ids, utterance index of each word, number of utterances) of the normalised texts."""
    words, counts = _split(_normalized(texts).arr)
    return _encode(words), np.repeat(np.arange(len(counts)), counts), len(counts)


def repeated_ngrams(texts: Texts | _Normalized, max_n: int = MAX_NGRAM) -> np.ndarray:
    """``repeated_ngram``: most back-to-back repetitions of any 1..``max_n``-word sequence.

    "a b c" → 1, "go go go" → 3, "i said that i said that i said" → 2 (the 3-gram "i said that"
    twice plus the start of a third: only whole repetitions count); "" → 0.
    Vectorised over all words of all texts: for each n, word i equal to word i+n marks a
    position where a period-n repetition continues; a run of L such positions holds L//n + 1
    copies of an n-gram.
    """
    ids, parents, n_texts = _tokens(texts)
    best = np.zeros(n_texts, dtype=np.int64)
    best[parents] = 1
    for n in range(1, max_n + 1):
        if len(ids) <= n:
            break
        # Positions whose word recurs n words later, in the same utterance (sparse in real text).
        pos = np.flatnonzero(ids[:-n] == ids[n:])
        pos = pos[parents[pos] == parents[pos + n]]
        if not len(pos):
            continue
        # Runs of consecutive positions: a run of L holds L // n + 1 copies of an n-gram.
        breaks = np.flatnonzero(np.diff(pos) != 1) + 1
        starts = np.concatenate(([0], breaks))
        lengths = np.diff(np.concatenate((starts, [len(pos)])))
        copies = lengths // n + 1
        hit = copies >= 2
        np.maximum.at(best, parents[pos[starts[hit]]], copies[hit])
    return best


def insertion_bursts(refs: Texts | _Normalized, hyps: Texts | _Normalized) -> np.ndarray:
    """``ins_burst``: longest run of consecutive inserted hypothesis words (Levenshtein alignment
    of normalised words, rapidfuzz: the engine of ``sde.metrics``). Missing hypothesis → 0."""
    ref_seqs, hyp_seqs = _word_strings(_normalized(refs), _normalized(hyps))
    out = np.zeros(len(ref_seqs), dtype=np.int64)
    for i, (r, h) in enumerate(zip(ref_seqs, hyp_seqs)):
        if not h or r == h:
            continue
        if not r:
            out[i] = len(h)
            continue
        # One insert opcode spans a whole run: two runs are never adjacent.
        out[i] = max((d2 - d1 for tag, _, _, d1, d2 in Levenshtein.opcodes(r, h).as_list()
                      if tag == "insert"), default=0)
    return out


# Word ids become code points from here on, skipping the surrogates (not valid in a str).
_FIRST_CODE_POINT = 0x100
_SURROGATES = (0xD800, 0x800)
_MAX_WORDS = 0x10FFFF - _FIRST_CODE_POINT - _SURROGATES[1]


def _word_strings(refs: _Normalized, hyps: _Normalized) -> tuple[list, list]:
    """Each text as a str with one character per word (one vocabulary for both sides).

    rapidfuzz aligns str fastest, and 1M lists of word strings cost seconds of allocation and
    garbage collection; this costs one decode and a slice per text. Over ~1.1M distinct words
    (no code points left) the texts come back as word lists instead.
    """
    ref_words, ref_counts = _split(refs.arr)
    hyp_words, hyp_counts = _split(hyps.arr)
    ids = _encode(pa.chunked_array([ref_words, hyp_words], type=ref_words.type))
    if len(ids) and ids.max() >= _MAX_WORDS:
        return refs.words(), hyps.words()
    cps = ids + _FIRST_CODE_POINT
    cps[cps >= _SURROGATES[0]] += _SURROGATES[1]
    text = cps.astype("<u4").tobytes().decode("utf-32-le")
    ref_ends = np.cumsum(ref_counts).tolist()
    hyp_ends = (np.cumsum(hyp_counts) + len(ref_words)).tolist()
    ref_starts = [0] + ref_ends[:-1]
    hyp_starts = [len(ref_words)] + hyp_ends[:-1]
    return ([text[a:b] for a, b in zip(ref_starts, ref_ends)],
            [text[a:b] for a, b in zip(hyp_starts, hyp_ends)])


def _count_words(collapsed: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Words of each string whose whitespace is already collapsed to single inner spaces."""
    counts = pc.list_value_length(pc.split_pattern(collapsed, " ")).to_numpy(zero_copy_only=False)
    empty = pc.equal(collapsed, "").to_numpy(zero_copy_only=False)
    return np.where(empty, 0, counts).astype(np.int64)


def length_ratios(refs: Texts | _Normalized, hyps: Texts | _Normalized) -> np.ndarray:
    """``length_ratio``: hypothesis words / reference words (normalised); NaN for an empty
    reference or a missing hypothesis."""
    hyps = _normalized(hyps)
    ref_n = _normalized(refs).word_counts().astype(np.float64)
    hyp_n = hyps.word_counts().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ref_n > 0, hyp_n / ref_n, np.nan)
    ratio[hyps.missing] = np.nan
    return ratio


def robust_z(values: np.ndarray | pd.Series, groups: np.ndarray | pd.Series | None = None,
             min_group: int = MIN_SPEAKER_UTTERANCES) -> np.ndarray:
    """(x - median) / (1.4826·MAD) within each group (``groups``: a key per value, or integer
    codes with -1 for none); groups smaller than ``min_group`` (and
    missing groups) use the whole column's median and MAD. NaN stays NaN; when a spread is 0
    (all values equal) the z-score is 0 for values at the median."""
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    x = np.where(finite, x, np.nan)
    center, scale = _center_scale(pd.Series(x, copy=False))
    # a median and a spread per group, the whole column's last, and each row's index into them
    # (-1 picks the last): at 10M rows a per-row transform held a dozen 80 MB columns at once
    centers, spreads = np.array([center]), np.array([scale])
    own = np.full(len(x), -1, dtype=np.int64)
    if groups is not None:
        codes = np.asarray(groups)
        codes = (codes.astype(np.int64, copy=False) if np.issubdtype(codes.dtype, np.integer)
                 else pd.factorize(np.asarray(groups, dtype=object), use_na_sentinel=True)[0])
        sizes = np.bincount(codes[(codes >= 0) & finite])
        big = np.flatnonzero(sizes >= min_group)
        if big.size:
            at = np.full(len(sizes), -1, dtype=np.int64)
            at[big] = np.arange(big.size)
            own = np.where(codes >= 0, at[np.clip(codes, 0, len(sizes) - 1)], -1)
            del codes, at
            # grouped by categorical codes: the rows of code -1 (the whole column's, already
            # computed) are left out of every group, with no copy of the values and no hashing
            keys = pd.Categorical.from_codes(own, categories=range(big.size))
            medians = pd.Series(x, copy=False).groupby(keys, observed=False).median().to_numpy()
            centers = np.append(medians, center)
            dev = pd.Series(np.abs(x - centers[own]), copy=False).groupby(keys, observed=False)
            mad = dev.median().to_numpy() * _MAD_SCALE
            meanad = dev.mean().to_numpy() * _MEANAD_SCALE
            spreads = np.append(np.where(mad > 0, mad, meanad), scale)
    dev = x - centers[own]
    spread = spreads[own]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(spread > 0, dev / spread, np.where(dev == 0, 0.0, np.nan))
    z[~finite] = np.nan
    return z


def _center_scale(x: pd.Series) -> tuple[float, float]:
    med = float(x.median()) if x.notna().any() else float("nan")
    dev = (x - med).abs()
    mad = float(dev.median()) * _MAD_SCALE if dev.notna().any() else float("nan")
    if not mad > 0:
        mad = float(dev.mean()) * _MEANAD_SCALE if dev.notna().any() else float("nan")
    return med, mad


def non_alphabet(texts: Sequence[str] | pd.Series | pa.Array, alphabet: Iterable[str]) -> np.ndarray:
    """True where a text has a character outside ``alphabet`` (whitespace always allowed)."""
    allowed = "".join(f"\\x{{{ord(c):x}}}" for c in sorted(set("".join(alphabet))))
    pattern = f"[^{allowed}\\s]"
    arr = to_arrow_strings(texts)
    return np.asarray(pc.match_substring_regex(arr, pattern).to_numpy(zero_copy_only=False), dtype=bool)


def _rates(texts: pd.Series | pa.Array, durations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chars/s, words/s) of the texts as written; NaN without a duration > 0."""
    arr = to_arrow_strings(texts)
    chars = pc.utf8_length(arr).to_numpy(zero_copy_only=False).astype(np.float64)
    words = _count_words(collapse_whitespace(arr)).astype(np.float64)
    ok = durations > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, chars / durations, np.nan), np.where(ok, words / durations, np.nan)


#: Rows checked at a time by :func:`suspicious_columns`: its work takes ~2 KB a row (1M rows at
#: once took 1.9 GB, 10M would not fit a 24 GiB machine), the columns ~50 bytes.
CHUNK_ROWS = 65_536
#: From this many chunks on, worker processes check them: the checks are mostly Python (an
#: alignment per hypothesis and row, ~4 min at 10M), which in the server's own process held the
#: GIL that every request needs.
MIN_CHUNKS_IN_WORKERS = 4
#: Worker processes at most (each ~0.35 GB; the checks scale with them: 1M utterances 24 s on one,
#: 12 s on two).
MAX_WORKERS = 8
_CHAR_RATE, _WORD_RATE = "char_rate", "word_rate"


def suspicious_columns(table: pd.DataFrame, hypotheses: Sequence[Any] = (), *,
                       alphabet: Iterable[str] | None = None, text_column: str = "text",
                       speaker_column: str = "speaker", chunk_rows: int = CHUNK_ROWS,
                       workers: int | None = None) -> pd.DataFrame:
    """Every suspicious-utterance column for ``table`` (same index).

    Always: ``repeated_ngram`` (int), ``char_rate_z``, ``word_rate_z`` (float, within
    ``speaker_column`` when the table has it), ``empty_reference`` (bool). Per hypothesis (a
    ``HypothesisField`` or a field name present in ``table``): ``hyp_repeated_ngram``,
    ``ins_burst`` (int), ``length_ratio`` (float), named as the dataset names per-hypothesis
    columns. With ``alphabet``: ``non_alphabet`` (bool).

    The rows are checked ``chunk_rows`` at a time (memory: one chunk's words and alignments, and
    the columns); only the rates' z-scores need every row, and they are numbers by then. With
    :data:`MIN_CHUNKS_IN_WORKERS` chunks or more, ``workers`` processes check them (default:
    :func:`default_workers`; 0: here), this process reading the next chunks.
    """
    n = len(table)
    alphabet = None if alphabet is None else tuple(alphabet)  # read by every chunk
    refs = row_reader(table[text_column]) if text_column in table else None
    hyps = [(hyp, row_reader(table[_field(hyp)])) for hyp in hypotheses]
    durations = (pd.to_numeric(table["duration"], errors="coerce").to_numpy(np.float64)
                 if "duration" in table else np.full(n, np.nan))

    def job(start: int) -> tuple:
        rows = min(chunk_rows, n - start)
        return (pa.array([""] * rows, pa.large_string()) if refs is None else refs(start, rows),
                [(hyp, texts(start, rows)) for hyp, texts in hyps], durations[start:start + rows], alphabet)

    if workers is None:
        workers = default_workers(settings().processes, settings().memory_limit is not None)
    starts = list(range(0, n, max(1, chunk_rows)))
    out: dict[str, np.ndarray] = {}
    pooled = workers if len(starts) >= MIN_CHUNKS_IN_WORKERS else 0
    for index, piece in in_processes_or_here(_row_checks_of, starts, pooled, read=job):
        start = starts[index]
        for name, values in piece.items():
            if name not in out:
                out[name] = np.empty(n, dtype=values.dtype)
            out[name][start:start + len(values)] = values
    if not n:
        out = _row_checks(pa.array([], pa.large_string()), [(hyp, pa.array([], pa.large_string())) for hyp, _ in hyps],
                          durations, alphabet)
    groups = value_codes(table[speaker_column])[0] if speaker_column in table else None
    columns: dict[str, np.ndarray] = {"repeated_ngram": out.pop("repeated_ngram"),
                                      "char_rate_z": robust_z(out.pop(_CHAR_RATE), groups),
                                      "word_rate_z": robust_z(out.pop(_WORD_RATE), groups)}
    columns.update(out)
    # each column its own block, not copied into one (at 10M rows ~0.7 GB more for a moment)
    return pd.DataFrame(columns, index=table.index, copy=False)


def default_workers(processes: int, memory_limited: bool = False) -> int:
    """Worker processes for the checks when sde may use ``processes``: one core left to the
    server's requests, at least one worker (the GIL stays free), at most :data:`MAX_WORKERS`; one
    under ``--memory-limit`` (each worker's ~0.35 GB is outside DuckDB's budget)."""
    return 1 if memory_limited else min(MAX_WORKERS, max(1, processes - 1))


def _row_checks_of(job: tuple) -> dict[str, np.ndarray]:
    return _row_checks(*job)


def _row_checks(refs: pa.Array, hyps: Sequence[tuple[Any, pa.Array]], durations: np.ndarray,
                alphabet: Iterable[str] | None) -> dict[str, np.ndarray]:
    """The columns of some rows that each row gives alone, and their rates (z-scored later).
    Counts of words are int32 (a transcript has fewer than 2**31 words): half the memory of the
    columns a server keeps for the dataset's life."""
    norm_refs = _normalized(refs)
    out: dict[str, np.ndarray] = {"repeated_ngram": repeated_ngrams(norm_refs).astype(np.int32)}
    out[_CHAR_RATE], out[_WORD_RATE] = _rates(refs, durations)
    out["empty_reference"] = norm_refs.word_counts() == 0
    if alphabet is not None:
        out["non_alphabet"] = non_alphabet(refs, alphabet)
    for hyp, texts in hyps:
        norm_hyps = _normalized(texts)
        out[hypothesis_column(hyp, "hyp_repeated_ngram")] = repeated_ngrams(norm_hyps).astype(np.int32)
        out[hypothesis_column(hyp, "ins_burst")] = insertion_bursts(norm_refs, norm_hyps).astype(np.int32)
        out[hypothesis_column(hyp, "length_ratio")] = length_ratios(norm_refs, norm_hyps)
    return out


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _matches(series: pd.Series, op: str, value: Any) -> np.ndarray:
    if op == "=":
        return (series.fillna(not value) == value).to_numpy(dtype=bool)
    x = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        return (x >= value) if op == ">=" else (x <= value)  # NaN compares False: never flagged


def suspicious_summary(columns: pd.DataFrame) -> list[dict[str, Any]]:
    """Count of each :data:`FLAGS` flag over the columns present, with its filter expression.

    ``[{"flag", "column", "count", "filter", "description"}]`` in :data:`FLAGS` order;
    ``filter`` (e.g. ``{repeated_ngram} >= 3``) selects exactly the counted utterances.
    """
    out: list[dict[str, Any]] = []
    for base, suffix, op, value, description in FLAGS:
        for name in (c for c in columns.columns if c == base or c.startswith(base + "_")):
            out.append({"flag": name + suffix, "column": name,
                        "count": int(_matches(columns[name], op, value).sum()),
                        "filter": f"{column_ref(name)} {op} {_format_value(value)}", "description": description})
    return out
