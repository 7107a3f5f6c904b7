"""`sde transcribe`: the click command over :mod:`sde.nemo.jobs` (needs the extra sde[nemo]).

``sde.cli`` adds ``transcribe_command`` to the ``sde`` group. NeMo is imported only when the
command runs, so ``sde --help`` stays fast and works without the extra.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

from sde.cluster_address import checked_address
from sde.nemo.infer import TranscribeCancelled
from sde.nemo.model import DEFAULT_MODEL, TranscribeError, WritesOverInput, pick_device

# sde.nemo.jobs reads manifests with sde.manifest (pandas, pyarrow: ~0.3 s to import) and is
# imported where it is used, on purpose: `sde --help` registers this command and must stay fast.


def parse_shard(value: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)``; ``ValueError`` with the rule that was broken."""
    parts = str(value).strip().split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"{value!r} is not I/N (e.g. 0/4: the first of 4 shards)")
    i, n = int(parts[0]), int(parts[1])
    if n < 1:
        raise ValueError(f"{value}: N must be >= 1")
    if i >= n:
        raise ValueError(f"{value}: I must be < N (shards are numbered 0 .. N-1)")
    return i, n


def _shard_option(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        return parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _device_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        pick_device(value, cuda_available=False)  # syntax only; availability is checked when running
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    except TranscribeError:
        pass
    return value.strip().lower()


def _model_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():  # `--model "$MODEL"` with MODEL unset read as the current folder: "is a directory"
        raise click.BadParameter(f"is empty; give a .nemo file or a NeMo model name such as {DEFAULT_MODEL}",
                                 ctx=ctx, param=param)
    return value


def _field_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip()
    if not value:
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    from sde.nemo.jobs import PROTECTED_FIELDS  # lazy: see the note at the imports

    if value in PROTECTED_FIELDS:
        raise click.BadParameter(
            f"{value!r} would overwrite the manifest's own field; use e.g. pred_text or pred_text_<label>",
            ctx=ctx, param=param,
        )
    return value


class _Failed(click.ClickException):
    """Exit 1 with a one-line message (data, model or environment problem)."""


class _Refused(click.ClickException):
    """Exit 2: an option that would make the run write over one of its inputs (--out naming the manifest)."""

    exit_code = 2


class _NeedsExtra(click.ClickException):
    """Exit 2: the command cannot run as asked without an optional extra."""

    exit_code = 2


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler ending the job, ``kill``): unwound like Ctrl-C, so the part file is
    closed and a Ray instance started for the run is stopped."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (CliRunner in a thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ray_options(engine: str, address: str | None, workers: int | None, gpus_per_worker: float | None,
                 device: str, shard: tuple[int, int] | None, merge: bool):
    """RayOptions for --engine ray (checking the extra is installed), None for --engine local."""
    ray_only = [name for name, value in (("--address", address), ("--workers", workers),
                                         ("--gpus-per-worker", gpus_per_worker)) if value is not None]
    if engine == "local":
        if ray_only:
            raise click.UsageError(f"{', '.join(ray_only)}: only with --engine ray")
        return None
    if shard is not None or merge:
        raise click.UsageError("--shard/--merge split the work for schedulers without Ray; --engine ray splits it itself")
    if device != "auto":
        raise click.UsageError("--device is for --engine local; with --engine ray use --gpus-per-worker (0: CPU)")
    from sde.nemo.ray_engine import RayOptions, import_ray

    try:
        import_ray()
    except TranscribeError as exc:
        raise _NeedsExtra(str(exc)) from None
    return RayOptions(address=address, workers=workers, gpus_per_worker=gpus_per_worker)


HELP = f"""Transcribe MANIFEST with a NeMo ASR model and write a NeMo output manifest: every input
field plus the prediction field (--field, default pred_text), in input order. Needs the extra:
pip install "sde[nemo]" (install torch for your platform first).

\b
MODEL is a local .nemo file or a NeMo pretrained name (downloaded once, then cached):
  {DEFAULT_MODEL} (default; English, punctuation and capitals),
  nvidia/parakeet-tdt-0.6b-v2, stt_en_conformer_ctc_large, ...
Offline machines: copy the .nemo file over and pass its path.

\b
Output: --out FILE, or --out DIR/, or by default MANIFEST_STEM_MODEL_STEM.json in the
current directory. Written atomically; never over the input. Finished batches are checkpointed in
OUT.partial: run the same command again after an interruption and it resumes. A line whose audio
cannot be read (missing, corrupt, empty) is named in a warning and written without the prediction
field (sde leaves it out of the scores); the others are transcribed.

\b
Several GPUs / nodes: split the manifest into N shards, one per process, then merge:
  sde transcribe m.json --model M --shard 0/2 --device cuda:0   # writes m_M.shard0of2.json
  sde transcribe m.json --model M --shard 1/2 --device cuda:1   # writes m_M.shard1of2.json
  sde transcribe m.json --model M --merge                       # joins them into m_M.json
(shard I takes the non-blank lines I, I+N, I+2N, ...; use the same --model/--out for all.)

\b
Or on a Ray cluster (pip install "sde[ray]"), which splits the work and restarts failed workers:
  sde transcribe m.json --model M --engine ray                  # a local Ray instance
  sde transcribe m.json --model M --engine ray --address auto --gpus-per-worker 1
Both engines write the same output and the same OUT.partial: either one resumes the other's run.
"""


