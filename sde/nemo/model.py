"""NeMo ASR models: load one by name or ``.nemo`` path onto a device, what it expects and emits.

Optional: needs the extra ``sde[nemo]`` (``nemo_toolkit[asr]``). Nothing in :mod:`sde.nemo` imports
NeMo or torch at module import time: they are imported lazily, on purpose (NeMo takes ~15 s to
import, and sde without the extra must run), and a missing NeMo becomes :class:`NemoMissingError`,
whose message says how to install it.

``DEFAULT_MODEL`` is ``stt_en_fastconformer_hybrid_large_pc``: NVIDIA's English FastConformer
hybrid RNNT/CTC large model (~115 M parameters) with punctuation and capitalisation, listed by
``ASRModel.list_available_models()`` in NeMo 2.x/3.x and downloaded from NGC on first use
(https://catalog.ngc.nvidia.com/orgs/nvidia/teams/nemo/models/stt_en_fastconformer_hybrid_large_pc).
Offline machines pass a local ``.nemo`` file instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sde.nemo.hubs import unreachable_reason

if TYPE_CHECKING:  # pragma: no cover - typing only
    from nemo.collections.asr.models import ASRModel

__all__ = [
    "DEFAULT_MODEL",
    "import_for",
    "NEMO_MISSING_MESSAGE",
    "NemoMissingError",
    "TranscribeError",
    "load_model",
    "model_alphabet",
    "model_id",
    "model_identity",
    "model_sample_rate",
    "model_stem",
    "nemo_available",
    "pick_amp_dtype",
    "pick_device",
]

DEFAULT_MODEL = "stt_en_fastconformer_hybrid_large_pc"

NEMO_MISSING_MESSAGE = (
    'NeMo is not installed. Install it with: pip install "sde[nemo]"  '
    "(install torch first for your CUDA/CPU platform)"
)

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class TranscribeError(Exception):
    """A data, model or environment problem; the message says what, where and the fix."""


class WritesOverInput(TranscribeError):
    """An output that would land on a file the run reads: the command line's mistake (exit 2, as
    `sde export` says the same), not the data's."""


class NemoMissingError(TranscribeError):
    """NeMo (or torch) cannot be imported."""

    def __init__(self, message: str = NEMO_MISSING_MESSAGE) -> None:
        super().__init__(message)


# --------------------------------------------------------------------------------------------
# Lazy imports (on purpose: NeMo and torch are heavy and optional)


def import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # torch comes with the extra; without it NeMo cannot run either
        raise NemoMissingError() from exc
    return torch


def import_nemo_asr() -> Any:
    """Import ``nemo.collections.asr``; a missing or broken NeMo becomes :class:`NemoMissingError`."""
    try:
        import nemo.collections.asr as nemo_asr
    except Exception as exc:  # ImportError, but broken installs raise all sorts (OSError, AttributeError)
        raise NemoMissingError() from exc
    return nemo_asr


def nemo_available() -> bool:
    """True when NeMo ASR is installed: found, not imported. Importing it takes ~15 s of CPU, which
    every page of a manifest without predictions (its transcribe panel asks this) and `sde index`
    paid whether or not anyone transcribed; an install that is there but broken raises
    :class:`NemoMissingError` when a transcription imports it (:func:`import_nemo_asr`)."""
    try:
        return importlib.util.find_spec("nemo.collections.asr") is not None
    except Exception:  # noqa: BLE001 - a parent package that fails to import: as good as missing
        return False


@contextlib.contextmanager
def quiet_nemo(quiet: bool = True) -> Iterator[None]:
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
        torch = import_torch()
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
        torch = import_torch()
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


def model_identity(model: Any) -> dict[str, Any]:
    """What a resume part file records of its model (sde.nemo.parts.part_header): a pretrained name
    as given; a local .nemo by its resolved path (relative, absolute or through a symlink: one
    model) and its size and modification time, as the server's prediction cache keys it
    (sde.nemo.jobs.predictions_key, sde.cache.file_stamp): a file replaced at the same path is
    another model."""
    spec = model_id(model)
    local = Path(spec).expanduser()
    if not spec or not local.exists():
        return {"model": spec}
    from sde.cache import file_stamp  # lazy: sde.nemo.model stays light to import

    stamp = file_stamp(local)
    return {"model": stamp["path"], "model_file": {"size": stamp["size"], "mtime_ns": stamp["mtime_ns"]}}


def a_or_an(word: str) -> str:
    """``a`` or ``an`` before ``word`` (by its first letter: "an EncDecClassificationModel")."""
    return "an" if word[:1].lower() in ("a", "e", "i", "o", "u") else "a"


def model_stem(model: Any) -> str:
    """A file-name-safe short name: ``nvidia/parakeet-tdt-0.6b-v2`` → ``parakeet-tdt-0.6b-v2``,
    ``/models/my_asr.nemo`` → ``my_asr``."""
    name = model_id(model).rstrip("/\\")
    name = re.split(r"[/\\]", name)[-1]
    if name.lower().endswith(".nemo"):
        name = name[: -len(".nemo")]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return name or "model"


