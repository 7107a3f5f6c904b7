"""`sde transcribe --engine ray` when something fails mid-run: a model actor killed, the driver
interrupted. Kept apart from test_ray_engine.py, the rest of the Ray engine's tests, because these
two are its slowest (each starts NeMo-importing actors twice): under `--dist loadfile` one file runs
whole on one CI process, and two files run side by side.

They run the tiny NeMo model of conftest.py over espeak-ng speech on a real local Ray instance
(num_cpus=2), and skip when Ray is not installed (the extra sde[ray]).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sde.nemo.jobs import transcribe_manifest
from sde.nemo.parts import part_path
from sde.nemo.ray_engine import FAULT_ENV, RayOptions
from tests.interrupt_kit import interrupt_when
from tests.nemo.speech_kit import speech_rows, write_jsonl

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def manifest(audio_dir, tmp_path) -> Path:
    """Whole files, offset segments of one file, a relative path and a blank line."""
    return write_jsonl(tmp_path / "data.json", speech_rows(audio_dir, tmp_path), blank_after=2)


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for this module's runs (the engine uses a session that is already
    open, and leaves it open; the driver subprocess joins it by --address)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.nemo
@pytest.mark.slow  # the killed actor is started twice: two NeMo imports
def test_killed_actor_is_restarted_and_every_batch_arrives_once(manifest, tiny_nemo, tiny_model, tmp_path,
                                                               ray_instance, monkeypatch):
    marker = tmp_path / "actor-died"
    monkeypatch.setenv(FAULT_ENV, f"{marker}:2")  # the actor exits (os._exit) on its 2nd batch, once
    local = transcribe_manifest(manifest, tiny_model, out=tmp_path / "local.json", device="cpu", batch_size=1,
                                progress=False)
    progress: list[tuple[int, int]] = []
    on_ray = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "ray.json", batch_size=1, progress=False,
                                 engine="ray", ray=RayOptions(workers=1),
                                 on_progress=lambda done, total: progress.append((done, total)))
    assert marker.exists()  # the actor process really died
    assert progress == [(k, 5) for k in range(6)]  # each of the 5 batches delivered once
    assert on_ray.read_bytes() == local.read_bytes()


@pytest.mark.nemo
@pytest.mark.slow  # a real driver process on the module's Ray instance (--address), then a second run
def test_interrupted_driver_leaves_parts_the_rerun_completes(audio_dir, tiny_nemo, tiny_model, tmp_path,
                                                             ray_instance):
    d, dur = audio_dir
    rows = [{"audio_filepath": str(d / name), "duration": round(dur[name], 3), "text": str(k)}
            for k, name in enumerate(["one.wav", "two.wav", "three.wav"] * 30)]  # enough left when Ctrl-C lands
    m = tmp_path / "m.json"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    total = len(rows)
    out = tmp_path / "out.json"
    partial = part_path(out)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", FAULT_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    driver = subprocess.Popen(
        [sys.executable, "-m", "sde.cli", "transcribe", str(m), "--model", str(tiny_nemo), "--out", str(out),
         "--engine", "ray", "--address", ray_instance.get_runtime_context().gcs_address, "--batch-size", "1"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stderr = interrupt_when(driver, lambda: _records(partial) >= 2, "part written")
    assert driver.returncode == 130, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    kept = _records(partial)
    assert 2 <= kept < total and not out.exists()

    progress: list[tuple[int, int]] = []
    transcribe_manifest(m, str(tiny_nemo), out=out, batch_size=1, progress=False, engine="ray",
                        ray=RayOptions(workers=1), on_progress=lambda done, total: progress.append((done, total)))
    assert progress[0] == (kept, total) and progress[-1] == (total, total)
    assert len(progress) - 1 == total - kept  # only the missing utterances were transcribed again
    local = transcribe_manifest(m, tiny_model, out=tmp_path / "local.json", device="cpu", batch_size=1,
                                progress=False)
    assert out.read_bytes() == local.read_bytes()


def _records(partial: Path) -> int:
    """Complete records in a part file (a torn last line does not count)."""
    try:
        lines = partial.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines[1:-1] if re.match(r'^\{"k": ', line))
