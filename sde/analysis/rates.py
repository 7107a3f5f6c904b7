"""Hypothesis columns, selections and the corpus-rate rule every analysis shares.

A hypothesis's columns are given as a ``HypothesisField`` (anything with ``column(metric)``) or a
mapping ``metric -> column name`` (:func:`hypothesis_columns`); a selection of utterances as
``utt_ids``: integer ids or a boolean mask over the utterance table. Rates follow DESIGN.md:
corpus WER = 100·ΣE/ΣN and CER = 100·ΣCE/ΣC (sums, not means); when the denominator is 0 (only
empty references) the rate is 0 if there are no errors, else 100.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

STRING = pd.StringDtype("pyarrow")

_HYP_METRICS = ("sub", "del", "ins", "hits", "wer", "cer", "wmr", "char_edits")
_SHARED = ("num_words", "num_chars")
# The CER denominator of a hypothesis: Dataset keeps h.column("ref_chars") only where the aligner's
# character count differs from num_chars; otherwise num_chars is the denominator.
_REF_CHARS = "ref_chars"


class _HasColumn(Protocol):
    def column(self, metric: str) -> str: ...


Columns = _HasColumn | Mapping[str, str]
UttIds = np.ndarray | Sequence[int] | pd.Series | None


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



def selection_totals(table: pd.DataFrame, columns: Columns, utt_ids: UttIds = None) -> dict[str, float]:
    """Utterances, reference words, S/D/I and corpus WER of a selection (lines without this
    hypothesis are not scored, so not counted)."""
    cols = hypothesis_columns(columns)
    rows = scored_rows(table, columns, utt_ids)
    pos = slice(None) if rows is None else rows

    def total(col: str) -> int:
        return int(table[col].to_numpy()[pos].sum()) if col in table.columns else 0

    n = len(table) if rows is None else len(rows)
    wer = corpus_wer(table, columns, rows) if n else float("nan")
    return {"utterances": n, "words": total("num_words"), "sub": total(cols["sub"]), "del": total(cols["del"]),
            "ins": total(cols["ins"]), "wer": wer}

