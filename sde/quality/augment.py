"""Training augmentation of one utterance, to hear and see before training: speed perturbation,
time stretch, a room impulse response and additive noise at a chosen SNR.

Seeded and reproducible: every random choice (the noise samples, where a noise file starts, the
synthetic impulse response) comes from ``numpy.random.default_rng(seed)``, so the same utterance,
parameters and seed give the same samples on every run (and the same WAV bytes).

The chain runs in NeMo's order for the config :func:`nemo_augmentor_yaml` writes: speed, time
stretch, impulse response, noise. Noise and impulse responses come from the user's folders
(``--noise-dir``, ``--rir-dir``; see :class:`AugmentSources`) or are synthetic: white or pink
noise, and an exponentially decaying noise tail after a direct path (a shoebox room's RT60).

Bounded: only segments up to :data:`MAX_AUGMENT_SECONDS` are processed (the caller refuses longer
ones), noise and impulse files are read up to :data:`MAX_NOISE_SECONDS` / :data:`MAX_RIR_SECONDS`.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AUDIO_EXTENSIONS",
    "AugmentError",
    "AugmentParams",
    "AugmentSources",
    "MAX_AUGMENT_SECONDS",
    "add_noise",
    "augment",
    "nemo_augmentor_config",
    "nemo_augmentor_yaml",
    "pink_noise",
    "reverberate",
    "speed_perturb",
    "synthetic_rir",
    "time_stretch",
]

#: Longest segment the preview processes (time stretch costs ~0.1 s per 10 s of audio).
MAX_AUGMENT_SECONDS = 30.0
MAX_NOISE_SECONDS = 120.0
MAX_RIR_SECONDS = 4.0
MAX_LISTED_FILES = 1000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aiff", ".aif")
SPEED_RANGE = (0.5, 2.0)
SNR_RANGE = (-10.0, 60.0)
RT60_RANGE = (0.05, 2.0)
_STRETCH_N_FFT = 512  # NeMo's TimeStretchPerturbation default
_PEAK = 0.999


class AugmentError(ValueError):
    """Parameters or a noise/impulse file that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class AugmentParams:
    """What to apply. ``noise``: "none", "white", "pink" or "file:NAME" (a file of the noise
    folder); ``rir``: "none", "synthetic" or "file:NAME". ``speed`` resamples (pitch moves with
    it), ``stretch`` changes the tempo only (a phase vocoder); both are rates (>1 is faster)."""

    speed: float = 1.0
    stretch: float = 1.0
    noise: str = "none"
    snr_db: float = 20.0
    rir: str = "none"
    rt60: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, (lo, hi) in (("speed", self.speed, SPEED_RANGE), ("stretch", self.stretch, SPEED_RANGE),
                                      ("snr_db", self.snr_db, SNR_RANGE), ("rt60", self.rt60, RT60_RANGE)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
                raise AugmentError(f"{name} must be a number from {lo:g} to {hi:g}, not {value!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise AugmentError(f"seed must be a whole number from 0 to {2**32 - 1}, not {self.seed!r}")
        if self.noise not in ("none", "white", "pink") and not self.noise.startswith("file:"):
            raise AugmentError(f'noise must be none, white, pink or file:NAME, not "{self.noise}"')
        if self.rir not in ("none", "synthetic") and not self.rir.startswith("file:"):
            raise AugmentError(f'rir must be none, synthetic or file:NAME, not "{self.rir}"')

    @property
    def identity(self) -> bool:
        return self.speed == 1.0 and self.stretch == 1.0 and self.noise == "none" and self.rir == "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AugmentSources:
    """The noise and impulse-response folders (``--noise-dir``, ``--rir-dir``), either optional.

    Files are named by their path relative to the folder; only names from :meth:`files` are ever
    opened, so a request cannot reach outside the folder.
    """

    noise_dir: str | None = None
    rir_dir: str | None = None

    def files(self, kind: str) -> list[str]:
        folder = self.noise_dir if kind == "noise" else self.rir_dir
        return list(_audio_files(folder)) if folder else []

    def path_of(self, kind: str, name: str) -> str:
        folder = self.noise_dir if kind == "noise" else self.rir_dir
        option = "--noise-dir" if kind == "noise" else "--rir-dir"
        if not folder:
            raise AugmentError(f'{kind} file "{name}" asked for, but sde was started without {option} DIR')
        if name not in _audio_files(folder):
            raise AugmentError(f'no {kind} file "{name}" in {folder} (choose one of the files {option} lists)')
        return os.path.join(folder, name)


@functools.lru_cache(maxsize=8)
def _audio_files_cached(folder: str, stamp: int) -> tuple[str, ...]:
    root = Path(folder)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(AUDIO_EXTENSIONS):
                found.append(str((Path(dirpath) / name).relative_to(root)))
                if len(found) >= MAX_LISTED_FILES:
                    return tuple(found)
    return tuple(found)


def _audio_files(folder: str) -> tuple[str, ...]:
    """Audio files under ``folder`` (sorted, at most MAX_LISTED_FILES), re-listed when it changes."""
    try:
        stamp = os.stat(folder).st_mtime_ns
    except OSError:
        return ()
    return _audio_files_cached(str(folder), stamp)


# ---------------------------------------------------------------- the effects


def speed_perturb(samples: np.ndarray, sample_rate: int, rate: float) -> np.ndarray:
    """Resampled so that it plays ``rate`` times faster at the same sample rate (pitch shifts too),
    as NeMo's SpeedPerturbation does."""
    if rate == 1.0 or len(samples) == 0:
        return samples
    import soxr

    return soxr.resample(samples, sample_rate, sample_rate / rate, quality="HQ").astype(np.float32)


def time_stretch(samples: np.ndarray, rate: float) -> np.ndarray:
    """Tempo × ``rate`` at the same pitch: a phase vocoder (Hann STFT with NeMo's n_fft of 512,
    hop n_fft/4; magnitudes interpolated between frames, phases advanced by each bin's measured
    frequency), the method of librosa's ``time_stretch`` that NeMo's TimeStretchPerturbation uses.
    Written here in numpy: librosa's first call costs seconds of imports and JIT compilation."""
    x = np.asarray(samples, dtype=np.float64)
    if rate == 1.0 or len(x) < _STRETCH_N_FFT:
        return samples
    n_fft, hop = _STRETCH_N_FFT, _STRETCH_N_FFT // 4
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    padded = np.pad(x, (n_fft // 2, n_fft // 2 + hop))
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    spec = np.fft.rfft(frames * window, axis=1)
    spec = np.vstack([spec, np.zeros((1, spec.shape[1]), dtype=spec.dtype)])  # t + 1 at the end
    steps = np.arange(0.0, n_frames, rate)
    left = steps.astype(np.int64)
    frac = (steps - left)[:, None]
    mag = (1 - frac) * np.abs(spec[left]) + frac * np.abs(spec[left + 1])
    expected = 2 * np.pi * hop * np.arange(spec.shape[1]) / n_fft
    deviation = np.angle(spec[left + 1]) - np.angle(spec[left]) - expected
    deviation -= 2 * np.pi * np.round(deviation / (2 * np.pi))
    increments = expected + deviation
    phase = np.angle(spec[0]) + np.vstack([np.zeros((1, spec.shape[1])), np.cumsum(increments[:-1], axis=0)])
    out_frames = np.fft.irfft(mag * np.exp(1j * phase), n_fft, axis=1) * window
    y = _overlap_add(out_frames, hop)
    norm = _overlap_add(np.broadcast_to(window ** 2, out_frames.shape), hop)
    y = np.divide(y, norm, out=np.zeros_like(y), where=norm > 1e-8)
    target = int(round(len(x) / rate))
    return y[n_fft // 2:n_fft // 2 + target].astype(np.float32)


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Frames (n, k·hop) placed ``hop`` apart and summed: k strided additions, not n."""
    n, width = frames.shape
    parts = width // hop
    y = np.zeros((n + parts - 1) * hop)
    for k in range(parts):
        y[k * hop:k * hop + n * hop] += frames[:, k * hop:(k + 1) * hop].reshape(-1)
    return y


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power falling 3 dB per octave (white noise shaped by 1/√f)."""
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0  # no DC boost: the first bin keeps the white level
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return (x / (np.sqrt(np.mean(x ** 2)) or 1.0)).astype(np.float32)


def synthetic_rir(sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A room's impulse response: the direct path, then a diffuse tail of noise decaying by 60 dB
    over ``rt60`` seconds, starting after a few milliseconds (the first reflections)."""
    n = max(int(rt60 * sample_rate), 1)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000): amplitude -60 dB at rt60
    tail[: int(0.003 * sample_rate)] = 0.0
    h = 0.3 * tail / (np.sqrt(np.sum(tail ** 2)) or 1.0)
    h[0] = 1.0
    return h.astype(np.float32)


def reverberate(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``samples`` convolved with ``rir`` aligned on its strongest tap (no added delay, like NeMo's
    ``shift_impulse``), same length, same RMS as the dry signal."""
    if len(samples) == 0 or len(rir) == 0:
        return samples
    from scipy.signal import fftconvolve

    start = int(np.argmax(np.abs(rir)))
    wet = fftconvolve(samples.astype(np.float64), rir[start:].astype(np.float64))[: len(samples)]
    dry_rms, wet_rms = _rms(samples), _rms(wet)
    return (wet * (dry_rms / wet_rms if wet_rms > 0 else 1.0)).astype(np.float32)


def add_noise(samples: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``samples`` plus ``noise`` scaled to ``snr_db`` below the signal's power; a noise shorter
    than the signal is looped from a seeded random start, a longer one cut there."""
    if len(samples) == 0 or len(noise) == 0:
        return samples
    start = int(rng.integers(len(noise)))
    reps = -(-(start + len(samples)) // len(noise))
    piece = np.tile(noise, reps)[start:start + len(samples)].astype(np.float64)
    signal_rms, noise_rms = _rms(samples), _rms(piece)
    if signal_rms == 0 or noise_rms == 0:
        return samples
    gain = signal_rms / (noise_rms * 10 ** (snr_db / 20))
    return (samples + gain * piece).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _read_file(path: str, sample_rate: int, max_seconds: float) -> np.ndarray:
    from sde.audio import AudioError, read_segment

    try:
        seg = read_segment(path, 0.0, max_seconds)
    except AudioError as exc:
        raise AugmentError(str(exc)) from None
    x = seg.samples
    if seg.sample_rate != sample_rate and len(x):
        import soxr

        x = soxr.resample(x, seg.sample_rate, sample_rate, quality="HQ")
    return np.asarray(x, dtype=np.float32)


@functools.lru_cache(maxsize=16)
def _file_samples(path: str, stamp: tuple[int, int], sample_rate: int, max_seconds: float) -> np.ndarray:
    return _read_file(path, sample_rate, max_seconds)


def _load(sources: AugmentSources, kind: str, name: str, sample_rate: int, max_seconds: float) -> np.ndarray:
    path = sources.path_of(kind, name)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise AugmentError(f"{path}: cannot read this {kind} file ({exc.strerror})") from None
    x = _file_samples(path, (st.st_size, st.st_mtime_ns), int(sample_rate), max_seconds)
    if not len(x) or not np.any(x):
        raise AugmentError(f"{path}: this {kind} file is silent or empty")
    return x


def augment(samples: np.ndarray, sample_rate: int, params: AugmentParams,
            sources: AugmentSources = AugmentSources()) -> np.ndarray:
    """The utterance after speed → time stretch → impulse response → noise, mono float32 at
    ``sample_rate``, scaled down only if it would clip. AugmentError for a segment over
    :data:`MAX_AUGMENT_SECONDS` or a noise/impulse file that cannot be used."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    seconds = len(x) / sample_rate if sample_rate > 0 else 0.0
    if seconds > MAX_AUGMENT_SECONDS:
        raise AugmentError(f"the segment is {seconds:.1f} s long: the augmentation preview processes "
                           f"at most {MAX_AUGMENT_SECONDS:g} s")
    # One independent stream per effect: turning one effect on does not change another's draw.
    rir_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(params.seed).spawn(2))
    x = speed_perturb(x, sample_rate, params.speed)
    x = time_stretch(x, params.stretch)
    if params.rir == "synthetic":
        x = reverberate(x, synthetic_rir(sample_rate, params.rt60, rir_rng))
    elif params.rir.startswith("file:"):
        x = reverberate(x, _load(sources, "rir", params.rir[5:], sample_rate, MAX_RIR_SECONDS))
    if params.noise in ("white", "pink"):
        n = len(x)
        noise = (noise_rng.standard_normal(n).astype(np.float32) if params.noise == "white"
                 else pink_noise(n, noise_rng))
        x = add_noise(x, noise, params.snr_db, noise_rng)
    elif params.noise.startswith("file:"):
        x = add_noise(x, _load(sources, "noise", params.noise[5:], sample_rate, MAX_NOISE_SECONDS),
                      params.snr_db, noise_rng)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > _PEAK:
        x = x * (_PEAK / peak)
    return x.astype(np.float32)


# ---------------------------------------------------------------- the NeMo config


def _white_noise_level(signal_rms_db: float, snr_db: float) -> int:
    """NeMo's white_noise takes the noise level in dBFS (of unit-variance noise × 10^(level/20))."""
    return int(math.floor(signal_rms_db - snr_db))


def nemo_augmentor_config(params: AugmentParams, sample_rate: int, signal_rms_db: float | None = None,
                          ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(NeMo ``train_ds.augmentor`` dict, a comment per key) reproducing ``params`` with ``prob``
    1 and a fixed rate: the keys of ``nemo.collections.asr.parts.preprocessing.perturb``'s
    ``perturbation_types`` and their constructors' arguments, in the order sde applies them."""
    config: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    if params.speed != 1.0:
        config["speed"] = {"prob": 1.0, "sr": int(sample_rate), "resample_type": "fft",
                           "min_speed_rate": params.speed, "max_speed_rate": params.speed, "num_rates": 1}
        notes["speed"] = "sr: your train_ds.sample_rate; a range (e.g. 0.9-1.1, num_rates 5) for training"
    if params.stretch != 1.0:
        config["time_stretch"] = {"prob": 1.0, "min_speed_rate": params.stretch, "max_speed_rate": params.stretch,
                                  "num_rates": 1, "n_fft": _STRETCH_N_FFT}
    if params.rir != "none":
        source = params.rir[5:] if params.rir.startswith("file:") else None
        config["impulse"] = {"prob": 1.0, "manifest_path": "rir_manifest.json", "shift_impulse": True}
        notes["impulse"] = (f"a NeMo manifest listing {source} and your other RIR files" if source else
                            f"sde's RIR is synthetic (RT60 {params.rt60:g} s): list recorded RIR files "
                            "in a NeMo manifest (audio_filepath, duration)")
    if params.noise == "white":
        level = _white_noise_level(signal_rms_db if signal_rms_db is not None else -20.0, params.snr_db)
        config["white_noise"] = {"prob": 1.0, "min_level": level, "max_level": level + 1}
        notes["white_noise"] = (f"dBFS: {params.snr_db:g} dB below this utterance's level; NeMo sets "
                                "the level, not the SNR")
    elif params.noise != "none":
        source = params.noise[5:] if params.noise.startswith("file:") else None
        config["noise"] = {"prob": 1.0, "manifest_path": "noise_manifest.json",
                           "min_snr_db": params.snr_db, "max_snr_db": params.snr_db}
        notes["noise"] = (f"a NeMo manifest listing {source} and your other noise files" if source else
                          "sde's pink noise is synthetic: list noise recordings in a NeMo manifest "
                          "(audio_filepath, duration)")
    return config, notes


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(round(value, 6)))
    return str(value)


def nemo_augmentor_yaml(params: AugmentParams, sample_rate: int, signal_rms_db: float | None = None) -> str:
    """The config of :func:`nemo_augmentor_config` as YAML to paste under a NeMo ASR config."""
    config, notes = nemo_augmentor_config(params, sample_rate, signal_rms_db)
    lines = [f"# NeMo ASR: model.train_ds.augmentor (sde preview, seed {params.seed}; applied in this order)",
             "model:", "  train_ds:"]
    if not config:
        lines.append("    augmentor: null  # no perturbation chosen")
        return "\n".join(lines) + "\n"
    lines.append("    augmentor:")
    for name, cfg in config.items():
        lines.append(f"      {name}:" + (f"  # {notes[name]}" if name in notes else ""))
        lines.extend(f"        {key}: {_yaml_scalar(value)}" for key, value in cfg.items())
    return "\n".join(lines) + "\n"
