"""Files of a build written whole or not at all: under a temporary name, then renamed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sde.cache import done_with_temp_file, temp_file_in


def replace_atomically(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` then rename: a killed worker leaves a temporary file a later run removes
    (sde.cache.remove_stale_temp_files), never a half-written part."""
    tmp = temp_file_in(path.parent, path.suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        done_with_temp_file(tmp)


def write_atomic(path: Path, data: bytes) -> None:
    replace_atomically(path, lambda tmp: Path(tmp).write_bytes(data))


def write_arrow(path: Path, table: pd.DataFrame | pa.Table) -> None:
    """An Arrow IPC file (what the join memory-maps)."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)

    def write(tmp: str) -> None:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    replace_atomically(path, write)


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    replace_atomically(path, lambda tmp: pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp))
