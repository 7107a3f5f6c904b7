"""sde.sources.tar_index: the member index of NeMo tarred-audio shards.

Tars are written with Python's tarfile the way NeMo's convert_to_tarred_audio_dataset.py writes
them (members named after the audio file's path with "/" and "." squashed to "_", a reused file
stored once and named "<stem>-sub<k><ext>" by the later manifest lines), and the index is compared
with tarfile's own listing of the same tar.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.sources.tar_index import (IndexFileError, MemberNotFound, TarIndexError, TarMember, index_file_candidates,
                                   load_tar_index, member_name, read_index_file, read_member, scan_tar)

SR = 16000


def _tone(path: Path, seconds: float, freq: float) -> Path:
    t = np.arange(int(SR * seconds)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)
    return path


def write_nemo_shard(folder: Path, entries: list[dict], shard_id: int = 0) -> tuple[Path, list[dict]]:
    """A tar shard and its tarred manifest lines, as NeMo's _create_shard makes them (without
    --slice_with_offset): the first line of an audio file adds it to the tar, later lines of the
    same file only point at it with a -sub<k> name."""
    tar_path = folder / f"audio_{shard_id}.tar"
    count: dict[str, int] = {}
    lines = []
    with tarfile.open(tar_path, mode="w", dereference=True) as tar:
        for entry in entries:
            base, ext = os.path.splitext(entry["audio_filepath"])
            base = base.replace("/", "_").replace(".", "_")
            squashed = f"{base}{ext}"
            if squashed not in count:
                tar.add(entry["audio_filepath"], arcname=squashed)
                name = squashed
                count[squashed] = 1
            else:
                name = f"{base}-sub{count[squashed]}{ext}"
                count[squashed] += 1
            lines.append({**entry, "audio_filepath": name, "shard_id": shard_id})
    return tar_path, lines


def tarfile_listing(path: Path) -> dict[str, tuple[int, int]]:
    with tarfile.open(path) as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isreg()}


def as_listing(members: dict[str, TarMember]) -> dict[str, tuple[int, int]]:
    return {name: (m.offset, m.size) for name, m in members.items()}


@pytest.fixture(scope="module")
def nemo_shard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tarred")
    audio = folder / "wavs" / "speaker.1"
    audio.mkdir(parents=True)
    files = [_tone(audio / f"utt{k}.wav", 0.2 + 0.1 * k, 200 + 50 * k) for k in range(4)]
    entries = [{"audio_filepath": str(f), "duration": 1.0, "text": f"line {k}"} for k, f in enumerate(files)]
    # the same long recording cut into segments by offset: stored once, named -sub1, -sub2 after
    entries += [{"audio_filepath": str(files[3]), "offset": o, "duration": 0.1, "text": "segment"} for o in (0.1, 0.2)]
    tar_path, lines = write_nemo_shard(folder, entries)
    return tar_path, lines, entries


def test_scan_equals_tarfile_listing_and_reads_every_manifest_line(nemo_shard):
    tar_path, lines, entries = nemo_shard
    index = load_tar_index(tar_path)
    assert index.origin == "scan"
    assert as_listing(index.members) == tarfile_listing(tar_path)
    with open(tar_path, "rb") as f:
        for line, entry in zip(lines, entries):
            assert read_member(f, index.lookup(line["audio_filepath"])) == Path(entry["audio_filepath"]).read_bytes()
    assert [line["audio_filepath"].rsplit("-", 1)[-1] for line in lines[-2:]] == ["sub1.wav", "sub2.wav"]


@pytest.mark.parametrize("written, member", [
    ("_data_a_b-sub1.wav", "_data_a_b.wav"),
    ("utt-sub12.flac", "utt.flac"),
    ("utt-sub3", "utt"),
    ("utt.wav", "utt.wav"),
    ("utt-sub.wav", "utt-sub.wav"),        # no number: not NeMo's suffix
    ("my-subject.wav", "my-subject.wav"),
])
def test_member_name_follows_nemos_sub_suffix(written, member):
    assert member_name(written) == member


def test_lookup_prefers_a_member_of_the_exact_name_and_names_a_missing_one(tmp_path):
    tar_path = tmp_path / "t.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in (("x.wav", b"plain"), ("x-sub1.wav", b"a real member of this name")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    index = load_tar_index(tar_path)
    assert index.lookup("x-sub1.wav").name == "x-sub1.wav"
    assert index.lookup("x-sub2.wav").name == "x.wav"
    with pytest.raises(MemberNotFound, match=r"t\.tar: no member 'gone\.wav'.*shard_id"):
        index.lookup("gone.wav")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_and_unicode_names_links_and_folders_as_tarfile_lists_them(tmp_path, tar_format):
    tar_path = tmp_path / "t.tar"
    long_dir = "d" * 120 if tar_format == tarfile.USTAR_FORMAT else "d" * 60  # ustar: prefix field
    with tarfile.open(tar_path, "w", format=tar_format) as tar:
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        _add(tar, "folder/a.wav", b"a" * 700)
        _add(tar, f"{long_dir}/utt.wav", b"b" * 1500)
        if tar_format != tarfile.USTAR_FORMAT:
            _add(tar, "n" * 180 + ".flac", b"c" * 10)        # GNU long name record / pax path
            _add(tar, "é_über_日本.wav", b"d" * 513)
        link = tarfile.TarInfo("copy_of_a.wav")
        link.type = tarfile.LNKTYPE
        link.linkname = "folder/a.wav"
        tar.addfile(link)
        _add(tar, "empty.wav", b"")
    index = load_tar_index(tar_path)
    expected = tarfile_listing(tar_path)
    expected["copy_of_a.wav"] = expected["folder/a.wav"]      # tarfile lists links apart; same bytes
    assert as_listing(index.members) == expected
    with open(tar_path, "rb") as f:
        assert read_member(f, index.lookup("copy_of_a.wav")) == b"a" * 700


def test_a_member_written_twice_counts_once_the_later_winning(tmp_path):
    tar_path = tmp_path / "t.tar"
    with tarfile.open(tar_path, "w") as tar:
        _add(tar, "a.wav", b"old")
        _add(tar, "a.wav", b"newer")
    index = load_tar_index(tar_path)
    with tarfile.open(tar_path) as tar, open(tar_path, "rb") as f:
        assert read_member(f, index.lookup("a.wav")) == tar.extractfile(tar.getmember("a.wav")).read() == b"newer"


def _three_member_tar(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for k in range(3):
            _add(tar, f"m{k}.wav", bytes([k]) * 3000)
    return path


def _truncated_in_data(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:3584 + 512 + 1000])       # inside m1's data


def _truncated_in_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:3584 + 200])  # inside m1's header


def _bad_checksum(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[3584 + 5] ^= 0xFF                             # a byte of m1's name
    path.write_bytes(bytes(data))


def _not_a_tar(path: Path) -> None:
    path.write_bytes(b"RIFF" + os.urandom(5000))


@pytest.mark.parametrize("damage, message, indexed_before", [
    (_truncated_in_data, r"t\.tar: byte 3,584: truncated: member 'm1\.wav' needs 3,000 bytes", ["m0.wav"]),
    (_truncated_in_header, r"t\.tar: byte 3,584: truncated: the file ends inside a tar header", ["m0.wav"]),
    (_bad_checksum, r"t\.tar: byte 3,584: not a tar header \(bad checksum\)", ["m0.wav"]),
    (_not_a_tar, r"t\.tar: byte 0: not a tar header", []),
])
def test_damaged_tar_is_one_clear_error_with_what_came_before(tmp_path, damage, message, indexed_before):
    tar_path = _three_member_tar(tmp_path / "t.tar")
    damage(tar_path)
    with pytest.raises(TarIndexError, match=message) as caught:
        load_tar_index(tar_path)
    assert sorted(caught.value.members) == indexed_before


def test_missing_tar_names_the_file(tmp_path):
    with pytest.raises(TarIndexError, match=r"audio_7\.tar: file not found"):
        load_tar_index(tmp_path / "audio_7.tar")


def test_read_member_of_a_tar_cut_short_says_so(tmp_path):
    tar_path = _three_member_tar(tmp_path / "t.tar")
    member = load_tar_index(tar_path).lookup("m2.wav")
    tar_path.write_bytes(tar_path.read_bytes()[:member.offset + 10])
    with open(tar_path, "rb") as f, pytest.raises(TarIndexError, match=r"truncated: member 'm2\.wav' needs 3,000"):
        read_member(f, member, shown=str(tar_path))


def dali_index_text(tar_path: Path) -> str:
    """A v1.2 index as DALI's wds2idx writes it: one line per sample (members sharing the part of
    their name before the first dot), each component "<ext> <data offset> <size> <name>"."""
    samples: list[list[str]] = []
    last = None
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            if not m.isreg():
                continue
            folder, _, base = m.name.rpartition("/")
            stem, _, ext = base.partition(".")
            key = f"{folder}/{stem}"
            component = f"{ext} {m.offset_data} {m.size} {m.name}"
            if key != last:
                samples.append([component])
                last = key
            else:
                samples[-1].append(component)
    return f"v1.2 {len(samples)}\n" + "".join(" ".join(s) + "\n" for s in samples)


@pytest.fixture
def shard_with_sidecar(tmp_path):
    tar_path = tmp_path / "audio_0.tar"
    with tarfile.open(tar_path, "w") as tar:
        for k in range(6):
            _add(tar, f"utt{k}.wav", bytes([k]) * (700 + 300 * k))
            if k % 2:
                _add(tar, f"utt{k}.json", b"{}")          # a second component of the same sample
    return tar_path


@pytest.mark.parametrize("where", ["dali_index/audio_0.index", "audio_0.index", "audio_0.idx"])
def test_a_dali_index_file_beside_the_tar_is_used(shard_with_sidecar, where):
    index_path = shard_with_sidecar.parent / where
    index_path.parent.mkdir(exist_ok=True)
    index_path.write_text(dali_index_text(shard_with_sidecar))
    index = load_tar_index(shard_with_sidecar)
    assert index.origin == f"index file {index_path}"
    assert index.bytes_read < 4 * 512                         # a few headers spot-checked, no scan
    assert as_listing(index.members) == tarfile_listing(shard_with_sidecar)


def _index_of_another_version(text: str) -> str:
    """The index of a version of the tar that had one more 512-byte member at its start."""
    lines = text.splitlines()
    for i, line in enumerate(lines[1:], start=1):
        tokens = line.split()
        for k in range(1, len(tokens), 4):
            tokens[k] = str(int(tokens[k]) + 1024)
        lines[i] = " ".join(tokens)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("corrupt, reason", [
    (lambda t: t.replace("v1.2", "v1.1", 1), r"audio_0\.index:1: index version 'v1\.1'"),
    (lambda t: t.replace("v1.2 6", "v1.2 9", 1), r"audio_0\.index:1: says 9 samples but 6 lines follow"),
    (lambda t: t.replace(" 512 ", " 513 ", 1), r"audio_0\.index:2: offset 513 of 'utt0\.wav' is not at a 512-byte"),
    (lambda t: t.replace("wav 512 700", "wav 512 99999999", 1), r"audio_0\.index:2: 'utt0\.wav' .* beyond the end"),
    (lambda t: t.replace("wav 512 700 utt0.wav", "wav 512 700", 1), r"audio_0\.index:2: expected groups of"),
    (lambda t: t.replace("wav 512 700 utt0.wav", "flac 512 700 utt0.wav", 1), r":2: the name 'utt0\.wav' does not end"),
    (_index_of_another_version, r"audio_0\.index:\d+: 'utt\d\.wav' is not at byte .* another version"),
])
def test_a_wrong_index_file_is_reported_by_line_and_the_tar_scanned(shard_with_sidecar, corrupt, reason):
    index_path = shard_with_sidecar.parent / "audio_0.index"
    index_path.write_text(corrupt(dali_index_text(shard_with_sidecar)))
    index = load_tar_index(shard_with_sidecar)
    assert index.origin == "scan"
    assert as_listing(index.members) == tarfile_listing(shard_with_sidecar)
    assert len(index.notes) == 1 and "scanning the tar instead" in index.notes[0]
    assert any(__import__("re").search(reason, note) for note in index.notes), index.notes


def test_read_index_file_refuses_text_that_is_no_index():
    with pytest.raises(IndexFileError, match=r"x\.index:1: expected \"v1\.2 N\""):
        read_index_file("hello\n", shown="x.index", tar_size=10_000)


def test_index_file_candidates_follow_nemo_and_dali():
    assert index_file_candidates("s3://b/tarred/audio_12.tar") == [
        "s3://b/tarred/dali_index/audio_12.index", "s3://b/tarred/audio_12.index", "s3://b/tarred/audio_12.idx"]


def test_built_index_is_cached_and_rebuilt_when_the_tar_changes(nemo_shard, tmp_path):
    tar_path, _, _ = nemo_shard
    copy = tmp_path / "audio_0.tar"
    copy.write_bytes(tar_path.read_bytes())
    cache = tmp_path / "cache"
    first = load_tar_index(copy, cache_dir=cache)
    again = load_tar_index(copy, cache_dir=cache)
    assert (first.origin, again.origin) == ("scan", "cache")
    assert again.members == first.members
    cached_files = list(cache.glob("*.json"))
    assert len(cached_files) == 1 and json.loads(cached_files[0].read_text())["names"]
    with tarfile.open(copy, "a") as tar:
        _add(tar, "late.wav", b"x" * 100)
    changed = load_tar_index(copy, cache_dir=cache)
    assert changed.origin == "scan" and "late.wav" in changed


def test_a_damaged_cache_file_means_a_rebuild(nemo_shard, tmp_path):
    tar_path, _, _ = nemo_shard
    cache = tmp_path / "cache"
    load_tar_index(tar_path, cache_dir=cache)
    for cached in cache.glob("*.json"):
        cached.write_text('{"format": 1, "names": ["x"], "offsets": [0]')
    again = load_tar_index(tar_path, cache_dir=cache)
    assert again.origin == "scan" and as_listing(again.members) == tarfile_listing(tar_path)


class CountingFile(io.RawIOBase):
    """A seekable file that counts what is read through it."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb", buffering=0)  # noqa: SIM115
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)

    def readinto(self, buffer) -> int:
        n = self.f.readinto(buffer)
        self.bytes_read += n
        return n

    def close(self) -> None:
        self.f.close()
        super().close()


def test_scanning_reads_only_the_headers(tmp_path):
    tar_path = tmp_path / "big_members.tar"
    with tarfile.open(tar_path, "w") as tar:
        for k in range(20):
            _add(tar, f"utt{k}.wav", os.urandom(64 << 10))
    counting = CountingFile(tar_path)
    members, bytes_read = scan_tar(counting, tar_path.stat().st_size, shown=str(tar_path))
    assert as_listing(members) == tarfile_listing(tar_path)
    assert bytes_read == counting.bytes_read == 21 * 512       # 20 headers and the end marker
