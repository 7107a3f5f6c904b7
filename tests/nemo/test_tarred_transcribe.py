"""`sde transcribe --tarred-audio`: members of NeMo tar shards are transcribed by seek, as if the
files they were made from had been transcribed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from sde.cli import cli
from sde.nemo.infer import SegmentRef, prepare_batch
from sde.dataset import DatasetOptions, build_dataset
from sde.nemo.jobs import predictions_for, transcribe_manifest
from sde.nemo.model import TranscribeError
from sde.nemo.parts import read_entries
from tests.sources.tar_kit import make_tarred

pytestmark = pytest.mark.nemo


@pytest.fixture(scope="module")
def tarred(tmp_path_factory):
    data = make_tarred(tmp_path_factory.mktemp("tarred"))
    loose = data.folder / "loose.json"  # the same segments, from the files the members were made of
    loose.write_text("".join(json.dumps(o) + "\n" for o in data.originals))
    return data, loose


def test_the_model_gets_the_members_samples(tarred):
    # what the model is fed: the member's segment, sample for sample what its source file gives
    data, _ = tarred
    tars = (str(data.folder / "audio_0.tar"), str(data.folder / "audio_1.tar"))
    entries = read_entries(data.manifest, None, None, tars)
    for k, entry in enumerate(entries):
        [samples] = prepare_batch([entry.ref], 16000)
        source = data.originals[k]  # no offset: the whole file, as for any manifest line
        ref = SegmentRef(source["audio_filepath"], source["offset"], source["duration"]) if "offset" in source \
            else SegmentRef(source["audio_filepath"], 0.0, None)
        [expected] = prepare_batch([ref], 16000)
        assert len(samples) > 8000 and np.allclose(samples, expected, atol=1e-6)


def _predictions(path):
    return [json.loads(line)["pred_text"] for line in path.read_text().splitlines() if line.strip()]


def test_members_are_transcribed_as_their_source_files(tarred, tiny_nemo, tmp_path):
    data, loose = tarred
    tars = (str(data.folder / "audio_0.tar"), str(data.folder / "audio_1.tar"))
    from_tars = transcribe_manifest(data.manifest, tiny_nemo, out=tmp_path / "tars.json", device="cpu",
                                    batch_size=2, progress=False, tarred_audio=tars)
    from_files = transcribe_manifest(loose, tiny_nemo, out=tmp_path / "files.json", device="cpu", batch_size=2,
                                     progress=False)
    assert len(_predictions(from_tars)) == len(data.lines)
    assert _predictions(from_tars) == _predictions(from_files)
    # the output keeps the tarred manifest's own lines (shard_id, member names)
    first = json.loads(from_tars.read_text().splitlines()[0])
    assert first["shard_id"] == data.lines[0]["shard_id"]
    assert first["audio_filepath"] == data.lines[0]["audio_filepath"]


BAD_SHARDS = {"out of range": 7, "not a number": "zero", "missing": None, "infinite": float("inf"), "fractional": 0.5}


@pytest.mark.parametrize("shard_id", BAD_SHARDS.values(), ids=BAD_SHARDS.keys())
def test_a_line_without_a_usable_shard_id_names_its_line(tarred, tiny_nemo, tmp_path, shard_id):
    data, _ = tarred
    lines = [dict(line) for line in data.lines]
    if shard_id is None:
        del lines[1]["shard_id"]
    else:
        lines[1]["shard_id"] = shard_id
    bad = tmp_path / "bad.json"
    bad.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(TranscribeError, match=r"bad\.json:2: .*shard_id"):
        transcribe_manifest(bad, tiny_nemo, out=tmp_path / "out.json", device="cpu", progress=False,
                            tarred_audio=(str(data.folder / "audio_0.tar"), str(data.folder / "audio_1.tar")))


def test_cli_expands_the_tar_pattern(tarred, tiny_nemo, tmp_path):
    data, _ = tarred
    # in this process, where NeMo is already imported: as a subprocess its NeMo import was most of the test
    r = CliRunner().invoke(cli, ["transcribe", str(data.manifest), "--model", str(tiny_nemo), "--tarred-audio",
                                 data.pattern, "--out", str(tmp_path / "cli.json"), "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert len(_predictions(tmp_path / "cli.json")) == len(data.lines)
    none = subprocess.run([sys.executable, "-m", "sde.cli", "transcribe", str(data.manifest), "--model",
                           str(tiny_nemo), "--tarred-audio", str(tmp_path / "nothing_{0..3}.tar")],
                          capture_output=True, text=True, timeout=120)
    assert none.returncode == 2 and "--tarred-audio" in none.stderr and "Traceback" not in none.stderr


def test_a_tarred_dataset_without_predictions_is_transcribed_from_its_members(tarred, tiny_nemo, tmp_path):
    # what `sde MANIFEST --tarred-audio P --model M` and the UI's "Transcribe with NeMo" do
    data, loose = tarred
    dataset = build_dataset(data.manifest, DatasetOptions(tarred_audio=data.pattern))
    assert len(dataset.tar_shards) == 2
    predictions = predictions_for(dataset, str(tiny_nemo), device="cpu", batch_size=2, use_cache=False)
    from_files = transcribe_manifest(loose, tiny_nemo, out=tmp_path / "files.json", device="cpu", batch_size=2,
                                     progress=False)
    assert list(predictions) == _predictions(from_files)
