"""Several manifests (a list, globs, NeMo shard patterns) read at once, results in order.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sde.manifest.batches import batch_jobs, read_batch
from sde.manifest.files import FileRead, read_source
from sde.manifest.model import ManifestError, ManifestPart
from sde.manifest.pieces import Spec, part_read
from sde.progress import progress_bar
from sde.sources import PatternError, RemoteError, SourceSet, as_source_set

# Several manifests (shards) are read at once. Local shards are joined into batches that pyarrow
# parses on every core already: two batches in flight keep the cores busy while one thread does its
# Python work (measured on 2 cores: 512 shards of 2k lines read as fast as one file; four threads
# were 15-20% slower, contending for the GIL). Remote reads wait on the network.
LOCAL_READ_THREADS = 2
REMOTE_READ_THREADS = 16


def source_set(path: Any) -> SourceSet:
    try:
        return as_source_set(path)
    except (PatternError, RemoteError) as e:
        raise ManifestError(str(e)) from None


def read_sources(sources: SourceSet, shown: str, spec: Spec, strict: bool, progress: bool,
                  audio_base_path: str | Path | None, part: ManifestPart | None = None) -> list[FileRead]:
    """Every manifest of the set, several at once (see LOCAL_READ_THREADS); results in order, so
    that ids, problems and --strict's first error follow the order of the sources."""
    # a part of a set (sde.build) sizes the cap on extra fields by the whole set, as its one read does
    of_set = part_read() if sources.part_of_set else None
    set_bytes = (of_set.dataset_bytes or None) if of_set is not None else None
    if not sources.several or part is not None:  # one file (or lines of one file of a set)
        only = sources.sources[0]
        return [read_source(0, only, only.name if sources.several else shown, spec, strict, progress,
                             audio_base_path, several=sources.several, rows_of=set_bytes, part=part)]
    remote_files = sum(s.remote for s in sources.sources)
    sizes = [None if s.remote else _size_or_none(s.location) for s in sources.sources]
    rows_of = set_bytes if of_set is not None else None if remote_files else sum(size or 0 for size in sizes)
    threads = REMOTE_READ_THREADS if remote_files else LOCAL_READ_THREADS
    jobs = batch_jobs(sources, sizes)
    pool = ThreadPoolExecutor(min(threads, len(jobs)), thread_name_prefix="sde-read")
    bar = progress_bar(len(sources), f"reading {len(sources)} manifests", unit="files", enabled=progress,
                       leave=False)
    try:
        futures = [pool.submit(read_batch, job, spec, strict, audio_base_path, rows_of) if len(job) > 1 else
                   pool.submit(read_source, job[0][0], job[0][1], job[0][1].name, spec, strict, False,
                               audio_base_path, several=True, rows_of=rows_of)
                   for job in jobs]
        reads: list[FileRead] = []
        for future in futures:
            done = future.result()
            reads.extend(done if isinstance(done, list) else [done])
            bar.update(len(done) if isinstance(done, list) else 1)
        lines = sum(r.total for r in reads)
        bar.set_postfix_str(f"{lines:,} line{'' if lines == 1 else 's'}", refresh=False)
        return reads
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)


def _size_or_none(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None
