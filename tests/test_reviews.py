"""The review store (sde/reviews.py): versions, conflicts, undo, limits, read-only, locks, crashes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from sde.dataset import build_dataset
from sde.reviews import (
    MAX_NOTE_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TEXT_CHARS,
    Conflict,
    InvalidReview,
    NothingToUndo,
    ReadOnlyReviews,
    ReviewKey,
    ReviewsLocked,
    ReviewStore,
    ReviewsUnusable,
    WrongManifest,
    aligned_reviews,
    default_reviews_path,
    open_reviews,
    query_for,
    review_columns,
    review_get_route,
    review_post_route,
    review_summary,
    review_undo_route,
    reviews_list_route,
    utterance_keys,
)

REPO = Path(__file__).resolve().parents[1]
KEY = ReviewKey("m.json", 3, "a.wav", 0.0)
ROWS = [
    {"audio_filepath": "a.wav", "duration": 1.0, "text": "the cat"},
    {"audio_filepath": "long.wav", "offset": 0.0, "duration": 2.0, "text": "first part"},
    {"audio_filepath": "long.wav", "offset": 2.0, "duration": 3.0, "text": "second part"},
    {"audio_filepath": "b.wav", "duration": 4.0, "text": "hello world"},
]


@pytest.fixture
def store(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite", sources=["m.json"])
    yield s
    s.close()


@pytest.fixture
def dataset(write_manifest):
    return build_dataset(write_manifest(ROWS, "m.json"))


def test_versions_count_up_from_one(store):
    assert store.get(KEY).version == 0 and store.get(KEY).status is None
    first = store.set_review(KEY, "keep", expected_version=0)
    second = store.set_review(KEY, "fix", text="the cat sat", note="typo", tags=["typo"], user="ann",
                              expected_version=1)
    assert (first.version, second.version) == (1, 2)
    stored = store.get(KEY)
    assert (stored.status, stored.text, stored.note, stored.tags, stored.user) == \
        ("fix", "the cat sat", "typo", ("typo",), "ann")
    assert stored.time == pytest.approx(time.time(), abs=60)


def test_stale_version_is_a_conflict_with_both_values_and_changes_nothing(store):
    store.set_review(KEY, "keep", user="ann", expected_version=0)
    with pytest.raises(Conflict) as caught:
        store.set_review(KEY, "drop", note="noise", user="bob", expected_version=0)
    payload = caught.value.payload()
    assert payload["stored"]["status"] == "keep" and payload["stored"]["version"] == 1
    assert payload["attempted"]["status"] == "drop" and payload["attempted"]["note"] == "noise"
    assert "ann" in payload["error"]
    assert store.get(KEY).status == "keep" and len(store.history(KEY)) == 1


def test_no_expected_version_is_last_writer_wins(store):
    store.set_review(KEY, "keep")
    assert store.set_review(KEY, "drop").version == 2


UNDO_CASES = {
    "one change": (["keep"], 1, [None]),
    "two changes": (["keep", "drop"], 2, ["keep", None]),
    "three changes, two undos": (["keep", "drop", "fix"], 2, ["drop", "keep"]),
}


@pytest.mark.parametrize("statuses, undos, expected", UNDO_CASES.values(), ids=UNDO_CASES.keys())
def test_undo_walks_back_through_the_changes(store, statuses, undos, expected):
    for status in statuses:
        store.set_review(KEY, status, text="t" if status == "fix" else None)
    seen = [store.undo(KEY).status for _ in range(undos)]
    assert seen == expected
    assert store.get(KEY).version == len(statuses) + undos   # an undo is a new version
    assert [h["action"] for h in store.history(KEY)] == ["set"] * len(statuses) + ["undo"] * undos


def test_undo_past_the_start_and_after_a_new_change(store):
    with pytest.raises(NothingToUndo):
        store.undo(KEY)
    store.set_review(KEY, "keep")
    store.undo(KEY)
    with pytest.raises(NothingToUndo):
        store.undo(KEY)
    store.set_review(KEY, "drop", note="n")
    assert store.undo(KEY).status is None   # back to where the new change started: no review
    with pytest.raises(Conflict):
        store.undo(KEY, expected_version=1)


LIMITS = {
    "unknown status": (dict(status="maybe"), "status must be one of keep, drop, fix"),
    "fix without text": (dict(status="fix"), "needs the corrected transcript"),
    "text too long": (dict(status="fix", text="a" * (MAX_TEXT_CHARS + 1)), "at most 100,000"),
    "text with a line break": (dict(status="fix", text="a\nb"), "one line"),
    "text not a string": (dict(status="fix", text=5), "text must be a string"),
    "note too long": (dict(status="keep", note="n" * (MAX_NOTE_CHARS + 1)), "at most 10,000"),
    "note with NUL": (dict(status="keep", note="a\x00b"), "control characters"),
    "too many tags": (dict(status="keep", tags=[f"t{i}" for i in range(MAX_TAGS + 1)]), "at most 32"),
    "tag too long": (dict(status="keep", tags=["x" * (MAX_TAG_CHARS + 1)]), "at most 64"),
    "tag with a space": (dict(status="keep", tags=["bad audio"]), "'bad-audio'"),
    "tags as a string": (dict(status="keep", tags="noise"), "a list of words"),
    "lone surrogate": (dict(status="fix", text="a\ud800"), "not valid Unicode"),
    "negative version": (dict(status="keep", expected_version=-1), "version must be"),
    "boolean version": (dict(status="keep", expected_version=True), "version must be"),
}


@pytest.mark.parametrize("kwargs, message", LIMITS.values(), ids=LIMITS.keys())
def test_limits_are_clear_errors_and_nothing_is_saved(store, kwargs, message):
    with pytest.raises(InvalidReview, match=message.replace("(", r"\(")):
        store.set_review(KEY, **kwargs)
    assert store.get(KEY).version == 0


def test_values_at_the_limits_are_saved(store):
    r = store.set_review(KEY, "fix", text="ä" * MAX_TEXT_CHARS, note="line\n\ttab" + "n" * (MAX_NOTE_CHARS - 9),
                         tags=["x" * MAX_TAG_CHARS] + [f"t{i}" for i in range(MAX_TAGS - 1)])
    assert store.get(KEY) == r
    assert len(store.get(KEY).tags) == MAX_TAGS


def test_read_only_reads_but_never_writes(tmp_path):
    path = tmp_path / "r.sqlite"
    with_writes = ReviewStore(path, sources=["m.json"])
    with_writes.set_review(KEY, "drop")
    with_writes.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("r.sqlite")}
    ro = ReviewStore(path, sources=["m.json"], read_only=True)
    assert ro.get(KEY).status == "drop"
    with pytest.raises(ReadOnlyReviews, match="read-only"):
        ro.set_review(KEY, "keep")
    with pytest.raises(ReadOnlyReviews):
        ro.undo(KEY)
    ro.close()
    assert path.read_bytes() == before["r.sqlite"]


def test_read_only_without_a_file_is_empty_and_creates_nothing(tmp_path):
    ro = ReviewStore(tmp_path / "none.sqlite", read_only=True)
    assert ro.reviews() == [] and ro.get(KEY).version == 0
    assert list(tmp_path.iterdir()) == []


def test_a_locked_database_is_an_error_after_the_timeout_not_a_hang(tmp_path):
    path = tmp_path / "r.sqlite"
    ReviewStore(path, sources=["m.json"]).close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys, time
        con = sqlite3.connect({str(path)!r}, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        store = ReviewStore(path, sources=["m.json"], timeout=0.3)
        start = time.monotonic()
        with pytest.raises(ReviewsLocked, match="locked by another program"):
            store.set_review(KEY, "keep")
        assert time.monotonic() - start < 5
        assert store.get(KEY).version == 0      # readers are not blocked by a writer (WAL)
    finally:
        holder.kill()
        holder.wait()
    assert store.set_review(KEY, "keep").version == 1   # the lock is gone: the same store works
    store.close()


def test_durable_settings(store):
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert store._con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.parametrize("content, message", [
    (b"{\"audio_filepath\": \"a.wav\"}\n", "not a usable reviews file"),
    ("sqlite", "not an sde reviews file"),
], ids=["a manifest passed as --reviews", "another program's database"])
def test_a_file_that_is_not_a_reviews_file_is_refused_untouched(tmp_path, content, message):
    path = tmp_path / "x.db"
    if content == "sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(ReviewsUnusable, match=message):
        ReviewStore(path, sources=["m.json"])
    assert path.read_bytes() == before


def test_another_manifests_reviews_file_is_refused(tmp_path, write_manifest):
    # other lines, not this manifest renamed (whose reviews follow it: test_cleaning_loop_edges)
    other_rows = [{**r, "audio_filepath": "other_" + r["audio_filepath"]} for r in ROWS]
    other = build_dataset(write_manifest(other_rows, "other.json"))
    path = tmp_path / "r.sqlite"
    store = open_reviews(other, path)
    store.set_review(utterance_keys(other).key(0), "drop")
    store.close()
    mine = build_dataset(write_manifest(ROWS, "m.json"))
    with pytest.raises(WrongManifest, match="other.json"):
        open_reviews(mine, path)


def test_same_file_name_but_no_matching_line_is_refused(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a = tmp_path / "one" / "train.json"
    b = tmp_path / "two" / "train.json"
    a.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    b.write_text("".join(json.dumps({**r, "audio_filepath": "x_" + r["audio_filepath"]}) + "\n" for r in ROWS))
    first = build_dataset(a)
    store = open_reviews(first, tmp_path / "r.sqlite")
    store.set_review(utterance_keys(first).key(1), "keep")
    store.close()
    with pytest.raises(WrongManifest, match="none of the 1 reviews"):
        open_reviews(build_dataset(b), tmp_path / "r.sqlite")


def test_default_location_is_per_manifest_in_the_cache_folder(tmp_path, dataset):
    path = default_reviews_path(dataset, tmp_path / "cache")
    assert path.parent == tmp_path / "cache" / "reviews" and path.name.startswith("m-")
    store = open_reviews(dataset, cache_dir=tmp_path / "cache")
    store.set_review(utterance_keys(dataset).key(0), "keep")
    store.close()
    again = open_reviews(build_dataset(dataset.manifest_path), cache_dir=tmp_path / "cache")
    assert [r.status for r in again.reviews()] == ["keep"]
    again.close()


# ------------------------------------------------------------------ the dataset's review columns


def test_keys_tell_segments_of_one_file_apart_and_survive_a_rebuild(tmp_path, dataset):
    keys = utterance_keys(dataset)
    assert keys.key(1) == ReviewKey("m.json", 2, "long.wav", 0.0)
    assert keys.key(2) == ReviewKey("m.json", 3, "long.wav", 2.0)
    store = ReviewStore(tmp_path / "r.sqlite", sources=["m.json"])
    store.set_review(keys.key(2), "drop")
    rebuilt = build_dataset(dataset.manifest_path)
    assert aligned_reviews(rebuilt, store).positions.tolist() == [2]
    store.close()


def test_a_review_follows_its_utterance_to_a_new_line_unless_that_is_ambiguous(tmp_path, write_manifest, dataset):
    store = ReviewStore(tmp_path / "r.sqlite", sources=["m.json"])
    store.set_review(utterance_keys(dataset).key(0), "drop")   # a.wav: once in the edited file
    store.set_review(utterance_keys(dataset).key(1), "drop")   # long.wav @ 0: twice in the edited file
    store.set_review(utterance_keys(dataset).key(3), "keep")   # b.wav
    edited = build_dataset(write_manifest([ROWS[1]] + ROWS, "m.json"))  # a line inserted at the top
    aligned = aligned_reviews(edited, store)
    # a.wav and b.wav moved down one line; the long.wav @ 0 review could be either copy: stale
    assert sorted(zip(aligned.positions.tolist(), [r.status for r in aligned.reviews])) == [(1, "drop"), (4, "keep")]
    assert aligned.stale == 1 and aligned.moved == 2
    store.close()


FILTERS = {
    "status": ('{review} = "drop"', [0, 3]),
    "tag": ('{review_tags} has "noise"', [0]),
    "other tag": ('{review_tags} has "music"', [0, 2]),
    "fixed text": ('{review_text} contains "world"', [2]),
    "user": ('{review_user} = "ann"', [0, 2, 3]),
    "with other columns": ('{review} = "drop" && {duration} > 2', [3]),
}


@pytest.mark.parametrize("flt, expected", FILTERS.values(), ids=FILTERS.keys())
def test_review_columns_work_in_the_filter_language(tmp_path, dataset, flt, expected):
    keys = utterance_keys(dataset)
    store = ReviewStore(tmp_path / "r.sqlite", sources=["m.json"])
    store.set_review(keys.key(0), "drop", tags=["noise", "music"], user="ann")
    store.set_review(keys.key(2), "fix", text="second world", tags=["music"], user="ann")
    store.set_review(keys.key(3), "drop", user="ann")
    store.set_review(keys.key(1), "keep", user="bob")
    store.undo(keys.key(1), user="bob")
    assert query_for(dataset, store, flt).select(flt).tolist() == expected
    store.close()


def test_review_columns_follow_new_edits_and_summary_counts_hours(tmp_path, dataset):
    keys = utterance_keys(dataset)
    store = ReviewStore(tmp_path / "r.sqlite", sources=["m.json"])
    flt = '{review} = "keep"'
    assert query_for(dataset, store, flt).select(flt).tolist() == []
    store.set_review(keys.key(1), "keep")
    store.set_review(keys.key(3), "drop")
    assert query_for(dataset, store, flt).select(flt).tolist() == [1]
    cols = review_columns(dataset, store)
    assert list(cols.columns) == ["review", "review_text", "review_note", "review_tags", "review_user",
                                  "review_time"]
    assert cols["review"].isna().tolist() == [True, False, True, False]
    s = review_summary(dataset, store)
    assert (s["reviewed"], s["keep"], s["drop"], s["fix"]) == (2, 1, 1, 0)
    assert s["hours_drop"] == pytest.approx(4 / 3600) and s["hours_reviewed"] == pytest.approx(6 / 3600)
    store.close()


# ------------------------------------------------------------------------------- HTTP twins


ROUTE_CASES = {
    "new review": ({"status": "drop", "tags": ["noise"], "version": 0}, 200, "version"),
    "unknown field": ({"status": "drop", "notes": "x"}, 400, "unknown field 'notes'"),
    "not an object": (["drop"], 400, "send a JSON object"),
    "bad status": ({"status": "delete"}, 400, "status must be"),
    "version as text": ({"status": "keep", "version": "1"}, 400, "version must be"),
    "a correction without the spaces around it": ({"status": "fix", "text": "  the cat  "}, 200, '"text": "the cat"'),
}


@pytest.mark.parametrize("body, status, fragment", ROUTE_CASES.values(), ids=ROUTE_CASES.keys())
def test_post_review_route(dataset, store, body, status, fragment):
    code, payload = review_post_route(dataset, store, "1", body, user="ann")
    assert code == status
    assert fragment in (json.dumps(payload) if code == 200 else payload["error"])
    if code == 200:
        assert payload["id"] == 1 and payload["version"] == 1 and payload["user"] == "ann"


def test_routes_conflict_undo_get_and_list(dataset, store):
    assert review_post_route(dataset, store, 3, {"status": "keep", "version": 0})[0] == 200
    code, payload = review_post_route(dataset, store, 3, {"status": "drop", "version": 0})
    assert code == 409 and payload["stored"]["status"] == "keep" and payload["attempted"]["status"] == "drop"
    assert review_undo_route(dataset, store, 3, {"version": 1}) [1]["status"] is None
    assert review_get_route(dataset, store, 3)[1]["version"] == 2
    review_post_route(dataset, store, 0, {"status": "drop"})
    review_post_route(dataset, store, 2, {"status": "fix", "text": "x"})
    code, listing = reviews_list_route(dataset, store, {"filter": "{duration} > 0.5"})
    assert code == 200 and [r["id"] for r in listing["rows"]] == [0, 2] and listing["total"] == 2
    assert listing["rows"][1]["reference"] == "second part"
    code, listing = reviews_list_route(dataset, store, {"filter": '{review} = "fix"', "page_size": "1"})
    assert [r["id"] for r in listing["rows"]] == [2]
    assert reviews_list_route(dataset, store, {"filter": "{review} >"})[0] == 400
    assert reviews_list_route(dataset, store, {"page_size": "5000"})[0] == 400


@pytest.mark.parametrize("raw_id", ["4", "-1", "x", "1" * 30, "1.0"])
def test_unknown_ids_are_404(dataset, store, raw_id):
    code, payload = review_post_route(dataset, store, raw_id, {"status": "keep"})
    assert code == 404 and "no utterance" in payload["error"]


def test_read_only_route_is_403(tmp_path, dataset):
    ro = ReviewStore(tmp_path / "r.sqlite", read_only=True)
    code, payload = review_post_route(dataset, ro, 0, {"status": "keep"})
    assert code == 403 and "read-only" in payload["error"]
    assert review_get_route(dataset, ro, 0)[1]["editable"] is False


# ------------------------------------------------------------------------------ kill -9


BURST = """
import sys
from sde.reviews import ReviewKey, ReviewStore
store = ReviewStore(sys.argv[1], sources=["m.json"])
i = 0
while True:
    key = ReviewKey("m.json", i % 40 + 1, f"clip{i % 40}.wav", 0.0)
    r = store.set_review(key, ("keep", "drop")[i % 2], note=f"edit {i}", tags=[f"t{i}"])
    print(key.line, r.version, i, flush=True)
    i += 1