def import_for(model: Any) -> Any:
    """``nemo.collections.asr`` for loading ``model`` (a name, a path or a loaded model), with what
    stops it said first: NeMo missing (:class:`NemoMissingError`, before any device talk), then a
    pretrained name this machine cannot fetch (:class:`TranscribeError`, via sde.nemo.hubs: said
    before NeMo's ~15 s import, which an offline start paid only to learn the same)."""
    if isinstance(model, (str, os.PathLike)) and nemo_available():
        spec = os.fspath(model)
        exists = Path(spec).expanduser().exists()
        if not exists and looks_like_path(spec):  # said before the import too: it took ~14 s to say
            raise TranscribeError(missing_model_file(spec))
        reason = None if exists else unreachable_reason(spec)
        if reason is not None:
            raise TranscribeError(_fetch_failed(spec, reason))
    return import_nemo_asr()


def missing_model_file(spec: str) -> str:
    return (f"model file not found: {spec}; pass an existing .nemo file or a NeMo pretrained "
            f"model name such as {DEFAULT_MODEL}")


def looks_like_path(spec: str) -> bool:
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
    spec = os.fspath(model)
    local = Path(spec).expanduser()
    nemo_asr = import_for(spec)
    torch = import_torch()
    dev = pick_device(device)
    ASRModel = nemo_asr.models.ASRModel
    with quiet_nemo(quiet):
        if local.exists():
            if local.is_dir() and not spec.lower().endswith(".nemo"):
                raise TranscribeError(f"model path {spec} is a directory; pass the .nemo file inside it")
            try:
                loaded = ASRModel.restore_from(str(local), map_location=torch.device(dev))
            except Exception as exc:
                raise TranscribeError(
                    f"cannot load the NeMo model {spec}: {type(exc).__name__}: {one_line(exc)}; "
                    "is it a NeMo ASR .nemo checkpoint made with a compatible NeMo version?"
                ) from exc
        elif looks_like_path(spec):
            raise TranscribeError(missing_model_file(spec))
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
        kind = type(loaded).__name__
        raise TranscribeError(f"{spec} is {a_or_an(kind)} {kind}, not an ASR model with transcribe()")
    _refuse_label_models(nemo_asr, loaded, spec)
    loaded = loaded.to(torch.device(dev))
    loaded.eval()
    loaded._sde_model_spec = spec  # remembered for output names and resume checkpoints
    return loaded


# NeMo models restored by ASRModel.restore_from that have a transcribe() but give labels, not text:
# their transcribe() rejects sde's arguments (a TypeError blamed on the first audio file) or returns
# class names that would be scored as hypotheses.
_LABEL_MODELS = ("EncDecClassificationModel", "EncDecSpeakerLabelModel", "EncDecFrameClassificationModel")


def _refuse_label_models(nemo_asr: Any, loaded: Any, spec: str) -> None:
    kinds = tuple(k for k in (getattr(nemo_asr.models, name, None) for name in _LABEL_MODELS) if isinstance(k, type))
    if kinds and isinstance(loaded, kinds):
        kind = type(loaded).__name__
        raise TranscribeError(
            f"{spec} is {a_or_an(kind)} {kind}: a classification, VAD or speaker model, which gives labels, "
            f"not transcripts; pass a speech recognition model (CTC, RNNT/TDT, hybrid or Canary), e.g. {DEFAULT_MODEL}"
        )


def _fetch_failed(spec: str, why: BaseException | str) -> str:
    maybe_path = " (if you meant a local file: it does not exist)" if "/" in spec else ""
    reason = why if isinstance(why, str) else f"{type(why).__name__}: {one_line(why)}"
    return (
        f"cannot fetch the NeMo model {spec!r}{maybe_path}: {reason}. "
        "This machine may be offline: download the .nemo file elsewhere and pass its path, "
        "e.g. --model /path/to/model.nemo"
    )


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _model_device(model: Any) -> str | None:
    try:
        return str(next(model.parameters()).device)
    except Exception:
        return None


def ensure_model(model: Any, device: str, quiet: bool = True) -> tuple[Any, str]:
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
        torch = import_torch()
        model = model.to(torch.device(dev))
    return model, dev

# --------------------------------------------------------------------------------------------
# The alphabet a character model can emit (for the training-data alphabet check)


def model_alphabet(path: str | os.PathLike) -> str | None:
    """The characters a character-based .nemo model emits (its `labels`), read from the archive's
    model_config.yaml without loading NeMo; None for subword (BPE) models, which have no fixed
    alphabet. TranscribeError for a file that is not a .nemo archive."""
    config = _nemo_config(Path(path))
    labels = config.get("labels") or (config.get("decoder") or {}).get("vocabulary")
    if not labels or not all(isinstance(x, str) and len(x) == 1 for x in labels):
        return None
    return "".join(labels)


def nemo_file_sample_rate(path: str | os.PathLike) -> int | None:
    """The sample rate a .nemo model expects, from its model_config.yaml without loading NeMo (so a
    process that only reads audio for the model can resample to it); None when it does not say."""
    config = _nemo_config(Path(path))
    for value in (config.get("sample_rate"), (config.get("preprocessor") or {}).get("sample_rate")):
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
    return None


def _nemo_config(p: Path) -> dict:
    import yaml  # here: every server imports this module (its transcribe panel), few read a .nemo (~25 ms)

    try:
        with tarfile.open(p) as archive:
            member = next((m for m in archive.getmembers() if m.name.endswith("model_config.yaml")), None)
            if member is None:
                raise TranscribeError(f"{p}: no model_config.yaml inside; is this a .nemo file?")
            config = yaml.safe_load(archive.extractfile(member))  # type: ignore[arg-type]
    except (OSError, tarfile.TarError, yaml.YAMLError) as exc:
        raise TranscribeError(f"{p}: cannot read the model's configuration ({one_line(exc)})") from None
    return config if isinstance(config, dict) else {}
