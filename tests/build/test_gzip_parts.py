"""gzip-compressed manifests built part by part: decompressed into the build folder (a block at a
time, under a temporary name), cut and built like plain ones, giving the one-piece read's dataset
(messages name the .gz as given, with its line numbers; the same cache key); a damaged one gives
the one-piece read's message; an interrupted build keeps its complete copy for the next run; a gzip
file is known by its first bytes, whatever its name."""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sde.build.load import entry_key, load_dataset
from sde.build.parts import cut_in_parts, split_parts
from sde.build.remote_parts import COPIES, local_copies
from sde.cache import HOST_TAG, DatasetCache
from sde.dataset import DatasetOptions, build_dataset
from sde.lines import ManifestLines
from sde.manifest import ManifestError
from sde.sources import as_source_set
from tests.build.build_kit import (PART, assert_index_resumes, assert_same_dataset, built_from_store_in_parts,
                                  interrupted_index, valid_rows, write_mixed_manifest, write_predictions)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """``m.json``: the mixed manifest (~100 KB: ~25 parts of 4 KB), and ``m.json.gz`` beside it."""
    manifest = write_mixed_manifest(tmp_path_factory.mktemp("gzip-parts"))
    manifest.with_name("m.json.gz").write_bytes(gzip.compress(manifest.read_bytes()))
    return manifest


@pytest.fixture
def gz(plain) -> Path:
    return plain.with_name("m.json.gz")


def _in_parts(messages: list[str]) -> bool:
    return any(m.startswith("building ") and " parts " in m for m in messages)


def _leftovers(folder: Path) -> list[Path]:
    """Copies and temporary files a build left behind."""
    return [p for p in folder.rglob("*") if COPIES in p.parts or p.name.startswith(".tmp-")]


