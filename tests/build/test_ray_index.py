"""`sde index --engine ray`: the parts of a big manifest built as Ray tasks (sde.build.ray_parts).

In-process builds share one real local Ray instance (num_cpus=2); the CLI runs connect to it by its
address, so the whole module starts Ray once. Skipped when Ray is not installed (the extra sde[ray]).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sde.build.load import load_dataset
from sde.build.part_files import build_and_write
from sde.build.parts import Part, split_lines, split_parts
from sde.build.ray_parts import FAULT_ENV, RAY_MISSING_MESSAGE, RayBuildError, RayEngine, built_on_ray, check_visible
from sde.build.stream import build_in_parts
from sde.dataset import DatasetOptions, build_dataset
from tests.build.build_kit import PART, assert_same_dataset, valid_rows, write_mixed_manifest, write_predictions
from tests.interrupt_kit import interrupt_when

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_mixed_manifest(tmp_path_factory.mktemp("ray-index"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", FAULT_ENV)}
    return {**env, "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), **extra}


def _sde(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env or _env(), cwd=cwd, check=False)


# ------------------------------------------------------------------------------------------------
# Without a cluster


def test_a_part_whose_files_the_driver_cannot_see_names_shared_storage(manifest, tmp_path):
    part = split_parts(str(manifest), PART)[0]
    info = build_and_write(part, DatasetOptions(), tmp_path, 0)
    check_visible(tmp_path, info, "node-7")  # where it was written: seen
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(RayBuildError) as error:
        check_visible(elsewhere, info, "node-7")
    assert "part 0 was built on node node-7" in str(error.value)
    assert "storage every node sees" in str(error.value) and "--cache-dir" in str(error.value)


CLI_REFUSALS = {
    "zero workers": (["--engine", "ray", "--workers", "0"], 2, "--workers"),
    "--address without the Ray engine": (["--address", "auto"], 2, "only with --engine ray"),
    "--workers without the Ray engine": (["--workers", "2"], 2, "only with --engine ray"),
    "a cluster nobody runs": (["--engine", "ray", "--address", "127.0.0.1:1"], 1,
                              "cannot connect to the Ray cluster at 127.0.0.1:1"),
}


@pytest.mark.parametrize("extra, code, said", CLI_REFUSALS.values(), ids=CLI_REFUSALS.keys())
def test_ray_options_that_cannot_work_are_refused_with_the_fix(manifest, tmp_path, extra, code, said):
    pytest.importorskip("ray")
    r = _sde("index", str(manifest), "--cache-dir", str(tmp_path), "--part-size", "4KB", *extra)
    assert r.returncode == code, r.stderr
    assert said in r.stderr and "Traceback" not in r.stderr


def test_ray_is_imported_only_when_a_ray_build_starts():
    code = "import sys, sde.cli, sde.build.load, sde.build.ray_parts\nassert 'ray' not in sys.modules\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert r.returncode == 0, r.stderr


def test_without_ray_the_message_names_the_extra(manifest, tmp_path):
    shadow = tmp_path / "no-ray"
    (shadow / "ray").mkdir(parents=True)
    (shadow / "ray" / "__init__.py").write_text('raise ImportError("Ray is not installed (hidden by the test)")\n')
    env = _env(PYTHONPATH=os.pathsep.join([str(shadow), str(REPO)]))
    r = _sde("index", str(manifest), "--cache-dir", str(tmp_path), "--part-size", "4KB", "--engine", "ray", env=env)
    assert r.returncode == 1, r.stderr
    assert RAY_MISSING_MESSAGE in r.stderr and "pip install 'sde[ray]'" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------------
# On a local Ray instance


OPTIONS = {
    "defaults": DatasetOptions(),
    "vocabulary and alphabet": DatasetOptions(vocab="VOCAB", alphabet="abcdefghijklmnopqrstuvwxyz '"),
    "a predictions file": DatasetOptions(predictions="PREDICTIONS"),
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_ray_built_dataset_is_the_local_one(manifest, tmp_path, ray_instance, options):
    if options.vocab:
        options = DatasetOptions(vocab=str(manifest.with_name("vocab.txt")), alphabet=options.alphabet)
    if options.predictions:  # matched once here, then each Ray task reads its part's predictions
        options = DatasetOptions(predictions=str(write_predictions(tmp_path, valid_rows(manifest))))
    messages: list[str] = []
    built = load_dataset(str(manifest), options, cache_dir=tmp_path, part_bytes=PART, engine=RayEngine(),
                         status=messages.append)
    assert any(m.startswith("building ") and "as Ray tasks (2 CPUs" in m for m in messages), messages
    assert_same_dataset(built, load_dataset(str(manifest), options, use_cache=False, part_bytes=PART, threads=1))
    assert_same_dataset(built, build_dataset(str(manifest), options))


def test_shards_built_as_ray_tasks_are_the_one_piece_dataset(manifest, tmp_path, ray_instance):
    lines = manifest.read_text(encoding="utf-8").splitlines(keepends=True)
    for k, (a, b) in enumerate([(0, 250), (250, 262), (262, 280), (280, 600)]):  # big, small, small, big
        (tmp_path / f"shard_{k}.json").write_text("".join(lines[a:b]), encoding="utf-8")
    pattern = str(tmp_path / "shard__OP_0..3_CL_.json")
    messages: list[str] = []
    built = load_dataset(pattern, cache_dir=tmp_path / "cache", part_bytes=PART, engine=RayEngine(),
                         status=messages.append)
    assert any("as Ray tasks" in m for m in messages), messages
    assert_same_dataset(built, build_dataset(pattern))


def test_ray_and_local_parts_are_the_same_files(manifest, tmp_path, ray_instance):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    build_in_parts(str(manifest), DatasetOptions(), local, part_bytes=PART, threads=1)
    build_in_parts(str(manifest), DatasetOptions(), on_ray, part_bytes=PART, engine=RayEngine(workers=1))
    files = sorted(p.name for p in local.iterdir() if p.is_file())
    assert len([f for f in files if f.endswith(".info")]) > 10
    assert sorted(p.name for p in on_ray.iterdir() if p.is_file()) == files
    assert [f for f in files if (local / f).read_bytes() != (on_ray / f).read_bytes()] == []


def test_a_worker_killed_mid_part_is_retried_and_the_dataset_is_complete(manifest, tmp_path, ray_instance,
                                                                          monkeypatch):
    marker = tmp_path / "died-once"
    monkeypatch.setenv(FAULT_ENV, f"{marker}:3")
    built = load_dataset(str(manifest), cache_dir=tmp_path / "cache", part_bytes=PART, engine=RayEngine())
    assert marker.exists(), "the worker building part 3 did not exit"
    assert_same_dataset(built, build_dataset(str(manifest)))


def test_a_task_that_cannot_read_the_manifest_names_the_node_and_the_fix(tmp_path, ray_instance):
    gone = tmp_path / "gone.json"
    written = split_lines(str(write_mixed_manifest(tmp_path, lines=20)), PART)[0]
    with pytest.raises(RayBuildError) as error:
        list(built_on_ray(DatasetOptions(), tmp_path / "build", [(0, Part(str(gone), written))]))
    assert f"cannot read the manifest {gone}" in str(error.value) and "storage every node sees" in str(error.value)


def _infos(cache: Path) -> list[Path]:
    return list(cache.glob("builds/*/part-*.info"))


def test_interrupted_ray_index_resumes_with_only_the_missing_parts(tmp_path, ray_instance):
    manifest = tmp_path / "m.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_manifest.py"), str(manifest),
                    "--utterances", "20000", "--seed", "3", "--quiet"], check=True, capture_output=True)
    cache = tmp_path / "cache"
    args = ["index", str(manifest), "--cache-dir", str(cache), "--part-size", "256KB", "--engine", "ray",
            "--address", ray_instance.get_runtime_context().gcs_address]
    parts = len(split_lines(str(manifest), 256_000))
    driver = subprocess.Popen([sys.executable, "-m", "sde.cli", *args], env=_env(), stderr=subprocess.PIPE, text=True)
    stderr = interrupt_when(driver, lambda: len(_infos(cache)) >= 3, "part built")
    assert driver.returncode == 130, stderr
    assert "Traceback" not in stderr
    done = len(_infos(cache))
    assert 3 <= done < parts
    resumed = _sde(*args)
    assert resumed.returncode == 0, resumed.stderr
    # a task finishing as the driver stopped may add a part: count what the re-run found
    kept = int(re.search(rf"resuming an interrupted build: (\d+) of {parts} parts are done", resumed.stderr)[1])
    assert done <= kept < parts
    assert f"building {parts - kept} parts as Ray tasks" in resumed.stderr
    assert "indexed 20,000 utterances" in resumed.stderr
    assert not list(cache.glob("builds/*")) and not list(cache.rglob(".tmp-*"))
    served = _sde("stats", str(manifest), "--cache-dir", str(cache), "--part-size", "256KB", "--json")
    fresh = _sde("stats", str(manifest), "--no-cache", "--part-size", "1GB", "--json")  # one piece, no Ray
    assert json.loads(served.stdout) == json.loads(fresh.stdout)
