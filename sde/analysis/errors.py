"""Confusions of one hypothesis from its errors table: the most frequent substitutions,
deletions and insertions, and the utterances where a given error occurs.

An errors table (``CorpusAlignment.errors``) has ``utt`` (int64 id), ``op`` ("sub"|"del"|"ins"),
``ref`` (<NA> for insertions) and ``hyp`` (<NA> for deletions). Each table is turned once into
integer codes (cached), and every question is then a vectorised pass over those codes.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.analysis.rates import STRING, UttIds, _id_mask, _unique_counts
from sde.caching import LRUCache
from sde.compressed_columns import LabelColumn, label_column, read_strings
from sde.engine import settings
from sde.filters.engine import numpy_sql

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
    # Arrow strings, never Python objects: at 10M utterances there are ~1M distinct words, and only
    # the few shown (a top-N table) become Python strings.
    words: pa.Array
    # The code of each word shown so far: the words asked about next (the affected utterances of a
    # top-N table) are those, found without hashing the whole dictionary again.
    shown: dict[str, int] = field(default_factory=dict, repr=False)
    # Every distinct substitution of the table and its count (see substitutions), once asked.
    _substitutions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    # Per kind (1 deletions, 2 insertions), each word's count over the whole table (see word_counts).
    _word_counts: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def substitutions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ref code, hyp code, count) of each distinct substitution of the whole table, counted
        once: what a top-N of the unfiltered table reads (Errors' first view; 10M utterances:
        ~0.4 s to count, then ~20 ms a top-N)."""
        if self._substitutions is None:
            self._substitutions = _pair_counts(self.ref, self.hyp, self.substitution_rows())
        return self._substitutions

    def word_counts(self, op: int, keep: np.ndarray | None = None) -> np.ndarray:
        """Per word code, how often the table deletes it (``op`` 1: its ref words) or inserts it
        (2: its hyp words), among the rows ``keep`` marks (None: every row, counted once: an
        unfiltered top-N then reads it; 10M utterances: ~40 ms to select the rows of a kind each
        time, ~5 ms from the counts)."""
        counts = self._word_counts.get(op) if keep is None else None
        if counts is None:
            words = self.ref if op == 1 else self.hyp
            rows = (self.op == op) & (words >= 0)
            if keep is not None:
                rows &= keep
            words = words[rows]
            counts = np.bincount(words, minlength=len(self.words)) if words.size else \
                np.zeros(len(self.words), dtype=np.int64)
            if keep is None:
                self._word_counts[op] = counts
        return counts

    def substitution_rows(self) -> np.ndarray:
        """Per row, whether it is a substitution of two words."""
        rows = self.op == 0
        rows &= self.ref >= 0
        rows &= self.hyp >= 0
        return rows

    @property
    def max_utt(self) -> int:
        return int(self.utt.max()) + 1 if self.utt.size else 0

    def rows_in(self, utt_ids: UttIds) -> np.ndarray | None:
        """Which errors belong to the selected utterances (a mask over the rows; None: all)."""
        if utt_ids is None:
            return None
        return _id_mask(utt_ids, self.max_utt)[self.utt] if self.utt.size else np.zeros(0, dtype=bool)

    def code_of(self, words: Sequence[str | None]) -> np.ndarray:
        """Each word's code (int64; -1: not in the table)."""
        words = list(words)
        known = [self.shown.get(w, -2) if isinstance(w, str) else -1 for w in words]
        if -2 not in known:
            return np.array(known, dtype=np.int64)
        wanted = pa.array(words, type=self.words.type, from_pandas=True)
        found = pc.index_in(wanted, value_set=self.words)
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def text(self, codes: np.ndarray) -> pd.arrays.ArrowStringArray:
        words = self.words.take(pa.array(codes, type=pa.int64())).to_pylist()
        if len(self.shown) > _MAX_SHOWN:
            self.shown.clear()
        self.shown.update(zip(words, codes.tolist()))
        return pd.array(words, dtype=STRING)

    def rank(self, *codes: np.ndarray) -> list[np.ndarray]:
        """For each array of codes, each word's position in code point order among the words of
        all of them: what ties are broken by, computed for a top-N's candidates only."""
        among = _distinct(np.concatenate([c.astype(np.int64) for c in codes])) if codes else np.zeros(0, np.int64)
        # Arrow compares UTF-8 bytes, which orders strings as their code points do
        order = pc.sort_indices(self.words.take(pa.array(among))).to_numpy()
        position = np.empty(len(among), dtype=np.int64)
        position[order] = np.arange(len(among))
        return [position[np.searchsorted(among, c)] for c in codes]


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: numpy's hash-based np.unique is slow on millions)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if values.size else values


