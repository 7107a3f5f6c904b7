"""Duplicate utterances: the same transcript, the same audio, the same audio with different texts.

Text duplicates compare transcripts after lower-casing and punctuation removal (``sde.text``'s
``lower`` and ``punct`` steps), so "Hello, world." and "hello world" are one text. Near-duplicates
(optional, ``max_edits > 0``) also join texts within a few character edits of a group's centre.
Each centre finds every text within reach through blocks of texts that share a piece of it
(pigeonhole: ``max_edits`` edits leave one of ``max_edits + 1`` pieces intact), so none is missed
however many look-alikes sort between them ("set a timer for N minutes", N = 1…120, and "… N
minute"), up to :data:`NEAR_MAX_CANDIDATES` comparisons a centre; past that, in a crowd of that
many texts of one length sharing a piece, a text may miss its centre (a warning counts them).

Near-duplicate groups are formed around centres, not by chaining: distinct texts are taken most
frequent first (ties: alphabetical order of the normalised text); each joins the first centre already
taken that is within ``max_edits`` of it, or becomes a centre itself. Every member is thus within
``max_edits`` of its group's centre (members within ``2 * max_edits`` of each other): "set a timer
for N minutes" for N = 1…120, each 1 edit from the next, is 11 groups at 1 edit (around "1",
"20", "32", … minutes), not one chain; at 2 edits it is one group, as every number of up to three
digits is 2 edits from "1". The groups depend on the set of transcripts and their counts, not on
their order in the manifest.

Audio duplicates compare a hash of the decoded segment (16-bit PCM at the file's own rate), so a
FLAC copy of a WAV file, or the same segment named by two lines, is a duplicate, while a resampled
or re-encoded (lossy) copy is not.

Group ids are dense integers in order of each group's first utterance; utterances without a
duplicate get <NA>.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from sde.text import normalize_arrow, normalize_many

__all__ = [
    "DUPLICATE_COLUMNS",
    "GROUP_MAX_IDS",
    "GROUP_MAX_TEXTS",
    "AudioHasher",
    "NEAR_MAX_CANDIDATES",
    "NEAR_MIN_CHARS",
    "audio_duplicate_groups",
    "audio_hash",
    "duplicate_columns",
    "duplicate_groups",
    "normalized_texts",
    "text_duplicate_groups",
]

#: Columns :func:`duplicate_columns` returns.
DUPLICATE_COLUMNS: tuple[str, ...] = ("dup_text_group", "dup_audio_group", "dup_audio_text_conflict")
#: Texts shorter than this (after normalisation) only ever match exactly.
NEAR_MIN_CHARS = 16
_TEXT_STEPS = ("lower", "punct")


def normalized_texts(texts: Sequence[str] | pd.Series) -> list[str]:
    """Texts as duplicates compare them: lower-cased, punctuation removed, spaces collapsed."""
    return normalize_many(texts, _TEXT_STEPS)


def _group_ids(keys: Sequence[Any] | pd.Series, valid: np.ndarray) -> pd.Series:
    """Dense group ids (order of first appearance) for keys seen more than once among ``valid``."""
    return _repeated_groups(pd.factorize(pd.Series(keys), use_na_sentinel=True)[0], valid)


def _repeated_groups(codes: np.ndarray, valid: np.ndarray) -> pd.Series:
    """:func:`_group_ids` of keys already dense codes 0, 1, … (-1: none): no hash table of them
    again (at 10M texts one is ~0.3 GB)."""
    codes = np.where(valid, codes, -1)
    counts = np.bincount(codes[codes >= 0]) if (codes >= 0).any() else np.zeros(0, dtype=np.int64)
    repeated = np.zeros(len(codes), dtype=bool)
    ok = codes >= 0
    repeated[ok] = counts[codes[ok]] > 1
    return _renumber(np.where(repeated, codes, -1))


def _renumber(labels: np.ndarray) -> pd.Series:
    """Labels (-1 = none) → Int64 ids 0, 1, … in order of first appearance, <NA> for -1."""
    out = pd.array(np.full(len(labels), 0, dtype=np.int64), dtype="Int64")
    mask = labels >= 0
    if mask.any():
        dense, _ = pd.factorize(labels[mask])
        out[mask] = dense
    out[~mask] = pd.NA
    return pd.Series(out, name=None)


def text_duplicate_groups(texts: Sequence[str] | pd.Series, max_edits: int = 0) -> pd.Series:
    """``dup_text_group``: one id per group of equal normalised texts (empty texts never match).

    ``max_edits > 0`` also joins texts within that many character edits (Levenshtein) of a
    group's centre (see the module docstring), for texts of at least :data:`NEAR_MIN_CHARS`
    characters; groups never chain (a ~ b, b ~ c but a ≁ c puts a and c apart).
    """
    if max_edits <= 0:
        keys, valid = _text_keys(texts if isinstance(texts, pd.Series) else pd.Series(list(texts), dtype=object))
        return _repeated_groups(keys, valid)
    return _text_groups(normalized_texts(texts), max_edits)


def _text_groups(norm: list[str], max_edits: int) -> pd.Series:
    valid = np.fromiter((bool(t) for t in norm), dtype=bool, count=len(norm))
    if max_edits <= 0:
        return _group_ids(norm, valid)
    codes, unique_index = pd.factorize(pd.Series(norm))
    uniques: list[str] = unique_index.tolist()  # indexing a pandas Index one item at a time is slow
    # A few edits make "ok" into "no": only texts long enough for that to mean "nearly the same".
    long_enough = np.flatnonzero(np.fromiter((len(t) >= NEAR_MIN_CHARS for t in uniques), dtype=bool,
                                             count=len(uniques)))
    texts = [uniques[i] for i in long_enough]
    counts = np.bincount(codes, minlength=len(uniques))[long_enough]
    # Most frequent first: the transcript most utterances share is the likeliest original. The
    # alphabetical tie-break (not first appearance) keeps the groups independent of manifest order.
    alphabetical_rank = np.empty(len(texts), dtype=np.int64)
    alphabetical_rank[np.array(sorted(range(len(texts)), key=texts.__getitem__), dtype=np.int64)] = \
        np.arange(len(texts))
    priority = np.lexsort((alphabetical_rank, -counts))
    labels = np.arange(len(uniques), dtype=np.int64)  # every other text: a group of its exact copies
    labels[long_enough] = long_enough[_centres(texts, priority, max_edits)]
    return _group_ids(labels[codes], valid)


#: Most texts one centre is compared with. Its blocks (see :func:`_centres`) are read smallest
#: first; a crowded one through blocks of the rest of its texts, else (those too crowded) from its
#: first text not yet taken, in priority order. A text beyond the cap (in a crowd of templated prompts
#: of one length sharing two thirds of their characters) may miss that centre, and then starts a
#: group or joins a later centre; a warning counts the centres that hit the cap. Bounds the search
#: by this many comparisons a centre (~0.5 ms), whatever the data.
NEAR_MAX_CANDIDATES = 16_384
#: Most comparisons one rapidfuzz call makes (a block holding more is compared a slice at a time).
CDIST_MAX_COMPARISONS = 1 << 20
#: Blocks with more texts than this are compared by rapidfuzz in one call, smaller ones one by one.
_ONE_BY_ONE = 32
#: Comparisons worth rapidfuzz's threads (starting them costs more than a smaller slice takes).
_THREADED = 8192
#: Crowds of more texts than this are searched through blocks of the rest of their texts.
_SUB_INDEX = 512

log = logging.getLogger(__name__)


class _Crowd:
    """A block too large to read text by text: its texts (priority order) as an array and a list,
    from ``first``, the first one not yet taken; ``piece``: (start, stop) of the piece they share;
    ``sub``: past :data:`_SUB_INDEX` texts, the same blocks over what is left of them without it."""

    __slots__ = ("first", "ids", "piece", "sub", "texts")

    def __init__(self, ids: list[int], texts: list[str], piece: tuple[int, int]) -> None:
        self.first = 0
        self.ids = np.asarray(ids, dtype=np.int64)
        self.texts = [texts[i] for i in ids]
        self.piece = piece
        self.sub: tuple[int, list[tuple[int, int]], list[Any]] | None = None

    def __len__(self) -> int:
        return len(self.ids) - self.first


def _segments(length: int, max_edits: int) -> list[tuple[int, int]]:
    """(start, stop) of the ``max_edits + 1`` pieces a text of ``length`` characters is cut into."""
    bounds = [length * j // (max_edits + 1) for j in range(max_edits + 2)]
    return list(zip(bounds[:-1], bounds[1:]))


def _places(length: int, max_edits: int) -> list[tuple[int, int, int, int, int]]:
    """Where a text of ``length`` characters looks for the texts within ``max_edits`` of it: (length L
    of the other texts, piece i, start, stop of the substring to look up among the pieces i of texts of
    length L, where piece i starts in those texts).

    Pigeonhole: ``max_edits`` edits leave one of a text's ``max_edits + 1`` pieces intact, so the
    other text holds it verbatim. Take piece i, the first intact one: the pieces before it hold
    a >= i edits, which shift it by s (|s| <= a); the edits after it, b, make up the rest of the
    length difference d (|d - s| <= b); a + b <= max_edits. So the piece starts s characters off
    its own start, for every s with max(i, |s|) + |d - s| <= max_edits (PassJoin's multi-match-aware
    selection: 29 look-ups a text for 2 edits)."""
    plan = []
    for other in range(length - max_edits, length + max_edits + 1):
        delta = length - other
        for i, (start, stop) in enumerate(_segments(other, max_edits)):
            for shift in range(-max_edits, max_edits + 1):
                if max(i, abs(shift)) + abs(delta - shift) <= max_edits and 0 <= start + shift \
                        and stop + shift <= length:
                    plan.append((other, i, start + shift, stop + shift, start))
    return plan


def _probes(length: int, max_edits: int, blocks: dict[tuple[int, int], dict[str, Any]]
            ) -> list[tuple[dict[str, Any], int, int, int]]:
    """:func:`_places` with the blocks of each (length, piece) that holds texts."""
    return [(blocks[other, i], start, stop, piece) for other, i, start, stop, piece in _places(length, max_edits)
            if (other, i) in blocks]


def _alone(texts: list[str], max_edits: int) -> np.ndarray:
    """True for each text that shares no piece with another text where :func:`_places` looks: none is
    within ``max_edits`` of it (were one, each would hold a piece of the other where its look-ups go),
    so it is its own centre and the search can leave it out. Two thirds of a corpus of read sentences;
    found by Arrow's string kernels a length at a time, where the search costs ~30 µs of Python a text."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    by_length = np.argsort(lengths, kind="stable")
    strings = pa.array(texts, pa.large_string())
    groups = {int(lengths[ids[0]]): (ids, strings.take(ids))
              for ids in np.split(by_length, np.flatnonzero(np.diff(lengths[by_length])) + 1) if len(ids)}
    pieces: dict[tuple[int, int], tuple[pa.Array, np.ndarray]] = {}  # (length, i) -> pieces i, how many hold each
    for length, (_, group) in groups.items():
        for i, (start, stop) in enumerate(_segments(length, max_edits)):
            counted = pc.value_counts(pc.utf8_slice_codeunits(group, start, stop))
            pieces[length, i] = (counted.field("values"), counted.field("counts").to_numpy())
    alone = np.ones(len(texts), dtype=bool)
    for length, (ids, group) in groups.items():
        shares = np.zeros(len(ids), dtype=bool)
        for other, i, start, stop, piece in _places(length, max_edits):
            if (other, i) not in pieces:
                continue
            values, counts = pieces[other, i]
            at = pc.fill_null(pc.index_in(pc.utf8_slice_codeunits(group, start, stop), value_set=values), -1)
            at = at.to_numpy()
            held = np.where(at >= 0, counts[np.maximum(at, 0)], 0)
            # a text's look-up of its own piece finds itself
            shares |= held > int(other == length and start == piece)
        alone[ids] = ~shares
    return alone


