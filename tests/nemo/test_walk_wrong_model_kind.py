"""A .nemo that is a NeMo model but not a speech recognizer (a classification/VAD or speaker model,
which has a transcribe() of its own) is refused at load, saying what it is and what to pass, instead
of a TypeError blamed on the first audio file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sde.nemo.command import transcribe_command
from sde.nemo.model import load_model
from tests.nemo.speech_kit import speech_rows, write_jsonl

pytestmark = pytest.mark.nemo
SR = 16000


@pytest.fixture(scope="module")
def classifier_nemo(nemo_asr, tmp_path_factory) -> Path:
    """A tiny untrained EncDecClassificationModel (speech / background), saved as a .nemo file."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "sample_rate": SR, "labels": ["speech", "background"], "train_ds": None, "validation_ds": None,
        "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                         "sample_rate": SR, "features": 16, "n_fft": 512, "window_size": 0.025,
                         "window_stride": 0.01, "dither": 0.0},
        "encoder": {"_target_": "nemo.collections.asr.modules.ConvASREncoder", "feat_in": 16, "activation": "relu",
                    "conv_mask": True,
                    "jasper": [{"filters": 32, "repeat": 1, "kernel": [11], "stride": [2], "dilation": [1],
                                "dropout": 0.0, "residual": False, "separable": True}]},
        "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoderClassification", "feat_in": 32,
                    "num_classes": 2},
    })
    model = nemo_asr.models.EncDecClassificationModel(cfg=cfg)
    path = tmp_path_factory.mktemp("cls") / "vad.nemo"
    model.save_to(str(path))
    return path


def test_a_classification_model_is_refused_at_load(classifier_nemo):
    from sde.nemo.model import TranscribeError

    with pytest.raises(TranscribeError, match=r"vad\.nemo is an EncDecClassificationModel: .*gives labels, not "
                                              r"transcripts; pass a speech recognition model"):
        load_model(classifier_nemo, "cpu")


def test_the_cli_says_so_without_touching_the_output(classifier_nemo, audio_dir, tmp_path):
    m = write_jsonl(tmp_path / "m.json", speech_rows(audio_dir, tmp_path)[:2])
    out = tmp_path / "o.json"
    r = CliRunner().invoke(transcribe_command, [str(m), "--model", str(classifier_nemo), "--out", str(out),
                                                "--device", "cpu", "--no-progress"])
    assert r.exit_code == 1
    assert "gives labels, not transcripts" in r.output and "TypeError" not in r.output
    assert not out.exists()


def test_speech_recognizers_still_load(tiny_nemo):
    assert load_model(tiny_nemo, "cpu").transcribe is not None
