"""A dataset for a source: read back from the cache, else built (in one piece, or part by part)."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from sde.audio_presence import DEFAULT_BUDGET_S
from sde.audio_quality import with_measured_audio
from sde.build.merge import Joined
from sde.build.parts import (ONE_PIECE_MEMORY_SHARE, PART_BYTES, file_size, head_is_nemo, is_gzip, one_piece_limit,
                             parts_format)
from sde.build.remeasure import MeasureCheck, carries_measures, keep_record, refreshed, states_before_measuring
from sde.build.remote_parts import NO_ROOM, NoRoomToDecompress, local_copies
from sde.build.stream import build_in_parts
from sde.cache.building import BuildLock, lock_build
from sde.cache.identity import Recording, check, files_tag, input_files
from sde.lines import local_stamps
from sde.cache import (BUILDS, CacheUnusable, Warn, warn_on_stderr, DatasetCache, built_meta, default_cache_dir, fingerprint,
                       mark_build_format, private_temp_folder, read_built, remove_build, remove_build_soon, report_unusable)
from sde.dataset import Dataset, DatasetOptions, build_dataset
from sde.engine import machine_memory, parse_size
from sde.manifest import ManifestError
from sde.sources import PatternError, RemoteError, SourceSet, as_source_set, is_url, remote
from sde.sources.lhotse_source import LhotseError, require_lhotse

if TYPE_CHECKING:
    from sde.build.ray_parts import RayEngine



def _readable_source(manifest: object) -> bool:
    """Whether a failure to key the cache is worth a warning: not for a missing manifest, which
    build_dataset reports with its fix."""
    return Path(manifest).is_file() if isinstance(manifest, (str, Path)) else True


# One load asks a source several things in turn (the cache key, how to cut it, its lines): a
# store that did not answer the first is not asked again, so a dead store errors after its
# SDE_REMOTE_TIMEOUT attempts once, not once per question.
@remote.silence_is_final()
def load_dataset(
    manifest: "str | Path | Sequence[str | Path] | SourceSet",
    options: DatasetOptions = DatasetOptions(),
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
    warn: Warn = warn_on_stderr,
    status: Callable[[str], None] | None = None,
    background_write: bool = False,
    vad: bool = False,
    threads: int | None = None,
    memory_limit: str | None = None,
    part_bytes: int | None = None,
    engine: str | RayEngine = "local",
    audio_budget_s: float = DEFAULT_BUDGET_S,
    measure_checks: list[MeasureCheck] | None = None,
) -> Dataset:
    """Build a dataset, or read it back from the cache when the manifest and options are unchanged.

    A local NeMo manifest bigger than :func:`one_piece_bytes` (a set of them, or a remote one:
    bigger than a part) is built part by part on ``threads`` processes (see sde.build), in parts of
    ``part_bytes`` (default :data:`~sde.build.parts.PART_BYTES`): memory stays that of a few parts,
    and an interrupted build resumes. Given, ``part_bytes`` is also the biggest manifest built in
    one piece.
    ``memory_limit`` bounds DuckDB's share of the build (e.g. "2GB"). ``engine``: "ray" (or a
    sde.build.ray_parts.RayEngine) builds those parts as Ray tasks instead.

    ``vad``: also measure speech activity, audio hashes and loudness (``sde.quality.apply.with_vad``),
    cached under a key of its own (VadError, saying what to install, without Silero VAD).
    An entry read back with measures (either option) is checked against its audio files: the
    utterances of files changed since they were measured are measured anew and the entry stored
    again (sde.build.remeasure); the files are checked within about ``audio_budget_s``. Given
    ``measure_checks``, that check is appended to it instead, for the caller to run (a server, once
    it answers: MeasureCheck.run).

    ``background_write``: return as soon as the dataset is built and write the cache entry from a
    (non-daemon) thread, so a server can start meanwhile; the process still finishes the write
    before it exits, and an interrupted write leaves no entry (see DatasetCache). A part-by-part
    build's folder is then removed on such a thread too."""
    say = status or (lambda _msg: None)
    read_stamps = local_stamps(manifest)  # before anything is read: an edit from now on is seen
    cache = None
    key = None
    if use_cache:
        directory = Path(cache_dir) if cache_dir else default_cache_dir()
        try:
            cache = DatasetCache(directory, warn=warn)
            key = entry_key(manifest, options, vad)
        except CacheUnusable as e:
            report_unusable(warn, e, "running without it")
            cache = None
        except Exception as e:  # noqa: BLE001 - e.g. a missing manifest (reported by build_dataset below)
            # sources that cannot be found or reached: build_dataset reports that, with its fix
            if not isinstance(e, (PatternError, RemoteError)) and _readable_source(manifest):
                warn(f"cannot use the cache in {directory} ({e}); running without it (use --cache-dir DIR)")
            if cache is not None:
                cache.close()
            cache = None
    lock: BuildLock | None = None
    recording: Recording | None = None
    try:
        inputs = input_files(manifest, options) if cache is not None and key is not None else []
        if cache is not None and key is not None:
            cached = _still_current(cache, key, cache.get(key), inputs, warn, locked=False)
            if cached is None and cache.read_only:  # built as with --no-cache: nothing is stored there
                cache.replace_older(key, inputs, options)  # says why it misses
                cache.close()
                cache = None
            elif cached is None:  # built here, unless another process is building it: then read its entry
                lock = lock_build(cache.directory, key, say)
                cached = _still_current(cache, key, cache.get(key), inputs, warn, locked=True)
                if cached is None and key in cache.kept_in_use:  # stored over, it would break that process
                    cache.note(f"the cached build of this dataset in {cache.directory} is out of date, but another "
                               "sde process is using it: building it without storing it (it is stored by a later "
                               "start once no process uses the old one)")
                    cache.close()
                    cache = None
                    lock.release()
                    lock = None
                elif cached is None:
                    cache.replace_older(key, inputs, options)
            if cached is not None:
                say("loaded from cache")
                if isinstance(manifest, SourceSet):  # named as asked now (a glob or the files it matched)
                    cached.name = manifest.name
                if options.estimate_audio_metrics or vad:  # the audio files may have changed since they were measured
                    if measure_checks is not None and carries_measures(cached):
                        measure_checks.append(MeasureCheck(cache.directory, key, audio_budget_s))
                    else:
                        cached = refreshed(cache, key, cached, lock=lock, say=say, progress=progress,
                                           budget_s=audio_budget_s)
                cached.read_stamps = read_stamps
                return cached
        if cache is not None and key is not None:  # the record of the files read, kept with the entry
            recording = Recording(inputs).start()
        part_size = part_bytes or PART_BYTES
        one_piece = one_piece_bytes(memory_limit) if part_bytes is None and engine == "local" else part_size
        in_parts = _part_by_part_path(manifest, options, part_size, one_piece)
        no_room = False  # the cache folder had no room for the build: nor will it for the dataset
        if in_parts is not None:
            tag = files_tag(inputs)  # the build folder's: parts of the files as they are now
            build = functools.partial(_build_in_parts, *in_parts, options, threads=threads, memory_limit=memory_limit,
                                      files_tag=tag, remove_later=background_write,
                                      part_bytes=part_size, progress=progress, say=say, engine=engine)
            try:
                try:
                    dataset, stored = build(cache, key)
                except OSError as e:
                    if cache is None or e.errno not in NO_ROOM:
                        raise
                    # as a one-piece build does: the build folder is in the cache, which has no room
                    cache.warn(f"cannot build in the cache folder {cache.directory} ({e.strerror}); building "
                               "without it, in a temporary folder")
                    remove_build(_build_folder(cache, key, part_size, tag))
                    no_room = True
                    dataset, stored = build(None, None)
            except NoRoomToDecompress as e:  # no room for a gzip manifest's copy: one warning, the one-piece read
                warn(str(e))
                if cache is not None and key is not None:
                    remove_build(_build_folder(cache, key, part_size, tag))
                    no_room = True  # the build folder is in the cache
                dataset, stored = build_dataset(manifest, options, progress=progress, status=status), False
        else:
            if engine != "local":
                say("built in one piece here: the Ray engine builds NeMo manifests (one, or a set of "
                    "shards; local or in an object store) and Lhotse CutSets bigger than --part-size")
            dataset = build_dataset(manifest, options, progress=progress, status=status)
            stored = False
        transformed = options.estimate_audio_metrics or vad
        # the files' states before they are measured: kept with the entry, a warm start compares them
        record = (states_before_measuring(dataset) if transformed and cache is not None and key is not None
                  and not no_room and not cache.read_only else None)
        if options.estimate_audio_metrics:  # cached with the metrics: measuring costs far more
            dataset = with_measured_audio(dataset, progress=progress, status=status)
        if vad:  # like the audio metrics: the entry holds the measures, a warm start skips the audio
            from sde.quality.apply import with_vad

            dataset = with_vad(dataset, progress=progress, status=status)
        if cache is not None and key is not None and not no_room and (transformed or not stored):
            if background_write:
                writer_cache, cache = cache, None  # the writer closes it, and lets the next build go
                writer_lock, lock = lock, None

                def write() -> None:
                    try:
                        writer_cache.put(key, dataset)
                        keep_record(dataset, record)
                        writer_cache.keep_input_record(key, recording.record() if recording else None)
                    finally:
                        writer_cache.close()
                        if writer_lock is not None:
                            writer_lock.release(built=True)

                threading.Thread(target=write, name="sde-cache-write", daemon=False).start()
            else:
                cache.put(key, dataset)
                keep_record(dataset, record)
                cache.keep_input_record(key, recording.record() if recording else None)
        elif cache is not None and key is not None and stored:  # stored part by part
            cache.keep_input_record(key, recording.record() if recording else None)
        if lock is not None:
            lock.release(built=True)
        dataset.read_stamps = read_stamps
        return dataset
    finally:
        if cache is not None:
            cache.close()
        if lock is not None:
            lock.release()  # no-op once released above


