"""The dataset cache: hits, invalidation, corruption and unwritable folders."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde import cache
from sde.build.load import load_dataset
from sde.cache import DatasetCache, fingerprint
from sde.dataset import DatasetOptions

ROWS = [
    {"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": f"word{i} common words here",
     "pred_text": f"word{i} common word here", "speaker": f"s{i % 2}"}
    for i in range(20)
]


def _load(manifest, cache_dir, options=DatasetOptions()):
    events, warnings = [], []
    ds = load_dataset(manifest, options, cache_dir=cache_dir, status=events.append, warn=warnings.append)
    return ds, events, warnings


def test_second_load_is_a_hit_and_equal(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    cold, events1, _ = _load(manifest, tmp_path / "cache")
    warm, events2, warnings = _load(manifest, tmp_path / "cache")
    assert "loaded from cache" not in events1
    assert "loaded from cache" in events2
    assert warnings == []
    pd.testing.assert_frame_equal(cold.utterances, warm.utterances)
    pd.testing.assert_frame_equal(cold.vocabulary, warm.vocabulary)
    pd.testing.assert_frame_equal(cold.errors["pred_text"], warm.errors["pred_text"])
    assert cold.summary() == warm.summary()
    # The cache lives where it was asked to, never beside the manifest.
    assert sorted(p.name for p in manifest.parent.iterdir() if p.name != "cache") == ["manifest.json"]


def test_manifest_change_invalidates(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    _load(manifest, tmp_path / "cache")
    time.sleep(0.01)
    write_manifest(ROWS[:5])
    ds, events, _ = _load(manifest, tmp_path / "cache")
    assert "loaded from cache" not in events
    assert len(ds.utterances) == 5


def test_option_change_invalidates(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    assert fingerprint(manifest, DatasetOptions()) != fingerprint(manifest, DatasetOptions(normalize=("lower",)))
    _load(manifest, tmp_path / "cache")
    ds, events, _ = _load(manifest, tmp_path / "cache", DatasetOptions(normalize=("lower",)))
    assert "loaded from cache" not in events
    assert "wer_norm" in ds.utterances


def test_corrupt_entry_is_rebuilt_with_a_warning(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    cache_dir = tmp_path / "cache"
    cold, _, _ = _load(manifest, cache_dir)
    arrow_files = [p for p in cache_dir.rglob("*.val")]
    assert arrow_files, "tables are stored as files"
    for p in arrow_files:
        p.write_bytes(b"garbage")
    ds, events, warnings = _load(manifest, cache_dir)
    assert any("unreadable" in w and "rebuilding" in w for w in warnings)
    pd.testing.assert_frame_equal(cold.utterances, ds.utterances)
    # ... and the rebuilt entry is good again.
    _, events, warnings = _load(manifest, cache_dir)
    assert "loaded from cache" in events and warnings == []


def test_unwritable_cache_dir_runs_without_cache(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    ds, events, warnings = _load(manifest, blocker / "cache")
    assert len(ds.utterances) == 20
    assert any("without it" in w for w in warnings)


def test_cache_never_writes_partial_entries(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    cache = DatasetCache(tmp_path / "cache")
    key = fingerprint(manifest, DatasetOptions())
    assert cache.get(key) is None
    cache.close()
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_background_write_finishes_and_is_then_a_hit(write_manifest, tmp_path):
    import threading

    manifest = write_manifest(ROWS)
    ds = load_dataset(manifest, DatasetOptions(), cache_dir=tmp_path / "cache", background_write=True)
    for t in threading.enumerate():
        if t.name == "sde-cache-write":
            t.join(timeout=60)
    warm, events, warnings = _load(manifest, tmp_path / "cache")
    assert "loaded from cache" in events and warnings == []
    pd.testing.assert_frame_equal(ds.utterances, warm.utterances)


@pytest.mark.parametrize("built", ["part by part", "in one piece"])
def test_a_start_reads_its_summary_sums_kept_with_the_build(write_manifest, tmp_path, monkeypatch, built):
    from sde.dataset import Dataset

    manifest = write_manifest(ROWS)
    part_bytes = 512 if built == "part by part" else 2**30
    cold = load_dataset(manifest, cache_dir=tmp_path / "cache", part_bytes=part_bytes)
    expected = cold.summary()

    def no_sums(self):
        raise AssertionError("the summary's sums were computed again")

    monkeypatch.setattr(Dataset, "_sums", no_sums)
    events, warnings = [], []
    warm = load_dataset(manifest, cache_dir=tmp_path / "cache", part_bytes=part_bytes, status=events.append,
                        warn=warnings.append)
    assert "loaded from cache" in events and warnings == []
    assert warm.summary() == expected


def test_sums_that_cannot_be_computed_leave_the_entry_stored(write_manifest, tmp_path, monkeypatch):
    from sde.dataset import Dataset

    manifest = write_manifest(ROWS)
    monkeypatch.setattr(Dataset, "_sums", lambda self: 1 / 0)
    _, _, warnings = _load(manifest, tmp_path / "cache")
    monkeypatch.undo()
    warm, events, more = _load(manifest, tmp_path / "cache")
    assert warnings == more == [] and "loaded from cache" in events
    assert warm.summary()["utterances"] == len(ROWS)


def test_kept_sums_that_are_not_the_builds_are_computed_again_and_replaced(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    folder = tmp_path / "cache"
    cold, _, _ = _load(manifest, folder)
    key = fingerprint(manifest, DatasetOptions())
    c = DatasetCache(folder)
    c._store.set(("sums", key), {**cold.summary_sums(), "utterances": 3, "hours": 99.0})
    c.close()
    warm, _, warnings = _load(manifest, folder)
    assert warnings == [] and warm.summary() == cold.summary()
    c = DatasetCache(folder)
    assert c._store.get(("sums", key)) == cold.summary_sums()
    c.close()


# ------------------------------------------------------------------------------ size limit

def _held_bytes(folder: Path) -> dict[str, int]:
    """{dataset name: bytes on disk with its index files}, as the cache counts them."""
    c = DatasetCache(folder)
    try:
        return {held.label.removeprefix("build of "): held.size for held in c._datasets()}
    finally:
        c.close()


@pytest.mark.parametrize("built", ["part by part", "in one piece"])
def test_a_dataset_bigger_than_the_size_limit_is_kept_and_read_back(write_manifest, tmp_path, monkeypatch, built):
    # Before: diskcache evicted the dataset's own first tables as it stored the rest, and the build
    # ended in "cannot be read back" (any dataset over 20 GiB: ~60M utterances).
    monkeypatch.setenv("SDE_CACHE_SIZE", "1KB")
    manifest = write_manifest(ROWS)
    part_bytes = 512 if built == "part by part" else 2**30
    runs = []
    for _ in range(2):
        events, warnings = [], []
        ds = load_dataset(manifest, cache_dir=tmp_path / "cache", status=events.append, warn=warnings.append,
                          part_bytes=part_bytes)
        runs.append((ds, events, warnings))
    (cold, events1, warnings1), (warm, events2, warnings2) = runs
    assert warnings1 == warnings2 == []
    assert "loaded from cache" not in events1 and "loaded from cache" in events2
    pd.testing.assert_frame_equal(cold.utterances, warm.utterances, check_dtype=False)
    assert _held_bytes(tmp_path / "cache")["manifest.json"] > 1000


def _three_manifests(write_manifest) -> list[Path]:
    return [write_manifest(ROWS, name=f"{n}.json") for n in ("a", "b", "c")]


def _a_then_b_under_a_limit(write_manifest, folder: Path, monkeypatch, room: float) -> tuple[list[Path], int]:
    """Three manifests of one size; a built, the limit set to ``room`` times its size, b built;
    returns the manifests and that size."""
    manifests = _three_manifests(write_manifest)
    _load(manifests[0], folder)
    one = _held_bytes(folder)["a.json"]
    monkeypatch.setenv("SDE_CACHE_SIZE", f"{int(one * room)}B")
    _load(manifests[1], folder)
    return manifests, one


def test_older_builds_are_removed_least_recently_used_first(write_manifest, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    (a, b, c), _ = _a_then_b_under_a_limit(write_manifest, folder, monkeypatch, room=2.5)
    _, events, _ = _load(a, folder)  # a used after b
    assert "loaded from cache" in events
    _, _, warnings = _load(c, folder)
    assert len(warnings) == 1, warnings
    assert "removed the cached build of b.json" in warnings[0] and "SDE_CACHE_SIZE" in warnings[0]
    assert sorted(_held_bytes(folder)) == ["a.json", "c.json"]
    for kept in (a, c):
        _, events, warnings = _load(kept, folder)
        assert "loaded from cache" in events and warnings == []


def _index_files_of(folder: Path, manifest: Path, size: int) -> Path:
    """Index files of ~``size`` bytes written beside the dataset's table, as a server writes its
    search indexes (sde.index_files); returns that table's file."""
    from sde.index_files import files_beside, write_ranks

    column = _table_file(folder, fingerprint(manifest, DatasetOptions()), "utterances")
    write_ranks(str(column), pa.array(np.arange(size // 8, dtype=np.int64)))
    assert files_beside(str(column))
    return column


def test_index_files_count_toward_the_limit_and_go_with_their_dataset(write_manifest, tmp_path, monkeypatch):
    from sde.index_files import files_beside

    a, b, _ = _three_manifests(write_manifest)
    folder = tmp_path / "cache"
    _load(a, folder)
    one = _held_bytes(folder)["a.json"]
    # as big as 1.5 datasets: the two datasets alone would fit 2.2
    column = _index_files_of(folder, a, int(one * 1.5))
    assert _held_bytes(folder)["a.json"] > 2 * one
    monkeypatch.setenv("SDE_CACHE_SIZE", f"{int(one * 2.2)}B")
    _, _, warnings = _load(b, folder)
    assert len(warnings) == 1 and "removed the cached build of a.json" in warnings[0]
    assert not column.exists() and not files_beside(str(column))
    assert sorted(_held_bytes(folder)) == ["b.json"]


def test_a_dataset_grown_by_its_index_files_makes_room_when_next_loaded(write_manifest, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    (a, b, _), one = _a_then_b_under_a_limit(write_manifest, folder, monkeypatch, room=2.2)
    assert sorted(_held_bytes(folder)) == ["a.json", "b.json"]
    _index_files_of(folder, b, int(one * 1.5))
    _, events, warnings = _load(b, folder)
    assert "loaded from cache" in events
    assert len(warnings) == 1 and "removed the cached build of a.json" in warnings[0]
    assert sorted(_held_bytes(folder)) == ["b.json"]


def test_single_values_over_the_limit_are_kept_and_the_least_recently_used_others_go(tmp_path):
    # A model's predictions: diskcache removed the value just stored when bigger than its limit.
    from sde.cache.limit import make_room_among, mark_used

    store = cache.open_store(tmp_path / "cache", sub="predictions", eviction_policy="none")
    try:
        for key in ("a", "b", "c"):
            store.set(("predictions", key), os.urandom(2 << 20))
            mark_used(store, key, f"{key}.json by m.nemo")
            time.sleep(0.01)
        mark_used(store, "a", "a.json by m.nemo")  # a read again, after c was stored
        warnings: list[str] = []

        def make_room(keep: str, limit: int) -> list[str]:
            return [h.key for h in make_room_among(store, "predictions", keep=keep, limit=limit, entry="predictions",
                                                   entries="predictions", warn=warnings.append)]

        assert make_room("c", 5 << 20) == ["b"]
        assert len(warnings) == 1 and "removed the cached predictions of b.json by m.nemo (2.0 MiB" in warnings[0]
        assert make_room("c", 1 << 20) == ["a"]  # c alone is over the limit: kept
        assert store.get(("predictions", "c")) is not None and store.get(("predictions", "a")) is None
    finally:
        store.close()


def _interrupted_build(manifest: Path, folder: Path, age_s: float) -> Path:
    """The build folder an interrupted `sde index` of another manifest left (its parts, really
    built, and the joined tables), last written ``age_s`` ago."""
    from sde.build.stream import build_in_parts

    build = folder / cache.BUILDS / f"{'f' * 64}-512"
    build_in_parts(str(manifest), DatasetOptions(), build, threads=1, part_bytes=512)
    then = time.time() - age_s
    for path in [build, *build.rglob("*")]:
        os.utime(path, (then, then))
    return build


@pytest.mark.parametrize("age_s, removed", [(3600.0, True), (60.0, False)], ids=["abandoned", "being written"])
def test_parts_of_an_interrupted_build_count_toward_the_limit(write_manifest, tmp_path, monkeypatch, age_s, removed):
    # An interrupted build's parts wait in the cache folder for the same command to resume it; a
    # changed manifest never does, and they stayed forever, uncounted.
    folder = tmp_path / "cache"
    (a, b, c), one = _a_then_b_under_a_limit(write_manifest, folder, monkeypatch, room=2.5)
    build = _interrupted_build(c, folder, age_s)
    _, events, warnings = _load(a, folder)
    assert "loaded from cache" in events
    if removed:  # older than both datasets' last use: removed first, and enough
        assert len(warnings) == 1 and "removed the cached parts of an interrupted build (builds/ffff" in warnings[0]
        assert not build.exists()
    else:  # a build running elsewhere: neither counted nor removed
        assert warnings == [] and build.is_dir()
    assert sorted(_held_bytes(folder)) == ["a.json", "b.json"]


@pytest.mark.parametrize("value", ["lots", "-5GB", "12 parsecs"])
def test_a_bad_size_limit_is_named_and_the_default_kept(write_manifest, tmp_path, monkeypatch, value):
    monkeypatch.setenv("SDE_CACHE_SIZE", value)
    manifest = write_manifest(ROWS)
    _load(manifest, tmp_path / "cache")
    _, events, warnings = _load(manifest, tmp_path / "cache")
    assert "loaded from cache" in events
    assert warnings and all(f"SDE_CACHE_SIZE={value!r}" in w and "20.0 GiB" in w for w in warnings)


def _sde(*args: str, size: str | None, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real command line with $SDE_CACHE_SIZE = ``size`` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "SDE_CACHE_SIZE"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    if size is not None:
        env["SDE_CACHE_SIZE"] = size
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


# Every command that uses the cache, its folder "cache" (the server's port 0: a free one).
CACHE_COMMANDS = {
    "serve": ["M", "--port", "0", "--cache-dir", "cache"],
    "stats": ["stats", "M", "--cache-dir", "cache"],
    "index": ["index", "M", "--cache-dir", "cache"],
    "export": ["export", "M", "-o", "kept.json", "--cache-dir", "cache"],
    "demo": ["demo", "--port", "0", "--cache-dir", "cache"],
}
SIZE_REFUSALS = {
    # taken before: each store removed every other cached dataset
    "1KB": ["SDE_CACHE_SIZE='1KB' is too small for the cache", "set at least 1MB"],
    "999KB": ["SDE_CACHE_SIZE='999KB' is too small for the cache", "set at least 1MB"],
    # warned about (and 20 GiB kept) where the build opened the cache, once per store opened
    "lots": ["SDE_CACHE_SIZE='lots' is not a size: write a number and a unit", "or unset it"],
}


@pytest.mark.parametrize("size", SIZE_REFUSALS)
@pytest.mark.parametrize("command", CACHE_COMMANDS)
def test_a_cache_size_that_is_too_small_or_not_a_size_is_refused_as_the_command_starts(write_manifest, tmp_path,
                                                                                      command, size):
    manifest = write_manifest(ROWS)
    args = [str(manifest) if a == "M" else a for a in CACHE_COMMANDS[command]]
    r = _sde(*args, size=size, cwd=tmp_path, timeout=30)  # a server not refused would serve until the timeout
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(errors) == 1 and all(said in errors[0] for said in SIZE_REFUSALS[size]), r.stderr[-2000:]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "kept.json").exists()  # nothing begun


@pytest.mark.parametrize("size, extra, cached", [
    ("1MB", ["--cache-dir", "cache"], True),  # the least taken
    ("1KB", ["--no-cache"], False),  # no cache used: nothing to refuse
], ids=["1MB", "1KB with --no-cache"])
def test_a_cache_size_the_command_can_use_is_taken(write_manifest, tmp_path, size, extra, cached):
    r = _sde("stats", str(write_manifest(ROWS)), "--json", *extra, size=size, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["utterances"] == len(ROWS) and "SDE_CACHE_SIZE" not in r.stderr
    assert (tmp_path / "cache").is_dir() == cached


# ------------------------------------------------------------------------------ safe folders
# Tests run as root: chmod stops nobody, so "not ours" is made with chown, "not writable" with a
# file in the way or a kernel file system, and tmpfs mounts are in tests/test_cache_safety.py.

def _world_writable_of(uid: int, mode: int):
    def make(tmp_path):
        d = tmp_path / "shared"
        d.mkdir()
        os.chown(d, uid, -1)
        d.chmod(mode)
        return d
    return make


def _file_then(sub: str):
    def make(tmp_path):
        blocker = tmp_path / "blocker"
        blocker.write_text("a file")
        return blocker / sub if sub else blocker
    return make


REFUSED = {
    # case: (how to make the folder, words the reason must contain, fix)
    "a file at the path": (_file_then(""), "is a file, not a folder", cache.FIX_FOLDER),
    "a file above the path": (_file_then("sub/cache"), "is a file, not a folder", cache.FIX_FOLDER),
    "under /proc": (lambda _: Path("/proc/sde-cache-test"), "cannot create it", cache.FIX_FOLDER),
    "under /sys": (lambda _: Path("/sys/sde-cache-test"), "not writable", cache.FIX_FOLDER),
    "another user's, world-writable": (_world_writable_of(65534, 0o777), "owned by uid 65534", cache.FIX_PRIVATE),
    "another user's, private": (_world_writable_of(65534, 0o700), "owned by uid 65534", cache.FIX_PRIVATE),
    "ours, world-writable": (_world_writable_of(os.geteuid(), 0o777), "writable by every user (mode 0777)",
                             cache.FIX_PRIVATE),
    "ours, sticky like /tmp": (_world_writable_of(os.geteuid(), 0o1777), "writable by every user (mode 1777)",
                               cache.FIX_PRIVATE),
    "inside a world-writable folder": (lambda p: _world_writable_of(os.geteuid(), 0o777)(p) / "cache",
                                       "its parent", cache.FIX_PRIVATE),
    "inside another user's folder": (lambda p: _world_writable_of(65534, 0o755)(p) / "cache",
                                     "its parent", cache.FIX_PRIVATE),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unusable_or_unsafe_folders_are_refused_with_the_fix(tmp_path, case):
    make, words, fix = REFUSED[case]
    folder = make(tmp_path)
    existed = folder.exists()
    before = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None
    with pytest.raises(cache.CacheUnusable) as err:
        cache.check_cache_folder(folder)
    assert words in err.value.reason and err.value.fix == fix
    warnings: list[str] = []
    cache.report_unusable(warnings.append, err.value, "running without it")
    assert warnings == [f"cannot use the cache in {folder}: {err.value.reason}; running without it (fix: {fix})"]
    # nothing was created in or for a folder that failed
    assert folder.exists() == existed
    if before is not None:
        assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("mode, exists", [(0o700, True), (0o755, True), (None, False)])
def test_own_private_folders_are_used(tmp_path, mode, exists):
    folder = tmp_path / "mine" / "cache"
    if exists:
        folder.mkdir(parents=True)
        folder.chmod(mode)
    assert cache.check_cache_folder(folder) == folder
    if not exists:  # created for us alone
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_group_writable_by_ones_private_group_is_used(tmp_path):
    """umask 002 systems (user private groups) create group-writable folders: still private."""
    import grp
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid())
    if group.gr_name != me or set(group.gr_mem) - {me}:
        pytest.skip(f"the primary group {group.gr_name} is not a private group here")
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o770)
    assert cache.check_cache_folder(folder) == folder


def test_a_refused_folder_is_reported_once_per_process_to_later_writers(tmp_path):
    err = cache.CacheUnusable(tmp_path / "refused-once", "it is not writable")
    inner = cache.CacheUnusable(tmp_path / "refused-once" / "predictions", "it is not writable")
    warnings: list[str] = []
    cache.report_unusable(warnings.append, err, "running without it")
    cache.report_unusable(warnings.append, inner, "predictions will not be cached", once=True)
    cache.report_unusable(warnings.append, err, "background jobs use a private temporary folder instead", once=True)
    assert len(warnings) == 1 and "running without it" in warnings[0]


def test_unsafe_cache_dir_runs_without_cache_and_writes_nothing_there(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    shared = _world_writable_of(65534, 0o777)(tmp_path)
    ds, events, warnings = _load(manifest, shared)
    assert len(ds.utterances) == 20 and "loaded from cache" not in events
    assert len(warnings) == 1 and str(shared) in warnings[0] and "fix:" in warnings[0]
    assert list(shared.iterdir()) == []


# ------------------------------------------------------------------------------ corrupt index

def _garbage(db: Path) -> None:
    db.write_bytes(b"this is not sqlite" * 100)


def _malformed(db: Path) -> None:
    # A real SQLite header followed by overwritten pages: opens, then fails on reading.
    data = bytearray(db.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _malformed], ids=["garbage", "malformed"])
def test_corrupt_index_is_set_aside_with_one_warning(write_manifest, tmp_path, damage):
    manifest = write_manifest(ROWS)
    folder = tmp_path / "cache"
    cold, _, _ = _load(manifest, folder)
    damage(folder / "cache.db")
    ds, events, warnings = _load(manifest, folder)
    assert len(warnings) == 1 and "cache.db was corrupt" in warnings[0] and "cache.db.corrupt" in warnings[0]
    pd.testing.assert_frame_equal(cold.utterances, ds.utterances)
    assert (folder / "cache.db.corrupt").is_file()
    _, events, warnings = _load(manifest, folder)
    assert warnings == [] and "loaded from cache" in events


# ------------------------------------------------------------------------------ leftovers of killed writers

def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


TEMP_FILES = {
    # name pattern ({host}, {dead}, {live}, {me} filled in): (age in seconds, removed?)
    ".tmp-{host}-{dead}-abc.arrow": (0, True),                  # its writer was killed
    ".tmp-{host}-{live}-abc.arrow": (0, False),                 # a running writer
    ".tmp-{host}-{live}-old.arrow": (cache.STALE_FILE_S + 60, True),   # a reused pid, long dead writer
    ".tmp-{host}-{me}-abc.arrow": (0, True),                    # an earlier process with our pid
    ".tmp-otherhost-{dead}-abc.arrow": (0, False),              # another machine's pid means nothing
    ".tmp-otherhost-1-old.arrow": (cache.STALE_FILE_S + 60, True),
    ".tmp-legacy.arrow": (0, False),                            # named without a pid: by age
    ".tmp-legacyold.arrow": (cache.LEGACY_TEMP_S + 30, True),
    "not-a-temp-file": (cache.STALE_FILE_S + 60, False),
}


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    live = subprocess.Popen(["sleep", "30"])
    try:
        names = {pattern.format(host=cache.HOST_TAG, dead=_dead_pid(), live=live.pid, me=os.getpid()): want
                 for pattern, want in TEMP_FILES.items()}
        now = time.time()
        for name, (age, _) in names.items():
            (tmp_path / name).write_bytes(b"x")
            os.utime(tmp_path / name, (now - age, now - age))
        being_written = cache.temp_file_in(tmp_path, ".arrow")  # ours, in flight: kept
        removed = {p.name for p in cache.remove_stale_temp_files(tmp_path)}
        assert removed == {name for name, (_, gone) in names.items() if gone}
        assert Path(being_written).exists()
        cache.done_with_temp_file(being_written)
        assert not Path(being_written).exists()
    finally:
        live.kill()
        live.wait()


def test_orphan_value_files_are_removed_when_old(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    folder = tmp_path / "cache"
    _load(manifest, folder)
    known = sorted(folder.rglob("*.val"))
    old = time.time() - cache.STALE_FILE_S - 60
    for p in known:
        os.utime(p, (old, old))
    orphans = {}
    for name, age in (("aa/bb/0123456789abcdef0123456789ab.val", cache.STALE_FILE_S + 60), ("aa/bb/fresh.val", 0)):
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"an orphan")
        os.utime(p, (time.time() - age, time.time() - age))
        orphans[name] = p
    removed = cache.remove_orphan_values(folder)
    assert removed == [orphans["aa/bb/0123456789abcdef0123456789ab.val"]]
    assert orphans["aa/bb/fresh.val"].exists() and all(p.exists() for p in known)
    _, events, warnings = _load(manifest, folder)
    assert "loaded from cache" in events and warnings == []


# ------------------------------------------------------------------------------ mapped tables

def _table_file(folder: Path, key: str, name: str) -> Path:
    c = DatasetCache(folder)
    try:
        with c._store.get(("table", key, name), read=True) as handle:
            return Path(handle.name)
    finally:
        c.close()


def test_stored_tables_are_read_only(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    _load(manifest, tmp_path / "cache")
    tables = list((tmp_path / "cache").rglob("*.val"))
    assert tables and all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in tables)


def test_a_table_replaced_by_another_valid_one_is_detected_by_its_size(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    folder = tmp_path / "cache"
    cold, _, _ = _load(manifest, folder)
    key = fingerprint(manifest, DatasetOptions())
    utterances, vocabulary = _table_file(folder, key, "utterances"), _table_file(folder, key, "vocabulary")
    assert utterances.stat().st_size != vocabulary.stat().st_size
    shutil.copyfile(vocabulary, utterances)  # a valid Arrow file, the wrong one
    ds, events, warnings = _load(manifest, folder)
    assert len(warnings) == 1 and "changed outside sde" in warnings[0] and "rebuilding" in warnings[0]
    pd.testing.assert_frame_equal(cold.utterances, ds.utterances)


# ------------------------------------------------------------------------------ background job stores

def test_job_store_in_an_unusable_folder_falls_back_to_a_private_temporary_one(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    warnings: list[str] = []
    jobs = cache.open_job_store(blocker / "cache", "jobs", warnings.append)
    try:
        assert jobs.folder != blocker / "cache" and (jobs.folder / "jobs" / "cache.db").is_file()
        assert jobs.folder.stat().st_uid == os.geteuid() and stat.S_IMODE(jobs.folder.stat().st_mode) == 0o700
        assert len(warnings) == 1 and "private temporary folder" in warnings[0] and str(blocker) in warnings[0]
    finally:
        jobs.store.close()
        shutil.rmtree(jobs.folder)


def test_job_store_without_any_usable_folder_says_why(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))
    with pytest.raises(cache.CacheUnusable) as err:
        cache.open_job_store(blocker / "cache", "jobs", lambda _: None)
    assert "no private temporary folder" in str(err.value) and "fix:" in str(err.value)


def test_predictions_store_in_an_unusable_folder_is_skipped_with_a_warning(tmp_path):
    from sde.nemo.jobs import _open_store

    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    warnings: list[str] = []
    assert _open_store(blocker / "cache", True, warnings.append) is None
    assert len(warnings) == 1 and "predictions will not be cached" in warnings[0]
    store = _open_store(tmp_path / "ok", True, warnings.append)
    assert store is not None and (tmp_path / "ok" / "predictions" / "cache.db").is_file()
    store.close()


def _other_filesystem_than(folder: Path) -> Path | None:
    """A writable folder on another filesystem than ``folder`` (tmpfs), or None."""
    for candidate in (Path("/dev/shm"), Path("/run")):
        try:
            if candidate.is_dir() and os.access(candidate, os.W_OK) and \
                    candidate.stat().st_dev != folder.stat().st_dev:
                return Path(tempfile.mkdtemp(dir=candidate))
        except OSError:
            continue
    return None


@pytest.mark.parametrize("where", ["same filesystem: linked", "other filesystem: copied"])
def test_a_built_table_is_stored_by_hard_link_where_it_can_be(tmp_path, where):
    from sde.cache.store import LinkedFile, LinkingDisk, open_store

    store = open_store(tmp_path / "store", disk=LinkingDisk)
    source_folder = tmp_path if where.startswith("same") else _other_filesystem_than(tmp_path)
    if source_folder is None:
        pytest.skip("no second filesystem here")
    built = source_folder / "part.arrow"
    built.write_bytes(b"x" * 100_000)
    try:
        store.set("t", LinkedFile(str(built)), read=True)
        with store.get("t", read=True) as handle:
            stored = Path(handle.name)
            assert handle.read() == b"x" * 100_000
        linked = stored.stat().st_ino == built.stat().st_ino
        assert linked == where.startswith("same")
        built.unlink()  # the build folder goes: the stored table stays
        assert stored.read_bytes() == b"x" * 100_000
        with open(stored, "rb") as f:
            store.set("u", f, read=True)  # any other file object is copied as before
        with store.get("u", read=True) as handle:
            assert Path(handle.name).stat().st_ino != stored.stat().st_ino
    finally:
        store.close()
        if source_folder != tmp_path:
            shutil.rmtree(source_folder, ignore_errors=True)


def test_processes_missing_one_entry_wait_and_build_it_once(tmp_path):
    # `sde index` twice at once into one cache folder, as a batch job and a server started meanwhile
    # do (both used to build into one build folder, and one stopped with "ArrowInvalid: Not an Arrow
    # file"). This test holds the entry's lock first, as a build in progress would, so that both
    # are seen waiting; let go, one builds and the other reads what it stored.
    from sde.cache.building import lock_build

    words = "the cat sat on a mat and ran off far away".split()
    rows = [{"audio_filepath": f"a/{i}.wav", "duration": 1 + i % 7, "text": " ".join(words[(i + k) % 11] for k in range(12)),
             "pred_text": " ".join(words[(i * k) % 11] for k in range(12))} for i in range(3_000)]
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = tmp_path / "c"
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "sde.cli", "index", str(manifest), "--cache-dir", str(folder), "--part-size", "64KB"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    held = lock_build(folder, fingerprint(manifest, DatasetOptions()), print)  # the key sde index uses
    runs = [subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    said: list[list[str]] = [[], []]
    for run, lines in zip(runs, said):
        while not (lines and lines[-1].startswith("waiting for another sde process")) and run.poll() is None:
            lines.append(run.stderr.readline().rstrip("\n"))
    held.release()
    for run, lines in zip(runs, said):
        lines += run.communicate(timeout=120)[1].splitlines()
        assert run.returncode == 0 and "Traceback" not in "\n".join(lines), lines
        assert lines[0].startswith("waiting for another sde process that is building this dataset"), lines
    built = [any(line.startswith("joining") for line in lines) for lines in said]
    read = ["loaded from cache" in lines for lines in said]
    assert sorted(built) == [False, True] and read == [not b for b in built], said
    dataset, events, _ = _load(manifest, folder)
    assert len(dataset.utterances) == 3_000 and "loaded from cache" in events
    assert not list((folder / "builds").iterdir())  # the build folder and its lock are done with


def test_a_process_forked_while_a_build_holds_its_lock_does_not_hold_it_after(tmp_path):
    # A Dash background job forked during a background cache write inherited the lock's descriptor:
    # a flock lasts while any copy is open, so other sde processes waited for that job to end.
    import fcntl
    import multiprocessing

    from sde.cache.building import lock_build

    held = lock_build(tmp_path, "entry", print)
    context = multiprocessing.get_context("fork")
    running = context.Event()

    def job() -> None:
        running.set()
        time.sleep(60)

    child = context.Process(target=job)
    child.start()
    try:
        assert running.wait(30)
        held.release()
        fd = os.open(tmp_path / "builds" / "entry.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError while the child holds it
        finally:
            os.close(fd)
        assert child.is_alive()
    finally:
        child.terminate()
        child.join()
