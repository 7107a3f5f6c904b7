"""The command line: exit codes 0/1/2 and the messages users see."""

from __future__ import annotations

import io
import json
import os
import re
import time
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sde.cli import cli

ROOT = str(Path(__file__).resolve().parent.parent)
ROWS = [
    {"audio_filepath": "a.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the bat sat"},
    {"audio_filepath": "b.wav", "duration": 1.0, "text": "hello world", "pred_text": "hello world"},
]


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_stats_json(write_manifest, tmp_path):
    m = write_manifest(ROWS)
    r = run("stats", str(m), "--json", "--cache-dir", str(tmp_path / "c"))
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["utterances"] == 2
    assert s["hypotheses"]["pred_text"]["wer"] == 20.0
    assert {"utterances", "hours", "vocabulary_size", "alphabet_size", "alphabet", "hypotheses",
            "skipped_lines"} <= set(s)


def test_stats_table(write_manifest, tmp_path):
    r = run("stats", str(write_manifest(ROWS)), "--no-cache")
    assert r.exit_code == 0
    assert "utterances       2" in r.stdout and "pred_text" in r.stdout and "20.00" in r.stdout


def test_missing_manifest_is_exit_1_with_the_path(tmp_path):
    r = run("stats", str(tmp_path / "nope.json"), "--no-cache")
    assert r.exit_code == 1
    assert "nope.json" in r.stderr and "Traceback" not in r.output


def test_strict_names_file_and_line(write_manifest):
    m = write_manifest([ROWS[0], '{"audio_filepath": "x.wav", "text": "no duration"}'])
    r = run("stats", str(m), "--strict", "--no-cache")
    assert r.exit_code == 1
    assert 'manifest.json:2: missing field "duration"' in r.stderr


@pytest.mark.parametrize("cache", ["--no-cache", "cold cache", "warm cache"])
def test_lenient_counts_skipped_lines_and_names_them_on_stderr_beside_the_json(write_manifest, tmp_path, cache):
    # with --json only the count was there: the docs promise the first five named on the terminal
    m = write_manifest([ROWS[0], "{not json", ROWS[1]])
    args = ["--no-cache"] if cache == "--no-cache" else ["--cache-dir", str(tmp_path / "c")]
    if cache == "warm cache":
        assert run("stats", str(m), *args).exit_code == 0
    r = run("stats", str(m), "--json", *args)
    assert r.exit_code == 0
    assert json.loads(r.stdout)["skipped_lines"] == 1
    assert "1 bad line skipped" in r.stderr and f"{m.name}:2: invalid JSON" in r.stderr


@pytest.mark.parametrize("bad, named, more", [(0, 0, None), (1, 1, None), (5, 5, None), (7, 5, "  ... and 2 more")])
def test_the_bad_lines_skipped_are_named_with_file_line_and_reason(write_manifest, bad, named, more):
    m = write_manifest([ROWS[0], *['{"audio_filepath": "x.wav", "text": "no duration"}'] * bad, ROWS[1]])
    r = run("stats", str(m), "--no-cache")
    assert r.exit_code == 0 and f"skipped lines    {bad}" in r.stdout
    note = [line for line in r.stderr.splitlines() if "bad line" in line or line.startswith("  ")]
    if not bad:
        assert note == []
        return
    assert note[0].startswith(f"warning: {bad} bad {'line' if bad == 1 else 'lines'} skipped")
    assert "/api/problems" in note[0] and "--strict" in note[0]
    named_lines = [f'  {m}:{line}: missing field "duration"' for line in range(2, 2 + named)]
    assert len(note) == 1 + named + bool(more)
    assert all(said.startswith(start) for said, start in zip(note[1:], named_lines)), note
    assert note[-1] == more or not more


