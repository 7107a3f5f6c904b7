"""Corpus WER/CER of one hypothesis per value of a column (speaker, duration bucket, …), sorted,
thresholded and with per-group bootstrap intervals.

:func:`group_rates` computes every group's sums once, as one DuckDB ``GROUP BY`` over the column
(over integer codes computed here for duration buckets, ordered categoricals and columns DuckDB
cannot read; bincounts where DuckDB cannot sum); where the groups are few and large, the same pass
sums what their intervals need. :class:`GroupedRates` then sorts, filters and pages them, and gives
any page's intervals without another pass over the sums.
"""

from __future__ import annotations

import zlib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.analysis.bootstrap import _bootstrap_sums, _check_bootstrap_args, _percentile_ci
from sde.caching import LRUCache
from sde.compressed_columns import label_column
from sde.filters import QueryError, column_kind
from sde.filters.engine import arrow_column, number_first_ranks, numpy_sql
from sde.analysis.rates import (
    Columns,
    UttIds,
    _char_edits,
    _errors_per_utt,
    _ints,
    _positions,
    _rate,
    _ref_chars,
    _scored,
    hypothesis_columns,
)

#: Duration buckets, in seconds: each bucket is [lo, hi) (a 2.0 s utterance is in "2-5 s").
DURATION_BUCKET_EDGES: tuple[float, ...] = (0.0, 2.0, 5.0, 10.0, 20.0, 30.0, float("inf"))
DURATION_BUCKET_LABELS: tuple[str, ...] = ("0-2 s", "2-5 s", "5-10 s", "10-20 s", "20-30 s", "30+ s")

#: What a breakdown can be sorted by; prefix ``-`` for descending (``-wer``: worst group first).
BREAKDOWN_SORTS: tuple[str, ...] = ("value", "utterances", "words", "wer", "cer")

#: A group of at most this many utterances gets an exact bootstrap (its rows are resampled); a
#: larger one draws its resampled sums from their normal limit (see :meth:`GroupedRates.intervals`).
CI_EXACT_MAX = 500
#: The normal limit holds while no utterance carries more than this share of the sum of squares
#: of a group's errors or words; past it (one 2,000-word line among 600 short ones) the resampled
#: sums are skewed, and the normal draws gave an upper bound no resample reaches (37 % for 26 %).
NORMAL_MAX_SQUARE_SHARE = 0.02

_MISSING_SEED_KEY = b"\x00missing"
_RESAMPLE_CELLS = 1_000_000  # rows drawn at once per group (bounds the memory of an interval)
# Intervals a GroupedRates remembers (a grid scrolled back, a page revisited): ~100 bytes each.
_MAX_KNOWN_INTERVALS = 100_000


def duration_bucket(durations: pd.Series | np.ndarray | Sequence[float]) -> pd.Series:
    """Ordered categorical of duration buckets: 0-2 s, 2-5 s, 5-10 s, 10-20 s, 20-30 s, 30+ s.

    Each bucket is [lo, hi): 2.0 s falls in "2-5 s", 30.0 s in "30+ s". Missing or negative
    durations get <NA>. The index of a Series input is kept.
    """
    index = durations.index if isinstance(durations, pd.Series) else None
    values = pd.to_numeric(pd.Series(durations, index=index), errors="coerce").astype(np.float64)
    cut = pd.Categorical.from_codes(duration_bucket_codes(values.to_numpy()), categories=list(DURATION_BUCKET_LABELS),
                                    ordered=True)
    return pd.Series(cut, index=values.index, name="duration_bucket")


