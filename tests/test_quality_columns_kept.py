"""The data-quality columns derived from a build are kept beside it as a file and held memory-mapped
(sde.quality.apply._kept_or_computed, sde.cache.kept.KeptWithBuild.keep_columns,
sde.cache.mapped_frames): a later start reads them instead of computing them (minutes at 10M
utterances), and a server holds them as pages of a file, not as its own memory."""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pandas as pd
import pytest

from sde.build.load import load_dataset
from sde.cache import DatasetCache, fingerprint
from sde.cache.mapped_frames import UnmappableFrame, mapped_frame, write_frame
from sde.dataset import DatasetOptions
from sde.query import TableQuery
from tests.mount_kit import read_only_view
from sde.quality import apply

ROWS = [
    {"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 5, "text": f"word{i % 4} common words here" * (1 + i % 2),
     "pred_text": f"word{i % 4} common word here", "pred_text_b": "the the the the" if i % 7 == 0 else f"word{i}",
     "speaker": f"s{i % 3}"}
    for i in range(40)
]
KINDS = ("suspicious", "duplicates")


@pytest.fixture
def built(write_manifest, tmp_path):
    """(manifest, cache folder, a function that starts on the build as a server does)."""
    manifest = write_manifest(ROWS)
    folder = tmp_path / "cache"
    load_dataset(manifest, cache_dir=folder)
    return manifest, folder, lambda: load_dataset(manifest, cache_dir=folder)


def _refuse_computing(monkeypatch) -> None:
    def refuse(dataset, kind):
        raise AssertionError(f"the {kind} columns were computed again")

    monkeypatch.setattr(apply, "_compute", refuse)


def _column_files(manifest, folder) -> list[str]:
    key = fingerprint(manifest, DatasetOptions())
    cache = DatasetCache(folder)
    try:
        return [str(cache._store.get(k, read=True).name) for k in cache._store.iterkeys()
                if isinstance(k, tuple) and k[:2] == ("columns", key)]
    finally:
        cache.close()


def _mapped_from(frame: pd.DataFrame, files: list[str]) -> bool:
    """Whether every column of ``frame`` is a read-only view of a mapping of one of ``files`` (as
    /proc/self/maps lists them), not memory of its own."""
    wanted = {os.path.realpath(f) for f in files}
    spans = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and os.path.realpath(fields[5].strip()) in wanted:
                low, high = (int(x, 16) for x in fields[0].split("-"))
                spans.append((low, high))
    for name in frame.columns:
        values = frame[name].array
        data = values._data if hasattr(values, "_mask") else np.asarray(values)
        address = data.__array_interface__["data"][0]
        if not any(low <= address < high for low, high in spans):
            return False
    return True


@pytest.mark.parametrize("kind", KINDS)
def test_columns_are_kept_with_the_build_and_read_back_mapped(built, monkeypatch, kind):
    manifest, folder, start = built
    first = apply.quality_frame(start(), kind)
    fresh = apply._compute(load_dataset(manifest, use_cache=False), kind)
    pd.testing.assert_frame_equal(first, fresh)
    files = _column_files(manifest, folder)
    assert len(files) == 1 and _mapped_from(first, files)

    _refuse_computing(monkeypatch)
    again = apply.quality_frame(start(), kind)  # a later start
    pd.testing.assert_frame_equal(again, fresh)
    assert _mapped_from(again, files)


def test_columns_added_to_the_table_stay_mapped_and_filter_as_computed(built, monkeypatch):
    manifest, _, start = built
    apply.quality_frame(start(), "suspicious")
    _refuse_computing(monkeypatch)
    dataset = start()
    apply.ensure_quality_columns(dataset, ["suspicious"])
    table = dataset.utterances
    assert _mapped_from(apply.quality_frame(dataset, "suspicious"), _column_files(manifest, folder=built[1]))
    monkeypatch.undo()
    plain = load_dataset(manifest, use_cache=False)
    apply.ensure_quality_columns(plain, ["suspicious"])
    for query in ("{word_rate_z} > 0", "{hyp_repeated_ngram_b} >= 3", "{empty_reference} = false"):
        assert TableQuery(table).select(query).tolist() == TableQuery(plain.utterances).select(query).tolist(), query


