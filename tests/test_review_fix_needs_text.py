"""A "fix" needs its corrected transcript: an empty or blank one is refused like a missing one, by
the store, the HTTP API of a real `sde` server and the inspector's review panel in Chromium, and
nothing is stored. A fix saved empty by an older sde (or typed into the file by hand) is not
applied by `sde export --apply-reviews`: the line keeps its transcript, and the summary and the
changelog say which fix was skipped and how to repair it. Real servers, the real CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sde.dataset import build_dataset
from sde.reviews import InvalidReview, open_reviews, review_post_route, utterance_keys
from tests.browser_kit import ROOT, TIMEOUT_MS, Watch, sde_server, shows_utterance_reviewed
from tests.server_kit import json_call

ROWS = [
    {"audio_filepath": "a.wav", "duration": 1.0, "text": "the cat sat"},
    {"audio_filepath": "b.wav", "duration": 2.0, "text": "a dog barked"},
    {"audio_filepath": "c.wav", "duration": 3.0, "text": "hello world"},
]
BLANKS = {"empty": "", "spaces": "   ", "unicode spaces": "\u00a0\u3000"}


@pytest.fixture
def manifest(write_manifest) -> Path:
    return write_manifest(ROWS, "m.json")




def export(manifest: Path, reviews: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", "export", str(manifest), "--apply-reviews",
                           "--reviews", str(reviews), "-o", str(out), "--no-cache"], cwd=manifest.parent,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def refusal(message: str) -> None:
    """The refusal names the fix: give the corrected transcript, or mark the utterance drop."""
    assert 'status "fix" needs the corrected transcript' in message, message
    assert "drop" in message and "Traceback" not in message, message


@pytest.mark.parametrize("text", BLANKS.values(), ids=BLANKS.keys())
def test_the_store_refuses_a_blank_fix_and_stores_nothing(manifest, tmp_path, text):
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    key = utterance_keys(dataset).key(0)
    with pytest.raises(InvalidReview) as caught:
        store.set_review(key, "fix", text=text)
    refusal(str(caught.value))
    assert store.get(key).version == 0 and store.history(key) == []
    code, payload = review_post_route(dataset, store, 0, {"status": "fix", "text": text})
    assert code == 400 and set(payload) == {"error"}
    refusal(payload["error"])
    store.close()


def test_the_api_refuses_a_blank_fix_like_a_missing_one(manifest, tmp_path):
    reviews = tmp_path / "r.sqlite"
    with sde_server(str(manifest), "--reviews", str(reviews)) as url:
        review = f"{url}/api/utterances/1/review"
        missing = json_call(review, {"status": "fix"})
        assert missing[0] == 400
        refusal(missing[1]["error"])
        for text in BLANKS.values():
            code, payload = json_call(review, {"status": "fix", "text": text})
            assert code == 400, (text, payload)
            refusal(payload["error"])
        code, stored = json_call(review)
        assert code == 200 and (stored["status"], stored["version"], stored["text"]) == (None, 0, None)
        # a real correction still saves, and a blank one after it changes nothing
        assert json_call(review, {"status": "fix", "text": "a dog barks", "version": 0})[0] == 200
        assert json_call(review, {"status": "fix", "text": " ", "version": 1})[0] == 400
        code, stored = json_call(review)
        assert (stored["status"], stored["text"], stored["version"]) == ("fix", "a dog barks", 1)
        assert json_call(f"{url}/api/reviews")[1]["total"] == 1


@pytest.mark.browser
def test_the_review_panel_shows_the_refusal_of_a_blank_fix(browser, manifest, tmp_path):
    reviews = tmp_path / "r.sqlite"
    uid = 2
    with sde_server(str(manifest), "--reviews", str(reviews)) as url:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        # the page asks for a.wav etc., which this manifest does not have: those 404s are expected
        watch = Watch(page, url, allow_console=("Failed to load resource", "/audio"))
        try:
            page.goto(f"{url}/utterance/{uid}")
            page.wait_for_function(shows_utterance_reviewed(uid))
            assert page.input_value("#review-text") == "hello world"
            page.fill("#review-text", "  ")
            page.click("#review-fix")
            page.wait_for_function("(document.querySelector('#review-status') || {}).innerText"
                                   ".includes('needs the corrected transcript')")
            said = page.inner_text("#review-status")
            refusal(said)
            assert "saved · version" not in said
            assert page.locator("#review-status .text-danger").count() == 1
            watch.check()
        finally:
            ctx.close()
        code, stored = json_call(f"{url}/api/utterances/{uid}/review")
        assert code == 200 and (stored["status"], stored["version"]) == (None, 0)


def test_export_does_not_apply_a_fix_stored_empty_by_an_older_sde(manifest, tmp_path):
    """A fix whose text an older sde stored empty: the line keeps its transcript (never "text": ""),
    and the printed summary and the changelog name the fix that was not applied and the repair."""
    reviews = tmp_path / "r.sqlite"
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, reviews)
    assert review_post_route(dataset, store, 0, {"status": "fix", "text": "the cat sits"})[0] == 200
    assert review_post_route(dataset, store, 1, {"status": "fix", "text": "placeholder", "tags": ["noise"]})[0] == 200
    assert review_post_route(dataset, store, 2, {"status": "drop"})[0] == 200
    store.close()
    with sqlite3.connect(reviews) as con:  # what an older sde stored for a fix with the box cleared
        con.execute("UPDATE reviews SET text = '' WHERE line = 2")
    con.close()
    out = tmp_path / "clean.json"
    r = export(manifest, reviews, out)
    assert r.returncode == 0 and "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["text"] for line in lines] == ["the cat sits", "a dog barked"]
    assert "text_original" not in lines[1] and lines[1]["review_tags"] == ["noise"]
    log = json.loads(Path(f"{out}.changelog.json").read_text())
    applied = log["reviews"]
    assert (applied["fixed"], applied["dropped"], applied["fixes_not_applied"]) == (1, 1, 1)
    assert [(c["line"], c["review"]) for c in applied["changes"]] == [(1, "fix"), (2, "keep"), (3, "drop")]
    assert not any(c.get("text") == "" for c in applied["changes"])
    noted = [n for n in log["notes"] if "not applied" in n]
    assert len(noted) == 1 and "m.json line 2" in noted[0] and "corrected transcript" in noted[0]
    assert "drop" in noted[0]
    said = r.stdout + r.stderr  # the summary and the reviews file's warning, as printed
    assert "1 fix not applied" in said and "note: " + noted[0] in said, said
    assert 'status "fix" has an empty corrected text: read as "keep"' in said, said
