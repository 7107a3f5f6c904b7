"""`sde export -o kept.json.gz` was called "a NeMo manifest", but NeMo's AudioTo*Dataset (and
read_manifest) open a manifest as text and fail on gzip (UnicodeDecodeError, byte 0x8b); only its
Lhotse dataloading reads .gz. The export's last line and its --help say so; the claim is checked
here with the real NeMo classes on the real export's outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nemo.speech_kit import speech_rows, write_jsonl

pytestmark = pytest.mark.nemo

ROOT = str(Path(__file__).resolve().parents[2])
NOTE = "NeMo's AudioTo*Dataset reads plain .json; its Lhotse dataloading (use_lhotse) reads .gz"
LABELS = list("abcdefghijklmnopqrstuvwxyz' ")


def _sde(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": ROOT})


@pytest.fixture()
def exported(audio_dir, tmp_path) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    write_jsonl(tmp_path / "m.json", speech_rows(audio_dir, tmp_path)[:3])
    gz = _sde(tmp_path, "export", "m.json", "-o", "kept.json.gz", "--no-cache")
    plain = _sde(tmp_path, "export", "m.json", "-o", "kept.json", "--no-cache")
    assert gz.returncode == 0 and plain.returncode == 0, gz.stderr[-2000:] + plain.stderr[-2000:]
    return tmp_path, gz, plain


def test_the_last_line_of_a_gz_export_says_which_nemo_readers_read_it(exported):
    _, gz, plain = exported
    assert gz.stderr.strip().splitlines()[-1] == f"note: kept.json.gz is gzip-compressed: {NOTE}"
    assert "use_lhotse" not in plain.stderr


def test_the_help_of_export_says_it(tmp_path):
    r = _sde(tmp_path, "export", "--help")
    assert NOTE in " ".join(r.stdout.split())


def test_nemo_audio_to_text_datasets_read_the_plain_export_and_fail_on_the_gz_one(exported, nemo_asr):
    from nemo.collections.asr.data.audio_to_text import AudioToBPEDataset, AudioToCharDataset
    from nemo.collections.asr.parts.utils.manifest_utils import read_manifest

    folder, _, _ = exported
    assert len(AudioToCharDataset(manifest_filepath=str(folder / "kept.json"), labels=LABELS,
                                  sample_rate=16000)) == 3
    assert [r["text"] for r in read_manifest(str(folder / "kept.json"))][0] == "hello world"
    with pytest.raises(UnicodeDecodeError):
        AudioToCharDataset(manifest_filepath=str(folder / "kept.json.gz"), labels=LABELS, sample_rate=16000)
    with pytest.raises(UnicodeDecodeError):
        read_manifest(str(folder / "kept.json.gz"))
    tokenizer = _tokenizer()
    assert len(AudioToBPEDataset(manifest_filepath=str(folder / "kept.json"), tokenizer=tokenizer,
                                 sample_rate=16000)) == 3
    with pytest.raises(UnicodeDecodeError):
        AudioToBPEDataset(manifest_filepath=str(folder / "kept.json.gz"), tokenizer=tokenizer, sample_rate=16000)


def test_nemo_lhotse_dataloading_reads_the_gz_export(exported, nemo_asr):
    from nemo.collections.common.data.lhotse.nemo_adapters import LazyNeMoIterator

    folder, _, _ = exported
    cuts = list(LazyNeMoIterator(str(folder / "kept.json.gz")))
    assert [c.supervisions[0].text for c in cuts] == ["hello world", "quick brown fox", "speech data explorer"]
    assert cuts[1].start == pytest.approx(0.4, abs=1e-6) and cuts[1].duration == pytest.approx(1.1, abs=1e-6)


def _tokenizer():
    """A character tokenizer from labels (no download, no training)."""
    import tempfile

    from nemo.collections.common.tokenizers.char_tokenizer import CharTokenizer

    vocab = Path(tempfile.mkdtemp()) / "vocab.txt"
    vocab.write_text("".join(f"{c!r}\n" if c != " " else "' '\n" for c in LABELS if c not in " '") + "' '\n")
    return CharTokenizer(str(vocab), bos_token="<s>", eos_token="</s>", pad_token="<pad>")
