"""`sde index`: builds into the cache without serving, in bounded memory, resumable after Ctrl-C."""

from __future__ import annotations

import json
import random
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.build.memory_kit import assert_memory_stays_flat, generate_manifest, peak_anonymous_mb
from tests.interrupt_kit import interrupt_when
from tests.mount_kit import read_only_view, small_tmpfs

ROOT = Path(__file__).resolve().parents[2]


def _sde(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=300,
                          **kwargs)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("index")
    return {n: generate_manifest(folder / f"m{n}.json", n) for n in (20_000, 60_000, 240_000)}


def test_an_indexed_dataset_is_served_from_the_cache(manifests, tmp_path):
    manifest = str(manifests[20_000])
    built = _sde("index", manifest, "--cache-dir", str(tmp_path), "--part-size", "512KB", "--threads", "2")
    assert built.returncode == 0, built.stderr
    assert "indexed 20,000 utterances" in built.stderr and f"sde {manifest}" in built.stderr
    served = _sde("stats", manifest, "--cache-dir", str(tmp_path), "--part-size", "512KB", "--json")
    assert served.returncode == 0, served.stderr
    fresh = _sde("stats", manifest, "--no-cache", "--part-size", "1GB", "--json")  # one piece, no cache
    assert json.loads(served.stdout) == json.loads(fresh.stdout)
    again = _sde("stats", manifest, "--cache-dir", str(tmp_path), "--part-size", "512KB")
    assert "loaded from cache" in again.stderr


def test_a_build_over_the_cache_size_limit_is_kept_and_the_older_one_removed(manifests, tmp_path):
    # 20,000 utterances build ~6 MB: a 1 MB limit keeps the newest build alone.
    env = {**os.environ, "SDE_CACHE_SIZE": "1MB"}
    first, second = str(manifests[20_000]), str(manifests[60_000])
    for manifest in (first, second):
        built = _sde("index", manifest, "--cache-dir", str(tmp_path), "--part-size", "512KB", env=env)
        assert built.returncode == 0 and "Traceback" not in built.stderr, built.stderr
    assert f"removed the cached build of {Path(first).name}" in built.stderr and "SDE_CACHE_SIZE" in built.stderr
    kept = _sde("stats", second, "--cache-dir", str(tmp_path), "--part-size", "512KB", env=env)
    assert "loaded from cache" in kept.stderr
    removed = _sde("stats", first, "--cache-dir", str(tmp_path), "--part-size", "512KB", env=env)
    assert removed.returncode == 0 and "loaded from cache" not in removed.stderr


BAD_ARGUMENTS = {
    "no cache to build into": (["--no-cache"], "--no-cache"),
    "memory without a unit": (["--memory-limit", "2"], "2GB or 512MB"),
    "zero threads": (["--threads", "0"], "give 1 or more"),
    # taken before, then DuckDB refused nearly every query ("Out of Memory Error") with the server up
    "a memory limit too small for any query": (["--memory-limit", "1KB"], "too little memory for sde's queries"),
    "a memory limit of nothing": (["--memory-limit", "0GB"], "too little memory for sde's queries"),  # not "no amount"
    "a part size that is not one": (["--part-size", "big"], "--part-size"),
}


