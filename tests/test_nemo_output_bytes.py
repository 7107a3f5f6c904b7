"""`sde transcribe` keeps the user's lines: each output line is its input line byte for byte with
only the prediction field set (or, for a line whose audio could not be read, removed): numbers such
as 1.50, 1E-5 or 1e400, escapes, spacing, key order, other repeated keys and CRLF line ends stay as
written; the file's BOM is not copied (a NeMo reader would fail on it in line 1). Local, Ray and
resumed runs write the same bytes. For a Lhotse source, an unreadable file is named by the cut
(or supervision) and the file the user gave, never by a line of the NeMo view sde wrote.

Pure cases run everywhere; those marked `nemo` run the tiny NeMo model of conftest.py over
espeak-ng speech, and the Ray one a real local Ray instance."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sde.dataset import build_dataset
from sde.export import remove_members, set_members
from sde.nemo.command import transcribe_command
from sde.nemo.jobs import predictions_for, transcribe_manifest
from sde.nemo.model import TranscribeError
from sde.nemo.parts import part_path, with_prediction, write_output
from sde.nemo.ray_engine import RayOptions

ODD = ('{ "audio_filepath":"a.wav" ,"duration": 1.50, "text": "caf\\u00e9 one",\t"score": 1E-5, '
       '"p": 0.1000000000000000055511, "huge": 1e400, "id": 12345678901234567890123, "nested": {"a": [1.0, 2.50]} }')


@pytest.mark.parametrize("line, pred, expected", [
    (ODD, "hi", ODD[:-2] + ', "pred_text": "hi" }'),                                  # numbers, escapes, spacing
    ('{"a": 1}', "café ✓ \"q\"", '{"a": 1, "pred_text": "café ✓ \\"q\\""}'),         # the prediction as UTF-8
    ('{"pred_text": "old", "text": "x"}', "new", '{"pred_text": "new", "text": "x"}'),  # replaced where it stands
    ('{"pred_text": "a", "text": "x", "pred_text": "b"}', "new", '{"text": "x", "pred_text": "new"}'),  # once
    ('{"pred\\u005ftext": "old", "t": 1}', "new", '{"pred\\u005ftext": "new", "t": 1}'),  # an escaped key is it
    ('{"k": 1, "k": 2}', "p", '{"k": 1, "k": 2, "pred_text": "p"}'),                  # other repeats kept
    ("  { }  ", "p", '  { "pred_text": "p"}  '),
    ('{"a": 1, "pred_text": "old", "b": 2}', None, '{"a": 1, "b": 2}'),             # an older run's: removed
    ('{"pred_text": "old", "a": 1.50}', None, '{"a": 1.50}'),
    ('{"pred_text": "a", "x": 1E2, "pred_text": "b"}', None, '{"x": 1E2}'),          # every repeat
    ('{"pred\\u005ftext": "old", "a": 1}', None, '{"a": 1}'),
    ('{ "pred_text": "old" }', None, "{  }"),
    (ODD, None, ODD),                                                                  # nothing to remove
], ids=["odd numbers and spacing", "unicode prediction", "old prediction replaced", "repeated prediction set once",
        "escaped key set", "other repeated keys kept", "empty object", "unreadable: old prediction removed",
        "unreadable: first member removed", "unreadable: every repeat removed", "unreadable: escaped key removed",
        "unreadable: only member removed", "unreadable: line unchanged"])
def test_a_line_keeps_every_byte_but_its_prediction(line, pred, expected):
    got = with_prediction(line, "pred_text", pred, Path("m.json"), 1)
    assert got == expected
    obj = json.loads(got)  # still JSON (1e400 a number, not Infinity) with this model's prediction or none
    assert obj.get("pred_text") == pred and "Infinity" not in got


@pytest.mark.parametrize("text, values, expected", [
    ('{"a": 1}', {"a": 2, "b": 3}, '{"a": 2, "b": 3}'),                  # set and added in one call: member scan
    ('{"a": 1,"b" : 2 }', {"c": 3}, '{"a": 1,"b" : 2, "c": 3 }'),        # added only: the quick path, same bytes
    ('{"a": 1, "b": 2, "a": 3, "b": 4}', {"a": 0, "b": 9}, '{"a": 0, "b": 9}'),
    ('{"b": 1, "a": 2, "b": 3}', {"a": 0, "b": 9}, '{"a": 0, "b": 9}'),
    ('{"x": 1}', {}, '{"x": 1}'),
])
def test_set_members_single_leaves_one_member_per_key(text, values, expected):
    assert set_members(text, values, single=True) == expected


@pytest.mark.parametrize("text, keys, expected", [
    ('{"a": 1, "b": 2, "c": 3}', ["a", "b"], '{"c": 3}'),
    ('{"a": 1, "b": 2, "c": 3}', ["b", "c"], '{"a": 1}'),
    ('{"a": 1, "b": 2, "c": 3}', ["a", "c"], '{"b": 2}'),
    ('{"a" : 1 ,\t"b": [1, {"a": 2}] }', ["a"], '{"b": [1, {"a": 2}] }'),  # a nested "a" is not a member
    ('{"a": 1}', ["z"], '{"a": 1}'),
])
def test_remove_members(text, keys, expected):
    assert remove_members(text, keys) == expected


@pytest.mark.parametrize("text", ["[1]", '{"a": 1} x', '{"a" 1}', '{"a": 1,}', '"a"'])
def test_remove_members_refuses_what_is_not_one_object(text):
    with pytest.raises(ValueError):
        remove_members(text, ["a"])


def test_the_written_file_keeps_line_ends_and_drops_the_bom(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_bytes(b"\xef\xbb\xbf" + ODD.encode() + b"\r\n"
                         b"\n"                                              # a blank line: dropped
                         b'  {"a": 1.50}   \n'                              # spaces around the object: kept
                         b'{"pred_text": "stale", "b": 2}\r\n'
                         b'{"c": "\\ud83d\\ude00"}')                        # the last line, without an end
    out = tmp_path / "o.json"
    write_output(manifest, out, "pred_text", None, {0: "x", 1: "y", 2: None, 3: "z"})
    assert out.read_bytes() == (ODD[:-2] + ', "pred_text": "x" }\r\n'
                                '  {"a": 1.50, "pred_text": "y"}   \n'
                                '{"b": 2}\r\n'
                                '{"c": "\\ud83d\\ude00", "pred_text": "z"}\r\n').encode()
    write_output(manifest, out, "pred_text", (1, 2), {1: "y", 3: "z"})     # a shard: its lines only
    assert out.read_bytes() == b'  {"a": 1.50, "pred_text": "y"}   \n{"c": "\\ud83d\\ude00", "pred_text": "z"}\r\n'


# ---------------------------------------------------------------------------- with the NeMo model


def _odd_manifest(audio_dir, tmp_path: Path) -> tuple[Path, list[bytes]]:
    """Real speech under odd lines; the last one's audio is missing and it holds an older prediction."""
    d, dur = audio_dir
    lines = [
        f'{{"audio_filepath": "{d / "one.wav"}", "duration": {dur["one.wav"]:.2f}0, "text": "hell\\u00f6", '
        '"w": 1E-5, "huge": 1e400, "k": 1, "k": 2}',
        f'  {{ "audio_filepath" : "{d / "long.wav"}", "offset": 0.40, "duration": 1.10, "text": "fox" }}  ',
        f'{{"audio_filepath": "{d / "two.wav"}", "duration": {dur["two.wav"]}, "pred_text": "old", "text": "x"}}',
        f'{{"audio_filepath": "{tmp_path / "gone.wav"}", "duration": 1.0, "text": "gone", "pred_text": "old"}}',
    ]
    raw = [line.encode() + end for line, end in zip(lines, (b"\r\n", b"\n", b"\n", b"\r\n"))]
    manifest = tmp_path / "odd.json"
    manifest.write_bytes(b"".join(raw))
    return manifest, raw


