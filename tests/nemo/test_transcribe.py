"""sde.nemo and `sde transcribe`.

Pure parts (device/AMP choice, output names, shard merging, the audio batch, the CLI's usage errors,
the missing-extra message) run everywhere. Tests marked `nemo` build a tiny untrained NeMo CTC model
with the real NeMo classes once per session and run it on CPU over espeak-ng speech; they skip when
NeMo cannot be imported. `gpu` tests skip without CUDA.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from sde.nemo.command import parse_shard, transcribe_command
from sde.nemo.infer import SegmentRef, TranscribeCancelled, hypotheses_to_texts, prepare_batch, transcribe_segments
from sde.nemo.jobs import find_shards, merge_shards, output_path, shard_path, transcribe_manifest
from sde.nemo.model import NEMO_MISSING_MESSAGE, TranscribeError, model_stem, pick_amp_dtype, pick_device
from tests.nemo.speech_kit import read_jsonl, speech_rows, write_jsonl

REPO = Path(__file__).resolve().parents[2]
LABELS = list(" abcdefghijklmnopqrstuvwxyz'")
SR = 16000


# ------------------------------------------------------------------------------------------------
# Fixtures: a manifest over the speech audio of conftest.py (espeak-ng), and a spy on the tiny model


@pytest.fixture()
def manifest(audio_dir, tmp_path) -> Path:
    rows = speech_rows(audio_dir, tmp_path)  # the last one relative to the manifest's folder
    rows[0].update(speaker="a", meta={"k": [1, 2]})  # extra fields the output keeps
    rows[2].update(speaker="b")
    rows[3].update(lang="en")
    return write_jsonl(tmp_path / "data.json", rows, blank_after=2)


@pytest.fixture()
def spy(tiny_model, monkeypatch):
    """Records the audio arrays each model.transcribe call receives."""
    calls: list[list[np.ndarray]] = []
    real = tiny_model.transcribe

    def transcribe(audio, *args, **kwargs):
        calls.append([np.asarray(a) for a in audio])
        return real(audio, *args, **kwargs)

    monkeypatch.setattr(tiny_model, "transcribe", transcribe)
    return calls


# ------------------------------------------------------------------------------------------------
# Pure functions


def test_pick_device():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto", cuda_available=False) == "cpu"
    assert pick_device("auto", cuda_available=True, cuda_count=2) == "cuda:0"
    assert pick_device("CUDA", cuda_available=True, cuda_count=1) == "cuda:0"
    assert pick_device("cuda:1", cuda_available=True, cuda_count=2) == "cuda:1"
    with pytest.raises(TranscribeError, match="CUDA is not available"):
        pick_device("cuda", cuda_available=False)
    with pytest.raises(TranscribeError, match="only 1 CUDA device"):
        pick_device("cuda:1", cuda_available=True, cuda_count=1)
    for bad in ("gpu", "cuda:", "cuda:x", ""):
        with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
            pick_device(bad)


def test_pick_device_reads_torch():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        assert pick_device("auto") == "cuda:0"
    else:
        assert pick_device("auto") == "cpu"
        with pytest.raises(TranscribeError, match="--device cpu"):
            pick_device("cuda")


def test_pick_amp_dtype():
    assert pick_amp_dtype("cpu") is None
    assert pick_amp_dtype("cpu", enabled=True, bf16_supported=True) is None
    assert pick_amp_dtype("cuda:0", bf16_supported=True) == "bfloat16"
    assert pick_amp_dtype("cuda:1", bf16_supported=False) == "float16"
    assert pick_amp_dtype("cuda:0", enabled=False, bf16_supported=True) is None


def test_hypotheses_to_texts():
    hyp = SimpleNamespace(text="a b")
    assert hypotheses_to_texts(["x", "y"]) == ["x", "y"]
    assert hypotheses_to_texts([hyp, SimpleNamespace(text=None)]) == ["a b", ""]
    assert hypotheses_to_texts((["best1", "best2"], [["best1", "alt"], ["best2"]])) == ["best1", "best2"]
    assert hypotheses_to_texts([[hyp, SimpleNamespace(text="alt")]]) == ["a b"]  # n-best: the best
    assert hypotheses_to_texts([SimpleNamespace(n_best_hypotheses=[hyp])]) == ["a b"]
    with pytest.raises(TranscribeError, match="returned 1 transcripts for 2 inputs"):
        hypotheses_to_texts(["x"], expected=2)


def test_names(tmp_path, monkeypatch):
    assert model_stem("stt_en_fastconformer_hybrid_large_pc") == "stt_en_fastconformer_hybrid_large_pc"
    assert model_stem("nvidia/parakeet-tdt-0.6b-v2") == "parakeet-tdt-0.6b-v2"
    assert model_stem("/models/My Model.nemo") == "My_Model"
    m = tmp_path / "data" / "train.json"
    monkeypatch.chdir(tmp_path)  # the default output goes to the current directory, not beside the data
    assert output_path(m, "/x/tiny.nemo") == tmp_path / "train_tiny.json"
    assert output_path(m, "tiny", out=tmp_path / "o.json") == tmp_path / "o.json"
    (tmp_path / "outdir").mkdir()
    assert output_path(m, "tiny", out=tmp_path / "outdir") == tmp_path / "outdir" / "train_tiny.json"
    assert output_path(m, "tiny", shard=(1, 4)) == tmp_path / "train_tiny.shard1of4.json"
    assert shard_path(tmp_path / "o.json", 0, 2).name == "o.shard0of2.json"


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard("3/8") == (3, 8)
    for bad, msg in (("3/2", "I must be < N"), ("2/2", "I must be < N"), ("0/0", "N must be >= 1"),
                     ("1", "is not I/N"), ("a/b", "is not I/N"), ("-1/2", "is not I/N")):
        with pytest.raises(ValueError, match=msg):
            parse_shard(bad)


def test_prepare_batch_reads_segments(audio_dir):
    """Offset segments are read as segments (exactly offset..offset+duration) and resampled to the
    model rate; lines without offset are whole files."""
    d, dur = audio_dir
    whole, sr = sf.read(d / "one.wav", dtype="float32")
    assert sr == SR
    arrays = prepare_batch(
        [SegmentRef(str(d / "one.wav")), (str(d / "one.wav"), 0.25, 0.5), (str(d / "long.wav"), 2.0, 1.6)], SR
    )
    assert [a.dtype for a in arrays] == [np.float32] * 3
    assert arrays[0].shape == whole.shape and np.allclose(arrays[0], whole)
    assert arrays[1].shape == (8000,) and np.allclose(arrays[1], whole[4000:12000])
    assert arrays[2].ndim == 1 and abs(arrays[2].shape[0] - int(1.6 * SR)) <= 2  # 22.05 kHz → 16 kHz
    assert abs(arrays[2].shape[0] - dur["long.wav"] * SR) > SR  # not the whole file


def test_prepare_batch_errors(tmp_path, audio_dir):
    d, _ = audio_dir
    with pytest.raises(TranscribeError, match="audio file not found: .*nope.wav"):
        prepare_batch([(str(tmp_path / "nope.wav"), 0.0, None)], SR)
    with pytest.raises(TranscribeError, match="past the end"):
        prepare_batch([(str(d / "one.wav"), 60.0, 1.0)], SR)


def test_refuses_to_overwrite_input(manifest):
    with pytest.raises(TranscribeError, match="refusing to overwrite the input manifest"):
        transcribe_manifest(manifest, "tiny.nemo", out=manifest, device="cpu", progress=False)
    with pytest.raises(TranscribeError, match="refusing to overwrite"):
        transcribe_manifest(manifest, "x", out=str(manifest.parent / "." / manifest.name), progress=False)


def _write_shards(tmp_path: Path, total: int, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp_path / f"out.shard{i}of{n}.json"
        p.write_text("".join(json.dumps({"audio_filepath": f"{k}.wav", "pred_text": str(k)}) + "\n"
                             for k in range(i, total, n)))
        paths.append(p)
    return paths


def test_merge_shards_order_and_validation(tmp_path):
    paths = _write_shards(tmp_path, 7, 3)
    out = merge_shards(list(reversed(paths)), tmp_path / "out.json")
    assert [r["pred_text"] for r in read_jsonl(out)] == [str(k) for k in range(7)]
    assert find_shards(tmp_path / "out.json") == paths
    with pytest.raises(TranscribeError, match=r"missing shard\(s\) 1of3"):
        merge_shards([paths[0], paths[2]], tmp_path / "o2.json")
    other = _write_shards(tmp_path, 4, 2)
    with pytest.raises(TranscribeError, match="different splits"):
        merge_shards(paths + other, tmp_path / "o2.json")
    paths[1].write_text(paths[1].read_text() + paths[1].read_text())  # a shard from another run
    with pytest.raises(TranscribeError, match="shard 1 of 3"):
        merge_shards(paths, tmp_path / "o2.json")
    with pytest.raises(TranscribeError, match="not named like a shard"):
        merge_shards([tmp_path / "out.json"], tmp_path / "o3.json")
    assert not (tmp_path / "o2.json").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_nemo_missing_message(tmp_path, manifest):
    """Without the extra, asking to transcribe names the pip command (the library and the CLI)."""
    fake = tmp_path / "fake"
    (fake / "nemo").mkdir(parents=True)
    (fake / "nemo" / "__init__.py").write_text("raise ImportError('No module named nemo (test)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(REPO)])}
    code = (
        "import sys\n"
        "from sde.nemo.jobs import transcribe_manifest\n"
        "from sde.nemo.model import NemoMissingError, nemo_available\n"
        "assert not nemo_available()\n"
        "try:\n"
        f"    transcribe_manifest({str(manifest)!r}, 'm.nemo', out={str(tmp_path / 'o.json')!r}, progress=False)\n"
        "except NemoMissingError as e:\n"
        "    print(e)\n"
        "assert 'torch' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == NEMO_MISSING_MESSAGE
    cli = "from sde.nemo.command import transcribe_command; transcribe_command()"
    r = subprocess.run([sys.executable, "-c", cli, str(manifest), "--model", "m.nemo"],
                       env=env, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert r.returncode == 1
    assert NEMO_MISSING_MESSAGE in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.json").exists()


def test_import_is_lazy():
    code = ("import sys, sde.nemo.jobs, sde.nemo.command\n"
            "bad = [m for m in ('torch', 'nemo', 'librosa') if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO)
    assert r.returncode == 0, r.stderr


def test_the_command_imports_no_table_library():
    """`sde transcribe --help` stays fast: the command's module brings neither pandas nor Arrow."""
    code = ("import sys, sde.nemo.command\n"
            "print([m for m in ('pandas', 'pyarrow', 'duckdb') if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)


# ------------------------------------------------------------------------------------------------
# CLI usage errors (no NeMo needed)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shard", "3/2"], "I must be < N"),
        (["--shard", "x"], "is not I/N"),
        (["--device", "gpu"], "auto, cpu, cuda or cuda:N"),
        (["--field", "text"], "would overwrite"),
        (["--batch-size", "0"], "batch-size"),
        (["--merge", "--shard", "0/2"], "do not combine it with --shard"),
    ],
)
def test_cli_usage_errors(manifest, args, message):
    r = CliRunner().invoke(transcribe_command, [str(manifest), *args])
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_cli_data_errors(tmp_path, manifest):
    r = CliRunner().invoke(transcribe_command, [str(tmp_path / "missing.json")])
    assert r.exit_code == 1 and "manifest not found" in r.output
    r = CliRunner().invoke(transcribe_command, [str(manifest), "--model", "m.nemo", "--merge"])
    assert r.exit_code == 1 and "no shard files" in r.output and "--shard I/N" in r.output
    r = CliRunner().invoke(transcribe_command, [str(manifest), "--out", str(manifest)])
    assert r.exit_code == 2 and "refusing to overwrite the input manifest" in r.output  # as export says it
    bad = tmp_path / "bad.json"
    bad.write_text('{"audio_filepath": "a.wav", "duration": 1}\n{"duration": 2}\n')
    r = CliRunner().invoke(transcribe_command, [str(bad), "--model", "m.nemo"])
    assert r.exit_code == 1 and 'bad.json:2: missing field "audio_filepath"' in r.output
    assert "Traceback" not in r.output


