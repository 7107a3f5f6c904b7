"""A sharded dataset (`m__OP_0..2_CL_.json`) exported to a shard pattern (`-o kept__OP_0..2_CL_.json`)
gets one output shard per manifest shard, as NeMo's `shard_manifests` reads them beside the same
tars: shard i holds the kept lines of manifest i, byte for byte; a shard left empty is still
written; a pattern naming another number of files is refused before anything is written, instead
of one file named after the pattern."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sde.dataset import build_dataset
from sde.export import ExportError, plan_export, write_export

REPO = Path(__file__).resolve().parents[1]


def shard_lines(shard: int) -> list[str]:
    return [json.dumps({"audio_filepath": f"s{shard}_{i}.wav", "duration": 1.0 + i + shard, "text": f"words {i}",
                        "shard_id": shard}) + "\n" for i in range(3)]


@pytest.fixture
def shards(tmp_path) -> Path:
    for shard in range(3):
        (tmp_path / f"m_{shard}.json").write_text("".join(shard_lines(shard)))
    return tmp_path


def test_a_shard_pattern_gets_one_output_per_manifest_shard(shards):
    env = {**os.environ, "PYTHONPATH": str(REPO), "SDE_CACHE_DIR": str(shards / "cache")}
    # shard 2 has durations 3, 4, 5: all dropped, its output is written empty
    done = subprocess.run([sys.executable, "-m", "sde.cli", "export", "m__OP_0..2_CL_.json", "--filter",
                           "{duration} < 3", "-o", "kept__OP_0..2_CL_.json", "--rejected", "dropped_{0..2}.json"],
                          cwd=shards, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (shards / "kept_0.json").read_text() == "".join(shard_lines(0)[:2])
    assert (shards / "kept_1.json").read_text() == shard_lines(1)[0]
    assert (shards / "kept_2.json").read_text() == ""
    assert [(shards / f"dropped_{i}.json").read_text() for i in range(3)] == \
        [shard_lines(0)[2], "".join(shard_lines(1)[1:]), "".join(shard_lines(2))]
    assert not (shards / "kept__OP_0..2_CL_.json").exists()
    log = json.loads((shards / "kept__OP_0..2_CL_.json.changelog.json").read_text())
    assert log["outputs"]["shards"]["kept"] == [f"kept_{i}.json" for i in range(3)]
    assert log["counts"]["kept"] == 3


def test_sorted_lines_stay_in_their_shard(shards):
    dataset = build_dataset(str(shards / "m__OP_0..2_CL_.json"))
    write_export(dataset, plan_export(dataset, sort="-duration"), shards / "k_{0..2}.json")
    for shard in range(3):
        assert (shards / f"k_{shard}.json").read_text() == "".join(reversed(shard_lines(shard)))


@pytest.mark.parametrize("pattern", ["k__OP_0..1_CL_.json", "k_{0..3}.json", "k_{0,0,1}.json"])
def test_a_pattern_of_another_number_of_files_is_refused_before_writing(shards, pattern):
    dataset = build_dataset(str(shards / "m__OP_0..2_CL_.json"))
    with pytest.raises(ExportError) as e:
        write_export(dataset, plan_export(dataset), shards / pattern)
    assert str(e.value).startswith(f"-o {shards / pattern}")
    assert sorted(p.name for p in shards.iterdir()) == ["m_0.json", "m_1.json", "m_2.json"]


# (behaviour, what shard 1 of four holds)
EMPTY_SHARDS = [
    ("an empty manifest shard", ""),
    ("a manifest shard of blank lines", "\n\n"),
    ("a manifest shard whose lines are all bad", "not json\n{\"text\": \"no audio\"}\n"),
]


@pytest.mark.parametrize("behaviour, middle", EMPTY_SHARDS, ids=[e[0] for e in EMPTY_SHARDS])
def test_a_manifest_shard_without_valid_lines_keeps_its_place(tmp_path, behaviour, middle):
    for shard in (0, 2, 3):
        (tmp_path / f"m_{shard}.json").write_text("".join(shard_lines(shard)))
    (tmp_path / "m_1.json").write_text(middle)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SDE_CACHE_DIR": str(tmp_path / "cache")}

    def export(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sde.cli", "export", "m__OP_0..3_CL_.json", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    done = export("--filter", "{duration} < 4", "-o", "kept__OP_0..3_CL_.json", "--rejected", "dropped_{0..3}.json")
    assert done.returncode == 0, done.stderr
    # shard i of the output pairs with shard i of the manifest (and its tar): none moves up a place
    assert [(tmp_path / f"kept_{i}.json").read_text() for i in range(4)] == \
        ["".join(shard_lines(0)), "", "".join(shard_lines(2)[:1]), ""]
    assert [(tmp_path / f"dropped_{i}.json").read_text() for i in range(4)] == \
        ["", "", "".join(shard_lines(2)[1:]), "".join(shard_lines(3))]
    refused = export("-o", "k__OP_0..2_CL_.json")
    assert refused.returncode != 0 and "names 3 files" in refused.stderr and "has 4 manifest files" in refused.stderr
    assert not list(tmp_path.glob("k_*.json"))
