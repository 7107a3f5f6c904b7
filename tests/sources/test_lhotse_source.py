"""Lhotse sources (a CutSet, a recordings + supervisions pair, a Shar directory) through the reader,
the CLI, a real server and `sde transcribe`, built from espeak-ng speech with lhotse itself."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest
import soundfile as sf

from sde.manifest import ManifestError, read_manifest
from tests.browser_kit import api, sde_server

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# (supervision id, recording, absolute start in the recording, duration before clipping, text)
SUPERVISIONS = [
    ("s1", "one", 0.0, None, "hello world"),
    ("s2", "two", 0.0, None, "speech data explorer"),
    ("s3a", "long", 1.5, 1.0, "the quick"),
    ("s3b", "long", -0.5, 2.0, "brown fox"),  # starts 0.5 s before the recording ends: clipped to 0.5 s
]
LONG_CUT_START = 1.0  # the long recording's cut starts here: its supervisions are relative to it


def sde(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _recording(folder: Path, name: str) -> Recording:
    return Recording.from_file(folder / "audio" / f"{name}.wav", recording_id=name, relative_path_depth=2)


def _absolute(name: str, start: float, lengths: dict[str, float]) -> float:
    return start if start >= 0 else lengths[name] + start


def _supervision(sid: str, rec: str, start: float, duration: float | None, text: str,
                 lengths: dict[str, float], cut_start: float = 0.0) -> SupervisionSegment:
    begin = _absolute(rec, start, lengths)
    return SupervisionSegment(
        id=sid, recording_id=rec, start=round(begin - cut_start, 6), duration=duration or lengths[rec], text=text,
        speaker=f"spk_{rec}", language="en", gender="f" if rec == "one" else None,
        custom={"pred_text": text.replace("world", "word"), "quality": {"snr": 20 + len(sid)}, "split": "dev"})


@pytest.fixture(scope="module")
def data(audio_dir, tmp_path_factory) -> dict:
    """cuts.jsonl.gz, recordings + supervisions, and a Shar directory of the same speech."""
    speech, lengths_by_file = audio_dir
    folder = tmp_path_factory.mktemp("lhotse")
    (folder / "audio").mkdir()
    for name in ("one", "two", "long"):
        shutil.copy(speech / f"{name}.wav", folder / "audio" / f"{name}.wav")
    lengths = {name: lengths_by_file[f"{name}.wav"] for name in ("one", "two", "long")}
    recordings = {name: _recording(folder, name) for name in lengths}
    RecordingSet.from_recordings(recordings.values()).to_file(folder / "recordings.jsonl.gz")
    SupervisionSet.from_segments(_supervision(*s, lengths) for s in SUPERVISIONS).to_file(
        folder / "supervisions.jsonl.gz")
    cuts = []
    for name, rec in recordings.items():
        start = LONG_CUT_START if name == "long" else 0.0
        sups = [_supervision(*s, lengths, cut_start=start) for s in SUPERVISIONS if s[1] == name]
        cuts.append(MonoCut(id=f"cut_{name}", start=start, duration=lengths[name] - start, channel=0,
                            recording=rec, supervisions=sups, custom={"origin": "espeak"}))
    cutset = CutSet.from_cuts(cuts)
    cutset.to_file(folder / "cuts.jsonl.gz")
    (folder / "shar").mkdir()
    with_paths = CutSet.from_cuts(c.with_recording_path_prefix(str(folder)) for c in cutset)
    with_paths.to_shar(folder / "shar", fields={"recording": "flac"}, shard_size=2)
    return {"folder": folder, "lengths": lengths}


def expected_rows(lengths: dict[str, float], kind: str) -> list[tuple[str, float, float, str]]:
    """(supervision id, offset, duration, text) of each row; for Shar the offset within the cut's audio."""
    rows = []
    for sid, rec, start, duration, text in SUPERVISIONS:
        begin = _absolute(rec, start, lengths)
        end = min(begin + (duration or lengths[rec]), lengths[rec])
        cut_start = LONG_CUT_START if rec == "long" and kind == "shar" else 0.0
        rows.append((sid, begin - cut_start, end - begin, text))
    return rows


