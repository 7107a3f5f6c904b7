"""A cache folder sde cannot write is read, not ignored (sde.cache.read_only).

`sde index` runs in a batch job that writes the cache to shared storage; the server runs where that
storage is mounted read-only (an HPC login node, a `:ro` container volume, a squashfs image), or on
a folder of ours made read-only (`chmod a-w`) after indexing. sde said "cannot use the cache …
running without it" and rebuilt everything (10M utterances: ~100 s and 2 GB instead of ~1 s). Now:
one note, the datasets there are read, nothing is written there (no entry, lock, build folder,
access mark, sums, kept page or search index), and a dataset not there is built as with --no-cache.

Real parts: read-only bind mounts (tests/mount_kit.read_only_view: root; skipped where mounting is
not allowed), the real CLI in subprocesses, the real server. Tests run as root, and root ignores
permission bits (CAP_DAC_OVERRIDE), so the chmod'd folder is read by sde run as root without
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (`setpriv --bounding-set`, :data:`BOUND_BY_MODE_BITS`):
the kernel then checks the folder's mode bits as for any owner (os.access, which sde asks, says
"not writable", and a write fails with EACCES). An unprivileged user would be more literal, but
cannot reach this interpreter (under /root, mode 0700).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import diskcache
import pytest

from tests.build.memory_kit import generate_manifest
from tests.mount_kit import read_only_view
from tests.test_audio_faults import SdeServer, assert_no_traceback

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
#: `sde` run as root that the permission bits bind, as they bind any owner (see the module doc).
BOUND_BY_MODE_BITS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
NOTE = "note: the cache folder {folder} is read-only: its datasets are read, nothing new is stored there"
LINES = 2_000  # ~0.6 MB: ~10 parts of 64KB


def _sde(*args: str, prefix: list[str] | None = None, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**ENV, **({"TMPDIR": str(tmpdir)} if tmpdir is not None else {})}
    return subprocess.run([*(prefix or []), sys.executable, "-m", "sde.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _listing(folder: Path) -> list[tuple[str, int, int, int]]:
    """Every file and folder under ``folder``: (path, size, mode, mtime in ns)."""
    found = []
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        found.append((str(path.relative_to(folder)), st.st_size, st.st_mode, st.st_mtime_ns))
    return found


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[str, Path]:
    """"indexed": a manifest `sde index` stored; "other": one it did not."""
    folder = tmp_path_factory.mktemp("read-only-data")
    indexed = generate_manifest(folder / "indexed.json", LINES)
    other = folder / "other.json"
    other.write_text("".join(indexed.read_text().splitlines(keepends=True)[:LINES - 100]))
    return {"indexed": indexed, "other": other}


@pytest.fixture(scope="module")
def indexed(manifests, tmp_path_factory) -> Path:
    """A cache folder (mode 0700, ours) that `sde index` stored the "indexed" manifest in."""
    folder = tmp_path_factory.mktemp("indexed-cache") / "cache"
    folder.mkdir(mode=0o700)
    built = _sde("index", str(manifests["indexed"]), "--cache-dir", str(folder))
    assert built.returncode == 0, built.stderr
    return folder


@pytest.fixture(scope="module")
def no_cache(manifests) -> dict[str, tuple[str, str]]:
    """Each manifest's `sde stats` as --no-cache answers it: (--json output, table output)."""
    answers = {}
    for name, manifest in manifests.items():
        as_json, table = (_sde("stats", str(manifest), "--no-cache", *flag) for flag in (["--json"], []))
        assert as_json.returncode == 0 and table.returncode == 0, as_json.stderr + table.stderr
        answers[name] = (as_json.stdout, table.stdout)
    return answers


# ------------------------------------------------------------------------------ read-only folders

