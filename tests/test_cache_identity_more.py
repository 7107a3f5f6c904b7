"""The content record of a cache entry (sde.cache.identity), the remaining cases:

* a Lhotse Shar folder's cuts file edited with its size and time kept is told (it kept no record,
  and its old rows were served);
* a read-only cache folder cannot renew the record of a file copied back with its times: it is read
  whole at every start, and the start says so once, with the remedy.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.build.load import load_dataset

ROOT = Path(__file__).resolve().parent.parent
SR = 16000
#: `sde` run as root that the permission bits bind, as they bind any owner (tests/test_cache_read_only.py).
BOUND_BY_MODE_BITS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def shar_folder(tmp_path: Path) -> Path:
    """A Lhotse Shar folder of two cuts of real audio, its cuts file plain JSON lines (a same-size
    edit is then a replace, as sed -i makes it)."""
    lhotse = pytest.importorskip("lhotse")
    cuts = []
    for i in range(2):
        audio = tmp_path / f"a{i}.wav"
        sf.write(audio, (0.1 * np.sin(2 * np.pi * 220 * np.arange(SR // 2) / SR)).astype("float32"), SR)
        recording = lhotse.Recording.from_file(audio, recording_id=f"r{i}")
        cuts.append(lhotse.MonoCut(id=f"c{i}", start=0, duration=0.5, channel=0, recording=recording, supervisions=[
            lhotse.SupervisionSegment(id=f"s{i}", recording_id=f"r{i}", start=0, duration=0.5, text=f"teh word {i}")]))
    folder = tmp_path / "shar"
    folder.mkdir()
    lhotse.CutSet.from_cuts(cuts).to_shar(folder, fields={"recording": "flac"}, shard_size=10)
    packed = folder / "cuts.000000.jsonl.gz"
    (folder / "cuts.000000.jsonl").write_bytes(gzip.decompress(packed.read_bytes()))
    packed.unlink()
    return folder


def same_size_edit_time_put_back(path: Path) -> None:
    st = path.stat()
    path.write_bytes(path.read_bytes().replace(b"teh", b"the"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


SHAR_EDITS = {
    # what happened to the cuts file since the build: (do it, the texts served, the warning names it)
    "untouched": (lambda path: None, ["teh word 0", "teh word 1"], False),
    "same-size edit, time put back": (same_size_edit_time_put_back, ["the word 0", "the word 1"], True),
}


@pytest.mark.parametrize("case", list(SHAR_EDITS), ids=list(SHAR_EDITS))
def test_a_shar_folders_cuts_file_edited_with_size_and_time_kept_is_built_again(tmp_path, case):
    edit, texts, warned = SHAR_EDITS[case]
    folder = shar_folder(tmp_path)
    cache = tmp_path / "cache"
    assert list(load_dataset(str(folder), cache_dir=cache).utterances["text"]) == ["teh word 0", "teh word 1"]
    edit(folder / "cuts.000000.jsonl")
    warnings: list[str] = []
    said: list[str] = []
    again = load_dataset(str(folder), cache_dir=cache, warn=warnings.append, status=said.append)
    assert list(again.utterances["text"]) == texts
    assert any(f"{folder / 'cuts.000000.jsonl'} changed since the dataset was cached" in w for w in warnings) == warned
    assert ("loaded from cache" in said) == (not warned)


def copied_back_with_its_times(path: Path) -> None:
    """Another file in its place, the same bytes, size and modification time (cp -p, a restore)."""
    copy = shutil.copy2(path, path.with_name("copy.json"))
    os.replace(copy, path)


READ_ONLY_STARTS = {
    # what happened to the manifest since it was indexed: (do it, whether the start says it read it whole)
    "untouched": (lambda path: None, False),
    "copied back with its times": (copied_back_with_its_times, True),
}


@pytest.mark.parametrize("case", list(READ_ONLY_STARTS), ids=list(READ_ONLY_STARTS))
def test_a_read_only_cache_says_once_that_it_reads_a_copied_manifest_at_every_start(tmp_path, case):
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run sde bound by permission bits")
    do, said = READ_ONLY_STARTS[case]
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"u{i}.wav", "duration": 1.0, "text": f"line {i}"})
                                + "\n" for i in range(5)), encoding="utf-8")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    load_dataset(str(manifest), cache_dir=cache)
    do(manifest)
    cache.chmod(0o500)
    try:
        r = subprocess.run([*BOUND_BY_MODE_BITS, sys.executable, "-m", "sde.cli", "stats", str(manifest),
                            "--cache-dir", str(cache)], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        cache.chmod(0o700)
    assert r.returncode == 0, r.stderr
    assert "loaded from cache" in r.stderr and "building it again" not in r.stderr, r.stderr
    notes = [line for line in r.stderr.splitlines() if f"{manifest} (0.0 MB) was read whole" in line]
    assert len(notes) == (1 if said else 0), r.stderr
    if said:
        assert "every start reads it again" in notes[0] and f"--cache-dir {cache}" in notes[0]
