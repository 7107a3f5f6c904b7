"""sde.engine: how much of the machine sde may use."""

from __future__ import annotations

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