def duration_bucket_codes(durations: np.ndarray) -> np.ndarray:
    """Each duration's bucket as its position in DURATION_BUCKET_LABELS (int8; -1: missing,
    negative or infinite): ~0.1 s over 10M, where pandas' cut took 0.75 s."""
    codes = np.zeros(len(durations), dtype=np.int8)
    with np.errstate(invalid="ignore"):
        for edge in DURATION_BUCKET_EDGES[1:-1]:
            codes += durations >= edge
        codes[~((durations >= DURATION_BUCKET_EDGES[0]) & (durations < DURATION_BUCKET_EDGES[-1]))] = -1
    return codes


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
        codes = duration_bucket_codes(table["duration"].to_numpy(dtype=np.float64, na_value=np.nan))
        out["duration_bucket"] = int(np.count_nonzero(np.bincount(codes[codes >= 0], minlength=1)))
    for name in table.columns:
        if name in ("duration_bucket", "id"):
            continue
        s = table[name]
        if s.dtype.kind in "fcmM":
            continue  # continuous measurements and times: bucket or filter them instead
        labels = label_column(s)
        try:
            if labels is not None:  # its values, counted when it was written
                distinct, present = len(labels.dictionary), len(labels) - labels.null_count
            else:
                distinct, present = int(s.nunique(dropna=True)), int(s.count())
        except TypeError:  # unhashable Python objects (lists, dicts)
            continue
        if distinct and (distinct < present or present == 1):
            out[str(name)] = distinct
    return out


# Columns a manifest's lines all have their own of (texts, paths, positions): never worth naming.
_NOT_GROUPS = frozenset({"id", "line", "text", "audio_filepath", "audio_filename", "audio_path", "offset",
                         "text_filepath"})
# Per-hypothesis metric columns: `wer`, or `wer_<label>` for pred_text_<label> (HypothesisField.column).
_METRIC_COLUMNS = ("wer", "cer", "wmr", "sub", "del", "ins", "hits", "char_edits", "ref_chars", "accuracy")


def _named_column(name: str, labels: set[str]) -> bool:
    """Whether a column is worth offering in a message that names the breakdown columns: not a
    transcript, path or id, nor a hypothesis (pred_text, pred_text_<label>) or its metrics."""
    if name in _NOT_GROUPS or name.endswith("_norm") or name == "pred_text" or name.startswith("pred_text_"):
        return False
    return not any(name == metric or name in {f"{metric}_{label}" for label in labels} for metric in _METRIC_COLUMNS)


def breakdown_columns(table: pd.DataFrame) -> list[str]:
    """Columns :func:`breakdown` is worth calling with (see :func:`group_counts`), as error messages
    name them: without the transcripts, paths and per-hypothesis metrics (a breakdown by `text` or
    `sub` groups the lines that happen to agree; "choose one of: …, text, pred_text, sub, del, …"
    misled). Any other column of the table works too."""
    labels = {str(c)[len("wer_"):] for c in table.columns if str(c).startswith("wer_")}
    keep = [c for c in table.columns if _named_column(str(c), labels)]
    return list(group_counts(table[keep])) if keep else []


def _factorize(s: pd.Series) -> tuple[np.ndarray, Any, bool]:
    """(codes, values, ordered): codes index into values, -1 = missing."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cat = s.array
        return cat.codes.astype(np.int64), cat.categories, bool(cat.ordered)
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu" and len(s):  # nullable ints: factorize
        x = s.to_numpy()
        lo, hi = int(x.min()), int(x.max())
        if hi - lo <= 4 * len(x) + 1_000_000:
            # Dense integer ids (speaker 19, 26, …): counting beats pandas' hash table (~4x).
            seen = np.bincount((x - lo).astype(np.int64), minlength=hi - lo + 1) > 0
            values = np.flatnonzero(seen)
            lookup = np.cumsum(seen) - 1
            return lookup[x - lo].astype(np.int64), values + lo, False
    text = _arrow_text(s)
    if text is not None:  # Arrow's hash encoding: ~3x pandas' factorize of Arrow strings
        encoded = pc.dictionary_encode(text).unify_dictionaries()
        if not encoded.num_chunks:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object), False
        codes = np.concatenate([c.indices.fill_null(-1).to_numpy() for c in encoded.chunks])  # int32
        return codes, encoded.chunk(0).dictionary.to_numpy(zero_copy_only=False), False
    codes, uniques = pd.factorize(s.array, use_na_sentinel=True, sort=False)
    return codes.astype(np.int64), uniques, False


def _arrow_text(s: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow strings behind a pyarrow-backed text column, else None."""
    data = getattr(s.array, "_pa_array", None)
    if isinstance(data, pa.ChunkedArray) and (pa.types.is_string(data.type) or pa.types.is_large_string(data.type)):
        return data
    return None


