"""A damaged Lhotse Shar folder (written by lhotse's CutSet.to_shar from espeak-ng speech) through
the real CLI: a missing or empty cuts shard, a gap in the cuts numbering, a folder of tars without
cuts, one cuts file passed alone, and a Shar folder in a bucket are each told by name, with the fix;
a skipped shard counts as a skipped file and --strict stops at it, in words for a file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, Recording, SupervisionSegment  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CUTS = 11          # 3 shards of 4, 4 and 3 cuts
SHARD_SIZE = 4
LINE_HINT = "Fix or remove that line"
FILE_HINT = "Restore or re-create that file"


def sde(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def shar(tmp_path_factory) -> Path:
    """A real Shar folder: CUTS espeak-ng utterances, SHARD_SIZE cuts a shard."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("shar_src")
    cuts = []
    for k in range(CUTS):
        wav = folder / f"u{k}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), f"utterance number {k}"], check=True, capture_output=True)
        rec = Recording.from_file(wav, recording_id=f"rec{k}")
        cut = rec.to_cut()
        cut.supervisions = [SupervisionSegment(id=f"sup{k}", recording_id=rec.id, start=0.0, duration=rec.duration,
                                               text=f"utterance number {k}")]
        cuts.append(cut)
    out = folder / "shar"
    out.mkdir()
    CutSet.from_cuts(cuts).to_shar(str(out), fields={"recording": "wav"}, shard_size=SHARD_SIZE)
    assert sorted(p.name for p in out.iterdir()) == [f"{kind}.{n:06d}.{ext}" for kind, ext in
                                                     (("cuts", "jsonl.gz"), ("recording", "tar")) for n in range(3)]
    return out


def _copy(shar: Path, tmp_path: Path, name: str = "bad") -> Path:
    target = tmp_path / name
    shutil.copytree(shar, target)
    return target


def _stats(folder: Path, *more: str) -> subprocess.CompletedProcess:
    return sde("stats", folder.name, "--json", "--no-cache", *more, cwd=folder.parent)


def _no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr, r.stderr


def test_the_whole_folder_loads(shar):
    r = _stats(shar)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["utterances"], summary["skipped_files"]) == (CUTS, 0)


def test_a_missing_cuts_shard_beside_its_tar_is_a_skipped_file(shar, tmp_path):
    """QA: 8 of 11 utterances, skipped_files 0, and --strict exited 0 (lhotse itself refuses it)."""
    bad = _copy(shar, tmp_path)
    (bad / "cuts.000002.jsonl.gz").unlink()  # recording.000002.tar stays
    r = _stats(bad)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["utterances"], summary["skipped_files"]) == (2 * SHARD_SIZE, 1)
    said = [line for line in r.stderr.splitlines() if "bad/cuts.000002.jsonl.gz" in line]
    assert said and "missing" in said[0] and "recording.000002.tar" in said[0] and "copy it again" in said[0], r.stderr

    strict = _stats(bad, "--strict")
    assert strict.returncode != 0 and not strict.stdout
    assert "bad/cuts.000002.jsonl.gz: missing" in strict.stderr and FILE_HINT in strict.stderr, strict.stderr
    assert LINE_HINT not in strict.stderr
    _no_traceback(strict)


def test_a_gap_in_the_cuts_numbering_is_a_skipped_file(shar, tmp_path):
    """Shard 1 gone whole (cuts and tar), shard 2 still there: cuts 0 and 2 load, the gap is told."""
    bad = _copy(shar, tmp_path, "gap")
    (bad / "cuts.000001.jsonl.gz").unlink()
    (bad / "recording.000001.tar").unlink()
    r = _stats(bad)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["utterances"], summary["skipped_files"]) == (CUTS - SHARD_SIZE, 1)
    said = [line for line in r.stderr.splitlines() if "gap/cuts.000001.jsonl.gz" in line]
    assert said and "missing" in said[0] and "cuts.000000" in said[0] and "cuts.000002" in said[0], r.stderr

    strict = _stats(bad, "--strict")
    assert strict.returncode != 0 and "gap/cuts.000001.jsonl.gz: missing" in strict.stderr, strict.stderr
    assert FILE_HINT in strict.stderr and LINE_HINT not in strict.stderr


