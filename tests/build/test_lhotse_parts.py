"""Lhotse CutSets built part by part: a big ``cuts.jsonl`` is cut in lines (a ``cuts.jsonl.gz`` is
decompressed into the build folder first), each part's cuts decoded by lhotse in a worker process,
and the parts joined into the dataset the one-piece read gives (rows, columns, problems with the
cuts file's name and line numbers, supervision segments, the cache key); export still writes each
cut once; a damaged gzip keeps the one-piece read's lines; an interrupted build resumes."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.build.load import entry_key, load_dataset
from sde.build.parts import cut_in_parts
from sde.build.remote_parts import COPIES
from sde.cache import DatasetCache
from sde.cut_lines import selected_cut_lines
from sde.dataset import DatasetOptions, build_dataset
from sde.lines import ManifestLines
from sde.manifest import ManifestError
from sde.sources import as_source_set
from tests.build.build_kit import (assert_index_resumes, assert_same_dataset, built_from_store_in_parts,
                                  interrupted_index, write_predictions)

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PART = 16 << 10  # ~20 cut lines: the CutSet below makes ~20 parts
CUTS = 400
WORDS = "the cat sat on a mat dog ran far away über café naïve one two three".split()
SR = 8000


def _cut_lines(folder: Path) -> list[bytes]:
    """Cut lines written by lhotse over real WAV files (relative paths), as in a real CutSet: cuts
    that start inside their recording, 1-3 supervisions each (some reaching past the cut: clipped),
    speakers only from the second part on, a hypothesis some supervisions lack, custom fields of the
    cut and of its supervisions (one whose type changes from int to float)."""
    (folder / "audio").mkdir(exist_ok=True)
    recordings = []
    for k, seconds in enumerate((2.0, 5.0, 9.0)):
        path = folder / "audio" / f"r{k}.wav"
        sf.write(path, (0.1 * np.sin(np.arange(int(seconds * SR)) * (0.05 + 0.02 * k))).astype(np.float32), SR)
        recordings.append(Recording.from_file(path, recording_id=f"r{k}", relative_path_depth=2))
    rng = random.Random(11)
    target = folder / "written.jsonl"
    with CutSet.open_writer(target) as writer:
        for i in range(CUTS):
            rec = recordings[i % 3]
            start = round(rng.uniform(0, rec.duration / 2), 2)
            duration = round(rec.duration - start, 2)
            sups = []
            for j in range(1 + i % 3):
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
                custom = {"quality": {"snr": i} if i < 200 else {"snr": i + 0.5}}
                if i % 7:
                    custom["pred_text"] = " ".join(w for w in text.split() if rng.random() > 0.2)
                sups.append(SupervisionSegment(
                    id=f"c{i}s{j}", recording_id=rec.id, start=round(j * 0.4, 2), duration=round(0.3 + j * 0.7, 2),
                    text=text, speaker=f"spk{i % 5}" if i >= 30 else None, language="en", channel=0,
                    custom=custom))
            writer.write(MonoCut(id=f"c{i}", start=start, duration=duration, channel=0, recording=rec,
                                 supervisions=sups, custom={"origin": "synth", "batch": i // 50} if i % 4 else None))
    lines = target.read_bytes().splitlines(keepends=True)
    target.unlink()
    return lines


def _spoilt(lines: list[bytes]) -> list[bytes]:
    """Bad lines, blank lines and a command source among the cuts, in the first and in the last parts."""
    out = list(lines)
    for at in (3, 341):  # invalid JSON
        out[at] = b'{"id": "broken", "supervisions": [\n'
    for at in (8, 377):  # a supervision without text: a problem at its cut's line, the others load
        cut = json.loads(out[at])
        del cut["supervisions"][0]["text"]
        out[at] = json.dumps(cut).encode() + b"\n"
    cut = json.loads(out[150])  # sde never runs commands from data
    cut["recording"]["sources"][0] = {"type": "command", "channels": [0], "source": "rm -rf /"}
    out[150] = json.dumps(cut).encode() + b"\n"
    out.insert(200, b"\n")
    return out + [b"\n", b"   \n"]


@pytest.fixture(scope="module")
def cutsets(tmp_path_factory) -> dict[str, Path]:
    """``cuts.jsonl`` (~300 KB: ~20 parts of 16 KB) and the same lines as ``cuts.jsonl.gz``."""
    folder = tmp_path_factory.mktemp("lhotse-parts")
    data = b"".join(_spoilt(_cut_lines(folder)))
    (folder / "cuts.jsonl").write_bytes(data)
    (folder / "cuts.jsonl.gz").write_bytes(gzip.compress(data))
    return {"plain": folder / "cuts.jsonl", "gzip": folder / "cuts.jsonl.gz"}


def _in_parts(messages: list[str]) -> bool:
    return any(m.startswith("building ") and " parts " in m for m in messages)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if COPIES in p.parts or p.name.startswith(".tmp-")]


KINDS = {"a cuts.jsonl": "plain", "a cuts.jsonl.gz": "gzip"}
OPTIONS = {
    "defaults": DatasetOptions(),
    "the custom hypothesis asked for": DatasetOptions(pred_fields=("pred_text=asr",)),
    "a predictions file": DatasetOptions(predictions="PREDICTIONS"),
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
def test_a_cutset_bigger_than_a_part_is_built_in_parts_as_the_one_piece_read(cutsets, tmp_path, kind, options):
    cuts = cutsets[kind]
    if options.predictions:  # matched once to the parts' supervisions, as to a NeMo manifest's lines
        rows = build_dataset(str(cuts)).utterances
        options = DatasetOptions(predictions=str(write_predictions(tmp_path, [
            {"audio_filepath": path, "text": text} for path, text in zip(rows["audio_filepath"], rows["text"])])))
    assert cut_in_parts(as_source_set(str(cuts)), PART)
    messages: list[str] = []
    built = load_dataset(str(cuts), options, cache_dir=tmp_path / "cache", part_bytes=PART, threads=2,
                         status=messages.append)
    assert _in_parts(messages), messages
    one_piece = build_dataset(str(cuts), options)
    assert_same_dataset(built, one_piece)
    assert (built.name, built.manifest_path) == (one_piece.name, one_piece.manifest_path) == (cuts.name, cuts)
    table = built.utterances
    assert len(table) > 700 and table["line"].iloc[-1] > 390  # rows of every part
    assert {"cut_id", "supervision_id", "recording_id", "speaker", "quality", "origin", "batch"} <= set(table.columns)
    assert not _leftovers(tmp_path), "the decompressed copy goes once the parts are joined"
    cache = DatasetCache(tmp_path / "cache")  # stored under the one-piece read's key
    try:
        assert cache.get(entry_key(str(cuts), options, False)) is not None
    finally:
        cache.close()


def test_problems_name_the_cuts_file_as_given_with_its_line_numbers(cutsets, tmp_path, monkeypatch):
    monkeypatch.chdir(cutsets["gzip"].parent)
    messages: list[str] = []
    built = load_dataset("cuts.jsonl.gz", cache_dir=tmp_path, part_bytes=PART, threads=2, status=messages.append)
    assert _in_parts(messages)
    found = [(p.path, p.line, p.reason.split(" (")[0].split(";")[0]) for p in built.problems]
    assert found == [
        ("cuts.jsonl.gz", 4, "invalid JSON"),
        ("cuts.jsonl.gz", 9, "supervision c8s0 of cut c8 has no text"),
        ("cuts.jsonl.gz", 151, "recording r0 is read by running a command"),
        ("cuts.jsonl.gz", 343, "invalid JSON"),  # after the blank line 201
        ("cuts.jsonl.gz", 379, "supervision c377s0 of cut c377 has no text"),
    ]
    assert built.total_lines == CUTS + 3, "blank lines count, as the one-piece read counts them"
    # the segments: cut start + supervision start, clipped to the cut
    cut = json.loads(gzip.decompress(cutsets["gzip"].read_bytes()).splitlines()[16])
    rows = built.utterances[built.utterances["cut_id"] == "c16"]
    for (_, row), sup in zip(rows.iterrows(), cut["supervisions"]):
        end = min(sup["start"] + sup["duration"], cut["duration"])
        assert row["offset"] == pytest.approx(cut["start"] + sup["start"])
        assert row["duration"] == pytest.approx(end - sup["start"])
        assert row["audio_path"] == str(cutsets["gzip"].parent / "audio" / "r1.wav")


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
def test_strict_raises_the_one_piece_reads_first_bad_line(cutsets, tmp_path, kind):
    with pytest.raises(ManifestError) as one_piece:
        build_dataset(str(cutsets[kind]), DatasetOptions(strict=True))
    messages: list[str] = []
    with pytest.raises(ManifestError) as in_parts:
        load_dataset(str(cutsets[kind]), DatasetOptions(strict=True), cache_dir=tmp_path, part_bytes=PART, threads=2,
                     status=messages.append)
    assert _in_parts(messages), messages
    assert str(in_parts.value) == str(one_piece.value)
    assert str(in_parts.value).startswith(f"{cutsets[kind]}:4: invalid JSON")


def test_a_cutset_without_a_usable_supervision_is_the_one_piece_reads_message(cutsets, tmp_path):
    bad = tmp_path / "bad.jsonl"  # every cut's recording is read by a command
    bad.write_bytes(b"".join(line.replace(b'"type": "file"', b'"type": "command"')
                             for line in cutsets["plain"].read_bytes().splitlines(keepends=True)))
    with pytest.raises(ManifestError) as one_piece:
        build_dataset(str(bad))
    messages: list[str] = []
    with pytest.raises(ManifestError) as in_parts:
        load_dataset(str(bad), cache_dir=tmp_path / "cache", part_bytes=PART, threads=2, status=messages.append)
    assert _in_parts(messages), messages
    assert str(in_parts.value) == str(one_piece.value)
    assert str(in_parts.value).startswith("bad.jsonl: no usable supervision in this Lhotse cuts source:")


def test_a_damaged_gzip_cutset_keeps_the_lines_before_the_damage_as_the_one_piece_read(cutsets, tmp_path):
    data = cutsets["gzip"].read_bytes()
    cut_short = tmp_path / "cut-short.jsonl.gz"
    cut_short.write_bytes(data[: len(data) * 2 // 3])
    assert cut_in_parts(as_source_set(str(cut_short)), PART), "its head is fine: it goes part by part"
    built = load_dataset(str(cut_short), cache_dir=tmp_path / "cache", part_bytes=PART, threads=2)
    one_piece = build_dataset(str(cut_short))
    assert_same_dataset(built, one_piece)
    assert "the file breaks off here" in built.problems[-1].reason and len(built.utterances) > 300
    assert not _leftovers(tmp_path)


def test_a_small_cutset_keeps_the_one_piece_read(cutsets, tmp_path):
    few = tmp_path / "few.jsonl"
    few.write_bytes(b"".join(cutsets["plain"].read_bytes().splitlines(keepends=True)[:10]))
    assert not cut_in_parts(as_source_set(str(few)), PART)
    messages: list[str] = []
    built = load_dataset(str(few), cache_dir=tmp_path / "cache", part_bytes=PART, status=messages.append)
    assert not _in_parts(messages), messages
    assert_same_dataset(built, build_dataset(str(few)))


def test_several_cutsets_and_other_lhotse_sources_are_not_cut_in_parts(cutsets, tmp_path):
    # each is read as a whole (a pair, Shar) or refused (several CutSets) by the one-piece read
    second = tmp_path / "more.jsonl"
    second.write_bytes(cutsets["plain"].read_bytes())
    assert not cut_in_parts(as_source_set([str(cutsets["plain"]), str(second)]), PART)
    supervisions = tmp_path / "supervisions.jsonl"
    supervisions.write_bytes(b"".join(json.dumps(s).encode() + b"\n" for line in cutsets["plain"].read_bytes()
                                      .splitlines()[:300] if line.strip().startswith(b'{"id": "c')
                                      for s in json.loads(line)["supervisions"]))
    assert not cut_in_parts(as_source_set(str(supervisions)), PART)


def test_without_lhotse_a_big_cutset_says_what_to_install_before_decompressing_it(cutsets, tmp_path):
    code = ("import sys; sys.modules['lhotse'] = None; from sde.cli import main; sys.argv = ['sde', 'index', "
            f"{str(cutsets['gzip'])!r}, '--cache-dir', {str(tmp_path)!r}, '--part-size', '16KB']; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "cuts.jsonl.gz: a Lhotse manifest; reading it needs the lhotse package" in r.stderr, r.stderr
    assert "pip install 'sde[lhotse]'" in r.stderr and "Traceback" not in r.stderr
    assert "decompressing" not in r.stderr and not _leftovers(tmp_path)


def test_export_of_a_cutset_built_in_parts_writes_each_cut_once_as_the_one_piece_one(cutsets, tmp_path):
    messages: list[str] = []
    built = load_dataset(str(cutsets["gzip"]), cache_dir=tmp_path, part_bytes=PART, threads=2, status=messages.append)
    assert _in_parts(messages), messages
    one_piece = build_dataset(str(cutsets["gzip"]))
    for positions in (np.arange(len(built.utterances)),  # every supervision: each cut byte for byte
                      np.random.default_rng(5).permutation(len(built.utterances))[:120]):  # some, in any order
        exported = list(selected_cut_lines(built, ManifestLines(built), positions))
        assert exported == list(selected_cut_lines(one_piece, ManifestLines(one_piece), positions))
    whole = [data for _, data in selected_cut_lines(built, ManifestLines(built), np.arange(len(built.utterances)))]
    kept = {json.loads(line)["id"] for line in whole}
    assert len(whole) == len(kept) == CUTS - 3  # two invalid lines, one cut whose recording runs a command


def test_a_cutset_built_as_ray_tasks_is_the_one_piece_dataset(cutsets, tmp_path, ray_instance):
    from sde.build.ray_parts import RayEngine

    messages: list[str] = []
    built = load_dataset(str(cutsets["gzip"]), cache_dir=tmp_path, part_bytes=PART, engine=RayEngine(),
                         status=messages.append)
    assert any(m.startswith("building ") and "as Ray tasks" in m for m in messages), messages
    assert_same_dataset(built, build_dataset(str(cutsets["gzip"])))


def test_a_cutset_in_an_object_store_is_copied_then_built_in_parts(cutsets, configured, tmp_path):
    from tests.s3_kit import upload

    url = upload(configured, "sde-lhotse-parts", "data/cuts.jsonl.gz", cutsets["gzip"].read_bytes())
    built = built_from_store_in_parts(url, tmp_path, PART)
    assert f"{url}:4" in [f"{p.path}:{p.line}" for p in built.problems]
    # relative audio paths start from the CutSet's folder in the store, not from its copy
    assert built.utterances["audio_path"].iloc[0].startswith("s3://sde-lhotse-parts/data/audio/r")
    assert not _leftovers(tmp_path)


def test_an_interrupted_index_of_a_cutset_resumes_through_the_cli(cutsets, tmp_path):
    big = tmp_path / "big.jsonl.gz"  # ~3 MB of cut lines: parts of 64 KB, one process
    lines = cutsets["plain"].read_bytes()
    big.write_bytes(gzip.compress(lines * 10, compresslevel=1))
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "sde.cli", "index", str(big), "--cache-dir", str(cache), "--part-size", "64KB",
               "--threads", "1"]
    interrupted_index(command, cache, ROOT)
    assert len(list(cache.glob(f"builds/*/{COPIES}/*"))) == 1, "the decompressed copy stays for the next run"
    assert_index_resumes(command, ROOT)
    assert not _leftovers(tmp_path)
    stats = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(big), "--cache-dir", str(cache), "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    fresh = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(big), "--no-cache", "--json",
                            "--part-size", "1GB"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert json.loads(stats.stdout) == json.loads(fresh.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_does_not_grow_with_a_cutset_built_in_parts(tmp_path):
    from tests.build.memory_kit import peak_anonymous_mb

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_lhotse import write_cuts

    for n in (60_000, 240_000):
        write_cuts(n, tmp_path)

    def peak(n: int, part_size: str) -> float:
        return peak_anonymous_mb(["index", str(tmp_path / f"cuts_{n}.jsonl.gz"), "--cache-dir",
                                  str(tmp_path / f"{n}-{part_size}"), "--part-size", part_size, "--threads", "2",
                                  "--memory-limit", "64MB"])

    small, big, one_piece = peak(60_000, "4MB"), peak(240_000, "4MB"), peak(240_000, "1GB")
    print(f"peak anonymous memory: parts of 4 MB {small:.0f} MB (60k cuts), {big:.0f} MB (240k); "
          f"one piece {one_piece:.0f} MB (240k)")
    assert big < small * 1.25 + 20, "four times the cuts must not need more memory in parts"
    assert one_piece > big + 100, "the one-piece read of the same cuts needs far more"
