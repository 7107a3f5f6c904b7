"""NeMo inference for sde (optional: needs the extra ``sde[nemo]``).

- :mod:`sde.nemo.model` — load a model by name or ``.nemo`` path, device and precision choice, the
  model's sample rate and alphabet; the errors (:class:`TranscribeError`, :class:`NemoMissingError`).
- :mod:`sde.nemo.infer` — audio in, transcripts out: batching by duration, the inference loop.
- :mod:`sde.nemo.jobs` — transcribe a manifest (resumable, shardable, mergeable), and predictions
  for a dataset cached by manifest + model.
- :mod:`sde.nemo.parts` — the manifest's lines with their stable keys, the part file both engines
  resume from, the atomic output.
- :mod:`sde.nemo.ray_engine` — the same batches on a Ray cluster (optional: ``sde[ray]``).
- :mod:`sde.nemo.command` — the ``sde transcribe`` click command.

Importing this package imports neither NeMo nor torch (see :mod:`sde.nemo.model`), nor pandas: the
names of :mod:`sde.nemo.jobs` (which reads manifests with :mod:`sde.manifest`) are imported from
there, so ``sde --help`` and ``sde transcribe --help`` stay fast.
"""

from sde.nemo.infer import (SegmentRef, TranscribeCancelled, hypotheses_to_texts, prepare_batch, read_audio,
                            transcribe_segments)
from sde.nemo.model import (DEFAULT_MODEL, NEMO_MISSING_MESSAGE, NemoMissingError, TranscribeError, load_model,
                            model_alphabet, model_id, model_sample_rate, model_stem, nemo_available, pick_amp_dtype,
                            pick_device)

__all__ = [
    "DEFAULT_MODEL",
    "NEMO_MISSING_MESSAGE",
    "NemoMissingError",
    "SegmentRef",
    "TranscribeCancelled",
    "TranscribeError",
    "hypotheses_to_texts",
    "load_model",
    "model_alphabet",
    "model_id",
    "model_sample_rate",
    "model_stem",
    "nemo_available",
    "pick_amp_dtype",
    "pick_device",
    "prepare_batch",
    "read_audio",
    "transcribe_segments",
]
