"""Refusals of drop rules name where the mistake is: a rules file pasted or loaded into the
preview (`POST /api/rules/preview` with {"yaml": ...}, the Rules page's "Load rules.yaml") names
the line of the rule whose filter is wrong, as `sde export --rules` does."""

from __future__ import annotations

import json

from sde.dataset import build_dataset
from sde.rules import rules_preview_route

YAML = 'rules:\n  - name: fine\n    filter: "{wer} > 60"\n\n  - name: typo\n    filter: "{werr} > 1"\n'


def test_a_wrong_filter_in_pasted_yaml_names_its_line(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a b",
                                    "pred_text": "a c"}) + "\n")
    code, payload = rules_preview_route(build_dataset(manifest), None, {"yaml": YAML})
    assert code == 400 and payload["rule"] == "typo" and payload["position"] is not None
    assert payload["error"].startswith("rules:5: rule 'typo': ") and "werr" in payload["error"]
