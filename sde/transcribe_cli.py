"""`sde transcribe`: predictions for a manifest with a NeMo ASR model (needs the extra sde[nemo]).

The lead adds ``transcribe_command`` to the ``sde`` click group. NeMo is imported only when the
command runs, so ``sde --help`` stays fast and works without the extra.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from sde.transcribe import (
    DEFAULT_MODEL,
    PROTECTED_FIELDS,
    TranscribeCancelled,
    TranscribeError,
    find_shards,
    merge_shards,
    output_path,
    pick_device,
    transcribe_manifest,
)


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


def _field_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip()
    if not value:
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    if value in PROTECTED_FIELDS:
        raise click.BadParameter(
            f"{value!r} would overwrite the manifest's own field; use e.g. pred_text or pred_text_<label>",
            ctx=ctx, param=param,
        )
    return value


class _Failed(click.ClickException):
    """Exit 1 with a one-line message (data, model or environment problem)."""


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
OUT.partial: run the same command again after an interruption and it resumes.

\b
Several GPUs / nodes: split the manifest into N shards, one per process, then merge:
  sde transcribe m.json --model M --shard 0/2 --device cuda:0   # writes m_M.shard0of2.json
  sde transcribe m.json --model M --shard 1/2 --device cuda:1   # writes m_M.shard1of2.json
  sde transcribe m.json --model M --merge                       # joins them into m_M.json
(shard I takes the non-blank lines I, I+N, I+2N, ...; use the same --model/--out for all.)
"""


@click.command("transcribe", help=HELP, short_help="Predict transcripts with a NeMo ASR model.")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "-m", default=DEFAULT_MODEL, show_default=True, metavar="NAME_OR_.nemo",
              help="NeMo pretrained model name or path to a .nemo file.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, metavar="FILE_OR_DIR/",
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
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def transcribe_command(
    manifest: Path,
    model: str,
    out: Path | None,
    field: str,
    batch_size: int,
    device: str,
    no_amp: bool,
    shard: tuple[int, int] | None,
    merge: bool,
    audio_base_path: Path | None,
    no_progress: bool,
) -> None:
    if merge and shard is not None:
        raise click.UsageError("--merge joins all shards; do not combine it with --shard")
    if not manifest.exists():
        raise _Failed(f"manifest not found: {manifest}")
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
            merge_shards(shards, target, manifest=manifest)
            click.echo(f"merged {len(shards)} shards into {target} in {time.perf_counter() - started:.1f} s", err=True)
            click.echo(str(target))
            return
        started = time.perf_counter()
        written = transcribe_manifest(
            manifest, model, out=out, field=field, batch_size=batch_size, device=device, amp=not no_amp,
            shard=shard, progress=not no_progress, audio_base_path=audio_base_path,
        )
    except TranscribeCancelled as exc:
        raise _Failed(str(exc)) from None
    except KeyboardInterrupt:
        partial = _partial_hint(manifest, model, out, shard)
        click.echo(f"\ninterrupted{partial}; run the same command again to resume", err=True)
        sys.exit(130)
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


def _partial_hint(manifest: Path, model: str, out: Path | None, shard: tuple[int, int] | None) -> str:
    try:
        target = output_path(manifest, model, out, shard)
    except Exception:
        return ""
    partial = target.with_name(target.name + ".partial")
    return f"; progress is saved in {partial}" if partial.exists() else ""


__all__ = ["parse_shard", "transcribe_command"]
