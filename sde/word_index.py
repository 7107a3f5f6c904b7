"""An index of the words of a transcript column: which rows hold each space-separated word, and
each two common words that follow each other.

A ``contains`` search scans every transcript (10M lines: ~0.2-0.3 s of DuckDB's substring test on
two cores, whatever the result). Words repeat: 10M lines of ~12 words have tens of thousands of
distinct ones. A search for text without a space can only match inside one word (the words are the
runs between spaces), so the rows that match are the rows of the distinct words that match: the
test runs on the words, and their rows are marked in a mask (``the`` at 10M: ~60 ms, against a
~250 ms scan). ``has`` (a whole word) works the same way, and so does a regex that can never match
a space (:func:`within_one_word`); another regex marks the rows holding the text all its matches
hold (:func:`required_words`). A phrase marks the rows where a word passing its first piece is
followed by one passing the next (:meth:`WordIndex.phrase_rows`): known for pairs of common words
(:func:`with_pairs`), and for rarer words narrowed to the rows that hold them.

The index is built by DuckDB, a segment of :data:`SEGMENT_BYTES` at a time (memory: the
postings, 4 bytes per word of the column, plus one segment's work), and kept in memory by
sde.compressed_columns within the budget of whole columns. A word in more than
sde.word_joins.BITS_SHARE of a segment's rows ("the", "a", "of") is kept as a bit per row of the
segment instead, as the joins are: at 10M lines of ~12 words, ~430 such words and segments held
43% of the postings (179 MB) in 45 MB of bits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
import functools
import itertools
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sde.engine import settings
from sde.filters.engine import arrow_sql, numpy_sql, stopping
from sde.filters.regex import in_sequence, parsed_regex
from sde.text import RE2_OTHER_WHITESPACE, token_numbers
from sde.word_joins import BITS_SHARE, WordJoins, or_bits, segment_joins

try:  # the parser of Python's re: sre_parse until 3.11
    from re import _parser as _re_parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_parse as _re_parser  # type: ignore[no-redef]

__all__ = ["COMMON_SHARE", "MAX_COMMON", "MAX_POSTINGS_PER_ROW", "SEGMENT_BYTES", "WORD", "Postings", "WordIndex", "WordTest",
           "SpaceCuts", "build_word_index", "no_pairs", "phrase_pieces", "required_words", "space_cuts", "with_joins", "with_pairs",
           "within_one_word", "word_row_counts"]

#: Text indexed by one DuckDB query (whole chunks, so a little more): ~0.85M lines of ~12 words,
#: whose work takes ~0.2 GB; a column of very long lines makes short segments, not big ones.
SEGMENT_BYTES = 64 << 20
#: A search whose words hold more rows than this per row of the column scans the lines instead
#: (see WordIndex.matching_rows): marking a row costs ~5 ns, testing a line ~25 ns, and the marks
#: take memory (4 bytes a row).
MAX_POSTINGS_PER_ROW = 2
#: A build is given up when the segments built project the index over its room by this much.
PROJECTION_MARGIN = 1.25
#: The column name a predicate over the words table uses (see WordIndex.matching_rows).
WORD = "w"
_SPACE = ord(" ")
#: Words in at least this share of the lines are common (the :data:`MAX_COMMON` most frequent of them
#: at most): where the budget has room, the index also keeps the rows of every two common words that
#: follow each other (with_pairs), so a phrase of them ("of the": both words in most lines, neither
#: narrows the lines to test) marks the lines that hold the pair. At 10M lines of ~12 words: ~100
#: words, ~3.9 pairs a line (+0.15 GB), and the rarer words around a phrase's pieces are few.
COMMON_SHARE = 0.01
MAX_COMMON = 128
_WORDS_SQL = (f"SELECT {WORD}, list(r) AS rows FROM "
              f"(SELECT unnest(string_split(text, ' ')) AS {WORD}, r FROM seg) GROUP BY {WORD}")
_PAIRS_SQL = ("SELECT a, b, list(r) AS rows FROM (SELECT r, unnest(list_slice(ws, 1, len(ws) - 1)) AS a, "
              "unnest(list_slice(ws, 2, len(ws))) AS b FROM (SELECT r, string_split(text, ' ') AS ws FROM seg)) "
              f"WHERE a IN (SELECT {WORD} FROM common) AND b IN (SELECT {WORD} FROM common) GROUP BY a, b")


@dataclass(frozen=True)
class WordTest:
    """A test of one word: ``predicate``, DuckDB SQL over the column :data:`WORD` with ``params``
    for its ``?``, applied to ``word``, the word as SQL (a phrase's piece tests the word with the
    spaces the phrase puts around it, see :func:`phrase_pieces`)."""

    predicate: str
    params: Sequence[Any] = ()
    word: str = WORD


@dataclass(frozen=True)
class Postings:
    """The rows of a words (or pairs) table's entries, per segment of the column: ``bases[i]``, the
    segment's first row (``bases[i + 1]``, the next one's); ``rows[i]``, the row positions of its
    entries kept as rows (a slice each: ``start``/``stop``); ``bits[i]``, a row of bits per entry
    kept as bits (``bit``, its row; little-endian, a bit per row of the segment)."""

    bases: np.ndarray
    rows: tuple[np.ndarray, ...]
    bits: tuple[np.ndarray, ...]

    @property
    def nbytes(self) -> int:
        return int(self.bases.nbytes + sum(r.nbytes for r in self.rows) + sum(b.nbytes for b in self.bits))

    def of(self, seg: int, start: int, stop: int, bit: int) -> np.ndarray:
        """One entry's rows: ascending when its rows are held as bits; a row list keeps the order the
        build wrote it in, which DuckDB's threads do not sort (callers sort if they need to)."""
        if bit < 0:
            return self.rows[seg][start:stop]
        count = int(self.bases[seg + 1] - self.bases[seg])
        return np.flatnonzero(np.unpackbits(self.bits[seg][bit], count=count, bitorder="little")) + self.bases[seg]


def _postings(parts: Sequence[tuple[int, np.ndarray, np.ndarray]], rows: int) -> Postings:
    """Postings of segments given as (first row, rows, bits), in order; ``rows``: the column's."""
    bases = np.array([base for base, _, _ in parts] + [rows], dtype=np.int64)
    return Postings(bases, tuple(r for _, r, _ in parts), tuple(b for _, _, b in parts))