# Words remembered with their codes per errors table, at most (a few top-N tables hold ~1,000).
_MAX_SHOWN = 100_000
# Errors tables are built once per dataset and never modified, so their codes are cached, keyed by
# identity (a DataFrame is not hashable). The entry is dropped when its table is collected (so an
# id is never reused for another table while cached), and the cache keeps the most recent tables.
_CODES_CACHE = LRUCache(64)
# Rows of ref + hyp below which encoding them stays on one thread (threads cost more than they save).
_ROWS_PER_THREAD = 1 << 20


def _error_codes(errors: pd.DataFrame) -> _ErrorCodes:
    key = id(errors)
    hit = _CODES_CACHE.get(key)
    if hit is not None and hit[0]() is errors:
        return hit[1]
    missing = {"utt", "op", "ref", "hyp"} - set(errors.columns)
    if missing:
        raise KeyError(f"errors table lacks column(s) {sorted(missing)}; expected utt, op, ref, hyp")
    n = len(errors)
    labels = label_column(errors["ref"]), label_column(errors["hyp"])
    if labels[0] is not None and labels[1] is not None:
        words, codes = _label_codes(labels[0], labels[1])
    else:
        words, codes = _shared_codes([read_strings(errors["ref"]), read_strings(errors["hyp"])])
    result = _ErrorCodes(
        utt=errors["utt"].to_numpy(dtype=np.int64),
        op=_op_codes(errors["op"]),
        ref=codes[:n],
        hyp=codes[n:],
        words=words,
    )
    _CODES_CACHE.put(key, (weakref.ref(errors), result))
    weakref.finalize(errors, _CODES_CACHE.discard, key)
    return result


def _label_codes(ref: LabelColumn, hyp: LabelColumn) -> tuple[pa.Array, np.ndarray]:
    """What _shared_codes gives, for columns stored as labels: their two dictionaries merged,
    and each row's code mapped into the merged one (no string hashed per row)."""
    merged = pa.concat_arrays([ref.dictionary, hyp.dictionary]).dictionary_encode()
    to_merged = merged.indices.to_numpy().astype(np.int32)
    codes = np.empty(len(ref) + len(hyp), dtype=np.int32)
    for column, remap, out in ((ref, to_merged[:len(ref.dictionary)], codes[:len(ref)]),
                               (hyp, to_merged[len(ref.dictionary):], codes[len(ref):])):
        # a missing value's code, -1, picks the appended -1
        np.take(np.append(remap, np.int32(-1)), column.codes(), out=out)
    return merged.dictionary, codes


