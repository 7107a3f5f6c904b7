"""A line that `--apply-reviews` corrects stays the user's line: only `text` (and the added
`text_original`, `review_note`, `review_tags`) change; numbers (1.50, 1E-5, 1e400, long decimals),
escapes, spacing, key order and line ends are kept as written, and the line stays valid JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sde.dataset import build_dataset
from sde.export import plan_export, set_members, write_export
from sde.reviews import open_reviews, utterance_keys

ODD = ('{ "audio_filepath":"a.wav" ,"duration": 1.50, "text": "caf\\u00e9 one",\t"score": 1E-5, "w": 3.0, '
       '"p": 0.1000000000000000055511, "huge": 1e400, "id": 12345678901234567890123, "nested": {"a": [1.0, 2.50]} }')
PLAIN = '{"audio_filepath": "b.wav", "duration": 2, "text": "two", "text_original": "zwei"}'


def export_with(tmp_path: Path, raw: bytes, reviews: dict[int, dict]) -> list[bytes]:
    manifest = tmp_path / "m.json"
    manifest.write_bytes(raw)
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, tmp_path / "r.sqlite")
    for position, review in reviews.items():
        store.set_review(utterance_keys(dataset).key(position), **review)
    try:
        plan = plan_export(dataset, store=store, apply_reviews=True)
        write_export(dataset, plan, tmp_path / "out.json")
    finally:
        store.close()
    return (tmp_path / "out.json").read_bytes().splitlines(keepends=True)


def test_a_fixed_line_keeps_every_other_byte(tmp_path):
    out = export_with(tmp_path, (ODD + "\r\n" + PLAIN + "\n").encode(), {0: {"status": "fix", "text": "café uno"}})
    expected = ODD.replace('"caf\\u00e9 one"', '"café uno"')
    expected = expected[:expected.rindex("}")].rstrip() + ', "text_original": "café one" }'
    assert out[0] == (expected + "\r\n").encode()
    json.loads(out[0])   # strict enough: 1e400 is still a number, not Infinity
    assert "Infinity" not in out[0].decode()
    assert out[1] == (PLAIN + "\n").encode()


def test_note_tags_and_an_existing_text_original(tmp_path):
    out = export_with(tmp_path, (ODD + "\n" + PLAIN + "\n").encode(),
                      {1: {"status": "fix", "text": "deux", "note": "french?", "tags": ["lang", "noise"]}})
    assert out[0] == (ODD + "\n").encode()
    # the oldest text_original is kept; text replaced where it stands; note and tags appended
    assert out[1] == (b'{"audio_filepath": "b.wav", "duration": 2, "text": "deux", "text_original": "zwei", '
                      b'"review_note": "french?", "review_tags": ["lang", "noise"]}\n')


@pytest.mark.parametrize("text, values, expected", [
    ("{}", {"a": 1}, '{"a": 1}'),
    ("  { }  ", {"a": "é"}, '  { "a": "é"}  '),
    ('{"a": 1, "a": 2}', {"a": 3}, '{"a": 1, "a": 3}'),           # the value a reader takes
    ('{"t": "x" ,"n": 1E2}', {"t": "y", "u": None}, '{"t": "y" ,"n": 1E2, "u": null}'),
    ('{"t": {"deep": [1, {"x": "}"}]}, "z": 0}', {"t": "flat"}, '{"t": "flat", "z": 0}'),
])
def test_set_members(text, values, expected):
    assert set_members(text, values) == expected


@pytest.mark.parametrize("text", ["[1]", '{"a": 1} x', '{"a" 1}', '{"a": 1,}'])
def test_set_members_refuses_what_is_not_one_object(text):
    with pytest.raises(ValueError):
        set_members(text, {"a": 2})


def test_a_fix_of_a_line_whose_text_is_in_a_text_file(tmp_path):
    (tmp_path / "t0.txt").write_text("the words in the file\n", encoding="utf-8")
    raw = b'{"audio_filepath": "a.wav", "duration": 1.25, "text_filepath": "t0.txt"}\n'
    out = export_with(tmp_path, raw, {0: {"status": "fix", "text": "the right words"}})
    assert out == [b'{"audio_filepath": "a.wav", "duration": 1.25, "text_filepath": "t0.txt", '
                   b'"text_original": "the words in the file", "text": "the right words"}\n']