def test_cli_help():
    r = CliRunner().invoke(transcribe_command, ["--help"])
    assert r.exit_code == 0
    for text in ("--shard I/N", "--merge", "--no-amp", "stt_en_fastconformer_hybrid_large_pc", 'sde[nemo]'):
        assert text in r.output


# ------------------------------------------------------------------------------------------------
# With NeMo: the tiny model on CPU


@pytest.mark.nemo
def test_transcribe_manifest(manifest, tiny_nemo, tmp_path, monkeypatch):
    out = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "out", device="cpu", batch_size=2,
                              progress=False)
    assert out == tmp_path / "out"  # a file name without .json is taken as given
    src, got = read_jsonl(manifest), read_jsonl(out)
    assert len(got) == len(src) == 5
    for a, b in zip(src, got):
        assert {k: v for k, v in b.items() if k != "pred_text"} == a
        assert list(b)[-1] == "pred_text" and isinstance(b["pred_text"], str)
        assert set(b["pred_text"]) <= set(LABELS)
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.tmp"))
    # default name in the current directory (never beside the data); another field name
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    out2 = transcribe_manifest(manifest, str(tiny_nemo), field="pred_text_tiny", device="cpu", progress=False)
    assert out2 == workdir / "data_tiny_ctc.json"
    assert [r["pred_text_tiny"] for r in read_jsonl(out2)] == [r["pred_text"] for r in got]


