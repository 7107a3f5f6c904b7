"""Export: the user's own manifest lines, byte for byte, for any selection of utterances.

A dataset row knows its source file and its 1-based physical line (`line`); this module reads those
lines back from the file exactly as they are (odd whitespace, escapes, Unicode, CRLF ends), so an
export is the user's data, not sde's re-serialisation of it. Decisions (tests pin each):

* Lines sde skipped (bad JSON, missing fields) are not rows, so they are never exported as kept;
  blank lines neither. `--rejected` gets the valid rows that were not kept; skipped lines are only
  counted in the changelog.
* Each line keeps its own line end (LF or CRLF). A last line without one gets the file's line end
  (that of the line before it), so the output stays one object per line when files are joined.
* A byte-order mark belongs to the file, not to its first line: it is not copied.
* Order: manifest order, unless a sort is given. In manifest order each source is read once,
  sequentially, and the read stops after the last wanted line. Sorted: one sequential pass records
  the byte offsets of the wanted lines, then each line is read at its offset (compressed or remote
  sources are spooled to a temporary file first) - memory is a few integers per selected line.
* `apply_reviews`: "drop" reviews are removed, a "fix" writes its text into `text` keeping the old
  one in `text_original` (an existing `text_original` is kept: it is the oldest), notes and tags go
  to `review_note` / `review_tags`. In those lines only these members are written (set_members);
  the rest of the line is kept as written (numbers such as 1.50 or 1e400, escapes, spacing), and
  every other line is copied byte for byte.
* Outputs are written atomically (a temporary file in the output's folder, renamed when complete);
  the input is never opened for writing, and an output that is one of the sources is refused.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import os
import stat
import re
import secrets
import signal
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Collection, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from sde import __version__
from sde.compressed_columns import string_chunks
from sde.manifest.paths import relative_rows

# The line reader moved to sde.lines (reviews use it too); its names stay importable from here.
from sde.lines import BOM as BOM
from sde.lines import MAX_LINE_BYTES as MAX_LINE_BYTES
from sde.lines import READ_CHUNK_BYTES as READ_CHUNK_BYTES
from sde.lines import STREAM_CHUNK_BYTES as STREAM_CHUNK_BYTES
from sde.lines import ExportError as ExportError
from sde.lines import ManifestLines as ManifestLines
from sde.lines import SourceFile as SourceFile
from sde.lines import source_files as source_files
from sde.lines import in_chunks
from sde.cut_lines import has_shared_lines, selected_cut_lines
from sde.sources.lhotse_source import sniff_kind
from sde.sources.patterns import PatternError, brace_expand, has_braces, normalise_tags
from sde.filters import column_refs, parse
from sde.query import QueryError
from sde.reviews import (
    REVIEW_COLUMNS,
    ReviewStore,
    aligned_reviews,
    default_reviews_path,
    never_written,
    open_reviews,
    query_for,
    renamed_reviews,
    utterance_keys,
    write_review,
)
from sde.quality.apply import TooLarge, ensure_named_quality_columns
from sde.durations import duration_text
from sde.rules import Rule, RulesReport, evaluate_rules, load_rules, manifest_field_hint, unmeasured_columns

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from sde.dataset import Dataset

# Changelog entries listing individual review changes (drops, fixes); beyond this only counts.
MAX_CHANGELOG_CHANGES = 100_000
_MEASURE_REMEDY = ("as the server was started with, when the command came from one: it then reads the server's "
                   "cached build; otherwise every utterance's audio is measured once and cached")
CHANGELOG_SUFFIX = ".changelog.json"
_HOST = "".join(ch for ch in socket.gethostname() if ch.isalnum())[:32]


# ---------------------------------------------------------------------------- atomic outputs


class AtomicOutput:
    """A file written under a temporary name in its own folder, finished on disk (`finish`) and
    renamed into place (`replace`): see commit_together.

    Killed at any moment (even with SIGKILL), the target is either its old self or complete; the
    temporary file is named after this host and process, so the next export to the same target
    removes the leftovers of writers that are gone.
    """

    def __init__(self, target: str | Path, buffer: int = 1 << 20) -> None:
        self.target = Path(target)
        folder = self.target.parent
        if not folder.is_dir():
            raise ExportError(f"{self.target}: the folder {folder} does not exist; create it first")
        _remove_dead_writers_temp_files(self.target)
        prefix = f".{self.target.name}.tmp-{_HOST}-{os.getpid()}-"
        for _ in range(100):
            self.temp = folder / f"{prefix}{secrets.token_hex(4)}"
            try:
                # O_EXCL: never follow or reuse someone else's file; 0o666 & umask like any new file
                fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise ExportError(f"{self.target}: cannot write in {folder} ({e.strerror}); choose another "
                                  "output folder") from None
        raw = os.fdopen(fd, "wb", buffering=buffer)
        gz = self.target.suffix.lower() == ".gz"
        # level 6, gzip's own default: 9 took 3x the time (35 s vs 12 s for 374 MB) for 1.7% less
        self.file: BinaryIO = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) if gz else raw
        self._raw = raw
        self.done = False

    def finish(self) -> None:
        """Its bytes on disk under the temporary name (the slow part of a commit)."""
        try:
            if self.file is not self._raw:
                self.file.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
        except OSError as e:
            self.discard()
            raise ExportError(f"{self.target}: cannot finish writing ({e.strerror}); free disk space or "
                              "choose another output folder") from None

    def replace(self) -> None:
        """The finished file renamed into place."""
        try:
            os.replace(self.temp, self.target)
        except OSError as e:
            self.discard()
            raise ExportError(f"{self.target}: cannot finish writing ({e.strerror}); free disk space or "
                              "choose another output folder") from None
        self.done = True
        _fsync_folder(self.target.parent)

    def discard(self) -> None:
        if self.done:
            return
        try:
            self.file.close()
            self._raw.close()
        except OSError:
            pass
        self.temp.unlink(missing_ok=True)
        self.done = True


def commit_together(outputs: Sequence[AtomicOutput]) -> None:
    """Every output finished on disk first, then all renamed into place (the last one last: the
    changelog) with Ctrl-C and SIGTERM held back for those few microseconds: an export interrupted
    leaves the old set of files or the new one, never new outputs beside an old changelog."""
    for out in outputs:
        out.finish()
    with _signals_deferred((signal.SIGINT, signal.SIGTERM)):
        for out in outputs:
            out.replace()


@contextmanager
def _signals_deferred(signals: Sequence[int]) -> Iterator[None]:
    """Within, the ``signals`` (in the main thread, where Python runs its handlers) are noted, not
    acted on; after, the first one noted is raised again for the handler it would have met."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.getsignal(s) for s in signals}
    deferred = {s: h for s, h in previous.items() if h is not None}  # None: set outside Python, left alone
    for s in deferred:
        signal.signal(s, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in deferred.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_dead_writers_temp_files(target: Path) -> None:
    prefix = f".{target.name}.tmp-{_HOST}-"
    try:
        leftovers = [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for p in leftovers:
        pid_text = p.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            p.unlink(missing_ok=True)
        except (PermissionError, OSError):
            pass


def refuse_overwriting_sources(outputs: Mapping[str, str | Path | None], sources: Sequence[SourceFile],
                               inputs: Sequence[tuple[str, str | Path]] = (), *,
                               error: type[Exception] = ExportError, instead: str = "kept.json") -> None:
    """An output that is a source, another file the export reads (``inputs``: (its option, its
    path), e.g. the reviews, the rules, the predictions) or another output would destroy data:
    refuse it by name. ``error`` and ``instead`` (the file name the message suggests) let other
    writers (``sde transcribe``) share the rule."""
    seen: dict[str, str] = {}
    read = [("the manifest itself", src.path) for src in sources if src.local]
    read += [(f"the {option} file sde reads", path) for option, path in inputs]
    for option, out in outputs.items():
        if out is None:
            continue
        resolved = os.path.realpath(out)
        for what, path in read:
            if resolved == os.path.realpath(path) or _same_file(out, path):
                raise error(f"{option} {out} is {what}: sde never modifies its input; "
                            f"write to another file (e.g. {instead})")
        if resolved in seen:
            raise error(f"{option} {out} is also {seen[resolved]}: give each output its own file")
        seen[resolved] = f"{option} {out}"
        try:
            mode = os.stat(out).st_mode
        except OSError:  # not there yet (or unreadable: the write says why)
            continue
        if stat.S_ISREG(mode) and not mode & 0o222:  # as rm and cp do: replaced atomically, it went unnoticed
            raise error(f"{option} {out} is write-protected (mode {stat.S_IMODE(mode):o}): sde does not replace "
                        "it; remove it or make it writable first (chmod u+w), or write to another file")


# Suffixes a reader takes for a compression sde does not write: a file so named holding plain
# lines fails in the training job that opens it, far from the export that named it.
OTHER_COMPRESSIONS = {".bz2": "bzip2", ".xz": "xz", ".lzma": "lzma", ".zst": "zstd", ".zstd": "zstd",
                      ".lz4": "lz4", ".zip": "zip", ".7z": "7-Zip", ".tgz": "gzipped tar", ".tar": "tar",
                      ".br": "brotli", ".z": "compress"}


def refuse_unwritten_compression(outputs: Mapping[str, str | Path | None]) -> None:
    """An output named for a compression sde does not write (`-o kept.json.bz2`) is refused by
    name, rather than written as plain text under a name that promises otherwise."""
    for option, out in outputs.items():
        if out is None:
            continue
        path = Path(out)
        kind = OTHER_COMPRESSIONS.get(path.suffix.lower())
        if kind is not None:
            plain = path.with_suffix("")
            raise ExportError(f"{option} {out}: sde writes manifests as plain text or gzip (.gz), not {kind}; "
                              f"name it {plain} or {plain}.gz (and compress it afterwards if you need "
                              f"{path.suffix})")


def lhotse_name(out: str | Path) -> bool:
    """Whether ``lhotse.load_manifest`` (and ``CutSet.from_file``) reads ``out`` as JSON Lines: it
    goes by a ``.jsonl`` among the name's suffixes (as written: ``.JSONL`` is not one), and reads
    ``.json`` as one JSON document."""
    return ".jsonl" in Path(out).suffixes


def refuse_names_lhotse_cannot_read(outputs: Mapping[str, str | Path | None], kind: str | None) -> None:
    """Lines of a Lhotse source (``kind``: "cuts", "pair", "shar", or a file's "cuts",
    "supervisions", "recordings") are JSON Lines, and Lhotse reads them only under a ``.jsonl`` name:
    `-o kept.json` failed in ``load_manifest`` with "Extra data", far from the export. Refused by
    name, before anything is written."""
    if kind is None:
        return
    for option, out in outputs.items():
        if out is None or lhotse_name(out):
            continue
        path = Path(out)
        gz = path.suffix.lower() == ".gz"
        base = path.with_suffix("") if gz else path
        base = base.with_suffix("") if base.suffix.lower() in (".json", ".jsonl") else base
        raise ExportError(f"{option} {out}: the lines of a Lhotse manifest are JSON Lines, and Lhotse "
                          f"(load_manifest, CutSet.from_file) reads them only from a .jsonl or .jsonl.gz file "
                          f"(a .json file it reads as one JSON document); name it {base}.jsonl or {base}.jsonl.gz")


def gzip_nemo_note(outputs: Sequence[str | Path | None]) -> str | None:
    """The note for NeMo manifests written gzipped: NeMo's AudioTo*Dataset (read_manifest, tarred
    ones too) open a manifest as text and fail on gzip; only its Lhotse dataloading reads them."""
    gz = [str(o) for o in outputs if o is not None and Path(o).suffix.lower() == ".gz"]
    if not gz:
        return None
    return (f"{' and '.join(gz)} {'is' if len(gz) == 1 else 'are'} gzip-compressed: NeMo's AudioTo*Dataset reads "
            "plain .json; its Lhotse dataloading (use_lhotse) reads .gz")


def dataset_inputs(dataset: "Dataset") -> list[tuple[str, str]]:
    """The local files besides the manifest that a dataset was built from: (option, path)."""
    options = dataset.options
    named = [("--predictions", path) for path in options.predictions] + [("--vocab", options.vocab)]
    named += [("--tarred-audio", shard) for shard in dataset.tar_shards]
    return [(option, path) for option, path in named if path and "://" not in str(path)]


def refuse_overwriting_audio(outputs: Mapping[str, str | Path | None], dataset: "Dataset") -> None:
    """An output that is one of the audio files the manifest's lines name (``-o a0.wav`` for
    ``-o a0.json``) would replace the user's audio with manifest lines: refuse it by name."""
    table = dataset.utterances
    if "audio_path" in table:
        refuse_overwriting_audio_paths(outputs, table["audio_path"])


def refuse_overwriting_audio_paths(outputs: Mapping[str, str | Path | None], paths: "pd.Series", *,
                                   error: type[Exception] = ExportError, instead: str = "kept.json") -> None:
    """:func:`refuse_overwriting_audio` over a column of audio paths (strings), for any writer
    (``sde transcribe`` passes its lines' resolved paths, ``error`` and the file name to suggest).
    Only the paths ending in the output's own file name are compared (one vectorised pass)."""
    if not len(paths):
        return
    for option, out in outputs.items():
        if out is None:
            continue
        resolved = os.path.realpath(out)
        names = {os.path.basename(os.fspath(out)), os.path.basename(resolved)} - {""}
        same_name = paths[np.logical_or.reduce([paths.str.endswith(n, na=False).to_numpy(dtype=bool)
                                                for n in names])] if names else paths[:0]
        for path in same_name.drop_duplicates().head(1000):
            if "://" in path:
                continue
            if resolved == os.path.realpath(path) or _same_file(out, path):
                raise error(f"{option} {out} is the audio file of an utterance ({path}): sde never "
                            f"modifies its input; write to another file (e.g. {instead})")


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------------------- export planning


@dataclass
class ExportPlan:
    """What an export writes: row positions kept (output order) and rejected (manifest order)."""

    kept: np.ndarray
    rejected: np.ndarray
    selected: int                   # rows the filter selected, before rules and reviews
    filter: str | None = None
    sort: str | None = None
    rules: "RulesReport | None" = None
    rules_file: str | None = None
    # apply-reviews: kept row position → the review whose fix, note or tags rewrite its line
    rewrites: dict[int, Any] = field(default_factory=dict)
    reviews: dict | None = None     # the changelog's "reviews" entry
    notes: list[str] = field(default_factory=list)   # printed after the counts, kept in the changelog


def plan_export(dataset: "Dataset", *, filter: str | None = None, sort: str | None = None,
                rules: "Sequence[Rule] | None" = None, rules_file: str | None = None,
                store: "ReviewStore | None" = None, apply_reviews: bool = False) -> ExportPlan:
    """Select the kept rows: the filter's view, minus every drop rule, minus reviews' drops."""
    texts = [filter, sort] + [r.filter for r in rules or ()]
    try:  # a quality column (dup_text_group, char_rate_z, …) is computed where a text names it
        ensure_named_quality_columns(dataset, texts)
    except TooLarge as e:
        raise ExportError(str(e)) from None
    query = query_for(dataset, store, *texts)
    selected = np.asarray(_select(query, filter or None, sort or None), dtype=np.int64)
    keep = np.zeros(len(dataset.utterances), dtype=bool)
    keep[selected] = True
    report = None
    if rules:
        duration = dataset.utterances["duration"].to_numpy(dtype="float64", na_value=np.nan)
        report = evaluate_rules(rules, query.select, duration, within=keep, source=rules_file,
                                check=query.clauses)
        keep &= ~report.mask
    rewrites: dict[int, Any] = {}
    reviews_info = None
    if apply_reviews:
        if store is None:
            raise ExportError("--apply-reviews needs a reviews file: pass --reviews FILE")
        reviews_info = _apply_reviews(aligned_reviews(dataset, store), keep, rewrites, utterance_keys(dataset).lines,
                                      store.fixes_without_text)
        reviews_info["file"] = str(store.path)
    notes = [_fixes_not_applied_note(reviews_info)] if reviews_info and reviews_info["fixes_not_applied"] else []
    return ExportPlan(kept=selected[keep[selected]], rejected=np.flatnonzero(~keep).astype(np.int64),
                      selected=len(selected), filter=filter or None, sort=sort or None, rules=report,
                      rules_file=rules_file, rewrites=rewrites, reviews=reviews_info, notes=notes)


#: The lines a note names of the fixes not applied (the changelog lists them all, up to
#: MAX_CHANGELOG_CHANGES; the terminal's warnings name each reviews row and its repair).
FIXES_NAMED = 5


def _fixes_not_applied_note(reviews: dict) -> str:
    """What the summary and the changelog's notes say of the kept lines whose "fix" review has no
    corrected transcript: not applied (the line keeps its text, never an empty one), and how to repair."""
    n = reviews["fixes_not_applied"]
    named = [f"{f['source']} line {f['line']}" for f in reviews["fixes_not_applied_lines"][:FIXES_NAMED]]
    more = f" and {n - len(named):,} more" if n > len(named) else ""
    return (f"{n:,} \"fix\" {_plural(n, 'review')} without a corrected transcript (an empty one saved by an older "
            f"sde, or edited by hand) {'was' if n == 1 else 'were'} not applied: {', '.join(named)}{more} "
            f"{'keeps its' if n == 1 else 'keep their'} text; to repair, type the corrected transcript in the "
            "inspector and press Fix, or mark the utterance drop, then export again")


def _select(query: Any, filter: str | None, sort: str | None) -> np.ndarray:
    try:
        query.select(filter)
    except QueryError as e:
        raise ExportError(f"--filter: {e}") from None
    try:
        return query.select(filter, sort)
    except QueryError as e:
        raise ExportError(f"--sort: {e}") from None


def _kept_fixes(dataset: "Dataset", store: Any, kept: np.ndarray) -> int:
    """The kept rows whose review is a fix (aligned to the rows as --apply-reviews aligns them)."""
    aligned = aligned_reviews(dataset, store)
    fixed = [p for p, review in zip(aligned.positions.tolist(), aligned.reviews) if review.status == "fix"]
    return int(np.isin(np.asarray(fixed, dtype=np.int64), kept).sum())


def _apply_reviews(aligned: Any, keep: np.ndarray, rewrites: dict[int, Any], lines: np.ndarray,
                   fixes_without_text: Collection[Any] = ()) -> dict:
    """Take "drop" rows out of `keep`; note the kept rows whose line a fix, note or tags rewrite.
    The changelog names each changed line where it is now (`lines`, the rows' line numbers): a
    review may have been saved on another line of an older version of the manifest (its file
    and audio_filepath are the row's: a review follows only its own utterance).
    ``fixes_without_text``: the keys of "fix" reviews stored without a corrected transcript (the
    store reads them as "keep"): their kept lines are counted and named as fixes not applied."""
    counts = {"drop": 0, "fix": 0, "annotated": 0}
    changes: list[dict] = []
    not_applied: list[dict] = []
    left_out = 0   # reviewed, but the filter or a rule left the line out already
    for position, review in zip(aligned.positions.tolist(), aligned.reviews):
        if review.status is None:
            continue  # unreviewed (undone)
        if not keep[position]:
            left_out += 1
            continue
        if review.key in fixes_without_text:
            not_applied.append({"source": review.key.source, "line": int(lines[position]),
                                "audio_filepath": review.key.audio_filepath})
        if review.status == "drop":
            keep[position] = False
            counts["drop"] += 1
        elif review.status == "fix" or review.note or review.tags:
            rewrites[position] = review
            counts["fix" if review.status == "fix" else "annotated"] += 1
        else:
            continue
        if len(changes) < MAX_CHANGELOG_CHANGES:
            change = {"source": review.key.source, "line": int(lines[position]),
                      "audio_filepath": review.key.audio_filepath, "review": review.status}
            if review.status == "fix":
                change["text"] = review.text
            if review.note:
                change["note"] = review.note
            if review.tags:  # as the line's review_tags
                change["tags"] = list(review.tags)
            changes.append(change)
    total = sum(counts.values())
    return {"dropped": counts["drop"], "fixed": counts["fix"], "annotated": counts["annotated"],
            "left_out": left_out, "stale": aligned.stale, "moved": aligned.moved, "changes": changes,
            "changes_truncated": total > len(changes),
            "fixes_not_applied": len(not_applied), "fixes_not_applied_lines": not_applied[:MAX_CHANGELOG_CHANGES]}


def rewrite_line(line: bytes, review: Any, dataset_text: "str | None | Callable[[], str | None]") -> bytes:
    """The line with a review applied: corrected `text` (old one in `text_original`), note, tags.
    ``dataset_text``: the utterance's text where the line has none (read from `text_filepath`),
    or a function giving it, called only then (a lookup in a compressed column costs ~0.2 ms)."""
    body = line.rstrip(b"\r\n")
    end = line[len(body):] or b"\n"
    try:
        obj = json.loads(body)
    except ValueError as e:  # sde loaded this line, so this is a file edited since then
        raise ExportError(f"{review.key.source}:{review.key.line}: no longer valid JSON ({e}); "
                          "the manifest changed after sde loaded it; load it again") from None
    before = dict(obj)
    if "text" in obj:
        old_text = obj["text"]
    else:
        old_text = dataset_text() if callable(dataset_text) else dataset_text
    write_review(obj, obj, review, old_text)
    changed = {k: v for k, v in obj.items() if k not in before or v is not before[k]}
    text = body.decode("utf-8")
    try:
        return set_members(text, changed).encode("utf-8") + end
    except ValueError:  # not one JSON object after all (json.loads took it): re-serialise it whole
        return json.dumps(obj, ensure_ascii=False).encode("utf-8") + end


_SPACE = re.compile(r"[ \t\n\r]*")
# The object's opening brace, then its first "key": or its closing brace; after a value, the next
# , "key": or the closing brace. One match per member: the scan's time is mostly these matches.
_FIRST = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*(?:"((?:[^"\\]|\\.)*)"[ \t\n\r]*:[ \t\n\r]*|(\}))')
_NEXT = re.compile(r'[ \t\n\r]*(?:,[ \t\n\r]*"((?:[^"\\]|\\.)*)"[ \t\n\r]*:[ \t\n\r]*|(\}))')
_SCAN = json.JSONDecoder().scan_once


