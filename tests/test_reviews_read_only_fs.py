"""Reviews on a read-only file system (a real read-only bind mount; skipped where mounting is not
allowed): shown read-only, with the reason, in process, through the server and `sde export`.

A WAL database is read through its -shm index, which SQLite cannot create in a read-only folder;
sde then opens the file immutable (nothing can change it there)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from sde.dataset import build_dataset
from sde.reviews import ReadOnlyReviews, ReviewStore, open_reviews, review_post_route, reviews_list_route
from tests.test_audio_faults import ROOT, SdeServer, assert_no_traceback

ROWS = [
    {"audio_filepath": "a.wav", "duration": 1.0, "text": "the cat"},
    {"audio_filepath": "b.wav", "duration": 2.0, "text": "a dog"},
]
ON_A_READ_ONLY_FS = "is on a read-only file system"


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True)


@pytest.fixture
def read_only_view(tmp_path) -> Iterator[Callable[[Path], Path]]:
    """view(folder) → a read-only bind mount of folder (root and CAP_SYS_ADMIN; else the test is skipped);
    unmounted after the test."""
    mounted: list[Path] = []

    def view(folder: Path) -> Path:
        where = tmp_path / f"ro{len(mounted)}"
        where.mkdir()
        bound = _run("mount", "--bind", str(folder), str(where))
        if bound.returncode != 0:
            pytest.skip(f"cannot bind-mount here (needs root and CAP_SYS_ADMIN): {bound.stderr.strip()}")
        mounted.append(where)
        made_ro = _run("mount", "-o", "remount,ro,bind", str(where))
        if made_ro.returncode != 0:
            pytest.skip(f"cannot remount a bind mount read-only here: {made_ro.stderr.strip()}")
        return where

    yield view
    for where in reversed(mounted):
        if _run("umount", str(where)).returncode != 0:
            _run("umount", "-l", str(where))  # still busy (a server closing): detach it now, freed when unused


@pytest.fixture
def folder(tmp_path) -> Path:
    """m.json and r.sqlite (line 2 dropped), closed as at the end of a session: no -wal or -shm left."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.json").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    dataset = build_dataset(src / "m.json")
    store = open_reviews(dataset, src / "r.sqlite")
    assert review_post_route(dataset, store, 1, {"status": "drop", "note": "noise"})[0] == 200
    store.close()
    assert sorted(p.name for p in src.iterdir()) == ["m.json", "r.sqlite"]
    return src


@contextmanager
def another_sde_writing(src: Path) -> Iterator[None]:
    """Another sde with the file open where it is writable: its -wal and -shm are beside the file,
    and its last review (line 1 kept) is in the -wal only: a reader (a third process) held its view
    of the file, so the checkpoint after that write could not fold the review into the file."""
    writer = open_reviews(build_dataset(src / "m.json"), src / "r.sqlite")
    reader = sqlite3.connect(src / "r.sqlite")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM reviews").fetchall()
    review_post_route(build_dataset(src / "m.json"), writer, 0, {"status": "keep"})
    assert (src / "r.sqlite-shm").exists() and (src / "r.sqlite-wal").stat().st_size > 0
    try:
        yield
    finally:
        reader.close()
        writer.close()


# flag → the reason a refused edit gives
FLAGS = {
    "without --read-only": (False, ON_A_READ_ONLY_FS),
    "with --read-only": (True, "--read-only"),
}


@pytest.mark.parametrize("read_only, reason", FLAGS.values(), ids=FLAGS.keys())
def test_reviews_on_a_read_only_file_system_are_shown_and_edits_refused_with_the_reason(
        folder, read_only_view, read_only, reason):
    mnt = read_only_view(folder)
    dataset = build_dataset(mnt / "m.json")
    store = open_reviews(dataset, mnt / "r.sqlite", read_only=read_only)
    code, listing = reviews_list_route(dataset, store, {})
    assert code == 200 and [(r["line"], r["status"], r["note"]) for r in listing["rows"]] == [(2, "drop", "noise")]
    code, refused = review_post_route(dataset, store, 0, {"status": "keep"})
    assert code == 403 and reason in refused["error"] and str(mnt / "r.sqlite") in refused["error"]
    with pytest.raises(ReadOnlyReviews, match=reason):
        store.undo(store.reviews()[0].key)
    store.close()


