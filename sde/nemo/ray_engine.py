"""The Ray engine: transcription batches on a Ray cluster (optional: the extra ``sde[ray]``).

A Ray Data pipeline over the batches the driver plans exactly as the local engine plans them (similar
durations, longest first): the same batches mean the same padding, so the same predictions.

    from_items(batch plans)
      → map(_read_batch)                 CPU tasks: decode and resample each batch's audio (sde.audio)
      → map_batches(_Transcriber)        actors: the NeMo model loaded once per actor, on its GPU(s)
                                         when asked; an actor that dies is restarted and its batch
                                         retried by Ray (max_restarts, max_task_retries)
      → iter_rows on the driver          each finished batch goes to the caller, who appends it to
                                         the job's part file (sde.nemo.parts) before asking for more

The driver holds nothing that is not already in the part file, so an interrupted driver (Ctrl-C,
SIGTERM from a scheduler) leaves a part file the next run resumes from. Without an address a
local Ray instance is started for the run and stopped after it; an existing session (``ray.init``
already called by the caller) is used as it is. Ray is imported here only, when a run starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sde.nemo.infer import (SegmentRef, StopRequested, Unreadable, batch_plan, collect_predictions, infer_readable,
                            load_readable)
from sde.nemo.model import (TranscribeError, ensure_model, looks_like_path, model_sample_rate, nemo_file_sample_rate,
                            one_line, pick_amp_dtype)

__all__ = [
    "RAY_MISSING_MESSAGE",
    "FAULT_ENV",
    "RayMissingError",
    "RayOptions",
    "import_ray",
    "ray_available",
    "ray_batches",
    "transcribe_segments_ray",
]

RAY_MISSING_MESSAGE = "Ray is not installed. Install it with: pip install 'sde[ray]'"

# Fault injection for the tests (and for trying a cluster's recovery by hand): "MARKER:N" makes the
# actor that runs the N-th batch of its life exit at once, unless MARKER exists (it creates it, so a
# restarted actor does not die again). Read by the driver and handed to the actors.
FAULT_ENV = "SDE_RAY_FAULT"
# An actor task (one batch) that keeps killing its actor is given up after this many retries, with
# an error, instead of looping for ever; dead actors themselves are always restarted.
MAX_TASK_RETRIES = 3
# The rate CPU tasks resample to when the model's own is unknown (a pretrained name).
_DEFAULT_SAMPLE_RATE = 16000


class RayMissingError(TranscribeError):
    """Ray (with Ray Data) cannot be imported."""

    def __init__(self, message: str = RAY_MISSING_MESSAGE) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs.

    - ``address``: ``auto`` (the cluster this machine belongs to, e.g. started by ``ray start``),
      ``ray://HOST:PORT`` (Ray Client), ``HOST:PORT``; ``local``: a local instance started for the
      run, whatever ``$RAY_ADDRESS`` says; None: ``$RAY_ADDRESS`` when set (as under
      ``ray job submit``), else a local instance started for the run.
    - ``workers``: model actors (None: one per ``gpus_per_worker`` GPUs, else half the CPUs).
    - ``gpus_per_worker``: GPUs per actor, fractions allowed (None: 1 when the cluster has GPUs).
    - ``num_cpus``: CPUs of the local instance (None: the CPUs this process may use).
    - ``address_hint``: the way out when the address cannot be reached, naming what the user set it
      with (``--address``; ``SDE_RAY_ADDRESS`` for the explorer's own transcription).
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    num_cpus: int | None = None
    address_hint: str = "Without --address (and RAY_ADDRESS) sde starts a local Ray instance"


def import_ray() -> Any:
    """Import ``ray`` and ``ray.data``; a missing or broken Ray becomes :class:`RayMissingError`."""
    try:
        import ray
        import ray.data  # noqa: F401 - the extra is ray[data]; plain ray lacks its dependencies
    except Exception as exc:  # ImportError, or a broken install raising anything else
        raise RayMissingError() from exc
    # Ray Data reads its own deprecated settings when it copies its context: nothing a user can change
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.")
    return ray


def ray_available() -> bool:
    try:
        import_ray()
    except RayMissingError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# The session


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _quiet_ray() -> Iterator[None]:
    # Ray and Ray Data log INFO/WARNING lines (start-up, token auth, progress bars off, "execution
    # finished") to stderr; sde's stderr carries its own progress line and errors only.
    loggers = [logging.getLogger(name) for name in ("ray", "ray.data", "ray.data._internal")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _python_sigterm_handler() -> Any:
    """The SIGTERM handler a caller installed in Python, if any (and only in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    handler = signal.getsignal(signal.SIGTERM)
    return handler if callable(handler) else None


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a HOST:PORT (or ray://HOST:PORT) nothing listens on: ray.init keeps retrying
    such an address for many minutes, deaf to Ctrl-C. ``auto`` is looked up by Ray itself."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
        pass


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """``ray`` connected to ``options.address``, or to a local instance started for the run (and
    stopped after it), or to the session the caller already opened (left open)."""
    ray = import_ray()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # sde draws one line of its own
    context.print_on_execution_start = False
    with _quiet_ray():
        if ray.is_initialized():
            yield ray
            return
        sigterm = _python_sigterm_handler()
        # under `ray job submit` (and after `export RAY_ADDRESS=...`) the job's cluster is the one meant
        address = options.address or os.environ.get("RAY_ADDRESS") or None
        if address == "local":  # asked for by name: RAY_ADDRESS (another cluster) must not win
            address = None
        try:
            if address:
                _check_reachable(address)
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            else:
                # at least 2 logical CPUs: one model actor plus one task decoding audio, also on a
                # 1-CPU machine (Ray's CPUs are slots, not cores)
                # address="local", not None: with None ray.init joins $RAY_ADDRESS's cluster
                ray.init(address="local", num_cpus=options.num_cpus or max(2, _local_cpus()),
                         include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
            if sigterm is not None:
                # ray.init replaces it with sys.exit(15); the caller's handler (sde transcribe: unwind
                # like Ctrl-C, say how to resume) stays in charge
                signal.signal(signal.SIGTERM, sigterm)
        except SystemExit as exc:
            if exc.code != signal.SIGTERM:
                raise
            # a SIGTERM while ray.init runs meets Ray's own handler (sys.exit(15)): end as sde's would
            os.write(2, b"terminated\n")
            raise SystemExit(128 + signal.SIGTERM) from None
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError: all mean "no cluster here"
            if address:
                raise TranscribeError(
                    f"cannot connect to the Ray cluster at {address}: {one_line(exc)}; is it running (`ray status` "
                    f"on one of its nodes)? {options.address_hint}"
                ) from exc
            raise TranscribeError(f"cannot start a local Ray instance: {one_line(exc)}") from exc
        try:
            yield ray
        finally:
            ray.shutdown()


def _plan_resources(ray: Any, options: RayOptions) -> tuple[int, float]:
    """(model actors, GPUs per actor) for this cluster."""
    resources = ray.cluster_resources()
    cluster_gpus = float(resources.get("GPU", 0))
    cluster_cpus = float(resources.get("CPU", 1))
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster_gpus >= 1 else 0.0
    elif gpus > 0 and cluster_gpus == 0:
        # an actor asking for a GPU no node has is never scheduled: the run would wait for ever, silently
        raise TranscribeError(
            f"--gpus-per-worker {gpus:g}: the Ray cluster has no GPUs ({cluster_cpus:g} CPUs only); leave it out "
            "(CPU workers) or connect to a cluster with GPUs (--address)"
        )
    if options.workers:
        workers = options.workers
    elif gpus > 0:
        workers = max(1, int(cluster_gpus // gpus))
    else:
        workers = max(1, int(cluster_cpus // 2))  # the other half decodes audio
    if workers >= cluster_cpus:
        # each model actor holds a CPU for its whole life: with all of them held, no task could
        # decode audio and the pipeline would wait for ever
        raise TranscribeError(
            f"{workers} model workers would hold all {cluster_cpus:g} CPUs of the Ray cluster, leaving none to "
            f"decode audio; use --workers {max(1, int(cluster_cpus) - 1)} or fewer, or a cluster with more CPUs"
        )
    if gpus > 0 and workers * gpus > cluster_gpus:
        print(f"warning: {workers} workers x {gpus:g} GPU need {workers * gpus:g} GPUs, the Ray cluster has "
              f"{cluster_gpus:g} now; waiting for more (an autoscaler may add them)", file=sys.stderr, flush=True)
    return workers, gpus


# --------------------------------------------------------------------------------------------
# The pipeline's stages (module-level: Ray pickles them by reference, workers import sde)


def _read_batch(row: dict[str, Any], sample_rate: int) -> dict[str, Any]:
    """CPU task: the audio of one planned batch, flat (float32 at ``sample_rate``) with its lengths;
    an unreadable file is listed in ``unreadable`` ([position, message named by manifest line]) and
    left out of the audio, not a task failure to retry: the others of its batch are transcribed."""
    work = json.loads(row["work"])
    refs = [SegmentRef(path, offset, duration, *channel) for path, offset, duration, _, *channel in work]
    loaded = load_readable(refs, sample_rate, [item[3] for item in work])
    audio = [a for a in loaded if not isinstance(a, Unreadable)]
    unreadable = [[k, a.message] for k, a in enumerate(loaded) if isinstance(a, Unreadable)]
    lengths = np.array([a.shape[0] for a in audio], dtype=np.int64)
    flat = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
    return {"batch": row["batch"], "work": row["work"], "audio": flat, "lengths": lengths, "rate": sample_rate,
            "unreadable": json.dumps(unreadable, ensure_ascii=False), "error": ""}


def _encode_texts(texts: Sequence[str | Unreadable]) -> str:
    """A batch's predictions as JSON: a string, or ``{"unreadable": message}``."""
    return json.dumps([{"unreadable": t.message} if isinstance(t, Unreadable) else t for t in texts],
                      ensure_ascii=False)


def _decode_texts(raw: str) -> list[str | Unreadable]:
    return [Unreadable(t["unreadable"]) if isinstance(t, dict) else t for t in json.loads(raw)]


class _Transcriber:
    """Actor: the model, loaded once; one planned batch per call. Failures come back as the row's
    error (the driver stops with that message); only a dead process is left to Ray to restart."""

    def __init__(self, model: str, use_gpu: bool, amp: bool, fault: str | None = None) -> None:
        self.failure = ""
        self.calls = 0
        self.fault = fault
        try:
            self.model, self.device = ensure_model(model, "cuda" if use_gpu else "cpu")
            self.amp_dtype = pick_amp_dtype(self.device, amp)
            self.rate = model_sample_rate(self.model)
        except TranscribeError as exc:
            self.failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - a CUDA or NeMo error on that node: said, not retried
            self.failure = f"cannot load the model {model} on a Ray worker: {type(exc).__name__}: {one_line(exc)}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {"batch": [], "texts": [], "seconds": [], "error": []}
        for r in range(len(batch["batch"])):
            self.calls += 1
            self._maybe_die()
            texts, seconds, error = self._transcribe(batch, r)
            out["batch"].append(int(batch["batch"][r]))
            out["texts"].append(texts)
            out["seconds"].append(seconds)
            out["error"].append(error)
        return {k: np.asarray(v) for k, v in out.items()}

    def _transcribe(self, batch: dict[str, np.ndarray], r: int) -> tuple[str, float, str]:
        error = str(batch["error"][r]) or self.failure
        if error:
            return "[]", 0.0, error
        work = json.loads(str(batch["work"][r]))
        refs = [SegmentRef(path, offset, duration, *channel) for path, offset, duration, _, *channel in work]
        flat = np.asarray(batch["audio"][r], dtype=np.float32)
        bounds = np.cumsum(np.asarray(batch["lengths"][r], dtype=np.int64))[:-1]
        arrays = [np.ascontiguousarray(a) for a in np.split(flat, bounds)] if len(batch["lengths"][r]) else []
        rate = int(batch["rate"][r])
        if rate != self.rate:  # the driver guessed the rate (a pretrained name): resample here
            from sde.audio import resample

            arrays = [np.ascontiguousarray(resample(a, rate, self.rate), dtype=np.float32) for a in arrays]
        audio: list[np.ndarray | Unreadable] = list(arrays)
        for k, message in json.loads(str(batch["unreadable"][r])):  # back in their places, in order
            audio.insert(int(k), Unreadable(message))
        try:
            texts, seconds = infer_readable(self.model, audio, refs, device=self.device, amp_dtype=self.amp_dtype,
                                            sample_rate=self.rate)
        except TranscribeError as exc:
            return "[]", 0.0, str(exc)
        return _encode_texts(texts), seconds, ""

    def _maybe_die(self) -> None:
        if not self.fault:
            return
        marker, _, nth = self.fault.rpartition(":")
        if self.calls == int(nth):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os._exit(1)  # a real process death, as an out-of-memory kill or a lost node would be


def _transcribers(ds: Any, ray: Any, *, workers: int, gpus: float, constructor: dict[str, Any]) -> Any:
    """The model stage. max_restarts/max_task_retries are passed as Ray remote args, which Ray 2.5x
    deprecates in favour of its own defaults (restart for ever, retry for ever): keep them while they
    are accepted, so a batch that always kills its actor fails the run instead of looping."""
    common = dict(batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                  fn_constructor_kwargs=constructor, num_gpus=gpus or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        try:
            return ds.map_batches(_Transcriber, max_restarts=-1, max_task_retries=MAX_TASK_RETRIES, **common)
        except TypeError:  # a Ray that no longer takes remote args here
            return ds.map_batches(_Transcriber, **common)


# --------------------------------------------------------------------------------------------
# The driver


def _sample_rate_hint(model: str) -> int:
    """The rate the CPU tasks resample to: the .nemo file's own when it says, else 16 kHz (every
    NeMo ASR checkpoint so far); an actor whose model differs resamples again."""
    if Path(model).is_file():
        with contextlib.suppress(TranscribeError):
            return nemo_file_sample_rate(model) or _DEFAULT_SAMPLE_RATE
    return _DEFAULT_SAMPLE_RATE


def _model_spec(model: str | os.PathLike) -> str:
    """What the actors load: an existing local file by its absolute path (actors do not share the
    driver's current directory); a pretrained name as it is."""
    spec = os.fspath(model)
    local = Path(spec).expanduser()
    if local.exists():
        return str(local.resolve())
    if looks_like_path(spec):
        raise TranscribeError(f"model file not found: {spec}; pass an existing .nemo file or a NeMo pretrained model name")
    return spec


def ray_batches(
    model: str | os.PathLike,
    refs: Sequence[SegmentRef],
    indices: Sequence[int],
    *,
    batch_size: int,
    amp: bool = True,
    options: RayOptions | None = None,
    should_stop: Callable[[], bool] | None = None,
    describe: Callable[[int], str] | None = None,
    known_seconds: Sequence[float | None] | None = None,
) -> Iterator[tuple[list[int], list[str | Unreadable], float]]:
    """Yield (indices, predictions, audio seconds) per batch, as :func:`sde.nemo.infer.run_batches`
    does (an :class:`Unreadable` for an utterance whose audio cannot be read), computed on Ray;
    batches arrive in the order they finish."""
    options = options or RayOptions()
    spec = _model_spec(model)
    fault = os.environ.get(FAULT_ENV) or None
    if fault is not None and not re.fullmatch(r".+:\d+", fault):
        raise TranscribeError(f"{FAULT_ENV}={fault!r}: expected MARKER_FILE:N (the actor's N-th batch kills it once)")
    plan = batch_plan(refs, indices, batch_size, known_seconds)
    if not plan:
        return
    if should_stop is not None and should_stop():
        raise StopRequested()
    items = [{"batch": b, "work": json.dumps([[refs[i].path, refs[i].offset, refs[i].duration,
                                               describe(i) if describe else refs[i].path, refs[i].channel]
                                              for i in batch])}
             for b, batch in enumerate(plan)]
    with ray_session(options) as ray:
        workers, gpus = _plan_resources(ray, options)
        constructor = {"model": spec, "use_gpu": gpus > 0, "amp": amp, "fault": fault}
        # one planned batch per block: reading streams batch by batch instead of a block at a time
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 10_000))
        ds = ds.map(_read_batch, fn_kwargs={"sample_rate": _sample_rate_hint(spec)})
        ds = _transcribers(ds, ray, workers=workers, gpus=gpus, constructor=constructor)
        rows = iter(ds.iter_rows())
        try:
            for row in rows:
                if row["error"]:
                    raise TranscribeError(str(row["error"]))
                yield plan[int(row["batch"])], _decode_texts(row["texts"]), float(row["seconds"])
                if should_stop is not None and should_stop():
                    raise StopRequested()
        finally:
            with contextlib.suppress(Exception):
                rows.close()  # stop the pipeline now, also in a session that stays open


def transcribe_segments_ray(
    items: Sequence[SegmentRef | tuple],
    model: str | os.PathLike,
    *,
    batch_size: int = 16,
    amp: bool = True,
    options: RayOptions | None = None,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    wheres: Sequence[str] | None = None,
) -> list[str | None]:
    """:func:`sde.nemo.infer.transcribe_segments` on Ray: predictions for (audio_path, offset,
    duration) items, in the same order, None where the audio cannot be read (the UI's background
    transcription with a Ray address)."""
    refs = [SegmentRef(*item) for item in items]
    total = len(refs)
    batches = ray_batches(model, refs, range(total), batch_size=batch_size, amp=amp, options=options,
                          should_stop=should_stop, describe=None if wheres is None else wheres.__getitem__)
    return collect_predictions(batches, total, progress, on_progress, warn)