def _check_kept(out: Path, raw: list[bytes]) -> None:
    got = out.read_bytes().splitlines(keepends=True)
    assert len(got) == len(raw)
    for n, (line, before) in enumerate(zip(got, raw)):
        pred = json.loads(line).get("pred_text")
        if n == 3:  # unreadable: the older prediction removed, every other byte kept
            assert pred is None and line == before.replace(b', "pred_text": "old"', b"")
        elif n == 2:  # the older prediction replaced where it stood
            assert isinstance(pred, str) and line == before.replace(b'"old"', json.dumps(pred).encode())
        else:
            body, end = before.rstrip(b"\r\n"), before[len(before.rstrip(b"\r\n")):]
            close = body.rindex(b"}")
            at = len(body[:close].rstrip())
            assert line == body[:at] + b', "pred_text": ' + json.dumps(pred).encode() + body[at:] + end


@pytest.mark.nemo
def test_transcribe_keeps_the_users_bytes_and_resumes_to_the_same(audio_dir, tiny_nemo, tmp_path):
    manifest, raw = _odd_manifest(audio_dir, tmp_path)
    whole = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "whole.json", device="cpu", batch_size=1,
                                progress=False, warn=lambda _: None)
    _check_kept(whole, raw)
    stops = iter([False, False])  # stopped after two batches, then resumed from the part file
    with pytest.raises(TranscribeError, match="stopped after"):
        transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "resumed.json", device="cpu", batch_size=1,
                            progress=False, should_stop=lambda: next(stops, True), warn=lambda _: None)
    assert part_path(tmp_path / "resumed.json").exists()
    resumed = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "resumed.json", device="cpu",
                                  batch_size=1, progress=False, warn=lambda _: None)
    assert resumed.read_bytes() == whole.read_bytes()


