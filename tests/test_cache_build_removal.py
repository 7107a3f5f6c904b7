"""A finished build folder is removed without holding up the start that built it, and what a
killed process was removing is finished by the next store into the cache."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

import sde.build.load
from sde import cache
from sde.build.load import load_dataset
from sde.cache import DatasetCache, remove_build_soon
from sde.cache.store import HOST_TAG
from sde.dataset import DatasetOptions

PART = 4096  # bytes: the manifest below is built in ~8 parts


def _manifest(folder: Path) -> Path:
    path = folder / "m.json"
    path.write_text("".join(json.dumps({"audio_filepath": f"a/{i}.wav", "duration": 1 + i % 5,
                                        "text": f"the cat number {i} sat on the mat",
                                        "pred_text": f"the cat number {i % 7} sat on a mat"}) + "\n"
                            for i in range(300)))
    return path


def _finish_background_threads() -> None:
    for thread in threading.enumerate():
        if thread.name in ("sde-build-removal", "sde-cache-write"):
            thread.join()


def _folders(builds: Path) -> list[str]:
    return sorted(p.name for p in builds.iterdir() if p.is_dir()) if builds.is_dir() else []


def test_a_build_folder_is_gone_under_its_name_at_once_and_deleted_on_a_thread(tmp_path):
    folder = tmp_path / "builds" / "key-4096"
    (folder / "sub").mkdir(parents=True)
    for name in ("part-00000.utterances.arrow", "sub/part-00000.errors0.arrow"):
        (folder / name).write_bytes(b"x" * 100_000)
    thread = remove_build_soon(folder)
    assert not folder.exists()  # renamed: a build of the same key starts afresh meanwhile
    assert thread is not None and not thread.daemon  # the process finishes it before it exits
    thread.join()
    assert list((tmp_path / "builds").iterdir()) == []


@pytest.mark.parametrize("background_write, on_a_thread", [(True, True), (False, False)],
                         ids=["a server's start", "a start that waits for the cache"])
def test_the_build_folder_is_removed_on_a_thread_where_the_cache_is_written_on_one(
        tmp_path, monkeypatch, background_write, on_a_thread):
    manifest = _manifest(tmp_path)
    removed_later: list[Path] = []

    def spied(folder: Path) -> threading.Thread | None:
        removed_later.append(folder)
        return remove_build_soon(folder)

    monkeypatch.setattr(sde.build.load, "remove_build_soon", spied)
    said: list[str] = []
    built = load_dataset(str(manifest), DatasetOptions(), cache_dir=tmp_path / "cache", part_bytes=PART,
                         background_write=background_write, status=said.append)
    assert any(line.startswith("joining") for line in said), said  # built in parts
    builds = tmp_path / "cache" / cache.BUILDS
    assert len(removed_later) == int(on_a_thread)
    if on_a_thread:
        assert removed_later[0].parent == builds and not removed_later[0].exists()
    else:
        assert _folders(builds) == []  # removed before load_dataset returned
    _finish_background_threads()
    assert _folders(builds) == []
    again: list[str] = []
    warm = load_dataset(str(manifest), DatasetOptions(), cache_dir=tmp_path / "cache", part_bytes=PART,
                        status=again.append)
    assert again[-1] == "loaded from cache" and len(warm.utterances) == len(built.utterances) == 300


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def test_a_removal_a_killed_process_left_is_finished_by_the_next_store_and_a_running_one_is_left(tmp_path):
    builds = tmp_path / "cache" / cache.BUILDS
    alive = subprocess.Popen(["sleep", "60"])
    try:
        left = {"killed": builds / f".tmp-{HOST_TAG}-{_dead_pid()}-removing-0123456789ab",
                "running": builds / f".tmp-{HOST_TAG}-{alive.pid}-removing-ba9876543210"}
        for folder in left.values():
            folder.mkdir(parents=True)
            (folder / "part-00000.utterances.arrow").write_bytes(b"x" * 10_000)
        warnings: list[str] = []
        store = DatasetCache(tmp_path / "cache", warn=warnings.append)
        try:
            assert store.make_room(keep="another") == []  # neither is an interrupted build to report
        finally:
            store.close()
        assert not left["killed"].exists() and left["running"].is_dir()
        assert warnings == []
    finally:
        alive.kill()
        alive.wait()