class _Member(NamedTuple):
    key: str
    start: int  # of its key's opening quote
    value: int  # where its value starts
    end: int  # just after its value


def _members(text: str) -> tuple[list[_Member], int]:
    """(the top-level members of the JSON object `text`, in order, repeats included; the offset of
    its closing brace). ValueError when `text` is not one JSON object."""
    members: list[_Member] = []
    found = _FIRST.match(text)
    if found is None:
        raise ValueError("not a JSON object")
    while found.group(2) is None:
        key = found.group(1)
        key = json.loads(f'"{key}"') if "\\" in key else key
        try:
            _, end = _SCAN(text, found.end())
        except StopIteration:
            raise ValueError(f"expected a value at {found.end()}") from None
        members.append(_Member(key, found.start(1) - 1, found.end(), end))
        found = _NEXT.match(text, end)
        if found is None:
            raise ValueError(f"expected ',' and a key, or '}}' at {end}")
    close = found.start(2)
    if _SPACE.match(text, close + 1).end() != len(text):
        raise ValueError("text after the object")
    return members, close


def _cuts(members: Sequence[_Member], gone: set[int]) -> list[tuple[int, int, str]]:
    """The spans that remove the members at the positions `gone`, each with the comma that joined
    it to the rest, as (start, end, "") for _splice."""
    if not gone:
        return []
    if len(gone) == len(members):  # the spacing inside the braces stays, as in '{ }'
        return [(members[0].start, members[-1].end, "")]
    spans = []
    kept = min(k for k in range(len(members)) if k not in gone)
    if kept:  # the leading ones go up to the first member kept
        spans.append((members[0].start, members[kept].start, ""))
    # a later one from the end of the value before it: its comma, spacing and itself
    spans += [(members[k - 1].end, members[k].end, "") for k in sorted(gone) if k > kept]
    return spans


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, new) span replaced; the spans do not overlap."""
    for start, end, new in sorted(spans, reverse=True):  # from the back: earlier offsets stay valid
        text = text[:start] + new + text[end:]
    return text


def _has_any(text: str, keys: Collection[str]) -> bool:
    """Whether the JSON object `text` has a member named by one of `keys` (json.loads in C: a
    fraction of the member scan's time). ValueError when `text` is not one JSON object."""
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return any(k in obj for k in keys)


def set_members(text: str, values: Mapping[str, Any], *, single: bool = False) -> str:
    """The JSON object `text` with the top-level members `values` set: a member it has gets its
    value replaced (the last one, which a JSON reader takes, when a key repeats; with `single`
    the earlier ones are removed, so a reader that takes the first one cannot see an old value),
    a new one is added before the closing brace. Every other byte is kept as written, so the rest
    of a corrected line stays the user's: numbers such as 1.50, 1E-5 or 1e400 (that json.dumps
    would write as 1.5, 1e-05 or the invalid Infinity), escapes, spacing, key order. Raises
    ValueError when `text` is not one JSON object."""
    if not _has_any(text, values):  # the common case (a new member), without the slower member scan
        if not values:
            return text
        close = text.rstrip(" \t\n\r").rindex("}")
        at = len(text[:close].rstrip(" \t\n\r"))  # the end of the last value, as the scan finds it
        first = text[at - 1] == "{"  # no member: added at the brace, as the scan adds it
        added = ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
                          for k, v in values.items())
        return text[:close] + added + text[close:] if first else text[:at] + ", " + added + text[at:]
    members, close = _members(text)
    last = {m.key: k for k, m in enumerate(members)}
    spans = [(members[last[k]].value, members[last[k]].end, json.dumps(v, ensure_ascii=False))
             for k, v in values.items() if k in last]
    added = [f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
             for k, v in values.items() if k not in last]
    if added:  # after the last member (before any space in front of the brace)
        at = members[-1].end if members else close
        spans.append((at, at, (", " if members else "") + ", ".join(added)))
    if single:
        spans += _cuts(members, {k for k, m in enumerate(members) if m.key in values and k != last[m.key]})
    return _splice(text, spans)


