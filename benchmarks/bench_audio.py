"""Benchmark the signal side: inspector data for a 20 s segment, and bulk audio metrics.

    python benchmarks/bench_audio.py                 # 10,000 metric files (≈ 1 min to generate)
    python benchmarks/bench_audio.py --files 1000    # quick run

1. Inspector view of a 20 s segment inside a 1-minute file vs inside a 30-minute file (16 kHz
   mono 16-bit WAV): read the segment + WAV bytes + figure JSON (envelope + spectrogram), for the
   linear and the mel spectrogram; and the same through the HTTP routes (Flask test client, no
   cache: every request decodes). Median of --runs runs (the OS page cache is warm after the
   first). Targets (DESIGN.md): ≤ 150 ms and ≤ 500 KB, independent of file length.
2. A 60-minute utterance (16 kHz FLAC) through the same routes: the figure, the whole WAV and
   the whole Ogg, each with its time, its size and the growth of this process's peak RSS while
   it runs (the DESIGN target: "plays and draws with bounded memory"). Before the block-wise
   reading the WAV alone grew the server by ~770 MB and the Ogg killed it (SIGSEGV).
3. ``compute_audio_metrics`` over --files short files (1–3 s, 16 kHz) with 1 and 2 workers, in
   files per second.

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sde.audio import compute_audio_metrics, read_segment, wav_bytes  # noqa: E402
from sde.web.signal_figure import signal_figure  # noqa: E402

SR = 16000


def speechlike(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Noise bursts shaped by a syllable-rate envelope with pauses: spectrally busy like speech."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    env = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)), 0, None) ** 2
    env *= (np.sin(2 * np.pi * 0.2 * t) > -0.3)  # pauses
    x = rng.standard_normal(n) * 0.2 * env + 0.1 * np.sin(2 * np.pi * 180 * t) * env
    return np.clip(x, -1, 1).astype(np.float32)


def write_long(path: Path, minutes: int, rng: np.random.Generator) -> None:
    block = speechlike(60.0, rng)
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for _ in range(minutes):  # 60 s blocks: never the whole file in memory
            f.write(block)


def timed(fn, runs: int) -> tuple[float, object]:
    out = None
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, out


def bench_inspector(tmp: Path, runs: int) -> list[str]:
    from flask import Flask

    from sde.web.api import register_api

    rng = np.random.default_rng(0)
    files = {"1-minute file": (tmp / "one_minute.wav", 1, 30.0),
             "30-minute file": (tmp / "thirty_minutes.wav", 30, 1000.0)}
    for path, minutes, _ in files.values():
        write_long(path, minutes, rng)

    rows = ["| 20 s segment in | spectrogram | core: read + WAV + figure JSON (ms) | "
            "inspector over HTTP: /audio/ID.ogg + /signal, no cache (ms) | figure JSON (KB) | "
            "OGG player audio (KB) | total to the browser (KB) | WAV, for reference (KB) |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, (path, _, offset) in files.items():
        df = pd.DataFrame({"id": [0], "audio_path": [str(path)], "offset": [offset],
                           "duration": [20.0]})
        server = Flask("bench")
        # No cache: every request decodes, as the first view of an utterance does.
        register_api(server, types.SimpleNamespace(utterances=df), audio_cache_bytes=0)
        client = server.test_client()
        for kind in ("linear", "mel"):
            def core(path=path, offset=offset, kind=kind) -> tuple[int, int]:
                seg = read_segment(str(path), offset, 20.0)
                wav = wav_bytes(seg)
                fig_json = signal_figure(seg, kind=kind).to_json()
                return len(fig_json), len(wav)

            def http(client=client, kind=kind) -> tuple[int, int]:
                # What the inspector fetches: the compressed player audio and the figure.
                a = client.get("/audio/0.ogg")
                b = client.get(f"/api/utterances/0/signal?kind={kind}")
                assert a.status_code == 200 and b.status_code == 200
                return len(b.data), len(a.data)

            core()  # warm-up (page cache, FFT plans, lazy imports)
            ms_core, (fig_len, wav_len) = timed(core, runs)
            http()
            ms_http, (sig_len, ogg_len) = timed(http, runs)
            rows.append(f"| {label} | {kind} | {ms_core:.1f} | {ms_http:.1f} | "
                        f"{sig_len / 1024:.0f} | {ogg_len / 1024:.0f} | {(sig_len + ogg_len) / 1024:.0f} | "
                        f"{wav_len / 1024:.0f} |")
    return rows


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> "PeakRss":
        import threading

        import psutil

        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def bench_hour(tmp: Path) -> list[str]:
    from flask import Flask

    from sde.web.api import register_api

    path = tmp / "sixty_minutes.flac"
    block = speechlike(60.0, np.random.default_rng(3))
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for _ in range(60):
            f.write(block)
    df = pd.DataFrame({"id": [0], "audio_path": [str(path)], "offset": [0.0], "duration": [3600.0]})
    server = Flask("bench")
    register_api(server, types.SimpleNamespace(utterances=df), audio_cache_bytes=0)
    client = server.test_client()
    rows = ["60-minute utterance (16 kHz FLAC), nothing cached:", "",
            "| request | time (s) | to the browser (MB) | peak RSS growth (MB) |",
            "|---|---:|---:|---:|"]
    client.get("/api/utterances/0/signal?kind=mel")  # warm-up: lazy imports, page cache
    for label, url in [("figure (linear)", "/api/utterances/0/signal"),
                       ("figure (mel)", "/api/utterances/0/signal?kind=mel"),
                       ("WAV, whole", "/audio/0.wav"), ("Ogg Vorbis, whole", "/audio/0.ogg")]:
        with PeakRss() as rss:
            t0 = time.perf_counter()
            resp = client.get(url, buffered=False)
            n = sum(len(chunk) for chunk in resp.response)  # consumed as a browser would
            resp.close()
            seconds = time.perf_counter() - t0
        assert resp.status_code == 200, (url, resp.status_code)
        rows.append(f"| {label} | {seconds:.2f} | {n / 1e6:.2f} | {rss.growth_mb:.0f} |")
    return rows


def bench_metrics(tmp: Path, n_files: int) -> list[str]:
    rng = np.random.default_rng(1)
    folder = tmp / "many"
    folder.mkdir()
    base = speechlike(3.0, rng)
    paths, durs = [], []
    t0 = time.perf_counter()
    for i in range(n_files):
        d = float(rng.uniform(1.0, 3.0))
        p = folder / f"utt_{i:06d}.wav"
        sf.write(str(p), base[: int(d * SR)], SR, subtype="PCM_16")
        paths.append(str(p))
        durs.append(round(d, 2))
    gen_s = time.perf_counter() - t0
    table = pd.DataFrame({"id": np.arange(n_files), "audio_path": paths,
                          "offset": 0.0, "duration": durs})
    total_audio_h = sum(durs) / 3600
    rows = [f"Audio metrics over {n_files:,} files ({total_audio_h:.2f} h of 16 kHz audio; "
            f"generated in {gen_s:.1f} s, page cache warm):", "",
            "| workers | seconds | files/s |", "|---:|---:|---:|"]
    for workers in (1, 2):
        t0 = time.perf_counter()
        out = compute_audio_metrics(table, workers=workers)
        s = time.perf_counter() - t0
        assert out["audio_error"].isna().all()
        rows.append(f"| {workers} | {s:.2f} | {n_files / s:,.0f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000, help="files for the metrics benchmark")
    ap.add_argument("--runs", type=int, default=15, help="runs per inspector measurement")
    ap.add_argument("--skip-metrics", action="store_true")
    ap.add_argument("--skip-hour", action="store_true", help="skip the 60-minute utterance")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f}\n")
    with tempfile.TemporaryDirectory(prefix="sde-bench-audio-") as d:
        tmp = Path(d)
        print("\n".join(bench_inspector(tmp, args.runs)))
        print()
        if not args.skip_hour:
            print("\n".join(bench_hour(tmp)))
            print()
        if not args.skip_metrics:
            print("\n".join(bench_metrics(tmp, args.files)))


if __name__ == "__main__":
    main()
