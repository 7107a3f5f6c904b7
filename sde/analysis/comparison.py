"""Hypothesis A against B, word by word and utterance by utterance, for the Comparison page's
plots (the significance test is :func:`sde.analysis.bootstrap.compare`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sde.analysis.rates import _HYP_METRICS, STRING, Columns, UttIds, _id_mask, _positions, _scored, hypothesis_columns
from sde.metrics import word_counts, word_hits

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


def subset_vocabulary(table: pd.DataFrame, errors: Mapping[str, pd.DataFrame], a: Any, b: Any,
                      utt_ids: UttIds = None) -> pd.DataFrame:
    """The vocabulary (word, count, and each hypothesis's accuracy column) of the utterances that
    both hypotheses score, within `utt_ids`. `a` and `b` are HypothesisFields (`.field` names the
    hypothesis column and its table in `errors`)."""
    n = len(table)
    # Lines without either hypothesis are in neither score (scored_rows): not here either.
    scored = table[a.field].notna().to_numpy() & table[b.field].notna().to_numpy()
    keep = _id_mask(utt_ids, n)
    if keep is not None:
        scored &= keep
    rows = None if scored.all() else np.flatnonzero(scored)
    counts = word_counts(table["text"] if rows is None else table["text"].iloc[rows])
    out = counts[["word", "count"]].copy()
    for h in (a, b):
        errs = errors[h.field]
        if rows is not None:
            utt = errs["utt"].to_numpy(dtype=np.int64)
            errs = errs[scored[np.clip(utt, 0, max(n - 1, 0))] & (utt < n)]
        hits = word_hits(counts, errs)
        out[h.column("accuracy")] = 100.0 * hits["hits"].to_numpy(dtype=np.float64) / np.maximum(
            hits["count"].to_numpy(dtype=np.float64), 1.0)
    return out


def word_comparison(table: pd.DataFrame, vocabulary: pd.DataFrame, errors: Mapping[str, pd.DataFrame],
                    a: Any, b: Any, utt_ids: UttIds = None) -> pd.DataFrame:
    """`word_accuracy_comparison` of A and B (word, count, acc_a, acc_b, diff, net) over the
    selected utterances that both hypotheses score (the full vocabulary's accuracies when that is
    every utterance). `net` = B's correctly recognised occurrences − A's; rows sorted by |net|,
    then |diff|."""
    acc_a, acc_b = a.column("accuracy"), b.column("accuracy")
    # The vocabulary's accuracies are each over the lines its hypothesis scores: where one of them
    # lacks some lines they cover different lines, so the pair is recomputed over the lines both score.
    paired = all(_scored(table, hypothesis_columns(h), None) is None for h in (a, b))
    if utt_ids is not None or not paired or acc_a not in vocabulary.columns or acc_b not in vocabulary.columns:
        vocabulary = subset_vocabulary(table, errors, a, b, utt_ids)
    out = word_accuracy_comparison(vocabulary, acc_a, acc_b)
    net = np.rint(out["count"].to_numpy(dtype=np.float64) * out["diff"].to_numpy(dtype=np.float64) / 100.0)
    out["net"] = net.astype(np.int64)
    order = np.lexsort([-np.abs(out["diff"].to_numpy()), -np.abs(net)])
    return out.iloc[order].reset_index(drop=True)


def utterance_comparison(table: pd.DataFrame, a_field_cols: Columns, b_field_cols: Columns,
                         metric: str = "wer", utt_ids: UttIds = None) -> pd.DataFrame:
    """Per-utterance metric of A and B for a scatter plot: DataFrame[id, a, b, diff], diff = B − A,
    of the utterances both were scored on (a line without one of them is not compared: counted
    "equal", it made a tie of every line the other model has no output for).

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
    rows = _scored(table, cb, _scored(table, ca, rows))
    if rows is not None:
        ids, a, b = ids[rows], a[rows], b[rows]
    return pd.DataFrame({"id": ids, "a": a, "b": b, "diff": b - a})