def remove_members(text: str, keys: Collection[str]) -> str:
    """The JSON object `text` without its top-level members named `keys` (every one, when a key
    repeats), each with the comma that joined it to the rest; every other byte kept as written
    (see set_members). Raises ValueError when `text` is not one JSON object."""
    if not _has_any(text, keys):
        return text
    members, _ = _members(text)
    return _splice(text, _cuts(members, {k for k, m in enumerate(members) if m.key in keys}))


# ------------------------------------------------------------------------------------ writing


def _hours(dataset: "Dataset", positions: np.ndarray) -> float:
    d = dataset.utterances["duration"].to_numpy(dtype="float64", na_value=np.nan)
    return float(np.nansum(d[positions])) / 3600.0


def write_export(dataset: "Dataset", plan: ExportPlan, output: str | Path, *,
                 rejected_output: str | Path | None = None, lines: ManifestLines | None = None,
                 command: Sequence[str] | None = None,
                 progress: Callable[[int], None] | None = None,
                 inputs: Sequence[tuple[str, str | Path]] = (),
                 declared: Sequence[str] | None = None) -> dict:
    """Write kept (and rejected) lines and the changelog beside `output`, atomically; return the
    changelog. ``inputs``: the other files the export read (refused as outputs), besides the
    dataset's own (its predictions, vocabulary and tar shards). ``declared``: every manifest file
    the sources named, in order (a sharded output gets a shard for each, one without valid lines
    included)."""
    lines = lines or ManifestLines(dataset)
    changelog_path = Path(f"{output}{CHANGELOG_SUFFIX}")
    shard_of, shards = shard_of_sources(lines, declared)
    kept_names = shard_outputs("-o", output, lines, dataset, shards)
    rejected_names = shard_outputs("--rejected", rejected_output, lines, dataset, shards) \
        if rejected_output is not None else []
    outputs_named: dict[str, str | Path | None] = {"changelog": changelog_path}
    for option, names in (("-o", kept_names), ("--rejected", rejected_names)):
        outputs_named.update({option if len(names) == 1 else f"{option} (shard {i})": n for i, n in enumerate(names)})
    refuse_unwritten_compression(outputs_named)
    refuse_names_lhotse_cannot_read({o: n for o, n in outputs_named.items() if o != "changelog"},
                                    sniff_kind(lines.sources[0].path) if lines.sources else None)
    refuse_overwriting_sources(outputs_named, lines.sources, [*inputs, *dataset_inputs(dataset)])
    refuse_overwriting_audio(outputs_named, dataset)
    plan.notes.extend(relative_audio_notes(dataset, lines, [("kept", "-o", kept_names, plan.kept),
                                                            ("rejected", "--rejected", rejected_names, plan.rejected)],
                                           shard_of))
    texts = dataset.utterances["text"]
    outputs: list[AtomicOutput] = []
    try:
        # a buffer per open output: 1 MiB for one file, 64 KiB each for a sharded one (1,024
        # shards kept and rejected would otherwise hold 2 GiB of buffers)
        buffer = 1 << 20 if len(kept_names) + len(rejected_names) <= 2 else 1 << 16
        kept_outs = [AtomicOutput(name, buffer) for name in kept_names]
        outputs += kept_outs
        rejected_outs = [AtomicOutput(name, buffer) for name in rejected_names]
        outputs += rejected_outs
        kept_out = kept_outs[0]
        rejected_out = rejected_outs[0] if rejected_outs else None

        def kept_line(position: int, line: bytes) -> bytes:
            review = plan.rewrites.get(position)
            if review is not None:
                return rewrite_line(line, review, lambda: _text(texts, position))
            return line

        if has_shared_lines(dataset, lines):  # Lhotse cuts: a line per cut, a row per supervision
            _write_cut_lines(dataset, lines, plan, kept_out.file, rejected_out.file if rejected_out else None)
        else:
            row_shards = shard_of[lines.codes] if len(kept_outs) > 1 or len(rejected_outs) > 1 else lines.codes
            _write_lines(lines, plan, _Sink([o.file for o in kept_outs], row_shards),
                         _Sink([o.file for o in rejected_outs], row_shards) if rejected_outs else None,
                         kept_line, progress)
        lines.check_unchanged()  # a file edited during the export: the lines may be a mix
        changelog = _changelog(dataset, plan, lines, output, rejected_output, command)
        if len(kept_names) > 1 or len(rejected_names) > 1:
            changelog["outputs"]["shards"] = {"kept": [str(n) for n in kept_names],
                                              "rejected": [str(n) for n in rejected_names] or None}
        log_out = AtomicOutput(changelog_path)
        outputs.append(log_out)
        log_out.file.write(json.dumps(changelog, ensure_ascii=False, indent=2).encode("utf-8") + b"\n")
        # the changelog last: a complete changelog means the outputs it describes are complete
        commit_together(outputs)
        return changelog
    except OSError as e:  # writing (reading the sources raises ExportError): a full disk, a quota
        raise ExportError(f"{e.filename or output}: cannot finish writing ({e.strerror or e}); free disk space or "
                          "choose another output folder (files already there were left as they were)") from None
    finally:
        for out in outputs:
            out.discard()