@pytest.mark.nemo
def test_offset_segments_reach_the_model_as_segments(manifest, tiny_model, spy, audio_dir, tmp_path):
    _, dur = audio_dir
    progress = []
    out = transcribe_manifest(manifest, tiny_model, out=tmp_path / "o.json", device="cpu", batch_size=8,
                              progress=False, on_progress=lambda done, total: progress.append((done, total)))
    assert progress[0] == (0, 5) and progress[-1] == (5, 5)
    assert len(spy) == 1
    lengths = sorted(a.shape[0] for a in spy[0])
    expected = sorted([round(dur["one.wav"] * SR), round(dur["two.wav"] * SR), round(dur["three.wav"] * SR),
                       int(1.1 * SR), int(1.6 * SR)])
    assert all(abs(a - b) <= 2 for a, b in zip(lengths, expected)), (lengths, expected)
    assert [a.shape[0] for a in spy[0]] == sorted((a.shape[0] for a in spy[0]), reverse=True)  # by duration
    # the same predictions through the in-process API, in input order
    rows = read_jsonl(out)
    refs = [(str(manifest.parent / r.get("audio_filepath", r.get("audio_filename"))), r.get("offset", 0.0),
             r["duration"] if "offset" in r else None) for r in rows]
    assert transcribe_segments(refs, tiny_model, batch_size=8, device="cpu") == [r["pred_text"] for r in rows]