OPTIONS = {
    "defaults": DatasetOptions(),
    "one hypothesis asked for": DatasetOptions(pred_fields=("pred_text_b=b",)),
    "a predictions file": DatasetOptions(predictions="PREDICTIONS"),
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_a_gzip_manifest_bigger_than_a_part_is_built_in_parts_as_the_one_piece_read(plain, gz, tmp_path, options):
    if options.predictions:  # matched once to the decompressed copy's lines, then each part reads its own
        options = DatasetOptions(predictions=str(write_predictions(tmp_path, valid_rows(plain))))
    messages: list[str] = []
    built = load_dataset(str(gz), options, cache_dir=tmp_path / "cache", part_bytes=PART, threads=2,
                         status=messages.append)
    assert any(m.startswith("decompressing 1 gzip-compressed manifest") for m in messages), messages
    assert _in_parts(messages), messages
    one_piece = build_dataset(str(gz), options)
    assert_same_dataset(built, one_piece)
    assert (built.name, built.manifest_path) == (one_piece.name, one_piece.manifest_path) == ("m.json.gz", gz)
    # the plain manifest's dataset: the same rows and columns; only the file's name differs
    from_plain = build_dataset(str(plain), options)
    pd.testing.assert_frame_equal(built.utterances, from_plain.utterances, check_dtype=False)
    pd.testing.assert_frame_equal(built.vocabulary, from_plain.vocabulary, check_dtype=False)
    assert [(p.line, p.reason) for p in built.problems] == [(p.line, p.reason) for p in from_plain.problems]
    assert {p.path for p in built.problems} - set(options.predictions) == {str(gz)}
    assert not _leftovers(tmp_path), "the decompressed copy goes once the parts are joined"
    assert not list((tmp_path / "cache").glob("builds/*"))
    # stored under the key of the one-piece read: a one-piece load finds it
    cache = DatasetCache(tmp_path / "cache")
    try:
        assert cache.get(entry_key(str(gz), options, False)) is not None
    finally:
        cache.close()
    again = load_dataset(str(gz), options, cache_dir=tmp_path / "cache", part_bytes=1 << 40, status=messages.append)
    assert messages[-1] == "loaded from cache"
    assert_same_dataset(again, one_piece)


PREDICTIONS_FILES = {
    "a gzip manifest, a gzip predictions file": ("m.json.gz", True),
    "a plain manifest, a gzip predictions file": ("m.json", True),
    "a gzip manifest, a plain predictions file": ("m.json.gz", False),
}


@pytest.mark.parametrize(("manifest", "zipped"), PREDICTIONS_FILES.values(), ids=PREDICTIONS_FILES.keys())
def test_a_gzip_predictions_file_is_matched_as_the_one_piece_read_matches_it(plain, tmp_path, manifest, zipped):
    # the one-piece read decompresses a gzip predictions file; it cannot be cut in lines, so it is matched whole
    predictions = write_predictions(tmp_path, valid_rows(plain))
    if zipped:
        predictions = predictions.with_name("preds.json.gz")
        predictions.write_bytes(gzip.compress(predictions.with_name("preds.json").read_bytes()))
    options = DatasetOptions(predictions=str(predictions))
    built = load_dataset(str(plain.with_name(manifest)), options, cache_dir=tmp_path / "cache", part_bytes=PART,
                         threads=2)
    assert_same_dataset(built, build_dataset(str(plain.with_name(manifest)), options))
    assert not _leftovers(tmp_path)


EMPTY_AT_THE_START = {
    # a set whose first shard is an empty gzip (20 bytes: gzip of nothing), as a filtering job leaves one
    "a set whose first shard is an empty gzip": ("shards", ["", "lines[:300]", "lines[300:]"]),
    # an empty member before the lines (two gzip files concatenated, the first of nothing)
    "a manifest whose first gzip member is empty": ("members", ["", "lines"]),
}


@pytest.mark.parametrize(("kind", "pieces"), EMPTY_AT_THE_START.values(), ids=EMPTY_AT_THE_START.keys())
def test_an_empty_gzip_at_the_start_does_not_keep_the_rest_from_being_built_in_parts(plain, tmp_path, kind, pieces):
    lines = plain.read_bytes().splitlines(keepends=True)
    chunks = {"": b"", "lines": b"".join(lines), "lines[:300]": b"".join(lines[:300]),
              "lines[300:]": b"".join(lines[300:])}
    if kind == "shards":
        names = [str(tmp_path / f"s{k}.json.gz") for k in range(len(pieces))]
        for name, piece in zip(names, pieces):
            Path(name).write_bytes(gzip.compress(chunks[piece]))
        manifest: str | list[str] = names
    else:
        manifest = str(tmp_path / "m.json.gz")
        Path(manifest).write_bytes(b"".join(gzip.compress(chunks[piece]) for piece in pieces))
    assert cut_in_parts(as_source_set(manifest), PART), "its lines are NeMo lines, and many parts"
    messages: list[str] = []
    built = load_dataset(manifest, cache_dir=tmp_path / "cache", part_bytes=PART, threads=2, status=messages.append)
    assert _in_parts(messages), messages
    assert_same_dataset(built, build_dataset(manifest))


def test_a_gzip_manifest_cached_in_one_piece_is_loaded_not_built_again(gz, tmp_path):
    load_dataset(str(gz), cache_dir=tmp_path, part_bytes=1 << 40)  # as before: read whole
    messages: list[str] = []
    load_dataset(str(gz), cache_dir=tmp_path, part_bytes=PART, status=messages.append)
    assert messages == ["loaded from cache"]


def test_problems_and_strict_name_the_gz_as_given_with_its_line_numbers(plain, tmp_path, monkeypatch):
    monkeypatch.chdir(plain.parent)
    messages: list[str] = []
    built = load_dataset("m.json.gz", cache_dir=tmp_path, part_bytes=PART, threads=2, status=messages.append)
    assert _in_parts(messages)
    lines = plain.read_text(encoding="utf-8").splitlines()
    bad = [k + 1 for k, line in enumerate(lines) if line == "{not json"]
    assert bad[0] == 14 and bad[-1] > 500  # in the first part and in one of the last
    assert [p.line for p in built.problems if p.reason.startswith("invalid JSON")] == bad
    assert {p.path for p in built.problems} == {"m.json.gz"}
    with pytest.raises(ManifestError) as one_piece:
        build_dataset("m.json.gz", DatasetOptions(strict=True))
    with pytest.raises(ManifestError) as in_parts:
        load_dataset("m.json.gz", DatasetOptions(strict=True), cache_dir=tmp_path, part_bytes=PART, threads=2)
    assert str(in_parts.value) == str(one_piece.value)
    assert str(in_parts.value).startswith("m.json.gz:14: invalid JSON")
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("damage", ["cut short", "corrupted"])
def test_a_damaged_gzip_is_the_one_piece_reads_one_line_and_leaves_no_file(gz, tmp_path, damage):
    data = bytearray(gz.read_bytes())
    if damage == "cut short":
        data = data[: len(data) * 2 // 3]
    else:  # a flipped byte past the head: the stream or its checksum fails late
        data[len(data) * 3 // 4] ^= 0xFF
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(bytes(data))
    assert cut_in_parts(as_source_set(str(bad)), PART), "its head is fine: it goes part by part"
    with pytest.raises(ManifestError) as one_piece:
        build_dataset(str(bad))
    with pytest.raises(ManifestError) as in_parts:
        load_dataset(str(bad), cache_dir=tmp_path / "cache", part_bytes=PART, threads=2)
    assert str(in_parts.value) == str(one_piece.value)
    assert "the gzip-compressed file is damaged or cut short" in str(in_parts.value)
    assert str(in_parts.value).endswith(f"check it with: gzip -t {bad}")  # the command, ready to paste
    assert "\n" not in str(in_parts.value)
    assert not _leftovers(tmp_path), "no temporary file, no copy"
    # the command line: exit 1, the one line, no traceback
    r = subprocess.run([sys.executable, "-m", "sde.cli", "index", str(bad), "--cache-dir", str(tmp_path / "cache"),
                        "--part-size", "4KB", "--threads", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and str(one_piece.value) in r.stderr, r.stderr
    assert not _leftovers(tmp_path)


def test_a_small_gzip_manifest_keeps_the_streamed_one_piece_read(plain, tmp_path):
    small = tmp_path / "small.json.gz"
    small.write_bytes(gzip.compress(b"".join(plain.read_bytes().splitlines(keepends=True)[:100])))
    assert not cut_in_parts(as_source_set(str(small)), 8 << 20)
    messages: list[str] = []
    built = load_dataset(str(small), cache_dir=tmp_path / "cache", status=messages.append)
    assert not any("decompressing" in m for m in messages), messages
    assert_same_dataset(built, build_dataset(str(small)))


def test_a_gzip_that_turns_out_small_once_decompressed_is_built_in_one_piece_from_its_copy(plain, tmp_path):
    # ~3 KB of lines, ~0.9 KB compressed: it may have been up to 32 times that, so it is decompressed
    few = tmp_path / "few.json.gz"
    few.write_bytes(gzip.compress(b"".join(plain.read_bytes().splitlines(keepends=True)[:20])))
    assert len(gzip.decompress(few.read_bytes())) <= PART
    messages: list[str] = []
    built = load_dataset(str(few), cache_dir=tmp_path / "cache", part_bytes=PART, status=messages.append)
    assert any(m.startswith("decompressing 1 gzip") for m in messages), messages
    assert any(m.startswith("built in one piece") for m in messages) and not _in_parts(messages), messages
    assert_same_dataset(built, build_dataset(str(few)))
    assert not _leftovers(tmp_path) and not list((tmp_path / "cache").glob("builds/*"))
    load_dataset(str(few), cache_dir=tmp_path / "cache", status=messages.append)
    assert messages[-1] == "loaded from cache"


def test_a_gzip_shard_named_without_gz_is_never_cut_at_byte_offsets(plain, tmp_path):
    lines = plain.read_bytes().splitlines(keepends=True)
    shards = [tmp_path / f"shard{k}.json" for k in range(3)]
    shards[0].write_bytes(b"".join(lines[:200]))
    shards[1].write_bytes(gzip.compress(b"".join(lines[200:450])))  # gzip, named .json
    shards[2].write_bytes(b"".join(lines[450:]))
    names = [str(s) for s in shards]
    sources = as_source_set(names)
    assert cut_in_parts(sources, PART)
    # cut as found (as a build does when it could not decompress it): the gzip shard is one part, read whole
    found = [p for p in split_parts(sources, PART) if [s.location for s in p.manifest.sources] == [names[1]]]
    assert [p.lines for p in found] == [None]
    messages: list[str] = []
    built = load_dataset(names, cache_dir=tmp_path / "cache", part_bytes=PART, threads=2, status=messages.append)
    assert any(m.startswith("decompressing 1 gzip") for m in messages) and _in_parts(messages), messages
    one_piece = build_dataset(names)  # small shards are read in batches: this one by itself, decompressed
    assert_same_dataset(built, one_piece)
    assert (built.utterances["source"] == "shard1.json").sum() == len(
        [r for r in valid_rows(plain) if 200 <= int(r["audio_filepath"][7:-4]) < 450])
    assert not any(p.path == "shard1.json" and p.line == 0 for p in built.problems)  # no whole-file problem
    assert not _leftovers(tmp_path)


def test_an_interrupted_build_keeps_its_complete_copy_and_the_next_run_reuses_it(gz, tmp_path):
    sources = as_source_set(str(gz))
    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt), local_copies(sources, tmp_path, say=messages.append) as copied:
        copy = Path(copied.sources[0].local_copy)
        assert copied.sources[0].readable == str(copy) and copied.sources[0].location == str(gz)
        raise KeyboardInterrupt
    assert copy.read_bytes() == gzip.decompress(gz.read_bytes())
    assert len(messages) == 1
    # a half-written copy of a process that is gone (kill -9 mid-copy) is removed as stale
    process = subprocess.Popen(["true"])
    process.wait()
    stale = copy.parent / f".tmp-{HOST_TAG}-{process.pid}-abc"
    stale.write_bytes(b"half a copy")
    with local_copies(sources, tmp_path, say=messages.append) as resumed:
        assert resumed == copied
        assert not stale.exists()
    assert len(messages) == 1, "the complete copy is reused, not decompressed again"
    assert not copy.exists()


def test_an_interrupted_index_resumes_from_its_copy_through_the_cli(tmp_path):
    big = tmp_path / "big.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_manifest.py"), str(big), "--utterances",
                    "30000", "--seed", "1", "--quiet"], check=True, capture_output=True, timeout=300)
    gz = tmp_path / "big.json.gz"
    gz.write_bytes(gzip.compress(big.read_bytes(), compresslevel=1))
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "sde.cli", "index", str(gz), "--cache-dir", str(cache), "--part-size", "1MB",
               "--threads", "1"]
    interrupted_index(command, cache, ROOT)
    copies = list(cache.glob(f"builds/*/{COPIES}/*"))
    assert [p.name for p in copies] == ["00000-decompressed-big.json"], copies
    assert copies[0].read_bytes() == big.read_bytes()
    assert_index_resumes(command, ROOT)
    assert not _leftovers(tmp_path)
    stats = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(gz), "--cache-dir", str(cache), "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    fresh = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(big), "--no-cache", "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert json.loads(stats.stdout) == {**json.loads(fresh.stdout), "manifest": "big.json.gz"}


