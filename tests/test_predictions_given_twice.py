"""`--predictions` given twice: click kept the last of a single-valued option and the first
model's predictions went unscored with exit 0; then a second file was refused. Now every command
that takes it merges each file as a hypothesis of its own (tests/test_predictions_several.py has
the rest), and reading one model's output as the manifest still compares two models (the real
CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_predictions_several import _sde, models


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    return models(tmp_path, "manifest_a.json", "manifest_b.json")  # model a misses 1 word of 10, b 4


@pytest.mark.parametrize("command", [["stats"], ["index"], ["export", "-o", "kept.json"]])
def test_a_second_predictions_file_is_merged_not_refused(files, command):
    r = _sde(*command, "manifest.json", "--predictions", "manifest_a.json", "--predictions", "manifest_b.json",
             "--cache-dir", "cache", cwd=files)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "Error:" not in r.stderr, r.stderr[-2000:]


def test_both_models_are_scored_whichever_way_they_are_given(files):
    for args, a in ((["manifest.json", "--predictions", "manifest_a.json", "--predictions", "manifest_b.json"],
                     "pred_text_manifest_a"),  # several files: each named by its own
                    (["manifest_a.json", "--predictions", "manifest_b.json"], "pred_text")):  # one model's output as the manifest
        ran = _sde("stats", *args, "--json", "--no-cache", cwd=files)
        assert ran.returncode == 0, ran.stderr[-2000:]
        scored = json.loads(ran.stdout)["hypotheses"]
        assert sorted(scored) == [a, "pred_text_manifest_b"]
        assert scored[a]["wer"] == pytest.approx(10.0, abs=0.01)
        assert scored["pred_text_manifest_b"]["wer"] == pytest.approx(40.0, abs=0.01)


def test_one_predictions_file_is_still_merged_as_pred_text(files):
    r = _sde("stats", "manifest.json", "--predictions", "manifest_b.json", "--json", "--no-cache", cwd=files)
    assert r.returncode == 0, r.stderr[-2000:]
    scored = json.loads(r.stdout)["hypotheses"]
    assert list(scored) == ["pred_text"] and scored["pred_text"]["wer"] == pytest.approx(40.0, abs=0.01)
