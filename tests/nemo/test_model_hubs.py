"""A pretrained model name this machine cannot fetch is refused before NeMo's ~15 s import
(sde.nemo.hubs): an offline start of a manifest without predictions paid those seconds for the
same "cannot fetch" note. A name in the local cache, a hub that answers, or a proxy: NeMo tries."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sde.nemo import hubs

REPO = Path(__file__).resolve().parents[2]
NAME = "stt_en_fastconformer_hybrid_large_pc"
NOTHING_LISTENS = (("127.0.0.1", 1),)


@pytest.fixture
def bare_home(tmp_path, monkeypatch):
    """A user with empty model caches and no proxy."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("NEMO_CACHE_DIR", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy",
                 "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


CACHED = {
    # (file made under HOME, name) → in the local cache
    "an NGC name in NeMo's cache": (f".cache/torch/NeMo/NeMo_3.0.0/{NAME}/0a1b/{NAME}.nemo", NAME, True),
    "an NGC name, another one cached": (".cache/torch/NeMo/NeMo_3.0.0/other/0a1b/other.nemo", NAME, False),
    "a Hugging Face id in its cache": (".cache/huggingface/hub/models--nvidia--parakeet-tdt-0.6b-v2/snapshots/x/m.nemo",
                                       "nvidia/parakeet-tdt-0.6b-v2", True),
    "a Hugging Face id in NeMo's own": (".cache/torch/NeMo/NeMo_3.0.0/hf_hub_cache/nvidia/parakeet-tdt-0.6b-v2/m.nemo",
                                        "nvidia/parakeet-tdt-0.6b-v2", True),
    "nothing cached": (None, "nvidia/parakeet-tdt-0.6b-v2", False),
}


@pytest.mark.parametrize("made, name, cached", CACHED.values(), ids=CACHED.keys())
def test_a_name_is_found_in_the_local_caches(bare_home, made, name, cached):
    if made:
        (bare_home / made).parent.mkdir(parents=True)
        (bare_home / made).write_bytes(b"")
    assert hubs.in_local_cache(name) is cached


@pytest.mark.parametrize("nemo_cache", [False, True], ids=["no cache named", "NEMO_CACHE_DIR"])
def test_a_user_without_a_home_folder_has_no_home_cache(bare_home, monkeypatch, nemo_cache):
    """No HOME and a uid with no passwd entry (docker run -u 12345): Path.home() raises, and a
    server of a manifest without predictions died with that traceback on its way to transcribe."""
    import pwd

    monkeypatch.delenv("HOME")

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(RuntimeError):
        Path.home()
    if nemo_cache:
        cached = bare_home / "nemo" / "NeMo_3.0.0" / NAME / "0a1b" / f"{NAME}.nemo"
        cached.parent.mkdir(parents=True)
        cached.write_bytes(b"")
        monkeypatch.setenv("NEMO_CACHE_DIR", str(bare_home / "nemo"))
    assert hubs.in_local_cache(NAME) is nemo_cache
    assert hubs.in_local_cache("nvidia/parakeet-tdt-0.6b-v2") is False


def test_no_hub_answering_is_the_reason(bare_home, monkeypatch):
    monkeypatch.setattr(hubs, "HUBS", NOTHING_LISTENS)
    assert "not in the local cache" in hubs.unreachable_reason(NAME)


def test_a_hub_answering_lets_nemo_try(bare_home, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setattr(hubs, "HUBS", NOTHING_LISTENS + (("127.0.0.1", server.getsockname()[1]),))
        assert hubs.unreachable_reason(NAME) is None


def test_a_proxy_lets_nemo_try(bare_home, monkeypatch):
    monkeypatch.setattr(hubs, "HUBS", NOTHING_LISTENS)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hubs.unreachable_reason(NAME) is None


def test_hf_hub_offline_is_the_reason_for_an_uncached_id(bare_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE" in hubs.unreachable_reason("nvidia/parakeet-tdt-0.6b-v2")


@pytest.mark.nemo
def test_an_offline_stats_run_says_so_without_importing_nemo(nemo_asr, tmp_path):
    """`sde stats --model NAME` on a machine that cannot fetch NAME: the note, and NeMo never imported."""
    (tmp_path / "m.json").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "hi"}) + "\n")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        f"import sde.nemo.hubs\nsde.nemo.hubs.HUBS = {NOTHING_LISTENS!r}\n")
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper() and not k.startswith(("HF_", "NEMO_"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(REPO)]))
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "sde.cli", "stats", str(tmp_path / "m.json"),
                        "--model", NAME, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"cannot fetch the NeMo model '{NAME}'" in r.stderr and "not in the local cache" in r.stderr
    assert "--model /path/to/model.nemo" in r.stderr
    assert "nemo.collections.asr" not in r.stderr  # -X importtime lists every module imported
