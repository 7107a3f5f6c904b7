"""`sde transcribe` arguments it cannot use are refused at once, naming the option and the fix, before
a model is loaded or any audio transcribed (the model named does not exist: it would fail later)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from sde.nemo.command import transcribe_command
from sde.nemo.model import nemo_available

SR = 16000


@pytest.fixture()
def manifest(tmp_path) -> Path:
    sf.write(tmp_path / "a0.wav", np.zeros(SR // 2, dtype=np.float32), SR)
    (tmp_path / "m.json").write_text(json.dumps({"audio_filepath": "a0.wav", "duration": 0.5, "text": "hi"}) + "\n")
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    return tmp_path / "m.json"


CASES = {
    # `--model "$MODEL"` with MODEL unset: it said "model path  is a directory"
    "empty --model": (["--model", ""], 2, "--model' / '-m': is empty; give a .nemo file or a NeMo model name"),
    # a compressed name over plain text: zcat and NeMo's readers rejected the file sde wrote
    "--out named .gz": (["--out", "{d}/out.json.gz"], 2, "{d}/out.json.gz: sde transcribe writes plain JSON Lines"),
    # an output folder that cannot be made: it failed after loading the model, naming a temp file
    "--out under a file": (["--out", "{d}/notes.txt/out.json"], 1,
                           "{d}/notes.txt/out.json: cannot write in {d}/notes.txt"),
}


@pytest.mark.parametrize("args, code, said", CASES.values(), ids=CASES.keys())
def test_unusable_arguments_are_refused_before_any_work(manifest, args, code, said):
    d = manifest.parent
    args = [a.format(d=d) for a in args]
    args = args if "--model" in args else [*args, "--model", str(d / "missing.nemo")]
    r = CliRunner().invoke(transcribe_command, [str(manifest), "--no-progress", *args])
    assert r.exit_code == code and said.format(d=d) in r.output, r.output
    assert "Traceback" not in r.output and ".tmp" not in r.output and "model file not found" not in r.output
    assert sorted(p.name for p in d.iterdir()) == ["a0.wav", "m.json", "notes.txt"]


@pytest.mark.nemo
@pytest.mark.skipif(not nemo_available(), reason="without NeMo, 'NeMo is not installed' is said first (import_for)")
@pytest.mark.parametrize("spec", ["missing.nemo", "./models/missing", "/nowhere/model.nemo"])
def test_a_model_file_that_is_not_there_is_refused_before_nemo_imports(tmp_path, spec):
    # it was said after importing NeMo's ASR collection (~14 s, and its telemetry lines)
    import subprocess
    import sys

    code = ("import sys\nfrom sde.nemo.model import import_for\ntry:\n    import_for(sys.argv[1])\n"
            "except Exception as e:\n    print(type(e).__name__, e)\nprint('nemo imported:', 'nemo.collections.asr' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, spec], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert f"TranscribeError model file not found: {spec}" in r.stdout, r.stdout + r.stderr
    assert "nemo imported: False" in r.stdout
