"""The command line: exit codes 0/1/2 and the messages users see."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from sde.cli import cli

ROWS = [
    {"audio_filepath": "a.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the bat sat"},
    {"audio_filepath": "b.wav", "duration": 1.0, "text": "hello world", "pred_text": "hello world"},
]


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_stats_json(write_manifest, tmp_path):
    m = write_manifest(ROWS)
    r = run("stats", str(m), "--json", "--cache-dir", str(tmp_path / "c"))
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["utterances"] == 2
    assert s["hypotheses"]["pred_text"]["wer"] == 20.0
    assert {"utterances", "hours", "vocabulary_size", "alphabet_size", "alphabet", "hypotheses",
            "skipped_lines"} <= set(s)


def test_stats_table(write_manifest, tmp_path):
    r = run("stats", str(write_manifest(ROWS)), "--no-cache")
    assert r.exit_code == 0
    assert "utterances       2" in r.stdout and "pred_text" in r.stdout and "20.00" in r.stdout


def test_missing_manifest_is_exit_1_with_the_path(tmp_path):
    r = run("stats", str(tmp_path / "nope.json"), "--no-cache")
    assert r.exit_code == 1
    assert "nope.json" in r.stderr and "Traceback" not in r.output


def test_strict_names_file_and_line(write_manifest):
    m = write_manifest([ROWS[0], '{"audio_filepath": "x.wav", "text": "no duration"}'])
    r = run("stats", str(m), "--strict", "--no-cache")
    assert r.exit_code == 1
    assert 'manifest.json:2: missing field "duration"' in r.stderr


def test_lenient_counts_skipped_lines(write_manifest):
    m = write_manifest([ROWS[0], "{not json", ROWS[1]])
    r = run("stats", str(m), "--json", "--no-cache")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["skipped_lines"] == 1


def test_usage_errors_exit_2(write_manifest):
    m = write_manifest(ROWS)
    assert run("stats", str(m), "--bogus").exit_code == 2
    r = run("stats", str(m), "--normalize", "shout", "--no-cache")
    assert r.exit_code == 2 and "lower" in r.stderr
    r = run(str(m), "--port", "99999")
    assert r.exit_code == 2


def test_help_lists_commands():
    r = run("--help")
    assert r.exit_code == 0
    for word in ("stats", "demo", "serve", "MANIFEST"):
        assert word in r.stdout


def test_console_script_entry_point(write_manifest):
    m = write_manifest(ROWS)
    p = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(m), "--json", "--no-cache"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["utterances"] == 2
