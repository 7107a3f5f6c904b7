"""What a transcription job reads and writes, the same for every engine (local, Ray) and ``--shard``.

- :func:`read_entries` — the manifest's non-blank lines by :mod:`sde.manifest`'s rules (audio path
  resolution, offset/duration checks), each with a stable :func:`utterance_key`.
- The part file ``<out>.partial``: a header line (format version, manifest, model, field), then one
  ``{"k": key, "p": prediction}`` line per finished utterance, appended and fsynced batch by batch.
  A re-run with the same manifest, model and field skips the keys already there, whichever engine
  wrote them; a torn last line (a process killed mid-write) is ignored.
- :func:`write_output` — the output manifest, atomically (temp file + ``os.replace``): the input's
  lines as written, with only the prediction field set (or removed).
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import hashlib
import json
import lzma
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from sde.export import remove_members, set_members
from sde.manifest import resolve_audio_path, seconds_field
from sde.nemo.infer import SegmentRef
from sde.sources.members import tar_member_path
from sde.nemo.model import TranscribeError, model_identity
from sde.sources.members import shard_number

__all__ = [
    "PART_VERSION",
    "Entry",
    "PartFile",
    "iter_lines",
    "load_part",
    "parse_line",
    "part_header",
    "part_path",
    "read_entries",
    "read_part",
    "utterance_key",
    "write_output",
]

# 2: records keyed by utterance_key ({"k", "p"}); version 1 keyed by line index is started afresh.
# 3: a local model named by its resolved path, size and mtime (model_identity); 2 named it as typed.
PART_VERSION = 3


class Entry(NamedTuple):
    index: int  # position among the manifest's non-blank lines
    line: int  # 1-based physical line
    ref: SegmentRef
    seconds: float | None  # the manifest's duration, for ordering batches
    key: str  # utterance_key: what the part file records


def utterance_key(source: str, line: int, ref: SegmentRef) -> str:
    """A stable name for one utterance: its manifest, line, audio file, offset and duration. The same
    line of the same manifest gets the same key in every run, on every machine that sees the same
    paths; an edited line (other audio or segment) gets another key and is transcribed again."""
    # the channel only when there is one: keys of lines without audio_channel stay as they were
    parts = [source, line, ref.path, ref.offset, ref.duration] + ([ref.channel] if ref.channel is not None else [])
    blob = json.dumps(parts, ensure_ascii=False, default=repr)
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=12).hexdigest()


# --------------------------------------------------------------------------------------------
# Manifest lines


# Compressed manifests, by their first bytes, as sde MANIFEST reads them (m.json.gz from NeMo's scripts).
_COMPRESSED = ((b"\x1f\x8b", gzip.open, "gzip -t"), (b"BZh", bz2.open, "bzip2 -t"),
               (b"\xfd7zXZ\x00", lzma.open, "xz -t"))


def _open_lines(path: Path) -> tuple[Any, str | None]:
    """(the manifest's bytes, decompressed; the command that tests its compression, None: none)."""
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, opener, check in _COMPRESSED:
        if head.startswith(magic):
            return opener(path, "rb"), check
    return open(path, "rb"), None


def iter_lines(path: Path) -> Iterator[tuple[int, int, str]]:
    """(index among non-blank lines, 1-based line number, text) for every non-blank line; a UTF-8
    BOM, CRLF line ends and gzip/bzip2/xz compression read as ``sde MANIFEST`` reads them, and a
    line that is not UTF-8 or a damaged compressed file as a TranscribeError naming where."""
    index = 0
    f, check = _open_lines(path)
    with f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except (OSError, EOFError, lzma.LZMAError) as e:
                raise TranscribeError(f"{path}: the compressed file is damaged or cut short after line {lineno} "
                                      f"({e}); test it with {check} {path}") from None
            if not raw:
                return
            lineno += 1
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TranscribeError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column "
                                      f"{e.start + 1}); fix the line, or convert the file, e.g. iconv -f LATIN1 "
                                      "-t UTF-8") from None
            if text.strip():
                yield index, lineno, text
                index += 1


