"""A store that stops answering in the middle of a session (a VPN that drops, an overloaded
endpoint): every audio request must fail within the attempts sde announces, not several times
SDE_REMOTE_TIMEOUT. Real parts: a real moto S3 server to index the tar, then a socket that accepts
connections and never answers."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("s3fs", reason="reading s3:// needs s3fs (pip install s3fs)")
pytest.importorskip("moto.server", reason="the local S3 server is moto's: pip install 'moto[server]'")

from sde.audio import AudioError, read_segment  # noqa: E402
from sde.sources import members, remote  # noqa: E402
from sde.sources.members import TarShards  # noqa: E402
from sde.sources.remote import ATTEMPTS  # noqa: E402
from tests.s3_kit import client, counted_scan  # noqa: E402
from tests.sources.tar_kit import make_tarred  # noqa: E402
from tests.test_tar_index import tarfile_listing  # noqa: E402

BUCKET = "sde-field-silent"
SR = 16000
TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def tar_url(moto_endpoint, tmp_path_factory) -> tuple[str, str]:
    tarred = make_tarred(tmp_path_factory.mktemp("silent"))
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(tarred.folder / "audio_0.tar"), BUCKET, "audio_0.tar")
    s3.upload_file(tarred.originals[0]["audio_filepath"], BUCKET, "loose.wav")
    return f"s3://{BUCKET}/audio_0.tar", tarred.lines[1]["audio_filepath"]


@pytest.mark.parametrize("what", ["tar member", "audio file"])
def test_a_store_gone_silent_mid_session_fails_within_the_announced_attempts(tar_url, moto_endpoint, monkeypatch,
                                                                             tmp_path, what):
    monkeypatch.setenv("SDE_REMOTE_TIMEOUT", str(TIMEOUT_S))
    tar, member = tar_url
    remote.configure({"endpoint_url": moto_endpoint, "key": "x", "secret": "y"})
    shards = TarShards([tar], tmp_path)
    shards.index(0)  # indexed while the store answers: kept for the session
    attempts: list[socket.socket] = []
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)

        def accept() -> None:  # each attempt is a connection (a timed-out one is not reused)
            while True:
                try:
                    attempts.append(silent.accept()[0])
                except OSError:
                    return

        threading.Thread(target=accept, daemon=True).start()
        remote.configure({"endpoint_url": f"http://127.0.0.1:{silent.getsockname()[1]}", "key": "x", "secret": "y"})
        try:
            with pytest.raises(AudioError) as e:
                if what == "tar member":
                    shards.member(0, member)
                else:
                    read_segment(f"s3://{BUCKET}/loose.wav")
        finally:
            remote.configure(None)
            for connection in attempts:
                connection.close()
    assert e.value.reason == "timeout" and f"did not answer within {TIMEOUT_S:g} s" in str(e.value)
    # what the wait is made of, counted rather than timed (a loaded machine stretches the clock):
    # botocore's max_attempts counted retries, so 2 made 3 requests
    assert len(attempts) == ATTEMPTS, len(attempts)


class CountingProxy:
    """A TCP proxy in front of the S3 server that counts the bytes the server sends: what a
    request really costs on the network."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit("//", 1)[1].split(":")
        self.upstream = (host, int(port))
        self.received = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client_side, _ = self._listener.accept()
            except OSError:
                return
            server_side = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client_side, server_side, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server_side, client_side, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if counted:
                    with self._lock:
                        self.received += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def long_member(moto_endpoint, tmp_path_factory) -> tuple[str, np.ndarray]:
    """A tar in the bucket whose one member is a 5-minute recording (9.6 MB of 16 kHz PCM)."""
    folder = tmp_path_factory.mktemp("long_member")
    t = np.arange(300 * SR) / SR
    signal = (0.2 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 0.1 * t)).astype(np.float32)
    sf.write(folder / "long.wav", signal, SR, subtype="PCM_16")
    with tarfile.open(folder / "audio_0.tar", "w") as tar:
        tar.add(folder / "long.wav", arcname="long.wav")
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket="sde-field-long")
    s3.upload_file(str(folder / "audio_0.tar"), "sde-field-long", "audio_0.tar")
    return "s3://sde-field-long/audio_0.tar", signal


