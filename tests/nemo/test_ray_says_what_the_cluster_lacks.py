"""Ray runs that cannot work on the cluster they got say so at once, naming what the user set: GPUs
asked of a cluster without any (the actors would never start: it waited silently for ever), and an
unreachable SDE_RAY_ADDRESS (its hint named --address, which the user never gave)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SDE_RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return {**env, **extra}


@pytest.fixture()
def manifest(tmp_path) -> Path:
    m = tmp_path / "m.json"  # nothing reads the audio: both runs stop before
    m.write_text("".join(json.dumps({"audio_filepath": f"a{k}.wav", "duration": 1.0, "text": "x"}) + "\n"
                         for k in range(3)), encoding="utf-8")
    return m


@pytest.fixture(scope="module")
def cpu_cluster() -> str:
    """A local Ray instance without GPUs (also on a machine that has some), by its address."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_gpus_per_worker_on_a_cluster_without_gpus_is_refused_at_once(manifest, tmp_path, cpu_cluster):
    out = tmp_path / "preds"
    # the timeout only ends a hang (the old behaviour): the refusal comes after Ray's connection
    r = subprocess.run([sys.executable, "-m", "sde.cli", "transcribe", str(manifest), "--model", "a_pretrained_name",
                        "--out", f"{out}/", "--engine", "ray", "--address", cpu_cluster, "--gpus-per-worker", "1"],
                       env=_env(), cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 1, r.stderr
    assert ("Error: --gpus-per-worker 1: the Ray cluster has no GPUs (2 CPUs only); leave it out (CPU workers) or "
            "connect to a cluster with GPUs (--address)") in r.stderr
    assert "Traceback" not in r.stderr
    assert list(out.iterdir()) == []  # no part file holding only its header


def test_an_unreachable_sde_ray_address_is_named_in_the_hint(manifest, tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("nemo.collections.asr")  # without NeMo, --model says to install it first
    r = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--model", "a_pretrained_name",
                        "--no-cache"],
                       env=_env(SDE_RAY_ADDRESS="127.0.0.1:1"),  # nothing listens on port 1
                       cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)
    assert "could not transcribe: cannot connect to the Ray cluster at 127.0.0.1:1" in r.stderr, r.stderr
    assert ("Without SDE_RAY_ADDRESS sde transcribes in its own process; with SDE_RAY_ADDRESS=local, on a Ray "
            "instance it starts on this machine") in r.stderr
    assert "--address" not in r.stderr  # sde stats has no such option
