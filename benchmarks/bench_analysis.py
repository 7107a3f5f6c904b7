"""Error-analysis benchmark at 1M utterances with two hypotheses: the Comparison page's content
(bootstrap intervals, word and utterance scatters), the Errors page's tables and a breakdown.

    python benchmarks/bench_analysis.py [--utterances 1000000]

The manifest is generated with benchmarks/make_manifest.py (seeded, `--hypotheses 2`) into
benchmarks/output/ unless it exists. Times are of first calls (nothing cached), after the dataset
is loaded. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def timed(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=1_000_000)
    args = ap.parse_args()
    path = HERE / "output" / f"synthetic_{args.utterances}_2hyp.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "make_manifest.py"), str(path), "--utterances",
                        str(args.utterances), "--seed", "0", "--hypotheses", "2", "--quiet"], check=True)

    from sde import analysis
    from sde.dataset import build_dataset
    from sde.web.pages import comparison

    t = time.perf_counter()
    ds = build_dataset(path)
    load_s = time.perf_counter() - t
    a, b = ds.hypotheses[:2]
    rows = [
        ("bootstrap WER, 1,000 resamples", lambda: analysis.bootstrap_wer(ds.utterances, a, n_resamples=1000)),
        ("paired comparison A vs B, 1,000 resamples", lambda: analysis.compare(ds.utterances, a, b, n_resamples=1000)),
        ("Comparison page content (cards, word + utterance scatters, tables)",
         lambda: comparison.sections(ds, a, b, "wer", "")),
        ("Errors page tables (top substitutions, deletions, insertions)",
         lambda: analysis.top_errors(ds.errors[a.field], limit=200)),
        ("WER/CER by speaker", lambda: analysis.breakdown(ds.utterances, "speaker", a)),
        ("WER/CER by duration bucket", lambda: analysis.breakdown(ds.utterances, "duration_bucket", a)),
    ]
    print(f"{len(ds.utterances):,} utterances, two hypotheses; dataset built in {load_s:.1f} s\n")
    print("| computation | first call (ms) |")
    print("|---|---:|")
    for name, fn in rows:
        print(f"| {name} | {timed(fn):.0f} |")


if __name__ == "__main__":
    main()
