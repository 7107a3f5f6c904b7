"""sde.web.panels.background: work a page starts once and polls (the suspicious checks, the TTS
report at 10M utterances take minutes): one run per generation of the tables and key, shared by
every ask, its value or its error kept."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from sde.caching import CacheRegistry
from sde.web.panels.background import in_background


def tables(generation: int = 0):
    """What in_background keeps its work with: a dataset's generation and caches."""
    return SimpleNamespace(generation=generation, caches=CacheRegistry())


def finished(dataset, name, key, compute, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    progress = in_background(dataset, name, key, compute)
    while not progress.done and time.monotonic() < deadline:
        time.sleep(0.01)
        progress = in_background(dataset, name, key, compute)
    return progress


@pytest.mark.parametrize("wait_s, done_at_once", [(2.0, True), (0.0, False)],
                         ids=["answered within the first wait", "running: the page polls"])
def test_the_first_ask_waits_a_moment_then_says_it_runs(wait_s, done_at_once):
    release = threading.Event()
    dataset = tables()

    def compute():
        if not done_at_once:
            release.wait(10)
        return 42

    first = in_background(dataset, "work", "k", compute, wait_s)
    assert first.done is done_at_once and first.seconds >= 0
    release.set()
    assert finished(dataset, "work", "k", compute).value == 42


def test_asks_at_once_share_one_run_and_its_value():
    dataset, runs = tables(), []

    def compute():
        runs.append(1)
        time.sleep(0.2)
        return object()

    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(finished(dataset, "work", "k", compute)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runs == [1] and len({id(a.value) for a in answers}) == 1


@pytest.mark.parametrize("key_b, generation_b, runs", [
    ("k", 0, 1),   # the same work: kept
    ("j", 0, 2),   # another key: its own run
    ("k", 1, 2),   # the tables changed: run again
], ids=["same key", "other key", "new generation"])
def test_work_is_kept_per_key_and_generation(key_b, generation_b, runs):
    made: list[int] = []
    registry = CacheRegistry()
    a = SimpleNamespace(generation=0, caches=registry)
    b = SimpleNamespace(generation=generation_b, caches=registry)
    finished(a, "work", "k", lambda: made.append(1))
    finished(b, "work", key_b, lambda: made.append(1))
    assert len(made) == runs


def test_a_failure_is_kept_with_its_reason_and_the_server_goes_on():
    def compute():
        raise MemoryError("no room for the phonemes")

    progress = finished(tables(), "work", "k", compute)
    assert progress.done and progress.value is None and progress.error == "MemoryError: no room for the phonemes"


def _held_work(release: threading.Event, started: list, key: str):
    def compute():
        started.append(key)
        release.wait(10)
        return key
    return compute


def test_work_of_one_name_runs_one_at_a_time_and_other_names_beside_it():
    dataset, release, started = tables(), threading.Event(), []
    def ask(key: str, name: str = "report"):
        return in_background(dataset, name, key, _held_work(release, started, key), 0.0)

    ask("en")
    ask("de")
    ask("text", "groups")
    deadline = time.monotonic() + 10
    while not {"en", "text"} <= set(started) and time.monotonic() < deadline:
        time.sleep(0.01)
    first, second, other = ask("en"), ask("de"), ask("text", "groups")
    assert not first.waiting and second.waiting and not second.done and not other.waiting
    assert sorted(started) == ["en", "text"]  # "de" waits for "en", "text" runs beside it
    release.set()
    assert finished(dataset, "report", "de", _held_work(release, started, "de")).value == "de"
    assert sorted(started) == ["de", "en", "text"]


def test_past_the_waiting_ones_a_new_work_is_not_started_until_asked_again_later():
    from sde.web.panels.background import MAX_WAITING

    dataset, release, started = tables(), threading.Event(), []
    keys = [f"lang{i}" for i in range(MAX_WAITING + 1)]  # one running, MAX_WAITING waiting
    for key in keys:
        in_background(dataset, "report", key, _held_work(release, started, key))
    refused = in_background(dataset, "report", "one more", _held_work(release, started, "one more"))
    assert refused.waiting and not refused.done and refused.seconds == 0
    release.set()
    for key in keys:
        assert finished(dataset, "report", key, _held_work(release, started, key)).value == key
    assert "one more" not in started  # never started, nor remembered as started
    assert finished(dataset, "report", "one more", _held_work(release, started, "one more")).value == "one more"
    assert sorted(started) == sorted([*keys, "one more"])
