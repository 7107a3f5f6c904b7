"""Error analysis over the utterance table and the per-hypothesis error tables.

Pure computation (numpy / pandas / pyarrow, never dash): the error-analysis page, the JSON routes
``/api/errors``, ``/api/breakdown``, ``/api/compare`` and users' scripts all call these functions.

Inputs are the structures of docs/internals.md:

- the utterance table (``Dataset.utterances``): RangeIndex == utterance id, shared columns
  ``num_words`` and ``num_chars``, and per hypothesis ``sub del ins hits wer cer wmr char_edits``
  under ``HypothesisField.column(metric)`` names (``sub`` / ``sub_conformer`` …);
- an errors table (``CorpusAlignment.errors``): ``utt`` (int64 id), ``op`` ("sub"|"del"|"ins"),
  ``ref`` (<NA> for insertions), ``hyp`` (<NA> for deletions).

Functions that take hypothesis columns accept either a ``HypothesisField`` (anything with a
``column(metric)`` method) or a mapping ``metric -> column name`` (see :func:`hypothesis_columns`).
A subset of utterances (a filter's result) is passed as ``utt_ids``: an integer array of ids or a
boolean mask over the utterance table.

Rates follow DESIGN.md: corpus WER = 100·ΣE/ΣN and CER = 100·ΣCE/ΣC (sums, not means); when the
denominator is 0 (only empty references) the rate is 0 if there are no errors, else 100.
"""

from __future__ import annotations

import threading
import weakref
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "BREAKDOWN_SORTS",
    "CI_EXACT_MAX",
    "DURATION_BUCKET_EDGES",
    "DURATION_BUCKET_LABELS",
    "AlphabetCheck",
    "GroupedRates",
    "alphabet_check",
    "bootstrap_wer",
    "breakdown",
    "breakdown_columns",
    "compare",
    "corpus_wer",
    "duration_bucket",
    "group_counts",
    "group_rates",
    "has_digits",
    "hypothesis_columns",
    "scored_rows",
    "top_errors",
    "utterance_comparison",
    "utterances_with_error",
    "word_accuracy_comparison",
]

STRING = pd.StringDtype("pyarrow")

#: Duration buckets, in seconds: each bucket is [lo, hi) (a 2.0 s utterance is in "2-5 s").
DURATION_BUCKET_EDGES: tuple[float, ...] = (0.0, 2.0, 5.0, 10.0, 20.0, 30.0, float("inf"))
DURATION_BUCKET_LABELS: tuple[str, ...] = ("0-2 s", "2-5 s", "5-10 s", "10-20 s", "20-30 s", "30+ s")

_HYP_METRICS = ("sub", "del", "ins", "hits", "wer", "cer", "wmr", "char_edits")
_SHARED = ("num_words", "num_chars")
# The CER denominator of a hypothesis: Dataset keeps h.column("ref_chars") only where the aligner's
# character count differs from num_chars; otherwise num_chars is the denominator.
_REF_CHARS = "ref_chars"
_OPS = {"sub": 0, "del": 1, "ins": 2, "substitution": 0, "deletion": 1, "insertion": 2,
        "substitutions": 0, "deletions": 1, "insertions": 2}


class _HasColumn(Protocol):
    def column(self, metric: str) -> str: ...


Columns = _HasColumn | Mapping[str, str]
UttIds = np.ndarray | Sequence[int] | pd.Series | None


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def hypothesis_columns(columns: Columns) -> dict[str, str]:
    """Metric → column name for one hypothesis.

    ``columns`` is a ``HypothesisField`` (its ``column(metric)`` names ``sub del ins hits wer cer wmr
    char_edits ref_chars``; ``num_words``/``num_chars`` are shared by all hypotheses) or a mapping
    that names some of them (missing metrics get their default, unsuffixed names). The CER
    denominator is the ``ref_chars`` column when the table has it, else ``num_chars``.
    """
    if isinstance(columns, Mapping):
        out = {m: m for m in (*_HYP_METRICS, *_SHARED, _REF_CHARS)}
        out.update(columns)
        return out
    if hasattr(columns, "column"):
        out = {m: columns.column(m) for m in (*_HYP_METRICS, _REF_CHARS)}
        out.update({m: m for m in _SHARED})
        return out
    raise TypeError(f"hypothesis columns must be a HypothesisField or a mapping, not {type(columns).__name__}")


def _positions(utt_ids: UttIds, n: int) -> np.ndarray | None:
    """Row positions (== ids) selected by ``utt_ids``; None means all rows."""
    if utt_ids is None:
        return None
    arr = np.asarray(utt_ids)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"boolean utt_ids mask has length {arr.shape[0]}, the table has {n} rows")
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"utt_ids must be integer ids or a boolean mask, not {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _scored(table: pd.DataFrame, cols: Mapping[str, str], rows: np.ndarray | None) -> np.ndarray | None:
    """``rows`` (None: all) without the utterances the hypothesis was not scored on: lines without
    that field have NaN metrics, and their reference words must not count in any of its rates."""
    name = cols["wer"]
    if name not in table.columns or not table[name].hasnans:
        return rows
    scored = table[name].notna().to_numpy()
    return np.flatnonzero(scored) if rows is None else rows[scored[rows]]


def scored_rows(table: pd.DataFrame, columns: Columns, utt_ids: UttIds = None) -> np.ndarray | None:
    """The ids among ``utt_ids`` (None: all) that hypothesis ``columns`` was scored on; None when
    ``utt_ids`` is None and every utterance was scored."""
    return _scored(table, hypothesis_columns(columns), _positions(utt_ids, len(table)))


def _id_mask(utt_ids: UttIds, size: int) -> np.ndarray | None:
    """Boolean lookup table over ids 0..size-1 (ids ≥ size are never selected)."""
    if utt_ids is None:
        return None
    arr = np.asarray(utt_ids)
    if arr.dtype == bool:
        if arr.shape[0] >= size:
            return arr[:size]
        return np.concatenate([arr, np.zeros(size - arr.shape[0], dtype=bool)])
    mask = np.zeros(size, dtype=bool)
    arr = arr.astype(np.int64, copy=False)
    mask[arr[(arr >= 0) & (arr < size)]] = True
    return mask


