"""How many requests a remote dataset costs: the real CLI (and the load-time tar check) against
moto's S3 server behind tests.store_faults_kit's proxy, which sees every request. A tar's size and
ETag are asked once per load (one listing serves a folder of tars and the index files beside them),
a store that does not answer is waited for once per load, not once per tar and index file, and a
small manifest is fetched once."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

pytest.importorskip("s3fs", reason="reading s3:// needs s3fs (pip install s3fs)")
pytest.importorskip("moto.server", reason="the local S3 server is moto's: pip install 'moto[server]'")

from sde.sources import remote  # noqa: E402
from sde.sources.members import check_tar_members  # noqa: E402
from tests.s3_kit import client, storage  # noqa: E402
from tests.sources.tar_kit import tone  # noqa: E402
from tests.store_faults_kit import FaultyLink  # noqa: E402
from tests.test_s3 import sde  # noqa: E402
from tests.test_tar_index import dali_index_text, write_nemo_shard  # noqa: E402

BUCKET = "sde-remote-requests"
SHARDS = 4
PATTERN = "audio__OP_0..3_CL_.tar"
# a metadata request: a HEAD, or a listing (GET of the bucket with a query)
METADATA = re.compile(rf"^(HEAD |GET /{BUCKET}\?)")


@pytest.fixture(scope="module")
def uploaded(moto_endpoint, tmp_path_factory) -> list[dict]:
    """SHARDS tars of tones under plain/ (no index files) and under indexed/ (with NeMo's
    dali_index/audio_N.index), each beside its tarred manifest m.json, and under stalled/ (indexed
    by no test: this process keeps the indexes it built); the manifest's lines."""
    folder = tmp_path_factory.mktemp("remote-requests")
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    lines = []
    for shard in range(SHARDS):
        entries = []
        for k in range(3):
            path = folder / f"tone_{shard}_{k}.wav"
            entries.append({"audio_filepath": str(path), "duration": tone(path, 0.5, 200 + 50 * k), "text": f"t{k}"})
        tar, shard_lines = write_nemo_shard(folder, entries, shard)
        lines += shard_lines
        for prefix in ("plain", "indexed", "stalled"):
            s3.upload_file(str(tar), BUCKET, f"{prefix}/{tar.name}")
        s3.put_object(Bucket=BUCKET, Key=f"indexed/dali_index/audio_{shard}.index", Body=dali_index_text(tar).encode())
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    for prefix in ("plain", "indexed"):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/m.json", Body=body)
    return lines


@pytest.fixture
def link(moto_endpoint):
    with FaultyLink(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture
def through(link, monkeypatch):
    """In-process reads go through the link, each request waiting at most 1 s."""
    monkeypatch.setenv("SDE_REMOTE_TIMEOUT", "1")
    remote.configure({"endpoint_url": link.endpoint, "key": "x", "secret": "y"})
    yield link
    remote.configure(None)


def _stats(link: FaultyLink, prefix: str, tmp_path: Path):
    return sde("stats", f"s3://{BUCKET}/{prefix}/m.json", "--tarred-audio", f"s3://{BUCKET}/{prefix}/{PATTERN}",
               "--storage-options", storage(link.endpoint), "--json", "--no-cache",
               env={**os.environ, "SDE_CACHE_DIR": str(tmp_path / "cache")})


def _named(link: FaultyLink, pattern: str) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in link.requests if re.search(pattern, f"{method} {path}")]


def test_remote_tars_are_indexed_without_a_metadata_request_each(uploaded, link, tmp_path):
    r = _stats(link, "plain", tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["utterances"] == len(uploaded)
    for shard in range(SHARDS):
        asked = _named(link, rf"/audio_{shard}\.(tar|index|idx)\b|audio_{shard}\.(index|idx)")
        # before: 8 each (the tar's HEAD twice, a HEAD and a listing per index file it might have)
        assert [m for m, p in asked if METADATA.search(f"{m} {p}")] == [], asked
        assert all(method == "GET" for method, _ in asked), asked
    # plain/ is listed twice: the pattern's check (a usage error before the manifest is read), then
    # the load, whose listing the members' check reads too (it listed the folder a third time)
    assert len(_named(link, rf"^GET /{BUCKET}\?.*prefix=plain%2F&")) == 2, link.requests


def test_remote_index_files_are_found_by_one_listing_per_load(uploaded, through):
    tars = [f"s3://{BUCKET}/indexed/audio_{k}.tar" for k in range(SHARDS)]
    check = check_tar_members(_table(uploaded), tars, cache_dir=None)
    assert not check.problems and not check.notes, (check.problems, check.notes)
    assert {k: index.origin for k, index in check.indexes.items()} == \
        {k: f"index file s3://{BUCKET}/indexed/dali_index/audio_{k}.index" for k in range(SHARDS)}
    listings = _named(through, rf"^GET /{BUCKET}\?")
    assert sorted(p.split("prefix=")[1].split("&")[0] for _, p in listings) == \
        ["indexed%2F", "indexed%2Fdali_index%2F"], through.requests
    assert _named(through, "^HEAD ") == [], through.requests  # sizes and ETags all came from those listings


def test_a_store_that_stops_answering_is_waited_for_once_per_load_not_per_tar(uploaded, through):
    through.stall("")
    tars = [f"s3://{BUCKET}/stalled/audio_{k}.tar" for k in range(SHARDS)]
    check = check_tar_members(_table(uploaded), tars, cache_dir=None)
    assert not check.indexes
    assert len(check.notes) == SHARDS and all("did not answer within 1 s" in n for n in check.notes), check.notes
    # one request and its retry; before: each tar's HEAD and its retry (8)
    assert through.seen("stall") == remote.ATTEMPTS, through.requests


def test_a_small_remote_manifest_is_fetched_once(link, moto_endpoint, tmp_path):
    rows = [{"audio_filepath": f"audio/{k}.wav", "duration": 1.0, "text": f"line {k}"} for k in range(30)]
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="small/m.json", Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    r = sde("stats", f"s3://{BUCKET}/small/m.json", "--storage-options", storage(link.endpoint), "--json",
            "--no-cache", env={**os.environ, "SDE_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["utterances"] == len(rows)
    # before: its bytes three times (the first read, the format checks, the lines) and its HEAD twice
    assert _named(link, rf"^GET /{BUCKET}/small/m\.json") == [("GET", f"/{BUCKET}/small/m.json")], link.requests
    assert len(_named(link, rf"^HEAD /{BUCKET}/small/m\.json")) == 1, link.requests


def _table(lines: list[dict]):
    import pandas as pd

    return pd.DataFrame(lines)


def test_details_leaves_files_of_small_folders_to_their_callers_when_asked_to(uploaded, through):
    """One function lists folders for both the sources' expansion (files of small folders asked one
    by one) and the tar check (those left to the index threads, which ask in parallel)."""
    few = [f"s3://{BUCKET}/plain/m.json"]
    many = [f"s3://{BUCKET}/indexed/audio_{k}.tar" for k in range(SHARDS)]
    with remote.silence_is_final():
        found = remote.details(many + few, one_by_one=False)
    assert sorted(found) == many and all(found[url]["size"] > 0 for url in many), found
    assert [p.split("prefix=")[1].split("&")[0] for _, p in _named(through, rf"^GET /{BUCKET}\?")] == ["indexed%2F"]
    assert _named(through, "^HEAD ") == [], through.requests
    found = remote.details(many + few)
    assert sorted(found) == sorted(many + few) and found[few[0]]["size"] > 0, found
    assert len(_named(through, rf"^HEAD /{BUCKET}/plain/m\.json")) == 1, through.requests
