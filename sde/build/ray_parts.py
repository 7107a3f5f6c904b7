"""The part builds of sde.build as Ray tasks (``sde index --engine ray``; the extra ``sde[ray]``).

Each remaining part is one Ray task running the local engine's very ``build_and_write``, so a
part's files are the same whichever engine wrote them and the driver joins them as it joins local
ones. The tasks write straight into the build folder: on a cluster that folder (and the manifest)
must be on storage every node sees; the driver checks each finished part's files and says so when
they are missing. Ray retries a task whose worker process died (``max_retries``); an interrupted
driver's tasks in flight end with its session; the finished parts stay, and the next run skips them.

The session is opened only when parts remain to build: by ``RayEngine.connect`` when given
(``sde index`` passes sde.nemo.ray_engine's ``ray_session``: --address, RAY_ADDRESS, a local
instance), else the caller's open session, else a local instance started for the build and stopped
after it. Ray is imported here only, when a build starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sde.build.part_files import PartInfo, build_and_write, read_info, utterances_file
from sde.dataset import DatasetOptions
from sde.build.parts import Part
from sde.sources import remote

RAY_MISSING_MESSAGE = "Ray is not installed. Install it with: pip install 'sde[ray]'"
# Fault injection for the tests (and for trying a cluster's recovery by hand): "MARKER:INDEX" makes
# the worker building part INDEX exit at once unless MARKER exists (it creates it first, so Ray's
# retry of that task succeeds). Read by the driver and handed to the tasks.
FAULT_ENV = "SDE_RAY_BUILD_FAULT"
# A part whose worker keeps dying (out of memory, a node lost) is given up after this many retries.
MAX_RETRIES = 3
SHARED_STORAGE_HINT = ("on a Ray cluster the manifest and the build folder (under the cache folder: "
                       "--cache-dir) must be on storage every node sees at the same path, e.g. NFS or Lustre")


class RayBuildError(RuntimeError):
    """The Ray engine cannot build: Ray missing, a task that failed, files the driver cannot see."""


@dataclass(frozen=True)
class RayEngine:
    """How the parts are built on Ray: ``workers`` at most at once (None: as many as the cluster
    has CPUs); ``connect`` opens the session (None: the open one, else a local instance)."""

    workers: int | None = None
    connect: Callable[[], AbstractContextManager[Any]] | None = None


def import_ray() -> Any:
    try:
        import ray
    except Exception as exc:  # ImportError, or a broken install raising anything else
        raise RayBuildError(RAY_MISSING_MESSAGE) from exc
    return ray


def built_on_ray(options: DatasetOptions, folder: Path, todo: Sequence[tuple[int, Part]],
                 engine: RayEngine | str = "ray", *, say: Callable[[str], None] = lambda _msg: None) -> Iterator[PartInfo]:
    """Build parts ``todo`` (index, part) into ``folder`` as Ray tasks; yields each part's info as
    it finishes, after checking that its files are visible here."""
    engine = engine if isinstance(engine, RayEngine) else RayEngine()
    workers = engine.workers
    if workers is not None and workers < 1:
        raise RayBuildError(f"--workers {workers}: give 1 or more (default: every CPU of the Ray cluster)")
    if not todo:  # every part was built by an earlier run: no cluster needed
        return
    ray = import_ray()
    fault = _fault()
    with _session(ray, engine) as cpus:
        say(f"building {len(todo)} parts as Ray tasks ({cpus:g} CPUs in the Ray cluster"
            + (f", at most {workers} at once)" if workers else ")"))
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_build_task)
        waiting = deque(todo)
        running: dict[Any, int] = {}
        cwd = os.getcwd()
        # --storage-options: the tasks read remote manifests' audio and text files as we would
        storage = remote.storage_options()
        # Stopped early (Ctrl-C, SIGTERM, a failed part), the tasks in flight end with the session:
        # Ray kills the tasks of a driver that disconnects. No ray.cancel(force=True): racing a task
        # that is just finishing, it aborts the driver in Ray 2.60 ("Tried to complete task that
        # was not pending"). In a session the caller keeps open they finish their part, atomically.
        while waiting or running:
            while waiting and (workers is None or len(running) < workers):
                index, part = waiting.popleft()
                running[task.remote(part, options, str(folder), index, cwd, fault, storage)] = index
            (ref,), _ = ray.wait(list(running), num_returns=1)
            index = running.pop(ref)
            info, node = _result(ray, ref, index)
            check_visible(folder, info, node)
            yield info


def _fault() -> str | None:
    fault = os.environ.get(FAULT_ENV) or None
    if fault is not None and not re.fullmatch(r".+:\d+", fault):
        raise RayBuildError(f"{FAULT_ENV}={fault!r}: expected MARKER_FILE:INDEX (the part INDEX kills its worker once)")
    return fault


@contextlib.contextmanager
def _session(ray: Any, engine: RayEngine) -> Iterator[float]:
    """The session ``engine.connect`` opens, else the open one (left open), else a local instance
    for this build; yields the cluster's CPUs."""
    if engine.connect is not None:
        with engine.connect():
            yield float(ray.cluster_resources().get("CPU", 1))
        return
    if ray.is_initialized():
        yield float(ray.cluster_resources().get("CPU", 1))
        return
    try:
        if os.environ.get("RAY_ADDRESS"):  # under `ray job submit`: the job's cluster
            ray.init(logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(num_cpus=engine.workers or _local_cpus(), include_dashboard=False,
                     logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: no Ray to build on
        raise RayBuildError(f"cannot start Ray for the build: {exc}") from exc
    try:
        yield float(ray.cluster_resources().get("CPU", 1))
    finally:
        ray.shutdown()


def _local_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _result(ray: Any, ref: Any, index: int) -> tuple[PartInfo, str]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the task raised: not retried, the cause is the message
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        raise RayBuildError(f"part {index} failed on the Ray cluster: {cause}") from None
    except ray.exceptions.RayError as exc:  # its worker died MAX_RETRIES + 1 times, or its node was lost
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayBuildError(f"part {index} failed on the Ray cluster after {MAX_RETRIES} retries: {first}") from None


def check_visible(folder: Path, info: PartInfo, node: str) -> None:
    """A part a task reported built must be in ``folder`` as the driver sees it (its info, and its
    tables when it has rows): a node writing to a disk of its own would lose the part."""
    seen = read_info(folder, info.index, info.part) is not None or info.error
    if seen and (not info.rows or utterances_file(folder, info.index).is_file()):
        return
    raise RayBuildError(f"part {info.index} was built on node {node}, but its files are not in {folder} on this "
                        f"machine ({socket.gethostname()}): {SHARED_STORAGE_HINT}")


def _build_task(part: Part, options: DatasetOptions, folder: str, index: int, cwd: str,
                fault: str | None, storage: dict[str, Any] | None = None) -> tuple[PartInfo, str]:
    """Ray task (module level: pickled by reference, workers import sde): one part, built in the
    driver's working directory so relative paths mean what they meant there."""
    node = socket.gethostname()
    if fault is not None:
        _maybe_die(fault, index)
    remote.configure(storage)
    before = os.getcwd()
    try:
        os.chdir(cwd)
    except OSError:
        raise RayBuildError(f"node {node} has no folder {cwd} (the driver's working directory): "
                            f"{SHARED_STORAGE_HINT}") from None
    try:
        # (one missing shard of a set is a problem of the dataset, as in a one-piece read; none
        # of them visible is storage this node does not share)
        if not any(os.path.isfile(path) for path in part.files):
            raise RayBuildError(f"node {node} cannot read the manifest {part.files[0]}: {SHARED_STORAGE_HINT}")
        Path(folder).mkdir(parents=True, exist_ok=True)
        return build_and_write(part, options, Path(folder), index), node
    finally:
        os.chdir(before)


def _maybe_die(fault: str, index: int) -> None:
    marker, _, target = fault.rpartition(":")
    if int(target) == index and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)  # as a worker killed by the OOM killer or a lost node: no exception, no cleanup
