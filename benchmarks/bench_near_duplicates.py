"""Benchmark near-duplicate transcript groups (sde.quality.duplicates, max_edits=2) and count the
members the candidate search missed.

    python benchmarks/bench_near_duplicates.py                       # 100k and 1M texts
    python benchmarks/bench_near_duplicates.py --rows 100000 --check 2000

Corpora (each --rows utterances):

- random: 5–20 words over a 20k-word vocabulary (Zipf), 5% exact copies with other case and
  punctuation, 1% one-character edits (as benchmarks/bench_quality.py);
- prompts: templated commands with slot values ("set a timer for 17 minutes", "remind me to call
  anna at 7 pm", …): the crowds that share both a long prefix and a long suffix;
- chain: "set a timer for N minutes", N = 1…rows: every text 1–2 edits from many others, the
  grouping's worst case.

For each: wall and CPU seconds of ``text_duplicate_groups(texts, max_edits=2)``, the groups, and
"missed": among --check sampled texts, those that are not in the group of the first centre (most
frequent, then alphabetical) within 2 edits of them, by brute force against every centre.
Prints a markdown table (CPU time is the fair number on a shared machine).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sde.quality.duplicates import NEAR_MIN_CHARS, normalized_texts, text_duplicate_groups  # noqa: E402

from bench_quality import text_table  # noqa: E402  (this folder: sys.path[0] when run as a script)

MAX_EDITS = 2
NAMES = ["anna", "ben", "carla", "dmitri", "emma", "farid", "grace", "hugo", "ines", "jonas", "kofi", "lena"]
THINGS = ["the milk", "the keys", "my passport", "the tickets", "some bread", "the charger", "the report"]


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def random_corpus(rows: int, seed: int = 0) -> list[str]:
    """bench_quality's transcripts: Zipfian words, 5 % copies capitalised, 1 % one letter off."""
    return text_table(rows, seed)["text"].tolist()


def prompt_corpus(rows: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    templates = [
        lambda: f"set a timer for {rng.integers(1, 180)} minute{'s' if rng.random() < 0.8 else ''}",
        lambda: f"remind me to call {rng.choice(NAMES)} at {rng.integers(1, 13)} {rng.choice(['am', 'pm'])}",
        lambda: f"remind me to buy {rng.choice(THINGS)} in {rng.integers(1, 60)} minutes",
        lambda: f"what is {rng.integers(0, 1000)} plus {rng.integers(0, 1000)}",
        lambda: f"turn the volume {rng.choice(['up', 'down'])} to {rng.integers(0, 101)} percent",
        lambda: f"send a message to {rng.choice(NAMES)} saying i will be {rng.integers(1, 60)} minutes late",
    ]
    return [templates[k]() for k in rng.integers(0, len(templates), rows)]


def chain_corpus(rows: int, seed: int = 0) -> list[str]:
    return [f"set a timer for {n} minutes" for n in range(1, rows + 1)]


def missed(texts: list[str], labels: pd.Series, check: int, seed: int = 0) -> int:
    """Sampled texts not grouped with the first centre (by frequency, then alphabetically) within
    MAX_EDITS of them: what the rule asks, checked against every centre."""
    norm = pd.Series(normalized_texts(texts))
    frame = pd.DataFrame({"norm": norm, "group": labels.to_numpy(dtype="float64", na_value=np.nan)})
    counts = norm.value_counts()
    distinct = pd.DataFrame({"norm": counts.index, "count": counts.to_numpy()})
    distinct = distinct[distinct["norm"].str.len() >= NEAR_MIN_CHARS].sort_values(["count", "norm"],
                                                                                ascending=[False, True])
    group_of = frame.drop_duplicates("norm").set_index("norm")["group"]
    distinct["group"] = distinct["norm"].map(group_of).to_numpy()
    # a centre: the first text of its group in priority order (a text alone in its group is one too)
    first = ~distinct["group"].duplicated() | distinct["group"].isna()
    centres = distinct[first].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    sample = distinct.iloc[rng.choice(len(distinct), min(check, len(distinct)), replace=False)]
    bad = 0
    for lo in range(0, len(sample), 256):
        part = sample.iloc[lo:lo + 256]
        dist = cdist(part["norm"].tolist(), centres["norm"].tolist(), scorer=Levenshtein.distance,
                     score_cutoff=MAX_EDITS, dtype=np.int32, workers=-1)
        for row, (_, text) in enumerate(part.iterrows()):
            near = np.flatnonzero(dist[row] <= MAX_EDITS)
            if not len(near):
                continue
            want = centres["group"].iloc[near[0]]  # centres are in priority order
            want_text = centres["norm"].iloc[near[0]]
            if want_text == text["norm"]:
                continue  # it is the first centre within reach: itself
            if not (pd.notna(want) and want == text["group"]):
                bad += 1
    return bad


def bench(name: str, texts: list[str], check: int) -> None:
    c0, t0 = cpu_seconds(), time.perf_counter()
    labels = text_duplicate_groups(texts, max_edits=MAX_EDITS)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    groups = labels.nunique()
    miss = missed(texts, labels, check) if check else -1
    print(f"| {name} | {len(texts):,} | {len(set(texts)):,} | {wall:.2f} | {cpu:.2f} | {groups:,} | "
          f"{labels.notna().sum():,} | {miss if miss >= 0 else '–'} of {check:,} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--check", type=int, default=1000, help="sampled texts checked by brute force (0: none)")
    parser.add_argument("--corpus", nargs="*", default=["random", "prompts", "chain"])
    args = parser.parse_args()
    corpora = {"random": random_corpus, "prompts": prompt_corpus, "chain": chain_corpus}
    print("| corpus | texts | distinct | wall s | CPU s | groups | grouped | missed (sampled) |")
    print("|---|---|---|---|---|---|---|---|")
    for rows in args.rows:
        for name in args.corpus:
            bench(name, corpora[name](rows), args.check)


if __name__ == "__main__":
    main()