def _group_codes(table: pd.DataFrame, by: str, rows: np.ndarray | None) -> tuple[np.ndarray, Any, bool]:
    """(codes per selected row (-1 = missing), group values, values are ordered categories)."""
    if by == "duration_bucket" and "duration_bucket" not in table.columns:
        if "duration" not in table.columns:
            raise ValueError("cannot break down by duration_bucket: the table has no duration column")
        durations = table["duration"].to_numpy(dtype=np.float64, na_value=np.nan)
        if rows is not None:
            durations = durations[rows]
        return duration_bucket_codes(durations).astype(np.int64), pd.Index(DURATION_BUCKET_LABELS), True
    if by not in table.columns:
        raise ValueError(f"unknown column {by!r} for a breakdown; choose one of: "
                         + ", ".join(breakdown_columns(table)))
    s = table[by]
    labels = label_column(s)
    if labels is not None:  # stored as labels: the codes are the groups, no string hashed
        codes = labels.codes()
        values = labels.dictionary.to_numpy(zero_copy_only=False)
        return (codes if rows is None else codes[rows]).astype(np.int64), values, False
    if rows is not None:
        s = s.iloc[rows]
    return _factorize(s)


def _value_order(values: list[Any]) -> tuple[np.ndarray, int]:
    """(positions that sort the (non-missing) group values ascending, how many of the first read as
    numbers). Text sorts as a sort of the utterances by that column does (sde.query): the values that
    read as numbers first, as numbers (sde.filters.sql.number_first_sql: speakers "2" < "10" <
    "103"), then the others in text order; values of mixed types as their text, the same way; any
    other values (numbers, booleans) in their own order."""
    texts = values
    if not all(isinstance(v, str) for v in values):
        try:
            return np.argsort(pd.Index(values, dtype=object).to_numpy(), kind="stable"), 0
        except TypeError:
            texts = [str(v) for v in values]
    ranks, numbers = number_first_ranks(pa.array(texts, pa.large_string()))
    return np.argsort(ranks, kind="stable"), int(np.count_nonzero(ranks <= numbers))


