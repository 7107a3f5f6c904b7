"""Files that are not NeMo manifests (Lhotse, Kaldi, CSV/TSV, a JSON array, gzip, UTF-16, binary):
one ManifestError saying what the file looks like and how to convert it, judged on its first lines.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from typing import BinaryIO

import orjson

from sde.manifest.careful import load_line
from sde.manifest.model import ManifestError
from sde.sources.lhotse_source import lone_manifest_hint


GZIP_MAGIC = b"\x1f\x8b"


def _binary(head: bytes) -> bool:
    """Whether a head holding a NUL is another kind of file: a stray NUL or two in a later line of a
    manifest whose first line is a JSON object are that line's problem (skipped and named), not the
    file's; binary data after a JSON line is binary still."""
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n").split(b"\n", 1)[0]
    return not first.startswith(b"{") or b"\x00" in first or head[:1024].count(b"\x00") > _STRAY_NULS


_STRAY_NULS = 8  # NUL bytes in the first KB that a damaged text line may hold; more: binary data


def head_checks(path: str, head: bytes) -> None:
    """Whole-file problems visible in the first bytes."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ManifestError(f"{path}: the file is UTF-16 encoded; sde expects UTF-8 JSON Lines. "
                            f"Convert it with: iconv -f UTF-16 -t UTF-8 {path} > manifest.json")
    if head.startswith(GZIP_MAGIC):
        gzip_checks(path, head)
        raise ManifestError(f"{path}: the file is gzip-compressed; decompress it first: gunzip -k {path}")
    for magic, kind, command in _COMPRESSED:
        if head.startswith(magic):
            raise ManifestError(f"{path}: the file is {kind}-compressed; decompress it first: {command} {path}")
    if head.startswith((b"{\x00", b"\x00{")):  # JSON in UTF-16 without the byte-order mark
        endian = "LE" if head[0:1] == b"{" else "BE"
        raise ManifestError(f"{path}: the file is UTF-16 ({endian}) encoded; sde expects UTF-8 JSON Lines. "
                            f"Convert it with: iconv -f UTF-16{endian} -t UTF-8 {path} > manifest.json")
    if b"\r" in head and b"\n" not in head:
        raise ManifestError(f"{path}: its lines end with a carriage return alone (classic Mac line endings), "
                            f"so sde sees one line; convert them with: tr '\\r' '\\n' < {path} > manifest.json")
    if b"\x00" in head[:1024] and _binary(head):
        raise ManifestError(f"{path}: not a text manifest (binary data in the first KB); sde expects "
                            "a NeMo manifest: JSON Lines, one object per line with audio_filepath, "
                            "duration and text")


# Compressed files other than gzip (which may hold a Lhotse manifest): (magic bytes, name, command).
_COMPRESSED = ((b"BZh", "bzip2", "bunzip2 -k"), (b"\xfd7zXZ\x00", "xz", "unxz -k"),
               (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"))


# Files that are not NeMo manifests at all get one message saying what they look like, instead of
# one "invalid JSON" per line. Judged on the first SNIFF_LINES non-blank lines (within SNIFF_BYTES).
SNIFF_LINES = 20
SNIFF_BYTES = 64 << 10
NEMO_HINT = "sde reads NeMo manifests: JSON Lines, one object per line with audio_filepath, duration and text"
_LHOTSE_KEYS = {"recording_id": "supervisions", "supervisions": "cuts", "recording": "cuts", "sources": "recordings"}
_AUDIO_COLUMN_WORDS = ("audio", "path", "file", "wav", "flac", "mp3")
_TEXT_COLUMN_WORDS = ("text", "transcript", "sentence", "transcription", "utterance", "label")
_TABLE_COLUMN_WORDS = _AUDIO_COLUMN_WORDS + _TEXT_COLUMN_WORDS + ("duration", "speaker", "id", "client")
_KALDI_ID = re.compile(r"[\w.\-:/]+")


def gzip_checks(path: str, head: bytes) -> None:
    """A gzip-compressed file that holds a Lhotse manifest gets the Lhotse message (a NeMo one is
    read decompressed: sde.manifest.files)."""
    lhotse = _lhotse_kind(_json_objects(_text_lines(_gunzip_head(head))))
    if lhotse:
        raise ManifestError(_lhotse_message(path, lhotse, compressed=True))


def _gunzip_head(head: bytes) -> bytes:
    """The first SNIFF_BYTES of a gzip stream's content (from its first compressed bytes only)."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, SNIFF_BYTES)
    except zlib.error:
        return b""


