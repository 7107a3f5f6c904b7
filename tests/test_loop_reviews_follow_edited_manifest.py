"""Reviews survive the manifest being edited above them: a line added at the top, a line removed,
the file re-sorted. A review follows its utterance (same file, audio_filepath and offset) to its
new line, in the server (GET, POST, undo edit that same review) and in `sde export --apply-reviews`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sde.dataset import build_dataset
from sde.reviews import (
    aligned_reviews,
    open_reviews,
    review_get_route,
    review_post_route,
    review_undo_route,
    reviews_list_route,
    utterance_keys,
)

REPO = Path(__file__).resolve().parents[1]
ROWS = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": f"words number {i}", "w": 3.0} for i in range(5)]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def reviewed(tmp_path: Path) -> tuple[Path, Path]:
    """A manifest with a drop on a1 and a fix on a3, saved in r.sqlite."""
    manifest = write(tmp_path / "m.json", ROWS)
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    keys = utterance_keys(dataset)
    store.set_review(keys.key(1), "drop", note="noise")
    store.set_review(keys.key(3), "fix", text="words number three")
    store.close()
    return manifest, tmp_path / "r.sqlite"


def test_a_line_added_at_the_top_keeps_every_review_usable_and_editable(tmp_path):
    manifest, path = reviewed(tmp_path)
    new = {"audio_filepath": "new.wav", "duration": 9.0, "text": "a new first line"}
    write(manifest, [new, *ROWS])
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, path)   # before: refused as "another manifest's reviews"
    try:
        code, got = review_get_route(dataset, store, 4)          # a3, now on line 5
        assert code == 200 and got["status"] == "fix" and got["line"] == 5 and got["version"] == 1
        code, saved = review_post_route(dataset, store, 4, {"status": "keep", "version": 1})
        assert code == 200 and saved["version"] == 2 and saved["line"] == 5
        assert len(store.reviews()) == 2          # the same review edited, not a second one
        code, undone = review_undo_route(dataset, store, 4, {"version": 2})
        assert code == 200 and undone["status"] == "fix" and undone["version"] == 3
        code, listed = reviews_list_route(dataset, store, {})
        assert code == 200 and [(r["id"], r["line"], r["status"]) for r in listed["rows"]] == \
            [(2, 3, "drop"), (4, 5, "fix")]
        assert listed["stale"] == 0
        # the line the review was saved on now holds another utterance: it has no review
        code, other = review_get_route(dataset, store, 1)
        assert code == 200 and other["status"] is None and other["version"] == 0
    finally:
        store.close()


def test_a_removed_line_and_a_resorted_file(tmp_path):
    manifest, path = reviewed(tmp_path)
    write(manifest, [ROWS[3], ROWS[2], ROWS[1]])      # a0 and a4 removed, the rest reversed
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, path, read_only=True)
    try:
        aligned = aligned_reviews(dataset, store)
        assert sorted(zip(aligned.positions.tolist(), [r.status for r in aligned.reviews])) == \
            [(0, "fix"), (2, "drop")]
        assert aligned.stale == 0
    finally:
        store.close()


def test_a_row_with_its_own_review_keeps_it_and_the_moved_one_is_stale(tmp_path):
    manifest, path = reviewed(tmp_path)
    write(manifest, [ROWS[0], ROWS[2], ROWS[1], ROWS[3], ROWS[4]])   # a1 and a2 swapped
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, path)
    try:
        keys = utterance_keys(dataset)
        store.set_review(keys.key(2), "keep")   # a1 on its new line, reviewed again before the fix
        aligned = aligned_reviews(dataset, store)
        statuses = {p: r.status for p, r in zip(aligned.positions.tolist(), aligned.reviews)}
        assert statuses == {2: "keep", 3: "fix"} and aligned.stale == 1
    finally:
        store.close()


def test_export_applies_the_reviews_of_moved_lines(tmp_path):
    manifest, path = reviewed(tmp_path)
    new = {"audio_filepath": "new.wav", "duration": 9.0, "text": "a new first line"}
    write(manifest, [new, *ROWS])
    env = {**os.environ, "PYTHONPATH": str(REPO), "SDE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "sde.cli", "export", "m.json", "--reviews", "r.sqlite",
                           "--apply-reviews", "-o", "clean.json", "--rejected", "dropped.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kept = [json.loads(x) for x in (tmp_path / "clean.json").read_text().splitlines()]
    assert [r["audio_filepath"] for r in kept] == ["new.wav", "a0.wav", "a2.wav", "a3.wav", "a4.wav"]
    assert kept[3]["text"] == "words number three" and kept[3]["text_original"] == "words number 3"
    assert (tmp_path / "dropped.json").read_text() == json.dumps(ROWS[1]) + "\n"
    changes = json.loads((tmp_path / "clean.json.changelog.json").read_text())["reviews"]
    assert changes["moved"] == 2 and changes["stale"] == 0
    assert sorted((c["line"], c["review"]) for c in changes["changes"]) == [(3, "drop"), (5, "fix")]