def _still_current(cache: DatasetCache, key: str, cached: Dataset | None, inputs: list[str],
                   warn: Warn, *, locked: bool) -> Dataset | None:
    """``cached``, read from entry ``key``, where its input files are those it was built from
    (sde.cache.identity: an edit that kept their size and modification time keeps the key); else
    None, the entry removed (said where files changed). An entry without a record of its files is
    removed only under its build ``locked``: without the lock it may be one another process has
    just stored, its record about to follow (the caller then waits for the lock and asks again)."""
    if cached is None:
        return None
    verdict = check(cache.input_record(key), inputs)
    if verdict.current:
        cache.keep_input_record(key, verdict.renewed)
        return cached
    if not verdict.changed and not locked and not cache.read_only:
        return None
    if verdict.changed:
        warn(f"{', '.join(verdict.changed)} changed since the dataset was cached, though its size and "
             "modification time did not; building it again")
    cache.delete(key)
    return None


def one_piece_bytes(memory_limit: str | None) -> int:
    """The biggest single local manifest built in one piece by default: one whose build fits
    ``memory_limit`` (DuckDB's form, "2GB"), else a share of the machine's memory
    (sde.build.parts.one_piece_limit)."""
    memory = parse_size(memory_limit) if memory_limit else int(machine_memory() * ONE_PIECE_MEMORY_SHARE)
    return one_piece_limit(memory)


