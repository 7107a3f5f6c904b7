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
    settings): (process, endpoint URL). The port is picked before moto binds it, so another process
    (a test on another pytest-xdist worker) may take it first: moto then exits, and a probe would
    have reached the other listener. The port counts as moto's only once moto itself listens on it;
    otherwise another port is tried."""
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        # a look at the process's sockets, not an HTTP request: a request would count as one of
        # the server's actions (INITIAL_NO_AUTH_ACTION_COUNT)
        while proc.poll() is None and not _listens(proc.pid, port):
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto's S3 server did not start on {endpoint}")
            time.sleep(0.1)
        if proc.poll() is None:
            return proc, endpoint
    raise RuntimeError("moto's S3 server did not start: each port it was given was taken first")


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port`` (Linux's /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # local address "ADDR:PORT" in hex; state 0A is LISTEN; field 9 the inode
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{fields[9]}]")
        except OSError:
            continue
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            continue
    return False


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