#: The columns of a words or pairs table that place an entry's rows (see Postings), and its count of rows.
_SPAN = ("seg", "start", "stop", "bit", "count")


@dataclass(frozen=True)
class _Spans:
    """The words (a words table's rows) that passed a test: where their rows are (see Postings)."""

    segments: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    bits: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, table: pa.Table, entries: np.ndarray | None = None) -> "_Spans":
        columns = (table[c].to_numpy() for c in _SPAN)
        return cls(*(columns if entries is None else (c[entries] for c in columns)))

    @property
    def postings(self) -> int:
        """The rows they hold (a row twice where two of them hold it)."""
        return int(self.counts.sum())

    def only(self, keep: np.ndarray) -> "_Spans":
        return _Spans(self.segments[keep], self.starts[keep], self.stops[keep], self.bits[keep], self.counts[keep])

    def mark(self, mask: np.ndarray, postings: Postings) -> None:
        for seg in np.unique(self.segments).tolist():
            mine = self.segments == seg
            as_rows = mine & (self.bits < 0)
            picked = [postings.rows[seg][a:b] for a, b in zip(self.starts[as_rows].tolist(), self.stops[as_rows].tolist())]
            if picked:
                mask[np.concatenate(picked)] = True
            segment = mask[postings.bases[seg]:postings.bases[seg + 1]]
            for bit in self.bits[mine & (self.bits >= 0)].tolist():
                or_bits(segment, postings.bits[seg][bit])


class _Passing:
    """The words that passed a test (their rows of a words table: ``first``/``stop`` per word,
    whether each is ``common``): how many rows they hold, at once (``postings``, from the table's
    running count of rows: a search whose words hold most lines is left to the scan before their
    spans are gathered, ~20 ms for a letter's tens of thousands of words at 10M lines); their
    spans, those of the words that are not common, and the common ones (their pairs are indexed),
    when asked."""

    def __init__(self, table: pa.Table, running: np.ndarray, first: np.ndarray, stop: np.ndarray,
                 common: np.ndarray, words: np.ndarray) -> None:
        self._table, self._first, self._stop, self._common, self._words = table, first, stop, common, words
        self.postings = int((running[stop] - running[first]).sum())

    @functools.cached_property
    def _counts(self) -> np.ndarray:
        return self._stop - self._first

    @functools.cached_property
    def spans(self) -> _Spans:
        counts = self._counts
        entries = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(self._first - np.cumsum(counts) + counts, counts)
        return _Spans.of(self._table, entries)

    @functools.cached_property
    def rare(self) -> _Spans:
        return self.spans.only(~np.repeat(self._common, self._counts))

    @functools.cached_property
    def common_words(self) -> pa.Array:
        return pa.array(self._words[self._common], pa.large_string())