def test_a_kind_kept_is_read_back_after_another_kind_was_added_to_the_table(built, monkeypatch):
    manifest, folder, start = built
    first = start()
    for kind in KINDS:
        apply.quality_frame(first, kind)
    _refuse_computing(monkeypatch)
    dataset = start()
    apply.ensure_quality_columns(dataset, ["suspicious"])  # a new generation of the tables
    apply.ensure_quality_columns(dataset, ["duplicates"])
    assert all(c in dataset.utterances.columns for kind in KINDS for c in apply.kind_columns(dataset, kind))


@pytest.mark.parametrize("later", [False, True], ids=["audio checked before serving", "audio checked while serving"])
def test_kept_columns_are_read_back_after_the_servers_audio_presence_check(built, monkeypatch, later):
    """The server checks the audio files at each start (sde.cli.load: a copy of the dataset with
    `audio_exists`, or that swapped in while serving): the columns kept do not read it."""
    from sde import cli

    manifest, folder, start = built
    kept = apply.quality_frame(start(), "suspicious")
    _refuse_computing(monkeypatch)
    monkeypatch.setattr(cli, "PRESENCE_BEFORE_START_ROWS", 0 if later else 10**6)
    dataset = cli.load(str(manifest), DatasetOptions(), str(folder), no_cache=False, quiet=True,
                       check_audio_later=later)
    deadline = time.monotonic() + 60
    while "audio_exists" not in dataset.utterances.columns and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dataset.utterances["audio_exists"].eq(False).all()  # the files are not there
    pd.testing.assert_frame_equal(apply.quality_frame(dataset, "suspicious"), kept)


def test_a_dataset_outside_the_cache_computes_its_columns_in_memory(write_manifest):
    dataset = load_dataset(write_manifest(ROWS), use_cache=False)
    assert dataset.caches.columns_keeper(dataset.generation) is None
    pd.testing.assert_frame_equal(apply.quality_frame(dataset, "suspicious"), apply._compute(dataset, "suspicious"))


def test_a_new_build_under_the_same_key_drops_the_columns_of_the_old_one(built):
    manifest, folder, start = built
    before = apply.quality_frame(start(), "duplicates")["dup_text_group"].copy()
    old = _column_files(manifest, folder)
    assert len(old) == 1
    # an edit that keeps the file's size and modification time: built again under the same key
    stat = os.stat(manifest)
    text = manifest.read_text()
    manifest.write_text(text.replace("word0 common words here", "word9 common words here", 1))
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    dataset = start()
    assert _column_files(manifest, folder) == [] and not os.path.exists(old[0])
    groups = apply.quality_frame(dataset, "duplicates")
    pd.testing.assert_frame_equal(groups, apply._compute(load_dataset(manifest, use_cache=False), "duplicates"))
    assert not groups["dup_text_group"].equals(before)  # line 0 left its group


def test_the_kept_columns_count_toward_the_cache_size(built):
    manifest, folder, start = built
    key = fingerprint(manifest, DatasetOptions())
    before = {h.key: h.size for h in DatasetCache(folder)._datasets()}[key]
    apply.quality_frame(start(), "suspicious")
    (file,) = _column_files(manifest, folder)
    after = {h.key: h.size for h in DatasetCache(folder)._datasets()}[key]
    assert after - before == os.path.getsize(file)


def test_a_read_only_cache_reads_kept_columns_and_keeps_none(built, tmp_path):
    manifest, folder, start = built
    apply.quality_frame(start(), "suspicious")
    listing = sorted(p.name for p in folder.rglob("*"))
    with read_only_view(folder, tmp_path / "read-only") as view:
        dataset = load_dataset(manifest, cache_dir=view)
        frame = apply.quality_frame(dataset, "suspicious")
        assert _mapped_from(frame, _column_files(manifest, view))
        duplicates = apply.quality_frame(dataset, "duplicates")  # computed, kept nowhere
        pd.testing.assert_frame_equal(duplicates, apply._compute(dataset, "duplicates"))
        del dataset, frame, duplicates
        gc.collect()  # its files unmapped: the view can be unmounted
    assert sorted(p.name for p in folder.rglob("*")) == listing


# ------------------------------------------------------------------------------ the file format

FRAMES = {
    "numbers": pd.DataFrame({"i": np.array([3, -1, 7], np.int32), "f": [0.5, np.nan, -2.0], "u": np.array([1, 2, 3], np.uint8)}),
    "booleans": pd.DataFrame({"b": [True, False, True]}),
    "missing numbers": pd.DataFrame({"g": pd.array([1, None, 5], dtype="Int64")}),
    "missing booleans": pd.DataFrame({"b": pd.array([None, True, False], dtype="boolean")}),
    "no rows": pd.DataFrame({"i": np.array([], np.int64), "g": pd.array([], dtype="Int64")}),
}


