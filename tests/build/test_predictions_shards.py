"""--predictions for a NeMo tarred manifest: two tars may each hold a member of one name, so a
prediction is matched by its shard_id first; read in one piece and part by part alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sde.build.load import load_dataset
from sde.dataset import DatasetOptions, build_dataset

# Two shards each hold a member "a.wav" (NeMo names members by file name, so recordings of one
# name from two folders meet this way); "b.wav" is in one shard only.
LINES = [{"audio_filepath": "a.wav", "duration": 1.0, "text": "one", "shard_id": 0},
         {"audio_filepath": "a.wav", "duration": 1.0, "text": "two", "shard_id": 1},
         {"audio_filepath": "b.wav", "duration": 1.0, "text": "bee", "shard_id": 0}]


def _said(*texts: str, **fields) -> list[dict]:
    return [dict(line, pred_text=text, **fields) for line, text in zip(LINES, texts) if text is not None]


CASES = {
    # (predictions file lines, each manifest line's prediction, warnings expected)
    "each shard's member gets its own prediction": (_said("one", "two", "bee"), ["one", "two", "bee"], []),
    "in any order": (_said("one", "two", "bee")[::-1], ["one", "two", "bee"], []),
    "a shard id written as text": (
        [dict(p, shard_id=str(p["shard_id"])) for p in _said("one", "two", "bee")], ["one", "two", "bee"], []),
    "a shared name without its shard's prediction has none": (
        _said("one", None, "bee"), ["one", None, "bee"], ["have no prediction"]),
    "a name in one shard matches a prediction of another (the data sharded otherwise)": (
        _said(None, None, "bee", shard_id=7) + _said("one"), ["one", None, "bee"], ["have no prediction"]),
    "a prediction repeated in its shard: the last is used": (
        _said("one", "two", "bee") + _said(None, "too"), ["one", "too", "bee"], ["repeats the audio file"]),
}


def _write(folder: Path, name: str, rows: list[dict]) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


READS = {
    "one piece": lambda manifest, options, cache: build_dataset(str(manifest), options),
    "part by part": lambda manifest, options, cache: load_dataset(str(manifest), options, cache_dir=cache,
                                                                  part_bytes=64, threads=1),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
@pytest.mark.parametrize("preds, expected, warned", CASES.values(), ids=CASES.keys())
def test_predictions_are_matched_by_shard_and_member(tmp_path, read, preds, expected, warned):
    manifest = _write(tmp_path, "tarred_audio_manifest.json", LINES)
    predictions = _write(tmp_path, "predictions.json", preds)
    dataset = read(manifest, DatasetOptions(predictions=str(predictions)), tmp_path / "cache")
    column = dataset.utterances["pred_text"]
    got = [None if missing else value for value, missing in zip(column.astype(object), column.isna())]
    assert got == expected
    reasons = [w.reason for w in dataset.warnings]
    assert all(any(w in r for r in reasons) for w in warned), reasons
    assert not any("repeats the audio file" in r for r in reasons) or "repeats the audio file" in warned
    assert not any(" match no line" in r or " matches no line" in r for r in reasons), reasons
