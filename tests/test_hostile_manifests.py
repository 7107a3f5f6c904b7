"""Hostile manifests through the real CLI: `sde stats FILE --json --no-cache`.

Every kind of bad line, and whole files that are not manifests at all. For each the documented
result (sde/manifest's package docstring, tests/test_manifest.py):

* a bad line is skipped and counted: exit 0, `skipped_lines` in the JSON; with `--strict` the same
  file is exit 1 with `FILE:LINE: reason` and the hint to drop --strict;
* a whole-file problem (empty, a JSON array, binary, a directory, missing, every line bad) is exit 1
  with a message naming the file and the fix;
* never a hang (60 s timeout), never a traceback.

The cases are small files generated under tmp_path (the 10 MB line and the 100k-level nesting
are generated too, and deleted with tmp_path). Each runs sde's click command in this process
(click's CliRunner, stdout and stderr apart): ~100 interpreters each importing sde took most of
this file's time (74 s). A few cases also run as `python -m sde.cli` subprocesses, and must give
the same exit code, stdout and stderr, so the in-process runs stand for the real command.
"""

from __future__ import annotations

import bz2
import faulthandler
import gzip
import json
import lzma
import os
import subprocess
import sys
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from sde.cli import cli

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 60


def utt(i: int = 0, **extra) -> dict:
    row = {"audio_filepath": f"audio/u{i}.wav", "duration": 1.0 + i, "text": f"hello world {i}"}
    row.update(extra)
    return row


def line(obj) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode()


def jsonl(*rows) -> bytes:
    return b"".join(line(r) + b"\n" for r in rows)


# name → (content, expected) where expected is ("ok", utterances, skipped) with optional checks, or
# ("error", words that must appear in the message). Line-level bad cases: good, BAD, good.
BAD_LINE_CASES: dict[str, tuple[bytes, str]] = {
    "invalid_json": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x",}', "invalid JSON"),
    "truncated_json": (b'{"audio_filepath": "a.wav", "duration": 1, "te', "invalid JSON"),
    "not_an_object_array": (b"[1, 2]", "expected a JSON object, got an array"),
    "not_an_object_string": (b'"just a string"', "expected a JSON object, got a string"),
    "not_an_object_number": (b"42", "expected a JSON object, got a number"),
    "not_an_object_null": (b"null", "expected a JSON object, got null"),
    "missing_duration": (b'{"audio_filepath": "a.wav", "text": "x"}', 'missing field "duration"'),
    "missing_text": (b'{"audio_filepath": "a.wav", "duration": 1}', 'missing field "text"'),
    "missing_audio_filepath": (b'{"duration": 1, "text": "x"}', 'missing field "audio_filepath"'),
    "ill_typed_text": (b'{"audio_filepath": "a.wav", "duration": 1, "text": 5}', '"text" must be a string'),
    # an emoji cut in half: Python's json reads the escape as a lone surrogate, which no UTF-8 holds
    "lone_surrogate_in_text": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "cut \\ud83d here"}',
                               '"text" holds an unpaired surrogate \\ud83d'),
    "lone_surrogate_in_path": (b'{"audio_filepath": "a\\udc80.wav", "duration": 1, "text": "x"}',
                               '"audio_filepath" holds an unpaired surrogate \\udc80'),
    "lone_surrogate_in_a_field": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "spk": ["\\udfff"]}',
                                  '"spk" holds an unpaired surrogate \\udfff'),
    "lone_surrogate_in_a_name": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "s\\ud800": 1}',
                                 '"s\\ud800" holds an unpaired surrogate \\ud800'),
    "ill_typed_path": (b'{"audio_filepath": ["a.wav"], "duration": 1, "text": "x"}',
                       '"audio_filepath" must be a non-empty string'),
    "ill_typed_duration": (b'{"audio_filepath": "a.wav", "duration": "abc", "text": "x"}',
                           '"duration" must be a non-negative number, got "abc"'),
    "bool_duration": (b'{"audio_filepath": "a.wav", "duration": true, "text": "x"}',
                      '"duration" must be a non-negative number, got true'),
    "ill_typed_pred_text": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "pred_text": {"a": 1}}',
                            '"pred_text" must be a string'),
    "negative_duration": (b'{"audio_filepath": "a.wav", "duration": -1, "text": "x"}',
                          '"duration" must be a non-negative number, got -1'),
    "nan_duration": (b'{"audio_filepath": "a.wav", "duration": NaN, "text": "x"}',
                     '"duration" must be a non-negative number, got NaN'),
    "infinite_duration": (b'{"audio_filepath": "a.wav", "duration": 1e999, "text": "x"}',
                          '"duration" must be a non-negative number, got Infinity'),
    "negative_offset": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "offset": -2}',
                        '"offset" must be a non-negative number, got -2'),
    "duration_beyond_any_recording": (b'{"audio_filepath": "a.wav", "duration": 1e308, "text": "x"}',
                                      '"duration" is 1e+308 seconds, longer than any recording'),
    "offset_beyond_any_recording": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "offset": 2e6}',
                                    '"offset" is 2000000.0 seconds, longer than any recording'),
    "non_utf8": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "caf\xe9"}', "not valid UTF-8"),
    "control_character": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "a\x01b"}',
                          "invalid JSON: Invalid control character"),
    # a NUL in the second line, within the first KB, is that line's problem, not the file's
    "raw_nul": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "a\x00b"}',
                "invalid JSON: Invalid control character"),
    "deep_nesting_100k": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "n": '
                          + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper than"),
    "deep_nesting_objects": (b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "n": '
                             + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}", "nested deeper than"),
    "ten_mb_invalid_line": (b'{"text": "' + b"x" * 10_000_000, "invalid JSON"),
    "pretty_printed_fragment": (b"{", "invalid JSON"),
    "duration_of_5000_digits": (b'{"audio_filepath": "a.wav", "duration": ' + b"1" * 5000 + b', "text": "x"}',
                                "a number with more than 4,300 digits"),
}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict:
        return json.loads(self.stdout)