def test_a_file_another_sde_is_writing_is_read_with_its_latest_changes(folder, read_only_view):
    with another_sde_writing(folder):
        mnt = read_only_view(folder)
        store = ReviewStore(mnt / "r.sqlite", sources=["m.json"])
        assert sorted((r.key.line, r.status) for r in store.reviews()) == [(1, "keep"), (2, "drop")]
        assert store.read_only and store.problems == []
        store.close()


def test_changes_left_in_a_wal_without_its_index_are_named_not_silently_lost(folder, tmp_path, read_only_view):
    copy = tmp_path / "copy"
    copy.mkdir()
    with another_sde_writing(folder):
        for name in ("m.json", "r.sqlite", "r.sqlite-wal"):  # a backup of the file and its -wal, not its -shm
            shutil.copy(folder / name, copy / name)
    mnt = read_only_view(copy)
    store = ReviewStore(mnt / "r.sqlite", sources=["m.json"])
    assert [(r.key.line, r.status) for r in store.reviews()] == [(2, "drop")]
    problem, = store.problems
    assert str(mnt / "r.sqlite-wal") in problem and "not shown" in problem and "writable" in problem
    store.close()


def test_a_missing_file_on_a_read_only_file_system_is_an_empty_read_only_store(tmp_path, read_only_view):
    empty = tmp_path / "empty"
    empty.mkdir()
    mnt = read_only_view(empty)
    store = ReviewStore(mnt / "r.sqlite", sources=["m.json"])
    assert store.read_only and ON_A_READ_ONLY_FS in store.read_only_message and store.reviews() == []
    store.close()
    assert list(empty.iterdir()) == []


def test_export_applies_reviews_kept_on_a_read_only_file_system(folder, tmp_path, read_only_view):
    mnt = read_only_view(folder)
    out = tmp_path / "clean.json"
    r = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(mnt / "m.json"), "--apply-reviews",
                        "--reviews", str(mnt / "r.sqlite"), "-o", str(out), "--no-cache"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == ["the cat"]


def test_a_server_shows_reviews_on_a_read_only_file_system_and_says_why_it_cannot_edit(folder, read_only_view):
    mnt = read_only_view(folder)
    with SdeServer(str(mnt / "m.json"), "--reviews", str(mnt / "r.sqlite")) as server:
        listing = server.json("/api/reviews", 200)
        assert listing["total"] == 1 and listing["editable"] is False
        code, _, body = server.request("/api/utterances/0/review", "POST", {"Content-Type": "application/json"},
                                       json.dumps({"status": "keep"}).encode())
        assert code == 403 and ON_A_READ_ONLY_FS in json.loads(body)["error"], body
        assert server.json("/api/utterances/0/review", 200)["editable"] is False
    assert_no_traceback(server)
    said = "".join(server.stderr)
    assert f"warning: reviews in {mnt / 'r.sqlite'} are read-only: its folder {mnt} {ON_A_READ_ONLY_FS}" in said
    assert "reviews are off" not in said
    with sqlite3.connect(folder / "r.sqlite") as con:  # nothing was written through the mount
        assert con.execute("SELECT count(*) FROM history").fetchone()[0] == 1
    con.close()


def test_a_team_reviews_file_another_user_owns_names_the_owners_fix(tmp_path):
    # Shared by a team, the file was made 0644 by its owner's sde (SQLite's mode, whatever the
    # umask); another user was told to "chmod u+w", which only the owner can do.
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to act as another user")
    shared = Path(tempfile.mkdtemp(prefix="sde-team-"))
    try:
        shared.chmod(0o755)
        reviews = shared / "team.reviews"
        reviews.write_bytes(b"")
        reviews.chmod(0o644)
        root = Path(__file__).resolve().parent.parent
        probe = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable,
                                "-c", "import sde"], env={**os.environ, "PYTHONPATH": str(root)},
                               capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            pytest.skip(f"this Python or checkout is private to root: {probe.stderr.strip()[-200:]}")
        said = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable,
                               "-c", "import sys; from pathlib import Path; from sde.review_store import _unwritable; "
                               "print(_unwritable(Path(sys.argv[1])))", str(reviews)],
                              env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=60)
        assert said.returncode == 0, said.stderr
        assert "not writable by you (its owner, root, can let the group edit it: chmod g+w" in said.stdout
        assert "chmod u+w" not in said.stdout
    finally:
        shutil.rmtree(shared)
