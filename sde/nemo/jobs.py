"""Transcription jobs: a manifest in, a NeMo output manifest out; predictions for a dataset, cached.

- :func:`transcribe_manifest` — every input field + the prediction field, atomic, resumable
  (the part file ``<out>.partial``, :mod:`sde.nemo.parts`), on this machine or on Ray
  (``engine="ray"``, :mod:`sde.nemo.ray_engine`), shardable for schedulers without Ray
  (``shard=(I, N)``); :func:`merge_shards` / :func:`find_shards` join shard outputs back into
  manifest order. Lines are read by ``sde.manifest``'s rules (audio path resolution,
  offset/duration checks), so ``sde transcribe`` and the explorer agree.
- :func:`predictions_for` / :func:`transcribe_dataset` — predictions for a dataset that has none
  (``sde MANIFEST`` before serving, the UI's "Transcribe with NeMo" job), cached by the manifest's
  fingerprint and the model's identity, so a restart does not transcribe again and a changed
  manifest or model does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from sde.cache import (CacheReadOnly, CacheUnusable, ReadOnlyStore, default_cache_dir, file_stamp, make_room_among,
                       mark_used, open_store, report_unusable, size_limit, warn_on_stderr)
from sde.dataset import Dataset, with_predictions
from sde.export import (refuse_overwriting_audio_paths, refuse_overwriting_sources, relative_audio_note,
                        written_elsewhere)
from sde.lines import ExportError, source_files
from sde.manifest import ManifestError, read_manifest
from sde.manifest.hypotheses import missing_hypothesis_warning
from sde.manifest.lhotse_reads import nemo_view_path, write_nemo_view
from sde.manifest.paths import relative_rows
from sde.nemo.infer import (StopRequested, TranscribeCancelled, Unreadable, refuse_none_readable, report_unreadable,
                            run_batches, tick_bar, transcribe_segments, transcription_bar)
from sde.nemo.model import (DEFAULT_MODEL, TranscribeError, WritesOverInput, ensure_model, import_for, model_stem,
                            pick_amp_dtype)
from sde.nemo.parts import (Entry, PartFile, abort, atomic_writer, check_writable, commit, iter_lines,
                            parse_line, part_header, part_path, read_entries, read_part, same_file, write_output)
from sde.sources.lhotse_source import detect
from sde.sources.members import job_audio_paths

if TYPE_CHECKING:  # pragma: no cover - typing only
    from sde.nemo.ray_engine import RayOptions

__all__ = [
    "PREDICTION_FIELD",
    "PROTECTED_FIELDS",
    "RAY_ADDRESS_ENV",
    "find_shards",
    "merge_shards",
    "merge_source",
    "output_path",
    "predictions_for",
    "predictions_key",
    "row_places",
    "shard_path",
    "transcribe_dataset",
    "transcribe_manifest",
]

# Fields a prediction must never overwrite: they are the data the prediction is compared against.
PROTECTED_FIELDS = frozenset({"audio_filepath", "audio_filename", "duration", "offset", "text"})
# The field a dataset without predictions gets (sde MANIFEST, the UI's transcription job).
PREDICTION_FIELD = "pred_text"
# Where predictions_for (sde MANIFEST --model, the UI's background job) runs: unset = this process.
RAY_ADDRESS_ENV = "SDE_RAY_ADDRESS"

_SHARD_NAME_RE = re.compile(r"^(?P<stem>.*)\.shard(?P<i>\d+)of(?P<n>\d+)\.json$")


# --------------------------------------------------------------------------------------------
# Manifests


def _fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"manifest": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


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


def manifest_stem(manifest: str | os.PathLike) -> str:
    """``train.json.gz`` → ``train``: the name outputs are named after, without its compression."""
    name = Path(manifest).name
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    return Path(name).stem or name


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
    name = f"{manifest_stem(manifest)}_{model_stem(model)}.json"
    if out is None:
        path = Path.cwd() / name
    else:
        o = Path(os.path.expanduser(os.fspath(out)))
        path = o / name if o.is_dir() or os.fspath(out).endswith(("/", os.sep)) else o
    shard = _check_shard(shard)
    if shard is not None:
        path = shard_path(path, *shard)
    return path


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
    engine: str = "local",
    ray: RayOptions | None = None,
    tarred_audio: Sequence[str] = (),
    warn: Callable[[str], None] | None = None,
    places: Sequence[str] | None = None,
) -> Path:
    """Transcribe every line of ``manifest`` (or of one shard) and write a NeMo output manifest:
    every input field plus ``field``, input line order, blank lines dropped. Returns its path.

    - ``out``: a file, a directory, or None (the current directory); see :func:`output_path`.
      Never the input itself.
    - Written atomically (temp file in the same folder + ``os.replace``).
    - Resumable: finished batches are appended to the part file ``<out>.partial`` (see
      :mod:`sde.nemo.parts`: records keyed by a stable utterance key); running again with the same
      input, model and field, with either engine, transcribes only the lines not recorded there.
      The part file is removed once the output is complete.
    - ``shard=(I, N)``: only non-blank lines I, I+N, I+2N, … into ``<out_stem>.shard{I}of{N}.json``;
      join the N outputs with :func:`merge_shards`. For schedulers without Ray.
    - ``engine="ray"``: the batches run on a Ray cluster (``ray``: its address and workers; see
      :mod:`sde.nemo.ray_engine`), with the same batches and so the same output as ``"local"``.
      ``model`` must then be a name or a ``.nemo`` path: every worker loads it.
    - ``should_stop()`` is polled between batches; when it turns True the finished batches are
      kept and :class:`TranscribeCancelled` is raised. ``on_progress(done, total)`` after each batch.
    - Progress (utterances/s, RTFx = audio seconds per wall second) on stderr when ``progress``.
    - ``tarred_audio``: NeMo tarred audio, the tars in shard order: each line's audio is the member
      ``audio_filepath`` of tar ``shard_id``, read by seek (nothing extracted).
    - A line whose audio cannot be read (missing, corrupt, empty, an offset past the end) is written
      without ``field`` (sde leaves it out of the scores) and named in one note to ``warn`` (default:
      stderr); the others are transcribed. When none can be read: a TranscribeError, no output.
    - ``places``: each line's place as the user knows it (see :func:`row_places`), where
      ``manifest`` is a view sde wrote of the user's files (a Lhotse pair's); a CutSet or Shar
      directory given as ``manifest`` gets its own.
    """
    manifest = Path(os.path.expanduser(os.fspath(manifest)))
    if not manifest.exists():
        raise TranscribeError(f"manifest not found: {manifest}")
    lhotse = detect([str(manifest)])
    if manifest.is_dir() and lhotse != "shar":
        raise TranscribeError(f"{manifest} is a directory; pass the manifest file (JSON lines) or a Lhotse Shar "
                              "directory")
    if not field or not isinstance(field, str):
        raise ValueError("field must be a non-empty string")
    if field in PROTECTED_FIELDS:
        raise ValueError(f"field {field!r} would overwrite the manifest's own {field!r}; use e.g. pred_text")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    _check_engine(engine, shard, model)
    shard = _check_shard(shard)
    target = output_path(manifest, model, out, shard)
    partial = part_path(target)
    if lhotse in ("cuts", "shar"):  # a Lhotse CutSet or Shar directory: its supervisions, as a NeMo manifest
        try:
            read = read_manifest(manifest)
        except ManifestError as exc:
            raise TranscribeError(str(exc)) from None
        tarred_audio = tuple(tarred_audio) or tuple(read.tar_shards)  # Shar: the audio is in its tars
        view = nemo_view_path(target)
        refuse_writing_over_inputs({"--out": target, "--out's part file": partial, "--out's Lhotse view": view},
                                   [manifest], model, read.table.get("audio_path", pd.Series([], dtype=object)),
                                   tarred_audio=tarred_audio)
        check_writable(target)  # makes --out DIR/ before the view goes into it, or says why it cannot
        manifest = write_nemo_view(read.table, target, members=bool(read.tar_shards))
        places = row_places(read.table, read.shown)
        entries = read_entries(manifest, audio_base_path, shard, tuple(tarred_audio))
    else:
        every = read_entries(manifest, audio_base_path, None, tuple(tarred_audio))
        if not every:  # as `sde MANIFEST` refuses it (sde.manifest.files): no output of nothing
            raise TranscribeError(f"{manifest}: no utterances: the file is empty or has only blank lines; "
                                  "sde expects one JSON object per line with audio_filepath, duration and text")
        # before any work: the output and its part file are none of the files this run reads, nor
        # the audio of another shard's lines (that shard's run, or the merge, still reads it)
        refuse_writing_over_inputs({"--out": target, "--out's part file": partial}, [manifest], model,
                                   [e.ref.path for e in every], tarred_audio=tarred_audio)
        i, n = shard or (0, 1)
        entries = [e for e in every if e.index % n == i]

    check_writable(target)
    fingerprint = _fingerprint(manifest)
    header = part_header(manifest, model, field)
    wanted = {e.key for e in entries}
    kept, set_aside = read_part(partial, header)
    done = {k: p for k, p in kept.items() if k in wanted}
    total = len(entries)
    # on stderr, as `sde index` says "resuming an interrupted build" (``warn`` is for the audio notes);
    # never silently set aside: the progress it held is not used (and is overwritten)
    if set_aside:
        print(f"{partial} {set_aside}; starting afresh", file=sys.stderr, flush=True)
    elif done:
        print(f"resuming: {len(done)} of {total} utterances already transcribed in {partial}", file=sys.stderr,
              flush=True)
    remaining = [k for k, e in enumerate(entries) if e.key not in done]

    failed: dict[str, str] = {}  # key -> why its audio could not be read
    if remaining:
        batches = _batches_of(engine, ray, model, entries, remaining, manifest, places, batch_size=batch_size,
                              device=device, amp=amp, should_stop=should_stop)
        bar = transcription_bar(total, len(done), progress)
        start, audio_s, done_now = time.perf_counter(), 0.0, 0
        if on_progress:
            on_progress(len(done), total)
        try:
            # the bar as a context: a run that ends in an error prints no closing throughput line; the
            # part file goes too when it holds nothing to resume
            with bar, contextlib.closing(batches), PartFile(partial, header, done) as part:
                for batch, texts, seconds in batches:
                    fresh = [(k, text) for k, text in zip(batch, texts) if entries[k].key not in done]
                    # an unreadable utterance is not recorded: a rerun (its audio fixed) tries it again
                    failed.update((entries[k].key, t.message) for k, t in fresh if isinstance(t, Unreadable))
                    records = [(entries[k].key, t) for k, t in fresh if not isinstance(t, Unreadable)]
                    part.add(records)
                    done.update(records)
                    audio_s += seconds
                    done_now += len(fresh)
                    tick_bar(bar, len(fresh), audio_s, start, done_now)
                    if on_progress:
                        on_progress(len(done) + len(failed), total)
                if shard is None:  # one shard of many may hold only bad lines, though
                    refuse_none_readable(list(failed.values()), total,
                                         _where_audio_was_sought(entries, failed, manifest, audio_base_path,
                                                                 bool(tarred_audio or places)))
        except StopRequested:
            raise TranscribeCancelled(len(done), total, partial if done else None) from None
        report_unreadable(list(failed.values()), total, warn, field)

    elif on_progress:
        on_progress(total, total)

    if _fingerprint(manifest) != fingerprint:
        raise TranscribeError(f"{manifest} changed while it was being transcribed; run again")
    lost = [e for e in entries if e.key not in done and e.key not in failed]
    if lost:  # never a complete-looking output with holes nobody was told of
        where = places[lost[0].line - 1] if places else f"{manifest}:{lost[0].line}"
        raise TranscribeError(f"{where}: no prediction was made for {len(lost)} line(s); run again")
    write_output(manifest, target, field, shard, {e.index: done.get(e.key) for e in entries})
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    if audio_base_path is None and not tarred_audio and places is None:
        note = _relative_audio_note(manifest, target, shard)
        if note:
            (warn or _note_on_stderr)(note)
    return target


def _relative_audio_note(manifest: Path, target: Path, shard: tuple[int, int] | None) -> str | None:
    """sde export's note (sde.export.relative_audio_note) for an output written into another folder
    than the manifest whose lines name their audio by a relative path: the output keeps each line
    as the user wrote it (sde.nemo.parts.write_output), so read from its own folder such a path names
    another file. Merging it back with --predictions still matches (by the path as written)."""
    if not written_elsewhere(manifest, target):
        return None
    i, n = shard or (0, 1)
    written = [str(obj.get("audio_filepath", obj.get("audio_filename")))
               for index, lineno, raw in iter_lines(manifest) if index % n == i
               for obj in [parse_line(manifest, lineno, raw)]]
    relative = relative_rows(pa.array(written, pa.string()))
    if not relative.any():
        return None
    return relative_audio_note(int(relative.sum()), "transcribed", written[int(relative.argmax())], manifest,
                               target, "--out")


def _note_on_stderr(note: str) -> None:
    print(f"note: {note}", file=sys.stderr, flush=True)


def _where_audio_was_sought(entries: Sequence[Entry], failed: dict[str, str], manifest: Path,
                            audio_base_path: str | os.PathLike | None, not_by_path: bool) -> str:
    """The way out when no line's audio could be read and the first such file does not exist: the
    folder relative paths were joined to (a wrong --audio-base-path is the usual cause). Nothing for
    tarred audio or a view sde wrote of a Lhotse source (``not_by_path``), whose paths the user did
    not write relative to it."""
    first = next((e for e in entries if e.key in failed), None)
    if first is None or not_by_path or "://" in first.ref.path or os.path.exists(first.ref.path):
        return ""
    folder = manifest.resolve().parent
    if audio_base_path is None:
        return (f"; relative audio paths are resolved against the manifest's folder {folder}: pass "
                "--audio-base-path DIR if the audio is under another folder")
    base = os.path.abspath(os.path.expanduser(os.fspath(audio_base_path)))
    return (f"; relative audio paths were resolved against --audio-base-path {base}: check it (without it they "
            f"are resolved against the manifest's folder {folder})")


def row_places(table: pd.DataFrame, shown: str) -> list[str]:
    """Each row's place in the user's files, for the unreadable-audio note: ``FILE:LINE``, and for a
    Lhotse source ``(cut ID)`` (a CutSet's or Shar shard's line; ``(cut ID, supervision ID)`` for a
    cut of several) or ``(supervision ID)`` (a recordings + supervisions pair's). For a Lhotse
    source transcribed through its NeMo view (whose line k + 1 is row k), the view's own line would
    name a file sde made, which the user never saw. ``shown``: the file, when ``table`` has no
    ``source`` column."""
    files = table["source"].astype(str).tolist() if "source" in table else [shown] * len(table)
    places = [f"{f}:{n}" for f, n in zip(files, table["line"].tolist())]
    sups = _ids(table, "supervision_id")
    cuts = _ids(table, "cut_id")
    several = table["cut_id"].duplicated(keep=False).tolist() if "cut_id" in table else [False] * len(table)
    for k, (cut, sup, shared) in enumerate(zip(cuts, sups, several)):
        named = [f"cut {cut}"] if cut else []
        if sup and (shared or not cut):  # the supervision too where the cut does not tell it
            named.append(f"supervision {sup}")
        if named:
            places[k] += f" ({', '.join(named)})"
    return places


def _ids(table: pd.DataFrame, column: str) -> list[str | None]:
    if column not in table:
        return [None] * len(table)
    return [v if isinstance(v, str) and v else None for v in table[column].tolist()]


def refuse_writing_over_inputs(outputs: dict[str, Path], manifests: Sequence[Path], model: Any,
                               audio_paths: Sequence[str] | pd.Series, *, tarred_audio: Sequence[str] = ()) -> None:
    """Refuse, before any work, outputs (``{option: path}``: the output, its part file, a Lhotse
    view) that are a file this run reads: the manifest(s), an utterance's audio (``audio_paths``,
    resolved; by another path or a symlink too), a tar of ``tarred_audio`` or the ``.nemo`` model
    (None: a merge, which reads none). sde never modifies its input; the rules are export's
    (:mod:`sde.export`), shared."""
    for option, path in outputs.items():
        for m in manifests:
            if same_file(path, Path(m)):
                what = "" if option == "--out" else f" with {option} {path}"
                raise WritesOverInput(f"refusing to overwrite the input manifest {m}{what}; choose another --out")
    instead = f"{manifest_stem(manifests[-1])}_{'merged' if model is None else model_stem(model)}.json"
    inputs = [("--tarred-audio", t) for t in tarred_audio if "://" not in str(t)]
    if isinstance(model, (str, os.PathLike)) and os.path.isfile(os.path.expanduser(os.fspath(model))):
        inputs.append(("--model", os.path.expanduser(os.fspath(model))))
    refuse_overwriting_sources(outputs, [], inputs, error=WritesOverInput, instead=instead)
    paths = audio_paths if isinstance(audio_paths, pd.Series) else pd.Series(list(audio_paths), dtype=object)
    refuse_overwriting_audio_paths(outputs, paths.astype(str), error=WritesOverInput, instead=instead)


def _check_engine(engine: str, shard: Any, model: Any) -> None:
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', not {engine!r}")
    if engine == "ray" and shard is not None:
        raise ValueError("shard splits the work for schedulers without Ray; the Ray engine splits it itself")
    if engine == "ray" and not isinstance(model, (str, os.PathLike)):
        raise ValueError("the Ray engine loads the model in every worker: pass its name or .nemo path, not a loaded model")


def _batches_of(engine: str, ray: RayOptions | None, model: Any, entries: Sequence[Entry], remaining: list[int],
                manifest: Path, places: Sequence[str] | None, *, batch_size: int, device: str, amp: bool,
                should_stop: Callable[[], bool] | None) -> Iterator[tuple[list[int], list[str], float]]:
    """(positions in ``entries``, predictions, audio seconds) per batch, from the chosen engine;
    an unreadable item named by its line of ``manifest``, or by ``places`` (one per line)."""
    refs = [e.ref for e in entries]
    known = [e.seconds for e in entries]

    def describe(k: int) -> str:
        return places[entries[k].line - 1] if places else f"{manifest}:{entries[k].line}"

    if engine == "ray":
        from sde.nemo.ray_engine import import_ray, ray_batches  # lazy: Ray is an optional extra

        import_ray()  # the missing-extra message before the part file is touched
        return ray_batches(model, refs, remaining, batch_size=batch_size, amp=amp, options=ray,
                           should_stop=should_stop, describe=describe, known_seconds=known)
    import_for(model)  # NeMo missing, or a name this machine cannot fetch: said before any device talk
    loaded, dev = ensure_model(model, device)
    return run_batches(loaded, refs, remaining, batch_size=batch_size, device=dev,
                       amp_dtype=pick_amp_dtype(dev, amp), should_stop=should_stop, describe=describe,
                       known_seconds=known)


# --------------------------------------------------------------------------------------------
# Shards


def merge_source(manifest: str | os.PathLike, target: Path, model: Any, *,
                 tarred_audio: Sequence[str] = ()) -> tuple[Path, tuple[str, ...]]:
    """(the manifest the shards of ``manifest`` were cut from, its tars) for :func:`merge_shards`:
    ``manifest`` itself, or for a Lhotse CutSet or Shar directory the NeMo view of its supervisions
    that each ``--shard`` run transcribed, written beside ``target`` as they wrote theirs (the
    CutSet's own lines name no audio_filepath a shard line could be matched with)."""
    manifest = Path(os.path.expanduser(os.fspath(manifest)))
    if detect([str(manifest)]) not in ("cuts", "shar"):
        return manifest, tuple(tarred_audio)
    try:
        read = read_manifest(manifest)
    except ManifestError as exc:
        raise TranscribeError(str(exc)) from None
    tars = tuple(tarred_audio) or tuple(read.tar_shards)
    view = nemo_view_path(target)
    refuse_writing_over_inputs({"--out": target, "--out's Lhotse view": view}, [manifest], model,
                               read.table.get("audio_path", pd.Series([], dtype=object)), tarred_audio=tars)
    check_writable(target)
    return write_nemo_view(read.table, target, members=bool(read.tar_shards)), tars


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
    return sum(1 for _ in iter_lines(path))


def merge_shards(
    paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, manifest: str | os.PathLike | None = None,
    audio_base_path: str | os.PathLike | None = None, tarred_audio: Sequence[str] = (), model: Any = None,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Join shard outputs ``*.shard{I}of{N}.json`` back into one manifest in the original order,
    atomically. All N shards must be present once, with the line counts an N-way split gives;
    with ``manifest``, each merged line must also match the manifest's line (audio, offset,
    duration) and the total its line count, and ``out`` must be none of the files the shards
    read: the audio of its lines (resolved as the shards resolved them: ``audio_base_path``,
    ``tarred_audio``), a tar of ``tarred_audio``, the ``model`` file. With ``manifest``, the note
    each ``--shard`` run gave on relative audio paths in another folder goes to ``warn`` (default:
    stderr) for the merged output too: it is the file users go on to read."""
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
        if i in shards and not same_file(shards[i], p):
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
        if same_file(out, p):
            raise TranscribeError(f"refusing to overwrite {p} with the merged output; choose another output")
    if manifest is not None:  # nor an utterance's audio (its lines resolved as transcribe resolves them)
        audio: list[str] = []
        with contextlib.suppress(TranscribeError):  # a line the shards could not have come from fails below
            audio = [e.ref.path for e in read_entries(Path(manifest), audio_base_path, None, tuple(tarred_audio))]
        refuse_writing_over_inputs({"--out": out}, [Path(manifest)], model, audio, tarred_audio=tarred_audio)
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

    f, tmp = atomic_writer(out)
    try:
        with contextlib.ExitStack() as stack:
            iters = [iter_lines(shards[i]) for i in range(n)]
            for it in iters:
                stack.callback(it.close)
            src = iter_lines(Path(manifest)) if manifest is not None else None
            if src is not None:
                stack.callback(src.close)
            for k in range(total):
                _, lineno, raw = next(iters[k % n])
                if src is not None:
                    _, mline, mraw = next(src)
                    got = parse_line(shards[k % n], lineno, raw)
                    ref = parse_line(Path(manifest), mline, mraw)
                    for key in ("audio_filepath", "audio_filename", "offset", "duration"):
                        if ref.get(key) != got.get(key):
                            raise TranscribeError(
                                f"{shards[k % n]}:{lineno} does not match {manifest}:{mline} "
                                f"({key}: {got.get(key)!r} vs {ref.get(key)!r}); the shards come from another manifest"
                            )
                f.write(raw if raw.endswith("\n") else raw + "\n")
        commit(f, tmp, out)
    except BaseException:
        abort(f, tmp)
        raise
    if manifest is not None and audio_base_path is None and not tarred_audio:
        note = _relative_audio_note(Path(manifest), out, None)
        if note:
            (warn or _note_on_stderr)(note)
    return out


# --------------------------------------------------------------------------------------------
# Predictions for a dataset (cached by manifest + model)


def predictions_key(dataset: Dataset, model: str) -> str:
    model_identity: dict = {"spec": str(model)}
    if os.path.exists(str(model)):
        model_identity = file_stamp(model)
    record = {"manifest": _manifest_identity(dataset), "model": model_identity,
              "audio_base_path": dataset.options.audio_base_path}
    if dataset.tar_shards:  # the audio is in these tars (the key of a dataset without them is unchanged)
        record["tars"] = list(dataset.tar_shards)
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _manifest_identity(dataset: Dataset) -> dict | list[dict]:
    """What the cached predictions of ``dataset`` depend on: its manifest's size and modification
    time (one local file: the key as before, so cached predictions stay valid), or those (size and
    ETag for a URL) of each of its files."""
    try:
        files, _ = source_files(dataset)
    except ExportError:  # a manifest moved since the load: its predictions cannot be found again
        return {"path": str(dataset.manifest_path)}
    if len(files) == 1 and files[0].local:
        return file_stamp(files[0].path)
    return [{"path": f.path, **(f.stamp or {})} for f in files]


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
    warn: Callable[[str], None] = warn_on_stderr,
    ray_address: str | None = None,
) -> list[str | None]:
    """One prediction per utterance from `model` (a NeMo name or a .nemo path), cached; None for
    an utterance whose audio cannot be read (``warn`` names them; the dataset leaves them out of
    the scores).

    Computed in this process, or on Ray when ``ray_address`` (default: ``$SDE_RAY_ADDRESS``) is set:
    ``auto``, ``ray://HOST:PORT``, or ``local`` (a Ray instance on this machine for the job). The
    predictions are the same either way, so the cache does not tell them apart."""
    store = _open_store(cache_dir, use_cache, warn)
    key = predictions_key(dataset, model) if store is not None else None
    name = f"{dataset.name} by {Path(str(model)).name}"
    try:
        if store is not None:
            preds = _cached(store, key, len(dataset.utterances))
            if preds is not None:
                mark_used(store, key, name)
                return preds
        table = dataset.utterances
        items = list(zip(_audio_paths(dataset), table["offset"].tolist(), table["duration"].tolist()))
        wheres = _wheres(dataset)
        address = ray_address if ray_address is not None else os.environ.get(RAY_ADDRESS_ENV, "").strip()
        if address:
            from sde.nemo.ray_engine import RayOptions, transcribe_segments_ray  # lazy: optional extra

            setting = RAY_ADDRESS_ENV if ray_address is None else "ray_address"
            options = RayOptions(address=address,  # "local": a local instance, whatever RAY_ADDRESS says
                                 address_hint=f"Without {setting} sde transcribes in its own process; with "
                                              f"{setting}=local, on a Ray instance it starts on this machine")
            preds = transcribe_segments_ray(items, model, batch_size=batch_size, options=options, progress=progress,
                                            on_progress=on_progress, should_stop=should_stop, warn=warn, wheres=wheres)
        else:
            preds = transcribe_segments(items, model, device=device, batch_size=batch_size, progress=progress,
                                        on_progress=on_progress, should_stop=should_stop, warn=warn, wheres=wheres)
        if store is not None and not isinstance(store, ReadOnlyStore):
            try:
                store.set(("predictions", key), pickle.dumps(preds, protocol=pickle.HIGHEST_PROTOCOL))
            except Exception as e:  # noqa: BLE001 - a full disk costs a re-run later, nothing more
                warn(f"could not cache the predictions ({e})")
            else:
                mark_used(store, key, name)
                make_room_among(store, "predictions", keep=key, limit=size_limit(warn), entry="predictions",
                                entries="predictions", warn=warn)
        return preds
    finally:
        if store is not None:
            store.close()


def _wheres(dataset: Dataset) -> list[str] | None:
    """Each row's ``manifest:line`` (its own manifest's, for several; with its cut or supervision for
    a Lhotse source), for the unreadable-audio note."""
    table = dataset.utterances
    if "line" not in table:
        return None
    return row_places(table, str(dataset.manifest_path))


def _audio_paths(dataset: Dataset) -> list[str]:
    """Each row's audio for the transcriber: its file, or its member of a tar (tarred datasets)."""
    return job_audio_paths(dataset.utterances, dataset.tar_shards)