def test_the_notes_about_lines_kept_are_said_after_the_bad_lines(write_manifest):
    lines = [ROWS[0], "{not json", {k: v for k, v in ROWS[1].items() if k != "pred_text"}, ROWS[0]]
    r = run("stats", str(write_manifest(lines)), "--no-cache")
    assert r.exit_code == 0
    said = [line for line in r.stderr.splitlines() if line.startswith(("warning: ", "  "))]
    assert said[0].startswith("warning: 1 bad line skipped") and ":2: invalid JSON" in said[1], said
    assert said[2] == ("warning: 1 note about the lines kept (the Problems page and /api/summary list every one):")
    assert said[3].endswith(":3: pred_text missing on 1 line (line 3): left out of its scores"), said
    assert "missing on 1 line: left out of its scores" in r.stdout  # the table says it too


@pytest.mark.parametrize("field", ["source", "review", "id"])
def test_a_hypothesis_named_like_a_column_sde_makes_is_refused_with_the_reason(write_manifest, field):
    r = run("stats", str(write_manifest([{**ROWS[0], field: "the cat"}])), "--pred-field", field, "--no-cache")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"'{field}' is the name of a column sde makes" in r.stderr and f"manifest_{field}" in r.stderr


def test_a_dozen_hypotheses_load_without_pandas_warnings(write_manifest):
    rows = [{**ROWS[i % 2], **{f"pred_text_m{k}": ROWS[(i + k) % 2]["text"] for k in range(13)}} for i in range(20)]
    m = write_manifest(rows)
    proc = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(m), "--no-cache"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pred_text_m12" in proc.stdout
    assert "Warning" not in proc.stderr.replace("warning:", ""), proc.stderr[-2000:]


def test_usage_errors_exit_2(write_manifest):
    m = write_manifest(ROWS)
    assert run("stats", str(m), "--bogus").exit_code == 2
    r = run("stats", str(m), "--normalize", "shout", "--no-cache")
    assert r.exit_code == 2 and "lower" in r.stderr
    r = run(str(m), "--port", "99999")
    assert r.exit_code == 2


def test_help_lists_commands():
    r = run("--help")
    assert r.exit_code == 0
    for word in ("stats", "demo", "serve", "SOURCE..."):
        assert word in r.stdout


def test_console_script_entry_point(write_manifest):
    m = write_manifest(ROWS)
    p = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(m), "--json", "--no-cache"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["utterances"] == 2


# Progress output: bars on a terminal, one plain line per phase anywhere else (logs, pipes, CI).


def test_piped_stderr_has_plain_progress_lines_not_bars(write_manifest):
    m = write_manifest(ROWS)
    p = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(m), "--no-cache", "--estimate-audio-metrics"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and "%|" not in p.stderr, repr(p.stderr)
    lines = p.stderr.splitlines()
    assert any(re.fullmatch(r"reading manifest\.json: \d+ B, 2 lines in \d+\.\d s", line) for line in lines), lines
    assert any(re.fullmatch(r"audio metrics: 2 utt in \d+\.\d s", line) for line in lines), lines


def test_one_line_is_one_line(write_manifest):
    m = write_manifest(ROWS[:1])
    p = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(m), "--no-cache"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert any(re.fullmatch(r"reading manifest\.json: \d+ B, 1 line in \d+\.\d s", line)
               for line in p.stderr.splitlines()), p.stderr


@pytest.mark.parametrize("extra, listed", [
    ({"asr": "the bat", "speaker": "s1", "offset": 0.0}, "its other fields are: asr, speaker."),
    ({"offset": 0.0}, "its other fields are: none but audio_filepath, duration and text."),
])
def test_a_missing_pred_field_lists_the_fields_a_transcript_could_be_in(write_manifest, extra, listed):
    """Not audio_filepath, duration or offset, which it listed first, as if they could be."""
    m = write_manifest([{"audio_filepath": "a.wav", "duration": 1.0, "text": "the cat", **extra}])
    r = CliRunner().invoke(cli, ["stats", str(m), "--no-cache", "--pred-field", "hyp"])
    assert r.exit_code == 1
    assert 'no line has the hypothesis field "hyp"' in r.output and listed in r.output


