"""Ctrl-C (or another signal) to a running sde command once it has done some of its work (the resume tests)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def interrupt_when(process: subprocess.Popen, ready: Callable[[], bool], what: str, timeout_s: float = 180,
                   sig: int = signal.SIGINT) -> str:
    """Send ``sig`` (SIGINT: Ctrl-C) to ``process`` once ``ready()`` (it must still be running then,
    within ``timeout_s``: ``what`` names the awaited work in the failure) and wait for it; its stderr."""
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, f"no {what} in {timeout_s:g} s"
            time.sleep(0.05)
        process.send_signal(sig)
        return process.communicate(timeout=120)[1]
    finally:
        if process.poll() is None:
            process.kill()
