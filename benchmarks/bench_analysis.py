"""Error-analysis benchmark at 1M utterances with two hypotheses: the Comparison page's content
(bootstrap intervals, word and utterance scatters), the Errors page's tables and breakdowns,
including one over 10,000 groups (DESIGN's target: well under 1 s at 1M utterances).

    python benchmarks/bench_analysis.py [--utterances 1000000] [--groups-only]
    python benchmarks/bench_analysis.py --top-errors MANIFEST [--cache-dir DIR]
    python benchmarks/bench_analysis.py --stored [--cache-dir DIR] [--utterances 1000000]

--groups-only times the 10,000-group breakdown alone, on a synthetic utterance table (no manifest
to generate or load: quick to run anywhere).

--stored times the Comparison page as the server gives it: the generated manifest loaded as
`sde MANIFEST --cache-dir DIR` loads it (built there first if it is not; default: a folder in
benchmarks/output/), its transcripts' word index built or mapped as the warm-up does, then the
page's first load, and the word table's `utterances` column alone (its 300 words, all rows and a
third of them): counted from the word index and by splitting the transcripts. Each row gives wall
and CPU (user+sys of the process) milliseconds: the machine may be shared.

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
from collections.abc import Callable, Iterator
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


def print_cpu_table(rows) -> None:
    print("| computation | first call (ms) | CPU (ms) |")
    print("|---|---:|---:|")
    for name, fn in rows:
        cpu = time.process_time()
        wall = timed(fn)
        print(f"| {name} | {wall:.0f} | {(time.process_time() - cpu) * 1000:.0f} |")


def stored_rows(manifest: Path, cache_dir: str) -> Iterator[tuple[str, Callable[[], object]]]:
    """The rows of --stored: the dataset loaded and its word index built or mapped now, the rows made
    as they are timed (the word rows need the page's word table, which its first load computes)."""
    from sde import compressed_columns
    from sde.build.load import load_dataset

    ds = load_dataset(manifest, cache_dir=cache_dir)
    indexed = ds.utterance_query.warm_search(["text"])  # as the server's warm-up: mapped, else built
    texts = ds.utterances["text"]
    index = compressed_columns.word_index(compressed_columns.stored_column(texts))
    print(f"{len(texts):,} utterances, stored in {cache_dir}; word index of {', '.join(indexed) or 'no column'}\n")
    return _stored_timings(ds, index)


def _stored_timings(ds, index) -> Iterator[tuple[str, Callable[[], object]]]:
    import numpy as np

    from sde import word_index
    from sde.web import present
    from sde.web.pages import comparison

    a, b = ds.hypotheses[:2]
    texts = ds.utterances["text"]
    yield ("Comparison page content (cards, word + utterance scatters, tables), first load",
           lambda: comparison.sections(ds, a, b, "wer", ""))
    split = getattr(present, "_split_word_utterances", None)
    if index is None or not hasattr(word_index, "word_row_counts") or split is None:
        return  # code from before the count from the index: the page alone
    words = [str(w) for w in present.word_comparison(ds, a, b, "")["word"].head(comparison.WORD_ROWS)]
    third = np.flatnonzero(np.random.default_rng(0).random(len(texts)) < 1 / 3)
    for name, selection in (("all rows", None), ("a third of the rows", third)):
        assert (word_index.word_row_counts(index, words, selection) == split(texts, selection, words)).all(), \
            f"the counts of the {len(words)} words over {name} differ"
        yield (f"word table utterances column ({len(words)} words), {name}: from the word index",
               lambda s=selection: word_index.word_row_counts(index, words, s))
        yield ("… by splitting the transcripts", lambda s=selection: split(texts, s, words))


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
    ap.add_argument("--cache-dir", help="with --top-errors or --stored: where the dataset is (or gets) built")
    ap.add_argument("--stored", action="store_true", help="only the Comparison page of the dataset loaded from its cache")
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
    if args.stored:
        print_cpu_table(stored_rows(path, args.cache_dir or str(HERE / "output" / f"cache_{path.stem}")))
        return

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
