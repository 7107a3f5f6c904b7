"""Fixtures shared by the whole suite (module-specific fixtures live in their own test files)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterable

import pytest
import soundfile as sf

LABELS = list(" abcdefghijklmnopqrstuvwxyz'")
SR = 16000


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (dicts, or raw strings for deliberately bad lines) as a JSONL manifest."""

    def write(rows: Iterable[dict | str], name: str = "manifest.json") -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
                f.write("\n")
        return path

    return write


# One small hostile manifest for the web tests (API, callbacks): two hypotheses, an extra numeric
# field, user text that is HTML, a spreadsheet formula, a zero duration and a bad line (line 5).

XSS = "<script>alert(1)</script> hello"
IMG = "<img src=x onerror=alert(1)>"
WEB_ROWS = [
    {"audio_filepath": "a0.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the cat sat",
     "pred_text_b": "the bat sat", "speaker": "en-gb", "snr": 12.5},
    {"audio_filepath": "a1.wav", "duration": 3.0, "text": "hello world again", "pred_text": "hello word",
     "pred_text_b": "hello world again", "speaker": "en-us", "snr": 3.0},
    {"audio_filepath": "a2.wav", "duration": 1.5, "text": XSS, "pred_text": IMG,
     "pred_text_b": XSS, "speaker": "en-gb"},                                   # snr missing → null
    {"audio_filepath": "a3.wav", "duration": 4.0, "text": "=1+2 is a formula", "pred_text": "-5 dollars",
     "pred_text_b": "@home", "speaker": "=cmd|' /C calc'!A0", "snr": -4.0},
    "{not json",                                                                # a bad line (line 5)
    {"audio_filepath": "a5.wav", "duration": 0.0, "text": "", "pred_text": "uh",
     "pred_text_b": "", "speaker": "en-us", "snr": 30.0},                       # zero duration → NaN rates
    {"audio_filepath": "a6.wav", "duration": 2.5, "text": "the dog sat on the mat", "pred_text": "a dog sat on mat",
     "pred_text_b": "the dog sat on the mat", "speaker": "en-gb", "snr": 20.0},
]


@pytest.fixture(scope="session")
def web_manifest(tmp_path_factory) -> Path:
    """WEB_ROWS as a manifest named hostile.json."""
    path = tmp_path_factory.mktemp("web") / "hostile.json"
    with path.open("w", encoding="utf-8") as f:
        for row in WEB_ROWS:
            f.write(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
            f.write("\n")
    return path


@pytest.fixture(scope="session")
def web_dataset(web_manifest):
    from sde.dataset import build_dataset

    return build_dataset(web_manifest)


@pytest.fixture(scope="session")
def web_app(web_dataset):
    """The Dash app over web_dataset (no audio routes: its audio files do not exist)."""
    from sde.web.app import AppConfig, create_app

    return create_app(web_dataset, AppConfig(title=web_dataset.name, audio_routes=False))


@pytest.fixture()
def web_client(web_app):
    return web_app.server.test_client()


# Speech audio and a tiny NeMo model, shared by the transcription, UI and fault tests.


def _speak(text: str, path: Path, sample_rate: int | None) -> float:
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    y, sr = sf.read(raw, dtype="float32")
    raw.unlink()
    if sample_rate is not None and sr != sample_rate:
        import soxr  # librosa's resampling engine, without librosa's slow first import

        y, sr = soxr.resample(y, sr, sample_rate, quality="HQ"), sample_rate
    sf.write(path, y, sr, subtype="PCM_16")
    return len(y) / sr


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    d = tmp_path_factory.mktemp("audio")
    durations = {
        "one.wav": _speak("hello world", d / "one.wav", SR),
        "two.wav": _speak("speech data explorer", d / "two.wav", SR),
        "three.wav": _speak("good morning", d / "three.wav", SR),
        # kept at espeak's 22.05 kHz on purpose: sde must resample it to the model's 16 kHz
        "long.wav": _speak(
            "the quick brown fox jumps over the lazy dog and then it runs far away", d / "long.wav", None
        ),
    }
    return d, durations


@pytest.fixture(scope="session")
def nemo_asr():
    try:
        import nemo.collections.asr as nemo_asr
    except Exception as exc:  # not installed, or broken
        pytest.skip(f"nemo_toolkit[asr] cannot be imported: {exc}")
    return nemo_asr


@pytest.fixture(scope="session")
def tiny_nemo(nemo_asr, tmp_path_factory) -> Path:
    """An untrained ~20k-parameter EncDecCTCModel (char vocabulary, mel preprocessor at 16 kHz,
    one separable ConvASR block), saved as a real .nemo file."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "sample_rate": SR,
        "labels": LABELS,
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": SR, "features": 16, "n_fft": 512, "window_size": 0.025, "window_stride": 0.01,
            "dither": 0.0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConvASREncoder",
            "feat_in": 16, "activation": "relu", "conv_mask": True,
            "jasper": [{"filters": 32, "repeat": 1, "kernel": [11], "stride": [2], "dilation": [1],
                        "dropout": 0.0, "residual": False, "separable": True}],
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
            "feat_in": 32, "num_classes": len(LABELS), "vocabulary": LABELS,
        },
        "decoding": {"strategy": "greedy_batch"},
    })
    import torch

    torch.manual_seed(0)
    model = nemo_asr.models.EncDecCTCModel(cfg=cfg)
    path = tmp_path_factory.mktemp("model") / "tiny_ctc.nemo"
    model.save_to(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_nemo):
    from sde.nemo.model import load_model

    return load_model(tiny_nemo, "cpu")




# Browser tests: headless Debian Chromium driven by Playwright (browsers cannot be downloaded here).


@pytest.fixture(scope="module")
def browser():
    from tests.browser_kit import CHROMIUM, CHROMIUM_ARGS

    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():  # pragma: no cover
        pytest.skip(f"no Chromium at {CHROMIUM} (set SDE_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def demo():
    """The URL of `sde demo` served by the real CLI for the module's tests."""
    from tests.browser_kit import sde_server

    with sde_server("demo") as url:
        yield url


@pytest.fixture()
def page(browser):
    from tests.browser_kit import TIMEOUT_MS

    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3-compatible server (moto's server mode on 127.0.0.1) for the session."""
    pytest.importorskip("moto.server", reason="the local S3 server is moto's: pip install 'moto[server]'")
    from tests.s3_kit import start_moto, stop

    proc, endpoint = start_moto()
    yield endpoint
    stop(proc)


@pytest.fixture
def configured(moto_endpoint):
    """In-process reads see the local server (as --storage-options does for the CLI)."""
    from sde.sources import remote

    remote.configure({"endpoint_url": moto_endpoint, "key": "x", "secret": "y"})
    yield moto_endpoint
    remote.configure(None)


@pytest.fixture()
def threads_setting():
    """sde.engine.configure, as --threads / --memory-limit set it; the defaults again after."""
    from sde.engine import configure

    yield configure
    configure()
