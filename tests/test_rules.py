"""Drop rules (sde/rules.py): the YAML file, what each rule removes, and `sde export --rules` replaying it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sde.dataset import build_dataset
from sde.rules import (
    MAX_RULES,
    Rule,
    RulesError,
    dump_rules,
    evaluate_rules,
    load_rules,
    parse_rules,
    rules_preview_route,
)

REPO = Path(__file__).resolve().parents[1]
RULES_YAML = """\
# cleaning decided in the browser
rules:
  - name: high WER
    filter: "{wer} > 60"
  - name: too fast
    filter: "{char_rate} > 25"
    description: faster than anyone speaks
  - name: short
    filter: "{duration} < 1"
  - name: off for now
    filter: "{duration} > 0"
    enabled: false
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(11)
    words = "the cat sat on a mat with hat and bat".split()
    rows = []
    for i in range(400):
        ref = " ".join(rng.choice(words, rng.integers(1, 12)))
        hyp = " ".join(w if rng.random() > 0.4 else "x" for w in ref.split())
        rows.append(json.dumps({"audio_filepath": f"a{i}.wav", "duration": float(rng.uniform(0.3, 3.0)),
                                "text": ref, "pred_text": hyp}))
    path = tmp_path_factory.mktemp("rules") / "m.json"
    path.write_text("\n".join(rows) + "\n")
    return build_dataset(path)


def test_parse_rules_with_lines_descriptions_and_disabled_rules():
    rules = parse_rules(RULES_YAML, "rules.yaml")
    assert [(r.name, r.filter, r.line, r.enabled) for r in rules] == [
        ("high WER", "{wer} > 60", 3, True), ("too fast", "{char_rate} > 25", 5, True),
        ("short", "{duration} < 1", 8, True), ("off for now", "{duration} > 0", 10, False)]
    assert rules[1].description == "faster than anyone speaks"


def test_dumped_rules_read_back_the_same():
    rules = parse_rules(RULES_YAML)
    again = parse_rules(dump_rules(rules))
    assert [(r.name, r.filter, r.description, r.enabled) for r in again] == \
        [(r.name, r.filter, r.description, r.enabled) for r in rules]


@pytest.mark.parametrize("text, count", [
    ("rules: []", 0), ("rules:", 0), ("", 0),
    ('- name: a\n  filter: "{wer} > 1"\n', 1),
], ids=["empty list", "null list", "empty file", "a bare list"])
def test_minimal_files(text, count):
    assert len(parse_rules(text)) == count


BAD_FILES = {
    "not YAML": ("rules:\n  - name: a\n    filter: [unclosed\n", "r.yaml:"),
    "unknown top-level key": ("rule:\n  - name: a\n", "top-level `rules:`"),
    "rules not a list": ("rules: {name: a}\n", "must be a list"),
    "rule not a mapping": ("rules:\n  - just text\n", "rule 1 must be a mapping"),
    "unknown field": ("rules:\n  - name: a\n    filter: '{wer} > 1'\n    fliter: x\n", "unknown field 'fliter'"),
    "missing filter": ("rules:\n  - name: a\n", "rule 'a' needs a filter"),
    "filter not text": ("rules:\n  - name: a\n    filter: [1, 2]\n", "needs a filter"),
    "missing name": ("rules:\n  - filter: '{wer} > 1'\n", "needs a name"),
    "a name YAML reads as false": ("rules:\n  - {name: off, filter: '{wer} > 1'}\n", 'got False; YAML reads an unquoted off'),
    "a name YAML reads as a number": ("rules:\n  - {name: 1.5, filter: '{wer} > 1'}\n", 'quote the name (name: "off")'),
    "duplicate names": ("rules:\n  - {name: a, filter: '{wer} > 1'}\n  - {name: a, filter: '{cer} > 1'}\n",
                        "r.yaml:3: two rules are named 'a'"),
    "enabled not boolean": ("rules:\n  - {name: a, filter: '{wer} > 1', enabled: maybe}\n", "true or false"),
    "python object tag": ("rules: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
    "too many rules": ("rules:\n" + "".join(f"  - {{name: r{i}, filter: '{{wer}} > 1'}}\n"
                                            for i in range(MAX_RULES + 1)), f"at most {MAX_RULES}"),
    "alias bomb": ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                   "rules: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n", "top-level `rules:`"),
}


@pytest.mark.parametrize("text, message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_rules_files_are_clear_errors(text, message):
    start = time.monotonic()
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "r.yaml")
    assert message in str(caught.value)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe rules", "not UTF-8"),
    (b"rules: []\n" + b"#" * (1 << 20), "larger than 1 MiB"),
], ids=["not UTF-8", "too big"])
def test_bad_rules_file_bytes(tmp_path, content, message):
    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    with pytest.raises(RulesError, match=message):
        load_rules(path)