def _text_lines(sample: bytes) -> list[str]:
    """The sample's first non-blank lines, stripped; a last line cut by the sample's end is dropped."""
    lines = sample.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace").splitlines()
    if len(sample) >= SNIFF_BYTES and len(lines) > 1:
        lines.pop()
    return [line.strip() for line in lines if line.strip()][:SNIFF_LINES]


def _json_objects(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _lhotse_kind(objects: list[dict]) -> str | None:
    """"cuts", "recordings" or "supervisions" when the objects are Lhotse manifest entries."""
    if not objects or any("audio_filepath" in o or "audio_filename" in o for o in objects):
        return None
    first = objects[0]
    if "id" not in first:
        return None
    return next((kind for key, kind in _LHOTSE_KEYS.items() if key in first), None)


def _lhotse_message(path: str, kind: str, compressed: bool = False) -> str:
    """A Lhotse file reaches the NeMo reader only when it is not a source sde reads as such
    (sde.sources.lhotse_source): a CutSet among other manifests, or half a recordings + supervisions pair."""
    if kind == "cuts":
        return (f"{path}: this is a {'gzip-compressed ' if compressed else ''}Lhotse CutSet, not a NeMo manifest; "
                f"sde reads a CutSet on its own (not with other manifests): sde {path}")
    return lone_manifest_hint(path, kind)


def _table_message(path: str, lines: list[str]) -> str | None:
    """A CSV or TSV file with a header row of column names."""
    delimiter = "\t" if "\t" in lines[0] else "," if "," in lines[0] else None
    if delimiter is None:
        return None
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [name.strip() for name in rows[0]]
    if len(header) < 2 or any(not name or len(name) > 64 for name in header):
        return None
    if any(len(row) != len(header) for row in rows[1:]):
        return None
    lowered = [name.lower() for name in header]
    if not any(word in name for name in lowered for word in _TABLE_COLUMN_WORDS):
        return None
    kind = "TSV" if delimiter == "\t" else "CSV"

    def column(words: tuple[str, ...], target: str) -> str | None:
        found = next((h for h, low in zip(header, lowered) if any(w in low for w in words)), None)
        return found if found and found != target else None

    renames = {name: target for name, target in ((column(_AUDIO_COLUMN_WORDS, "audio_filepath"), "audio_filepath"),
                                                  (column(_TEXT_COLUMN_WORDS, "text"), "text")) if name}
    sep = ", sep='\\t'" if delimiter == "\t" else ""
    rename = f".rename(columns={renames!r})" if renames else ""
    return (f"{path}: this is a {kind} table (columns: {', '.join(header[:8])}"
            f"{', ...' if len(header) > 8 else ''}), not a NeMo manifest; {NEMO_HINT} "
            f"(a missing duration is read from the audio files). Convert it, e.g.: python -c \"import pandas "
            f"as pd; pd.read_csv('{path}'{sep}){rename}.to_json('manifest.json', orient='records', "
            "lines=True, force_ascii=False)\"")


def _kaldi_message(path: str, lines: list[str]) -> str | None:
    """A Kaldi data-directory file: wav.scp (id + audio path or pipe) or text (id + words)."""
    tokens = [line.split() for line in lines]
    ids = [t[0] for t in tokens]
    if not all(_KALDI_ID.fullmatch(i) for i in ids) or len(set(ids)) != len(ids):
        return None
    build = ("Build one from the Kaldi data directory: join wav.scp and text (and segments, as offset and "
             "duration) by utterance id, one JSON line per utterance with audio_filepath and text; a missing "
             "duration is read from the audio files")
    audio_ext = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".sph", ".m4a")
    if all(len(t) >= 2 and (line.endswith("|") or (len(t) == 2 and ("/" in t[1] or t[1].lower().endswith(audio_ext))))
           for t, line in zip(tokens, lines)):
        return (f"{path}: this is a Kaldi wav.scp (utterance id, then an audio path or a command ending in |), "
                f"not a NeMo manifest; {NEMO_HINT}. {build} (piped entries must be written to audio files first).")
    if all(len(t) == 4 and _is_number(t[2]) and _is_number(t[3]) for t in tokens):
        return (f"{path}: this is a Kaldi segments file (utterance id, recording id, start, end), not a NeMo "
                f"manifest; {NEMO_HINT}. {build}.")
    if sum(any(c.isdigit() or c in "-_" for c in i) for i in ids) * 2 >= len(ids):
        return (f"{path}: this is a Kaldi text file (utterance id, then the words), not a NeMo manifest; "
                f"{NEMO_HINT}. {build}.")
    return None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def check_other_formats(path: str, f: BinaryIO) -> None:
    """One clear error for a file that is some other speech-data format, not a NeMo manifest."""
    f.seek(0)
    sample = f.read(SNIFF_BYTES)
    lines = _text_lines(sample)
    f.seek(0)
    if not lines:
        return
    lhotse = _lhotse_kind(_json_objects(lines))
    if lhotse:
        raise ManifestError(_lhotse_message(path, lhotse))
    pretty = _pretty_json_message(path, sample, lines)
    if pretty:
        raise ManifestError(pretty)
    if any(line.startswith(("{", "[")) for line in lines):
        return  # JSON Lines, maybe with bad lines: those are reported one by one
    message = _table_message(path, lines) or _kaldi_message(path, lines)
    if message:
        raise ManifestError(message)


