"""Requests that arrive together for the same utterance's figure (a reloaded inspector, its page
and a script; several tabs) read its audio once: the others wait for that read's figure instead of
each reading the file beside it (a 60-minute file: ~2.4 s of CPU each). An error reaches every one
of them, and the next request reads again."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import soundfile as sf

import sde.web.audio_service as audio_service
from sde.dataset import build_dataset
from sde.caching import OneAtATime
from sde.web.audio_service import AudioService

WAIT_S = 60.0  # the longest a test waits for threads to line up (a loaded CI machine), never a bound


@pytest.fixture()
def service(tmp_path) -> AudioService:
    wav = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "hello world"], check=True, capture_output=True)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"audio_filepath": str(wav), "duration": sf.info(wav).duration,
                                    "text": "hello world"}) + "\n")
    return AudioService(build_dataset(manifest))


class GatedReads:
    """display_data, counted, its first call held until `release` is set (and failing if asked)."""

    def __init__(self, real, fail: bool = False) -> None:
        self.real, self.fail = real, fail
        self.calls = 0
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, src):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(WAIT_S)
        if self.fail and self.calls == 1:
            raise OSError("the disk went away")
        return self.real(src)


def until(condition) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the threads never lined up"
        time.sleep(0.01)


def ask_together(service: AudioService, gate: GatedReads, n: int, kind: str = "mel") -> list:
    """`n` threads asking for the signal of utterance 0 while the first read is held."""
    results: list = [None] * n

    def ask(i: int) -> None:
        try:
            results[i] = service.signal_json(0, kind)
        except Exception as e:  # noqa: BLE001 - the test compares what each thread got
            results[i] = e

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    threads[0].start()
    assert gate.entered.wait(WAIT_S)
    for t in threads[1:]:
        t.start()
    key = ("signal", 0, service.etag(0, kind))
    until(lambda: service.flights.waiting(key) == n - 1)
    gate.release.set()
    for t in threads:
        t.join(WAIT_S)
    return results


def test_figures_asked_together_read_the_audio_once(service, monkeypatch):
    gate = GatedReads(audio_service.display_data)
    monkeypatch.setattr(audio_service, "display_data", gate)
    results = ask_together(service, gate, 5)
    assert gate.calls == 1
    texts = {r[0] for r in results}
    assert len(texts) == 1 and json.loads(texts.pop())["kind"] == "mel"
    # the other kind of the same audio: from the figure data already read
    service.signal_json(0, "linear")
    assert gate.calls == 1


def test_an_error_reaches_every_waiting_request_and_the_next_one_reads_again(service, monkeypatch):
    gate = GatedReads(audio_service.display_data, fail=True)
    monkeypatch.setattr(audio_service, "display_data", gate)
    results = ask_together(service, gate, 4)
    assert gate.calls == 1
    assert all(isinstance(r, OSError) and "disk went away" in str(r) for r in results), results
    text, _ = service.signal_json(0, "mel")
    assert gate.calls == 2 and json.loads(text)["id"] == 0
    assert service.flights.waiting(("signal", 0, service.etag(0, "mel"))) == 0


def test_different_keys_do_not_wait_for_each_other():
    flights = OneAtATime()
    inner = flights.run("b", lambda: 2)  # nothing running under "b"
    assert flights.run("a", lambda: inner + flights.run("b", lambda: 3)) == 5
    assert flights.waiting("a") == flights.waiting("b") == 0
