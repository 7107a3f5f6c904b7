#!/usr/bin/env python3
"""Regenerate the demo dataset shipped in the package (sde/demo/).

    python scripts/make_demo.py [--out sde/demo]

Speech is synthesised with espeak-ng (apt: espeak-ng), resampled to 16 kHz mono and stored as FLAC.
References and the two hypotheses are handcrafted so the error-analysis pages have realistic
material: model A (`pred_text`, spoken-form numbers, ~13% WER) and model B (`pred_text_conformer`,
written-form, ~6% WER, yet worse than A on a few utterances). Everything is deterministic except the
waveforms themselves, which may differ slightly between espeak-ng versions.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
# Every file and segment length is a whole number of milliseconds, so `offset` and `duration`
# written with 3 decimals are exact sample positions.
MS = SR // 1000

# speaker id -> (espeak-ng voice, lang)
SPEAKERS = {
    "anna": ("en-us+f3", "en-US"),
    "ben": ("en-us+m3", "en-US"),
    "carol": ("en-us+f2", "en-US"),
    "david": ("en-gb+m1", "en-GB"),
    "emily": ("en-gb+f4", "en-GB"),
    "frank": ("en-gb-x-rp+m5", "en-GB"),
}

# (speaker, reference, model A hypothesis, model B hypothesis)
UTTERANCES: list[tuple[str, str, str, str]] = [
    ("ben", "the quick brown fox jumps over the lazy dog",
     "the quick brown fox jumps over the lazy dog",
     "the quick brown fox jumps over the lazy dog"),
    ("anna", "please call stella and ask her to bring these things with her from the store",
     "please call stella ask her to bring these things with her from the store",
     "please call stella and ask her to bring these things with her from the store"),
    ("emily", "The meeting was moved to Thursday afternoon.",
     "The meeting was moved to Thursday after noon.",
     "The meeting was moved to Thursday afternoon."),
    ("carol", "she sold the house in 1999 and moved to the coast",
     "she sold the house in nineteen ninety nine and moved to the coast",
     "she sold the house in 1999 and moved to the cost"),
    ("ben", "turn left at the next light",
     "turn left at the next night",
     "turn left at the next light"),
    ("anna", "the ticket costs 25 dollars if you buy it online",
     "the ticket costs twenty five dollars if you buy it on line",
     "the ticket cost 25 dollars if you buy it online"),
    ("carol", "I don't think we have enough time to finish the report today",
     "I don't think we have enough time to finish the report today",
     "I do not think we have enough time to finish the report today"),
    ("frank", "how are you",
     "how are you",
     "how are you"),
    ("david", "a large flock of birds flew south before the first snow of winter",
     "a large flock of birds flu south before the first snow of winter",
     "large flock of birds flew south before the first snow of winter"),
    ("anna", "Can you send me the slides after the call?",
     "Can you send me the slides after the car?",
     "Can you send me the slides after the call?"),
    ("david", "the train to london leaves from platform 9 at half past seven",
     "the train to london leaves from platform nine at half past seven",
     "the train to london leave from platform 9 at half past seven"),
    ("ben", "we need to buy milk eggs bread and some fresh fruit",
     "we need to by milk eggs bread and um some fresh fruit",
     "we need to buy milk eggs bread and some fresh fruit"),
    ("emily", "the weather forecast says it will rain all weekend",
     "the weather for cast says it will rain all weekend",
     "the weather forecast says it will rain all weekend"),
    ("frank", "my grandmother grew up on a small farm near the river",
     "my grandmother grew up on a small farm near the liver",
     "my grand mother grew up on a small farm near the river"),
    ("carol", "thank you",
     "thank you",
     "thank you"),
    ("david", "after the long and difficult winter the villagers gathered in the town square "
              "to celebrate the return of spring with music food and dancing",
     "after a long and difficult winter the villages gathered in the town square "
     "to celebrate the return of spring with music food dancing",
     "after the long and difficult winter the villagers gathered in the towns square "
     "to celebrate the return of spring with music food and dancing"),
    ("emily", "The results were published in March 2021.",
     "The results were published in March twenty twenty one.",
     "The results were published in March 2021."),
    ("ben", "open the window it is getting warm in here",
     "open the window it's getting warm in here",
     "open a window it is getting warm in here"),
    ("anna", "he plays the piano every evening after dinner",
     "he plays the piano every evening after dinner",
     "he plays piano every evening after dinner"),
    ("frank", "the children were laughing and running around the garden",
     "the children were laughing and running round the garden",
     "the children were laughing and running around the garden"),
    ("carol", "could you repeat the last part of the question please",
     "could you uh repeat the last part of a question please",
     "could you repeat the last part of the questions please"),
    ("emily", "the library closes at 8 on weekdays",
     "the library closes at eight on weekdays",
     "the library closes at 8 on week days"),
    ("anna", "Our new office is on the third floor, next to the elevators.",
     "Our new office is on the third floor, next to the elevator.",
     "Our new office is on the third floor, next to the elevators."),
    ("david", "she reads a chapter every night before going to sleep",
     "she read a chapter every night before going to sleep",
     "she reads a chapter every night before going to sleep"),
    ("ben", "the engineers tested the bridge for three weeks before it opened",
     "the engineer tested the bridge for three weeks before it opened",
     "the engineers tested the bridge for three weeks before it open"),
    ("frank", "put the red book back on the top shelf",
     "put the read book back on top shelf",
     "put the red book back on the top shelf"),
    ("carol", "the new policy will take effect at the start of next year",
     "the new policy will take affect at the start of next year",
     "the new policy will take affect at the start of the next year"),
    ("emily", "bring a jacket because it gets cold by the lake at night",
     "bring the jacket because it gets cold by the lake at night",
     "bring a jacket because it gets cold by the lake at night"),
]

# Two sentences spoken in one recording, each given its own line with offset and duration.
LONG_SESSION = (
    "david",
    [
        ("good morning everyone and welcome to the weekly team meeting",
         "good morning everyone welcome to the weekly teen meeting",
         "good morning everyone and welcome to the weekly team meeting"),
        ("first let us review the action items from last week",
         "first let's review the action items from last week",
         "first let us review the action item from last week"),
    ],
)
LEAD_S, GAP_S, TAIL_S = 0.5, 0.7, 0.5


def synthesise(text: str, voice: str, speed: int, tmp: Path) -> np.ndarray:
    """espeak-ng -> float32 mono at 16 kHz, leading/trailing silence trimmed to ~0.15 s."""
    import librosa

    wav = tmp / "tts.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
    audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    audio = librosa.resample(audio, orig_sr=sr, target_sr=SR, res_type="soxr_hq")
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    pad = int(0.15 * SR)
    if loud.size:
        audio = audio[max(0, loud[0] - pad): loud[-1] + pad]
    return pad_to_ms(audio)


def pad_to_ms(audio: np.ndarray) -> np.ndarray:
    extra = (-len(audio)) % MS
    return np.concatenate([audio, np.zeros(extra, dtype=audio.dtype)]) if extra else audio


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)), dtype=np.float32)


def write_flac(path: Path, audio: np.ndarray) -> None:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0.97:  # never clip
        audio = audio * (0.97 / peak)
    sf.write(path, audio, SR, format="FLAC", subtype="PCM_16", compression_level=1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "sde" / "demo")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found: install it (apt-get install espeak-ng)", file=sys.stderr)
        return 1

    out: Path = args.out
    audio_dir = out / "audio"
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    audio_dir.mkdir(parents=True)
    rng = random.Random(20240611)
    rows: list[dict] = []

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        long_index = 14  # where the long-session pair sits in the manifest
        items: list[tuple] = [("single", u) for u in UTTERANCES]
        items.insert(long_index, ("long", LONG_SESSION))
        n = 0
        for kind, item in items:
            if kind == "single":
                speaker, ref, hyp_a, hyp_b = item
                voice, lang = SPEAKERS[speaker]
                n += 1
                audio = synthesise(ref, voice, rng.randint(140, 180), tmp)
                rel = f"audio/utt_{n:03d}.flac"
                write_flac(out / rel, audio)
                rows.append({
                    "audio_filepath": rel,
                    "duration": round(sf.info(out / rel).duration, 3),
                    "text": ref, "pred_text": hyp_a, "pred_text_conformer": hyp_b,
                    "speaker": speaker, "lang": lang,
                })
            else:
                speaker, sentences = item
                voice, lang = SPEAKERS[speaker]
                rel = "audio/long_session.flac"
                parts = [silence(LEAD_S)]
                bounds = []
                pos = len(parts[0])
                for i, (ref, _, _) in enumerate(sentences):
                    if i:
                        parts.append(silence(GAP_S))
                        pos += len(parts[-1])
                    seg = synthesise(ref, voice, rng.randint(140, 180), tmp)
                    bounds.append((pos, len(seg)))
                    parts.append(seg)
                    pos += len(seg)
                parts.append(silence(TAIL_S))
                write_flac(out / rel, np.concatenate(parts))
                for (ref, hyp_a, hyp_b), (start, length) in zip(sentences, bounds):
                    rows.append({
                        "audio_filepath": rel,
                        "offset": round(start / SR, 3),
                        "duration": round(length / SR, 3),
                        "text": ref, "pred_text": hyp_a, "pred_text_conformer": hyp_b,
                        "speaker": speaker, "lang": lang,
                    })

    manifest = out / "manifest.json"
    with open(manifest, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    hours = sum(r["duration"] for r in rows) / 3600
    print(f"wrote {manifest} ({len(rows)} utterances, {hours * 60:.1f} min of audio, "
          f"{size / 1e6:.2f} MB in {out})")
    try:
        import jiwer

        refs = [r["text"] for r in rows]
        for field in ("pred_text", "pred_text_conformer"):
            print(f"  {field}: WER {100 * jiwer.wer(refs, [r[field] for r in rows]):.1f}%")
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
