"""`sde transcribe` reads the manifest files `sde MANIFEST` reads: a UTF-8 BOM (Windows editors),
CRLF line ends, gzip/bzip2/xz compression (NeMo scripts' m.json.gz); a line that is not UTF-8 or a
damaged compressed file is an error naming the file, the line and the fix. Real speech, the tiny
real .nemo model of tests/conftest.py."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest
from click.testing import CliRunner

from sde.nemo.command import transcribe_command
from sde.nemo.jobs import output_path, transcribe_manifest
from tests.nemo.speech_kit import read_jsonl, speech_rows, write_jsonl

FILES = {
    # id: (file name, its bytes from the plain manifest's)
    "a UTF-8 BOM": ("m.json", lambda raw: b"\xef\xbb\xbf" + raw),
    "CRLF line ends": ("m.json", lambda raw: raw.replace(b"\n", b"\r\n")),
    "gzip": ("m.json.gz", gzip.compress),
    "bzip2": ("m.json.bz2", bz2.compress),
    "xz": ("m.json.xz", lzma.compress),
}


@pytest.fixture()
def plain(audio_dir, tmp_path) -> Path:
    return write_jsonl(tmp_path / "plain.json", speech_rows(audio_dir, tmp_path)[:3])


@pytest.mark.parametrize("name, make", FILES.values(), ids=FILES.keys())
def test_a_manifest_file_sde_reads_transcribes_as_the_plain_one(plain, tiny_model, tmp_path, name, make):
    # the BOM was "invalid JSON" at line 1, a .gz a UnicodeDecodeError of byte 0x8b
    expected = read_jsonl(transcribe_manifest(plain, tiny_model, out=tmp_path / "plain_out.json", device="cpu",
                                              progress=False))
    source = tmp_path / "in" / name
    source.parent.mkdir()
    source.write_bytes(make(plain.read_bytes()))
    out = transcribe_manifest(source, tiny_model, out=tmp_path / "out.json", device="cpu", progress=False)
    assert read_jsonl(out) == expected


def test_outputs_are_named_after_the_manifest_without_its_compression(tmp_path):
    assert output_path(tmp_path / "train.json.gz", "/m/tiny.nemo", tmp_path) == tmp_path / "train_tiny.json"
    assert output_path(tmp_path / "dev.jsonl.xz", "/m/tiny.nemo", tmp_path) == tmp_path / "dev_tiny.json"


DAMAGED = {
    "latin-1 text": ("m.json", lambda raw: raw + '{"audio_filepath": "a.wav", "duration": 1, "text": "caf\xe9"}\n'
                     .encode("latin-1"), "m.json:4: not valid UTF-8 (byte 0xe9 at column 56); fix the line, or "
                                         "convert the file, e.g. iconv"),
    "a gzip cut short": ("m.json.gz", lambda raw: gzip.compress(raw)[:-20],
                         "m.json.gz: the compressed file is damaged or cut short after line"),
}


@pytest.mark.parametrize("name, make, said", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_manifest_is_an_error_naming_file_line_and_fix(plain, tmp_path, name, make, said):
    source = tmp_path / name
    source.write_bytes(make(plain.read_bytes()))
    r = CliRunner().invoke(transcribe_command, [str(source), "--model", str(tmp_path / "missing.nemo"),
                                                "--out", str(tmp_path / "o.json"), "--no-progress"])
    assert r.exit_code == 1 and said in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "o.json").exists()