@dataclass(frozen=True)
class WordIndex:
    """The rows of every word of a column. ``words``: one row per word and segment, by word (``w``,
    the word; ``seg``, the segment; ``start``/``stop``/``bit``, where its rows are in ``postings``;
    ``count``, how many); ``postings``: per segment, the rows of its words (:class:`Postings`); ``vocabulary``: each distinct word
    once (``w``; ``common``, one of the words whose pairs are indexed; ``first``/``stop``, its rows
    of ``words``), so a search tests each word once; ``nulls``: the positions of missing values (a
    search neither matches nor fails to match them). ``pairs`` (``a``, ``b``, ``seg``, ``start``,
    ``stop``, ``bit``, ``count``) and ``pair_postings``: the same as ``words`` and ``postings`` for every two common
    words that follow each other in a line. ``joins``: the lines holding each join of two words
    (sde.word_joins), once built (:func:`with_joins`)."""

    rows: int
    words: pa.Table
    postings: Postings
    vocabulary: pa.Table
    nulls: np.ndarray
    pairs: pa.Table
    pair_postings: Postings
    joins: WordJoins | None = None

    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes + self.postings.nbytes + self.vocabulary.nbytes
                   + self.nulls.nbytes + self.pairs.nbytes + self.pair_postings.nbytes
                   + (self.joins.nbytes if self.joins is not None else 0))

    def matching_rows(self, test: WordTest, per_row: float | None = None) -> pa.BooleanArray | None:
        """Per row, whether one of its words passes ``test``; null where the value is missing. None when
        the words it matches hold more than ``per_row`` (default :data:`MAX_POSTINGS_PER_ROW`)
        rows per row of the column (``e``: nearly every word): scanning the lines is then faster,
        and marking them would take memory in proportion to the column."""
        passing = self._passing(test)
        if passing.postings > (MAX_POSTINGS_PER_ROW if per_row is None else per_row) * self.rows:
            return None
        mask = np.zeros(self.rows, dtype=bool)
        passing.spans.mark(mask, self.postings)
        return self._with_nulls(mask)

    def phrase_rows(self, tests: Sequence[WordTest], steps: Sequence[int], per_row: float) -> pa.BooleanArray | None:
        """The rows that may hold a phrase whose pieces, in order, pass ``tests`` (see
        :func:`phrase_pieces`): a superset of its rows, to be tested (null where the value is
        missing). For each step ``i`` of ``steps``, a word passing ``tests[i]`` must be followed by
        one passing ``tests[i + 1]``: rows of such a pair of common words, or of any other word that
        passes either test (its neighbours are not indexed); and a row holds a word passing each
        test of those steps (marked when that narrows the rows). Each step or test whose words hold
        more than ``per_row`` rows per row of the column is left out; None when all are."""
        found = self._phrase_mask(tests, steps, per_row)
        return None if found is None else self._with_nulls(found)

    def way_rows(self, ways: Sequence[Sequence[WordTest | None]], per_row: float,
                 joins: Sequence[Sequence[frozenset[str] | None]] = ()) -> pa.BooleanArray | None:
        """The rows that may hold a match of a regex across words (see :func:`space_cuts`): for
        each way its matches may fall, the tests its words pass in a row (None: a word nothing is
        known of), as a phrase's pieces (:meth:`phrase_rows`), and where the index has its joins,
        the rows holding a join of each step of the way's ``joins`` (SpaceCuts.joins); a superset
        of its rows, to be tested (null where the value is missing). None when neither narrows a
        way (its words hold more than ``per_row`` rows per row of the column, no join is known):
        nearly every line is tested then."""
        found = np.zeros(self.rows, dtype=bool)
        for tests, steps_joins in zip(ways, joins or [()] * len(ways)):
            steps = [i for i in range(len(tests) - 1) if tests[i] is not None and tests[i + 1] is not None]
            way = self._phrase_mask(tests, steps, per_row) if steps else None
            for i, test in enumerate(tests):
                if test is not None and i not in steps and i - 1 not in steps:  # a phrase's piece: narrowed with it
                    way = self._narrowed(way, self._passing(test), per_row * self.rows)
            for join in steps_joins if self.joins is not None else ():
                if join is not None:
                    joining = self.joins.rows_joining(join)  # type: ignore[union-attr]
                    way = joining if way is None else way & joining
            if way is None:
                return None
            found |= way
        return self._with_nulls(found)

    def joined_rows(self, joins: frozenset[str]) -> pa.BooleanArray | None:
        """The rows holding one of these joins of two words (sde.word_joins; null where the value is
        missing), or None when the index has no joins."""
        return None if self.joins is None else self._with_nulls(self.joins.rows_joining(joins))

    def _phrase_mask(self, tests: Sequence[WordTest | None], steps: Sequence[int], per_row: float) -> np.ndarray | None:
        limit = per_row * self.rows
        passing = {i: self._passing(tests[i]) for s in steps for i in (s, s + 1)}  # type: ignore[arg-type]
        found: np.ndarray | None = None
        for step in steps:
            a, b = passing[step], passing[step + 1]
            pairs = self.pairs.filter(pc.and_(pc.is_in(self.pairs["a"], value_set=a.common_words),
                                              pc.is_in(self.pairs["b"], value_set=b.common_words)))
            paired = _Spans.of(pairs)
            if paired.postings + a.rare.postings + b.rare.postings > limit:
                continue
            mask = np.zeros(self.rows, dtype=bool)
            paired.mark(mask, self.pair_postings)
            a.rare.mark(mask, self.postings)
            b.rare.mark(mask, self.postings)
            found = mask if found is None else found & mask
        for words in passing.values():
            found = self._narrowed(found, words, limit)
        return found

    def _narrowed(self, found: np.ndarray | None, words: _Passing, limit: float) -> np.ndarray | None:
        """``found`` (None: every row) less the rows holding none of these words, where the words
        hold at most ``limit`` rows and fewer than ``found``: else marking them costs more than
        the lines they rule out."""
        if words.postings > limit or (found is not None and words.postings >= np.count_nonzero(found)):
            return found
        mask = np.zeros(self.rows, dtype=bool)
        words.spans.mark(mask, self.postings)
        return mask if found is None else found & mask

    def _passing(self, test: WordTest) -> "_Passing":
        """The words that pass ``test``: tested once each (the vocabulary), then their spans."""
        sql = (f"SELECT word, common, first, stop FROM (SELECT {WORD} AS word, common, first, stop, "
               f"{test.word} AS {WORD} FROM vocabulary) WHERE {test.predicate}")
        got = numpy_sql(sql, test.params, {"vocabulary": self.vocabulary})
        return _Passing(self.words, self._running_counts, np.asarray(got["first"], dtype=np.int64),
                        np.asarray(got["stop"], dtype=np.int64), np.asarray(got["common"], dtype=bool),
                        np.asarray(got["word"], dtype=object))

    @functools.cached_property
    def _running_counts(self) -> np.ndarray:
        """Rows held by the words table's entries before each entry (and all of them, last), once:
        the rows of a run of its entries by subtraction."""
        counts = np.asarray(self.words["count"].to_numpy(), dtype=np.int64)
        return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(counts)])

    @functools.cached_property
    def _validity(self) -> tuple[pa.Buffer | None, int]:
        """Arrow's validity bitmap of the column (a bit a row, 0 where the value is missing) and its
        count of missing values, once."""
        if not len(self.nulls):
            return None, 0
        present = np.ones(self.rows, dtype=bool)
        present[self.nulls] = False
        return pa.py_buffer(np.packbits(present, bitorder="little")), self.rows - int(np.count_nonzero(present))

    def _with_nulls(self, mask: np.ndarray) -> pa.BooleanArray:
        validity, missing = self._validity
        data = pa.py_buffer(np.packbits(mask, bitorder="little"))
        return pa.BooleanArray.from_buffers(pa.bool_(), self.rows, [validity, data], null_count=missing)


def word_row_counts(index: WordIndex, words: Sequence[str], rows: np.ndarray | None = None) -> np.ndarray:
    """For each of ``words``, how many rows of the column hold it as a ``str.split()`` token, among
    ``rows`` (distinct row positions; None: every row), counted from the postings: a word's rows
    inside the selection, no line read. A word that is not one such token ("", "a b") is in none.
    The index splits at " " alone, so its words holding another whitespace ("a\\tb") hold each of
    their str.split() tokens too: their rows are added to those tokens' (rare: a distinct word each).
    The Comparison page's 300 words at 1M lines of ~12 words: ~40 ms of CPU, against ~1.9 s
    splitting every line (benchmarks/bench_analysis.py --stored)."""
    counts = np.zeros(len(words), dtype=np.int64)
    number = token_numbers(words)
    if not number:
        return counts
    vocabulary = index.vocabulary[WORD]
    wanted = pa.array(list(number), vocabulary.type)
    which = pc.index_in(vocabulary, value_set=wanted)  # probes the vocabulary: hashes only the few wanted
    found = np.flatnonzero(which.is_valid().to_numpy(zero_copy_only=False))
    word_of = [which.take(found).to_numpy(zero_copy_only=False).astype(np.int64)]
    vocabulary_of = [found]
    spaced = np.flatnonzero(pc.match_substring_regex(vocabulary, RE2_OTHER_WHITESPACE).to_numpy(zero_copy_only=False))
    for entry, text in zip(spaced.tolist(), vocabulary.take(spaced).to_pylist()):
        held = [number[token] for token in set(text.split()) if token in number]
        word_of.append(np.array(held, dtype=np.int64))
        vocabulary_of.append(np.full(len(held), entry, dtype=np.int64))
    held_by, entries = _entries_of(index, np.concatenate(word_of), np.concatenate(vocabulary_of))
    if len(entries):
        per_word = _rows_within(index, held_by, entries, _selection_mask(index.rows, rows), len(number))
        positions = np.array([number.get(w, -1) for w in words], dtype=np.int64)
        counts[positions >= 0] = per_word[positions[positions >= 0]]
    return counts


