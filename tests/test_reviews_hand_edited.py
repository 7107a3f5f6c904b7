"""A reviews file edited by hand (the sqlite3 shell) into what sde never writes: each unreadable row
is reported once, naming the file, the row and the SQL that repairs it, and read leniently or
skipped; the other reviews, the server and `sde export` keep working. Real SQLite files, real
servers, no traceback."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sde.dataset import build_dataset
from sde.reviews import (
    ReviewsUnusable,
    ReviewStore,
    open_reviews,
    review_get_route,
    review_post_route,
    review_summary,
    reviews_list_route,
)
from tests.test_audio_faults import ROOT, SdeServer, assert_no_traceback

ROWS = [
    {"audio_filepath": "a.wav", "duration": 1.0, "text": "the cat"},
    {"audio_filepath": "b.wav", "duration": 2.0, "text": "a dog"},
]


@pytest.fixture
def manifest(write_manifest) -> Path:
    return write_manifest(ROWS, "m.json")


@pytest.fixture
def reviewed(tmp_path, manifest) -> Path:
    """r.sqlite: line 1 kept with the tag "noise", line 2 dropped; closed, as after a session."""
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    assert review_post_route(dataset, store, 0, {"status": "keep", "tags": ["noise"]})[0] == 200
    assert review_post_route(dataset, store, 1, {"status": "drop"})[0] == 200
    store.close()
    return tmp_path / "r.sqlite"


def edit(path: Path, sql: str) -> None:
    """What a user types in `sqlite3 r.sqlite "..."`: its own connection, committed."""
    with sqlite3.connect(path) as con:
        con.execute(sql)
    con.close()


# edit of line 1 → (line 1 as read: status, text, tags; None: skipped) and the reported fragment
EDITS = {
    "tags typed as words": ("UPDATE reviews SET tags = 'noise, bad' WHERE line = 1",
                            ("keep", None, ["noise", "bad"]), """read as ["noise", "bad"]"""),
    "tags a JSON string": ("""UPDATE reviews SET tags = '"noise"' WHERE line = 1""",
                           ("keep", None, ["noise"]), "not a JSON list of words"),
    "a tag with a space": ("""UPDATE reviews SET tags = '["bad audio"]' WHERE line = 1""",
                           ("keep", None, []), "has a tag sde would not save"),
    "a fix without its text": ("UPDATE reviews SET status = 'fix', text = NULL WHERE line = 1",
                               ("keep", None, ["noise"]), 'status "fix" has no corrected text: read as "keep"'),
    "text as bytes": ("UPDATE reviews SET status = 'fix', text = x'00ff' WHERE line = 1",
                      ("keep", None, ["noise"]), "text b'\\x00\\xff' is not text"),
    "time as words": ("UPDATE reviews SET time = 'yesterday' WHERE line = 1",
                      ("keep", None, ["noise"]), "time 'yesterday' is not seconds since 1970"),
    "version as words": ("UPDATE reviews SET version = 'two' WHERE line = 1", None,
                         "version 'two' is not a whole number: the row is skipped"),
    "line as words": ("UPDATE reviews SET line = 'one' WHERE line = 1", None,
                      "is not (text, whole number, text, number): the row is skipped"),
}


@pytest.mark.parametrize("sql, expected, fragment", EDITS.values(), ids=EDITS.keys())
def test_a_hand_edited_row_is_reported_and_the_others_work(reviewed, manifest, caplog, sql, expected, fragment):
    edit(reviewed, sql)
    dataset = build_dataset(manifest)
    with caplog.at_level(logging.WARNING, logger="sde.review_store"):
        store = open_reviews(dataset, reviewed)
        code, listing = reviews_list_route(dataset, store, {})
    assert code == 200
    shown = {row["line"]: (row["status"], row["text"], row["tags"]) for row in listing["rows"]}
    assert shown.get(1) == expected and shown[2] == ("drop", None, [])
    problems = listing["problems"]
    assert any(fragment in problem for problem in problems), problems
    for problem in problems:
        assert problem.startswith(f"{reviewed}: reviews row 1") and "fix: " in problem and problem in caplog.text
    code, one = review_get_route(dataset, store, 0)
    assert code == 200 and (one["status"], one["text"], one["tags"]) == (expected or (None, None, []))
    summary = review_summary(dataset, store)
    assert (summary["drop"], summary["fix"]) == (1, 0)  # a fix without text is not counted as fixed
    edit(reviewed, "UPDATE reviews SET note = 'seen' WHERE line = 2")
    reviews_list_route(dataset, store, {})  # read again after a change: nothing new to report
    assert store.problems == problems
    store.close()


@pytest.mark.parametrize("sql", [EDITS["tags typed as words"][0], EDITS["a fix without its text"][0]],
                         ids=["tags typed as words", "a fix without its text"])
def test_the_fix_the_message_gives_repairs_the_row(reviewed, manifest, sql):
    edit(reviewed, sql)
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, reviewed)
    store.reviews()
    repair = store.problems[0].split(" or run ", 1)[1]
    store.close()
    edit(reviewed, repair)
    store = open_reviews(dataset, reviewed)
    store.reviews()
    assert store.problems == []
    store.close()


def test_saving_over_a_row_that_cannot_be_read_is_refused_with_the_fix(reviewed, manifest):
    edit(reviewed, EDITS["version as words"][0])
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, reviewed)
    code, payload = review_post_route(dataset, store, 0, {"status": "drop"})
    assert code == 500 and "cannot be read, so nothing was saved over it" in payload["error"]
    assert "DELETE FROM reviews WHERE rowid = 1" in payload["error"]
    edit(reviewed, "DELETE FROM reviews WHERE rowid = 1")
    assert review_post_route(dataset, store, 0, {"status": "drop"})[0] == 200
    store.close()


META = {
    "sources not JSON": ("UPDATE meta SET value = 'm.json' WHERE key = 'sources'", "meta row 'sources'"),
    "schema version not a number": ("UPDATE meta SET value = 'one' WHERE key = 'schema_version'",
                                    "meta row 'schema_version'"),
}


@pytest.mark.parametrize("sql, fragment", META.values(), ids=META.keys())
def test_a_hand_edited_meta_row_is_a_message_not_a_traceback(reviewed, sql, fragment):
    edit(reviewed, sql)
    with pytest.raises(ReviewsUnusable, match=fragment) as caught:
        ReviewStore(reviewed, sources=["m.json"])
    assert str(reviewed) in str(caught.value) and "fix: UPDATE meta SET value" in str(caught.value)


def test_a_server_starts_and_serves_over_rows_edited_before_and_while_it_runs(reviewed, manifest):
    edit(reviewed, EDITS["tags typed as words"][0])
    with SdeServer(str(manifest), "--reviews", str(reviewed)) as server:
        edit(reviewed, "UPDATE reviews SET status = 'fix', text = NULL WHERE line = 2")
        listing = server.json("/api/reviews", 200)
        assert [(r["line"], r["status"], r["tags"]) for r in listing["rows"]] == [(1, "keep", ["noise", "bad"]),
                                                                                (2, "keep", [])]
        assert server.json("/api/utterances/0/review", 200)["tags"] == ["noise", "bad"]
        assert listing["summary"]["fix"] == 0 and len(listing["problems"]) == 2
        assert server.alive
    assert_no_traceback(server)
    said = "".join(server.stderr)
    assert "warning: " in said and "reviews row 1 (m.json line 1, a.wav at 0 s): tags 'noise, bad'" in said


def test_export_applies_the_readable_reviews_and_says_what_it_skipped(reviewed, manifest, tmp_path):
    edit(reviewed, EDITS["version as words"][0])
    edit(reviewed, "UPDATE reviews SET tags = 'noise, bad' WHERE line = 2")
    out = tmp_path / "clean.json"
    r = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(manifest), "--apply-reviews", "--reviews",
                        str(reviewed), "-o", str(out), "--no-cache"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "version 'two' is not a whole number" in r.stderr and "tags 'noise, bad'" in r.stderr
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == ["the cat"]