def relative_audio_notes(dataset: "Dataset", lines: ManifestLines,
                         written: Sequence[tuple[str, str, Sequence[Path], np.ndarray]],
                         shard_of: np.ndarray) -> list[str]:
    """Notes for lines written into another folder than their manifest's while they name their
    audio by a relative path: NeMo (and sde) read such a path from the manifest's folder, so read
    from the output's folder it names another file, or none. ``written``: (what the lines are,
    "kept" or "rejected"; the option naming the output; its files, one per source file when
    sharded; their row positions); ``shard_of``: each source's shard (shard_of_sources). Nothing where the user names the folder the paths are joined to (--audio-base-path)
    or the audio is in tars (member names)."""
    if dataset.options.audio_base_path or dataset.tar_shards or len(dataset.utterances) == 0:
        return []
    folder_of = [_folder(src.path) if src.local else None for src in lines.sources]
    moved: list[tuple[int, Path, int]] = []  # (which output, file, source index) written into another folder
    for which, (_, _, files, positions) in enumerate(written):
        if not files or not len(positions):
            continue
        for index in np.unique(lines.codes[positions]).tolist():
            out = files[int(shard_of[index])] if len(files) > 1 else files[0]
            if folder_of[index] is not None and _folder(out) != folder_of[index]:
                moved.append((which, out, index))
    if not moved:
        return []
    relative = np.concatenate([relative_rows(chunk) for chunk in string_chunks(dataset.utterances["audio_filepath"])])
    notes = []
    for which, (what, option, _, positions) in enumerate(written):
        found = [(out, index, rows) for w, out, index in moved if w == which
                 for rows in [positions[(lines.codes[positions] == index) & relative[positions]]] if len(rows)]
        if not found:
            continue
        out, index, rows = found[0]
        notes.append(relative_audio_note(sum(len(r) for _, _, r in found), what,
                                         str(dataset.utterances["audio_filepath"].iloc[int(rows[0])]),
                                         lines.sources[index].path, out, option, len(found) - 1))
    return notes


