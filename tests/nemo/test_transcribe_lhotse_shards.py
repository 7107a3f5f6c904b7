"""`sde transcribe CUTS --shard I/N` then `--merge` on a Lhotse CutSet: the merge matches the shards to
the supervisions' NeMo view each shard transcribed (it compared them with the CutSet's own lines,
which name no audio_filepath, and refused every merge). Real speech, the tiny real .nemo model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sde.nemo.command import transcribe_command
from tests.nemo.speech_kit import read_jsonl


def test_shards_of_a_cutset_merge_into_the_unsharded_output(audio_dir, tiny_nemo, tmp_path):
    lhotse = pytest.importorskip("lhotse")
    d, _ = audio_dir
    cuts = []
    for name, text in [("one", "hello world"), ("two", "speech data explorer"), ("three", "good morning")]:
        rec = lhotse.Recording.from_file(d / f"{name}.wav", recording_id=name)
        sup = lhotse.SupervisionSegment(id=f"s-{name}", recording_id=name, start=0.0, duration=rec.duration, text=text)
        cuts.append(lhotse.MonoCut(id=name, start=0.0, duration=rec.duration, channel=0, recording=rec,
                                   supervisions=[sup]))
    source = tmp_path / "cuts.jsonl.gz"
    lhotse.CutSet.from_cuts(cuts).to_file(source)

    def transcribe(*args: str) -> None:
        r = CliRunner().invoke(transcribe_command, [str(source), "--model", str(tiny_nemo), "--device", "cpu",
                                                    "--no-progress", *args])
        assert r.exit_code == 0, r.output

    transcribe("--out", str(tmp_path / "whole.json"))
    for shard in ("0/2", "1/2"):
        transcribe("--shard", shard, "--out", str(tmp_path / "sharded.json"))
    transcribe("--merge", "--out", str(tmp_path / "sharded.json"))
    merged, whole = read_jsonl(tmp_path / "sharded.json"), read_jsonl(tmp_path / "whole.json")
    assert [r["supervision_id"] for r in merged] == ["s-one", "s-two", "s-three"]
    assert json.dumps(merged) == json.dumps(whole)
