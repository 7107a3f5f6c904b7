"""The build's own DuckDB connections: their spill folder, memory and threads, and running out of
that memory said in one line (a build kept in the cache folder resumes from its parts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from sde.manifest import ManifestError


def duckdb_config(folder: Path, memory_limit: str | None, threads: int | None) -> dict[str, str | int]:
    # allocator_background_threads: what the join used goes back to the system before serving
    config: dict[str, str | int] = {"temp_directory": str(folder / "duckdb-spill"), "allocator_background_threads": True}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    return config


@contextmanager
def build_connection(folder: Path, memory_limit: str | None, threads: int | None, *, what: str,
                     database: str = ":memory:") -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection for ``what`` (e.g. "summing the vocabulary"), spilling into ``folder``.
    DuckDB running out of its memory in the block is a :class:`ManifestError` naming the knobs:
    each of DuckDB's threads holds buffers of its own, so fewer threads need less."""
    try:
        with duckdb.connect(database, config=duckdb_config(folder, memory_limit, threads)) as con:
            yield con
    except duckdb.OutOfMemoryException as e:
        limit = f"--memory-limit {memory_limit}" if memory_limit else "the memory DuckDB may use (--memory-limit)"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ManifestError(
            f"{what} needs more memory than {limit} allows ({first}): give a higher --memory-limit, "
            "or fewer --threads") from None
