"""Predictions for a manifest without any: `sde stats/serve MANIFEST --model M`, cached, and the UI job."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sde.cli import cli
from sde.dataset import build_dataset
from sde.nemo.jobs import predictions_for, transcribe_dataset
from tests.nemo.speech_kit import speech_rows, write_jsonl

pytestmark = pytest.mark.nemo


@pytest.fixture
def plain_manifest(audio_dir, tmp_path) -> Path:
    """Speech without predictions, two of the lines segments of one longer file."""
    return write_jsonl(tmp_path / "plain.json", speech_rows(audio_dir, tmp_path)[:4])


def test_transcribed_dataset_is_scored_and_cached(plain_manifest, tiny_nemo, tmp_path):
    ds = build_dataset(plain_manifest, workers=1)
    assert ds.hypotheses == []
    calls: list[tuple[int, int]] = []
    scored = transcribe_dataset(ds, str(tiny_nemo), device="cpu", cache_dir=tmp_path / "c",
                                on_progress=lambda done, total: calls.append((done, total)))
    assert [h.field for h in scored.hypotheses] == ["pred_text"]
    assert calls and calls[-1] == (4, 4)
    u = scored.utterances
    assert u["pred_text"].map(type).eq(str).all() and (u["wer"] >= 0).all()
    assert scored.summary()["hypotheses"]["pred_text"]["wer"] is not None
    # Second time: read back from the cache, the model is not run (no progress reported).
    again: list = []
    preds = predictions_for(ds, str(tiny_nemo), device="cpu", cache_dir=tmp_path / "c",
                            on_progress=lambda done, total: again.append(done))
    assert again == [] and preds == u["pred_text"].tolist()
    # ... and the manifest's folder holds nothing new.
    assert sorted(p.name for p in plain_manifest.parent.iterdir() if p.is_file()) == ["plain.json"]


def test_predictions_kept_in_a_read_only_cache_are_read_and_nothing_is_written(plain_manifest, tiny_nemo,
                                                                                 tmp_path):
    # a read-only cache folder (a batch job's, mounted read-only) was unusable: transcribed again
    import shutil

    from tests.mount_kit import read_only_view
    from tests.test_cache_read_only import _listing

    ds = build_dataset(plain_manifest, workers=1)
    cache = tmp_path / "c"
    cache.mkdir(mode=0o700)
    first = predictions_for(ds, str(tiny_nemo), device="cpu", cache_dir=cache)
    other_model = shutil.copy(tiny_nemo, tmp_path / "other.nemo")
    with read_only_view(cache, tmp_path / "view") as view:
        before = _listing(view)
        ran: dict[str, list[int]] = {"kept": [], "other": []}
        said: list[str] = []
        kept = predictions_for(ds, str(tiny_nemo), device="cpu", cache_dir=view, warn=said.append,
                               on_progress=lambda done, total: ran["kept"].append(done))
        other = predictions_for(ds, str(other_model), device="cpu", cache_dir=view, warn=said.append,
                                on_progress=lambda done, total: ran["other"].append(done))
        after = _listing(view)
    assert kept == first and ran["kept"] == []  # read back: the model did not run
    assert other == first and ran["other"]  # not there: transcribed, kept nowhere
    assert said == [] and after == before


def test_a_second_models_predictions_push_out_the_first_only_beyond_the_limit(plain_manifest, tiny_nemo, tmp_path,
                                                                            monkeypatch):
    # Before: the predictions store kept 1 GiB (~15M utterances' predictions) and removed the
    # entry just stored beyond it; a second model's predictions pushed out the first's.
    import shutil

    ds = build_dataset(plain_manifest, workers=1)
    models = [shutil.copy(tiny_nemo, tmp_path / f"m{i}.nemo") for i in (1, 2)]
    monkeypatch.setenv("SDE_CACHE_SIZE", "1B")  # less than one model's predictions

    def predictions(model, warnings: list[str]) -> tuple[list[str], bool]:
        ran: list[int] = []
        preds = predictions_for(ds, str(model), device="cpu", cache_dir=tmp_path / "c", warn=warnings.append,
                                on_progress=lambda done, total: ran.append(done))
        return preds, bool(ran)

    said: list[str] = []
    first, ran = predictions(models[0], said)
    assert ran and said == []
    assert predictions(models[0], said) == (first, False)  # over the limit, kept: read back
    _, ran = predictions(models[1], said)
    assert ran and len(said) == 1 and "removed the cached predictions of plain.json by m1.nemo" in said[0]
    assert predictions(models[1], said)[1] is False
    assert predictions(models[0], said)[1] is True  # removed: transcribed again


def test_stats_with_model_transcribes_when_there_are_no_predictions(plain_manifest, tiny_nemo, tmp_path):
    args = ["stats", str(plain_manifest), "--model", str(tiny_nemo), "--json", "--cache-dir", str(tmp_path / "c")]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "transcribing with" in first.stderr
    summary = json.loads(first.stdout)
    assert list(summary["hypotheses"]) == ["pred_text"]
    second = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert json.loads(second.stdout) == summary


def test_missing_model_file_serves_statistics_only(plain_manifest, tmp_path):
    r = CliRunner().invoke(cli, ["stats", str(plain_manifest), "--model", str(tmp_path / "nope.nemo"), "--json",
                                 "--no-cache"], catch_exceptions=False)
    assert r.exit_code == 0
    assert "could not transcribe" in r.stderr and "nope.nemo" in r.stderr
    assert json.loads(r.stdout)["hypotheses"] == {}


@pytest.mark.browser
def test_ui_transcribe_job_end_to_end(plain_manifest, tiny_nemo, tmp_path):
    """Serve a manifest with no predictions; in the browser, run "Transcribe with NeMo" with the tiny
    model; the page reloads with the recognition numbers and the Errors page appears."""
    from playwright.sync_api import sync_playwright

    proc = subprocess.Popen(
        [sys.executable, "-m", "sde.cli", str(plain_manifest), "--port", "0", "--cache-dir", str(tmp_path / "c"),
         "--model", str(tmp_path / "not-here.nemo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.time() + 120
        while time.time() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            url = m.group(1) if m else None
        assert url, "the server did not print its URL"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(url + "/")
            page.wait_for_selector("#transcribe-start")
            assert page.locator("#nav-errors").count() == 0
            page.fill("#transcribe-model", str(tiny_nemo))
            page.select_option("#transcribe-device", "cpu")
            page.click("#transcribe-start")
            # The job finishes, the predictions are scored in the server and the page reloads.
            page.wait_for_selector("#nav-errors", timeout=120_000)
            page.wait_for_selector("text=Recognition")
            page.wait_for_selector("#hist-wer .main-svg")  # the new per-utterance WER histogram
            Path("tests/output/screenshots").mkdir(parents=True, exist_ok=True)
            page.screenshot(path="tests/output/screenshots/after-transcription.png", full_page=True)
            browser.close()
        import urllib.request

        summary = json.loads(urllib.request.urlopen(url + "/api/summary", timeout=10).read())
        assert list(summary["hypotheses"]) == ["pred_text"]
        assert not [e for e in errors if "favicon" not in e]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_model_labels_are_the_alphabet_to_check(plain_manifest, tiny_nemo, tmp_path):
    from sde.nemo.model import TranscribeError, model_alphabet
    from tests.conftest import LABELS

    assert model_alphabet(tiny_nemo) == "".join(LABELS)
    bogus = tmp_path / "bogus.nemo"
    bogus.write_text("not an archive")
    with pytest.raises(TranscribeError, match="bogus.nemo"):
        model_alphabet(bogus)
    r = CliRunner().invoke(cli, ["stats", str(plain_manifest), "--model", str(tiny_nemo), "--json",
                                 "--cache-dir", str(tmp_path / "c")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    check = json.loads(r.stdout)["alphabet_check"]
    assert check["allowed"] == "".join(LABELS) and check["utterances"] == 0
