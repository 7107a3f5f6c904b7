"""NeMo tarred audio in the inspector: index a 2 GB tar shard once, then view members (the player's
/audio/ID.ogg and the /api/utterances/ID/signal figure, as the inspector fetches them), from a local
tar and from a tar in an S3 bucket (moto's S3 server on 127.0.0.1, started here).

    python benchmarks/bench_tar.py [--tar-gb 2] [--s3-mb 16] [--views 20] [--no-s3]

The tar holds 20-second 16 kHz WAV members (640 KB each, NeMo's layout: GNU headers as Python's
tarfile writes them). It is written sparse: every member has its tar header and WAV header, and the
members that are viewed hold real speech-like audio; the others are holes (silence) that take no
disk space. Views go through the real Flask routes (``register_api``) with no audio cache, so each
is a first view: member index lookup → one pread (one ranged GET from S3) → decode from memory →
Ogg + figure. Targets (issue 13): index ≤ 3 s once; a view ≤ 150 ms local, ≤ 300 ms from S3.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sde.sources import remote  # noqa: E402
from sde.sources.tar_index import load_tar_index  # noqa: E402

SR = 16000
SECONDS = 20.0


def speechlike(rng: np.random.Generator) -> np.ndarray:
    """Noise shaped by a syllable-rate envelope: spectrally busy, like speech for the figure."""
    n = int(SR * SECONDS)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * np.arange(n) / SR) ** 2
    return (0.2 * envelope * rng.standard_normal(n)).clip(-1, 1).astype(np.float32)


def wav_member(samples: np.ndarray | None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples if samples is not None else np.zeros(int(SR * SECONDS), np.float32), SR,
             subtype="PCM_16", format="WAV")
    return buf.getvalue()


def write_tar(path: Path, total_bytes: int, viewed: int, rng: np.random.Generator) -> list[str]:
    """A sparse tar of 20 s WAV members; the first `viewed` hold audio. Returns the member names."""
    silent = wav_member(None)
    size = len(silent)
    step = 512 + (size + 511) // 512 * 512
    count = max(viewed, total_bytes // step)
    names = [f"recordings_{k:06d}.wav" for k in range(count)]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for k, name in enumerate(names):
            info = tarfile.TarInfo(name)
            info.size = size
            info.mtime = 1_700_000_000
            os.pwrite(fd, info.tobuf(format=tarfile.GNU_FORMAT), k * step)
            data = wav_member(speechlike(rng)) if k < viewed else silent[:44]  # header only: a hole after
            os.pwrite(fd, data, k * step + 512)
        end = count * step
        os.ftruncate(fd, (end + 1024 + 10239) // 10240 * 10240)
    finally:
        os.close(fd)
    return names


def dataset_of(tar: str, names: list[str]) -> types.SimpleNamespace:
    table = pd.DataFrame({"id": range(len(names)), "audio_filepath": names, "audio_path": names,
                          "shard_id": 0, "offset": 0.0, "duration": SECONDS})
    return types.SimpleNamespace(utterances=table, tar_shards=(tar,))


def views(dataset: types.SimpleNamespace, ids: list[int]) -> tuple[list[float], int]:
    """Milliseconds of each first view (Ogg + linear figure) and the bytes sent for the last."""
    from flask import Flask

    from sde.web.api import register_api

    server = Flask("bench")
    register_api(server, dataset, audio_cache_bytes=0)  # no cache: every view decodes
    client = server.test_client()
    times, sent = [], 0
    for uid in ids:
        t0 = time.perf_counter()
        a = client.get(f"/audio/{uid}.ogg")
        b = client.get(f"/api/utterances/{uid}/signal")
        times.append((time.perf_counter() - t0) * 1000)
        assert a.status_code == 200 and b.status_code == 200, (a.status_code, b.data[:300])
        sent = len(a.data) + len(b.data)
    return times, sent


def summary(label: str, index_s: float, cached_s: float, times: list[float], sent: int, members: int,
            target_ms: int) -> str:
    return (f"| {label} | {members:,} | {index_s:.2f} | {cached_s:.3f} | {statistics.median(times):.0f} | "
            f"{max(times):.0f} | {sent / 1024:.0f} | ≤ 3 s, ≤ {target_ms} ms |")


def timed_index(location: str | Path, cache: Path, members: int) -> tuple[float, float]:
    """Seconds to index the tar once (scanning its headers), then again from the index cache."""
    t0 = time.perf_counter()
    index = load_tar_index(location, cache_dir=cache)
    index_s = time.perf_counter() - t0
    assert len(index) == members
    t0 = time.perf_counter()
    load_tar_index(location, cache_dir=cache)
    return index_s, time.perf_counter() - t0


def bench_local(tmp: Path, gigabytes: float, viewed: int, rng: np.random.Generator) -> str:
    tar = tmp / "audio_0.tar"
    names = write_tar(tar, int(gigabytes * 2**30), viewed, rng)
    index_s, cached_s = timed_index(tar, tmp / "idx", len(names))
    dataset = dataset_of(str(tar), names)
    views(dataset, [viewed - 1])  # warm-up: imports, FFT plans, the index into memory
    times, sent = views(dataset, list(range(viewed - 1)))
    label = f"local {tar.stat().st_size / 2**30:.1f} GB tar"
    tar.unlink()
    return summary(label, index_s, cached_s, times, sent, len(names), 150)


def bench_s3(tmp: Path, megabytes: int, viewed: int, rng: np.random.Generator) -> str:
    from tests.s3_kit import client, start_moto, stop

    proc, endpoint = start_moto()
    try:
        tar = tmp / "audio_s3.tar"
        names = write_tar(tar, megabytes << 20, viewed, rng)
        s3 = client(endpoint)
        s3.create_bucket(Bucket="bench")
        s3.upload_file(str(tar), "bench", "tarred/audio_0.tar")
        remote.configure({"endpoint_url": endpoint, "key": "x", "secret": "y"})
        url = "s3://bench/tarred/audio_0.tar"
        index_s, cached_s = timed_index(url, tmp / "idx-s3", len(names))
        dataset = dataset_of(url, names)
        views(dataset, [viewed - 1])
        times, sent = views(dataset, list(range(viewed - 1)))
        tar.unlink()
        return summary(f"S3 (moto, 127.0.0.1) {megabytes} MB tar", index_s, cached_s, times, sent, len(names), 300)
    finally:
        remote.configure(None)
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tar-gb", type=float, default=2.0)
    parser.add_argument("--s3-mb", type=int, default=16,
                        help="size of the tar uploaded to the S3 server (moto reads the whole object for every "
                             "ranged GET: about 1 ms per MB, so a large tar measures moto, not sde)")
    parser.add_argument("--views", type=int, default=21, help="members viewed (the first is a warm-up)")
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = ["| tar | members | index, scan (s) | index, from cache (s) | view median (ms) | view max (ms) | "
            "to the browser per view (KB) | targets |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    with tempfile.TemporaryDirectory(prefix="sde-bench-tar-") as tmp:
        rows.append(bench_local(Path(tmp), args.tar_gb, args.views, rng))
        if not args.no_s3:
            rows.append(bench_s3(Path(tmp), args.s3_mb, args.views, rng))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
