"""One background job per server and panel (sde.web.panels.jobs.shared_job): a job started while
another runs follows it (its progress, its result) instead of measuring the same audio beside it;
and a cancelled job leaves no live-looking progress behind. Real job processes on a real diskcache,
and the real server driven by Chromium (two pages of one browser context are two tabs)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.quality_kit import long_recording_manifest

# A bound for a stuck job, not a speed test (a loaded 2-core machine is slow to start workers).
DEADLINE_S = 240


def _until(what: str, check, deadline_s: float = DEADLINE_S):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- shared_job in real processes

def _job(folder: str, name: str, out: str, gate: str) -> None:
    """A job process: runs (or follows) ``name``; the run waits for the file ``gate``."""
    import diskcache

    from sde.web.panels.jobs import shared_job

    store = diskcache.Cache(os.path.join(folder, "queue"))
    seen: list = []

    def show(values) -> None:
        seen.append(values)
        with open(out + ".seen", "a") as f:
            f.write(json.dumps(values) + "\n")

    def run(shown) -> dict:
        with open(os.path.join(folder, "runs"), "a") as f:
            f.write(f"{os.getpid()}\n")
        shown((50, "1 / 2", "half way"))
        while not os.path.exists(gate):
            time.sleep(0.02)
        return {"value": 42, "by": os.getpid()}

    result = shared_job(store, name, show, run, follow_every_s=0.02)
    Path(out).write_text(json.dumps({"result": result, "seen": seen}))


def _start(tmp_path: Path, who: str, gate: str = "gate") -> multiprocessing.Process:
    proc = multiprocessing.get_context("fork").Process(
        target=_job, args=(str(tmp_path), "speech-jobs:1", str(tmp_path / f"{who}.json"), str(tmp_path / gate)))
    proc.start()
    return proc


def _runs(tmp_path: Path) -> list[str]:
    path = tmp_path / "runs"
    return path.read_text().split() if path.exists() else []


def _outcome(tmp_path: Path, who: str) -> dict:
    return json.loads((tmp_path / f"{who}.json").read_text())


def test_a_job_started_while_another_runs_shows_its_progress_and_returns_its_result(tmp_path):
    leader = _start(tmp_path, "leader")
    _until("the first job to run", lambda: _runs(tmp_path))
    follower = _start(tmp_path, "follower")
    _until("the second job to show the first one's progress", (tmp_path / "follower.json.seen").exists)
    (tmp_path / "gate").touch()
    leader.join(DEADLINE_S)
    follower.join(DEADLINE_S)
    assert _runs(tmp_path) == [str(leader.pid)]
    assert _outcome(tmp_path, "follower")["result"] == _outcome(tmp_path, "leader")["result"] == \
        {"value": 42, "by": leader.pid}
    assert [50, "1 / 2", "half way"] in _outcome(tmp_path, "follower")["seen"]


def test_the_followers_of_a_cancelled_job_say_so_and_the_next_start_runs_anew(tmp_path):
    leader = _start(tmp_path, "leader")
    _until("the first job to run", lambda: _runs(tmp_path))
    follower = _start(tmp_path, "follower")
    _until("the second job to show the first one's progress", (tmp_path / "follower.json.seen").exists)
    os.kill(leader.pid, signal.SIGKILL)   # what Dash's Cancel does to the job process
    leader.join(DEADLINE_S)
    follower.join(DEADLINE_S)
    assert "Cancelled in another tab" in _outcome(tmp_path, "follower")["result"]["error"]
    again = _start(tmp_path, "again", gate="gate-again")
    _until("the next job to run", lambda: len(_runs(tmp_path)) == 2)
    (tmp_path / "gate-again").touch()
    again.join(DEADLINE_S)
    assert _outcome(tmp_path, "again")["result"] == {"value": 42, "by": again.pid}


# ---------------------------------------------------------------- the TTS page's Measure job in Chromium

SEGMENTS = 400
SEGMENT_S = 2.0


@pytest.fixture(scope="module")
def long_manifest(tmp_path_factory) -> Path:
    """SEGMENTS speech segments of one long espeak recording (tests.quality_kit)."""
    return long_recording_manifest(tmp_path_factory.mktemp("long"), SEGMENTS, SEGMENT_S)


def _server_process() -> psutil.Process:
    found = [c for c in psutil.Process().children() if "sde.cli" in " ".join(c.cmdline())]
    assert len(found) == 1, found
    return found[0]


def _job_processes(server: psutil.Process) -> dict[int, int]:
    """{job process pid: how many worker processes it has} of the server's background jobs."""
    jobs = {}
    for child in server.children():
        try:
            jobs[child.pid] = len(child.children(recursive=True))
        except psutil.Error:
            pass
    return jobs


