"""The CER denominator (`ref_chars`) of a dataset built part by part: a hypothesis's `ref_chars`
column exists only where a reference's character count for CER differs from its displayed one (a
reference with spaces around it), so most parts lack it. Those parts' rows read NaN, and the
summary failed ("cannot convert float NaN to integer")."""

from __future__ import annotations

import json

import pytest

from sde.build.load import load_dataset
from sde.dataset import DatasetOptions, build_dataset
from tests.build.build_kit import PART, assert_same_dataset

WORDS = "the cat sat on a mat dog ran far away".split()


def write_manifest(folder, padded_from: int, lines: int = 300):
    rows = []
    for i in range(lines):
        ref = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 7))
        text = f" {ref} " if i >= padded_from else ref  # only the last parts pad their references
        rows.append({"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 5, "text": text,
                     "pred_text": ref if i % 3 else ref + " uh", "pred_text_b": ref.replace("cat", "hat")})
    path = folder / "m.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("padded_from", [250, 0, 300], ids=["last-parts-padded", "all-padded", "none-padded"])
def test_parts_without_a_ref_chars_column_count_their_references(tmp_path, padded_from):
    manifest = write_manifest(tmp_path, padded_from)
    messages: list[str] = []
    built = load_dataset(str(manifest), DatasetOptions(), cache_dir=tmp_path / "cache", part_bytes=PART,
                         threads=2, status=messages.append)
    assert any(" parts " in m for m in messages), messages  # built part by part
    one_piece = build_dataset(str(manifest), DatasetOptions())
    for column in ("ref_chars", "ref_chars_b"):
        if column in built.utterances:
            assert built.utterances[column].notna().all(), column
    summary, expected = built.summary()["hypotheses"], one_piece.summary()["hypotheses"]
    assert summary.keys() == expected.keys()
    for field, scores in expected.items():
        for name, value in scores.items():
            assert summary[field][name] == (pytest.approx(value) if isinstance(value, float) else value), (field, name)
    assert_same_dataset(built, one_piece)
