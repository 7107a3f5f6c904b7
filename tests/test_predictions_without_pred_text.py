"""A model's output fed back with --predictions: sde transcribe (and NeMo) write a line for audio
they could not read without pred_text. Such a line holds no prediction, so the utterance it names
is missing that hypothesis (left out of the scores, counted as missing): it is not a bad line,
skipped or refused by --strict, whether the dataset is read in one piece, part by part, or from
the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sde.build.load import load_dataset
from sde.dataset import DatasetOptions, build_dataset
from sde.manifest import ManifestError, fast, read_manifest
from sde.manifest.pieces import ReadState, Spec
from tests.build.build_kit import PART, assert_same_dataset

ROOT = Path(__file__).resolve().parents[1]
LINES = 80  # > 4 KB: --part-size 4KB builds it part by part
UNREADABLE = (5, 40, 77)  # 0-based rows whose audio the model could not read


def _rows() -> list[dict]:
    return [{"audio_filepath": f"audio/u{i:03d}.wav", "duration": 1.0 + i % 7 / 10,
             "text": f"the utterance number {i} says a few words"} for i in range(LINES)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _transcribed(rows: list[dict]) -> list[str]:
    """The output manifest as sde transcribe writes it: each line as read plus pred_text, but none
    on the lines whose audio could not be read."""
    return [json.dumps(row if i in UNREADABLE else {**row, "pred_text": row["text"].replace("few", "fee")})
            for i, row in enumerate(rows)]


@pytest.fixture
def case(tmp_path: Path) -> tuple[Path, Path]:
    rows = _rows()
    manifest = _write(tmp_path / "manifest.json", [json.dumps(r) for r in rows])
    preds = tmp_path / "preds"
    preds.mkdir()
    return manifest, _write(preds / "manifest_tiny.json", _transcribed(rows))


def _missing_lines(dataset) -> list[int]:
    column = dataset.utterances["pred_text"]
    return [int(line) for line, missing in zip(dataset.utterances["line"], column.isna()) if missing]


READS = {
    "one piece": lambda manifest, options, cache: build_dataset(str(manifest), options),
    "part by part": lambda manifest, options, cache: load_dataset(str(manifest), options, cache_dir=cache,
                                                                  part_bytes=PART, threads=1),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
@pytest.mark.parametrize("strict", [False, True], ids=["default", "--strict"])
def test_a_prediction_line_without_pred_text_leaves_its_utterance_missing_not_skipped(case, tmp_path, read, strict):
    manifest, preds = case
    dataset = read(manifest, DatasetOptions(predictions=str(preds), strict=strict), tmp_path / "cache")
    assert dataset.problems == []
    assert len(dataset.utterances) == LINES
    assert _missing_lines(dataset) == [i + 1 for i in UNREADABLE]
    summary = dataset.summary()
    assert summary["hypotheses"]["pred_text"]["missing"] == len(UNREADABLE)
    assert [w.reason for w in dataset.warnings if "have no prediction in" in w.reason] == [
        f"3 of {LINES} utterances have no prediction in {preds} (the first is here): left out of pred_text's scores"]


def test_part_by_part_gives_the_one_piece_dataset(case, tmp_path):
    manifest, preds = case
    options = DatasetOptions(predictions=str(preds))
    assert_same_dataset(READS["part by part"](manifest, options, tmp_path / "cache"),
                        READS["one piece"](manifest, options, None))


def test_a_null_pred_text_is_still_a_bad_line_on_the_fast_and_the_careful_path(tmp_path):
    """Only a line without the field holds no prediction; "pred_text": null is what no model writes."""
    rows = _rows()[:4]
    manifest = _write(tmp_path / "m.json", [json.dumps(r) for r in rows])
    lines = [json.dumps({"audio_filepath": rows[0]["audio_filepath"], "pred_text": "a"}),
             json.dumps({"audio_filepath": rows[1]["audio_filepath"]}),
             json.dumps({"audio_filepath": rows[2]["audio_filepath"], "pred_text": None}),
             json.dumps({"audio_filepath": rows[3]["audio_filepath"], "pred_text": "d"})]
    fast = read_manifest(manifest, predictions=_write(tmp_path / "fast.json", lines))
    # a line not starting with "{" sends the chunk down the careful path
    careful = read_manifest(manifest, predictions=_write(tmp_path / "careful.json", [" " + lines[0], *lines[1:]]))
    for m, preds in ((fast, tmp_path / "fast.json"), (careful, tmp_path / "careful.json")):
        assert [str(p) for p in m.problems] == [f'{preds}:3: "pred_text" must be a string, got null']
        assert m.table["pred_text"].astype(object).where(m.table["pred_text"].notna(), None).tolist() == \
            ["a", None, None, "d"]


def test_a_line_without_pred_text_keeps_its_chunk_on_the_fast_path(tmp_path):
    """The careful path is ~10x slower: a few unreadable files must not send a whole chunk of a big
    predictions file down it."""
    data = "".join(line + "\n" for line in _transcribed(_rows())).encode()
    state = ReadState(str(tmp_path / "preds.json"), Spec(predictions=True), False, len(data))
    result = fast.fast_piece(data, 0, state)
    assert result is not None
    piece, problems, lines = result
    assert (piece.n, problems, lines) == (LINES, [], LINES)
    assert [i for i, value in enumerate(piece.cols["pred_text"].to_pylist()) if value is None] == list(UNREADABLE)


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_predictions_that_all_lack_pred_text_are_refused_with_the_reason(case, tmp_path, read):
    manifest, preds = case
    _write(preds, [json.dumps(r) for r in _rows()])  # no audio could be read
    with pytest.raises(ManifestError, match="no line has a pred_text, so there is no prediction to merge"):
        read(manifest, DatasetOptions(predictions=str(preds)), tmp_path / "cache")


def _sde(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("part_size", [None, "4KB"], ids=["one piece", "part by part"])
def test_stats_of_the_fed_back_output_counts_missing_not_bad_lines_cold_and_warm(case, tmp_path, part_size):
    manifest, preds = case
    args = ["stats", manifest, "--predictions", preds, "--cache-dir", tmp_path / "cache",
            *(["--part-size", part_size] if part_size else [])]
    runs = [_sde(*args, cwd=tmp_path) for _ in range(2)]
    assert "loaded from cache" not in runs[0].stderr and "loaded from cache" in runs[1].stderr
    assert ("matching the predictions" in runs[0].stderr) == bool(part_size), runs[0].stderr
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "bad line" not in run.stderr and 'missing field "pred_text"' not in run.stderr, run.stderr
        assert "skipped lines    0" in run.stdout and "missing on 3 lines: left out of its scores" in run.stdout
    summary = json.loads(_sde(*args, "--json", cwd=tmp_path).stdout)  # warm too
    assert summary["skipped_lines"] == 0 and summary["utterances"] == LINES
    assert summary["hypotheses"]["pred_text"]["missing"] == len(UNREADABLE)
    # the output manifest read on its own says the same
    alone = json.loads(_sde("stats", preds, "--no-cache", "--json", cwd=tmp_path).stdout)
    assert alone["hypotheses"]["pred_text"]["missing"] == len(UNREADABLE) and alone["skipped_lines"] == 0
    assert alone["hypotheses"]["pred_text"]["wer"] == pytest.approx(summary["hypotheses"]["pred_text"]["wer"],
                                                                   abs=1e-9)


def test_strict_stats_and_export_accept_the_fed_back_output(case, tmp_path):
    manifest, preds = case
    strict = _sde("stats", manifest, "--predictions", preds, "--no-cache", "--strict", cwd=tmp_path)
    assert strict.returncode == 0, strict.stderr
    assert "skipped lines    0" in strict.stdout
    out = manifest.parent / "exp.json"
    export = _sde("export", manifest, "--predictions", preds, "--no-cache", "-o", out, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert "bad lines" not in export.stderr and "in neither file" not in export.stderr, export.stderr
    assert out.read_text(encoding="utf-8") == manifest.read_text(encoding="utf-8")
