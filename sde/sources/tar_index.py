"""Member index of NeMo tarred-audio shards: member name → where its bytes are (offset, size).

NeMo's ``convert_to_tarred_audio_dataset.py`` writes ``audio_N.tar`` shards with Python's tarfile:
one member per audio file, named after the file's path with ``/`` and ``.`` turned into ``_``
(the extension kept), and a tarred manifest whose ``audio_filepath`` is that member name. An audio
file used by several manifest lines (different offsets) is stored once; the later lines name it
``<stem>-sub<k><ext>`` (``a_b-sub1.wav`` for the member ``a_b.wav``): :func:`member_name` maps
such a name back, as NeMo's readers do.

An index comes, in this order of preference, from:

* a cached index (a small JSON file keyed by the tar's path, size and modification time, or its
  ETag when remote), written after the first build;
* a DALI/NeMo index file beside the tar (``dali_index/audio_N.index`` as NeMo's
  ``create_dali_tarred_dataset_index.py`` writes it, ``audio_N.index``, ``audio_N.idx``): first line
  ``v1.2 N``, then one line per sample of ``<ext> <offset> <size> <name>`` groups (the offset is
  where the member's data starts). It is validated, and checked against the tar's own headers at a
  few entries; a wrong index file is reported (file and line) and the tar is scanned instead;
* scanning the tar: only the 512-byte headers are read, the data is skipped by seeking, so it works
  on any seekable file object, including an fsspec remote file read with byte ranges (where the
  members are small, a remote scan reads a run of them in one range: fewer round trips). GNU long
  names (``L``), pax headers (``x``/``g``: ``path``, ``size``) and hard links are followed; a
  member named twice counts once, the later one winning (as tarfile's ``getmember``).

Nothing here decodes audio or imports the rest of sde: the audio reader uses :func:`read_member`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sde.sources import remote

__all__ = ["IndexFileError", "MemberNotFound", "TarIndex", "TarIndexError", "TarMember", "index_file_candidates",
           "load_tar_index", "member_name", "read_index_file", "read_member", "scan_tar"]

BLOCK = 512
INDEX_VERSION = "v1.2"
CACHE_FORMAT = 1
# A remote scan reads this much from each header on: small members then cost no extra request,
# large ones are skipped. Local scans read the header alone (a seek costs nothing there).
REMOTE_READAHEAD = 16 << 10
# A request costs tens of milliseconds whatever its size, and a store sends ~100 MB/s: where the
# members are small (a 3 s utterance: 96 KB), one request per header made a 1,000-member shard
# take 20-250 s to index. Where the last member skipped was at most STREAM_GAP bytes, the next
# read takes the next ~STREAM_MEMBERS members' worth (at most STREAM_WINDOW bytes) in one request;
# larger members are still skipped by seeking.
STREAM_GAP = 1 << 20
STREAM_MEMBERS = 32
STREAM_WINDOW = 8 << 20
# Entries of an index file compared with the tar's own headers before it is trusted.
SPOT_CHECKS = 3
# pax and GNU long-name records larger than this are not names: the tar is corrupt.
MAX_META_BYTES = 1 << 20

_SUB = re.compile(r"^(?P<stem>.+)-sub\d+(?P<ext>\.\w+)?$")
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\x00", b"7")
_GNU_MAGIC = b"ustar  \x00"


@dataclass(frozen=True)
class TarMember:
    name: str
    offset: int  # byte where the member's data starts in the tar
    size: int    # bytes of data


class TarIndexError(Exception):
    """A tar that cannot be indexed (not a tar, corrupt, truncated). The message names the tar, the
    byte where it went wrong and the fix; ``members`` holds what was indexed before it."""

    def __init__(self, message: str, members: dict[str, TarMember] | None = None) -> None:
        super().__init__(message)
        self.members = members or {}


class IndexFileError(TarIndexError):
    """A DALI/NeMo index file that is malformed or does not match its tar (names file and line)."""


class MemberNotFound(KeyError):
    """The manifest names a member that the tar does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def member_name(manifest_name: str) -> str:
    """The tar member a tarred manifest's ``audio_filepath`` stands for: NeMo's ``-sub<k>`` copies of
    a reused audio file (``x-sub2.wav``) are the member ``x.wav``."""
    match = _SUB.match(manifest_name)
    return match.group("stem") + (match.group("ext") or "") if match else manifest_name