@contextmanager
def _bind_mounted(folder: Path, tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """``folder`` as a read-only bind mount (a read-only file system), read by sde as root."""
    with read_only_view(folder, tmp_path / "read-only-view") as view:
        yield view, []


@contextmanager
def _made_read_only(folder: Path, tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A copy of ``folder`` made read-only by `chmod a-w` (owner still root), read by sde run as
    root without the capabilities that override permission bits."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run sde bound by permission bits")
    copy = tmp_path / "made-read-only"
    shutil.copytree(folder, copy, symlinks=True)
    copy.chmod(0o500)
    try:
        probe = subprocess.run([*BOUND_BY_MODE_BITS, sys.executable, "-c",
                                f"import os; print(os.access({str(copy)!r}, os.W_OK))"],
                               capture_output=True, text=True)
        if probe.stdout.strip() != "False":
            pytest.skip(f"setpriv cannot drop CAP_DAC_OVERRIDE here: {probe.stderr.strip() or probe.stdout}")
        yield copy, BOUND_BY_MODE_BITS
    finally:
        copy.chmod(0o700)  # pytest removes it


READ_ONLY = {
    # case: a read-only folder holding what `folder` holds → (it, the command prefix sde runs under)
    "read-only bind mount": _bind_mounted,
    "folder made read-only (chmod a-w)": _made_read_only,
}


def _notes(stderr: str, folder: Path) -> list[str]:
    return [line for line in stderr.splitlines() if line == NOTE.format(folder=folder)]


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


@pytest.mark.parametrize("case", READ_ONLY)
def test_an_indexed_dataset_is_read_from_a_read_only_folder_which_is_left_as_it_was(
        manifests, indexed, no_cache, tmp_path, case):
    manifest = str(manifests["indexed"])
    with READ_ONLY[case](indexed, tmp_path) as (folder, prefix):
        before = _listing(folder)
        as_json = _sde("stats", manifest, "--cache-dir", str(folder), "--json", prefix=prefix)
        table = _sde("stats", manifest, "--cache-dir", str(folder), prefix=prefix)
        after = _listing(folder)
    assert as_json.returncode == 0 and table.returncode == 0, as_json.stderr + table.stderr
    assert json.loads(as_json.stdout) == json.loads(no_cache["indexed"][0])
    assert table.stdout == no_cache["indexed"][1]
    assert len(_notes(table.stderr, folder)) == 1 and "loaded from cache" in table.stderr, table.stderr
    assert _warnings(as_json.stderr + table.stderr) == [] and "running without it" not in table.stderr
    assert after == before, "something was written in the read-only folder"


BUILDS = {
    # how: the options of `sde stats`, what its terminal says of the build
    "in one piece": ([], None),
    "part by part": (["--part-size", "64KB"], "joining"),
}


@pytest.mark.parametrize("how", BUILDS)
@pytest.mark.parametrize("case", [*READ_ONLY, "empty read-only bind mount"])
def test_a_dataset_not_in_a_read_only_folder_is_built_and_stored_nowhere(
        manifests, indexed, no_cache, tmp_path, case, how):
    options, said = BUILDS[how]
    tmpdir = tmp_path / "tmp"  # the process's temporary folder: its build folder goes there
    tmpdir.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    make = _bind_mounted if case.startswith("empty") else READ_ONLY[case]
    with make(empty if case.startswith("empty") else indexed, tmp_path) as (folder, prefix):
        before = _listing(folder)
        built = _sde("stats", str(manifests["other"]), "--cache-dir", str(folder), *options, prefix=prefix,
                     tmpdir=tmpdir)
        after = _listing(folder)
    assert built.returncode == 0 and "Traceback" not in built.stderr, built.stderr
    assert built.stdout == no_cache["other"][1]
    assert len(_notes(built.stderr, folder)) == 1 and _warnings(built.stderr) == [], built.stderr
    assert "loaded from cache" not in built.stderr and (said is None or said in built.stderr), built.stderr
    assert after == before, "something was written in the read-only folder"
    assert list(tmpdir.iterdir()) == [], "the private build folder is removed at exit"


# ------------------------------------------------------------------------------ the server

def _stop(server: SdeServer, sig: signal.Signals) -> int:
    assert server.proc is not None
    server.proc.send_signal(sig)
    return server.proc.wait(30)


def _said(server: SdeServer, start: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not any(line.startswith(start) for line in server.stderr):
        assert server.alive and time.monotonic() < deadline, "".join(server.stderr)[-3000:]
        time.sleep(0.05)


@pytest.mark.parametrize("case", READ_ONLY)
def test_the_server_answers_from_a_read_only_folder_and_writes_nothing_there(
        manifests, indexed, no_cache, tmp_path, case):
    rows = [json.loads(line) for line in manifests["indexed"].read_text().splitlines()]
    tmpdir = tmp_path / "tmp"  # where the background jobs hand over instead
    tmpdir.mkdir()
    with READ_ONLY[case](indexed, tmp_path) as (folder, prefix):
        before = _listing(folder)
        server = SdeServer(str(manifests["indexed"]), "--cache-dir", str(folder), env={"TMPDIR": str(tmpdir)},
                           no_cache=False)
        server.cmd = [*prefix, *server.cmd]
        with server:
            # the warm-up's last line: search indexes built (and, where they could be, written)
            _said(server, "transcripts in memory")
            summary = server.json("/api/summary", 200)
            long = server.json("/api/utterances?" + urlencode({"filter": "{duration} > 4", "sort": "-duration",
                                                               "page_size": 20}), 200)
            found = server.json("/api/utterances?" + urlencode({"filter": '{text} has "the"', "page_size": 20}), 200)
            jobs = sorted(p.name.rsplit("-", 1)[0] for p in tmpdir.iterdir())
            code = _stop(server, signal.SIGTERM)
        after = _listing(folder)
    assert code == 128 + signal.SIGTERM, "".join(server.stderr)[-3000:]  # as `kill PID` ends any sde (test_signals)
    assert_no_traceback(server)
    stderr = "".join(server.stderr)
    assert len(_notes(stderr, folder)) == 1 and "loaded from cache" in stderr and _warnings(stderr) == [], stderr
    expected = json.loads(no_cache["indexed"][0])
    assert summary["utterances"] == expected["utterances"] == LINES
    assert summary["hypotheses"]["pred_text"]["wer"] == pytest.approx(expected["hypotheses"]["pred_text"]["wer"])
    durations = sorted((r["duration"] for r in rows if r["duration"] > 4), reverse=True)
    assert long["total"] == len(durations) and [r["duration"] for r in long["rows"]] == durations[:20]
    assert found["total"] == sum("the" in r["text"].split(" ") for r in rows) > 0
    assert jobs and all(name.startswith("sde-") and name.endswith("-jobs") for name in jobs), jobs
    assert list(tmpdir.iterdir()) == [], "the private job folders are removed at exit"
    assert after == before, "something was written in the read-only folder"


def _review(server: SdeServer, uid: int, status: str) -> tuple[int, bytes]:
    body = json.dumps({"status": status}).encode()
    code, _, answer = server.request(f"/api/utterances/{uid}/review", "POST", {"Content-Type": "application/json"},
                                     body)
    return code, answer


def test_reviews_kept_in_a_read_only_folder_are_shown_and_editing_is_off(manifests, indexed, tmp_path):
    # the server started with reviews off, without a word: the default reviews file is in the cache
    copy = tmp_path / "cache"
    shutil.copytree(indexed, copy, symlinks=True)
    with SdeServer(str(manifests["indexed"]), "--cache-dir", str(copy), no_cache=False) as writable:
        uid = writable.json("/api/utterances?page_size=1", 200)["rows"][0]["id"]
        assert _review(writable, uid, "drop")[0] == 200
    with read_only_view(copy, tmp_path / "view") as view:
        before = _listing(view)
        with SdeServer(str(manifests["indexed"]), "--cache-dir", str(view), no_cache=False) as server:
            kept = server.json("/api/reviews", 200)
            refused = _review(server, uid, "keep")
        after = _listing(view)
    stderr = "".join(server.stderr)
    assert kept["editable"] is False and kept["summary"]["drop"] == 1 and kept["rows"][0]["id"] == uid, kept
    assert refused[0] == 403 and b"is on a read-only file system" in refused[1], refused
    assert "reviews are off" not in stderr, stderr
    assert after == before


def test_a_read_only_folder_without_reviews_says_reviews_are_off(manifests, indexed, tmp_path):
    with read_only_view(indexed, tmp_path / "view") as view:
        with SdeServer(str(manifests["indexed"]), "--cache-dir", str(view), no_cache=False) as server:
            answer = server.json("/api/reviews", 200)
            refused = _review(server, 0, "keep")
    stderr = "".join(server.stderr)
    assert (f"note: reviews are off: the cache folder {view} is read-only; pass --reviews FILE to keep them in a "
            "file of your own") in stderr.splitlines(), stderr
    assert answer["editable"] is False and refused[0] == 403


# ------------------------------------------------------------------------------ what stays as it was

def test_a_read_only_folder_another_user_owns_is_still_refused(manifests, indexed, tmp_path):
    """Cache entries are pickles: a folder another user controls is never read, read-only or not."""
    theirs = tmp_path / "theirs"
    shutil.copytree(indexed, theirs, symlinks=True)
    os.chown(theirs, 65534, 65534)
    with read_only_view(theirs, tmp_path / "view") as view:
        result = _sde("stats", str(manifests["indexed"]), "--cache-dir", str(view))
    assert result.returncode == 0, result.stderr
    [warning] = _warnings(result.stderr)
    assert warning.startswith(f"warning: cannot use the cache in {view}: it is owned by uid 65534")
    assert "running without it (fix: " in warning and "mkdir -m 700 DIR" in warning
    assert "loaded from cache" not in result.stderr and "read-only" not in result.stderr


def test_sde_index_into_a_read_only_folder_that_holds_the_dataset_still_fails(manifests, indexed, tmp_path):
    """It exists to store (and to keep the pages and indexes with the dataset): a folder it cannot
    write is a failure, even one that holds the dataset already."""
    with read_only_view(indexed, tmp_path / "view") as view:
        before = _listing(view)
        result = _sde("index", str(manifests["indexed"]), "--cache-dir", str(view))
        after = _listing(view)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot index into {view}: it is on a read-only file system; nothing was built" in result.stderr
    assert f"indexed {LINES:,}" not in result.stderr
    assert after == before


# ------------------------------------------------------------------------------ the reader itself

VALUES = {
    # key: a value diskcache keeps in its index, or in a file of its own
    ("meta", "k"): pickle.dumps({"tables": ["utterances"]}),
    ("table", "k", "utterances"): b"\x01" * 100_000,
    ("sums", "k"): {"format": 1, "utterances": 3},
    ("used", "k"): {"at": 1.5, "name": "m.json"},
    "text key": "a short string",
    "long text": "é" * 50_000,
    7: 3.25,
}


def test_the_reader_gives_what_diskcache_stored_and_writes_nothing(tmp_path):
    from sde.cache import ReadOnlyStore
    from sde.cache.store import LinkingDisk

    folder = tmp_path / "store"
    folder.mkdir(mode=0o700)
    with diskcache.Cache(str(folder), eviction_policy="none", disk=LinkingDisk) as store:
        for key, value in VALUES.items():
            store.set(key, value)
    with read_only_view(folder, tmp_path / "view") as view:
        before = _listing(view)
        reader = ReadOnlyStore(view)
        try:
            assert {key: reader.get(key) for key in VALUES} == VALUES
            assert set(reader.iterkeys()) == set(VALUES) and ("meta", "k") in reader
            assert reader.get(("meta", "other")) is None and ("meta", "other") not in reader
            with reader.get(("table", "k", "utterances"), read=True) as handle:  # a file, to map
                assert handle.name.startswith(str(view)) and handle.read() == VALUES[("table", "k", "utterances")]
        finally:
            reader.close()
        assert ReadOnlyStore(tmp_path).get(("meta", "k"), "none") == "none"  # no index: holds nothing
        assert _listing(view) == before


#: Run in a process of its own: the dataset it reads maps files on the mount, which would stay busy
#: (not unmounted) while this process holds them.
RECALL_KEPT = """
import json, sys
from sde.cache import DatasetCache, ReadOnlyStore

view = sys.argv[1]
reader = ReadOnlyStore(view)
keys = list(reader.iterkeys())
reader.close()
[key] = [k[1] for k in keys if isinstance(k, tuple) and k[0] == "meta"]
kept = [k[2] for k in keys if isinstance(k, tuple) and k[:2] == ("kept", key)]
cache = DatasetCache(view, warn=lambda message: print("warning:", message, file=sys.stderr))
dataset = cache.get(key)
cache.close()
keeper = dataset.caches.keeper(dataset.generation)
keeper.keep("something new", 1)
print(json.dumps({"read_only": cache.read_only, "rows": len(dataset.utterances), "kept": len(kept),
                  "recalled": sum(keeper.recall(name)[0] for name in kept),
                  "new one": keeper.recall("something new")[0]}))
"""


def test_what_sde_index_kept_with_the_dataset_is_recalled_and_nothing_kept(indexed, tmp_path):
    with read_only_view(indexed, tmp_path / "view") as view:
        before = _listing(view)
        run = subprocess.run([sys.executable, "-c", RECALL_KEPT, str(view)], cwd=ROOT, env=ENV, capture_output=True,
                             text=True, timeout=120)
        after = _listing(view)
    assert run.returncode == 0, run.stderr
    said = json.loads(run.stdout)
    assert said["read_only"] and said["rows"] == LINES
    assert said["kept"] > 0 and said["recalled"] == said["kept"], said  # the pages `sde index` laid out
    assert not said["new one"] and after == before
    assert run.stderr.splitlines() == [NOTE.format(folder=view)]
