"""Near-duplicate groups are built around centres and never chain: "set a timer for N minutes" for
N = 1…120, each ≤ 2 edits from the next, was one group of 120 different sentences on the Duplicates
page. Every member must be within max_edits of its group's centre (the most frequent transcript,
then the first alphabetically), exact copies stay together, and the manifest's order changes nothing."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from rapidfuzz.distance import Levenshtein

from sde.dataset import build_dataset
from sde.quality.duplicates import normalized_texts, text_duplicate_groups
from sde.web.app import AppConfig, create_app
from tests.browser_kit import dash_update, text_of

LONG = "the weather in the north will be cold and windy tomorrow"
TIMERS = [f"set a timer for {n} minutes" for n in range(1, 121)]
# each 1 edit from the next, 20 edits from end to end
DRIFT = ["x" * k + LONG[k:] for k in range(21)]


def partition(texts: list[str], labels: pd.Series) -> set[frozenset[str]]:
    """The groups as sets of texts (ids are numbered in manifest order; the grouping is what counts)."""
    members: dict[int, set[str]] = {}
    for text, label in zip(texts, labels):
        if pd.notna(label):
            members.setdefault(int(label), set()).add(text)
    return {frozenset(m) for m in members.values()}


def centre_within(group: frozenset[str], max_edits: int) -> bool:
    norm = normalized_texts(sorted(group))
    return any(all(Levenshtein.distance(c, t) <= max_edits for t in norm) for c in norm)


# (At 2 edits the timers are one group, rightly: "set a timer for 1 minutes" is within 2 edits of
# every "N minutes" up to 999; tests/test_near_duplicates_every_member_joins_its_centre.py.)
@pytest.mark.parametrize("texts,max_edits", [
    (TIMERS, 1),
    (DRIFT, 2),
], ids=["timer-chain-1-edit", "drifting-chain"])
def test_a_chain_splits_into_groups_each_within_reach_of_its_centre(texts, max_edits):
    groups = partition(texts, text_duplicate_groups(texts, max_edits=max_edits))
    assert len(groups) > 1, groups
    assert all(centre_within(g, max_edits) for g in groups), [sorted(g) for g in groups if not centre_within(g, max_edits)]


COLD, COLT, BOLT = LONG, LONG.replace("cold", "colt"), LONG.replace("cold", "bolt")


@pytest.mark.parametrize("texts,max_edits,expected", [
    ([LONG, COLT, "something else entirely here"], 2, [0, 0, None]),
    ([LONG, "The weather in the NORTH will be cold and windy tomorrow!", "ok", "OK."], 2, [0, 0, 1, 1]),
    # colt is 1 edit from cold and from bolt; cold ≁ bolt
    ([BOLT, COLT, COLD], 1, [0, 0, None]),
    ([BOLT, COLT, COLD, COLD, COLD], 1, [None, 0, 0, 0, 0]),
    (DRIFT[:6], 2, [0, 0, 0, 1, 1, 1]),
], ids=["true-pair-still-groups", "exact-copies-stay-together", "ties-go-to-the-first-alphabetically",
        "the-most-frequent-is-the-centre", "drift-in-groups-of-three"])
def test_who_joins_which_centre(texts, max_edits, expected):
    got = text_duplicate_groups(texts, max_edits=max_edits)
    assert [None if pd.isna(v) else int(v) for v in got] == expected


def test_exact_duplicates_are_grouped_as_without_near_matching():
    texts = TIMERS + ["Set a timer for 7 minutes.", "SET A TIMER FOR 99 MINUTES", "ok", "ok"]
    exact = partition(texts, text_duplicate_groups(texts))
    near = partition(texts, text_duplicate_groups(texts, max_edits=2))
    assert exact == {frozenset({"set a timer for 7 minutes", "Set a timer for 7 minutes."}),
                     frozenset({"set a timer for 99 minutes", "SET A TIMER FOR 99 MINUTES"}), frozenset({"ok"})}
    assert all(any(e <= n for n in near) for e in exact)


@pytest.mark.parametrize("texts", [
    TIMERS + TIMERS[::7],
    DRIFT + [COLT, BOLT, BOLT],
], ids=["timers-with-repeats", "drift-and-ties"])
def test_the_groups_do_not_depend_on_the_manifest_order(texts):
    want = partition(texts, text_duplicate_groups(texts, max_edits=2))
    for seed in range(5):
        shuffled = random.Random(seed).sample(texts, len(texts))
        assert partition(shuffled, text_duplicate_groups(shuffled, max_edits=2)) == want, seed


@pytest.mark.parametrize("comparisons", [1, 7, 1 << 20], ids=["one-a-call", "seven-a-call", "default"])
def test_rapidfuzz_calls_of_any_size_give_the_same_groups(monkeypatch, comparisons):
    import sde.quality.duplicates as duplicates

    want = partition(TIMERS, text_duplicate_groups(TIMERS, max_edits=2))
    monkeypatch.setattr(duplicates, "CDIST_MAX_COMPARISONS", comparisons)
    assert partition(TIMERS, text_duplicate_groups(TIMERS, max_edits=2)) == want


def test_the_near_duplicates_api_and_page_show_groups_within_reach_of_their_centre(tmp_path):
    texts = TIMERS + ["Set a timer for 7 minutes."]
    lines = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": t} for i, t in enumerate(texts)]
    (tmp_path / "m.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    app = create_app(build_dataset(tmp_path / "m.json"), AppConfig(title="dups", audio_routes=False))
    client = app.server.test_client()
    r = client.get("/api/duplicates", query_string={"kind": "near", "page_size": 200})
    assert r.status_code == 200, r.get_data(as_text=True)
    data = r.get_json()
    assert all(g["size"] == len(g["ids"]) for g in data["groups"])  # ids: lines of the manifest, all listed
    groups = [frozenset(texts[i] for i in g["ids"]) for g in data["groups"]]
    assert data["groups_total"] == len(groups) > 1
    assert all(centre_within(g, 2) for g in groups), [sorted(g) for g in groups if not centre_within(g, 2)]
    assert any({"set a timer for 7 minutes", "Set a timer for 7 minutes."} <= g for g in groups)
    out = dash_update(client, app, "page-content.children",
                      {"url.pathname": "/duplicates", "url.search": "?kind=near"}, {"rendered.data": None})
    assert "within 2 character edits of the group's centre" in text_of(out["page-content.children"])
