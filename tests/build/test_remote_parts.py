"""Manifests in a bucket (a real S3-compatible server: moto's server mode) built part by part:
copied into the build folder, cut and built like local ones, and the dataset the one-piece read
of the URL gives (messages name the URL and line, audio paths start from the URL's folder,
`source` names as in the one-piece read); the copies are gone afterwards."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("moto.server", reason="the local S3 server is moto's: pip install 'moto[server]'")

from sde.build.load import load_dataset  # noqa: E402
from sde.build.parts import cut_in_parts  # noqa: E402
from sde.build.remote_parts import COPIES, local_copies  # noqa: E402
from sde.dataset import DatasetOptions, build_dataset  # noqa: E402
from sde.manifest import ManifestError  # noqa: E402
from sde.sources import as_source_set  # noqa: E402
from tests.build.build_kit import (PART, assert_same_dataset, valid_rows, write_mixed_manifest,  # noqa: E402
                                   write_predictions)
from tests.build.memory_kit import assert_memory_stays_flat, generate_manifest, peak_anonymous_mb  # noqa: E402
from tests.s3_kit import client, storage  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "sde-remote-parts"
# Lines per shard: a big first shard (cut in lines), small ones (grouped), an empty one; shard 7
# is missing (as in tests/build/test_sharded_parts.py).
SHARD_LINES = [260, 12, 10, 0, 45, 8, 6, None, 259]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_mixed_manifest(tmp_path_factory.mktemp("remote-parts"))


@pytest.fixture(scope="module")
def bucket(moto_endpoint, manifest):
    """data/m.json (the mixed manifest), data/m.json.gz, data/small.json and shards/manifest_K.json."""
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    data = manifest.read_bytes()
    s3.put_object(Bucket=BUCKET, Key="data/m.json", Body=data)
    s3.put_object(Bucket=BUCKET, Key="data/m.json.gz", Body=gzip.compress(data))
    s3.put_object(Bucket=BUCKET, Key="data/small.json", Body=b"".join(data.splitlines(keepends=True)[:5]))
    lines = data.splitlines(keepends=True)
    start = 0
    for k, count in enumerate(SHARD_LINES):
        if count is not None:
            s3.put_object(Bucket=BUCKET, Key=f"shards/manifest_{k}.json", Body=b"".join(lines[start:start + count]))
            start += count
    return BUCKET


def _leftover_copies(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if COPIES in p.parts]


DECISIONS = {
    "a NeMo manifest bigger than a part": ("data/m.json", True),
    "shards bigger than a part together": ("shards/manifest__OP_0..8_CL_.json", True),
    "a manifest of one part": ("data/small.json", False),
    "gzip: decompressed, then built in parts": ("data/m.json.gz", True),
    "a missing manifest: the one-piece read says so": ("data/none.json", False),
}


@pytest.mark.parametrize("key, in_parts", DECISIONS.values(), ids=DECISIONS.keys())
def test_which_remote_sources_are_built_part_by_part(bucket, configured, key, in_parts):
    sources = as_source_set(f"s3://{bucket}/{key}")
    assert cut_in_parts(sources, PART) == in_parts


OPTIONS = {
    "defaults": DatasetOptions(),
    "one hypothesis asked for": DatasetOptions(pred_fields=("pred_text_b=b",)),
    "a local predictions file": DatasetOptions(predictions="PREDICTIONS"),
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_a_remote_manifest_built_in_parts_is_the_one_piece_dataset(bucket, configured, manifest, tmp_path, options):
    if options.predictions:  # matched once to the copy's lines, then each part reads its own
        options = DatasetOptions(predictions=str(write_predictions(tmp_path, valid_rows(manifest))))
    url = f"s3://{bucket}/data/m.json"
    messages: list[str] = []
    built = load_dataset(url, options, cache_dir=tmp_path, part_bytes=PART, threads=2, status=messages.append)
    assert any(m.startswith("copying 1 remote manifest") for m in messages), messages
    assert any(m.startswith("building ") and " parts " in m for m in messages), messages
    expected = build_dataset(url, options)
    assert_same_dataset(built, expected)
    assert (built.name, built.manifest_path) == (expected.name, expected.manifest_path)
    assert built.utterances["audio_path"].iloc[0] == f"s3://{bucket}/data/audio/a0.wav"
    assert f"{url}:14" in [f"{p.path}:{p.line}" for p in built.problems]  # "{not json", named by its URL
    assert not _leftover_copies(tmp_path)
    assert not list(tmp_path.glob("builds/*")), "the build folder goes once the dataset is stored"
    again = load_dataset(url, options, cache_dir=tmp_path, part_bytes=PART, status=messages.append)
    assert messages[-1] == "loaded from cache"  # the same cache key as the one-piece read's
    assert_same_dataset(again, expected)


def test_remote_shards_built_in_parts_keep_their_names(bucket, configured, tmp_path):
    pattern = f"s3://{bucket}/shards/manifest__OP_0..8_CL_.json"
    messages: list[str] = []
    built = load_dataset(pattern, cache_dir=tmp_path, part_bytes=PART, threads=2, status=messages.append)
    assert any(m.startswith("copying 8 remote manifests") for m in messages), messages
    expected = build_dataset(pattern)
    assert_same_dataset(built, expected)
    assert built.name == expected.name
    assert built.utterances["source"].iloc[0] == "manifest_0.json"
    assert any(p.path == "manifest_7.json" and p.line == 0 for p in built.problems)  # the missing shard
    assert built.utterances["audio_path"].iloc[-1].startswith(f"s3://{bucket}/shards/audio/")
    assert not _leftover_copies(tmp_path)


def test_strict_names_the_url_and_line_as_the_one_piece_read(bucket, configured, tmp_path):
    url = f"s3://{bucket}/data/m.json"
    with pytest.raises(ManifestError) as one_piece:
        build_dataset(url, DatasetOptions(strict=True))
    with pytest.raises(ManifestError) as in_parts:
        load_dataset(url, DatasetOptions(strict=True), cache_dir=tmp_path, part_bytes=PART, threads=2)
    assert str(in_parts.value) == str(one_piece.value)
    assert str(in_parts.value).startswith(f"{url}:14: invalid JSON")
    assert not _leftover_copies(tmp_path)


def test_without_a_cache_the_copy_is_removed_too(bucket, configured, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the private build folder goes
    url = f"s3://{bucket}/data/m.json"
    built = load_dataset(url, use_cache=False, part_bytes=PART, threads=2)
    assert_same_dataset(built, build_dataset(url))
    assert list(tmp_path.glob("sde-build-*")), "it was built in a private build folder"
    assert not _leftover_copies(tmp_path)


def test_an_interrupted_build_keeps_its_copy_for_the_next_run(bucket, configured, tmp_path):
    sources = as_source_set(f"s3://{bucket}/data/m.json")
    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt), local_copies(sources, tmp_path, say=messages.append) as copied:
        copy = Path(copied.sources[0].local_copy)
        raise KeyboardInterrupt
    assert copy.is_file() and len(messages) == 1
    with local_copies(sources, tmp_path, say=messages.append) as resumed:
        assert resumed == copied and copy.read_bytes() == client(configured).get_object(
            Bucket=bucket, Key="data/m.json")["Body"].read()
    assert len(messages) == 1, "the complete copy is reused, not copied again"
    assert not copy.exists()


def test_cli_index_of_a_remote_manifest_in_parts_serves_the_one_piece_stats(bucket, moto_endpoint, tmp_path):
    url, options = f"s3://{bucket}/data/m.json", storage(moto_endpoint)

    def sde(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "sde.cli", *args, "--storage-options", options],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        return r

    indexed = sde("index", url, "--cache-dir", str(tmp_path), "--part-size", "4KB", "--threads", "2")
    assert "building " in indexed.stderr and " parts " in indexed.stderr, indexed.stderr
    served = sde("stats", url, "--cache-dir", str(tmp_path), "--part-size", "4KB", "--json")
    fresh = sde("stats", url, "--no-cache", "--part-size", "1GB", "--json")  # one piece
    assert json.loads(served.stdout) == json.loads(fresh.stdout)
    assert not _leftover_copies(tmp_path)


def test_ray_tasks_build_a_remote_manifest_with_the_storage_options(bucket, configured, tmp_path, ray_instance):
    from sde.build.ray_parts import RayEngine

    url = f"s3://{bucket}/data/m.json"
    messages: list[str] = []
    built = load_dataset(url, cache_dir=tmp_path, part_bytes=PART, engine=RayEngine(), status=messages.append)
    assert any("as Ray tasks" in m for m in messages), messages
    # lines without a duration read their audio's header from the bucket in the Ray tasks: with the
    # endpoint and keys this process was given (--storage-options), the same problems as here
    assert_same_dataset(built, build_dataset(url))
    assert not _leftover_copies(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_does_not_grow_with_a_remote_manifest_built_in_parts(moto_endpoint, bucket, tmp_path):
    for n in (60_000, 240_000):
        client(moto_endpoint).upload_file(str(generate_manifest(tmp_path / f"m{n}.json", n)), bucket, f"big/m{n}.json")
    assert_memory_stays_flat(lambda n, part_size: peak_anonymous_mb(
        ["index", f"s3://{bucket}/big/m{n}.json", "--cache-dir", str(tmp_path / f"{n}-{part_size}"),
         "--part-size", part_size, "--threads", "2", "--memory-limit", "64MB",
         "--storage-options", storage(moto_endpoint)]))


def test_a_manifest_gone_before_its_copy_is_the_one_piece_reads_error(bucket, configured, tmp_path):
    url = f"s3://{bucket}/data/gone.json"
    client(configured).put_object(Bucket=bucket, Key="data/gone.json", Body=b'{"audio_filepath": "a.wav", "duration": 1.0, "text": "a"}\n' * 100)
    sources = as_source_set(url)
    assert cut_in_parts(sources, PART)
    client(configured).delete_object(Bucket=bucket, Key="data/gone.json")
    with pytest.raises(ManifestError) as in_parts, local_copies(sources, tmp_path):
        pass
    with pytest.raises(ManifestError) as one_piece:
        build_dataset(url)
    assert str(in_parts.value) == str(one_piece.value)
    assert not _leftover_copies(tmp_path)


def test_local_and_remote_manifests_together_are_built_in_parts(bucket, configured, manifest, tmp_path):
    local = tmp_path / "first.json"
    local.write_bytes(b"".join(manifest.read_bytes().splitlines(keepends=True)[:300]))
    sources = [str(local), f"s3://{bucket}/shards/manifest_8.json"]
    messages: list[str] = []
    built = load_dataset(sources, cache_dir=tmp_path / "cache", part_bytes=PART, threads=2, status=messages.append)
    assert any(m.startswith("copying 1 remote manifest") for m in messages), messages
    assert_same_dataset(built, build_dataset(sources))
    assert not _leftover_copies(tmp_path)