def test_each_rule_counts_what_it_removes_and_the_union_counts_overlaps_once(dataset):
    rules = parse_rules(RULES_YAML)
    q = dataset.utterance_query
    duration = dataset.utterances["duration"].to_numpy()
    report = evaluate_rules(rules, q.select, duration)
    masks = []
    for rule, count in zip(rules, report.counts):
        if not rule.enabled:
            assert (count.utterances, count.hours) == (0, 0.0)
            continue
        m = np.zeros(len(duration), dtype=bool)
        m[q.select(rule.filter)] = True
        masks.append(m)
        assert count.utterances == q.count(rule.filter)
        assert count.hours == pytest.approx(duration[m].sum() / 3600)
    union = np.logical_or.reduce(masks)
    assert report.union_utterances == int(union.sum()) < sum(int(m.sum()) for m in masks)  # they overlap
    assert report.union_hours == pytest.approx(duration[union].sum() / 3600)
    only_first = masks[0] & ~masks[1] & ~masks[2]
    assert report.counts[0].only == int(only_first.sum())


def test_rules_within_a_selection(dataset):
    rules = parse_rules(RULES_YAML)
    q = dataset.utterance_query
    within = np.zeros(len(dataset.utterances), dtype=bool)
    within[q.select("{duration} > 2")] = True
    report = evaluate_rules(rules, q.select, dataset.utterances["duration"].to_numpy(), within=within)
    assert report.considered == q.count("{duration} > 2")
    assert report.counts[2].utterances == 0   # "short" cannot match a row longer than 2 s
    assert report.counts[0].utterances == q.count("{wer} > 60 && {duration} > 2")


HOSTILE = {
    "syntax error names rule, line and position": ("{wer} > > 60", "r.yaml:3: rule 'bad'", True),
    "unknown column": ("{nope} > 1", "Unknown column", False),
    "SQL-looking text": ('{text} = "x"; DROP TABLE utterances; --', "rule 'bad'", False),
    "python-looking text": ("__import__('os').system('touch /tmp/pwned')", "rule 'bad'", False),
    "very long filter": ("{wer} > 1 && " * 2000 + "{wer} > 1", "rule 'bad'", False),
    "deep parentheses": ("(" * 5000 + "{wer} > 1" + ")" * 5000, "rule 'bad'", False),
    "control characters": ("{wer} > 1\x00", "rule 'bad'", False),
}


@pytest.mark.parametrize("flt, fragment, has_position", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_rule_filters_are_refused_by_name(dataset, flt, fragment, has_position):
    rules = [Rule("fine", "{wer} > 1", line=2), Rule("bad", flt, line=3)]
    with pytest.raises(RulesError) as caught:
        evaluate_rules(rules, dataset.utterance_query.select, dataset.utterances["duration"].to_numpy(),
                       source="r.yaml")
    assert fragment in str(caught.value) and caught.value.rule == "bad"
    if has_position:
        assert caught.value.position is not None
    assert not Path("/tmp/pwned").exists()


def test_preview_route(dataset):
    code, report = rules_preview_route(dataset, None, {"yaml": RULES_YAML, "filter": "{duration} > 1"})
    assert code == 200
    q = dataset.utterance_query
    assert report["considered"] == q.count("{duration} > 1")
    assert report["rules"][0]["utterances"] == q.count("{wer} > 60 && {duration} > 1")
    code, report = rules_preview_route(dataset, None, {"rules": [{"name": "w", "filter": "{wer} > 60"}]})
    assert code == 200 and report["rules"][0]["utterances"] == q.count("{wer} > 60")
    code, err = rules_preview_route(dataset, None, {"rules": [{"name": "w", "filter": "{wer} >"}]})
    assert code == 400 and err["rule"] == "w"
    assert rules_preview_route(dataset, None, "rules")[0] == 400


def test_export_replays_the_rules_with_the_counts_the_browser_shows(dataset, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES_YAML)
    _, preview = rules_preview_route(dataset, None, {"yaml": RULES_YAML})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(dataset.manifest_path), "--no-cache",
                        "--rules", str(rules_file), "-o", str(tmp_path / "kept.json"), "--rejected",
                        str(tmp_path / "dropped.json")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    log = json.loads((tmp_path / "kept.json.changelog.json").read_text())
    assert [(x["name"], x["utterances"]) for x in log["rules"]["rules"]] == \
        [(x["name"], x["utterances"]) for x in preview["rules"]]
    assert log["rules"]["union"] == pytest.approx(preview["union"])
    kept = (tmp_path / "kept.json").read_text().splitlines()
    assert len(kept) == len(dataset.utterances) - preview["union"]["utterances"] == log["counts"]["kept"]
    dropped = (tmp_path / "dropped.json").read_text().splitlines()
    assert len(dropped) == preview["union"]["utterances"]
    assert all(json.loads(x)["duration"] >= 1 for x in kept)


def test_invalid_rule_in_export_names_the_rule(dataset, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text('rules:\n  - name: ok\n    filter: "{wer} > 1"\n  - name: typo\n    filter: "{werr} > 1"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "sde.cli", "export", str(dataset.manifest_path), "--no-cache",
                        "--rules", str(rules_file), "-o", str(tmp_path / "kept.json")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "rules.yaml:4: rule 'typo'" in r.stderr and "werr" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "kept.json").exists()
