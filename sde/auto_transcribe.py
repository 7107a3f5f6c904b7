"""Predictions for a dataset that has none: transcribe with NeMo, cached by manifest + model.

Used by `sde MANIFEST` (before serving) and by the UI's "Transcribe with NeMo" background job. The
cached predictions are keyed by the manifest's fingerprint and the model's identity, so a restart does
not transcribe again, and a changed manifest or model does.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Callable

from sde.cache import CacheUnusable, _file_stamp, _stderr_warning, default_cache_dir, open_store, report_unusable
from sde.dataset import Dataset, with_predictions
from sde.transcribe import transcribe_segments

PREDICTION_FIELD = "pred_text"


def predictions_key(dataset: Dataset, model: str) -> str:
    model_identity: dict = {"spec": str(model)}
    if os.path.exists(str(model)):
        model_identity = _file_stamp(model)
    record = {"manifest": _file_stamp(dataset.manifest_path), "model": model_identity,
              "audio_base_path": dataset.options.audio_base_path}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def predictions_for(
    dataset: Dataset,
    model: str,
    *,
    device: str = "auto",
    batch_size: int = 16,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    warn: Callable[[str], None] = _stderr_warning,
) -> list[str]:
    """One prediction per utterance from `model` (a NeMo name or a .nemo path), cached."""
    store = _open_store(cache_dir, use_cache, warn)
    key = predictions_key(dataset, model) if store is not None else None
    try:
        if store is not None:
            preds = _cached(store, key, len(dataset.utterances))
            if preds is not None:
                return preds
        table = dataset.utterances
        items = list(zip(table["audio_path"].tolist(), table["offset"].tolist(), table["duration"].tolist()))
        preds = transcribe_segments(items, model, device=device, batch_size=batch_size, progress=progress,
                                    on_progress=on_progress, should_stop=should_stop)
        if store is not None:
            try:
                store.set(("predictions", key), pickle.dumps(preds, protocol=pickle.HIGHEST_PROTOCOL))
            except Exception as e:  # noqa: BLE001 - a full disk costs a re-run later, nothing more
                warn(f"could not cache the predictions ({e})")
        return preds
    finally:
        if store is not None:
            store.close()


def transcribe_dataset(dataset: Dataset, model: str, **kwargs) -> Dataset:
    """`dataset` with a scored `pred_text` hypothesis from `model` (see predictions_for)."""
    return with_predictions(dataset, PREDICTION_FIELD, predictions_for(dataset, model, **kwargs))


def _cached(store, key: str, n: int) -> list[str] | None:
    raw = store.get(("predictions", key))
    if raw is None:
        return None
    try:
        preds = pickle.loads(raw)
    except Exception:  # noqa: BLE001 - a corrupt entry is transcribed again
        return None
    return preds if isinstance(preds, list) and len(preds) == n else None


def _open_store(cache_dir, use_cache: bool, warn):
    if not use_cache:
        return None
    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    try:
        return open_store(directory, warn, sub="predictions")
    except CacheUnusable as e:
        report_unusable(warn, e, "predictions will not be cached", once=True)
        return None