def _tars(pattern: str | None) -> tuple[str, ...]:
    """The tars a --tarred-audio pattern names, in shard order (a usage error when none match)."""
    if not pattern:
        return ()
    from sde.sources import PatternError, RemoteError, expand_sources

    try:
        return tuple(s.location for s in expand_sources([pattern]).sources)
    except (PatternError, RemoteError) as e:
        raise click.BadParameter(str(e), param_hint="--tarred-audio") from None


@click.command("transcribe", help=HELP, short_help="Predict transcripts with a NeMo ASR model.")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="MANIFEST")
@click.option("--model", "-m", default=DEFAULT_MODEL, show_default=True, metavar="NAME_OR_.nemo",
              callback=_model_option, help="NeMo pretrained model name or path to a .nemo file.")
# a str, not a Path: Path("preds/") drops the slash that says "a folder" (one not made yet)
@click.option("--out", "-o", type=click.Path(), default=None, metavar="FILE_OR_DIR/",
              help="Output manifest (or a directory for the default name).")
@click.option("--field", default="pred_text", show_default=True, callback=_field_option,
              help="Name of the prediction field (e.g. pred_text_parakeet to compare models).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=16, show_default=True,
              help="Utterances per batch (sorted by duration). Lower it on out-of-memory errors.")
@click.option("--device", default="auto", show_default=True, callback=_device_option,
              metavar="auto|cpu|cuda|cuda:N", help="auto = the first GPU when CUDA is available, else CPU.")
@click.option("--no-amp", is_flag=True, help="Run in float32 on GPU (default: bf16 autocast, fp16 where bf16 is unsupported).")
@click.option("--shard", callback=_shard_option, metavar="I/N",
              help="Transcribe only shard I of N (0-based) into OUT_STEM.shardIofN.json.")