def _ints(table: pd.DataFrame, column: str, rows: np.ndarray | None) -> np.ndarray:
    if column not in table.columns:
        raise KeyError(f"column {column!r} is not in the utterance table")
    values = table[column].to_numpy(dtype=np.float64, na_value=0.0) if table[column].hasnans \
        else table[column].to_numpy()
    if rows is not None:
        values = values[rows]
    return np.rint(values).astype(np.int64, copy=False) if values.dtype.kind == "f" else values.astype(np.int64, copy=False)


def _errors_per_utt(table: pd.DataFrame, cols: Mapping[str, str], rows: np.ndarray | None) -> np.ndarray:
    return _ints(table, cols["sub"], rows) + _ints(table, cols["del"], rows) + _ints(table, cols["ins"], rows)


def _ref_chars(table: pd.DataFrame, cols: Mapping[str, str], rows: np.ndarray | None) -> np.ndarray:
    name = cols[_REF_CHARS] if cols[_REF_CHARS] in table.columns else cols["num_chars"]
    return _ints(table, name, rows)


def _char_edits(table: pd.DataFrame, cols: Mapping[str, str], rows: np.ndarray | None) -> np.ndarray:
    if cols["char_edits"] in table.columns:
        return _ints(table, cols["char_edits"], rows)
    # Older tables without char_edits: recover them from the utterance CER. Exact for non-empty
    # references; an empty reference (C = 0) adds no characters, so its edits are left out.
    cer = table[cols["cer"]].to_numpy(dtype=np.float64, na_value=0.0)
    if rows is not None:
        cer = cer[rows]
    chars = _ref_chars(table, cols, rows).astype(np.float64)
    return np.rint(np.where(chars > 0, cer * chars / 100.0, 0.0)).astype(np.int64)


def _unique_counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts.

    Sort-based on purpose: numpy 2.4's hash-based np.unique takes seconds on millions of
    distinct int64 values, where a sort takes ~0.1 s.
    """
    if x.size == 0:
        return x.copy(), np.zeros(0, dtype=np.int64)
    s = np.sort(x)
    start = np.empty(s.size, dtype=bool)
    start[0] = True
    np.not_equal(s[1:], s[:-1], out=start[1:])
    pos = np.flatnonzero(start)
    return s[pos], np.diff(pos, append=s.size).astype(np.int64)


def _rate(errors: np.ndarray | float, total: np.ndarray | float) -> np.ndarray | float:
    """100·errors/total with DESIGN.md's empty-reference rule (0/0 → 0, e/0 → 100)."""
    errors_a = np.asarray(errors, dtype=np.float64)
    total_a = np.asarray(total, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total_a > 0, 100.0 * errors_a / np.where(total_a > 0, total_a, 1.0),
                       np.where(errors_a > 0, 100.0, 0.0))
    return float(out) if out.ndim == 0 else out


def corpus_wer(table: pd.DataFrame, columns: Columns, utt_ids: UttIds = None) -> float:
    """Corpus WER (100·ΣE/ΣN) of one hypothesis over the selected utterances; NaN if none."""
    cols = hypothesis_columns(columns)
    rows = _scored(table, cols, _positions(utt_ids, len(table)))
    errors = _errors_per_utt(table, cols, rows)
    if errors.size == 0:
        return float("nan")
    return _rate(errors.sum(), _ints(table, cols["num_words"], rows).sum())


# --------------------------------------------------------------------------------------------
# confusions: top substitutions / deletions / insertions
# --------------------------------------------------------------------------------------------

@dataclass
class _ErrorCodes:
    """An errors table as integer codes: one shared dictionary for ref and hyp words."""

    utt: np.ndarray      # int64
    op: np.ndarray       # int8: 0 sub, 1 del, 2 ins
    ref: np.ndarray      # int32 code into words, -1 for <NA> (int32: ~2M rows per hypothesis stay small)
    hyp: np.ndarray      # int32 code into words, -1 for <NA>
    words: np.ndarray    # object array of str
    rank: np.ndarray     # int64: position of each word in sorted (code point) order
    index: pd.Index      # word → code

    @property
    def max_utt(self) -> int:
        return int(self.utt.max()) + 1 if self.utt.size else 0


# Errors tables are built once per dataset and never modified, so their codes are cached,
# keyed by identity (a DataFrame is not hashable); the weakref drops the entry with the table.
_CODES_CACHE: dict[int, tuple[weakref.ref, _ErrorCodes]] = {}
_CODES_LOCK = threading.Lock()


def _error_codes(errors: pd.DataFrame) -> _ErrorCodes:
    key = id(errors)
    with _CODES_LOCK:
        hit = _CODES_CACHE.get(key)
        if hit is not None and hit[0]() is errors:
            return hit[1]
    missing = {"utt", "op", "ref", "hyp"} - set(errors.columns)
    if missing:
        raise KeyError(f"errors table lacks column(s) {sorted(missing)}; expected utt, op, ref, hyp")
    n = len(errors)
    op_str = errors["op"].astype(object).to_numpy() if n else np.zeros(0, dtype=object)
    op = np.full(n, -1, dtype=np.int8)
    for name, code in (("sub", 0), ("del", 1), ("ins", 2)):
        op[op_str == name] = code
    both = pd.concat([errors["ref"], errors["hyp"]], ignore_index=True)
    codes, uniques = pd.factorize(both, use_na_sentinel=True)
    words = np.asarray(uniques, dtype=object) if len(uniques) else np.zeros(0, dtype=object)
    rank = np.empty(len(words), dtype=np.int64)
    rank[np.argsort(words.astype(str), kind="stable")] = np.arange(len(words))
    result = _ErrorCodes(
        utt=errors["utt"].to_numpy(dtype=np.int64),
        op=op,
        ref=codes[:n].astype(np.int32),
        hyp=codes[n:].astype(np.int32),
        words=words,
        rank=rank,
        index=pd.Index(words, dtype=object),
    )
    with _CODES_LOCK:
        for k in [k for k, (ref, _) in _CODES_CACHE.items() if ref() is None]:
            del _CODES_CACHE[k]
        _CODES_CACHE[key] = (weakref.ref(errors), result)
    return result


