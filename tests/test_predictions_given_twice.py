"""`--predictions` given twice: click kept the last of a single-valued option and the first
model's predictions went unscored with exit 0; then a second file was refused. Now every command
that takes it merges each file as a hypothesis of its own (tests/test_predictions_several.py has
the rest), and reading one model's output as the manifest still compares two models (the real
CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)
TEXTS = ["the cat sat", "hello world", "good morning", "speech data explorer"]
# of the 10 words, model a misses one, model b four
A = ["the cat sat", "hello world", "good morning", "speech data exploder"]
B = ["the bat sat", "hello word", "good mourning", "speech dada explorer"]


def _sde(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SDE_PORT", "SDE_HOST", "SDE_AUTH")}
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**env, "PYTHONPATH": ROOT})


def _write(path: Path, preds: list[str] | None) -> Path:
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": t, **({"pred_text": preds[i]} if preds else {})}
            for i, t in enumerate(TEXTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    _write(tmp_path / "manifest.json", None)
    _write(tmp_path / "manifest_a.json", A)
    _write(tmp_path / "manifest_b.json", B)
    return tmp_path


@pytest.mark.parametrize("command", [["stats"], ["index"], ["export", "-o", "kept.json"]])
def test_a_second_predictions_file_is_merged_not_refused(files, command):
    r = _sde(*command, "manifest.json", "--predictions", "manifest_a.json", "--predictions", "manifest_b.json",
             "--cache-dir", "cache", cwd=files)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "Error:" not in r.stderr, r.stderr[-2000:]


def test_both_models_are_scored_whichever_way_they_are_given(files):
    for args, a in ((["manifest.json", "--predictions", "manifest_a.json", "--predictions", "manifest_b.json"],
                     "pred_text_manifest_a"),  # several files: each named by its own
                    (["manifest_a.json", "--predictions", "manifest_b.json"], "pred_text")):  # one model's output as the manifest
        ran = _sde("stats", *args, "--json", "--no-cache", cwd=files)
        assert ran.returncode == 0, ran.stderr[-2000:]
        scored = json.loads(ran.stdout)["hypotheses"]
        assert sorted(scored) == [a, "pred_text_manifest_b"]
        assert scored[a]["wer"] == pytest.approx(10.0, abs=0.01)
        assert scored["pred_text_manifest_b"]["wer"] == pytest.approx(40.0, abs=0.01)


def test_one_predictions_file_is_still_merged_as_pred_text(files):
    r = _sde("stats", "manifest.json", "--predictions", "manifest_b.json", "--json", "--no-cache", cwd=files)
    assert r.returncode == 0, r.stderr[-2000:]
    scored = json.loads(r.stdout)["hypotheses"]
    assert list(scored) == ["pred_text"] and scored["pred_text"]["wer"] == pytest.approx(40.0, abs=0.01)
