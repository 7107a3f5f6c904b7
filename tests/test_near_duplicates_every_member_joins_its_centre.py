"""Every transcript within max_edits of a near-duplicate centre joins a centre's group: the first
centre (most frequent, then alphabetical) within reach. The candidate search compared each text
with its 15 neighbours in sorted and reversed order only, so in a crowd sharing both a long prefix
and a long suffix ("set a timer for N minutes", a read sentence with one word varied by many
speakers) a text 1 edit from its centre stood alone, or in another group, when more than 15 texts
sorted between them."""

from __future__ import annotations

import logging
import random

import pandas as pd
import pytest
from rapidfuzz.distance import Levenshtein

import sde.quality.duplicates as duplicates
from sde.quality.duplicates import NEAR_MIN_CHARS, normalized_texts, text_duplicate_groups
from tests.test_near_duplicates_centres import partition

TIMERS = ([f"set a timer for {n} minutes" for n in range(1, 121)] + [f"Set a timer for {n} minute." for n in range(1, 121)]
          + ["set a timer for 45 minutes"] * 3 + ["set a timer for 90 minutes"] * 2)
BASE = "the quick brown fox jumps over the lazy dog near the river bank"
SWAPS = {"quick": ["quack", "quirk", "quicks", "thick", "slick"], "brown": ["brawn", "crown", "frown", "grown", "brow"],
         "fox": ["fix", "box", "foxes", "fog"], "jumps": ["jumped", "bumps", "dumps", "lumps"],
         "lazy": ["hazy", "lacy", "lady", "laze", "crazy"], "dog": ["dot", "dig", "log", "fog", "dogs"],
         "near": ["bear", "neat", "nearer", "wear"], "river": ["rover", "liver", "giver", "rivers"],
         "bank": ["band", "tank", "banks", "bunk"]}
# one sentence read by many speakers, each transcript with one word spelt otherwise (≤ 2 edits),
# and others of the same frame further away
READ = ([BASE] * 5 + [BASE.replace(f" {w} ", f" {v} ", 1) if f" {w} " in BASE else BASE.replace(w, v)
                      for w, vs in SWAPS.items() for v in vs]
        + [f"the quick brown fox jumps over the lazy dog near the {place}"
           for place in ("old mill", "harbour wall", "village green", "stone bridge", "church tower")])


def first_centre_groups(texts: list[str], max_edits: int) -> set[frozenset[str]]:
    """The rule, by brute force: distinct normalised texts, most frequent first (ties alphabetical);
    each not yet grouped becomes a centre and takes every text not yet grouped within max_edits."""
    norm = normalized_texts(texts)
    counts = pd.Series(norm).value_counts()
    order = sorted((t for t in counts.index if t), key=lambda t: (-counts[t], t))
    centre: dict[str, str] = {}
    for c in order:
        if c in centre:
            continue
        centre[c] = c
        if len(c) >= NEAR_MIN_CHARS:
            for t in order:
                if t not in centre and len(t) >= NEAR_MIN_CHARS and Levenshtein.distance(c, t) <= max_edits:
                    centre[t] = c
    members: dict[str, list[str]] = {}
    for text, n in zip(texts, norm):
        if n:
            members.setdefault(centre[n], []).append(text)
    return {frozenset(m) for m in members.values() if len(m) > 1}  # one utterance alone is no group


@pytest.mark.parametrize("texts, max_edits", [
    (TIMERS, 1),
    (TIMERS, 2),
    (READ, 2),
    (READ, 1),
], ids=["timer-prompts-1-edit", "timer-prompts-2-edits", "read-sentence-many-speakers-2-edits",
        "read-sentence-many-speakers-1-edit"])
def test_every_text_within_reach_joins_the_first_centre(texts, max_edits):
    assert partition(texts, text_duplicate_groups(texts, max_edits=max_edits)) == first_centre_groups(texts, max_edits)


