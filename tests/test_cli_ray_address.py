"""`sde index --engine ray --address` (and `sde transcribe`'s) takes auto, local, HOST:PORT or
ray://HOST:PORT; anything else is a usage error said before Ray starts. `--address garbage` was reported after Ray's start-up as a
cluster that could not be reached ("is it running?"), exit 1 (QA)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", [["index", "--cache-dir", "c"], ["transcribe", "--model", "m.nemo"]])
@pytest.mark.parametrize("address", ["garbage", "127.0.0.1", "127.0.0.1:port", "ray://", ":6379", "host:0",
                                     "host:70000"])
def test_a_malformed_address_is_a_usage_error(tmp_path, command, address):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a"}) + "\n")
    p = subprocess.run([sys.executable, "-m", "sde.cli", command[0], str(manifest), *command[1:], "--engine", "ray",
                        "--address", address], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert f"'{address}' is no Ray cluster address" in p.stderr and "HOST:PORT" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and "is it running" not in p.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("address", ["auto", "local", "10.0.0.5:6379", "ray://head.example:10001", "[::1]:6379"])
def test_well_formed_addresses_pass_the_check(address):
    from sde.cluster_address import address_problem

    assert address_problem(address) is None
