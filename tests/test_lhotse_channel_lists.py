"""Lhotse cuts on several channels of a microphone array, written by lhotse itself: a supervision
whose ``channel`` lists some channels of the file is heard (played, measured) as the mean of those
channels, not as the mix of every microphone. Before, such a row named no audio_channel, so a
supervision on 2 of 4 microphones played all 4."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from flask import Flask

from sde.dataset import build_dataset
from sde.manifest import read_manifest
from sde.web.api import register_api

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, MultiCut, Recording, SupervisionSegment  # noqa: E402

SR = 16000
TONES = ((0.4, 220.0), (0.3, 440.0), (0.2, 880.0), (0.1, 1760.0))  # a different tone per microphone
START, LENGTH = 0.5, 1.0


@pytest.fixture(scope="module")
def array4(tmp_path_factory) -> tuple[Path, Recording, np.ndarray]:
    folder = tmp_path_factory.mktemp("lhotse_array4")
    t = np.arange(2 * SR) / SR
    data = np.stack([a * np.sin(2 * np.pi * f * t) for a, f in TONES], axis=1).astype(np.float32)
    sf.write(folder / "array.wav", data, SR, subtype="FLOAT")
    return folder, Recording.from_file(folder / "array.wav", recording_id="array"), data


def _heard(dataset) -> list[np.ndarray]:
    server = Flask(__name__)
    register_api(server, dataset)
    out = []
    for k in range(len(dataset.utterances)):
        answer = server.test_client().get(f"/audio/{k}.wav")
        assert answer.status_code == 200, answer.data
        out.append(sf.read(io.BytesIO(answer.data), dtype="float32")[0])
    return out


def _segment_mean(data: np.ndarray, channels: list[int]) -> np.ndarray:
    return data[round(START * SR):round((START + LENGTH) * SR), channels].mean(axis=1)


# (a supervision's channel, the file's channels whose mean the row plays)
SUPERVISIONS = {
    "two_of_four_microphones_play_their_mean": ([0, 1], [0, 1]),
    "another_pair_plays_its_own_mean": ([2, 3], [2, 3]),
    "one_microphone_plays_alone": (2, [2]),
    "every_microphone_plays_the_mix": ([0, 1, 2, 3], [0, 1, 2, 3]),
}


def test_a_multicut_supervision_on_listed_channels_plays_their_mean(array4, tmp_path):
    folder, recording, data = array4
    sups = [SupervisionSegment(f"s{k}", "array", START, LENGTH, channel=channel, text=name)
            for k, (name, (channel, _)) in enumerate(SUPERVISIONS.items())]
    cut = MultiCut("array-cut", 0.0, recording.duration, [0, 1, 2, 3], recording=recording, supervisions=sups)
    CutSet.from_cuts([cut]).to_file(folder / "cuts.jsonl.gz")
    dataset = build_dataset(folder / "cuts.jsonl.gz")
    assert list(dataset.utterances["text"]) == list(SUPERVISIONS)
    for heard, (name, (_, channels)) in zip(_heard(dataset), SUPERVISIONS.items()):
        np.testing.assert_allclose(heard, _segment_mean(data, channels), atol=1e-4, err_msg=name)


def test_a_monocut_whose_channel_is_a_list_plays_the_mean(array4):
    folder, recording, data = array4
    sup = SupervisionSegment("s", "array", START, LENGTH, channel=[1, 3], text="one and three")
    cut = MultiCut("pair", 0.0, recording.duration, [1, 3], recording=recording, supervisions=[sup])
    CutSet.from_cuts([cut]).to_file(folder / "pair.jsonl.gz")
    line = json.loads(gzip.open(folder / "pair.jsonl.gz", "rt").read())
    line["type"] = "MonoCut"  # a list channel on a MonoCut, as lhotse reads it back
    with gzip.open(folder / "mono.jsonl.gz", "wt") as f:
        f.write(json.dumps(line) + "\n")
    assert type(next(iter(CutSet.from_file(folder / "mono.jsonl.gz")))).__name__ == "MonoCut"
    [heard] = _heard(build_dataset(folder / "mono.jsonl.gz"))
    np.testing.assert_allclose(heard, _segment_mean(data, [1, 3]), atol=1e-4)


def test_a_shar_multicut_supervision_on_some_of_its_channels_plays_their_mean(array4, tmp_path):
    # the member holds the cut's channels 0, 1, 2 (in that order): [1, 2] are its 2nd and 3rd
    _, recording, data = array4
    sups = [SupervisionSegment("pair", "array", START, LENGTH, channel=[1, 2], text="one two"),
            SupervisionSegment("all", "array", START, LENGTH, channel=[0, 1, 2], text="zero one two")]
    cut = MultiCut("three", 0.0, recording.duration, [0, 1, 2], recording=recording, supervisions=sups)
    (tmp_path / "shar").mkdir()
    CutSet.from_cuts([cut]).to_shar(tmp_path / "shar", fields={"recording": "flac"})
    rows = read_manifest(str(tmp_path / "shar")).table
    assert json.loads(rows["audio_channel"][0]) == [1, 2] and rows["audio_channel"].isna()[1]
    heard = _heard(build_dataset(str(tmp_path / "shar")))
    np.testing.assert_allclose(heard[0], _segment_mean(data, [1, 2]), atol=2e-4)  # 16-bit FLAC
    np.testing.assert_allclose(heard[1], _segment_mean(data, [0, 1, 2]), atol=2e-4)