@pytest.mark.parametrize("one_by_one, sub_index", [(0, 1 << 30), (1 << 30, 1 << 30), (0, 0)],
                         ids=["every-block-by-rapidfuzz", "every-block-text-by-text", "every-block-by-its-sub-blocks"])
@pytest.mark.parametrize("texts", [TIMERS, READ], ids=["timer-prompts", "read-sentence"])
def test_every_way_of_reading_a_block_gives_the_rule(monkeypatch, one_by_one, sub_index, texts):
    monkeypatch.setattr(duplicates, "_ONE_BY_ONE", one_by_one)
    monkeypatch.setattr(duplicates, "_SUB_INDEX", sub_index)
    for max_edits in (1, 2, 3):
        assert partition(texts, text_duplicate_groups(texts, max_edits=max_edits)) == first_centre_groups(texts, max_edits)


def test_past_the_cap_groups_stay_within_reach_and_a_warning_counts_the_capped(monkeypatch, caplog):
    monkeypatch.setattr(duplicates, "NEAR_MAX_CANDIDATES", 8)
    with caplog.at_level(logging.WARNING, logger="sde.quality.duplicates"):
        groups = partition(TIMERS, text_duplicate_groups(TIMERS, max_edits=2))
    [message] = [r.getMessage() for r in caplog.records]
    assert "compared with the first 8 only" in message and "transcripts had more than 8 look-alikes" in message
    assert "NEAR_MAX_CANDIDATES" in message  # the remedy
    for group in groups:
        norm = normalized_texts(sorted(group))
        assert any(all(Levenshtein.distance(c, t) <= 2 for t in norm) for c in norm), sorted(group)


def _look_alikes(seed: int) -> list[str]:
    """Texts of a few lengths over a small alphabet (with letters Arrow stores in 2 and 4 bytes),
    many within a few edits of others, some periodic (a piece found at several places of its text),
    a few far from all."""
    rng = random.Random(seed)
    letters = "abé 🙂"
    base = ["".join(rng.choice(letters) for _ in range(rng.randint(16, 24))) for _ in range(12)]
    out = list(base) + ["ab" * 9, "ab" * 9 + "a", "ba" * 9, "é" * 17, "é" * 16 + "a"]
    for _ in range(150):
        text = list(rng.choice(base))
        for _ in range(rng.randint(0, 4)):
            at, edit = rng.randrange(len(text)), rng.randrange(3)
            if edit == 0:
                text.insert(at, rng.choice(letters))
            elif edit == 1:
                del text[at]
            else:
                text[at] = rng.choice(letters)
        out.append("".join(text))
    # and some far from all: look-ups that find nothing but themselves
    out += ["".join(rng.choice("cdfghjkmnpqrstuvwxyz") for _ in range(rng.randint(16, 24))) for _ in range(8)]
    return list(dict.fromkeys(t for t in out if len(t) >= NEAR_MIN_CHARS))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_edits", [1, 2, 3])
def test_a_text_left_out_of_the_search_has_none_within_reach(seed, max_edits):
    texts = _look_alikes(seed)
    alone = duplicates._alone(texts, max_edits)
    assert 0 < alone.sum() < len(texts)  # both kinds, or the test says nothing
    for t in (t for t, a in zip(texts, alone) if a):
        assert all(o == t or Levenshtein.distance(t, o) > max_edits for o in texts), t


@pytest.mark.parametrize("seed", range(2))
def test_texts_with_wide_characters_group_by_the_rule(monkeypatch, seed):
    texts = _look_alikes(seed)
    texts += texts[::5]  # repeats: other centres than the alphabetical first
    for sub_index in (0, 1 << 30):  # every crowd through its sub-blocks, and none
        monkeypatch.setattr(duplicates, "_ONE_BY_ONE", 0)
        monkeypatch.setattr(duplicates, "_SUB_INDEX", sub_index)
        for max_edits in (1, 2):
            got = partition(texts, text_duplicate_groups(texts, max_edits=max_edits))
            assert got == first_centre_groups(texts, max_edits), (sub_index, max_edits)
