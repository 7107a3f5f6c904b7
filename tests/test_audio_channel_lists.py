"""A line's ``audio_channel`` may list several channels (a Lhotse MultiCut on some microphones of
an array, NeMo's ``channel_selector=[0, 1]``): it means the mean of those channels, for the player,
the figures, the measures, transcription and the predictions' match. Before, ``[0, 1]`` was refused
("names 2 channels"), so a whole multi-channel dataset could not be played, measured or transcribed.
What cannot be read is still refused with the file and the value named: an empty list, a repeated
channel, a negative or fractional one, one the file lacks."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from flask import Flask

from sde.audio import AudioError, compute_audio_metrics, open_segment
from sde.build.load import load_dataset
from sde.dataset import DatasetOptions, build_dataset
from sde.nemo.infer import read_audio
from sde.quality.segments import measure_segments
from sde.web.api import register_api
from tests.quality_kit import need_vad

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
# each channel's tone (level, Hz): any mean of two of them differs from every other mean and channel
TONES = ((0.4, 220.0), (0.3, 440.0), (0.2, 880.0), (0.1, 1760.0))


@pytest.fixture(scope="module")
def array4(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """1 s of a 4-microphone array as float WAV (read back exactly): a different tone per channel."""
    folder = tmp_path_factory.mktemp("array4")
    t = np.arange(SR) / SR
    data = np.stack([a * np.sin(2 * np.pi * f * t) for a, f in TONES], axis=1).astype(np.float32)
    sf.write(folder / "array.wav", data, SR, subtype="FLOAT")
    return folder, data


def _mean(data: np.ndarray, channels: list[int]) -> np.ndarray:
    return data[:, channels].mean(axis=1, dtype=np.float32)


def _rms_dbfs(x: np.ndarray) -> float:
    return 20.0 * math.log10(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


# (behaviour, audio_channel as a line has it, the channels whose mean is read, or an error's words)
SELECTIONS = {
    "a_list_of_two_channels_is_their_mean": ([1, 2], [1, 2]),
    "the_order_of_the_list_does_not_matter": ([2, 1], [1, 2]),
    "a_list_written_as_json_text_is_the_same_list": ("[0, 3]", [0, 3]),
    "every_channel_listed_is_the_mix": ([0, 1, 2, 3], [0, 1, 2, 3]),
    "a_list_of_one_channel_is_that_channel": ([3], [3]),
    "an_empty_list_is_refused": ([], "audio_channel [] is an empty list of channels"),
    "a_repeated_channel_is_refused": ([1, 1], "audio_channel [1, 1] lists channel 1 more than once"),
    "a_negative_channel_is_refused": ([0, -1], "audio_channel [0, -1] lists -1, which is not a channel number"),
    "a_fraction_is_refused": ([0, 1.5], "audio_channel [0, 1.5] lists 1.5, which is not a channel number"),
    "a_word_is_refused": ([0, "left"], "lists 'left', which is not a channel number"),
    "a_nested_list_is_refused": ([0, [1]], "lists [1], which is not a channel number"),
    "a_channel_the_file_lacks_is_refused": (
        [1, 4, 5], "audio_channel [1, 4, 5] lists channels 4, 5, not among the file's channels (0..3), it has 4"),
}


@pytest.mark.parametrize("value, want", SELECTIONS.values(), ids=SELECTIONS.keys())
def test_the_one_rule_reads_a_list_of_channels(value, want):
    from sde.audio import channel_selection

    if isinstance(want, str):
        with pytest.raises(AudioError) as err:
            channel_selection(value, "/data/array.wav", 4)
        assert want in str(err.value) and "array.wav" in str(err.value) and "fix the line's audio_channel" in str(err.value)
        return
    expected = want[0] if len(want) == 1 else tuple(want)
    assert channel_selection(value, "/data/array.wav", 4) == expected


def _manifest(folder: Path, values: list[object], name: str = "m.json") -> Path:
    lines = [{"audio_filepath": "array.wav", "duration": 1.0, "text": f"line {k}",
              **({} if value is None else {"audio_channel": value})} for k, value in enumerate(values)]
    path = folder / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _server(dataset) -> Flask:
    server = Flask(__name__)
    register_api(server, dataset)
    return server


GOOD = [[1, 2], [0, 3], 0, None]  # the lines of one file; None: no audio_channel (every channel mixed)


def test_the_audio_route_plays_the_mean_of_the_listed_channels(array4):
    folder, data = array4
    client = _server(build_dataset(_manifest(folder, GOOD))).test_client()
    for k, value in enumerate(GOOD):
        answer = client.get(f"/audio/{k}.wav")
        assert answer.status_code == 200, answer.data
        heard, rate = sf.read(io.BytesIO(answer.data), dtype="float32")
        channels = [0, 1, 2, 3] if value is None else [value] if isinstance(value, int) else value
        assert rate == SR and len(heard) == SR
        np.testing.assert_allclose(heard, _mean(data, channels), atol=1e-4)  # 16-bit PCM


@pytest.mark.parametrize("kind", ["linear", "mel"])
def test_the_figures_of_a_list_answer(array4, kind):
    folder, _ = array4
    client = _server(build_dataset(_manifest(folder, GOOD))).test_client()
    answer = client.get(f"/api/utterances/0/signal?kind={kind}")
    assert answer.status_code == 200, answer.data
    body = answer.get_json()
    assert body["channels"] == 4 and body["duration"] == pytest.approx(1.0, abs=1e-3) and body["figure"]["data"]


def test_the_measures_of_a_list_are_of_the_mean(array4):
    folder, data = array4
    dataset = build_dataset(_manifest(folder, GOOD))
    metrics = compute_audio_metrics(dataset.utterances, workers=1)
    for k, channels in ((0, [1, 2]), (1, [0, 3])):
        mean = _mean(data, channels)
        assert metrics["rms_dbfs"][k] == pytest.approx(_rms_dbfs(mean), abs=0.01)
        assert metrics["peak_dbfs"][k] == pytest.approx(20 * math.log10(float(np.abs(mean).max())), abs=0.01)
        assert metrics["channels"][k] == 4  # the file's
    assert metrics["rms_dbfs"][2] == pytest.approx(_rms_dbfs(data[:, 0]), abs=0.01)
    # the speech-activity side (levels, loudness, hash) reads the same mean: [1, 2] and [0, 3] differ
    measured = measure_segments(dataset.utterances, ("hash", "loudness"), workers=1)
    assert measured["quality_error"].isna().all()
    assert len(set(measured["audio_hash"])) == len(GOOD)


def test_transcription_hears_the_mean_of_the_listed_channels(array4):
    folder, data = array4
    heard = read_audio(str(folder / "array.wav"), 0.0, None, SR, [2, 1])
    np.testing.assert_allclose(heard, _mean(data, [1, 2]), atol=1e-6)


def test_a_list_is_read_block_by_block(tmp_path):
    """A long segment is never read whole: each block of every channel is averaged as it comes."""
    seconds, block = 6, 4096
    t = np.arange(SR * seconds) / SR
    data = np.stack([a * np.sin(2 * np.pi * f * t) for a, f in TONES], axis=1).astype(np.float32)
    sf.write(tmp_path / "long.wav", data, SR, subtype="FLOAT")
    with open_segment(str(tmp_path / "long.wav"), 1.0, 4.0, channel=[3, 0]) as reader:
        assert reader.channel == (0, 3)
        blocks = list(reader.raw_blocks(block))
    assert max(len(b) for b in blocks) == block
    np.testing.assert_allclose(np.concatenate(blocks), _mean(data[SR:5 * SR], [0, 3]), atol=1e-6)


# ------------------------------------------------------------------------------- predictions

READS = {
    "one piece": lambda source, options, cache: build_dataset(source, options),
    "part by part": lambda source, options, cache: load_dataset(source, options, cache_dir=cache, part_bytes=64,
                                                                threads=1),
}
LINES = [[0, 1], 0, [2, 3]]  # three lines on one file and offset: the pair, its first channel, the other pair
PREDICTIONS = {
    # (each prediction's audio_channel and text, each line's prediction, words a warning has)
    "each_line_takes_the_prediction_of_its_channels": (
        [("[2, 3]", "two three"), (0, "zero"), ([1, 0], "zero one")], ["zero one", "zero", "two three"], None),
    "a_prediction_without_a_channel_fits_every_line_and_goes_to_none": (
        [(None, "which"), (0, "zero")], [None, "zero", None],
        "on channels 0, [0, 1] and [2, 3]"),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
@pytest.mark.parametrize("said, expected, note", PREDICTIONS.values(), ids=PREDICTIONS.keys())
def test_predictions_land_on_the_line_of_their_channels(array4, tmp_path, read, said, expected, note):
    folder, _ = array4
    manifest = _manifest(folder, LINES, name=f"m_{tmp_path.name}.json")
    preds = tmp_path / "p.json"
    preds.write_text("".join(json.dumps({"audio_filepath": "array.wav", "offset": 0.0, "pred_text": text,
                                         **({} if c is None else {"audio_channel": c})}) + "\n"
                             for c, text in said), encoding="utf-8")
    preds_copy = folder / preds.name  # beside the manifest: relative audio paths resolve alike
    preds_copy.write_text(preds.read_text(encoding="utf-8"), encoding="utf-8")
    dataset = read(str(manifest), DatasetOptions(predictions=str(preds_copy)), tmp_path / "cache")
    column = dataset.utterances["pred_text"]
    assert [None if missing else v for v, missing in zip(column.astype(object), column.isna())] == expected
    if note:
        assert any(note in str(w) for w in dataset.warnings), [str(w) for w in dataset.warnings]


# ------------------------------------------------------------------------ refused, said clearly

BAD = {
    "a_repeated_channel": ([1, 1], "audio_channel [1, 1] lists channel 1 more than once"),
    "a_channel_the_file_lacks": ([0, 7], "audio_channel [0, 7] lists channel 7, not among the file's channels"),
    "an_empty_list": ([], "audio_channel [] is an empty list of channels"),
}


@pytest.mark.parametrize("value, words", BAD.values(), ids=BAD.keys())
def test_a_bad_list_is_refused_by_the_server_naming_file_and_value(array4, tmp_path, value, words):
    folder, _ = array4
    dataset = build_dataset(_manifest(folder, [value, 1], name=f"bad_{tmp_path.name}.json"))
    client = _server(dataset).test_client()
    answer = client.get("/audio/0.wav")
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert words in error and str(folder / "array.wav") in error and "fix the line's audio_channel" in error
    assert client.get("/api/utterances/0/signal?kind=linear").status_code == 422
    assert client.get("/audio/1.wav").status_code == 200  # the other line plays
    metrics = compute_audio_metrics(dataset.utterances, workers=1)
    assert words in metrics["audio_error"][0] and metrics["audio_error"].isna()[1]


def test_sde_stats_counts_a_bad_list_as_unreadable(array4, tmp_path):
    need_vad()  # --vad: Silero VAD, the extra sde[vad]
    folder, _ = array4
    manifest = _manifest(folder, [[0, 0], [0, 1]], name=f"stats_{tmp_path.name}.json")
    done = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--vad", "--no-cache",
                           "--threads", "1", "--json"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["speech_unmeasured"] == 1 and summary["utterances"] == 2
