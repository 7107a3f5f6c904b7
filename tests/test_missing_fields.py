"""Lines that lack a field: a hypothesis (left out of its scores), a duration (read from the audio
header) or the text (read from text_filepath)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde import analysis
from sde.dataset import DatasetOptions, build_dataset, normalized_summary
from sde.manifest import ManifestError, read_manifest

ROOT = Path(__file__).resolve().parents[1]

# Hypothesis B is missing on two lines (absent, null) and empty on one (a real, empty transcript).
SCORED_B = [
    {"audio_filepath": "a.wav", "duration": 1, "text": "a b c", "pred_text": "a b c", "pred_text_b": "a x c",
     "speaker": "s1"},
    {"audio_filepath": "d.wav", "duration": 1, "text": "h i", "pred_text": "h", "pred_text_b": "",
     "speaker": "s2"},
]
UNSCORED_B = [
    {"audio_filepath": "b.wav", "duration": 1, "text": "d e", "pred_text": "d", "speaker": "s1"},
    {"audio_filepath": "c.wav", "duration": 1, "text": "f g", "pred_text": "f g", "pred_text_b": None,
     "speaker": "s2"},
]
ROWS = [SCORED_B[0], UNSCORED_B[0], UNSCORED_B[1], SCORED_B[1]]


@pytest.fixture
def missing_b(write_manifest):
    return build_dataset(write_manifest(ROWS), workers=1)


@pytest.fixture
def only_scored_b(write_manifest):
    """The reference: a manifest holding only the lines that have pred_text_b."""
    return build_dataset(write_manifest(SCORED_B, name="scored.json"), workers=1)


# ------------------------------------------------------------------------------- hypotheses


def test_missing_hypothesis_counts_and_per_utterance_metrics_are_nan(missing_b):
    u, s = missing_b.utterances, missing_b.summary()
    assert s["hypotheses"]["pred_text_b"]["missing"] == 2
    assert s["hypotheses"]["pred_text"]["missing"] == 0
    for column in ("wer_b", "cer_b", "wmr_b", "sub_b", "del_b", "ins_b", "hits_b", "char_edits_b"):
        assert u[column].isna().tolist() == [False, True, True, False], column
    assert u["wer_b"].iloc[3] == pytest.approx(100.0)  # "" is scored: every word deleted
    assert set(missing_b.errors["pred_text_b"]["utt"]) == {0, 3}


@pytest.mark.parametrize("key", ["wer", "cer", "wmr", "mwa", "substitutions", "deletions", "insertions"])
def test_missing_hypothesis_scores_equal_a_manifest_without_those_lines(missing_b, only_scored_b, key):
    got = missing_b.summary()["hypotheses"]["pred_text_b"][key]
    assert got == pytest.approx(only_scored_b.summary()["hypotheses"]["pred_text_b"][key])


def test_vocabulary_accuracy_leaves_out_words_of_unscored_lines(missing_b):
    v = missing_b.vocabulary.set_index("word")
    assert v.loc[["d", "e", "f", "g"], "accuracy_b"].isna().all()
    assert v.loc[["a", "b", "c", "h", "i"], "accuracy_b"].tolist() == pytest.approx([100, 0, 100, 0, 0])
    assert v.loc["d", "count"] == 1  # the reference vocabulary itself is complete


def test_normalised_scores_leave_out_missing_lines(missing_b, only_scored_b):
    got = normalized_summary(missing_b, ["lower", "punct"])["pred_text_b"]
    expected = normalized_summary(only_scored_b, ["lower", "punct"])["pred_text_b"]
    assert got == pytest.approx(expected)


def test_normalised_per_utterance_columns_are_nan_on_missing_lines(write_manifest):
    ds = build_dataset(write_manifest(ROWS), DatasetOptions(normalize=("lower",)), workers=1)
    assert ds.utterances["wer_b_norm"].isna().tolist() == [False, True, True, False]


def test_analysis_functions_leave_out_missing_lines(missing_b, only_scored_b):
    u, ref = missing_b.utterances, only_scored_b.utterances
    b = missing_b.hypothesis("pred_text_b")
    a = missing_b.hypothesis("pred_text")
    assert analysis.corpus_wer(u, b) == pytest.approx(analysis.corpus_wer(ref, b))
    assert analysis.bootstrap_wer(u, b, n_resamples=200) == pytest.approx(
        analysis.bootstrap_wer(ref, b, n_resamples=200))
    by_speaker = analysis.breakdown(u, "speaker", b).set_index("value")
    assert by_speaker["words"].to_dict() == {"s1": 3, "s2": 2}
    assert by_speaker["utterances"].to_dict() == {"s1": 1, "s2": 1}
    paired, expected = analysis.compare(u, a, b, n_resamples=200), analysis.compare(ref, a, b, n_resamples=200)
    for side in ("a", "b", "diff"):  # paired over the utterances both hypotheses have
        assert paired[side]["wer"] == pytest.approx(expected[side]["wer"])
        assert paired[side]["ci"] == pytest.approx(expected[side]["ci"])
    assert analysis.scored_rows(u, b).tolist() == [0, 3]
    assert analysis.scored_rows(u, a) is None


@pytest.mark.parametrize("field_value", ["", "x"], ids=["empty_string", "one_word"])
def test_a_present_hypothesis_is_always_scored(write_manifest, field_value):
    ds = build_dataset(write_manifest([{"audio_filepath": "a.wav", "duration": 1, "text": "x",
                                        "pred_text": field_value}]), workers=1)
    s = ds.summary()["hypotheses"]["pred_text"]
    assert s["missing"] == 0 and s["wer"] == pytest.approx(0.0 if field_value else 100.0)
    assert ds.warnings == []


def test_unmatched_predictions_are_missing_not_empty(write_manifest):
    main = write_manifest([{"audio_filepath": "a.wav", "duration": 1, "text": "a b"},
                           {"audio_filepath": "b.wav", "duration": 1, "text": "c d"}])
    preds = write_manifest([{"audio_filepath": "a.wav", "pred_text": "a x"}], name="preds.json")
    s = build_dataset(main, DatasetOptions(predictions=str(preds)), workers=1).summary()
    assert s["hypotheses"]["pred_text"]["missing"] == 1
    assert s["hypotheses"]["pred_text"]["wer"] == pytest.approx(50.0)


def test_missing_hypothesis_is_one_summarised_warning(write_manifest):
    rows = [{"audio_filepath": f"{i}.wav", "duration": 1, "text": "w", **({"pred_text": "w"} if i % 3 else {})}
            for i in range(12)]
    path = write_manifest(rows)
    ds = build_dataset(path, workers=1)
    assert [str(w) for w in ds.warnings] == [
        f"{path}:1: pred_text missing on 4 lines (e.g. lines 1, 4, 7): left out of its scores"]
    assert ds.problems == []


def test_stats_json_counts_missing_hypotheses(write_manifest):
    path = write_manifest(ROWS)
    out = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(path), "--json", "--no-cache"],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["hypotheses"]["pred_text_b"]["missing"] == 2
    assert s["warnings"] == [f"{path}:2: pred_text_b missing on 2 lines (lines 2, 3): left out of its scores"]


def _text_of(component) -> str:
    """All text inside a Dash component tree."""
    if isinstance(component, (list, tuple)):
        return " ".join(_text_of(c) for c in component)
    if isinstance(component, str):
        return component
    children = getattr(component, "children", None)
    return "" if children is None else _text_of(children)


def test_errors_page_totals_leave_out_missing_lines(missing_b, only_scored_b):
    from sde.analysis import selection_totals

    b = missing_b.hypothesis("pred_text_b")
    assert selection_totals(missing_b.utterances, b, None) == pytest.approx(
        selection_totals(only_scored_b.utterances, b, None))
    assert selection_totals(missing_b.utterances, b, np.array([1, 2, 3]))["utterances"] == 1


def test_statistics_page_says_scored_on_n_of_m(missing_b):
    from sde.web.pages import problems, statistics

    sections = statistics.recognition_sections(missing_b, [])
    texts = {h: _text_of(section) for h, section in zip(("pred_text", "pred_text_b"), sections)}
    assert "scored on 2 of 4 utterances" in texts["pred_text_b"]
    assert "scored on" not in texts["pred_text"]
    page = _text_of(problems.layout(missing_b, "/problems", {}))
    assert "pred_text_b missing on 2 lines" in page


# --------------------------------------------------------------------------------- durations


def _tone(path: Path, seconds: float, sample_rate: int = 16000) -> Path:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32), sample_rate, subtype="PCM_16")
    return path


@pytest.fixture
def audio(tmp_path) -> Path:
    d = tmp_path / "wavs"
    d.mkdir()
    _tone(d / "long.wav", 3.0)
    _tone(d / "short.wav", 0.75, 8000)
    (d / "not_audio.wav").write_text("this is not a sound file\n" * 10)
    return d


DURATION_CASES = [
    # (line without duration, expected duration or the words of the problem)
    ({"audio_filepath": "wavs/long.wav", "text": "x"}, 3.0),
    ({"audio_filepath": "wavs/short.wav", "text": "x", "duration": None}, 0.75),
    ({"audio_filepath": "wavs/long.wav", "text": "x", "offset": 1.25}, 1.75),
    ({"audio_filepath": "wavs/long.wav", "text": "x", "offset": 3.0}, 0.0),
    ({"audio_filepath": "wavs/long.wav", "text": "x", "offset": 4.0}, ['"offset" 4 is beyond the end', "3.000 s"]),
    ({"audio_filepath": "wavs/gone.wav", "text": "x"}, ["gone.wav: file not found", 'add "duration"']),
    ({"audio_filepath": "wavs/not_audio.wav", "text": "x"}, ["not_audio.wav", "not a sound file"]),
]


@pytest.mark.parametrize("line, expected", DURATION_CASES,
                         ids=["absent", "null", "offset", "offset_at_end", "offset_beyond_end", "no_file",
                              "not_audio"])
def test_missing_duration_is_read_from_the_audio_header(tmp_path, audio, write_manifest, line, expected):
    path = write_manifest([{"audio_filepath": "wavs/short.wav", "text": "given", "duration": 9.0}, line])
    m = read_manifest(path)
    t = m.table
    if isinstance(expected, float):
        assert t["duration"].tolist() == pytest.approx([9.0, expected])
        assert t["duration_source"].tolist() == ["manifest", "header"]
        assert m.problems == []
    else:
        assert t["duration_source"].tolist() == ["manifest"]
        assert [p.line for p in m.problems] == [2]
        assert all(word in m.problems[0].reason for word in expected), m.problems[0].reason
        assert m.problems[0].reason.startswith('missing field "duration"')


def test_no_duration_source_column_when_every_line_has_a_duration(write_manifest):
    t = read_manifest(write_manifest([{"audio_filepath": "a.wav", "duration": 1, "text": "x"}])).table
    assert "duration_source" not in t.columns


def test_header_durations_of_many_files_in_order(tmp_path, write_manifest):
    (tmp_path / "many").mkdir()
    lengths = [0.1 + 0.05 * i for i in range(40)]
    for i, seconds in enumerate(lengths):
        _tone(tmp_path / "many" / f"{i}.wav", seconds)
    rows = [{"audio_filepath": f"many/{i}.wav", "text": "x"} for i in range(40)]
    rows.insert(5, {"audio_filepath": "many/missing.wav", "text": "x"})
    m = read_manifest(write_manifest(rows))
    assert m.table["duration"].tolist() == pytest.approx(lengths, abs=1e-4)
    assert m.table["id"].tolist() == list(range(40))
    assert [p.line for p in m.problems] == [6]


def test_strict_stops_at_an_unreadable_header(audio, write_manifest):
    path = write_manifest([{"audio_filepath": "wavs/long.wav", "text": "x"},
                           {"audio_filepath": "wavs/gone.wav", "text": "x"}])
    with pytest.raises(ManifestError, match=r"manifest.json:2: missing field \"duration\".*gone.wav: file not found"):
        read_manifest(path, strict=True)


def test_every_header_unreadable_is_one_error(write_manifest):
    path = write_manifest([{"audio_filepath": f"gone{i}.wav", "text": "x"} for i in range(3)])
    with pytest.raises(ManifestError, match="no valid utterances: every line is bad"):
        read_manifest(path)


# ------------------------------------------------------------------------------------- texts


@pytest.fixture
def transcripts(tmp_path) -> Path:
    d = tmp_path / "txt"
    d.mkdir()
    (d / "one.txt").write_text("hello world\n", encoding="utf-8")
    (d / "lines.txt").write_bytes("first line\r\nsecond\n".encode())
    (d / "bad.txt").write_bytes(b"caf\xe9")
    (d / "huge.txt").write_bytes(b"x" * ((1 << 20) + 1))
    return d


TEXT_CASES = [
    ({"text_filepath": "txt/one.txt"}, "hello world"),
    ({"text_filepath": "txt/lines.txt"}, "first linesecond"),  # NeMo drops line breaks, adds nothing
    ({"text_filepath": "txt/one.txt", "text": None}, "hello world"),
    ({"text_filepath": "txt/one.txt", "text": "given"}, "given"),  # text wins, as in NeMo
    ({"text_filepath": "txt/gone.txt"}, ['"text_filepath" "txt/gone.txt" cannot be read (file not found)']),
    ({"text_filepath": "txt/bad.txt"}, ["not valid UTF-8 (byte 0xe9"]),
    ({"text_filepath": "txt/huge.txt"}, ["larger than 1 MiB"]),
    ({"text_filepath": "txt"}, ["is a directory"]),
    ({"text_filepath": "/dev/zero"}, ["not a regular file (a pipe, socket or device)"]),
    ({"text_filepath": "txt/pipe.txt"}, ["not a regular file (a pipe, socket or device)"]),  # a load stalled on it
]


@pytest.mark.parametrize("fields, expected", TEXT_CASES,
                         ids=["relative", "line_breaks", "null_text", "text_wins", "no_file", "not_utf8", "huge",
                              "directory", "device", "fifo"])
def test_text_is_read_from_text_filepath(transcripts, write_manifest, fields, expected):
    path = write_manifest([{"audio_filepath": "a.wav", "duration": 1, "text": "kept"},
                           {"audio_filepath": "b.wav", "duration": 1, **fields}])
    if fields["text_filepath"].endswith("pipe.txt"):  # a FIFO no one writes to: opening it used to block forever
        os.mkfifo(transcripts / "pipe.txt")
    m = _read_within(path, seconds=60, fifo=transcripts / "pipe.txt")
    if isinstance(expected, str):
        assert m.table["text"].tolist() == ["kept", expected]
        assert m.problems == []
    else:
        assert m.table["text"].tolist() == ["kept"]
        assert [p.line for p in m.problems] == [2]
        assert all(word in m.problems[0].reason for word in expected), m.problems[0].reason


def _read_within(path: Path, seconds: float, fifo: Path):
    """read_manifest(path), failing (not hanging) when it takes longer; a reader stuck opening the
    FIFO is released by opening its other end."""
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(m=read_manifest(path)), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        if fifo.exists():
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail(f"reading {path} took more than {seconds} s")
    return box["m"]


def test_text_filepath_resolves_like_audio_paths(tmp_path, transcripts, write_manifest):
    elsewhere = tmp_path / "manifests"
    elsewhere.mkdir()
    rows = [{"audio_filepath": "a.wav", "duration": 1, "text_filepath": "txt/one.txt"},
            {"audio_filepath": "b.wav", "duration": 1, "text_filepath": str(transcripts / "lines.txt")}]
    path = elsewhere / "m.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_manifest(path, audio_base_path=tmp_path).table["text"].tolist() == ["hello world", "first linesecond"]
    m = read_manifest(path)  # relative to the manifest's folder, where txt/ is not
    assert m.table["text"].tolist() == ["first linesecond"] and [p.line for p in m.problems] == [1]


def test_forced_alignment_manifest_through_the_cli(tmp_path, audio, transcripts, write_manifest):
    """No duration, text in files: what NeMo forced-alignment and speaker manifests look like."""
    path = write_manifest([{"audio_filepath": "wavs/long.wav", "text_filepath": "txt/one.txt"},
                           {"audio_filepath": "wavs/short.wav", "text_filepath": "txt/lines.txt", "offset": 0.25}])
    out = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(path), "--json", "--no-cache"],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["utterances"] == 2 and s["skipped_lines"] == 0
    assert s["hours"] == pytest.approx((3.0 + 0.5) / 3600, abs=1e-6)
    assert s["words"] == 4


def test_long_manifest_without_durations_or_texts_takes_the_fast_path(audio, transcripts, write_manifest,
                                                                      monkeypatch):
    from sde.manifest import careful as careful_path

    careful = []
    monkeypatch.setattr(careful_path, "careful_piece", lambda *a: careful.append(1) or pytest.fail("careful path used"))
    rows = [{"audio_filepath": "wavs/long.wav", "offset": i / 1000, "text_filepath": "txt/one.txt"}
            for i in range(2000)]
    m = read_manifest(write_manifest(rows))
    assert not careful and m.problems == []
    assert m.table["duration"].to_numpy() == pytest.approx(3.0 - np.arange(2000) / 1000)
    assert set(m.table["duration_source"]) == {"header"} and set(m.table["text"]) == {"hello world"}


def test_a_manifest_field_named_duration_source_is_kept_apart(audio, write_manifest):
    t = read_manifest(write_manifest([{"audio_filepath": "wavs/long.wav", "text": "x", "duration_source": "mine"}])).table
    assert t["duration_source"].tolist() == ["header"] and t["manifest_duration_source"].tolist() == ["mine"]
