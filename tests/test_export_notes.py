"""What `sde export` says beside its counts: lines written into another folder whose audio paths
are relative to their manifest's (NeMo reads them from the manifest's folder), and a rules file
that holds no rules."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from sde.dataset import DatasetOptions, build_dataset
from sde.export import export_dataset
from sde.manifest.paths import relative_rows
from tests.test_export import line, run_cli

# (behaviour, path as written, joined to the manifest's folder)
PATHS = [
    ("a bare file name", "a.wav", True),
    ("a path into a subfolder", "wav/a.wav", True),
    ("a path up and across", "../audio/a.wav", True),
    ("dot slash", "./a.wav", True),
    ("an absolute path", "/data/a.wav", False),
    ("an s3 URL", "s3://bucket/a.wav", False),
    ("an https URL", "https://host/a.wav", False),
    ("a file URL", "file:///data/a.wav", False),
    ("a colon in a file name is no URL", "take:1.wav", True),
    ("empty", "", False),
    ("missing", None, False),
]


@pytest.mark.parametrize("behaviour, path, relative", PATHS, ids=[p[0] for p in PATHS])
def test_relative_rows(behaviour, path, relative):
    assert relative_rows(pa.array(["/x.wav", path, "y.wav"], pa.string())).tolist() == [False, relative, True]


def _manifest(tmp_path: Path, audio: str) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    manifest = folder / "train.json"
    manifest.write_bytes(line(audio, 1.5, "hello world") + b"\n" + line("/abs/b.wav", 2.0, "good day") + b"\n")
    return manifest


# (behaviour, the first line's audio path, -o, export's other arguments, --audio-base-path, what the
# note says: none, or phrases it holds)
MOVED = [
    ("a relative path written into another folder is named, with both remedies", "wav/a.wav", "out/kept.json", {},
     False, ["1 kept line names its audio", "(e.g. wav/a.wav in ", "Write -o into", "--audio-base-path"]),
    ("written beside its manifest: nothing to say", "wav/a.wav", "data/kept.json", {}, False, None),
    ("an absolute path reads the same from anywhere", "/abs/a.wav", "out/kept.json", {}, False, None),
    ("the user names the folder paths are joined to", "wav/a.wav", "out/kept.json", {}, True, None),
    ("rejected lines written into another folder are named with --rejected", "wav/a.wav", "data/kept.json",
     {"rejected": "out/dropped.json", "filter": '{text} = "good day"'}, False,
     ["1 rejected line names its audio", "Write --rejected into"]),
    ("kept lines that are all absolute, written elsewhere", "wav/a.wav", "out/kept.json",
     {"filter": '{text} = "good day"'}, False, None),
]


@pytest.mark.parametrize("behaviour, audio, output, arguments, base, says", MOVED, ids=[m[0] for m in MOVED])
def test_lines_written_into_another_folder(tmp_path, behaviour, audio, output, arguments, base, says):
    manifest = _manifest(tmp_path, audio)
    (tmp_path / "out").mkdir()
    options = DatasetOptions(audio_base_path=str(manifest.parent)) if base else DatasetOptions()
    dataset = build_dataset(str(manifest), options)
    rejected = arguments.get("rejected")
    changelog = export_dataset(dataset, tmp_path / output, rejected=tmp_path / rejected if rejected else None,
                               filter=arguments.get("filter"))
    moved = [n for n in changelog["notes"] if "relative to the folder of" in n]
    if says is None:
        assert moved == []
    else:
        assert len(moved) == 1 and all(phrase in moved[0] for phrase in says), moved
        assert str(manifest.parent) in moved[0]
    assert manifest.read_bytes().startswith(line(audio, 1.5, "hello world"))  # never modified


# (behaviour, the rules file's text, whether export notes that it holds none)
RULES = [
    ("an empty file", "", True),
    ("rules with no entries", "rules:\n", True),
    ("an empty list", "rules: []\n", True),
    ("one rule", 'rules:\n  - name: short\n    filter: "{duration} < 1"\n', False),
]


@pytest.mark.parametrize("behaviour, text, noted", RULES, ids=[r[0] for r in RULES])
def test_a_rules_file_without_rules_is_said(tmp_path, behaviour, text, noted):
    manifest = _manifest(tmp_path, "wav/a.wav")
    (manifest.parent / "rules.yaml").write_text(text)
    changelog = export_dataset(build_dataset(str(manifest)), manifest.parent / "kept.json",
                               rules_path=manifest.parent / "rules.yaml")
    assert any("holds no rules" in n for n in changelog["notes"]) is noted
    assert changelog["counts"]["kept"] == 2


def test_the_cli_prints_the_note_about_relative_paths(tmp_path):
    manifest = _manifest(tmp_path, "../audio/a.wav")
    result = run_cli("export", str(manifest), "-o", "kept.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    note = next(x for x in result.stderr.splitlines() if "relative to the folder of" in x)
    assert note.startswith("note: 1 kept line names its audio") and "kept.json" in note
    assert (tmp_path / "kept.json").read_bytes() == line("../audio/a.wav", 1.5, "hello world") + b"\n" + line(
        "/abs/b.wav", 2.0, "good day") + b"\n"