def _centres(texts: list[str], priority: np.ndarray, max_edits: int) -> np.ndarray:
    """The centre (an index of ``texts``, distinct) of each text: texts taken in ``priority`` order
    (a permutation), each not yet in a group becomes a centre and takes every text not yet in a
    group within ``max_edits`` edits of it (up to :data:`NEAR_MAX_CANDIDATES` compared).

    Every text within reach of a centre is a candidate of it (see :func:`_probes`), so a text joins
    the first centre within ``max_edits`` of it. Connected components would chain a ~ b ~ c into
    one group though a ≁ c; a centre bounds every member's distance to it. Blocks: each text is
    filed under each of its pieces (and its length and the piece's number); a centre reads the
    blocks its probes name. Cost: 3 dictionary entries a text; a centre: 29 look-ups and at most
    NEAR_MAX_CANDIDATES comparisons (2 edits); only centres search, and only texts not
    :func:`_alone` take part.
    """
    alone = _alone(texts, max_edits)
    order = priority[~alone[priority]].tolist()
    blocks: dict[tuple[int, int], dict[str, Any]] = {}
    cuts: dict[int, list[tuple[int, int]]] = {}
    for t in order:  # filed in priority order, so a block's texts already taken gather at its front
        text = texts[t]
        pieces = cuts.get(len(text)) or cuts.setdefault(len(text), _segments(len(text), max_edits))
        for i, (start, stop) in enumerate(pieces):
            # a small block's first item: where its texts not yet taken begin (skipped once, not every read)
            blocks.setdefault((len(text), i), {}).setdefault(text[start:stop], [1]).append(t)
    centre = np.where(alone, np.arange(len(texts)), -1)  # read a block at a time (crowds)
    mine = centre.tolist()  # the same, read a text at a time (numpy's scalars are slow)
    plans: dict[int, list[tuple[dict[str, Any], int, int, int]]] = {}
    capped = 0
    for t in order:
        if mine[t] >= 0:
            continue
        centre[t] = mine[t] = t
        text = texts[t]
        plan = plans.get(len(text))
        if plan is None:
            plan = plans[len(text)] = _probes(len(text), max_edits, blocks)
        found: dict[Any, tuple[Any, int, int]] = {}
        for blocks_of, start, stop, piece in plan:
            key = text[start:stop]
            block = blocks_of.get(key)
            if block is not None:
                if type(block) is list and len(block) - block[0] > _ONE_BY_ONE:
                    block = blocks_of[key] = _Crowd(block[block[0]:], texts, (piece, piece + stop - start))
                # a crowd's rest depends on where its piece stands in this text: one read a place
                found[id(block) if type(block) is list else (id(block), start)] = (block, start, stop)
        budget, more, candidates = NEAR_MAX_CANDIDATES, False, []
        for block, start, stop in sorted(found.values(),
                                         key=lambda f: len(f[0]) - f[0][0] if type(f[0]) is list else len(f[0])):
            if type(block) is list:
                first = block[0]
                while first < len(block) and mine[block[first]] >= 0:
                    first += 1
                block[0] = first
                seen = block[first:first + max(budget, 0)]
                more = more or first + len(seen) < len(block)
                budget -= len(seen)
                candidates += [c for c in seen if mine[c] < 0]
                continue
            got = _read_sub(block, text[:start] + text[stop:], text, centre, max_edits, budget) \
                if len(block.ids) > _SUB_INDEX else None
            # the sub-blocks hold more than the budget too: the crowd's front, where the texts not yet
            # taken gather, is the better sample
            near, read, left = got if got is not None else _read_crowd(block, text, centre, max_edits, budget)
            for c in near:
                centre[c] = mine[c] = t
            more = more or left
            budget -= read
        capped += more
        for c in dict.fromkeys(candidates):
            if mine[c] < 0 and Levenshtein.distance(text, texts[c], score_cutoff=max_edits) <= max_edits:
                centre[c] = mine[c] = t
    if capped:
        log.warning("near-duplicates: %s centre transcripts had more than %s look-alikes (texts of their "
                    "length within %s characters with a third of their characters in common); each was compared "
                    "with the first %s only, so a transcript within %s edits of one may stand in a group of its "
                    "own (exact duplicates are all grouped; raise sde.quality.duplicates.NEAR_MAX_CANDIDATES to "
                    "compare more)", f"{capped:,}", f"{NEAR_MAX_CANDIDATES:,}", max_edits,
                    f"{NEAR_MAX_CANDIDATES:,}", max_edits)
    return centre


