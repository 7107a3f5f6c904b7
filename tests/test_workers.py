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


# Both workers in a job that ignores SIGTERM: as a worker that missed the parent-death signal, which
# lands just before it blocks waiting for its next task and is then never acted on.
POOL_DEAF = textwrap.dedent("""
    import json, signal, time
    from sde import workers

    def deaf(seconds):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(seconds)

    with workers.worker_pool(workers.fork_context(), 2) as pool:
        pending = pool.map_async(deaf, [60, 60], chunksize=1)
        time.sleep(0.5)
        print(json.dumps([p.pid for p in pool._pool]), flush=True)
        pending.wait()
""")


KILLED_PARENTS = {
    "busy workers": POOL_BUSY,
    # ended by a watch thread (sde.workers._end_when_orphaned): nobody is left to SIGKILL them
    "workers that missed the parent-death signal": POOL_DEAF,
}


@pytest.mark.parametrize("script", KILLED_PARENTS.values(), ids=KILLED_PARENTS.keys())
def test_workers_end_when_their_parent_is_killed(script):
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], "workers outlived their killed parent"
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
            with workers.stop_signals_held():
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


# ---------------------------------------------------------------- in_processes

def _square(x: int) -> int:
    return x * x


def _die_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)
    return x


@pytest.fixture
def threaded():
    """A second thread running, as in the server: in_processes must not fork this process."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def test_in_processes_answers_every_job_drawing_two_per_worker_ahead(threaded):
    assert workers.process_context().get_start_method() != "fork"
    drawn = []

    def jobs():
        for x in range(10):
            drawn.append(x)
            yield x

    answers = {}
    for position, value in workers.in_processes(_square, jobs(), 2):
        if not answers:
            assert len(drawn) == 4  # the window: two jobs per worker, drawn before any answer
        answers[position] = value
    assert answers == {x: x * x for x in range(10)}


def test_in_processes_draws_no_job_once_cancelled(threaded):
    drawn = []

    def jobs():
        for x in range(10):
            drawn.append(x)
            yield x

    got = dict(workers.in_processes(_square, jobs(), 1, cancelled=lambda: True))
    assert got == {0: 0, 1: 1} and drawn == [0, 1]


def test_in_processes_reports_a_worker_that_died(threaded):
    from concurrent.futures.process import BrokenProcessPool

    with pytest.raises(BrokenProcessPool):
        list(workers.in_processes(_die_on_three, range(6), 2))


def _slow_square(x: int) -> int:
    time.sleep(0.5)
    return x * x


def test_in_processes_workers_ignore_ctrl_c(threaded):
    got = {}
    # only the pool's workers: the session's other children (the S3 server of tests/conftest.py)
    # must outlive this test, whichever tests share its pytest process
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    try:
        for position, value in workers.in_processes(_slow_square, range(6), 2):
            if not got:  # Ctrl-C reaches the whole process group: here, every worker (the parent is spared)
                for child in psutil.Process().children(recursive=True):
                    if child.pid not in before:
                        child.send_signal(signal.SIGINT)
            got[position] = value
    except KeyboardInterrupt:  # a worker's, sent back as its job's exception
        pytest.fail("a worker was interrupted by Ctrl-C")
    assert got == {x: x * x for x in range(6)}


def _sleep_unless_first(x: int) -> int:
    if x:
        time.sleep(60)
    return x


def test_in_processes_closed_early_ends_its_running_jobs(threaded):
    started = time.monotonic()
    answers = workers.in_processes(_sleep_unless_first, range(4), 2)
    assert next(answers) == (0, 0)
    answers.close()  # as Ctrl-C or an error in the caller does
    assert time.monotonic() - started < 20

    def alive(process: psutil.Process) -> bool:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE

    # the workers are the forkserver's children (the forkserver and the resource tracker are ours)
    workers_left = [w for child in psutil.Process().children() for w in child.children() if alive(w)]
    assert not workers_left


def _die_in_a_worker_on_three(x: int) -> int:
    import multiprocessing

    if x == 3 and multiprocessing.parent_process() is not None:
        os._exit(1)
    return x * 10


@pytest.mark.parametrize("pool_workers", [0, 2])
def test_in_processes_or_here_answers_every_job_even_when_a_worker_dies(threaded, pool_workers):
    got = dict(workers.in_processes_or_here(_die_in_a_worker_on_three, [1, 2, 3, 4, 5, 6], pool_workers,
                                            read=lambda job: job - 1))
    assert got == {i: (job - 1) * 10 for i, job in enumerate([1, 2, 3, 4, 5, 6])}


# SIGTERM to a worker holding a lock (the pool's result-queue lock, which a worker holds while it
# sends a result): before, it died holding it, and the pool's terminate() then hung for ever, so the
# scenario runs in a process of its own with a deadline.
WORKER_STOPPED_HOLDING_A_LOCK = textwrap.dedent("""
    import multiprocessing, os, signal, time
    from sde import workers

    context = multiprocessing.get_context("fork")
    HELD = context.Lock()  # made before the pool: its forked worker shares it

    def hold(seconds):
        with HELD:
            time.sleep(seconds)

    with workers.worker_pool(context, 1) as pool:
        pool.apply_async(hold, (60,))
        while HELD.acquire(block=False):  # not taken yet
            HELD.release()
            time.sleep(0.01)
        os.kill(pool._pool[0].pid, signal.SIGTERM)
        released = HELD.acquire(timeout=10)
        if released:
            HELD.release()
    print("released" if released else "held by a dead worker", flush=True)
