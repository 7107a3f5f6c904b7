"""`sde transcribe --out preds/` (the README's own example) with no preds/ yet is a folder the
outputs go into, not a file named preds that the next manifest's output replaces; and outputs are
created with the mode of any new file (umask), readable by the team, not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from sde.nemo.command import transcribe_command
from sde.nemo.parts import atomic_writer, commit
from tests.nemo.speech_kit import read_jsonl, speech_rows, write_jsonl


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.nemo
def test_out_with_a_slash_is_a_folder_made_for_the_outputs(audio_dir, tiny_nemo, tmp_path):
    rows = speech_rows(audio_dir, tmp_path)
    first = write_jsonl(tmp_path / "first.json", rows[:2])
    second = write_jsonl(tmp_path / "second.json", rows[2:4])
    preds = tmp_path / "preds"
    for m in (first, second):
        r = CliRunner().invoke(transcribe_command, [str(m), "--model", str(tiny_nemo), "--out", f"{preds}/",
                                                    "--device", "cpu", "--no-progress"])
        assert r.exit_code == 0, r.output
    assert preds.is_dir()
    assert sorted(p.name for p in preds.iterdir()) == ["first_tiny_ctc.json", "second_tiny_ctc.json"]
    assert [x["text"] for x in read_jsonl(preds / "first_tiny_ctc.json")] == [x["text"] for x in rows[:2]]


def test_a_folder_named_like_a_compressed_file_is_no_usage_error(tmp_path):
    m = write_jsonl(tmp_path / "m.json", [{"audio_filepath": "a.wav", "duration": 1.0, "text": "a"}])
    r = CliRunner().invoke(transcribe_command, [str(m), "--model", str(tmp_path / "none.nemo"),
                                                "--out", f"{tmp_path / 'runs.gz'}/", "--no-progress"])
    assert "writes plain JSON Lines" not in r.output  # it fails on the missing model, not on the name
    r = CliRunner().invoke(transcribe_command, [str(m), "--out", str(tmp_path / "o.json.gz"), "--no-progress"])
    assert r.exit_code == 2 and "writes plain JSON Lines" in r.output


def test_outputs_get_the_umask_mode_not_0600(tmp_path, umask_022):
    target = tmp_path / "o.json"
    f, tmp = atomic_writer(target)
    f.write("{}\n")
    commit(f, tmp, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in Path(tmp_path).iterdir()] == ["o.json"]  # no temp file left


@pytest.mark.nemo
def test_a_transcribed_manifest_is_readable_by_the_group(audio_dir, tiny_nemo, tmp_path, umask_022):
    from sde.nemo.jobs import transcribe_manifest

    m = write_jsonl(tmp_path / "m.json", speech_rows(audio_dir, tmp_path)[:1])
    out = transcribe_manifest(m, str(tiny_nemo), out=tmp_path / "o.json", device="cpu", progress=False)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


@pytest.mark.nemo
@pytest.mark.parametrize("out", ["preds/", "new/o.json"])
def test_a_cutset_into_a_folder_not_made_yet(audio_dir, tiny_nemo, tmp_path, out):
    """The supervisions' NeMo view goes beside the output: its folder is made first (the view's
    write failed with a bare "No such file or directory")."""
    lhotse = pytest.importorskip("lhotse")
    d, _ = audio_dir
    rec = lhotse.Recording.from_file(d / "one.wav", recording_id="one")
    sup = lhotse.SupervisionSegment(id="s-one", recording_id="one", start=0.0, duration=rec.duration, text="hello")
    source = tmp_path / "cuts.jsonl.gz"
    lhotse.CutSet.from_cuts([lhotse.MonoCut(id="one", start=0.0, duration=rec.duration, channel=0, recording=rec,
                                            supervisions=[sup])]).to_file(source)
    r = CliRunner().invoke(transcribe_command, [str(source), "--model", str(tiny_nemo), "--device", "cpu",
                                                "--no-progress", "--out", f"{tmp_path}/{out}"])
    assert r.exit_code == 0, r.output
    written = Path(r.output.strip().splitlines()[-1])
    assert written.parent.is_dir() and [x["text"] for x in read_jsonl(written)] == ["hello"]
