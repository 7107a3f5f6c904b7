"""--predictions where a path and offset name several lines: the two sides of a stereo call
(audio_channel 0 and 1, a Lhotse supervision's channel) and a member name in two tar shards.
A prediction goes to the line its channel and shard name; one that lacks what tells the lines
apart is left unused with a note naming its file, line and the fix, never put on one of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.build.load import load_dataset
from sde.dataset import DatasetOptions, build_dataset
from sde.audio import open_segment
from sde.manifest import ManifestError
from sde.sources.members import TarShards, audio_input
from tests.test_tar_index import write_nemo_shard

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def _tone(path: Path, freqs: list[float], seconds: float = 1.0) -> Path:
    t = np.arange(int(SR * seconds)) / SR
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in freqs], axis=1).astype(np.float32), SR)
    return path


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _preds(dataset) -> list[str | None]:
    column = dataset.utterances["pred_text"]
    return [None if missing else value for value, missing in zip(column.astype(object), column.isna())]


# A dataset is matched to its predictions in one piece (sde.manifest.hypotheses) or, when big,
# part by part (sde.build.predictions, DuckDB): both must give the same lines their predictions.
READS = {
    "one piece": lambda source, options, cache: build_dataset(source, options),
    "part by part": lambda source, options, cache: load_dataset(source, options, cache_dir=cache, part_bytes=64,
                                                                threads=1),
}


def _sde(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


# ------------------------------------------------------------------------------- channels

CALL = [{"audio_filepath": "call.wav", "offset": 0.0, "duration": 1.0, "text": "left side", "audio_channel": 0},
        {"audio_filepath": "call.wav", "offset": 0.0, "duration": 1.0, "text": "right side", "audio_channel": 1},
        {"audio_filepath": "mono.wav", "offset": 0.0, "duration": 1.0, "text": "alone"}]
ONE_SIDE = [CALL[1], CALL[2]]  # only the right side of the call is in the manifest


def _said(line: dict, text: str, **fields) -> dict:
    row = {k: v for k, v in line.items() if k != "text"}
    row.update(pred_text=text, **fields)
    return {k: v for k, v in row.items() if v is not None}


CHANNEL_CASES = {
    # (manifest lines, predictions, each line's prediction, notes expected)
    "each side takes the prediction of its channel, in any order": (
        CALL, [_said(CALL[2], "alone"), _said(CALL[1], "right side"), _said(CALL[0], "left side")],
        ["left side", "right side", "alone"], []),
    "a channel written as text or as a list is the same channel": (
        CALL, [_said(CALL[0], "left side", audio_channel="0"), _said(CALL[1], "right side", audio_channel=[1]),
               _said(CALL[2], "alone")],
        ["left side", "right side", "alone"], []),
    "a side without its prediction has none": (
        CALL, [_said(CALL[0], "left side"), _said(CALL[2], "alone")],
        ["left side", None, "alone"], ["1 of 3 utterances have no prediction"]),
    "a prediction without a channel fits both sides and goes to neither": (
        CALL, [_said(CALL[0], "which side", audio_channel=None), _said(CALL[2], "alone")],
        [None, None, "alone"],
        ["p.json:1: 1 line of", "names no audio_channel while the manifest has their audio file and offset on "
         "several channels (the first is here: 'call.wav' at 0 s, on channels 0 and 1)",
         "write each prediction's audio_channel as the manifest has it"]),
    "a prediction without a channel fits a file the manifest has on one channel": (
        ONE_SIDE, [_said(CALL[1], "right side", audio_channel=None), _said(CALL[2], "alone")],
        ["right side", "alone"], []),
    "predictions of both sides for a line that mixes them go to neither": (
        [dict(CALL[0], audio_channel=None), CALL[2]],
        [_said(CALL[0], "left side"), _said(CALL[1], "right side"), _said(CALL[2], "alone")],
        [None, "alone"], ["p.json:1: 2 lines of", "mixes every channel", "channels 0 and 1"]),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
@pytest.mark.parametrize("lines, preds, expected, notes", CHANNEL_CASES.values(), ids=CHANNEL_CASES.keys())
def test_predictions_are_matched_by_channel(tmp_path, read, lines, preds, expected, notes):
    _tone(tmp_path / "call.wav", [220, 440])
    _tone(tmp_path / "mono.wav", [330])
    manifest = _write(tmp_path / "m.json", [{k: v for k, v in line.items() if v is not None} for line in lines])
    options = DatasetOptions(predictions=str(_write(tmp_path / "p.json", preds)))
    dataset = read(str(manifest), options, tmp_path / "cache")
    assert _preds(dataset) == expected
    said = "\n".join(str(w) for w in dataset.warnings)
    assert all(note in said for note in notes), said
    assert "repeats the audio file" not in said and "match no line" not in said and "matches no line" not in said
    if not notes:
        assert not dataset.warnings, said


def _lhotse_call(folder: Path, kind: str) -> tuple[list[str], dict]:
    """A stereo call (left loud, right soft), one supervision per channel, as a recordings +
    supervisions pair or as a Shar directory (one MultiCut: its member holds both channels); the
    sources and what a prediction of it names besides its channel."""
    lhotse = pytest.importorskip("lhotse")
    call = _tone(folder / "call.wav", [220, 440])
    sf.write(folder / "call.wav", sf.read(folder / "call.wav")[0] * np.array([1.0, 1 / 6]), SR)
    recording = lhotse.Recording.from_file(folder / "call.wav", recording_id="call")
    sides = lhotse.SupervisionSet.from_segments([
        lhotse.SupervisionSegment(id=f"call-{c}", recording_id="call", start=0.0, duration=1.0, channel=c, text=text)
        for c, text in enumerate(["left side", "right side"])])
    recordings = lhotse.RecordingSet.from_recordings([recording])
    if kind == "pair":
        recordings.to_file(folder / "recordings.jsonl.gz")
        sides.to_file(folder / "supervisions.jsonl.gz")
        return [str(folder / "recordings.jsonl.gz"), str(folder / "supervisions.jsonl.gz")], {"audio_filepath": str(call)}
    (folder / "shar").mkdir()
    lhotse.CutSet.from_manifests(recordings=recordings, supervisions=sides).to_shar(
        folder / "shar", fields={"recording": "flac"}, shard_size=10)
    return [str(folder / "shar")], {"audio_filepath": "call-0.flac", "shard_id": 0}


LHOTSE_CASES = {
    # (each side's prediction as its audio_channel names it, each supervision's prediction, the error)
    "each supervision takes the prediction of its channel": ([(1, "right side"), (0, "left side")],
                                                              ["left side", "right side"], None),
    "a prediction without a channel is refused with the fix": (
        [(None, "which side")], None, "p.json:1: 1 line of {p} names no audio_channel while the manifest has their "
                                      "audio file and offset on several channels"),
}


@pytest.mark.parametrize("kind", ["pair", "shar"])
@pytest.mark.parametrize("said, expected, error", LHOTSE_CASES.values(), ids=LHOTSE_CASES.keys())
def test_a_lhotse_call_merges_each_sides_prediction(tmp_path, kind, said, expected, error):
    sources, names = _lhotse_call(tmp_path, kind)
    preds = _write(tmp_path / "p.json", [{**names, "offset": 0.0, "pred_text": text,
                                          **({} if c is None else {"audio_channel": c})} for c, text in said])
    if error is None:
        dataset = build_dataset(sources, DatasetOptions(predictions=str(preds)))
        assert _preds(dataset) == expected and not dataset.warnings
    else:
        with pytest.raises(ManifestError) as raised:
            build_dataset(sources, DatasetOptions(predictions=str(preds)))
        assert error.format(p=preds) in str(raised.value)
        assert "write each prediction's audio_channel" in str(raised.value)


def test_each_side_of_a_shar_multicut_plays_its_own_channel(tmp_path):
    # the member holds both channels: without the line's audio_channel both sides were the mix
    sources, _ = _lhotse_call(tmp_path, "shar")
    dataset = build_dataset(sources)
    shards = TarShards(dataset.tar_shards, cache_dir=tmp_path / "index")
    rms = []
    for row in dataset.utterances.itertuples():
        audio = audio_input(row.audio_path, row.audio_filepath, row.shard_id, shards)
        with open_segment(audio, row.offset, row.duration, channel=getattr(row, "audio_channel", None)) as reader:
            rms.append(float(np.sqrt(np.mean(reader.segment().samples ** 2))))
    assert rms == pytest.approx([0.3 / np.sqrt(2), 0.05 / np.sqrt(2)], rel=0.02)


# --------------------------------------------------------------------------------- shards

def _tarred(folder: Path) -> Path:
    """Two NeMo tar shards that each hold a member named ``src_a_b.wav`` (src/a_b.wav and
    src/a/b.wav: NeMo squashes a path's folders into the name), different audio; ``src_c.wav``
    is in shard 0 only."""
    (folder / "src" / "a").mkdir(parents=True)
    first = {"audio_filepath": "src/a_b.wav", "duration": 1.0, "text": "first"}
    second = {"audio_filepath": "src/a/b.wav", "duration": 1.0, "text": "second"}
    only = {"audio_filepath": "src/c.wav", "duration": 1.0, "text": "only"}
    for line, freq in ((first, 220), (second, 440), (only, 330)):
        _tone(folder / line["audio_filepath"], [freq])
    cwd = os.getcwd()
    os.chdir(folder)  # NeMo names members after the paths as its manifest writes them
    try:
        lines = write_nemo_shard(folder, [first, only], 0)[1] + write_nemo_shard(folder, [second], 1)[1]
    finally:
        os.chdir(cwd)
    assert lines[0]["audio_filepath"] == lines[2]["audio_filepath"] == "src_a_b.wav"
    return _write(folder / "tarred_audio_manifest.json", lines)


def _member(name: str, text: str, shard: int | None) -> dict:
    return {"audio_filepath": name, "duration": 1.0, "pred_text": text, **({} if shard is None else {"shard_id": shard})}


SHARD_CASES = {
    # (predictions, each line's prediction: shard 0's src_a_b.wav, src_c.wav, shard 1's src_a_b.wav; notes)
    "each shard's member takes the prediction of its shard": (
        [_member("src_a_b.wav", "second", 1), _member("src_c.wav", "only", 0), _member("src_a_b.wav", "first", 0)],
        ["first", "only", "second"], []),
    "a prediction without shard_id fits both members and goes to neither": (
        [_member("src_a_b.wav", "first", None), _member("src_c.wav", "only", None)],
        [None, "only", None],
        ["p.json:1: 1 line of", "names no shard_id while the manifest has their member name and offset in several "
         "tar shards (the first is here: 'src_a_b.wav' at 0 s, in shards 0 and 1)",
         "write each prediction's shard_id as the tarred manifest has it", "2 of 3 utterances have no prediction"]),
    "two predictions without shard_id are not taken for a repeat and a pick": (
        [_member("src_a_b.wav", "first", None), _member("src_a_b.wav", "second", None),
         _member("src_c.wav", "only", 0)],
        [None, "only", None], ["names no shard_id"]),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
@pytest.mark.parametrize("preds, expected, notes", SHARD_CASES.values(), ids=SHARD_CASES.keys())
def test_predictions_are_matched_by_shard(tmp_path, read, preds, expected, notes):
    manifest = _tarred(tmp_path)
    options = DatasetOptions(predictions=str(_write(tmp_path / "p.json", preds)))
    dataset = read(str(manifest), options, tmp_path / "cache")
    assert _preds(dataset) == expected
    said = "\n".join(str(w) for w in dataset.warnings)
    assert all(note in said for note in notes), said
    assert "match no line" not in said and "matches no line" not in said
    if not notes:
        assert not dataset.warnings, said


def test_predictions_that_fit_only_shared_members_are_refused_by_the_cli(tmp_path):
    manifest = _tarred(tmp_path)
    _write(tmp_path / "p.json", [_member("src_a_b.wav", "first", None)])
    r = _sde("stats", manifest.name, "--predictions", "p.json", "--json", "--no-cache", cwd=tmp_path)
    assert r.returncode == 1
    assert "p.json:1: 1 line of p.json names no shard_id" in r.stderr, r.stderr
    assert "no line of tarred_audio_manifest.json has a prediction" in r.stderr and "Traceback" not in r.stderr
