"""Load: 20 concurrent clients x 50 mixed requests against the real server on a 100k-utterance
manifest (benchmarks/bench_load_server.py does the work; this asserts on its figures).

Zero errors; the server's RSS grows at most 10 % over the measured round once a warm-up round has
filled its caches. Figures are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _bench():
    spec = importlib.util.spec_from_file_location("bench_load_server", ROOT / "benchmarks" / "bench_load_server.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_concurrent_clients(tmp_path):
    bench = _bench()
    manifest = bench.make_manifest(tmp_path, 100_000, real_audio=50, seed=0)
    fig = bench.load_test(manifest, clients=20, requests=50, n_audio=50, seed=0)
    print("\n" + bench.markdown(fig))
    assert fig["server_alive"], fig["server_stderr"]
    assert fig["warmup_errors"] == [], fig["warmup_errors"][:10]
    assert fig["errors"] == [], fig["errors"][:10]
    assert fig["requests"] == 20 * 50
    assert set(fig["kinds"]) == {"utterances filter+sort", "utterances page", "utterance", "vocabulary", "audio",
                                 "audio range", "signal"}
    assert "Traceback" not in fig["server_stderr"], fig["server_stderr"]
    assert fig["rss_growth"] <= 0.10, (
        f"server RSS grew {100 * fig['rss_growth']:.1f} % after warm-up "
        f"({fig['rss_before_mb']:.0f} → {fig['rss_after_mb']:.0f} MB)")