def _entries_of(index: WordIndex, word_of: np.ndarray, vocabulary_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The words table's entries (a word and segment each) of these vocabulary words, and the wanted
    word each counts for (``word_of``): a vocabulary word's run of entries (first/stop) expanded."""
    first = index.vocabulary["first"].take(pa.array(vocabulary_of)).to_numpy().astype(np.int64)
    spans = index.vocabulary["stop"].take(pa.array(vocabulary_of)).to_numpy().astype(np.int64) - first
    entries = np.arange(int(spans.sum()), dtype=np.int64) + np.repeat(first - np.cumsum(spans) + spans, spans)
    return np.repeat(word_of, spans), entries


def _selection_mask(count: int, rows: np.ndarray | None) -> np.ndarray | None:
    if rows is None:
        return None
    mask = np.zeros(count, dtype=bool)
    mask[np.asarray(rows, dtype=np.int64)] = True
    return mask


def _rows_within(index: WordIndex, held_by: np.ndarray, entries: np.ndarray, selected: np.ndarray | None,
                 wanted: int) -> np.ndarray:
    """Per wanted word, its distinct rows among ``selected`` (None: every row), from the words
    table's ``entries``, each counting for the word ``held_by`` says. Segments hold disjoint rows,
    so each is counted on its own and the counts add up."""
    counts = np.zeros(wanted, dtype=np.int64)
    table = index.words.take(pa.array(entries))
    segments = table["seg"].to_numpy().astype(np.int64)
    starts, stops = table["start"].to_numpy().astype(np.int64), table["stop"].to_numpy().astype(np.int64)
    bits = table["bit"].to_numpy().astype(np.int64)
    postings = index.postings
    order = np.lexsort((held_by, segments))  # by segment, then by word
    slots: dict[int, np.ndarray] = {}  # a segment's scratch for _distinct_within, made once
    packed: dict[int, np.ndarray] = {}  # a segment's selection as bits, made once for its common words
    bounds = np.flatnonzero(np.r_[True, (np.diff(segments[order]) != 0) | (np.diff(held_by[order]) != 0), True])
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        mine = order[a:b]  # one word's entries in one segment
        seg, k = int(segments[mine[0]]), int(held_by[mine[0]])
        base, end = int(postings.bases[seg]), int(postings.bases[seg + 1])
        chosen = None if selected is None else selected[base:end]
        as_bits = bits[mine][bits[mine] >= 0].tolist()
        slices = [postings.rows[seg][start:stop] for start, stop in zip(starts[mine][bits[mine] < 0].tolist(),
                                                                          stops[mine][bits[mine] < 0].tolist())]
        if as_bits and not slices and len(as_bits) == 1:  # a common word: a bit a row
            held = postings.bits[seg][as_bits[0]]
            if chosen is not None:
                if seg not in packed:
                    packed[seg] = np.packbits(chosen, bitorder="little")
                held = held & packed[seg]
            counts[k] += _ones(held)
        elif as_bits:  # with rows of words holding other whitespace: rare
            line = np.zeros(end - base, dtype=bool)
            for bit in as_bits:
                or_bits(line, postings.bits[seg][bit])
            for rows_of in slices:
                line[rows_of.astype(np.int64) - base] = True
            counts[k] += int(np.count_nonzero(line if chosen is None else line & chosen))
        else:
            if seg not in slots:
                slots[seg] = np.empty(end - base, dtype=np.int32)
            slot = slots[seg]
            counts[k] += _distinct_within(np.concatenate(slices) if len(slices) > 1 else slices[0], base, slot, chosen)
    return counts


def _distinct_within(rows_of: np.ndarray, base: int, slot: np.ndarray, chosen: np.ndarray | None) -> int:
    """How many distinct rows of ``rows_of`` (rows of the segment from ``base``, in any order, maybe
    repeated: DuckDB lists them as its threads find them) are ``chosen`` (None: every one). Each
    row's ``slot`` (an int32 per row of the segment, read only where written here) takes the
    position of one of its postings; that posting alone finds its own position there, so a row
    repeated counts once, without a sort."""
    local = rows_of.astype(np.int64) - base
    positions = np.arange(len(local), dtype=np.int32)
    slot[local] = positions
    once = slot[local] == positions
    if chosen is not None:
        once &= chosen[local]
    return int(np.count_nonzero(once))


_BYTE_ONES = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _ones(bits: np.ndarray) -> int:
    """The bits set in a row of bytes."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return int(np.bitwise_count(bits).sum(dtype=np.int64))
    return int(_BYTE_ONES[bits].sum(dtype=np.int64))


def phrase_pieces(text: str) -> list[tuple[str, str]] | None:
    """The pieces of a phrase (text with single spaces between words, none around them), each as
    the text its word must contain once the word has the spaces the phrase puts around it, and that
    word as SQL: ``"of the"`` → ``[("of ", "w || ' '"), (" the", "' ' || w")]`` (a word ending in
    "of", then one starting with "the"); a piece between two is a whole word. None for other text."""
    pieces = text.split(" ")
    if len(pieces) < 2 or not all(pieces):
        return None
    last = len(pieces) - 1
    return [((" " if i else "") + piece + (" " if i < last else ""), _SHAPES[(i > 0, i < last)])
            for i, piece in enumerate(pieces)]


_SHAPES = {(False, True): f"{WORD} || ' '", (True, False): f"' ' || {WORD}", (True, True): f"' ' || {WORD} || ' '"}


def within_one_word(pattern: str) -> bool | None:
    """Whether a regex's rows are the rows of the words it matches: True when nothing it matches
    can hold a space (U+0020, which separates the words; ``.``, ``\\s``, ``\\W``, ``[^…]`` and the
    like can), so any match lies inside one word (``\\b`` holds at a word's edges in the line as in
    the word alone); False when it may also hold anchors ``^`` / ``$`` (a line's start is a word's
    start, not the reverse: the words give rows to test); None for any other regex, one that may
    match across words, or one this cannot read for sure (Python's parser reads it; DuckDB runs
    RE2, whose syntax it shares for everything it accepts here: lookarounds, back references,
    POSIX classes ``[[:…:]]``, ``\\p{…}`` and verbose mode give None)."""
    parsed = parsed_regex(pattern)
    if parsed is None:
        return None
    try:
        anchored = _never_a_space(parsed)
    except (_MaybeASpace, RecursionError):
        return None
    return not anchored


def required_words(pattern: str) -> list[str]:
    """Text every match of a regex holds, as the runs between its spaces (``clipuzir.the`` →
    ``["clipuzir", "the"]``): each is in a word of every line the regex matches, so the words
    give rows to test. The literal characters at the regex's top level (groups included, not
    repeats or alternatives); [] when there are none or the regex is not read for sure (see
    :func:`within_one_word`). Case is the regex's: match the runs ignoring case."""
    parsed = parsed_regex(pattern)
    if parsed is None:
        return []
    runs, run = [], []
    for op, arg in in_sequence(parsed):
        if op is _re_parser.LITERAL:
            run.append(chr(arg))
        else:
            runs.append("".join(run))
            run = []
    runs.append("".join(run))
    return [word for text in runs for word in text.split(" ") if word]


