"""Confusions of one hypothesis from its errors table: the most frequent substitutions,
deletions and insertions, and the utterances where a given error occurs.

An errors table (``CorpusAlignment.errors``) has ``utt`` (int64 id), ``op`` ("sub"|"del"|"ins"),
``ref`` (<NA> for insertions) and ``hyp`` (<NA> for deletions). Each table is turned once into
integer codes (cached), and every question is then a vectorised pass over those codes.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sde.analysis.rates import STRING, UttIds, _id_mask, _unique_counts
from sde.caching import LRUCache

_KINDS = {"sub": 0, "del": 1, "ins": 2}  # as errors tables name them
_OPS = {"sub": 0, "del": 1, "ins": 2, "substitution": 0, "deletion": 1, "insertion": 2,
        "substitutions": 0, "deletions": 1, "insertions": 2}


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


# Errors tables are built once per dataset and never modified, so their codes are cached, keyed by
# identity (a DataFrame is not hashable). The entry is dropped when its table is collected (so an
# id is never reused for another table while cached), and the cache keeps the most recent tables.
_CODES_CACHE = LRUCache(64)


def _error_codes(errors: pd.DataFrame) -> _ErrorCodes:
    key = id(errors)
    hit = _CODES_CACHE.get(key)
    if hit is not None and hit[0]() is errors:
        return hit[1]
    missing = {"utt", "op", "ref", "hyp"} - set(errors.columns)
    if missing:
        raise KeyError(f"errors table lacks column(s) {sorted(missing)}; expected utt, op, ref, hyp")
    n = len(errors)
    op = _op_codes(errors["op"])
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
    _CODES_CACHE.put(key, (weakref.ref(errors), result))
    weakref.finalize(errors, _CODES_CACHE.discard, key)
    return result


def _op_codes(ops: pd.Series) -> np.ndarray:
    """Each error's kind as 0 sub, 1 del, 2 ins (-1 otherwise). A categorical column (as built)
    maps its few categories, not its millions of values."""
    if isinstance(ops.dtype, pd.CategoricalDtype):
        by_category = np.array([_KINDS.get(str(c), -1) for c in ops.cat.categories] + [-1], dtype=np.int8)
        codes = ops.cat.codes.to_numpy()
        return by_category[np.where(codes >= 0, codes, len(by_category) - 1)]
    values = ops.astype(object).to_numpy() if len(ops) else np.zeros(0, dtype=object)
    op = np.full(len(ops), -1, dtype=np.int8)
    for name, code in _KINDS.items():
        op[values == name] = code
    return op


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


_KIND_OPS = {"substitutions": 0, "deletions": 1, "insertions": 2}


def affected_utterances(errors: pd.DataFrame, kind: str, rows: pd.DataFrame,
                        utt_ids: UttIds = None) -> np.ndarray:
    """For each row of a `top_errors` table of `kind` (substitutions: ref, hyp; deletions and
    insertions: word), the number of distinct utterances with that error (within `utt_ids` when
    given). One vectorised pass over the errors of that kind."""
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    op = _KIND_OPS[kind]
    codes = _error_codes(errors)
    m = codes.op == op
    if utt_ids is not None:
        id_mask = _id_mask(utt_ids, codes.max_utt)
        m &= id_mask[codes.utt] if codes.utt.size else m
    nwords = max(len(codes.words), 1)
    if op == 0:
        ref = codes.index.get_indexer(rows["ref"].astype(object).tolist())
        hyp = codes.index.get_indexer(rows["hyp"].astype(object).tolist())
        wanted = ref.astype(np.int64) * nwords + hyp
        got = codes.ref[m].astype(np.int64) * nwords + codes.hyp[m]
    else:
        wanted = codes.index.get_indexer(rows["word"].astype(object).tolist()).astype(np.int64)
        got = (codes.ref if op == 1 else codes.hyp)[m].astype(np.int64)
    where = _first_position(wanted, got)
    hit = where >= 0
    key = codes.utt[m][hit] * n + where[hit]
    key.sort()  # sort-based distinct: numpy's hash-based unique is slow on millions of int64
    distinct = key[np.r_[True, key[1:] != key[:-1]]] if key.size else key
    return np.bincount(distinct % n, minlength=n).astype(np.int64)


def _first_position(wanted: np.ndarray, got: np.ndarray) -> np.ndarray:
    """For each of `got`, the position of its first occurrence in `wanted` (-1: none)."""
    index = pd.Index(wanted)
    if index.is_unique:
        return index.get_indexer(got)
    first = np.flatnonzero(~index.duplicated())
    where = pd.Index(wanted[first]).get_indexer(got)
    return np.where(where >= 0, first[where], -1)

