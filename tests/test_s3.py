"""Manifests and tar shards in an S3 bucket: a real S3-compatible server (moto's server mode on
127.0.0.1, started by these tests), read through fsspec/s3fs, through the real CLI and in process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("s3fs", reason="reading s3:// needs s3fs (pip install s3fs)")
pytest.importorskip("moto.server", reason="the local S3 server is moto's: pip install 'moto[server]'")
boto3 = pytest.importorskip("boto3")

from sde.manifest import read_manifest  # noqa: E402
from sde.sources import expand_sources, remote, source_stamps  # noqa: E402
from sde.sources.tar_index import load_tar_index, read_member  # noqa: E402
from tests.s3_kit import client, counted_scan, start_moto, stop, storage  # noqa: E402
from tests.test_tar_index import tarfile_listing, write_nemo_shard  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "sde-test"
ROWS = [
    {"audio_filepath": "audio/a.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the bat sat"},
    {"audio_filepath": "s3://elsewhere/b.wav", "duration": 1.0, "text": "hello world", "pred_text": "hello world"},
    {"audio_filepath": "./audio/../c.wav", "duration": 1.0, "text": "one more", "pred_text": "one more"},
]


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture(scope="session")
def bucket(moto_endpoint):
    """data/m.json (ROWS), shards/m_{0,1,3}.json (m_2 missing), with boto3."""
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="data/m.json", Body=_jsonl(ROWS))
    for k in (0, 1, 3):
        rows = [{"audio_filepath": f"a/{k}_{i}.wav", "duration": 1.0, "text": f"shard {k}"} for i in range(3)]
        s3.put_object(Bucket=BUCKET, Key=f"shards/m_{k}.json", Body=_jsonl(rows))
    return BUCKET


def sde(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**(env if env is not None else os.environ), "PYTHONPATH": str(ROOT)})


def test_cli_stats_of_a_manifest_in_a_bucket(bucket, moto_endpoint):
    r = sde("stats", f"s3://{bucket}/data/m.json", "--storage-options", storage(moto_endpoint), "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["utterances"], summary["manifest"]) == (3, "m.json")
    assert summary["hypotheses"]["pred_text"]["wer"] == pytest.approx(100 / 7, abs=1e-4)


@pytest.mark.parametrize("pattern, utterances, skipped", [
    ("shards/m_*.json", 9, 0),
    ("shards/m__OP_0..3_CL_.json", 9, 1),   # m_2.json is missing: one skipped file, the others load
    ("shards/m_{0..1}.json", 6, 0),
])
def test_cli_stats_of_globs_and_shard_patterns_in_a_bucket(bucket, moto_endpoint, tmp_path, pattern, utterances,
                                                           skipped):
    r = sde("stats", f"s3://{bucket}/{pattern}", "--storage-options", storage(moto_endpoint), "--json",
            "--cache-dir", str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["utterances"], summary["skipped_files"], summary["skipped_lines"]) == (utterances, skipped, 0)


def test_relative_audio_paths_join_the_manifests_url_folder(bucket, configured):
    m = read_manifest(f"s3://{bucket}/data/m.json")
    assert m.table["audio_filepath"].tolist() == [r["audio_filepath"] for r in ROWS]
    assert m.table["audio_path"].tolist() == [f"s3://{bucket}/data/audio/a.wav", "s3://elsewhere/b.wav",
                                              f"s3://{bucket}/data/c.wav"]


def test_a_remote_manifest_is_streamed_in_chunks_cut_at_line_ends(bucket, configured, monkeypatch, tmp_path):
    from sde.manifest import files

    local = tmp_path / "m.json"
    local.write_bytes(_jsonl(ROWS * 5))
    client(configured).put_object(Bucket=bucket, Key="data/m15.json", Body=local.read_bytes())
    monkeypatch.setattr(files, "CHUNK_BYTES", 100)   # many chunks, most lines cut by a chunk's end
    streamed = read_manifest(f"s3://{bucket}/data/m15.json").table
    assert streamed.drop(columns="audio_path").equals(read_manifest(local).table.drop(columns="audio_path"))


def test_the_cache_key_of_a_remote_source_follows_its_etag(bucket, configured):
    s3 = client(configured)
    s3.put_object(Bucket=bucket, Key="data/changing.json", Body=_jsonl(ROWS[:1]))
    sources = expand_sources([f"s3://{bucket}/data/changing.json"])
    before = source_stamps(sources)
    s3.put_object(Bucket=bucket, Key="data/changing.json", Body=_jsonl(ROWS[:2]))
    after = source_stamps(sources)
    assert before[0]["etag"] and before[0]["etag"] != after[0]["etag"] and before[0]["size"] < after[0]["size"]


@pytest.mark.parametrize("url, code, message", [
    ("s3://sde-test/data/nope.json", 1, "s3://sde-test/data/nope.json: no such file; check the URL"),
    ("s3://no-such-bucket/m.json", 1, "s3://no-such-bucket/m.json: the bucket does not exist"),
    ("s3://sde-test/shards/q_*.json", 2, "s3://sde-test/shards/q_*.json: matches no file"),
    ("gs://b/m.json", 1, "gs://b/m.json: reading gs:// URLs needs gcsfs: pip install gcsfs"),
])
def test_missing_files_and_buckets_are_one_clear_message(bucket, moto_endpoint, url, code, message):
    r = sde("stats", url, "--storage-options", storage(moto_endpoint), "--no-cache")
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_a_missing_file_of_a_bucket_named_bucket_is_no_such_file(bucket, moto_endpoint):
    # the store's "not found" names the path: a bucket called *-bucket was taken for a missing one
    client(moto_endpoint).create_bucket(Bucket="team-data-bucket")
    r = sde("stats", "s3://team-data-bucket/asr/nothere.json", "--storage-options", storage(moto_endpoint),
            "--no-cache")
    assert r.returncode == 1, r.stderr
    assert "s3://team-data-bucket/asr/nothere.json: no such file; check the URL" in r.stderr, r.stderr


def test_no_credentials_says_how_to_give_them(bucket, moto_endpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    r = sde("stats", f"s3://{bucket}/data/m.json", "--storage-options", json.dumps({"endpoint_url": moto_endpoint}),
            "--no-cache", env=env)
    assert r.returncode == 1, r.stderr
    assert "s3://sde-test/data/m.json: no credentials found" in r.stderr and "AWS_ACCESS_KEY_ID" in r.stderr
    assert "Traceback" not in r.stderr


def test_access_denied_names_the_url_and_the_fix():
    # A server that checks credentials (moto: after the first two requests): the unknown key is refused.
    proc, endpoint = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "2"})
    try:
        s3 = client(endpoint)
        s3.create_bucket(Bucket="locked")
        s3.put_object(Bucket="locked", Key="m.json", Body=_jsonl(ROWS))
        r = sde("stats", "s3://locked/m.json", "--storage-options", storage(endpoint), "--no-cache")
    finally:
        stop(proc)
    assert r.returncode == 1, r.stderr
    assert "s3://locked/m.json: access denied" in r.stderr and "--storage-options" in r.stderr


def test_a_store_that_does_not_answer_is_an_error_not_a_hang():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        r = sde("stats", "s3://sde-test/data/m.json", "--storage-options", storage(endpoint), "--no-cache",
                env={**os.environ, "SDE_REMOTE_TIMEOUT": "1"}, timeout=60)
        elapsed = time.monotonic() - start
    assert r.returncode == 1, r.stderr
    assert f"s3://sde-test/data/m.json: {endpoint} did not answer within 1 s" in r.stderr
    assert elapsed < 30


@pytest.fixture(scope="module")
def tar_in_bucket(bucket, moto_endpoint, tmp_path_factory):
    """A NeMo shard of 24 seven-second recordings (about 224 KB each) uploaded to the bucket."""
    folder = tmp_path_factory.mktemp("s3tar")
    t = np.arange(7 * 16000) / 16000
    entries = []
    for k in range(24):
        path = folder / f"utt{k}.wav"
        sf.write(path, (0.2 * np.sin(2 * np.pi * (150 + 10 * k) * t)).astype(np.float32), 16000, subtype="PCM_16")
        entries.append({"audio_filepath": str(path), "duration": 7.0, "text": f"utterance {k}"})
    tar_path, lines = write_nemo_shard(folder, entries)
    client(moto_endpoint).upload_file(str(tar_path), bucket, "tarred/audio_0.tar")
    return tar_path, lines


def test_a_tar_in_a_bucket_is_indexed_with_ranged_reads_of_its_headers(tar_in_bucket, configured, bucket):
    tar_path, lines = tar_in_bucket
    url = f"s3://{bucket}/tarred/audio_0.tar"
    index, fetched = counted_scan(url)
    assert index.origin == "scan"
    assert {n: (m.offset, m.size) for n, m in index.members.items()} == tarfile_listing(tar_path)
    size = tar_path.stat().st_size
    # 224 KB members: cheaper read in a few large ranges than one request per header (the
    # headers-only scan of large members: tests/sources/test_field_remote.py)
    assert sum(fetched) == index.bytes_read <= size and len(fetched) < len(index) / 4, (len(fetched), len(index))
    member = index.lookup(lines[5]["audio_filepath"])
    with remote.open_file(url, ranged=True) as f:
        assert read_member(f, member) == Path(f"{tar_path.parent}/utt5.wav").read_bytes()


def test_a_dali_index_beside_a_remote_tar_replaces_the_scan(tar_in_bucket, configured, bucket, tmp_path):
    from tests.test_tar_index import dali_index_text

    tar_path, _ = tar_in_bucket
    client(configured).put_object(Bucket=bucket, Key="tarred/dali_index/audio_0.index",
                                   Body=dali_index_text(tar_path).encode())
    try:
        index = load_tar_index(f"s3://{bucket}/tarred/audio_0.tar", cache_dir=tmp_path / "c")
        cached = load_tar_index(f"s3://{bucket}/tarred/audio_0.tar", cache_dir=tmp_path / "c")
    finally:
        client(configured).delete_object(Bucket=bucket, Key="tarred/dali_index/audio_0.index")
    assert index.origin == f"index file s3://{bucket}/tarred/dali_index/audio_0.index"
    assert cached.origin == "cache" and cached.members == index.members
    assert {n: (m.offset, m.size) for n, m in index.members.items()} == tarfile_listing(tar_path)
    shutil.rmtree(tmp_path / "c")


@pytest.mark.parametrize("source, lines", [("data/m.json", 3), ("shards/m_{0..3}.json", 9)], ids=["one file", "shards"])
def test_a_server_of_a_manifest_in_a_bucket_serves_reviews_and_exports_from_its_cache(bucket, moto_endpoint, tmp_path,
                                                                                    source, lines):
    # With a cache (every user's default) sde stopped at start: the default reviews path read the
    # sources from the cached dataset's path, which had lost its s3:// ("s3:/sde-test/...").
    from tests.test_audio_faults import SdeServer, assert_no_traceback

    s3 = client(moto_endpoint)
    keys = ["data/m.json"] if source == "data/m.json" else [f"shards/m_{k}.json" for k in (0, 1, 3)]
    raw = b"".join(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys)
    url = f"s3://{BUCKET}/{source}"
    args = (url, "--storage-options", storage(moto_endpoint), "--cache-dir", str(tmp_path / "cache"))
    for start in ("built", "from the cache"):
        with SdeServer(*args, no_cache=False) as s:
            assert s.json("/api/summary", 200)["utterances"] == lines, start
            code, _, body = s.get("/api/utterances.jsonl")
            assert code == 200 and body == raw, (start, body[:300])
            code, _, answer = s.request("/api/utterances/1/review", "POST", {"Content-Type": "application/json"},
                                        json.dumps({"status": "drop"}).encode())
            assert code == 200, answer[:300]
        assert_no_traceback(s)
    out = tmp_path / "kept.json"
    r = sde("export", url, *args[1:], "--apply-reviews", "-o", str(out))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert out.read_bytes() == b"".join(raw.splitlines(keepends=True)[i] for i in range(lines) if i != 1)
