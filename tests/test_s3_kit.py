"""The tests' S3 server (tests/s3_kit.py) picks a free port before moto binds it. A port another
process took meanwhile (a test on another pytest-xdist worker) made moto exit while its start-up
probe reached the other listener: the session's S3 tests then failed with "connection refused"."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("moto.server", reason="the local S3 server is moto's: pip install 'moto[server]'")

from tests import s3_kit  # noqa: E402


def test_a_port_another_process_listens_on_is_not_taken_for_moto(monkeypatch):
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        taken = stranger.getsockname()[1]
        ports = iter([taken, s3_kit._free_port()])
        monkeypatch.setattr(s3_kit, "_free_port", lambda: next(ports))
        proc, endpoint = s3_kit.start_moto()
        try:
            port = int(endpoint.rsplit(":", 1)[1])
            assert port != taken
            assert s3_kit._listens(proc.pid, port)
            assert not s3_kit._listens(proc.pid, taken)
            s3_kit.client(endpoint).create_bucket(Bucket="sde-kit-port")  # moto answers there
        finally:
            s3_kit.stop(proc)