@dataclass
class TarIndex:
    tar: str                        # path or URL as given
    size: int                       # bytes of the tar when indexed
    members: dict[str, TarMember]
    origin: str                     # "cache", "index file PATH" or "scan"
    notes: list[str] = field(default_factory=list)  # e.g. a wrong index file that was ignored
    bytes_read: int = 0             # by the scan (0 when the index came from a file or the cache)
    etag: str | None = None         # of the remote tar indexed: reads ask for this version only

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.members or member_name(name) in self.members)

    def lookup(self, name: str) -> TarMember:
        """The member for a manifest's ``audio_filepath`` (exact name first, then NeMo's ``-sub`` rule)."""
        found = self.members.get(name) or self.members.get(member_name(name))
        if found is None:
            raise MemberNotFound(f"{self.tar}: no member {name!r} (the tar holds {len(self.members):,} members); "
                                 "check the line's shard_id and that --tarred-audio lists the shards in "
                                 "the order of the shard ids")
        return found


# ------------------------------------------------------------------------------------- headers


def _text(raw: bytes) -> str:
    """A NUL-terminated header field, decoded as tarfile decodes names."""
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _number(raw: bytes) -> int:
    """A numeric header field: octal text, or GNU's base-256 for large values."""
    if raw[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(raw[1:], "big")
        return value - (1 << (8 * (len(raw) - 1))) if raw[:1] == b"\xff" else value
    text = raw.split(b"\x00", 1)[0].strip()
    return int(text, 8) if text else 0


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored == unsigned:
        return True
    # some old tars summed signed chars
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    return stored == signed


@dataclass
class _Header:
    name: str
    size: int
    kind: bytes
    linkname: str


def _parse_header(block: bytes, where: str) -> _Header:
    try:
        ok = _checksum_ok(block)
        size = _number(block[124:136])
    except ValueError:
        ok, size = False, 0
    if not ok or size < 0:
        raise ValueError(f"{where}: not a tar header (bad checksum); the file is not a tar or is corrupt "
                         "there; re-create or re-copy the shard")
    name = _text(block[0:100])
    kind = block[156:157]
    prefix = _text(block[345:500]) if block[257:265] != _GNU_MAGIC else ""
    if prefix and kind not in (b"L", b"K", b"S"):
        name = f"{prefix}/{name}"
    return _Header(name, size, kind, _text(block[157:257]))


def _pax_records(data: bytes, where: str) -> dict[str, str]:
    """``"%d %s=%s\\n"`` records of a pax header."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] not in (b"\x00", b""):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ValueError(f"{where}: malformed pax header; the tar is corrupt there") from None
        record = data[space + 1:pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise ValueError(f"{where}: malformed pax header; the tar is corrupt there")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


# ------------------------------------------------------------------------------------- scanning


class _Reader:
    """Positioned reads through a window, counting the bytes fetched."""

    def __init__(self, f: BinaryIO, size: int, readahead: int) -> None:
        self.f = f
        self.size = size
        self.readahead = readahead
        self.window = b""
        self.window_start = 0
        self.bytes_read = 0
        self.requests = 0
        self._last = 0  # where the last read ended: the gap to the next one is a member skipped

    def read(self, pos: int, n: int) -> bytes:
        offset = pos - self.window_start
        if 0 <= offset and offset + n <= len(self.window):
            self._last = pos + n
            return self.window[offset:offset + n]
        self.f.seek(pos)
        data = self.f.read(max(n, min(self._ahead(pos), self.size - pos)))
        self.bytes_read += len(data)
        self.requests += 1
        self.window, self.window_start = data, pos
        self._last = pos + n
        return data[:n]

    def _ahead(self, pos: int) -> int:
        if not self.readahead:
            return 0
        gap = pos - self._last
        if 0 <= gap <= STREAM_GAP:
            return max(self.readahead, min(STREAM_WINDOW, (gap + 2 * BLOCK) * STREAM_MEMBERS))
        return self.readahead


def _round_up(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


def scan_tar(f: BinaryIO, size: int, *, shown: str, readahead: int = 0) -> tuple[dict[str, TarMember], int]:
    """(members, bytes read) from the tar's headers, skipping member data by seeking.

    Raises TarIndexError naming the byte where the tar is corrupt or where it ends too early;
    ``.members`` then holds the members indexed before that point.
    """
    reader = _Reader(f, size, readahead)
    members: dict[str, TarMember] = {}
    for member in _walk(reader, size, shown, members):
        members[member.name] = member
    return members, reader.bytes_read


def _walk(reader: _Reader, size: int, shown: str, members: dict[str, TarMember]) -> Iterator[TarMember]:
    pos = 0
    long_name: str | None = None
    long_link: str | None = None
    pax: dict[str, str] = {}
    global_pax: dict[str, str] = {}
    while pos < size:
        block = reader.read(pos, BLOCK)
        where = f"{shown}: byte {pos:,}"
        if len(block) < BLOCK:
            raise TarIndexError(f"{where}: truncated: the file ends inside a tar header; re-copy or "
                                "re-create the shard", members)
        if block == _ZERO_BLOCK:
            return  # end-of-archive marker
        try:
            header = _parse_header(block, where)
        except ValueError as e:
            raise TarIndexError(str(e), members) from None
        data_at = pos + BLOCK
        if data_at + header.size > size:
            raise TarIndexError(f"{where}: truncated: member {header.name!r} needs {header.size:,} bytes but the "
                                f"file ends at byte {size:,}; re-copy or re-create the shard", members)
        if header.kind in (b"L", b"K", b"x", b"g"):
            if header.size > MAX_META_BYTES:
                raise TarIndexError(f"{where}: a {header.size:,}-byte name record; the tar is corrupt there", members)
            meta = reader.read(data_at, header.size)
            if header.kind == b"L":
                long_name = _text(meta)
            elif header.kind == b"K":
                long_link = _text(meta)
            else:
                try:
                    records = _pax_records(meta, where)
                except ValueError as e:
                    raise TarIndexError(str(e), members) from None
                (pax if header.kind == b"x" else global_pax).update(records)
        else:
            attributes = {**global_pax, **pax}
            name = attributes.get("path") or long_name or header.name
            member_size = int(attributes["size"]) if "size" in attributes else header.size
            if header.kind in _REGULAR and not name.endswith("/"):
                if data_at + member_size > size:
                    raise TarIndexError(f"{where}: truncated: member {name!r} needs {member_size:,} bytes but "
                                        f"the file ends at byte {size:,}; re-copy or re-create the shard", members)
                yield TarMember(name, data_at, member_size)
            elif header.kind == b"1":  # a hard link: the same bytes as the member it names
                target = members.get(attributes.get("linkpath") or long_link or header.linkname)
                if target is not None:
                    yield TarMember(name, target.offset, target.size)
            header = _Header(name, member_size, header.kind, header.linkname)
            long_name = long_link = None
            pax = {}
        pos = data_at + _round_up(header.size)


# ------------------------------------------------------------------------------------- index files


def index_file_candidates(tar: str) -> list[str]:
    """Where NeMo and DALI put a tar's index: ``dali_index/<stem>.index`` (NeMo's
    create_dali_tarred_dataset_index.py), ``<stem>.index``, ``<stem>.idx`` (DALI's wds2idx)."""
    folder, _, file_name = tar.rpartition("/")
    stem = file_name[:-4] if file_name.endswith(".tar") else file_name
    prefix = f"{folder}/" if folder else ""
    return [f"{prefix}dali_index/{stem}.index", f"{prefix}{stem}.index", f"{prefix}{stem}.idx"]


def read_index_file(text: str, *, shown: str, tar_size: int) -> tuple[dict[str, TarMember], dict[str, int]]:
    """(members, the line of each member) of a v1.2 DALI index file; IndexFileError naming the
    line for anything malformed or pointing outside the tar."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    fix = "re-create it (NeMo's create_dali_tarred_dataset_index.py, or DALI's wds2idx)"

    def wrong(line: int, reason: str) -> IndexFileError:
        return IndexFileError(f"{shown}:{line}: {reason}; {fix}")

    header = lines[0].split() if lines else []
    if len(header) != 2 or not header[1].isdigit():
        raise wrong(1, f'expected "{INDEX_VERSION} N" (version, number of samples)')
    if header[0] != INDEX_VERSION:
        raise wrong(1, f"index version {header[0]!r}; sde reads {INDEX_VERSION}, whose lines name the members")
    if int(header[1]) != len(lines) - 1:
        raise wrong(1, f"says {header[1]} samples but {len(lines) - 1} lines follow")
    members: dict[str, TarMember] = {}
    where: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        tokens = line.split()
        if not tokens or len(tokens) % 4:
            raise wrong(number, "expected groups of <ext> <offset> <size> <name>")
        for k in range(0, len(tokens), 4):
            ext, offset_text, size_text, name = tokens[k:k + 4]
            if not (offset_text.isdigit() and size_text.isdigit()):
                raise wrong(number, f"offset and size of {name!r} must be whole numbers")
            offset, size = int(offset_text), int(size_text)
            if offset % BLOCK:
                raise wrong(number, f"offset {offset} of {name!r} is not at a {BLOCK}-byte tar block")
            if offset + size > tar_size:
                raise wrong(number, f"{name!r} ({offset}+{size}) lies beyond the end of the tar ({tar_size:,} bytes)")
            base = name.rsplit("/", 1)[-1]
            if base.partition(".")[2] != ext:
                raise wrong(number, f"the name {name!r} does not end in .{ext}")
            members[name] = TarMember(name, offset, size)
            where[name] = number
    return members, where


def _spot_check(reader: _Reader, members: dict[str, TarMember], where: dict[str, int], shown: str,
                tar: str) -> None:
    """Compare a few entries with the tar's own headers: an index of another version of the tar
    would otherwise serve the wrong bytes."""
    entries = list(members.values())
    if not entries:
        return
    picks = {entries[0].name: entries[0], entries[len(entries) // 2].name: entries[len(entries) // 2],
             entries[-1].name: entries[-1]}
    for entry in list(picks.values())[:SPOT_CHECKS]:
        block = reader.read(entry.offset - BLOCK, BLOCK) if entry.offset >= BLOCK else b""
        try:
            header = _parse_header(block, "") if len(block) == BLOCK else None
        except ValueError:
            header = None
        # Names too long or not ASCII are kept in pax / GNU records before the header, which holds a
        # mangled copy: there the size alone is compared.
        plain_name = len(entry.name.encode("utf-8", "surrogateescape")) < 100 and entry.name.isascii()
        matches = header is not None and header.size == entry.size and (header.name == entry.name or not plain_name)
        if not matches:
            raise IndexFileError(f"{shown}:{where[entry.name]}: {entry.name!r} is not at byte {entry.offset:,} of "
                                 f"{tar} (the index was made for another version of the tar); re-create the index")


# ------------------------------------------------------------------------------------- the index


def _default_opener(location: str, known: dict[str, dict[str, Any]] | None = None) -> BinaryIO:
    """``known``: size and ETag of remote files already asked (URL → stamp): opening them then
    costs no HEAD request, and a tar is read at the version its identity names."""
    if remote.is_url(location):
        found = (known or {}).get(location) or {}
        return remote.open_file(location, ranged=True, size=found.get("size"), etag=found.get("etag"))
    return open(location, "rb", buffering=0)  # noqa: SIM115 - the caller closes it; reads are exact


def _identity(location: str) -> dict[str, Any]:
    """What identifies this version of the tar (the cache key)."""
    if remote.is_url(location):
        return {"tar": location, **remote.stamp(remote.info(location))}
    st = os.stat(location)
    return {"tar": os.path.realpath(location), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _remote_index_files(tar: str, known: dict[str, dict[str, Any]]) -> list[str]:
    """The index_file_candidates of a remote tar that exist, found by listing the tar's folder (and
    its dali_index/ folder where there is one) instead of asking for each: a missing file cost a
    HEAD and a listing (s3fs looks for a folder of that name), a stalled store 2 x SDE_REMOTE_TIMEOUT
    per candidate and tar. Listings are shared by the tars of a load (remote.silence_is_final), so a
    folder that does not answer is waited for once, and then no index file is used (the tar is
    scanned). Where listing is not allowed (or over HTTP, where a folder is a web page), each
    candidate is asked for."""
    candidates = index_file_candidates(tar)
    if remote.protocol(tar) in ("http", "https"):
        return candidates
    found: list[str] = []
    try:
        beside = remote.listing(remote.url_folder(tar))
        dali_folder = remote.url_folder(candidates[0])
        entries = {**beside, **(remote.listing(dali_folder) if (beside.get(dali_folder) or {}).get("type") ==
                                "directory" else {})}
    except remote.RemoteError as e:
        return [] if e.reason == "timeout" else candidates
    for candidate in candidates:
        entry = entries.get(candidate)
        if entry is not None and entry.get("type") != "directory":
            known[candidate] = remote.stamp(entry)
            found.append(candidate)
    return found


def _is_url(location: str) -> bool:
    return remote.is_url(location)


def _exists(location: str, known: dict[str, dict[str, Any]]) -> bool:
    if remote.is_url(location):
        try:
            known[location] = remote.stamp(remote.info(location))
        except remote.RemoteError:
            return False
        return True
    return os.path.isfile(location)


def load_tar_index(tar: str | os.PathLike, *, index_file: str | None = None, cache_dir: str | Path | None = None,
                   opener: Callable[[str], BinaryIO] | None = None) -> TarIndex:
    """The member index of one tar (path or URL): cached, else from its index file, else scanned.

    ``index_file``: the index to use (default: the first of :func:`index_file_candidates` that
    exists). ``cache_dir``: where built indexes are kept (None: not kept). ``opener``: opens a
    location as a seekable binary file (default: local files, URLs through fsspec with byte ranges).
    Raises TarIndexError when the tar cannot be read or is corrupt (``.members``: what was indexed
    before the damage); a wrong index file is only a note (``TarIndex.notes``) and the tar is scanned.
    """
    location = os.fspath(tar)
    known: dict[str, dict[str, Any]] = {}  # remote files' stamps, for the default opener
    open_location = opener or (lambda where: _default_opener(where, known))
    try:
        identity = _identity(location)
    except FileNotFoundError:
        raise TarIndexError(f"{location}: file not found; check --tarred-audio") from None
    except OSError as e:
        raise TarIndexError(f"{location}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - a remote failure: RemoteError's message says what and how to fix
        raise TarIndexError(str(e)) from None
    size = int(identity.get("size") or 0)
    if _is_url(location):
        known[location] = identity
    cached = _read_cache(cache_dir, identity, location, size)
    if cached is not None:
        cached.etag = identity.get("etag")
        return cached
    notes: list[str] = []
    try:
        index = _build(location, size, index_file, open_location, notes, known)
    except TarIndexError:
        raise
    except Exception as e:
        # a read that failed (a connection reset, a store that stopped answering) is the tar's one
        # note, not a crash; no index is kept (the tar is not damaged): the next load reads it again
        if _is_url(location):
            raise TarIndexError(str(remote.explain(location, e))) from None
        if isinstance(e, OSError):
            raise TarIndexError(f"{location}: cannot read: {e.strerror or e}; check the disk, or re-copy the "
                                "shard") from None
        raise
    index.notes = notes
    index.etag = identity.get("etag")
    _write_cache(cache_dir, identity, index)
    return index


def _build(location: str, size: int, index_file: str | None, open_location: Callable[[str], BinaryIO],
           notes: list[str], known: dict[str, dict[str, Any]]) -> TarIndex:
    """The index from the tar's index file, else from a scan of its headers (notes: why not the file)."""
    with open_location(location) as f:
        readahead = REMOTE_READAHEAD if _is_url(location) else 0
        reader = _Reader(f, size, readahead)
        if index_file:
            candidates = [index_file]
        elif _is_url(location):
            candidates = _remote_index_files(location, known)
        else:
            candidates = index_file_candidates(location)
        for candidate in candidates:
            if candidate not in known and not _exists(candidate, known):
                if index_file:
                    notes.append(f"{candidate}: index file not found; scanning the tar instead")
                continue
            try:
                return _from_index_file(candidate, open_location, reader, size, location)
            except IndexFileError as e:
                notes.append(f"{e}; scanning the tar instead")
            break
        members, bytes_read = scan_tar(f, size, shown=location, readahead=readahead)
        return TarIndex(location, size, members, "scan", bytes_read=bytes_read)


