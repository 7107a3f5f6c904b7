"""Persistent cache of built datasets, so a second start on a million-utterance manifest is fast.

Entries live in a diskcache store outside the dataset folder (the user cache dir by default). Each
table is stored as an Arrow IPC file, which diskcache keeps as a plain file; a warm start memory-maps
it instead of parsing and scoring the manifest again. The small metadata record is written last and
acts as the commit marker: a reader never sees a half-written entry. Any failure to read or write
the cache is a warning, never fatal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa

from sde import __version__
from sde.dataset import Dataset, DatasetOptions, build_dataset

# Bump when the layout of a built Dataset changes, so old entries are not misread.
CACHE_FORMAT = 4
DEFAULT_SIZE_LIMIT = 20 * 2**30


def default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("SDE_CACHE_DIR") or user_cache_dir("sde"))


def _file_stamp(path: str | Path) -> dict:
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def fingerprint(manifest: str | Path, options: DatasetOptions) -> str:
    """Key of a built dataset: the manifest's identity and every option that changes the result."""
    record = {
        "format": CACHE_FORMAT,
        "sde": __version__,
        "manifest": _file_stamp(manifest),
        "options": dataclasses.asdict(options),
        "files": [_file_stamp(f) for f in options.files() if Path(f).exists()],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


Warn = Callable[[str], None]


def _stderr_warning(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


class DatasetCache:
    """diskcache-backed store of built datasets; every method degrades to a warning on failure."""

    def __init__(self, directory: str | Path, warn: Warn = _stderr_warning) -> None:
        import diskcache

        self.directory = Path(directory)
        self.warn = warn
        self.directory.mkdir(parents=True, exist_ok=True)
        self._store = diskcache.Cache(
            str(self.directory),
            size_limit=DEFAULT_SIZE_LIMIT,
            eviction_policy="least-recently-used",
        )

    def close(self) -> None:
        self._store.close()

    def get(self, key: str) -> Dataset | None:
        meta_raw = self._store.get(("meta", key))
        if meta_raw is None:
            return None
        try:
            meta = pickle.loads(meta_raw)
            tables = {name: self._read_table(key, name) for name in meta["tables"]}
            return _dataset_from(meta, tables)
        except Exception as e:  # noqa: BLE001 - any corruption means "rebuild", never a crash
            self.warn(f"cache entry {key[:12]} in {self.directory} is unreadable ({e}); rebuilding it")
            self.delete(key)
            return None

    def put(self, key: str, dataset: Dataset) -> None:
        try:
            tables = _tables_of(dataset)
            for name, df in tables.items():
                self._write_table(key, name, df)
            meta = _meta_of(dataset, list(tables))
            self._store.set(("meta", key), pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as e:  # noqa: BLE001 - a full disk or read-only cache must not stop the app
            self.warn(f"could not write the cache in {self.directory} ({e}); continuing without it")
            self.delete(key)

    def delete(self, key: str) -> None:
        try:
            for k in list(self._store.iterkeys()):
                if isinstance(k, tuple) and len(k) >= 2 and k[1] == key:
                    self._store.delete(k)
        except Exception:  # noqa: BLE001
            pass

    def _write_table(self, key: str, name: str, df: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(df, preserve_index=False)
        # Written to a temporary file first so diskcache can move a complete file into its store.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".arrow")
        os.close(fd)
        try:
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                # One record batch: columns read back as single contiguous arrays (fast row takes).
                writer.write_table(table.combine_chunks())
            with open(tmp, "rb") as f:
                self._store.set(("table", key, name), f, read=True)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _read_table(self, key: str, name: str) -> pd.DataFrame:
        handle = self._store.get(("table", key, name), read=True)
        if handle is None:
            raise KeyError(f"table {name} missing")
        with handle:
            path = getattr(handle, "name", None)
            if isinstance(path, str) and os.path.exists(path):
                # Memory-mapped: pages load on demand and are shared with the OS page cache.
                source = pa.memory_map(path, "r")
            else:
                source = pa.BufferReader(handle.read())
            table = pa.ipc.open_file(source).read_all()
        return table.to_pandas(split_blocks=True, self_destruct=False)


def _tables_of(dataset: Dataset) -> dict[str, pd.DataFrame]:
    tables = {"utterances": dataset.utterances, "vocabulary": dataset.vocabulary}
    for i, h in enumerate(dataset.hypotheses):
        tables[f"errors{i}"] = dataset.errors[h.field]
    return tables


def _meta_of(dataset: Dataset, table_names: list[str]) -> dict:
    return {
        "format": CACHE_FORMAT,
        "tables": table_names,
        "name": dataset.name,
        "manifest_path": str(dataset.manifest_path),
        "options": dataset.options,
        "hypotheses": dataset.hypotheses,
        "problems": dataset.problems,
        "alphabet": dataset.alphabet,
        "total_lines": dataset.total_lines,
        "warnings": dataset.warnings,
        "alphabet_report": dataset.alphabet_report,
        "extra_summary": dataset.extra_summary,
        "dtypes": {
            name: {c: str(t) for c, t in df.dtypes.items()} for name, df in _tables_of(dataset).items()
        },
    }


def _dataset_from(meta: dict, tables: dict[str, pd.DataFrame]) -> Dataset:
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"format {meta.get('format')} is not {CACHE_FORMAT}")
    for name, df in tables.items():
        _restore_dtypes(df, meta["dtypes"][name])
    return Dataset(
        name=meta["name"],
        manifest_path=Path(meta["manifest_path"]),
        options=meta["options"],
        utterances=tables["utterances"],
        vocabulary=tables["vocabulary"],
        hypotheses=meta["hypotheses"],
        errors={h.field: tables[f"errors{i}"] for i, h in enumerate(meta["hypotheses"])},
        problems=meta["problems"],
        alphabet=meta["alphabet"],
        total_lines=meta["total_lines"],
        warnings=meta["warnings"],
        alphabet_report=meta["alphabet_report"],
        extra_summary=meta["extra_summary"],
    )


def _restore_dtypes(df: pd.DataFrame, dtypes: dict[str, str]) -> None:
    """Arrow round trips may widen a few dtypes (e.g. string flavours); put back what was built."""
    for col, want in dtypes.items():
        if col in df and str(df[col].dtype) != want:
            try:
                df[col] = df[col].astype(want)
            except (TypeError, ValueError):
                pass


def load_dataset(
    manifest: str | Path,
    options: DatasetOptions = DatasetOptions(),
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
    warn: Warn = _stderr_warning,
    status: Callable[[str], None] | None = None,
    background_write: bool = False,
) -> Dataset:
    """Build a dataset, or read it back from the cache when the manifest and options are unchanged.

    ``background_write``: return as soon as the dataset is built and write the cache entry from a
    (non-daemon) thread, so a server can start meanwhile; the process still finishes the write
    before it exits, and an interrupted write leaves no entry (see DatasetCache)."""
    cache = None
    key = None
    if use_cache:
        directory = Path(cache_dir) if cache_dir else default_cache_dir()
        try:
            cache = DatasetCache(directory, warn=warn)
            key = fingerprint(manifest, options)
        except Exception as e:  # noqa: BLE001 - unwritable dir, corrupt index, missing manifest (reported below)
            if Path(manifest).is_file():
                warn(f"cannot use the cache in {directory} ({e}); running without it (use --cache-dir DIR)")
            cache = None
    try:
        if cache is not None and key is not None:
            cached = cache.get(key)
            if cached is not None:
                if status:
                    status("loaded from cache")
                return cached
        dataset = build_dataset(manifest, options, progress=progress, status=status)
        if cache is not None and key is not None:
            if background_write:
                writer_cache, cache = cache, None  # the writer closes it

                def write() -> None:
                    try:
                        writer_cache.put(key, dataset)
                    finally:
                        writer_cache.close()

                threading.Thread(target=write, name="sde-cache-write", daemon=False).start()
            else:
                cache.put(key, dataset)
        return dataset
    finally:
        if cache is not None:
            cache.close()
