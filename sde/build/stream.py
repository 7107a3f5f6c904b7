"""The part-by-part build: which parts remain, worker processes for them, then the join."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sde.build.merge import Joined, join_parts
from sde.build.part_files import PartInfo, build_and_write, read_info
from sde.build.parts import PART_BYTES, Part, split_parts
from sde.build.predictions import match_predictions
from sde.cache import remove_stale_temp_files
from sde.cache.limit import size_text
from sde.dataset import DatasetOptions
from sde.manifest import ManifestError
from sde.progress import progress_bar
from sde.sources import SourceSet
from sde.workers import run_unordered

if TYPE_CHECKING:
    from sde.build.ray_parts import RayEngine


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def build_in_parts(path: str | SourceSet, options: DatasetOptions, folder: Path, *, threads: int | None = None,
                   part_bytes: int = PART_BYTES, memory_limit: str | None = None, progress: bool = False,
                   say: Callable[[str], None] = lambda _msg: None, engine: str | RayEngine = "local") -> Joined:
    """Build manifest ``path`` (or a set of local manifests) part by part into ``folder`` (kept
    parts of an interrupted run of the same build are reused) and join the parts; returns the
    joined tables' files.

    ``engine``: "local" builds the parts on ``threads`` processes; "ray" or a
    sde.build.ray_parts.RayEngine as Ray tasks. The join runs here either way."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(folder)
    parts = split_parts(path, part_bytes)
    plan = match_predictions(parts, options, folder, threads=threads or default_threads(), part_bytes=part_bytes,
                             memory_limit=memory_limit, say=say) if options.predictions else None
    infos: dict[int, PartInfo] = {}
    for index, part in enumerate(parts):
        info = read_info(folder, index, part)
        if info is not None:
            infos[index] = info
    todo = [i for i in range(len(parts)) if i not in infos]
    threads = min(threads or default_threads(), max(1, len(todo)))
    if infos:
        say(f"resuming an interrupted build: {len(infos)} of {len(parts)} parts are done")
    if engine != "local":
        from sde.build.ray_parts import built_on_ray

        runner = built_on_ray(options, folder, [(i, parts[i]) for i in todo], engine, say=say)
    else:
        say(f"building {len(todo)} parts of ~{size_text(part_bytes)} on {threads} process{'es' * (threads > 1)}")
        runner = _built(options, folder, [(i, parts[i]) for i in todo], threads)
    bar = progress_bar(len(parts), "building", unit="parts", enabled=progress, leave=False)
    bar.update(len(infos))
    try:
        for info in runner:
            infos[info.index] = info
            bar.update(1)
    finally:
        runner.close()  # stops the processes or Ray tasks still building before their leftovers go
        bar.close()
        remove_stale_temp_files(folder)  # of workers stopped mid-part (Ctrl-C, SIGTERM)
    ordered = [infos[i] for i in range(len(parts))]
    failed = [info for info in ordered if info.error]
    if failed:  # --strict: the earliest bad line of the file, as a one-piece read reports it
        raise ManifestError(failed[0].error or "")
    return join_parts(ordered, folder, options, memory_limit=memory_limit, threads=threads, say=say,
                      predictions=plan)


def _built(options: DatasetOptions, folder: Path, todo: list[tuple[int, Part]], threads: int) -> Iterator[PartInfo]:
    # closed early (Ctrl-C, SIGTERM), the workers are terminated; finished parts stay
    return run_unordered(_build_job, [(part, options, folder, index) for index, part in todo], threads)


def _build_job(job: tuple) -> PartInfo:
    return build_and_write(*job)
