"""A field of /api/reviews' rows written bare in a filter (`status = "drop"`, `time > "2026"`)
suggests the review column that holds it, at its position, as the braced `{status}` does; before,
only the braced name was routed to the query over the review columns, and the bare one got a list
of columns and no hint. A bare known column (`wer > 20`) needs no hint: it is that column. Through
the query engine sde picks for a filter (sde.reviews.query_for over a real review store), the real
server and `sde export --filter`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf

from sde.dataset import build_dataset
from sde.query import QueryError
from sde.reviews import open_reviews, query_for, utterance_keys
from tests.test_audio_faults import SdeServer, assert_no_traceback

SR = 16000


def write_manifest(folder: Path, **extra: str) -> Path:
    sf.write(folder / "a.wav", np.zeros(SR, dtype=np.float32), SR, subtype="PCM_16")
    lines = [{"audio_filepath": "a.wav", "duration": 1.0, "text": f"the cat sat {i}",
              "pred_text": "the cat sat" if i % 2 else "a bat", **extra} for i in range(4)]
    path = folder / "m.json"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path)


@pytest.fixture()
def reviewed(manifest: Path, tmp_path: Path):
    """(dataset, its review store with utterance 1 dropped)."""
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, path=tmp_path / "reviews.sqlite")
    store.set_review(utterance_keys(dataset).key(1), "drop")
    yield dataset, store
    store.close()


@pytest.mark.parametrize("text, hint, position", [
    ('status = "drop"', "{review}", 0),
    ('Status = "drop"', "{review}", 0),
    ('time > "2026"', "{review_time}", 0),
    ('tags has "noise"', "{review_tags}", 0),
    ('note contains "hiss"', "{review_note}", 0),
    ('user = "ana"', "{review_user}", 0),
    ('{duration} > 0 && !(status = "drop")', "{review}", 20),
])
def test_a_bare_review_field_suggests_its_review_column_at_its_position(reviewed, text, hint, position):
    dataset, store = reviewed
    with pytest.raises(QueryError) as got:
        query_for(dataset, store, text).select(text)
    name = text[position:].split()[0].lstrip("!(")
    assert str(got.value).startswith(f'Unknown column "{name}" at character {position + 1}.'), str(got.value)
    assert f"Did you mean {hint}?" in str(got.value) and got.value.position == position, str(got.value)


@pytest.mark.parametrize("bare, braced", [
    ("wer > 20", "{wer} > 20"),
    ('text contains "sat 2"', '{text} contains "sat 2"'),
    ('review = "drop"', '{review} = "drop"'),
])
def test_a_bare_known_column_selects_what_the_braced_one_does(reviewed, bare, braced):
    dataset, store = reviewed
    selected = query_for(dataset, store, bare).select(bare).tolist()
    assert selected == query_for(dataset, store, braced).select(braced).tolist() and selected


def test_a_value_naming_a_review_field_is_no_column(reviewed):
    dataset, store = reviewed
    text = '{text} contains "time"'
    assert query_for(dataset, store, text) is dataset.utterance_query
    assert query_for(dataset, store, text).select(text).tolist() == []


def test_a_manifest_field_named_status_is_itself_written_bare(tmp_path):
    dataset = build_dataset(write_manifest(tmp_path, status="ok"))
    store = open_reviews(dataset, path=tmp_path / "reviews.sqlite")
    try:
        text = 'status = "ok"'
        assert query_for(dataset, store, text) is dataset.utterance_query  # no review columns built for it
        assert query_for(dataset, store, text).select(text).tolist() == [0, 1, 2, 3]
    finally:
        store.close()


def test_the_api_suggests_review_for_a_bare_status(manifest, tmp_path):
    with SdeServer(str(manifest), "--reviews", str(tmp_path / "reviews.sqlite")) as s:
        error = s.json("/api/utterances?filter=" + quote('status = "drop"'), 400)["error"]
        assert error.startswith('Unknown column "status" at character 1. Did you mean {review}?'), error
        assert s.json("/api/utterances?filter=" + quote("wer > 50"), 200)["total"] == 2
    assert_no_traceback(s)


def test_sde_export_suggests_review_for_a_bare_status(manifest, tmp_path, reviewed):
    r = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(manifest), "--reviews",
                        str(tmp_path / "reviews.sqlite"), "--filter", 'status = "drop"',
                        "-o", str(tmp_path / "kept.json")], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert 'Error: --filter: Unknown column "status" at character 1. Did you mean {review}?' in r.stderr, r.stderr
    assert not (tmp_path / "kept.json").exists()