def _read_crowd(crowd: _Crowd, text: str, centre: np.ndarray, max_edits: int, budget: int
                ) -> tuple[list[int], int, bool]:
    """(The texts of ``crowd`` not yet taken (``centre`` < 0) within ``max_edits`` of ``text``, of
    the first ``budget`` from its front; how many were compared; whether some were left)."""
    while crowd.first < len(crowd.ids):  # skip the taken front a slice at a time
        free = np.flatnonzero(centre[crowd.ids[crowd.first:crowd.first + 4096]] < 0)
        if len(free):
            crowd.first += int(free[0])
            break
        crowd.first += 4096
    crowd.first = min(crowd.first, len(crowd.ids))
    stop = crowd.first + min(len(crowd), max(budget, 0))
    step = max(CDIST_MAX_COMPARISONS, 1)
    found: list[int] = []
    for lo in range(crowd.first, stop, step):
        hi = min(lo + step, stop)
        dist = cdist([text], crowd.texts[lo:hi], scorer=Levenshtein.distance, score_cutoff=max_edits,
                     dtype=np.int32, workers=-1 if hi - lo >= _THREADED else 1)[0]
        near = np.flatnonzero(dist <= max_edits)
        if len(near):  # mostly none
            near = crowd.ids[lo + near]
            found += near[centre[near] < 0].tolist()
    return found, stop - crowd.first, stop < len(crowd.ids)


