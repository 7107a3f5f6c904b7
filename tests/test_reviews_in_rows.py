"""Once a server holds a review, /api/utterances rows and their CSV carry the review columns
(review, review_text, review_note, review_tags, review_user, review_time), through the real
server; before the first review they are as they were. Before, the columns filtered but were in
neither: a CSV of `{review} = "drop"` lost the notes and tags (found by exploratory QA)."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf

from sde.reviews import REVIEW_COLUMNS
from tests.test_audio_faults import SdeServer, assert_no_traceback

SR = 16000


@pytest.fixture()
def server(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(SR, dtype=np.float32), SR, subtype="PCM_16")
    lines = [{"audio_filepath": "a.wav", "duration": 1.0, "text": f"the cat sat {i}", "pred_text": "the cat"}
             for i in range(6)]
    (tmp_path / "m.json").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    with SdeServer(str(tmp_path / "m.json"), "--reviews", str(tmp_path / "reviews.sqlite")) as s:
        yield s
    assert_no_traceback(s)


def _review(s, uid: int, body: dict) -> None:
    code, _, raw = s.request(f"/api/utterances/{uid}/review", "POST", {"Content-Type": "application/json"},
                             json.dumps(body).encode())
    assert code == 200, raw[:300]


def _csv(s, query: str) -> list[dict]:
    code, _, body = s.get("/api/utterances.csv" + query)
    assert code == 200, body[:300]
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def test_without_a_review_rows_have_no_review_columns(server):
    row = server.json("/api/utterances?page_size=1", 200)["rows"][0]
    assert not set(REVIEW_COLUMNS) & set(row)
    assert not set(REVIEW_COLUMNS) & set(_csv(server, "")[0])


def test_a_review_is_in_the_rows_and_the_csv_of_its_filter(server):
    _review(server, 2, {"status": "drop", "note": "music under speech", "tags": ["noise", "music"]})
    _review(server, 4, {"status": "fix", "text": "the cat sat four"})
    query = "?filter=" + quote('{review} is not null') + "&sort=id"
    rows = server.json("/api/utterances" + query, 200)["rows"]
    assert [(r["id"], r["review"], r["review_note"], r["review_tags"], r["review_text"]) for r in rows] == [
        (2, "drop", "music under speech", "noise music", None),
        (4, "fix", None, None, "the cat sat four"),
    ]
    assert all(r["review_time"] for r in rows)
    table = _csv(server, query)
    assert [(r["id"], r["review"], r["review_note"], r["review_tags"], r["review_text"]) for r in table] == [
        ("2", "drop", "music under speech", "noise music", ""),
        ("4", "fix", "", "", "the cat sat four"),
    ]
    unreviewed = server.json("/api/utterances?filter=" + quote("{id} = 0"), 200)["rows"][0]
    assert unreviewed["review"] is None and "review_note" in unreviewed
