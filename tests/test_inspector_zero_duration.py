"""A line of `"duration": 0`: sde's measures take the empty segment it names, while the inspector's
player reads the file from the offset to its end, as NeMo's audio loader does. A reviewer heard
speech on a line every measure called silent, with nothing said (QA): the inspector now says so."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from tests.browser_kit import by_id, dash_update, text_of


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zero")
    sr = 16_000
    sf.write(folder / "a.wav", 0.2 * np.sin(2 * np.pi * 220 * np.arange(2 * sr) / sr), sr)
    rows = [{"audio_filepath": "a.wav", "duration": 0, "text": "zero length"},
            {"audio_filepath": "a.wav", "duration": 2.0, "text": "two seconds"}]
    (folder / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    app = create_app(build_dataset(folder / "m.json"), AppConfig(title="zero", audio_routes=True))
    return app, app.server.test_client()


def inspector(served, uid: int):
    app, client = served
    out = dash_update(client, app, "page-content.children", {"url.pathname": f"/utterance/{uid}", "url.search": ""},
                      {"rendered.data": None})
    return out["page-content.children"]


def test_a_zero_duration_line_says_what_its_player_plays(served):
    note = text_of(by_id(inspector(served, 0), "utt-zero-duration"))
    assert "duration 0" in note and "to its end" in note and "real duration" in note
    _, client = served
    played = client.get("/audio/0.wav")  # the whole file, as the note says
    assert played.status_code == 200
    assert sf.info(io.BytesIO(played.data)).duration == pytest.approx(2.0, abs=1e-3)


def test_a_line_with_its_duration_has_no_such_note(served):
    page = inspector(served, 1)
    assert "two seconds" in text_of(page) and "duration 0" not in text_of(page)