def _folder(path: str | Path) -> str:
    return os.path.realpath(os.path.dirname(os.path.abspath(path)))


def written_elsewhere(source: str | Path, out: str | Path) -> bool:
    """Whether ``out`` is in another folder than the manifest ``source`` (both local)."""
    return _folder(out) != _folder(source)


def relative_audio_note(count: int, what: str, example: str, source: str | Path, out: str | Path, option: str,
                        other_shards: int = 0) -> str:
    """The note for ``count`` lines of ``source`` (``what`` they are: "kept", "transcribed") that
    name their audio by a relative path (``example``) and were written into ``out`` (and
    ``other_shards`` more files) in another folder, by ``option``; see relative_audio_notes."""
    more = f" and {other_shards:,} other shard{'s' if other_shards > 1 else ''}" if other_shards else ""
    one = count == 1
    source = str(source)
    return (f"{count:,} {what} {'line names its' if one else 'lines name their'} audio by a path "
            f"relative to the folder of {'its' if one else 'their'} manifest (e.g. {example} in {source}), "
            f"and {out}{more} "
            f"{'is' if not more else 'are'} in another folder: NeMo and sde read such a path from the "
            f"manifest's folder, so from there it names another file. Write {option} into "
            f"{os.path.dirname(source) or '.'}, or read what it wrote with --audio-base-path "
            f"{os.path.dirname(os.path.abspath(source))}")


