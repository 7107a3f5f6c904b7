"""Lhotse sources (a CutSet, a recordings + supervisions pair, a Shar directory) as the file reads
read_manifest assembles, so that they get the NeMo reader's table, hypotheses and ``--predictions``
merge unchanged. The reading itself is sde.sources.lhotse_source's (the layer below).

A big CutSet is built part by part (sde.build): each part reads some of its lines (``part``), and
gives what the whole read gives for them; a part without usable supervisions is no error (the join
says so when no part has any, with the whole read's message).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from sde.manifest.files import FileRead
from sde.manifest.model import CORE_FIELDS, STRICT_HINT, ManifestError, ManifestPart, Problem
from sde.manifest.paths import base_dir, relative_rows
from sde.manifest.pieces import Piece, ReadState, Spec
from sde.sources import Source, SourceSet, is_url
from sde.sources.lhotse_source import LhotseError, LhotseRead, detect, read_lhotse, sniff_kind


def lhotse_kind(sources: SourceSet, part: ManifestPart | None = None) -> str | None:
    """"cuts", "pair" or "shar" when the sources are exactly one Lhotse source. ``part``: lines of
    one file, which the build cuts of a CutSet only (judged by what is opened: a copy may stand in)."""
    if len(sources) > 2 or sources.part_of_set:  # never sniff the files of a sharded NeMo manifest
        return None
    if part is not None:
        return "cuts" if len(sources) == 1 and sniff_kind(sources.sources[0].readable) == "cuts" else None
    return detect([s.location for s in sources.sources])


def read_lhotse_sources(kind: str, sources: SourceSet, spec: Spec, strict: bool, audio_base_path: str | Path | None,
                        part: ManifestPart | None = None) -> tuple[SourceSet, list[FileRead], tuple[str, ...]]:
    """The files rows come from (as a SourceSet: names, ``source`` column), one FileRead each,
    and the tar shards holding the audio (Shar). ``part``: only these lines of a CutSet (sde.build)."""
    first = sources.sources[0]
    try:
        read = read_lhotse(kind, [s.location for s in sources.sources], [s.given for s in sources.sources],
                           readable=first.readable if kind == "cuts" else None,
                           span=None if part is None else (part.start, part.stop, part.first_line))
    except LhotseError as e:
        raise ManifestError(str(e)) from None
    problems = [Problem(p.file, p.line, p.reason) for p in read.problems]
    if problems and strict:
        raise ManifestError(f"{problems[0]}\n{STRICT_HINT if problems[0].line else STRICT_FILE_HINT}")
    if not len(read.lines) and part is None:
        raise no_usable_supervision(sources.name, kind, problems)
    row_files = SourceSet(sources.specs, tuple(Source(read.locations[k] if read.locations else name, name, name)
                                               for k, name in enumerate(read.files)))
    return row_files, _file_reads(read, spec, strict, problems, audio_base_path), read.tar_shards


# --strict stopping at a problem of a whole file (a Shar shard missing or empty), not of a line.
STRICT_FILE_HINT = ("Restore or re-create that file, or run without --strict to skip it "
                    "(skipped files are listed on the Problems page).")


def no_usable_supervision(name: str, kind: str, problems: list[Problem]) -> ManifestError:
    """The error of a Lhotse source none of whose lines gives a row (read whole or part by part)."""
    quoted = "".join(f"\n  {p}" for p in problems[:5]) or (
        " it holds no cuts or supervisions (no lines); check that it is the source you meant, or write it "
        "again with lhotse")
    return ManifestError(f"{name}: no usable supervision in this Lhotse {kind} source:{quoted}")


def _file_reads(read: LhotseRead, spec: Spec, strict: bool, problems: list[Problem],
                audio_base_path: str | Path | None) -> list[FileRead]:
    """One FileRead per file rows come from (rows are in file order); all problems on the first."""
    state = ReadState(read.files[0], spec, strict, 0)
    state.accepted.update(dict.fromkeys(k for k in read.columns if k not in CORE_FIELDS))
    state.cap = max(state.cap, len(state.accepted))  # a Lhotse source's fields are all kept
    bounds = np.searchsorted(read.row_file, np.arange(len(read.files) + 1))
    reads = []
    for k, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        cols = {key: column.slice(a, b - a) for key, column in read.columns.items()}
        pieces = [Piece(b - a, read.lines[a:b], cols, source=k)] if b > a else []
        base = base_dir(read.bases[k], audio_base_path) if audio_base_path else \
            _lhotse_base(read.bases[k], cols.get("audio_filepath"), read.kind)
        reads.append(FileRead(pieces, state, read.total_lines if k == 0 else 0, problems if k == 0 else [],
                              False, base))
    return reads


def _lhotse_base(folder: str, paths: pa.Array | None, kind: str) -> str:
    """Where a Lhotse file's relative audio paths start: its own folder (NeMo's rule, sde's for every
    manifest), unless the first such path names no file there but one from the folder sde runs in,
    which is where lhotse itself reads them (a recipe run from its root writes
    ``corpus/LibriSpeech/…`` into ``data/manifests/``)."""
    if kind == "shar" or paths is None or is_url(folder):
        return folder
    relative = np.flatnonzero(relative_rows(paths))
    if not len(relative):
        return folder
    first = str(paths[int(relative[0])].as_py())
    if os.path.exists(os.path.join(folder, first)) or not os.path.exists(first):
        return folder
    return os.getcwd()


# Columns sde makes that a NeMo manifest of the supervisions does not carry.
_NOT_IN_VIEW = ("id", "line", "source", "audio_path", "duration_source")


def nemo_view_path(target: Path) -> Path:
    """Where :func:`write_nemo_view` writes the NeMo view of the output ``target``: beside it, so
    that ``sde transcribe`` checks it against the inputs before writing anything."""
    return target.with_name(target.name + ".lhotse.json")


def write_nemo_view(table: pd.DataFrame, target: Path, *, members: bool = False) -> Path:
    """For ``sde transcribe`` of a Lhotse CutSet or Shar directory: the read table's supervisions as
    a NeMo manifest beside the output (``<output>.lhotse.json``: every column kept, audio paths
    resolved; ``members``: Shar, whose audio_filepath names a member of tar ``shard_id`` and stays),
    which is transcribed in the source's place. The output then merges back with ``sde SOURCE
    --predictions OUTPUT`` (matched by audio path and offset: one supervision each)."""
    view = nemo_view_path(target)
    rows = table.drop(columns=[c for c in _NOT_IN_VIEW if c in table])
    if not members:
        rows = rows.assign(audio_filepath=table["audio_path"])
    text = rows.to_json(orient="records", lines=True, force_ascii=False)
    if not view.exists() or view.read_text(encoding="utf-8") != text:  # unchanged: resuming keeps its part file
        view.write_text(text, encoding="utf-8")
    return view