SOURCES = {"cuts": ["cuts.jsonl.gz"], "pair": ["supervisions.jsonl.gz", "recordings.jsonl.gz"], "shar": ["shar"]}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_each_supervision_is_one_utterance_of_its_segment(data, kind):
    m = read_manifest([str(data["folder"] / s) for s in SOURCES[kind]])
    t = m.table
    got = list(zip(t["supervision_id"], t["offset"], t["duration"], t["text"]))
    for (sid, offset, duration, text), want in zip(got, expected_rows(data["lengths"], kind)):
        assert (sid, text) == (want[0], want[3])
        assert offset == pytest.approx(want[1], abs=1e-6) and duration == pytest.approx(want[2], abs=1e-6)
    assert len(got) == len(SUPERVISIONS) and not m.problems
    assert [h.field for h in m.hypotheses] == ["pred_text"]
    assert list(t["speaker"][:2]) == ["spk_one", "spk_two"] and set(t["language"]) == {"en"}
    assert json.loads(t["quality"][0]) == {"snr": 22} and t["split"][0] == "dev"
    assert list(t["recording_id"]) == ["one", "two", "long", "long"]


@pytest.mark.parametrize("kind, audio, lines, shard_ids", [
    ("cuts", ["audio/one.wav", "audio/two.wav", "audio/long.wav", "audio/long.wav"], [1, 2, 3, 3], None),
    ("pair", ["audio/one.wav", "audio/two.wav", "audio/long.wav", "audio/long.wav"], [1, 2, 3, 4], None),
    ("shar", ["cut_one.flac", "cut_two.flac", "cut_long.flac", "cut_long.flac"], [1, 2, 1, 1], [0, 0, 1, 1]),
])
def test_rows_name_their_audio_and_line(data, kind, audio, lines, shard_ids):
    m = read_manifest([str(data["folder"] / s) for s in SOURCES[kind]])
    t = m.table
    assert list(t["audio_filepath"]) == audio and list(t["line"]) == lines
    if shard_ids is None:
        assert list(t["audio_path"]) == [str(data["folder"] / a) for a in audio] and not m.tar_shards
    else:
        assert list(t["shard_id"]) == shard_ids
        assert m.tar_shards == tuple(str(data["folder"] / "shar" / f"recording.00000{k}.tar") for k in (0, 1))
        assert list(t["source"]) == ["shar/cuts.000000.jsonl.gz"] * 2 + ["shar/cuts.000001.jsonl.gz"] * 2


@pytest.mark.parametrize("kind", list(SOURCES))
def test_cli_stats_counts_hours_and_scores_the_custom_hypothesis(data, kind):
    r = sde("stats", *SOURCES[kind], "--json", "--no-cache", cwd=data["folder"])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    seconds = sum(row[2] for row in expected_rows(data["lengths"], kind))
    assert summary["utterances"] == len(SUPERVISIONS) and summary["skipped_lines"] == 0
    assert summary["hours"] == pytest.approx(seconds / 3600, abs=1e-5)
    # one word of 2 + 3 + 2 + 2 reference words differs ("world" → "word")
    assert summary["hypotheses"]["pred_text"]["wer"] == pytest.approx(100 / 9, abs=1e-3)


@pytest.mark.parametrize("kind", ["cuts", "shar"])
def test_server_lists_the_rows_and_plays_each_supervision_segment(data, kind):
    with sde_server(*[str(data["folder"] / s) for s in SOURCES[kind]]) as base:
        rows = api(base, "/api/utterances", page_size=10)["rows"]
        assert [r["supervision_id"] for r in rows] == [s[0] for s in SUPERVISIONS]
        assert {"cut_id", "recording_id", "speaker", "language", "pred_text", "wer"} <= set(rows[0])
        for row, (_, rec, start, _, _) in zip(rows, SUPERVISIONS):
            with urllib.request.urlopen(f"{base}/audio/{row['id']}.wav", timeout=30) as r:
                played, rate = sf.read(io.BytesIO(r.read()), dtype="float32")
            source, source_rate = sf.read(data["folder"] / "audio" / f"{rec}.wav", dtype="float32")
            begin = round(_absolute(rec, start, data["lengths"]) * source_rate)
            want = source[begin:begin + len(played)]
            assert rate == source_rate and len(played) == pytest.approx(row["duration"] * rate, abs=2)
            assert np.allclose(played, want, atol=2e-4)