def parse_breakdown_sort(sort: str | None) -> tuple[str, bool]:
    """`-wer` → ("wer", True): a breakdown sort key and whether it is descending (default value
    order); ValueError naming the choices for anything else."""
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
    Computed once by :func:`group_rates`; sorting, thresholds and paging then cost nothing like a
    pass over the utterances, nor do the intervals of large groups (see :attr:`moments`).
    """

    groups: pd.DataFrame
    slot_of: Callable[[], np.ndarray]  # → int32: each selected utterance's group number (cached)
    rows: np.ndarray | None     # positions of the selected utterances (None: all)
    table: pd.DataFrame
    columns: Mapping[str, str]
    #: The first groups in value order whose text values read as numbers (see _value_order): a
    #: descending sort by value keeps them first, high to low, then the other text Z to A.
    numbers: int = 0
    #: Per group, in group order: Σe, Σn and :data:`_MOMENTS`, what an interval from the normal
    #: limit needs (with the largest |e| and |n|: whether one utterance dominates), summed by the
    #: GROUP BY of the groups where they are few and large; else None, and summed at the first
    #: intervals whose large groups hold most of the selection (see :meth:`_moments_for`).
    moments: Mapping[str, np.ndarray] | None = None
    _summed_later: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    # (n_resamples, seed, alpha, group) → (lo, hi): an interval is the same whenever it is asked
    _known_intervals: LRUCache = field(default_factory=lambda: LRUCache(_MAX_KNOWN_INTERVALS), init=False,
                                       repr=False, compare=False)

    @property
    def slot(self) -> np.ndarray:
        return self.slot_of()

    def view(self, sort: str | None = "value", min_words: int = 0, min_utterances: int = 0) -> pd.DataFrame:
        """The groups with at least ``min_words`` reference words and ``min_utterances``
        utterances, sorted (``value``, ``utterances``, ``words``, ``wer`` or ``cer``; ``-`` prefix:
        descending; ties in value order; missing values last either way; text values that read as
        numbers first either way, as a sort of the utterances puts them). Index: group numbers."""
        key, descending = parse_breakdown_sort(sort)
        g = self.groups
        keep = (g["words"].to_numpy() >= min_words) & (g["utterances"].to_numpy() >= min_utterances)
        pos = np.flatnonzero(keep)
        if key == "value":
            if descending:
                missing = len(pos) and g["value"].iat[pos[-1]] is None
                present = pos[:-1] if missing else pos
                pos = np.concatenate([present[present < self.numbers][::-1], present[present >= self.numbers][::-1],
                                      pos[len(present):]])
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
        asked = np.asarray(groups, dtype=np.int64)
        known = self._known_intervals
        keys = [(n_resamples, seed, alpha, g) for g in asked.tolist()]
        pairs = [known.get(k) for k in keys]
        missing = sorted({k[3] for k, pair in zip(keys, pairs) if pair is None})
        if missing:
            lo, hi = self._compute_intervals(np.asarray(missing, dtype=np.int64), n_resamples, seed, alpha)
            computed = {g: (a, b) for g, a, b in zip(missing, lo.tolist(), hi.tolist())}
            for g, pair in computed.items():
                known.put((n_resamples, seed, alpha, g), pair)
            pairs = [computed[k[3]] if pair is None else pair for k, pair in zip(keys, pairs)]
        return (np.array([p[0] for p in pairs], dtype=np.float64).reshape(len(asked)),
                np.array([p[1] for p in pairs], dtype=np.float64).reshape(len(asked)))

    def _compute_intervals(self, wanted: np.ndarray, n_resamples: int, seed: int,
                           alpha: float) -> tuple[np.ndarray, np.ndarray]:
        lo = np.full(len(wanted), np.nan)
        hi = np.full(len(wanted), np.nan)
        if not len(wanted):
            return lo, hi
        sizes = self.groups["utterances"].to_numpy()[wanted]
        moments = self._moments_for(sizes)
        if moments is None:
            return self._intervals_from_rows(wanted, n_resamples, seed, alpha)
        # every large group whose normal limit holds from its sums, no utterance read: a breakdown
        # by language at 10M passed over all 10M rows for its intervals (0.5-1.5 s)
        normal = self._normal_intervals({k: v[wanted] for k, v in moments.items()}, sizes, wanted,
                                        n_resamples, seed, alpha, lo, hi)
        rest = np.flatnonzero(~normal)
        if len(rest):
            lo[rest], hi[rest] = self._intervals_from_rows(wanted[rest], n_resamples, seed, alpha)
        return lo, hi

    def _normal_intervals(self, sums: Mapping[str, np.ndarray], sizes: np.ndarray, wanted: np.ndarray,
                          n_resamples: int, seed: int, alpha: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Fills ``lo``, ``hi`` of each wanted group of more than :data:`CI_EXACT_MAX` utterances whose
        normal limit holds, from its sums (see :func:`_group_sums`); returns which it filled."""
        normal = (sizes > CI_EXACT_MAX) & ~_dominated(sums)
        values = self.groups["value"].to_numpy(dtype=object)
        for i in np.flatnonzero(normal):
            lo[i], hi[i] = _normal_interval(*_moments(sums, i, int(sizes[i])), n_resamples, alpha,
                                            _group_rng(seed, values[wanted[i]]))
        return normal

    def _moments_for(self, sizes: np.ndarray) -> Mapping[str, np.ndarray] | None:
        """The groups' moments (see :attr:`moments`), or None where reading the asked groups' rows
        costs less than summing every group (their large groups hold under half the selection:
        a page of speakers)."""
        if self.moments is not None:
            return self.moments
        if "moments" not in self._summed_later:
            if 2 * int(sizes[sizes > CI_EXACT_MAX].sum()) < int(self.groups["utterances"].sum()):
                return None
            self._summed_later["moments"] = _moments_by_group(self.table, self.columns, self.rows, self.slot,
                                                              len(self.groups))
        return self._summed_later["moments"]

    def _intervals_from_rows(self, wanted: np.ndarray, n_resamples: int, seed: int,
                             alpha: float) -> tuple[np.ndarray, np.ndarray]:
        lo = np.full(len(wanted), np.nan)
        hi = np.full(len(wanted), np.nan)
        slot = self.slot
        asked = np.zeros(len(self.groups), dtype=bool)
        asked[wanted] = True
        # one byte per utterance: at 10M, a pass into an int64 per utterance (80 MB, fresh pages)
        # took ~130 ms of a page's ~300; this one ~20
        hit = np.flatnonzero(asked[slot])
        lookup = np.full(len(self.groups), -1, dtype=np.int64)
        lookup[wanted] = np.arange(len(wanted))
        which = lookup[slot[hit]]
        every = self.rows is None and len(hit) == len(slot)  # the whole table, in its order: no gather
        positions = None if every else hit if self.rows is None else self.rows[hit]
        errors = _errors_per_utt(self.table, self.columns, positions)
        words = _ints(self.table, self.columns["num_words"], positions)
        sizes = np.bincount(which, minlength=len(wanted))
        # A large group's interval needs only its sums (counts, squares, products: one pass over
        # the rows each) unless one utterance dominates it; only the other groups' rows are sorted
        # into runs. A breakdown by language at 10M sorted and gathered all 10M rows: 1.5-4 s.
        normal = self._normal_intervals(_group_sums(errors, words, which, len(wanted)), sizes, wanted,
                                        n_resamples, seed, alpha, lo, hi)
        rest = np.zeros(len(wanted), dtype=bool)
        rest[np.flatnonzero(~normal & (sizes > 0))] = True
        if not rest.any():
            return lo, hi
        kept = rest[which]
        which = which[kept]
        order = np.argsort(which, kind="stable")
        errors, words = errors[kept][order], words[kept][order]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(which, minlength=len(wanted)))])
        values = self.groups["value"].to_numpy(dtype=object)
        for i in np.flatnonzero(rest):
            a, b = bounds[i], bounds[i + 1]
            # a large group left here is one an utterance dominates: no second look at its rows
            lo[i], hi[i] = _group_interval(errors[a:b], words[a:b], n_resamples, alpha,
                                           _group_rng(seed, values[wanted[i]]), normal_limit=False)
        return lo, hi


