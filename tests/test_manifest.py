"""sde/manifest/: reading, validation, path resolution, hypotheses, predictions, hostile input."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sde.manifest import careful, fast, files, pieces
from sde.dataset import computed_columns
from sde.manifest.model import GENERATED
from sde.quality.apply import QUALITY_KINDS, SEGMENT_COLUMNS, kind_columns
from sde.review_store import REVIEW_COLUMNS
from sde.manifest import HypothesisField, Manifest, ManifestError, Problem, parse_pred_field, read_manifest

STRING = pd.StringDtype("pyarrow")


def utt(i: int = 0, **extra) -> dict:
    d = {"audio_filepath": f"a/{i}.wav", "duration": 1.5 + i, "text": f"hello {i}"}
    d.update(extra)
    return d


def write_lines(path: Path, lines: list, *, raw: bool = False) -> Path:
    """Lines are dicts (dumped as JSON) or str/bytes written as they are."""
    out = []
    for line in lines:
        if isinstance(line, bytes):
            out.append(line)
        elif isinstance(line, str):
            out.append(line.encode())
        else:
            out.append(json.dumps(line).encode())
    path.write_bytes(b"\n".join(out) + (b"" if raw else b"\n"))
    return path


@pytest.fixture
def man(tmp_path):
    def make(lines, name="m.json", **kw):
        return write_lines(tmp_path / name, lines, **kw)
    return make


def reasons(m: Manifest) -> list[tuple[int, str]]:
    return [(p.line, p.reason) for p in m.problems]


def values(column: pd.Series) -> list:
    """A column as a list with None for <NA> (which refuses == comparisons)."""
    return [None if v is pd.NA else v for v in column.tolist()]


# ---------------------------------------------------------------------------------------- basics


def test_columns_dtypes_and_order(man):
    m = read_manifest(man([utt(0, speaker="s1", snr=3.5, n=2, flag=True),
                           utt(1, speaker="s2", snr=4, n=3, flag=False)]))
    t = m.table
    assert list(t.columns) == ["id", "line", "audio_filepath", "audio_path", "offset", "duration",
                               "text", "speaker", "snr", "n", "flag"]
    assert isinstance(t.index, pd.RangeIndex) and list(t.index) == [0, 1]
    assert t["id"].dtype == np.int64 and list(t["id"]) == [0, 1]
    assert t["line"].dtype == np.int64 and list(t["line"]) == [1, 2]
    for c in ("audio_filepath", "audio_path", "text", "speaker", "flag"):
        assert t[c].dtype == STRING, c
    assert t["offset"].dtype == np.float64 and list(t["offset"]) == [0.0, 0.0]
    assert t["duration"].dtype == np.float64 and list(t["duration"]) == [1.5, 2.5]
    assert t["snr"].dtype == np.float64 and list(t["snr"]) == [3.5, 4.0]
    assert t["n"].dtype == np.int64 and list(t["n"]) == [2, 3]
    assert list(t["flag"]) == ["true", "false"]
    assert m.problems == [] and m.hypotheses == [] and m.total_lines == 2


def test_extra_fields_absent_mixed_nested(man):
    m = read_manifest(man([
        utt(0, k=1, mixed=1, nested={"b": [1, 2], "a": None}, lst=[1, "x"], date="2020-01-01"),
        utt(1, mixed="x", only=None),
        utt(2, k=2.5, mixed=[1], date="2021-02-03T04:05:06"),
    ]))
    t = m.table
    assert t["k"].dtype == np.float64
    assert t["k"].tolist()[0] == 1.0 and np.isnan(t["k"][1]) and t["k"][2] == 2.5
    assert t["mixed"].dtype == STRING and t["mixed"].tolist() == ["1", "x", "[1]"]
    assert t["nested"].dtype == STRING
    assert t["nested"][0] == '{"b":[1,2],"a":null}' and t["nested"][1] is pd.NA
    assert t["lst"][0] == '[1,"x"]'
    # ISO dates stay text exactly as written (pyarrow would make timestamps)
    assert t["date"].tolist() == ["2020-01-01", pd.NA, "2021-02-03T04:05:06"]
    assert "only" not in t.columns  # null on every line: nothing to show


def test_int_column_with_gaps_becomes_float(man):
    t = read_manifest(man([utt(0, n=1), utt(1)])).table
    assert t["n"].dtype == np.float64 and t["n"][0] == 1.0 and np.isnan(t["n"][1])


def test_generated_names_do_not_clobber_manifest_fields(man):
    t = read_manifest(man([utt(0, id="utt-7", line=3, audio_path="x")])).table
    assert t["id"].tolist() == [0] and t["line"].tolist() == [1]
    assert t["manifest_id"].tolist() == ["utt-7"] and t["manifest_line"].tolist() == [3]
    assert t["manifest_audio_path"].tolist() == ["x"]


@pytest.mark.parametrize("name", GENERATED)
def test_a_field_named_like_a_column_sde_makes_is_kept_as_manifest_name(man, name):
    t = read_manifest(man([utt(0, **{name: "theirs"}), utt(1, **{name: "theirs"})])).table
    assert values(t[f"manifest_{name}"]) == ["theirs", "theirs"]
    assert name not in t.columns or "theirs" not in values(t[name])


def test_the_names_kept_aside_cover_every_column_sde_adds_later():
    hypotheses = [HypothesisField("pred_text", ""), HypothesisField("pred_text_b", "b")]
    checked = SimpleNamespace(options=SimpleNamespace(alphabet="ab"), hypotheses=hypotheses)  # what kind_columns reads
    later = {*SEGMENT_COLUMNS, *REVIEW_COLUMNS, *(c for kind in QUALITY_KINDS for c in kind_columns(checked, kind))}
    assert later <= set(GENERATED) | computed_columns(hypotheses)
    assert {"ins_burst", "ins_burst_b", "length_ratio_b", "hyp_repeated_ngram"} <= computed_columns(hypotheses)


def test_offset_and_audio_filename(man):
    m = read_manifest(man([
        {"audio_filename": "b.wav", "duration": 2, "text": "x", "offset": 3.25},
        {"audio_filepath": None, "audio_filename": "c.wav", "duration": 2, "text": "y", "offset": None},
    ]))
    t = m.table
    assert t["audio_filepath"].tolist() == ["b.wav", "c.wav"]
    assert "audio_filename" not in t.columns
    assert t["offset"].tolist() == [3.25, 0.0]


def test_numeric_string_duration_accepted(man):
    m = read_manifest(man([utt(0, duration="3.2", offset="0.5"), utt(1)]))
    assert m.problems == []
    assert m.table["duration"].tolist() == [3.2, 2.5]
    assert m.table["offset"].tolist() == [0.5, 0.0]


def test_zero_duration_and_the_longest_are_valid_and_longer_ones_are_bad_lines(man):
    m = read_manifest(man([utt(0, duration=0), utt(1, duration=1e6, offset=1e6), utt(2, duration=1e300),
                           utt(3, offset=1e6 + 1)]))
    assert m.table["duration"].tolist() == [0.0, 1e6]
    assert [(p.line, p.reason.split(" seconds")[0]) for p in m.problems] == [(3, '"duration" is 1e+300'),
                                                                             (4, '"offset" is 1000001.0')]
    assert all("longer than any recording" in p.reason for p in m.problems)


def test_bom_crlf_blank_lines(man):
    path = man([b"\xef\xbb\xbf" + json.dumps(utt(0)).encode() + b"\r", b"", b"   \t", b"\r",
                json.dumps(utt(1)).encode() + b"\r"])
    m = read_manifest(path)
    assert m.problems == []
    assert m.table["line"].tolist() == [1, 5]
    assert m.table["text"].tolist() == ["hello 0", "hello 1"]  # no stray \r
    assert m.total_lines == 5


def test_last_line_without_newline(man):
    m = read_manifest(man([utt(0), utt(1)], raw=True))
    assert len(m.table) == 2 and m.total_lines == 2


def test_unicode_text(man):
    m = read_manifest(man([utt(0, text="привет мир 你好 🎧")]))
    assert m.table["text"][0] == "привет мир 你好 🎧"


def test_escaped_surrogate_pairs_are_kept_and_a_lone_half_is_a_bad_line(man):
    # json.dumps writes an emoji as a pair of escapes by default; half of one is text cut inside it
    lines = [json.dumps(utt(0, text="a 🎧 b")), json.dumps(utt(1, text="a 🎧 b"))[:-10] + '", "x": 1}',
             json.dumps(utt(2, spk="🎧"))]
    assert "\\ud83c\\udfa7" in lines[0] and lines[1].endswith('"a \\ud83c", "x": 1}')
    m = read_manifest(man(lines))
    assert m.table["text"].tolist() == ["a 🎧 b", "hello 2"] and m.table["spk"].tolist()[1] == "🎧"
    assert reasons(m) == [(2, '"text" holds an unpaired surrogate \\ud83c (half of a character, cut when the line '
                              'was written): fix or remove that escape')]


def test_problem_str():
    assert str(Problem("m.json", 17, 'missing field "duration"')) == 'm.json:17: missing field "duration"'


# ------------------------------------------------------------------------------------- bad lines

def _python_says(line: bytes) -> str:
    """What this Python's json module says of ``line``: Python 3.13 names a trailing comma
    ("Illegal trailing comma before end of object at column 55"), 3.11 the name it expected next."""
    try:
        json.loads(line)
    except json.JSONDecodeError as e:
        return f"invalid JSON: {e.msg} at column {e.colno}"
    raise AssertionError(f"{line!r} is valid JSON")


BAD_LINES = [
    (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x",}',
     _python_says(b'{"audio_filepath": "a.wav", "duration": 1, "text": "x",}')),
    (b'{"audio_filepath": "a.wav", "duration": 1 "text": "x"}',
     "invalid JSON: Expecting ',' delimiter at column 43"),
    (b'{"audio_filepath": "a.wav"} trailing', "invalid JSON: Extra data at column 29"),
    (b'[1, 2]', "expected a JSON object, got an array"),
    (b'"just a string"', "expected a JSON object, got a string"),
    (b'42', "expected a JSON object, got a number"),
    (b'{"duration": 1, "text": "x"}', 'missing field "audio_filepath"'),
    (b'{"audio_filepath": "a.wav", "duration": 1}', 'missing field "text" (or "text_filepath")'),
    (b'{"audio_filepath": "a.wav", "duration": 1, "text_filepath": 3}',
     '"text_filepath" must be a non-empty string, got 3'),
    (b'{"audio_filepath": "", "duration": 1, "text": "x"}',
     '"audio_filepath" must be a non-empty string, got ""'),
    (b'{"audio_filepath": 5, "duration": 1, "text": "x"}',
     '"audio_filepath" must be a non-empty string, got 5'),
    (b'{"audio_filepath": null, "duration": 1, "text": "x"}',
     '"audio_filepath" must be a non-empty string, got null'),
    (b'{"audio_filepath": "a.wav", "duration": "abc", "text": "x"}',
     '"duration" must be a non-negative number, got "abc"'),
    (b'{"audio_filepath": "a.wav", "duration": -1, "text": "x"}',
     '"duration" must be a non-negative number, got -1'),
    (b'{"audio_filepath": "a.wav", "duration": NaN, "text": "x"}',
     '"duration" must be a non-negative number, got NaN'),
    (b'{"audio_filepath": "a.wav", "duration": Infinity, "text": "x"}',
     '"duration" must be a non-negative number, got Infinity'),
    (b'{"audio_filepath": "a.wav", "duration": 1e400, "text": "x"}',
     '"duration" must be a non-negative number, got Infinity'),
    (b'{"audio_filepath": "a.wav", "duration": "nan", "text": "x"}',
     '"duration" must be a non-negative number, got "nan"'),
    (b'{"audio_filepath": "a.wav", "duration": true, "text": "x"}',
     '"duration" must be a non-negative number, got true'),
    (b'{"audio_filepath": "a.wav", "duration": 1, "text": 5}', '"text" must be a string, got 5'),
    (b'{"audio_filepath": "a.wav", "duration": 1, "text": null}', '"text" must be a string, got null'),
    (b'{"audio_filepath": "a.wav", "duration": 1, "text": ["x"]}',
     '"text" must be a string, got ["x"]'),
    (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "offset": -0.5}',
     '"offset" must be a non-negative number, got -0.5'),
    (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "pred_text": 7}',
     '"pred_text" must be a string, got 7'),
    (b'{"audio_filepath": "a.wav", "duration": 1, "text": "\xff\xfe"}',
     "not valid UTF-8 (byte 0xff at column 53)"),
    (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x\ty"}',
     "invalid JSON: Invalid control character at column 54"),
]


@pytest.mark.parametrize("line, reason", BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_bad_line_lenient(man, line, reason):
    path = man([utt(0), b"", line, utt(1)])
    m = read_manifest(path)
    assert reasons(m) == [(3, reason)]
    assert m.problems[0].path == str(path)
    assert m.table["line"].tolist() == [1, 4]
    assert m.table["id"].tolist() == [0, 1]


STRICT_CASES = BAD_LINES[:9]


@pytest.mark.parametrize("line, reason", STRICT_CASES, ids=[r for _, r in STRICT_CASES])
def test_bad_line_strict(man, line, reason):
    path = man([utt(0), line, utt(1), b"{nope"])
    with pytest.raises(ManifestError) as e:
        read_manifest(path, strict=True)
    first, hint = str(e.value).split("\n")
    assert first == f"{path}:2: {reason}"
    assert "--strict" in hint


def test_strict_clean_file_has_no_problems(man):
    m = read_manifest(man([utt(0), utt(1)]), strict=True)
    assert m.problems == [] and len(m.table) == 2


def test_many_bad_lines_in_order(man):
    lines = []
    for i in range(300):
        lines.append(utt(i) if i % 3 else {"audio_filepath": "x.wav", "text": "t"})
    m = read_manifest(man(lines))
    assert [p.line for p in m.problems] == list(range(1, 301, 3))
    assert len(m.table) == 200
    assert m.table["line"].tolist() == [i + 1 for i in range(300) if i % 3]


def test_duplicate_keys_last_wins(man):
    m = read_manifest(man([b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "text": "y"}']))
    assert m.table["text"].tolist() == ["y"]


def test_python_json_extensions_in_extra_fields(man):
    line = (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "snr": NaN, '
            b'"big": 123456789012345678901234567890}')
    m = read_manifest(man([line]))
    assert m.problems == []
    assert np.isnan(m.table["snr"][0])
    assert m.table["big"][0] == 1.2345678901234568e29  # beyond int64: a float, as in pandas


# -------------------------------------------------------------------------------- whole file


def test_not_found(tmp_path):
    with pytest.raises(ManifestError, match="file not found"):
        read_manifest(tmp_path / "nope.json")


def test_directory(tmp_path):
    with pytest.raises(ManifestError, match="is a directory"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf", b"\r\n"])
def test_empty(tmp_path, content):
    p = tmp_path / "e.json"
    p.write_bytes(content)
    with pytest.raises(ManifestError, match="no utterances") as e:
        read_manifest(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("content", [
    json.dumps([utt(0), utt(1)]).encode(),
    json.dumps([utt(0), utt(1)], indent=2).encode(),
    b"\xef\xbb\xbf  [\n" + json.dumps(utt(0)).encode() + b"\n]\n",
])
def test_json_array(tmp_path, content):
    p = tmp_path / "a.json"
    p.write_bytes(content)
    with pytest.raises(ManifestError) as e:
        read_manifest(p)
    assert "this is a JSON array; sde expects JSON Lines (one object per line); convert with: " \
           "jq -c '.[]' in.json > out.json" in str(e.value)


def test_first_line_array_then_jsonl_is_just_a_bad_line(man):
    m = read_manifest(man([b"[1, 2]", utt(1)]))
    assert reasons(m) == [(1, "expected a JSON object, got an array")]


@pytest.mark.parametrize("content, what", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text manifest"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "gzip"),
    ('{"a": 1}\n'.encode("utf-16"), "UTF-16"),
])
def test_binary(tmp_path, content, what):
    p = tmp_path / "b.json"
    p.write_bytes(content)
    with pytest.raises(ManifestError, match=what):
        read_manifest(p)


def test_every_line_bad(man):
    path = man([{"x": i} for i in range(8)])
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    msg = str(e.value)
    assert "every line is bad" in msg
    assert f'{path}:1: missing field "audio_filepath"' in msg
    assert f"{path}:5: " in msg and f"{path}:6: " not in msg
    assert "and 3 more" in msg


def test_pretty_printed_object_hint(man):
    path = man(json.dumps(utt(0), indent=2).split("\n"))
    with pytest.raises(ManifestError, match="pretty-printed JSON"):
        read_manifest(path)


# ---------------------------------------------------------------------------- audio paths


def test_relative_paths_resolved_against_manifest_folder(tmp_path):
    sub = tmp_path / "data"
    sub.mkdir()
    p = write_lines(sub / "m.json", [utt(0, audio_filepath="x/a.wav"),
                                     utt(1, audio_filepath="/abs/b.wav"),
                                     utt(2, audio_filepath="./c.wav"),
                                     utt(3, audio_filepath="../d.wav"),
                                     utt(4, audio_filepath="e//f/./g.wav")])
    t = read_manifest(p).table
    assert t["audio_filepath"].tolist() == ["x/a.wav", "/abs/b.wav", "./c.wav", "../d.wav", "e//f/./g.wav"]
    assert t["audio_path"].tolist() == [f"{sub}/x/a.wav", "/abs/b.wav", f"{sub}/c.wav",
                                        f"{tmp_path}/d.wav", f"{sub}/e/f/g.wav"]


@pytest.mark.parametrize("written, resolved", [
    ("file:///data/a.wav", "/data/a.wav"),
    ("file:///data/my%20file.wav", "/data/my file.wav"),   # a file URL is percent-encoded (RFC 8089)
    ("FILE://localhost/data/a.wav", "/data/a.wav"),
    ("file:///data/x/../a.wav", "/data/a.wav"),
    ("file://otherhost/data/a.wav", "file://otherhost/data/a.wav"),  # not this machine's: left as it is
    ("s3://bucket/a.wav", "s3://bucket/a.wav"),
], ids=["file URL", "percent-encoded", "localhost", "dots", "another host", "s3"])
def test_a_file_url_is_the_local_path_it_names(tmp_path, written, resolved):
    t = read_manifest(write_lines(tmp_path / "m.json", [utt(0, audio_filepath=written)])).table
    assert t["audio_filepath"].tolist() == [written] and t["audio_path"].tolist() == [resolved]


def test_relative_manifest_path(tmp_path, monkeypatch):
    write_lines(tmp_path / "m.json", [utt(0)])
    monkeypatch.chdir(tmp_path)
    m = read_manifest("m.json")
    assert m.table["audio_path"][0] == os.path.join(str(tmp_path), "a/0.wav")
    assert m.problems == []


def test_audio_base_path(tmp_path):
    p = write_lines(tmp_path / "m.json", [utt(0), utt(1, audio_filepath="/abs/b.wav")])
    t = read_manifest(p, audio_base_path="/data/audio/").table
    assert t["audio_path"].tolist() == ["/data/audio/a/0.wav", "/abs/b.wav"]


def test_audio_files_need_not_exist(man):
    assert len(read_manifest(man([utt(0, audio_filepath="/does/not/exist.wav")])).table) == 1


# ------------------------------------------------------------------------------- hypotheses


def test_parse_pred_field():
    assert parse_pred_field("pred_text") == HypothesisField("pred_text", "")
    assert parse_pred_field("pred_text_conformer") == HypothesisField("pred_text_conformer", "conformer")
    assert parse_pred_field("hyp") == HypothesisField("hyp", "hyp")
    assert parse_pred_field("hyp=whisper") == HypothesisField("hyp", "whisper")
    assert parse_pred_field(" pred_text = base ") == HypothesisField("pred_text", "base")
    with pytest.raises(ManifestError, match='"text" is the reference the hypotheses are scored against'):
        parse_pred_field("text")
    for bad in ("", "=x", "hyp=", "hyp=two words", "text", "text=ref"):
        with pytest.raises(ValueError):
            parse_pred_field(bad)
        with pytest.raises(ManifestError, match="--pred-field"):
            parse_pred_field(bad)


NOT_HYPOTHESES = {  # --pred-field naming a field that says where/what the utterance is: refused by name
    "duration": "'duration' is the segment's length in seconds, not a model's output",
    "offset=o": "'offset' is where the segment starts in its audio file, not a model's output",
    "audio_filepath": "'audio_filepath' is the utterance's audio file, not a model's output",
    "audio_filename": "'audio_filename' is the utterance's audio file, not a model's output",
    "text_filepath": "'text_filepath' is the file the reference is read from, not a model's output",
}


@pytest.mark.parametrize("spec, said", NOT_HYPOTHESES.items(), ids=NOT_HYPOTHESES.keys())
def test_a_field_of_the_utterance_itself_is_not_a_hypothesis(man, spec, said):
    # --pred-field duration skipped every line ('"duration" must be a string, got 1.0'), blaming the manifest
    with pytest.raises(ManifestError, match=re.escape(said)):
        parse_pred_field(spec)
    with pytest.raises(ManifestError, match=re.escape(said)):
        read_manifest(man([utt(0, pred_text="p")]), pred_fields=[spec])


def test_hypothesis_field_helpers():
    h = HypothesisField("pred_text", "")
    assert h.column("wer") == "wer" and h.name == "pred_text"
    h = HypothesisField("pred_text_b", "b")
    assert h.column("wer") == "wer_b" and h.name == "b"


def test_hypothesis_discovery(man):
    m = read_manifest(man([utt(0, pred_text_z="z", pred_text="p", other=1),
                           utt(1, pred_text_a="a")]))
    assert m.hypotheses == [HypothesisField("pred_text", ""), HypothesisField("pred_text_a", "a"),
                            HypothesisField("pred_text_z", "z")]
    t = m.table
    assert list(t.columns) == ["id", "line", "audio_filepath", "audio_path", "offset", "duration",
                               "text", "pred_text", "pred_text_a", "pred_text_z", "other"]
    assert values(t["pred_text"]) == ["p", None]  # no such field on the line: missing, not ""
    assert values(t["pred_text_a"]) == [None, "a"]
    assert all(t[c].dtype == STRING for c in ("pred_text", "pred_text_a", "pred_text_z"))


def test_hypotheses_found_are_in_natural_order(man):
    m = read_manifest(man([utt(0, pred_text_m10="x", pred_text_m2="y", pred_text="p", pred_text_m1="z",
                               pred_text_b="w")]))
    assert [h.field for h in m.hypotheses] == ["pred_text", "pred_text_b", "pred_text_m1", "pred_text_m2",
                                               "pred_text_m10"]


def test_pred_field_explicit(man):
    path = man([utt(0, hyp="h0", pred_text="p0", pred_text_b="b0"), utt(1, hyp=None)])
    m = read_manifest(path, pred_fields=["hyp=whisper", "pred_text_b"])
    assert m.hypotheses == [HypothesisField("hyp", "whisper"), HypothesisField("pred_text_b", "b")]
    t = m.table
    assert list(t.columns)[7:] == ["hyp", "pred_text_b", "pred_text"]  # pred_text: an ordinary field now
    assert values(t["hyp"]) == ["h0", None]


def test_pred_field_missing(man):
    path = man([utt(0, pred_text="p", speaker="s")])
    with pytest.raises(ManifestError) as e:
        read_manifest(path, pred_fields=["pred_txt"])
    msg = str(e.value)
    assert '"pred_txt"' in msg and "pred_text" in msg and "speaker" in msg


def test_pred_field_duplicate_labels(man):
    with pytest.raises(ManifestError, match="label"):
        read_manifest(man([utt(0, a="x", b="y")]), pred_fields=["a=m", "b=m"])


# ------------------------------------------------------------------------------- predictions


def test_predictions_merge(tmp_path):
    main = write_lines(tmp_path / "m.json", [utt(0), utt(1, offset=2.0), utt(2), utt(3)])
    preds = write_lines(tmp_path / "preds.json", [
        {"audio_filepath": "a/0.wav", "pred_text": "p0", "duration": 1},
        {"audio_filepath": "a/1.wav", "offset": 2.0, "pred_text": "p1"},
        {"audio_filepath": str(tmp_path / "a/2.wav"), "pred_text": "p2"},  # matched on resolved path
        {"audio_filepath": "a/1.wav", "pred_text": "wrong offset"},
    ])
    m = read_manifest(main, predictions=preds)
    assert m.hypotheses == [HypothesisField("pred_text", "")]
    assert values(m.table["pred_text"]) == ["p0", "p1", "p2", None]  # no prediction: missing
    assert m.table["pred_text"].dtype == STRING
    assert len(m.warnings) == 2 and m.warnings[0].line == 4 and "1 of 4" in m.warnings[0].reason
    assert "left out of pred_text's scores" in m.warnings[0].reason
    assert (m.warnings[1].path, m.warnings[1].line) == (str(preds), 4)  # "wrong offset": matches no line
    assert m.problems == []


@pytest.mark.parametrize("pred_lines, said", [
    ([("a/0.wav", 0, "p0"), ("a/1.wav", 0, "p1")], []),
    ([("a/0.wav", 0, "p0"), ("a/1.wav", 0, "p1"), ("a/0.wav", 0, "again"), ("a/1.wav", 0, "again")],
     [(3, "2 lines of P repeat the audio file and offset of an earlier one (the first is here: 'a/0.wav' at 0 s, "
          "as on line 1): the last prediction of each is used")]),
    ([("a/0.wav", 0, "p0"), ("a/1.wav", 0, "p1"), ("a/1.wav", 7, "other segment"), ("b/9.wav", 0, "other file")],
     [(3, "2 lines of P match no line of the manifest (the first is here: 'a/1.wav' at 7 s): predictions of "
          "another manifest, or audio paths written otherwise")]),
    ([("a/0.wav", 0, "p0"), ("a/0.wav", 0, "p0 again"), ("a/1.wav", 0, "p1"), ("x.wav", 0, "other")],
     [(2, "1 line of P repeats the audio file and offset of an earlier one (the first is here: 'a/0.wav' at 0 s, "
          "as on line 1): the last prediction of each is used"),
      (4, "1 line of P matches no line of the manifest (the first is here: 'x.wav' at 0 s): predictions of "
          "another manifest, or audio paths written otherwise")]),
], ids=["all used once", "two runs appended", "another manifest's", "both"])
def test_predictions_repeated_or_matching_no_line_are_said_the_last_is_used(tmp_path, pred_lines, said):
    main = write_lines(tmp_path / "m.json", [utt(0), utt(1)])
    preds = write_lines(tmp_path / "preds.json", [{"audio_filepath": a, "offset": o, "pred_text": t}
                                                  for a, o, t in pred_lines])
    m = read_manifest(main, predictions=preds)
    assert [(w.line, w.reason.replace(str(preds), "P")) for w in m.warnings if w.path == str(preds)] == said
    last = {(a, o): t for a, o, t in pred_lines}
    assert values(m.table["pred_text"]) == [last[("a/0.wav", 0)], last[("a/1.wav", 0)]]


def test_predictions_beside_existing_pred_text(tmp_path):
    main = write_lines(tmp_path / "m.json", [utt(0, pred_text="old")])
    preds = write_lines(tmp_path / "new-model.json", [{"audio_filepath": "a/0.wav", "pred_text": "new"}])
    m = read_manifest(main, predictions=preds)
    assert m.hypotheses == [HypothesisField("pred_text", ""),
                            HypothesisField("pred_text_new_model", "new_model")]
    assert m.table["pred_text_new_model"].tolist() == ["new"]
    m = read_manifest(main, predictions=preds, pred_fields=["pred_text=base"])
    assert [h.field for h in m.hypotheses] == ["pred_text", "pred_text_new_model"]


def test_predictions_no_match(tmp_path):
    main = write_lines(tmp_path / "m.json", [utt(0)])
    preds = write_lines(tmp_path / "p.json", [{"audio_filepath": "zzz.wav", "pred_text": "x"}])
    with pytest.raises(ManifestError, match="no line matches"):
        read_manifest(main, predictions=preds)


def test_predictions_bad_lines_reported(tmp_path):
    main = write_lines(tmp_path / "m.json", [utt(0), utt(1)])
    preds = write_lines(tmp_path / "p.json", [{"audio_filepath": "a/0.wav", "pred_text": "x"},
                                              {"audio_filepath": "a/1.wav", "pred_text": 5}])
    m = read_manifest(main, predictions=preds)
    assert [str(p) for p in m.problems] == [f'{preds}:2: "pred_text" must be a string, got 5']
    assert values(m.table["pred_text"]) == ["x", None]


# --------------------------------------------------------------------------------- hostile


def test_ten_megabyte_line(man):
    big = "w " * 5_000_000
    start = time.perf_counter()
    m = read_manifest(man([utt(0), utt(1, text=big), utt(2)]))
    assert m.table["text"][1] == big and len(m.table) == 3
    assert time.perf_counter() - start < 5


def test_ten_megabyte_invalid_line(man):
    m = read_manifest(man([utt(0), b'{"text": "' + b"x" * 10_000_000, utt(2)]))
    assert len(m.table) == 2 and m.problems[0].line == 2
    assert m.problems[0].reason.startswith("invalid JSON")


@pytest.mark.parametrize("opener, closer", [(b"[", b"]"), (b'{"a":', b"}")])
def test_deep_nesting(man, opener, closer):
    deep = b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "n": ' + opener * 100_000 + \
        b"1" + closer * 100_000 + b"}"
    start = time.perf_counter()
    m = read_manifest(man([utt(0), deep, utt(2)]))
    assert reasons(m) == [(2, f"invalid JSON: nested deeper than {careful.MAX_DEPTH} levels")]
    assert time.perf_counter() - start < 5


def test_moderate_nesting_kept(man):
    v = [[[[{"a": [1, {"b": "]]]]"}]}]]]]
    m = read_manifest(man([utt(0, v=v)]))
    assert json.loads(m.table["v"][0]) == v


def test_hundred_thousand_fields(man):
    wide = utt(1)
    wide.update({f"f{i}": i for i in range(100_000)})
    start = time.perf_counter()
    m = read_manifest(man([utt(0), wide, utt(2, f5=5)]))
    elapsed = time.perf_counter() - start
    t = m.table
    assert len(t) == 3 and m.problems == []
    extras = [c for c in t.columns if c.startswith("f")]
    assert len(extras) == pieces.MAX_EXTRA_FIELDS and extras[:3] == ["f0", "f1", "f2"]
    assert t["f5"].tolist()[1:] == [5.0, 5.0]
    assert len(m.warnings) == 1 and m.warnings[0].line == 2
    assert "99000 more distinct fields" in m.warnings[0].reason
    assert elapsed < 10


def test_numbers_as_strings_everywhere(man):
    m = read_manifest(man([{"audio_filepath": "1", "duration": "1", "text": "2", "x": "3"}]))
    assert m.table["x"].tolist() == ["3"] and m.table["duration"].tolist() == [1.0]


def test_nul_after_the_first_kilobyte_is_a_bad_line(man):
    m = read_manifest(man([utt(i) for i in range(20)] + [b'{"audio_filepath": "\x00"}', utt(2)]))
    assert [p.line for p in m.problems] == [21]
    assert m.problems[0].reason.startswith("invalid JSON: Invalid control character")


# ------------------------------------------------------------- fast path == careful path


def test_fast_and_careful_paths_agree(tmp_path, monkeypatch):
    lines = [utt(i, speaker=f"s{i % 3}", snr=i / 3, n=i, pred_text=f"p {i}",
                 **({"offset": i / 2} if i % 2 else {})) for i in range(50)]
    lines[7] = {"audio_filepath": "x.wav", "duration": -1, "text": "t"}
    lines[9] = {"audio_filepath": "x.wav", "duration": 1}
    lines[11] = {"audio_filepath": "x.wav", "duration": 1, "text": "t", "offset": -3}
    path = write_lines(tmp_path / "m.json", lines)
    by_fast = read_manifest(path)
    monkeypatch.setattr(fast, "fast_piece", lambda *a, **k: None)
    by_careful = read_manifest(path)
    pd.testing.assert_frame_equal(by_fast.table, by_careful.table)
    assert by_fast.problems == by_careful.problems and len(by_fast.problems) == 3
    assert by_fast.hypotheses == by_careful.hypotheses


def test_many_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "CHUNK_BYTES", 1000)
    lines = [utt(i) for i in range(500)]
    lines[250] = b"garbage"
    lines[251] = b""
    m = read_manifest(write_lines(tmp_path / "m.json", lines))
    assert reasons(m) == [(251, "invalid JSON: Expecting value at column 1")]
    assert len(m.table) == 498 and m.total_lines == 500
    assert m.table["line"].tolist() == [i + 1 for i in range(500) if i not in (250, 251)]
    assert m.table["text"].tolist() == [f"hello {i}" for i in range(500) if i not in (250, 251)]


def test_progress_bar(man, capsys):
    read_manifest(man([utt(0)]), progress=True)
    assert capsys.readouterr().out == ""


def test_clean_files_take_the_fast_path(man, monkeypatch):
    def fail(*a, **k):
        raise AssertionError("careful path used")
    monkeypatch.setattr(careful, "careful_piece", fail)
    m = read_manifest(man([utt(0, pred_text="p", speaker="s", offset=1), b"", utt(1, audio_filename="x.wav"),
                           {"audio_filename": "b.wav", "duration": 2, "text": "x", "offset": None},
                           utt(3, duration=-1), utt(4, text=None)]))
    assert len(m.table) == 3 and [p.line for p in m.problems] == [5, 6]
    assert m.table["audio_filepath"].tolist() == ["a/0.wav", "a/1.wav", "b.wav"]
    assert all(type(p.line) is int for p in m.problems)


def test_predictions_null_pred_text_is_a_bad_line(tmp_path):
    main = write_lines(tmp_path / "m.json", [utt(0), utt(1)])
    preds = write_lines(tmp_path / "p.json", [{"audio_filepath": "a/0.wav", "pred_text": "x"},
                                              {"audio_filepath": "a/1.wav", "pred_text": None}])
    m = read_manifest(main, predictions=preds)
    assert [p.reason for p in m.problems] == ['"pred_text" must be a string, got null']


# Property: whatever the lines, the fast path and the careful path produce the same result.

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(-5, 1e6),
                     st.text(max_size=5), st.sampled_from(["3.5", "-1", "abc", "2020-01-01"]))
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3),
                    st.dictionaries(st.text(max_size=3), _scalars, max_size=2))
_line = st.one_of(
    st.fixed_dictionaries({"audio_filepath": st.sampled_from(["a.wav", "/x/b.wav", "", 5, None]),
                           "duration": st.one_of(st.floats(-1, 30), st.integers(-1, 30), _scalars),
                           "text": st.one_of(st.text(max_size=8), _scalars)},
                          optional={"offset": st.one_of(st.floats(-1, 5), _scalars),
                                    "pred_text": st.one_of(st.text(max_size=8), _scalars),
                                    "speaker": _values, "k": _values}),
    st.sampled_from([b"", b"  ", b"{", b"[]", b"null", b'{"a":1}{"b":2}']),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, min_size=1, max_size=12))
def test_property_fast_equals_careful(tmp_path, lines):
    path = write_lines(tmp_path / "p.json",
                       [json.dumps(x).encode() if isinstance(x, dict) else x for x in lines])
    try:
        by_fast = read_manifest(path)
    except ManifestError as e:
        by_fast = str(e)
    original = fast.fast_piece
    fast.fast_piece = lambda *a, **k: None
    try:
        try:
            by_careful = read_manifest(path)
        except ManifestError as e:
            by_careful = str(e)
    finally:
        fast.fast_piece = original
    if isinstance(by_fast, str) or isinstance(by_careful, str):
        assert by_fast == by_careful
        return
    pd.testing.assert_frame_equal(by_fast.table, by_careful.table)
    assert by_fast.problems == by_careful.problems and by_fast.hypotheses == by_careful.hypotheses


def test_refused_chunk_is_retried_in_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(fast, "SPLIT", 4)
    careful_calls = []
    original = careful.careful_piece
    monkeypatch.setattr(careful, "careful_piece",
                        lambda data, *a: careful_calls.append(data) or original(data, *a))
    lines: list = [utt(i) for i in range(400)]
    for i in (4, 7, 399):
        lines[i] = b"{oops"
    lines[200] = b""
    m = read_manifest(write_lines(tmp_path / "m.json", lines))
    assert [p.line for p in m.problems] == [5, 8, 400]
    keep = [i for i in range(400) if i not in (4, 7, 399, 200)]
    assert m.table["line"].tolist() == [i + 1 for i in keep]
    assert m.table["text"].tolist() == [f"hello {i}" for i in keep]
    assert m.total_lines == 400
    assert len(careful_calls) == 2  # the first and the last quarter only


def test_distinct_field_on_every_line(man, monkeypatch):
    # pyarrow would pad every field to every row (rows x fields cells): the probe must route
    # such chunks to the careful path, which caps the fields line by line.
    parsed = []
    original = fast.parse_fast
    def counting(data, *a, **k):
        parsed.append(bytes(data).count(b"\n"))
        return original(data, *a, **k)
    monkeypatch.setattr(fast, "parse_fast", counting)
    start = time.perf_counter()
    m = read_manifest(man([utt(i, **{f"k{i}": i}) for i in range(5000)]))
    assert time.perf_counter() - start < 10
    assert max(parsed) <= 4 * fast.PROBE_LINES  # only small parts reach pyarrow's full parse
    assert len(m.table) == 5000 and m.table.shape[1] == 7 + pieces.MAX_EXTRA_FIELDS
    assert m.warnings[0].line == 1001 and "4000 more distinct fields" in m.warnings[0].reason