@click.option("--merge", is_flag=True, help="Join the finished OUT_STEM.shard*of*.json files into the output and stop.")
@click.option("--audio-base-path", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Base folder of relative audio paths (default: the manifest's folder).")
@click.option("--tarred-audio", default=None, metavar="PATTERN",
              help="NeMo tarred audio: the tar shards, e.g. 'audio__OP_0..511_CL_.tar'; lines name their "
                   "shard_id and member.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a Ray cluster (needs the extra sde[ray]).")
@click.option("--address", default=None, metavar="auto|local|HOST:PORT|ray://HOST:PORT", callback=checked_address,
              help="Ray cluster to run on (default: $RAY_ADDRESS's cluster when it is set, else a local Ray "
                   "instance for the run; local: a local instance even when RAY_ADDRESS is set).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray: model actors (default: one per GPU, or half the CPUs).")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None, metavar="G",
              help="Ray: GPUs per model actor, fractions allowed (default: 1 when the cluster has GPUs, else 0).")
def transcribe_command(
    sources: tuple[Path, ...],
    model: str,
    out: str | None,
    field: str,
    batch_size: int,
    device: str,
    no_amp: bool,
    shard: tuple[int, int] | None,
    merge: bool,
    audio_base_path: Path | None,
    no_progress: bool,
    engine: str,
    address: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
    tarred_audio: str | None,
) -> None:
    if merge and shard is not None:
        raise click.UsageError("--merge joins all shards; do not combine it with --shard")
    if out is not None and not _names_folder(out) and Path(out).name.lower().endswith((".gz", ".bz2", ".xz")):
        # the output is plain JSON Lines: under this name zcat and NeMo's readers would reject it
        raise click.BadParameter(f"{out}: sde transcribe writes plain JSON Lines; name it .json (and compress "
                                 "it afterwards if you like: sde reads m.json.gz)", param_hint="--out")
    ray_options = _ray_options(engine, address, workers, gpus_per_worker, device, shard, merge)
    manifest, out, places = _one_manifest(sources, model, out, shard)
    if not manifest.exists():
        raise _Failed(f"manifest not found: {manifest}")
    from sde.nemo.jobs import (find_shards, merge_shards, merge_source, output_path,  # lazy: see the imports
                               transcribe_manifest)

    try:
        if merge:
            target = output_path(manifest, model, out)
            shards = find_shards(target)
            if not shards:
                raise TranscribeError(
                    f"no shard files {target.with_suffix('')}.shard*of*.json found; create them with "
                    "--shard I/N first (with the same --model and --out)"
                )
            started = time.perf_counter()
            source, tars = merge_source(manifest, target, model, tarred_audio=_tars(tarred_audio))
            merge_shards(shards, target, manifest=source, audio_base_path=audio_base_path, tarred_audio=tars,
                         model=model)
            click.echo(f"merged {len(shards)} shards into {target} in {time.perf_counter() - started:.1f} s", err=True)
            click.echo(str(target))
            return
        started = time.perf_counter()
        with _sigterm_unwinds():
            written = transcribe_manifest(
                manifest, model, out=out, field=field, batch_size=batch_size, device=device, amp=not no_amp,
                shard=shard, progress=not no_progress, audio_base_path=audio_base_path, engine=engine,
                ray=ray_options, tarred_audio=_tars(tarred_audio), places=places,
            )
    except TranscribeCancelled as exc:
        raise _Failed(str(exc)) from None
    except WritesOverInput as exc:
        raise _Refused(str(exc)) from None
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, _Terminated) else "interrupted"
        click.echo(f"\n{how}{_partial_hint(manifest, model, out, shard)}", err=True)
        sys.exit(143 if isinstance(exc, _Terminated) else 130)
    except (TranscribeError, OSError) as exc:
        raise _Failed(_message(exc)) from None
    except ValueError as exc:  # arguments the library rejects that the options did not catch
        raise click.UsageError(str(exc)) from None
    click.echo(f"wrote {written} ({time.perf_counter() - started:.1f} s)", err=True)
    click.echo(str(written))


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, TranscribeError):
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def _names_folder(out: str) -> bool:
    """``--out DIR/``: a folder (made when missing), whatever the name looks like."""
    return out.endswith(("/", os.sep))


def _one_manifest(sources: tuple[Path, ...], model: str, out: str | None,
                  shard: tuple[int, int] | None) -> tuple[Path, str | Path | None, list[str] | None]:
    """(manifest to transcribe, --out, the places of its lines): the manifest given (its own lines),
    or for a Lhotse recordings + supervisions pair a NeMo view of its supervisions written beside
    the output (named after the last source; merged back with --predictions), whose lines are named
    by the supervisions file's."""
    if len(sources) == 1:
        return sources[0], out, None
    from sde.manifest import ManifestError, read_manifest
    from sde.manifest.lhotse_reads import nemo_view_path, write_nemo_view
    from sde.nemo.jobs import output_path, refuse_writing_over_inputs, row_places
    from sde.nemo.parts import check_writable, part_path
    from sde.sources.lhotse_source import detect

    if len(sources) != 2 or detect([str(p) for p in sources]) != "pair":
        raise click.UsageError("give one manifest (or a Lhotse recordings + supervisions pair)")
    try:
        read = read_manifest([str(p) for p in sources])
    except ManifestError as exc:
        raise _Failed(str(exc)) from None
    table = read.table
    target = output_path(sources[-1], model, out, shard)
    try:  # before the view is written: neither it nor the output may land on an input
        refuse_writing_over_inputs({"--out": target, "--out's part file": part_path(target),
                                    "--out's Lhotse view": nemo_view_path(target)}, list(sources), model,
                                   table["audio_path"] if "audio_path" in table else [])
        check_writable(target)  # makes --out DIR/ before the view goes into it, or says why it cannot
    except WritesOverInput as exc:
        raise _Refused(str(exc)) from None
    except TranscribeError as exc:
        raise _Failed(str(exc)) from None
    return write_nemo_view(table, target), target, row_places(table, read.shown)


def _partial_hint(manifest: Path, model: str, out: str | Path | None, shard: tuple[int, int] | None) -> str:
    """What an interrupted run says after "interrupted": where its progress is, or that none was kept."""
    from sde.nemo.jobs import output_path  # lazy: see the note at the imports

    try:
        target = output_path(manifest, model, out, shard)
    except Exception:
        return ""
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        return f"; progress is saved in {partial}; run the same command again to resume"
    # the part file goes when it holds no line (PartFile): "resume" would promise what is not there
    return " before any transcript was saved: nothing to resume, the same command starts over"


__all__ = ["parse_shard", "transcribe_command"]