def _status(page) -> str:
    return page.inner_text("#vad-status")


@contextlib.contextmanager
def _second_tab_starting_the_same_job(browser, long_manifest):
    """(first tab, second tab) of one browser on /tts: Measure pressed in the first and, once it
    measures, in the second."""
    from tests.browser_kit import TIMEOUT_MS, sde_server

    with sde_server(str(long_manifest)) as url:
        context = browser.new_context()
        try:
            first, second = context.new_page(), context.new_page()
            for tab in (first, second):
                tab.set_default_timeout(TIMEOUT_MS)
                tab.goto(url + "/tts")
                tab.wait_for_selector("#vad-start:not([disabled])")
            first.click("#vad-start")
            _until("the first tab's job to measure", lambda: f"/ {SEGMENTS} utterances" in _status(first))
            second.click("#vad-start")
            yield first, second
        finally:
            context.close()


def test_a_second_tab_joins_the_running_measure_job_instead_of_starting_its_own(browser, long_manifest):
    with _second_tab_starting_the_same_job(browser, long_manifest) as (first, second):
        server = _server_process()
        measuring: list[dict[int, int]] = []

        def second_shows_progress() -> bool:
            measuring.append({pid: n for pid, n in _job_processes(server).items() if n})
            return f"/ {SEGMENTS} utterances" in _status(second)

        _until("the second tab to show the measurement's progress", second_shows_progress)
        for _ in range(20):   # and a few more looks at the job processes while both tabs wait
            measuring.append({pid: n for pid, n in _job_processes(server).items() if n})
        assert max(len(m) for m in measuring) == 1, f"job processes measuring at once: {measuring}"
        first.click("#vad-cancel")
        second.wait_for_function(
            "document.getElementById('vad-status').innerText.includes('Cancelled in another tab')",
            timeout=DEADLINE_S * 1000)
        _until("no job process left", lambda: not _job_processes(server))


def test_both_tabs_show_the_shared_measurement_when_it_ends(browser, long_manifest):
    with _second_tab_starting_the_same_job(browser, long_manifest) as (first, second):
        for tab in (first, second):   # each applied the result (or found it applied) and reloaded
            tab.wait_for_selector("#vad-speech-hours", timeout=DEADLINE_S * 1000)


def test_a_cancelled_job_leaves_no_progress_on_its_status_line(page, long_manifest):
    from tests.browser_kit import sde_server

    with sde_server(str(long_manifest)) as url:
        server = _server_process()
        page.goto(url + "/tts")
        page.wait_for_selector("#vad-start:not([disabled])")
        page.click("#vad-start")
        _until("the job to measure", lambda: f"/ {SEGMENTS} utterances" in _status(page))
        page.click("#vad-cancel")
        # Measure is enabled again when the renderer ends the job's poll: nothing updates it after.
        page.wait_for_selector("#vad-start:not([disabled])", timeout=DEADLINE_S * 1000)
        _until("the job process to end", lambda: not _job_processes(server))
        assert _status(page) == ""
        assert page.inner_text("#vad-status-cancelled") == "Cancelled."
        assert page.inner_text("#vad-progress") == ""   # the bar's "32 / 400" label