""")


def test_a_worker_stopped_by_sigterm_lets_go_of_the_locks_it_holds():
    # SIGTERM to the whole process group (timeout, Slurm, kill -- -PGID) killed a worker while it sent
    # its result; the build's pool.terminate() then waited for that lock for ever
    try:
        run = subprocess.run([sys.executable, "-c", WORKER_STOPPED_HOLDING_A_LOCK], env=ENV, capture_output=True,
                             text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the pool hung: a worker stopped by SIGTERM kept its lock")
    assert run.returncode == 0 and run.stdout.strip() == "released", (run.stdout, run.stderr[-2000:])


def _deaf_to_sigterm(seconds: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)


def _misses_the_first_sigterm(seconds: float) -> None:
    """As a worker whose SIGTERM lands just before it blocks waiting for a task: the first one is
    not acted on (here: swallowed, and the worker's own handler put back for the next)."""
    own = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: signal.signal(signal.SIGTERM, own))
    time.sleep(seconds)


def test_an_interrupted_pool_ends_a_worker_that_missed_its_sigterm_at_the_next_one():
    # CI: `sde stats` took 5.3 s to stop after SIGTERM, the whole grace, where it takes 0.2 s
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="the load failed"):
        with workers.worker_pool(workers.fork_context(), 2) as pool:
            pool.map_async(_misses_the_first_sigterm, [60, 60], chunksize=1)
            processes = list(pool._pool)
            time.sleep(0.5)  # both workers are in their jobs
            raise RuntimeError("the load failed")
    assert time.monotonic() - start < 0.5 + workers.TERMINATE_GRACE_S / 2
    # ended by a SIGTERM, not killed after the grace
    assert [p.exitcode for p in processes] == [128 + signal.SIGTERM] * 2


def test_a_pool_that_finished_its_jobs_ends_without_a_signal():
    # terminate() after every job was done signalled workers that were about to wait for the next
    # task; one in ~30 loads missed it and the load waited for ever (a fresh-clone CI run hung here)
    with workers.worker_pool(workers.fork_context(), 2) as pool:
        assert sorted(pool.map(abs, [-1, -2, -3, -4], chunksize=1)) == [1, 2, 3, 4]
        processes = list(pool._pool)
    assert [p.exitcode for p in processes] == [0, 0]