@pytest.mark.nemo
def test_resume_after_interruption(manifest, tiny_nemo, tiny_model, spy, tmp_path):
    full = transcribe_manifest(manifest, tiny_model, out=tmp_path / "full.json", device="cpu", batch_size=2,
                               progress=False)
    spy.clear()
    out = tmp_path / "resumed.json"
    polls = []

    def stop_after_first_batch() -> bool:
        polls.append(1)
        return len(polls) > 1

    with pytest.raises(TranscribeCancelled, match="after 2 of 5") as info:
        transcribe_manifest(manifest, tiny_model, out=out, device="cpu", batch_size=2, progress=False,
                            should_stop=stop_after_first_batch)
    partial = Path(str(out) + ".partial")
    assert info.value.partial == partial and partial.exists() and not out.exists()
    lines = read_jsonl(partial)
    assert lines[0]["manifest"] == str(manifest.resolve()) and lines[0]["model"] == str(tiny_nemo)
    assert len(lines) == 3 and len(spy) == 1
    with partial.open("a") as f:
        f.write('{"i": 4, "p": "tor')  # killed mid-write: the torn line is ignored
    spy.clear()
    assert transcribe_manifest(manifest, tiny_model, out=out, device="cpu", batch_size=2, progress=False) == out
    assert sum(len(c) for c in spy) == 3  # only what was left
    assert out.read_bytes() == full.read_bytes()
    assert not partial.exists()


@pytest.mark.nemo
def test_stale_checkpoint_is_ignored(manifest, tiny_model, spy, tmp_path):
    out = tmp_path / "o.json"
    Path(str(out) + ".partial").write_text('{"sde_partial": 1, "manifest": "other.json"}\n{"i": 0, "p": "x"}\n')
    transcribe_manifest(manifest, tiny_model, out=out, device="cpu", batch_size=8, progress=False)
    assert sum(len(c) for c in spy) == 5
    assert "x" not in [r["pred_text"] for r in read_jsonl(out)]


@pytest.mark.nemo
def test_shards_and_merge_equal_single_run(manifest, tiny_model, tmp_path):
    single = transcribe_manifest(manifest, tiny_model, out=tmp_path / "single.json", device="cpu", batch_size=2,
                                 progress=False)
    out = tmp_path / "sharded.json"
    shards = [transcribe_manifest(manifest, tiny_model, out=out, device="cpu", batch_size=2, progress=False,
                                  shard=(i, 2)) for i in (1, 0)]
    assert sorted(p.name for p in shards) == ["sharded.shard0of2.json", "sharded.shard1of2.json"]
    assert len(read_jsonl(shards[1])) == 3 and len(read_jsonl(shards[0])) == 2
    merged = merge_shards(find_shards(out), out, manifest=manifest)
    assert merged.read_bytes() == single.read_bytes()
    # shards of another manifest are refused
    other = tmp_path / "other.json"
    other.write_text("\n".join(manifest.read_text().splitlines()[::-1]) + "\n")
    with pytest.raises(TranscribeError, match="does not match"):
        merge_shards(find_shards(out), tmp_path / "x.json", manifest=other)


