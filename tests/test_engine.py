"""sde.engine: how much of the machine sde may use."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from sde import engine

RAM = psutil.virtual_memory().total


@pytest.mark.parametrize("case, written, expected", [
    ("no limit (cgroup v2)", "max\n", RAM),
    ("a container's limit", "1073741824\n", 2**30),
    ("a limit above the RAM (cgroup v1's 'none')", "9223372036854771712\n", RAM),
    ("no cgroup file", None, RAM),
    ("something else", "garbage", RAM),
])
def test_machine_memory_is_the_ram_or_the_containers_lower_limit(monkeypatch, tmp_path, case, written, expected):
    path = tmp_path / "memory.max"
    if written is not None:
        path.write_text(written)
    monkeypatch.setattr(engine, "_CGROUP_LIMITS", (str(path),))
    assert engine.machine_memory() == expected


@pytest.mark.parametrize("text, size", [("2GB", 2 * 10**9), ("512 MiB", 512 * 2**20), ("1.5kb", 1500)])
def test_sizes_are_read_in_decimal_and_binary_units(text, size):
    assert engine.parse_size(text) == size


@pytest.mark.parametrize("text", ["two gigs", "0GB", "-1GB", "2", ""])
def test_a_size_without_a_unit_or_amount_names_the_form_to_write(text):
    with pytest.raises(engine.EngineSettingError, match="e.g. 2GB"):
        engine.parse_size(text)


def test_the_process_memory_counts_what_the_process_holds_not_the_files_it_maps(tmp_path):
    import numpy as np

    before = engine.process_memory()
    held = np.ones(200 << 17)  # 200 MiB written: resident, and the process's own
    grown = engine.process_memory() - before
    assert 0.9 * held.nbytes <= grown <= 1.2 * held.nbytes
    path = tmp_path / "mapped.bin"
    path.write_bytes(b"\1" * (100 << 20))
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    before = engine.process_memory()
    assert int(mapped.sum()) == 100 << 20  # every page read: resident, but the file's
    assert engine.process_memory() - before < 20 << 20
    del held, mapped


@pytest.mark.parametrize("memory_limit, room", [(None, True), ("64TB", True), ("1MB", False)],
                         ids=["no limit", "far under the limit", "the process alone over it"])
def test_room_in_process_weighs_the_process_against_its_memory_limit(monkeypatch, memory_limit, room):
    monkeypatch.setattr(engine, "_current", engine.EngineSettings(memory_limit=memory_limit))
    assert engine.room_in_process(1 << 20) is room


# (the process's memory at each look, in MB; seconds it may wait; the answer; the looks taken), for
# 1 MB more under a limit of 100MB: memory other allocators hand back while it waits makes room
WAIT_CASES = {
    "room at once": ([50], 0.0, True, 1),
    "no room, no wait": ([150, 150], 0.0, False, 2),
    "room once memory is handed back": ([150, 150, 150, 60], 5.0, True, 4),
    "no room within the wait": ([150] * 1000, 0.05, False, None),
}


@pytest.mark.parametrize("held, wait_s, room, looks", WAIT_CASES.values(), ids=WAIT_CASES.keys())
def test_room_in_process_may_wait_for_memory_handed_back(monkeypatch, held, wait_s, room, looks):
    monkeypatch.setattr(engine, "_current", engine.EngineSettings(memory_limit="100MB"))
    monkeypatch.setattr(engine, "ROOM_POLL_S", 0.01)
    seen = iter(held)
    taken = []
    monkeypatch.setattr(engine, "process_memory", lambda: taken.append(1) or next(seen) * 10**6)
    assert engine.room_in_process(10**6, wait_s) is room
    assert looks is None or len(taken) == looks


def test_a_wait_for_room_ends_once_the_process_is_told_to_exit(monkeypatch):
    # SIGTERM in the warm-up's last step waited out the rest of its 5 s wait for room
    monkeypatch.setattr(engine, "_current", engine.EngineSettings(memory_limit="100MB"))
    monkeypatch.setattr(engine, "ROOM_POLL_S", 0.01)
    monkeypatch.setattr(engine, "process_memory", lambda: 150 * 10**6)
    asked = []
    assert engine.room_in_process(10**6, 3600.0, give_up=lambda: asked.append(1) or len(asked) >= 3) is False
    assert len(asked) == 3


ALLOCATOR_CASES = {
    "sde's choice: glibc's": (None, "system"),
    "the user's choice kept": ("mimalloc", "mimalloc"),
}


@pytest.mark.parametrize("chosen, used", ALLOCATOR_CASES.values(), ids=ALLOCATOR_CASES.keys())
def test_arrow_allocates_from_glibc_unless_the_user_chose_its_allocator(chosen, used):
    env = {k: v for k, v in os.environ.items() if k != engine.ARROW_POOL_VARIABLE}
    if chosen is not None:
        env[engine.ARROW_POOL_VARIABLE] = chosen
    code = "import pyarrow as pa; from sde import engine; engine.configure(); print(pa.default_memory_pool().backend_name)"
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert got.stdout.strip() == used
