"""A named pipe (FIFO) or a directory named like a WAV is there but is no audio file: `sde stats`
counted it as missing ("2 of 3 audio files are missing"). It is now counted as unreadable, with
what it is ("not a regular file (a named pipe)"), and never opened (opening a pipe nobody writes
to blocks forever): through the real CLI, and through the real server, whose audio and signal
routes answer 422 naming it instead of hanging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_audio_faults import SdeServer, assert_no_traceback

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("not_regular")
    sf.write(folder / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000), 16000)
    os.mkfifo(folder / "pipe.wav")
    (folder / "folder.wav").mkdir()
    lines = [{"audio_filepath": name, "duration": 0.5, "text": "a tone", "pred_text": "a tone"}
             for name in ("tone.wav", "pipe.wav", "folder.wav")]
    path = folder / "m.json"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_stats_counts_a_pipe_and_a_folder_as_unreadable_not_missing(manifest):
    run = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--no-cache"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "utterances       3" in run.stdout
    assert "missing" not in run.stderr
    assert "2 audio files are there but unreadable (2 utterances)" in run.stderr
    assert f"{manifest.parent}/pipe.wav: not a regular file (a named pipe)" in run.stderr
    assert f"{manifest.parent}/folder.wav: not a regular file (a directory)" in run.stderr


@pytest.mark.parametrize("uid, words", [(1, "it is a named pipe"), (2, "is a directory")], ids=["pipe", "folder"])
def test_the_server_answers_a_pipe_or_a_folder_without_opening_it(manifest, uid, words):
    with SdeServer(str(manifest)) as server:
        for route in (f"/audio/{uid}.wav", f"/audio/{uid}.ogg", f"/api/utterances/{uid}/signal"):
            answer = server.json(route, 422)  # a request that opened the pipe would never be answered
            assert words in answer["error"] and answer["reason"] == "not_a_file", answer
        assert server.get("/audio/0.wav")[0] == 200
        assert server.json("/api/summary", 200)["audio_missing"] == 0
    assert_no_traceback(server)