def _read_sub(crowd: _Crowd, rest: str, text: str, centre: np.ndarray, max_edits: int, budget: int
              ) -> tuple[list[int], int, bool] | None:
    """:func:`_read_crowd` through blocks of the crowd's texts without their shared piece (``rest``:
    ``text`` without the substring that matched it). A text within ``max_edits`` of ``text`` with
    that piece intact there has its rest within ``max_edits`` of ``rest`` (the edits left and right of
    the piece, added), so the pigeonhole of :func:`_probes` holds again, on texts a third shorter.
    None when those blocks hold more than ``budget`` texts."""
    if crowd.sub is None:
        crowd.sub = _sub_blocks(crowd.texts, crowd.piece, max_edits)
    length, cuts, index = crowd.sub
    delta = len(rest) - length
    read = []
    for i, (a, b) in enumerate(cuts):
        keys, places, bounds, live = index[i]
        for shift in range(-max_edits, max_edits + 1):
            if max(i, abs(shift)) + abs(delta - shift) <= max_edits and 0 <= a + shift and b + shift <= len(rest):
                code = keys.get(rest[a + shift:b + shift])
                if code is None:
                    continue
                got = live.get(code)
                if got is None:  # first read (most sub-blocks are never read)
                    got = live[code] = [int(bounds[code + 1] - bounds[code]), places[bounds[code]:bounds[code + 1]]]
                read.append(got)
    filed = sum(got[0] for got in read)
    if filed > budget:
        return None
    if not filed:
        return [], 0, False
    for got in read:  # a text taken stays taken: drop it for good, not at every read
        got[1] = got[1][centre[crowd.ids[got[1]]] < 0]
    at = np.unique(np.concatenate([got[1] for got in read]))
    found: list[int] = []
    step = max(CDIST_MAX_COMPARISONS, 1)
    for lo in range(0, len(at), step):
        part = at[lo:lo + step]
        dist = cdist([text], [crowd.texts[k] for k in part.tolist()], scorer=Levenshtein.distance,
                     score_cutoff=max_edits, dtype=np.int32, workers=-1 if len(part) >= _THREADED else 1)[0]
        found += crowd.ids[part[dist <= max_edits]].tolist()
    return found, filed, False


