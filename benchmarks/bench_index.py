"""Benchmark `sde index`: the dataset build with --engine local vs --engine ray on this machine.

    python benchmarks/bench_index.py                          # 1M utterances, both engines, 1 run each
    python benchmarks/bench_index.py --utterances 200000 --runs 3

The manifest is benchmarks/make_manifest.py's (seeded, two hypotheses), cached in /tmp. Each run is
the real CLI, `sde index MANIFEST --threads T --engine E`, into a fresh cache folder: wall time of the
whole command (Python and import start-up, Ray's local instance for --engine ray, the part builds,
the join on the driver, the cache write) and utterances/s. Both engines build the same parts with the
same code (sde.build.part_files), so on one machine Ray adds its start-up and scheduling and saves
nothing; its point is a cluster, where the part builds spread over every node's CPUs and the join
stays on the driver. Checks that both engines' datasets give the same `sde stats --json`. Prints
the machine's load first: numbers taken under load from other work are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def manifest(utterances: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"sde-bench-index-{utterances}.json"
    if not path.exists():
        partial = path.with_suffix(".partial.json")
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_manifest.py"), str(partial),
                        "--utterances", str(utterances), "--hypotheses", "2", "--seed", "1", "--quiet"], check=True)
        partial.rename(path)
    return path


def sde(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)  # a local instance: this machine's numbers
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, env=env,
                          check=False)


def index_once(path: Path, engine: str, threads: int, part_size: str, cache: Path) -> float:
    started = time.perf_counter()
    r = sde("index", str(path), "--cache-dir", str(cache), "--threads", str(threads), "--part-size", part_size,
            "--engine", engine)
    wall = time.perf_counter() - started
    if r.returncode != 0:
        sys.exit(f"sde index --engine {engine} failed:\n{r.stderr}")
    if not re.search(r"^building \d+ parts", r.stderr, re.MULTILINE):
        sys.exit(f"sde index --engine {engine} did not build in parts (is the manifest bigger than {part_size}?)")
    return wall


def stats(path: Path, cache: Path, part_size: str) -> dict:
    r = sde("stats", str(path), "--cache-dir", str(cache), "--part-size", part_size, "--json")
    if r.returncode != 0:
        sys.exit(r.stderr)
    return json.loads(r.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2, help="processes (local) / CPUs of the Ray instance")
    parser.add_argument("--part-size", default="32MB")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--engines", default="local,ray")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    path = manifest(args.utterances)
    print(f"manifest: {path} ({path.stat().st_size / 1e6:.0f} MB, {args.utterances:,} utterances), "
          f"--threads {args.threads}, --part-size {args.part_size}\n")
    rows, summaries = [], {}
    with tempfile.TemporaryDirectory(prefix="sde-bench-index-") as tmp:
        for engine in args.engines.split(","):
            walls = []
            for run in range(args.runs):
                cache = Path(tmp) / f"{engine}-{run}"
                walls.append(index_once(path, engine, args.threads, args.part_size, cache))
            summaries[engine] = stats(path, cache, args.part_size)
            best = min(walls)
            rows.append((engine, best, max(walls), args.utterances / best))
    print("| engine | best wall s | worst wall s | utterances/s (best) |")
    print("|---|---:|---:|---:|")
    for engine, best, worst, rate in rows:
        print(f"| {engine} | {best:.1f} | {worst:.1f} | {rate:,.0f} |")
    first = next(iter(summaries.values()))
    same = all(s == first for s in summaries.values())
    print(f"\nsame `sde stats --json` from every engine: {same}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
