"""Routes whose work takes minutes at 10M utterances (/api/tts, /api/duplicates, /api/suspicious, a
filter naming a text-derived quality column) run it in the background (sde.web.panels.background)
and answer 202 with its progress and a Retry-After while it runs, then the result: through the real
server (sde.web.serve, in this process) of a real dataset. The work is made slower than the wait by
lowering API_WAIT_S to 0, and held back where a test needs it still running by an event the real
computation waits for."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

import sde.quality.apply as apply
import sde.web.api.quality as quality_api
import sde.web.panels.quality_data as quality_data
from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from sde.web.panels import suspicious as suspicious_panel
from tests.server_kit import served_port

TEXTS = ["the quick brown fox", "The quick brown fox!", "a stitch in time", "a stitch in time",
         "saves nine", "hello hello hello hello hello hello", "good morning", "the quick brown fox"]
ROWS = [{"audio_filepath": f"clip{i}.wav", "duration": 1.0 + i, "text": text, "pred_text": text.lower(),
         "speaker": "anna" if i % 2 else "ben"} for i, text in enumerate(TEXTS)]
DUP_FILTER = "{dup_text_group} is not null"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long-work") / "m.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture
def dataset(manifest):
    return build_dataset(manifest)  # a fresh one per test: the work is kept with the dataset


@pytest.fixture
def port(dataset) -> Iterator[int]:
    with served_port(create_app(dataset, AppConfig(audio_routes=False))) as served:
        yield served


@pytest.fixture
def held(monkeypatch) -> Iterator[tuple[threading.Event, list[str]]]:
    """(an event the real computations wait for, the computations run: "tts" or a quality kind)."""
    release, runs = threading.Event(), []
    real_report, real_compute = quality_data.tts_report, apply._compute

    def report(*args, **kwargs):
        runs.append("tts")
        release.wait(30)
        return real_report(*args, **kwargs)

    def compute(dataset, kind):
        runs.append(kind)
        release.wait(30)
        return real_compute(dataset, kind)

    monkeypatch.setattr(quality_data, "tts_report", report)
    monkeypatch.setattr(apply, "_compute", compute)
    try:
        yield release, runs
    finally:
        release.set()


def get(port: int, path: str, **params) -> tuple[int, dict[str, str], dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path + (f"?{urlencode(params)}" if params else ""))
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read())
    finally:
        conn.close()


def answered(port: int, path: str, **params) -> tuple[int, dict]:
    """The first answer to ``path`` that is not a 202 (a bound for a stuck computation, not a timing)."""
    deadline = time.monotonic() + 60
    status, _, body = get(port, path, **params)
    while status == 202 and time.monotonic() < deadline:
        time.sleep(0.05)
        status, _, body = get(port, path, **params)
    return status, body


def until_final(state: Callable[[], tuple[object, bool]]) -> object:
    deadline = time.monotonic() + 60
    content, final = state()
    while not final and time.monotonic() < deadline:
        time.sleep(0.05)
        content, final = state()
    assert final
    return content


def as_json(value) -> object:
    return json.loads(json.dumps(value))


# What each route answers, computed directly on a dataset of its own (nothing shared with the server's).
def tts_directly(fresh) -> dict:
    report = dict(quality_data.tts(fresh, "en", "speaker"))
    report["speakers"] = [{k: v for k, v in s.items() if k != "phoneme_counts"} for s in report["speakers"]]
    return as_json({**report, "page": 0, "limit": 1000})


def duplicates_directly(fresh) -> dict:
    return as_json(quality_data.duplicates_page(fresh, "text", 0, 50))


def suspicious_directly(fresh) -> dict:
    return as_json(suspicious_panel.summary(fresh))


def filtered_directly(fresh) -> list[int]:
    groups = apply.with_quality_columns(fresh, ["duplicates"]).utterances
    return sorted(int(i) for i in groups.loc[groups["dup_text_group"].notna(), "id"])


ROUTES = {  # task: (path, params, what the same computation answers directly)
    "tts": ("/api/tts", {"lang": "en"}, tts_directly),
    "duplicate-groups": ("/api/duplicates", {"kind": "text"}, duplicates_directly),
    "suspicious": ("/api/suspicious", {}, suspicious_directly),
    "quality-columns": ("/api/utterances", {"filter": DUP_FILTER, "page_size": 50}, filtered_directly),
}


def result(task: str, body: dict) -> object:
    return sorted(r["id"] for r in body["rows"]) if task == "quality-columns" else body


@pytest.mark.parametrize("task", list(ROUTES))
def test_a_small_dataset_answers_200_in_the_first_request(port, manifest, task):
    path, params, directly = ROUTES[task]
    status, _, body = get(port, path, **params)
    assert status == 200, body
    assert result(task, body) == directly(build_dataset(manifest))


def test_near_duplicates_over_their_size_answer_422_in_the_first_request(port, monkeypatch):
    monkeypatch.setattr(apply, "NEAR_DUPLICATE_MAX_ROWS", 7)  # the dataset has 8 utterances
    for path, params in (("/api/duplicates", {"kind": "near"}), ("/api/utterances", {"filter": "{dup_near_group} = 0"})):
        status, _, body = get(port, path, **params)
        assert status == 422 and "kind=text" in body["error"], (path, body)


@pytest.mark.parametrize("task", list(ROUTES))
def test_work_longer_than_the_wait_answers_202_then_the_result(port, manifest, held, monkeypatch, task):
    release, _ = held
    monkeypatch.setattr(quality_api, "API_WAIT_S", 0.0)
    path, params, directly = ROUTES[task]
    status, headers, body = get(port, path, **params)
    assert status == 202, body
    assert body == {"status": "running", "task": task, "seconds": body["seconds"],
                    "retry_after": quality_api.RETRY_AFTER_S, "error": None}
    assert body["seconds"] >= 0 and headers["Retry-After"] == str(quality_api.RETRY_AFTER_S)
    assert get(port, path, **params)[0] == 202  # still running: asking again starts nothing new
    release.set()
    status, body = answered(port, path, **params)
    assert status == 200, body
    assert result(task, body) == directly(build_dataset(manifest))


def test_a_second_report_waits_for_the_first_and_says_so(port, held, monkeypatch):
    release, ran = held
    monkeypatch.setattr(quality_api, "API_WAIT_S", 0.0)
    assert get(port, "/api/tts", lang="en")[2]["status"] == "running"
    status, _, body = get(port, "/api/tts", lang="de")
    assert (status, body["status"], body["task"]) == (202, "waiting", "tts")
    assert ran == ["tts"]  # German's report waits for English's: one at a time
    release.set()
    assert answered(port, "/api/tts", lang="de")[0] == 200 and ran == ["tts", "tts"]


def page_state(task: str, dataset) -> Callable[[], tuple[object, bool]]:
    """What the page showing ``task`` asks on each poll: (its content, whether it is final)."""
    from sde.web.pages.duplicates import groups_state
    from sde.web.pages.tts import report_state

    return {"tts": lambda: report_state(dataset, "en", "speaker"),
            "duplicate-groups": lambda: groups_state(dataset, "text", 0),
            "suspicious": lambda: suspicious_panel.card_state(dataset)}[task]


@pytest.mark.parametrize("page_first", [False, True], ids=["the API asks first", "the page asks first"])
@pytest.mark.parametrize("task, runs", [("tts", ["tts"]), ("duplicate-groups", ["duplicates"]),
                                        ("suspicious", ["duplicates", "suspicious"])])
def test_a_page_and_the_api_share_one_computation(port, dataset, manifest, held, monkeypatch, task, runs, page_first):
    release, ran = held
    monkeypatch.setattr(quality_api, "API_WAIT_S", 0.0)
    path, params, directly = ROUTES[task]
    state = page_state(task, dataset)
    if page_first:
        assert state()[1] is False
    assert get(port, path, **params)[0] == 202
    assert state()[1] is False  # the page sees the API's run (or the API the page's)
    release.set()
    until_final(state)
    status, body = answered(port, path, **params)
    assert status == 200 and body == directly(build_dataset(manifest))
    assert sorted(ran[:len(runs)]) == runs and len(ran) == 2 * len(runs)  # once for the server, once directly


def test_a_failed_computation_answers_its_error(port, monkeypatch):
    monkeypatch.setattr(quality_api, "API_WAIT_S", 0.0)
    # refused over its size in the background (sde.quality.apply's TooLarge): 422 with what to use instead
    monkeypatch.setattr(apply, "NEAR_DUPLICATE_MAX_ROWS", 7)  # the dataset has 8 utterances
    status, body = answered(port, "/api/utterances", filter="{dup_near_group} = 0")
    assert status == 422 and "kind=text" in body["error"], body


def test_an_unexpected_failure_answers_500_with_its_message(port, monkeypatch):
    def fails(dataset, kind):
        raise MemoryError("no room for the checks")

    monkeypatch.setattr(quality_api, "API_WAIT_S", 0.0)
    monkeypatch.setattr(apply, "_compute", fails)
    status, body = answered(port, "/api/suspicious")
    assert status == 500 and "MemoryError: no room for the checks" in body["error"], body
    assert get(port, "/api/suspicious")[0] == 500  # kept with this generation of the tables, not run again
