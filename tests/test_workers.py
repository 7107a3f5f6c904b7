"""Worker pools never outlive sde: a stop signal at any moment, even while a pool starts, and the
death of the parent (kill -9) end the workers. An orphan worker keeps sde's stdout and stderr
open, so whoever reads them (a shell pipe, CI) waits for ever: CI caught one, after Ctrl-C
landed inside ``multiprocessing.Pool()``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from sde import workers
from sde.cli import _terminate

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}

# Ctrl-C at the worst moment: when Pool() has just started its worker handler thread (which forks
# replacements for workers that end) and has not yet registered its own clean-up. As in sde, where
# DuckDB's threads take the signal, another thread receives it (the main thread has it blocked
# while the pool forks); Python then runs the handler in the main thread at its next bytecode.
SIGNAL_INSIDE_POOL_START = textwrap.dedent("""
    import json, multiprocessing, os, signal, sys, threading, time
    from sde import workers

    PARENT = os.getpid()

    def hook(frame, event, arg):
        if os.getpid() != PARENT:  # a forked worker inherits the hook
            sys.setprofile(None)
            return
        target = getattr(frame.f_locals.get("self"), "_target", None)
        if event == "return" and frame.f_code.co_name == "start" and getattr(target, "__name__", "") == "_handle_workers":
            sys.setprofile(None)
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(400):
                time.sleep(0.005)

    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    sys.setprofile(hook)
    try:
        results = list(workers.run_unordered(abs, [-1, -2, -3, -4], 2))
        print(json.dumps({"finished": sorted(results)}))
    except KeyboardInterrupt:
        left = {"workers": [p.pid for p in multiprocessing.active_children()],
                "handlers": [t.name for t in threading.enumerate() if "_handle" in t.name]}
        print(json.dumps(left), flush=True)
        sys.exit(130)
""")

# Both workers busy with a long job (an idle worker ends by itself: its task pipe closes).
POOL_BUSY = textwrap.dedent("""
    import json, time
    from sde import workers
    with workers.worker_pool(workers.fork_context(), 2) as pool:
        pool.map(abs, range(4))
        pending = pool.map_async(time.sleep, [60, 60], chunksize=1)
        time.sleep(0.5)
        print(json.dumps([p.pid for p in pool._pool]), flush=True)
        pending.wait()
""")


def test_ctrl_c_inside_pool_start_terminates_the_pool():
    proc = subprocess.run([sys.executable, "-c", SIGNAL_INSIDE_POOL_START], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    assert json.loads(proc.stdout) == {"workers": [], "handlers": []}, proc.stdout


def test_busy_workers_end_when_their_parent_is_killed():
    proc = subprocess.Popen([sys.executable, "-c", POOL_BUSY], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], "busy workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("signum, handler, raised", [
    (signal.SIGINT, signal.default_int_handler, KeyboardInterrupt),
    (signal.SIGTERM, _terminate, SystemExit),
], ids=["ctrl-c raises KeyboardInterrupt after", "sigterm raises sde's SystemExit after"])
def test_a_stop_signal_held_is_raised_when_the_block_ends(signum, handler, raised):
    previous = signal.signal(signum, handler)
    reached_end_of_block = False
    try:
        with pytest.raises(raised):
            with workers._stop_signals_held():
                signal.raise_signal(signum)
                time.sleep(0.01)  # Python would have run a handler by now
                reached_end_of_block = True
        assert reached_end_of_block
        assert signal.getsignal(signum) is handler
    finally:
        signal.signal(signum, previous)


def test_no_signal_no_exception_and_handlers_restored():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with workers.worker_pool(workers.fork_context(), 2) as pool:
        assert sorted(pool.map(abs, [-3, -1, -2])) == [1, 2, 3]
        assert all(p.is_alive() for p in pool._pool)
        children = list(pool._pool)
    assert not [p for p in children if p.is_alive()]
    assert {s: signal.getsignal(s) for s in before} == before
