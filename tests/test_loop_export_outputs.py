"""Export outputs are what their names say: `.gz` (any case) is gzip, and a name promising a
compression sde does not write (`.bz2`, `.zst`, `.xz`, ...) is refused by name before anything is
written, instead of plain lines under that name failing later in the training job."""

from __future__ import annotations

import gzip
import os
import json

import pytest

from sde.dataset import build_dataset
from sde.export import ExportError, plan_export, write_export

ROWS = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"t {i}"} for i in range(3)]


@pytest.fixture
def dataset(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return build_dataset(manifest)


@pytest.mark.parametrize("option, name, kind", [
    ("-o", "kept.json.bz2", "bzip2"), ("-o", "kept.json.zst", "zstd"), ("-o", "kept.json.XZ", "xz"),
    ("--rejected", "dropped.json.bz2", "bzip2"),
])
def test_other_compressions_are_refused_before_writing(tmp_path, dataset, option, name, kind):
    plan = plan_export(dataset, filter="{line} > 1")
    out = tmp_path / (name if option == "-o" else "kept.json")
    rejected = tmp_path / name if option == "--rejected" else None
    with pytest.raises(ExportError) as e:
        write_export(dataset, plan, out, rejected_output=rejected)
    message = str(e.value)
    assert message.startswith(f"{option} {tmp_path / name}") and kind in message and ".gz" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_gz_in_capitals_is_gzip(tmp_path, dataset):
    write_export(dataset, plan_export(dataset), tmp_path / "kept.json.GZ")
    assert gzip.decompress((tmp_path / "kept.json.GZ").read_bytes()) == (tmp_path / "m.json").read_bytes()


def test_gz_is_written_at_gzips_default_level_not_the_slowest(tmp_path, dataset):
    # level 9 (Python's GzipFile default) took 3x level 6's time at 1M lines for 1.7% less; the
    # header's XFL byte says 2 for level 9, 4 for level 1, 0 between
    write_export(dataset, plan_export(dataset), tmp_path / "kept.json.gz")
    written = (tmp_path / "kept.json.gz").read_bytes()
    assert written[8] == 0 and gzip.decompress(written) == (tmp_path / "m.json").read_bytes()


def test_the_printed_summary_says_a_disabled_rule_is_off_not_that_it_matches_nothing(tmp_path, dataset):
    from sde.export import summary_lines
    from sde.rules import parse_rules

    rules = parse_rules('rules:\n  - name: first\n    filter: "{line} = 1"\n  - name: any\n    filter: "{line} <= 2"\n'
                        '  - name: later\n    filter: "{line} = 3"\n    enabled: false\n')
    changelog = write_export(dataset, plan_export(dataset, rules=rules), tmp_path / "kept.json")
    printed = "\n".join(summary_lines(changelog))
    assert "rule 'later': off (enabled: false in the rules file), not applied" in printed
    assert "rule 'first': 1 utterances" in printed and "(0 only this rule)" in printed
    assert "rule 'any': 2 utterances" in printed and "(1 only this rule)" in printed
    assert "all rules: 2 utterances" in printed


def test_reviews_given_but_not_applied_are_named_in_a_note(tmp_path, dataset):
    from sde.export import export_dataset, summary_lines
    from sde.reviews import open_reviews, utterance_keys

    store = open_reviews(dataset, tmp_path / "r.sqlite")
    store.set_review(utterance_keys(dataset).key(0), "drop")
    store.close()
    changelog = export_dataset(dataset, tmp_path / "kept.json", reviews_path=tmp_path / "r.sqlite")
    assert changelog["counts"]["kept"] == 3     # not applied: the note says so, and how to
    printed = "\n".join(summary_lines(changelog))
    assert f"note: --reviews {tmp_path / 'r.sqlite'} was read but not applied" in printed and "--apply-reviews" in printed
    applied = export_dataset(dataset, tmp_path / "clean.json", reviews_path=tmp_path / "r.sqlite", apply_reviews=True)
    filtered = export_dataset(dataset, tmp_path / "drops.json", reviews_path=tmp_path / "r.sqlite",
                              filter='{review} = "drop"')
    assert applied["counts"]["kept"] == 2 and filtered["counts"]["kept"] == 1
    assert applied["notes"] == [] and filtered["notes"] == []


def test_fixed_lines_chosen_by_a_review_filter_without_apply_reviews_are_named_in_a_note(tmp_path, dataset):
    """`--filter '{review} = "fix"'` without --apply-reviews exported the fixed lines with their old
    transcripts and no note (QA at 1M: 17,344 such lines)."""
    from sde.export import export_dataset, summary_lines
    from sde.reviews import open_reviews, utterance_keys

    store = open_reviews(dataset, tmp_path / "r.sqlite")
    store.set_review(utterance_keys(dataset).key(1), "fix", text="a corrected transcript")
    store.close()
    changelog = export_dataset(dataset, tmp_path / "fixed.json", reviews_path=tmp_path / "r.sqlite",
                               filter='{review} = "fix"')
    assert changelog["counts"]["kept"] == 1
    assert "a corrected transcript" not in (tmp_path / "fixed.json").read_text()
    printed = "\n".join(summary_lines(changelog))
    assert f"note: --reviews {tmp_path / 'r.sqlite'}: its 1 fixed transcripts were not written" in printed
    assert "--apply-reviews" in printed
    applied = export_dataset(dataset, tmp_path / "applied.json", reviews_path=tmp_path / "r.sqlite",
                             filter='{review} = "fix"', apply_reviews=True)
    assert applied["notes"] == [] and "a corrected transcript" in (tmp_path / "applied.json").read_text()
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    store.set_review(utterance_keys(dataset).key(0), "drop")
    store.close()
    drops = export_dataset(dataset, tmp_path / "drops.json", reviews_path=tmp_path / "r.sqlite",
                           filter='{review} = "drop"')
    assert drops["counts"]["kept"] == 1 and drops["notes"] == []  # the fix is not among the kept lines


def test_reviews_of_lines_a_rule_removed_are_counted_apart(tmp_path, dataset):
    from sde.export import export_dataset, summary_lines
    from sde.reviews import open_reviews, utterance_keys

    store = open_reviews(dataset, tmp_path / "r.sqlite")
    keys = utterance_keys(dataset)
    store.set_review(keys.key(0), "drop")
    store.set_review(keys.key(1), "fix", text="t one")
    store.set_review(keys.key(2), "drop")
    store.close()
    rules = tmp_path / "rules.yaml"
    rules.write_text('rules:\n  - name: first two\n    filter: "{line} <= 2"\n')
    changelog = export_dataset(dataset, tmp_path / "clean.json", rules_path=rules,
                               reviews_path=tmp_path / "r.sqlite", apply_reviews=True)
    assert (changelog["reviews"]["dropped"], changelog["reviews"]["fixed"], changelog["reviews"]["left_out"]) == (1, 0, 2)
    assert "reviews: 1 dropped, 0 fixed, 0 annotated; 2 other reviewed utterances were left out by the filter or " \
           "rules already" in "\n".join(summary_lines(changelog))


def test_ctrl_c_between_the_renames_still_leaves_the_new_set_whole(tmp_path, monkeypatch):
    """Ctrl-C arriving as the finished outputs are renamed into place (the kept lines renamed, the
    changelog not yet): it waits for the last rename, so no new output stands beside an old changelog."""
    import signal

    from sde.export import AtomicOutput, commit_together

    for name in ("kept.json", "dropped.json", "kept.json.changelog.json"):
        (tmp_path / name).write_text("old\n")
    outputs = [AtomicOutput(tmp_path / name) for name in ("kept.json", "dropped.json", "kept.json.changelog.json")]
    for out in outputs:
        out.file.write(b"new\n")
    real_replace = AtomicOutput.replace
    interrupted = []

    def ctrl_c_after_the_first(self):
        real_replace(self)
        if not interrupted:
            interrupted.append(self.target.name)
            os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C, while the rest are still to rename

    monkeypatch.setattr(AtomicOutput, "replace", ctrl_c_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        commit_together(outputs)
    assert interrupted == ["kept.json"]
    assert [(tmp_path / n).read_text() for n in ("kept.json", "dropped.json", "kept.json.changelog.json")] == \
        ["new\n"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dropped.json", "kept.json", "kept.json.changelog.json"]
