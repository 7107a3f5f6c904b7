"""`sde transcribe` resumes an interrupted run only for the same model, known by its content: a local
.nemo by its resolved path, size and modification time (as the server's prediction cache keys it),
not by the --model string as typed. A model replaced at the same path starts afresh; the same file
named by another path (absolute, through a symlink) resumes; each is said on stderr. An empty
manifest is refused as `sde MANIFEST` refuses it, and a model's kind takes "an" before a vowel.

Real NeMo classes (conftest.py's tiny .nemo, one copy re-weighted), an interruption as
test_transcribe.py's (should_stop after the first batch), then the real CLI in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sde.nemo.infer import TranscribeCancelled
from sde.nemo.jobs import transcribe_manifest
from sde.nemo.model import TranscribeError, load_model
from tests.nemo.speech_kit import read_jsonl, speech_rows, write_jsonl
from tests.nemo.test_walk_wrong_model_kind import classifier_nemo  # noqa: F401  (a fixture)

pytestmark = pytest.mark.nemo
REPO = Path(__file__).resolve().parents[2]


def _sde(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False, timeout=300)


@pytest.fixture()
def manifest(audio_dir, tmp_path) -> Path:
    return write_jsonl(tmp_path / "data.json", speech_rows(audio_dir, tmp_path))


@pytest.fixture(scope="module")
def other_nemo(nemo_asr, tiny_nemo, tmp_path_factory) -> Path:
    """conftest's tiny model with other weights: the same architecture and file size, other predictions."""
    import torch

    model = nemo_asr.models.EncDecCTCModel.restore_from(str(tiny_nemo), map_location=torch.device("cpu"))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    path = tmp_path_factory.mktemp("other") / "other_ctc.nemo"
    model.save_to(str(path))
    return path


def _interrupt(manifest: Path, model: str, out: Path) -> Path:
    """A run stopped after its first batch (2 of the utterances): its part file."""
    polls: list[int] = []

    def stop_after_first_batch() -> bool:
        polls.append(1)
        return len(polls) > 1

    with pytest.raises(TranscribeCancelled, match="after 2 of"):
        transcribe_manifest(manifest, model, out=out, device="cpu", batch_size=2, progress=False,
                            should_stop=stop_after_first_batch)
    partial = out.with_name(out.name + ".partial")
    assert partial.exists() and not out.exists()
    return partial


def test_a_model_replaced_at_the_same_path_starts_afresh(manifest, tiny_nemo, other_nemo, tmp_path):
    old = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "old.json", device="cpu", progress=False)
    new = transcribe_manifest(manifest, str(other_nemo), out=tmp_path / "new.json", device="cpu", progress=False)
    old_preds = [r["pred_text"] for r in read_jsonl(old)]
    new_preds = [r["pred_text"] for r in read_jsonl(new)]
    assert old_preds[:2] != new_preds[:2]  # else mixing them could not be seen

    model = tmp_path / "models" / "tiny.nemo"
    model.parent.mkdir()
    shutil.copyfile(tiny_nemo, model)
    out = tmp_path / "out.json"
    partial = _interrupt(manifest, str(model), out)

    shutil.copyfile(other_nemo, model)  # another model, same path (and here the same size)
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # even on a coarse-clock file system
    r = _sde(tmp_path, "transcribe", str(manifest), "--model", str(model), "--out", str(out), "--device", "cpu",
             "--no-progress", "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    assert f"{partial} was written for another model" in r.stderr and "starting afresh" in r.stderr
    assert "resuming:" not in r.stderr
    assert [r["pred_text"] for r in read_jsonl(out)] == new_preds  # none of the old model's
    assert not partial.exists()


@pytest.mark.parametrize("how", ["absolute", "symlink"])
def test_the_same_model_named_otherwise_resumes(manifest, tiny_nemo, tmp_path, monkeypatch, how):
    full = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "full.json", device="cpu", progress=False)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy2(tiny_nemo, models / "tiny.nemo")
    out = tmp_path / "out.json"
    monkeypatch.chdir(models)
    partial = _interrupt(manifest, "tiny.nemo", out)  # --model tiny.nemo, as typed in its folder
    monkeypatch.chdir(tmp_path)
    if how == "symlink":
        named = tmp_path / "link.nemo"
        named.symlink_to(models / "tiny.nemo")
    else:
        named = (models / "tiny.nemo").resolve()
    r = _sde(tmp_path, "transcribe", str(manifest), "--model", str(named), "--out", str(out), "--device", "cpu",
             "--no-progress", "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    assert f"resuming: 2 of 5 utterances already transcribed in {partial}" in r.stderr
    assert "starting afresh" not in r.stderr
    assert out.read_bytes() == full.read_bytes()
    assert not partial.exists()


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_manifest_is_refused_as_sde_refuses_it(tiny_nemo, tmp_path, content):
    empty = tmp_path / "empty.json"
    empty.write_text(content)
    r = _sde(tmp_path, "transcribe", "empty.json", "--model", str(tiny_nemo), "--out", "e.json", "--device", "cpu",
             "--no-progress")
    assert r.returncode == 1, r.stderr
    assert "Error: empty.json: no utterances: the file is empty or has only blank lines; " in r.stderr
    assert "wrote" not in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.json"]


def test_a_classification_model_is_an_encdec_model(classifier_nemo):  # noqa: F811
    with pytest.raises(TranscribeError, match=r"vad\.nemo is an EncDecClassificationModel: "):
        load_model(classifier_nemo, "cpu")