def _limit_file_size(limit: int):
    def apply() -> None:  # a write past `limit` fails with EFBIG: to sde, the same as a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_no_room_to_decompress_reads_it_in_one_piece_with_one_warning(gz, tmp_path):
    def stats(*args: str, limit: int | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(gz), "--json", "--no-cache", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TMPDIR": str(tmp_path)},
                              preexec_fn=_limit_file_size(limit) if limit else None)

    # 100 KB decompressed; a file may grow to 16 KB: the copy cannot be written
    full = stats("--part-size", "4KB", "--threads", "2", limit=16 << 10)
    assert full.returncode == 0 and "Traceback" not in full.stderr, full.stderr
    warnings = [line for line in full.stderr.splitlines() if "cannot decompress" in line]
    assert len(warnings) == 1 and "m.json.gz" in warnings[0] and "in one piece" in warnings[0], full.stderr
    assert json.loads(full.stdout) == json.loads(stats("--part-size", "1GB").stdout)
    assert not _leftovers(tmp_path)


def test_no_room_in_the_cache_folder_to_decompress_warns_once_and_stores_nothing(plain, tmp_path):
    from tests.mount_kit import small_tmpfs

    big = tmp_path / "big.json.gz"  # ~1 MB of lines, ~130 KB compressed
    big.write_bytes(gzip.compress(plain.read_bytes() * 10))
    with small_tmpfs(tmp_path / "full", "512k") as full:
        result = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(big), "--json", "--cache-dir", str(full),
                                 "--part-size", "64KB", "--threads", "2"], cwd=ROOT, capture_output=True, text=True,
                                timeout=300)
        assert not list(full.glob("builds/*")) and not _leftovers(full)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # (the manifest's own bad lines are warned about too: sde stats --json names them on stderr)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: cannot decompress")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: cannot decompress {big} into {full}"), warnings
    fresh = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(big), "--json", "--no-cache"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert json.loads(result.stdout) == json.loads(fresh.stdout)