#: A regex with more characters that may be a space than this is not cut (space_cuts): each one
#: doubles the ways its matches can fall across words.
MAX_SPACE_CUTS = 3
#: ... nor an alternation of more alternatives than this: each one tests the words again.
MAX_ALTERNATIVES = 8


@dataclass(frozen=True)
class SpaceCuts:
    """How a regex's matches can fall across the words of a line (see :func:`space_cuts`):
    ``within``, the regex a word matches when none of its may-be-space characters is a space (None
    when one always is); ``sure``, whether a word matching it is a line the regex matches (no line
    anchor: ``^`` holds at a word's start, not only the line's); ``across``, the other ways, each as
    the regexes of its words in a row (None: an empty piece, a word nothing is known of);
    ``spaced``, each way of ``across`` as one regex, its cuts spaces (``th.s`` → ``(?:th) (?:s)``,
    which is plain text): a line no word of which matches ``within`` matches the regex where it
    matches one of these. ``joins``: per way of ``across``, per cut between its words, the joins
    of two words (sde.word_joins: the byte ending one word and the byte starting the next, as
    two characters) a line matching that way holds, one of them; None where a word's last or
    first character is not known to be one ASCII character. ``joined``: per way, whether the
    lines holding its one join are exactly its lines (``e.t``: a word ending in "e", then one
    starting with "t")."""

    within: str | None
    sure: bool
    across: list[list[str | None]]
    spaced: list[str]
    joins: list[list[frozenset[str] | None]]
    joined: list[bool]


def space_cuts(pattern: str) -> list[SpaceCuts] | None:
    """The ways a regex's matches can fall across the words of a line, as the regexes (RE2,
    DuckDB's) its words must match, for a regex whose only parts that may match a space are single
    characters (``.``, ``\\s``, ``[^x]``, a space; at most :data:`MAX_SPACE_CUTS`): each such
    character is either a space, which cuts the match there, or not. ``th.s`` → within
    ``(?:th.s)``, across ``[["(?:th)$", "^(?:s)"]]``: a word holding "th", one character and "s" (a
    match for sure), or a word ending in "th" followed by one starting with "s" (a line to test).
    One :class:`SpaceCuts` per alternative of a regex that is an alternation (``you know|i mean``:
    at most :data:`MAX_ALTERNATIVES`; an alternative may then lie within a word), else one. None
    for any other regex, or one not read for sure (see :func:`within_one_word`)."""
    parsed = parsed_regex(pattern)
    if parsed is None or parsed.state.flags & ~(re.IGNORECASE | re.UNICODE):
        return None
    prefix = "(?i)" if parsed.state.flags & re.IGNORECASE else ""
    items = list(in_sequence(parsed, flagged=False))
    alternatives = items[0][1][1] if len(items) == 1 and items[0][0] is _re_parser.BRANCH else [items]
    if len(alternatives) > MAX_ALTERNATIVES:
        return None
    cut = [_cut_at_spaces(list(in_sequence(alternative, flagged=False)), prefix, alone=len(alternatives) == 1)
           for alternative in alternatives]
    return None if None in cut else cut  # type: ignore[return-value]


def _cut_at_spaces(items: list[tuple[Any, Any]], prefix: str, alone: bool) -> SpaceCuts | None:
    """One regex's (or alternative's) SpaceCuts (see space_cuts); a regex ``alone`` that no
    character cuts is None (sde.word_index.within_one_word reads it)."""
    try:
        cuts = [i for i, item in enumerate(items) if _may_be_a_space(item)]
        if len(cuts) > MAX_SPACE_CUTS or (alone and not cuts):
            return None
        text = [_re2(item) for item in items]
    except (_MaybeASpace, RecursionError):
        return None
    within, across, spaced, joins, joined = None, [], [], [], []
    always = (_re_parser.LITERAL, _SPACE)  # a space: never inside a word
    for spaces in itertools.product(*[(True,) if items[i] == always else (False, True) for i in cuts]):
        edges = [-1, *(i for i, cut in zip(cuts, spaces) if cut), len(items)]
        runs = ["".join(text[a + 1:b]) for a, b in zip(edges, edges[1:])]
        if len(runs) == 1:
            within = prefix + f"(?:{runs[0]})"
            continue
        last = len(runs) - 1
        across.append([prefix + ("^" if i else "") + f"(?:{run})" + ("$" if i < last else "") if run else None
                       for i, run in enumerate(runs)])
        spaced.append(prefix + " ".join(f"(?:{run})" if run else "" for run in runs))
        pieces = [items[a + 1:b] for a, b in zip(edges, edges[1:])]
        joins.append([_joins(before[-1:], after[:1], bool(prefix)) for before, after in zip(pieces, pieces[1:])])
        joined.append(len(pieces) == 2 and all(len(piece) == 1 for piece in pieces) and None not in joins[-1])
    return SpaceCuts(within, not _holds_a_line_anchor(items), across, spaced, joins, joined)


def _joins(last: list[tuple[Any, Any]], first: list[tuple[Any, Any]], ignore_case: bool) -> frozenset[str] | None:
    """The joins of two words (sde.word_joins) where one word ends with the regex item ``last`` and
    the next starts with ``first``; None unless each is one ASCII character (in either case where
    case is ignored: not s or k, which RE2 also matches as "ſ" and the Kelvin sign)."""
    ends, starts = _ascii_characters(last, ignore_case), _ascii_characters(first, ignore_case)
    if ends is None or starts is None:
        return None
    return frozenset(a + b for a in ends for b in starts)


