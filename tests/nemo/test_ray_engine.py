"""`sde transcribe --engine ray`: the part file both engines share, and the Ray engine itself.

Pure parts (utterance keys, the part file, the CLI's engine options, Ray missing) run everywhere.
Tests marked `nemo` run the tiny NeMo model of conftest.py over espeak-ng speech; the Ray ones run a
real local Ray instance (num_cpus=2) and skip when Ray is not installed (the extra sde[ray]). Each
Ray run starts model actors that import NeMo (~8 s each on a 2-core machine), so they are few; the
two slowest (a killed actor, an interrupted driver) are in test_ray_engine_faults.py, a file of its
own so that CI's two processes (`--dist loadfile`) run the two halves side by side.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sde.nemo.command import transcribe_command
from sde.nemo.infer import SegmentRef
from sde.nemo.jobs import transcribe_manifest
from sde.nemo.model import TranscribeError
from sde.nemo.parts import PartFile, load_part, part_header, part_path, read_entries, utterance_key
from sde.nemo.ray_engine import RAY_MISSING_MESSAGE, RayOptions
from tests.nemo.speech_kit import read_jsonl, speech_rows, write_jsonl
from tests.sources.tar_kit import make_tarred

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def manifest(audio_dir, tmp_path) -> Path:
    """Whole files, offset segments of one file, a relative path and a blank line."""
    return write_jsonl(tmp_path / "data.json", speech_rows(audio_dir, tmp_path), blank_after=2)


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the in-process Ray runs of this module (the engine uses a session
    that is already open, and leaves it open)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


# ------------------------------------------------------------------------------------------------
# Utterance keys and the part file (no NeMo, no Ray)


BASE = ("/data/m.json", 3, SegmentRef("/a/x.wav", 1.5, 2.0))


@pytest.mark.parametrize("changed", [
    ("/data/other.json", 3, SegmentRef("/a/x.wav", 1.5, 2.0)),   # another manifest
    ("/data/m.json", 4, SegmentRef("/a/x.wav", 1.5, 2.0)),       # another line
    ("/data/m.json", 3, SegmentRef("/a/y.wav", 1.5, 2.0)),       # another audio file
    ("/data/m.json", 3, SegmentRef("/a/x.wav", 1.6, 2.0)),       # another offset
    ("/data/m.json", 3, SegmentRef("/a/x.wav", 1.5, None)),      # another duration
])
def test_utterance_key_changes_with_what_is_transcribed(changed):
    assert utterance_key(*BASE) == utterance_key(*BASE)
    assert utterance_key(*changed) != utterance_key(*BASE)


def test_part_file_keeps_first_prediction_and_stops_at_a_torn_line(tmp_path):
    path = tmp_path / "o.json.partial"
    header = {"sde_partial": 2, "manifest": "/m.json", "model": "m.nemo", "field": "pred_text"}
    with PartFile(path, header, {"a": "first"}) as part:
        part.add([("b", "bee"), ("a", "again")])
    with path.open("a") as f:
        f.write('{"k": "c", "p": "tor')
    assert load_part(path, header) == {"a": "first", "b": "bee"}


@pytest.mark.parametrize("other", [
    {"model": "other.nemo"},
    {"field": "pred_text_b"},
    {"manifest": "/other.json"},
    {"sde_partial": 1},
])
def test_part_file_of_another_job_is_not_resumed(tmp_path, other):
    path = tmp_path / "o.json.partial"
    header = {"sde_partial": 2, "manifest": "/m.json", "model": "m.nemo", "field": "pred_text"}
    with PartFile(path, header, {"a": "x"}):
        pass
    assert load_part(path, {**header, **other}) == {}


@pytest.mark.nemo
def test_local_engine_resumes_by_key_after_the_manifest_grew(manifest, tiny_model, tmp_path):
    """A part file records utterances, not positions: lines added to the manifest after an
    interruption are transcribed, the recorded ones are not, whichever engine wrote them."""
    full = transcribe_manifest(manifest, tiny_model, out=tmp_path / "full.json", device="cpu", progress=False)
    entries = read_entries(manifest, None, None)
    predictions = [r["pred_text"] for r in read_jsonl(full)]
    out = tmp_path / "o.json"
    with PartFile(part_path(out), part_header(manifest, tiny_model, "pred_text"), {}) as part:
        part.add([(entries[k].key, predictions[k]) for k in (0, 2, 3)])
    with manifest.open("a") as f:
        f.write(manifest.read_text().splitlines()[0] + "\n")  # a sixth line: line 1's audio again
    progress: list[tuple[int, int]] = []
    transcribe_manifest(manifest, tiny_model, out=out, device="cpu", progress=False,
                        on_progress=lambda done, total: progress.append((done, total)))
    assert progress[0] == (3, 6) and progress[-1] == (6, 6)
    assert [r["pred_text"] for r in read_jsonl(out)] == predictions + predictions[:1]
    assert not part_path(out).exists()


# ------------------------------------------------------------------------------------------------
# The CLI's engine options and a missing Ray (no NeMo, no Ray run)


@pytest.mark.parametrize("args, message", [
    (["--address", "auto"], "--address: only with --engine ray"),
    (["--workers", "2", "--gpus-per-worker", "1"], "--workers, --gpus-per-worker: only with --engine ray"),
    (["--engine", "ray", "--shard", "0/2"], "--engine ray splits it itself"),
    (["--engine", "ray", "--merge"], "--engine ray splits it itself"),
    (["--engine", "ray", "--device", "cpu"], "use --gpus-per-worker"),
    (["--engine", "ray", "--workers", "0"], "--workers"),
    (["--engine", "ray", "--gpus-per-worker", "-1"], "--gpus-per-worker"),
    (["--engine", "spark"], "--engine"),
])
def test_engine_options_that_do_not_fit_are_usage_errors(manifest, args, message):
    r = CliRunner().invoke(transcribe_command, [str(manifest), *args])
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_ray_is_imported_only_when_a_ray_run_starts():
    code = ("import sys, sde.cli, sde.nemo.command, sde.nemo.jobs, sde.nemo.ray_engine\n"
            "assert 'ray' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_ray_engine_without_ray_names_the_extra(tmp_path, write_manifest):
    shadow = tmp_path / "no-ray"
    (shadow / "ray").mkdir(parents=True)
    (shadow / "ray" / "__init__.py").write_text('raise ImportError("Ray is not installed (hidden by the test)")\n')
    m = write_manifest([{"audio_filepath": "a.wav", "duration": 1.0, "text": "a"}])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), str(REPO)])}
    r = subprocess.run([sys.executable, "-m", "sde.cli", "transcribe", str(m), "--model", "m.nemo", "--engine", "ray",
                        "--out", str(tmp_path / "o.json")], env=env, capture_output=True, text=True, cwd=tmp_path,
                       check=False, timeout=120)
    assert r.returncode == 2, r.stderr
    assert RAY_MISSING_MESSAGE in r.stderr and "pip install 'sde[ray]'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("o.json*"))


UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: ray.init alone would retry for minutes

CONNECT_CASES = {
    "sde transcribe --address": [
        "-m", "sde.cli", "transcribe", "{manifest}", "--model", "m_pretrained", "--engine", "ray",
        "--address", UNREACHABLE],
    # the UI's background job and `sde MANIFEST --model` go through predictions_for
    "SDE_RAY_ADDRESS": [
        "-c", "import sys\nfrom sde.dataset import build_dataset\nfrom sde.nemo.jobs import predictions_for\n"
              "from sde.nemo.model import TranscribeError\n"
              "try:\n    predictions_for(build_dataset(sys.argv[1], workers=1), 'm_pretrained', use_cache=False)\n"
              "except TranscribeError as e:\n    sys.exit(f'Error: {e}')\n", "{manifest}"],
}


@pytest.mark.parametrize("case", list(CONNECT_CASES))
def test_unreachable_cluster_is_named_at_once(manifest, tmp_path, case):
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), SDE_RAY_ADDRESS=UNREACHABLE)
    args = [a.replace("{manifest}", str(manifest)) for a in CONNECT_CASES[case]]
    r = subprocess.run([sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True, check=False,
                       timeout=120)
    assert r.returncode == 1, r.stderr
    assert f"Error: cannot connect to the Ray cluster at {UNREACHABLE}" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------------
# Ray runs with the tiny model


@pytest.mark.nemo
def test_ray_output_equals_local_line_for_line(manifest, tiny_nemo, tmp_path, ray_instance):
    local = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "local.json", device="cpu", batch_size=2,
                                progress=False)
    on_ray = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "ray.json", batch_size=2, progress=False,
                                 engine="ray", ray=RayOptions(workers=1))
    assert on_ray.read_bytes() == local.read_bytes()
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.nemo
def test_tar_members_on_ray_equal_the_local_run(tiny_nemo, tmp_path, ray_instance):
    # the members are read by seek in the Ray tasks, each with its own member index
    data = make_tarred(tmp_path / "tarred")
    tars = (str(data.folder / "audio_0.tar"), str(data.folder / "audio_1.tar"))
    local = transcribe_manifest(data.manifest, str(tiny_nemo), out=tmp_path / "local.json", device="cpu",
                                batch_size=2, progress=False, tarred_audio=tars)
    on_ray = transcribe_manifest(data.manifest, str(tiny_nemo), out=tmp_path / "ray.json", batch_size=2,
                                 progress=False, engine="ray", ray=RayOptions(workers=1), tarred_audio=tars)
    assert on_ray.read_bytes() == local.read_bytes()


def test_workers_that_would_hold_every_cpu_are_refused(manifest, ray_instance):
    """Each model actor holds a CPU: with all of them held no task could decode audio, and the run
    would wait for ever. The module's instance has 2 CPUs."""
    with pytest.raises(TranscribeError, match="would hold all 2 CPUs .* use --workers 1 or fewer"):
        transcribe_manifest(manifest, "a_pretrained_name", out=manifest.parent / "o.json", progress=False,
                            engine="ray", ray=RayOptions(workers=2))


@pytest.mark.nemo
@pytest.mark.slow  # one more actor start (a NeMo import)
def test_background_transcription_uses_the_configured_ray_address(manifest, tiny_nemo, ray_instance, monkeypatch):
    """predictions_for (`sde MANIFEST --model`, the UI's "Transcribe with NeMo" job) runs on Ray when
    SDE_RAY_ADDRESS is set, with the same predictions as in this process."""
    from sde.dataset import build_dataset
    from sde.nemo.jobs import RAY_ADDRESS_ENV, predictions_for

    dataset = build_dataset(manifest, workers=1)
    here = predictions_for(dataset, str(tiny_nemo), device="cpu", use_cache=False)
    monkeypatch.setenv(RAY_ADDRESS_ENV, "local")  # the module's instance is open: it is used
    progress: list[tuple[int, int]] = []
    on_ray = predictions_for(dataset, str(tiny_nemo), use_cache=False,
                             on_progress=lambda done, total: progress.append((done, total)))
    assert on_ray == here and len(on_ray) == 5
    assert progress[0] == (0, 5) and progress[-1] == (5, 5)
