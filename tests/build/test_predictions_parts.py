"""--predictions on a dataset built part by part: the predictions file is matched once to every
line (sde.build.predictions), and the result is the dataset a one-piece build gives."""

from __future__ import annotations

import json

import pytest

from sde.build.load import load_dataset
from sde.build.predictions import plan_file
from sde.build.stream import build_in_parts
from sde.dataset import DatasetOptions, build_dataset
from sde.manifest import ManifestError
from tests.build.build_kit import PART, assert_same_dataset, valid_rows, write_mixed_manifest, write_predictions


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predictions")
    manifest = write_mixed_manifest(folder)
    return manifest, write_predictions(folder, valid_rows(manifest))


CASES = {
    "beside the manifest's own hypotheses": {},
    "with a hypothesis asked for": {"pred_fields": ("pred_text_b=b",)},
    "normalised scores": {"normalize": ("lower", "punct")},
}


@pytest.mark.parametrize("extra", CASES.values(), ids=CASES.keys())
def test_matched_part_by_part_is_the_one_piece_dataset(data, tmp_path, extra):
    manifest, predictions = data
    options = DatasetOptions(predictions=str(predictions), **extra)
    messages = []
    built = load_dataset(str(manifest), options, cache_dir=tmp_path, part_bytes=PART, threads=2,
                         status=messages.append)
    assert any(m.startswith("matching the predictions") for m in messages), messages
    assert any(m.startswith("building ") and " parts " in m for m in messages), messages
    expected = build_dataset(str(manifest), options)
    assert "pred_text_preds" in [h.field for h in expected.hypotheses]
    assert any("have no prediction in" in w.reason for w in expected.warnings)
    assert any(p.path == str(predictions) for p in expected.problems)
    assert_same_dataset(built, expected)


def test_a_set_of_shards_is_matched_as_one_dataset(tmp_path):
    rows = valid_rows(write_mixed_manifest(tmp_path, lines=300))
    for k in range(4):
        (tmp_path / f"shard_{k}.json").write_text(
            "".join(json.dumps(r) + "\n" for r in rows[k::4]), encoding="utf-8")
    predictions = write_predictions(tmp_path, rows)
    options = DatasetOptions(predictions=str(predictions))
    pattern = str(tmp_path / "shard_{0..3}.json")
    built = load_dataset(pattern, options, use_cache=False, part_bytes=PART, threads=2)
    assert_same_dataset(built, build_dataset(pattern, options))


def test_predictions_named_pred_text_when_the_manifest_has_none(tmp_path):
    manifest = tmp_path / "m.json"
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"word {i % 9} and more words"} for i in range(400)]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    predictions = write_predictions(tmp_path, rows)
    options = DatasetOptions(predictions=str(predictions))
    built = load_dataset(str(manifest), options, use_cache=False, part_bytes=PART, threads=1)
    assert [h.field for h in built.hypotheses] == ["pred_text"]
    assert_same_dataset(built, build_dataset(str(manifest), options))


ERRORS = {
    "no line matches": ('{"audio_filepath": "x/nowhere.wav", "pred_text": "a"}\n', False, "no line matches"),
    "no valid prediction": ("{not json\n[1, 2]\n", False, "preds.json"),
    "--strict: its first bad line": (None, True, "preds.json:11: invalid JSON"),
}


@pytest.mark.parametrize("text, strict, said", ERRORS.values(), ids=ERRORS.keys())
def test_a_predictions_file_that_cannot_be_used_fails_as_a_one_piece_read(tmp_path, text, strict, said):
    manifest = tmp_path / "m.json"
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"word {i % 9} and more words"} for i in range(400)]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    predictions = write_predictions(tmp_path, rows)
    if text is not None:
        predictions.write_text(text, encoding="utf-8")
    options = DatasetOptions(predictions=str(predictions), strict=strict)
    with pytest.raises(ManifestError) as one_piece:
        build_dataset(str(manifest), options)
    with pytest.raises(ManifestError) as in_parts:
        load_dataset(str(manifest), options, use_cache=False, part_bytes=PART, threads=2)
    assert str(in_parts.value) == str(one_piece.value)
    assert said in str(in_parts.value)


def test_a_resumed_build_reuses_the_match_and_a_lost_match_is_made_again(data, tmp_path):
    manifest, predictions = data
    options = DatasetOptions(predictions=str(predictions))
    folder = tmp_path / "build"
    build_in_parts(str(manifest), options, folder, part_bytes=PART, threads=1)
    assert plan_file(folder).exists()
    assert not list(folder.glob("keys-*")) and not list(folder.glob("preds-*"))  # only the match stays
    infos = sorted(folder.glob("part-*.info"))
    infos[2].unlink()  # as if killed while building part 2
    messages = []
    build_in_parts(str(manifest), options, folder, part_bytes=PART, threads=1, say=messages.append)
    assert not any(m.startswith("matching") for m in messages), messages
    assert any(m.startswith("building 1 parts") for m in messages), messages
    plan_file(folder).unlink()  # interrupted before the match was written: matched again
    messages.clear()
    joined = build_in_parts(str(manifest), options, folder, part_bytes=PART, threads=1, say=messages.append)
    assert any(m.startswith("matching") for m in messages), messages
    assert "pred_text_preds" in [h.field for h in joined.hypotheses]
