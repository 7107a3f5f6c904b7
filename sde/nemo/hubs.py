"""Whether a NeMo pretrained model name can be had on this machine, told without importing NeMo.

Importing NeMo takes ~15 s of CPU, and on an offline machine (a cluster behind a firewall, a
laptop on a plane) ``ASRModel.from_pretrained`` then fails to download: every start of a manifest
without predictions paid those seconds for the same "cannot fetch" note. A name already in NeMo's
or Hugging Face's local cache, or one a model hub answers for, goes to NeMo as before; so does any
name when a proxy is configured (only trying through it tells).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

__all__ = ["HUBS", "in_local_cache", "unreachable_reason"]

#: Where NeMo fetches pretrained models: Hugging Face ids (org/name) and NGC names.
HUBS: tuple[tuple[str, int], ...] = (("huggingface.co", 443), ("api.ngc.nvidia.com", 443))
#: How long the hubs have to answer (name lookup and connection together).
PROBE_S = 4.0
_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_TRUE = {"1", "true", "yes", "on"}


def unreachable_reason(name: str) -> str | None:
    """Why the pretrained model ``name`` cannot be fetched here (not cached, and no hub answers, or
    HF_HUB_OFFLINE), or None when NeMo may get it."""
    if in_local_cache(name):
        return None
    if "/" in name and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return "HF_HUB_OFFLINE is set and the model is not in the local cache"
    if any(os.environ.get(variable) for variable in _PROXIES):
        return None
    if _any_hub_answers():
        return None
    hosts = " nor ".join(host for host, _ in HUBS)
    return f"neither {hosts} answers from this machine, and the model is not in the local cache"


def in_local_cache(name: str) -> bool:
    """Whether a download of ``name`` is kept in NeMo's cache (NEMO_CACHE_DIR, else
    ~/.cache/torch/NeMo: <version>/<name>/<hash>/<file>.nemo) or, for a Hugging Face id, in
    Hugging Face's (HF_HUB_CACHE, HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    nemo_cache = os.environ.get("NEMO_CACHE_DIR")
    nemo_root = Path(nemo_cache) if nemo_cache else _in_home(".cache", "torch", "NeMo")
    leaf = name.rsplit("/", 1)[-1]
    kept = (f"{name}/*/*.nemo", f"*/{name}/*/*.nemo", f"**/hf_hub_cache/{name}", f"**/{leaf}.nemo")
    if nemo_root is not None and nemo_root.is_dir() and any(any(nemo_root.glob(pattern)) for pattern in kept):
        return True
    if "/" not in name:
        return False
    hf_home = Path(os.environ["HF_HOME"]) if os.environ.get("HF_HOME") else _in_home(".cache", "huggingface")
    hub = Path(os.environ["HF_HUB_CACHE"]) if os.environ.get("HF_HUB_CACHE") else \
        None if hf_home is None else hf_home / "hub"
    return hub is not None and (hub / f"models--{name.replace('/', '--')}" / "snapshots").is_dir()


def _in_home(*parts: str) -> Path | None:
    """A path in the user's home folder, or None where there is none (no HOME and a uid with no
    passwd entry, as `docker run -u 12345` gives: Path.home() raises, and a server of a manifest
    without predictions, about to transcribe it, died with that traceback)."""
    try:
        return Path.home().joinpath(*parts)
    except RuntimeError:
        return None


def _any_hub_answers() -> bool:
    """Whether a connection to any of HUBS opens within PROBE_S. The name lookup is not bounded by a
    socket's timeout (a resolver that does not answer waits out its own retries), so the probes run
    in daemon threads, given up after PROBE_S."""
    answered, finished = threading.Event(), threading.Semaphore(0)

    def probe(host: str, port: int) -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_S):
                answered.set()
        except OSError:
            pass
        finally:
            finished.release()

    for host, port in HUBS:
        threading.Thread(target=probe, args=(host, port), name="sde-model-hub-probe", daemon=True).start()
    deadline = time.monotonic() + PROBE_S
    for _ in HUBS:
        if answered.is_set() or not finished.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
    return answered.is_set()
