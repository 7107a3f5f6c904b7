"""A set of manifests (NeMo shards, a list, a glob) built part by part: consecutive small shards
grouped into one part, a big shard cut in lines, and the result the one-piece read gives (ids,
`source` names, problems per file and line, a missing shard as one problem)."""

from __future__ import annotations

import pytest

from sde.build.load import load_dataset
from sde.build.parts import split_parts
from sde.dataset import DatasetOptions, build_dataset
from sde.sources import as_source_set
from tests.build.build_kit import PART, assert_same_dataset, write_mixed_manifest

# Lines per shard of the mixed manifest: a big first shard (cut in lines), then small ones
# (grouped), one empty; 9 shards named by a NeMo pattern of 10 (shard 7 is missing).
SHARD_LINES = [260, 12, 10, 0, 45, 8, 6, None, 259]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    lines = write_mixed_manifest(folder).read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "m.json").unlink()
    start = 0
    for k, count in enumerate(SHARD_LINES):
        if count is None:
            continue
        (folder / f"manifest_{k}.json").write_text("".join(lines[start:start + count]), encoding="utf-8")
        start += count
    return folder


def test_small_shards_share_a_part_and_a_big_one_is_cut_in_lines(shards):
    parts = split_parts(as_source_set(str(shards / "manifest__OP_0..8_CL_.json")), PART)
    assert all(p.manifest.part_of_set for p in parts)
    cut = [p for p in parts if p.lines is not None]
    big = {str(f) for f in shards.glob("manifest_*.json") if f.stat().st_size > PART}
    assert {p.files[0] for p in cut} == big and len(cut) > len(big)
    grouped = [p.files for p in parts if p.lines is None]
    assert [str(shards / f"manifest_{k}.json") for k in (1, 2, 3)] in grouped
    assert list(dict.fromkeys(f for p in parts for f in p.files)) == \
        [str(shards / f"manifest_{k}.json") for k in range(9)]  # every shard, in order, once


@pytest.mark.parametrize("options", [DatasetOptions(), DatasetOptions(pred_fields=("pred_text", "pred_text_b=B")),
                                     DatasetOptions(normalize=("lower", "punct"))],
                         ids=["every hypothesis", "--pred-field", "--normalize"])
def test_shards_built_in_parts_are_the_one_piece_dataset(shards, tmp_path, options):
    pattern = str(shards / "manifest__OP_0..8_CL_.json")
    built = load_dataset(pattern, options, cache_dir=tmp_path / "cache", part_bytes=PART)
    expected = build_dataset(pattern, options)
    assert_same_dataset(built, expected)
    assert built.utterances["source"].iloc[0] == "manifest_0.json"
    assert any(p.path == "manifest_7.json" and p.line == 0 for p in built.problems)  # the missing shard
    assert (tmp_path / "cache" / "builds").exists()  # it was built in parts (and resumable)


def test_manifests_of_two_folders_keep_their_names_and_audio_folders(shards, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files = []
    for k in (0, 1, 2, 4, 5, 6, 8):
        target = tmp_path / ("a" if k % 2 else "b") / f"m_{k}.json"
        target.write_bytes((shards / f"manifest_{k}.json").read_bytes())
        files.append(str(target))
    built = load_dataset(files, cache_dir=tmp_path / "cache", part_bytes=PART)
    expected = build_dataset(files)
    assert_same_dataset(built, expected)
    assert set(built.utterances["source"]) == {"a/m_1.json", "a/m_5.json", "b/m_0.json", "b/m_2.json",
                                               "b/m_4.json", "b/m_6.json", "b/m_8.json"}
    row = built.utterances.iloc[-1]
    assert row["audio_path"].startswith(str(tmp_path / "b" / "audio") + "/")
