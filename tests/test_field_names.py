"""Manifest fields named like the columns sde makes, through the real server (`sde M --reviews R`).

A field is kept as ``manifest_<name>`` (sde.manifest.model.GENERATED; each hypothesis's columns:
sde.dataset.computed_columns), so that sde's column of that name means what sde says it means. Before,
a single manifest's ``source`` field was taken for each line's file and sde could not start, a text
``speech_duration`` broke the Statistics page, ``duration_bucket`` replaced the duration buckets (and
their links), ``audio_exists`` was lost and ``review`` hid the reviews saved. A field whose name
holds ``}`` is written ``{x\\}y}`` in a filter (sde.filters.language.column_ref): before, the links
of its breakdown groups were syntax errors.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf

from sde.web.pages.breakdown import group_filter
from tests.test_audio_faults import SdeServer, assert_no_traceback
from tests.test_cache_safety import _router

SR = 16000
THEIRS = {"source": "librispeech", "audio_exists": "maybe", "duration_bucket": "long", "speech_duration": "n/a",
          "review": "keep", "dup_text_group": "g1", "ins_burst": "none"}



def odd_names(i: int) -> dict:
    """Fields whose names hold a brace or a backslash, which a filter's braces escape."""
    return {"x}y": i % 3, "a\\b": f"v{i % 2}", "{z}": i % 2 == 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("field_names")
    sf.write(folder / "a.wav", np.zeros(SR, dtype=np.float32), SR, subtype="PCM_16")
    lines = [json.dumps({"audio_filepath": "a.wav", "duration": 1.0 + (i % 3) * 10, "text": f"the cat sat {i}",
                         "pred_text": f"the cat sat {i % 4}", **THEIRS, **odd_names(i)}) for i in range(12)]
    (folder / "m.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with SdeServer(str(folder / "m.json"), "--reviews", str(folder / "reviews.jsonl")) as s:
        yield s, folder
    assert_no_traceback(s)


def test_sde_starts_and_keeps_each_field_as_manifest_name(server):
    s, _ = server
    row = s.json("/api/utterances/0", 200)
    for name, value in THEIRS.items():
        assert row[f"manifest_{name}"] == value, name
    assert row["audio_exists"] is True and "source" not in row and "review" not in row


def test_every_page_renders(server):
    s, _ = server
    for path in ("/", "/samples", "/errors", "/duplicates", "/tts"):
        layout = json.dumps(_router(s, path))
        assert "failed to render" not in layout, (path, layout[:500])


def test_the_duration_buckets_are_sdes_and_each_links_to_its_utterances(server):
    s, _ = server
    rows = s.json("/api/breakdown?by=duration_bucket", 200)["rows"]
    assert sorted(r["value"] for r in rows) != ["long"] and sum(r["utterances"] for r in rows) == 12
    assert s.json("/api/breakdown?by=manifest_duration_bucket", 200)["rows"][0]["value"] == "long"


def test_a_review_saved_is_what_review_selects(server):
    s, _ = server
    code, _, raw = s.request("/api/utterances/3/review", "POST", {"Content-Type": "application/json"},
                             json.dumps({"status": "drop"}).encode())
    assert code == 200, raw[:300]
    assert [r["id"] for r in s.json("/api/utterances?filter=" + quote('{review} = "drop"'), 200)["rows"]] == [3]
    assert s.json("/api/utterances?filter=" + quote('{manifest_review} = "keep"'), 200)["total"] == 12


def test_the_lines_export_as_they_are(server):
    s, folder = server
    code, _, body = s.get("/api/utterances.jsonl?filter=" + quote("{id} < 2"))
    assert code == 200
    assert body.decode().splitlines() == (folder / "m.json").read_text().splitlines()[:2]


@pytest.mark.parametrize("name, kind", list(zip(odd_names(0), ["number", "text", "bool"])))
def test_each_breakdown_group_of_a_field_named_with_braces_links_to_its_utterances(server, name, kind):
    s, _ = server
    rows = s.json("/api/breakdown?by=" + quote(name), 200)["rows"]
    assert len(rows) >= 2 and sum(r["utterances"] for r in rows) == 12
    for row in rows:
        q = group_filter(name, row["value"], kind)
        assert s.json("/api/utterances?filter=" + quote(q), 200)["total"] == row["utterances"], q
