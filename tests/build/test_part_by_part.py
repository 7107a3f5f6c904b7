"""A manifest built part by part (sde.build) is the dataset a one-piece build gives, and an
interrupted build resumes with the parts it finished."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from sde.build import load as build_load
from sde.build import parts as build_parts
from sde.build.load import load_dataset
from sde.build.stream import build_in_parts
from sde.cache import HOST_TAG
from sde.dataset import DatasetOptions, build_dataset
from sde.manifest import ManifestError
from tests.build.build_kit import (PART, assert_same_dataset as _assert_same, valid_rows, write_mixed_manifest,
                                  write_predictions)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_mixed_manifest(tmp_path_factory.mktemp("parts"))


OPTIONS = {
    "defaults": DatasetOptions(),
    "vocabulary and alphabet": DatasetOptions(vocab="VOCAB", alphabet="abcdefghijklmnopqrstuvwxyz '"),
    "one hypothesis asked for": DatasetOptions(pred_fields=("pred_text_b=b",)),
    "normalised scores": DatasetOptions(normalize=("lower", "punct", "numbers")),
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_parts_join_into_the_one_piece_dataset(manifest, tmp_path, options):
    if options.vocab:
        options = DatasetOptions(vocab=str(manifest.with_name("vocab.txt")), alphabet=options.alphabet)
    messages = []
    built = load_dataset(str(manifest), options, cache_dir=tmp_path / "cache", part_bytes=PART, threads=2,
                         status=messages.append)
    assert any(m.startswith("building ") and " parts " in m for m in messages), messages
    _assert_same(built, build_dataset(str(manifest), options))
    # and read back from the cache, it is still the same
    again = load_dataset(str(manifest), options, cache_dir=tmp_path / "cache", part_bytes=PART, status=messages.append)
    assert messages[-1] == "loaded from cache"
    _assert_same(again, build_dataset(str(manifest), options))


@pytest.mark.parametrize("memory, limit", [
    (0, 0),                                     # no memory: every manifest bigger than a part is cut
    (build_parts.ONE_PIECE_BASE_MEMORY, 0),     # the process's own and nothing more
    (build_parts.ONE_PIECE_BASE_MEMORY + 4 * (100 << 20), 100 << 20),
    (1 << 40, build_parts.ONE_PIECE_BYTES),     # plenty: the cap
])
def test_the_biggest_manifest_built_in_one_piece_is_the_one_whose_build_fits_the_memory(memory, limit):
    assert build_parts.one_piece_limit(memory) == limit
    if limit:
        assert build_parts.one_piece_memory(limit) <= memory


def _built_in_parts(manifest, tmp_path, **kwargs) -> bool:
    messages: list[str] = []
    built = load_dataset(str(manifest), DatasetOptions(), cache_dir=tmp_path / "cache", threads=2,
                         status=messages.append, **kwargs)
    _assert_same(built, build_dataset(str(manifest), DatasetOptions()))
    return any(m.startswith("building ") and " parts " in m for m in messages)


@pytest.mark.parametrize("case, kwargs, in_parts", [
    ("a manifest within the one-piece size", {}, False),
    ("a memory limit below what a one-piece build takes", {"memory_limit": "300MB"}, True),
    ("a memory limit it fits", {"memory_limit": "8GB"}, False),
    ("a part size given", {"part_bytes": PART}, True),
    ("the Ray engine", {"engine": "ray"}, True),
])
def test_a_single_manifest_bigger_than_a_part_is_built_in_one_piece_where_its_build_fits(
        monkeypatch, manifest, tmp_path, case, kwargs, in_parts):
    if kwargs.get("engine") == "ray":  # the choice only: the Ray build itself is tested in test_ray_index
        monkeypatch.setattr(build_load, "_build_in_parts", _refuse_ray_build)
    monkeypatch.setattr(build_load, "PART_BYTES", PART)
    monkeypatch.setattr(build_parts, "ONE_PIECE_BYTES", 1 << 20)
    assert manifest.stat().st_size > PART
    if kwargs.get("engine") == "ray":
        with pytest.raises(_RayChosen):
            load_dataset(str(manifest), DatasetOptions(), cache_dir=tmp_path / "cache", **kwargs)
        return
    assert _built_in_parts(manifest, tmp_path, **kwargs) is in_parts


class _RayChosen(Exception):
    pass


def _refuse_ray_build(*args, **kwargs):
    raise _RayChosen


def test_a_manifest_bigger_than_the_one_piece_size_is_built_in_parts(monkeypatch, manifest, tmp_path):
    monkeypatch.setattr(build_load, "PART_BYTES", PART)
    monkeypatch.setattr(build_parts, "ONE_PIECE_BYTES", manifest.stat().st_size - 1)
    assert _built_in_parts(manifest, tmp_path)


def test_a_manifest_with_a_predictions_file_bigger_than_a_part_is_built_in_parts(monkeypatch, manifest, tmp_path):
    monkeypatch.setattr(build_load, "PART_BYTES", PART)
    monkeypatch.setattr(build_parts, "ONE_PIECE_BYTES", 1 << 20)
    preds = write_predictions(tmp_path, valid_rows(manifest))
    messages: list[str] = []
    load_dataset(str(manifest), DatasetOptions(predictions=str(preds)), cache_dir=tmp_path / "cache", threads=2,
                 status=messages.append)
    assert any(m.startswith("building ") and " parts " in m for m in messages), messages


def test_a_set_of_manifests_bigger_than_a_part_is_built_in_parts(monkeypatch, manifest, tmp_path):
    monkeypatch.setattr(build_load, "PART_BYTES", PART)
    monkeypatch.setattr(build_parts, "ONE_PIECE_BYTES", 1 << 20)
    lines = manifest.read_text().splitlines(keepends=True)
    shards = []
    for k in range(2):
        shards.append(tmp_path / f"shard{k}.json")
        shards[-1].write_text("".join(lines[k::2]))
    messages: list[str] = []
    load_dataset([str(s) for s in shards], DatasetOptions(), cache_dir=tmp_path / "cache", threads=2,
                 status=messages.append)
    assert any(m.startswith("building ") and " parts " in m for m in messages), messages


def _mapped_from(folder) -> list[tuple[int, int]]:
    """The address ranges of this process' memory mapped from files under ``folder`` (Linux)."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith(str(folder)):
                low, high = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((low, high))
    return ranges


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux's /proc/self/maps")
@pytest.mark.parametrize("part_bytes", [PART, 1 << 40], ids=["built part by part", "built in one piece"])
def test_a_datasets_numbers_are_read_from_the_cache_files_in_place_not_copied(manifest, tmp_path, part_bytes):
    # pandas copies a column whole at every start where it is chunked (the parts' rows appended to
    # one file) or has a validity bitmap (a float column with missing values): ~0.4 s and ~0.2 GB
    # for two hypotheses' errors at 10M utterances, 80 MB a column of scores
    load_dataset(str(manifest), cache_dir=tmp_path / "cache", part_bytes=part_bytes, threads=2)
    dataset = load_dataset(str(manifest), cache_dir=tmp_path / "cache", part_bytes=part_bytes, threads=2)
    mapped = _mapped_from(tmp_path / "cache")
    frames = {"utterances": dataset.utterances, "vocabulary": dataset.vocabulary,
              **{f"errors of {field}": errors for field, errors in dataset.errors.items()}}
    assert len(frames) == 6 and dataset.utterances["wer_b"].isna().any()  # lines without pred_text_b
    read = []
    for name, frame in frames.items():
        for column in frame.columns:
            dtype = frame[column].dtype
            if isinstance(dtype, pd.CategoricalDtype):
                values = frame[column].array.codes
            elif isinstance(dtype, np.dtype) and dtype.kind in "iuf":
                values = frame[column].to_numpy(copy=False)
            else:
                continue  # text: compressed columns, read by batch
            assert any(low <= values.ctypes.data < high for low, high in mapped), (name, column, dtype)
            read.append(column)
    assert {"utt", "op", "wer", "sub", "wer_b", "duration", "count", "accuracy"} <= set(read)


