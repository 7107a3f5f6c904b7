"""Audio measures kept in the dataset cache follow a file replaced by another of the same size whose
times were put back (cp --preserve=timestamps, rsync -t, touch -r): the record of each file's state
(sde.build.remeasure) holds its inode and change time too, which no user can set back. Real WAV
files (two signals of equal byte size), a real cache folder, the real load_dataset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde import audio_presence as P
from sde.audio_quality import with_measured_audio
from sde.build.load import entry_key, load_dataset
from sde.build.remeasure import RECORD, RECORD_SIZE_AND_TIME
from sde.cache import DatasetCache
from sde.cache.identity import Recording, input_files
from sde.dataset import DatasetOptions, build_dataset

SR = 16_000
METRICS = DatasetOptions(estimate_audio_metrics=True)
LOUD, QUIET = 0.5, 0.05  # sine amplitudes: RMS -9.03 and -29.03 dBFS, one byte count (same length, PCM_16)


def sine(amplitude: float) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * 440.0 * np.arange(SR // 2) / SR)


def rms_dbfs(amplitude: float) -> float:
    return 20 * np.log10(amplitude / np.sqrt(2))


class Corpus:
    """a.wav (loud, the one replaced) and b.wav (loud, left alone), a manifest, a cache folder."""

    def __init__(self, root: Path) -> None:
        self.audio = root / "audio"
        self.audio.mkdir()
        self.cache = root / "cache"
        for name in ("a.wav", "b.wav"):
            sf.write(self.audio / name, sine(LOUD), SR, subtype="PCM_16")
        self.manifest = root / "manifest.json"
        self.manifest.write_text("".join(json.dumps({"audio_filepath": f"audio/{n}", "duration": 0.5, "text": n}) + "\n"
                                         for n in ("a.wav", "b.wav")))

    def load(self) -> tuple[pd.DataFrame, list[str]]:
        said: list[str] = []
        table = load_dataset(self.manifest, METRICS, cache_dir=self.cache, status=said.append).utterances
        return table, [line for line in said if "audio measures" in line]

    def rms(self, table: pd.DataFrame) -> dict[str, float]:
        return {Path(p).name: float(v) for p, v in zip(table["audio_path"].astype(str), table["rms_dbfs"])}


def quiet_copy_with_the_old_times(path: Path) -> Path:
    """The quiet signal in a file beside `path`, of its byte size, and its times."""
    other = path.with_name("quiet-replacement.wav")
    sf.write(other, sine(QUIET), SR, subtype="PCM_16")
    assert other.stat().st_size == path.stat().st_size
    os.utime(other, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    return other


def renamed_over(path: Path) -> None:
    """Another file moved over it (a new inode), its times put back as they were."""
    st = path.stat()
    os.replace(quiet_copy_with_the_old_times(path), path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def rewritten_in_place(path: Path) -> None:
    """Re-encoded into the same inode (same length of PCM WAV), then its times put back."""
    st = path.stat()
    sf.write(path, sine(QUIET), SR, subtype="PCM_16")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)


def copied_with_cp_preserving_timestamps(path: Path) -> None:
    """`cp --preserve=timestamps` of a same-size file carrying the old times (made with `touch -r`)."""
    if shutil.which("cp") is None or shutil.which("touch") is None:
        pytest.skip("needs cp and touch (coreutils)")
    other = quiet_copy_with_the_old_times(path)
    subprocess.run(["touch", "-r", str(path), str(other)], check=True)
    subprocess.run(["cp", "--preserve=timestamps", str(other), str(path)], check=True)
    other.unlink()


def made_group_writable(path: Path) -> None:
    """Only its mode changed (as by `chmod -R`): its change time moves, which is all sde sees."""
    os.chmod(path, path.stat().st_mode | 0o020)


def left_alone(path: Path) -> None:
    pass


REPLACEMENTS: dict[str, tuple[Callable[[Path], None], float, list[str]]] = {
    "renamed over, times put back": (renamed_over, QUIET, ["changed"]),
    "re-encoded in place, times put back": (rewritten_in_place, QUIET, ["changed"]),
    "cp --preserve=timestamps over it": (copied_with_cp_preserving_timestamps, QUIET, ["changed"]),
    "chmod only: measured again, to the same measures (the price)": (made_group_writable, LOUD, ["changed"]),
    "left alone": (left_alone, LOUD, []),
}


@pytest.mark.parametrize("replacement", list(REPLACEMENTS), ids=list(REPLACEMENTS))
def test_a_file_replaced_by_one_of_the_same_size_is_measured_again(tmp_path, replacement):
    replace, amplitude, told = REPLACEMENTS[replacement]
    corpus = Corpus(tmp_path)
    before, _ = corpus.load()
    assert corpus.rms(before) == pytest.approx({"a.wav": rms_dbfs(LOUD), "b.wav": rms_dbfs(LOUD)}, abs=0.05)
    replace(corpus.audio / "a.wav")
    after, said = corpus.load()
    assert corpus.rms(after) == pytest.approx({"a.wav": rms_dbfs(amplitude), "b.wav": rms_dbfs(LOUD)}, abs=0.05)
    assert ["changed" for line in said if line.startswith("audio measures: 1 of 2 audio files changed since measured;")
            ] == told, said
    again, said = corpus.load()  # the entry stored anew serves as it is
    assert said == [] and corpus.rms(again) == corpus.rms(after)


def size_and_time_digests(paths: list[Path]) -> np.ndarray:
    """The digests the record of an earlier sde held: size and modification time only (its formula)."""
    sizes = np.array([p.stat().st_size for p in paths], dtype=np.int64).view(np.uint64)
    h = sizes * np.uint64(0x9E3779B97F4A7C15) ^ np.array([p.stat().st_mtime_ns for p in paths]).view(np.uint64)
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    h = h ^ (h >> np.uint64(31))
    return np.where(h > 1, h, h + np.uint64(2))


@pytest.mark.parametrize("replacement", ["renamed over, times put back", "left alone"])
def test_an_entry_recorded_by_an_earlier_sde_is_measured_again_once(tmp_path, replacement):
    """An entry whose record held sizes and modification times only (RECORD_SIZE_AND_TIME, as an
    earlier sde kept it) cannot vouch for a same-size replacement: all its files are measured again,
    once, with a note and no traceback."""
    corpus = Corpus(tmp_path)
    measured = with_measured_audio(build_dataset(corpus.manifest, METRICS))
    cache = DatasetCache(corpus.cache)
    key = entry_key(corpus.manifest, METRICS, False)
    cache.put(key, measured)
    cache.keep_input_record(key, Recording(input_files(corpus.manifest, METRICS)).start().record())
    stored = cache.get(key)
    files = [corpus.audio / "a.wav", corpus.audio / "b.wav"]
    stored.caches.keeper(stored.generation).keep(RECORD_SIZE_AND_TIME, {"files": 2, "digests": size_and_time_digests(files)})
    cache.close()
    replace, amplitude, _ = REPLACEMENTS[replacement]
    replace(corpus.audio / "a.wav")
    after, said = corpus.load()
    assert said[0] == ("note: audio measures: the record of the 2 audio files is from an earlier sde, blind to a file "
                       "replaced by one of the same size with its times put back; measuring them again, once")
    assert said[1].startswith("audio measures: 2 of 2 audio files changed since measured; re-measured their 2 utterances")
    assert corpus.rms(after) == pytest.approx({"a.wav": rms_dbfs(amplitude), "b.wav": rms_dbfs(LOUD)}, abs=0.05)
    dataset = load_dataset(corpus.manifest, METRICS, cache_dir=corpus.cache, status=said.append)
    found, record = dataset.caches.keeper(dataset.generation).recall(RECORD)
    assert found and record["files"] == 2
    _, said = corpus.load()
    assert said == []


BIG_INODE = 2**64 - 5  # st_ino is unsigned: some file systems (overlayfs xino, FUSE, NFS) hand out inodes from 2^63 up
STATE = (1000, 5_000_000_000, BIG_INODE, 6_000_000_000)


@pytest.mark.parametrize("other, same", [
    (STATE, True),
    ((1001, *STATE[1:]), False),                       # a byte more
    ((1000, 5_000_000_001, *STATE[2:]), False),        # modification time
    ((1000, 5_000_000_000, BIG_INODE - 1, STATE[3]), False),  # another inode: another file
    ((*STATE[:3], 6_000_000_001), False),              # change time: rewritten in place
    ((1000, 6_000_000_000, BIG_INODE, 5_000_000_000), False),  # the two times swapped
    ((1000, 5_000_000_000, 0, 0), False),              # as an earlier sde saw it
], ids=["same", "size", "mtime", "inode", "ctime", "times swapped", "no inode nor ctime"])
def test_a_digest_tells_each_part_of_a_state_apart(other, same):
    assert (P.digest(*other) == P.digest(*STATE)) is same
    assert P.digest(*other) not in (P.NO_FILE, P.NOT_CHECKED)
    columns = [np.array([v], dtype=np.uint64 if i == 2 else np.int64) for i, v in enumerate(other)]
    assert int(P.digests(*columns)[0]) == P.digest(*other)  # the array form agrees, a big inode included
