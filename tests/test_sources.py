"""Many manifests as one dataset: paths, globs and NeMo shard patterns (sde.sources, read_manifest,
the cache key and the CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sde.cache import fingerprint
from sde.dataset import DatasetOptions
from sde.manifest import ManifestError, Problem, read_manifest
from sde.sources import PatternError, expand_sources, source_stamps
from sde.sources.patterns import brace_expand, natural_key


@pytest.mark.parametrize("pattern, names", [
    ("m_{0..3}.json", ["m_0.json", "m_1.json", "m_2.json", "m_3.json"]),
    ("m__OP_0..2_CL_.json", ["m_0.json", "m_1.json", "m_2.json"]),
    ("audio__OP_8..10_CL_.tar", ["audio_8.tar", "audio_9.tar", "audio_10.tar"]),
    ("m_{08..10}.json", ["m_08.json", "m_09.json", "m_10.json"]),
    ("m_{2..0}.json", ["m_2.json", "m_1.json", "m_0.json"]),
    ("m_{0..6..3}.json", ["m_0.json", "m_3.json", "m_6.json"]),
    ("{train,dev}_{0..1}.json", ["train_0.json", "train_1.json", "dev_0.json", "dev_1.json"]),
    ("{a,b{1..2}}.json", ["a.json", "b1.json", "b2.json"]),
    ("plain.json", ["plain.json"]),
    ("{x}.json", ["{x}.json"]),
])
def test_brace_expansion_follows_nemo(pattern, names):
    assert brace_expand(pattern) == names


@pytest.mark.parametrize("pattern, message", [
    ("m_{0..3.json", "opening brace without its closing one"),
    ("m_0..3_CL_.json", "closing brace without an opening one"),
    ("m_{}.json", "empty brace group"),
    ("m_{0..5..0}.json", "step of 0"),
    ("m_{0..99999999}.json", "more than 1,000,000 names"),
])
def test_malformed_patterns_say_what_is_wrong(pattern, message):
    with pytest.raises(PatternError, match=message):
        brace_expand(pattern)


def test_natural_order_puts_2_before_10():
    assert sorted(["m_10.json", "m_2.json", "m_1.json"], key=natural_key) == ["m_1.json", "m_2.json", "m_10.json"]


def _row(k: int, i: int, **extra) -> dict:
    return {"audio_filepath": f"audio/{k}_{i}.wav", "duration": 1.0 + i, "text": f"words of shard {k}", **extra}


@pytest.fixture
def shards(tmp_path):
    """m_0..m_3.json with three lines each, m_2 missing; m_1's second line is bad; only m_3 has
    pred_text; m_1 has a field of its own."""
    folder = tmp_path / "shards"
    folder.mkdir()
    for k in (0, 1, 3):
        rows = [_row(k, i, **({"pred_text": f"words of shard {k}"} if k == 3 else {}),
                     **({"snr": 10.0 + i} if k == 1 else {})) for i in range(3)]
        lines = [json.dumps(r) for r in rows]
        if k == 1:
            lines[1] = '{"audio_filepath": "x.wav", "text": "no duration", "duration": -1}'
        (folder / f"m_{k}.json").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("spec", ["m_{0..3}.json", "m__OP_0..3_CL_.json"])
def test_a_missing_shard_is_one_problem_and_the_others_load(shards, spec, monkeypatch):
    monkeypatch.chdir(shards.parent)
    m = read_manifest(f"shards/{spec}")
    table = m.table
    assert list(table.columns[:3]) == ["id", "source", "line"]
    assert table["id"].tolist() == list(range(8))
    assert table["source"].tolist() == ["m_0.json"] * 3 + ["m_1.json"] * 2 + ["m_3.json"] * 3
    assert table["line"].tolist() == [1, 2, 3, 1, 3, 1, 2, 3]
    assert [str(p) for p in m.problems] == [
        'm_1.json:2: "duration" must be a non-negative number, got -1',
        "m_2.json: file not found (shards/m_2.json); the other manifests are read without it"]
    assert m.name == spec and m.sources == ["m_0.json", "m_1.json", "m_2.json", "m_3.json"]
    # relative audio paths start from each manifest's own folder
    assert table["audio_path"].iloc[0] == str(shards / "audio" / "0_0.wav")
    assert table["snr"].isna().tolist() == [True] * 3 + [False] * 2 + [True] * 3
    assert [str(w) for w in m.warnings] == [
        "m_0.json:1: pred_text missing on 5 lines (e.g. m_0.json:1, m_0.json:2, m_0.json:3): left out of its scores"]


def test_several_manifests_read_as_their_concatenation(shards, tmp_path):
    parts = [shards / "m_0.json", shards / "m_3.json", shards / "m_1.json"]
    whole = tmp_path / "whole.json"
    whole.write_text("".join(p.read_text() for p in parts))
    several = read_manifest([str(p) for p in parts]).table
    single = read_manifest(whole).table
    assert several["source"].tolist() == ["m_0.json"] * 3 + ["m_3.json"] * 3 + ["m_1.json"] * 2
    expected = single.drop(columns=["line", "audio_path"])
    pd.testing.assert_frame_equal(several.drop(columns=["source", "line", "audio_path"]), expected)


def test_shards_read_in_many_batches_equal_one_file_of_their_lines(tmp_path, monkeypatch):
    from sde.manifest import batches, several

    monkeypatch.setattr(batches, "BATCH_BYTES", 700)    # a few shards per batch, buffers reused
    monkeypatch.setattr(several, "LOCAL_READ_THREADS", 2)
    whole = []
    for k in range(40):
        rows = [_row(k, i, speaker=f"s{k % 3}", **({"pred_text": "x"} if i % 2 else {})) for i in range(k % 4 + 1)]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (tmp_path / f"m_{k}.json").write_text(text)
        whole.append(text)
    (tmp_path / "whole.json").write_text("".join(whole))
    several = read_manifest(str(tmp_path / "m_{0..39}.json")).table
    single = read_manifest(tmp_path / "whole.json").table
    pd.testing.assert_frame_equal(several.drop(columns=["source", "line"]), single.drop(columns=["line"]))
    assert several["source"].tolist() == [f"m_{k}.json" for k in range(40) for _ in range(k % 4 + 1)]


def test_names_are_relative_to_the_common_folder_and_audio_to_each_manifest(tmp_path, write_manifest):
    for sub in ("a", "b/c"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "m.json").write_text(json.dumps(_row(0, 0)) + "\n")
    m = read_manifest([str(tmp_path / "a" / "m.json"), str(tmp_path / "b" / "c" / "m.json")])
    assert m.table["source"].tolist() == ["a/m.json", "b/c/m.json"]
    assert m.table["audio_path"].tolist() == [str(tmp_path / "a/audio/0_0.wav"), str(tmp_path / "b/c/audio/0_0.wav")]


def test_globs_expand_in_natural_order_and_a_file_named_twice_is_read_once(tmp_path):
    for k in (10, 2, 1):
        (tmp_path / f"m_{k}.json").write_text(json.dumps(_row(k, 0)) + "\n")
    sources = expand_sources([str(tmp_path / "m_*.json"), str(tmp_path / "m_2.json")])
    assert [s.name for s in sources.sources] == ["m_1.json", "m_2.json", "m_10.json"]


SAME_FILE = {  # names of one file -> the files read, and what each note is about (as named, read as)
    "typed twice": (["a.json", "a.json"], ["a.json"], [("a.json", "a.json")]),
    "./ and a plain name": (["a.json", "./a.json"], ["a.json"], [("./a.json", "a.json")]),
    "a symbolic link": (["a.json", "link.json"], ["a.json"], [("link.json", "a.json")]),
    "a hard link": (["a.json", "hard.json"], ["a.json"], [("hard.json", "a.json")]),
    "a link first": (["link.json", "a.json", "b.json"], ["link.json", "b.json"], [("a.json", "link.json")]),
    "two files": (["a.json", "b.json"], ["a.json", "b.json"], []),
}


@pytest.mark.parametrize("typed, read, repeats", SAME_FILE.values(), ids=SAME_FILE.keys())
def test_one_file_under_two_names_is_read_once_and_said(tmp_path, monkeypatch, typed, read, repeats):
    """A link to a manifest named beside it was read twice, every utterance counted twice (found by
    exploratory QA); a file typed twice was read once without a word."""
    for f in ("a.json", "b.json"):
        (tmp_path / f).write_text(json.dumps(_row(0, 0)) + "\n")
    (tmp_path / "link.json").symlink_to("a.json")
    os.link(tmp_path / "a.json", tmp_path / "hard.json")
    monkeypatch.chdir(tmp_path)
    sources = expand_sources(typed)
    assert [s.given for s in sources.sources] == read
    assert list(sources.repeats) == repeats


def test_the_cli_notes_a_file_named_again(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps(_row(0, 0)) + "\n" + json.dumps(_row(1, 0)) + "\n")
    (tmp_path / "link.json").symlink_to("m.json")
    run = subprocess.run([sys.executable, "-m", "sde.cli", "stats", "m.json", "link.json", "--no-cache", "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["utterances"] == 2
    assert "note: link.json is the same file as m.json" in run.stderr


DATASET_NAMES = {  # the SOURCE arguments as typed -> the dataset's name (page title, summary "manifest")
    "one file": (["a.json"], "a.json"),
    "two files": (["a.json", "b.json"], "a.json + b.json"),
    "a file typed twice is named once": (["a.json", "b.json", "a.json"], "a.json + b.json"),
    "three files": (["a.json", "b.json", "c.json"], "a.json + b.json + 1 more"),
    "three files, one typed twice": (["a.json", "b.json", "c.json", "b.json"], "a.json + b.json + 1 more"),
    "a file and a link to it": (["a.json", "link.json"], "a.json"),
}


@pytest.mark.parametrize("typed, name", DATASET_NAMES.values(), ids=DATASET_NAMES.keys())
def test_the_dataset_is_named_after_each_file_typed_once(tmp_path, monkeypatch, typed, name):
    # `sde a.json b.json a.json` read two files and was titled "a.json + b.json + 1 more"
    for f in set(typed) - {"link.json"}:
        (tmp_path / f).write_text(json.dumps(_row(0, 0)) + "\n")
    (tmp_path / "link.json").symlink_to("a.json")
    monkeypatch.chdir(tmp_path)
    assert expand_sources(typed).name == name


PIPES = {  # a SOURCE that can be read only once: a usage error naming the remedy, never a stalled load
    "a named pipe no one writes to": ("fifo", lambda d: "m.fifo", "is a pipe"),
    "a named pipe in a shard pattern": ("fifo", lambda d: "m_{0..1}.json", "is a pipe"),
    "process substitution <(zcat m.json.gz)": ("pipe", lambda d: f"/proc/self/fd/{d}", "is a pipe"),
    "a device": ("none", lambda d: "/dev/null", "is a device"),
}


@pytest.mark.parametrize("make, typed, said", PIPES.values(), ids=PIPES.keys())
def test_a_source_that_is_a_pipe_is_refused_with_the_remedy(tmp_path, monkeypatch, make, typed, said):
    # `sde stats m.fifo` blocked forever opening it; `sde stats <(zcat m.json.gz)` said "not seekable"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m_0.json").write_text(json.dumps(_row(0, 0)) + "\n")
    fd = None
    if make == "fifo":
        os.mkfifo(tmp_path / ("m.fifo" if "fifo" in typed(None) else "m_1.json"))
    elif make == "pipe":
        fd, w = os.pipe()
        os.write(w, (json.dumps(_row(0, 0)) + "\n").encode())
        os.close(w)
    try:
        with pytest.raises(PatternError, match=f"{said}, not a file: .*save it to a file first"):
            expand_sources([typed(fd)])
    finally:
        if fd is not None:
            os.close(fd)


def test_a_file_whose_name_looks_like_a_pattern_is_taken_as_written(tmp_path):
    literal = tmp_path / "m_{0..1}.json"
    literal.write_text(json.dumps(_row(0, 0)) + "\n")
    assert [s.location for s in expand_sources([str(literal)]).sources] == [str(literal)]


@pytest.mark.parametrize("spec", ["nothing_*.json", "m_{0..3}.json", "m__OP_5..6_CL_.json"])
def test_a_pattern_matching_no_file_is_an_error_naming_it(tmp_path, spec):
    with pytest.raises(PatternError, match=r"matches no file"):
        expand_sources([str(tmp_path / spec)])
    with pytest.raises(ManifestError, match=spec.replace("*", r"\*").replace("{", r"\{").replace(".", r"\.")):
        read_manifest(str(tmp_path / spec))


def test_strict_stops_at_a_missing_shard(shards):
    with pytest.raises(ManifestError, match=r"m_1\.json:2: .*duration"):
        read_manifest(str(shards / "m_{0..3}.json"), strict=True)
    with pytest.raises(ManifestError, match=r"m_2\.json: file not found"):
        read_manifest([str(shards / "m_0.json"), str(shards / "m_2.json")], strict=True)


def test_no_usable_manifest_at_all_lists_the_reasons(tmp_path):
    (tmp_path / "a.json").write_text("{bad\n")
    (tmp_path / "b.json").write_text("")
    with pytest.raises(ManifestError, match=r"(?s)no valid utterances.*a\.json:1: invalid JSON.*b\.json: no utterances"):
        read_manifest([str(tmp_path / "a.json"), str(tmp_path / "b.json")])


def test_a_manifest_field_named_source_is_kept_apart(tmp_path):
    for k in range(2):
        (tmp_path / f"m_{k}.json").write_text(json.dumps(_row(k, 0, source="librispeech")) + "\n")
    table = read_manifest(str(tmp_path / "m_{0..1}.json")).table
    assert table["source"].tolist() == ["m_0.json", "m_1.json"]
    assert table["manifest_source"].tolist() == ["librispeech", "librispeech"]
    one = read_manifest(tmp_path / "m_0.json").table  # one file: the same name, so a column means one thing
    assert one["manifest_source"].tolist() == ["librispeech"] and "source" not in one.columns


@pytest.mark.parametrize("problem, text", [
    (Problem("m.json", 3, "bad"), "m.json:3: bad"),
    (Problem("m_2.json", 0, "file not found"), "m_2.json: file not found"),
])
def test_problem_text_names_the_line_when_there_is_one(problem, text):
    assert str(problem) == text


def test_the_cache_key_covers_every_shard(shards):
    pattern = str(shards / "m_{0..3}.json")
    before = fingerprint(pattern, DatasetOptions())
    assert fingerprint(pattern, DatasetOptions()) == before
    stamps = source_stamps(expand_sources([pattern]))
    assert [s.get("missing", False) for s in stamps] == [False, False, True, False]
    shard = shards / "m_3.json"
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    touched = fingerprint(pattern, DatasetOptions())
    (shards / "m_2.json").write_text(json.dumps(_row(2, 0)) + "\n")
    assert len({before, touched, fingerprint(pattern, DatasetOptions())}) == 3


def sde(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def test_cli_stats_over_shards_and_several_paths(shards, tmp_path):
    r = sde("stats", "shards/m__OP_0..3_CL_.json", "--json", "--cache-dir", str(tmp_path / "c"), cwd=shards.parent)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    # m_2 missing is a skipped file, m_1's bad line a skipped line
    assert (summary["utterances"], summary["skipped_lines"], summary["skipped_files"], summary["manifest"]) == \
        (8, 1, 1, "m__OP_0..3_CL_.json")
    r = sde("stats", "shards/m_0.json", "shards/m_3.json", "--json", "--no-cache", cwd=shards.parent)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["utterances"] == 6


@pytest.mark.parametrize("args, code, message", [
    (["stats", "shards/none_*.json"], 2, "Invalid value for SOURCE: shards/none_*.json: matches no file"),
    (["stats", "shards/m_{7..9}.json"], 2, "shards/m_{7..9}.json: matches no file"),
    (["stats", "shards/m_{0..3.json"], 2, "opening brace without its closing one"),
    (["stats", "shards/m_0.json", "--storage-options", "{oops"], 2, "--storage-options: not valid JSON"),
    (["stats", "shards/m_0.json", "shards/m_2.json", "--strict"], 1, "m_2.json: file not found"),
])
def test_cli_usage_and_data_errors(shards, args, code, message):
    r = sde(*args, "--no-cache", cwd=shards.parent)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def _write_bytes(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)


@pytest.mark.parametrize("name, data, problem", [
    ("m_1.json", b"\xef\xbb\xbf" + json.dumps(_row(1, 0)).encode() + b"\n", None),             # a BOM
    ("m_1.json", json.dumps(_row(1, 0)).encode(), None),                                       # no last newline
    ("m_1.json", b"", "m_1.json: no utterances: the file is empty or has only blank lines"),
    ("m_1.json", b"path,text\na.wav,hello\n", "m_1.json: this is a CSV table"),
    # gzip whatever its name (known by its first bytes), read by itself as one file is: this one is damaged
    ("m_1.json", b"\x1f\x8b\x08\x00" + bytes(40), "m_1.json: the gzip-compressed file is damaged or cut short"),
    ("m_1.json", b'[{"audio_filepath": "a.wav"}]\n', "m_1.json: this is a JSON array"),
])
def test_each_shard_is_judged_on_its_own(tmp_path, name, data, problem):
    for k in (0, 2):
        _write_bytes(tmp_path, f"m_{k}.json", (json.dumps(_row(k, 0)) + "\n" + json.dumps(_row(k, 1)) + "\n").encode())
    _write_bytes(tmp_path, name, data)
    m = read_manifest(str(tmp_path / "m_{0..2}.json"))
    shard_problems = [str(p) for p in m.problems if p.path == "m_1.json"]
    if problem is None:
        assert shard_problems == []
        assert m.table["source"].tolist() == ["m_0.json", "m_0.json", "m_1.json", "m_2.json", "m_2.json"]
        assert m.table["line"].tolist() == [1, 2, 1, 1, 2]
    else:
        assert len(shard_problems) == 1 and shard_problems[0].startswith(problem), shard_problems
        assert m.table["source"].tolist() == ["m_0.json", "m_0.json", "m_2.json", "m_2.json"]


def test_bad_lines_are_told_by_shard_and_line_and_strict_stops_at_the_first(tmp_path):
    rows = [json.dumps(_row(0, i)) for i in range(3)]
    for k in range(4):
        lines = list(rows)
        if k in (1, 3):
            lines[k - 1] = "{not json"
        _write_bytes(tmp_path, f"m_{k}.json", ("\n".join(lines) + "\n").encode())
    m = read_manifest(str(tmp_path / "m_*.json"))
    assert [(p.path, p.line) for p in m.problems] == [("m_1.json", 1), ("m_3.json", 3)]
    assert m.table["line"].tolist() == [1, 2, 3, 2, 3, 1, 2, 3, 1, 2]
    with pytest.raises(ManifestError, match=r"^m_1\.json:1: invalid JSON"):
        read_manifest(str(tmp_path / "m_*.json"), strict=True)


@pytest.mark.parametrize("written, base, resolved", [
    ("s3://bkt/x/../y.wav", None, "s3://bkt/y.wav"),               # a URL stays a URL, normalised
    ("https://host/a//b.wav", None, "https://host/a/b.wav"),
    ("a/./b.wav", "s3://bkt/audio/", "s3://bkt/audio/a/b.wav"),    # --audio-base-path may be a URL
    ("../b.wav", "s3://bkt/audio", "s3://bkt/b.wav"),
    ("/abs/c.wav", "s3://bkt/audio", "/abs/c.wav"),                # absolute paths as written (NeMo)
])
def test_audio_paths_and_urls_resolve_like_nemo(write_manifest, written, base, resolved):
    m = write_manifest([{"audio_filepath": written, "duration": 1.0, "text": "a"}])
    assert read_manifest(m, audio_base_path=base).table["audio_path"].tolist() == [resolved]


def test_a_cached_build_is_named_as_its_sources_are_given_now(tmp_path):
    """One build serves a glob, a brace pattern and the files they match (one cache entry): the
    summary names the sources as this start was given them, not as the start that built it."""
    from sde.build.load import load_dataset
    from sde.sources import expand_sources

    for name in "ab":
        (tmp_path / f"{name}.json").write_text(json.dumps({"audio_filepath": f"{name}.wav", "duration": 1.0,
                                                           "text": "hi"}) + "\n")
    named = {}
    for spec in (["*.json"], ["a.json", "b.json"], ["{a,b}.json"]):
        sources = expand_sources([str(tmp_path / s) for s in spec])
        named[sources.name] = load_dataset(sources, cache_dir=tmp_path / "cache").summary()["manifest"]
    assert named == {"*.json": "*.json", "a.json + b.json": "a.json + b.json", "{a,b}.json": "{a,b}.json"}
    from sde.cache import DatasetCache

    assert len(DatasetCache(tmp_path / "cache")._datasets()) == 1  # one build served the three