@pytest.mark.parametrize("extra, said", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_engine_arguments_are_usage_errors_naming_the_fix(manifests, tmp_path, extra, said):
    result = _sde("index", str(manifests[20_000]), "--cache-dir", str(tmp_path), *extra)
    assert result.returncode == 2
    assert said in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_during_a_build_keeps_the_finished_parts_for_the_next_run(manifests, tmp_path):
    manifest = str(manifests[240_000])
    args = ["index", manifest, "--cache-dir", str(tmp_path), "--part-size", "1MB", "--threads", "2"]
    process = subprocess.Popen([sys.executable, "-m", "sde.cli", *args], stderr=subprocess.PIPE, text=True)
    stderr = interrupt_when(process, lambda: len(list(tmp_path.glob("builds/*/part-*.info"))) >= 8, "8 parts built",
                            timeout_s=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    done = len(list(tmp_path.glob("builds/*/part-*.info")))
    assert done >= 8
    assert not list(tmp_path.rglob(".tmp-*")), "a half-written part was left behind"
    resumed = _sde(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming an interrupted build: " in resumed.stderr
    assert not list(tmp_path.glob("builds/*")), "the parts are removed once the dataset is stored"
    served = _sde("stats", manifest, "--cache-dir", str(tmp_path), "--part-size", "1MB", "--json")
    fresh = _sde("stats", manifest, "--no-cache", "--part-size", "1GB", "--json")
    assert json.loads(served.stdout) == json.loads(fresh.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_does_not_grow_with_the_manifest_when_built_in_parts(manifests, tmp_path):
    assert_memory_stays_flat(lambda n, part_size: peak_anonymous_mb(
        ["index", str(manifests[n]), "--cache-dir", str(tmp_path / f"{n}-{part_size}"), "--part-size", part_size,
         "--threads", "2", "--memory-limit", "64MB"]))


@pytest.mark.parametrize("part_size", ["512KB", "1GB"], ids=["built in parts", "built in one piece"])
def test_the_dataset_on_disk_is_no_larger_than_its_manifest(manifests, tmp_path, part_size):
    manifest = manifests[20_000]
    built = _sde("index", str(manifest), "--cache-dir", str(tmp_path), "--part-size", part_size, "--threads", "2")
    assert built.returncode == 0, built.stderr
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert 0 < on_disk <= manifest.stat().st_size, (on_disk, manifest.stat().st_size)


def test_sde_index_into_a_folder_it_cannot_write_fails_with_the_reason(manifests, tmp_path):
    # it said "indexed 20,000 utterances … into DIR; serve them with: …" and exited 0, storing nothing
    (tmp_path / "src").mkdir()
    with read_only_view(tmp_path / "src", tmp_path / "ro") as view:
        result = _sde("index", str(manifests[20_000]), "--cache-dir", str(view))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    # it said so after building the whole dataset: a batch job's hours, for nothing
    assert f"cannot index into {view}: it is on a read-only file system; nothing was built" in result.stderr
    assert "reading" not in result.stderr and "indexed" not in result.stderr


def test_sde_index_into_a_folder_others_may_write_fails_before_building(manifests, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    result = _sde("index", str(manifests[20_000]), "--cache-dir", str(shared))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot index into {shared}: it is writable by every user" in result.stderr
    assert "reading" not in result.stderr and not list(shared.iterdir())


def test_a_part_by_part_build_in_a_full_cache_folder_goes_on_without_it(manifests, tmp_path):
    # a worker's "No space left on device" reached the terminal as a 78-line traceback
    with small_tmpfs(tmp_path / "full", "1m") as full:
        result = _sde("stats", str(manifests[20_000]), "--cache-dir", str(full), "--part-size", "1MB", "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"warning: cannot build in the cache folder {full}" in result.stderr
    assert "could not write the cache" not in result.stderr, "the full folder was warned of twice"
    assert json.loads(result.stdout)["utterances"] == 20_000


def test_a_join_short_of_duckdb_memory_says_which_knobs_to_turn(tmp_path):
    # 50,000 lines of 20 words never seen twice: DuckDB sums a 1M-word vocabulary. With its floor of
    # 64MB on 8 threads it ran out, and the build ended in a 20-line DuckDB traceback.
    rng = random.Random(1)
    manifest = tmp_path / "unique_words.json"
    with manifest.open("w") as f:
        for i in range(50_000):
            words = " ".join(f"w{rng.getrandbits(40):x}" for _ in range(20))
            f.write(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": words,
                                "pred_text": words}) + "\n")
    args = ["index", str(manifest), "--cache-dir", str(tmp_path / "cache"), "--part-size", "4MB"]
    short = _sde(*args, "--memory-limit", "64MB", "--threads", "8")
    assert short.returncode == 1 and "Traceback" not in short.stderr, short.stderr[-3000:]
    said = short.stderr.strip().splitlines()[-1]
    assert said.startswith("Error: summing the vocabulary's word counts needs more memory than --memory-limit "
                           "64MB allows"), said
    assert "give a higher --memory-limit, or fewer --threads" in said
    enough = _sde(*args, "--memory-limit", "512MB", "--threads", "2")
    assert enough.returncode == 0, enough.stderr[-3000:]
    assert "resuming an interrupted build: 7 of 7 parts are done" in enough.stderr
    assert "indexed 50,000 utterances" in enough.stderr


def test_the_serve_command_it_prints_finds_the_build(tmp_path):
    """The printed command keeps the data options the build was keyed by: `sde t/m.json` alone, as
    printed before, built another dataset whose tarred audio was all missing."""
    import shlex

    from tests.sources.tar_kit import make_tarred

    tarred = make_tarred(tmp_path / "tarred")
    cache = tmp_path / "cache with space"
    built = _sde("index", str(tarred.manifest), "--tarred-audio", tarred.pattern, "--normalize", "lower",
                 "--cache-dir", str(cache), "--checks", "--engine", "local")
    assert built.returncode == 0, built.stderr
    command = shlex.split(built.stderr.split("serve them with: ", 1)[1].splitlines()[0])
    assert command[0] == "sde" and "--checks" not in command and "--engine" not in command
    served = _sde("stats", *command[1:])
    assert served.returncode == 0, served.stderr
    assert "loaded from cache" in served.stderr


def test_the_serve_command_it_prints_leaves_the_store_credentials_out(tmp_path):
    # What sde index prints lands in batch job logs and CI output: S3's key and secret and any
    # token in --storage-options are shown as "…", the rest (the endpoint) as given.
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"w{i}"}) + "\n"
                                for i in range(20)))
    options = {"endpoint_url": "http://127.0.0.1:9", "key": "AKIAEXAMPLE", "secret": "hunter2",
               "client_kwargs": {"aws_session_token": "tok123"}}
    built = _sde("index", str(manifest), "--cache-dir", str(tmp_path / "cache"), "--storage-options",
                 json.dumps(options))
    assert built.returncode == 0, built.stderr
    for secret in ("AKIAEXAMPLE", "hunter2", "tok123"):
        assert secret not in built.stderr + built.stdout
    said = built.stderr.split("serve them with: ", 1)[1]
    assert '"endpoint_url": "http://127.0.0.1:9"' in said and '"secret": "…"' in said
    assert "credentials in --storage-options shown as …" in said


