"""CSV twins (/api/utterances.csv and the other `.csv` routes): how fast a whole view streams.

    python benchmarks/bench_csv.py [--utterances 1000000] [--manifest M --cache-dir DIR] [--repeats 2]
                                   [--baseline]

Times ``csv_chunks`` (what ``csv_response`` streams: the header, then chunks of CSV_CHUNK_ROWS
rows) over the utterances table as the server holds it (loaded from a build kept in DIR, its text
columns compressed), encoded to UTF-8 as the server sends it, for two views: every row in order,
and every row sorted by -wer (positions scattered over the table, as a sorted or filtered view
is); each first with the text columns read by batch (before the server's warm-up has read them
whole, or at 10M lines, where they do not fit its budget: a chunk of a scattered view then
decompresses nearly every batch), then kept whole (after the warm-up at 1M lines). The manifest
is generated with benchmarks/make_manifest.py (seeded, one hypothesis) into benchmarks/output/
unless given; the build is made there on the first run.

--baseline also times pandas' writer, the way sde wrote CSV before (``to_csv`` of each chunk,
escape_formulas applied), alternately with sde's, and checks that both wrote the same bytes.
Prints a markdown table: rows/s and MB/s of each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def pandas_chunks(df, positions, chunk_rows: int):
    """sde's CSV before Arrow wrote it: pandas' ``to_csv`` of each chunk."""
    from sde.compressed_columns import take_rows
    from sde.web.api.respond import CSV_LINE_END, escape_formulas, escape_header

    yield escape_header(df.iloc[:0]).to_csv(index=False, lineterminator=CSV_LINE_END)
    for start in range(0, len(positions), chunk_rows):
        chunk = take_rows(df, positions[start:start + chunk_rows])
        yield escape_formulas(chunk).to_csv(index=False, header=False, lineterminator=CSV_LINE_END)


def streamed(chunks) -> tuple[float, float, int, list[int]]:
    """Seconds (wall clock, and CPU of the process: the same on a busy machine) to consume
    `chunks` encoded as UTF-8, the bytes, and a hash of each chunk."""
    began, began_cpu = time.perf_counter(), time.process_time()
    size, hashes = 0, []
    for text in chunks:
        data = text.encode("utf-8")
        size += len(data)
        hashes.append(hash(data))
    return time.perf_counter() - began, time.process_time() - began_cpu, size, hashes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=1_000_000)
    ap.add_argument("--manifest", type=Path, help="default: benchmarks/output/synthetic_N.json, generated")
    ap.add_argument("--cache-dir", type=Path, help="default: benchmarks/output/csv_cache_N")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--baseline", action="store_true", help="also time pandas' to_csv and compare the bytes")
    args = ap.parse_args()

    manifest = args.manifest or HERE / "output" / f"synthetic_{args.utterances}.json"
    if not manifest.exists():
        manifest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "make_manifest.py"), str(manifest), "--utterances",
                        str(args.utterances), "--seed", "0", "--quiet"], check=True)
    cache_dir = args.cache_dir or HERE / "output" / f"csv_cache_{manifest.stem}"

    import numpy as np

    from sde.build.load import load_dataset
    from sde.compressed_columns import preload, preload_transcripts
    from sde.web.api.respond import CSV_CHUNK_ROWS, csv_chunks

    t = time.perf_counter()
    table = load_dataset(manifest, cache_dir=str(cache_dir)).utterances
    print(f"{len(table):,} utterances, {table.shape[1]} columns, loaded in {time.perf_counter() - t:.1f} s\n")
    order = {"in order": np.arange(len(table)), "sorted by -wer": np.argsort(-table["wer"].to_numpy(), kind="stable")}
    views = [(f"every row {how}, text {state}", positions) for state in ("read by batch", "kept whole")
             for how, positions in order.items()]
    writers = {"sde (Arrow)": csv_chunks}
    if args.baseline:
        writers = {"pandas to_csv (before)": pandas_chunks, **writers}

    print("| view | writer | rows/s | MB/s | seconds | rows/s of CPU time | CPU seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for view, positions in views:
        if "kept whole" in view:
            preload(table)                                   # as the server's warm-up does
            preload_transcripts(table, ["text", "pred_text"])
        best: dict[str, tuple[float, float]] = {}
        hashes: dict[str, list[int]] = {}
        size = 0
        for _ in range(args.repeats):
            for name, writer in writers.items():          # alternately, so both see the same machine
                seconds, cpu, size, hashes[name] = streamed(writer(table, positions, CSV_CHUNK_ROWS))
                best[name] = min(best.get(name, (seconds, cpu)), (seconds, cpu))
        rows = len(positions)
        for name, (seconds, cpu) in best.items():
            print(f"| {view} | {name} | {rows / seconds:,.0f} | {size / seconds / 1e6:.1f} | {seconds:.1f} "
                  f"| {rows / cpu:,.0f} | {cpu:.1f} |")
        if len({tuple(h) for h in hashes.values()}) > 1:
            print(f"\n**the writers wrote different bytes for {view!r}**\n")
            sys.exit(1)
    if args.baseline:
        print("\nBoth writers wrote the same bytes.")


if __name__ == "__main__":
    main()
