"""A manifest built part by part (sde.build) is the dataset a one-piece build gives, and an
interrupted build resumes with the parts it finished."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from sde.build.load import load_dataset
from sde.build.stream import build_in_parts
from sde.cache import HOST_TAG
from sde.dataset import DatasetOptions, build_dataset
from sde.manifest import ManifestError
from tests.build.build_kit import PART, assert_same_dataset as _assert_same, write_mixed_manifest


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
    assert len(frames) == 4 and dataset.utterances["wer_b"].isna().any()  # lines without pred_text_b
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
