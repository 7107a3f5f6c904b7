"""The Rules page prints the `sde export` that replays it. Copied into a shell in another folder, it
must find the manifest, build the same columns (the server's data options: a rule may name a
normalised score) and read the same reviews (a rule may name a review column), and keep exactly
the lines the page's "Download kept manifest" gives."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from flask import Flask

from sde.dataset import DatasetOptions, build_dataset
from sde.export import ManifestLines
from sde.reviews import open_reviews, utterance_keys
from sde.web import reviewing
from sde.web.pages.rules import export_command, view_state

REPO = Path(__file__).resolve().parents[1]
ROWS = [
    {"audio_filepath": "a0.wav", "duration": 1.0, "text": "Hello World", "pred_text": "hello world"},
    {"audio_filepath": "a1.wav", "duration": 2.0, "text": "the cat", "pred_text": "a dog"},
    {"audio_filepath": "a2.wav", "duration": 3.0, "text": "One Two", "pred_text": "one two"},
    {"audio_filepath": "a3.wav", "duration": 4.0, "text": "good day", "pred_text": "good day"},
]
RULES = [{"name": "normalised errors", "filter": "{wer_norm} > 50"}, {"name": "reviewed drop", "filter": '{review} = "drop"'}]


def test_the_printed_command_replays_the_page_from_another_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    manifest = data / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    dataset = build_dataset(manifest, DatasetOptions(normalize=("lower",)))
    store = open_reviews(dataset, data / "r.sqlite")
    store.set_review(utterance_keys(dataset).key(3), "drop")
    app = Flask("replay")
    reviewing.install(app, reviewing.Reviewing(store))
    try:
        with app.app_context():
            shown = view_state(dataset, {"rules": RULES}, "{duration} > 0.5")
            command = export_command(dataset, "{duration} > 0.5", [r["filter"] for r in RULES])
    finally:
        store.close()
    assert shown["command"] == command
    argv = shlex.split(command)
    assert argv[:3] == ["sde", "export", str(manifest)]
    assert argv[argv.index("--normalize") + 1] == "lower"
    assert argv[argv.index("--reviews") + 1] == str(data / "r.sqlite")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "rules.yaml").write_text("rules:\n" + "".join(
        f"  - name: {r['name']}\n    filter: {json.dumps(r['filter'])}\n" for r in RULES), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "SDE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "sde.cli", *argv[1:]], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # a1 (normalised WER 100) and a3 (reviewed drop) removed; a0 and a2 differ only in case
    expected = b"".join(line for _, line in ManifestLines(dataset).read(np.array([0, 2])))
    assert (elsewhere / "kept.json").read_bytes() == expected


def test_without_reviews_in_the_rules_no_reviews_option(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    dataset = build_dataset(manifest, DatasetOptions(pred_fields=("pred_text",)))
    command = shlex.split(export_command(dataset, None, ["{wer} > 50"]))
    assert command == ["sde", "export", str(manifest), "--pred-field", "pred_text", "--rules", "rules.yaml",
                       "-o", "kept.json", "--rejected", "dropped.json"]


def test_the_statistics_card_prints_the_apply_command_of_this_server(tmp_path):
    from sde.web.panels.review import apply_command, summary_card

    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    dataset = build_dataset(manifest, DatasetOptions(normalize=("lower",)))
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    app = Flask("card")
    reviewing.install(app, reviewing.Reviewing(store))
    try:
        with app.app_context():
            card = str(summary_card(dataset))
        command = apply_command(dataset, store.path)
    finally:
        store.close()
    assert shlex.split(command) == ["sde", "export", str(manifest), "--normalize", "lower", "--reviews",
                                    str(tmp_path / "r.sqlite"), "--apply-reviews", "-o", "clean.json"]
    assert "MANIFEST" not in card and str(manifest) in card


def test_shards_are_named_where_they_are(tmp_path):
    for i in range(10):
        (tmp_path / f"m_{i}.json").write_text(json.dumps({**ROWS[0], "audio_filepath": f"a{i}.wav"}) + "\n")
    few = build_dataset([str(tmp_path / "m_0.json"), str(tmp_path / "m_1.json")])
    assert shlex.split(export_command(few, None))[2:4] == [str(tmp_path / "m_0.json"), str(tmp_path / "m_1.json")]
    many = build_dataset(str(tmp_path / "m__OP_0..9_CL_.json"))
    assert shlex.split(export_command(many, None))[2] == str(tmp_path / "m__OP_0..9_CL_.json")
