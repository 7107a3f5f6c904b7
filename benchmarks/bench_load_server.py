#!/usr/bin/env python3
"""Concurrent clients against a real sde server: latency per request kind and server memory.

    python benchmarks/bench_load_server.py [--utterances 100000] [--clients 20] [--requests 50]
                                           [--real-audio 50] [--seed 0] [--out DIR]

Generates a synthetic manifest (benchmarks/make_manifest.py, with --real-audio files so audio
requests decode real WAVs), starts `python -m sde.cli MANIFEST --port 0 --no-cache`, runs one
warm-up round (every kind of request, so the caches are filled), measures the server's RSS, then
runs CLIENTS threads x REQUESTS mixed requests each (filters, sorts, pages of /api/utterances, one
utterance, the vocabulary, /audio/ID.wav with and without Range, the waveform/spectrogram signal)
over HTTP/1.1 on 127.0.0.1, and prints a markdown table: count, errors, p50/p95/max latency per kind,
and RSS before/after. tests/test_load.py runs the same code with assertions.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent

FILTERS = ["{wer} > 20", "{duration} < 5", '{speaker} = "spk0001"', "{text} contains the", "{snr} >= 10 && {wer} > 0",
           '{lang} = "en"', "{num_words} > 10 && {wer} < 50"]
SORTS = ["-wer", "duration", "-duration,wer", "speaker,-wer", "text", "-snr"]


@dataclass
class Result:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


def make_manifest(out: Path, utterances: int, real_audio: int, seed: int) -> Path:
    manifest = out / f"load_{utterances}.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_manifest.py"), str(manifest), "--utterances",
                    str(utterances), "--seed", str(seed), "--real-audio", str(real_audio), "--quiet"],
                   check=True, cwd=ROOT, timeout=300)
    return manifest


class Server:
    def __init__(self, manifest: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "sde.cli", str(manifest), "--port", "0", "--no-cache"],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        self.port: int | None = None
        ready = threading.Event()

        def out() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    ready.set()

        def err() -> None:
            for line in self.proc.stderr:  # type: ignore[union-attr]
                self.stderr.append(line)

        threading.Thread(target=out, daemon=True).start()
        threading.Thread(target=err, daemon=True).start()
        deadline = time.monotonic() + 180
        while not ready.is_set() and self.proc.poll() is None and time.monotonic() < deadline:
            ready.wait(0.05)
        if self.port is None:
            self.stop()
            raise RuntimeError("sde did not start:\n" + "".join(self.stderr)[-3000:])

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def request_plan(rng: random.Random, n_utts: int, n_audio: int, count: int) -> list[tuple[str, str, dict]]:
    """`count` (kind, path, headers) requests, mixed."""
    plan = []
    for _ in range(count):
        r = rng.random()
        if r < 0.22:
            q = {"filter": rng.choice(FILTERS), "sort": rng.choice(SORTS), "page": rng.randrange(3),
                 "page_size": rng.choice([50, 100])}
            plan.append(("utterances filter+sort", "/api/utterances?" + urlencode(q), {}))
        elif r < 0.34:
            q = {"sort": rng.choice(SORTS), "page": rng.randrange(0, n_utts // 100)}
            plan.append(("utterances page", "/api/utterances?" + urlencode(q), {}))
        elif r < 0.46:
            plan.append(("utterance", f"/api/utterances/{rng.randrange(n_utts)}", {}))
        elif r < 0.56:
            q = {"sort": rng.choice(["-count", "word", "accuracy", "-accuracy"]), "page": rng.randrange(5)}
            if rng.random() < 0.5:
                q["filter"] = rng.choice(["{count} > 5", "{word} contains a", "{accuracy} < 50"])
            plan.append(("vocabulary", "/api/vocabulary?" + urlencode(q), {}))
        elif r < 0.72:
            plan.append(("audio", f"/audio/{rng.randrange(n_audio)}.wav", {}))
        elif r < 0.84:
            start = rng.randrange(0, 20000)
            plan.append(("audio range", f"/audio/{rng.randrange(n_audio)}.wav", {"Range": f"bytes={start}-{start + 65535}"}))
        else:
            plan.append(("signal", f"/api/utterances/{rng.randrange(n_audio)}/signal", {}))
    return plan


def do_request(port: int, kind: str, path: str, headers: dict, result: Result) -> None:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        want = 206 if "Range" in headers else 200
        if resp.status != want:
            result.error(f"{kind} {path}: HTTP {resp.status} {body[:200]!r}")
            return
        if kind.startswith("audio") and not (body[:4] == b"RIFF" or "Range" in headers):
            result.error(f"{kind} {path}: not a WAV")
            return
        if path.startswith("/api/"):
            json.loads(body)
    except Exception as e:  # noqa: BLE001 - every failure is an error to count
        result.error(f"{kind} {path}: {type(e).__name__}: {e}")
        return
    finally:
        conn.close()
    result.add(kind, time.perf_counter() - t0)


def run_round(port: int, plans: list[list[tuple[str, str, dict]]]) -> tuple[Result, float]:
    result = Result()

    def client(plan: list[tuple[str, str, dict]]) -> None:
        for kind, path, headers in plan:
            do_request(port, kind, path, headers, result)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        list(pool.map(client, plans))
    return result, time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def load_test(manifest: Path, clients: int = 20, requests: int = 50, n_audio: int = 50, seed: int = 0,
              warm_rounds: int = 1) -> dict:
    """Start a server, warm it, measure. Returns figures (and raises nothing on request errors:
    they are counted in `errors`)."""
    with open(manifest, "rb") as f:
        n_utts = sum(1 for _ in f)
    server = Server(manifest)
    try:
        port = server.port
        rss_start = server.rss()
        rng = random.Random(seed)
        # Warm-up: every kind, on the same mix of requests as the measured round.
        warm_errors: list[str] = []
        for _ in range(warm_rounds):
            warm, _ = run_round(port, [request_plan(rng, n_utts, n_audio, requests) for _ in range(clients)])
            warm_errors += warm.errors
        rss_before = server.rss()
        result, wall = run_round(port, [request_plan(rng, n_utts, n_audio, requests) for _ in range(clients)])
        rss_after = server.rss()
        alive = server.proc.poll() is None
    finally:
        server.stop()
    kinds = {}
    for kind, lat in sorted(result.latencies.items()):
        kinds[kind] = {"count": len(lat), "p50_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * percentile(lat, 0.95),
                       "max_ms": 1000 * max(lat)}
    total = sum(len(v) for v in result.latencies.values())
    return {
        "utterances": n_utts, "clients": clients, "requests_per_client": requests, "requests": total,
        "errors": result.errors, "warmup_errors": warm_errors, "wall_s": wall, "throughput_rps": total / wall if wall else 0,
        "rss_start_mb": rss_start / 2**20, "rss_before_mb": rss_before / 2**20, "rss_after_mb": rss_after / 2**20,
        "rss_growth": (rss_after - rss_before) / rss_before, "kinds": kinds, "server_alive": alive,
        "server_stderr": "".join(server.stderr)[-3000:],
    }


def markdown(fig: dict) -> str:
    lines = [
        f"{fig['utterances']:,} utterances, {fig['clients']} clients x {fig['requests_per_client']} requests "
        f"({fig['requests']} measured, {len(fig['errors'])} errors) in {fig['wall_s']:.1f} s "
        f"= {fig['throughput_rps']:.0f} req/s",
        "",
        "| request | count | p50 ms | p95 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, k in fig["kinds"].items():
        lines.append(f"| {kind} | {k['count']} | {k['p50_ms']:.1f} | {k['p95_ms']:.1f} | {k['max_ms']:.1f} |")
    lines += ["", f"server RSS: {fig['rss_start_mb']:.0f} MB at start, {fig['rss_before_mb']:.0f} MB after warm-up, "
                  f"{fig['rss_after_mb']:.0f} MB after the measured round ({100 * fig['rss_growth']:+.1f} %)"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utterances", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--real-audio", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="folder for the manifest (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        manifest = make_manifest(out, args.utterances, args.real_audio, args.seed)
        fig = load_test(manifest, args.clients, args.requests, args.real_audio, args.seed)
    print(markdown(fig))
    if fig["errors"]:
        print("\nerrors:\n" + "\n".join(fig["errors"][:20]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
