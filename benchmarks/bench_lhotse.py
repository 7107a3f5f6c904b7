"""Lhotse CutSets: load time and peak memory, to say in README how big a CutSet a machine can open.
A CutSet of up to 128 MiB decompressed (here ~200k cuts) is read in one piece; a bigger one is
decompressed into the build folder and built part by part (parts of 32 MiB, one worker per core).

    python benchmarks/bench_lhotse.py --sizes 100000 300000 1000000

Per size, a CutSet of mono cuts with one supervision each (texts, speakers and durations of the
seeded NeMo generator, benchmarks/make_manifest.py; the audio paths need not exist) is written with
lhotse's own writer as ``cuts_N.jsonl.gz`` into benchmarks/output/ unless it exists. Then
``sde stats cuts_N.jsonl.gz --no-cache --json`` runs in a fresh process; its wall time and the peak
resident memory of its largest process are printed as a markdown table. Needs the `lhotse` extra.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def write_cuts(size: int, out: Path) -> Path:
    """A CutSet of ``size`` cuts written by lhotse (streamed: one cut in memory at a time)."""
    from lhotse import CutSet, Recording, SupervisionSegment
    from lhotse.audio import AudioSource
    from lhotse.cut import MonoCut

    target = out / f"cuts_{size}.jsonl.gz"
    if target.exists():
        return target
    nemo = out / f"lhotse_source_{size}.json"
    if not nemo.exists():
        subprocess.run([sys.executable, str(HERE / "make_manifest.py"), str(nemo), "--utterances", str(size),
                        "--seed", "0", "--quiet"], check=True)
    tmp = target.with_suffix(".tmp.gz")
    with CutSet.open_writer(tmp) as writer, nemo.open(encoding="utf-8") as lines:
        for i, line in enumerate(lines):
            row = json.loads(line)
            duration = round(float(row["duration"]), 3)
            rec_id = f"rec{i:08d}"
            recording = Recording(id=rec_id, sources=[AudioSource(type="file", channels=[0],
                                                                  source=row["audio_filepath"])],
                                  sampling_rate=16000, num_samples=round(duration * 16000), duration=duration)
            supervision = SupervisionSegment(id=f"sup{i:08d}", recording_id=rec_id, start=0.0, duration=duration,
                                             channel=0, text=row["text"], speaker=row.get("speaker"),
                                             custom={"pred_text": row["pred_text"]} if "pred_text" in row else None)
            writer.write(MonoCut(id=f"cut{i:08d}", start=0.0, duration=duration, channel=0, recording=recording,
                                 supervisions=[supervision]))
    tmp.rename(target)
    return target


# Runs sde as its child and prints that child's peak resident memory (the largest of its processes:
# ru_maxrss of the children waited for), so that each measurement has a fresh maximum.
WRAPPER = """
import json, resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "sde.cli", "stats", sys.argv[1], "--no-cache", "--json"],
                      capture_output=True, text=True)
print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr[-3000:],
                  "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measure(cuts: Path) -> dict:
    started = time.perf_counter()
    wrapped = subprocess.run([sys.executable, "-c", WRAPPER, str(cuts)], cwd=ROOT, capture_output=True, text=True,
                             check=True)
    wall = time.perf_counter() - started
    done = json.loads(wrapped.stdout)
    if done["rc"] != 0:
        raise SystemExit(done["err"])
    return {"utterances": json.loads(done["out"])["utterances"], "seconds": wall, "peak_mb": done["peak_kb"] / 1024,
            "file_mb": cuts.stat().st_size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--out", type=Path, default=HERE / "output")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| cuts | file (gzip) | load | peak RSS (largest process) |")
    print("|---:|---:|---:|---:|")
    for size in args.sizes:
        cuts = write_cuts(size, args.out)
        runs = [measure(cuts) for _ in range(args.runs)]
        seconds = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        print(f"| {runs[0]['utterances']:,} | {runs[0]['file_mb']:.0f} MB | {seconds} s | "
              f"{max(r['peak_mb'] for r in runs):,.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
