"""Export: the user's manifest lines byte for byte (sde/export.py, `sde export`, /api/utterances.jsonl)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sde import lines as line_reader
from sde.dataset import build_dataset
from sde.export import ExportError, LineStream, ManifestLines, utterances_jsonl_route
from sde.reviews import ReviewStore, utterance_keys
from tests.mount_kit import small_tmpfs

REPO = Path(__file__).resolve().parents[1]


def line(audio: str, duration: float, text: str, **extra) -> bytes:
    return json.dumps({"audio_filepath": audio, "duration": duration, "text": text, **extra},
                      ensure_ascii=False).encode("utf-8")


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SDE_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def exported(dataset, positions) -> bytes:
    return b"".join(data for _, data in ManifestLines(dataset).read(np.asarray(positions, dtype=np.int64)))


# Each case: the raw manifest, and the lines a full export must give back (bad and blank lines
# are not utterances: they are never exported).
ODD = b'  {"audio_filepath": "a.wav",\t"duration": 1,   "text": "two  spaces "}  \t'
UNICODE = '{"audio_filepath": "ü/日本.wav", "duration": 2, "text": "naïve café \\u00e9 \U0001F600"}'.encode()
ESCAPED = b'{"audio_filepath": "b.wav", "duration": 3, "text": "a \\"quoted\\" \\/ word"}'
BYTE_CASES = {
    "odd whitespace": (ODD + b"\n" + UNICODE + b"\n", ODD + b"\n" + UNICODE + b"\n"),
    "unicode and escapes": (UNICODE + b"\n" + ESCAPED + b"\n", UNICODE + b"\n" + ESCAPED + b"\n"),
    "CRLF line ends": (ODD + b"\r\n" + ESCAPED + b"\r\n", ODD + b"\r\n" + ESCAPED + b"\r\n"),
    "mixed line ends": (ODD + b"\r\n" + ESCAPED + b"\n", ODD + b"\r\n" + ESCAPED + b"\n"),
    "skipped lines are not exported": (
        b"not json\n" + ODD + b"\n" + b'{"audio_filepath": "x.wav", "text": "no duration"}\n\n   \n'
        + b'{"audio_filepath": "y.wav", "duration": -1, "text": "negative"}\n' + ESCAPED + b"\n",
        ODD + b"\n" + ESCAPED + b"\n"),
    "last line without line end": (ODD + b"\n" + ESCAPED, ODD + b"\n" + ESCAPED + b"\n"),
    "last line without line end, CRLF file": (ODD + b"\r\n" + ESCAPED, ODD + b"\r\n" + ESCAPED + b"\r\n"),
    "last line is bad and unterminated": (ODD + b"\n" + b'{"broken', ODD + b"\n"),
    "byte-order mark is the file's, not the line's": (b"\xef\xbb\xbf" + ODD + b"\n" + UNICODE + b"\n",
                                                       ODD + b"\n" + UNICODE + b"\n"),
}


@pytest.mark.parametrize("raw, expected", BYTE_CASES.values(), ids=BYTE_CASES.keys())
def test_full_export_is_the_valid_lines_byte_for_byte(tmp_path, raw, expected):
    manifest = tmp_path / "m.json"
    manifest.write_bytes(raw)
    dataset = build_dataset(manifest)
    assert exported(dataset, np.arange(len(dataset.utterances))) == expected


@pytest.mark.parametrize("raw, expected", BYTE_CASES.values(), ids=BYTE_CASES.keys())
def test_sorted_export_reorders_the_same_bytes(tmp_path, raw, expected):
    manifest = tmp_path / "m.json"
    manifest.write_bytes(raw)
    dataset = build_dataset(manifest)
    n = len(dataset.utterances)
    lines = expected.splitlines(keepends=True)
    assert exported(dataset, np.arange(n)[::-1]) == b"".join(reversed(lines))


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """3,000 lines of varied length and content, some bad, CRLF and LF mixed."""
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("varied")
    raws, good = [], []
    for i in range(3000):
        if i % 97 == 13:
            raws.append(b"{bad json %d" % i + b"\n")
            continue
        text = " ".join("wörd%d" % w for w in rng.integers(0, 50, rng.integers(0, 30)))
        raw = line(f"a{i}.wav", float(rng.uniform(0.5, 20)), text, speaker=f"s{i % 7}")
        raw = b" " * int(rng.integers(0, 3)) + raw
        raw += b"\r\n" if i % 5 == 0 else b"\n"
        raws.append(raw)
        good.append(raw)
    manifest = folder / "varied.json"
    manifest.write_bytes(b"".join(raws))
    return build_dataset(manifest), good


@pytest.mark.parametrize("chunk_bytes", [64, 4096, 4 << 20], ids=["tiny chunks", "4 KiB chunks", "default"])
@pytest.mark.parametrize("order", ["manifest order", "a subset", "random permutation", "with repeats"])
def test_any_selection_in_any_order_across_chunk_boundaries(varied, monkeypatch, chunk_bytes, order):
    dataset, good = varied
    monkeypatch.setattr(line_reader, "READ_CHUNK_BYTES", chunk_bytes)
    n = len(good)
    rng = np.random.default_rng(1)
    positions = {
        "manifest order": np.arange(n),
        "a subset": np.sort(rng.choice(n, 300, replace=False)),
        "random permutation": rng.permutation(n),
        "with repeats": rng.integers(0, n, 500),
    }[order]
    assert exported(dataset, positions) == b"".join(good[p] for p in positions)


def test_sort_gives_the_sorted_view_of_the_manifest(varied, tmp_path):
    dataset, good = varied
    order = dataset.utterance_query.select("{speaker} = \"s3\"", "-duration")
    status, payload = utterances_jsonl_route(dataset, {"filter": '{speaker} = "s3"', "sort": "-duration"})
    assert status == 200 and isinstance(payload, LineStream)
    body = b"".join(payload.chunks)
    assert body == b"".join(good[p] for p in order)
    durations = [json.loads(x)["duration"] for x in body.splitlines()]
    assert durations == sorted(durations, reverse=True) and len(durations) == len(order) > 0


def test_a_compressed_source_is_read_through_a_spool(varied, tmp_path):
    dataset, good = varied
    original = dataset.manifest_path
    gz = tmp_path / "varied.json.gz"
    gz.write_bytes(gzip.compress(Path(original).read_bytes()))
    dataset.manifest_path = gz  # as a Lhotse/compressed source would be
    try:
        positions = np.random.default_rng(3).permutation(len(good))[:400]
        assert exported(dataset, positions) == b"".join(good[p] for p in positions)
        assert exported(dataset, np.arange(10)) == b"".join(good[:10])
    finally:
        dataset.manifest_path = original


@pytest.mark.parametrize("change", ["appended", "rewritten", "deleted"])
def test_a_manifest_changed_after_loading_is_an_error_not_other_lines(tmp_path, change):
    manifest = tmp_path / "m.json"
    manifest.write_bytes(ODD + b"\n" + ESCAPED + b"\n")
    dataset = build_dataset(manifest)
    lines = ManifestLines(dataset)
    if change == "appended":
        with manifest.open("ab") as f:
            f.write(UNICODE + b"\n")
    elif change == "rewritten":
        manifest.write_bytes(ESCAPED + b"\n" + ODD + b"\n")
        os.utime(manifest, ns=(1, 1))
    else:
        manifest.unlink()
    with pytest.raises(ExportError, match="load the dataset again|restart sde"):
        b"".join(lines.chunks(np.arange(2)))
    status, payload = utterances_jsonl_route(dataset, {}, lines=lines)
    assert status == 409 and "m.json" in payload["error"]


def test_a_manifest_moved_before_the_first_download_is_409_json_through_the_server(tmp_path):
    from tests.test_audio_faults import SdeServer, assert_no_traceback

    manifest = tmp_path / "m.json"
    manifest.write_bytes(ODD + b"\n" + ESCAPED + b"\n")
    with SdeServer(str(manifest)) as server:
        manifest.rename(tmp_path / "elsewhere.json")  # deleted reads the same: no file at its path
        code, headers, body = server.get("/api/utterances.jsonl")
        assert code == 409 and headers.get("content-type", "").startswith("application/json"), body[:300]
        error = json.loads(body)["error"]
        assert str(manifest) in error and "moved or deleted" in error
        assert server.json("/api/summary", 200)["utterances"] == 2
    assert_no_traceback(server)


def test_jsonl_route_bad_filter_is_400_before_streaming(varied):
    dataset, _ = varied
    status, payload = utterances_jsonl_route(dataset, {"filter": "{duration} > > 3"})
    assert status == 400 and "duration" in payload["error"]
    status, payload = utterances_jsonl_route(dataset, {"filter": "{nope} = 1"})
    assert status == 400 and "nope" in payload["error"]


def test_streamed_chunks_are_bounded(varied):
    dataset, good = varied
    chunks = list(ManifestLines(dataset).chunks(np.arange(len(good)), size=10_000))
    assert len(chunks) > 5 and max(len(c) for c in chunks) < 10_000 + max(len(g) for g in good)
    assert b"".join(chunks) == b"".join(good)


# ------------------------------------------------------------------------------- the CLI


RULES = 'rules:\n  - name: long\n    filter: "{duration} > 2.5"\n  - name: tagged b\n    filter: "{audio_filepath} = \\"b.wav\\""\n'


@pytest.fixture
def small(tmp_path):
    raw = (ODD + b"\r\n" + b"oops\n" + UNICODE + b"\n" + ESCAPED + b"\n"
           + line("c.wav", 4.0, "the end", pred_text="the and") + b"\n" + line("d.wav", 0.5, "short"))
    manifest = tmp_path / "m.json"
    manifest.write_bytes(raw)
    valid = [ODD + b"\r\n", UNICODE + b"\n", ESCAPED + b"\n",
             line("c.wav", 4.0, "the end", pred_text="the and") + b"\n", line("d.wav", 0.5, "short") + b"\n"]
    return manifest, valid


def test_cli_export_filter_rules_rejected_and_changelog(small, tmp_path):
    manifest, valid = small
    (tmp_path / "rules.yaml").write_text(RULES)
    before = manifest.read_bytes()
    r = run_cli("export", "m.json", "--filter", "{duration} > 0.8", "--rules", "rules.yaml",
                "-o", "kept.json", "--rejected", "dropped.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # durations 1, 2, 3, 4, 0.5: the filter keeps 1-4; "long" drops 3 and 4, "tagged b" drops 3 (overlap)
    assert (tmp_path / "kept.json").read_bytes() == valid[0] + valid[1]
    assert (tmp_path / "dropped.json").read_bytes() == valid[2] + valid[3] + valid[4]
    assert manifest.read_bytes() == before
    log = json.loads((tmp_path / "kept.json.changelog.json").read_text())
    assert log["counts"] == {"total_lines": 6, "skipped_lines": 1, "skipped_files": 0, "utterances": 5,
                             "selected_by_filter": 4, "kept": 2, "rejected": 3}
    assert log["hours"]["kept"] == pytest.approx(3 / 3600)
    assert log["hours"]["rejected"] == pytest.approx(7.5 / 3600)
    assert [(x["name"], x["utterances"], x["only"]) for x in log["rules"]["rules"]] == [("long", 2, 1),
                                                                                        ("tagged b", 1, 0)]
    assert log["rules"]["union"]["utterances"] == 2
    assert log["rules"]["union"]["hours"] == pytest.approx(7 / 3600)
    assert log["filter"] == "{duration} > 0.8" and log["sde_version"]
    assert log["sources"][0]["sha256"] == hashlib.sha256(before).hexdigest()
    assert "kept" in r.stderr and "long" in r.stderr
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_cli_export_sorted(small, tmp_path):
    manifest, valid = small
    r = run_cli("export", "m.json", "--sort", "-duration", "-o", "sorted.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sorted.json").read_bytes() == b"".join(valid[i] for i in (3, 2, 1, 0, 4))


def test_cli_export_gz_output(small, tmp_path):
    manifest, valid = small
    r = run_cli("export", "m.json", "-o", "kept.json.gz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert gzip.decompress((tmp_path / "kept.json.gz").read_bytes()) == b"".join(valid)
    # read back (it was "the file is gzip-compressed; decompress it first"): stats, then an export of it
    stats = run_cli("stats", "kept.json.gz", "--json", "--no-cache", cwd=tmp_path)
    assert stats.returncode == 0 and json.loads(stats.stdout)["utterances"] == len(valid), stats.stderr
    again = run_cli("export", "kept.json.gz", "--sort", "-duration", "-o", "sorted.json", "--no-cache", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "sorted.json").read_bytes() == b"".join(sorted(valid, key=lambda v: -json.loads(v)["duration"]))


@pytest.mark.parametrize("args, code, message", [
    (["-o", "m.json"], 2, "manifest itself"),
    (["-o", "./sub/../m.json"], 2, "manifest itself"),
    (["-o", "kept.json", "--rejected", "m.json"], 2, "manifest itself"),
    (["-o", "kept.json", "--rejected", "kept.json"], 1, "its own file"),
    (["-o", "missing/kept.json"], 1, "does not exist"),
    (["-o", "kept.json", "--filter", "{wer} >"], 2, "filter"),
    (["-o", "kept.json", "--rules", "nope.yaml"], 2, "nope.yaml: file not found"),
    (["-o", "kept.json", "--apply-reviews"], 1, "no reviews yet"),
    (["-o", "kept.json", "--reviews", "nope.sqlite"], 2, "no such reviews file"),
    # `-o "$OUT"` with OUT unset: a traceback (os.path.samefile of "")
    (["-o", ""], 2, "-o: is empty; name a file, e.g. -o kept.json"),
    (["-o", "kept.json", "--rejected", " "], 2, "--rejected: is empty; name a file"),
    (["-o", "kept.json", "--reviews", ""], 2, "--reviews: is empty; name a file"),
    # read as stdout, it wrote a file named "-" and "-.changelog.json" without a word
    (["-o", "-"], 2, "-o: '-' (standard output) is not written to"),
    (["-o", "kept.json", "--rejected", "-"], 2, "--rejected: '-' (standard output) is not written to"),
], ids=["-o is the manifest", "-o is the manifest by another path", "--rejected is the manifest",
        "two outputs in one file", "missing output folder", "bad filter", "missing rules file",
        "apply-reviews without reviews", "missing reviews file", "empty -o", "blank --rejected", "empty --reviews",
        "-o is a dash", "--rejected is a dash"])
def test_cli_export_refuses_with_a_message(small, tmp_path, args, code, message):
    manifest, _ = small
    (tmp_path / "sub").mkdir()
    before = manifest.read_bytes()
    r = run_cli("export", "m.json", *args, cwd=tmp_path)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert manifest.read_bytes() == before
    assert not (tmp_path / "kept.json").exists() and not (tmp_path / "-").exists()


@pytest.mark.parametrize("args, option", [
    (["--rules", "rules.yaml", "-o", "rules.yaml"], "--rules"),
    (["--rules", "rules.yaml", "-o", "kept.json", "--rejected", "./sub/../rules.yaml"], "--rules"),
    (["--reviews", "reviews.sqlite", "--apply-reviews", "-o", "kept.json", "--rejected", "reviews.sqlite"], "--reviews"),
    (["--predictions", "preds.json", "-o", "preds.json"], "--predictions"),
    (["--rules", "rules.yaml", "-o", "rules"], "--rules"),  # its changelog would be rules.changelog.json: fine
], ids=["-o is the rules", "--rejected is the rules by another path", "--rejected is the reviews",
        "-o is the predictions", "an output beside an input"])
def test_cli_export_never_writes_over_a_file_it_reads(small, tmp_path, args, option):
    # -o or --rejected naming the reviews, the rules or the predictions replaced them by manifest lines
    manifest, _ = small
    (tmp_path / "sub").mkdir()
    (tmp_path / "rules.yaml").write_text(RULES)
    store = ReviewStore(tmp_path / "reviews.sqlite", sources=["m.json"])
    store.set_review(utterance_keys(build_dataset(manifest)).key(0), "drop", note="music")
    store.close()
    (tmp_path / "preds.json").write_bytes(line("c.wav", 4.0, "", pred_text="the end") + b"\n")
    def files() -> dict[str, bytes]:  # SQLite's -wal and -shm beside the reviews come and go as it reads them
        return {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()
                and not p.name.endswith(("-wal", "-shm"))}

    before = files()
    r = run_cli("export", "m.json", *args, cwd=tmp_path)
    if args[-1] == "rules":
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 1 and f"is the {option} file sde reads: sde never modifies its input" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert files() == before


@pytest.mark.parametrize("args", [
    ["-o", "c.wav"],
    ["-o", "kept.json", "--rejected", "./sub/../c.wav"],
    ["-o", "sub/alias.wav"],  # a symbolic link to the audio
], ids=["-o is an utterance's audio", "--rejected is an utterance's audio by another path", "-o links to the audio"])
def test_cli_export_never_writes_over_an_utterances_audio(small, tmp_path, args):
    # `sde export m.json -o c.wav` (a slip for c.json) replaced the user's recording by manifest lines
    import soundfile as sf

    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "c.wav", np.sin(np.arange(1600) / 5.0) * 0.3, 16000)
    (tmp_path / "sub" / "alias.wav").symlink_to(tmp_path / "c.wav")
    before = (tmp_path / "c.wav").read_bytes()
    r = run_cli("export", "m.json", "--no-cache", *args, cwd=tmp_path)
    assert r.returncode == 1 and "is the audio file of an utterance" in r.stderr, r.stderr
    assert "sde never modifies its input" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "c.wav").read_bytes() == before
    assert not (tmp_path / "kept.json").exists()


def test_cli_apply_reviews(small, tmp_path):
    manifest, valid = small
    dataset = build_dataset(manifest)
    keys = utterance_keys(dataset)
    store = ReviewStore(tmp_path / "reviews.sqlite", sources=["m.json"])
    store.set_review(keys.key(0), "drop", note="music")
    store.set_review(keys.key(1), "fix", text="naive cafe", note="accents", tags=["spelling"])
    store.set_review(keys.key(2), "keep")
    store.set_review(keys.key(3), "keep", tags=["accent"])
    store.set_review(keys.key(4), "drop")
    store.undo(keys.key(4))  # undone: kept
    store.close()
    r = run_cli("export", "m.json", "--apply-reviews", "--reviews", "reviews.sqlite", "-o", "clean.json",
                "--rejected", "dropped.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = (tmp_path / "clean.json").read_bytes().splitlines(keepends=True)
    assert len(out) == 4
    fixed = json.loads(out[0])
    assert fixed["text"] == "naive cafe" and fixed["text_original"] == json.loads(UNICODE)["text"]
    assert fixed["review_note"] == "accents" and fixed["review_tags"] == ["spelling"]
    assert fixed["audio_filepath"] == "ü/日本.wav"
    assert out[1] == valid[2]                      # keep without note or tags: byte for byte
    assert json.loads(out[2])["review_tags"] == ["accent"] and "text_original" not in json.loads(out[2])
    assert out[3] == valid[4]
    assert (tmp_path / "dropped.json").read_bytes() == valid[0]
    log = json.loads((tmp_path / "clean.json.changelog.json").read_text())
    assert {k: log["reviews"][k] for k in ("dropped", "fixed", "annotated", "stale")} == \
        {"dropped": 1, "fixed": 1, "annotated": 1, "stale": 0}
    assert {c["review"] for c in log["reviews"]["changes"]} == {"drop", "fix", "keep"}
    assert "re-serialised" in log["reviews"]["note"]


def test_cli_filter_on_review_columns(small, tmp_path):
    manifest, valid = small
    dataset = build_dataset(manifest)
    store = ReviewStore(tmp_path / "reviews.sqlite", sources=["m.json"])
    store.set_review(utterance_keys(dataset).key(2), "keep", tags=["noise", "clean"])
    store.close()
    r = run_cli("export", "m.json", "--reviews", "reviews.sqlite", "--filter", '{review_tags} has "noise"',
                "-o", "noisy.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "noisy.json").read_bytes() == valid[2]


@pytest.mark.parametrize("sort, order", [(None, "abcd"), ("-duration", "bcda")], ids=["manifest order", "sorted"])
def test_cli_export_of_several_manifests(tmp_path, sort, order):
    (tmp_path / "shards").mkdir()
    lines = {"a": line("a.wav", 1.0, "a") + b"\r\n", "b": line("b.wav", 5.0, "b") + b"\n",
             "c": line("c.wav", 3.0, "c") + b"\n", "d": line("d.wav", 2.0, "d")}
    (tmp_path / "shards" / "m_0.json").write_bytes(lines["a"] + lines["b"])
    (tmp_path / "shards" / "m_1.json").write_bytes(b"bad line\n" + lines["c"] + lines["d"])
    r = run_cli("export", "shards/m_0.json", "shards/m_1.json", "--no-cache", "-o", "kept.json",
                *(["--sort", sort] if sort else []), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines["d"] += b"\n"
    assert (tmp_path / "kept.json").read_bytes() == b"".join(lines[k] for k in order)
    log = json.loads((tmp_path / "kept.json.changelog.json").read_text())
    assert [src["source"] for src in log["sources"]] == ["m_0.json", "m_1.json"]
    assert log["counts"]["skipped_lines"] == 1 and log["counts"]["kept"] == 4


@pytest.mark.slow  # a 200k-line manifest is built twice: ~8 s
def test_sigkill_during_a_big_export_leaves_no_partial_file(tmp_path):
    rows = [line(f"clip_{i:06d}.wav", 1.0 + (i * 7919 % 1000) / 100, "some words " * 8) for i in range(200_000)]
    (tmp_path / "big.json").write_bytes(b"\n".join(rows) + b"\n")
    out = tmp_path / "out.json"
    out.write_bytes(b"the previous export\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sde.cli", "export", "big.json", "--no-cache", "--sort",
                             "duration", "-o", "out.json"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        temp = []
        while time.monotonic() < deadline and proc.poll() is None:
            temp = [p for p in tmp_path.iterdir() if p.name.startswith(".out.json.tmp-")]
            if temp and temp[0].stat().st_size > 0:
                break
            time.sleep(0.005)
        assert temp and proc.poll() is None, "the export finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.read_bytes() == b"the previous export\n"
    assert (tmp_path / "big.json").read_bytes().count(b"\n") == 200_000
    assert not (tmp_path / "out.json.changelog.json").exists()
    # The next export to the same target completes and removes the dead writer's temporary file.
    r = run_cli("export", "big.json", "--no-cache", "--filter", "{duration} > 10.9", "-o", "out.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"".join(x + b"\n" for x in rows if json.loads(x)["duration"] > 10.9)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_cli_export_to_a_full_disk_is_a_message_and_leaves_the_old_file(small, tmp_path):
    # it was a traceback ending in "OSError: [Errno 28] No space left on device"
    with small_tmpfs(tmp_path / "full", "16k") as full:
        (full / "kept.json").write_bytes(b"old\n")
        # more than the writer's 1 MiB buffer: the disk fills while lines are written, not at the end
        (tmp_path / "m.json").write_bytes(b"".join(line(f"a{i}.wav", 1.0, "word " * 50) + b"\n" for i in range(5000)))
        r = run_cli("export", "m.json", "-o", str(full / "kept.json"), cwd=tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "(No space left on device); free disk space or choose another output folder" in r.stderr, r.stderr
        assert (full / "kept.json").read_bytes() == b"old\n" and [p.name for p in full.iterdir()] == ["kept.json"]


def test_a_write_protected_output_is_not_replaced(tmp_path):
    # -o over a file its owner made read-only (chmod 444) replaced it silently (the write is a
    # rename, which the file's mode does not stop); rm and cp ask or refuse.
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": "x"}) + "\n"
                                for i in range(3)))
    kept = tmp_path / "keep.json"
    kept.write_text("precious\n")
    kept.chmod(0o444)
    r = run_cli("export", str(manifest), "-o", str(kept), "--no-cache", cwd=tmp_path)
    assert r.returncode == 1 and f"-o {kept} is write-protected (mode 444)" in r.stderr, r.stderr
    assert kept.read_text() == "precious\n" and kept.stat().st_mode & 0o777 == 0o444
