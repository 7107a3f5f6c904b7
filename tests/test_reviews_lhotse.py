"""Reviews of a Lhotse CutSet, whose cut lines hold several supervisions (rows) each: a review of
any supervision, not only a line's first, lands on its own row, in process and through `sde export`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.dataset import build_dataset
from sde.reviews import (
    ReviewKey,
    aligned_reviews,
    open_reviews,
    query_for,
    review_post_route,
    reviews_list_route,
    utterance_keys,
)

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
# per cut: (start, duration, text) of its supervisions, in the order the cut lists them; the
# second cut lists a later supervision first, so its rows are not in time order
CUTS = {
    "c0": [(0.0, 0.7, "first part"), (0.7, 1.3, "second part")],
    "c1": [(1.2, 0.8, "late one"), (0.0, 0.6, "early one"), (0.6, 0.6, "middle one")],
}
ROW = {text: i for i, text in enumerate(t for sups in CUTS.values() for _, _, t in sups)}


@pytest.fixture(scope="module")
def cuts(tmp_path_factory) -> Path:
    """cuts.jsonl.gz written by lhotse, over 2 s WAV files written by soundfile."""
    folder = tmp_path_factory.mktemp("cuts")
    made = []
    for k, (cut_id, sups) in enumerate(CUTS.items()):
        t = np.arange(2 * SR) / SR
        sf.write(folder / f"{cut_id}.wav", (0.2 * np.sin(2 * np.pi * (220 + 110 * k) * t)).astype(np.float32), SR)
        rec = Recording.from_file(folder / f"{cut_id}.wav", recording_id=cut_id, relative_path_depth=1)
        segments = [SupervisionSegment(id=f"{cut_id}s{j}", recording_id=cut_id, start=start, duration=duration,
                                       text=text) for j, (start, duration, text) in enumerate(sups)]
        made.append(MonoCut(id=cut_id, start=0.0, duration=rec.duration, channel=0, recording=rec,
                            supervisions=segments))
    path = folder / "cuts.jsonl.gz"
    CutSet.from_cuts(made).to_file(path)
    return path


@pytest.fixture(scope="module")
def dataset(cuts):
    return build_dataset(cuts)


def test_every_supervision_row_finds_its_own_key(dataset):
    keys = utterance_keys(dataset)
    assert list(dataset.utterances["text"]) == list(ROW)  # the rows follow the cuts' own order
    assert np.array_equal(keys.positions([keys.key(i) for i in range(len(ROW))]), np.arange(len(ROW)))


KEYS = {
    "the second supervision of a line": (ReviewKey("cuts.jsonl.gz", 1, "c0.wav", 0.7), ROW["second part"]),
    "the first supervision of a line": (ReviewKey("cuts.jsonl.gz", 1, "c0.wav", 0.0), ROW["first part"]),
    "a supervision listed after a later one": (ReviewKey("cuts.jsonl.gz", 2, "c1.wav", 0.6), ROW["middle one"]),
    "an offset between two supervisions": (ReviewKey("cuts.jsonl.gz", 1, "c0.wav", 0.5), -1),
    "an offset past the last supervision": (ReviewKey("cuts.jsonl.gz", 2, "c1.wav", 1.9), -1),
    "the right offset on another audio file": (ReviewKey("cuts.jsonl.gz", 1, "c1.wav", 0.7), -1),
    "the right offset on another line": (ReviewKey("cuts.jsonl.gz", 2, "c0.wav", 0.7), -1),
}


@pytest.mark.parametrize("key, row", KEYS.values(), ids=KEYS.keys())
def test_a_key_finds_the_row_with_its_line_audio_and_offset(dataset, key, row):
    assert utterance_keys(dataset).positions([key]).tolist() == [row]


REVIEWED = {
    "only a second supervision": ["second part"],
    "only a supervision listed after a later one": ["early one"],
    "every supervision of both cuts": list(ROW),
}


@pytest.mark.parametrize("texts", REVIEWED.values(), ids=REVIEWED.keys())
def test_reviews_of_any_supervision_are_current_not_stale(tmp_path, dataset, texts):
    path = tmp_path / "r.sqlite"
    store = open_reviews(dataset, path)
    for text in texts:
        assert review_post_route(dataset, store, ROW[text], {"status": "drop"})[0] == 200
    aligned = aligned_reviews(dataset, store)
    assert aligned.stale == 0 and sorted(aligned.positions.tolist()) == sorted(ROW[t] for t in texts)
    unreviewed = query_for(dataset, store, "{review} is null").select("{review} is null").tolist()
    assert unreviewed == [i for t, i in ROW.items() if t not in texts]
    assert reviews_list_route(dataset, store, {})[1]["stale"] == 0
    store.close()
    open_reviews(dataset, path).close()  # not refused at the next start as another manifest's file


def test_export_apply_reviews_drops_a_reviewed_second_supervision(tmp_path, cuts, dataset):
    reviews = tmp_path / "r.sqlite"
    store = open_reviews(dataset, reviews)
    assert review_post_route(dataset, store, ROW["second part"], {"status": "drop"})[0] == 200
    store.close()
    out = tmp_path / "clean.jsonl"
    r = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(cuts), "--apply-reviews", "--reviews",
                        str(reviews), "-o", str(out), "--no-cache"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    kept = {cut.id: [s.text for s in cut.supervisions] for cut in CutSet.from_file(out)}
    assert kept == {"c0": ["first part"], "c1": ["late one", "early one", "middle one"]}
    applied = json.loads(Path(f"{out}.changelog.json").read_text())["reviews"]
    assert applied["stale"] == 0


def test_two_supervisions_starting_together_are_refused_a_review_that_would_land_on_the_other(tmp_path):
    # overlapping speakers: one key for both; a review of the second was read back as the first's
    t = np.arange(2 * SR) / SR
    sf.write(tmp_path / "o.wav", (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), SR)
    rec = Recording.from_file(tmp_path / "o.wav", recording_id="o", relative_path_depth=1)
    sups = [SupervisionSegment(id=f"o{j}", recording_id="o", start=start, duration=duration, text=text, speaker=spk)
            for j, (start, duration, text, spk) in enumerate([(0.0, 1.0, "hello there", "A"), (0.0, 0.8, "hi", "B"),
                                                             (1.0, 0.9, "bye now", "A")])]
    path = tmp_path / "cuts.jsonl.gz"
    CutSet.from_cuts([MonoCut(id="o", start=0.0, duration=rec.duration, channel=0, recording=rec,
                              supervisions=sups)]).to_file(path)
    dataset = build_dataset(path)
    keys = utterance_keys(dataset)
    assert [keys.shared(i) for i in range(3)] == [True, True, False]
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    try:
        for row in (0, 1):
            code, payload = review_post_route(dataset, store, row, {"status": "drop"})
            assert code == 409 and "cannot be reviewed on its own" in payload["error"], payload
            assert "{supervision_id}" in payload["error"]
        assert review_post_route(dataset, store, 2, {"status": "drop"})[0] == 200
        assert [r.key.offset for r in store.reviews()] == [1.0]  # nothing saved for the two
    finally:
        store.close()
