"""Ctrl-C and SIGTERM stop `sde` promptly in every phase, through the real CLI (subprocesses).

Ctrl-C is sent the way a terminal sends it: SIGINT to the whole process group, so the alignment
workers get it too (they must ignore it: the parent stops them). SIGTERM goes to the main process
only, as `kill PID`, `docker stop` and job schedulers send it. Each case waits until the process
is observably in the phase (the manifest file is open; alignment worker processes exist; the
cache's temporary table file exists; the server printed its URL), sends the signal, and checks:
the process ends within STOP_S, with the project's exit status (130 after Ctrl-C, 143 after
SIGTERM; a server stopped by Ctrl-C exits 0, Ctrl-C being its documented way to stop), nothing on
stderr looks like a traceback, and none of its child processes outlives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import psutil
import pytest

from tests.test_huge_lines import write_huge_line_manifest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
STOP_S = 3.0
PHASE_TIMEOUT_S = 120
# Lines of the generated manifest: long enough that parsing (~1 s) and alignment (~1.5 s) can be
# caught in the act on a loaded 2-core machine, short enough to generate in a few seconds.
UTTERANCES = 200_000


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    manifest = tmp_path_factory.mktemp("signals") / "big.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_manifest.py"), str(manifest),
                    "--utterances", str(UTTERANCES), "--seed", "3", "--quiet"], check=True, cwd=ROOT, timeout=120)
    return manifest


@pytest.fixture(scope="module")
def huge_line(tmp_path_factory) -> Path:
    """One 12 MB line (2 x 1M words) among normal ones: its alignment takes a second or two."""
    return write_huge_line_manifest(tmp_path_factory.mktemp("huge") / "huge.json", words=1_000_000)


class Run:
    """`python -m sde.cli ARGS` in its own process group, stdout and stderr collected by threads."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "sde.cli", *args], cwd=ROOT, env=ENV,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.children: set[int] = set()
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(s), daemon=True).start()

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while not condition():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"never saw the process {what} (exit {self.proc.returncode}):\n"
                                     + "".join(self.err)[-3000:])
            time.sleep(0.002)

    def stop(self, sig: int) -> float:
        """Send `sig` (SIGINT: to the whole group, as Ctrl-C does) and return the seconds to exit."""
        self.children |= self._child_pids()
        start = time.monotonic()
        if sig == signal.SIGINT:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running 30 s after {signal.Signals(sig).name}:\n" + "".join(self.err)[-3000:]) from None
        elapsed = time.monotonic() - start
        time.sleep(0.1)  # the reader threads drain the pipes
        return elapsed

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def _child_pids(self) -> set[int]:
        try:
            return {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    # -- what a phase looks like from outside -------------------------------------------------
    def has_open(self, path: Path) -> bool:
        try:
            return any(f.path == str(path) for f in psutil.Process(self.proc.pid).open_files())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def has_workers(self) -> bool:
        pids = self._child_pids()
        self.children |= pids
        return bool(pids)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.out + self.err)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def check_stopped(run: Run, sig: int, elapsed: float, expected: int) -> None:
    err = "".join(run.err)
    print(f"{signal.Signals(sig).name}: stopped in {elapsed:.2f} s, exit {run.proc.returncode}")  # shown with -s
    assert run.proc.returncode == expected, (run.proc.returncode, err[-3000:])
    assert elapsed < STOP_S, f"took {elapsed:.2f} s to stop after {signal.Signals(sig).name}"
    for marker in ("Traceback", "ForkPoolWorker"):
        assert marker not in err, err[-3000:]
    if sig == signal.SIGINT and expected == 130:
        assert err.strip().splitlines()[-1] == "interrupted", err[-3000:]
    if sig == signal.SIGTERM:  # a scheduler's or docker's stop is said in the log, not a silent end
        assert "terminated" in err.strip().splitlines(), err[-3000:]
    # a worker is reaped by the parent before it exits (a zombie would be init's to reap: gone too)
    assert not [pid for pid in run.children if alive(pid)], "worker processes outlived sde"


EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
SIGNALS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])


@pytest.mark.slow
@SIGNALS
def test_stop_while_parsing_the_manifest(big, tmp_path, sig):
    run = Run("stats", str(big), "--no-cache")
    run.wait_for(lambda: run.has_open(big), "open the manifest")
    elapsed = run.stop(sig)
    check_stopped(run, sig, elapsed, EXIT[sig])


@pytest.mark.slow
@SIGNALS
def test_stop_while_aligning_in_worker_processes(big, tmp_path, sig):
    run = Run("stats", str(big), "--no-cache")
    run.wait_for(run.has_workers, "start alignment workers")
    elapsed = run.stop(sig)
    assert run.children, "no worker process was seen"
    check_stopped(run, sig, elapsed, EXIT[sig])


@pytest.mark.slow
@SIGNALS
def test_stop_while_aligning_one_huge_line(huge_line, sig):
    run = Run("stats", str(huge_line), "--no-cache")
    run.wait_for(lambda: run.said("scoring pred_text"), "start scoring")
    time.sleep(0.2)  # well inside the huge line's alignment
    elapsed = run.stop(sig)
    check_stopped(run, sig, elapsed, EXIT[sig])


@pytest.mark.slow
@SIGNALS
def test_stop_while_writing_the_cache(big, tmp_path, sig):
    cache = tmp_path / "cache"
    cache.mkdir()
    run = Run("stats", str(big), "--cache-dir", str(cache))
    run.wait_for(lambda: any(p.name.startswith(".tmp-") for p in cache.rglob(".tmp-*")), "write the cache")
    elapsed = run.stop(sig)
    check_stopped(run, sig, elapsed, EXIT[sig])
    assert not list(cache.rglob(".tmp-*")), "a temporary cache file was left behind"


@pytest.mark.slow
@pytest.mark.parametrize("sig, expected", [(signal.SIGINT, 0), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_stop_while_serving(huge_line, tmp_path, sig, expected):
    run = Run(str(huge_line), "--port", "0", "--cache-dir", str(tmp_path / "cache"))
    run.wait_for(lambda: run.said("serving on http://"), "serve")
    elapsed = run.stop(sig)
    check_stopped(run, sig, elapsed, expected)


# The server's warm-up submits work to thread pools. Python's exit refuses them new work (its
# threading exit hooks run first) before sde's exit handlers told the warm-up to stop: a SIGTERM
# landing then printed the warm-up's RuntimeError traceback (a fresh-clone CI run caught it). This
# warm-up submits as soon as either has happened; the first exit hook holds that moment open.
WARM_UP_SUBMITTING_AT_EXIT = """
import sys, threading, time
threading._register_atexit(time.sleep, 1.0)  # runs after concurrent.futures' own: registered first
from concurrent.futures import ThreadPoolExecutor, thread as pools
import sde.cli
from sde.filters.engine import stopping

def warm_up(*_args, **_kwargs):
    while not (pools._shutdown or stopping()):
        time.sleep(0.005)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(abs, -1).result()

sde.cli._warm_up = warm_up
sys.argv = ["sde", *sys.argv[1:]]
sde.cli.main()
"""


def test_sigterm_while_the_warm_up_submits_work_prints_no_traceback(write_manifest, tmp_path):
    manifest = write_manifest([{"audio_filepath": "a.wav", "duration": 1.0, "text": "a b", "pred_text": "a c"}])
    proc = subprocess.Popen([sys.executable, "-c", WARM_UP_SUBMITTING_AT_EXIT, str(manifest), "--port", "0",
                             "--no-cache"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    for stream, sink in ((proc.stdout, out), (proc.stderr, err)):
        threading.Thread(target=lambda s=stream, k=sink: k.extend(s), daemon=True).start()
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while not any("serving on http://" in line for line in out + err):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(err)[-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM, "".join(err)[-3000:]
    time.sleep(0.1)  # the reader thread drains the pipe
    assert "Traceback" not in "".join(err), "".join(err)[-3000:]
