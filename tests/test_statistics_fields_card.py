"""The Statistics page's Fields card lists the manifest's own categorical fields; the columns sde
computed (duration_mismatch of the audio metrics, empty_reference of the transcript checks) come
apart, said to be computed (QA: they were listed as if they were manifest fields). Through the real
server: the page as the browser asks for it (a Dash callback, over HTTP)."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from sde.audio_quality import with_measured_audio
from sde.dataset import build_dataset
from sde.quality.apply import ensure_quality_columns
from sde.web.app import AppConfig, create_app
from tests.browser_kit import by_id, components, dash_update, prop, text_of
from tests.server_kit import served_port
from tests.test_problems_json_twin import _Http


def _class_of(node) -> str:
    return prop(node, "className") or ""


def test_the_fields_card_tells_manifest_fields_from_computed_columns(tmp_path):
    sr = 16_000
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)
    sf.write(tmp_path / "a.wav", tone, sr)
    rows = [{"audio_filepath": "a.wav", "duration": 1.0, "text": "one two", "speaker": "anna"},
            {"audio_filepath": "a.wav", "duration": 1.0, "text": "three four", "speaker": "ben"},
            {"audio_filepath": "a.wav", "duration": 3.0, "text": "", "speaker": "anna"},  # mismatched, empty
            {"audio_filepath": "a.wav", "duration": 1.0, "text": "five six", "speaker": "ben"}]
    (tmp_path / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = with_measured_audio(build_dataset(tmp_path / "m.json"), workers=1)
    ensure_quality_columns(dataset, ("suspicious",))
    assert dataset.utterances["duration_mismatch"].tolist() == [False, False, True, False]
    assert dataset.utterances["empty_reference"].any()
    app = create_app(dataset, AppConfig(title="fields", audio_routes=False))
    with served_port(app) as port:
        page = dash_update(_Http(port), app, "page-content.children", {"url.pathname": "/", "url.search": ""},
                           {"rendered.data": None})["page-content.children"]
    card = by_id(page, "stats-fields")
    items = [c for c in components(card) if "stat-field-" in _class_of(c) and "stat-field-count" not in _class_of(c)]
    manifest = {text_of(prop(c, "children")[0]) for c in items if "stat-field-manifest" in _class_of(c)}
    computed = {text_of(prop(c, "children")[0]) for c in items if "stat-field-computed" in _class_of(c)}
    assert manifest == {"speaker"}
    assert {"duration_mismatch", "empty_reference"} <= computed and "speaker" not in computed
    assert "Computed by sde (not manifest fields)" in text_of(by_id(card, "stats-fields-computed"))
    assert text_of(by_id(card, "stat-field-speaker")) == "2"