@pytest.mark.nemo
def test_ray_writes_the_same_bytes(audio_dir, tiny_nemo, tmp_path):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    manifest, raw = _odd_manifest(audio_dir, tmp_path)
    local = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "local.json", device="cpu", batch_size=2,
                                progress=False, warn=lambda _: None)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        on_ray = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "ray.json", batch_size=2,
                                     progress=False, engine="ray", ray=RayOptions(workers=1), warn=lambda _: None)
    finally:
        ray.shutdown()
    assert on_ray.read_bytes() == local.read_bytes()
    _check_kept(on_ray, raw)


# ---------------------------------------------------------------------------- Lhotse sources


def _recordings(audio_dir, tmp_path: Path):
    """Three real recordings (copies): the second's file then deleted, the third's overwritten with noise bytes."""
    lhotse = pytest.importorskip("lhotse")
    d, _ = audio_dir
    recs, sups = [], []
    for name, text in [("one", "hello world"), ("two", "speech data explorer"), ("three", "good morning")]:
        shutil.copy(d / f"{name}.wav", tmp_path / f"{name}.wav")
        rec = lhotse.Recording.from_file(tmp_path / f"{name}.wav", recording_id=f"r-{name}")
        recs.append(rec)
        sups.append(lhotse.SupervisionSegment(id=f"s-{name}", recording_id=rec.id, start=0.0,
                                              duration=rec.duration, text=text))
    return lhotse, recs, sups


def _break_audio(tmp_path: Path) -> None:
    (tmp_path / "two.wav").unlink()
    (tmp_path / "three.wav").write_bytes(bytes(range(256)) * 8)


@pytest.mark.nemo
def test_a_cutsets_unreadable_audio_is_named_by_its_cut(audio_dir, tiny_nemo, tmp_path):
    lhotse, recs, sups = _recordings(audio_dir, tmp_path)
    cuts = [lhotse.MonoCut(id=f"c-{r.id[2:]}", start=0.0, duration=r.duration, channel=0, recording=r,
                           supervisions=[s]) for r, s in zip(recs, sups)]
    source = tmp_path / "cuts.jsonl.gz"
    lhotse.CutSet.from_cuts(cuts).to_file(source)
    _break_audio(tmp_path)
    said: list[str] = []
    out = transcribe_manifest(source, str(tiny_nemo), out=tmp_path / "o.json", device="cpu", progress=False,
                              warn=said.append)
    assert len(said) == 1 and said[0].startswith("2 of 3 utterances could not be read")
    assert f"\n  {source}:2 (cut c-two): audio file not found: " in said[0]
    assert f"\n  {source}:3 (cut c-three): cannot read audio " in said[0]
    assert ".lhotse.json" not in said[0]
    assert [("pred_text" in json.loads(line)) for line in out.read_text().splitlines()] == [True, False, False]
    said.clear()  # the same names from the UI's job and `sde CUTS --model` (predictions for the dataset)
    preds = predictions_for(build_dataset(source), str(tiny_nemo), device="cpu", use_cache=False, warn=said.append)
    assert [p is None for p in preds] == [False, True, True]
    assert len(said) == 1 and f"\n  {source}:2 (cut c-two): audio file not found: " in said[0]


@pytest.mark.nemo
def test_a_pairs_unreadable_audio_is_named_by_its_supervision(audio_dir, tiny_nemo, tmp_path):
    lhotse, recs, sups = _recordings(audio_dir, tmp_path)
    recordings, supervisions = tmp_path / "recs.jsonl.gz", tmp_path / "sups.jsonl.gz"
    lhotse.RecordingSet.from_recordings(recs).to_file(recordings)
    lhotse.SupervisionSet.from_segments(sups).to_file(supervisions)
    _break_audio(tmp_path)
    r = CliRunner().invoke(transcribe_command, [str(recordings), str(supervisions), "--model", str(tiny_nemo),
                                                "--out", str(tmp_path / "o.json"), "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert f"{supervisions}:2 (supervision s-two): audio file not found: " in r.output
    assert f"{supervisions}:3 (supervision s-three): cannot read audio " in r.output
    assert ".lhotse.json" not in r.output

