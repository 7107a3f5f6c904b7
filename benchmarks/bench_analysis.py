"""Error-analysis benchmark at 1M utterances with two hypotheses: the Comparison page's content
(bootstrap intervals, word and utterance scatters), the Errors page's tables and breakdowns,
including one over 10,000 groups (DESIGN's target: well under 1 s at 1M utterances).

    python benchmarks/bench_analysis.py [--utterances 1000000] [--groups-only]
    python benchmarks/bench_analysis.py --top-errors MANIFEST [--cache-dir DIR]

--groups-only times the 10,000-group breakdown alone, on a synthetic utterance table (no manifest
to generate or load: quick to run anywhere).

--top-errors times the Errors page of MANIFEST's first hypothesis as the server computes it:
the dataset loaded as `sde MANIFEST --cache-dir DIR` loads it (built there first if it is not),
then `top_errors` first (the errors table turned into codes) and again, and the affected
utterances of its three tables.

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


GROUPS = 10_000


def with_many_groups(table, groups: int = GROUPS, seed: int = 0):
    """The table's per-hypothesis counts plus a string column `group` with `groups` values."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    names = np.array([f"g{i:05d}" for i in range(groups)], dtype=object)
    return table.assign(group=pd.array(names[rng.integers(0, groups, len(table))], dtype=pd.StringDtype("pyarrow")))


def synthetic_table(n: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    words = rng.integers(1, 30, n)
    return pd.DataFrame({"num_words": words, "num_chars": words * 5, "sub": rng.binomial(words, 0.06),
                         "del": rng.binomial(words, 0.02), "ins": rng.binomial(3, 0.05, n),
                         "char_edits": rng.binomial(words * 5, 0.03)})


def group_rows(table, columns) -> list:
    from sde import analysis

    def page_with_intervals():
        grouped = analysis.group_rates(table, "group", columns)
        page = grouped.view("-wer", min_words=10).iloc[:50]
        grouped.intervals(page.index.to_numpy())

    return [
        (f"WER/CER by a {GROUPS:,}-value column, sorted worst first",
         lambda: analysis.breakdown(table, "group", columns, sort="-wer")),
        ("… and a page of 50 of those groups with bootstrap intervals",
         page_with_intervals),
    ]


def print_table(rows) -> None:
    print("| computation | first call (ms) |")
    print("|---|---:|")
    for name, fn in rows:
        print(f"| {name} | {timed(fn):.0f} |")


def top_errors_rows(manifest: Path, cache_dir: str | None) -> list:
    from sde import analysis
    from sde.build.load import load_dataset

    ds = load_dataset(manifest, cache_dir=cache_dir)
    errors = ds.errors[ds.hypotheses[0].field]
    tables: dict = {}

    def first():
        tables.update(analysis.top_errors(errors, limit=200))

    def affected():
        for kind, rows in tables.items():
            analysis.affected_utterances(errors, kind, rows)

    print(f"{len(ds.utterances):,} utterances, {len(errors):,} errors in `{ds.hypotheses[0].field}`\n")
    return [
        ("top errors (substitutions, deletions, insertions; 200 each), first call", first),
        ("… again (codes cached)", lambda: analysis.top_errors(errors, limit=200)),
        ("… utterances affected by each of those 600 errors", affected),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=1_000_000)
    ap.add_argument("--groups-only", action="store_true", help="only the 10,000-group breakdown, synthetic data")
    ap.add_argument("--top-errors", type=Path, metavar="MANIFEST", help="only the Errors page of MANIFEST")
    ap.add_argument("--cache-dir", help="with --top-errors: where the dataset is (or gets) built")
    args = ap.parse_args()
    if args.top_errors:
        print_table(top_errors_rows(args.top_errors, args.cache_dir))
        return
    if args.groups_only:
        table = with_many_groups(synthetic_table(args.utterances))
        print(f"{len(table):,} synthetic utterances, {GROUPS:,} groups\n")
        print_table(group_rows(table, {}))
        return
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
        *group_rows(with_many_groups(ds.utterances), a),
    ]
    print(f"{len(ds.utterances):,} utterances, two hypotheses; dataset built in {load_s:.1f} s\n")
    print_table(rows)


if __name__ == "__main__":
    main()
