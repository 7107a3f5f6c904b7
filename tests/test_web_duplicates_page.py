"""The Duplicates page over groups larger than what the API lists of them: a group lists at most
100 distinct transcripts (texts_total counts them all), and the page said "… and 97 other
transcripts" of a group with 147 more."""

from __future__ import annotations

import json

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from tests.browser_kit import dash_update, text_of


def test_a_group_of_more_transcripts_than_listed_counts_them_all(tmp_path):
    # one sentence spelt 150 ways (punctuation the normalised text drops): one group, 150 transcripts
    lines = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": "hello world" + "!" * (i + 1)} for i in range(150)]
    lines.append({"audio_filepath": "b.wav", "duration": 1.0, "text": "something else"})
    (tmp_path / "m.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    app = create_app(build_dataset(tmp_path / "m.json"), AppConfig(title="dups", audio_routes=False))
    out = dash_update(app.server.test_client(), app, "page-content.children",
                      {"url.pathname": "/duplicates", "url.search": "?kind=text"}, {"rendered.data": None})
    shown = text_of(out["page-content.children"])
    assert "… and 147 other transcripts" in shown, shown[:2000]