def test_a_segment_of_a_long_member_in_a_bucket_fetches_about_the_segment_not_the_member(long_member, moto_endpoint,
                                                                                        tmp_path):
    tar, signal = long_member
    proxy = CountingProxy(moto_endpoint)
    remote.configure({"endpoint_url": proxy.endpoint, "key": "x", "secret": "y"})
    try:
        shards = TarShards([tar], tmp_path)
        shards.index(0)
        indexed = proxy.received
        segment = read_segment(shards.member(0, "long.wav"), 120.0, 2.0)
        fetched = proxy.received - indexed
    finally:
        remote.configure(None)
        proxy.close()
    assert np.allclose(segment.samples, signal[120 * SR:122 * SR], atol=1e-4)
    member_bytes = len(signal) * 2
    assert fetched < member_bytes / 4, f"{fetched:,} bytes fetched for 2 s of a {member_bytes:,}-byte member"


def _rewritten(tar: Path, out: Path) -> Path:
    """The same members in the reverse order: a shard re-created by another conversion run."""
    with tarfile.open(tar) as source, tarfile.open(out, "w") as target:
        for member in reversed(source.getmembers()):
            target.addfile(member, source.extractfile(member))
    return out


@pytest.mark.parametrize("held", ["in memory", "in place"])
def test_a_shard_rewritten_in_the_bucket_mid_session_is_indexed_again(moto_endpoint, configured, monkeypatch,
                                                                       tmp_path, held):
    if held == "in place":
        monkeypatch.setattr(members, "REMOTE_MEMBER_IN_MEMORY_BYTES", 1000)
    tarred = make_tarred(tmp_path / "data")
    bucket = f"sde-field-rewritten-{held.replace(' ', '-')}"
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(tarred.folder / "audio_1.tar"), bucket, "audio_1.tar")
    shards = TarShards([f"s3://{bucket}/audio_1.tar"], tmp_path / "index")
    names = [line["audio_filepath"] for line in tarred.lines[4:]]
    assert np.allclose(read_segment(shards.member(0, names[0])).samples, tarred.expected(4), atol=1e-4)
    s3.upload_file(str(_rewritten(tarred.folder / "audio_1.tar", tmp_path / "rewritten.tar")), bucket, "audio_1.tar")
    if held == "in place":  # read while it is being read: this read fails, saying why
        with pytest.raises(AudioError) as e:
            read_segment(shards.member(0, names[1]))
        assert "rewritten in the store since sde first read it" in str(e.value)
    for k, name in enumerate(names):
        assert np.allclose(read_segment(shards.member(0, name)).samples, tarred.expected(4 + k), atol=1e-4)


def _shard_in_bucket(moto_endpoint: str, folder: Path, bucket: str, members: int, member_bytes: int) -> str:
    rng = np.random.default_rng(members)
    with tarfile.open(folder / "audio_0.tar", "w") as tar:
        for k in range(members):
            data = rng.integers(0, 256, member_bytes, dtype=np.uint8).tobytes()
            info = tarfile.TarInfo(f"utt_{k:04d}.wav")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(folder / "audio_0.tar"), bucket, "audio_0.tar")
    return f"s3://{bucket}/audio_0.tar"


def test_a_shard_of_many_small_members_is_indexed_in_few_requests(moto_endpoint, configured, tmp_path):
    """300 members of 30 KB (1 s of 16 kHz PCM): one request per header was 300 round trips."""
    url = _shard_in_bucket(moto_endpoint, tmp_path, "sde-field-small-members", 300, 30_000)
    index, fetched = counted_scan(url)
    assert {n: (m.offset, m.size) for n, m in index.members.items()} == tarfile_listing(tmp_path / "audio_0.tar")
    assert len(fetched) <= len(index) // 20, f"{len(fetched)} requests for {len(index)} members"


def test_a_shard_of_large_members_is_indexed_by_reading_its_headers_only(moto_endpoint, configured, tmp_path):
    url = _shard_in_bucket(moto_endpoint, tmp_path, "sde-field-large-members", 6, 3 << 20)
    index, fetched = counted_scan(url)
    assert {n: (m.offset, m.size) for n, m in index.members.items()} == tarfile_listing(tmp_path / "audio_0.tar")
    assert sum(fetched) < (tmp_path / "audio_0.tar").stat().st_size / 10