@pytest.mark.parametrize("how", ["--cache-dir", "SDE_CACHE_DIR"])
def test_a_cache_folder_written_with_a_tilde_is_the_home_folders(tmp_path, how):
    # Quoted in a job script ('~/sde-cache'), the shell leaves "~" as it is: the parts of a build
    # went to a literal "~" folder under the current one, the dataset to the home folder, and the
    # join of the parts failed (DuckDB: no files match ~/sde-cache/builds/…).
    manifest = generate_manifest(tmp_path / "m.json", 3_000)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    args = ["--cache-dir", "~/sde-cache"] if how == "--cache-dir" else []
    if how == "SDE_CACHE_DIR":
        env["SDE_CACHE_DIR"] = "~/sde-cache"
    built = subprocess.run([sys.executable, "-m", "sde.cli", "index", str(manifest), "--part-size", "64KB", *args],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    assert not (tmp_path / "~").exists()
    assert (home / "sde-cache" / "cache.db").is_file()
    assert f"into {home / 'sde-cache'}" in built.stderr


def test_a_full_temporary_folder_is_one_message_not_a_worker_traceback(tmp_path):
    # --no-cache builds its parts in TMPDIR: full, a worker's OSError came back as 79 lines of
    # multiprocessing's RemoteTraceback.
    manifest = generate_manifest(tmp_path / "m.json", 60_000)
    with small_tmpfs(tmp_path / "tiny", "1m", mode="1777") as tiny:
        r = _sde("stats", str(manifest), "--no-cache", "--part-size", "1MB", env={**os.environ, "TMPDIR": str(tiny)})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "Error: no space left on the device" in r.stderr and "TMPDIR" in r.stderr, r.stderr[-1000:]