def _op_code(op: str) -> int:
    try:
        return _OPS[op]
    except KeyError:
        raise ValueError(f"unknown error kind {op!r}; choose sub, del or ins") from None


def _top(counts: np.ndarray, tiebreak: list[np.ndarray], limit: int | None) -> np.ndarray:
    """Positions of the `limit` largest counts, most frequent first, ties by the tiebreak keys."""
    if limit is not None and limit < len(counts):
        if limit <= 0:
            return np.zeros(0, dtype=np.int64)
        threshold = np.partition(counts, len(counts) - limit)[len(counts) - limit]
        keep = np.flatnonzero(counts >= threshold)
    else:
        keep = np.arange(len(counts))
    order = np.lexsort([t[keep] for t in reversed(tiebreak)] + [-counts[keep]])
    out = keep[order]
    return out[:limit] if limit is not None else out


def _word_counts(codes: _ErrorCodes, word_codes: np.ndarray, limit: int | None) -> pd.DataFrame:
    counts = np.bincount(word_codes, minlength=len(codes.words)) if word_codes.size else \
        np.zeros(len(codes.words), dtype=np.int64)
    present = np.flatnonzero(counts)
    top = present[_top(counts[present], [codes.rank[present]], limit)]
    return pd.DataFrame({
        "word": pd.array(codes.words[top].tolist(), dtype=STRING),
        "count": counts[top].astype(np.int64),
    })


def top_errors(errors: pd.DataFrame, utt_ids: UttIds = None, limit: int | None = 100) -> dict[str, pd.DataFrame]:
    """The most frequent substitutions, deletions and insertions of one hypothesis.

    Returns ``{"substitutions": DataFrame[ref, hyp, count], "deletions": DataFrame[word, count],
    "insertions": DataFrame[word, count]}``, each most frequent first, ties broken alphabetically
    (code point order: ref then hyp, or word), at most ``limit`` rows each (None: all).
    ``utt_ids`` (ids or a boolean mask over the utterance table) restricts to those utterances.
    """
    codes = _error_codes(errors)
    keep = None
    if utt_ids is not None:
        id_mask = _id_mask(utt_ids, codes.max_utt)
        keep = id_mask[codes.utt] if codes.utt.size else np.zeros(0, dtype=bool)

    def rows(op: int) -> np.ndarray:
        m = codes.op == op
        if keep is not None:
            m &= keep
        return m

    m = rows(0) & (codes.ref >= 0) & (codes.hyp >= 0)
    nwords = max(len(codes.words), 1)
    pair = codes.ref[m].astype(np.int64) * nwords + codes.hyp[m]
    uniq, counts = _unique_counts(pair)
    ref_code, hyp_code = uniq // nwords, uniq % nwords
    top = _top(counts, [codes.rank[ref_code], codes.rank[hyp_code]], limit)
    subs = pd.DataFrame({
        "ref": pd.array(codes.words[ref_code[top]].tolist(), dtype=STRING),
        "hyp": pd.array(codes.words[hyp_code[top]].tolist(), dtype=STRING),
        "count": counts[top].astype(np.int64),
    })
    dels = _word_counts(codes, codes.ref[rows(1) & (codes.ref >= 0)], limit)
    ins = _word_counts(codes, codes.hyp[rows(2) & (codes.hyp >= 0)], limit)
    return {"substitutions": subs, "deletions": dels, "insertions": ins}


def utterances_with_error(errors: pd.DataFrame, op: str, ref: str | None = None,
                          hyp: str | None = None) -> np.ndarray:
    """Sorted distinct utterance ids where the given error occurs.

    ``op`` is "sub", "del" or "ins"; ``ref``/``hyp`` restrict the words (None: any). A deletion
    is matched by ``ref`` (the deleted word), an insertion by ``hyp`` (the inserted word).
    """
    code = _op_code(op)
    codes = _error_codes(errors)
    m = codes.op == code
    for word, arr in ((ref, codes.ref), (hyp, codes.hyp)):
        if word is None:
            continue
        loc = codes.index.get_indexer([word])[0]
        if loc < 0:
            return np.zeros(0, dtype=np.int64)
        m &= arr == loc
    return _unique_counts(codes.utt[m])[0]


# --------------------------------------------------------------------------------------------
# breakdowns
# --------------------------------------------------------------------------------------------

#: What a breakdown can be sorted by; prefix ``-`` for descending (``-wer``: worst group first).
BREAKDOWN_SORTS: tuple[str, ...] = ("value", "utterances", "words", "wer", "cer")

#: A group of at most this many utterances gets an exact bootstrap (its rows are resampled); a
#: larger one draws its resampled sums from their normal limit (see :meth:`GroupedRates.intervals`).
CI_EXACT_MAX = 500

_MISSING_SEED_KEY = b"\x00missing"
_RESAMPLE_CELLS = 1_000_000  # rows drawn at once per group (bounds the memory of an interval)


def duration_bucket(durations: pd.Series | np.ndarray | Sequence[float]) -> pd.Series:
    """Ordered categorical of duration buckets: 0-2 s, 2-5 s, 5-10 s, 10-20 s, 20-30 s, 30+ s.

    Each bucket is [lo, hi): 2.0 s falls in "2-5 s", 30.0 s in "30+ s". Missing or negative
    durations get <NA>. The index of a Series input is kept.
    """
    index = durations.index if isinstance(durations, pd.Series) else None
    values = pd.to_numeric(pd.Series(durations, index=index), errors="coerce").astype(np.float64)
    cut = pd.cut(values, bins=list(DURATION_BUCKET_EDGES), right=False, labels=list(DURATION_BUCKET_LABELS),
                 ordered=True)
    return pd.Series(cut, index=values.index, name="duration_bucket")


