"""`sde export` on a build without --vad, with a filter or drop rule naming a column only --vad
makes: an error naming the rule, the column and --vad, and nothing written. Before, a
speech-activity column was an "Unknown column" that did not say how to get it, and a rule on the
audio duplicate groups (made from the audio hashes --vad measures) matched nothing: the export
silently kept every line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROWS = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": f"line {i}"} for i in range(3)]

# (what names the column, how it is named on the command line, column named in the error)
NEEDS_VAD = [
    ("rule on speech ratio", ["--rules", "rules.yaml"], "{speech_ratio} < 0.5", "rule 'the rule' (rules.yaml:2)",
     "{speech_ratio}"),
    ("rule on leading silence", ["--rules", "rules.yaml"], "{leading_silence} > 1", "rule 'the rule'",
     "{leading_silence}"),
    ("rule on duplicate audio", ["--rules", "rules.yaml"], "{dup_audio_group} is not null", "rule 'the rule'",
     "{dup_audio_group}"),
    ("filter on loudness", ["--filter"], "{lufs} < -40", "--filter", "{lufs}"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("novad")
    (d / "m.json").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return d


def export(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "sde.cli", "export", "m.json", "--cache-dir", str(folder / "cache"),
                           *args, "-o", "kept.json"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("how, option, text, named, column", NEEDS_VAD, ids=[c[0] for c in NEEDS_VAD])
def test_a_column_only_vad_makes_is_an_error_naming_rule_column_and_option(folder, how, option, text, named, column):
    (folder / "rules.yaml").write_text(f"rules:\n  - name: the rule\n    filter: {json.dumps(text)}\n")
    (folder / "kept.json").unlink(missing_ok=True)
    done = export(folder, *option, *([] if option[0] == "--rules" else [text]))
    assert done.returncode != 0, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert named in error and column in error and "--vad" in error, error
    assert not (folder / "kept.json").exists()


def test_a_manifest_field_of_that_name_is_pointed_to(folder):
    # sde keeps a manifest's own speech_ratio as manifest_speech_ratio: the error says so, and that name works
    own = folder / "own"
    own.mkdir()
    rows = [{**r, "speech_ratio": ratio} for r, ratio in zip(ROWS, (0.9, 0.2, 0.8))]
    (own / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    refused = export(own, "--filter", "{speech_ratio} > 0.5")
    assert refused.returncode != 0 and "--vad" in refused.stderr and "{manifest_speech_ratio}" in refused.stderr
    done = export(own, "--filter", "{manifest_speech_ratio} > 0.5")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["text"] for line in (own / "kept.json").read_text().splitlines()] == ["line 0", "line 2"]
