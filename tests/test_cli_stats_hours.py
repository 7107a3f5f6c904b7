"""`sde stats` shows the hours of a small dataset with their minutes or seconds: 14 s of speech read
"hours 0.00" (QA), as if the manifest held no audio."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sde.cli import _hours_text


@pytest.mark.parametrize("hours, shown", [
    (None, "-"),
    (0.0, "0.00  (0.0 s)"),
    (13.85 / 3600, "0.00  (13.8 s)"),
    (59.96 / 3600, "0.02  (60.0 s)"),
    (90 / 3600, "0.03  (1.5 min)"),
    (0.1, "0.10"),
    (1234.5678, "1234.57"),
])
def test_hours_under_six_minutes_say_their_minutes_or_seconds(hours, shown):
    assert _hours_text(hours) == shown


def test_stats_of_a_few_seconds_says_them(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 2.5, "text": "a b"}) + "\n"
                                for i in range(4)))
    p = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--no-cache"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "hours            0.00  (10.0 s)" in p.stdout.splitlines(), p.stdout
