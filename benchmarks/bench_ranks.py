"""Benchmark the text ranks the server's warm-up gives its compressed text columns (sorts by them then
compare integers): sde.text_ranks against Arrow's rank of the column read whole (the way before).

    python benchmarks/bench_ranks.py M --cache-dir DIR [--columns text audio_filepath] [--runs 2]

DIR holds a build of manifest M (`sde index M --cache-dir DIR`). Each ranking runs in a fresh process
(`--threads 2` as the server's engine): its seconds, the most memory Arrow held, and the process's
peak anonymous memory above what it held once the dataset was loaded (sampled every 20 ms). Both
ways must give the same ranks. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _anon() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _one(manifest: str, cache: str, column: str, way: str, threads: int) -> dict:
    """Rank one column one way in this process (the child's side)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from sde import engine
    from sde.build.load import load_dataset
    from sde.text_ranks import text_dense_ranks

    engine.configure(threads=threads, memory_limit="2GB")
    stored = load_dataset(manifest, cache_dir=cache, threads=threads).utterances[column].array.compressed
    base, peak, done = _anon(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _anon())
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    if way == "sde.text_ranks":
        ranks = text_dense_ranks(stored.stream, stored.rows, workers=threads).to_numpy(zero_copy_only=False)
    else:
        whole = stored.decompressed()
        ranks = pc.rank(whole, sort_keys="ascending", tiebreaker="dense").to_numpy()
        del whole
    seconds = time.perf_counter() - start
    done.set()
    return {"seconds": seconds, "arrow_max": pa.default_memory_pool().max_memory(), "peak_over_loaded": peak[0] - base,
            "digest": int(np.asarray(ranks, dtype=np.uint64)[::997].sum()), "rows": stored.rows, "text": stored.nbytes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--columns", nargs="+", default=["text", "audio_filepath"])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=2, metavar=("COLUMN", "WAY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_one(args.manifest, args.cache_dir, *args.child, args.threads)))
        return
    print("| column | rows | text | way | seconds | Arrow's most | peak over the loaded dataset |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for column in args.columns:
        digests = set()
        for _ in range(args.runs):
            for way in ("sde.text_ranks", "arrow rank, read whole"):
                out = subprocess.run([sys.executable, __file__, args.manifest, "--cache-dir", args.cache_dir,
                                      "--threads", str(args.threads), "--child", column, way],
                                     cwd=ROOT, capture_output=True, text=True, check=True).stdout
                got = json.loads(out.strip().splitlines()[-1])
                digests.add(got["digest"])
                print(f"| {column} | {got['rows']:,} | {got['text'] / 1e6:,.0f} MB | {way} | {got['seconds']:.1f} | "
                      f"{got['arrow_max'] / 1e6:,.0f} MB | {got['peak_over_loaded'] / 1e6:,.0f} MB |", flush=True)
        if len(digests) != 1:
            sys.exit(f"{column}: the two ways gave different ranks")
    print(f"\ncommand: python benchmarks/bench_ranks.py {args.manifest} --cache-dir {args.cache_dir} "
          f"--columns {' '.join(args.columns)} --runs {args.runs} --threads {args.threads}")


if __name__ == "__main__":
    main()