def _shared_codes(columns: list[pa.ChunkedArray]) -> tuple[pa.Array, np.ndarray]:
    """(distinct words, each value's int32 code into them, -1 for null) of the columns end to end.

    Hashing millions of strings is most of the cost (~1 s at 10M utterances on one core): the rows
    are cut into one range per thread, each range is encoded by Arrow (which releases the GIL) with
    a dictionary of its own, and those few dictionaries are then merged into one. Codes are written
    chunk by chunk into one array: full-length temporaries would cost as much again in page faults."""
    total = sum(len(c) for c in columns)
    threads = max(1, min(settings().processes, total // _ROWS_PER_THREAD))
    ranges = _split(columns, threads)
    codes = np.empty(total, dtype=np.int32)
    with ThreadPoolExecutor(threads, thread_name_prefix="sde-error-codes") as pool:
        encoded = list(pool.map(_encode, ranges))
        dictionaries = [_dictionary(e) for e in encoded]
        merged = pa.concat_arrays(dictionaries).dictionary_encode()
        to_merged = merged.indices.to_numpy()
        starts = np.cumsum([0] + [len(d) for d in dictionaries]).tolist()
        # each range's dictionary index → merged code, plus a last entry, -1, picked by a null
        remaps = [np.append(to_merged[starts[i]:starts[i + 1]], -1).astype(np.int32) for i in range(len(ranges))]
        outs = [codes[begin:end] for begin, end in _bounds(ranges)]
        list(pool.map(_write_codes, encoded, remaps, outs))
    return merged.dictionary, codes


def _split(columns: list[pa.ChunkedArray], parts: int) -> list[list[pa.Array]]:
    """The columns' values end to end, cut into `parts` ranges of about equal length (zero-copy slices)."""
    chunks = [c for column in columns for c in column.chunks]
    total = sum(len(c) for c in chunks)
    size = max(1, -(-total // parts))
    ranges: list[list[pa.Array]] = [[]]
    room = size
    for chunk in chunks:
        offset = 0
        while offset < len(chunk):
            if room == 0:
                ranges.append([])
                room = size
            piece = chunk.slice(offset, room)
            ranges[-1].append(piece)
            offset += len(piece)
            room -= len(piece)
    return ranges


def _bounds(ranges: list[list[pa.Array]]) -> list[tuple[int, int]]:
    ends = np.cumsum([sum(len(p) for p in r) for r in ranges]).tolist()
    return list(zip([0] + ends[:-1], ends))


def _encode(pieces: list[pa.Array]) -> pa.ChunkedArray:
    """One range as dictionary indices, its chunks sharing one dictionary."""
    return pa.chunked_array(pieces, type=pa.large_string()).dictionary_encode()


def _dictionary(encoded: pa.ChunkedArray) -> pa.Array:
    return encoded.chunk(0).dictionary if encoded.num_chunks else pa.array([], type=pa.large_string())


def _write_codes(encoded: pa.ChunkedArray, remap: np.ndarray, out: np.ndarray) -> None:
    at = 0
    for chunk in encoded.chunks:
        local = chunk.indices
        local = (pc.fill_null(local, -1) if local.null_count else local).to_numpy()
        np.take(remap, local, out=out[at:at + len(local)], mode="wrap")  # -1 (null) → the last entry; "raise" would copy
        at += len(local)


def _op_codes(ops: pd.Series) -> np.ndarray:
    """Each error's kind as 0 sub, 1 del, 2 ins (-1 otherwise). A categorical column (as built)
    maps its few categories, not its millions of values."""
    if isinstance(ops.dtype, pd.CategoricalDtype):
        by_category = np.array([_KINDS.get(str(c), -1) for c in ops.cat.categories] + [-1], dtype=np.int8)
        return by_category[ops.cat.codes.to_numpy()]  # a missing value's code, -1, picks the last entry
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


def _top(counts: np.ndarray, tiebreak: list[np.ndarray], codes: _ErrorCodes, limit: int | None) -> np.ndarray:
    """Positions of the `limit` largest counts, most frequent first, ties by the words whose codes
    are the tiebreak keys (code point order)."""
    if limit is not None and limit < len(counts):
        if limit <= 0:
            return np.zeros(0, dtype=np.int64)
        # the limit-th largest as the limit-th smallest of the negated counts: numpy's partition at
        # an index near the end took ~20x longer (10M utterances' 1.7M substitution pairs, most of
        # them seen once: 205-260 ms against 12 ms)
        threshold = -np.partition(-counts.astype(np.int64, copy=False), limit - 1)[limit - 1]
        keep = np.flatnonzero(counts >= threshold)
    else:
        keep = np.arange(len(counts))
    ranks = codes.rank(*(t[keep] for t in tiebreak))
    order = np.lexsort(list(reversed(ranks)) + [-counts[keep]])
    out = keep[order]
    return out[:limit] if limit is not None else out


def _word_counts(codes: _ErrorCodes, counts: np.ndarray, limit: int | None) -> pd.DataFrame:
    """The ``limit`` words of the largest ``counts`` (one per word code), as [word, count]."""
    present = np.flatnonzero(counts)
    top = present[_top(counts[present], [present], codes, limit)]
    return pd.DataFrame({
        "word": codes.text(top),
        "count": counts[top].astype(np.int64),
    })


def prepare(errors: pd.DataFrame) -> None:
    """Code the words of an errors table and count its substitutions, deletions and insertions now
    (every analysis of it starts there; ~0.9-1.2 s at 10M utterances), so that the first request
    for its errors does not wait for them."""
    codes = _error_codes(errors)
    codes.substitutions()
    codes.word_counts(1)
    codes.word_counts(2)


def top_errors(errors: pd.DataFrame, utt_ids: UttIds = None, limit: int | None = 100) -> dict[str, pd.DataFrame]:
    """The most frequent substitutions, deletions and insertions of one hypothesis.

    Returns ``{"substitutions": DataFrame[ref, hyp, count], "deletions": DataFrame[word, count],
    "insertions": DataFrame[word, count]}``, each most frequent first, ties broken alphabetically
    (code point order: ref then hyp, or word), at most ``limit`` rows each (None: all).
    ``utt_ids`` (ids or a boolean mask over the utterance table) restricts to those utterances.
    """
    codes = _error_codes(errors)
    keep = codes.rows_in(utt_ids)
    if keep is None:
        ref_code, hyp_code, counts = codes.substitutions()
    else:
        ref_code, hyp_code, counts = _pair_counts(codes.ref, codes.hyp, codes.substitution_rows() & keep)
    top = _top(counts, [ref_code, hyp_code], codes, limit)
    subs = pd.DataFrame({
        "ref": codes.text(ref_code[top]),
        "hyp": codes.text(hyp_code[top]),
        "count": counts[top].astype(np.int64),
    })
    dels = _word_counts(codes, codes.word_counts(1, keep), limit)
    ins = _word_counts(codes, codes.word_counts(2, keep), limit)
    return {"substitutions": subs, "deletions": dels, "insertions": ins}


def _pair_counts(ref: np.ndarray, hyp: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ref code, hyp code, count) of each distinct pair of codes among ``rows`` (a mask), in no
    order: DuckDB's parallel hash aggregate over the arrays as they are (10M substitutions: ~0.3 s
    on two cores, where sorting them took ~0.7 s)."""
    got = numpy_sql("SELECT r, h, count(*) AS n FROM t WHERE k GROUP BY r, h", (),
                    {"t": pa.table({"r": ref, "h": hyp, "k": rows})})
    return (np.asarray(got["r"], dtype=ref.dtype), np.asarray(got["h"], dtype=hyp.dtype),
            np.asarray(got["n"], dtype=np.int64))


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
        loc = codes.code_of([word])[0]
        if loc < 0:
            return np.zeros(0, dtype=np.int64)
        m &= arr == loc
    return _unique_counts(codes.utt[m])[0]


_KIND_OPS = {"substitutions": 0, "deletions": 1, "insertions": 2}


def affected_utterances(errors: pd.DataFrame, kind: str, rows: pd.DataFrame,
                        utt_ids: UttIds = None) -> np.ndarray:
    """For each row of a `top_errors` table of `kind` (substitutions: ref, hyp; deletions and
    insertions: word), the number of distinct utterances with that error (within `utt_ids` when
    given; 0 for a repeated row after its first). One parallel join in DuckDB of the errors of
    that kind with the rows (10M utterances: ~0.4 s, where a sort of the matches took ~0.7-1 s)."""
    n = len(rows)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    op = _KIND_OPS[kind]
    codes = _error_codes(errors)
    if op == 0:
        wanted = {"r": codes.code_of(rows["ref"].astype(object).tolist()),
                  "h": codes.code_of(rows["hyp"].astype(object).tolist())}
    else:
        side = "r" if op == 1 else "h"
        wanted = {side: codes.code_of(rows["word"].astype(object).tolist())}
    keep = np.all([c >= 0 for c in wanted.values()], axis=0)
    keep &= ~pd.DataFrame(wanted).duplicated().to_numpy()
    pick = np.flatnonzero(keep)
    if not pick.size:
        return out
    found = {"i": pick, **{k: v[pick].astype(np.int32) for k, v in wanted.items()}}
    table = {"u": codes.utt, "o": codes.op, "r": codes.ref, "h": codes.hyp}
    where = "t.o = ?"
    if utt_ids is not None:
        table["k"] = codes.rows_in(utt_ids)
        where += " AND t.k"
    on = " AND ".join(f"t.{k} = w.{k}" for k in wanted)
    got = numpy_sql(f"SELECT w.i AS i, count(DISTINCT t.u) AS n FROM t JOIN w ON {on} WHERE {where} GROUP BY w.i",
                    (op,), {"t": pa.table(table), "w": pa.table(found)})
    out[np.asarray(got["i"], dtype=np.int64)] = np.asarray(got["n"], dtype=np.int64)
    return out
