"""A Lhotse Shar directory named by any path (a subfolder of where sde runs, an absolute path, with a
trailing slash) serves, plays and exports: its cuts files are read where they are, not below the
folder sde runs in (where a Shar folder's cuts files were looked for, and its server stopped with
a traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

from tests.browser_kit import sde_server
from tests.test_cache_identity_more import shar_folder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def nested(tmp_path) -> Path:
    """tmp_path/data/shar, sde run from tmp_path/elsewhere."""
    (tmp_path / "data").mkdir()
    folder = shar_folder(tmp_path / "data")
    (tmp_path / "elsewhere").mkdir()
    return folder


# (behaviour, how the folder is named from tmp_path/elsewhere)
NAMES = [
    ("a relative path through another folder", lambda f: os.path.relpath(f, f.parent.parent / "elsewhere")),
    ("an absolute path", str),
    ("an absolute path with a trailing slash", lambda f: str(f) + "/"),
]


@pytest.mark.parametrize("behaviour, name", NAMES, ids=[n[0] for n in NAMES])
def test_a_shar_folder_exports_its_lines_from_anywhere(nested, behaviour, name):
    cwd = nested.parent.parent / "elsewhere"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SDE_CACHE_DIR": str(cwd / "cache")}
    done = subprocess.run([sys.executable, "-m", "sde.cli", "export", name(nested), "-o", "kept.jsonl"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line) for line in (cwd / "kept.jsonl").read_text().splitlines()]
    assert [c["id"] for c in kept] == ["c0", "c1"]


def test_a_shar_folder_in_another_folder_serves_and_plays(nested, tmp_path):
    cwd = tmp_path / "elsewhere"
    with sde_server(os.path.relpath(nested, cwd), "--cache-dir", str(cwd / "cache"), cwd=cwd,
                    no_cache=False) as url:
        summary = json.loads(urllib.request.urlopen(url + "/api/summary").read())
        assert summary["utterances"] == 2
        wav = cwd / "c1.wav"
        wav.write_bytes(urllib.request.urlopen(url + "/audio/1.wav").read())
        assert sf.info(wav).duration == pytest.approx(0.5, abs=0.01)