def group_counts(table: pd.DataFrame) -> dict[str, int]:
    """Columns worth a breakdown, with their number of distinct non-missing values.

    ``duration_bucket`` first (when there is a duration; the count is of buckets that occur), then
    every string, boolean, categorical or integer column in which some value repeats, whatever
    its cardinality (2,338 speakers is a fine breakdown). Left out: floating-point measurements
    (bucket or filter them) and columns whose values are all distinct (an identifier: its
    breakdown would be the utterance table itself).
    """
    out: dict[str, int] = {}
    if "duration" in table.columns:
        buckets = pd.Categorical(duration_bucket(table["duration"].to_numpy(dtype=np.float64, na_value=np.nan)))
        out["duration_bucket"] = int(np.count_nonzero(np.bincount(buckets.codes[buckets.codes >= 0],
                                                                  minlength=len(buckets.categories))))
    for name in table.columns:
        if name in ("duration_bucket", "id"):
            continue
        s = table[name]
        if s.dtype.kind in "fcmM":
            continue  # continuous measurements and times: bucket or filter them instead
        try:
            distinct, present = int(s.nunique(dropna=True)), int(s.count())
        except TypeError:  # unhashable Python objects (lists, dicts)
            continue
        if distinct and (distinct < present or present == 1):
            out[str(name)] = distinct
    return out


def breakdown_columns(table: pd.DataFrame) -> list[str]:
    """Columns :func:`breakdown` is worth calling with (see :func:`group_counts`); any other
    column of the table works too."""
    return list(group_counts(table))