def test_an_interrupted_pool_kills_a_worker_that_does_not_end_on_sigterm(monkeypatch):
    monkeypatch.setattr(workers, "TERMINATE_GRACE_S", 0.5)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="the load failed"):
        with workers.worker_pool(workers.fork_context(), 2) as pool:
            pool.map_async(_deaf_to_sigterm, [60, 60], chunksize=1)
            processes = list(pool._pool)
            time.sleep(0.5)  # both workers are in their jobs, deaf to SIGTERM
            raise RuntimeError("the load failed")
    assert time.monotonic() - start < 10
    assert [p.exitcode for p in processes] == [-signal.SIGKILL, -signal.SIGKILL]


# A worker's SIGTERM handler runs inside whatever Python code is running, here a weakref callback
# (in CI: a WeakSet's, during a build interrupted by Ctrl-C), where Python cannot raise.
SIGTERM_INSIDE_A_WEAKREF_CALLBACK = textwrap.dedent("""
    import os, signal, time, weakref
    from sde import workers

    workers._worker_signals(os.getppid())

    class Thing:
        pass

    def callback(_ref):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(200):
            time.sleep(0.001)  # the handler runs here, inside the callback

    thing = Thing()
    ref = weakref.ref(thing, callback)
    del thing
    print("carried on", flush=True)
    time.sleep(30)
""")


def test_a_sigterm_inside_a_weakref_callback_ends_the_worker_without_a_traceback():
    try:
        run = subprocess.run([sys.executable, "-c", SIGTERM_INSIDE_A_WEAKREF_CALLBACK], env=ENV,
                             capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker carried on after its SIGTERM was swallowed by the callback")
    assert (run.returncode, run.stdout.strip(), run.stderr) == (128 + signal.SIGTERM, "carried on", "")


def test_a_worker_reports_other_exceptions_a_callback_swallowed():
    script = SIGTERM_INSIDE_A_WEAKREF_CALLBACK.replace(
        "os.kill(os.getpid(), signal.SIGTERM)", "raise ValueError('a callback failed')").replace(
        "time.sleep(30)", "")
    run = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=20)
    assert run.returncode == 0 and run.stdout.strip() == "carried on"
    assert "Exception ignored" in run.stderr and "ValueError: a callback failed" in run.stderr


KILLED_WHILE_ITS_WORKERS_RUN = """
import os, sys, threading, time
from sde.workers import in_processes

def job(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
    return path

if __name__ == "__main__":
    folder = sys.argv[1]
    if sys.argv[2] == "threaded":  # workers from the forkserver, not forked from this process
        threading.Thread(target=time.sleep, args=(120,), daemon=True).start()
    for _ in in_processes(job, [os.path.join(folder, f"worker{k}") for k in range(2)], 2):
        pass
"""


@pytest.mark.parametrize("parent_kind", ["single", "threaded"])
def test_workers_of_a_parent_killed_outright_end_themselves(tmp_path, parent_kind):
    """kill -9 (or the OOM killer) of a process whose in_processes workers run: they ended only
    with their job (QA: a worker of a killed `sde export`, blocked sending its result, lived on
    with 0.4 GB and the export's stdout)."""
    script = tmp_path / "parent.py"
    script.write_text(KILLED_WHILE_ITS_WORKERS_RUN, encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path), parent_kind], env=ENV, cwd=tmp_path)
    pids = []
    deadline = time.monotonic() + 60
    while len(pids) < 2:
        assert time.monotonic() < deadline, "the workers did not start"
        pids = [int(p.read_text()) for p in tmp_path.glob("worker*") if p.read_text()]
        time.sleep(0.1)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10 * workers.ORPHAN_CHECK_S + 5
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        assert time.monotonic() < deadline, f"workers {pids} outlived their parent"
        time.sleep(0.1)