def _sub_blocks(texts: list[str], piece: tuple[int, int], max_edits: int
                ) -> tuple[int, list[tuple[int, int]], list[tuple[dict[str, int], np.ndarray, np.ndarray,
                                                                dict[int, list[Any]]]]]:
    """The blocks :func:`_read_sub` reads, over ``texts`` (a crowd's: one length) without their
    shared ``piece``: (length of those rests, their pieces' (start, stop), and for each piece: its
    distinct values numbered, the places (in ``texts``) of the texts holding each, grouped by that
    number, where each group starts (and the end), and the groups read so far: [how many texts a
    group was filed with (what a read costs the budget, as before the texts taken were dropped from
    it), the places of those not yet taken]). Cut and grouped by Arrow's kernels, not a dictionary
    append a piece of a text (a crowd of 90,000 timers: 270,000 of them)."""
    start, stop = piece
    whole = pa.array(texts, pa.large_string())
    rests = pc.binary_join_element_wise(pc.utf8_slice_codeunits(whole, 0, start),
                                        pc.utf8_slice_codeunits(whole, stop, len(texts[0])),
                                        pa.scalar("", pa.large_string()))
    length = len(texts[0]) - (stop - start)
    cuts = _segments(length, max_edits)
    index = []
    for a, b in cuts:
        encoded = pc.dictionary_encode(pc.utf8_slice_codeunits(rests, a, b))
        codes = encoded.indices.to_numpy()
        values = encoded.dictionary.to_pylist()
        bounds = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(np.bincount(codes, minlength=len(values)), out=bounds[1:])
        index.append((dict(zip(values, range(len(values)))), np.argsort(codes, kind="stable"), bounds, {}))
    return length, cuts, index


