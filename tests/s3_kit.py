"""A real S3-compatible server for the tests (moto's server mode on 127.0.0.1), its client and the
options that point sde at it. The fixtures `moto_endpoint` (one server per session) and
`configured` (in-process reads see it) are in tests/conftest.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """A moto S3 server on a free port of 127.0.0.1 (``env``: extra environment, e.g. its auth
    settings): (process, endpoint URL)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:  # a TCP probe: an HTTP request would count as one of the server's actions
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, endpoint
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto's S3 server did not start on {endpoint}") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="y",
                        region_name="us-east-1")


def storage(endpoint: str, **extra) -> str:
    """--storage-options for the server at ``endpoint``."""
    return json.dumps({"endpoint_url": endpoint, "key": "x", "secret": "y", **extra})


def upload(endpoint: str, bucket: str, key: str, body: bytes) -> str:
    """``body`` stored as ``key`` in a new ``bucket`` of the server at ``endpoint``; its URL."""
    s3 = client(endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def counted_scan(url: str):
    """(the tar at ``url`` indexed by a scan, with no index file and no cache; the size of every
    byte range the store sent for it)."""
    from sde.sources import remote
    from sde.sources.tar_index import load_tar_index

    fetched: list[int] = []

    def counting_opener(location: str):
        f = remote.open_file(location, ranged=True)
        fetch = f.cache.fetcher

        def fetch_and_count(start: int, end: int) -> bytes:
            data = fetch(start, end)
            fetched.append(len(data))
            return data

        f.cache.fetcher = fetch_and_count
        return f

    return load_tar_index(url, opener=counting_opener), fetched
