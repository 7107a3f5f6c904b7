#!/usr/bin/env python3
"""Seeded generator of realistic synthetic NeMo manifests, for benchmarks and load tests.

    python benchmarks/make_manifest.py OUT.json --utterances 1000000 --seed 0 \
        [--hypotheses 1|2] [--mean-words 12 --max-words 40] [--audio-dir DIR --real-audio N]

Defaults (mean 12 words): 1M lines = ~288 MB with one hypothesis, ~374 MB with two, in ~7-10 s.
`--mean-words 31 --max-words 100` gives ~505 MB for 1M lines with one hypothesis (long,
LibriSpeech-like utterances: the size the performance targets in DESIGN.md were measured on).

Each line: audio_filepath (audio/spk0123/utt_0000123.wav), duration, text, pred_text
[, pred_text_b], speaker, lang, snr.
- Text: words drawn from a Zipfian vocabulary (50k types, s=1.1): real common English words at the
  top ranks, pronounceable pseudo-words below (no word list ships with the machine); lengths
  2..max-words.
- Durations follow ~2.5 words/s with per-utterance speaking-rate noise.
- pred_text ~12% WER (pred_text_b ~9%): mostly substitutions (a fixed similar-spelt confusion
  partner most of the time), some deletions and insertions (fillers, short words); rarer words,
  low-SNR utterances and some speakers err more, so breakdowns have something to show.
- Output is a pure function of (seed, mean words, hypotheses): generated in fixed-size chunks, each
  seeded from (seed, chunk index), so the first N lines of a bigger run equal an N-line run.
- --real-audio N writes N real 16 kHz WAV files (harmonic "voiced" tones + noise at the line's SNR,
  exactly the line's duration) under --audio-dir (default: OUT's folder/audio) and points the first
  N lines at them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 50_000
VOCAB_SIZE = 50_000
ZIPF_S = 1.1
SPEAKERS = 500
SR = 16_000

# The most frequent English words, in rough frequency order: the top of the Zipf curve.
COMMON = """the of and to a in is that it was for on are as with he be at by i this had not
but from or have an they which you one were all her she there would their we him been has when
who will no more if out so said what up its about than into them can only other new some could
time these two may then do first any my now such like our over man me even most made after also
did many before must through back years where much your way well down should because each just
those people how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us great old year off
come since against go came right used take three states himself few house use during without again
place american around however home small found thought went say part once general high upon school
every don't does got united left number course war until always away something fact though water
less public put think almost hand enough far took head yet government system better set told
nothing night end why called didn't eyes find going look asked later knew point next city give
group toward young days let room president side social given present several order national
possible rather second face per among form important often things looked early white case john
become large big need four within felt along children saw best church ever least power
development light thing seemed family interest want members mind country area others done turned
although open god service certain kind problem began different door thus help sense means whole
matter perhaps itself york it's times law human line above name example company hands local show
whether five history gave today either act feet across taken past quite anything seen having death
week experience body word half really field am car words already themselves i'm information tell
together college shall money period held keep sure free seems political real behind cannot miss
question air office making brought whose special major heard problems ago became federal moment
study available known result street economic boy position reason change south board individual job
society areas west close turn love community true court force full seem""".split()

# Fillers and short words that ASR models hallucinate, with weights.
INSERTIONS = ["uh", "um", "the", "a", "and", "to", "it", "i", "of", "that", "so", "yeah", "in", "is"]
INSERTION_WEIGHTS = np.array([8, 6, 6, 5, 4, 3, 3, 3, 2, 2, 2, 2, 2, 2], dtype=float)

LANGS = ["en-US", "en-GB", "en-IN", "en-AU"]
LANG_WEIGHTS = np.array([0.55, 0.25, 0.12, 0.08])

# (substitution, deletion, insertion) rates per reference word, before alignment merges some of
# them; calibrated so jiwer's WER lands on the target (see tests/test_demo_data.py).
RATES = {"pred_text": (0.085, 0.0165, 0.013), "pred_text_b": (0.064, 0.012, 0.010)}
PARTNER_SHARE = 0.7  # share of substitutions that use the word's fixed confusion partner

ONSETS = ("b c d f g h j k l m n p r s t v w y z bl br ch cl cr dr fl fr gl gr pl pr sc sh sk sl sm "
          "sn sp st str sw th tr tw wh").split()
ONSET_W = np.array([3 if len(o) == 1 else 1 for o in ONSETS], dtype=float)
VOWELS = "a e i o u a e i o ea ee ai ou oo ie y".split()
VOWEL_W = np.array([3 if len(v) == 1 else 1 for v in VOWELS], dtype=float)
CODAS = "- - - - n r s t l d m ng nd st rt ck sh ll ss nt rd ct".split()


def build_vocabulary(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (words, partners): VOCAB_SIZE words by frequency rank, and each word's confusion partner."""
    rng = np.random.default_rng([seed, 1])
    words: list[str] = list(dict.fromkeys(COMMON))
    seen = set(words)
    n_new = VOCAB_SIZE - len(words)
    # Rarer words are longer: 1 syllable near the top, up to 4 in the tail.
    ranks = np.arange(len(words), VOCAB_SIZE)
    mean_syll = 1.2 + 2.0 * np.log(ranks + 1) / np.log(VOCAB_SIZE)
    n_syll = np.clip(np.rint(rng.normal(mean_syll, 0.6)), 1, 4).astype(int)
    pool = 8 * n_new
    on = rng.choice(len(ONSETS), pool, p=ONSET_W / ONSET_W.sum())
    vo = rng.choice(len(VOWELS), pool, p=VOWEL_W / VOWEL_W.sum())
    co = rng.choice(len(CODAS), pool)
    k = 0
    for n in n_syll.tolist():
        while True:
            parts = []
            for j in range(n):
                last = j == n - 1
                coda = CODAS[co[k % pool]] if last or rng.random() < 0.3 else "-"
                parts.append(ONSETS[on[k % pool]] + VOWELS[vo[k % pool]] + ("" if coda == "-" else coda))
                k += 1
            w = "".join(parts)
            if w not in seen:
                seen.add(w)
                words.append(w)
                break
    vocab = np.array(words, dtype=object)

    # Confusion partner: a one-edit "sound-alike" (vowel swapped, consonant voiced/devoiced, final
    # s added/dropped). It may be a word of the vocabulary or not (then it is OOV in hypotheses).
    swaps = {"a": "e", "e": "i", "i": "e", "o": "u", "u": "o", "b": "p", "p": "b", "d": "t",
             "t": "d", "g": "k", "k": "g", "v": "f", "f": "v", "s": "z", "z": "s", "m": "n", "n": "m"}
    partners = []
    for w in words:
        r = rng.random()
        if r < 0.25 and len(w) > 2:
            p = w[:-1] if w.endswith("s") else w + "s"
        else:
            idx = [j for j, ch in enumerate(w) if ch in swaps]
            if idx:
                j = idx[int(rng.integers(len(idx)))]
                p = w[:j] + swaps[w[j]] + w[j + 1:]
            else:
                p = w + "s"
        if p == w:
            p = w + "s"
        partners.append(p)
    return vocab, np.array(partners, dtype=object)


