"""A save reads its own review back, not every review (sde.reviews.aligned_reviews and
review_columns follow the store's changes_since): at 90k reviews each save took 2 s re-reading
them all. The views after any sequence of saves equal those read afresh from the file."""

from __future__ import annotations

import pandas as pd
import pytest

from sde.dataset import build_dataset
from sde.reviews import (ReviewStore, aligned_reviews, open_reviews, query_for, review_columns, review_post_route,
                         review_summary, review_undo_route)


def _rows(n: int) -> list[dict]:
    return [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 3, "text": f"word {i}"} for i in range(n)]


def _fresh(manifest, path):
    """The views of the reviews file read from scratch: another server starting on it."""
    dataset = build_dataset(manifest)
    store = ReviewStore(path, sources=["m.json"], read_only=True)
    try:
        return review_columns(dataset, store), review_summary(dataset, store)
    finally:
        store.close()


# Each step: (route, utterance id, body)
STEPS = {
    "saves on rows without a review": [("post", 0, {"status": "drop"}), ("post", 5, {"status": "keep"})],
    "a review changed": [("post", 2, {"status": "drop"}), ("post", 2, {"status": "fix", "text": "a fix"})],
    "a change undone": [("post", 3, {"status": "keep", "tags": ["noise"]}), ("post", 3, {"status": "drop"}),
                        ("undo", 3, {})],
    "a review undone to nothing": [("post", 4, {"status": "fix", "text": "t", "note": "n"}), ("undo", 4, {})],
    "many rows, one after another": [("post", i, {"status": "drop" if i % 2 else "keep"}) for i in range(20)],
}


@pytest.mark.parametrize("steps", STEPS.values(), ids=STEPS.keys())
def test_views_after_saves_equal_the_file_read_afresh(write_manifest, tmp_path, steps):
    manifest = write_manifest(_rows(30), "m.json")
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    review_post_route(dataset, store, 10, {"status": "drop"})  # one review there before the views are built
    review_columns(dataset, store)
    for route, utterance, body in steps:
        status, _ = (review_post_route if route == "post" else review_undo_route)(dataset, store, utterance, body)
        assert status == 200
        columns = review_columns(dataset, store)
    expected_columns, expected_summary = _fresh(manifest, tmp_path / "r.sqlite")
    pd.testing.assert_frame_equal(columns, expected_columns)
    assert review_summary(dataset, store) == expected_summary
    query = query_for(dataset, store, '{review} = "drop"')
    assert query.count('{review} = "drop"') == (expected_columns["review"] == "drop").sum()
    store.close()


def test_saves_do_not_read_every_review_again(write_manifest, tmp_path, monkeypatch):
    dataset = build_dataset(write_manifest(_rows(30), "m.json"))
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    review_post_route(dataset, store, 1, {"status": "drop"})
    review_columns(dataset, store)
    reads = []
    every_review = store.reviews
    monkeypatch.setattr(store, "reviews", lambda: reads.append(1) or every_review())
    for i in range(2, 12):
        review_post_route(dataset, store, i, {"status": "keep"})
        assert review_columns(dataset, store)["review"].iat[i] == "keep"
    assert reads == []
    store.close()


def test_another_process_saving_makes_the_views_read_the_file_again(write_manifest, tmp_path):
    manifest = write_manifest(_rows(30), "m.json")
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    review_post_route(dataset, store, 1, {"status": "drop"})
    assert review_columns(dataset, store)["review"].iat[1] == "drop"
    other = open_reviews(build_dataset(manifest), tmp_path / "r.sqlite")  # a second connection: another server
    review_post_route(dataset, other, 2, {"status": "fix", "text": "theirs"})
    review_post_route(dataset, store, 3, {"status": "keep"})
    columns = review_columns(dataset, store)
    assert list(columns["review"].iloc[1:4]) == ["drop", "fix", "keep"]
    assert columns["review_text"].iat[2] == "theirs"
    assert len(aligned_reviews(dataset, store).reviews) == 3
    other.close()
    store.close()


def test_a_server_opening_an_empty_reviews_file_makes_no_row_keys_until_a_first_review(write_manifest, tmp_path):
    # the rows' keys take ~0.1 GB at 10M rows: a server nobody reviews on never needs them
    manifest = write_manifest(_rows(30), "m.json")
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    assert aligned_reviews(dataset, store).reviews == []
    assert review_columns(dataset, store)["review"].isna().all()
    assert "_sde_review_keys" not in dataset.__dict__
    status, _ = review_post_route(dataset, store, 7, {"status": "drop"})
    assert status == 200
    aligned = aligned_reviews(dataset, store)
    assert aligned.positions.tolist() == [7] and aligned.reviews[0].status == "drop"
    assert "_sde_review_keys" in dataset.__dict__
    columns, _ = _fresh(manifest, tmp_path / "r.sqlite")
    pd.testing.assert_frame_equal(review_columns(dataset, store), columns)
    store.close()
