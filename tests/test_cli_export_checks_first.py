"""`sde export` checks what needs no data (the filter's syntax, the rules file) before it builds
the dataset: a typo must not cost a user the build of a big manifest before they hear of it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ROWS = [{"audio_filepath": "a.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the bat sat"}]

CASES = {
    "a filter with a syntax error": (["--filter", "{wer} >"], None, "--filter"),
    "a rules file that is not YAML": ([], "rules: [\n  - {name: a, filter: '{wer} > 1'\n", "not valid YAML"),
    "a rule's filter with a syntax error": ([], "rules:\n  - name: broken\n    filter: '{wer} > 1 &&'\n", "broken"),
    "a disabled rule's filter with a syntax error": (
        [], "rules:\n  - name: later\n    enabled: false\n    filter: '({wer} > 1'\n", "later"),
    "a rules file that is missing": (["--rules", "missing.yaml"], None, "missing.yaml: file not found"),
    # a ")" no "(" opened, unquoted, was read into the value: the filter kept nothing, the rule dropped nothing
    "a filter closing a group it never opened": (["--filter", "{speaker} = spk_4)"], None, 'no "(" to close'),
    "a rule closing a group it never opened": ([], "rules:\n  - name: spk\n    filter: '{speaker} = spk_4)'\n",
                                                'no "(" to close'),
}


@pytest.mark.parametrize("args, rules, says", CASES.values(), ids=CASES.keys())
def test_a_mistake_that_needs_no_data_is_told_before_the_build(tmp_path, args, rules, says):
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    if rules is not None:
        (tmp_path / "rules.yaml").write_text(rules)
        args = [*args, "--rules", "rules.yaml"]
    cache = tmp_path / "cache"
    p = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(manifest), "-o", "kept.json",
                        "--cache-dir", str(cache), *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    # a typo on the command line or a file that is not there: a usage error (2); a file sde read: bad data (1)
    assert p.returncode == (2 if rules is None else 1), p.stderr
    assert says in p.stderr and "Traceback" not in p.stderr
    assert not cache.exists() or not any(cache.iterdir()), "the dataset was built before the mistake was told"
    assert not (tmp_path / "kept.json").exists()


def test_a_filter_naming_an_unknown_column_is_still_told_against_the_dataset(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    p = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(manifest), "-o", "kept.json", "--no-cache",
                        "--filter", "{duraton} > 1"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 1 and "duraton" in p.stderr and "Traceback" not in p.stderr