def parse_line(manifest: Path, lineno: int, raw: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TranscribeError(f"{manifest}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from None
    if not isinstance(obj, dict):
        raise TranscribeError(f"{manifest}:{lineno}: expected a JSON object per line (NeMo manifest), got {type(obj).__name__}")
    return obj


def _seconds(obj: dict, key: str, manifest: Path, lineno: int) -> float | None:
    """The line's offset/duration by read_manifest's rules; None when absent or null."""
    value, reason = seconds_field(obj, key)
    if reason:
        raise TranscribeError(f"{manifest}:{lineno}: {reason}")
    return value


def _tar_of(obj: dict, tars: Sequence[str], manifest: Path, lineno: int) -> str:
    shard = obj.get("shard_id")
    number = shard_number(shard) if isinstance(shard, (int, float)) else None  # a JSON number, whole
    if number is None:
        raise TranscribeError(f'{manifest}:{lineno}: --tarred-audio needs an integer "shard_id" on every line '
                              f"(got {shard!r})")
    if not 0 <= number < len(tars):
        raise TranscribeError(f"{manifest}:{lineno}: shard_id {number} is outside the {len(tars)} tars "
                              "--tarred-audio names; check the pattern")
    return tars[number]


def read_entries(manifest: Path, audio_base_path: Any, shard: tuple[int, int] | None,
                 tars: Sequence[str] = ()) -> list[Entry]:
    """The entries of this shard (all lines without one), in manifest order. ``tars``: NeMo tarred
    audio (--tarred-audio): each line's audio is the member ``audio_filepath`` of tar ``shard_id``."""
    i, n = shard or (0, 1)
    source = str(manifest.resolve())
    entries: list[Entry] = []
    for index, lineno, raw in iter_lines(manifest):
        if index % n != i:
            continue
        obj = parse_line(manifest, lineno, raw)
        audio = obj.get("audio_filepath", obj.get("audio_filename"))
        if not isinstance(audio, str) or not audio:
            raise TranscribeError(f'{manifest}:{lineno}: missing field "audio_filepath" (the audio to transcribe)')
        duration = _seconds(obj, "duration", manifest, lineno)
        offset = _seconds(obj, "offset", manifest, lineno)
        path = (tar_member_path(_tar_of(obj, tars, manifest, lineno), audio) if tars
                else resolve_audio_path(audio, manifest, audio_base_path))
        # no offset: the whole file; else only the segment is read and transcribed
        # audio_channel (one side of a call, as a Lhotse view writes it) is read where the audio is
        channel = obj.get("audio_channel")
        ref = SegmentRef(path, 0.0, None, channel) if offset is None else SegmentRef(path, offset, duration, channel)
        entries.append(Entry(index, lineno, ref, duration, utterance_key(source, lineno, ref)))
    return entries


# --------------------------------------------------------------------------------------------
# Atomic files


def same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def atomic_writer(path: Path) -> tuple[Any, str]:
    """(an open temp file beside ``path``, its name); TranscribeError naming the folder where none can
    be made (the OSError named the temp file, which the user never asked for)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _new_temp(path)
    except OSError as e:
        raise TranscribeError(f"{path}: cannot write in {path.parent} ({e.strerror or e}); choose another "
                              "--out") from None
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n"), tmp


def _new_temp(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path``, with the mode of any new file (0o666 less the umask): the
    0o600 of mkstemp made every output unreadable to the rest of a team on a shared disk."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:  # O_EXCL: never follow or reuse someone else's file
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path))


def check_writable(path: Path) -> None:
    """TranscribeError now, before a model is loaded or an hour spent transcribing, when ``path``
    cannot be written atomically (a read-only or missing mount, /proc, a full quota of inodes)."""
    abort(*atomic_writer(path))


def commit(f: Any, tmp: str, path: Path) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(tmp, path)


def abort(f: Any, tmp: str) -> None:
    with contextlib.suppress(Exception):
        f.close()
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def write_output(manifest: Path, target: Path, field: str, shard: tuple[int, int] | None,
                 preds: Mapping[int, str | None]) -> None:
    """Every input line of the shard (all lines without one) with ``field`` set, in input order; a
    line whose prediction is None (its audio could not be read) without ``field``: an empty string
    would be scored as a hypothesis that deleted every word. Each line is the user's but for that
    field (:func:`with_prediction`) and keeps its line end (LF or CRLF; a last line without one gets
    the line end of the line before it); a BOM belongs to the file, not to its first line, and is
    not copied (NeMo's reader would take it for part of line 1's JSON)."""
    i, n = shard or (0, 1)
    f, tmp = atomic_writer(target)
    try:
        end = "\n"
        for index, lineno, raw in iter_lines(manifest):
            body = raw.rstrip("\n")
            if len(body) < len(raw):  # a last line without an end gets the file's line before it
                end = "\r\n" if body.endswith("\r") else "\n"
                body = body.removesuffix("\r")
            if index % n != i:
                continue
            f.write(with_prediction(body, field, preds[index], manifest, lineno) + end)
        commit(f, tmp, target)
    except BaseException:
        abort(f, tmp)
        raise


def with_prediction(body: str, field: str, pred: str | None, manifest: Path, lineno: int) -> str:
    """The manifest line ``body`` (without its line end) with ``field`` set to ``pred``, or without
    it when ``pred`` is None: an older run's prediction in the input is not this model's. Every
    other byte stays as the user wrote it (sde.export.set_members: numbers such as 1.50 or 1e400,
    escapes, spacing, key order, other repeated keys); only ``field`` is written by sde, once (a
    reader that takes the first of repeated members sees this model's too)."""
    try:
        return set_members(body, {field: pred}, single=True) if pred is not None else remove_members(body, (field,))
    except ValueError:  # json.loads took what the member scan does not: the line as JSON reads it
        obj = parse_line(manifest, lineno, body)
        if pred is None:
            obj.pop(field, None)
        else:
            obj[field] = pred
        return dumps(obj)


# --------------------------------------------------------------------------------------------
# Part files


def part_path(target: Path) -> Path:
    """The part file of the output ``target``: ``<target>.partial`` beside it."""
    return target.with_name(target.name + ".partial")


def part_header(manifest: Path, model: Any, field: str) -> dict[str, Any]:
    """What a part file's records are valid for. The manifest's size and time are not part of it on
    purpose: the keys say which lines are still the same, so an edited manifest keeps the work done
    on its unchanged lines."""
    return {"sde_partial": PART_VERSION, "manifest": str(manifest.resolve()), **model_identity(model),
            "field": field}


def load_part(path: Path, header: Mapping[str, Any]) -> dict[str, str]:
    """key -> prediction from a part file written for the same header; empty when there is none or it
    was written for another manifest, model or field. A key recorded twice keeps its first prediction;
    reading stops at a torn line."""
    return read_part(path, header)[0]


def _set_aside_because(first: Any, header: Mapping[str, Any]) -> str:
    """Why a part file whose first line is ``first`` is not for ``header``: "was written for ..."."""
    if not isinstance(first, dict) or first.get("sde_partial") != header.get("sde_partial"):
        return "is not a part file of this version of sde"
    if first.get("manifest") != header.get("manifest"):
        return f"was written for another manifest ({first.get('manifest')})"
    if (first.get("model"), first.get("model_file")) != (header.get("model"), header.get("model_file")):
        if first.get("model") == header.get("model"):
            return f"was written for another model ({header.get('model')} has been replaced or changed since)"
        return f"was written for another model ({first.get('model')})"
    if first.get("field") != header.get("field"):
        return f"was written for another field ({first.get('field')})"
    return "was written for another run"


def read_part(path: Path, header: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
    """:func:`load_part`, and why an existing part file is set aside (None when there is no part
    file or it is for ``header``): "was written for another model (…)", to say before starting
    afresh."""
    done: dict[str, str] = {}
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        return done, None
    with f:
        try:
            first = json.loads(f.readline() or "null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return done, "is not a part file sde can read"
        if first != dict(header):
            return done, _set_aside_because(first, header)
        for raw in f:
            try:
                rec = json.loads(raw)
                key, text = rec["k"], rec["p"]
            except (json.JSONDecodeError, KeyError, TypeError):
                break
            if not isinstance(key, str) or not isinstance(text, str):
                break
            done.setdefault(key, text)
    return done, None


class PartFile:
    """The part file of a running job. Opening rewrites it atomically with ``done`` (dropping a torn
    tail and records of lines no longer wanted); :meth:`add` appends a batch and fsyncs it, so an
    interruption at any moment loses at most the batch being written. Left by an error (or Ctrl-C)
    before it holds a single record, it is removed: there is nothing in it to resume."""

    def __init__(self, path: Path, header: Mapping[str, Any], done: Mapping[str, str]) -> None:
        self.path = path
        self.records = len(done)
        f, tmp = atomic_writer(path)
        try:
            f.write(dumps(dict(header)) + "\n")
            f.writelines(dumps({"k": k, "p": p}) + "\n" for k, p in done.items())
            commit(f, tmp, path)
        except BaseException:
            abort(f, tmp)
            raise
        self._file = open(path, "a", encoding="utf-8", newline="\n")

    def add(self, records: Iterable[tuple[str, str]]) -> None:
        lines = [dumps({"k": k, "p": p}) + "\n" for k, p in records]
        self._file.write("".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records += len(lines)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        self.close()
        if exc_type is not None and not self.records:
            with contextlib.suppress(OSError):
                self.path.unlink()
