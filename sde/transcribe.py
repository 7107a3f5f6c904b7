"""NeMo inference: produce predictions for a manifest that has none.

Optional: needs the extra ``sde[nemo]`` (``nemo_toolkit[asr]``). Nothing here imports NeMo or torch at
module import time, so sde without the extra imports this module fine and only says how to install
NeMo when asked to transcribe (:class:`NemoMissingError`).

Public API
- :func:`transcribe_manifest` — a manifest in, a NeMo output manifest out (every input field + the
  prediction field), atomic, resumable (``<out>.partial``), shardable (``shard=(I, N)``).
- :func:`merge_shards` / :func:`find_shards` — join shard outputs back into manifest order.
- :func:`transcribe_segments` — the in-process path: a list of (audio_path, offset, duration) in, a
  list of predictions out (same order).
- :func:`load_model`, :func:`pick_device`, :func:`pick_amp_dtype`, :func:`prepare_batch`,
  :func:`read_audio`, :func:`output_path`.

``DEFAULT_MODEL`` is ``stt_en_fastconformer_hybrid_large_pc``: NVIDIA's English FastConformer
hybrid RNNT/CTC large model (~115 M parameters) with punctuation and capitalisation, listed by
``ASRModel.list_available_models()`` in NeMo 2.x/3.x and downloaded from NGC on first use
(https://catalog.ngc.nvidia.com/orgs/nvidia/teams/nemo/models/stt_en_fastconformer_hybrid_large_pc).
Offline machines pass a local ``.nemo`` file instead.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from nemo.collections.asr.models import ASRModel

DEFAULT_MODEL = "stt_en_fastconformer_hybrid_large_pc"

NEMO_MISSING_MESSAGE = (
    'NeMo is not installed. Install it with: pip install "sde[nemo]"  '
    "(install torch first for your CUDA/CPU platform)"
)

# Fields a prediction must never overwrite: they are the data the prediction is compared against.
PROTECTED_FIELDS = frozenset({"audio_filepath", "audio_filename", "duration", "offset", "text"})

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_SHARD_NAME_RE = re.compile(r"^(?P<stem>.*)\.shard(?P<i>\d+)of(?P<n>\d+)\.json$")
_PARTIAL_VERSION = 1


class TranscribeError(Exception):
    """A data, model or environment problem; the message says what, where and the fix."""


class NemoMissingError(TranscribeError):
    """NeMo (or torch) cannot be imported."""

    def __init__(self, message: str = NEMO_MISSING_MESSAGE) -> None:
        super().__init__(message)


class TranscribeCancelled(TranscribeError):
    """``should_stop()`` returned True. Work done so far is kept in ``partial`` (when there is one)."""

    def __init__(self, done: int, total: int, partial: Path | None = None) -> None:
        self.done, self.total, self.partial = done, total, partial
        where = f"; progress is saved in {partial}, run again to resume" if partial else ""
        super().__init__(f"transcription stopped after {done} of {total} utterances{where}")


class SegmentRef(NamedTuple):
    """Which audio to transcribe: a whole file (offset 0, duration None) or a segment of it."""

    path: str
    offset: float = 0.0
    duration: float | None = None  # None: to the end of the file


# --------------------------------------------------------------------------------------------
# Lazy imports


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # torch comes with the extra; without it NeMo cannot run either
        raise NemoMissingError() from exc
    return torch


def _import_nemo_asr() -> Any:
    """Import ``nemo.collections.asr``; a missing or broken NeMo becomes :class:`NemoMissingError`."""
    try:
        import nemo.collections.asr as nemo_asr
    except Exception as exc:  # ImportError, but broken installs raise all sorts (OSError, AttributeError)
        raise NemoMissingError() from exc
    return nemo_asr


def nemo_available() -> bool:
    """True when NeMo ASR imports (it takes ~15 s the first time: NeMo is a heavy import)."""
    try:
        _import_nemo_asr()
    except NemoMissingError:
        return False
    return True


@contextlib.contextmanager
def _quiet_nemo(quiet: bool = True) -> Iterator[None]:
    # NeMo logs INFO to stdout; the CLI's stdout is for the output path only.
    if not quiet:
        yield
        return
    try:
        from nemo.utils import logging as nemo_logging
    except Exception:
        yield
        return
    with nemo_logging.temp_verbosity(nemo_logging.WARNING):
        yield


# --------------------------------------------------------------------------------------------
# Device and precision


def pick_device(
    spec: str = "auto", *, cuda_available: bool | None = None, cuda_count: int | None = None
) -> str:
    """Resolve ``auto | cpu | cuda | cuda:N`` to ``"cpu"`` or ``"cuda:N"``.

    ``auto`` is the first GPU when CUDA is available, else the CPU. Asking for CUDA where there is
    none is a :class:`TranscribeError`; a malformed spec is a ``ValueError``. ``cuda_available`` and
    ``cuda_count`` default to what torch reports (pass them to decide without torch).
    """
    s = str(spec).strip().lower()
    if not _DEVICE_RE.match(s):
        raise ValueError(f"invalid device {spec!r}: use auto, cpu, cuda or cuda:N (e.g. cuda:1)")
    if s == "cpu":
        return "cpu"
    if cuda_available is None or (cuda_count is None and cuda_available):
        torch = _import_torch()
        if cuda_available is None:
            cuda_available = bool(torch.cuda.is_available())
        if cuda_count is None:
            cuda_count = int(torch.cuda.device_count()) if cuda_available else 0
    if cuda_count is None:
        cuda_count = 1 if cuda_available else 0
    if s == "auto":
        return "cuda:0" if cuda_available and cuda_count > 0 else "cpu"
    if not cuda_available or cuda_count == 0:
        raise TranscribeError(
            f"device {spec!r} was requested but CUDA is not available here (no GPU visible, a CPU-only "
            "torch build, or CUDA_VISIBLE_DEVICES hides it); use --device cpu or --device auto"
        )
    index = int(s.split(":", 1)[1]) if ":" in s else 0
    if index >= cuda_count:
        raise TranscribeError(
            f"device {spec!r} was requested but only {cuda_count} CUDA device(s) are visible "
            f"(cuda:0 .. cuda:{cuda_count - 1}); pick one of those"
        )
    return f"cuda:{index}"


def pick_amp_dtype(device: str, enabled: bool = True, *, bf16_supported: bool | None = None) -> str | None:
    """Autocast dtype name for inference: ``"bfloat16"`` where the GPU supports it, else
    ``"float16"``; ``None`` (full fp32) on the CPU or when disabled (``--no-amp``).

    ``bf16_supported`` defaults to ``torch.cuda.is_bf16_supported()`` on ``device``.
    """
    if not enabled or not str(device).startswith("cuda"):
        return None
    if bf16_supported is None:
        torch = _import_torch()
        with torch.cuda.device(torch.device(device)):
            bf16_supported = bool(torch.cuda.is_bf16_supported())
    return "bfloat16" if bf16_supported else "float16"


# --------------------------------------------------------------------------------------------
# Model


def model_id(model: Any) -> str:
    """What identifies a model in outputs and checkpoints: the spec it was loaded from."""
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    return str(getattr(model, "_sde_model_spec", None) or type(model).__name__)


def model_stem(model: Any) -> str:
    """A file-name-safe short name: ``nvidia/parakeet-tdt-0.6b-v2`` → ``parakeet-tdt-0.6b-v2``,
    ``/models/my_asr.nemo`` → ``my_asr``."""
    name = model_id(model).rstrip("/\\")
    name = re.split(r"[/\\]", name)[-1]
    if name.lower().endswith(".nemo"):
        name = name[: -len(".nemo")]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return name or "model"


def _looks_like_path(spec: str) -> bool:
    return spec.lower().endswith(".nemo") or spec.startswith((".", "/", "~", "\\")) or (
        len(spec) > 2 and spec[1] == ":" and spec[2] in "/\\"
    )


def model_sample_rate(model: Any) -> int:
    """The sample rate the model expects (its config, else its preprocessor, else 16 kHz)."""
    cfg = getattr(model, "cfg", None)
    for getter in (
        lambda: cfg.sample_rate,
        lambda: cfg.preprocessor.sample_rate,
        lambda: model.preprocessor._sample_rate,
        lambda: model.sample_rate,
    ):
        try:
            value = getter()
        except Exception:
            continue
        if value:
            return int(value)
    return 16000


def load_model(model: str | os.PathLike, device: str = "auto", *, quiet: bool = True) -> ASRModel:
    """Load a NeMo ASR model (CTC, RNNT/TDT or hybrid) onto ``device``, in eval mode.

    ``model`` is a path to a ``.nemo`` file (``ASRModel.restore_from``) or a pretrained name: an NGC
    name such as ``stt_en_fastconformer_hybrid_large_pc`` or a Hugging Face id such as
    ``nvidia/parakeet-tdt-0.6b-v2`` (``ASRModel.from_pretrained``; cached after the first download).
    """
    nemo_asr = _import_nemo_asr()
    torch = _import_torch()
    dev = pick_device(device)
    spec = os.fspath(model)
    local = Path(spec).expanduser()
    ASRModel = nemo_asr.models.ASRModel
    with _quiet_nemo(quiet):
        if local.exists():
            if local.is_dir() and not spec.lower().endswith(".nemo"):
                raise TranscribeError(f"model path {spec} is a directory; pass the .nemo file inside it")
            try:
                loaded = ASRModel.restore_from(str(local), map_location=torch.device(dev))
            except Exception as exc:
                raise TranscribeError(
                    f"cannot load the NeMo model {spec}: {type(exc).__name__}: {_one_line(exc)}; "
                    "is it a NeMo ASR .nemo checkpoint made with a compatible NeMo version?"
                ) from exc
        elif _looks_like_path(spec):
            raise TranscribeError(
                f"model file not found: {spec}; pass an existing .nemo file or a NeMo pretrained "
                f"model name such as {DEFAULT_MODEL}"
            )
        else:
            try:
                loaded = ASRModel.from_pretrained(spec, map_location=torch.device(dev))
            except FileNotFoundError as exc:
                if "was not found" in str(exc):
                    raise TranscribeError(
                        f"unknown NeMo pretrained model {spec!r}; pass a local .nemo file or a name "
                        f"from ASRModel.list_available_models() such as {DEFAULT_MODEL}"
                    ) from exc
                raise TranscribeError(_fetch_failed(spec, exc)) from exc
            except Exception as exc:
                raise TranscribeError(_fetch_failed(spec, exc)) from exc
    if not hasattr(loaded, "transcribe"):
        raise TranscribeError(f"{spec} is a {type(loaded).__name__}, not an ASR model with transcribe()")
    loaded = loaded.to(torch.device(dev))
    loaded.eval()
    loaded._sde_model_spec = spec  # remembered for output names and resume checkpoints
    return loaded


def _fetch_failed(spec: str, exc: BaseException) -> str:
    maybe_path = " (if you meant a local file: it does not exist)" if "/" in spec else ""
    return (
        f"cannot fetch the NeMo model {spec!r}{maybe_path}: {type(exc).__name__}: {_one_line(exc)}. "
        "This machine may be offline: download the .nemo file elsewhere and pass its path, "
        "e.g. --model /path/to/model.nemo"
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _model_device(model: Any) -> str | None:
    try:
        return str(next(model.parameters()).device)
    except Exception:
        return None


def _ensure_model(model: Any, device: str, quiet: bool = True) -> tuple[Any, str]:
    if isinstance(model, (str, os.PathLike)):
        dev = pick_device(device)
        return load_model(model, dev, quiet=quiet), dev
    if not hasattr(model, "transcribe"):
        raise TypeError(f"model must be a name, a .nemo path or a NeMo ASR model, not {type(model).__name__}")
    dev = pick_device(device)
    current = _model_device(model)
    if str(device).strip().lower() == "auto" and current is not None and current.startswith("cuda"):
        dev = current  # a model the caller already put on a GPU stays there
    elif current is not None and current != dev and hasattr(model, "to"):
        torch = _import_torch()
        model = model.to(torch.device(dev))
    return model, dev


# --------------------------------------------------------------------------------------------
# Audio


def read_audio(path: str, offset: float = 0.0, duration: float | None = None, sample_rate: int = 16000) -> np.ndarray:
    """Samples of ``path`` from ``offset`` for ``duration`` seconds (to the end when None), float32
    mono at ``sample_rate``. Only the segment is read (soundfile start/frames), never the whole file."""
    import soundfile as sf

    offset = max(0.0, float(offset or 0.0))
    if duration is not None and not math.isfinite(duration):
        duration = None
    if not os.path.exists(path):
        raise TranscribeError(f"audio file not found: {path}")
    try:
        with sf.SoundFile(path) as f:
            sr = f.samplerate
            start = round(offset * sr)
            if start > f.frames:
                raise TranscribeError(
                    f"offset {offset:g} s is past the end of {path} ({f.frames / sr:.3f} s); check the manifest"
                )
            frames = -1 if duration is None else max(0, round(duration * sr))
            f.seek(start)
            data = f.read(frames, dtype="float32", always_2d=True)
    except TranscribeError:
        raise
    except Exception:
        # Formats libsndfile cannot read (m4a, opus in old builds, …): librosa's audioread/ffmpeg path.
        try:
            import librosa

            y, sr = librosa.load(path, sr=None, mono=False, offset=offset, duration=duration)
        except Exception as exc:
            raise TranscribeError(f"cannot read audio {path}: {type(exc).__name__}: {_one_line(exc)}") from exc
        data = np.atleast_2d(np.asarray(y, dtype=np.float32)).T
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr != sample_rate and mono.size:
        mono = _resample(mono, sr, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    # soxr is librosa's own default engine; calling it directly skips librosa's multi-second first import.
    try:
        import soxr
    except ImportError:
        import librosa

        return librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr)
    return soxr.resample(y, orig_sr, target_sr, quality="HQ")


def prepare_batch(items: Sequence[SegmentRef | tuple], sample_rate: int) -> list[np.ndarray]:
    """The arrays handed to ``model.transcribe`` for ``items`` (path, offset, duration): one float32
    mono array at ``sample_rate`` per item, exactly the segment's samples."""
    out = []
    for item in items:
        ref = SegmentRef(*item)
        out.append(read_audio(ref.path, ref.offset, ref.duration, sample_rate))
    return out


