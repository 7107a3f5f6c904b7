"""The text-derived quality columns of a cached build: computed and kept beside it (a first
start), or read back mapped from there (a later one). Time and this process's memory at each step.

    python benchmarks/make_manifest.py ... > M.json; sde index M.json --cache-dir DIR   # the build
    python benchmarks/bench_quality_kept.py M.json --cache-dir DIR --memory-limit 2GB --threads 2
    python benchmarks/bench_quality_kept.py M.json --cache-dir DIR ...     # again: read back

Each run loads the build, asks for each kind's columns (as the Statistics card does), adds them to
the table (as a filter naming one does) and runs a filter on one of them. Memory: anonymous (the
process's own) and file pages (mapped files the kernel may drop), from /proc/self/status.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sde.build.load import load_dataset  # noqa: E402
from sde.engine import configure  # noqa: E402
from sde.quality import apply  # noqa: E402
from sde.query import TableQuery  # noqa: E402


def memory() -> str:
    with open("/proc/self/status") as f:
        fields = {line.split(":")[0]: int(line.split()[1]) // 1024 for line in f
                  if line.startswith(("RssAnon", "RssFile", "VmHWM"))}
    return f"anonymous {fields['RssAnon']} MB, file pages {fields['RssFile']} MB, peak RSS {fields['VmHWM']} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--memory-limit")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--kinds", nargs="+", default=["duplicates", "suspicious"])
    parser.add_argument("--filter", default="{char_rate_z} > 3")
    args = parser.parse_args()
    configure(threads=args.threads, memory_limit=args.memory_limit)
    started = time.perf_counter()
    dataset = load_dataset(args.manifest, cache_dir=args.cache_dir)
    print(f"loaded in {time.perf_counter() - started:.2f} s: {memory()}", flush=True)
    for kind in args.kinds:
        started = time.perf_counter()
        frame = apply.quality_frame(dataset, kind)
        print(f"{kind}: {frame.shape[1]} columns in {time.perf_counter() - started:.2f} s: {memory()}", flush=True)
    del frame
    started = time.perf_counter()
    apply.ensure_quality_columns(dataset, args.kinds)
    print(f"added to the table in {time.perf_counter() - started:.2f} s: {memory()}", flush=True)
    started = time.perf_counter()
    rows = TableQuery(dataset.utterances).select(args.filter)
    print(f"{args.filter}: {len(rows):,} rows in {time.perf_counter() - started:.2f} s: {memory()}")


if __name__ == "__main__":
    main()