@pytest.mark.parametrize("frame", FRAMES.values(), ids=FRAMES.keys())
def test_a_frame_reads_back_equal_from_its_file(tmp_path, frame):
    path = str(tmp_path / "f.arrow")
    write_frame(path, frame)
    pd.testing.assert_frame_equal(mapped_frame(path, frame.index), frame)


@pytest.mark.parametrize("column", [pd.array(["a", "b"], dtype="string"), np.array(["a", None], dtype=object)],
                         ids=["text", "objects"])
def test_a_frame_with_text_is_refused(tmp_path, column):
    with pytest.raises(UnmappableFrame, match="column 'c'"):
        write_frame(str(tmp_path / "f.arrow"), pd.DataFrame({"c": column}))


def test_a_file_of_another_length_is_refused(tmp_path):
    path = str(tmp_path / "f.arrow")
    write_frame(path, FRAMES["numbers"])
    with pytest.raises(ValueError, match="holds 3 rows, not 4"):
        mapped_frame(path, pd.RangeIndex(4))


# ------------------------------------------------------------------------------ swaps meanwhile

def test_columns_added_while_the_audio_is_checked_keep_the_checks_column(built, monkeypatch):
    """The server checks the audio while serving, and a filter naming a quality column adds them
    meanwhile: each swap is made on the tables the other left (the columns' swap, made on the
    tables from before the check, dropped `audio_exists`)."""
    import threading

    from sde import audio_presence, cli

    manifest, folder, _ = built
    presence_go, compute_go = threading.Event(), threading.Event()
    real_check, real_compute = audio_presence._check, apply._compute

    def held_check(*args, **kwargs):
        presence_go.wait(30)
        return real_check(*args, **kwargs)

    def held_compute(dataset, kind):
        compute_go.wait(30)
        return real_compute(dataset, kind)

    monkeypatch.setattr(audio_presence, "_check", held_check)
    monkeypatch.setattr(apply, "_compute", held_compute)
    monkeypatch.setattr(cli, "PRESENCE_BEFORE_START_ROWS", 0)
    dataset = cli.load(str(manifest), DatasetOptions(), str(folder), no_cache=False, quiet=True, check_audio_later=True)
    adding = threading.Thread(target=apply.ensure_quality_columns, args=(dataset, ["suspicious"]))
    adding.start()
    presence_go.set()  # the check's swap, while the columns are computed
    deadline = time.monotonic() + 30
    while "audio_exists" not in dataset.utterances.columns and time.monotonic() < deadline:
        time.sleep(0.01)
    compute_go.set()
    adding.join(60)
    assert {"audio_exists", "char_rate_z"} <= set(dataset.utterances.columns)


def test_a_first_start_checking_the_audio_before_serving_keeps_the_columns_with_its_new_build(write_manifest,
                                                                                           tmp_path, monkeypatch):
    """Up to PRESENCE_BEFORE_START_ROWS utterances the server serves a copy with `audio_exists`,
    made while its new build is written beside (background_write, as the server does): what it
    computes is kept with that build all the same."""
    import threading

    from sde import cli

    manifest, folder = write_manifest(ROWS), str(tmp_path / "cache")
    first = cli.load(str(manifest), DatasetOptions(), folder, no_cache=False, quiet=True, background_write=True)
    assert "audio_exists" in first.utterances.columns
    for thread in [t for t in threading.enumerate() if t.name == "sde-cache-write"]:
        thread.join(60)  # the build stored (the copy was made before)
    computed = apply.quality_frame(first, "suspicious")
    _refuse_computing(monkeypatch)
    again = cli.load(str(manifest), DatasetOptions(), folder, no_cache=False, quiet=True)
    pd.testing.assert_frame_equal(apply.quality_frame(again, "suspicious"), computed)


def test_a_kind_computed_is_not_computed_again_after_another_kind_is_added_without_a_cache(write_manifest,
                                                                                        monkeypatch):
    dataset = load_dataset(write_manifest(ROWS), use_cache=False)
    groups = apply.quality_frame(dataset, "duplicates")
    apply.ensure_quality_columns(dataset, ["suspicious"])  # a new generation of the tables
    _refuse_computing(monkeypatch)
    pd.testing.assert_frame_equal(apply.quality_frame(dataset, "duplicates"), groups)
    apply.ensure_quality_columns(dataset, ["duplicates"])
    assert "dup_text_group" in dataset.utterances.columns