def _part_by_part_path(manifest: object, options: DatasetOptions, part_bytes: int,
                       one_piece: int) -> tuple[str | SourceSet, int, bool] | None:
    """What is built part by part: one local NeMo manifest (or Lhotse CutSet) of more than ``one_piece`` bytes,
    or a set of local NeMo manifests (shards) bigger than one part; with --predictions (local NeMo predictions files:
    each is matched to the lines once, see sde.build.predictions), a manifest bigger than one part.
    Remote NeMo manifests too: they are copied into the build folder first (sde.build.remote_parts),
    and gzip-compressed ones that may be that big decompressed there. With it, the size up to which
    it is built in one piece all the same: a gzip manifest, decompressed, may turn out that small;
    and whether it is a Lhotse CutSet."""
    if any(not _is_local_nemo(str(p)) for p in options.predictions):
        return None  # a predictions file that cannot be cut in lines is matched in one piece
    try:
        sources = as_source_set(manifest)
    except (PatternError, RemoteError, OSError):
        return None
    # a set (per-file costs) or a predictions file to match (~2.5x the memory) builds faster in parts
    single = not sources.several and not sources.sources[0].remote and not options.predictions
    limit = max(part_bytes, one_piece) if single else part_bytes
    found = parts_format(sources, limit)
    if found is None:
        return None
    if found == "cuts":
        _require_lhotse_installed(sources.sources[0].given)
    if sources.several or sources.sources[0].remote or is_gzip(sources.sources[0].location):
        return sources, limit, found == "cuts"  # read through its Sources: a copy may replace what is opened
    return sources.sources[0].given, limit, found == "cuts"  # as given: messages name the file as the user wrote it


def _is_local_nemo(path: str) -> bool:
    """A local plain NeMo file: one that can be cut in lines (a gzip one cannot; it is matched whole)."""
    try:
        return not is_url(path) and os.path.isfile(path) and not is_gzip(path) and head_is_nemo(path)
    except OSError:
        return False


def entry_key(manifest: "str | Path | Sequence[str | Path] | SourceSet", options: DatasetOptions, vad: bool) -> str:
    """The key a dataset is stored under in the cache (with --vad, an entry of its own)."""
    return fingerprint(manifest, options) + ("-vad" if vad else "")


def _build_folder(cache: DatasetCache, key: str, part_bytes: int, tag: str = "") -> Path:
    """Where a part-by-part build of entry ``key`` keeps its parts (a resumed build finds them);
    ``tag`` (sde.cache.identity.files_tag) names the state of its input files: parts built from a
    file edited since (its size and modification time kept) are not resumed."""
    return cache.directory / BUILDS / (f"{key}-{part_bytes}-{tag}" if tag else f"{key}-{part_bytes}")


