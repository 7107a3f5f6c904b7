#!/usr/bin/env python3
"""How long a simple request waits while the server checks its audio files in the background.

    python benchmarks/bench_presence.py [--utterances 1000000] [--mean-words 15] [--existing N]
                                        [--manifest M] [--cache-dir DIR] [--seconds-after 2]

Generates (once) a seeded manifest with benchmarks/make_manifest.py, indexes it into CACHE_DIR
(`sde index`, untimed: the server then starts warm), starts `python -m sde.cli MANIFEST --port 0
--cache-dir DIR` and, from the moment it listens, sends GET /api/utterances?page=P (a new page each
time, one connection each, one after another, 20 ms apart) until the audio-file check has answered
(its rows carry `audio_exists`) and SECONDS_AFTER more. Prints the check's duration and the
requests' latency during and after it.

--existing N: the first N lines' audio files exist (empty files written into a temporary folder,
the rest of the lines point at files that are not there, in the same folders); by default no file
exists (the synthetic manifest's folders are not there either). --manifest M: serve M instead.
Latencies of the requests answered during the check are listed in order when there are few.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manifest_for(utterances: int, mean_words: int, existing: int, work: Path) -> Path:
    base = ROOT / "benchmarks" / "output" / f"synthetic_{utterances}_{mean_words}w.json"
    if not base.exists():
        base.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_manifest.py"), str(base), "--utterances",
                        str(utterances), "--mean-words", str(mean_words), "--seed", "0", "--quiet"], check=True)
    if not existing:
        return base
    # the same lines, their audio under `work`; the first `existing` files are written (empty)
    out = work / base.name
    with base.open() as src, out.open("w") as dst:
        for i, line in enumerate(src):
            row = json.loads(line)
            row["audio_filepath"] = str(work / row["audio_filepath"])
            if i < existing:
                Path(row["audio_filepath"]).parent.mkdir(parents=True, exist_ok=True)
                Path(row["audio_filepath"]).touch()
            dst.write(json.dumps(row) + "\n")
    return out


def get(port: int, path: str) -> tuple[float, dict]:
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        body = conn.getresponse().read()
    finally:
        conn.close()
    return time.perf_counter() - t, json.loads(body)


def start_server(manifest: Path, cache_dir: Path) -> tuple[subprocess.Popen, int, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sde.cli", str(manifest), "--port", "0", "--cache-dir", str(cache_dir)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port: list[int] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if found and not port:
                port.append(int(found.group(1)))
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(300):
        proc.kill()
        raise RuntimeError("sde did not start")
    return proc, port[0], time.perf_counter() - started


def measure(port: int, seconds_after: float, limit_s: float = 120.0) -> dict:
    during: list[float] = []
    after: list[float] = []
    start = time.perf_counter()
    done_at = None
    page = 0
    while time.perf_counter() - start < limit_s:
        page += 1
        latency, body = get(port, f"/api/utterances?page={page}&page_size=50")
        checked = bool(body.get("rows")) and "audio_exists" in body["rows"][0]
        if checked and done_at is None:
            done_at = time.perf_counter() - start
        (after if checked else during).append(latency)
        if done_at is not None and time.perf_counter() - start > done_at + seconds_after:
            break
        time.sleep(0.02)
    return {"check_s": done_at, "during": during, "after": after}


def describe(latencies: list[float]) -> str:
    if not latencies:
        return "—"
    ms = sorted(x * 1000 for x in latencies)
    return f"{len(ms)} requests, median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=1_000_000)
    ap.add_argument("--mean-words", type=int, default=15)
    ap.add_argument("--existing", type=int, default=0, metavar="N")
    ap.add_argument("--manifest", type=Path, help="serve this manifest instead of a generated one")
    ap.add_argument("--cache-dir", type=Path, help="a built dataset's cache (default: a temporary one)")
    ap.add_argument("--seconds-after", type=float, default=2.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sde-presence-"))
    try:
        manifest = args.manifest or manifest_for(args.utterances, args.mean_words, args.existing, work)
        cache_dir = args.cache_dir or work / "cache"
        subprocess.run([sys.executable, "-m", "sde.cli", "index", str(manifest), "--cache-dir", str(cache_dir)],
                       cwd=ROOT, check=True, capture_output=True)
        proc, port, start_s = start_server(manifest, cache_dir)
        try:
            got = measure(port, args.seconds_after)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        served = manifest.name if args.manifest else f"{args.utterances:,} utterances, {args.existing:,} audio files present"
        print(f"{served}; server listening after {start_s:.1f} s; audio check answered "
              f"{got['check_s'] or float('nan'):.1f} s after that")
        print(f"GET /api/utterances while the check runs: {describe(got['during'])}")
        if 0 < len(got["during"]) <= 20:
            print("  in order (ms):", ", ".join(f"{x * 1000:.0f}" for x in got["during"]))
        print(f"GET /api/utterances after it:            {describe(got['after'])}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