@pytest.mark.parametrize("terminal, enabled, expected", [
    (True, True, "tqdm"),
    (False, True, "PlainProgress"),
    (True, False, "_Silent"),
    (False, False, "_Silent"),
], ids=["terminal", "log", "off-on-terminal", "off-in-log"])
def test_progress_bar_kind_follows_the_stream(terminal, enabled, expected):
    from sde.progress import progress_bar

    reader, writer = os.openpty() if terminal else os.pipe()  # a terminal, or a pipe as in a log
    stream = os.fdopen(writer, "w")
    try:
        bar = progress_bar(10, "work", enabled=enabled, stream=stream, leave=False)
        bar.update(10)
        bar.close()
        assert type(bar).__name__ == expected
    finally:
        stream.close()
        os.close(reader)


@pytest.mark.parametrize("updates, total, expected", [
    ([4, 6], 10, "work: 10 it, 3 lines in "),
    ([4], 10, None),  # stopped early (error, Ctrl-C): no line claiming it finished
    ([2_500_000], None, "work: 2,500,000 it, 3 lines in "),
], ids=["complete", "interrupted", "no-total"])
def test_plain_progress_prints_one_line_when_complete(updates, total, expected):
    from sde.progress import progress_bar

    out = io.StringIO()
    bar = progress_bar(total, "work", stream=out)
    for n in updates:
        bar.update(n)
    bar.set_postfix_str("3 lines")
    bar.close()
    bar.close()
    if expected is None:
        assert out.getvalue() == ""
    else:
        assert out.getvalue().startswith(expected) and out.getvalue().count("\n") == 1, out.getvalue()


def test_work_in_processes_is_timed_from_its_start_not_its_first_report(capsys):
    # --estimate-audio-metrics said "audio metrics: 30 utt in 0.0 s" for ~4 s of work: the bar was
    # made, and its clock started, when the first batch of results came back
    from sde.progress import WorkerProgress

    with WorkerProgress("audio metrics", enabled=True) as meter:
        time.sleep(0.4)  # the workers start and measure the first batch
        meter.report(20, 30)
        meter.report(30, 30)
    said = capsys.readouterr().err
    seconds = float(re.fullmatch(r"audio metrics: 30 utt in (\d+\.\d) s\n", said)[1])
    assert seconds >= 0.4, said


@pytest.mark.parametrize("stopping, raises", [(True, False), (False, True)],
                         ids=["the exit shut its pools down: quiet", "no exit: a real error"])
def test_the_warm_up_ends_quietly_when_the_exit_refuses_its_work(monkeypatch, capsys, stopping, raises):
    from concurrent.futures import ThreadPoolExecutor

    import sde.filters.engine
    from sde.cli import _warm_queries

    class Refused:  # the warm-up's first step meets Python's exit: its thread pools are shut down
        def map_indexes(self, text):
            pool = ThreadPoolExecutor(1)
            pool.shutdown()
            pool.submit(print)  # raises the RuntimeError a pool shut down by the exit raises

    monkeypatch.setattr(sde.filters.engine, "_stopping", stopping)  # as stop_queries leaves it at exit
    if raises:
        with pytest.raises(RuntimeError, match="cannot schedule new futures"):
            _warm_queries(Refused(), ["text"], [])
    else:
        _warm_queries(Refused(), ["text"], [])
        assert capsys.readouterr().err == ""


def test_without_nemo_installed_a_model_asked_for_is_named_and_statistics_are_served(write_manifest):
    m = write_manifest([{k: v for k, v in row.items() if k != "pred_text"} for row in ROWS])
    args = ["sde", "stats", str(m), "--json", "--no-cache", "--model", "nope.nemo"]
    code = f"import sys; sys.modules['nemo'] = None; from sde.cli import main; sys.argv = {args!r}; main()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["hypotheses"] == {} and "Traceback" not in r.stderr
    assert "could not transcribe with --model nope.nemo: NeMo is not installed" in r.stderr
    assert 'pip install "sde[nemo]"' in r.stderr


def _boom() -> list[str]:
    raise ValueError("boom")


