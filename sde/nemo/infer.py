"""NeMo inference: audio in, transcripts out, batched by duration on the chosen device and precision.

:func:`transcribe_segments` is the in-process path: a list of (audio_path, offset, duration) in, a
list of predictions out (same order). :func:`run_batches` is the loop it and
:func:`sde.nemo.jobs.transcribe_manifest` share: batches of similar duration (longest first, so an
out-of-memory shows up at once), the next batch's audio read in a thread while the model works,
bf16/fp16 autocast on GPUs. Audio comes from sde's one reader (:mod:`sde.audio.io`), resampled to
the model's rate.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sde.audio import AudioError, file_info, read_resampled
from sde.error_chain import caused_by
from sde.nemo.model import (TranscribeError, ensure_model, import_for, import_torch, model_sample_rate,
                            one_line, pick_amp_dtype, quiet_nemo)
from sde.progress import progress_bar

__all__ = [
    "SegmentRef",
    "StopRequested",
    "TranscribeCancelled",
    "Unreadable",
    "batch_plan",
    "hypotheses_to_texts",
    "infer_batch",
    "infer_readable",
    "load_batch",
    "load_readable",
    "prepare_batch",
    "read_audio",
    "refuse_none_readable",
    "report_unreadable",
    "run_batches",
    "tick_bar",
    "transcribe_segments",
    "transcription_bar",
    "unreadable_note",
]


class TranscribeCancelled(TranscribeError):
    """``should_stop()`` returned True. Work done so far is kept in ``partial`` (when there is one)."""

    def __init__(self, done: int, total: int, partial: Path | None = None) -> None:
        self.done, self.total, self.partial = done, total, partial
        where = f"; progress is saved in {partial}, run again to resume" if partial else ""
        super().__init__(f"transcription stopped after {done} of {total} utterances{where}")


class SegmentRef(NamedTuple):
    """Which audio to transcribe: a whole file (offset 0, duration None) or a segment of it, of
    one channel (the line's ``audio_channel``: one side of a call), of the mean of a list of channels
    (a microphone array's MultiCut, as NeMo's ``channel_selector`` takes a list), or of every
    channel mixed."""

    path: str
    offset: float = 0.0
    duration: float | None = None  # None: to the end of the file
    channel: Any = None  # audio_channel as the line has it, read by sde.audio.channel_selection; None: the mix



# --------------------------------------------------------------------------------------------
# Audio


def read_audio(path: str, offset: float = 0.0, duration: float | None = None, sample_rate: int = 16000,
               channel: Any = None) -> np.ndarray:
    """Samples of ``path`` from ``offset`` for ``duration`` seconds (to the end when None), float32
    mono at ``sample_rate``: ``channel`` alone (a supervision on one side of a call), the mean of
    the listed channels (``[0, 1]``), else every channel mixed. Only the segment is decoded (sde.audio's reader: libsndfile, else ffmpeg, else
    audioread), block by block, mixed down and resampled as it goes: memory holds the result and
    one block, however long the segment. A file shorter than announced gives what it holds."""
    import sde.sources.members  # noqa: F401 - installs sde.audio's opener of tar-member paths (pandas: not at import)

    offset = max(0.0, float(offset or 0.0))
    if duration is not None and not math.isfinite(duration):
        duration = None
    try:
        samples = read_resampled(path, offset, duration, sample_rate, channel=channel)
    except AudioError as exc:
        raise TranscribeError(_unreadable(exc, offset)) from None
    return np.ascontiguousarray(samples, dtype=np.float32)


def _unreadable(exc: AudioError, offset: float) -> str:
    if exc.reason == "not_found":
        return f"audio file not found: {exc.path}"
    if exc.reason == "offset":
        return f"offset {offset:g} s is past the end of {exc.path} ({_probe_duration(exc.path):.3f} s); check the manifest"
    return f"cannot read audio {exc.path}: {exc.why}"


def prepare_batch(items: Sequence[SegmentRef | tuple], sample_rate: int) -> list[np.ndarray]:
    """The arrays handed to ``model.transcribe`` for ``items`` (path, offset, duration[, channel]): one
    float32 mono array at ``sample_rate`` per item, exactly the segment's samples (of its channel)."""
    out = []
    for item in items:
        ref = SegmentRef(*item)
        out.append(read_audio(ref.path, ref.offset, ref.duration, sample_rate, ref.channel))
    return out


def load_batch(refs: Sequence[SegmentRef], sample_rate: int, wheres: Sequence[str] | None = None) -> list[np.ndarray]:
    """:func:`prepare_batch`, with the failing item's place (``wheres[i]``, e.g. ``manifest:line``)
    in front of the error message."""
    try:
        return prepare_batch(refs, sample_rate)
    except TranscribeError:
        if wheres is None:
            raise
        for ref, where in zip(refs, wheres):
            try:
                prepare_batch([ref], sample_rate)
            except TranscribeError as inner:
                raise TranscribeError(f"{where}: {inner}") from inner
        raise


class Unreadable(NamedTuple):
    """An utterance whose audio could not be read (missing, corrupt, empty, an offset past the end),
    in place of its prediction: the job goes on with the others, and its line gets no prediction
    (left out of the scores, never scored as an empty hypothesis)."""

    message: str  # where (manifest:line when known) and why


def load_readable(refs: Sequence[SegmentRef], sample_rate: int,
                  wheres: Sequence[str] | None = None) -> list[np.ndarray | Unreadable]:
    """One array per ref, or an :class:`Unreadable` (named by ``wheres[i]``) for each one whose audio
    cannot be read. One bad file no longer stops a job of hours over 100k others, nor makes the user
    delete its line (which would shift the keys of every later line and so lose their resume
    records)."""
    try:
        return list(prepare_batch(refs, sample_rate))
    except TranscribeError:
        pass
    audio: list[np.ndarray | Unreadable] = []
    for k, ref in enumerate(refs):
        try:
            audio.append(prepare_batch([ref], sample_rate)[0])
        except TranscribeError as exc:
            audio.append(Unreadable(f"{wheres[k]}: {exc}" if wheres is not None else str(exc)))
    return audio


def infer_readable(model: Any, audio: Sequence[np.ndarray | Unreadable], refs: Sequence[SegmentRef], *,
                   device: str, amp_dtype: str | None, sample_rate: int) -> tuple[list[str | Unreadable], float]:
    """(one prediction per item of ``audio``, or its :class:`Unreadable` as it is; the seconds of
    audio transcribed): the readable items go to the model as one batch."""
    keep = [k for k, a in enumerate(audio) if not isinstance(a, Unreadable)]
    texts: list[str | Unreadable] = list(audio)  # type: ignore[arg-type] - the arrays are replaced below
    if keep:
        arrays = [audio[k] for k in keep]
        for k, text in zip(keep, infer_batch(model, arrays, [refs[k] for k in keep], device=device,  # type: ignore[arg-type]
                                             amp_dtype=amp_dtype)):
            texts[k] = text
    seconds = sum(audio[k].shape[0] for k in keep) / float(sample_rate)  # type: ignore[union-attr]
    return texts, seconds


def unreadable_note(failed: Sequence[str], total: int, field: str = "pred_text", shown: int = 5) -> str:
    """The warning after a job in which ``failed`` (their messages) of ``total`` utterances could not
    be read: how many, the first few with their place, and what their lines get."""
    more = f"\n  ... and {len(failed) - shown} more" if len(failed) > shown else ""
    lines = "".join(f"\n  {m}" for m in failed[:shown])
    return (f"{len(failed)} of {total} utterances could not be read and have no {field} (left out of the "
            f"scores; fix or remove their audio and run again):{lines}{more}")


def _probe_duration(path: str) -> float:
    try:
        return float(file_info(path)["duration"])
    except AudioError:
        return 0.0  # reading it will say why; ordering batches needs no error


def _ref_seconds(ref: SegmentRef) -> float:
    if ref.duration is not None:
        return float(ref.duration)
    return max(0.0, _probe_duration(ref.path) - float(ref.offset or 0.0))



# --------------------------------------------------------------------------------------------
# Inference


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


def batch_plan(
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


def run_batches(
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
) -> Iterator[tuple[list[int], list[str | Unreadable], float]]:
    """Yield (indices, predictions, audio seconds) per batch; audio of the next batch is read in a
    background thread while the model works on the current one. An utterance whose audio cannot be
    read has an :class:`Unreadable` in place of its prediction."""
    sample_rate = model_sample_rate(model)
    batches = batch_plan(refs, indices, batch_size, known_seconds)
    if not batches:
        return

    def load(batch: list[int]) -> list[np.ndarray | Unreadable]:
        wheres = [describe(i) for i in batch] if describe is not None else None
        return load_readable([refs[i] for i in batch], sample_rate, wheres)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sde-audio") as pool:
        pending = pool.submit(load, batches[0])
        for b, batch in enumerate(batches):
            if should_stop is not None and should_stop():
                pending.cancel()
                raise StopRequested()
            audio = pending.result()
            if b + 1 < len(batches):
                pending = pool.submit(load, batches[b + 1])
            texts, seconds = infer_readable(model, audio, [refs[i] for i in batch], device=device,
                                            amp_dtype=amp_dtype, sample_rate=sample_rate)
            yield batch, texts, seconds


def infer_batch(model: Any, audio: list[np.ndarray], refs: Sequence[SegmentRef], *, device: str,
                amp_dtype: str | None) -> list[str]:
    """One prediction per array of ``audio`` (one batch, the audio of ``refs``): inference mode,
    autocast to ``amp_dtype`` on GPUs; an out-of-memory or model error becomes a TranscribeError
    that says what to do."""
    torch = import_torch()
    autocast = (
        torch.autocast(device_type="cuda", dtype=getattr(torch, amp_dtype)) if amp_dtype else contextlib.nullcontext()
    )
    try:
        with torch.inference_mode(), autocast, quiet_nemo():
            result = model.transcribe(audio, batch_size=len(audio), verbose=False)
    except Exception as exc:
        if _interrupted(exc):
            # NeMo's own cleanup can fail while a Ctrl-C unwinds (ValueError "Cannot
            # unfreeze..."), replacing the KeyboardInterrupt: it is still an interruption.
            raise KeyboardInterrupt from exc
        raise _model_failure(exc, refs, device) from exc
    return hypotheses_to_texts(result, len(audio))


class StopRequested(Exception):
    pass


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is anywhere in the exception's cause/context chain."""
    return caused_by(exc, KeyboardInterrupt)


def _model_failure(exc: BaseException, refs: Sequence[SegmentRef], device: str) -> TranscribeError:
    name = type(exc).__name__
    if "OutOfMemory" in name or "out of memory" in str(exc).lower():
        longest = max((_ref_seconds(ref) for ref in refs), default=0.0)
        return TranscribeError(
            f"out of memory on {device} with a batch of {len(refs)} utterances (longest {longest:.1f} s); "
            "rerun with a smaller --batch-size (finished batches are kept and resumed)"
        )
    return TranscribeError(
        f"the model failed on a batch starting with {refs[0].path}: {name}: {one_line(exc)}"
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
    warn: Callable[[str], None] | None = None,
    wheres: Sequence[str] | None = None,
) -> list[str | None]:
    """Predictions for ``items`` = (audio_path, offset, duration) tuples, in the same order.
    ``wheres``: each item's place (``manifest:line``), named with an unreadable item's message.

    ``duration=None`` reads to the end of the file. ``model`` is a name, a ``.nemo`` path or a model
    from :func:`load_model` (load once, call many times). An item whose audio cannot be read gets
    None, and ``warn`` (default: stderr) one note naming them; every item unreadable is a
    :class:`TranscribeError`. Raises :class:`TranscribeCancelled` when ``should_stop()`` turns True
    (nothing is kept: use :func:`transcribe_manifest` to resume)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    refs = [SegmentRef(*item) for item in items]
    total = len(refs)
    if not refs:
        return []
    import_for(model)  # NeMo missing, or a name this machine cannot fetch: said before any device talk
    loaded, dev = ensure_model(model, device)
    amp_dtype = pick_amp_dtype(dev, amp)
    batches = run_batches(loaded, refs, range(total), batch_size=batch_size, device=dev, amp_dtype=amp_dtype,
                          should_stop=should_stop, describe=None if wheres is None else wheres.__getitem__)
    return collect_predictions(batches, total, progress, on_progress, warn)


def collect_predictions(batches: Generator[tuple[list[int], list[str | Unreadable], float], None, None], total: int,
                        progress: bool, on_progress: Callable[[int, int], None] | None,
                        warn: Callable[[str], None] | None = None) -> list[str | None]:
    """Predictions in input order from ``(positions, texts, audio seconds)`` batches, whichever
    engine made them, with the progress bar and ``on_progress(done, total)``; None for an item whose
    audio could not be read (``warn`` gets one note for all; all of them: a TranscribeError);
    StopRequested from the batches becomes :class:`TranscribeCancelled`."""
    preds: list[str | None] = [""] * total
    failed: list[str] = []
    done, audio_s, start = 0, 0.0, time.perf_counter()
    bar = transcription_bar(total, 0, progress)
    if on_progress:
        on_progress(0, total)
    try:
        # the bar as a context: a run that ends in an error prints no closing throughput line
        with bar, contextlib.closing(batches):  # a stop or error ends the generator (and its workers) at once
            for batch, texts, seconds in batches:
                for i, text in zip(batch, texts):
                    if isinstance(text, Unreadable):
                        preds[i] = None
                        failed.append(text.message)
                    else:
                        preds[i] = text
                done += len(batch)
                audio_s += seconds
                tick_bar(bar, len(batch), audio_s, start, done)
                if on_progress:
                    on_progress(done, total)
            refuse_none_readable(failed, total)
    except StopRequested:
        raise TranscribeCancelled(done, total) from None
    report_unreadable(failed, total, warn)
    return preds


def report_unreadable(failed: Sequence[str], total: int, warn: Callable[[str], None] | None,
                      field: str = "pred_text") -> None:
    """Nothing when every utterance was read; else ``warn`` (default: stderr) the note of
    :func:`unreadable_note`. A run where none could be read was refused before
    (:func:`refuse_none_readable`, by the caller, which knows where the audio was looked for)."""
    if not failed:
        return
    note = unreadable_note(failed, total, field)
    if warn is None:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    else:
        warn(note)


def refuse_none_readable(failed: Sequence[str], total: int, hint: str = "") -> None:
    """A TranscribeError when none of ``total`` utterances could be read (``failed``: why, each),
    ending with ``hint`` (where the audio was looked for, say): a wrong --audio-base-path, an
    unmounted disk; an output without a single prediction helps no one."""
    if failed and len(failed) >= total:
        raise TranscribeError(f"none of the {total} utterances could be read, e.g. {failed[0]}{hint}")


def transcription_bar(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar on a terminal, one plain line in a log (stderr: stdout is for the output path)."""
    return progress_bar(total, "Transcribing", unit="utt", enabled=enabled, initial=initial, stream=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1)


def tick_bar(bar: Any, n: int, audio_s: float, start: float, utterances: int | None = None) -> None:
    """Advance the bar by ``n`` utterances, showing utterances/s (``utterances`` done since ``start``;
    a log gets no rate from the plain line otherwise) and RTFx (audio seconds per wall second)."""
    wall = max(time.perf_counter() - start, 1e-9)
    rate = f"{utterances / wall:.1f} utt/s, " if utterances is not None else ""
    bar.set_postfix_str(f"{rate}RTFx {audio_s / wall:.1f}", refresh=False)
    bar.update(n)
