"""sde run with no home folder: no HOME, and a uid with no passwd entry (`docker run -u 12345`).

platformdirs could not find the user cache folder there: `sde stats` and the server (its tar-index
default, even with no tar shard) stopped with a RuntimeError traceback. Now the cache is this
uid's own folder in the temporary folder (sde.caching.homeless_cache_dir), said once in a note
naming how to keep it elsewhere; a container loses it with the container, as it would its ~/.cache.

Real parts: the real CLI and server in subprocesses, run as such a uid by `setpriv` (root only;
skipped elsewhere) with an environment holding no HOME.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_audio_faults import SdeServer, assert_no_traceback

ROOT = Path(__file__).resolve().parent.parent
NOTE = "note: no home folder to cache in"
# Interpreters with sde's dependencies that a uid other than root may run (the test's own may be
# under /root, mode 0700).
PYTHONS = [sys.executable, "/opt/sde-venv/bin/python"]


@dataclass
class Homeless:
    run_as: list[str]      # the command prefix: setpriv as the uid, then a python it may run
    env: dict[str, str]    # no HOME
    folder: Path           # a folder it can read, holding m.json and its audio
    cache: Path            # where its cache should go


def _free_uid() -> int:
    for uid in range(42_400, 43_000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    pytest.skip("no uid without a passwd entry")


@pytest.fixture
def homeless() -> Iterator[Homeless]:
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run sde as a uid with no passwd entry")
    uid = _free_uid()
    # not pytest's tmp_path: it is under a folder only root can enter
    folder = Path(tempfile.mkdtemp(prefix="sde-homeless-"))
    try:
        folder.chmod(0o755)
        temp = folder / "tmp"
        temp.mkdir(mode=0o1777)
        temp.chmod(0o1777)  # sticky and open to all, as /tmp
        sr = 16_000
        sf.write(folder / "a.wav", 0.1 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr), sr)
        (folder / "m.json").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0,
                                                   "text": "hello world"}) + "\n")
        setpriv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "TMPDIR": str(temp),
               "PYTHONUNBUFFERED": "1"}
        for python in PYTHONS:
            probe = subprocess.run([*setpriv, python, "-m", "sde.cli", "--version"], cwd=folder, env=env,
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
        else:
            pytest.skip(f"no python with sde's dependencies that uid {uid} may run ({', '.join(PYTHONS)})")
        yield Homeless([*setpriv, python], env, folder, temp / f"sde-cache-{uid}")
    finally:
        shutil.rmtree(folder)


def test_stats_without_a_home_folder_caches_in_the_temporary_folder(homeless: Homeless):
    runs = [subprocess.run([*homeless.run_as, "-m", "sde.cli", "stats", "m.json"], cwd=homeless.folder,
                           env=homeless.env, capture_output=True, text=True, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        assert "utterances       1" in run.stdout
        notes = [line for line in run.stderr.splitlines() if line.startswith(NOTE)]
        assert len(notes) == 1 and str(homeless.cache) in notes[0] and "--cache-dir DIR" in notes[0], run.stderr
    assert "loaded from cache" in runs[1].stderr, runs[1].stderr  # the second run read the first one's build
    assert (homeless.cache.stat().st_mode & 0o777) == 0o700


def test_a_server_without_a_home_folder_serves(homeless: Homeless):
    manifest = str(homeless.folder / "m.json")
    server = SdeServer(manifest, no_cache=False)
    # run as the uid, with no HOME: SdeServer's own command and environment are root's
    server.cmd = [*homeless.run_as, "-m", "sde.cli", manifest, "--port", "0"]
    server.env = homeless.env
    with server:
        assert server.json("/api/summary", status=200)["utterances"] == 1
    assert_no_traceback(server)
    assert any(line.startswith(NOTE) for line in server.stderr), "".join(server.stderr)