def _probe_duration(path: str) -> float:
    try:
        import soundfile as sf

        info = sf.info(path)
        return float(info.frames) / float(info.samplerate)
    except Exception:
        return 0.0


def _ref_seconds(ref: SegmentRef) -> float:
    if ref.duration is not None:
        return float(ref.duration)
    return max(0.0, _probe_duration(ref.path) - float(ref.offset or 0.0))


# --------------------------------------------------------------------------------------------
# Inference core


def hypotheses_to_texts(result: Any, expected: int | None = None) -> list[str]:
    """Whatever ``transcribe`` returned (strings, Hypothesis objects, n-best lists, or the
    ``(best, all)`` tuple of older RNNT models) → one string per input."""
    if isinstance(result, tuple) and result and isinstance(result[0], (list, tuple)):
        result = result[0]
    if isinstance(result, dict):  # multi-output models: the first output is the transcript
        result = next(iter(result.values()), [])
    texts = [_as_text(r) for r in (result or [])]
    if expected is not None and len(texts) != expected:
        raise TranscribeError(
            f"the model returned {len(texts)} transcripts for {expected} inputs; "
            "it may not be an utterance-level ASR model"
        )
    return texts


def _as_text(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, (list, tuple)):
        return _as_text(x[0]) if x else ""
    nbest = getattr(x, "n_best_hypotheses", None)
    if nbest is not None:
        return _as_text(nbest)
    text = getattr(x, "text", None)
    if isinstance(text, str):
        return text
    if text is None:
        return ""
    return str(text)


