"""Every group of a breakdown links to exactly the utterances it counts, through the real server:
the lines without a value (`{f} is null`) as well as `""` (`{f} = ""`), for text, number and
boolean fields. Before, the group of lines without a value had no link (found by exploratory QA)."""

from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf

from sde.web.pages.breakdown import group_filter
from tests.test_audio_faults import SdeServer, assert_no_traceback

SR = 16000
# Per line i: the speaker, a number label and a boolean, each missing (no field or null) on some lines.
SPEAKERS = ["s1", "", None, "MISSING", "s2", "s1"]
ROOMS = [1, 2, None, "MISSING", 1, 2]
CLEAN = [True, False, None, "MISSING", True, True]
GAIN = [float("inf"), float("-inf"), float("nan"), "MISSING", 1.0, 2.5]  # json writes Infinity, NaN


def _line(i: int) -> dict:
    line = {"audio_filepath": "a.wav", "duration": 1.0, "text": f"the cat sat {i}", "pred_text": f"the cat {i % 3}"}
    for name, values in (("speaker", SPEAKERS), ("room", ROOMS), ("clean", CLEAN), ("gain", GAIN)):
        value = values[i % len(values)]
        if value != "MISSING":
            line[name] = value
    return line


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("group_links")
    sf.write(folder / "a.wav", np.zeros(SR, dtype=np.float32), SR, subtype="PCM_16")
    (folder / "m.json").write_text("".join(json.dumps(_line(i)) + "\n" for i in range(24)), encoding="utf-8")
    with SdeServer(str(folder / "m.json")) as s:
        yield s
    assert_no_traceback(s)


@pytest.mark.parametrize("field, kind, missing", [
    ("speaker", "text", 8),   # null and no field; "" is a group of its own
    ("room", "number", 8),
    ("clean", "text", 8),  # a boolean field with gaps is read as the text "true" / "false"
])
def test_each_group_links_to_the_utterances_it_counts(server, field, kind, missing):
    rows = server.json(f"/api/breakdown?by={field}&ci=0", 200)["rows"]
    assert sum(r["utterances"] for r in rows) == 24
    assert [r["utterances"] for r in rows if r["value"] is None] == [missing]
    for row in rows:
        q = group_filter(field, row["value"], kind)
        assert q is not None, row
        assert server.json("/api/utterances?filter=" + quote(q), 200)["total"] == row["utterances"], q


def test_an_empty_text_is_its_own_group():
    assert group_filter("speaker", "", "text") == '{speaker} = ""'
    assert group_filter("speaker", None, "text") == "{speaker} is null"


def test_the_bucket_of_missing_durations_has_no_link():
    assert group_filter("duration_bucket", None, None) is None


def test_infinite_values_are_groups_of_their_own_apart_from_the_missing_ones(server):
    # JSON has no infinity: the two are "inf" and "-inf" (as in the CSV), where all three were null
    rows = server.json("/api/breakdown?by=gain&ci=0", 200)["rows"]
    assert {json.dumps(r["value"]): r["utterances"] for r in rows} == {
        '"-inf"': 4, "1.0": 4, "2.5": 4, '"inf"': 4, "null": 8}
    for row in rows:
        value = float(row["value"]) if isinstance(row["value"], str) else row["value"]
        q = group_filter("gain", value, "number")
        assert server.json("/api/utterances?filter=" + quote(q), 200)["total"] == row["utterances"], q