def zipf_cdf(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    cdf = np.cumsum(p)
    return cdf / cdf[-1]


class Generator:
    def __init__(self, seed: int, hypotheses: int, mean_words: float = 12.0, max_words: int = 40,
                 speakers: int = SPEAKERS):
        self.speakers = speakers
        self.seed = seed
        self.max_words = max_words
        self.fields = ["pred_text", "pred_text_b"][:hypotheses]
        self.mean_words = mean_words
        self.vocab, self.partners = build_vocabulary(seed)
        self.cdf = zipf_cdf(VOCAB_SIZE, ZIPF_S)
        probs = np.diff(self.cdf, prepend=0.0)
        # Rarer words are harder: error weight grows with log rank, normalised to a token mean of 1.
        w = 0.5 + np.log1p(np.arange(VOCAB_SIZE)) / np.log(VOCAB_SIZE) * 1.5
        self.rank_weight = w / float(np.sum(w * probs))
        n_ins = len(INSERTIONS)
        # Extended table of hypothesis words: vocab, then partners, then insertion words.
        self.table = np.concatenate([self.vocab, self.partners, np.array(INSERTIONS, dtype=object)])
        self.ins_base = 2 * VOCAB_SIZE
        self.ins_p = INSERTION_WEIGHTS / INSERTION_WEIGHTS.sum()
        assert len(self.table) == self.ins_base + n_ins
        # Speakers: lang, difficulty, and how many utterances each has (some talk a lot).
        rng = np.random.default_rng([seed, 2])
        self.spk_lang = rng.choice(len(LANGS), speakers, p=LANG_WEIGHTS)
        self.spk_difficulty = rng.lognormal(0.0, 0.3, speakers)
        self.spk_rate = rng.normal(2.5, 0.35, speakers).clip(1.6, 3.6)
        self.spk_snr = rng.normal(22.0, 5.0, speakers)
        share = rng.lognormal(0.0, 0.8, speakers)
        self.spk_cdf = np.cumsum(share) / share.sum()
        self.spk_names = np.array([f"spk{i:04d}" for i in range(speakers)], dtype=object)

    def chunk(self, index: int, start: int, n: int) -> tuple[list[str], dict]:
        """Lines start..start+n-1 (JSON text with trailing newline) and their numeric columns."""
        # Always draw a full chunk and keep the first n lines: a line depends only on (seed, its
        # position), never on how many lines were asked for.
        rng = np.random.default_rng([self.seed, 100, index])
        keep_n, n = n, CHUNK
        spk = np.searchsorted(self.spk_cdf, rng.random(n), side="right").clip(0, self.speakers - 1)
        # Lengths 2..max_words with a long right tail; mean ~mean_words (a little less when clipped).
        shape = 2.2
        lengths = np.rint(2 + rng.gamma(shape, (self.mean_words - 2) / shape, n)).astype(np.int64).clip(2, self.max_words)
        total = int(lengths.sum())
        ends = np.cumsum(lengths)
        starts = ends - lengths
        ids = np.searchsorted(self.cdf, rng.random(total), side="right").clip(0, VOCAB_SIZE - 1)

        rate = (self.spk_rate[spk] * rng.normal(1.0, 0.12, n)).clip(1.0, 5.0)
        duration = lengths / rate + rng.uniform(0.25, 0.9, n)
        duration = np.round(duration, 3)
        snr = np.round(self.spk_snr[spk] + rng.normal(0.0, 4.0, n), 1).clip(-5.0, 45.0)
        # Noisy utterances and hard speakers err more (mean multiplier ~1).
        utt_mult = self.spk_difficulty[spk] * np.exp(-0.04 * (snr - 22.0))
        utt_mult = utt_mult / 1.05
        tok_mult = np.repeat(utt_mult, lengths) * self.rank_weight[ids]

        ref_words = self.table[ids[: int(ends[keep_n - 1]) if keep_n else 0]].tolist()
        bounds = list(zip(starts[:keep_n].tolist(), ends[:keep_n].tolist()))
        texts = [" ".join(ref_words[a:b]) for a, b in bounds]
        hyps = {}
        for field in self.fields:
            hyps[field] = self._hypothesis(rng, ids, tok_mult, lengths, field, keep_n)

        n = keep_n
        spk, duration, snr = spk[:n], duration[:n], snr[:n]

        spk_l = self.spk_names[spk].tolist()
        lang_l = [LANGS[i] for i in self.spk_lang[spk].tolist()]
        dur_l = duration.tolist()
        snr_l = snr.tolist()
        spk_i = spk.tolist()
        hyp_lists = [hyps[f] for f in self.fields]
        lines = []
        append = lines.append
        if len(hyp_lists) == 1:
            h1 = hyp_lists[0]
            for i in range(n):
                u = start + i
                append(f'{{"audio_filepath": "audio/spk{spk_i[i]:04d}/utt_{u:07d}.wav", '
                       f'"duration": {dur_l[i]}, "text": "{texts[i]}", "pred_text": "{h1[i]}", '
                       f'"speaker": "{spk_l[i]}", "lang": "{lang_l[i]}", "snr": {snr_l[i]}}}\n')
        else:
            h1, h2 = hyp_lists
            for i in range(n):
                u = start + i
                append(f'{{"audio_filepath": "audio/spk{spk_i[i]:04d}/utt_{u:07d}.wav", '
                       f'"duration": {dur_l[i]}, "text": "{texts[i]}", "pred_text": "{h1[i]}", '
                       f'"pred_text_b": "{h2[i]}", "speaker": "{spk_l[i]}", "lang": "{lang_l[i]}", '
                       f'"snr": {snr_l[i]}}}\n')
        return lines, {"duration": duration, "snr": snr, "speaker": spk}

    def _hypothesis(self, rng, ids, tok_mult, lengths, field, keep_n) -> list[str]:
        """The first keep_n lines of a hypothesis with this field's error rates."""
        sub_r, del_r, ins_r = RATES[field]
        total = len(ids)
        u = rng.random(total)
        p_sub = np.minimum(sub_r * tok_mult, 0.9)
        p_del = np.minimum(del_r * tok_mult, 0.9)
        is_sub = u < p_sub
        is_del = (u >= p_sub) & (u < np.minimum(p_sub + p_del, 0.98))
        is_ins = rng.random(total) < ins_r * np.sqrt(tok_mult)

        main = ids.copy()
        sub_idx = np.flatnonzero(is_sub)
        use_partner = rng.random(sub_idx.size) < PARTNER_SHARE
        main[sub_idx[use_partner]] = VOCAB_SIZE + ids[sub_idx[use_partner]]
        other = sub_idx[~use_partner]
        rnd = np.searchsorted(self.cdf, rng.random(other.size), side="right").clip(0, VOCAB_SIZE - 1)
        rnd = np.where(rnd == ids[other], VOCAB_SIZE + rnd, rnd)  # never "substitute" a word by itself
        main[other] = rnd
        ins = self.ins_base + rng.choice(len(INSERTIONS), total, p=self.ins_p)

        pairs = np.stack([main, ins], axis=1).ravel()
        keep = np.stack([~is_del, is_ins], axis=1).ravel()
        out = pairs[keep]
        counts_tok = (~is_del).astype(np.int64) + is_ins
        ends = np.cumsum(np.add.reduceat(counts_tok, np.cumsum(lengths) - lengths))
        starts = np.concatenate([[0], ends[:-1]])[:keep_n]
        ends = ends[:keep_n]
        words = self.table[out[: int(ends[-1]) if keep_n else 0]].tolist()
        return [" ".join(words[a:b]) for a, b in zip(starts.tolist(), ends.tolist())]


def write_real_audio(audio_dir: Path, start_paths: list[tuple[str, float, float]], seed: int) -> None:
    """Write one WAV per (relative path, duration, snr): a voiced-like harmonic tone with a syllabic
    envelope and pitch glide, plus white noise at the given SNR. 16 kHz mono PCM_16."""
    import soundfile as sf

    for k, (rel, dur, snr) in enumerate(start_paths):
        rng = np.random.default_rng([seed, 3, k])
        n = int(round(dur * SR))
        t = np.arange(n) / SR
        f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voiced = sum(np.sin(h * phase) / h for h in range(1, 8))
        envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 6.28)), 0, None)
        signal = voiced * envelope
        p_sig = float(np.mean(signal ** 2)) or 1e-9
        noise = rng.normal(0, np.sqrt(p_sig / 10 ** (snr / 10)), n)
        audio = signal + noise
        audio = (0.5 * audio / (np.max(np.abs(audio)) or 1.0)).astype(np.float32)
        path = audio_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, SR, subtype="PCM_16")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write a seeded synthetic NeMo manifest.")
    ap.add_argument("out", type=Path, help="output manifest (JSONL)")
    ap.add_argument("--utterances", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hypotheses", type=int, choices=(1, 2), default=1,
                    help="1: pred_text (~12%% WER); 2: also pred_text_b (~9%% WER)")
    ap.add_argument("--mean-words", type=float, default=12.0, help="mean words per utterance")
    ap.add_argument("--max-words", type=int, default=40, help="longest utterance, in words")
    ap.add_argument("--audio-dir", type=Path, default=None,
                    help="where --real-audio files go (default: OUT's folder/audio)")
    ap.add_argument("--real-audio", type=int, default=0, metavar="N",
                    help="write N real WAV files and point the first N lines at them")
    ap.add_argument("--speakers", type=int, default=SPEAKERS,
                    help="distinct speakers (names spk0000..; a breakdown by speaker has this many groups)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.utterances < 0 or args.real_audio < 0:
        ap.error("--utterances and --real-audio must be >= 0")
    if args.real_audio > args.utterances:
        ap.error("--real-audio cannot exceed --utterances")
    if args.max_words < 3 or not 3 <= args.mean_words < args.max_words:
        ap.error("need 3 <= --mean-words < --max-words")

    t0 = time.perf_counter()
    gen = Generator(args.seed, args.hypotheses, args.mean_words, args.max_words, args.speakers)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest_dir = out.resolve().parent
    audio_dir = (args.audio_dir or manifest_dir / "audio").resolve()
    # audio_filepath of the real-audio lines: relative to the manifest's folder when possible.
    try:
        prefix = os.path.relpath(audio_dir, manifest_dir).replace(os.sep, "/")
    except ValueError:  # other drive on Windows
        prefix = audio_dir.as_posix()
    wanted_audio: list[tuple[str, float, float]] = []

    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", buffering=1 << 22) as f:
        for index, start in enumerate(range(0, args.utterances, CHUNK)):
            n = min(CHUNK, args.utterances - start)
            lines, cols = gen.chunk(index, start, n)
            m = min(n, max(0, args.real_audio - start))
            for i in range(m):
                rel = f"spk{int(cols['speaker'][i]):04d}/utt_{start + i:07d}.wav"
                wanted_audio.append((rel, float(cols["duration"][i]), float(cols["snr"][i])))
                if prefix != "audio":
                    lines[i] = lines[i].replace(f'"audio/{rel}"', f'"{prefix}/{rel}"', 1)
            f.write("".join(lines))
    os.replace(tmp, out)
    t_manifest = time.perf_counter() - t0
    if wanted_audio:
        write_real_audio(audio_dir, wanted_audio, args.seed)
    if not args.quiet:
        size = out.stat().st_size
        msg = f"wrote {out}: {args.utterances:,} lines, {size / 1e6:.1f} MB in {t_manifest:.1f} s"
        if wanted_audio:
            msg += f"; {len(wanted_audio)} WAV files under {audio_dir}"
        print(msg, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