def test_without_a_cache_the_parts_are_served_from_a_private_folder(manifest):
    built = load_dataset(str(manifest), use_cache=False, part_bytes=PART, threads=2)
    _assert_same(built, build_dataset(str(manifest)))


def test_strict_stops_at_the_first_bad_line_of_the_file(manifest, tmp_path):
    with pytest.raises(ManifestError) as one_piece:
        build_dataset(str(manifest), DatasetOptions(strict=True))
    with pytest.raises(ManifestError) as in_parts:
        load_dataset(str(manifest), DatasetOptions(strict=True), cache_dir=tmp_path, part_bytes=PART, threads=2)
    assert str(in_parts.value) == str(one_piece.value)
    assert ":14: invalid JSON" in str(in_parts.value)  # i = 13, in the first part


def _gone_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_an_interrupted_build_builds_only_the_parts_it_had_not_finished(manifest, tmp_path):
    folder = tmp_path / "build"
    build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=1)
    infos = sorted(folder.glob("part-*.info"))
    assert len(infos) > 10
    # as if killed while building parts 3 and 5: their info (written last) is missing
    for lost in (infos[3], infos[5]):
        lost.unlink()
    # the leftover of a worker killed mid-part (its process is gone)
    (folder / f".tmp-{HOST_TAG}-{_gone_pid()}-abc.arrow").write_bytes(b"half a part")
    before = {p.name: p.stat().st_mtime_ns for p in infos if p.exists()}
    messages = []
    build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=1, say=messages.append)
    assert f"resuming an interrupted build: {len(infos) - 2} of {len(infos)} parts are done" in messages
    assert any(m.startswith("building 2 parts") for m in messages), messages
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*.info")}
    assert {name for name in after if after[name] != before.get(name)} == {infos[3].name, infos[5].name}
    assert not list(folder.glob(".tmp-*"))


def test_parts_of_another_cut_are_not_reused(manifest, tmp_path):
    folder = tmp_path / "build"
    build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=1)
    messages = []
    joined = build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART * 2, threads=1,
                            say=messages.append)
    assert not any(m.startswith("resuming") for m in messages)
    assert joined.total_lines == 600


def test_a_part_info_of_another_sde_version_is_built_again(manifest, tmp_path):
    import pickle

    from sde.build.part_files import info_file

    folder = tmp_path / "build"
    build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=1)
    old = pickle.loads(info_file(folder, 2).read_bytes())
    del old.__dict__["normalized_sums"]  # as a version before that field wrote it
    info_file(folder, 2).write_bytes(pickle.dumps(old))
    messages = []
    joined = build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=1,
                            say=messages.append)
    parts = len(list(folder.glob("part-*.info")))
    assert f"resuming an interrupted build: {parts - 1} of {parts} parts are done" in messages
    assert joined.total_lines == 600