def _text(texts: Any, position: int) -> str | None:
    value = texts.iat[position]
    return None if value is None or value != value else str(value)


class _Sink:
    """Where a row's line goes: one file, or, for a sharded output, the shard of the row's source."""

    def __init__(self, files: Sequence[BinaryIO], codes: np.ndarray) -> None:
        self.files, self.codes = list(files), codes

    def write(self, position: int, line: bytes) -> None:
        files = self.files
        (files[0] if len(files) == 1 else files[int(self.codes[position])]).write(line)


def shard_of_sources(lines: ManifestLines, declared: Sequence[str] | None) -> tuple[np.ndarray, int]:
    """(per source file of ``lines``, those with valid lines: the index of its shard in a sharded
    output; the number of shards). The shards are ``declared``, every manifest file the user named
    in order (a shard pattern's, a file without valid lines included), else the files with valid
    lines."""
    ours = (np.arange(len(lines.sources)), len(lines.sources))
    if declared is None:
        return ours

    def key(path: str) -> str:
        return path if "://" in path else os.path.realpath(path)

    place = {key(str(d)): i for i, d in enumerate(declared)}
    shards = [place.get(key(src.path)) for src in lines.sources]
    if any(i is None for i in shards):  # not the files the dataset was read from: the files it has
        return ours
    return np.asarray(shards, dtype=np.int64), len(declared)


def shard_outputs(option: str, output: str | Path, lines: ManifestLines, dataset: "Dataset",
                  files: int | None = None) -> list[Path]:
    """The files an output names: itself, or for a NeMo shard pattern (`kept__OP_0..3_CL_.json`,
    `kept_{0..3}.json`) one per manifest file, in order (``files`` of them: every file named,
    default those with valid lines): shard i gets the lines of manifest i, and none where it has
    none (what NeMo's `shard_manifests` expects beside the same tars)."""
    text = str(output)
    pattern = normalise_tags(text)
    if not has_braces(pattern):
        return [Path(output)]
    try:
        names = brace_expand(pattern)
    except PatternError as e:
        raise ExportError(f"{option} {text}: {e}") from None
    files = len(lines.sources) if files is None else files
    if len(names) != files or has_shared_lines(dataset, lines) and files > 1:
        example = f"kept__OP_0..{files - 1}_CL_.json" if files > 1 else "kept.json"
        raise ExportError(f"{option} {text} names {len(names):,} files, but {dataset.name} has {files:,} manifest "
                          f"file{'s' if files != 1 else ''}: a sharded output gets one shard per "
                          f"manifest file; name {files} (e.g. {example}), or one file for all the lines")
    if len(set(names)) != len(names):
        raise ExportError(f"{option} {text} names the same file twice; give each shard its own name")
    return [Path(n) for n in names]


def _write_lines(lines: ManifestLines, plan: ExportPlan, kept: _Sink, rejected: _Sink | None,
                 kept_line: Callable[[int, bytes], bytes], progress: Callable[[int], None] | None) -> None:
    kept_mask = np.zeros(len(lines.lines), dtype=bool)
    kept_mask[plan.kept] = True
    rewrite = bool(plan.rewrites)
    done = 0
    if plan.sort is None and rejected is not None:
        # kept and rejected both in manifest order: one pass over the file serves both
        for position, line in lines.read(np.union1d(plan.kept, plan.rejected), hash_sources=True):
            if kept_mask[position]:
                kept.write(position, kept_line(position, line) if rewrite else line)
            else:
                rejected.write(position, line)
            done += 1
            if progress and done % 100_000 == 0:
                progress(done)
        return
    for position, line in lines.read(plan.kept, hash_sources=True):
        kept.write(position, kept_line(position, line) if rewrite else line)
        done += 1
        if progress and done % 100_000 == 0:
            progress(done)
    if rejected is not None:
        for position, line in lines.read(plan.rejected, hash_sources=True):
            rejected.write(position, line)


def _write_cut_lines(dataset: "Dataset", lines: ManifestLines, plan: ExportPlan, kept: BinaryIO,
                     rejected: BinaryIO | None) -> None:
    """Each cut once, with its kept supervisions (reviews applied); with --rejected, each cut that
    has rejected ones, with those (see sde.cut_lines)."""
    for _, line in selected_cut_lines(dataset, lines, plan.kept, plan.rewrites, hash_sources=True):
        kept.write(line)
    if rejected is not None:
        for _, line in selected_cut_lines(dataset, lines, plan.rejected, hash_sources=True):
            rejected.write(line)