class AudioHasher:
    """:func:`audio_hash` of a segment fed block by block (the same digest, in constant memory)."""

    def __init__(self, sample_rate: int) -> None:
        self._h = hashlib.blake2b(digest_size=16)
        self._h.update(int(sample_rate).to_bytes(4, "little"))

    def feed(self, samples: np.ndarray) -> None:
        pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64).reshape(-1) * 32768.0), -32768, 32767)
        self._h.update(pcm.astype("<i2").tobytes())

    def result(self) -> str:
        return self._h.hexdigest()


def audio_hash(samples: np.ndarray, sample_rate: int) -> str:
    """Hex blake2b-128 of the segment as 16-bit PCM at its own rate (plus the rate itself).

    Float samples from a 16-bit file round back to the file's exact integers, so the hash does not
    depend on the container or lossless codec.
    """
    hasher = AudioHasher(sample_rate)
    hasher.feed(samples)
    return hasher.result()


def audio_duplicate_groups(hashes: Sequence[str | None] | pd.Series) -> pd.Series:
    """``dup_audio_group``: one id per group of equal audio hashes (missing hashes never match)."""
    keys = pd.Series(hashes, dtype="object")
    return _group_ids(keys, keys.notna().to_numpy())


def _audio_text_conflicts(audio_groups: pd.Series, text_keys: np.ndarray) -> np.ndarray:
    """True where an audio group holds more than one distinct normalised transcript (``text_keys``:
    one integer per distinct normalised text)."""
    frame = pd.DataFrame({"g": audio_groups.to_numpy(dtype="float64", na_value=np.nan), "t": text_keys})
    in_group = frame["g"].notna()
    distinct = frame[in_group].groupby("g")["t"].nunique()
    flags = np.zeros(len(frame), dtype=bool)
    flags[in_group.to_numpy()] = frame.loc[in_group, "g"].map(distinct).to_numpy() > 1
    return flags