def test_shar_member_bytes_decode_through_lhotse(data):
    import tarfile

    from sde.audio.lhotse_audio import row_audio

    with tarfile.open(data["folder"] / "shar" / "recording.000001.tar") as tar:
        member = tar.extractfile("cut_long.flac").read()
    samples, rate = row_audio({"offset": 0.5, "duration": 1.0, "audio_filepath": "cut_long.flac"}, member)
    source, source_rate = sf.read(data["folder"] / "audio" / "long.wav", dtype="float32")
    begin = round((LONG_CUT_START + 0.5) * source_rate)
    assert rate == source_rate and len(samples) == source_rate
    assert np.allclose(samples, source[begin:begin + len(samples)], atol=2e-4)


# ---------------------------------------------------------------------------------- bad input


def _good_cut(data) -> dict:
    with gzip.open(data["folder"] / "cuts.jsonl.gz", "rb") as f:
        cut = orjson.loads(f.readline())
    cut["recording"]["sources"][0]["source"] = str(data["folder"] / "audio" / "one.wav")
    return cut


def _spoil(cut: dict, how: str) -> bytes:
    bad = json.loads(json.dumps(cut))
    if how == "no text":
        del bad["supervisions"][0]["text"]
    elif how == "no supervision":
        bad["supervisions"] = []
    elif how == "outside the cut":
        bad["supervisions"][0]["start"] = bad["duration"] + 1
    elif how == "command":
        bad["recording"]["sources"][0] = {"type": "command", "channels": [0], "source": "rm -rf /"}
    elif how == "memory":
        bad["recording"]["sources"][0] = {"type": "memory", "channels": [0], "source": "UklGRg=="}
    elif how == "not a cut":
        del bad["recording"]["sampling_rate"]
    elif how == "invalid JSON":
        return b'{"id": "x", "supervisions": [\n'
    return orjson.dumps(bad) + b"\n"


@pytest.mark.parametrize("how, reason", [
    ("no text", "supervision s1 of cut cut_one has no text"),
    ("no supervision", "cut cut_one has no supervision"),
    ("outside the cut", "lies outside its cut"),
    ("command", "sde does not run commands from a manifest"),
    ("memory", "'memory' source"),
    ("not a cut", "not a valid Lhotse cut entry"),
    ("invalid JSON", "invalid JSON"),
])
def test_a_bad_cut_is_a_problem_at_its_line_and_the_others_load(data, tmp_path, how, reason):
    cut = _good_cut(data)
    path = tmp_path / "cuts.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(orjson.dumps(cut) + b"\n" + _spoil(cut, how) + orjson.dumps(cut) + b"\n")
    m = read_manifest(path)
    assert list(m.table["line"]) == [1, 3] and list(m.table["text"]) == ["hello world"] * 2
    assert [(p.path, p.line) for p in m.problems] == [(str(path), 2)] and reason in m.problems[0].reason


def test_a_supervision_of_an_unknown_recording_is_a_problem_of_the_supervisions_file(data, tmp_path):
    shutil.copy(data["folder"] / "recordings.jsonl.gz", tmp_path)
    sups = gzip.open(data["folder"] / "supervisions.jsonl.gz", "rb").read().splitlines()
    sups[1] = sups[1].replace(b'"recording_id": "two"', b'"recording_id": "nowhere"')
    with gzip.open(tmp_path / "supervisions.jsonl.gz", "wb") as f:
        f.write(b"\n".join(sups) + b"\n")
    (tmp_path / "audio").symlink_to(data["folder"] / "audio")
    m = read_manifest([str(tmp_path / "recordings.jsonl.gz"), str(tmp_path / "supervisions.jsonl.gz")])
    assert list(m.table["supervision_id"]) == ["s1", "s3a", "s3b"]
    assert [(Path(p.path).name, p.line) for p in m.problems] == [("supervisions.jsonl.gz", 2)]
    assert "recording nowhere (of supervision s2) is not in" in m.problems[0].reason