@pytest.fixture
def hub_answers(monkeypatch):
    """A model hub that answers (a socket listening here): NeMo's own download path is taken, as
    on a machine online, whatever this one's network."""
    import socket

    from sde.nemo import hubs

    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setattr(hubs, "HUBS", (("127.0.0.1", server.getsockname()[1]),))
        yield


@pytest.mark.nemo
def test_load_model_errors(nemo_asr, tmp_path, hub_answers):
    from sde.nemo.model import load_model

    with pytest.raises(TranscribeError, match="model file not found: .*missing.nemo"):
        load_model(tmp_path / "missing.nemo", "cpu")
    with pytest.raises(TranscribeError, match="unknown NeMo pretrained model 'no_such_model_xyz'"):
        load_model("no_such_model_xyz", "cpu")
    junk = tmp_path / "junk.nemo"
    junk.write_bytes(b"not a tar file")
    with pytest.raises(TranscribeError, match="cannot load the NeMo model"):
        load_model(junk, "cpu")


@pytest.mark.nemo
def test_offline_pretrained_name_suggests_a_local_file(nemo_asr, monkeypatch, hub_answers):
    from sde.nemo.model import load_model

    def offline(*args, **kwargs):
        raise ValueError("Not able to download url right now, please try again.")

    monkeypatch.setattr(nemo_asr.models.ASRModel, "from_pretrained", offline)
    with pytest.raises(TranscribeError, match=r"offline.*--model /path/to/model.nemo"):
        load_model("stt_en_fastconformer_hybrid_large_pc", "cpu")


@pytest.mark.nemo
def test_cli_end_to_end(manifest, tiny_nemo, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.json"
    base = [str(manifest), "--model", str(tiny_nemo), "--out", str(out), "--device", "cpu", "--no-progress"]
    r = runner.invoke(transcribe_command, base + ["--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1] == str(out)
    single = read_jsonl(out)
    for i in range(2):
        r = runner.invoke(transcribe_command, base + ["--shard", f"{i}/2"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(transcribe_command, [str(manifest), "--out", str(tmp_path / "cli.json"), "--merge"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1] == str(out)
    assert read_jsonl(out) == single
    r = runner.invoke(transcribe_command, [str(manifest), "--model", str(tmp_path / "nope.nemo")])
    assert r.exit_code == 1 and "model file not found" in r.output and "Traceback" not in r.output
    pytest.importorskip("torch")
    import torch

    if not torch.cuda.is_available():
        r = runner.invoke(transcribe_command, base + ["--device", "cuda"])
        assert r.exit_code == 1 and "CUDA is not available" in r.output


@pytest.mark.nemo
@pytest.mark.gpu
def test_gpu_amp(manifest, tiny_nemo, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cpu = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "cpu.json", device="cpu", progress=False)
    gpu = transcribe_manifest(manifest, str(tiny_nemo), out=tmp_path / "gpu.json", device="cuda", amp=True,
                              progress=False)
    assert [set(r) for r in read_jsonl(gpu)] == [set(r) for r in read_jsonl(cpu)]
    assert all(isinstance(r["pred_text"], str) for r in read_jsonl(gpu))


@pytest.mark.nemo
def test_missing_audio_names_the_manifest_line(tiny_model, audio_dir, tmp_path):
    d, _ = audio_dir
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"audio_filepath": str(d / "one.wav"), "duration": 1.0, "text": "a"}) + "\n"
                 + json.dumps({"audio_filepath": "gone.wav", "duration": 9.0, "text": "b"}) + "\n")
    said: list[str] = []
    out = transcribe_manifest(m, tiny_model, out=tmp_path / "o.json", device="cpu", progress=False, warn=said.append)
    assert len(said) == 1 and re.search(r"m\.json:2: audio file not found: .*gone\.wav", said[0])
    assert ["pred_text" in r for r in read_jsonl(out)] == [True, False]  # the rest is transcribed