def duplicate_columns(table: pd.DataFrame, *, text_column: str = "text",
                      hash_column: str = "audio_hash", max_edits: int = 0) -> pd.DataFrame:
    """:data:`DUPLICATE_COLUMNS` for ``table`` (same index).

    The audio columns need ``hash_column`` (from ``sde.quality.segments``' ``hash`` measure); without
    it they are all <NA> / False.
    """
    texts = table[text_column] if text_column in table else pd.Series([""] * len(table))
    keys, valid = _text_keys(texts)
    text_groups = _repeated_groups(keys, valid) if max_edits <= 0 else _text_groups(normalized_texts(texts), max_edits)
    if hash_column in table:
        audio_groups = audio_duplicate_groups(table[hash_column])
        conflicts = _audio_text_conflicts(audio_groups, keys)
    else:  # all <NA>, made as such: a list of 10M pd.NA took as much again
        audio_groups = pd.Series(pd.arrays.IntegerArray(np.zeros(len(table), np.int64), np.ones(len(table), bool)))
        conflicts = np.zeros(len(table), dtype=bool)
    return pd.DataFrame({
        "dup_text_group": text_groups.array,
        "dup_audio_group": audio_groups.array,
        "dup_audio_text_conflict": conflicts,
    }, index=table.index, copy=False)


#: Texts normalised and digested at a time by :func:`_text_keys`.
KEY_CHUNK_ROWS = 65_536


