"""Lhotse CutSets as users' recipes leave them: speed/tempo-perturbed recordings (their times are
not the file's), padded cuts and speech mixed with noise (MixedCuts). Written with lhotse itself
from espeak-ng speech; the rows must name the part of the file that holds the supervision."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.audio import AudioError, open_segment, read_segment
from sde.manifest import read_manifest

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet  # noqa: E402

# The supervision, in the file's own time (seconds).
START, LENGTH = 1.0, 1.0


@pytest.fixture(scope="module")
def speech(audio_dir, tmp_path_factory) -> tuple[Path, Recording]:
    folder = tmp_path_factory.mktemp("field_lhotse")
    shutil.copy(audio_dir[0] / "long.wav", folder / "long.wav")
    return folder, Recording.from_file(folder / "long.wav", recording_id="long")


def _cut(recording: Recording, cut_id: str = "c") -> MonoCut:
    sup = SupervisionSegment(id=f"{cut_id}-s", recording_id=recording.id, start=START, duration=LENGTH,
                             text="the quick brown fox")
    return MonoCut(cut_id, 0.0, recording.duration, 0, recording=recording, supervisions=[sup])


def _rows(folder: Path, cuts: list) -> tuple:
    path = folder / f"cuts_{len(list(folder.iterdir()))}.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    read = read_manifest(path)
    return read.table, read.problems


@pytest.mark.parametrize("perturb", [lambda c: c.perturb_speed(1.1), lambda c: c.perturb_speed(0.9),
                                     lambda c: c.perturb_tempo(1.1)], ids=["speed_1.1", "speed_0.9", "tempo_1.1"])
def test_a_perturbed_cut_names_the_files_own_times(speech, perturb):
    folder, recording = speech
    table, problems = _rows(folder, [perturb(_cut(recording))])
    assert not problems
    row = table.iloc[0]
    assert row["offset"] == pytest.approx(START, abs=1e-3) and row["duration"] == pytest.approx(LENGTH, abs=1e-3)
    assert row["lhotse_transforms"].split("(")[0] in ("Speed", "Tempo")


def test_a_perturbed_recordings_and_supervisions_pair_names_the_files_own_times(speech):
    folder, recording = speech
    fast = recording.perturb_speed(1.1)
    sup = SupervisionSegment("s", "long", START, LENGTH, text="the quick").perturb_speed(1.1, recording.sampling_rate)
    assert sup.recording_id == fast.id
    RecordingSet.from_recordings([fast]).to_file(folder / "recordings.jsonl.gz")
    SupervisionSet.from_segments([sup]).to_file(folder / "supervisions.jsonl.gz")
    row = read_manifest([folder / "recordings.jsonl.gz", folder / "supervisions.jsonl.gz"]).table.iloc[0]
    assert row["offset"] == pytest.approx(START, abs=1e-3) and row["duration"] == pytest.approx(LENGTH, abs=1e-3)


def test_a_resampled_cut_keeps_its_times_and_says_it_was_resampled(speech):
    folder, recording = speech
    table, _ = _rows(folder, [_cut(recording).resample(16000)])
    assert table.iloc[0]["offset"] == pytest.approx(START) and table.iloc[0]["duration"] == pytest.approx(LENGTH)
    assert table.iloc[0]["lhotse_transforms"].startswith("Resample(")


def _noise(folder: Path, seconds: float) -> Recording:
    rng = np.random.default_rng(0)
    sf.write(folder / "noise.wav", (0.05 * rng.standard_normal(int(seconds * 22050))).astype(np.float32), 22050)
    return Recording.from_file(folder / "noise.wav", recording_id="noise")


@pytest.mark.parametrize("make", ["padded", "padded_left", "mixed_with_noise"])
def test_a_mixed_cut_with_one_speech_track_plays_that_tracks_segment(speech, make):
    folder, recording = speech
    cut = _cut(recording, make)
    if make == "padded":
        mixed = cut.pad(duration=recording.duration + 3)
    elif make == "padded_left":
        mixed = cut.pad(duration=recording.duration + 3, direction="left")
    else:
        noise = _noise(folder, recording.duration)
        noise_cut = MonoCut("noise", 0.0, noise.duration, 0, recording=noise)
        mixed = cut.mix(noise_cut, snr=10)
    table, problems = _rows(folder, [mixed])
    assert not problems
    row = table.iloc[0]
    assert row["cut_id"] == mixed.id and row["text"] == "the quick brown fox"
    assert (row["offset"], row["duration"]) == pytest.approx((START, LENGTH))
    assert row["audio_path"].endswith("long.wav")
    expected = cut.trim_to_supervisions()[0].load_audio()[0]  # lhotse's own reading of the supervision
    heard = read_segment(row["audio_path"], row["offset"], row["duration"]).samples
    assert len(heard) == pytest.approx(len(expected), abs=2)
    n = min(len(heard), len(expected))
    assert np.allclose(heard[:n], expected[:n], atol=1e-4)


def test_a_mixed_cut_with_speech_on_two_tracks_is_a_problem_naming_the_cut(speech):
    folder, recording = speech
    mixed = _cut(recording, "a").mix(_cut(recording, "b"), offset_other_by=0.5)
    table, problems = _rows(folder, [mixed, _cut(recording, "plain")])
    assert list(table["cut_id"]) == ["plain"]
    assert len(problems) == 1 and problems[0].line == 1
    assert mixed.id in problems[0].reason and "2 tracks" in problems[0].reason


@pytest.fixture(scope="module")
def call(speech) -> tuple[Path, Recording, np.ndarray]:
    """A two-channel 'telephone call': speech on channel 0, a tone on channel 1."""
    folder, recording = speech
    voice, sr = sf.read(folder / "long.wav", dtype="float32")
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(len(voice)) / sr)).astype(np.float32)
    both = np.stack([voice, tone], axis=1)
    sf.write(folder / "call.wav", both, sr, subtype="FLOAT")
    return folder, Recording.from_file(folder / "call.wav", recording_id="call"), both


@pytest.mark.parametrize("channel", [0, 1])
def test_a_supervision_on_one_channel_of_a_call_plays_that_channel_alone(call, channel):
    folder, recording, both = call
    sup = SupervisionSegment(f"s{channel}", "call", START, LENGTH, channel=channel, text=f"side {channel}")
    cut = MonoCut(f"call-{channel}", 0.0, recording.duration, channel, recording=recording, supervisions=[sup])
    table, _ = _rows(folder, [cut])
    row = table.iloc[0]
    assert row["audio_channel"] == channel
    with open_segment(row["audio_path"], row["offset"], row["duration"], channel=int(row["audio_channel"])) as reader:
        heard = reader.segment().samples
    sr = recording.sampling_rate
    expected = both[round(START * sr):round(START * sr) + len(heard), channel]
    assert len(heard) == pytest.approx(LENGTH * sr, abs=2) and np.allclose(heard, expected, atol=1e-6)


def test_a_channel_the_file_does_not_have_is_an_error_naming_it(call):
    folder, _, _ = call
    with pytest.raises(AudioError) as e:
        open_segment(str(folder / "call.wav"), 0.0, 1.0, channel=2)
    assert e.value.reason == "invalid" and "channel 2 is not one of the file's channels (0..1)" in str(e.value)


def test_the_audio_route_serves_each_side_of_a_call_alone(call, tmp_path):
    """The player and the figures read the supervision's channel, not the mix of both sides:
    before, /audio/0.wav and /audio/1.wav were the same bytes."""
    import io

    from flask import Flask

    from sde.dataset import build_dataset
    from sde.web.api import register_api

    folder, recording, both = call
    cuts = []
    for channel in (0, 1):
        sup = SupervisionSegment(f"s{channel}", "call", START, LENGTH, channel=channel, text=f"side {channel}")
        cuts.append(MonoCut(f"call-{channel}", 0.0, recording.duration, channel, recording=recording, supervisions=[sup]))
    CutSet.from_cuts(cuts).to_file(tmp_path / "calls.jsonl.gz")
    server = Flask(__name__)
    register_api(server, build_dataset(tmp_path / "calls.jsonl.gz"))
    sr = recording.sampling_rate
    for channel in (0, 1):
        answer = server.test_client().get(f"/audio/{channel}.wav")
        assert answer.status_code == 200
        heard, rate = sf.read(io.BytesIO(answer.data), dtype="float32")
        assert rate == sr
        expected = both[round(START * sr):round(START * sr) + len(heard), channel]
        assert len(heard) == pytest.approx(LENGTH * sr, abs=2)
        np.testing.assert_allclose(heard, expected, atol=1e-4)


def test_each_side_of_a_call_is_measured_alone(call, tmp_path):
    """Audio metrics, loudness and the audio hash of a supervision on one channel are of that
    channel: before, both sides were measured on their mix (the same hash, the same levels)."""
    import pyloudnorm

    from sde.audio import compute_audio_metrics
    from sde.quality.segments import measure_segments

    folder, recording, both = call
    cuts = []
    for channel in (0, 1):
        sup = SupervisionSegment(f"s{channel}", "call", START, LENGTH, channel=channel, text=f"side {channel}")
        cuts.append(MonoCut(f"call-{channel}", 0.0, recording.duration, channel, recording=recording, supervisions=[sup]))
    table, _ = _rows(folder, cuts)
    metrics = compute_audio_metrics(table, workers=1)
    measured = measure_segments(table, ("hash", "loudness"), workers=1)
    sr = recording.sampling_rate
    side = [both[round(START * sr):round((START + LENGTH) * sr), channel].astype(np.float64) for channel in (0, 1)]
    for channel in (0, 1):
        rms = 10 * np.log10(np.mean(side[channel] ** 2))
        assert metrics["rms_dbfs"][channel] == pytest.approx(rms, abs=0.05)
        assert metrics["peak_dbfs"][channel] == pytest.approx(20 * np.log10(np.abs(side[channel]).max()), abs=0.05)
        assert metrics["channels"][channel] == 2  # the file's
        assert measured["lufs"][channel] == pytest.approx(pyloudnorm.Meter(sr).integrated_loudness(side[channel]),
                                                          abs=0.5)
    assert measured["audio_hash"][0] != measured["audio_hash"][1]