def _build_in_parts(path: str | SourceSet, one_piece: int, cutset: bool, options: DatasetOptions,
                    cache: DatasetCache | None,
                    key: str | None, *, threads: int | None, memory_limit: str | None, part_bytes: int, progress: bool,
                    say: Callable[[str], None], engine: str | RayEngine = "local",
                    files_tag: str = "", remove_later: bool = False) -> tuple[Dataset, bool]:
    """(dataset, whether the cache holds it). With a cache the parts live in its ``builds``
    folder, so an interrupted build resumes; without one, in a private folder removed at exit.
    ``remove_later``: the build folder, once its tables are stored, is removed on a thread
    (remove_build_soon: a server starts ~0.4 s sooner at 1M utterances).
    What the parts read of no more than ``one_piece`` bytes (a gzip manifest, decompressed) is
    built in one piece from there. NoRoomToDecompress: a gzip manifest could not be decompressed.
    ``cutset``: ``path`` is a Lhotse CutSet."""
    folder = (_build_folder(cache, key, part_bytes, files_tag) if cache is not None and key is not None
              else private_temp_folder("sde-build-"))
    # a damaged gzip CutSet is read whole, by its one part: its one-piece read keeps the lines before the damage
    with local_copies(path, folder, progress=progress, say=say, damaged_read_whole=cutset) as readable:
        size = _read_size(readable)
        if size <= one_piece:  # faster, in memory its size allows (one_piece_bytes)
            say(f"built in one piece: {size / (1 << 20):,.1f} MB decompressed")
            dataset = build_dataset(readable, options, progress=progress, status=say)
        else:
            dataset = None
            if cache is not None and key is not None:  # a later version does not resume these parts: it removes them
                mark_build_format(folder)
            joined = build_in_parts(readable, options, folder, threads=threads, part_bytes=part_bytes,
                                    memory_limit=memory_limit, progress=progress, say=say, engine=engine)
    if dataset is not None:
        if cache is not None:
            remove_build(folder)
        return dataset, False
    meta = built_meta(_described(joined, options), joined.dtypes, joined.column_order)
    if cache is None or key is None:
        return read_built(meta, joined.files), False
    try:
        cache.put_built(key, meta, joined.files)
    except Exception as e:  # noqa: BLE001 - a full disk must not stop the app: serve from the parts
        cache.warn(f"could not write the cache in {cache.directory} ({e}); continuing without it")
        return read_built(meta, joined.files), False
    dataset = cache.get(key)
    if dataset is None:  # the entry was removed meanwhile (another process, a damaged index): its parts serve
        cache.warn(f"the dataset just stored in {cache.directory} cannot be read back; serving it from its "
                   f"build folder {folder}")
        return read_built(meta, joined.files), False
    if remove_later:
        remove_build_soon(folder)
    else:
        remove_build(folder)
    return dataset, True


def _require_lhotse_installed(shown: str) -> None:
    """A CutSet built part by part: a missing lhotse is said once, before the build (and before a
    big CutSet is decompressed). Only the workers import it: the server that serves the dataset
    afterwards does not keep torch (~250 MB) for reading it."""
    try:
        require_lhotse(shown, load=False)
    except LhotseError as e:
        raise ManifestError(str(e)) from None


def _read_size(readable: str | SourceSet) -> int:
    """The bytes the parts of ``readable`` (sde.build.remote_parts.local_copies) would read: of local
    files only (decompressed copies among them); more than any limit where some are remote or the
    manifest is given by its path (its size was known: cut_in_parts chose parts)."""
    if not isinstance(readable, SourceSet) or any(is_url(s.readable) for s in readable.sources):
        return 1 << 62
    return sum(file_size(s.readable) for s in readable.sources)


def _described(joined: Joined, options: DatasetOptions) -> Dataset:
    """A Dataset whose tables are empty frames: what the cache's description of it needs."""
    hypotheses = list(joined.hypotheses)
    return Dataset(
        name=joined.name, manifest_path=Path(joined.manifest_path), options=options,
        utterances=pd.DataFrame(), vocabulary=pd.DataFrame(), hypotheses=hypotheses,
        errors={h.field: pd.DataFrame() for h in hypotheses}, problems=joined.problems,
        alphabet=joined.alphabet, total_lines=joined.total_lines, warnings=joined.warnings,
        alphabet_report=joined.alphabet_report, tar_shards=joined.tar_shards,
        extra_summary=joined.extra_summary,
    )
