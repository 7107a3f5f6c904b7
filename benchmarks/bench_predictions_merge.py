"""CPU seconds of matching a predictions file to a manifest in one piece
(sde.manifest.hypotheses: match_predictions once, then merge_predictions + predictions_use, what
``sde M --predictions P`` runs for a manifest under one part; a version without match_predictions
matches in each), on synthetic keys: plain lines, or the two sides of stereo calls.

    python benchmarks/bench_predictions_merge.py [--rows 1000000] [--kind plain|channels] [--repeat 3]

Compare two checkouts by CPU seconds (the machine is shared): run it with PYTHONPATH=<checkout>,
alternating, e.g. ``for i in 1 2 3; do PYTHONPATH=/tmp/old python ...; python ...; done``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from sde.manifest import hypotheses


def frames(rows: int, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    if kind == "channels":  # each call file holds two lines: channel 0 and 1 at one offset
        paths = np.array([f"/data/calls/call_{i // 2:07d}.wav" for i in range(rows)], dtype=object)
        channels = np.arange(rows) % 2
    else:
        paths = np.array([f"/data/audio/utt_{i:07d}.wav" for i in range(rows)], dtype=object)
        channels = None
    table = pd.DataFrame({"audio_filepath": paths, "audio_path": paths, "offset": np.zeros(rows),
                          "shard": np.full(rows, np.nan)})
    order = rng.permutation(rows)
    preds = pd.DataFrame({"audio_filepath": paths[order], "audio_path": paths[order], "offset": np.zeros(rows),
                          "shard": np.full(rows, np.nan), "line": np.arange(1, rows + 1),
                          "pred_text": pd.array([f"words {i}" for i in order], dtype="string[pyarrow]")})
    if channels is not None and hasattr(hypotheses, "NO_CHANNEL"):
        table["channel"] = channels.astype(np.float64)
        preds["channel"] = channels[order].astype(np.float64)
    return table, preds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--kind", choices=["plain", "channels"], default="plain")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    table, preds = frames(args.rows, args.kind)
    best = float("inf")
    for _ in range(args.repeat):
        started = time.process_time()
        if hasattr(hypotheses, "match_predictions"):
            matched = hypotheses.match_predictions(table, preds)
            values, unmatched = hypotheses.merge_predictions(table, preds, "p.json", "m.json", matched)
            hypotheses.predictions_use(preds, table, matched)
        else:
            values, unmatched = hypotheses.merge_predictions(table, preds, "p.json", "m.json")
            hypotheses.predictions_use(preds, table)
        best = min(best, time.process_time() - started)
    print(f"{hypotheses.__file__}: {args.rows:,} rows ({args.kind}), unmatched {unmatched}: "
          f"best of {args.repeat} {best:.2f} CPU s")


if __name__ == "__main__":
    main()
