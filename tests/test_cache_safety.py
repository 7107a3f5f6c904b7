"""The cache folder's promises, through the real server (`python -m sde.cli MANIFEST --port 0
--cache-dir X`, tests/test_audio_faults.SdeServer) and the background-job panels in process.

README: "The cache is optional: if its folder cannot be created, the disk is full or an entry is
corrupt, sde prints a warning and rebuilds or runs without the cache." (A folder of ours that is
read-only is read instead, with a note: tests/test_cache_read_only.py.) Every writer keeps it: the dataset
cache, the predictions cache and the Dash job stores of the "Measure audio" and "Transcribe with
NeMo" panels (they fall back to a private temporary folder). A folder that another user owns or
can write is refused the same way: cache entries are pickles. A corrupt index is repaired with one
warning; files left by killed writers are removed at the next start.

Tests run as root, so chmod stops nothing: a full folder is a real tmpfs mount (skipped where
mounting is not allowed), "not ours" is chown to uid 65534.

The manifest has no predictions, so both panels register their background jobs (the code paths
that crashed at startup); NeMo is hidden from the server (a `nemo` package on PYTHONPATH that fails
to import, as on an install without the extra) so that it does not transcribe before serving.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dash
import pytest
from dash import html

from sde import cache
from tests.test_audio_faults import ROOT, SdeServer, assert_no_traceback

N_ROWS = 12
WARNING = "warning: cannot use the cache in "


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    p = d / "m.json"
    p.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 3,
                                     "text": f"utterance number {i}"}) + "\n" for i in range(N_ROWS)))
    return p


@pytest.fixture(scope="module")
def no_nemo_env(tmp_path_factory) -> dict:
    shadow = tmp_path_factory.mktemp("no-nemo")
    (shadow / "nemo").mkdir()
    (shadow / "nemo" / "__init__.py").write_text('raise ImportError("NeMo is not installed (hidden by the test)")\n')
    return {"PYTHONPATH": f"{ROOT}{os.pathsep}{shadow}"}


@contextmanager
def serving(manifest: Path, cache_dir: Path | None, env: dict, tmpdir: Path | None = None):
    args = [str(manifest)] + (["--cache-dir", str(cache_dir)] if cache_dir is not None else [])
    env = {**env, **({"TMPDIR": str(tmpdir)} if tmpdir else {})}
    with SdeServer(*args, env=env, no_cache=False) as server:
        yield server


def _router(server: SdeServer, pathname: str) -> dict:
    """The page layout as the browser receives it (the router callback, POSTed)."""
    body = {"output": "..page-content.children...rendered.data..",
            "outputs": [{"id": "page-content", "property": "children"}, {"id": "rendered", "property": "data"}],
            "inputs": [{"id": "url", "property": "pathname", "value": pathname},
                       {"id": "url", "property": "search", "value": ""}],
            "state": [{"id": "rendered", "property": "data", "value": None}],
            "changedPropIds": ["url.pathname"]}
    code, _, raw = server.request("/_dash-update-component", "POST", {"Content-Type": "application/json"},
                                  json.dumps(body).encode())
    assert code == 200, raw[:500]
    return json.loads(raw)


def assert_serves(server: SdeServer) -> None:
    assert server.json("/api/summary", 200)["utterances"] == N_ROWS
    for path in ("/", "/samples", "/vocabulary"):
        assert server.get(path)[0] == 200, path
    statistics = json.dumps(_router(server, "/"))
    assert '"audioq-start"' in statistics and '"transcribe-panel"' in statistics
    assert server.alive
    assert_no_traceback(server)


def cache_warnings(server: SdeServer) -> list[str]:
    return [line.strip() for line in server.stderr if line.startswith("warning:")]


# ------------------------------------------------------------------------------ unusable folders

@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) → a fresh tmpfs folder (mode 0700, ours); unmounted after the test."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=64k,mode=0700,{options}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _full(tmp_path, tmpfs) -> Path:
    where = tmpfs("rw")
    with open(where / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass  # ENOSPC: the disk is full
    return where


def _parent_is_a_file(tmp_path, tmpfs) -> Path:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    return tmp_path / "blocker" / "cache"


def _under_proc(tmp_path, tmpfs) -> Path:
    return Path("/proc/sde-cache-test")


def _other_users_world_writable(tmp_path, tmpfs) -> Path:
    d = tmp_path / "shared"
    d.mkdir()
    os.chown(d, 65534, 65534)
    d.chmod(0o777)
    return d


def _own_sticky_world_writable(tmp_path, tmpfs) -> Path:
    d = tmp_path / "like-tmp"
    d.mkdir()
    d.chmod(0o1777)
    return d


UNUSABLE = {
    # case: (make the folder, words in the warning, the fix it names)
    "full disk": (_full, "the disk is full", "free disk space"),
    "parent is a file": (_parent_is_a_file, "is a file, not a folder", "--cache-dir DIR"),
    "under /proc": (_under_proc, "cannot create it", "--cache-dir DIR"),
    "another user's, world-writable": (_other_users_world_writable, "owned by uid 65534", "mkdir -m 700 DIR"),
    "own but sticky world-writable (like /tmp)": (_own_sticky_world_writable, "writable by every user",
                                                  "mkdir -m 700 DIR"),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_server_starts_without_an_unusable_cache_with_one_warning(manifest, no_nemo_env, tmp_path, tmpfs, case):
    make, words, fix = UNUSABLE[case]
    folder = make(tmp_path, tmpfs)
    before = sorted(os.listdir(folder)) if folder.is_dir() else None
    jobs_tmp = tmp_path / "jobs-tmp"
    jobs_tmp.mkdir()
    with serving(manifest, folder, no_nemo_env, jobs_tmp) as server:
        assert_serves(server)
        # the background jobs of every panel hand over in private temporary folders instead
        private = sorted(p.name.rsplit("-", 1)[0] for p in jobs_tmp.iterdir())
        assert private == ["sde-audioq-jobs", "sde-background-jobs", "sde-speech-jobs"]
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in jobs_tmp.iterdir())
    warnings = cache_warnings(server)
    assert len(warnings) == 1, server.stderr
    assert warnings[0].startswith(WARNING + str(folder)) and words in warnings[0], warnings[0]
    assert "running without it" in warnings[0] and "fix: " in warnings[0] and fix in warnings[0]
    if before is not None and case != "full disk":  # nothing was written there
        assert sorted(os.listdir(folder)) == before
    assert list(jobs_tmp.iterdir()) == [], "the private job folders are removed at exit"


@pytest.mark.parametrize("how", ["--cache-dir", "SDE_CACHE_DIR"])
def test_demo_starts_with_a_read_only_or_blocked_cache(no_nemo_env, tmp_path, tmpfs, how):
    """The reported crash: `sde demo --cache-dir RO` (the audio-metrics panel's mkdir). A read-only
    folder of ours is read (one note, no warning); a blocked one is warned of once."""
    folder = tmpfs("ro") if how == "--cache-dir" else tmp_path / "a-file"
    if how == "SDE_CACHE_DIR":
        folder.write_text("a file where the cache folder should be")
    args = ["demo"] + (["--cache-dir", str(folder)] if how == "--cache-dir" else [])
    env = {**no_nemo_env, **({"SDE_CACHE_DIR": str(folder)} if how == "SDE_CACHE_DIR" else {})}
    with SdeServer(*args, env=env, no_cache=False) as server:
        assert server.json("/api/summary", 200)["utterances"] > 0
        assert server.get("/")[0] == 200 and server.get("/samples")[0] == 200
        assert '"audioq-start"' in json.dumps(_router(server, "/"))
        assert_no_traceback(server)
    warnings = cache_warnings(server)
    if how == "--cache-dir":
        notes = [line for line in server.stderr if line.startswith("note: the cache folder")]
        assert warnings == [] and len(notes) == 1 and f"{folder} is read-only" in notes[0], server.stderr
    else:
        assert len(warnings) == 1 and str(folder) in warnings[0] and "fix:" in warnings[0], server.stderr


# ------------------------------------------------------------------------------ a good folder

def test_own_private_folder_is_used_and_read_back(manifest, no_nemo_env, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    with serving(manifest, folder, no_nemo_env) as server:
        assert_serves(server)
    assert cache_warnings(server) == [], server.stderr
    assert (folder / "cache.db").is_file() and (folder / "audio-metrics" / "audioq-jobs" / "cache.db").is_file()
    assert (folder / "background-jobs" / "cache.db").is_file()
    tables = list(folder.glob("??/??/*.val"))
    assert tables and all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in tables)
    with serving(manifest, folder, no_nemo_env) as again:
        assert_serves(again)
    assert any("loaded from cache" in line for line in again.stderr) and cache_warnings(again) == []


def test_leftovers_of_killed_writers_are_removed_at_start(manifest, no_nemo_env, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    old = time.time() - cache.STALE_FILE_S - 60
    orphan_tmp = folder / f".tmp-{cache.HOST_TAG}-{dead.pid}-killed.arrow"
    legacy_tmp = folder / ".tmp-killedlongago.arrow"
    live_tmp = folder / f".tmp-{cache.HOST_TAG}-{live.pid}-writing.arrow"
    orphan_val = folder / "ab" / "cd" / "0123456789abcdef0123456789ab.val"
    orphan_val.parent.mkdir(parents=True)
    for p in (orphan_tmp, legacy_tmp, live_tmp, orphan_val):
        p.write_bytes(b"\0" * 1000)
    for p in (legacy_tmp, orphan_val):
        os.utime(p, (old, old))
    try:
        # The index must exist for orphan values to be known as orphans: a first start makes it.
        with serving(manifest, folder, no_nemo_env) as server:
            assert_serves(server)
        assert not orphan_tmp.exists() and not legacy_tmp.exists() and not orphan_val.exists()
        assert live_tmp.exists(), "a live writer's temporary file is left alone"
        assert cache_warnings(server) == [], server.stderr
    finally:
        live.kill()
        live.wait()


def test_garbage_index_is_repaired_with_one_warning(manifest, no_nemo_env, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    (folder / "cache.db").write_bytes(b"this is not an SQLite database" * 100)
    with serving(manifest, folder, no_nemo_env) as first:
        assert_serves(first)
    warnings = [line for line in first.stderr if line.startswith("warning:")]
    assert len(warnings) == 1 and "cache.db was corrupt" in warnings[0], first.stderr
    with serving(manifest, folder, no_nemo_env) as second:
        assert_serves(second)
    assert [line for line in second.stderr if line.startswith("warning:")] == []
    assert any("loaded from cache" in line for line in second.stderr)


# ------------------------------------------------------------------------------ panels in process

@pytest.fixture
def dataset(tmp_path):
    from sde.dataset import DatasetOptions, build_dataset

    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "a.wav", (0.2 * np.sin(np.arange(16000) / 5)).astype("float32"), 16000)
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a tone"}) + "\n")
    return build_dataset(m, DatasetOptions(), workers=1)


def _blocked(tmp_path) -> Path:
    (tmp_path / "blocker").write_text("a file")
    return tmp_path / "blocker" / "cache"


class _Progress:
    def __init__(self) -> None:
        self.calls: list = []

    def __call__(self, value) -> None:
        self.calls.append(value)


def test_audio_job_in_an_unusable_folder_runs_from_a_private_folder(dataset, tmp_path):
    from sde.audio_quality import has_audio_metrics
    from sde.web.panels import audio_metrics as panel
    from tests.browser_kit import dash_update

    app = dash.Dash(__name__)
    app.layout = html.Div([panel.layout(dataset)])
    panel.callbacks(app, dataset, _blocked(tmp_path))
    # The job is a background callback (run by the job manager's process in the server); its body
    # is called here, the callback that applies its result is fired over HTTP as the browser does.
    job = next(v for k, v in app.callback_map.items() if k == f"{panel.DONE}.data")
    done = job["callback"].__wrapped__(_Progress(), 1)
    assert done.get("rows") == 1, done
    out = dash_update(app.server.test_client(), app, f"{panel.RELOAD}.href", {f"{panel.DONE}.data": done},
                      {f"{panel.RELOAD}.pathname": "/", f"{panel.RELOAD}.search": ""})
    assert out[f"{panel.RELOAD}.href"] == "/" and has_audio_metrics(dataset.utterances)


@pytest.mark.parametrize("which", ["audio", "transcribe"])
def test_jobs_are_disabled_with_a_message_when_no_folder_works(dataset, tmp_path, monkeypatch, which):
    import tempfile

    from sde.web.panels import audio_metrics, transcribe
    from tests.browser_kit import dash_update, text_of

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "blocker" / "tmp"))
    panel = audio_metrics if which == "audio" else transcribe
    app = dash.Dash(__name__)
    app.layout = html.Div()  # the request names the callback's components; the page need not show them
    panel.callbacks(app, dataset, _blocked(tmp_path))
    assert not any(v.get("background") for v in app.callback_map.values())
    out = dash_update(app.server.test_client(), app, f"{panel.START}.disabled", {f"{panel.START}.n_clicks": None})
    assert out[f"{panel.START}.disabled"] is True
    message = text_of(out[f"{panel.STATUS}.children"])
    assert message.startswith("Background jobs are disabled:") and "fix:" in message
    assert "no private temporary folder" in message


def test_cli_stats_refuses_another_users_folder_in_one_line(manifest, tmp_path):
    """`sde stats` shares load_dataset with the server: same folder checks, same single line."""
    shared = _other_users_world_writable(tmp_path, None)
    proc = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--json", "--cache-dir",
                           str(shared)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout)["utterances"] == N_ROWS
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and str(shared) in lines[0] and "pickles" in lines[0]
    assert os.listdir(shared) == []


def test_sigterm_just_after_a_temporary_file_is_made_leaves_it_listed_for_the_exit_to_remove(tmp_path, monkeypatch):
    """`kill` landing between mkstemp and the listing of the file (seen under load in the suite)
    left a .tmp- file in the cache folder: the signal is held until the file is listed."""
    import signal
    import tempfile

    from sde.cache import store
    from sde.cli import _terminate

    made: list[str] = []
    mkstemp = tempfile.mkstemp

    def made_then_terminated(*args, **kwargs):
        fd, path = mkstemp(*args, **kwargs)
        made.append(path)
        os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode: before the listing
        return fd, path

    monkeypatch.setattr(store, "tempfile", type("Tempfile", (), {"mkstemp": staticmethod(made_then_terminated)}))
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with pytest.raises(SystemExit) as stopped:
            store.temp_file_in(tmp_path, ".arrow")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert len(made) == 1 and made[0] in store._writing
    store._remove_unfinished_temp_files()  # what the exit runs
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("umask", [0o000, 0o002], ids=["umask-000", "umask-002"])
def test_the_folders_made_for_a_cache_are_private_whatever_the_umask(tmp_path, umask):
    # The missing parents of --cache-dir (or of ~/.cache/sde) were made with the umask's mode:
    # 0777 or group-writable, which every later start then refused ("its parent … is writable by …").
    import subprocess
    import sys

    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": "x"}) + "\n"
                                for i in range(3)))
    cache = tmp_path / "new" / "deeper" / "cache"
    runs = [subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--cache-dir", str(cache)],
                           capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(umask))
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    assert "warning" not in runs[1].stderr and "loaded from cache" in runs[1].stderr, runs[1].stderr
    for folder in (tmp_path / "new", tmp_path / "new" / "deeper", cache):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