def test_export_of_a_gzip_manifest_built_in_parts_reads_the_original(plain, gz, tmp_path):
    built = load_dataset(str(gz), cache_dir=tmp_path, part_bytes=PART, threads=2)
    good = [line + b"\n" for line in plain.read_bytes().splitlines() if b'"duration"' in line]
    positions = np.random.default_rng(5).permutation(len(good))[:50]
    exported = b"".join(data for _, data in ManifestLines(built).read(positions))
    assert exported == b"".join(good[p] for p in positions)


def test_export_knows_a_gzip_manifest_by_its_bytes_not_its_name(plain, tmp_path):
    hidden = tmp_path / "kept.json"  # gzip-compressed, named as a plain manifest
    hidden.write_bytes(gzip.compress(plain.read_bytes()))
    dataset = build_dataset(str(hidden))
    good = [line + b"\n" for line in plain.read_bytes().splitlines() if b'"duration"' in line]
    for positions in (np.arange(len(good)), np.arange(len(good))[::-1]):  # in file order, and by offsets
        exported = b"".join(data for _, data in ManifestLines(dataset).read(positions))
        assert exported == b"".join(good[p] for p in positions)


def test_a_remote_gzip_manifest_is_copied_then_decompressed_and_built_in_parts(plain, gz, configured, tmp_path):
    from tests.s3_kit import upload

    url = upload(configured, "sde-gzip-parts", "data/m.json.gz", gz.read_bytes())
    built = built_from_store_in_parts(url, tmp_path, PART)
    assert f"{url}:14" in [f"{p.path}:{p.line}" for p in built.problems]
    assert built.utterances["audio_path"].iloc[0] == "s3://sde-gzip-parts/data/audio/a0.wav"
    assert not _leftovers(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_does_not_grow_with_a_gzip_manifest_built_in_parts(tmp_path):
    from tests.build.memory_kit import assert_memory_stays_flat, generate_manifest, peak_anonymous_mb

    for n in (60_000, 240_000):
        plain = generate_manifest(tmp_path / f"m{n}.json", n)
        (tmp_path / f"m{n}.json.gz").write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    # parts of 1 MB: decompressed, then built part by part; of 1GB: the streamed one-piece read
    assert_memory_stays_flat(lambda n, part_size: peak_anonymous_mb(
        ["index", str(tmp_path / f"m{n}.json.gz"), "--cache-dir", str(tmp_path / f"{n}-{part_size}"),
         "--part-size", part_size, "--threads", "2", "--memory-limit", "64MB"]))