"""


def test_kill_9_during_a_burst_loses_no_acknowledged_edit(tmp_path):
    path = tmp_path / "r.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", BURST, str(path)], stdout=subprocess.PIPE, env=env)
    acknowledged = []
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            raw = proc.stdout.readline()
            if not raw:
                break
            acknowledged.append(raw)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        acknowledged += proc.stdout.read().splitlines(keepends=True)
    finally:
        if proc.poll() is None:
            proc.kill()
    edits = [tuple(int(x) for x in raw.split()) for raw in acknowledged if raw.endswith(b"\n")]
    assert len(edits) >= 300
    store = ReviewStore(path, sources=["m.json"])
    for line, version, i in edits:
        key = ReviewKey("m.json", line, f"clip{i % 40}.wav", 0.0)
        history = {h["version"]: h for h in store.history(key)}
        assert history[version]["note"] == f"edit {i}" and history[version]["tags"] == [f"t{i}"]
        assert store.get(key).version >= version
    store.close()


def test_positions_of_unknown_keys(dataset):
    keys = utterance_keys(dataset)
    found = keys.positions([keys.key(3), ReviewKey("m.json", 1, "other.wav", 0.0),
                            ReviewKey("x.json", 1, "a.wav", 0.0), ReviewKey("m.json", 99, "a.wav", 0.0),
                            ReviewKey("m.json", 3, "long.wav", 2.5)])
    assert found.tolist() == [3, -1, -1, -1, -1]
    assert np.array_equal(keys.positions([keys.key(i) for i in range(4)]), np.arange(4))


# (behaviour, the reviews made before the file alone is copied, what the copy holds)
COPIED_WHILE_OPEN = [
    ("a new file: a reviews file with none", [], {}),
    ("one review", [("keep", {})], {"keep": None}),
    ("a fix with a note, after a drop", [("drop", {}), ("fix", {"text": "the cat sat", "note": "typo"})],
     {"fix": "the cat sat"}),
]


@pytest.mark.parametrize("behaviour, made, held", COPIED_WHILE_OPEN, ids=[c[0] for c in COPIED_WHILE_OPEN])
def test_a_copy_of_the_file_alone_while_it_is_open_holds_every_review(tmp_path, behaviour, made, held):
    """A user backs up or copies `r.sqlite` while the server has it open (its -wal not copied)."""
    import shutil

    open_store = ReviewStore(tmp_path / "r.sqlite", sources=["m.json"])
    try:
        for version, (status, extra) in enumerate(made):
            open_store.set_review(KEY, status, expected_version=version, **extra)
        shutil.copyfile(tmp_path / "r.sqlite", tmp_path / "copy.sqlite")
    finally:
        open_store.close()
    copy = ReviewStore(tmp_path / "copy.sqlite", sources=["m.json"], read_only=True)
    try:
        assert {r.status: r.text for r in copy.reviews()} == held
    finally:
        copy.close()


def test_reviews_files_opened_one_after_another_on_one_dataset_filter_their_own_reviews(write_manifest, tmp_path):
    # A script or notebook opening one reviews file after another on the same Dataset: the caches
    # derived from a store were keyed by id(store), which a closed, freed store hands to the next
    # (4-9 rounds in 40 on Python 3.11, 27 on 3.13), so "{review} is not null" answered with the
    # previous file's reviews.
    manifest = write_manifest([{"audio_filepath": f"u{i}.wav", "duration": 1.0, "text": f"word {i}"} for i in range(5)])
    dataset = build_dataset(str(manifest))
    for n in range(40):
        row = n % 5
        store = open_reviews(dataset, tmp_path / f"r{n}.sqlite")
        review_post_route(dataset, store, row, {"status": "drop"})
        assert aligned_reviews(dataset, store).positions.tolist() == [row]
        assert query_for(dataset, store, "{review} is not null").select("{review} is not null").tolist() == [row], n
        store.close()
        del store
