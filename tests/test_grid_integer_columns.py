"""The Samples grid shows whole-number audio metrics as integers: `sample_rate` "16,000" and
`channels` "1" (QA: "16,000.00" and "1.00"), while real floats keep their decimals (duration
"1.25"). The format is chosen with the grid's columns (sde.web.grid.column_defs) and applied in the
browser (a d3 valueFormatter of dash-ag-grid): so a browser reads the cells, of the real CLI's
server with the audio measured (--estimate-audio-metrics)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests.browser_kit import api, first_cell, sde_server, sized_page


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whole")
    for name, sr, channels in (("a.wav", 16_000, 1), ("b.wav", 8_000, 2)):
        x = 0.2 * np.sin(2 * np.pi * 220 * np.arange(int(1.25 * sr)) / sr)
        sf.write(folder / name, x if channels == 1 else np.stack([x, x], 1), sr)
    rows = [{"audio_filepath": "a.wav", "duration": 1.25, "text": "one"},
            {"audio_filepath": "b.wav", "duration": 1.25, "text": "two"}]
    (folder / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with sde_server(str(folder / "m.json"), "--estimate-audio-metrics", cwd=folder) as url:
        yield url


def test_whole_number_metrics_show_as_integers_and_floats_keep_decimals(browser, measured):
    row = api(measured, "/api/utterances", sort="id")["rows"][0]
    assert (row["sample_rate"], row["channels"], row["duration"]) == (16000, 1, 1.25)  # floats in the table
    with sized_page(browser, measured, 1400) as page:
        page.goto(measured + "/samples?sort=id&cols=id,duration,sample_rate,channels,audio_duration")
        assert first_cell(page, "sample_rate") == "16,000"
        assert first_cell(page, "channels") == "1"
        assert first_cell(page, "duration") == "1.25"
        assert first_cell(page, "audio_duration") == "1.25"
