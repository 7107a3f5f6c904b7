"""Lhotse manifests as sde sources: a CutSet, a recordings + supervisions pair, a Shar directory.

``sde cuts.jsonl.gz``, ``sde recordings.jsonl.gz supervisions.jsonl.gz`` (either order) and
``sde SHAR_DIR`` (``cuts.N.jsonl.gz`` + ``recording.N.tar`` shards, as ``CutSet.to_shar`` writes
them). :func:`detect` says whether sources are one of these; :func:`read_lhotse` reads them into
:class:`LhotseRead`, which sde.manifest turns into the same table a NeMo manifest gives.

Decisions:

* One utterance per supervision. ``audio_filepath`` / ``offset`` / ``duration`` name the
  supervision's segment of its recording: cut start + supervision start, the segment clipped to
  the cut (and to the recording). ``text``, ``speaker``, ``language``, ``gender``, ``channel``,
  ``cut_id``, ``recording_id``, ``supervision_id``, then custom fields (the cut's, then the
  supervision's, which win) as columns; nested values become compact JSON text; a custom field
  named like a column sde makes gets the prefix ``custom_``.
* Every line is decoded by lhotse itself (``deserialize_item``, what its lazy readers do), one line
  at a time, so a large CutSet streams and each bad line is a problem of its own (file:line, with
  the fix) while the others load. Only the output columns grow with the file.
* A big CutSet is built part by part (sde.build): each worker reads a range of whole lines of the
  plain file (``span``; a gzip one is decompressed into the build folder first) and gives the rows
  and problems the whole read gives for those lines, with the file's line numbers. A line's rows
  depend on that line alone, so the parts add up to the whole read. Every line counts in
  ``total_lines``, blank ones too (as a NeMo manifest's do), so that the parts' counts add up.
* Audio: a ``file`` source is its path, relative paths from the manifest's folder (NeMo's rule;
  from the folder sde runs in where only that has the file, as lhotse reads them: lhotse_reads);
  a ``url`` source is the URL; a Shar recording is the member ``CUT_ID.EXT`` of ``recording.N.tar``
  (``shard_id`` = N's position; the member holds the cut's audio, so the offset is the
  supervision's start within the cut). A supervision on some channels of a multi-channel file
  (one side of a call, some microphones of an array) names them in ``audio_channel``: a
  position, or a list of positions as JSON text (``"[0,1]"``, heard as their mean), so the row is
  not heard as the mix of every channel. ``command`` sources are refused: sde never runs commands
  from data. ``memory`` sources cannot come from a JSON file (lhotse cannot write audio bytes to
  JSON), so such a line is a problem too.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, BinaryIO

import numpy as np
import orjson
import pyarrow as pa

from sde.sources import remote
from sde.sources.remote import RemoteError, is_url
from sde.sources.tar_index import TarIndexError, load_tar_index

__all__ = ["LhotseError", "LhotseProblem", "LhotseRead", "Span", "detect", "head_kind", "lone_manifest_hint",
           "read_lhotse", "require_lhotse", "sniff_kind"]

# A line longer than this is a problem, not a reason to hold gigabytes (lhotse lines are small).
MAX_LINE_BYTES = 64 << 20
# Rows gathered as Python values before they become Arrow columns.
BATCH_ROWS = 50_000
SNIFF_BYTES = 64 << 10
# Columns sde makes itself: a custom field with one of these names is kept as custom_NAME.
RESERVED = ("id", "line", "source", "audio_filepath", "audio_path", "offset", "duration", "text",
            "duration_source", "cut_id", "recording_id", "supervision_id", "speaker", "language", "gender",
            "channel", "shard_id", "lhotse_transforms", "audio_channel")
#: The cuts files of a Lhotse Shar folder (the rows: text and times), and its audio shards, as their names go.
SHAR_CUTS = re.compile(r"^cuts\.(\d+)\.jsonl(\.gz)?$")
SHAR_RECORDINGS = re.compile(r"^recording\.(\d+)\.tar$")
_DECODE_ERRORS = (OSError, EOFError, zlib.error, RemoteError)
# Whole lines of a plain file: bytes [start, stop) after ``first_line`` lines (sde.manifest's
# ManifestPart, which this layer cannot import).
Span = tuple[int, int, int]


class LhotseError(Exception):
    """Lhotse sources that cannot be read at all; the message names the file and the fix."""


@dataclass(frozen=True)
class LhotseProblem:
    file: str    # the file as shown to the user
    line: int    # 1-based; 0 for the whole file
    reason: str


@dataclass
class LhotseRead:
    """Lhotse sources read: one row per usable supervision."""

    kind: str                      # "cuts" | "pair" | "shar"
    files: list[str]               # shown names of the files rows come from (row_file indexes it)
    row_file: np.ndarray           # int32 per row
    lines: np.ndarray              # int64 per row: the line of its cut (supervision, for a pair)
    columns: dict[str, pa.Array]   # audio_filepath, offset, duration, text, then the other fields
    problems: list[LhotseProblem]
    total_lines: int
    bases: list[str]               # per file: the folder relative audio paths start from
    tar_shards: tuple[str, ...] = ()
    # per file, where it is read from, where its shown name is not that (a Shar directory's cuts
    # files are shown relative to the folder above it, wherever sde runs); () otherwise
    locations: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------ detection


def detect(locations: Sequence[str]) -> str | None:
    """"cuts", "pair" or "shar" when the sources are exactly one such Lhotse source, else None."""
    if len(locations) == 1 and _is_shar_dir(locations[0]):
        return "shar"
    if not 1 <= len(locations) <= 2:
        return None
    kinds = [sniff_kind(location) for location in locations]
    if kinds == ["cuts"]:
        return "cuts"
    return "pair" if sorted(kinds, key=str) == ["recordings", "supervisions"] else None


def sniff_kind(location: str) -> str | None:
    """"cuts", "recordings" or "supervisions" from a file's first non-blank line; None otherwise.
    A URL is opened only when named like a Lhotse manifest (.jsonl, .jsonl.gz): every remote NeMo
    manifest would otherwise cost one more request (and one more wait on a store that hangs)."""
    if is_url(location) and not location.endswith((".jsonl", ".jsonl.gz")):
        return None
    try:
        with _open(location) as f:
            head = f.read(SNIFF_BYTES)
    except (*_DECODE_ERRORS, LhotseError):
        return None
    return head_kind(head)


def head_kind(head: bytes) -> str | None:
    """"cuts", "recordings" or "supervisions" from the first non-blank line of a file's (decompressed)
    first bytes; None otherwise."""
    for raw in head.splitlines():
        if raw.strip():
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return None
            return _kind_of(obj) if isinstance(obj, dict) else None
    return None


def _kind_of(obj: dict) -> str | None:
    if "id" not in obj or "audio_filepath" in obj or "audio_filename" in obj:
        return None
    if "supervisions" in obj or ("type" in obj and ("recording" in obj or "tracks" in obj)):
        return "cuts"
    if "sources" in obj and "sampling_rate" in obj:
        return "recordings"
    return "supervisions" if "recording_id" in obj and "start" in obj else None


def lone_manifest_hint(location: str, kind: str) -> str:
    """What to do with a recordings or supervisions manifest given alone."""
    other = "supervisions" if kind == "recordings" else "recordings"
    return (f"{location}: this is a Lhotse {kind} manifest, not a NeMo manifest; pass it together with its {other} manifest: "
            f"sde recordings.jsonl.gz supervisions.jsonl.gz (or a CutSet: sde cuts.jsonl.gz)")


def _is_shar_dir(location: str) -> bool:
    """A local folder holding Shar shards: cuts files, or recording tars (whose cuts are then
    missing, which reading says, rather than a NeMo reader's "is a directory")."""
    return not is_url(location) and os.path.isdir(location) and any(
        SHAR_CUTS.match(name) or SHAR_RECORDINGS.match(name) for name in os.listdir(location))


# -------------------------------------------------------------------------------------- reading


def read_lhotse(kind: str, locations: Sequence[str], shown: Sequence[str], *, readable: str | None = None,
                span: Span | None = None) -> LhotseRead:
    """Read the sources :func:`detect` recognised. ``shown``: how each location is named to the
    user. Raises LhotseError when nothing can be read (the message says why and the fix).
    A CutSet only: ``readable``, the file opened in its place (a decompressed copy; relative audio
    paths still start from the location's folder); ``span``, only those lines of it (plain)."""
    if kind == "shar":  # a folder missing its cuts or its tars is said first: no lhotse needed for that
        return _read_shar(locations[0], shown[0])
    require_lhotse(shown[0])
    if kind == "cuts":
        rows = _Rows([shown[0]])
        total = _read_cuts(readable or locations[0], shown[0], 0, rows, shar=None, span=span)
        return rows.finish(kind, [shown[0]], total, [_folder(locations[0])], keep_empty=span is not None)
    if kind == "pair":
        return _read_pair(locations, shown)
    raise ValueError(f"unknown Lhotse source kind {kind!r}")


# lhotse requires torch, so it is an extra (like NeMo), not installed with sde itself.
LHOTSE_INSTALL = ("install torch for your platform first (the CPU wheel: pip install torch --index-url "
                  "https://download.pytorch.org/whl/cpu), then: pip install 'sde[lhotse]'")


def require_lhotse(shown: str, *, load: bool = True) -> None:
    """LhotseError, saying what to install, where lhotse cannot be imported. ``load=False``: only
    whether it is installed, without importing it (torch with it: seconds and ~250 MB)."""
    try:
        if load:
            import lhotse  # noqa: F401
        elif importlib.util.find_spec("lhotse") is None:
            raise ImportError("lhotse")
    except (ImportError, ValueError):  # ValueError: a module set to None (tests hide it so)
        raise LhotseError(f"{shown}: a Lhotse manifest; reading it needs the lhotse package: {LHOTSE_INSTALL}") from None


def _folder(location: str) -> str:
    return remote.url_folder(location) if is_url(location) else os.path.dirname(os.path.abspath(location))


def _open(location: str) -> BinaryIO:
    """The file's bytes, gunzipped when it is gzip-compressed (judged by its first bytes)."""
    try:
        raw = remote.open_file(location) if is_url(location) else open(location, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise LhotseError(f"{location}: file not found; check the path") from None
    except IsADirectoryError:
        raise LhotseError(f"{location}: is a directory without Lhotse Shar shards (cuts.N.jsonl.gz)") from None
    except OSError as e:
        raise LhotseError(f"{location}: cannot open: {e.strerror or e}") from None
    magic = raw.read(2)
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw  # type: ignore[return-value]


def _lines(location: str, shown: str, problems: list[LhotseProblem],
           span: Span | None = None) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of each line: empty for a blank line, None for a line over
    MAX_LINE_BYTES. ``span``: only those lines (whole lines of a plain file: parts end at line
    ends, so no line is cut). A file that breaks off (truncated gzip, lost connection) ends with
    one problem."""
    line = 0
    try:
        with _open(location) as f:
            left: int | None = None  # bytes of the span still to read; None: to the end of the file
            if span is not None:
                start, stop, line = span
                f.seek(start)
                left = stop - start

            def readline(limit: int) -> bytes:
                nonlocal left
                if left is None:
                    return f.readline(limit)
                raw = f.readline(min(limit, left))
                left -= len(raw)
                return raw

            while raw := readline(MAX_LINE_BYTES + 1):
                line += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    while (rest := readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass
                    yield line, None
                else:
                    yield line, raw if raw.strip() else b""
    except _DECODE_ERRORS as e:
        why = f"{type(e).__name__}: {e}" if not isinstance(e, RemoteError) else str(e)
        problems.append(LhotseProblem(shown, line + 1, f"the file breaks off here ({why}); the lines before "
                                      "it are read; re-copy or re-create the file"))


@functools.cache
def _lhotse() -> SimpleNamespace:
    """What decoding takes of lhotse, imported once: an import statement per line (a cached module
    looked up) cost ~7% of a CutSet's read."""
    from lhotse.cut import MixedCut
    from lhotse.serialization import deserialize_item

    return SimpleNamespace(deserialize_item=deserialize_item, MixedCut=MixedCut)


def _decode(raw: bytes | None, expected: tuple[type, ...], what: str) -> tuple[Any, str | None]:
    """A Lhotse object from one line, or the reason the line is unusable."""
    if raw is None:
        return None, f"line longer than {MAX_LINE_BYTES >> 20} MB; not a Lhotse {what} entry"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return None, f"invalid JSON ({e}); fix or remove the line"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object (a Lhotse {what} entry); fix or remove the line"
    try:
        item = _lhotse().deserialize_item(obj)
    except Exception as e:  # noqa: BLE001 - lhotse raises anything (TypeError, KeyError, ValueError...)
        return None, f"not a valid Lhotse {what} entry ({type(e).__name__}: {e}); fix or remove the line"
    if not isinstance(item, expected):
        return None, f"expected a Lhotse {what} entry, found a {type(item).__name__}; fix or remove the line"
    return item, None


def _read_cuts(location: str, shown: str, file_k: int, rows: _Rows, shar: _SharShard | None,
               span: Span | None = None) -> int:
    """The lines read (of the span, if given)."""
    from lhotse.cut import MixedCut, MonoCut, MultiCut

    first = total = span[2] if span else 0
    for line, raw in _lines(location, shown, rows.problems, span):
        total = line
        if raw == b"":
            continue
        cut, reason = _decode(raw, (MonoCut, MultiCut, MixedCut), "cut")
        if reason is None:
            reason = _cut_rows(cut, line, file_k, rows, shar)
        if reason is not None:
            rows.problems.append(LhotseProblem(shown, line, reason))
    return total - first


def _cut_rows(cut: Any, line: int, file_k: int, rows: _Rows, shar: _SharShard | None,
             shown_id: str | None = None) -> str | None:
    """Adds a row per usable supervision of the cut; the reason when the whole cut is unusable (its
    bad supervisions are problems of their own, at the cut's line). ``shown_id``: the cut_id the
    rows carry (a padded MixedCut's, whose track is read)."""
    if isinstance(cut, _lhotse().MixedCut):
        if shar is not None:
            return (f"cut {cut.id} is a MixedCut (padded or mixed): sde reads the MonoCut and MultiCut entries "
                    "of a Shar directory; write it from cuts before padding or mixing")
        inner, reason = _speech_track(cut)
        if reason is not None:
            return reason
        return _cut_rows(inner, line, file_k, rows, shar, shown_id=cut.id)
    if cut.recording is None:
        return f"cut {cut.id} has no recording; add its recording or drop the cut"
    if not cut.supervisions:
        return f"cut {cut.id} has no supervision (no text): nothing to show; drop the cut or add supervisions"
    shard_fields: dict[str, Any] = {}
    if shar is not None:
        member, reason = shar.member(cut.id)
        if reason:
            return reason
        shard_fields = {"audio_filepath": member, "shard_id": shar.index}
    for sup in cut.supervisions:
        start, end = max(sup.start, 0.0), min(sup.end, cut.duration)
        if end <= start:
            reason = f"supervision {sup.id} ({sup.start:g}-{sup.end:g} s) lies outside its cut ({cut.duration:g} s)"
        elif sup.text is None:
            reason = f"supervision {sup.id} of cut {cut.id} has no text; add it or drop the supervision"
        else:
            audio, reason = ((_member_fields(shard_fields, cut, sup.channel), None) if shar
                             else _audio_fields(cut.recording, sup.channel))
            if reason is None:
                # A Shar member holds the cut's audio as written (transforms applied); a file is
                # read as it is on disk, so times move back to the file's own timeline.
                factor = 1.0 if shar else _time_factor(cut.recording)
                times = {"offset": start if shar else (cut.start + start) * factor, "duration": (end - start) * factor}
                rows.add(file_k, line, {**audio, **times, **_transform_fields(None if shar else cut.recording)},
                         sup, shown_id or cut.id, cut.custom)
                continue
        rows.problems.append(LhotseProblem(rows.shown_of(file_k), line, reason))
    return None


def _audio_fields(recording: Any, channel: Any) -> tuple[dict[str, Any], str | None]:
    """audio_filepath of the recording source that holds the channel, or why there is none."""
    listed = channel if isinstance(channel, list) else [channel]
    wanted = listed[0] if listed else channel
    sources = recording.sources
    source = next((s for s in sources if wanted in s.channels), sources[0]) if sources else None
    if source is None:
        return {}, f"recording {recording.id} has no audio source; add one to the recordings manifest"
    if source.type in ("file", "url") and isinstance(source.source, str) and source.source:
        return {"audio_filepath": source.source, **_channel_field(listed, source.channels)}, None
    if source.type == "command":
        return {}, (f"recording {recording.id} is read by running a command; sde does not run commands from "
                    "a manifest: write the audio to files (e.g. with lhotse's CutSet.save_audios) and use those")
    if source.type == "memory":
        return {}, (f"recording {recording.id} keeps its audio bytes inside the manifest ('memory' source), "
                    "which a JSON file cannot hold; write the audio to files or to a Shar directory (CutSet.to_shar)")
    if source.type == "shar":  # a cuts file of a Shar folder, given alone: its audio is in the folder's tars
        return {}, (f"recording {recording.id} is in a Lhotse Shar's recording.N.tar: this is a cuts file of a Shar "
                    "folder; pass the folder itself (sde SHAR_DIR/, a local folder), which reads every shard")
    return {}, f"recording {recording.id}: unsupported audio source type {source.type!r}; use file or url sources"


def _channel_field(listed: list, held: Sequence[Any]) -> dict[str, Any]:
    """The audio_channel of a supervision on ``listed`` channels of a file (or a Shar member) that
    holds the ``held`` channels, in that order: a position in the file, so the player reads that
    channel alone (one speaker of a telephone call), not the mix of both sides; for several
    channels (a MultiCut on some microphones of an array) their positions as JSON text, ``"[0,1]"``
    (the mean of those channels, by sde.audio's rule; text, as the source's other lists are), so
    that a supervision on 2 of 8 microphones is not heard as the mix of all 8. None needed when the
    file holds just those channels (its mix is their mean), nor for a file of one channel. Channels
    the file lacks (a supervision across several files of one recording) are left out: sde reads
    one file per line."""
    held = list(held)
    positions = [held.index(c) for c in listed if c in held]
    if len(held) <= 1 or not positions or sorted(positions) == list(range(len(held))):
        return {}
    if len(positions) == 1:
        return {"audio_channel": positions[0]}
    return {"audio_channel": _json_text(positions)}


def _member_fields(shard_fields: dict[str, Any], cut: Any, channel: Any) -> dict[str, Any]:
    """A Shar member's fields for a supervision: a MultiCut's member holds every channel of the cut
    (in the cut's channel order), so a supervision on one of them (or on some of them) reads those
    alone, as one of a recording file does (see _channel_field); without it both sides of a call
    play, measure and transcribe as one, and their lines share member and offset."""
    channels = cut.channel if isinstance(cut.channel, list) else [cut.channel]
    listed = channel if isinstance(channel, list) else [channel]
    if any(isinstance(c, list) for c in listed):
        return shard_fields
    return {**shard_fields, **_channel_field(listed, channels)}


def _speech_track(cut: Any) -> tuple[Any, str | None]:
    """The one track of a MixedCut that holds its supervisions (a padded cut, or speech mixed with
    noise): its audio, without the padding or the noise, is what sde plays."""
    from lhotse.cut import MonoCut, MultiCut

    tracks = [t for t in cut.tracks if getattr(t.cut, "supervisions", None)]
    if len(tracks) != 1:
        return None, (f"cut {cut.id} is a MixedCut whose supervisions lie on {len(tracks)} tracks: it has no single "
                      "audio file; sde reads MonoCut and MultiCut entries, and MixedCuts whose supervisions are on "
                      "one track (padded cuts, speech mixed with noise)")
    inner = tracks[0].cut
    if not isinstance(inner, (MonoCut, MultiCut)):
        return None, f"cut {cut.id}: its supervisions lie on a {type(inner).__name__} track; sde reads MonoCut tracks"
    return inner, None


# Lhotse transforms that change the timeline of the audio: the recording's times are the file's
# times divided by the factor (lhotse's Speed and Tempo perturbations).
_TIME_TRANSFORMS = ("Speed", "Tempo")


def _time_factor(recording: Any) -> float:
    """How much longer the file is than the recording's timeline (1.1 for speed perturbation 1.1)."""
    factor = 1.0
    for transform in getattr(recording, "transforms", None) or []:
        name, kwargs = _transform_parts(transform)
        if name in _TIME_TRANSFORMS and isinstance(kwargs.get("factor"), (int, float)) and kwargs["factor"] > 0:
            factor *= float(kwargs["factor"])
    return factor


def _transform_parts(transform: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(transform, dict):
        return str(transform.get("name")), dict(transform.get("kwargs") or {})
    found = transform.to_dict() if hasattr(transform, "to_dict") else {}
    return str(found.get("name", type(transform).__name__)), dict(found.get("kwargs") or {})


def _transform_fields(recording: Any) -> dict[str, Any]:
    """A ``lhotse_transforms`` column for rows of a recording with transforms (speed perturbation,
    resampling ...): sde plays the file as it is on disk, and the column says so."""
    described = []
    for transform in getattr(recording, "transforms", None) or []:
        name, kwargs = _transform_parts(transform)
        described.append(f"{name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})")
    return {"lhotse_transforms": " ".join(described)} if described else {}


# ------------------------------------------------------------------------- recordings + supervisions

# What a pair's rows need of a recording: its audio per channel (or why there is none), its
# duration, its time factor and its transforms column.
_PairRecording = tuple[dict[Any, tuple[dict[str, Any], "str | None"]], float, float, dict[str, Any]]


def _read_pair(locations: Sequence[str], shown: Sequence[str]) -> LhotseRead:
    from lhotse import Recording, SupervisionSegment

    kinds = [sniff_kind(location) for location in locations]
    r, s = (0, 1) if kinds[0] == "recordings" else (1, 0)
    rows = _Rows([shown[s]])
    recordings: dict[str, _PairRecording] = {}
    total = 0
    for line, raw in _lines(locations[r], shown[r], rows.problems):
        total = line
        if raw == b"":
            continue
        rec, reason = _decode(raw, (Recording,), "recording")
        if reason is not None:
            rows.problems.append(LhotseProblem(shown[r], line, reason))
            continue
        # only what rows need is kept per recording (its audio per channel), not the objects
        recordings[rec.id] = ({c: _audio_fields(rec, c) for c in rec.channel_ids or [0]}, rec.duration,
                              _time_factor(rec), _transform_fields(rec))
    if not recordings:
        raise LhotseError(f"{shown[r]}: no usable recording; every line is bad or the file is empty"
                          + _first_problems(rows.problems))
    supervisions = 0
    for line, raw in _lines(locations[s], shown[s], rows.problems):
        supervisions = line
        if raw == b"":
            continue
        sup, reason = _decode(raw, (SupervisionSegment,), "supervision")
        if reason is None:
            reason = _pair_row(sup, recordings.get(sup.recording_id), line, rows, shown[r])
        if reason is not None:
            rows.problems.append(LhotseProblem(shown[s], line, reason))
    return rows.finish("pair", [shown[s]], total + supervisions, [_folder(locations[r])])


def _pair_row(sup: Any, recording: _PairRecording | None, line: int,
              rows: _Rows, recordings_name: str) -> str | None:
    if recording is None:
        return f"recording {sup.recording_id} (of supervision {sup.id}) is not in {recordings_name}; add it or drop the line"
    by_channel, length, factor, transformed = recording
    channel = sup.channel[0] if isinstance(sup.channel, list) and sup.channel else sup.channel
    audio, audio_problem = by_channel.get(channel) or next(iter(by_channel.values()))
    start, end = max(sup.start, 0.0), min(sup.end, length)
    if audio_problem:
        return audio_problem
    if end <= start:
        return f"supervision {sup.id} ({sup.start:g}-{sup.end:g} s) lies outside its recording ({length:g} s)"
    if sup.text is None:
        return f"supervision {sup.id} has no text; add it or drop the line"
    rows.add(0, line, {**audio, "offset": start * factor, "duration": (end - start) * factor, **transformed}, sup,
             None, None)
    return None


def _first_problems(problems: list[LhotseProblem], k: int = 3) -> str:
    return "".join(f"\n  {p.file}:{p.line}: {p.reason}" for p in problems[:k])


# ----------------------------------------------------------------------------------------- Shar


@dataclass
class _SharShard:
    index: int
    tar_name: str
    members: dict[str, str] = field(default_factory=dict)  # cut id → member name

    def member(self, cut_id: str) -> tuple[str, str | None]:
        name = self.members.get(cut_id)
        if name is None:
            return "", f"cut {cut_id} has no audio in {self.tar_name}; re-create the Shar shard"
        if name.endswith(".nodata"):
            return "", f"cut {cut_id} has no audio ({self.tar_name} holds a .nodata placeholder for it)"
        return name, None


def _shar_shards(folder: str) -> tuple[list[tuple[int, str]], dict[int, str]]:
    cuts, tars = [], {}
    for name in os.listdir(folder):
        if m := SHAR_CUTS.match(name):
            cuts.append((int(m.group(1)), name))
        elif m := SHAR_RECORDINGS.match(name):
            tars[int(m.group(1))] = name
    return sorted(cuts), tars


def _read_shar(folder: str, shown: str) -> LhotseRead:
    """Every shard of a Shar folder, in number order. A shard whose cuts file is missing (a
    recording.N.tar without its cuts.N.jsonl.gz, or a gap in the cuts numbering, which
    CutSet.to_shar never leaves) or empty is a skipped file, as is a missing or unreadable tar: the
    other shards load, and --strict stops (lhotse itself refuses such a folder)."""
    cut_files, tar_files = _shar_shards(folder)
    label = os.path.basename(os.path.normpath(shown))  # names relative to the folder above, as for shards
    if not cut_files:
        raise LhotseError(f"{shown}: a Lhotse Shar folder without its cuts files: it holds "
                          f"{_some(tar_files.values())} but no cuts.N.jsonl.gz (each shard's text and times); "
                          "copy the cuts.N.jsonl.gz files of this Shar into it, one beside each recording.N.tar "
                          "(or write it again with CutSet.to_shar)")
    if not tar_files:
        raise LhotseError(f"{shown}: a Lhotse Shar directory without recording.N.tar shards: it holds no audio; "
                          "write it with CutSet.to_shar(..., fields={'recording': 'flac'})")
    require_lhotse(shown)
    names = [f"{label}/{name}" for _, name in cut_files]
    rows = _Rows(names)
    tar_shards = tuple(os.path.abspath(os.path.join(folder, tar_files[n])) if n in tar_files else
                       os.path.abspath(os.path.join(folder, f"recording.{n:06d}.tar")) for n, _ in cut_files)
    position = {n: k for k, (n, _) in enumerate(cut_files)}
    suffix = cut_files[0][1].split(".", 2)[2]  # jsonl.gz or jsonl, as the folder's cuts files are named
    total = 0
    for n in sorted(set(range(cut_files[-1][0] + 1)) | set(tar_files)):
        if n not in position:
            rows.problems.append(_missing_cuts(n, label, suffix, position, tar_files))
            continue
        k = position[n]
        location = os.path.join(folder, cut_files[k][1])
        if _empty_file(location):
            tar = f"recording.{n:06d}.tar"
            rows.problems.append(LhotseProblem(names[k], 0, (
                f"is empty (0 bytes): no cuts, so {tar} is not read; copy the file again from where the Shar "
                "was written (or write the Shar again with CutSet.to_shar); the other shards load")))
            continue
        shard = _shar_index(k, tar_shards[k], f"{label}/{os.path.basename(tar_shards[k])}", rows)
        if shard is None:
            continue
        total += _read_cuts(location, names[k], k, rows, shar=shard)
    return rows.finish("shar", names, total, [os.path.abspath(folder)] * len(names), tar_shards,
                       locations=tuple(os.path.abspath(os.path.join(folder, name)) for _, name in cut_files))


def _missing_cuts(n: int, label: str, suffix: str, position: dict[int, int], tar_files: dict[int, str]) -> LhotseProblem:
    """The problem of shard ``n`` of a Shar folder, whose cuts file is missing."""
    name = f"cuts.{n:06d}.{suffix}"
    fix = "copy {} again from where the Shar was written (or write the Shar again with CutSet.to_shar); the other shards load"
    if n in tar_files:
        why = f"{tar_files[n]} is there but not its cuts (the text and times of its audio), so its utterances are lost"
    else:
        before = max((m for m in position if m < n), default=None)
        after = min(m for m in position if m > n)
        went = f"from cuts.{before:06d} to cuts.{after:06d}" if before is not None else f"start at cuts.{after:06d}"
        why = (f"the cuts files go {went}: shard {n:06d} (its cuts and recording.{n:06d}.tar) is not in the "
               "folder, so its utterances are lost")
    return LhotseProblem(f"{label}/{name}", 0, f"missing: {why}; {fix.format('it' if n in tar_files else 'both')}")


def _empty_file(location: str) -> bool:
    try:
        return os.path.getsize(location) == 0
    except OSError:
        return False  # reading it says why


def _some(names: Any, k: int = 3) -> str:
    listed = sorted(names)
    more = f" and {len(listed) - k} more" if len(listed) > k else ""
    return ", ".join(listed[:k]) + more


def _shar_index(k: int, tar: str, tar_shown: str, rows: _Rows) -> _SharShard | None:
    """The member names of one recording shard; None (one problem) when it cannot be read."""
    skipped = f"the cuts of {os.path.basename(rows.files[k])} are skipped, the other shards load"
    if not os.path.isfile(tar):
        rows.problems.append(LhotseProblem(tar_shown, 0, f"missing: no audio shard for {rows.files[k]}; copy it again from where the Shar was written; {skipped}"))
        return None
    try:
        index = load_tar_index(tar)
    except TarIndexError as e:
        why = str(e).removeprefix(f"{tar}: ")
        rows.problems.append(LhotseProblem(tar_shown, 0, f"{why}; {skipped}"))
        return None
    members = {name.rsplit(".", 1)[0]: name for name in index.members if not name.endswith(".json")}
    return _SharShard(k, tar_shown, members)


# ----------------------------------------------------------------------------------------- rows


class _Rows:
    """Rows gathered in batches of Python values, turned into Arrow columns batch by batch."""

    def __init__(self, files: list[str] | None = None) -> None:
        self.files = files or [""]
        self.problems: list[LhotseProblem] = []
        self._batch: list[dict[str, Any]] = []
        self._file: list[int] = []
        self._line: list[int] = []
        self._done: list[tuple[int, dict[str, pa.Array]]] = []

    def shown_of(self, file_k: int) -> str:
        return self.files[file_k]

    def add(self, file_k: int, line: int, audio: dict[str, Any], sup: Any, cut_id: str | None,
            cut_custom: dict | None) -> None:
        row = {**audio, "text": sup.text, "cut_id": cut_id, "recording_id": sup.recording_id,
               "supervision_id": sup.id, "speaker": sup.speaker, "language": sup.language,
               "gender": sup.gender, "channel": _flat(sup.channel)}
        if sup.alignment:
            row["alignment"] = _json_text({k: [list(item) for item in v] for k, v in sup.alignment.items()})
        for custom in (cut_custom, sup.custom):
            for key, value in (custom or {}).items():
                row[f"custom_{key}" if key in RESERVED else key] = _flat(value)
        self._batch.append(row)
        self._file.append(file_k)
        self._line.append(line)
        if len(self._batch) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        keys = dict.fromkeys(k for row in self._batch for k in row)
        self._done.append((len(self._batch), {k: _arrow([row.get(k) for row in self._batch]) for k in keys}))
        self._batch = []

    def finish(self, kind: str, files: list[str], total: int, bases: list[str],
               tar_shards: tuple[str, ...] = (), keep_empty: bool = False,
               locations: tuple[str, ...] = ()) -> LhotseRead:
        """``keep_empty``: of a part, keep the columns without a value too: their place among
        the columns is the one the whole read gives them where a later part has values (the join
        drops those no part has a value in)."""
        self._flush()
        self.files = files
        keys = dict.fromkeys(k for _, cols in self._done for k in cols)
        columns = {k: _concat([(n, cols.get(k)) for n, cols in self._done]) for k in keys}
        for k in ("cut_id", "speaker", "language", "gender"):  # absent everywhere: no column
            if k in columns and columns[k].null_count == len(columns[k]) and not keep_empty:
                del columns[k]
        return LhotseRead(kind, files, np.asarray(self._file, dtype=np.int32), np.asarray(self._line, dtype=np.int64),
                          columns, self.problems, total, bases, tar_shards, locations)


def _flat(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return _json_text(value)


def _json_text(value: Any) -> str:
    def default(obj: Any) -> Any:
        return obj.to_dict() if hasattr(obj, "to_dict") else str(obj)

    return orjson.dumps(value, default=default, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _arrow(values: list[Any]) -> pa.Array:
    """One column of a batch; values of mixed types become text (JSON for non-strings)."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([v if v is None or isinstance(v, str) else _json_text(v) for v in values], pa.string())


def _concat(parts: list[tuple[int, pa.Array | None]]) -> pa.Array:
    """A column over all batches: nulls where a batch lacks it, text when batches disagree on its type."""
    types = {a.type for _, a in parts if a is not None} - {pa.null()}
    if not types:
        target = pa.string()
    elif len(types) == 1:
        target = types.pop()
    elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        target = pa.float64()
    else:
        target = pa.string()
    chunks = [pa.nulls(n, target) if a is None else a.cast(target) for n, a in parts]
    return pa.concat_arrays(chunks) if chunks else pa.array([], target)
