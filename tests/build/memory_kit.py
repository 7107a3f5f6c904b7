"""Memory of a build measured from outside (sampled /proc of sde and its workers), and the
seeded manifests it is measured on: what the "memory does not grow" tests share."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def generate_manifest(path: Path, utterances: int) -> Path:
    """A seeded benchmark manifest (benchmarks/make_manifest.py) of ``utterances`` lines."""
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_manifest.py"), str(path),
                    "--utterances", str(utterances), "--seed", "3"], check=True, capture_output=True)
    return path


def peak_anonymous_mb(args: list[str]) -> float:
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
                    total += rss_anon_kb(p.pid)
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


def rss_anon_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0



def assert_memory_stays_flat(peak: Callable[[int, str], float]) -> None:
    """``peak(lines, part_size)``: a build's peak anonymous memory (MB). Built in parts of 1 MB,
    four times the lines (60k → 240k) must not need more; the one-piece build of 240k needs far more."""
    small, big = peak(60_000, "1MB"), peak(240_000, "1MB")
    one_piece = peak(240_000, "1GB")
    print(f"peak anonymous memory: parts of 1 MB {small:.0f} MB (60k lines), {big:.0f} MB (240k); "
          f"one piece {one_piece:.0f} MB (240k)")
    assert big < small * 1.25 + 20, "four times the lines must not need more memory in parts"
    assert one_piece > big + 100, "the one-piece build of the same lines needs far more"