def _changelog(dataset: "Dataset", plan: ExportPlan, lines: ManifestLines, output: str | Path,
               rejected_output: str | Path | None, command: Sequence[str] | None) -> dict:
    n = len(dataset.utterances)
    sources = []
    for i, src in enumerate(lines.sources):
        sources.append({"path": src.path, "source": src.name, **(src.stamp or {}), "sha256": lines.source_digest(i)})
    reviews = None
    if plan.reviews is not None:
        reviews = dict(plan.reviews)
        reviews["rewritten_lines"] = len(plan.rewrites)
        reviews["note"] = ("in rewritten lines (fixes, notes, tags) only text, text_original, review_note and "
                           "review_tags are re-serialised JSON; every other byte is copied as it was")
    return {
        "sde_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": list(command) if command is not None else None,
        "sources": sources,
        "outputs": {"kept": str(output), "rejected": str(rejected_output) if rejected_output else None},
        "filter": plan.filter,
        "sort": plan.sort,
        "counts": {
            "total_lines": int(dataset.total_lines),
            **_skipped(dataset),
            "utterances": n,
            "selected_by_filter": int(plan.selected),
            "kept": int(len(plan.kept)),
            "rejected": int(len(plan.rejected)),
        },
        "hours": {
            "utterances": _hours(dataset, np.arange(n)),
            "kept": _hours(dataset, plan.kept),
            "rejected": _hours(dataset, plan.rejected),
        },
        "rules": plan.rules.to_json(plan.rules_file) if plan.rules is not None else None,
        "reviews": reviews,
        "notes": list(plan.notes),
    }


def _skipped(dataset: "Dataset") -> dict[str, int]:
    """Dataset.skipped, the bad lines of the --predictions files apart: they are no manifest lines,
    so none of them is "in neither file" (they only carry no prediction)."""
    counts = dict(dataset.skipped())
    predictions = set(dataset.options.predictions)
    if predictions:
        of_predictions = sum(1 for p in dataset.problems if p.line and p.path in predictions)
        counts["skipped_lines"] -= of_predictions
        counts["skipped_prediction_lines"] = of_predictions
    return counts


def _plural(n: int, noun: str) -> str:
    return noun if n == 1 else f"{noun}s"


def summary_lines(changelog: dict) -> list[str]:
    """What the CLI prints after an export."""
    c, h = changelog["counts"], changelog["hours"]
    out = [f"kept      {c['kept']:>10,} utterances {duration_text(h['kept']):>10}  → {changelog['outputs']['kept']}"]
    if changelog["outputs"]["rejected"]:
        out.append(f"rejected  {c['rejected']:>10,} utterances {duration_text(h['rejected']):>10}  → "
                   f"{changelog['outputs']['rejected']}")
    else:
        out.append(f"rejected  {c['rejected']:>10,} utterances {duration_text(h['rejected']):>10}")
    if c["skipped_files"]:
        out.append(f"skipped   {c['skipped_files']:>10,} manifest {_plural(c['skipped_files'], 'file')} "
                   "(not read at all; `sde stats` lists them)")
    if c["skipped_lines"]:
        out.append(f"skipped   {c['skipped_lines']:>10,} bad {_plural(c['skipped_lines'], 'line')} "
                   "(in neither file; `sde stats` lists them)")
    if c.get("skipped_prediction_lines"):
        out.append(f"skipped   {c['skipped_prediction_lines']:>10,} bad {_plural(c['skipped_prediction_lines'], 'line')} "
                   "of the predictions file (their predictions not merged; `sde stats` lists them)")
    rules = changelog.get("rules")
    if rules:
        for r in rules["rules"]:
            if r.get("enabled", True) is False:  # its 0 would read as "matches nothing"
                out.append(f"  rule {r['name']!r}: off (enabled: false in the rules file), not applied")
                continue
            out.append(f"  rule {r['name']!r}: {r['utterances']:,} utterances, {duration_text(r['hours'])}"
                       + (f" ({r['only']:,} only this rule)" if len(rules["rules"]) > 1 else ""))
        out.append(f"  all rules: {rules['union']['utterances']:,} utterances, {duration_text(rules['union']['hours'])} "
                   "(overlaps counted once)")
    reviews = changelog.get("reviews")
    if reviews:
        out.append(f"  reviews: {reviews['dropped']:,} dropped, {reviews['fixed']:,} fixed, "
                   f"{reviews['annotated']:,} annotated"
                   + (f", {reviews['stale']:,} match no line any more" if reviews["stale"] else "")
                   + (f", {reviews['fixes_not_applied']:,} {'fix' if reviews['fixes_not_applied'] == 1 else 'fixes'} not "
                      "applied (no corrected transcript: see the note)" if reviews.get("fixes_not_applied") else "")
                   # a drop counted 0 because a rule removed its line already is no lost review
                   + (f"; {reviews['left_out']:,} other reviewed utterances were left out by the filter or "
                      "rules already" if reviews.get("left_out") else ""))
    out += [f"note: {note}" for note in changelog.get("notes") or ()]
    return out


# ----------------------------------------------------------------------------------- HTTP twin


class LineStream(NamedTuple):
    """A streamed response: the web layer sends `chunks` with this type and download name."""

    chunks: Iterator[bytes]
    mimetype: str
    filename: str


def utterances_jsonl_route(dataset: "Dataset", args: Mapping[str, str], store: "ReviewStore | None" = None,
                           lines: ManifestLines | None = None) -> tuple[int, Any]:
    """GET /api/utterances.jsonl?filter=Q&sort=S: the selected manifest lines, byte for byte.

    Returns (200, LineStream) or (400/409, {"error": message}). Everything that can fail is checked
    before the first byte is sent (an error cannot change the status of a started response).
    """
    filter_text, sort_text = args.get("filter") or None, args.get("sort") or None
    try:
        positions = query_for(dataset, store, filter_text, sort_text).select(filter_text, sort_text)
    except QueryError as e:
        payload: dict[str, Any] = {"error": str(e)}
        if getattr(e, "position", None) is not None:
            payload["position"] = e.position
        return 400, payload
    try:  # the manifest moved, deleted or edited since sde loaded it: say so, send nothing
        lines = lines or manifest_lines(dataset)
        lines.check_unchanged()
    except ExportError as e:
        return 409, {"error": str(e)}
    if has_shared_lines(dataset, lines):  # Lhotse cuts: each once, with the selected supervisions
        chunks = in_chunks(line for _, line in selected_cut_lines(dataset, lines, np.asarray(positions)))
    else:
        chunks = lines.chunks(np.asarray(positions))
    return 200, LineStream(chunks, "application/x-ndjson", manifest_download_name(dataset.name))


def manifest_lines(dataset: "Dataset") -> ManifestLines:
    """The dataset's ManifestLines, built once (hung on the dataset: replace_with drops it)."""
    cached = dataset.__dict__.get("_sde_manifest_lines")
    if cached is None:
        cached = ManifestLines(dataset)
        dataset.__dict__["_sde_manifest_lines"] = cached
    return cached


# ------------------------------------------------------------------------------------- the CLI


