"""What the build tests share: a manifest that exercises every join rule, and the check that a
dataset built part by part (on any engine) is the one a one-piece build gives."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

WORDS = "the cat sat on a mat dog ran far away über café naïve one two three".split()
PART = 4096  # ~25 lines: a few hundred lines make many parts


def _line(i: int, rng: random.Random) -> dict | str:
    if i % 97 == 13:
        return "{not json"
    if i % 89 == 7:
        return json.dumps({"audio_filepath": f"a{i}.wav", "text": "no duration"})
    ref = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 9)))
    hyp = " ".join(w for w in ref.split() if rng.random() > 0.2) + (" uh" if rng.random() < 0.2 else "")
    row = {"audio_filepath": f"audio/a{i}.wav", "duration": round(rng.uniform(0.5, 9), 2), "text": ref,
           "speaker": f"spk{i % 7}"}
    if i % 11 != 3:  # some lines lack the hypothesis: left out of its scores
        row["pred_text"] = hyp
    if i >= 250:  # the first parts have no pred_text_b at all
        row["pred_text_b"] = ref if rng.random() < 0.7 else hyp
    if i % 50 == 0:  # listed in natural order, m2 before m10, by both builds
        row["pred_text_m10"], row["pred_text_m2"] = hyp, f"{ref} uh"
    row["snr"] = i if i < 300 else i + 0.5  # integers in the first parts, floats later
    return json.dumps(row, ensure_ascii=False)


def write_mixed_manifest(folder: Path, lines: int = 600) -> Path:
    """``m.json`` (bad lines, lines without a duration or a hypothesis, a hypothesis the first
    parts lack, a column whose type changes) and ``vocab.txt`` beside it."""
    rng = random.Random(7)
    path = folder / "m.json"
    path.write_text("\n".join(_line(i, rng) for i in range(lines)) + "\n", encoding="utf-8")
    path.with_name("vocab.txt").write_text("the\ncat\nsat\non\na\nmat\n", encoding="utf-8")
    return path


def valid_rows(manifest: Path) -> list[dict]:
    """The rows of a manifest's valid lines."""
    rows = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "duration" in row:
            rows.append(row)
    return rows


def write_predictions(folder: Path, rows: list[dict], name: str = "preds.json") -> Path:
    """Predictions for most lines: some by the path as written, some by the resolved path, a few
    given twice (the later wins), one bad line, and one for a file the manifest lacks."""
    lines = []
    for i, row in enumerate(rows):
        if i % 5 == 0:
            continue  # no prediction: left out of the scores
        path = row["audio_filepath"] if i % 3 else str(folder / row["audio_filepath"])
        lines.append(json.dumps({"audio_filepath": path, "pred_text": row["text"][::-1] if i % 2 else row["text"]}))
        if i % 17 == 0:
            lines.append(json.dumps({"audio_filepath": path, "pred_text": "the later one wins"}))
    lines.insert(10, "{not json")
    lines.append(json.dumps({"audio_filepath": "audio/elsewhere.wav", "pred_text": "matches no line"}))
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_same_dataset(built, expected) -> None:
    pd.testing.assert_frame_equal(built.utterances, expected.utterances, check_dtype=False)
    pd.testing.assert_frame_equal(built.vocabulary, expected.vocabulary, check_dtype=False)
    assert [h.field for h in built.hypotheses] == [h.field for h in expected.hypotheses]
    for h in expected.hypotheses:
        pd.testing.assert_frame_equal(built.errors[h.field], expected.errors[h.field], check_dtype=False)
    assert built.problems == expected.problems
    assert built.total_lines == expected.total_lines
    assert built.alphabet == expected.alphabet
    assert built.alphabet_report == expected.alphabet_report
    assert built.warnings == expected.warnings
    summary, want = built.summary(), expected.summary()
    hypotheses, want_hypotheses = summary.pop("hypotheses"), want.pop("hypotheses")
    assert list(hypotheses) == list(want_hypotheses)
    for field, numbers in want_hypotheses.items():
        normalized, want_normalized = hypotheses[field].pop("normalized", None), numbers.pop("normalized", None)
        assert hypotheses[field] == pytest.approx(numbers)
        assert (normalized is None) == (want_normalized is None)
        if want_normalized is not None:  # --normalize: the corpus scores of normalised text
            assert normalized == pytest.approx(want_normalized)
    assert summary.pop("hours") == pytest.approx(want.pop("hours"))
    assert summary == want


def built_from_store_in_parts(url: str, cache_dir: Path, part_bytes: int):
    """A gzip-compressed manifest (NeMo or a CutSet) in an object store, built part by part: copied
    into the build folder, decompressed there, built in parts, and equal to its one-piece read
    (named by its URL). The built dataset, for the caller's own checks."""
    from sde.build.load import load_dataset
    from sde.dataset import build_dataset

    messages: list[str] = []
    built = load_dataset(url, cache_dir=cache_dir, part_bytes=part_bytes, threads=2, status=messages.append)
    assert any(m.startswith("copying 1 remote manifest") for m in messages), messages
    assert any(m.startswith("decompressing 1 gzip") for m in messages), messages
    assert any(m.startswith("building ") and " parts " in m for m in messages), messages
    one_piece = build_dataset(url)
    assert_same_dataset(built, one_piece)
    assert (built.name, built.manifest_path) == (one_piece.name, one_piece.manifest_path)
    return built


def interrupted_index(command: list[str], cache: Path, cwd: Path) -> str:
    """Run ``command`` (an ``sde index`` into ``cache``) and send it SIGTERM once it has built a part
    (a gzip manifest decompressed first); its stderr, which holds no traceback."""
    import signal
    import subprocess

    from tests.interrupt_kit import interrupt_when

    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = interrupt_when(process, lambda: bool(list(cache.glob("builds/*/part-*.info"))), "part built",
                         timeout_s=240, sig=signal.SIGTERM)
    assert "Traceback" not in err, err[-3000:]
    return err


def assert_index_resumes(command: list[str], cwd: Path) -> None:
    """Run ``command`` again after :func:`interrupted_index`: it resumes from the parts and the
    decompressed copy the first run left."""
    import subprocess

    again = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "decompressing" not in again.stderr and "resuming an interrupted build" in again.stderr, again.stderr