def test_strict_at_a_missing_tar_speaks_of_a_file(shar, tmp_path):
    bad = _copy(shar, tmp_path)
    (bad / "recording.000001.tar").unlink()
    strict = _stats(bad, "--strict")
    assert strict.returncode != 0 and "bad/recording.000001.tar: missing" in strict.stderr, strict.stderr
    assert FILE_HINT in strict.stderr and LINE_HINT not in strict.stderr
    _no_traceback(strict)


def test_an_empty_shar_folder_says_why(shar, tmp_path):
    """QA: 'no usable supervision in this Lhotse shar source:' ended at the colon."""
    empty = tmp_path / "emptyshar"
    empty.mkdir()
    (empty / "cuts.000000.jsonl.gz").write_bytes(b"")
    (empty / "recording.000000.tar").write_bytes(b"")
    r = _stats(empty)
    assert r.returncode != 0 and not r.stdout
    assert "emptyshar/cuts.000000.jsonl.gz: is empty (0 bytes)" in r.stderr, r.stderr
    assert "copy the file again" in r.stderr and not r.stderr.rstrip().endswith(":"), r.stderr
    _no_traceback(r)


def test_an_empty_cuts_shard_among_others_is_a_skipped_file(shar, tmp_path):
    bad = _copy(shar, tmp_path)
    (bad / "cuts.000000.jsonl.gz").write_bytes(b"")
    r = _stats(bad)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["utterances"], summary["skipped_files"]) == (CUTS - SHARD_SIZE, 1)
    assert "bad/cuts.000000.jsonl.gz: is empty (0 bytes)" in r.stderr, r.stderr


def test_a_folder_of_recording_tars_without_cuts(shar, tmp_path):
    """QA: 'is a folder; pass the manifest file inside it' (one file loads one shard)."""
    tars = _copy(shar, tmp_path, "tars")
    for cuts in tars.glob("cuts.*"):
        cuts.unlink()
    r = _stats(tars)
    assert r.returncode != 0 and not r.stdout
    assert "tars: a Lhotse Shar folder without its cuts files" in r.stderr, r.stderr
    assert "recording.000000.tar" in r.stderr and "cuts.N.jsonl.gz" in r.stderr
    assert "pass the manifest file inside it" not in r.stderr
    _no_traceback(r)


def test_one_cuts_file_of_a_shar_given_alone_points_to_the_folder(shar):
    r = sde("stats", "shar/cuts.000000.jsonl.gz", "--json", "--no-cache", cwd=shar.parent)
    assert r.returncode != 0, r.stdout
    assert "pass the folder itself" in r.stderr and "unsupported audio source type" not in r.stderr, r.stderr


@pytest.mark.parametrize("slash", ["/", ""], ids=["slash", "no-slash"])
def test_a_shar_folder_in_a_bucket_is_read_locally_only(shar, moto_endpoint, slash):
    pytest.importorskip("s3fs", reason="reading s3:// needs s3fs (pip install s3fs)")
    from tests.s3_kit import client, storage

    s3 = client(moto_endpoint)
    bucket = "sde-shar-folder"
    s3.create_bucket(Bucket=bucket)
    for path in shar.iterdir():
        s3.upload_file(str(path), bucket, f"corpus/shar/{path.name}")
    r = sde("stats", f"s3://{bucket}/corpus/shar{slash}", "--storage-options", storage(moto_endpoint), "--json",
            "--no-cache", cwd=shar.parent)
    assert r.returncode != 0 and not r.stdout
    assert "a Lhotse Shar folder; sde reads Shar from local folders only" in r.stderr, r.stderr
    assert f"s3://{bucket}/corpus/shar/ shar/" in r.stderr and "is a folder; pass the manifest" not in r.stderr
    _no_traceback(r)
