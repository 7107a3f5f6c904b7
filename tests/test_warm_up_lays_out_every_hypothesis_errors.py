"""The warm-up (sde.web.pages.prepare_pages) makes the top-error tables of every hypothesis, not
only of the first one the Errors page lays out: the first GET /api/errors?hyp=SECOND counted its
errors in the request (~0.6 s at 10M utterances). `sde index` keeps them with the build like the
first's, so a start from it counts none. Through the real server (sde.web.serve) over a socket;
the counting functions of sde.analysis are counted by wrappers that call them."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sde import analysis
from sde.build.load import load_dataset
from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from sde.web.pages import errors, prepare_pages
from tests.server_kit import served_port

DEMO = Path(__file__).resolve().parent.parent / "sde" / "demo" / "manifest.json"
COUNTING = ("top_errors", "affected_utterances")


def counted_calls(monkeypatch) -> list[str]:
    """The names of sde.analysis' error-counting functions, one per call from now on."""
    calls: list[str] = []
    for name in COUNTING:
        real = getattr(analysis, name)

        def count(*args, _name=name, _real=real, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(analysis, name, count)
    return calls


def errors_of(dataset, hyp: str, limit: int | None = None) -> dict:
    app = create_app(dataset, AppConfig(title=dataset.name, audio_routes=False))
    query = f"hyp={hyp}" + (f"&limit={limit}" if limit is not None else "")
    with served_port(app) as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/errors?{query}", timeout=30) as r:
            assert r.status == 200
            return json.loads(r.read())


def test_the_warm_up_counts_the_second_hypothesis_errors_too(monkeypatch):
    dataset = build_dataset(DEMO)
    second = dataset.hypotheses[1].field
    expected = errors_of(build_dataset(DEMO), second)  # counted in the request, on a dataset of its own
    calls = counted_calls(monkeypatch)
    prepare_pages(dataset)
    assert calls.count("affected_utterances") == len(errors.KINDS) * len(dataset.hypotheses), calls
    calls.clear()
    assert errors_of(dataset, second) == expected
    assert errors_of(dataset, second, limit=5)["substitutions"] == expected["substitutions"][:5]
    assert calls == []
    assert expected["substitutions"], "the demo's second hypothesis has substitutions to count"


def test_sde_index_keeps_the_second_hypothesis_errors_with_the_build(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-m", "sde.cli", "index", str(DEMO), "--cache-dir", str(cache_dir)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    second = build_dataset(DEMO).hypotheses[1].field
    expected = errors_of(build_dataset(DEMO), second)

    def refuse(*args, **kwargs):
        raise AssertionError("the errors were counted again")

    for name in COUNTING:
        monkeypatch.setattr(analysis, name, refuse)
    assert errors_of(load_dataset(DEMO, cache_dir=cache_dir), second) == expected


@pytest.mark.parametrize("hyp", ["pred_text", "pred_text_conformer"])
def test_each_hypothesis_errors_after_the_warm_up_equal_those_counted_in_the_request(hyp):
    warmed = build_dataset(DEMO)
    prepare_pages(warmed)
    assert errors_of(warmed, hyp, limit=3) == errors_of(build_dataset(DEMO), hyp, limit=3)