def _factorize(s: pd.Series) -> tuple[np.ndarray, Any, bool]:
    """(codes, values, ordered): codes index into values, -1 = missing."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cat = s.array
        return cat.codes.astype(np.int64), cat.categories, bool(cat.ordered)
    if s.dtype.kind in "iu" and len(s):
        x = s.to_numpy()
        lo, hi = int(x.min()), int(x.max())
        if hi - lo <= 4 * len(x) + 1_000_000:
            # Dense integer ids (speaker 19, 26, …): counting beats pandas' hash table (~4x).
            seen = np.bincount((x - lo).astype(np.int64), minlength=hi - lo + 1) > 0
            values = np.flatnonzero(seen)
            lookup = np.cumsum(seen) - 1
            return lookup[x - lo].astype(np.int64), values + lo, False
    codes, uniques = pd.factorize(s.array, use_na_sentinel=True, sort=False)
    return codes.astype(np.int64), uniques, False


def _group_codes(table: pd.DataFrame, by: str, rows: np.ndarray | None) -> tuple[np.ndarray, Any, bool]:
    """(codes per selected row (-1 = missing), group values, values are ordered categories)."""
    if by == "duration_bucket" and "duration_bucket" not in table.columns:
        if "duration" not in table.columns:
            raise ValueError("cannot break down by duration_bucket: the table has no duration column")
        durations = table["duration"].to_numpy(dtype=np.float64, na_value=np.nan)
        if rows is not None:
            durations = durations[rows]
        cat = pd.Categorical(duration_bucket(durations))
        return cat.codes.astype(np.int64), cat.categories, True
    if by not in table.columns:
        raise ValueError(f"unknown column {by!r} for a breakdown; choose one of: "
                         + ", ".join(breakdown_columns(table)))
    s = table[by]
    if rows is not None:
        s = s.iloc[rows]
    return _factorize(s)


def _value_order(values: list[Any]) -> np.ndarray:
    """Positions that sort the (non-missing) group values ascending; mixed types compare as text."""
    try:
        return np.argsort(pd.Index(values, dtype=object).to_numpy(), kind="stable")
    except TypeError:
        return np.argsort(np.asarray([str(v) for v in values], dtype=object), kind="stable")


def _parse_breakdown_sort(sort: str | None) -> tuple[str, bool]:
    text = (sort or "value").strip()
    descending = text.startswith("-")
    key = text[1:] if descending else text
    if key not in BREAKDOWN_SORTS:
        raise ValueError(f"unknown breakdown sort {sort!r}; choose one of {', '.join(BREAKDOWN_SORTS)}, "
                         "with a leading - for descending (e.g. -wer: worst group first)")
    return key, descending


@dataclass(frozen=True)
class GroupedRates:
    """Corpus WER/CER of one hypothesis per value of a column, over a selection of utterances.

    ``groups`` is DataFrame[value, utterances, words, wer, cer], one row per value present in the
    selection, in value order (bucket order for duration_bucket, the categories' order for an
    ordered categorical, else ascending; the missing values' group, value None, last). Its
    positions are the group numbers :meth:`view` returns as index and :meth:`intervals` takes.
    Computed once with bincounts over integer codes (:func:`group_rates`); sorting, thresholds,
    paging and intervals of a page then cost nothing like a pass over the utterances.
    """

    groups: pd.DataFrame
    slot: np.ndarray            # int32: each selected utterance's group number
    rows: np.ndarray | None     # positions of the selected utterances (None: all)
    table: pd.DataFrame
    columns: Mapping[str, str]

    def view(self, sort: str | None = "value", min_words: int = 0, min_utterances: int = 0) -> pd.DataFrame:
        """The groups with at least ``min_words`` reference words and ``min_utterances``
        utterances, sorted (``value``, ``utterances``, ``words``, ``wer`` or ``cer``; ``-`` prefix:
        descending; ties in value order; missing values last either way). Index: group numbers."""
        key, descending = _parse_breakdown_sort(sort)
        g = self.groups
        keep = (g["words"].to_numpy() >= min_words) & (g["utterances"].to_numpy() >= min_utterances)
        pos = np.flatnonzero(keep)
        if key == "value":
            if descending:
                missing_last = len(pos) and g["value"].iat[pos[-1]] is None
                pos = np.concatenate([pos[-2::-1], pos[-1:]]) if missing_last else pos[::-1]
        else:
            k = g[key].to_numpy()[pos]
            pos = pos[np.lexsort((pos, -k if descending else k))]
        return g.iloc[pos]

    def intervals(self, groups: Sequence[int] | np.ndarray, n_resamples: int = 1000, seed: int = 0,
                  alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi): the (1-alpha) percentile bootstrap interval of each listed group's WER.

        Each group resamples its own utterances with replacement (``n_resamples`` times) and takes
        100·ΣE/ΣN of each resample, as :func:`bootstrap_wer` does for the whole selection. The
        random stream of a group is derived from ``seed`` and the group's value, so its interval
        is the same on every page, in every sort order and whichever groups are asked with it.
        Groups of more than :data:`CI_EXACT_MAX` utterances draw the resample's (ΣE, ΣN) from
        their normal limit (the exact resampling's mean and covariance) instead of drawing rows:
        indistinguishable at that size, and a page of large groups stays fast.
        """
        _check_bootstrap_args(n_resamples, alpha)
        wanted = np.asarray(groups, dtype=np.int64)
        lo = np.full(len(wanted), np.nan)
        hi = np.full(len(wanted), np.nan)
        if not len(wanted):
            return lo, hi
        lookup = np.full(len(self.groups), -1, dtype=np.int64)
        lookup[wanted] = np.arange(len(wanted))
        which = lookup[self.slot]
        hit = np.flatnonzero(which >= 0)
        hit = hit[np.argsort(which[hit], kind="stable")]
        positions = hit if self.rows is None else self.rows[hit]
        errors = _errors_per_utt(self.table, self.columns, positions)
        words = _ints(self.table, self.columns["num_words"], positions)
        bounds = np.concatenate([[0], np.cumsum(np.bincount(which[hit], minlength=len(wanted)))])
        values = self.groups["value"].to_numpy(dtype=object)
        for i, group in enumerate(wanted):
            a, b = bounds[i], bounds[i + 1]
            if b > a:
                rng = np.random.default_rng([seed, _seed_key(values[group])])
                lo[i], hi[i] = _group_interval(errors[a:b], words[a:b], n_resamples, alpha, rng)
        return lo, hi


def _seed_key(value: Any) -> int:
    return zlib.crc32(_MISSING_SEED_KEY if value is None else f"{type(value).__name__}:{value}".encode())


def _group_interval(errors: np.ndarray, words: np.ndarray, n_resamples: int, alpha: float,
                    rng: np.random.Generator) -> tuple[float, float]:
    m = len(errors)
    if m <= CI_EXACT_MAX:
        sum_e = np.empty(n_resamples)
        sum_n = np.empty(n_resamples)
        # Both counts in one int64 (errors in the high half): one gather and one sum instead of
        # two, ~3x faster; exact while a resample's sums fit their halves (always, in practice).
        packed = None
        if errors.min() >= 0 and words.min() >= 0 and errors.max() * m < 2**31 and words.max() * m < 2**32:
            packed = (errors.astype(np.int64) << 32) | words.astype(np.int64)
        chunk = max(1, _RESAMPLE_CELLS // m)
        for s in range(0, n_resamples, chunk):
            idx = rng.integers(0, m, size=(min(chunk, n_resamples - s), m), dtype=np.int32)
            done = slice(s, s + len(idx))
            if packed is not None:
                sums = packed[idx].sum(axis=1)
                sum_e[done], sum_n[done] = sums >> 32, sums & 0xFFFFFFFF
            else:
                sum_e[done], sum_n[done] = errors[idx].sum(axis=1), words[idx].sum(axis=1)
    else:
        both = np.stack([errors, words]).astype(np.float64)
        # Resampling m rows: the sums' mean is the group's sums, their covariance m × the rows'
        # (population) covariance; by the CLT their distribution is the normal with those moments.
        draws = rng.multivariate_normal(both.sum(axis=1), np.cov(both, bias=True) * m, size=n_resamples,
                                        method="svd")
        sum_e, sum_n = np.maximum(draws[:, 0], 0.0), draws[:, 1]
    return _percentile_ci(np.asarray(_rate(sum_e, sum_n)), alpha)


def group_rates(table: pd.DataFrame, by: str, hyp_field_columns: Columns, utt_ids: UttIds = None) -> GroupedRates:
    """Corpus WER/CER of one hypothesis per value of ``by``, for :func:`breakdown` and paged views.

    ``by`` is any string, boolean, categorical or integer column (any number of distinct values;
    missing values form one group, value None) or ``"duration_bucket"`` (see :func:`duration_bucket`,
    computed from ``duration``). WER = 100·ΣE/ΣN and CER = 100·ΣCE/ΣC inside each group. One pass:
    the column is turned into integer codes and every sum is a bincount over them.
    """
    cols = hypothesis_columns(hyp_field_columns)
    rows = _scored(table, cols, _positions(utt_ids, len(table)))
    codes, values, ordered = _group_codes(table, by, rows)
    nvalues = len(values)
    slot = np.where(codes >= 0, codes, nvalues)  # the last slot collects missing values

    def total(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(slot, weights=weights, minlength=nvalues + 1)

    n_utt = total(None).astype(np.int64)
    sums = {k: total(v.astype(np.float64)) for k, v in
            (("e", _errors_per_utt(table, cols, rows)), ("n", _ints(table, cols["num_words"], rows)),
             ("ce", _char_edits(table, cols, rows)), ("c", _ref_chars(table, cols, rows)))}
    present = np.flatnonzero(n_utt[:nvalues] > 0)
    value_list = [_py(v) for v in np.asarray(values, dtype=object)[present]]
    if not ordered:
        order = _value_order(value_list)
        present = present[order]
        value_list = [value_list[i] for i in order]
    if n_utt[nvalues]:
        present = np.append(present, nvalues)
        value_list.append(None)
    renumber = np.full(nvalues + 1, -1, dtype=np.int32)
    renumber[present] = np.arange(len(present), dtype=np.int32)
    groups = pd.DataFrame({
        "value": pd.Series(value_list, dtype=object),
        "utterances": n_utt[present],
        "words": sums["n"][present].astype(np.int64),
        "wer": np.asarray(_rate(sums["e"][present], sums["n"][present]), dtype=np.float64).reshape(-1),
        "cer": np.asarray(_rate(sums["ce"][present], sums["c"][present]), dtype=np.float64).reshape(-1),
    })
    return GroupedRates(groups, renumber[slot], rows, table, cols)


def breakdown(table: pd.DataFrame, by: str, hyp_field_columns: Columns, utt_ids: UttIds = None, *,
              sort: str = "value", min_words: int = 0, min_utterances: int = 0, ci: bool = False,
              n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05,
              max_groups: int | None = None) -> pd.DataFrame:
    """Corpus WER/CER of one hypothesis per value of a column.

    Returns DataFrame[value, utterances, words, wer, cer] (see :func:`group_rates` for ``by``),
    one row per value that occurs in the selection and has at least ``min_words`` reference words
    and ``min_utterances`` utterances, sorted by ``sort`` (see :meth:`GroupedRates.view`: default
    value order, ``"-wer"`` worst first). ``ci=True`` adds ``ci_lo``, ``ci_hi``: each group's
    seeded bootstrap interval (:meth:`GroupedRates.intervals`). ``max_groups`` (None: any number)
    turns more groups than that into a ValueError.
    """
    grouped = group_rates(table, by, hyp_field_columns, utt_ids)
    if max_groups is not None and len(grouped.groups) > max_groups:
        raise ValueError(f"column {by!r} has {len(grouped.groups)} groups, more than max_groups={max_groups}")
    out = grouped.view(sort, min_words, min_utterances)
    if ci:
        lo, hi = grouped.intervals(out.index.to_numpy(), n_resamples, seed, alpha)
        out = out.assign(ci_lo=lo, ci_hi=hi)
    return out.reset_index(drop=True)


def _py(v: Any) -> Any:
    """numpy scalar → Python scalar, NA → None (for JSON and object columns)."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------

# Rows in groups smaller than this are resampled by drawing row indices, the rest through a
# multinomial over the groups: a group costs ~95 ns per resample in numpy's multinomial, a drawn
# index ~15 ns, so a group of fewer than ~6-8 rows is cheaper to draw row by row.
_RARE_COUNT = 8
_STREAMS = 2          # fixed, so results do not depend on the machine's core count
_CHUNK_CELLS = 2_000_000


def _group_rows(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of the integer columns: (counts (K,), values (K, m) int64), rarest first."""
    cols = [np.asarray(c, dtype=np.int64) for c in columns]
    n = cols[0].size
    lo = np.array([c.min() for c in cols], dtype=np.int64)
    span = np.array([c.max() for c in cols], dtype=np.int64) - lo + 1
    size = float(np.prod(span.astype(np.float64)))
    if size < 2.0 ** 62:
        # Mixed-radix key: one int64 per row, decoded back into the columns afterwards.
        mult = np.ones(len(cols), dtype=np.int64)
        for j in range(len(cols) - 2, -1, -1):
            mult[j] = mult[j + 1] * span[j + 1]
        key = np.zeros(n, dtype=np.int64)
        for c, low, m in zip(cols, lo, mult):
            key += (c - low) * m
        if size <= 4 * n + 1_000_000:  # small key space: counting beats sorting
            all_counts = np.bincount(key, minlength=int(size))
            uniq = np.flatnonzero(all_counts)
            counts = all_counts[uniq]
        else:
            uniq, counts = _unique_counts(key)
        values = (uniq[:, None] // mult[None, :]) % span[None, :] + lo[None, :]
    else:
        values, counts = np.unique(np.stack(cols, axis=1), axis=0, return_counts=True)
    order = np.argsort(counts, kind="stable")  # ascending: keeps numpy's sequential binomials precise
    return counts[order].astype(np.int64), values[order]


def _bootstrap_sums(columns: Sequence[np.ndarray], n_resamples: int,
                    seed: np.random.SeedSequence) -> np.ndarray:
    """Column sums of ``n_resamples`` resamples of the rows (with replacement), shape (B, m).

    Exact nonparametric bootstrap, computed on the distinct rows. Resampling n rows with
    replacement puts Multinomial(n, n_g/n) copies into the group g of identical rows, so a
    resample's sums are Σ_g count_g·value_g: O(K) per resample for K distinct rows instead of
    O(n) (utterances have small integer counts, so K is a few thousand at a million utterances).
    Groups with fewer than ``_RARE_COUNT`` rows share one multinomial category instead; the R
    draws that land there are drawn uniformly among those rows (the same distribution, cheaper
    when the distinct rows are many and small).
    """
    n = len(columns[0])
    counts, values = _group_rows(columns)
    m = values.shape[1]
    rare = counts < _RARE_COUNT
    freq_counts, freq_vals = counts[~rare], values[~rare].astype(np.float64)  # exact below 2**53
    rare_rows = np.repeat(values[rare], counts[rare], axis=0)
    n_rare = len(rare_rows)
    rare_cols = [np.ascontiguousarray(rare_rows[:, j]) for j in range(m)]
    rare_cols = [c.astype(np.int32) if np.abs(c).max(initial=0) < 2**31 else c for c in rare_cols]
    cats = np.append(freq_counts, n_rare) if n_rare else freq_counts
    p = cats / n
    out = np.zeros((n_resamples, m), dtype=np.float64)
    streams = seed.spawn(_STREAMS)
    bounds = np.linspace(0, n_resamples, _STREAMS + 1).astype(int)
    per_resample = len(cats) + n_rare  # cells touched per resample (n_rare rare draws expected)
    chunk = max(1, int(_CHUNK_CELLS // max(per_resample, 1.0)))

    def work(i: int) -> None:
        rng = np.random.default_rng(streams[i])
        for s in range(bounds[i], bounds[i + 1], chunk):
            e = min(s + chunk, bounds[i + 1])
            if len(freq_counts):
                draws = rng.multinomial(n, p, size=e - s)
                out[s:e] = draws[:, :len(freq_counts)].astype(np.float64) @ freq_vals
                r = draws[:, -1] if n_rare else np.zeros(e - s, dtype=np.int64)
            else:
                r = np.full(e - s, n, dtype=np.int64)
            total = int(r.sum())
            if total:
                idx = rng.integers(0, n_rare, size=total, dtype=np.int32 if n_rare < 2**31 else np.int64)
                which = np.repeat(np.arange(e - s), r)
                for j, c in enumerate(rare_cols):
                    out[s:e, j] += np.bincount(which, weights=c[idx], minlength=e - s)

    with ThreadPoolExecutor(_STREAMS) as pool:  # numpy's generators release the GIL
        list(pool.map(work, range(_STREAMS)))
    return out


def _marginal_stream(seed: int) -> np.random.SeedSequence:
    # The same stream for every single-system interval, so compare()'s "a"/"b" intervals equal
    # bootstrap_wer()'s for the same seed (one number per system wherever it is shown).
    return np.random.SeedSequence(seed).spawn(2)[0]


def _diff_stream(seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed).spawn(2)[1]


def _percentile_ci(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _check_bootstrap_args(n_resamples: int, alpha: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_wer(table: pd.DataFrame, columns: Columns, n_resamples: int = 1000, seed: int = 0,
                  alpha: float = 0.05, utt_ids: UttIds = None) -> tuple[float, float, float]:
    """Corpus WER of one hypothesis and its (1-alpha) percentile bootstrap interval.

    Utterances are resampled with replacement (``n_resamples`` times, seeded); each resample's WER
    is 100·ΣE/ΣN of the resample; the interval is the alpha/2 and 1-alpha/2 quantiles of those.
    Returns (wer, lo, hi); all NaN when no utterance is selected.
    """
    _check_bootstrap_args(n_resamples, alpha)
    cols = hypothesis_columns(columns)
    rows = _scored(table, cols, _positions(utt_ids, len(table)))
    e = _errors_per_utt(table, cols, rows)
    n = _ints(table, cols["num_words"], rows)
    if e.size == 0:
        return float("nan"), float("nan"), float("nan")
    sums = _bootstrap_sums([e, n], n_resamples, _marginal_stream(seed))
    lo, hi = _percentile_ci(np.asarray(_rate(sums[:, 0], sums[:, 1])), alpha)
    return float(_rate(e.sum(), n.sum())), lo, hi


def _bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value for H0: difference = 0.

    p = min(1, 2·min(1 + #{d* ≤ 0}, 1 + #{d* ≥ 0}) / (B + 1)): twice the smaller tail of the
    bootstrap distribution beyond 0, with the +1 correction (Davison & Hinkley 1997, §4.4) so that
    p ≥ 2/(B+1) is never 0. It inverts the percentile interval: p < alpha when 0 lies outside
    the (1-alpha) interval. Identical systems (every d* = 0) give p = 1.
    """
    b = diffs.size
    below = int(np.count_nonzero(diffs <= 0))
    above = int(np.count_nonzero(diffs >= 0))
    return float(min(1.0, 2.0 * min(below + 1, above + 1) / (b + 1)))


def compare(table: pd.DataFrame, a_columns: Columns, b_columns: Columns, n_resamples: int = 1000,
            seed: int = 0, alpha: float = 0.05, utt_ids: UttIds = None) -> dict[str, dict[str, Any]]:
    """Corpus WER of hypotheses A and B with bootstrap intervals, and the paired difference B − A.

    ``{"a": {"wer", "ci": [lo, hi]}, "b": {...}, "diff": {"wer", "ci": [lo, hi], "p"}}``, WERs in
    percent, ``diff.wer`` = WER(B) − WER(A) in percentage points (negative: B is better).
    A's and B's intervals are percentile bootstraps as in :func:`bootstrap_wer`. The difference
    is a PAIRED bootstrap: each resample draws the same utterances for A and B, so the
    per-utterance correlation between the systems is kept; its interval is the percentile
    interval of the resampled differences and ``p`` the two-sided p-value of :func:`_bootstrap_p`.
    A's and B's intervals are exactly :func:`bootstrap_wer`'s for the same seed; the difference
    uses its own stream derived from ``seed``. Values are NaN when no utterance is selected.
    """
    _check_bootstrap_args(n_resamples, alpha)
    ca, cb = hypothesis_columns(a_columns), hypothesis_columns(b_columns)
    # paired: only the utterances both hypotheses were scored on
    rows = _scored(table, cb, _scored(table, ca, _positions(utt_ids, len(table))))
    ea, eb = _errors_per_utt(table, ca, rows), _errors_per_utt(table, cb, rows)
    n = _ints(table, ca["num_words"], rows)
    nan = float("nan")
    if n.size == 0:
        return {"a": {"wer": nan, "ci": [nan, nan]}, "b": {"wer": nan, "ci": [nan, nan]},
                "diff": {"wer": nan, "ci": [nan, nan], "p": nan}}
    out: dict[str, dict[str, Any]] = {}
    for name, e in (("a", ea), ("b", eb)):
        sums = _bootstrap_sums([e, n], n_resamples, _marginal_stream(seed))
        out[name] = {"wer": float(_rate(e.sum(), n.sum())),
                     "ci": list(_percentile_ci(np.asarray(_rate(sums[:, 0], sums[:, 1])), alpha))}
    # The difference only needs D = E_b − E_a and N per utterance (fewer distinct rows than the
    # triple). Z = E_a on empty references keeps the empty-reference rule exact when ΣN = 0.
    d = eb - ea
    z = np.where(n == 0, ea, 0)
    sums = _bootstrap_sums([d, n, z], n_resamples, _diff_stream(seed))
    sd, sn, sz = sums[:, 0], sums[:, 1], sums[:, 2]
    diffs = np.where(sn > 0, 100.0 * sd / np.where(sn > 0, sn, 1.0),
                     np.where(sz + sd > 0, 100.0, 0.0) - np.where(sz > 0, 100.0, 0.0))
    out["diff"] = {"wer": out["b"]["wer"] - out["a"]["wer"], "ci": list(_percentile_ci(diffs, alpha)),
                   "p": _bootstrap_p(diffs)}
    return out


# --------------------------------------------------------------------------------------------
# comparisons for plots
# --------------------------------------------------------------------------------------------

def word_accuracy_comparison(vocab: pd.DataFrame, acc_a_col: str, acc_b_col: str,
                             min_count: int = 1) -> pd.DataFrame:
    """Per-word accuracy of A and B: DataFrame[word, count, acc_a, acc_b, diff], diff = B − A.

    Words with fewer than ``min_count`` reference occurrences (or no accuracy) are left out.
    Sorted by |diff| descending, then count descending, then word.
    """
    for c in ("word", "count", acc_a_col, acc_b_col):
        if c not in vocab.columns:
            raise KeyError(f"vocabulary table has no column {c!r}; columns: {', '.join(map(str, vocab.columns))}")
    count = vocab["count"].to_numpy(dtype=np.float64, na_value=0.0)
    a = vocab[acc_a_col].to_numpy(dtype=np.float64, na_value=np.nan)
    b = vocab[acc_b_col].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = (count >= min_count) & ~np.isnan(a) & ~np.isnan(b)
    words = vocab["word"].to_numpy(dtype=object)[keep]
    a, b, count = a[keep], b[keep], count[keep]
    diff = b - a
    order = np.lexsort([words.astype(str), -count, -np.abs(diff)])
    return pd.DataFrame({
        "word": pd.array(words[order].tolist(), dtype=STRING),
        "count": count[order].astype(np.int64),
        "acc_a": a[order],
        "acc_b": b[order],
        "diff": diff[order],
    })


def utterance_comparison(table: pd.DataFrame, a_field_cols: Columns, b_field_cols: Columns,
                         metric: str = "wer", utt_ids: UttIds = None) -> pd.DataFrame:
    """Per-utterance metric of A and B for a scatter plot: DataFrame[id, a, b, diff], diff = B − A.

    ``metric`` is a per-hypothesis metric (wer, cer, wmr, sub, del, ins, hits, char_edits).
    """
    if metric not in _HYP_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(_HYP_METRICS)}")
    ca, cb = hypothesis_columns(a_field_cols), hypothesis_columns(b_field_cols)
    rows = _positions(utt_ids, len(table))
    ids = table["id"].to_numpy(dtype=np.int64) if "id" in table.columns else np.arange(len(table), dtype=np.int64)
    vals = []
    for c in (ca, cb):
        if c[metric] not in table.columns:
            raise KeyError(f"column {c[metric]!r} is not in the utterance table")
        vals.append(table[c[metric]].to_numpy(dtype=np.float64, na_value=np.nan))
    a, b = vals
    if rows is not None:
        ids, a, b = ids[rows], a[rows], b[rows]
    return pd.DataFrame({"id": ids, "a": a, "b": b, "diff": b - a})


# --------------------------------------------------------------------------------------------
# alphabet check
# --------------------------------------------------------------------------------------------

class AlphabetCheck(NamedTuple):
    oov_chars: pd.Series   # string: each utterance's distinct characters outside the alphabet, sorted ("" if none)
    counts: pd.DataFrame   # char, count (occurrences), utterances (containing it), example_id (first one); by count desc


def _text_array(texts: pd.Series) -> pa.Array:
    """Texts as one Arrow string array, missing → ""."""
    if isinstance(texts.dtype, pd.StringDtype):
        arr = pa.array(texts.array)
    else:
        arr = pa.array(pd.Series(texts, dtype=object).where(texts.notna(), ""), type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.fill_null(arr, "")


def has_digits(texts: pd.Series) -> pd.Series:
    """Boolean Series: the text contains a decimal digit of any script (Unicode Nd: 0-9, ٠-٩, …),
    i.e. numbers a char model cannot spell unless they are written out as words."""
    found = pc.match_substring_regex(_text_array(texts), r"\p{Nd}").to_numpy(zero_copy_only=False).astype(bool)
    return pd.Series(found, index=texts.index, name="has_digits")


def _utf8_lengths(cps: np.ndarray) -> np.ndarray:
    return 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)


def alphabet_check(texts: pd.Series, alphabet: str | Sequence[str]) -> AlphabetCheck:
    """Characters of ``texts`` outside ``alphabet`` (e.g. NeMo char models: "abc…z '").

    The alphabet is taken literally, character by character (include the space if it is allowed).
    Returns ``(oov_chars, counts)`` (see :class:`AlphabetCheck`; digits: :func:`has_digits`).
    Missing texts count as empty. Vectorised: pyarrow strips the allowed characters, and the few
    left over are counted as code points.
    """
    allowed = sorted(set("".join(alphabet)))
    index = texts.index
    arr = _text_array(texts)
    if allowed:
        cls = "[" + "".join(f"\\x{{{ord(c):X}}}" for c in allowed) + "]+"
        rest = pc.replace_substring_regex(arr, cls, "")
    else:
        rest = arr
    lengths = pc.utf8_length(rest).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(lengths)
    nonempty = np.flatnonzero(lengths)
    if nonempty.size:
        joined = "".join(rest.take(pa.array(nonempty)).to_pylist())
        cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        utt = np.repeat(nonempty, lengths[nonempty])
    else:
        cps = np.zeros(0, dtype=np.int64)
        utt = np.zeros(0, dtype=np.int64)

    # Dense codes for the distinct characters (few: an alphabet's worth), in code point order.
    if cps.size:
        full = np.bincount(cps)
        chars = np.flatnonzero(full)
        count = full[chars]
        lookup = np.zeros(full.size, dtype=np.int64)
        lookup[chars] = np.arange(chars.size)
        code = lookup[cps]
    else:
        chars = count = code = np.zeros(0, dtype=np.int64)
    nchars = max(chars.size, 1)
    # Distinct (utterance, char) pairs, sorted by utterance then code point.
    pair, _ = _unique_counts(utt * nchars + code)
    p_utt, p_code = pair // nchars, pair % nchars
    p_cp = chars[p_code] if chars.size else p_code
    # Build the per-utterance strings straight as an Arrow array: offsets from UTF-8 byte lengths.
    byte_len = np.bincount(p_utt, weights=_utf8_lengths(p_cp), minlength=n).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(byte_len, out=offsets[1:])
    data = p_cp.astype(np.uint32).tobytes().decode("utf-32-le").encode("utf-8")
    oov = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
    oov_series = pd.Series(pd.array(oov.cast(pa.string()), dtype=STRING), index=index, name="oov_chars")

    utterances = np.bincount(p_code, minlength=chars.size)
    first = np.full(chars.size, n, dtype=np.int64)
    np.minimum.at(first, p_code, p_utt)  # p_utt is a position; ids are the index's labels
    example = np.asarray(index)[first] if chars.size else np.zeros(0, dtype=np.int64)
    char_str = np.array([chr(c) for c in chars], dtype=object)
    order = np.lexsort([chars, -count])
    counts = pd.DataFrame({
        "char": pd.array(char_str[order].tolist(), dtype=STRING),
        "count": count[order].astype(np.int64),
        "utterances": utterances[order].astype(np.int64),
        "example_id": example[order].astype(np.int64),
    })
    return AlphabetCheck(oov_series, counts)
