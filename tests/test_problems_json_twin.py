"""The Problems page's JSON twin (/api/problems) carries every entry the page shows, with the
page's counts: the skipped lines, and the audio files not found at start (QA: the page listed
"1 audio file not found … missing.wav (manifest.json:3)" while /api/problems answered "total": 0,
"rows": []). And the page says "No problems" only when it lists none of any kind. Through the real
server (sde.web.serve): the JSON over HTTP, the page as the browser asks for it (a Dash callback)."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import soundfile as sf

from sde.audio_presence import with_audio_presence
from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from tests.browser_kit import by_id, dash_update, text_of
from tests.server_kit import served_port


class _Http:
    """What tests.browser_kit.dash_update asks of a client, over a real socket."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def post(self, path: str, json: dict):  # noqa: A002 - the name dash_update passes
        import json as js

        req = urllib.request.Request(self.base + path, data=js.dumps(json).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            status, body = r.status, r.read()
        return type("Answer", (), {"status_code": status, "get_json": lambda self: js.loads(body),
                                   "get_data": lambda self, as_text=False: body.decode()})()

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=60) as r:
            return json.loads(r.read())


def _served(folder, lines: list):
    sf.write(folder / "here.wav", np.zeros(1600, dtype="float32"), 16000)
    manifest = folder / "manifest.json"
    manifest.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    dataset = with_audio_presence(build_dataset(manifest), status=lambda _: None)
    return create_app(dataset, AppConfig(title="twin", audio_routes=False))


def _page_and_json(app):
    with served_port(app) as port:
        http = _Http(port)
        out = dash_update(http, app, "page-content.children", {"url.pathname": "/problems", "url.search": ""},
                          {"rendered.data": None})
        return out["page-content.children"], http.get_json("/api/problems")


HERE = {"audio_filepath": "here.wav", "duration": 0.1, "text": "here"}
GONE = {"audio_filepath": "gone.wav", "duration": 0.1, "text": "gone"}


def test_a_missing_audio_file_the_page_lists_is_in_its_json_twin(tmp_path):
    page, twin = _page_and_json(_served(tmp_path, [HERE, HERE, GONE, GONE]))
    shown = text_of(by_id(page, "problems-missing-audio"))
    gone = str(tmp_path / "gone.wav")
    assert "1 audio file not found (2 utterances)" in shown and f"{gone} (manifest.json:3)" in shown
    assert twin["audio_missing_files"] == 1 and twin["audio_missing"] == 2
    assert twin["audio_missing_listed"] == [{"file": "manifest.json", "line": 3, "audio_path": gone,
                                             "message": f"manifest.json:3: audio file not found: {gone}"}]
    assert twin["audio_missing_more"] == 0 and twin["audio_missing_filter"] == "{audio_exists} = false"
    assert twin["total"] == 0 and twin["rows"] == [] and twin["loaded"] == 4  # no line was skipped
    # the page does not say "No problems" right under the problem it lists
    note = text_of(by_id(page, "problems-empty"))
    assert "No problems" not in note and note.startswith("No lines skipped: all 4 lines loaded")


def test_skipped_lines_and_missing_audio_come_together(tmp_path):
    page, twin = _page_and_json(_served(tmp_path, [HERE, '{"audio_filepath": "x.wav", "duration": -3, "text": "a"}',
                                                   GONE]))
    assert twin["total"] == twin["skipped"] == 1 and twin["rows"][0]["line"] == 2
    assert twin["audio_missing_files"] == 1 and twin["audio_missing_listed"][0]["line"] == 3
    shown = text_of(page)
    assert "1 line skipped" in shown and "1 audio file not found" in shown


def test_no_problem_of_any_kind_still_says_no_problems(tmp_path):
    page, twin = _page_and_json(_served(tmp_path, [HERE, HERE]))
    assert text_of(by_id(page, "problems-empty")) == "No problems: all 2 lines loaded."
    assert twin["audio_missing"] == twin["audio_missing_files"] == 0 and twin["audio_missing_listed"] == []
    assert twin["total"] == 0 and twin["warnings"] == [] and twin["warnings_total"] == 0