def _from_index_file(candidate: str, open_location: Callable[[str], BinaryIO], reader: _Reader, size: int,
                     location: str) -> TarIndex:
    try:
        with remote.reading(candidate) if _is_url(candidate) else nullcontext():
            with open_location(candidate) as g:
                raw = g.read()
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IndexFileError(f"{candidate}:1: not a text file; re-create the index") from None
    except OSError as e:
        raise IndexFileError(f"{candidate}:1: cannot read ({e.strerror or e})") from None
    except remote.RemoteError as e:  # the tar itself may still be read: scanned instead
        why = str(e)[len(candidate) + 2:] if str(e).startswith(f"{candidate}: ") else str(e)
        raise IndexFileError(f"{candidate}:1: cannot read ({why})") from None
    members, where = read_index_file(text, shown=candidate, tar_size=size)
    _spot_check(reader, members, where, candidate, location)
    return TarIndex(location, size, members, f"index file {candidate}")


def read_member(f: BinaryIO, member: TarMember, *, shown: str = "tar") -> bytes:
    """The member's bytes, read by seeking (one byte range on a remote file)."""
    f.seek(member.offset)
    data = f.read(member.size)
    if len(data) != member.size:
        raise TarIndexError(f"{shown}: truncated: member {member.name!r} needs {member.size:,} bytes at byte "
                            f"{member.offset:,} but only {len(data):,} could be read; re-copy the shard")
    return data


