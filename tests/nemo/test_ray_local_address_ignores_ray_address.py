"""`local` as the Ray address (SDE_RAY_ADDRESS=local, --address local) starts a Ray instance on this
machine, as README says, even where RAY_ADDRESS names another cluster: with address=None ray.init
joins $RAY_ADDRESS's. Real local Ray instances, in processes of their own, RAY_ADDRESS pointing at
an address nothing listens on (joining it would fail at once: "cannot connect")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nemo.speech_kit import speech_rows, write_jsonl

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1


def _run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SDE_RAY_ADDRESS")}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env={**clean, "PYTHONPATH": str(REPO), "RAY_ADDRESS": UNREACHABLE, **env})


def test_a_local_session_is_the_instance_sde_starts_with_its_cpus_whatever_ray_address_says():
    pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    code = ("from sde.nemo.ray_engine import RayOptions, ray_session\n"
            "with ray_session(RayOptions(address='local', num_cpus=3)) as ray:\n"
            "    print(int(ray.cluster_resources().get('CPU', 0)))\n")
    r = _run(code)
    assert r.returncode == 0, r.stderr[-3000:]
    # the instance sde starts, of the (logical) CPUs it was given, as without an address
    assert r.stdout.strip().splitlines()[-1] == "3"


@pytest.mark.nemo
@pytest.mark.slow  # a Ray instance and a model actor that imports NeMo
def test_sde_ray_address_local_transcribes_on_this_machine_whatever_ray_address_says(audio_dir, tiny_nemo, tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from sde.dataset import build_dataset
    from sde.nemo.jobs import predictions_for

    manifest = write_jsonl(tmp_path / "data.json", speech_rows(audio_dir, tmp_path))
    here = predictions_for(build_dataset(manifest, workers=1), str(tiny_nemo), device="cpu", use_cache=False)
    code = ("import json, sys\nfrom sde.dataset import build_dataset\nfrom sde.nemo.jobs import predictions_for\n"
            "print(json.dumps(predictions_for(build_dataset(sys.argv[1], workers=1), sys.argv[2], use_cache=False)))\n")
    r = _run(code, str(manifest), str(tiny_nemo), SDE_RAY_ADDRESS="local")
    assert r.returncode == 0 and "cannot connect" not in r.stderr, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == here
