"""One rule for a row's ``audio_channel`` (a Lhotse supervision on one channel of a multi-channel
recording), shared by the player and figures (AudioService), the measures (compute_audio_metrics)
and transcription (sde.nemo.infer): they read the same channel, or refuse the same value with the
same message naming it and the file. Before, the player truncated 1.5 to channel 1 while the
measures took the mix, a list of one channel or the string "[1]" was the mix for both, and
transcription always heard both sides of a call."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde.audio import AudioError, compute_audio_metrics
from sde.dataset import build_dataset
from sde.nemo.infer import load_readable, read_audio
from sde.web.audio_service import AudioService

SR = 16000
LEVELS = (0.5, 0.1)  # each channel's sine amplitude: their levels tell them apart


def _rms_dbfs(x: np.ndarray) -> float:
    return 20.0 * math.log10(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


@pytest.fixture(scope="module")
def stereo(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """1 s of two different sines, one per channel, as float WAV (read back exactly)."""
    folder = tmp_path_factory.mktemp("channels")
    t = np.arange(SR) / SR
    data = np.stack([LEVELS[0] * np.sin(2 * np.pi * 440 * t), LEVELS[1] * np.sin(2 * np.pi * 1000 * t)],
                    axis=1).astype(np.float32)
    sf.write(folder / "call.wav", data, SR, subtype="FLOAT")
    return folder, data


# (behaviour, audio_channel as the manifest line has it, the channel read: 0/1, "mix", or an error's words)
CASES = [
    ("a_whole_number_names_its_channel", 1, 1),
    ("channel_zero_is_the_first_side", 0, 0),
    ("a_whole_float_names_its_channel", 1.0, 1),
    ("a_numeric_string_names_its_channel", "1", 1),
    ("a_list_of_one_channel_names_it", [1], 1),
    ("null_mixes_every_channel", None, "mix"),
    ("nan_mixes_every_channel", float("nan"), "mix"),
    ("a_fraction_is_refused_not_truncated", 1.5, "audio_channel 1.5 is not a channel number"),
    ("a_negative_number_is_refused", -1, "audio_channel -1 is not a channel number"),
    ("a_channel_the_file_lacks_is_refused", 3, "audio_channel 3 is not one of the file's channels (0..1), it has 2"),
    ("a_word_is_refused", "left", "audio_channel 'left' is not a channel number"),
    ("a_repeated_channel_is_refused", [1, 1], "lists channel 1 more than once"),
    ("a_boolean_is_refused", True, "is not a channel number"),
]
IDS = [c[0] for c in CASES]


def _expected(data: np.ndarray, want: object) -> np.ndarray:
    return data.mean(axis=1, dtype=np.float32) if want == "mix" else data[:, want]


@pytest.mark.parametrize("_name, value, want", CASES, ids=IDS)
def test_the_one_rule_reads_audio_channel(_name, value, want):
    from sde.audio import channel_selection

    if isinstance(want, str) and want != "mix":
        with pytest.raises(AudioError) as err:
            channel_selection(value, "/data/call.wav", 2)
        assert want in str(err.value) and "call.wav" in str(err.value)
    else:
        assert channel_selection(value, "/data/call.wav", 2) == (None if want == "mix" else want)


def _dataset(stereo, value: object, tmp_path: Path):
    folder, _ = stereo
    line = {"audio_filepath": str(folder / "call.wav"), "duration": 1.0, "text": "a call"}
    if value is not None:
        line["audio_channel"] = value
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(line) + "\n", encoding="utf-8")
    return build_dataset(manifest)


@pytest.mark.parametrize("_name, value, want", CASES, ids=IDS)
def test_player_and_measures_read_the_same_channel(stereo, tmp_path, _name, value, want):
    _, data = stereo
    ds = _dataset(stereo, value, tmp_path)
    metrics = compute_audio_metrics(ds.utterances, workers=1).iloc[0]
    service = AudioService(ds, cache_bytes=0)
    if want != "mix" and isinstance(want, str):
        with pytest.raises(AudioError) as err:
            service.source(0)
        assert want in str(err.value) and "call.wav" in str(err.value)
        assert metrics["audio_error"] == str(err.value)
        return
    heard = service.source(0).samples
    expected = _expected(data, want)
    assert len(heard) == len(expected) and np.allclose(heard, expected, atol=1e-6)
    assert service.display(0)[1]["duration"] == pytest.approx(1.0, abs=1e-3)
    assert pd.isna(metrics["audio_error"])
    # the measures' level: of the channel alone, or (no channel) of every sample of every channel
    level = _rms_dbfs(data if want == "mix" else data[:, want])
    assert metrics["rms_dbfs"] == pytest.approx(level, abs=0.01)


def test_a_missing_column_mixes_every_channel(stereo, tmp_path):
    _, data = stereo
    ds = _dataset(stereo, None, tmp_path)
    assert "audio_channel" not in ds.utterances
    assert np.allclose(AudioService(ds, cache_bytes=0).source(0).samples, data.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("_name, value, want", CASES, ids=IDS)
def test_transcription_reads_the_same_channel(stereo, _name, value, want):
    folder, data = stereo
    if want != "mix" and isinstance(want, str):
        from sde.nemo.model import TranscribeError

        with pytest.raises(TranscribeError) as err:
            read_audio(str(folder / "call.wav"), 0.0, None, SR, value)
        assert want in str(err.value) and "call.wav" in str(err.value)
        return
    heard = read_audio(str(folder / "call.wav"), 0.0, None, SR, value)
    assert np.allclose(heard, _expected(data, want), atol=1e-6)


# A call as Lhotse describes it: a two-channel recording at espeak's 22.05 kHz, a different sentence
# on each side, one supervision per channel. `sde transcribe CUTS` transcribes the supervisions' NeMo
# view (write_nemo_view, then read_entries and load_readable, as transcribe_manifest does): each
# supervision must reach the model as its own side alone, resampled to the model's 16 kHz.


@pytest.fixture(scope="module")
def call_cuts(audio_dir, tmp_path_factory):
    lhotse = pytest.importorskip("lhotse")
    d, _ = audio_dir
    folder = tmp_path_factory.mktemp("call")
    left, sr = sf.read(d / "long.wav", dtype="float32")  # "the quick brown fox ..."
    shutil.copy(d / "long.wav", folder / "long.wav")
    from tests.conftest import _speak

    _speak("speech data explorer is listening on the other side of the call", folder / "right.wav", sr)
    right, _ = sf.read(folder / "right.wav", dtype="float32")
    n = min(len(left), len(right))
    both = np.stack([left[:n], right[:n]], axis=1)
    sf.write(folder / "call.wav", both, sr, subtype="FLOAT")
    rec = lhotse.Recording.from_file(folder / "call.wav", recording_id="call")
    cuts = []
    for channel in (0, 1):
        sup = lhotse.SupervisionSegment(f"s{channel}", "call", 0.5, 1.5, channel=channel, text=f"side {channel}")
        cuts.append(lhotse.MonoCut(f"call-{channel}", 0.0, rec.duration, channel, recording=rec, supervisions=[sup]))
    path = folder / "cuts.jsonl.gz"
    lhotse.CutSet.from_cuts(cuts).to_file(path)
    return path, both, sr


def test_transcription_of_a_call_hears_each_supervisions_side_alone(call_cuts, tmp_path):
    import soxr

    from sde.manifest import read_manifest
    from sde.manifest.lhotse_reads import write_nemo_view
    from sde.nemo.parts import read_entries

    cuts, both, sr = call_cuts
    view = write_nemo_view(read_manifest(cuts).table, tmp_path / "out.json")
    entries = read_entries(view, None, None)
    heard = load_readable([e.ref for e in entries], SR)
    assert len(heard) == 2
    start, stop = round(0.5 * sr), round(2.0 * sr)
    for channel, samples in enumerate(heard):
        own = soxr.resample(both[start:stop, channel], sr, SR, quality="HQ")
        assert len(samples) == len(own)
        assert np.allclose(samples, own, atol=1e-5), f"channel {channel}: not its side alone"
        other = soxr.resample(both[start:stop, 1 - channel], sr, SR, quality="HQ")
        assert not np.allclose(samples, (own + other) / 2, atol=1e-3)  # not the mix of both sides


def test_the_ray_engines_reading_task_reads_the_lines_channel(stereo):
    """`sde transcribe --engine ray` ships each batch's refs as JSON to its reading tasks: the channel
    goes with them (it was dropped, and every line heard the mix)."""
    from sde.nemo.ray_engine import _read_batch

    folder, data = stereo
    path = str(folder / "call.wav")
    work = [[path, 0.0, None, "m.json:1", 1], [path, 0.0, None, "m.json:2", None]]
    row = _read_batch({"batch": 0, "work": json.dumps(work)}, SR)
    first, second = np.split(row["audio"], np.cumsum(row["lengths"])[:-1])
    assert np.allclose(first, data[:, 1], atol=1e-6)
    assert np.allclose(second, data.mean(axis=1), atol=1e-6)
