"""Bootstrap intervals of a corpus WER and the paired bootstrap comparison of two hypotheses.

Utterances are resampled with replacement; each resample's WER is 100·ΣE/ΣN of the resample
(:mod:`sde.analysis.rates`). Resampling runs on the distinct rows of the per-utterance counts
(:func:`_bootstrap_sums`), so a million utterances cost about as much as a few thousand.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from sde.analysis.rates import (
    Columns,
    UttIds,
    _errors_per_utt,
    _ints,
    _positions,
    _rate,
    _scored,
    _unique_counts,
    hypothesis_columns,
)

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
    """Column sums of ``n_resamples`` resamples of the rows (with replacement), shape (B, m):
    :func:`_resampled_sums` of the distinct rows (:func:`_group_rows`)."""
    counts, values = _group_rows(columns)
    return _resampled_sums(counts, values, len(columns[0]), n_resamples, seed)


def _resampled_sums(counts: np.ndarray, values: np.ndarray, n: int, n_resamples: int,
                    seed: np.random.SeedSequence) -> np.ndarray:
    """Column sums of ``n_resamples`` resamples of the rows (with replacement), shape (B, m).

    Exact nonparametric bootstrap of n rows given as distinct rows ``values`` (K, m) and how many
    times each occurs (``counts``, rarest first). Resampling n rows with
    replacement puts Multinomial(n, n_g/n) copies into the group g of identical rows, so a
    resample's sums are Σ_g count_g·value_g: O(K) per resample for K distinct rows instead of
    O(n) (utterances have small integer counts, so K is a few thousand at a million utterances).
    Groups with fewer than ``_RARE_COUNT`` rows share one multinomial category instead; the R
    draws that land there are drawn uniformly among those rows (the same distribution, cheaper
    when the distinct rows are many and small).
    """
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


def _paired_ci(diffs: np.ndarray, alpha: float) -> tuple[float, float]:
    """The (1-alpha) interval of the resampled differences that :func:`_bootstrap_p` inverts
    exactly: 0 lies outside it if and only if p < alpha.

    Its ends are the (k+1)-th smallest and largest differences, k the most resamples on the far
    side of 0 that still give p < alpha. An interpolated quantile did not invert p: with 25 of
    1,000 differences at 0 its lower end was 5.4 points (significant) while p was 0.052. Too few
    resamples for any p < alpha (B ≤ 39 at alpha 0.05) widen the interval to hold 0."""
    ordered = np.sort(diffs)
    b = ordered.size
    k = int(alpha * (b + 1) / 2)
    while k > 0 and not 2.0 * k / (b + 1) < alpha:  # the same expression as the p-value's
        k -= 1
    while 2.0 * (k + 1) / (b + 1) < alpha:
        k += 1
    k -= 1  # p < alpha if and only if at most k resamples lie on 0's side
    if k < 0:
        return float(min(ordered[0], 0.0)), float(max(ordered[-1], 0.0))
    return float(ordered[k]), float(ordered[b - 1 - k])


def _canonical(counts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows ordered by (count, then the row's values): one order for one multiset of rows."""
    order = np.lexsort((*values.T[::-1], counts))
    return counts[order], values[order]


def _precedes(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether canonical rows ``a`` come before ``b`` (same number of rows), lexicographically."""
    flat_a, flat_b = (np.concatenate([c, v.ravel()]) for c, v in (a, b))
    differ = np.flatnonzero(flat_a != flat_b)
    return bool(differ.size) and bool(flat_a[differ[0]] < flat_b[differ[0]])


def _paired_diffs(ea: np.ndarray, eb: np.ndarray, n: np.ndarray, n_resamples: int,
                  seed: np.random.SeedSequence, b_first: bool = False) -> np.ndarray:
    """Resampled WER(B) − WER(A) in points, paired: each resample draws the same utterances for both.

    Only D = E_b − E_a, N and Z = E_a on empty references (which keeps the empty-reference rule
    exact when ΣN = 0) are needed per utterance. The draws follow the order of the distinct rows,
    so they are made in the orientation (A − B or B − A) whose rows come first canonically, a
    choice that swapping A and B does not change: swapped, the differences are exactly negated,
    where before the interval and p moved (p by up to 0.08) when the two were swapped. Rows that
    look the same from both sides (a symmetric table) are drawn from B's side when ``b_first``: the
    caller's order of the two systems' names, which swapping reverses too."""
    d = eb - ea
    z = np.where(n == 0, ea, 0)
    forward = _canonical(*_group_rows([d, n, z]))
    counts, (fd, fn, fz) = forward[0], forward[1].T
    # the same utterances seen from the other side: D' = −D, Z' = E_b = Z + D on empty references
    backward = _canonical(counts, np.stack([-fd, fn, np.where(fn == 0, fz + fd, 0)], axis=1))
    flip = _precedes(backward, forward) or (b_first and not _precedes(forward, backward))
    sign, (counts, values) = (-1.0, backward) if flip else (1.0, forward)
    sums = _resampled_sums(counts, values, n.size, n_resamples, seed)  # canonical: rarest first already
    sd, sn, sz = sums[:, 0], sums[:, 1], sums[:, 2]
    diffs = np.where(sn > 0, 100.0 * sd / np.where(sn > 0, sn, 1.0),
                     np.where(sz + sd > 0, 100.0, 0.0) - np.where(sz > 0, 100.0, 0.0))
    return sign * diffs + 0.0  # + 0.0: no −0.0


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
    p ≥ 2/(B+1) is never 0. :func:`_paired_ci` is the interval it inverts: p < alpha exactly when
    0 lies outside it. Identical systems (every d* = 0) give p = 1.
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
    per-utterance correlation between the systems is kept; ``p`` is the two-sided p-value of
    :func:`_bootstrap_p` and the interval the one it inverts (:func:`_paired_ci`): 0 is outside it
    exactly when p < alpha. Swapping A and B negates the difference, its interval and nothing else.
    A's and B's intervals are exactly :func:`bootstrap_wer`'s for the same seed; the difference
    uses its own stream derived from ``seed``. Values are NaN when no utterance is selected; ``p``
    is also NaN when the resamples do not vary (a single utterance, see :func:`_paired_p`).
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
    diffs = _paired_diffs(ea, eb, n, n_resamples, _diff_stream(seed),
                          b_first=sorted(cb.items()) < sorted(ca.items()))
    out["diff"] = {"wer": out["b"]["wer"] - out["a"]["wer"], "ci": list(_paired_ci(diffs, alpha)),
                   "p": _paired_p(diffs)}
    return out


def _paired_p(diffs: np.ndarray) -> float:
    """:func:`_bootstrap_p`, or NaN when every resample gives the same non-zero difference.

    Then the bootstrap saw no variation at all (one utterance, or only copies of one): its p would be
    the floor 2/(B+1), "significant" on the evidence of a single utterance, when nothing measured
    the uncertainty. Identical systems (every difference 0) keep p = 1.
    """
    if diffs.size and diffs.min() == diffs.max() and diffs[0] != 0:
        return float("nan")
    return _bootstrap_p(diffs)

