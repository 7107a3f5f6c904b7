"""The sort keys of a text column where some lines read as numbers, at each start.

    python benchmarks/bench_number_keys.py [--rows 1000000] [--starts 3]

Writes one compressed text column as a build stores it (one line in a hundred a year such as
"2020", the others text), then opens it ``--starts`` times as consecutive server starts do, and
times the warm-up's ranking of it (``TableQuery.warm_sorts``) and the first page sorted by it,
descending. The first start computes the number-first keys and writes them beside the column; the
later ones map them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from sde.compressed_columns import CompressedStringArray, open_column, write_compressed
from sde.query import TableQuery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    values = [str(2000 + i % 50) if i % 100 == 0 else f"the line {i % 9777} of text" for i in range(args.rows)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.arrow"
        write_compressed(path, "v", [pa.array(values, pa.large_string())], labels=False)
        for start in range(args.starts):
            frame = pd.DataFrame({"n": np.arange(args.rows)})
            frame.insert(1, "v", pd.Series(CompressedStringArray.over(open_column(path)), copy=False))
            query = TableQuery(frame)
            began = time.perf_counter()
            query.warm_sorts(["v"])
            ranked = time.perf_counter() - began
            began = time.perf_counter()
            query.window(None, "-v", 0, 50)
            page = time.perf_counter() - began
            print(f"start {start + 1}: ranked in {ranked * 1000:.0f} ms, first page sorted by it {page * 1000:.0f} ms")


if __name__ == "__main__":
    main()