def _named_columns(filter: str | None, sort: str | None, rules: Sequence[Rule] | None,
                   rules_path: str | Path | None) -> list[tuple[str, str]]:
    """(where, column) for every column the filter, the sort and each rule name; `where` is how an
    error names it (--filter, --sort, rule 'NAME' (FILE:LINE)). A text that does not parse is left
    out: the query says what is wrong with it."""
    named: list[tuple[str, str]] = []
    for what, text in [("--filter", filter), *((f"rule {r.name!r}" + (f" ({rules_path}:{r.line})" if r.line else ""),
                                                r.filter) for r in rules or ())]:
        try:
            tree = parse(text) if text else None
        except QueryError:
            continue
        named += [(what, c.name) for c in (column_refs(tree) if tree is not None else ())]
    if sort:
        named += [("--sort", part.strip().lstrip("+-").strip("{}")) for part in sort.split(",")]
    return named


def _refuse_review_columns_without_reviews(dataset: "Dataset", filter: str | None, sort: str | None,
                                          rules: Sequence[Rule] | None, rules_path: str | Path | None,
                                          looked_in: Path) -> None:
    """A filter, sort or rule that names a review column ({review}, {review_tags}, ...) with no
    reviews file found: say so, rather than "Unknown column" (the column exists where reviews are)."""
    own = set(dataset.utterances.columns)   # a manifest field of that name is read as it is
    for what, column in _named_columns(filter, sort, rules, rules_path):
        if column in REVIEW_COLUMNS and column not in own:
            raise ExportError(f"{what} names the review column {{{column}}}, but {dataset.name} has no reviews file "
                              f"(looked in {looked_in}): pass --reviews FILE (the reviews file the server's "
                              "Statistics page names), or the --cache-dir the server was started with")


def _refuse_unmeasured_columns(dataset: "Dataset", filter: str | None, sort: str | None,
                               rules: Sequence[Rule] | None, rules_path: str | Path | None) -> None:
    """A filter, sort or rule that names a column only a build option measures (sde.rules.MEASURED_BY:
    --vad, --estimate-audio-metrics), on a dataset loaded without it: an error naming the rule, the
    column and the option to add. Without it the column is an "Unknown column" that does not say how
    to get it, or, for the audio duplicate groups, empty on every row: a drop rule on them would
    remove nothing and the export would silently keep every line."""
    own = set(dataset.utterances.columns)
    for what, column, measure in unmeasured_columns(own, _named_columns(filter, sort, rules, rules_path)):
        raise ExportError(f"{what} names {{{column}}}, {measure.what}: only {measure.option} measures it, and "
                          f"{dataset.name} was loaded without it; add {measure.option} ({_MEASURE_REMEDY})"
                          f"{manifest_field_hint(own, column)}")


def export_dataset(dataset: "Dataset", output: str | Path, *, rejected: str | Path | None = None,
                   filter: str | None = None, sort: str | None = None, rules_path: str | Path | None = None,
                   reviews_path: str | Path | None = None, apply_reviews: bool = False,
                   cache_dir: str | Path | None = None, command: Sequence[str] | None = None,
                   declared: Sequence[str] | None = None) -> dict:
    """`sde export`: plan and write; returns the changelog. Reviews are opened read-only.
    ``declared``: every manifest file the sources name, in order (see write_export)."""
    rules = load_rules(rules_path) if rules_path is not None else None
    texts = [filter, sort] + [r.filter for r in rules or ()]
    _refuse_unmeasured_columns(dataset, filter, sort, rules, rules_path)
    store = None
    if reviews_path is not None:
        if not Path(reviews_path).is_file():
            raise ExportError(f"--reviews {reviews_path}: no such reviews file; check the path (sde creates "
                              "it when you review in the browser)")
        store = open_reviews(dataset, reviews_path, read_only=True, quiet=True)
    elif apply_reviews or any(t and "review" in t for t in texts):
        default = default_reviews_path(dataset, cache_dir)
        # the manifest renamed, moved or copied since it was reviewed: its reviews are found beside
        found = default if default.is_file() and not never_written(default) else renamed_reviews(dataset, default)
        found = found or (default if default.is_file() else None)
        if found is not None:
            store = open_reviews(dataset, found, read_only=True, quiet=True)
            if found != default:
                store.notes.append(f"the reviews were read from {found}: this manifest's before it was renamed, "
                                   f"moved or copied ({default} does not exist yet)")
        elif apply_reviews:
            raise ExportError(f"--apply-reviews: {dataset.name} has no reviews yet (looked in {default}); "
                              "review in the browser first, or pass --reviews FILE (the reviews file the "
                              "server's Statistics page names), or the --cache-dir the server was started with")
        else:
            _refuse_review_columns_without_reviews(dataset, filter, sort, rules, rules_path, default)
    try:
        plan = plan_export(dataset, filter=filter, sort=sort, rules=rules,
                           rules_file=str(rules_path) if rules_path is not None else None,
                           store=store, apply_reviews=apply_reviews)
        if rules is not None and not rules:  # a rules file saved empty would otherwise drop nothing unsaid
            plan.notes.append(f"--rules {rules_path} holds no rules (an empty file, or `rules:` with no entries): "
                              "no line was dropped by a rule")
        if store is not None:
            plan.notes.extend(store.notes)
        if store is not None and not apply_reviews:
            if not any(t and "review" in t for t in texts):
                plan.notes.append(f"--reviews {reviews_path} was read but not applied: no filter or rule names a "
                                  "review column; add --apply-reviews to remove the drops and write the fixes")
            elif fixes := _kept_fixes(dataset, store, plan.kept):
                # a filter such as {review} = "fix" chose the fixed lines, which then kept their old text
                plan.notes.append(f"--reviews {reviews_path}: its {fixes:,} fixed transcripts were not written (the "
                                  "filter or rules only read the reviews); add --apply-reviews to write them")
        inputs = [("--rules", rules_path)] if rules_path is not None else []
        if store is not None:
            inputs.append(("--reviews", store.path))
        return write_export(dataset, plan, output, rejected_output=rejected, command=command, inputs=inputs,
                            declared=declared)
    finally:
        if store is not None:
            store.close()


def safe_file_name(name: str) -> str:
    """User text (a manifest or hypothesis name) as part of a download's file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def manifest_download_name(dataset_name: str, lines: str = "selection") -> str:
    """The file a view's manifest lines are downloaded as, ``<manifest stem>.<lines>.jsonl``
    (``selection``; ``kept`` and ``removed`` by drop rules): the server's Content-Disposition, and
    the ``download`` of a page's link to them (a browser saves under the former whatever the
    latter says: a link said kept.jsonl and the file came as <stem>.selection.jsonl)."""
    return safe_file_name(f"{Path(dataset_name).stem or 'manifest'}.{lines}.jsonl")