def _ascii_characters(item: list[tuple[Any, Any]], ignore_case: bool) -> set[str] | None:
    if len(item) != 1 or item[0][0] is not _re_parser.LITERAL or not 32 < item[0][1] < 128:
        return None
    character = chr(item[0][1])
    if not ignore_case:
        return {character}
    return None if character.lower() in "sk" else {character.lower(), character.upper()}


def _holds_a_line_anchor(items: Any) -> bool:
    for op, arg in items:
        if op is _re_parser.AT and arg in _ANCHORS:
            return True
        parts = ([arg[-1]] if op is _re_parser.SUBPATTERN else [arg[2]] if op in _REPEATS
                 else arg[1] if op is _re_parser.BRANCH else [])
        if any(_holds_a_line_anchor(part) for part in parts):
            return True
    return False


def _may_be_a_space(item: tuple[Any, Any]) -> bool:
    """Whether an item of a regex is one character that may be a space; raises _MaybeASpace for an
    item that may hold a space among other characters (``.*``, ``(a|b c)``): it is not cut."""
    op, arg = item
    if op is _re_parser.ANY:
        return True
    if op in (_re_parser.LITERAL, _re_parser.NOT_LITERAL, _re_parser.IN):
        try:
            _never_a_space([item])
        except _MaybeASpace:
            return True
        return False
    _never_a_space([item])
    return False


# Line and word anchors as RE2 writes them (Python's \Z is RE2's \z).
_AT_RE2 = {_re_parser.AT_BEGINNING: "^", _re_parser.AT_END: "$", _re_parser.AT_BEGINNING_STRING: "\\A",
           _re_parser.AT_END_STRING: "\\z", _re_parser.AT_BOUNDARY: "\\b", _re_parser.AT_NON_BOUNDARY: "\\B"}
_CATEGORY_RE2 = {_re_parser.CATEGORY_DIGIT: "\\d", _re_parser.CATEGORY_NOT_DIGIT: "\\D",
                 _re_parser.CATEGORY_SPACE: "\\s", _re_parser.CATEGORY_NOT_SPACE: "\\S",
                 _re_parser.CATEGORY_WORD: "\\w", _re_parser.CATEGORY_NOT_WORD: "\\W"}


def _re2(item: tuple[Any, Any]) -> str:
    """One parsed regex item written back as RE2 reads it; _MaybeASpace for one this does not write."""
    op, arg = item
    if op is _re_parser.LITERAL:
        return _re2_char(arg)
    if op is _re_parser.NOT_LITERAL:
        return f"[^{_re2_char(arg)}]"
    if op is _re_parser.ANY:
        return "."
    if op is _re_parser.IN:
        return "[" + "".join(_re2_in_set(part) for part in arg) + "]"
    if op is _re_parser.AT and arg in _AT_RE2:
        return _AT_RE2[arg]
    if op in _REPEATS:
        low, high, items = arg
        bounds = f"{{{low},}}" if high is _re_parser.MAXREPEAT else f"{{{low},{high}}}"
        return f"(?:{''.join(map(_re2, items))}){bounds}" + ("?" if op is _re_parser.MIN_REPEAT else "")
    if op is _re_parser.SUBPATTERN and not arg[1] and not arg[2]:
        return f"(?:{''.join(map(_re2, arg[-1]))})"
    if op is _re_parser.BRANCH:
        return "(?:" + "|".join("".join(map(_re2, branch)) for branch in arg[1]) + ")"
    raise _MaybeASpace  # back references, lookarounds, flags: not cut


def _re2_in_set(part: tuple[Any, Any]) -> str:
    op, arg = part
    if op is _re_parser.NEGATE:
        return "^"
    if op is _re_parser.LITERAL:
        return _re2_char(arg)
    if op is _re_parser.RANGE:
        return f"{_re2_char(arg[0])}-{_re2_char(arg[1])}"
    if op is _re_parser.CATEGORY and arg in _CATEGORY_RE2:
        return _CATEGORY_RE2[arg]
    raise _MaybeASpace


def _re2_char(code: int) -> str:
    # two hex digits: RE2 and Python's parser read them alike (sde.filters.regex reads what this writes)
    return f"\\x{code:02x}" if code < 128 and not chr(code).isalnum() else chr(code)


class _MaybeASpace(Exception):
    """A part of a regex that may match a space, or that _never_a_space does not know."""


# Classes (\\d, \\w, ...) and whether they hold a space.
_CATEGORY_SPACE = {_re_parser.CATEGORY_DIGIT: False, _re_parser.CATEGORY_NOT_DIGIT: True,
                   _re_parser.CATEGORY_SPACE: True, _re_parser.CATEGORY_NOT_SPACE: False,
                   _re_parser.CATEGORY_WORD: False, _re_parser.CATEGORY_NOT_WORD: True}
_ANCHORS = {_re_parser.AT_BEGINNING, _re_parser.AT_END, _re_parser.AT_BEGINNING_STRING,
            _re_parser.AT_END_STRING, _re_parser.AT_BEGINNING_LINE, _re_parser.AT_END_LINE}
_WORD_EDGES = {_re_parser.AT_BOUNDARY, _re_parser.AT_NON_BOUNDARY}
_REPEATS = {_re_parser.MAX_REPEAT, _re_parser.MIN_REPEAT}


def _never_a_space(items: Any) -> bool:
    """Raise _MaybeASpace unless no match of these parsed regex items can hold a space; returns
    whether they hold a line anchor."""
    anchored = False
    for op, arg in items:
        if op is _re_parser.LITERAL:
            if arg == _SPACE:
                raise _MaybeASpace
        elif op is _re_parser.NOT_LITERAL:  # [^x]
            if arg != _SPACE:
                raise _MaybeASpace
        elif op is _re_parser.IN:
            if _set_holds_a_space(arg):
                raise _MaybeASpace
        elif op in _REPEATS:
            anchored |= _never_a_space(arg[2])
        elif op is _re_parser.SUBPATTERN:
            anchored |= _never_a_space(arg[-1])
        elif op is _re_parser.BRANCH:
            for branch in arg[1]:
                anchored |= _never_a_space(branch)
        elif op is _re_parser.AT and arg in _ANCHORS:
            anchored = True
        elif not (op is _re_parser.AT and arg in _WORD_EDGES):
            raise _MaybeASpace  # ".", lookarounds, back references, ...
    return anchored


