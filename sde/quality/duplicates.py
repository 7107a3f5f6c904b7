"""Duplicate utterances: the same transcript, the same audio, the same audio with different texts.

Text duplicates compare transcripts after lower-casing and punctuation removal (``sde.text``'s
``lower`` and ``punct`` steps), so "Hello, world." and "hello world" are one text. Near-duplicates
(optional, ``max_edits > 0``) also join texts within a few character edits of a group's centre;
candidate pairs are searched among neighbours in sorted order, forwards and reversed (a
sorted-neighbourhood search): bounded time, linear in the number of texts, at the price of missing
pairs that differ at both ends and have many other texts sorting between them.

Near-duplicate groups are formed around centres, not by chaining: distinct texts are taken most
frequent first (ties: alphabetical order of the normalised text); each joins the first centre already
taken that is within ``max_edits`` of it, or becomes a centre itself. Every member is thus within
``max_edits`` of its group's centre (members within ``2 * max_edits`` of each other): "set a timer
for N minutes" for N = 1…120, each ≤ 2 edits from the next, is not one group of 120 sentences. The
groups depend on the set of transcripts and their counts, not on their order in the manifest.

Audio duplicates compare a hash of the decoded segment (16-bit PCM at the file's own rate), so a
FLAC copy of a WAV file, or the same segment named by two lines, is a duplicate, while a resampled
or re-encoded (lossy) copy is not.

Group ids are dense integers in order of each group's first utterance; utterances without a
duplicate get <NA>.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cpdist

from sde.text import normalize_arrow, normalize_many

__all__ = [
    "DUPLICATE_COLUMNS",
    "GROUP_MAX_IDS",
    "GROUP_MAX_TEXTS",
    "AudioHasher",
    "NEAR_MIN_CHARS",
    "NEAR_WINDOW",
    "audio_duplicate_groups",
    "audio_hash",
    "duplicate_columns",
    "duplicate_groups",
    "normalized_texts",
    "text_duplicate_groups",
]

#: Columns :func:`duplicate_columns` returns.
DUPLICATE_COLUMNS: tuple[str, ...] = ("dup_text_group", "dup_audio_group", "dup_audio_text_conflict")
#: Near-duplicate search compares each text with this many neighbours minus one, in sorted order.
NEAR_WINDOW = 16
#: Texts shorter than this (after normalisation) only ever match exactly.
NEAR_MIN_CHARS = 16
_TEXT_STEPS = ("lower", "punct")


def normalized_texts(texts: Sequence[str] | pd.Series) -> list[str]:
    """Texts as duplicates compare them: lower-cased, punctuation removed, spaces collapsed."""
    return normalize_many(texts, _TEXT_STEPS)


def _group_ids(keys: Sequence[Any] | pd.Series, valid: np.ndarray) -> pd.Series:
    """Dense group ids (order of first appearance) for keys seen more than once among ``valid``."""
    codes, _ = pd.factorize(pd.Series(keys), use_na_sentinel=True)
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
        return _group_ids(keys, valid)
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
    pairs, alphabetical = _near_pairs([uniques[i] for i in long_enough], max_edits)
    counts = np.bincount(codes, minlength=len(uniques))[long_enough]
    # Most frequent first: the transcript most utterances share is the likeliest original. The
    # alphabetical tie-break (not first appearance) keeps the groups independent of manifest order.
    alphabetical_rank = np.empty(len(long_enough), dtype=np.int64)
    alphabetical_rank[alphabetical] = np.arange(len(long_enough))
    priority = np.lexsort((alphabetical_rank, -counts))
    labels = np.arange(len(uniques), dtype=np.int64)  # every other text: a group of its exact copies
    labels[long_enough] = long_enough[_leaders(pairs, priority)]
    return _group_ids(labels[codes], valid)


def _near_pairs(uniques: list[str], max_edits: int) -> tuple[np.ndarray, np.ndarray]:
    """(pairs of distinct texts within ``max_edits`` edits among sorted neighbours, shape (k, 2);
    the indices of ``uniques`` in alphabetical order).

    Sorted-neighbourhood search: texts sorted as written, then sorted reversed; each is compared
    with the next ``NEAR_WINDOW - 1`` texts of each order. A small edit leaves either the start or
    the end of a text intact, so near-duplicates land close together in one of the two orders.
    Cost: 2·(NEAR_WINDOW-1)·len(uniques) comparisons, whatever the data.
    """
    pairs: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64)]
    orders: list[np.ndarray] = []
    for keyed in (uniques, [t[::-1] for t in uniques]):
        order = np.array(sorted(range(len(keyed)), key=keyed.__getitem__), dtype=np.int64)
        orders.append(order)
        ordered = [keyed[i] for i in order]
        for step in range(1, min(NEAR_WINDOW, len(ordered))):
            dist = cpdist(ordered[:-step], ordered[step:], scorer=Levenshtein.distance,
                          score_cutoff=max_edits, dtype=np.int32)
            hits = np.nonzero(dist <= max_edits)[0]
            pairs.append(np.column_stack([order[hits], order[hits + step]]))
    return np.concatenate(pairs), orders[0]


#: Links :func:`_leaders` turns into Python ints at a time.
LEADER_CHUNK_LINKS = 1 << 20


def _leaders(pairs: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """The centre of each node (greedy leader clustering): nodes taken in ``priority`` order (a
    permutation), each joins its first-taken neighbour (``pairs``, shape (k, 2)) that is a centre,
    else is a centre itself. Connected components would chain a ~ b ~ c into one group though
    a ≁ c; a centre bounds every member's distance to it."""
    n = len(priority)
    rank = np.empty(n, dtype=np.int64)
    rank[priority] = np.arange(n)
    ranked = rank[pairs]
    # One number per link, sorted by its later-taken node, then the earlier. Sorted and deduplicated
    # (both searches find most pairs) by hand: np.unique took 9 s for 5M links, np.sort 0.1 s.
    links = np.sort(ranked.max(axis=1) * n + ranked.min(axis=1))
    links = links[np.r_[True, links[1:] != links[:-1]]] if len(links) else links
    # The rule is sequential (whether a node is a centre depends on its earlier neighbours'), and
    # rounds of vectorised settling need one round per node of a chain of sentences (1…120 minutes):
    # a loop over the links, ~0.3 µs each (1M timer sentences: 25M links). Lists: numpy scalars are
    # slow; a chunk at a time: 25M links as Python ints would take ~2 GB.
    centre = list(range(n))  # by rank; its own rank: a centre
    for chunk in range(0, len(links), LEADER_CHUNK_LINKS):
        part = links[chunk:chunk + LEADER_CHUNK_LINKS]
        for node, candidate in zip((part // n).tolist(), (part % n).tolist()):
            # a node's neighbours all come before it, so whether they are centres is already settled
            if centre[node] == node and centre[candidate] == candidate:
                centre[node] = candidate
    return priority[np.asarray(centre, dtype=np.int64)[rank]]


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
    text_groups = _group_ids(keys, valid) if max_edits <= 0 else _text_groups(normalized_texts(texts), max_edits)
    if hash_column in table:
        audio_groups = audio_duplicate_groups(table[hash_column])
        conflicts = _audio_text_conflicts(audio_groups, keys)
    else:
        audio_groups = pd.Series(pd.array([pd.NA] * len(table), dtype="Int64"))
        conflicts = np.zeros(len(table), dtype=bool)
    return pd.DataFrame({
        "dup_text_group": text_groups.array,
        "dup_audio_group": audio_groups.array,
        "dup_audio_text_conflict": conflicts,
    }, index=table.index)


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
    high = pd.factorize(np.concatenate(upper))[0].astype(np.int64)
    low = pd.factorize(np.concatenate(lower))[0].astype(np.int64)
    return pd.factorize(high * (int(low.max(initial=0)) + 1) + low)[0], np.concatenate(valid)


#: Most ids and distinct transcripts one group lists (``size`` and ``texts_total`` count them all; the
#: filter ``{dup_text_group} = N`` selects every member): 200,000 silent clips share one audio hash,
#: and listing them made a page of groups 5 MB of JSON with 140,000 transcripts.
GROUP_MAX_IDS = 1000
GROUP_MAX_TEXTS = 100


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