def transcribe_dataset(dataset: Dataset, model: str, **kwargs) -> Dataset:
    """`dataset` with a scored `pred_text` hypothesis from `model` (see predictions_for). Utterances
    whose audio could not be read have none: one warning names their lines (Problems page, stats),
    as for a manifest whose lines lack the field."""
    scored = with_predictions(dataset, PREDICTION_FIELD, predictions_for(dataset, model, **kwargs))
    table = scored.utterances
    if "line" not in table:
        return scored
    note = missing_hypothesis_warning(str(dataset.manifest_path), PREDICTION_FIELD, table[PREDICTION_FIELD],
                                      table["line"].to_numpy(), table["source"].to_numpy() if "source" in table else None)
    return scored if note is None else dataclasses.replace(scored, warnings=[*scored.warnings, note])


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
        # no eviction by diskcache: it removed the predictions just stored when bigger than its 1 GiB
        # (~15M utterances), and a second model's pushed out the first's (sde.cache.limit)
        return open_store(directory, warn, sub="predictions", eviction_policy="none")
    except CacheReadOnly:  # filled where it could be written (a batch job): read, nothing new kept
        try:
            return ReadOnlyStore(directory / "predictions")
        except CacheUnusable:  # its index cannot be read: transcribed, as without a cache
            return None
    except CacheUnusable as e:
        report_unusable(warn, e, "predictions will not be cached", once=True)
        return None