def _set_holds_a_space(items: Any) -> bool:
    negated = bool(items) and items[0][0] is _re_parser.NEGATE
    holds = False
    for op, arg in items[1:] if negated else items:
        if op is _re_parser.LITERAL:
            holds |= arg == _SPACE
        elif op is _re_parser.RANGE:
            holds |= arg[0] <= _SPACE <= arg[1]
        elif op is _re_parser.CATEGORY and arg in _CATEGORY_SPACE:
            holds |= _CATEGORY_SPACE[arg]
        else:
            raise _MaybeASpace
    return holds != negated


def _once_per_row(rows: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Postings without a row repeated next to itself within a word ("the the the": one row, not
    three; DuckDB lists a line's words together), and their new offsets. A repeat left elsewhere
    costs memory, not correctness (marking a row twice marks it)."""
    if len(rows) < 2:
        return rows.copy(), offsets  # a copy: a view would keep DuckDB's whole answer alive
    keep = np.empty(len(rows), dtype=bool)
    keep[0] = True
    np.not_equal(rows[1:], rows[:-1], out=keep[1:])
    keep[offsets[:-1][offsets[:-1] < len(rows)]] = True  # a word's first row, whatever came before
    kept = np.flatnonzero(keep)
    return rows[kept], np.searchsorted(kept, offsets)  # a word's new offset: the rows kept before it


def _segments(chunks: Iterable[pa.Array], rows: int) -> Iterator[tuple[int, pa.Table, list[pa.Array]]]:
    """The column a segment of :data:`SEGMENT_BYTES` of text at a time: (its first row, a table of
    its ``text`` and row positions ``r``, its chunks)."""
    position = pa.uint32() if rows < 2**32 else pa.int64()
    pending: list[pa.Array] = []
    base = pending_bytes = 0
    for chunk in itertools.chain(chunks, [None]):
        if chunk is not None:
            pending.append(chunk)
            pending_bytes += chunk.nbytes
        if pending and (chunk is None or pending_bytes >= SEGMENT_BYTES):
            text = pa.chunked_array(pending, pending[0].type)
            positions = pa.array(np.arange(base, base + len(text), dtype=np.int64)).cast(position)
            yield base, pa.table({"text": text, "r": positions}), pending
            base += len(text)
            pending, pending_bytes = [], 0
    if base != rows:
        raise ValueError(f"the column gave {base:,} values, not {rows:,}")


def _over(size: int, done: int, rows: int, max_bytes: int | None, margin: float) -> bool:
    """Whether ``size`` bytes for ``done`` rows of ``rows``, projected to every row, is over
    ``max_bytes`` by more than ``margin`` (the projection is rough until the end)."""
    return max_bytes is not None and size * rows > max_bytes * margin * max(done, 1)


def build_word_index(chunks: Iterable[pa.Array], rows: int, max_bytes: int | None = None) -> WordIndex | None:
    """The index of a string column given as its chunks in order (``rows`` values in all): one
    DuckDB query per :data:`SEGMENT_BYTES` of text; no pairs yet (see :func:`with_pairs`). None when
    it would take more than ``max_bytes`` (given up as soon as the segments built project it: a
    column of one long word a line makes an index bigger than itself). Raises
    sde.filters.QueryError when DuckDB cannot (e.g. its memory limit)."""
    words: list[pa.Table] = []
    postings: list[tuple[int, np.ndarray, np.ndarray]] = []
    nulls: list[np.ndarray] = []
    for base, segment, pending in _segments(chunks, rows):
        found, rows_of_words, bits = _grouped(_WORDS_SQL, {"seg": segment}, [WORD], len(postings), base)
        words.append(found)
        postings.append((base, rows_of_words, bits))
        for a in pending:
            if a.null_count:
                nulls.append(np.flatnonzero(pc.is_null(a).to_numpy(zero_copy_only=False)) + base)
            base += len(a)
        size = sum(t.nbytes for t in words) + sum(r.nbytes + b.nbytes for _, r, b in postings) \
            + sum(n.nbytes for n in nulls)
        if base < rows and _over(size, base, rows, max_bytes, PROJECTION_MARGIN):
            return None
    table, vocabulary = _by_word(pa.concat_tables(words) if words else _no_words())
    index = WordIndex(rows=rows, words=table, postings=_postings(postings, rows), vocabulary=vocabulary,
                      nulls=np.concatenate(nulls).astype(np.int64) if nulls else np.zeros(0, dtype=np.int64),
                      pairs=no_pairs(), pair_postings=_postings([], rows))
    return None if max_bytes is not None and index.nbytes > max_bytes else index


def with_pairs(index: WordIndex, chunks: Iterable[pa.Array], max_bytes: int | None = None) -> WordIndex | None:
    """``index`` with the rows of every two common words that follow each other in a line (its
    words in at least :data:`COMMON_SHARE` of the rows, the :data:`MAX_COMMON` most frequent at
    most; ``chunks``: the column again), built by one DuckDB query per :data:`SEGMENT_BYTES` of
    text; None when the pairs would take more than ``max_bytes``, or no word is common."""
    common = _most_common(index)
    if not len(common):
        return None
    pairs: list[pa.Table] = []
    pair_postings: list[tuple[int, np.ndarray, np.ndarray]] = []
    for base, segment, _ in _segments(chunks, index.rows):
        found, rows_of_pairs, bits = _grouped(_PAIRS_SQL, {"seg": segment, "common": pa.table({WORD: common})},
                                              ["a", "b"], len(pair_postings), base)
        pairs.append(found)
        pair_postings.append((base, rows_of_pairs, bits))
        size = sum(t.nbytes for t in pairs) + sum(r.nbytes + b.nbytes for _, r, b in pair_postings)
        if _over(size, base + segment.num_rows, index.rows, max_bytes, PROJECTION_MARGIN):
            return None
    vocabulary = index.vocabulary.set_column(index.vocabulary.schema.get_field_index("common"), "common",
                                             pc.is_in(index.vocabulary[WORD], value_set=common))
    grown = replace(index, vocabulary=vocabulary, pairs=pa.concat_tables(pairs) if pairs else no_pairs(),
                    pair_postings=_postings(pair_postings, index.rows))
    return None if max_bytes is not None and grown.nbytes - index.nbytes > max_bytes else grown


def with_joins(index: WordIndex, chunks: Iterable[pa.Array], max_bytes: int | None = None) -> WordIndex | None:
    """``index`` with the lines holding each join of two words (sde.word_joins; ``chunks``: the
    column again), a segment of :data:`SEGMENT_BYTES` of text at a time; None when the joins would
    take more than ``max_bytes`` (given up once the segments built project it)."""
    segments: list[Any] = []
    workers = settings().processes
    with ThreadPoolExecutor(workers, thread_name_prefix="sde-joins") as pool:  # numpy's steps release the GIL
        running: deque[tuple[int, Future]] = deque()
        for next_segment in itertools.chain(_segments(chunks, index.rows), [None]):
            if stopping():  # the process exits: no DuckDB query here for it to interrupt
                for _, rest in running:
                    rest.cancel()
                return None
            if next_segment is not None:
                base, segment, pending = next_segment
                running.append((base + segment.num_rows, pool.submit(segment_joins, base, pending)))
            while running and (next_segment is None or len(running) >= workers):  # at most one a worker at once
                done, future = running.popleft()
                segments.append(future.result())
                if done < index.rows and _over(sum(s.nbytes for s in segments), done, index.rows, max_bytes,
                                               PROJECTION_MARGIN):
                    for _, rest in running:
                        rest.cancel()
                    return None
    joins = WordJoins(index.rows, tuple(segments))
    return None if max_bytes is not None and joins.nbytes > max_bytes else replace(index, joins=joins)


def _by_word(words: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The words table ordered by word, and its vocabulary (each word once; none common yet)."""
    words = words.take(pc.sort_indices(words, [(WORD, "ascending"), ("seg", "ascending")])).combine_chunks()
    text = words[WORD]
    starts = np.flatnonzero(np.r_[True, pc.not_equal(text[1:], text[:-1]).to_numpy(zero_copy_only=False)]) \
        if len(text) else np.zeros(0, dtype=np.int64)
    vocabulary = pa.table({WORD: text.take(starts), "common": pa.array(np.zeros(len(starts), dtype=bool)),
                           "first": pa.array(starts.astype(np.int64)),
                           "stop": pa.array(np.r_[starts[1:], len(text)].astype(np.int64))})
    return words, vocabulary


def _grouped(sql: str, tables: dict[str, pa.Table], keys: Sequence[str], segment: int,
             base: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """A segment's query grouping rows ``r`` by ``keys`` into ``rows`` lists (the segment's first
    row: ``base``), as a table of the keys and where their rows are (``seg``, ``start``, ``stop``,
    ``bit``, ``count``: see Postings), with the segment's rows and bits."""
    got = arrow_sql(sql, (), tables)
    lists = got.column("rows").combine_chunks() if got.num_rows else \
        pa.array([], pa.list_(tables["seg"].schema.field("r").type))
    offsets = lists.offsets.to_numpy().astype(np.int64)
    rows_of, offsets = _once_per_row(lists.values.to_numpy(zero_copy_only=False)[offsets[0]:offsets[-1]],
                                     offsets - offsets[0])
    counts = np.diff(offsets)
    as_bits = counts > BITS_SHARE * tables["seg"].num_rows
    bits = _bits_of(rows_of, offsets, np.flatnonzero(as_bits), base, tables["seg"].num_rows)
    rows_of = rows_of[np.repeat(~as_bits, counts)]  # what bits hold leaves the rows
    kept = np.where(as_bits, 0, counts)
    stops = np.cumsum(kept)
    bit = np.full(got.num_rows, -1, dtype=np.int32)
    bit[as_bits] = np.arange(int(as_bits.sum()), dtype=np.int32)
    every = np.arange(got.num_rows)
    # copied out: a column of DuckDB's answer keeps the whole answer (the lists too) alive
    columns = {key: got.column(key).cast(pa.large_string()).take(every) for key in keys}
    return pa.table({**columns, "seg": pa.array(np.full(got.num_rows, segment, dtype=np.int32)),
                     "start": pa.array(stops - kept), "stop": pa.array(stops),
                     "bit": pa.array(bit), "count": pa.array(counts)}), rows_of, bits


def _bits_of(rows_of: np.ndarray, offsets: np.ndarray, entries: np.ndarray, base: int, count: int) -> np.ndarray:
    """A row of bits (little-endian, a bit per row of the segment of ``count`` rows from ``base``)
    per entry of ``entries``: its rows ``rows_of[offsets[i]:offsets[i + 1]]``."""
    bits = np.zeros((len(entries), (count + 7) // 8), dtype=np.uint8)
    line = np.empty(count, dtype=bool)
    for i, entry in enumerate(entries.tolist()):
        line[:] = False
        line[rows_of[offsets[entry]:offsets[entry + 1]].astype(np.int64) - base] = True
        bits[i] = np.packbits(line, bitorder="little")
    return bits


def _most_common(index: WordIndex) -> pa.Array:
    """The words of an index in at least :data:`COMMON_SHARE` of its rows, at most
    :data:`MAX_COMMON` of them, the most frequent."""
    first = index.vocabulary["first"].to_numpy()
    per_entry = index.words["count"].to_numpy()
    counts = np.add.reduceat(per_entry, first) if len(first) else np.zeros(0, dtype=np.int64)
    top = np.argsort(-counts, kind="stable")[:MAX_COMMON]
    return index.vocabulary[WORD].take(top[counts[top] >= COMMON_SHARE * max(index.rows, 1)]).combine_chunks()


def _no_words() -> pa.Table:
    return pa.table({WORD: pa.array([], pa.large_string()), **_no_spans()})


def no_pairs() -> pa.Table:
    """The pairs table of an index without pairs (see :func:`with_pairs`)."""
    return pa.table({"a": pa.array([], pa.large_string()), "b": pa.array([], pa.large_string()), **_no_spans()})


def _no_spans() -> dict[str, pa.Array]:
    return {"seg": pa.array([], pa.int32()), "start": pa.array([], pa.int64()), "stop": pa.array([], pa.int64()),
            "bit": pa.array([], pa.int32()), "count": pa.array([], pa.int64())}
