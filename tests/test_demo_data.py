"""The demo dataset shipped in the package, and the synthetic manifest generator for benchmarks."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from sde.demo import DEMO_MANIFEST

REPO = Path(__file__).resolve().parent.parent
GENERATOR = REPO / "benchmarks" / "make_manifest.py"


# ---------------------------------------------------------------------------------------------
# demo dataset


@pytest.fixture(scope="module")
def demo_rows() -> list[dict]:
    assert DEMO_MANIFEST.is_file(), f"{DEMO_MANIFEST} missing: run python scripts/make_demo.py"
    lines = DEMO_MANIFEST.read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        assert line.strip(), f"manifest.json:{n}: blank line"
        row = json.loads(line)
        assert isinstance(row, dict), f"manifest.json:{n}: not an object"
        rows.append(row)
    return rows


def test_demo_manifest_shape(demo_rows):
    assert 25 <= len(demo_rows) <= 40
    for row in demo_rows:
        for field in ("audio_filepath", "duration", "text", "pred_text", "pred_text_conformer",
                      "speaker", "lang"):
            assert field in row, f"{row.get('audio_filepath')}: missing {field}"
        assert isinstance(row["duration"], float) and row["duration"] > 0
        assert row["lang"] in ("en-US", "en-GB")
        # relative to the manifest's folder, so it works wherever the package is installed
        assert not Path(row["audio_filepath"]).is_absolute()
        assert 2 <= len(row["text"].split()) <= 30
    assert len({r["speaker"] for r in demo_rows}) >= 4
    texts = [r["text"] for r in demo_rows]
    assert any(any(ch.isdigit() for ch in t) for t in texts), "numbers→words needs digits"
    assert any("'" in t for t in texts)
    assert any(t != t.lower() for t in texts) and any(t[-1] in ".?!," for t in texts)


def test_demo_audio_files_match_manifest(demo_rows):
    base = DEMO_MANIFEST.parent
    for row in demo_rows:
        path = base / row["audio_filepath"]
        assert path.is_file(), f"{path} missing"
        info = sf.info(path)
        assert info.format == "FLAC" and info.samplerate == 16000 and info.channels == 1
        if "offset" in row:
            assert row["offset"] >= 0
            assert row["offset"] + row["duration"] <= info.duration + 1e-3
            start = round(row["offset"] * info.samplerate)
            audio, _ = sf.read(path, start=start, frames=round(row["duration"] * info.samplerate))
        else:
            assert abs(info.duration - row["duration"]) <= 0.01, path
            audio, _ = sf.read(path)
        # the segment holds speech, not silence (catches wrong offsets)
        assert np.sqrt(np.mean(audio ** 2)) > 0.01, path


def test_demo_offset_segments_share_one_file(demo_rows):
    with_offset = [r for r in demo_rows if "offset" in r]
    assert len(with_offset) >= 2
    by_file = collections.defaultdict(list)
    for r in with_offset:
        by_file[r["audio_filepath"]].append(r)
    segments = max(by_file.values(), key=len)
    assert len(segments) >= 2
    segments.sort(key=lambda r: r["offset"])
    for a, b in zip(segments, segments[1:]):
        assert a["offset"] + a["duration"] <= b["offset"], "segments overlap"


def test_demo_hypotheses_have_realistic_errors(demo_rows):
    refs = [r["text"] for r in demo_rows]
    wer_a = 100 * jiwer.wer(refs, [r["pred_text"] for r in demo_rows])
    wer_b = 100 * jiwer.wer(refs, [r["pred_text_conformer"] for r in demo_rows])
    assert 8 <= wer_a <= 20
    assert 2 <= wer_b < wer_a
    per_a = [jiwer.wer(r["text"], r["pred_text"]) for r in demo_rows]
    per_b = [jiwer.wer(r["text"], r["pred_text_conformer"]) for r in demo_rows]
    assert sum(a == b == 0 for a, b in zip(per_a, per_b)) >= 2, "a couple perfect for both"
    assert sum(b > a for a, b in zip(per_a, per_b)) >= 2, "B worse than A on a few"
    out = jiwer.process_words(refs, [r["pred_text"] for r in demo_rows])
    assert out.substitutions and out.deletions and out.insertions


def test_demo_folder_is_small():
    size = sum(p.stat().st_size for p in DEMO_MANIFEST.parent.rglob("*") if p.is_file())
    assert size < 2.5e6


# ---------------------------------------------------------------------------------------------
# synthetic manifest generator


def _generate(out: Path, *args: str) -> None:
    subprocess.run([sys.executable, str(GENERATOR), str(out), "--quiet", *args], check=True,
                   timeout=120)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("gen")
    a, b = d / "a.json", d / "b.json"
    _generate(a, "--utterances", "2000", "--seed", "7", "--hypotheses", "2")
    _generate(b, "--utterances", "2000", "--seed", "7", "--hypotheses", "2")
    return a, b


def test_generator_is_deterministic(generated, tmp_path):
    a, b = generated
    assert a.read_bytes() == b.read_bytes()
    other = tmp_path / "c.json"
    _generate(other, "--utterances", "2000", "--seed", "8", "--hypotheses", "2")
    assert other.read_bytes() != a.read_bytes()


def test_generator_lines_are_valid(generated):
    lines = generated[0].read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2000
    speakers = set()
    for n, line in enumerate(lines):
        row = json.loads(line)
        assert row["audio_filepath"] == f"audio/{row['speaker']}/utt_{n:07d}.wav"
        assert isinstance(row["duration"], float) and row["duration"] > 0
        words = row["text"].split()
        assert 2 <= len(words) <= 40
        assert 0.5 <= len(words) / row["duration"] <= 6
        assert isinstance(row["pred_text"], str) and isinstance(row["pred_text_b"], str)
        assert isinstance(row["snr"], float)
        assert row["lang"].startswith("en-")
        speakers.add(row["speaker"])
    assert len(speakers) > 200


def test_generator_error_rates(generated):
    rows = [json.loads(line) for line in generated[0].read_text(encoding="utf-8").splitlines()]
    refs = [r["text"] for r in rows]
    out = jiwer.process_words(refs, [r["pred_text"] for r in rows])
    assert 9 <= 100 * out.wer <= 15
    assert out.substitutions > out.deletions > 0 and out.insertions > 0
    wer_b = 100 * jiwer.wer(refs, [r["pred_text_b"] for r in rows])
    assert 6 <= wer_b < 100 * out.wer


def test_generator_vocabulary_is_zipfian(generated):
    counts = collections.Counter(
        w for line in generated[0].read_text(encoding="utf-8").splitlines()
        for w in json.loads(line)["text"].split())
    ranked = [c for _, c in counts.most_common()]
    assert len(ranked) > 2000
    assert ranked[0] >= 30 * ranked[99]
    mean_words = sum(ranked) / 2000
    assert 10 <= mean_words <= 14


def test_generator_prefix_stable_and_real_audio(tmp_path):
    small, big = tmp_path / "small.json", tmp_path / "big.json"
    _generate(small, "--utterances", "30", "--seed", "3", "--real-audio", "3")
    _generate(big, "--utterances", "300", "--seed", "3")
    assert big.read_text().splitlines()[:30] == small.read_text().splitlines()
    for line in small.read_text().splitlines()[:3]:
        row = json.loads(line)
        info = sf.info(tmp_path / row["audio_filepath"])
        assert info.samplerate == 16000
        assert abs(info.duration - row["duration"]) < 1e-3
    assert not (tmp_path / json.loads(small.read_text().splitlines()[3])["audio_filepath"]).exists()
