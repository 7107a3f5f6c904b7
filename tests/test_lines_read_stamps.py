"""The manifest lines behind rows are read back only from the files as sde read them: an edit made
after the dataset was loaded, even before anything was read back, is refused (409), never the
wrong lines sent with a 200."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sde.build.load import load_dataset
from sde.export import utterances_jsonl_route


def _write(path: Path) -> None:
    path.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"line {i}",
                                        "speaker": f"spk_{i % 3}"}) + "\n" for i in range(9)))


def _same_size_edit(path: Path) -> None:
    text = path.read_text().replace("spk_2", "spk_9")
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a coarse clock: still a new time


def _line_inserted(path: Path) -> None:
    path.write_text(json.dumps({"audio_filepath": "new.wav", "duration": 9.0, "text": "inserted"}) + "\n"
                    + path.read_text())


# (behaviour, the edit made after loading and before the first read back)
EDITS = [
    ("a same-size edit (a speaker renamed)", _same_size_edit),
    ("a line inserted at the top", _line_inserted),
    ("the file deleted", lambda p: p.unlink()),
]


@pytest.mark.parametrize("warm", [False, True], ids=["built", "read back from the cache"])
@pytest.mark.parametrize("behaviour, edit", EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_before_the_first_read_back_is_refused(tmp_path, behaviour, edit, warm):
    manifest = tmp_path / "m.json"
    _write(manifest)
    if warm:
        load_dataset(str(manifest), cache_dir=tmp_path / "cache")
    dataset = load_dataset(str(manifest), cache_dir=tmp_path / "cache")
    edit(manifest)
    status, payload = utterances_jsonl_route(dataset, {"filter": '{speaker} = "spk_2"'})
    assert status == 409, payload
    assert str(manifest) in payload["error"] and "load the dataset again" in payload["error"]


def test_the_download_route_refuses_it_too_and_serves_an_unedited_file(tmp_path):
    from sde.web.app import AppConfig, create_app

    manifest = tmp_path / "m.json"
    _write(manifest)
    dataset = load_dataset(str(manifest), cache_dir=tmp_path / "cache")
    client = create_app(dataset, AppConfig(title="t", audio_routes=False)).server.test_client()
    url = "/api/utterances.jsonl?filter=" + '{speaker} = "spk_2"'
    before = client.get(url)
    assert before.status_code == 200
    assert [json.loads(x)["text"] for x in before.get_data(as_text=True).splitlines()] == ["line 2", "line 5",
                                                                                          "line 8"]
    _same_size_edit(manifest)
    after = client.get(url)
    assert after.status_code == 409 and "changed after sde loaded it" in after.get_json()["error"]