def test_a_truncated_file_keeps_the_lines_before_the_break(data, tmp_path):
    whole = (data["folder"] / "cuts.jsonl.gz").read_bytes()
    path = tmp_path / "cuts.jsonl.gz"
    cut = gzip.compress(gzip.decompress(whole) * 400)
    path.write_bytes(cut[: len(cut) * 3 // 4])
    m = read_manifest(path)
    assert len(m.table) > 100 and "the file breaks off here" in m.problems[-1].reason


def test_a_missing_shar_shard_is_one_problem_and_the_other_shards_load(data, tmp_path):
    shar = tmp_path / "shar"
    shutil.copytree(data["folder"] / "shar", shar)
    (shar / "recording.000001.tar").unlink()
    m = read_manifest(str(shar))
    assert list(m.table["supervision_id"]) == ["s1", "s2"]
    assert [(Path(p.path).name, p.line) for p in m.problems] == [("recording.000001.tar", 0)]
    assert "missing" in m.problems[0].reason and "the other shards load" in m.problems[0].reason


@pytest.mark.parametrize("make, message", [
    ("shar without audio", "without recording.N.tar shards"),
    ("every cut bad", "no usable supervision"),
    ("recordings all bad", "no usable recording"),
])
def test_an_unusable_source_is_one_message_with_the_fix(data, tmp_path, make, message):
    if make == "shar without audio":
        shutil.copytree(data["folder"] / "shar", tmp_path / "shar", ignore=shutil.ignore_patterns("*.tar"))
        args = ["shar"]
    elif make == "every cut bad":
        with gzip.open(tmp_path / "cuts.jsonl.gz", "wb") as f:
            f.write(_spoil(_good_cut(data), "no text") * 2)
        args = ["cuts.jsonl.gz"]
    else:
        with gzip.open(tmp_path / "recordings.jsonl.gz", "wb") as f:
            f.write(b'{"id": "r", "sources": [], "sampling_rate": "x"}\n')
        shutil.copy(data["folder"] / "supervisions.jsonl.gz", tmp_path)
        args = ["recordings.jsonl.gz", "supervisions.jsonl.gz"]
    with pytest.raises(ManifestError, match=message):
        read_manifest([str(tmp_path / a) for a in args])
    r = sde("stats", *args, "--no-cache", cwd=tmp_path)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("kind, message", [
    ("recordings", "pass it together with its supervisions manifest"),
    ("supervisions", "pass it together with its recordings manifest"),
])
def test_half_a_pair_says_what_to_pass(data, kind, message):
    r = sde("stats", f"{kind}.jsonl.gz", "--no-cache", cwd=data["folder"])
    assert r.returncode == 1 and message in r.stderr


# ---------------------------------------------------------------------------------- transcribe


@pytest.mark.nemo
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cuts", "shar", "pair"])
def test_transcribe_writes_predictions_that_merge_back(data, tiny_nemo, tmp_path, kind):
    # a Shar directory's audio is read from its tars, member by member. The command runs in this
    # process, where NeMo is already imported: as a subprocess its NeMo import was most of the test
    from click.testing import CliRunner

    from sde.cli import cli

    r = CliRunner().invoke(cli, ["transcribe", *(str(data["folder"] / p) for p in SOURCES[kind]), "--model",
                                 str(tiny_nemo), "--device", "cpu", "--out", str(tmp_path / "preds.json"),
                                 "--no-progress"])
    assert r.exit_code == 0, (r.output, r.exception)
    preds = [json.loads(line) for line in (tmp_path / "preds.json").read_text().splitlines()]
    assert [p["supervision_id"] for p in preds] == [s[0] for s in SUPERVISIONS]
    assert all(isinstance(p["pred_text"], str) for p in preds)
    r = sde("stats", *SOURCES[kind], "--predictions", str(tmp_path / "preds.json"), "--json", "--no-cache",
            cwd=data["folder"])
    assert r.returncode == 0, r.stderr
    merged = json.loads(r.stdout)["hypotheses"]["pred_text_preds"]  # the cuts carry pred_text already
    assert merged["missing"] == 0 and 0 <= merged["wer"]


def test_without_lhotse_installed_the_message_says_what_to_install(data):
    # lhotse requires torch, so it is the extra sde[lhotse]; a lean install gets the remedy, not a traceback
    code = ("import sys; sys.modules['lhotse'] = None; from sde.cli import main; "
            "sys.argv = ['sde', 'stats', 'cuts.jsonl.gz', '--no-cache']; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=data["folder"], timeout=120)
    assert r.returncode == 1, r.stderr
    assert "cuts.jsonl.gz: a Lhotse manifest" in r.stderr and "pip install 'sde[lhotse]'" in r.stderr
    assert "Traceback" not in r.stderr
