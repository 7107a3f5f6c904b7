"""One of several manifests missing is a FILE skipped, not a "bad line": the warning says so and the
others load (exit 0); --strict stops at it; every input missing is an error. A bad line beside a
missing file is still counted as a bad line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOOD = "".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": "hello"}) + "\n" for i in range(2))

# (case, files written {name: content}, arguments, exit status, what stderr says, what it must not say)
CASES = [
    ("one of two missing", {"a.json": GOOD}, ["a.json", "missing.json"], 0,
     ["warning: 1 manifest file skipped", "missing.json: file not found"], ["bad line"]),
    ("two of three missing", {"a.json": GOOD}, ["a.json", "missing.json", "gone.json"], 0,
     ["warning: 2 manifest files skipped", "missing.json: file not found", "gone.json: file not found"], ["bad line"]),
    ("a missing file and a bad line", {"a.json": GOOD + "{not json\n"}, ["a.json", "missing.json"], 0,
     ["warning: 1 manifest file skipped", "missing.json: file not found", "warning: 1 bad line skipped",
      "a.json:3:"], []),
    ("--strict stops at it", {"a.json": GOOD}, ["a.json", "missing.json", "--strict"], 1,
     ["missing.json: file not found"], ["warning:"]),
    ("every input missing", {}, ["missing.json", "gone.json"], 1, ["Error: none of the 2 manifests could be read", "missing.json: file not found", "check the paths"],
     ["bad line", "every line is bad", "read without it"]),
]


@pytest.mark.parametrize("case, files, args, status, says, never", CASES, ids=[c[0] for c in CASES])
def test_a_missing_input_is_a_file_skipped(tmp_path, case, files, args, status, says, never):
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "sde.cli", "stats", *args, "--no-cache"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == status, done.stderr
    for text in says:
        assert text in done.stderr, done.stderr
    for text in never:
        assert text not in done.stderr, done.stderr
