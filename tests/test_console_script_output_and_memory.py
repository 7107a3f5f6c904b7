"""The `sde` console script when its output cannot be written (a full device, a closed pipe) or its
memory is capped (`ulimit -v`): one line that says so, never a traceback or Python's "Exception
ignored" at exit. Through pip's script for the `sde` entry point, as users run it."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_console_script_ctrl_c_at_any_moment import ROOT, _console_script

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")


def _sde(folder: Path, *args: str, stdout: object = subprocess.DEVNULL, memory_mb: int | None = None,
         ) -> subprocess.CompletedProcess:
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))

    proc = subprocess.run([sys.executable, str(_console_script(folder)), *args], cwd=folder, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120,
                          preexec_fn=cap_memory if memory_mb else None,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "SDE_CACHE_DIR": str(folder / "cache")})
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    return proc


def _manifest(folder: Path) -> Path:
    manifest = folder / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "duration": 1.0 + i, "text": "hello world",
                                            "pred_text": "hello word"}) + "\n" for i in range(3)))
    return manifest


@pytest.mark.parametrize("args", [["--help"], ["stats", "m.json"], ["stats", "m.json", "--json"]],
                         ids=["help", "stats", "stats-json"])
def test_output_to_a_full_device_is_one_line_naming_it_and_exit_1(tmp_path, args):
    _manifest(tmp_path)
    with open("/dev/full", "w") as full:
        proc = _sde(tmp_path, *args, stdout=full)
    assert proc.returncode == 1, proc.stderr[-3000:]
    said = [line for line in proc.stderr.splitlines() if "write" in line or "space" in line]
    assert said == ["sde: could not write the output: No space left on device (/dev/full)"], proc.stderr[-3000:]


@pytest.mark.parametrize("args", [["--help"], ["stats", "m.json"]], ids=["help", "stats"])
def test_output_to_a_closed_pipe_ends_quietly(tmp_path, args):
    _manifest(tmp_path)
    read, write = os.pipe()
    os.close(read)  # the reader is gone (`| head` done): every write is EPIPE
    try:
        proc = _sde(tmp_path, *args, stdout=write)
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr[-3000:]  # 128 + SIGPIPE, as a shell reports `yes | head -1`
    assert "pipe" not in proc.stderr.lower() and "could not write" not in proc.stderr, proc.stderr[-3000:]


# sde's libraries take about 1.5 GB of address space: under this cap its imports fail (mapping a
# library). Higher caps fail later, where it varies from run to run, at times in C code no handler
# reaches (glibc's "cannot allocate memory for thread-local data: ABORT" at 600 MB in CI).
@pytest.mark.parametrize("memory_mb", [300])
def test_a_low_ulimit_v_is_one_message_naming_the_limit_and_exit_1(tmp_path, memory_mb):
    _manifest(tmp_path)
    proc = _sde(tmp_path, "stats", "m.json", memory_mb=memory_mb)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"sde ran out of memory under a limit of {memory_mb} MB (ulimit -v): raise it" in proc.stderr, \
        proc.stderr[-3000:]
