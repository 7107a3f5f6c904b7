"""GET /api/reviews of a server with no review yet answers the empty list without spreading the
review columns over every utterance (~0.5 s at 10M rows, for a list that is empty whatever the
filter); a bad filter or sort is still a 400, and once a review is saved the list is built as before.
Through the real server (sde.web.serve) over a socket, the building function counted by a wrapper
that calls it."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest

from sde import reviews as reviews_module
from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from tests.server_kit import json_call, served_port

EMPTY = {"total": 0, "page": 0, "page_size": 50, "rows": [], "stale": 0, "problems": []}


@pytest.fixture()
def served(tmp_path: Path, monkeypatch) -> tuple[str, list[int]]:
    """(the server's URL, a list that grows by one at each build of the review columns)."""
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0 + i,
                                            "text": f"the cat sat {i}"}) + "\n" for i in range(4)),
                        encoding="utf-8")
    dataset = build_dataset(manifest)
    builds: list[int] = []
    real = reviews_module.review_columns

    def counted(*args, **kwargs):
        builds.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reviews_module, "review_columns", counted)
    app = create_app(dataset, AppConfig(title="m", audio_routes=False, reviews=str(tmp_path / "reviews.sqlite")))
    with served_port(app) as port:
        yield f"http://127.0.0.1:{port}", builds


def reviews(url: str, **args: str) -> tuple[int, dict]:
    return json_call(f"{url}/api/reviews?{urlencode(args)}")




def test_no_review_yet_lists_nothing_without_building_the_review_columns(served):
    url, builds = served
    for args in ({}, {"filter": '{review} = "drop"'}, {"filter": "{duration} > 2", "sort": "-review_time"}):
        status, got = reviews(url, **args)
        assert status == 200, got
        assert {k: got[k] for k in EMPTY} == EMPTY, got
        assert got["summary"]["reviewed"] == 0 and got["editable"] is True, got
    assert builds == []


def test_no_review_yet_still_refuses_a_bad_filter_or_sort(served):
    url, builds = served
    status, got = reviews(url, filter='{status} = "drop"')
    assert status == 400 and got["position"] == 1 and "Did you mean {review}?" in got["error"], got
    status, got = reviews(url, filter="{review} >")
    assert status == 400 and "error" in got, got
    status, got = reviews(url, sort="nope")
    assert status == 400 and "nope" in got["error"], got
    assert builds == []


def test_a_saved_review_is_listed_from_the_review_columns(served):
    url, builds = served
    assert reviews(url)[0] == 200
    status, got = json_call(f"{url}/api/utterances/2/review", {"status": "drop", "note": "noise"})
    assert status == 200, got
    status, got = reviews(url, filter='{review} = "drop"')
    assert status == 200 and got["total"] == 1, got
    assert got["rows"][0]["reference"] == "the cat sat 2" and got["rows"][0]["status"] == "drop", got
    assert got["summary"]["drop"] == 1 and got["summary"]["hours_drop"] == pytest.approx(3.0 / 3600), got
    assert len(builds) >= 1
