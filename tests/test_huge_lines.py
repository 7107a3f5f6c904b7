"""One absurdly long manifest line stalls nothing: through the real CLI and a real server.

A manifest with one 330,000-word line (2 MB of reference, 2 MB of hypothesis) among normal lines
used to take minutes to load (exact alignment is quadratic) and seconds per inspector request.
Now such an utterance is aligned in windows (sde.metrics: linear time), listed as a warning with
its file:line, and the inspector shows its texts without a word diff.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
HUGE_WORDS = 330_000
NORMAL_LINES = 40  # the huge line is line NORMAL_LINES // 2 + 1
NORMAL = {"audio_filepath": "a.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the bat sat"}


def huge_texts(words: int, seed: int = 0) -> tuple[str, str]:
    """A reference of `words` words from a 5,000-word vocabulary, and a hypothesis with ~10% of
    them substituted (so the exact word errors are the positions that differ)."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(5000)])
    ref = vocab[rng.integers(0, len(vocab), words)]
    hyp = ref.copy()
    flip = rng.random(words) < 0.1
    hyp[flip] = vocab[rng.integers(0, len(vocab), int(flip.sum()))]
    return " ".join(ref.tolist()), " ".join(hyp.tolist())


def write_huge_line_manifest(path: Path, words: int = HUGE_WORDS) -> Path:
    ref, hyp = huge_texts(words)
    rows = [NORMAL] * (NORMAL_LINES // 2) + [{"audio_filepath": "huge.wav", "duration": 3600.0, "text": ref,
                                               "pred_text": hyp}] + [NORMAL] * (NORMAL_LINES // 2)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def huge(tmp_path_factory) -> Path:
    return write_huge_line_manifest(tmp_path_factory.mktemp("huge") / "huge.json")


def run_measured(args: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """(result, wall seconds, CPU seconds of the process and its workers): CPU time is what the
    work costs, whatever else the machine runs meanwhile."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sde.cli", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, wall, cpu


@pytest.mark.slow
def test_stats_on_a_huge_line_is_quick_and_warns_with_file_and_line(huge):
    proc, wall, cpu = run_measured(["stats", str(huge), "--json", "--no-cache"])
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # minutes before; ~1.5 s of start-up plus ~0.5 s for the line now
    assert cpu < 8, f"sde stats used {cpu:.1f} s of CPU ({wall:.1f} s wall)"
    summary = json.loads(proc.stdout)
    line = NORMAL_LINES // 2 + 1
    assert summary["utterances"] == NORMAL_LINES + 1
    assert summary["words"] == HUGE_WORDS + 3 * NORMAL_LINES
    [warning] = summary["warnings"]
    assert warning.startswith(f"{huge}:{line}: pred_text: reference has 330,000 words (limit 5,000)"), warning
    assert "aligned in windows" in warning
    # the windowed count equals the exact one here: only substitutions, at the differing positions
    ref, hyp = huge_texts(HUGE_WORDS)
    differing = sum(a != b for a, b in zip(ref.split(), hyp.split()))
    errors = differing + NORMAL_LINES  # one substitution on every normal line
    assert summary["hypotheses"]["pred_text"]["wer"] == pytest.approx(100 * errors / summary["words"], rel=1e-3)


def _get(url: str) -> tuple[float, dict]:
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
    return time.monotonic() - start, json.loads(body)


@pytest.mark.slow
def test_server_answers_the_huge_utterance_quickly(huge):
    from tests.browser_kit import sde_server

    huge_id = NORMAL_LINES // 2
    with sde_server(str(huge)) as url:
        # best of three: one slow answer on a busy machine is not the server's doing
        seconds, row = min((_get(f"{url}/api/utterances/{huge_id}") for _ in range(3)), key=lambda r: r[0])
        assert seconds < 1.0, f"/api/utterances/{huge_id} took {seconds:.2f} s"
        [entry] = row["alignment"]["pred_text"]
        assert entry["op"] == "unaligned" and entry["hyp"] == row["pred_text"]
        assert re.search(r"No word diff: the reference has 330,000 words and the hypothesis has 330,000 words",
                         entry["note"]), entry["note"]
        assert row["num_words"] == HUGE_WORDS and row["wer"] > 0
        # a normal line of the same manifest still gets its word diff
        _, normal = _get(f"{url}/api/utterances/0")
        assert [w["op"] for w in normal["alignment"]["pred_text"]] == ["equal", "sub", "equal"]


def test_inspector_diff_shows_an_unaligned_text_with_its_note():
    from sde.metrics import MAX_EXACT_WORDS, align_words
    from sde.web.components import diff_view

    hyp = " ".join(["w"] * (MAX_EXACT_WORDS + 1))
    view = diff_view(align_words("a b", hyp)).to_plotly_json()
    note, text = view["props"]["children"]
    assert "No word diff: the hypothesis has 5,001 words" in note.children
    assert text.children == hyp and text.className == "diff-plain"


def test_a_long_prediction_added_later_is_warned_about_at_its_line(write_manifest):
    from sde.dataset import build_dataset, with_predictions

    rows = [{"audio_filepath": f"{i}.wav", "duration": 1.0, "text": "the cat sat"} for i in range(3)]
    dataset = build_dataset(write_manifest(["", *rows]))  # a blank first line: ids and lines differ
    long_prediction = " ".join(["cat"] * 6_000)
    scored = with_predictions(dataset, "pred_text", ["the cat sat", long_prediction, ""])
    [warning] = scored.warnings
    assert warning.line == 3 and warning.path.endswith("manifest.json")
    assert warning.reason.startswith("pred_text: hypothesis has 6,000 words (limit 5,000): aligned in windows")
    assert scored.utterances["ins"].tolist() == [0, 5_997, 0] and scored.utterances["del"].tolist() == [0, 0, 3]
