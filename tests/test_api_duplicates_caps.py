"""One cap per list of a duplicate group, and flags that say when it cut: /api/duplicates cut a
group's transcripts at 20 while duplicate_groups capped them at 100 (two numbers for one thing),
and its "ids_truncated" could never appear (both capped ids at 1000), so a client could not tell a
sample of a group from the whole of it."""

from __future__ import annotations

import json

import pytest

from sde.dataset import build_dataset
from sde.quality.duplicates import GROUP_MAX_IDS, GROUP_MAX_TEXTS
from sde.web.app import AppConfig, create_app
from sde.web.panels.quality_data import duplicates_page


def _spellings(n: int) -> list[str]:
    """``n`` spellings of one sentence (punctuation the normalised text drops): one text group."""
    return ["hello world" + "!" * (i + 1) for i in range(n)]


def _dataset(tmp_path, texts: list[str]):
    lines = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": t} for i, t in enumerate(texts)]
    lines.append({"audio_filepath": "other.wav", "duration": 1.0, "text": "something else"})
    (tmp_path / "m.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return build_dataset(tmp_path / "m.json")


@pytest.mark.parametrize("texts, ids_cut, texts_cut", [
    (_spellings(GROUP_MAX_TEXTS), False, False),
    (_spellings(GROUP_MAX_TEXTS + 1), False, True),
    (_spellings(GROUP_MAX_TEXTS) * (GROUP_MAX_IDS // GROUP_MAX_TEXTS), False, False),
    (_spellings(GROUP_MAX_TEXTS) * (GROUP_MAX_IDS // GROUP_MAX_TEXTS) + ["hello world!"], True, False),
    (_spellings(GROUP_MAX_IDS + 1), True, True),
], ids=["texts-at-the-cap", "one-text-over", "ids-at-the-cap", "one-id-over", "both-over"])
def test_a_group_is_cut_at_one_cap_and_flagged_exactly_when_cut(tmp_path, texts, ids_cut, texts_cut):
    dataset = _dataset(tmp_path, texts)
    page = duplicates_page(dataset, "text", 0, 10)
    served = create_app(dataset, AppConfig(title="dups", audio_routes=False)).server.test_client() \
        .get("/api/duplicates?kind=text").get_json()
    for data in (page, served):
        [group] = data["groups"]
        assert group["size"] == len(texts) and group["texts_total"] == len(set(texts))
        assert group["ids"] == list(range(min(len(texts), GROUP_MAX_IDS)))
        assert group["texts"] == list(dict.fromkeys(texts))[:GROUP_MAX_TEXTS]
        assert (group["ids_truncated"], group["texts_truncated"]) == (ids_cut, texts_cut)
    assert served["groups"] == page["groups"]  # the route sends the page's data as it is


def test_near_groups_carry_the_same_flags(tmp_path):
    # one centre ("... 1 minutes", the first alphabetically) within 2 edits of 25 others: one group
    texts = [f"set a timer for {n} minutes" for n in range(1, 26)]
    group = duplicates_page(_dataset(tmp_path, texts), "near", 0, 10)["groups"][0]
    assert group["texts_total"] == 25 and len(group["texts"]) == GROUP_MAX_TEXTS
    assert group["texts_truncated"] is True and group["ids_truncated"] is False
