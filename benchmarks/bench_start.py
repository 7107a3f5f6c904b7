"""Start-up benchmark: `sde MANIFEST` from the command line until its first page answers.

    python benchmarks/bench_start.py benchmarks/output/synthetic_100000.json --runs 6
    python benchmarks/bench_start.py M --runs 6 --tree /tmp/old-checkout   # alternate with another version

A cold start has an empty cache folder (the dataset is built); a warm one reuses it. For each run:
seconds from the command's start until `GET /` answers, and the CPU seconds spent by then (the
server's process, and its alignment workers: children it has waited for), read from /proc. Each
start is a fresh process, as a user's is (Python and every import included). Linux only.
Manifests come from benchmarks/make_manifest.py (bench_load.py makes `synthetic_100000.json`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_scale import compiled  # noqa: E402  (a sibling script, not a package)

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def _cpu_s(pid: int) -> tuple[float, float]:
    """(the process's own user + system seconds, those of its children it has waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / TICKS, (cutime + cstime) / TICKS


def _settled(folder: Path, quiet_s: float = 1.0, timeout_s: float = 300) -> None:
    """Wait until nothing in ``folder`` has grown for ``quiet_s``: the server writes its dataset to
    the cache after it answers, and a start stopped before that leaves the next one cold."""
    last, since, t0 = -1, time.perf_counter(), time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        if size != last:
            last, since = size, time.perf_counter()
        elif time.perf_counter() - since >= quiet_s:
            return
        time.sleep(0.1)


def start_once(manifest: Path, cache: Path, tree: Path, timeout_s: float = 600) -> dict:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-c", "from sde.cli import main; main()", str(manifest), "--port", str(port),
               "--cache-dir", str(cache)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not _answers(f"http://127.0.0.1:{port}/"):
            if proc.poll() is not None:
                raise SystemExit(f"sde exited ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
            if time.perf_counter() - t0 > timeout_s:
                raise SystemExit(f"sde did not answer within {timeout_s:.0f} s")
            time.sleep(0.01)
        ready_s = time.perf_counter() - t0
        own, children = _cpu_s(proc.pid)
        _settled(cache)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"ready_s": ready_s, "cpu_s": own, "workers_cpu_s": children}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifests", type=Path, nargs="+")
    ap.add_argument("--runs", type=int, default=3, help="cold and warm starts of each manifest (default 3)")
    ap.add_argument("--tree", type=Path, default=None,
                    help="another checkout of sde: its starts alternate with this one's, for a before/after")
    args = ap.parse_args()
    trees = [ROOT] + ([args.tree.resolve()] if args.tree else [])
    for tree in trees:
        compiled(tree)
    print("| manifest | version | cold: ready | cold: CPU (server / workers) | warm: ready |")
    print("|---|---|---|---|---|")
    for manifest in args.manifests:
        results: dict[Path, dict[str, list]] = {t: {"cold": [], "warm": []} for t in trees}
        for _ in range(args.runs):
            for tree in trees:
                cache = Path(tempfile.mkdtemp(prefix="sde-bench-start-"))
                try:
                    results[tree]["cold"].append(start_once(manifest, cache, tree))
                    results[tree]["warm"].append(start_once(manifest, cache, tree))
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
        for tree in trees:
            cold, warm = results[tree]["cold"], results[tree]["warm"]

            def span(rows: list[dict], key: str) -> str:
                values = [r[key] for r in rows]
                return f"{min(values):.2f}–{max(values):.2f} (median {statistics.median(values):.2f})"

            name = "this" if tree == ROOT else str(tree)
            cpu = f"{span(cold, 'cpu_s')} / {span(cold, 'workers_cpu_s')}"
            print(f"| {manifest.name} | {name} | {span(cold, 'ready_s')} s | {cpu} s | {span(warm, 'ready_s')} s |")


if __name__ == "__main__":
    main()
