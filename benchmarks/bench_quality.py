"""Benchmark the data-quality checks (sde.quality).

    python benchmarks/bench_quality.py                          # 1M-row table, 60 VAD files
    python benchmarks/bench_quality.py --rows 100000 --vad-files 20

1. Speech activity (Silero VAD) over espeak-ng utterances (~4 s of speech with silence around
   it, 22.05 kHz WAV), 1 and 2 worker processes: seconds of audio per second of wall time, per
   core. Target: ≥ 50× real time per core. Also all four measures (vad, hash, loudness, levels)
   from one read.
2. Text duplicates on a generated table of --rows utterances (random 5–20-word sentences over a
   20k-word vocabulary; 5% exact copies with other case/punctuation, 1% one-character edits):
   exact (after normalisation), and with near-duplicates (max_edits=2). Target: 1M ≤ 60 s.
3. Suspicious columns (references + one hypothesis) and per-speaker phoneme histograms over the
   same table; the columns sde computes on first use (duplicates + suspicious, what
   sde.quality.apply.ensure_quality_columns runs) and the /api/tts report (1000 speakers).
4. The augmentation preview (sde.quality.augment) of a 10 s and a 30 s (the bound) utterance at
   16 kHz: each effect and the whole chain.

Prints markdown tables with wall and CPU seconds (CPU time is the fair number on a shared machine).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sde.quality.duplicates import duplicate_columns, duplicate_groups, text_duplicate_groups  # noqa: E402
from sde.quality.phonemes import phoneme_histograms  # noqa: E402
from sde.quality.segments import measure_segments  # noqa: E402
from sde.quality.suspicious import suspicious_columns  # noqa: E402
from sde.quality.tts import tts_report  # noqa: E402
from tests.quality_kit import padded, speak, write  # noqa: E402

SENTENCES = [
    "the quick brown fox jumps over the lazy dog and then it runs far away",
    "please call stella and ask her to bring these things with her from the store",
    "six spoons of fresh snow peas five thick slabs of blue cheese and maybe a snack",
    "we also need a small plastic snake and a big toy frog for the kids",
]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker pools are joined when
    measure_segments returns): unlike wall time, not inflated when other jobs share the cores."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def vad_table(files: int, directory: Path) -> tuple[pd.DataFrame, float]:
    clips = [speak(s) for s in SENTENCES]
    rows, seconds = [], 0.0
    for i in range(files):
        y, sr = clips[i % len(clips)]
        x = padded(y, sr, 0.5 + 0.1 * (i % 5), 0.3 + 0.1 * (i % 3))
        path = write(directory / f"u{i}.wav", x, sr)
        rows.append({"id": i, "audio_path": str(path), "offset": 0.0, "duration": len(x) / sr})
        seconds += len(x) / sr
    return pd.DataFrame(rows), seconds


def bench_vad(files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        table, seconds = vad_table(files, Path(tmp))
        # Load the model and pyloudnorm, warm the page cache: the timed runs measure the steady state.
        measure_segments(table, ("vad", "hash", "loudness", "levels"), workers=1)
        print(f"\n### Speech activity: {files} files, {seconds:.0f} s of audio (22.05 kHz)\n")
        print("| measures | workers | wall s | × real time | CPU s | × real time per CPU second |")
        print("|---|---|---|---|---|---|")
        for kinds in (("vad",), ("vad", "hash", "loudness", "levels")):
            for workers in (1, 2):
                c0, t0 = cpu_seconds(), time.perf_counter()
                measure_segments(table, kinds, workers=workers)
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
                print(f"| {'+'.join(kinds)} | {workers} | {wall:.2f} | {seconds / wall:.0f} | "
                      f"{cpu:.2f} | {seconds / cpu:.0f} |")


def text_table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i:05d}" for i in range(20000)])
    lengths = rng.integers(5, 21, rows)
    words = vocab[rng.zipf(1.3, lengths.sum()) % len(vocab)]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(words[bounds[i]:bounds[i + 1]]) for i in range(rows)]
    copies = rng.choice(rows, rows // 20, replace=False)
    for i in copies:
        texts[i] = texts[rng.integers(rows)].capitalize() + "."
    for i in rng.choice(rows, rows // 100, replace=False):
        t = texts[rng.integers(rows)]
        k = rng.integers(len(t))
        texts[i] = t[:k] + "x" + t[k + 1:]
    hyps = [t if i % 10 else t + " thank you thank you thank you" for i, t in enumerate(texts)]
    return pd.DataFrame({"id": np.arange(rows), "text": texts, "pred_text": hyps,
                         "duration": lengths * 0.35 + rng.uniform(0.2, 1.0, rows),
                         "speaker": [f"spk{i % 1000}" for i in range(rows)]})


def timed(label: str, fn) -> object:
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = fn()
    print(f"| {label} | {time.perf_counter() - t0:.1f} | {cpu_seconds() - c0:.1f} |")
    return out


def bench_text(rows: int) -> None:
    t0 = time.perf_counter()
    table = text_table(rows)
    print(f"\n### Text checks on {rows:,} utterances (table generated in {time.perf_counter() - t0:.1f} s)\n")
    print("| step | wall s | CPU s |")
    print("|---|---|---|")
    exact = timed("text duplicates, exact after normalisation", lambda: text_duplicate_groups(table["text"]))
    near = timed("text duplicates, near (max_edits=2)",
                 lambda: text_duplicate_groups(table["text"], max_edits=2))
    with_groups = table.assign(**duplicate_columns(table))
    timed("duplicate groups: first page of 50", lambda: duplicate_groups(with_groups, "text", limit=50))
    timed("duplicate groups: all", lambda: duplicate_groups(with_groups, "text"))
    timed("suspicious columns (ref + 1 hypothesis)", lambda: suspicious_columns(table, ["pred_text"]))
    # Real words for espeak: the generated w00001 tokens would be read out as letters and digits.
    real = table.assign(text=[SENTENCES[i % 4] for i in range(rows)])
    timed("phoneme histograms (1000 speakers, en)",
          lambda: phoneme_histograms(real["text"], real["speaker"], "en"))
    timed("quality columns on first use (duplicates + suspicious, 1 hypothesis)",
          lambda: (duplicate_columns(table), suspicious_columns(table, ["pred_text"])))
    timed("/api/tts report (1000 speakers, en, phoneme counts)",
          lambda: tts_report(real, "en", counts=True))
    print(f"\nexact groups: {exact.nunique():,} ({exact.notna().sum():,} utterances); "
          f"with near-duplicates: {near.nunique():,} ({near.notna().sum():,} utterances)")


def bench_augment() -> None:
    from sde.quality.augment import AugmentParams, augment

    print("\n### Augmentation preview (16 kHz, seeded)\n")
    print("| chain | 10 s: CPU ms | 30 s: CPU ms |")
    print("|---|---|---|")
    clip, sr = speak(" ".join(SENTENCES), sample_rate=16000)
    chains = [("speed 1.1", AugmentParams(speed=1.1)), ("time stretch 0.9", AugmentParams(stretch=0.9)),
              ("synthetic room (RT60 0.4 s)", AugmentParams(rir="synthetic")),
              ("white noise at 10 dB", AugmentParams(noise="white", snr_db=10)),
              ("pink noise at 10 dB", AugmentParams(noise="pink", snr_db=10)),
              ("all four", AugmentParams(speed=1.1, stretch=0.9, rir="synthetic", noise="pink", snr_db=10))]
    augment(clip, sr, chains[-1][1])  # first-call imports (scipy.signal, soxr) out of the timing
    for label, params in chains:
        cells = []
        for seconds in (10, 30):
            x = np.resize(clip, seconds * sr)
            t0 = time.process_time()  # one thread: CPU time is the fair number on a shared machine
            for _ in range(3):
                augment(x, sr, params)
            cells.append(f"{(time.process_time() - t0) / 3 * 1000:.0f}")
        print(f"| {label} | {cells[0]} | {cells[1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--vad-files", type=int, default=60)
    parser.add_argument("--only", choices=("vad", "text", "augment"), default=None, help="run one part")
    args = parser.parse_args()
    if args.only in (None, "vad"):
        bench_vad(args.vad_files)
    if args.only in (None, "text"):
        bench_text(args.rows)
    if args.only in (None, "augment"):
        bench_augment()


if __name__ == "__main__":
    main()