def _group_sums(errors: np.ndarray, words: np.ndarray, which: np.ndarray, groups: int) -> dict[str, np.ndarray]:
    """Per group: Σe, Σn and :data:`_MOMENTS` (float64 sums of whole numbers: exact below 2**53)."""
    e = errors.astype(np.float64)
    n = words.astype(np.float64)
    sums = {"e": np.bincount(which, e, groups), "n": np.bincount(which, n, groups),
            "ee": np.bincount(which, e * e, groups), "nn": np.bincount(which, n * n, groups),
            "en": np.bincount(which, e * n, groups), "e_max": np.zeros(groups), "n_max": np.zeros(groups)}
    np.maximum.at(sums["e_max"], which, np.abs(e))
    np.maximum.at(sums["n_max"], which, np.abs(n))
    return sums


def _dominated(sums: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per group: whether one utterance carries too much of its errors' or words' sum of squares
    for the resampled sums to be near their normal limit (NORMAL_MAX_SQUARE_SHARE)."""
    return ((np.square(sums["e_max"]) > NORMAL_MAX_SQUARE_SHARE * sums["ee"])
            | (np.square(sums["n_max"]) > NORMAL_MAX_SQUARE_SHARE * sums["nn"]))


def _moments(sums: dict[str, np.ndarray], i: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """A group's (ΣE, ΣN) and m × their rows' population covariance, from its sums: exact in
    Python's integers, then rounded once (the sums are whole numbers)."""
    e, n, ee, nn, en = (int(sums[k][i]) for k in ("e", "n", "ee", "nn", "en"))
    cov = np.array([[(m * ee - e * e) / m, (m * en - e * n) / m],
                    [(m * en - e * n) / m, (m * nn - n * n) / m]], dtype=np.float64)
    return np.array([e, n], dtype=np.float64), cov


def _seed_key(value: Any) -> int:
    return zlib.crc32(_MISSING_SEED_KEY if value is None else f"{type(value).__name__}:{value}".encode())


def _group_rng(seed: int, value: Any) -> np.random.Generator:
    """A group's own random stream: the same interval on every page and beside any other groups."""
    return np.random.default_rng([seed, _seed_key(value)])


def _group_interval(errors: np.ndarray, words: np.ndarray, n_resamples: int, alpha: float,
                    rng: np.random.Generator, normal_limit: bool | None = None) -> tuple[float, float]:
    """A group's interval from its rows; ``normal_limit``: whether its normal limit holds, where the
    caller knew (None: looked at here)."""
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
    elif not (_normal_limit_holds(errors, words) if normal_limit is None else normal_limit):
        # exact, on the group's distinct rows (cheap: K distinct rows, not m draws, per resample)
        sums = _bootstrap_sums([errors, words], n_resamples, np.random.SeedSequence(int(rng.integers(2**63))))
        sum_e, sum_n = sums[:, 0], sums[:, 1]
    else:
        both = np.stack([errors, words]).astype(np.float64)
        return _normal_interval(both.sum(axis=1), np.cov(both, bias=True) * m, n_resamples, alpha, rng)
    return _percentile_ci(np.asarray(_rate(sum_e, sum_n)), alpha)


def _normal_interval(sums: np.ndarray, cov: np.ndarray, n_resamples: int, alpha: float,
                     rng: np.random.Generator) -> tuple[float, float]:
    """Resampling m rows: the sums' mean is the group's sums (ΣE, ΣN), their covariance ``cov``,
    m × the rows' (population) covariance; by the CLT their distribution is the normal with those
    moments."""
    draws = rng.multivariate_normal(sums, cov, size=n_resamples, method="svd")
    return _percentile_ci(np.asarray(_rate(np.maximum(draws[:, 0], 0.0), draws[:, 1])), alpha)


def _normal_limit_holds(errors: np.ndarray, words: np.ndarray) -> bool:
    """Whether a group's resampled (ΣE, ΣN) are near their normal limit: no utterance dominates
    (:func:`_dominated`, for this one group)."""
    return not _dominated(_group_sums(errors, words, np.zeros(len(errors), dtype=np.int64), 1))[0]


def group_rates(table: pd.DataFrame, by: str, hyp_field_columns: Columns, utt_ids: UttIds = None) -> GroupedRates:
    """Corpus WER/CER of one hypothesis per value of ``by``, for :func:`breakdown` and paged views.

    ``by`` is any string, boolean, categorical or integer column (any number of distinct values;
    missing values form one group, value None) or ``"duration_bucket"`` (see :func:`duration_bucket`,
    computed from ``duration``). WER = 100·ΣE/ΣN and CER = 100·ΣCE/ΣC inside each group. One pass:
    a ``GROUP BY`` in DuckDB (the sums are of whole numbers, so exact in any order), or bincounts
    over the column's integer codes where its values have an order of their own (duration
    buckets, ordered categoricals) or DuckDB cannot read it.
    """
    cols = hypothesis_columns(hyp_field_columns)
    rows = _scored(table, cols, _positions(utt_ids, len(table)))
    weights = {"e": _errors_per_utt(table, cols, rows), "n": _ints(table, cols["num_words"], rows),
               "ce": _char_edits(table, cols, rows), "c": _ref_chars(table, cols, rows)}
    summed = _sql_sums(table, by, rows, weights, moments=_few_large_groups(table, by, rows))
    if summed is None:
        codes, values, ordered = _group_codes(table, by, rows)
        summed = _code_sums(codes, values, weights) or _bincount_sums(codes, values, weights)
        slot_of = _cached(lambda: summed[2][np.where(codes >= 0, codes, len(values))])
    else:
        slot_of = _cached(functools.partial(_slots, table, by, rows, summed[0]))
        ordered = False
    value_list, totals = summed[0], summed[1]
    present = [i for i, v in enumerate(value_list) if v is not None]
    numbers = 0
    if not ordered:
        by_value, numbers = _value_order([value_list[i] for i in present])
        present = [present[i] for i in by_value]
    order = np.asarray(present + [i for i, v in enumerate(value_list) if v is None], dtype=np.int64)
    renumber = np.empty(len(order), dtype=np.int32)
    renumber[order] = np.arange(len(order), dtype=np.int32)
    groups = pd.DataFrame({
        "value": pd.Series([value_list[i] for i in order], dtype=object),
        "utterances": totals["utterances"][order].astype(np.int64),
        "words": totals["n"][order].astype(np.int64),
        "wer": np.asarray(_rate(totals["e"][order], totals["n"][order]), dtype=np.float64).reshape(-1),
        "cer": np.asarray(_rate(totals["ce"][order], totals["c"][order]), dtype=np.float64).reshape(-1),
    })
    moments = {k: np.asarray(totals[k], dtype=np.float64)[order] for k in ("e", "n", *_MOMENTS)} \
        if all(k in totals for k in _MOMENTS) else None
    return GroupedRates(groups, _cached(lambda: renumber[slot_of()]), rows, table, cols, numbers, moments)


def _few_large_groups(table: pd.DataFrame, by: str, rows: np.ndarray | None) -> bool:
    """Whether ``by`` is stored as labels of so few values that its groups are large (see
    :func:`_few_groups`)."""
    labels = label_column(table[by]) if by in table.columns else None
    return labels is not None and _few_groups(len(labels.dictionary), len(table) if rows is None else len(rows))


def _few_groups(values: int, selected: int) -> bool:
    """Whether ``values`` groups of ``selected`` rows are few enough to be large (thousands of
    utterances each): their intervals come from sums, which their GROUP BY then adds (~+60 ms at
    10M rows; for 10,000 speakers, whose pages read their rows, it would add ~+120 ms)."""
    return values * 4 * CI_EXACT_MAX <= selected


#: What GroupedRates.moments holds besides Σe and Σn, as SQL aggregates of the columns e, n (whole
#: numbers: their doubles are exact below 2**53, and faster to sum than DuckDB's 128-bit integers).
_MOMENTS = {"ee": "sum(e::DOUBLE * e)", "nn": "sum(n::DOUBLE * n)", "en": "sum(e::DOUBLE * n)",
            "e_max": "max(abs(e))", "n_max": "max(abs(n))"}


def _grouped_sums(groups: Any, weights: Mapping[str, np.ndarray], moments: bool,
                  ) -> tuple[Any, dict[str, np.ndarray]] | None:
    """(each group's value, ascending, missing last; per group: utterances, each weight's sum and,
    with ``moments``, :data:`_MOMENTS` of the weights e and n) by one GROUP BY of ``groups`` (an
    Arrow or numpy array, one value per row); None where DuckDB cannot (a square past int64)."""
    aggregates = {**{k: f"sum({k})" for k in weights}, **(_MOMENTS if moments else {})}
    # the weights as they are (whole numbers, often the mapped columns themselves): no copy, and
    # DuckDB's threads read their pages
    data = pa.table({"g": groups, **{k: pa.array(np.asarray(w)) for k, w in weights.items()}})
    sums = ", ".join(f"{sql} AS {k}" for k, sql in aggregates.items())
    try:
        got = numpy_sql(f"SELECT g, count(*) AS utterances, {sums} FROM t GROUP BY g ORDER BY g", (), {"t": data})
    except QueryError:
        return None
    totals = {"utterances": np.asarray(got["utterances"], dtype=np.int64)}
    totals.update({k: np.asarray(got[k], dtype=np.float64) for k in aggregates})
    return got["g"], totals


def _moments_by_group(table: pd.DataFrame, cols: Mapping[str, str], rows: np.ndarray | None, slot: np.ndarray,
                      groups: int) -> dict[str, np.ndarray] | None:
    """Σe, Σn and :data:`_MOMENTS` per group number (``slot``: each selected row's), by one GROUP
    BY; None where DuckDB cannot (the intervals then read the rows)."""
    weights = {"e": _errors_per_utt(table, cols, rows), "n": _ints(table, cols["num_words"], rows)}
    summed = _grouped_sums(pa.array(slot), weights, moments=True)
    if summed is None:
        return None
    which = np.asarray(summed[0], dtype=np.int64)
    out = {}
    for k in ("e", "n", *_MOMENTS):
        out[k] = np.zeros(groups)
        out[k][which] = summed[1][k]
    return out


def _cached(compute: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    return functools.lru_cache(maxsize=1)(compute)


def _bincount_sums(codes: np.ndarray, values: Any, weights: Mapping[str, np.ndarray],
                   ) -> tuple[list[Any], dict[str, np.ndarray], np.ndarray]:
    """(group values, None last for the missing values; per group: utterances and each weight's
    sum; each code's group number) of the groups that occur."""
    nvalues = len(values)
    slot = np.where(codes >= 0, codes, nvalues)  # the last slot collects missing values
    n_utt = np.bincount(slot, minlength=nvalues + 1)
    present = np.flatnonzero(n_utt > 0)
    number = np.full(nvalues + 1, -1, dtype=np.int64)
    number[present] = np.arange(len(present))
    totals = {"utterances": n_utt[present]}
    for key, w in weights.items():
        totals[key] = np.bincount(slot, weights=w.astype(np.float64), minlength=nvalues + 1)[present]
    value_list = [_py(v) for v in np.asarray(values, dtype=object)[present[present < nvalues]]]
    if n_utt[nvalues]:
        value_list.append(None)
    return value_list, totals, number


def _code_sums(codes: np.ndarray, values: Any, weights: Mapping[str, np.ndarray],
               ) -> tuple[list[Any], dict[str, np.ndarray], np.ndarray] | None:
    """:func:`_bincount_sums` by one GROUP BY of the codes (10M rows in 6 duration buckets: ~0.15 s
    on two cores where the bincounts, each weight made float, took ~0.9 s), with :data:`_MOMENTS`
    where the groups are few (see _few_groups); None where DuckDB cannot."""
    summed = _grouped_sums(pa.array(codes), weights, moments=_few_groups(len(values), len(codes)))
    if summed is None:
        return None
    g = np.asarray(summed[0], dtype=np.int64)  # ascending: the missing values' code (-1) first
    present = g[g >= 0]
    order = np.concatenate([np.flatnonzero(g >= 0), np.flatnonzero(g < 0)])  # the missing values' group last
    totals = {k: v[order] for k, v in summed[1].items()}
    value_list = [_py(v) for v in np.asarray(values, dtype=object)[present]]
    number = np.full(len(values) + 1, -1, dtype=np.int64)
    number[present] = np.arange(len(present))
    if len(present) < len(g):
        value_list.append(None)
        number[len(values)] = len(present)
    return value_list, totals, number


def _group_arrow(table: pd.DataFrame, by: str, rows: np.ndarray | None) -> pa.Array | pa.ChunkedArray | None:
    """The column ``by`` of the selected rows as Arrow for DuckDB, or None where its values have an
    order of their own or DuckDB cannot group them faithfully (float NaN, mixed Python objects)."""
    if by not in table.columns or by == "duration_bucket":
        return None
    s = table[by]
    # Floats (NaN, -0.0), times and object columns (mixed Python values) keep pandas' grouping;
    # numpy integers a bincount over their range, faster than hashing them (18 vs 48 ms at 1M rows).
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype.kind in "fcmM" or (
            isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuO"):
        return None
    if rows is not None:
        s = s.iloc[rows]
    return arrow_column(s, column_kind(s.dtype))


def _sql_sums(table: pd.DataFrame, by: str, rows: np.ndarray | None, weights: Mapping[str, np.ndarray],
              moments: bool = False) -> tuple[list[Any], dict[str, np.ndarray]] | None:
    """(group values, None for the missing values; per group: utterances and each weight's sum,
    with ``moments`` also :data:`_MOMENTS` of the weights e and n) by one GROUP BY, or None when the
    column is not one DuckDB groups here (see _group_arrow)."""
    # a column stored as labels (sde.compressed_columns) is grouped by its codes, mapped in place
    labels = label_column(table[by]) if by in table.columns else None
    if labels is not None:
        values = labels.indices if rows is None else labels.indices.take(pa.array(rows))
    else:
        values = _group_arrow(table, by, rows)
    if values is None:
        return None
    summed = _grouped_sums(values, weights, moments)
    if summed is None:
        return None
    groups = np.ma.asarray(summed[0]).tolist()
    if labels is not None:
        names = labels.dictionary.to_pylist()
        groups = [None if code is None else names[code] for code in groups]
    return groups, summed[1]


def _slots(table: pd.DataFrame, by: str, rows: np.ndarray | None, value_list: list[Any]) -> np.ndarray:
    """Each selected row's index into ``value_list`` (the GROUP BY's values), for intervals."""
    codes, values, _ = _group_codes(table, by, rows)
    where = {v: i for i, v in enumerate(value_list)}
    # the missing values' slot last, where a code of -1 indexes; a label column's values include
    # those no selected row holds (no code of theirs occurs: any slot does)
    lookup = np.array([where.get(_py(v), -1) for v in np.asarray(values, dtype=object)] + [where.get(None, -1)],
                      dtype=np.int32)
    return lookup[codes]


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