# ------------------------------------------------------------------------------------- cache


def _cache_path(cache_dir: str | Path, identity: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **identity}, sort_keys=True).encode()).hexdigest()
    return Path(cache_dir) / f"{key[:40]}.json"


def _read_cache(cache_dir: str | Path | None, identity: dict[str, Any], location: str, size: int) -> TarIndex | None:
    if cache_dir is None:
        return None
    try:
        record = json.loads(_cache_path(cache_dir, identity).read_bytes())
        names, offsets, sizes = record["names"], record["offsets"], record["sizes"]
        if record.get("format") != CACHE_FORMAT or not (len(names) == len(offsets) == len(sizes)):
            return None
        members = {n: TarMember(n, int(o), int(s)) for n, o, s in zip(names, offsets, sizes)}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: build again
    if any(m.offset + m.size > size for m in members.values()):
        return None
    return TarIndex(location, size, members, "cache")


def _write_cache(cache_dir: str | Path | None, identity: dict[str, Any], index: TarIndex) -> None:
    """Written whole to a temporary file and renamed: a reader never sees half an index. A cache that
    cannot be written only costs a rebuild next time."""
    if cache_dir is None:
        return
    entries = list(index.members.values())
    record = {"format": CACHE_FORMAT, "tar": index.tar, "names": [m.name for m in entries],
              "offsets": [m.offset for m in entries], "sizes": [m.size for m in entries]}
    target = _cache_path(cache_dir, identity)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-tar-index-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(record, out)  # ASCII escapes keep undecodable names (surrogates) intact
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    except OSError:
        pass