@pytest.mark.parametrize("prepare, said", [
    (lambda: ["Statistics", "Errors"], "pages ready"),
    (lambda: [], "pages ready"),
    (_boom, "warning: the pages were not prepared (ValueError: boom); each is laid out at its first visit"),
], ids=["pages laid out", "none to lay out", "a page failed: one line, the server goes on"])
def test_the_warm_up_prepares_the_pages_then_says_which_transcripts_are_in_memory(write_manifest, capsys, prepare, said):
    from sde.cli import _warm_queries
    from sde.dataset import build_dataset

    ds = build_dataset(write_manifest(ROWS))
    _warm_queries(ds.utterance_query, ["text", "pred_text"], list(ds.errors.values()), prepare)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-3].startswith("sorts ready") and lines[-2].startswith(said) and "Traceback" not in "".join(lines)
    if said == "pages ready":
        assert lines[-2].endswith(f"; {', '.join(prepare()) or 'no page'} prepared)")
    assert lines[-1].startswith("transcripts in memory") and lines[-1].endswith("; text, pred_text kept whole)")


@pytest.mark.parametrize("budget", [2.5, 3.5], ids=["no room beside a build", "room beside a build"])
def test_a_search_during_the_warm_up_reads_no_column_whole_until_the_indexes_are_built(
        monkeypatch, tmp_path, capsys, budget):
    """A column a search streamed is read whole for the next search, but not while the warm-up
    builds its indexes in the same budget (10M lines with --memory-limit 2GB: a 0.7 GB column
    beside a build; with 4GB two of them, 4.6 GB in all), even where there is room beside the
    indexes (~0.75x the column here: a budget of 3.5x it, too small to read it whole first); from
    the warm-up's last step on, it is."""
    from sde import compressed_columns as cc
    from sde.cli import _warm_queries
    from sde.query import TableQuery
    from tests.test_word_index import _budget, _stored, _texts

    frame = _stored(tmp_path, _texts(3_000, seed=2, lower=True))
    column = frame["text"].array.compressed
    _budget(monkeypatch, int(budget * column.nbytes))
    query = TableQuery(frame)
    seen = []

    def search_under_the_warm_up() -> list[str]:
        query.count('{text} matches "a.*b"')  # tests lines: streams the file
        seen.append((bool(query._engine._scans), column._reading))
        return []

    _warm_queries(query, ["text"], [], search_under_the_warm_up)
    assert seen == [(True, False)]  # streamed, and not read for the next search
    assert not query._engine.indexes_building
    assert capsys.readouterr().err.splitlines()[-1].endswith("; text kept whole)")
    column._recent = None
    cc._WHOLE.discard(column.path)  # as if pushed out: the next search streams it, then reads it
    query.count('{text} matches "e.*a"')
    assert column._reading or column.kept_whole() is not None


