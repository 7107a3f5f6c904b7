"""One utterance whose audio cannot be read (corrupt, empty, missing) among many: it is named with
its manifest line, its line gets no prediction (left out of the scores, never scored as ""), and
the others are transcribed exactly as without it, by both engines and for a dataset; when none can
be read the job fails without an output."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from sde.nemo.command import transcribe_command
from sde.nemo.jobs import predictions_for, transcribe_dataset, transcribe_manifest
from sde.nemo.model import TranscribeError
from sde.nemo.parts import load_part, part_header, part_path
from sde.nemo.ray_engine import RayOptions
from tests.nemo.speech_kit import read_jsonl, speech_rows, write_jsonl

pytestmark = pytest.mark.nemo


def _bad_rows(tmp_path: Path) -> list[dict]:
    """A corrupt file, a WAV with no samples and a missing file."""
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(bytes(range(256)) * 8)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype="float32"), 16000)
    return [{"audio_filepath": str(corrupt), "duration": 1.0, "text": "corrupt"},
            {"audio_filepath": str(empty), "duration": 0.5, "text": "empty"},
            {"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.2, "text": "gone"}]


@pytest.fixture()
def good(audio_dir, tmp_path) -> Path:
    return write_jsonl(tmp_path / "good.json", speech_rows(audio_dir, tmp_path))


@pytest.fixture()
def mixed(audio_dir, tmp_path) -> Path:
    """The good rows with the bad ones at lines 2, 4 and 8, and a stale pred_text on the corrupt one."""
    rows = speech_rows(audio_dir, tmp_path)
    corrupt, empty, gone = _bad_rows(tmp_path)
    corrupt["pred_text"] = "an older model's guess"
    rows[1:1] = [corrupt]
    rows[3:3] = [empty]
    rows.append(gone)
    return write_jsonl(tmp_path / "mixed.json", rows)


BAD_LINES = (2, 4, 8)


def _check_mixed_output(out: Path, reference: Path) -> None:
    got, want = read_jsonl(out), read_jsonl(reference)
    assert len(got) == len(want) + len(BAD_LINES)
    bad = [got[n - 1] for n in BAD_LINES]
    assert [r["text"] for r in bad] == ["corrupt", "empty", "gone"]
    assert all("pred_text" not in r for r in bad)  # the stale prediction is not passed off as this model's
    readable = [r for n, r in enumerate(got, 1) if n not in BAD_LINES]
    assert readable == want  # the same predictions, in line order, as a run without the bad lines


def test_one_bad_file_among_many_is_named_and_the_rest_transcribed(good, mixed, tiny_nemo, tmp_path):
    reference = transcribe_manifest(good, str(tiny_nemo), out=tmp_path / "ref.json", device="cpu", batch_size=3,
                                    progress=False)
    said: list[str] = []
    out = transcribe_manifest(mixed, str(tiny_nemo), out=tmp_path / "o.json", device="cpu", batch_size=3,
                              progress=False, warn=said.append)
    _check_mixed_output(out, reference)
    assert not part_path(out).exists()
    assert len(said) == 1 and said[0].startswith("3 of 8 utterances could not be read and have no pred_text")
    for line, why in zip(BAD_LINES, ("cannot read audio", "no audio samples", "audio file not found")):
        assert f"mixed.json:{line}: " in said[0] and why in said[0]


def test_the_cli_warns_and_exits_0(mixed, tiny_nemo, tmp_path):
    r = CliRunner().invoke(transcribe_command, [str(mixed), "--model", str(tiny_nemo), "--out", str(tmp_path / "o.json"),
                                                "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "warning: 3 of 8 utterances could not be read" in r.output and "mixed.json:8: audio file not found" in r.output
    assert "Traceback" not in r.output
    assert [("pred_text" in row) for row in read_jsonl(tmp_path / "o.json")] == [n not in BAD_LINES for n in range(1, 9)]


def test_unreadable_lines_are_not_recorded_so_a_resumed_run_tries_them_again(mixed, tiny_nemo, tmp_path):
    out = tmp_path / "o.json"
    stops = iter([False] * 7)  # one utterance per batch, longest first: stopped before the shortest (empty.wav)
    with pytest.raises(TranscribeError, match="stopped after"):
        transcribe_manifest(mixed, str(tiny_nemo), out=out, device="cpu", batch_size=1, progress=False,
                            should_stop=lambda: next(stops, True), warn=lambda _: None)
    recorded = load_part(part_path(out), part_header(mixed, str(tiny_nemo), "pred_text"))
    assert len(recorded) == 5  # the 7 tried but corrupt.wav and gone.wav
    gone = Path(read_jsonl(mixed)[7]["audio_filepath"])
    sf.write(gone, np.zeros(8000, dtype="float32"), 16000)  # the user restores one file and resumes
    said: list[str] = []
    transcribe_manifest(mixed, str(tiny_nemo), out=out, device="cpu", batch_size=1, progress=False, warn=said.append)
    rows = read_jsonl(out)
    assert isinstance(rows[7]["pred_text"], str)
    assert said[0].startswith("2 of 8 ") and "mixed.json:2: " in said[0] and "mixed.json:4: " in said[0]


def test_no_readable_audio_at_all_is_an_error_and_no_output(tmp_path, tiny_nemo):
    m = write_jsonl(tmp_path / "m.json", _bad_rows(tmp_path))
    with pytest.raises(TranscribeError, match=r"none of the 3 utterances could be read, e\.g\. .*m\.json:\d: "):
        transcribe_manifest(m, str(tiny_nemo), out=tmp_path / "o.json", device="cpu", progress=False)
    assert not (tmp_path / "o.json").exists()


def test_a_datasets_unreadable_utterances_are_left_out_of_its_scores(mixed, good, tiny_nemo, tmp_path):
    from sde.dataset import build_dataset

    rows = read_jsonl(mixed)
    rows[1].pop("pred_text")  # a manifest without predictions, as the UI's transcription job sees it
    ds = build_dataset(write_jsonl(tmp_path / "plain.json", rows))
    said: list[str] = []
    preds = predictions_for(ds, str(tiny_nemo), device="cpu", batch_size=3, cache_dir=tmp_path / "c", warn=said.append)
    assert [p is None for p in preds] == [n in BAD_LINES for n in range(1, 9)]
    reference = predictions_for(build_dataset(good), str(tiny_nemo), device="cpu", cache_dir=tmp_path / "c")
    assert [p for p in preds if p is not None] == reference
    assert len(said) == 1 and "3 of 8 utterances could not be read" in said[0]
    assert all(f"plain.json:{n}: " in said[0] for n in BAD_LINES)  # named by line, as sde transcribe names them
    scored = transcribe_dataset(ds, str(tiny_nemo), cache_dir=tmp_path / "c")  # read back from the cache
    missing = scored.utterances["pred_text"].isna().to_numpy()
    assert missing.tolist() == [n in BAD_LINES for n in range(1, 9)]
    notes = [str(w) for w in scored.warnings if "pred_text missing" in str(w)]
    assert notes == [f"{ds.manifest_path}:2: pred_text missing on 3 lines (lines 2, 4, 8): left out of its scores"]


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_skips_the_same_lines_and_writes_the_same_output(mixed, tiny_nemo, tmp_path, ray_instance):
    local = transcribe_manifest(mixed, str(tiny_nemo), out=tmp_path / "local.json", device="cpu", batch_size=3,
                                progress=False, warn=lambda _: None)
    said: list[str] = []
    on_ray = transcribe_manifest(mixed, str(tiny_nemo), out=tmp_path / "ray.json", batch_size=3, progress=False,
                                 engine="ray", ray=RayOptions(workers=1), warn=said.append)
    assert on_ray.read_bytes() == local.read_bytes()
    assert len(said) == 1 and all(f"mixed.json:{n}: " in said[0] for n in BAD_LINES)
    assert json.loads(local.read_text().splitlines()[1]).get("pred_text") is None


def test_a_shard_of_only_bad_lines_still_merges(mixed, good, tiny_nemo, tmp_path):
    """Shard 1 of 4 of the 8 lines is lines 2 and 6; shard 3 is lines 4 and 8 (empty.wav, gone.wav):
    nothing readable there, yet its output is what the merge needs."""
    from sde.nemo.jobs import find_shards, merge_shards

    out = tmp_path / "o.json"
    for i in range(4):
        transcribe_manifest(mixed, str(tiny_nemo), out=out, device="cpu", shard=(i, 4), progress=False,
                            warn=lambda _: None)
    merged = merge_shards(find_shards(out), out, manifest=mixed)
    whole = transcribe_manifest(mixed, str(tiny_nemo), out=tmp_path / "whole.json", device="cpu", progress=False,
                                warn=lambda _: None)
    assert merged.read_bytes() == whole.read_bytes()
