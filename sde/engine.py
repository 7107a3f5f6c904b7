"""How much of the machine sde may use: build processes, DuckDB threads and DuckDB memory.

Set once per process from the command line (``--threads``, ``--memory-limit``, ``--part-size``);
the one place these live: read by the part-by-part build (sde.build) and by the query engine's
DuckDB database (sde.filters.engine, which reopens with them).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable

import psutil
import pyarrow as pa

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)


class EngineSettingError(ValueError):
    """A --threads, --memory-limit or --part-size value sde cannot use; the message says what to write."""


@dataclass(frozen=True)
class EngineSettings:
    threads: int | None = None  # None: every core
    memory_limit: str | None = None  # DuckDB's form, e.g. "2GB"; None: DuckDB's default (80% of RAM)
    part_bytes: int | None = None  # a big manifest is built in parts of this size (None: sde.build's)

    @property
    def processes(self) -> int:
        return self.threads or max(1, os.cpu_count() or 1)


_current = EngineSettings()


def parse_memory_limit(text: str) -> str:
    """``text`` as DuckDB reads a memory limit ("2GB", "512 MiB"), or EngineSettingError."""
    found = _MEMORY.match(text)
    # "0GB" is a number and a unit: too little, not "not an amount of memory"
    limit = None if found and float(found.group(1)) <= 0 else _size_text(text)
    if limit is None or parse_size(limit) < LEAST_MEMORY_LIMIT:
        # accepted, DuckDB then refused nearly every query ("Out of Memory Error") with the server up
        raise EngineSettingError(f"{text!r} is too little memory for sde's queries; give at least 64MB "
                                 "(e.g. 2GB for 10M utterances)")
    return limit


#: The least --memory-limit taken: below it DuckDB cannot sort or group a page's worth of rows.
LEAST_MEMORY_LIMIT = 64 * 10**6
# The least --part-size taken: below a few KB a part is a line or two, and a manifest thousands of
# parts (--part-size 1B: one part per line, 20k lines in ~75k files). Small parts are slow, not
# wrong: a part costs ~30 ms of a 2-process build (`sde index --threads 2` of a 5.7 MB, 20k-line
# manifest: 3.4 s in parts of 1 MB or more, 5.9 s of 64 KB, 46 s of 4 KB), and the tests build
# small manifests in several parts of a few KB.
LEAST_PART_BYTES = 4000
#: --threads N: at most this many per CPU this process may use. A few per CPU can help where the
#: build waits on reads (a network file system, an object store); beyond that the extra build
#: processes only compete for the same cores, each with memory of its own (--threads 1000 on 2
#: CPUs started 91 of them).
THREADS_PER_CPU = 4

_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _size_text(text: str) -> str:
    """``text`` as DuckDB reads an amount of memory ("2GB", "512MIB"), or EngineSettingError."""
    found = _MEMORY.match(text)
    if not found or float(found.group(1)) <= 0:
        raise EngineSettingError(f"{text!r} is not an amount of memory; write a number and a unit, e.g. 2GB or 512MB")
    return f"{found.group(1)}{found.group(2).upper()}"


def parse_size(text: str) -> int:
    """Bytes of a size such as "32MB" or "1 MiB", or EngineSettingError."""
    found = _MEMORY.match(_size_text(text))
    assert found is not None  # _size_text accepted it
    return int(float(found.group(1)) * _UNITS[found.group(2).upper()])


def kept_memory_bytes(memory_limit: str) -> int:
    """The half of --memory-limit a process keeps between queries: decompressed transcripts and word
    indexes (sde.compressed_columns.whole_budget). DuckDB's queries get the rest
    (:func:`query_memory_bytes`)."""
    return parse_size(memory_limit) // 2


def query_memory_bytes(memory_limit: str | None) -> int | None:
    """The memory DuckDB's queries may use in a process that serves or lays out pages: what
    --memory-limit leaves beside :func:`kept_memory_bytes`, and at least LEAST_MEMORY_LIMIT. None
    without a limit: DuckDB's default. A build's own DuckDB (sde.build.duck) has the whole limit:
    nothing is kept beside it."""
    if not memory_limit:
        return None
    return max(parse_size(memory_limit) - kept_memory_bytes(memory_limit), LEAST_MEMORY_LIMIT)


def parse_part_size(text: str) -> int:
    """Bytes of a --part-size, at least :data:`LEAST_PART_BYTES`, or EngineSettingError."""
    size = parse_size(text)
    if size < LEAST_PART_BYTES:
        raise EngineSettingError(f"{text!r} is too small for a part: give at least 4KB; parts of 1MB or more "
                                 "build fastest, each part costing a process task and files of its own "
                                 "(default: 32MiB)")
    return size


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (a container's or taskset's share of the
    machine) where the system says it, else every CPU of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _check_threads(threads: int) -> None:
    """--threads: 1 to THREADS_PER_CPU per usable CPU, else EngineSettingError naming both bounds."""
    cpus = usable_cpus()
    most = THREADS_PER_CPU * cpus
    found = f"{cpus} CPU{'s' * (cpus > 1)} found for this process"
    if threads < 1:
        raise EngineSettingError(f"{threads} threads: give 1 or more, at most {most} ({THREADS_PER_CPU} per CPU; "
                                 f"{found}; default: every core)")
    if threads > most:
        raise EngineSettingError(f"{threads} threads is more than {THREADS_PER_CPU} per CPU ({found}): the extra "
                                 "build processes only compete for the same cores, each with memory of its own; "
                                 f"give at most {most} (default: every core)")


def configure(threads: int | None = None, memory_limit: str | None = None,
              part_size: str | None = None) -> EngineSettings:
    """Set this process's engine settings (None leaves a setting at its default), and Arrow's
    allocator (:func:`use_system_allocator`)."""
    global _current
    if threads is not None:
        _check_threads(threads)
    use_system_allocator()
    _current = EngineSettings(threads, parse_memory_limit(memory_limit) if memory_limit else None,
                              parse_part_size(part_size) if part_size else None)
    return _current


def settings() -> EngineSettings:
    return _current


# Where a container's memory limit is written (cgroup v2, then v1); "max" or a huge v1 number means none.
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def machine_memory() -> int:
    """Bytes of memory this process's machine has: its RAM, or its container's limit when that is
    lower (as DuckDB counts it for its default limit)."""
    total = int(psutil.virtual_memory().total)
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


def process_memory() -> int:
    """Bytes of memory this process holds of its own: resident and not backed by a file (the
    tables it maps from the cache are the kernel's to drop, and do not count)."""
    held = psutil.Process().memory_info()
    return int(held.rss - getattr(held, "shared", 0))


#: How often :func:`room_in_process` looks again while it waits for memory to be handed back.
ROOM_POLL_S = 0.1


def room_in_process(size: int, wait_s: float = 0.0, give_up: Callable[[], bool] | None = None) -> bool:
    """Whether this process can take ``size`` bytes more and stay under --memory-limit (always,
    without one). For memory a process may do without (a column read whole for the searches to
    come): the limit's halves bound DuckDB's queries and what is kept, but the process's own
    memory (its tables, its caches of views, what its allocators hold) comes on top. Memory
    Arrow's and glibc's allocators hold freed is handed back before a second look; others
    (DuckDB's) hand theirs back on their own threads, so the answer may wait up to ``wait_s``
    seconds for room (at 10M lines, the process held 2.1 GB as the warm-up's last queries ended,
    1.1 GB half a second later). ``give_up``: asked at each look, ends the wait (no room) when true:
    a process told to exit waited out the rest of it (Ctrl-C took up to 5 s more)."""
    limit = settings().memory_limit
    if not limit:
        return True
    room = parse_size(limit) - size
    if process_memory() <= room:
        return True
    release_freed_memory()
    deadline = time.monotonic() + wait_s
    while process_memory() > room:
        if time.monotonic() >= deadline or (give_up is not None and give_up()):
            return False
        time.sleep(ROOM_POLL_S)
    return True


#: Set by a user choosing Arrow's allocator (``mimalloc``, ``jemalloc`` or ``system``): sde then keeps it.
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def use_system_allocator() -> None:
    """Make the system's allocator (glibc's on Linux) Arrow's default, unless the user chose one
    (:data:`ARROW_POOL_VARIABLE`). sde keeps columns of many buffers of a few hundred KB for
    minutes, made on some threads and freed on others. Arrow's default (mimalloc) held more for
    them, and took longer: a 10M-line transcript column read whole held 0.92 GB and took 1.0-1.8 s,
    against its plain 0.73 GB and 0.6-0.7 s; the server's memory through a run of requests was
    0.2 GB lower. What the system's allocator holds freed is handed back by :func:`release_freed_memory`."""
    if os.environ.get(ARROW_POOL_VARIABLE):
        return
    pa.set_memory_pool(pa.system_memory_pool())


def release_freed_memory() -> None:
    """Hand back to the system the memory the allocators hold freed: Arrow's pool, and glibc's."""
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to hand back this way
            pass


def use(chosen: EngineSettings) -> None:
    """Make ``chosen`` this process's settings as they are (sde.filters.engine, once DuckDB accepted
    them)."""
    global _current
    _current = chosen
