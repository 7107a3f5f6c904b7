"""The Duplicates page's JSON link is the twin of the page shown: on page 2 and later it names the
page and its size (it named neither, so it answered page 1's groups)."""

from __future__ import annotations

import json
import threading

import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from sde.web.pages import duplicates
from sde.web.panels import quality_data


def _components(node) -> list:
    """Every component under ``node`` (the page's layout)."""
    found, stack = [], [node]
    while stack:
        item = stack.pop()
        found.append(item)
        children = getattr(item, "children", None)
        stack.extend(children if isinstance(children, list) else [children] if children is not None else [])
    return found


@pytest.mark.parametrize("page", [0, 1, 2])
def test_the_json_link_answers_the_groups_the_page_shows(tmp_path, page):
    # 130 pairs of copies: 130 text groups, three pages of 50
    lines = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"sentence number {i // 2}"} for i in range(260)]
    (tmp_path / "m.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    dataset = build_dataset(tmp_path / "m.json")
    layout = duplicates.layout(dataset, "/duplicates", {"kind": "text", **({"page": str(page)} if page else {})})
    [json_link] = [c for c in _components(layout) if type(c).__name__ == "A" and c.children == "JSON"]
    client = create_app(dataset, AppConfig(title="dups", audio_routes=False)).server.test_client()
    answer = client.get(json_link.href).get_json()
    shown = {c.id for c in _components(layout) if str(getattr(c, "id", "")).startswith("dup-group-")}
    assert len(shown) == (50 if page < 2 else 30)
    assert {f"dup-group-{g['group']}" for g in answer["groups"]} == shown


def test_the_page_comes_at_once_while_its_groups_are_found_and_the_poll_shows_them(tmp_path, monkeypatch):
    # near-duplicates take ~20-30 s per million utterances on the first visit: the page stayed blank
    lines = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"sentence number {i // 2}"} for i in range(20)]
    (tmp_path / "m.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    dataset = build_dataset(tmp_path / "m.json")
    release = threading.Event()
    real = quality_data.duplicates_page

    def held(*args, **kwargs):
        release.wait(60)  # the search "runs" until the test lets it end
        return real(*args, **kwargs)

    monkeypatch.setattr(quality_data, "duplicates_page", held)  # the search the page starts (duplicate_groups_found)
    layout = duplicates.layout(dataset, "/duplicates", {"kind": "near"})
    ids = {getattr(c, "id", None) for c in _components(layout)}
    assert "dup-running" in ids and duplicates.TABLE not in ids
    assert [c for c in _components(layout) if getattr(c, "id", None) == duplicates.POLL][0].disabled is False
    release.set()
    content, final = duplicates.groups_state(dataset, "near", 0, wait_s=60)
    assert final and duplicates.TABLE in {getattr(c, "id", None) for c in _components(content)}