def _text_keys(texts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(per text, an integer standing for its normalised text: equal texts, equal keys; whether that
    is not empty). The texts are normalised a chunk at a time and each kept as its 128-bit MD5
    (DuckDB's): 16 bytes a text where its normalised string as a Python object took ~100 (10M
    transcripts: ~0.3 GB instead of ~5 GB); two texts with one digest are as unlikely as a collision
    of 128-bit hashes among them (~10^-24 at 10M)."""
    from sde.compressed_columns import string_chunks  # compressed transcripts: a batch at a time
    from sde.filters.engine import numpy_sql

    upper, lower, valid = [], [], []

    def digest(pieces: list[pa.Array]) -> None:
        norm = normalize_arrow(pa.chunked_array(pieces, pa.large_string()), _TEXT_STEPS)
        got = numpy_sql("SELECT md5_number_upper(t) AS hi, md5_number_lower(t) AS lo FROM norm", (),
                        {"norm": pa.table({"t": norm})})
        upper.append(np.asarray(got["hi"], dtype=np.uint64))
        lower.append(np.asarray(got["lo"], dtype=np.uint64))
        valid.append(np.asarray(pc.not_equal(norm, "").to_numpy(zero_copy_only=False), dtype=bool))

    pieces: list[pa.Array] = []
    rows = 0
    for chunk in string_chunks(texts):
        pieces.append(chunk.cast(pa.large_string()) if chunk.type != pa.large_string() else chunk)
        rows += len(chunk)
        if rows >= KEY_CHUNK_ROWS:
            digest(pieces)
            pieces, rows = [], 0
    if pieces or not upper:
        digest(pieces or [pa.array([], pa.large_string())])
    nonempty = np.concatenate(valid)
    # each half's chunks let go once joined: at 10M texts each copy is 80 MB beside a factorize
    high = _codes_of(upper)
    low = _codes_of(lower)
    high *= int(low.max(initial=0)) + 1
    high += low
    del low
    return pd.factorize(high)[0], nonempty


def _codes_of(chunks: list[np.ndarray]) -> np.ndarray:
    """Dense int64 codes of the values in ``chunks`` (emptied: their memory goes before the codes')."""
    values = np.concatenate(chunks)
    chunks.clear()
    return pd.factorize(values)[0].astype(np.int64, copy=False)


#: Most ids and distinct transcripts one group lists, here, on the Duplicates page and in
#: /api/duplicates alike (``size`` and ``texts_total`` count them all; the filter
#: ``{dup_text_group} = N`` selects every member): 200,000 silent clips share one audio hash, and
#: listing them made a page of groups 5 MB of JSON with 140,000 transcripts. 20 transcripts: the
#: page shows 3, and 20 spellings of one sentence already say what varies.
GROUP_MAX_IDS = 1000
GROUP_MAX_TEXTS = 20


def duplicate_groups(table: pd.DataFrame, kind: str = "text", *, offset: int = 0, limit: int | None = None,
                     text_column: str = "text", max_ids: int | None = GROUP_MAX_IDS,
                     max_texts: int | None = GROUP_MAX_TEXTS, centre_first: bool = False) -> list[dict[str, Any]]:
    """The groups of ``/api/duplicates?kind=text|audio``, largest first (ties: first id first).

    ``table`` needs ``id`` and ``dup_text_group`` / ``dup_audio_group`` (from
    :func:`duplicate_columns`). Each group: ``{"group", "size", "ids", "texts"}`` where ``texts``
    are the distinct transcripts as written (one for a text group unless near-duplicates or
    different spellings joined it; more than one in an audio group = same audio, different texts),
    plus ``"conflict"`` for audio groups. ``offset``/``limit`` page through the ordered groups;
    only the groups returned are assembled. ``ids`` lists at most ``max_ids`` members (``size`` counts
    them all) and ``texts`` at most ``max_texts`` transcripts (``texts_total`` counts them), first
    in table order; None lists them all. ``centre_first`` (near-duplicate groups) lists the group's
    centre first, every spelling of it, then the others in table order (see :func:`_centre_first`).
    """
    if kind not in ("text", "audio"):
        raise ValueError(f'unknown duplicate kind "{kind}": use kind=text or kind=audio')
    column = f"dup_{kind}_group"
    if column not in table:
        raise KeyError(f"{column} is not computed; run duplicate_columns first")
    in_group = table[column].notna().to_numpy()
    gids = table[column].to_numpy(dtype="float64", na_value=np.nan)[in_group].astype(np.int64)
    ids = table["id"].to_numpy()[in_group]
    rows = np.flatnonzero(in_group)  # the texts of a page's groups only are read: 10M as objects take GBs
    order = np.argsort(gids, kind="stable")  # by group, table order inside each
    gids, ids, rows = gids[order], ids[order], rows[order]
    starts = np.flatnonzero(np.r_[True, gids[1:] != gids[:-1]]) if len(gids) else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, len(gids)])
    ranked = np.lexsort((ids[starts], -sizes))
    stop = len(ranked) if limit is None else offset + max(limit, 0)
    out: list[dict[str, Any]] = []
    for g in ranked[offset:stop]:
        lo, hi = starts[g], starts[g] + sizes[g]
        texts = table[text_column].iloc[rows[lo:hi]].tolist() if text_column in table else []
        distinct = [t for t in dict.fromkeys(texts) if isinstance(t, str)]
        if centre_first and len(distinct) > 1:  # before the cap: the centre may come 101st in table order
            distinct = _centre_first(texts, distinct)
        listed = ids[lo:hi] if max_ids is None else ids[lo:min(hi, lo + max(max_ids, 0))]
        group: dict[str, Any] = {"group": int(gids[lo]), "size": int(sizes[g]),
                                 "ids": [int(i) for i in listed],
                                 "texts": distinct if max_texts is None else distinct[:max(max_texts, 0)],
                                 "texts_total": len(distinct)}
        if kind == "audio":
            group["conflict"] = len(set(normalized_texts(distinct))) > 1 if distinct else False
        out.append(group)
    return out


def _centre_first(texts: list[Any], distinct: list[str]) -> list[str]:
    """``distinct`` (a group's transcripts as written, in table order) with its centre's spellings
    first: the normalised text most of ``texts`` have, ties alphabetical, as :func:`_text_groups`
    picks centres (a group holds every copy of its texts, so counts in it are counts in the table).
    The centre is what the others were measured against: read first, it explains the group."""
    normal = dict(zip(distinct, normalized_texts(distinct)))  # each distinct spelling once, not every row
    counts: dict[str, int] = {}
    for t in texts:
        if isinstance(t, str):
            counts[normal[t]] = counts.get(normal[t], 0) + 1
    centre = min(counts, key=lambda n: (-counts[n], n))
    return [t for t in distinct if normal[t] == centre] + [t for t in distinct if normal[t] != centre]