def test_the_warm_up_ends_quietly_when_python_exits_before_sde_says_it_is_stopping(tmp_path):
    """The main thread ends (SIGTERM, Ctrl-C), Python's exit refuses new work to thread pools, and
    only then sde's exit handler would say it is stopping: the warm-up must end without a traceback."""
    script = tmp_path / "exit_under_warm_up.py"
    script.write_text(
        "import concurrent.futures.thread as futures, threading, time\n"
        "from sde.cli import _warm_queries\n"
        "begun = threading.Event()\n"
        "class Refused:  # the warm-up's first step\n"
        "    def map_indexes(self, text):\n"
        "        begun.set()\n"
        "        while not futures._shutdown:  # Python's exit has begun and refuses new work\n"
        "            time.sleep(0.01)\n"
        "        with futures.ThreadPoolExecutor(1) as pool:\n"
        "            pool.submit(print)\n"
        "threading.Thread(target=_warm_queries, args=(Refused(), ['text'], [])).start()\n"
        "begun.wait()\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


# --threads and --part-size: values that only harm are usage errors naming the bound, as they start.

def _sde(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real command line, in a process of its own (its CPUs and environment its own)."""
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


def _refused(r: subprocess.CompletedProcess, *said: str) -> None:
    """Exit 2 and one error line (click's usage lines above it) saying all of ``said``; no traceback."""
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(errors) == 1 and all(s in errors[0] for s in said), r.stderr[-2000:]


CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
MOST_THREADS = 4 * CPUS

ENGINE_REFUSALS = {
    # --threads 1000 on 2 CPUs started 91 build processes
    "threads above 4 per CPU": (["--threads", str(MOST_THREADS + 1)],
                                [f"--threads: {MOST_THREADS + 1} threads is more than 4 per CPU",
                                 f"({CPUS} CPU", f"give at most {MOST_THREADS}"]),
    "a thousand threads": (["--threads", "1000"], ["--threads: 1000 threads", f"give at most {MOST_THREADS}"]),
    "zero threads": (["--threads", "0"], ["--threads: 0 threads: give 1 or more", f"at most {MOST_THREADS}",
                                          f"{CPUS} CPU"]),
    "negative threads": (["--threads", "-3"], ["--threads: -3 threads: give 1 or more", f"at most {MOST_THREADS}"]),
    # parts of 1B were one manifest line each: 75k files for 20k lines
    "a part of one byte": (["--part-size", "1B"], ["--part-size: '1B' is too small for a part", "at least 4KB"]),
    "a part just under 4KB": (["--part-size", "3999B"], ["--part-size: '3999B' is too small", "at least 4KB"]),
}


@pytest.mark.parametrize("extra, said", ENGINE_REFUSALS.values(), ids=ENGINE_REFUSALS.keys())
def test_threads_and_part_sizes_that_only_harm_are_refused_naming_the_bound(write_manifest, extra, said):
    _refused(_sde("stats", str(write_manifest(ROWS)), "--no-cache", *extra), *said)


def _machine_gib() -> float:
    from sde.engine import machine_memory
    return machine_memory() / 2**30


MACHINE_GIB = _machine_gib()
ENGINE_REFUSALS.update({
    # 1TB was taken on a 23 GiB machine: DuckDB planned for memory that is not there
    "a terabyte of memory": (["--memory-limit", "1TB"], ["--memory-limit: '1TB' is more than this machine has",
                                                         f"{MACHINE_GIB:.1f} GiB of memory", "give at most that"]),
    "twice the machine": (["--memory-limit", f"{int(MACHINE_GIB * 2) + 1}GiB"], ["is more than this machine has"]),
})


@pytest.mark.parametrize("command", [["stats"], ["index"], ["export", "-o", "kept.json"], ["serve", "--port", "0"]])
def test_a_memory_limit_over_the_machine_is_refused_by_every_command(write_manifest, tmp_path, command):
    name, *rest = command
    out = [str(tmp_path / a) if a.endswith(".json") else a for a in rest]
    r = _sde(name, str(write_manifest(ROWS)), "--cache-dir", str(tmp_path / "cache"), "--memory-limit", "1TiB", *out)
    _refused(r, "--memory-limit: '1TiB' is more than this machine has")
    assert not (tmp_path / "kept.json").exists()


ENGINE_BOUNDS = {
    "memory within the machine": ["--memory-limit", f"{max(1, int(MACHINE_GIB * 0.5))}GiB"],
    "4 threads per CPU": ["--threads", str(MOST_THREADS)],
    "one thread": ["--threads", "1"],
    "parts of 4KB": ["--part-size", "4KB"],
}


@pytest.mark.parametrize("extra", ENGINE_BOUNDS.values(), ids=ENGINE_BOUNDS.keys())
def test_threads_and_part_sizes_at_their_bounds_are_taken(write_manifest, extra):
    r = _sde("stats", str(write_manifest(ROWS)), "--no-cache", "--json", *extra)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["utterances"] == 2


def test_a_server_run_in_process_leaves_the_query_engine_answering(monkeypatch, write_manifest):
    # a server that stopped told the whole process it was exiting: every later query in it answered
    # "sde is stopping" (843 tests of one CI run, after an in-process serve of test_security)
    import sde.web.serve as serve_module
    from sde.filters.engine import rows_sql

    monkeypatch.setattr(serve_module, "serve", lambda app, **_options: None)
    r = CliRunner().invoke(cli, [str(write_manifest(ROWS)), "--port", "0", "--no-cache"])
    assert r.exit_code == 0, r.output
    assert rows_sql("SELECT 41 + 1 AS n") == [(42,)]


# --tarred-audio that names no tar: a usage error naming the option, never a traceback after scoring.
TARRED_AUDIO_REFUSALS = {
    "a glob matching nothing": ("nothing_*.tar", "matches no file"),
    "a NeMo range matching nothing": ("audio__OP_0..1_CL_.tar", "matches no file"),
    "an unclosed brace": ("audio_{0..1.tar", "an opening brace without its closing one"),
}


@pytest.mark.parametrize("pattern, said", TARRED_AUDIO_REFUSALS.values(), ids=TARRED_AUDIO_REFUSALS.keys())
def test_a_tarred_audio_pattern_that_names_no_tar_is_a_usage_error(write_manifest, tmp_path, pattern, said):
    m = write_manifest([{**row, "shard_id": 0} for row in ROWS])
    r = CliRunner().invoke(cli, ["stats", str(m), "--no-cache", "--tarred-audio", str(tmp_path / pattern)])
    assert r.exit_code == 2 and r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert "Invalid value for --tarred-audio" in r.stderr and said in r.stderr, r.stderr


# --normalize that names no step: a usage error, not a silent run without normalised scores.
NORMALIZE_REFUSALS = {"a lone comma": ",", "commas and spaces": " , ,"}


@pytest.mark.parametrize("steps", NORMALIZE_REFUSALS.values(), ids=NORMALIZE_REFUSALS.keys())
def test_a_normalize_option_naming_no_step_is_a_usage_error(write_manifest, steps):
    r = CliRunner().invoke(cli, ["stats", str(write_manifest(ROWS)), "--no-cache", "--normalize", steps])
    assert r.exit_code == 2, r.output
    assert "Invalid value for --normalize" in r.stderr and "names no step" in r.stderr, r.stderr
    assert "lower, punct, numbers" in r.stderr


ALPHABETS = {  # --alphabet as typed -> utterances of ROWS flagged, the characters flagged
    "letters only: the spaces between words are allowed": ("abcdefghijklmnopqrstuvwxyz", 0, []),
    "letters and a space": ("abcdefghijklmnopqrstuvwxyz ", 0, []),
    "some letters": ("abcdefghijklmnopqrsuvwxyz", 1, ["t"]),
}


@pytest.mark.parametrize("alphabet, flagged, chars", ALPHABETS.values(), ids=ALPHABETS.keys())
def test_the_alphabet_check_allows_the_space_between_words(write_manifest, alphabet, flagged, chars):
    # `--alphabet abc…z` (a character model's letters) flagged every utterance for its spaces
    r = CliRunner().invoke(cli, ["stats", str(write_manifest(ROWS)), "--no-cache", "--json", "--alphabet", alphabet])
    assert r.exit_code == 0, r.output
    check = json.loads(r.stdout)["alphabet_check"]
    assert check["utterances"] == flagged
    assert [c["char"] for c in check["chars"]] == chars


@pytest.mark.parametrize("model, name", [("nvidia/parakeet-tdt-0.6b-v2", "parakeet_tdt_0_6b_v2"),
                                         ("/models/missing.nemo", "missing")])
def test_a_model_that_is_not_used_is_said_with_how_to_score_it(write_manifest, model, name):
    # the manifest's own pred_text was shown while the user believed it was the model they named
    r = _sde("stats", str(write_manifest(ROWS)), "--no-cache", "--json", "--model", model)
    assert r.returncode == 0 and json.loads(r.stdout)["hypotheses"].keys() == {"pred_text"}, r.stderr[-2000:]
    assert f"note: --model {model} is not used: the manifest has predictions (pred_text)" in r.stderr
    assert "sde transcribe" in r.stderr and f"--predictions {name}.json (scored as pred_text_{name})" in r.stderr
