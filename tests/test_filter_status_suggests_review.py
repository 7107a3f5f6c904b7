"""A filter naming {status}, the field /api/reviews' rows give a review's keep/drop/fix, suggests
the column that holds it, {review}, through the real server and `sde export` (as {time} suggests
{review_time}). Before, the message listed the columns and named none (found by QA)."""

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
from sde.reviews import open_reviews, utterance_keys
from tests.test_audio_faults import SdeServer, assert_no_traceback

SR = 16000
HINT = "Did you mean {review}?"


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    sf.write(tmp_path / "a.wav", np.zeros(SR, dtype=np.float32), SR, subtype="PCM_16")
    lines = [{"audio_filepath": "a.wav", "duration": 1.0, "text": f"the cat sat {i}"} for i in range(4)]
    path = tmp_path / "m.json"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def test_the_api_suggests_review_for_a_filter_on_status(manifest, tmp_path):
    with SdeServer(str(manifest), "--reviews", str(tmp_path / "reviews.sqlite")) as s:
        code, _, raw = s.request("/api/utterances/1/review", "POST", {"Content-Type": "application/json"},
                                 json.dumps({"status": "drop"}).encode())
        assert code == 200, raw[:300]
        error = s.json("/api/utterances?filter=" + quote('{status} = "drop"'), 400)["error"]
        assert error.startswith('Unknown column "status" at character 2.') and HINT in error, error
        error = s.json("/api/utterances?filter=" + quote('{time} > "2026"'), 400)["error"]
        assert "Did you mean {review_time}?" in error, error
        # the suggestion is right: it selects the dropped utterance
        rows = s.json("/api/utterances?filter=" + quote('{review} = "drop"'), 200)["rows"]
        assert [r["id"] for r in rows] == [1]
    assert_no_traceback(s)


def test_sde_export_suggests_review_for_a_filter_on_status(manifest, tmp_path):
    reviews = tmp_path / "reviews.sqlite"
    store = open_reviews(build_dataset(manifest), path=reviews)
    try:
        store.set_review(utterance_keys(build_dataset(manifest)).key(1), "drop")
    finally:
        store.close()
    r = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(manifest), "--reviews", str(reviews),
                        "--filter", '{status} = "drop"', "-o", str(tmp_path / "kept.json")],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert 'Error: --filter: Unknown column "status" at character 2.' in r.stderr and HINT in r.stderr, r.stderr
    assert not (tmp_path / "kept.json").exists()