def _batches(
    refs: Sequence[SegmentRef], indices: Sequence[int], batch_size: int, known: Sequence[float | None] | None = None
) -> list[list[int]]:
    """Indices grouped by similar duration (longest first, so an out-of-memory shows up at once and
    padding is minimal). ``known`` durations (the manifest's) spare opening the files."""

    def secs(i: int) -> float:
        if known is not None and known[i] is not None:
            return float(known[i])
        return _ref_seconds(refs[i])

    seconds = {i: secs(i) for i in indices}
    order = sorted(indices, key=lambda i: (-seconds[i], i))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def _run_batches(
    model: Any,
    refs: Sequence[SegmentRef],
    indices: Sequence[int],
    *,
    batch_size: int,
    device: str,
    amp_dtype: str | None,
    should_stop: Callable[[], bool] | None,
    describe: Callable[[int], str] | None = None,
    known_seconds: Sequence[float | None] | None = None,
) -> Iterator[tuple[list[int], list[str], float]]:
    """Yield (indices, predictions, audio seconds) per batch; audio of the next batch is read in a
    background thread while the model works on the current one."""
    torch = _import_torch()
    sample_rate = model_sample_rate(model)
    batches = _batches(refs, indices, batch_size, known_seconds)
    if not batches:
        return

    def load(batch: list[int]) -> list[np.ndarray]:
        try:
            return prepare_batch([refs[i] for i in batch], sample_rate)
        except TranscribeError:
            if describe is None:
                raise
            # name the manifest line of the failing item
            for i in batch:
                try:
                    prepare_batch([refs[i]], sample_rate)
                except TranscribeError as inner:
                    raise TranscribeError(f"{describe(i)}: {inner}") from inner
            raise

    autocast = (
        (lambda: torch.autocast(device_type="cuda", dtype=getattr(torch, amp_dtype)))
        if amp_dtype
        else contextlib.nullcontext
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sde-audio") as pool:
        pending = pool.submit(load, batches[0])
        for b, batch in enumerate(batches):
            if should_stop is not None and should_stop():
                pending.cancel()
                raise _Stopped()
            audio = pending.result()
            if b + 1 < len(batches):
                pending = pool.submit(load, batches[b + 1])
            seconds = sum(a.shape[0] for a in audio) / float(sample_rate)
            try:
                with torch.inference_mode(), autocast(), _quiet_nemo():
                    result = model.transcribe(audio, batch_size=len(audio), verbose=False)
            except Exception as exc:
                if _interrupted(exc):
                    # NeMo's own cleanup can fail while a Ctrl-C unwinds (ValueError "Cannot
                    # unfreeze..."), replacing the KeyboardInterrupt: it is still an interruption.
                    raise KeyboardInterrupt from exc
                raise _model_failure(exc, batch, refs, device) from exc
            yield batch, hypotheses_to_texts(result, len(batch)), seconds


class _Stopped(Exception):
    pass


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is anywhere in the exception's cause/context chain."""
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _model_failure(exc: BaseException, batch: list[int], refs: Sequence[SegmentRef], device: str) -> TranscribeError:
    name = type(exc).__name__
    if "OutOfMemory" in name or "out of memory" in str(exc).lower():
        longest = max((_ref_seconds(refs[i]) for i in batch), default=0.0)
        return TranscribeError(
            f"out of memory on {device} with a batch of {len(batch)} utterances (longest {longest:.1f} s); "
            "rerun with a smaller --batch-size (finished batches are kept and resumed)"
        )
    return TranscribeError(
        f"the model failed on a batch starting with {refs[batch[0]].path}: {name}: {_one_line(exc)}"
    )


def transcribe_segments(
    items: Sequence[SegmentRef | tuple],
    model: Any,
    *,
    batch_size: int = 16,
    device: str = "auto",
    amp: bool = True,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Predictions for ``items`` = (audio_path, offset, duration) tuples, in the same order.

    ``duration=None`` reads to the end of the file. ``model`` is a name, a ``.nemo`` path or a model
    from :func:`load_model` (load once, call many times). Raises :class:`TranscribeCancelled` when
    ``should_stop()`` turns True (nothing is kept: use :func:`transcribe_manifest` to resume)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    refs = [SegmentRef(*item) for item in items]
    total = len(refs)
    preds: list[str | None] = [None] * total
    if not refs:
        return []
    if isinstance(model, (str, os.PathLike)):
        _import_nemo_asr()  # the missing-extra message before any device talk
    loaded, dev = _ensure_model(model, device)
    amp_dtype = pick_amp_dtype(dev, amp)
    done = 0
    bar = _progress_bar(total, 0, progress)
    start, audio_s = time.perf_counter(), 0.0
    if on_progress:
        on_progress(0, total)
    try:
        for batch, texts, seconds in _run_batches(
            loaded, refs, range(total), batch_size=batch_size, device=dev, amp_dtype=amp_dtype,
            should_stop=should_stop,
        ):
            for i, t in zip(batch, texts):
                preds[i] = t
            done += len(batch)
            audio_s += seconds
            _tick(bar, len(batch), audio_s, start)
            if on_progress:
                on_progress(done, total)
    except _Stopped:
        raise TranscribeCancelled(done, total) from None
    finally:
        bar.close()
    return [p or "" for p in preds]


# --------------------------------------------------------------------------------------------
# Manifests


class _Entry(NamedTuple):
    index: int  # position among the manifest's non-blank lines
    line: int  # 1-based physical line
    ref: SegmentRef
    seconds: float | None  # the manifest's duration, for ordering batches


def _fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"manifest": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _iter_lines(path: Path) -> Iterator[tuple[int, int, str]]:
    """(index among non-blank lines, 1-based line number, text) for every non-blank line."""
    index = 0
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.strip():
                yield index, lineno, raw
                index += 1


def _parse_line(manifest: Path, lineno: int, raw: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TranscribeError(f"{manifest}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from None
    if not isinstance(obj, dict):
        raise TranscribeError(f"{manifest}:{lineno}: expected a JSON object per line (NeMo manifest), got {type(obj).__name__}")
    return obj


def _resolve_audio(value: str, manifest: Path, audio_base_path: str | os.PathLike | None) -> str:
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return str(p)
    base = Path(audio_base_path) if audio_base_path is not None else manifest.resolve().parent
    return str((base / p).resolve())


def _number(obj: dict, key: str, manifest: Path, lineno: int) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TranscribeError(f'{manifest}:{lineno}: field "{key}" must be a number of seconds, got {value!r}') from None
    if not math.isfinite(number) or number < 0:
        raise TranscribeError(f'{manifest}:{lineno}: field "{key}" must be a non-negative number, got {value!r}')
    return number


def _read_entries(manifest: Path, audio_base_path: Any, shard: tuple[int, int] | None) -> tuple[list[_Entry], int]:
    """The entries of this shard, and the number of non-blank lines in the whole manifest."""
    i, n = shard or (0, 1)
    entries: list[_Entry] = []
    count = 0
    for index, lineno, raw in _iter_lines(manifest):
        count += 1
        if index % n != i:
            continue
        obj = _parse_line(manifest, lineno, raw)
        audio = obj.get("audio_filepath", obj.get("audio_filename"))
        if not isinstance(audio, str) or not audio:
            raise TranscribeError(f'{manifest}:{lineno}: missing field "audio_filepath" (the audio to transcribe)')
        duration = _number(obj, "duration", manifest, lineno)
        offset = _number(obj, "offset", manifest, lineno)
        path = _resolve_audio(audio, manifest, audio_base_path)
        if offset is None:
            ref = SegmentRef(path, 0.0, None)  # whole file
        else:
            ref = SegmentRef(path, offset, duration)  # a segment: only it is read and transcribed
        entries.append(_Entry(index, lineno, ref, duration))
    return entries, count


def _check_shard(shard: Any) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        i, n = (int(x) for x in shard)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be a pair (I, N), got {shard!r}") from None
    if n < 1:
        raise ValueError(f"shard {i}/{n}: N must be >= 1")
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: I must be >= 0 and < N")
    return i, n


def shard_path(out: str | os.PathLike, i: int, n: int) -> Path:
    """``out.json`` → ``out.shard{I}of{N}.json``."""
    out = Path(out)
    stem = out.name[: -len(".json")] if out.name.lower().endswith(".json") else out.stem
    return out.with_name(f"{stem}.shard{i}of{n}.json")


def output_path(
    manifest: str | os.PathLike,
    model: Any,
    out: str | os.PathLike | None = None,
    shard: tuple[int, int] | None = None,
) -> Path:
    """Where :func:`transcribe_manifest` writes: ``out`` when it names a file; else
    ``<manifest_stem>_<model_stem>.json`` inside ``out`` (a directory) or in the current directory
    (never beside the manifest unless asked: sde writes nothing next to the user's data);
    with ``shard=(I, N)`` the shard name ``<out_stem>.shard{I}of{N}.json``."""
    manifest = Path(manifest)
    name = f"{manifest.stem}_{model_stem(model)}.json"
    if out is None:
        path = Path.cwd() / name
    else:
        o = Path(os.path.expanduser(os.fspath(out)))
        path = o / name if o.is_dir() or os.fspath(out).endswith(("/", os.sep)) else o
    shard = _check_shard(shard)
    if shard is not None:
        path = shard_path(path, *shard)
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _atomic_writer(path: Path) -> tuple[Any, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n"), tmp


def _commit(f: Any, tmp: str, path: Path) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(tmp, path)


def _abort(f: Any, tmp: str) -> None:
    with contextlib.suppress(Exception):
        f.close()
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _load_partial(partial: Path, header: dict) -> dict[int, str] | None:
    """Completed predictions from a checkpoint written for the same input, model, field and shard;
    None when there is no usable checkpoint. A torn last line (killed mid-write) is ignored."""
    if not partial.exists():
        return None
    done: dict[int, str] = {}
    with open(partial, encoding="utf-8") as f:
        try:
            first = json.loads(f.readline() or "null")
        except json.JSONDecodeError:
            return None
        if first != header:
            return None
        for raw in f:
            try:
                rec = json.loads(raw)
                done[int(rec["i"])] = str(rec["p"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                break
    return done


def transcribe_manifest(
    manifest: str | os.PathLike,
    model: Any = DEFAULT_MODEL,
    out: str | os.PathLike | None = None,
    field: str = "pred_text",
    batch_size: int = 16,
    device: str = "auto",
    amp: bool = True,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    audio_base_path: str | os.PathLike | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Transcribe every line of ``manifest`` (or of one shard) and write a NeMo output manifest:
    every input field plus ``field``, input line order, blank lines dropped. Returns its path.

    - ``out``: a file, a directory, or None (the current directory); see :func:`output_path`.
      Never the input itself.
    - Written atomically (temp file in the same folder + ``os.replace``).
    - Resumable: finished batches are appended to ``<out>.partial`` (a header line with the input's
      path/size/mtime, model, field and shard, then ``{"i": line_index, "p": prediction}`` lines);
      running again with the same input and model continues from there. The checkpoint is removed
      once the output is complete; a checkpoint for another input/model is started afresh.
    - ``shard=(I, N)``: only non-blank lines I, I+N, I+2N, … into ``<out_stem>.shard{I}of{N}.json``;
      join the N outputs with :func:`merge_shards`.
    - ``should_stop()`` is polled before each batch; when it turns True the finished batches are
      kept and :class:`TranscribeCancelled` is raised. ``on_progress(done, total)`` after each batch.
    - Progress (utterances/s, RTFx = audio seconds per wall second) on stderr when ``progress``.
    """
    manifest = Path(os.path.expanduser(os.fspath(manifest)))
    if not manifest.exists():
        raise TranscribeError(f"manifest not found: {manifest}")
    if manifest.is_dir():
        raise TranscribeError(f"{manifest} is a directory; pass the manifest file (JSON lines)")
    if not field or not isinstance(field, str):
        raise ValueError("field must be a non-empty string")
    if field in PROTECTED_FIELDS:
        raise ValueError(f"field {field!r} would overwrite the manifest's own {field!r}; use e.g. pred_text")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    shard = _check_shard(shard)
    target = output_path(manifest, model, out, shard)
    partial = target.with_name(target.name + ".partial")
    for p in (target, partial):
        if _same_file(p, manifest):
            raise TranscribeError(
                f"refusing to overwrite the input manifest {manifest}; choose another --out"
            )

    fingerprint = _fingerprint(manifest)
    entries, _ = _read_entries(manifest, audio_base_path, shard)
    header = {
        "sde_partial": _PARTIAL_VERSION,
        **fingerprint,
        "model": model_id(model),
        "field": field,
        "shard": list(shard) if shard else None,
    }
    done = _load_partial(partial, header) or {}
    wanted = {e.index for e in entries}
    done = {i: p for i, p in done.items() if i in wanted}
    total = len(entries)
    remaining = [k for k, e in enumerate(entries) if e.index not in done]

    if remaining:
        if isinstance(model, (str, os.PathLike)):
            _import_nemo_asr()  # the missing-extra message before any device talk
        loaded, dev = _ensure_model(model, device)
        amp_dtype = pick_amp_dtype(dev, amp)
        # Rewrite the checkpoint cleanly (drops a torn tail), then append batch by batch.
        f, tmp = _atomic_writer(partial)
        try:
            f.write(_dumps(header) + "\n")
            for i, p in done.items():
                f.write(_dumps({"i": i, "p": p}) + "\n")
            _commit(f, tmp, partial)
        except BaseException:
            _abort(f, tmp)
            raise
        refs = [e.ref for e in entries]
        bar = _progress_bar(total, len(done), progress)
        start, audio_s = time.perf_counter(), 0.0
        if on_progress:
            on_progress(len(done), total)
        try:
            with open(partial, "a", encoding="utf-8", newline="\n") as ckpt:
                for batch, texts, seconds in _run_batches(
                    loaded, refs, remaining, batch_size=batch_size, device=dev, amp_dtype=amp_dtype,
                    should_stop=should_stop,
                    describe=lambda k: f"{manifest}:{entries[k].line}",
                    known_seconds=[e.seconds for e in entries],
                ):
                    lines = []
                    for k, text in zip(batch, texts):
                        done[entries[k].index] = text
                        lines.append(_dumps({"i": entries[k].index, "p": text}) + "\n")
                    ckpt.write("".join(lines))
                    ckpt.flush()
                    os.fsync(ckpt.fileno())
                    audio_s += seconds
                    _tick(bar, len(batch), audio_s, start)
                    if on_progress:
                        on_progress(len(done), total)
        except _Stopped:
            raise TranscribeCancelled(len(done), total, partial) from None
        finally:
            bar.close()

    elif on_progress:
        on_progress(total, total)

    if _fingerprint(manifest) != fingerprint:
        raise TranscribeError(f"{manifest} changed while it was being transcribed; run again")
    _write_output(manifest, target, field, shard, done)
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    return target


def _write_output(manifest: Path, target: Path, field: str, shard: tuple[int, int] | None, preds: dict[int, str]) -> None:
    i, n = shard or (0, 1)
    f, tmp = _atomic_writer(target)
    try:
        for index, lineno, raw in _iter_lines(manifest):
            if index % n != i:
                continue
            obj = _parse_line(manifest, lineno, raw)
            obj[field] = preds[index]
            f.write(_dumps(obj) + "\n")
        _commit(f, tmp, target)
    except BaseException:
        _abort(f, tmp)
        raise


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from sde.progress import progress_bar  # a tqdm bar on a terminal, one plain line in a log

    return progress_bar(total, "Transcribing", unit="utt", enabled=enabled, initial=initial, stream=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1)


def _tick(bar: Any, n: int, audio_s: float, start: float) -> None:
    wall = max(time.perf_counter() - start, 1e-9)
    bar.set_postfix_str(f"RTFx {audio_s / wall:.1f}", refresh=False)
    bar.update(n)


# --------------------------------------------------------------------------------------------
# Shards


def find_shards(out: str | os.PathLike) -> list[Path]:
    """The shard files ``<out_stem>.shard*of*.json`` beside ``out``, sorted by shard index."""
    out = Path(out)
    stem = out.name[: -len(".json")] if out.name.lower().endswith(".json") else out.stem
    found = []
    for p in out.parent.glob(f"{glob_escape(stem)}.shard*of*.json"):
        m = _SHARD_NAME_RE.match(p.name)
        if m and m.group("stem") == stem:
            found.append((int(m.group("n")), int(m.group("i")), p))
    return [p for _, _, p in sorted(found)]


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _count_lines(path: Path) -> int:
    return sum(1 for _ in _iter_lines(path))


def merge_shards(
    paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, manifest: str | os.PathLike | None = None
) -> Path:
    """Join shard outputs ``*.shard{I}of{N}.json`` back into one manifest in the original order,
    atomically. All N shards must be present once, with the line counts an N-way split gives;
    with ``manifest``, each merged line must also match the manifest's line (audio, offset,
    duration) and the total its line count."""
    out = Path(out)
    if not paths:
        raise TranscribeError(f"no shard files to merge into {out}; create them with --shard I/N first")
    parsed = []
    for p in map(Path, paths):
        m = _SHARD_NAME_RE.match(p.name)
        if not m:
            raise TranscribeError(f"{p} is not named like a shard (NAME.shardIofN.json); cannot tell its place")
        if not p.exists():
            raise TranscribeError(f"shard file not found: {p}")
        parsed.append((int(m.group("i")), int(m.group("n")), p))
    ns = sorted({n for _, n, _ in parsed})
    if len(ns) != 1:
        raise TranscribeError(
            f"shards from different splits (N = {', '.join(map(str, ns))}); merge the shards of one "
            "--shard I/N run and delete the stale ones"
        )
    n = ns[0]
    shards: dict[int, Path] = {}
    for i, _, p in parsed:
        if i in shards and not _same_file(shards[i], p):
            raise TranscribeError(f"shard {i} given twice: {shards[i]} and {p}")
        shards[i] = p
    bad = [i for i in shards if i >= n]
    if bad:
        raise TranscribeError(f"shard index {bad[0]} is out of range for {n} shards")
    missing = [i for i in range(n) if i not in shards]
    if missing:
        some = next(iter(shards.values()))
        expected = ", ".join(str(some.with_name(re.sub(r"\.shard\d+of", f".shard{i}of", some.name))) for i in missing)
        raise TranscribeError(
            f"missing shard(s) {', '.join(f'{i}of{n}' for i in missing)} (expected {expected}); "
            f"run those with --shard I/{n} first"
        )
    for p in list(shards.values()) + ([Path(manifest)] if manifest else []):
        if _same_file(out, p):
            raise TranscribeError(f"refusing to overwrite {p} with the merged output; choose another output")
    counts = {i: _count_lines(p) for i, p in shards.items()}
    total = sum(counts.values())
    if manifest is not None:
        expected_total = _count_lines(Path(manifest))
        if expected_total != total:
            raise TranscribeError(
                f"the shards hold {total} lines but {manifest} has {expected_total}; they come from "
                "another manifest or an unfinished run; transcribe the shards again"
            )
    for i, p in shards.items():
        want = len(range(i, total, n))
        if counts[i] != want:
            raise TranscribeError(
                f"{p} has {counts[i]} lines, but shard {i} of {n} of a {total}-line manifest has {want}; "
                "the shards come from different manifests or runs"
            )

    f, tmp = _atomic_writer(out)
    try:
        with contextlib.ExitStack() as stack:
            iters = [_iter_lines(shards[i]) for i in range(n)]
            for it in iters:
                stack.callback(it.close)
            src = _iter_lines(Path(manifest)) if manifest is not None else None
            if src is not None:
                stack.callback(src.close)
            for k in range(total):
                _, lineno, raw = next(iters[k % n])
                if src is not None:
                    _, mline, mraw = next(src)
                    got = _parse_line(shards[k % n], lineno, raw)
                    ref = _parse_line(Path(manifest), mline, mraw)
                    for key in ("audio_filepath", "audio_filename", "offset", "duration"):
                        if ref.get(key) != got.get(key):
                            raise TranscribeError(
                                f"{shards[k % n]}:{lineno} does not match {manifest}:{mline} "
                                f"({key}: {got.get(key)!r} vs {ref.get(key)!r}); the shards come from another manifest"
                            )
                f.write(raw if raw.endswith("\n") else raw + "\n")
        _commit(f, tmp, out)
    except BaseException:
        _abort(f, tmp)
        raise
    return out


__all__ = [
    "DEFAULT_MODEL",
    "NEMO_MISSING_MESSAGE",
    "NemoMissingError",
    "SegmentRef",
    "TranscribeCancelled",
    "TranscribeError",
    "find_shards",
    "hypotheses_to_texts",
    "load_model",
    "merge_shards",
    "model_sample_rate",
    "nemo_available",
    "output_path",
    "pick_amp_dtype",
    "pick_device",
    "prepare_batch",
    "read_audio",
    "shard_path",
    "transcribe_manifest",
    "transcribe_segments",
]


# --------------------------------------------------------------------------------------------
# The alphabet a character model can emit (for the training-data alphabet check)


def model_alphabet(path: str | os.PathLike) -> str | None:
    """The characters a character-based .nemo model emits (its `labels`), read from the archive's
    model_config.yaml without loading NeMo; None for subword (BPE) models, which have no fixed
    alphabet. TranscribeError for a file that is not a .nemo archive."""
    import tarfile

    import yaml

    p = Path(path)
    try:
        with tarfile.open(p) as archive:
            member = next((m for m in archive.getmembers() if m.name.endswith("model_config.yaml")), None)
            if member is None:
                raise TranscribeError(f"{p}: no model_config.yaml inside; is this a .nemo file?")
            config = yaml.safe_load(archive.extractfile(member))  # type: ignore[arg-type]
    except (OSError, tarfile.TarError, yaml.YAMLError) as exc:
        raise TranscribeError(f"{p}: cannot read the model's configuration ({_one_line(exc)})") from None
    labels = (config or {}).get("labels") or ((config or {}).get("decoder") or {}).get("vocabulary")
    if not labels or not all(isinstance(x, str) and len(x) == 1 for x in labels):
        return None
    return "".join(labels)
