"""`sde transcribe` never writes its output, its part file or a Lhotse view over a file it reads:
an utterance's audio (by its path, another path to it, a symlink to it), the .nemo model, a Lhotse
source. The refusal comes before the model is loaded, so these tests need neither NeMo nor a model
(the model named does not exist; it would fail later, after the output was chosen)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from sde.nemo.command import transcribe_command
from sde.nemo.jobs import merge_shards
from sde.nemo.model import TranscribeError

SR = 16000


def _wav(path: Path, hz: float) -> None:
    t = np.arange(SR // 2) / SR
    sf.write(path, (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32), SR, format="WAV")


@pytest.fixture()
def data(tmp_path) -> Path:
    """m.json over a0.wav, a1.wav and an audio file named a2.partial (what `--out a2` would use as its
    part file), a symlink link.wav to a0.wav, a folder sub/ and a .nemo file (bytes only)."""
    _wav(tmp_path / "a0.wav", 220)
    _wav(tmp_path / "a1.wav", 330)
    _wav(tmp_path / "a2.partial", 440)
    (tmp_path / "link.wav").symlink_to("a0.wav")
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.nemo").write_bytes(b"not really a model")
    lines = [{"audio_filepath": name, "duration": 0.5, "text": "hi"} for name in ("a0.wav", "a1.wav", "a2.partial")]
    (tmp_path / "m.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return tmp_path


def _snapshot(folder: Path) -> dict[str, tuple[bool, bytes]]:
    return {str(p.relative_to(folder)): (p.is_symlink(), b"" if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


CASES = {
    # id: (--out relative to the data folder, option named, the file named as the one it would destroy)
    "plain path": ("a0.wav", "--out", "a0.wav"),
    "another path to it": (os.path.join("sub", "..", "a0.wav"), "--out", "a0.wav"),
    "a symlink to it": ("link.wav", "--out", "a0.wav"),
    "its part file": ("a2", "--out's part file", "a2.partial"),
}


@pytest.mark.parametrize("out, option, audio", CASES.values(), ids=CASES.keys())
def test_cli_transcribe_never_writes_over_an_utterances_audio(data, out, option, audio):
    before = _snapshot(data)
    r = CliRunner().invoke(transcribe_command, [str(data / "m.json"), "--model", str(data / "missing.nemo"),
                                                "--out", str(data / out), "--no-progress"])
    assert r.exit_code == 2, r.output  # writing over an input: a usage error, as in export
    assert f"{option} {data / out}" in r.output
    assert f"is the audio file of an utterance ({data / audio})" in r.output
    assert "sde never modifies its input; write to another file (e.g. m_missing.json)" in r.output
    assert "Traceback" not in r.output and "not found" not in r.output  # refused before the model
    assert _snapshot(data) == before  # the audio's bytes, the symlink, and nothing new


def test_cli_transcribe_never_writes_over_the_model(data):
    before = _snapshot(data)
    r = CliRunner().invoke(transcribe_command, [str(data / "m.json"), "--model", str(data / "model.nemo"),
                                                "--out", str(data / "model.nemo"), "--no-progress"])
    assert r.exit_code == 2, r.output  # writing over an input: a usage error, as in export
    assert f"--out {data / 'model.nemo'} is the --model file sde reads" in r.output
    assert "write to another file (e.g. m_model.json)" in r.output
    assert _snapshot(data) == before


def test_merge_never_writes_over_an_utterances_audio(tmp_path):
    _wav(tmp_path / "0.wav", 220)
    (tmp_path / "m.json").write_text("".join(json.dumps({"audio_filepath": f"{k}.wav", "duration": 0.5}) + "\n"
                                             for k in range(3)))
    for i in range(2):
        (tmp_path / f"out.shard{i}of2.json").write_text(
            "".join(json.dumps({"audio_filepath": f"{k}.wav", "pred_text": str(k)}) + "\n" for k in range(i, 3, 2)))
    before = _snapshot(tmp_path)
    with pytest.raises(TranscribeError, match=r"--out .*0\.wav is the audio file of an utterance"):
        merge_shards(sorted(tmp_path.glob("out.shard*")), tmp_path / "sub" / ".." / "0.wav",
                     manifest=tmp_path / "m.json")
    assert _snapshot(tmp_path) == before


def test_cli_transcribe_never_writes_over_a_lhotse_source(tmp_path):
    lhotse = pytest.importorskip("lhotse")
    _wav(tmp_path / "c0.wav", 220)
    rec = lhotse.Recording.from_file(tmp_path / "c0.wav", recording_id="c0")
    sup = lhotse.SupervisionSegment(id="s0", recording_id="c0", start=0.0, duration=0.5, text="hi")
    cuts = tmp_path / "cuts.jsonl"
    lhotse.CutSet.from_cuts([lhotse.MonoCut(id="c0", start=0.0, duration=rec.duration, channel=0, recording=rec,
                                            supervisions=[sup])]).to_file(cuts)
    recordings, supervisions = tmp_path / "recordings.jsonl", tmp_path / "supervisions.jsonl"
    lhotse.RecordingSet.from_recordings([rec]).to_file(recordings)
    lhotse.SupervisionSet.from_segments([sup]).to_file(supervisions)
    before = _snapshot(tmp_path)
    for sources, out, message in [
        ([cuts], cuts, "refusing to overwrite the input manifest"),
        ([recordings, supervisions], supervisions, "refusing to overwrite the input manifest"),
        ([recordings, supervisions], recordings, "refusing to overwrite the input manifest"),
        ([cuts], tmp_path / "c0.wav", "is the audio file of an utterance"),
    ]:
        r = CliRunner().invoke(transcribe_command, [*map(str, sources), "--model", str(tmp_path / "missing.nemo"),
                                                    "--out", str(out), "--no-progress"])
        assert r.exit_code == 2 and message in r.output, (sources, out, r.output)
        assert _snapshot(tmp_path) == before, (sources, out)


def _shards_of(folder: Path, stem: str, lines: list[dict], n: int) -> None:
    """The shard outputs `--shard I/N` would have written for `lines` (what --merge joins)."""
    for i in range(n):
        (folder / f"{stem}.shard{i}of{n}.json").write_text(
            "".join(json.dumps({**line, "pred_text": "hi"}) + "\n" for line in lines[i::n]))


def test_a_shard_never_writes_over_the_audio_of_another_shards_line(data):
    # line 1 (shard 1's) is audio in a file named like shard 0's output: shard 0 must refuse it too
    _wav(data / "o.shard0of2.json", 550)
    (data / "m.json").write_text("".join(json.dumps({"audio_filepath": name, "duration": 0.5, "text": "hi"}) + "\n"
                                         for name in ("a0.wav", "o.shard0of2.json")))
    before = _snapshot(data)
    r = CliRunner().invoke(transcribe_command, [str(data / "m.json"), "--model", str(data / "missing.nemo"),
                                                "--out", str(data / "o.json"), "--shard", "0/2", "--no-progress"])
    assert r.exit_code == 2, r.output  # writing over an input: a usage error, as in export
    assert f"is the audio file of an utterance ({data / 'o.shard0of2.json'})" in r.output
    assert _snapshot(data) == before


MERGE_CASES = {
    # id: (--out's name in the audio folder, extra options, what the refusal names)
    "audio under --audio-base-path": ("a0.wav", [], "is the audio file of an utterance"),
    "a tar of --tarred-audio": ("audio_0.tar", ["--tarred-audio", "{audio}/audio_0.tar"], "--tarred-audio"),
}


@pytest.mark.parametrize("out, extra, refusal", MERGE_CASES.values(), ids=MERGE_CASES.keys())
def test_merge_resolves_audio_as_the_shards_did_and_never_writes_over_it(tmp_path, out, extra, refusal):
    # the manifest in one folder, its (relative) audio in another: --audio-base-path joins them
    audio, manifests = tmp_path / "audio", tmp_path / "manifests"
    audio.mkdir()
    manifests.mkdir()
    _wav(audio / "a0.wav", 220)
    _wav(audio / "a1.wav", 330)
    (audio / "audio_0.tar").write_bytes(b"a tar of audio")
    lines = [{"audio_filepath": f"a{k}.wav", "duration": 0.5, "text": "hi", "shard_id": 0} for k in range(2)]
    (manifests / "m.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    _shards_of(audio, Path(out).stem, lines, 2)
    before = _snapshot(tmp_path)
    r = CliRunner().invoke(transcribe_command, [str(manifests / "m.json"), "--model", str(tmp_path / "missing.nemo"),
                                                "--merge", "--out", str(audio / out), "--audio-base-path", str(audio),
                                                *[e.format(audio=audio) for e in extra]])
    assert r.exit_code == 2 and refusal in r.output and str(audio / out) in r.output, r.output
    assert "Traceback" not in r.output
    assert _snapshot(tmp_path) == before
