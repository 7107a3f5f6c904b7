"""The "scoring FIELD (...)" progress line says how many utterances a hypothesis is scored on."""

from __future__ import annotations

from click.testing import CliRunner

from sde.cli import cli


def _rows(lines: int, lacking_b: int) -> list[dict]:
    rows = []
    for i in range(lines):
        row = {"audio_filepath": f"{i}.wav", "duration": 1.0, "text": "the cat", "pred_text": "the cat"}
        if i >= lacking_b:
            row["pred_text_b"] = "the bat"
        rows.append(row)
    return rows


def _scoring_lines(write_manifest, tmp_path, rows) -> list[str]:
    manifest = write_manifest(rows)
    result = CliRunner().invoke(cli, ["stats", str(manifest), "--cache-dir", str(tmp_path / "cache")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [line for line in result.stderr.splitlines() if line.startswith("scoring ")]


def test_scoring_message_counts_only_the_lines_with_the_hypothesis(write_manifest, tmp_path):
    lines = _scoring_lines(write_manifest, tmp_path, _rows(205, lacking_b=12))
    assert lines == [
        "scoring pred_text (205 utterances)",
        "scoring pred_text_b (193 of 205 utterances; 12 lack the field)",
    ]


def test_scoring_message_is_plain_when_every_line_has_the_hypothesis(write_manifest, tmp_path):
    lines = _scoring_lines(write_manifest, tmp_path, _rows(1_200, lacking_b=0))
    assert lines == ["scoring pred_text (1,200 utterances)", "scoring pred_text_b (1,200 utterances)"]