def stats_args(path: Path | str, *extra: str) -> list[str]:
    return ["stats", str(path), "--json", "--no-cache", *extra]


def sde_stats_in_process(path: Path | str, *extra: str) -> Run:
    """The command as a process runs it, in this one: an exception click did not turn into an exit
    is written as the traceback the process would print, and warnings as Python's default
    filters would show them on stderr (pytest would otherwise capture them unseen)."""
    # the run's own hang guard: the stacks of every thread, then the test process ends
    faulthandler.dump_traceback_later(TIMEOUT_S, exit=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=category)
            result = CliRunner().invoke(cli, stats_args(path, *extra), prog_name="sde")
    finally:
        faulthandler.cancel_dump_traceback_later()
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(*result.exc_info))
    stderr += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    return Run(result.exit_code, result.stdout, stderr)


def sde_stats(path: Path | str, *extra: str) -> Run:
    """`python -m sde.cli stats ...` as a separate process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run([sys.executable, "-m", "sde.cli", *stats_args(path, *extra)], cwd=ROOT, env=env, capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:  # pragma: no cover - the assertion is the point
        pytest.fail(f"sde stats {path} hung for more than {TIMEOUT_S} s")
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def whole_files(d: Path) -> dict[str, tuple[Path, tuple]]:
    """name → (path, expected). expected: ("ok", utterances, skipped) or ("error", [words])."""
    out: dict[str, tuple[Path, tuple]] = {}

    def put(name: str, content: bytes, expected: tuple) -> None:
        p = d / f"{name}.json"
        p.write_bytes(content)
        out[name] = (p, expected)

    put("bom", b"\xef\xbb\xbf" + jsonl(utt(0), utt(1)), ("ok", 2, 0))
    put("crlf", jsonl(utt(0), utt(1)).replace(b"\n", b"\r\n"), ("ok", 2, 0))
    put("blank_lines", b"\n\n" + line(utt(0)) + b"\n   \n\t\n" + line(utt(1)) + b"\n\n", ("ok", 2, 0))
    put("no_final_newline", jsonl(utt(0)) + line(utt(1)), ("ok", 2, 0))
    put("bom_crlf_blank_mixed", b"\xef\xbb\xbf\r\n" + line(utt(0)) + b"\r\n\r\n" + line(utt(1)) + b"\r\n",
        ("ok", 2, 0))
    put("ten_mb_line", jsonl(utt(0), utt(1, text="w " * 5_000_000), utt(2)), ("ok", 3, 0))
    put("duplicate_keys", jsonl(b'{"audio_filepath": "a.wav", "duration": 1, "text": "x", "text": "y"}'),
        ("ok", 1, 0))
    put("numbers_as_strings", jsonl({"audio_filepath": "a.wav", "duration": "1.5", "text": "x",
                                     "offset": "0.25", "snr": "12"}), ("ok", 1, 0))
    put("duration_zero", jsonl(utt(0, duration=0), utt(1, duration=0.0)), ("ok", 2, 0))
    put("offset_beyond_the_file", jsonl(utt(0, offset=1e6)), ("ok", 1, 0))
    # The longest duration accepted, and one just over it among thousands of good lines: the fast
    # path (a whole chunk in Arrow) finds it, and names it as the careful path does.
    put("duration_at_the_limit", jsonl(utt(0, duration=1_000_000), utt(1, duration="1000000")), ("ok", 2, 0))
    put("duration_over_the_limit_among_many",
        jsonl(*[utt(i) for i in range(5_000)], utt(5_000, duration=1_000_000.5), utt(5_001)), ("ok", 5_001, 1))
    wide = utt(1)
    wide.update({f"f{i}": i for i in range(100_000)})
    put("hundred_thousand_fields", jsonl(utt(0), wide, utt(2)), ("ok", 3, 0))
    # NUL in the first KB means a binary file (whole-file error); later, it is one bad line.
    put("nul_after_the_first_kb", jsonl(*[utt(i) for i in range(30)], b'{"audio_filepath": "a\x00"}', utt(2)),
        ("ok", 31, 1))
    # the first line is where sde sniffs for pretty-printed JSON: nesting past Python's stack was a traceback
    put("deep_nesting_on_the_first_line", jsonl(BAD_LINE_CASES["deep_nesting_100k"][0], utt(1)), ("ok", 1, 1))
    put("deep_objects_on_the_first_line", jsonl(BAD_LINE_CASES["deep_nesting_objects"][0], utt(1)), ("ok", 1, 1))
    put("unicode_everywhere", jsonl(utt(0, text="日本語 ελληνικά emoji 🎤", speaker="ß", **{"ключ": "значение"})),
        ("ok", 1, 0))
    put("json_array", json.dumps([utt(0), utt(1)]).encode(), ("error", ["this is a JSON array", "jq -c"]))
    put("json_array_pretty", json.dumps([utt(0), utt(1)], indent=2).encode(), ("error", ["JSON array", "jq"]))
    put("pretty_printed_object", json.dumps(utt(0), indent=2).encode() + b"\n",
        ("error", ["pretty-printed", "jq -c"]))
    put("binary", bytes(range(256)) * 64, ("error", ["not a text manifest"]))
    put("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(512), ("error", ["not a text manifest"]))
    put("gzip", b"\x1f\x8b\x08\x00" + b"\x00" * 64, ("error", ["gzip-compressed file is damaged", "gzip -t"]))
    put("gzip_cut_short", gzip.compress(jsonl(utt(0), utt(1)))[:30], ("error", ["damaged or cut short"]))
    put("gzip_of_a_manifest", gzip.compress(jsonl(utt(0), b"oops", utt(2))), ("ok", 2, 1))
    put("utf16", line(utt(0)).decode().encode("utf-16") + b"\n", ("error", ["UTF-16", "iconv"]))
    # said what they are, not "binary data" or one line of invalid JSON
    put("utf16le_without_bom", (line(utt(0)) + b"\n").decode().encode("utf-16-le"), ("error", ["UTF-16 (LE)", "iconv"]))
    put("bzip2", bz2.compress(jsonl(utt(0))), ("error", ["bzip2-compressed", "bunzip2 -k"]))
    put("xz", lzma.compress(jsonl(utt(0))), ("error", ["xz-compressed", "unxz -k"]))
    put("cr_line_endings", jsonl(utt(0), utt(1), utt(2)).replace(b"\n", b"\r"), ("error", ["carriage return", "tr"]))
    # a duration of 1e-310 s made numpy print overflow warnings (a rate of 1e310 words/s)
    put("tiny_duration", jsonl(utt(0, duration=1e-310), utt(1)), ("ok", 2, 0))
    put("integer_of_5000_digits_on_the_first_line",
        line(utt(0))[:-1] + b', "n": ' + b"9" * 5000 + b"}\n" + jsonl(utt(1)), ("ok", 2, 0))
    put("empty", b"", ("error", ["no utterances", "empty"]))
    put("only_blank_lines", b"\n \n\r\n\t\n", ("error", ["no utterances"]))
    put("only_bom", b"\xef\xbb\xbf", ("error", ["no utterances"]))
    put("every_line_bad", jsonl(*[{"x": i} for i in range(8)]),
        ("error", ["every line is bad", 'missing field "audio_filepath"', "and 3 more"]))
    # a Windows export: every line Latin-1 / Windows-1252; the fix is the encoding, not the fields
    put("latin1", b'{"audio_filepath": "a.wav", "duration": 1, "text": "caf\xe9"}\n'
                  b'{"audio_filepath": "b.wav", "duration": 1, "text": "stra\xdfe"}\n',
        ("error", ["not valid UTF-8 (byte 0xe9", "not UTF-8", "iconv -f WINDOWS-1252 -t UTF-8"]))
    # `cat` of files saved with a byte-order mark: the mark opens a later line, which is fine
    put("bom_opening_a_later_line", jsonl(utt(0)) + b"\xef\xbb\xbf" + jsonl(utt(1), utt(2)), ("ok", 3, 0))
    put("random_text", b"hello, this is a README, not a manifest\nsecond line\n",
        ("error", ["every line is bad", "invalid JSON"]))
    (d / "a_directory").mkdir()
    out["directory"] = (d / "a_directory", ("error", ["is a directory"]))
    out["missing_file"] = (d / "does_not_exist.json", ("error", ["file not found"]))
    for name, (bad, _) in BAD_LINE_CASES.items():
        put(f"line_{name}", jsonl(utt(0), bad, utt(2)), ("ok", 2, 1))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    files = whole_files(d)
    jobs = {name: (path, ()) for name, (path, _) in files.items()}
    for name in BAD_LINE_CASES:
        jobs[f"strict_{name}"] = (files[f"line_{name}"][0], ("--strict",))
    # one at a time: CliRunner swaps this process's sys.stdout and sys.stderr
    runs = {name: sde_stats_in_process(path, *extra) for name, (path, extra) in jobs.items()}
    return files, runs


def _no_traceback(run: Run) -> None:
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr[-3000:]


WHOLE = [
    "bom", "crlf", "blank_lines", "no_final_newline", "bom_crlf_blank_mixed", "ten_mb_line", "duplicate_keys",
    "numbers_as_strings", "duration_zero", "offset_beyond_the_file", "hundred_thousand_fields",
    "nul_after_the_first_kb", "deep_nesting_on_the_first_line", "deep_objects_on_the_first_line",
    "unicode_everywhere", "json_array", "json_array_pretty", "pretty_printed_object", "binary", "png", "gzip",
    "gzip_cut_short", "gzip_of_a_manifest", "utf16", "utf16le_without_bom", "bzip2", "xz", "cr_line_endings", "tiny_duration",
    "integer_of_5000_digits_on_the_first_line", "empty", "only_blank_lines", "only_bom", "every_line_bad", "random_text", "directory",
    "missing_file",
]


@pytest.mark.parametrize("name", WHOLE + [f"line_{n}" for n in BAD_LINE_CASES])
def test_documented_result(corpus, name):
    files, runs = corpus
    path, expected = files[name]
    run = runs[name]
    _no_traceback(run)
    if expected[0] == "ok":
        _, utterances, skipped = expected
        assert run.code == 0, run.stderr
        s = run.summary
        assert s["utterances"] == utterances, s
        assert s["skipped_lines"] == skipped, s
    else:
        assert run.code == 1, (run.code, run.stdout[:500], run.stderr)
        assert run.stdout == ""
        msg = run.stderr
        assert msg.startswith("Error: "), msg
        assert str(path) in msg, msg
        for words in expected[1]:
            assert words in msg, (words, msg)


@pytest.mark.parametrize("name", list(BAD_LINE_CASES))
def test_strict_names_file_line_and_reason(corpus, name):
    files, runs = corpus
    path = files[f"line_{name}"][0]
    run = runs[f"strict_{name}"]
    _no_traceback(run)
    assert run.code == 1, (run.code, run.stderr)
    first = run.stderr.splitlines()[0]
    assert first.startswith(f"Error: {path}:2: "), run.stderr
    assert BAD_LINE_CASES[name][1] in first, run.stderr
    assert "without --strict" in run.stderr


def test_decisions_pinned_by_the_manifest_docstring(corpus):
    """Duplicate keys: the last wins; numeric strings are converted; duration 0 is valid, and so is
    MAX_SECONDS, not a second more (also where the fast path reads the chunk);
    wide lines keep at most MAX_EXTRA_FIELDS fields with one warning; BOM/CRLF are silent."""
    _, runs = corpus
    assert runs["duplicate_keys"].summary["alphabet"] == "y"
    s = runs["numbers_as_strings"].summary
    assert s["hours"] == pytest.approx(1.5 / 3600, abs=1e-6)
    assert runs["duration_zero"].summary["hours"] == 0.0
    assert runs["duration_at_the_limit"].summary["hours"] == pytest.approx(2_000_000 / 3600)
    over = runs["duration_over_the_limit_among_many"].summary
    assert over["hours"] == pytest.approx(sum(1.0 + i for i in [*range(5_000), 5_001]) / 3600)
    wide = runs["hundred_thousand_fields"].summary
    assert len(wide["warnings"]) == 1 and "more distinct fields ignored" in wide["warnings"][0], wide["warnings"]
    assert ":2:" in wide["warnings"][0]
    for name in ("bom", "crlf", "blank_lines", "bom_crlf_blank_mixed"):
        s = runs[name].summary
        assert s["warnings"] == [] and s["alphabet"] == " 01dehlorw", (name, s)
    assert runs["blank_lines"].summary["total_lines"] == 7
    assert "Warning" not in runs["tiny_duration"].stderr, runs["tiny_duration"].stderr
    assert runs["ten_mb_line"].summary["words"] == 3 + 5_000_000 + 3
    # A bad line never hides the good ones around it.
    for name in BAD_LINE_CASES:
        s = runs[f"line_{name}"].summary
        assert s["total_lines"] == 3 and s["alphabet"] == " 02dehlorw", (name, s)


def test_error_messages_name_the_fix(corpus):
    _, runs = corpus
    assert "jq -c '.[]' in.json > out.json" in runs["json_array"].stderr
    assert "pass the manifest file inside it" in runs["directory"].stderr
    assert "check the path" in runs["missing_file"].stderr
    assert "one JSON object per line" in runs["empty"].stderr
    assert "one object per line" in runs["binary"].stderr


# One of each kind of result, and the deepest nesting (a fresh process has its whole stack):
# `python -m sde.cli` says what the in-process runs above say, byte for byte.
AS_A_PROCESS = [
    ("gzip_of_a_manifest", ()), ("json_array", ()), ("missing_file", ()), ("deep_nesting_on_the_first_line", ()),
    ("line_deep_nesting_100k", ("--strict",)), ("line_invalid_json", ("--strict",)), ("tiny_duration", ()),
]


def test_a_separate_process_says_what_the_in_process_command_says(corpus):
    files, _ = corpus
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {(name, extra): pool.submit(sde_stats, files[name][0], *extra) for name, extra in AS_A_PROCESS}
        processes = {key: f.result() for key, f in futures.items()}
    for (name, extra), run in processes.items():
        _no_traceback(run)
        same = sde_stats_in_process(files[name][0], *extra)
        assert (run.code, run.stdout, run.stderr) == (same.code, same.stdout, same.stderr), (name, extra)
