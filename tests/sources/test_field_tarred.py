"""What a user of a NeMo tarred dataset reads on the Problems page when lines or shards are wrong:
real shards written as NeMo writes them (tests.sources.tar_kit), real manifests read by sde."""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from sde.manifest import read_manifest
from sde.sources.members import TarShards, check_tar_members
from tests.sources.tar_kit import make_tarred


@pytest.fixture()
def tarred(tmp_path):
    return make_tarred(tmp_path)


def _problems(tarred, extra_lines: list[dict]) -> list[tuple[int, str]]:
    with tarred.manifest.open("a") as f:
        f.writelines(json.dumps(line) + "\n" for line in extra_lines)
    table = read_manifest(tarred.manifest).table
    tars = [str(tarred.folder / f"audio_{k}.tar") for k in range(2)]
    check = check_tar_members(table, TarShards(tars, tarred.folder / "index"), manifest="m.json")
    return [(line, message) for _, line, message in check.problems]


def test_a_whole_shard_id_is_shown_as_written_when_another_line_lacks_one(tarred):
    """A line without shard_id turns the column into floats: the message must still name 7, not 7.0."""
    problems = _problems(tarred, [{"audio_filepath": "x.wav", "duration": 1.0, "text": "a", "shard_id": 7},
                                  {"audio_filepath": "x.wav", "duration": 1.0, "text": "b"}])
    first = len(tarred.lines) + 1
    assert problems[0][0] == first and problems[0][1].startswith("shard_id 7 is not one of 0..1")
    assert problems[1][0] == first + 1 and 'missing field "shard_id"' in problems[1][1]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_shard_names_the_damage_and_the_fix_once(tarred, damage):
    tar = tarred.folder / "audio_1.tar"
    with tarfile.open(tar) as t:
        second = t.getmembers()[1]
    if damage == "truncated":
        os.truncate(tar, second.offset_data + 100)
    else:
        with tar.open("r+b") as f:
            f.seek(second.offset)
            f.write(b"\xde\xad" * 256)
    problems = _problems(tarred, [])
    lost = [message for _, message in problems]
    assert len(lost) == 2  # the second and third members of shard 1
    for message in lost:
        assert "not among the 1 members before the tar's damage" in message and damage[:7] in message
        assert message.count(" or re-c") == 1 and message.count(str(tar)) == 1, message


def test_a_tarred_manifest_served_without_its_tars_says_how_to_give_them(tarred):
    """Every member's name resolved as a file is missing: the note named no cause."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(tarred.manifest), "--no-cache"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "its lines name tar shards (shard_id 0..1)" in run.stderr and "--tarred-audio 'audio_{0..1}.tar'" in run.stderr
