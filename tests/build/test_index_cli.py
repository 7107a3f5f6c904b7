"""`sde index`: builds into the cache without serving, in bounded memory, resumable after Ctrl-C."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.interrupt_kit import interrupt_when

ROOT = Path(__file__).resolve().parents[2]


def _sde(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=300,
                          **kwargs)


def _generate(path: Path, utterances: int) -> Path:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_manifest.py"), str(path),
                    "--utterances", str(utterances), "--seed", "3"], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("index")
    return {n: _generate(folder / f"m{n}.json", n) for n in (20_000, 60_000, 240_000)}


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


BAD_ARGUMENTS = {
    "no cache to build into": (["--no-cache"], "--no-cache"),
    "memory without a unit": (["--memory-limit", "2"], "2GB or 512MB"),
    "zero threads": (["--threads", "0"], "give 1 or more"),
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


def _peak_anonymous_mb(args: list[str]) -> float:
    """Peak resident anonymous memory (MB) of the sde process and its workers together (sampled;
    file pages the kernel can drop at any time, e.g. of mapped tables, are not counted)."""
    process = subprocess.Popen([sys.executable, "-m", "sde.cli", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    total += _rss_anon_kb(p.pid)
            except (psutil.Error, OSError):
                pass
            peak = max(peak, total / 1024)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = process.communicate(timeout=300)
    done.set()
    sampler.join()
    assert process.returncode == 0, stderr
    return peak


def _rss_anon_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_does_not_grow_with_the_manifest_when_built_in_parts(manifests, tmp_path):
    def peak(n: int, part_size: str) -> float:
        return _peak_anonymous_mb(["index", str(manifests[n]), "--cache-dir", str(tmp_path / f"{n}-{part_size}"),
                                   "--part-size", part_size, "--threads", "2", "--memory-limit", "64MB"])

    small, big = peak(60_000, "1MB"), peak(240_000, "1MB")
    one_piece = peak(240_000, "1GB")
    print(f"peak anonymous memory: parts of 1 MB {small:.0f} MB (60k lines), {big:.0f} MB (240k); "
          f"one piece {one_piece:.0f} MB (240k)")
    assert big < small * 1.25 + 20, "four times the lines must not need more memory in parts"
    assert one_piece > big + 100, "the one-piece build of the same manifest needs far more"
