"""Benchmark `sde transcribe`: the local engine vs the Ray engine on this machine, tiny NeMo model.

    python benchmarks/bench_transcribe.py                       # 2,000 utterances
    python benchmarks/bench_transcribe.py --utterances 500 --batch-size 8

The model is the test suite's tiny untrained CTC model (~20k parameters, built here and saved as a
.nemo file), so the numbers measure sde's pipeline (manifest reading, audio decoding and
resampling, batching, the part file, Ray's scheduling and transfers), not a real model's compute:
on a GPU cluster the model dominates and the Ray engine scales with the number of GPUs. The audio
is espeak-ng speech (8 phrases, 1-3 s, 16 kHz), repeated to --utterances manifest lines.

For each engine and worker count: wall time of the whole command (start-up included: Ray's
local instance, NeMo's import in each actor) and the steady rate from the first finished batch to
the last, in utterances/s and RTFx (audio seconds per wall second). The local engine runs twice:
with torch's default threads and with one thread, as each Ray actor runs (on a machine busy with
other work, torch's spinning threads can make the default several times slower). Prints a
markdown table; all outputs must be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sde.nemo.jobs import transcribe_manifest  # noqa: E402
from sde.nemo.ray_engine import RayOptions  # noqa: E402

SR = 16000
LABELS = list(" abcdefghijklmnopqrstuvwxyz'")
PHRASES = [
    "hello world", "speech data explorer", "good morning", "the quick brown fox jumps",
    "over the lazy dog", "one two three four five six", "transcription on a cluster", "resume where it stopped",
]


def speak(text: str, path: Path) -> float:
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    y, sr = sf.read(raw, dtype="float32")
    raw.unlink()
    import soxr

    y = soxr.resample(y, sr, SR, quality="HQ")
    sf.write(path, y, SR, subtype="PCM_16")
    return len(y) / SR


def tiny_model(path: Path) -> Path:
    """The suite's tiny CTC model (tests/conftest.py: tiny_nemo), saved as a .nemo file."""
    import nemo.collections.asr as nemo_asr
    import torch
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "sample_rate": SR, "labels": LABELS,
        "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                         "sample_rate": SR, "features": 16, "n_fft": 512, "window_size": 0.025,
                         "window_stride": 0.01, "dither": 0.0},
        "encoder": {"_target_": "nemo.collections.asr.modules.ConvASREncoder", "feat_in": 16, "activation": "relu",
                    "conv_mask": True,
                    "jasper": [{"filters": 32, "repeat": 1, "kernel": [11], "stride": [2], "dilation": [1],
                                "dropout": 0.0, "residual": False, "separable": True}]},
        "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": 32,
                    "num_classes": len(LABELS), "vocabulary": LABELS},
        "decoding": {"strategy": "greedy_batch"},
    })
    torch.manual_seed(0)
    nemo_asr.models.EncDecCTCModel(cfg=cfg).save_to(str(path))
    return path


def make_manifest(folder: Path, n: int) -> tuple[Path, float]:
    durations = [speak(text, folder / f"p{k}.wav") for k, text in enumerate(PHRASES)]
    manifest = folder / "m.json"
    with manifest.open("w", encoding="utf-8") as f:
        for i in range(n):
            k = i % len(PHRASES)
            f.write(json.dumps({"audio_filepath": f"p{k}.wav", "duration": round(durations[k], 3),
                                "text": PHRASES[k]}) + "\n")
    return manifest, sum(durations[i % len(PHRASES)] for i in range(n))


def run(manifest: Path, model: Path, out: Path, engine: str, batch_size: int, workers: int | None) -> dict:
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    transcribe_manifest(manifest, str(model), out=out, device="cpu", batch_size=batch_size, progress=False,
                        engine=engine, ray=RayOptions(workers=workers) if engine == "ray" else None,
                        on_progress=lambda done, total: marks.append((time.perf_counter(), done)))
    wall = time.perf_counter() - start
    first = next((t, d) for t, d in marks if d > 0)  # the first finished batch: start-up is over
    steady_s = max(marks[-1][0] - first[0], 1e-9)
    return {"wall": wall, "steady_utts": (marks[-1][1] - first[1]) / steady_s, "steady_s": steady_s,
            "done": marks[-1][1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sde-bench-transcribe-") as tmp:
        folder = Path(tmp)
        model = tiny_model(folder / "tiny.nemo")
        manifest, audio_s = make_manifest(folder, args.utterances)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"{args.utterances} utterances, {audio_s / 60:.1f} min of audio, batch size {args.batch_size}, "
              f"{cpus} CPUs\n")
        print("| engine | model workers | torch threads each | wall (start-up incl.) | utterances/s (wall) | "
              "steady utterances/s | steady RTFx |")
        print("|---|---|---|---|---|---|---|")
        outputs = []
        import torch

        default_threads = torch.get_num_threads()
        # local: torch's default threads (one per core), then one thread, as each Ray actor has
        # (Ray sets OMP_NUM_THREADS to the actor's 1 CPU); Ray: one model actor per CPU but one
        # (each actor holds its CPU; tasks decode audio on the rest)
        runs = [("local", None, default_threads), ("local", None, 1)]
        runs += [("ray", w, 1) for w in range(1, max(2, cpus))]
        for engine, workers, threads in runs:
            torch.set_num_threads(threads)
            out = folder / f"out_{engine}_{workers}_{threads}.json"
            r = run(manifest, model, out, engine, args.batch_size, workers)
            outputs.append(out.read_bytes())
            per_utt_audio = audio_s / args.utterances
            print(f"| {engine} | {workers or 1} | {threads} | {r['wall']:.1f} s | {args.utterances / r['wall']:.0f} | "
                  f"{r['steady_utts']:.0f} | {r['steady_utts'] * per_utt_audio:.0f} |", flush=True)
        torch.set_num_threads(default_threads)
        print(f"\noutputs identical: {all(o == outputs[0] for o in outputs)}")


if __name__ == "__main__":
    main()