def _pretty_json_message(path: str, sample: bytes, lines: list[str]) -> str | None:
    """Objects written with an indent (json.dump(obj, f, indent=2)): the first line is no JSON
    line, but the file starts with a whole object spread over several lines. Each of its lines
    was "invalid JSON" (every line bad), which named no fix."""
    if not lines[0].startswith("{") or load_line(lines[0].encode())[1] is None:
        return None
    text = sample.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace").lstrip()
    try:
        value, end = json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):  # cut by the sample's end, not JSON at all, or nested past
        return None                       # Python's stack: the lines are judged one by one
    if not isinstance(value, dict) or "\n" not in text[:end]:
        return None
    convert = f"gunzip -c {path} | jq -c ." if path.endswith(".gz") else f"jq -c . {path}"
    return (f"{path}: this is pretty-printed JSON (each object spread over several lines); sde expects "
            f"JSON Lines, one object per line; convert with: {convert} > manifest.json")


def check_json_array(path: str, f: BinaryIO, head: bytes) -> None:
    """A file starting with "[" is a JSON array unless its first line is a (bad) line of JSONL."""
    if not head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"["):
        return
    f.seek(0)
    first = b""
    while not first.strip():
        first = f.readline(1 << 20)  # bounded: a one-line 500 MB array is not read whole
        if not first:
            break
    more = len(first) < (1 << 20) and any(raw.strip() for raw in f)
    f.seek(0)
    reason = "too long" if len(first) >= (1 << 20) else load_line(first.strip().removeprefix(b"\xef\xbb\xbf"))[1]
    if reason is not None or not more:
        raise ManifestError(f"{path}: this is a JSON array; sde expects JSON Lines (one object per "
                            f"line); convert with: jq -c '.[]' in.json > out.json")


def first_line_is_nemo(head: bytes) -> bool:
    """Whether the first line is a JSON object with an audio path: then check_other_formats has
    nothing to say (a NeMo line rules out Lhotse, and JSON rules out CSV and Kaldi), and 512 shards
    need not each be sniffed."""
    first = head.removeprefix(b"\xef\xbb\xbf").lstrip().split(b"\n", 1)
    if len(first) < 2 or not first[0].startswith(b"{"):
        return False
    try:
        value = orjson.loads(first[0])
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and ("audio_filepath" in value or "audio_filename" in value)
