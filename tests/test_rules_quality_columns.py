"""Drop rules that name a quality column computed on first use ({dup_text_group}, {char_rate_z},
…): a rule set downloaded from the Rules page answered "Unknown column" when POSTed to
/api/rules/preview before any GET had named the column, and always in `sde export --rules`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app

REPO = Path(__file__).resolve().parent.parent
RULES = 'rules:\n  - name: repeated\n    filter: "{dup_text_group} is not null"\n'
LINES = [("a.wav", "Hello, world.", 2.0), ("b.wav", "hello world", 2.0), ("c.wav", "something else entirely", 3.0)]


@pytest.fixture
def manifest(tmp_path) -> Path:
    path = tmp_path / "m.json"
    path.write_text("".join(json.dumps({"audio_filepath": a, "text": t, "duration": d}) + "\n" for a, t, d in LINES))
    return path


def test_a_rule_set_posted_first_computes_the_columns_it_names(manifest):
    client = create_app(build_dataset(manifest), AppConfig(title="rules", audio_routes=False)).server.test_client()
    answer = client.post("/api/rules/preview", json={"rules": [{"name": "repeated", "filter": "{dup_text_group} is not null"}]})
    assert answer.status_code == 200, answer.get_json()
    [rule] = answer.get_json()["rules"]
    assert rule["name"] == "repeated" and rule["utterances"] == 2


def test_export_drops_by_a_rule_on_a_quality_column(manifest):
    (manifest.parent / "rules.yaml").write_text(RULES)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SDE_CACHE_DIR": str(manifest.parent / "cache")}
    run = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(manifest), "--rules", "rules.yaml",
                          "-o", "kept.json"], cwd=manifest.parent, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["audio_filepath"] for line in (manifest.parent / "kept.json").read_text().splitlines()] == ["c.wav"]
