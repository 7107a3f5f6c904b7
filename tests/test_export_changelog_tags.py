"""The export changelog records a review's tags: each changed line's entry has the tags (a list) that
the line got as `review_tags`, beside its note. Reviews saved through a real `sde` server's HTTP API,
exported with the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.browser_kit import ROOT, sde_server

ROWS = [
    {"audio_filepath": "a.wav", "duration": 1.0, "text": "the cat sat"},
    {"audio_filepath": "b.wav", "duration": 2.0, "text": "a dog barked"},
    {"audio_filepath": "c.wav", "duration": 3.0, "text": "hello world"},
    {"audio_filepath": "d.wav", "duration": 4.0, "text": "good morning"},
]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


def test_the_changelog_entry_of_a_line_has_its_review_tags(write_manifest, tmp_path):
    manifest = write_manifest(ROWS, "m.json")
    reviews = tmp_path / "r.sqlite"
    with sde_server(str(manifest), "--reviews", str(reviews)) as url:
        # "clean, ok" as typed in the panel's tags box: the words clean and ok
        post(f"{url}/api/utterances/0/review", {"status": "keep", "note": "sounds fine", "tags": ["clean", "ok"]})
        post(f"{url}/api/utterances/1/review", {"status": "fix", "text": "a dog barks", "tags": ["spelling"]})
        post(f"{url}/api/utterances/2/review", {"status": "drop", "note": "music", "tags": ["noise"]})
        post(f"{url}/api/utterances/3/review", {"status": "keep", "note": "no tags"})
    out = tmp_path / "clean.json"
    r = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(manifest), "--apply-reviews", "--reviews",
                        str(reviews), "-o", str(out), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w.get("review_tags") for w in written] == [["clean", "ok"], ["spelling"], None]
    changes = json.loads(Path(f"{out}.changelog.json").read_text())["reviews"]["changes"]
    assert changes == [
        {"source": "m.json", "line": 1, "audio_filepath": "a.wav", "review": "keep", "note": "sounds fine",
         "tags": ["clean", "ok"]},
        {"source": "m.json", "line": 2, "audio_filepath": "b.wav", "review": "fix", "text": "a dog barks",
         "tags": ["spelling"]},
        {"source": "m.json", "line": 3, "audio_filepath": "c.wav", "review": "drop", "note": "music",
         "tags": ["noise"]},
        {"source": "m.json", "line": 4, "audio_filepath": "d.wav", "review": "keep", "note": "no tags"},
    ]
