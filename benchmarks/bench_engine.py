"""The query engine in process, without the server: the cost of a page of a filtered, sorted view.

    python benchmarks/bench_engine.py MANIFEST --cache-dir DIR [--memory-limit 2GB] [--repeats 3]
        [--idle 90] [--query 'FILTER|SORT|START' ...]

Loads a build kept in DIR (``sde index MANIFEST --cache-dir DIR`` makes one; benchmarks/bench_scale.py
keeps its own), prepares the engine as the server's warm-up does (word indexes, pairs of common
words and text ranks of the transcripts), then times ``TableQuery.window(filter, sort, start,
start + 50)`` with the view caches and compiled filters cleared before each run, so every run pays
for the filter, the count and the sort as a first request does. ``--idle S`` times the queries again after S seconds
with nothing to do: on a machine whose kernel pages out memory left unread (this project's test VM),
the first query after that pays for reading its pages back.
"""

from __future__ import annotations

import argparse
import time

from sde import engine
from sde.build.load import load_dataset

DEFAULT_QUERIES = [
    '{text} matches "th.s"|-duration|0',
    '{text} matches "th.s"|-duration|500000',
    '{text} matches "e.t"|-duration|0',
    '{text} contains "of the"|-duration|0',
    '{text} contains "the"|-text|1250000',
    '{wer} > 20 && {duration} < 10|-cer|0',
    '|-snr|5000000',
]


def _timed(query, spec: str, repeats: int) -> tuple[int, list[float]]:
    filt, sort, start = spec.split("|")
    times = []
    for _ in range(repeats):
        query._results.clear()
        query._prefixes.clear()
        query._bands.clear()
        query._filters.clear()  # the filter compiled again: its marks, its lines tested at once
        began = time.perf_counter()
        total, _ = query.window(filt or None, sort or None, int(start), int(start) + 50)
        times.append((time.perf_counter() - began) * 1000)
    return total, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("--cache-dir", required=True, help="the folder holding the manifest's build")
    parser.add_argument("--memory-limit", default=None, help="as sde's --memory-limit (default: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", type=float, default=0.0, help="seconds idle before timing the queries again")
    parser.add_argument("--query", action="append", help="FILTER|SORT|START (default: a set of searches and sorts)")
    args = parser.parse_args()

    engine.configure(threads=args.threads, memory_limit=args.memory_limit)
    dataset = load_dataset(args.manifest, cache_dir=args.cache_dir, threads=args.threads)
    query = dataset.utterance_query
    transcripts = [c for c in ("text", "pred_text", "pred_text_b") if c in dataset.utterances.columns]
    began = time.perf_counter()
    query.warm(text=transcripts)
    query.warm_phrases(transcripts)
    query.warm_sorts(transcripts)
    print(f"warm-up {time.perf_counter() - began:.1f} s ({len(dataset.utterances):,} utterances, "
          f"memory limit {args.memory_limit or 'none'})")
    rounds = [("now", 0.0)] + ([(f"after {args.idle:g} s idle", args.idle)] if args.idle else [])
    print("| when | filter | sort | from row | rows in view | ms per run |\n|---|---|---|---:|---:|---:|")
    for when, idle in rounds:
        time.sleep(idle)
        for spec in args.query or DEFAULT_QUERIES:
            total, times = _timed(query, spec, args.repeats)
            filt, sort, start = spec.split("|")
            print(f"| {when} | `{filt or '(none)'}` | `{sort}` | {int(start):,} | {total:,} | "
                  f"{', '.join(f'{t:.0f}' for t in times)} |", flush=True)


if __name__ == "__main__":
    main()
