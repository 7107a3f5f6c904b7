"""What reading a file produces, chunk by chunk: the valid rows of a chunk (Piece), what the file
must contain (Spec), and the state shared by the chunks of one file (ReadState: problems, the cap on
extra fields).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from sde.manifest.model import CORE_FIELDS, STRICT_HINT, ManifestError, Problem, is_pred_name

MAX_EXTRA_FIELDS = 1000
MIN_EXTRA_FIELDS = 32
MAX_EXTRA_CELLS = 25_000_000


@dataclass
class Spec:
    """What a file must contain: a main manifest, or a predictions file (audio path + pred_text)."""

    predictions: bool = False
    explicit_hyps: frozenset[str] | None = None  # --pred-field names; None: pred_text* discovery

    def is_hyp(self, name: str) -> bool:
        if self.predictions:
            return name == "pred_text"
        if self.explicit_hyps is not None:
            return name in self.explicit_hyps
        return is_pred_name(name)


@dataclass
class Piece:
    """The valid rows of one chunk: arrow columns of equal length and their source lines."""

    n: int
    lines: np.ndarray
    cols: dict[str, pa.Array | pa.ChunkedArray]
    # which of several manifests it comes from: one index, or one per row (a batch of shards)
    source: int | np.ndarray = 0


class ReadState:
    def __init__(self, path: str, spec: Spec, strict: bool, size: int) -> None:
        self.path = path
        self.spec = spec
        self.strict = strict
        self.size = size
        self.problems: list[Problem] = []
        # keys accepted so far, in order of first appearance, each with the line it first appeared
        # on; core keys never count against the cap
        self.accepted: dict[str, int | None] = dict.fromkeys(ALWAYS_ACCEPTED)
        self.n_extra = 0
        self.cap = MAX_EXTRA_FIELDS
        self.dropped: set[str] = set()
        self.dropped_first_line: int | None = None

    def estimate_rows(self, lines: int, nbytes: int) -> None:
        """Shrink the extra-field cap for long files, from the first chunk's mean line length."""
        if lines and nbytes:
            rows = max(1, int(self.size / (nbytes / lines)))
            self.cap = max(MIN_EXTRA_FIELDS, min(MAX_EXTRA_FIELDS, MAX_EXTRA_CELLS // rows))

    def admit(self, key: str, line: int) -> bool:
        """Whether an extra key is kept; remembers the first line whose key is dropped."""
        if key in self.accepted:
            return True
        if self.n_extra < self.cap:
            self.accepted[key] = line
            self.n_extra += 1
            return True
        self.dropped.add(key)
        if self.dropped_first_line is None or line < self.dropped_first_line:
            self.dropped_first_line = line
        return False

    def commit(self, problems: list[Problem]) -> None:
        if problems and self.strict:
            raise ManifestError(f"{problems[0]}\n{STRICT_HINT}")
        self.problems.extend(problems)

    def place(self, line: int) -> tuple[str, int]:
        """The file and line a line of this read is shown as."""
        return self.path, line

    def seen_fields(self) -> SeenFields:
        """The extra fields this read admitted and kept out, for the cap over a whole dataset."""
        def at(line: int | None) -> Place:
            return ((line or 0,), *self.place(line or 0))

        first = {key: at(line) for key, line in self.accepted.items() if key not in ALWAYS_ACCEPTED}
        dropped_at = at(self.dropped_first_line) if self.dropped else None
        return SeenFields(first, set(self.dropped), dropped_at, self.cap)


# Keys every read accepts from the start: they never count against the cap.
ALWAYS_ACCEPTED = CORE_FIELDS + ("audio_filename", "text_filepath")

# Where a field first appeared: a key that sorts places in the order of the dataset's lines (the
# read's, then the line's; a part of a dataset built part by part comes first), the file, the line.
Place = tuple[tuple[int, ...], str, int]


@dataclass
class SeenFields:
    """The extra fields one or several reads admitted (in order of first appearance, each with
    where it appeared), those the cap kept out, where the first of those appeared, and the cap.
    What :meth:`capped` needs to keep as many fields over a whole dataset as one read would: the
    reads of several manifests (sde.manifest.reader), the parts of a dataset (sde.build.merge)."""

    first: dict[str, Place]
    dropped: set[str] = field(default_factory=set)
    dropped_at: Place | None = None
    cap: int = MAX_EXTRA_FIELDS

    @staticmethod
    def joined(reads: Sequence[SeenFields]) -> SeenFields:
        """Reads of consecutive lines (in order) as one."""
        first: dict[str, Place] = {}
        dropped: set[str] = set()
        dropped_at: Place | None = None
        for k, read in enumerate(reads):
            for key, (order, path, line) in read.first.items():
                first.setdefault(key, ((k, *order), path, line))
            dropped |= read.dropped
            if read.dropped_at is not None and dropped_at is None:
                order, path, line = read.dropped_at
                dropped_at = ((k, *order), path, line)
        return SeenFields(first, dropped, dropped_at, min((r.cap for r in reads), default=MAX_EXTRA_FIELDS))

    def capped(self) -> tuple[set[str], int, Place | None]:
        """The fields beyond the cap (those the reads admitted after ``cap`` others: a read of
        all the lines at once would have kept them out), how many distinct fields were kept out
        in all, and where the first of them appeared."""
        order = list(self.first)
        cut = set(order[self.cap:])
        kept_out = (cut | self.dropped) - set(order[:self.cap])
        places = [self.first[key] for key in cut] + ([self.dropped_at] if self.dropped_at is not None else [])
        return cut, len(kept_out), min(places, key=lambda p: p[0]) if places else None


def cap_warning(seen: SeenFields, several: bool) -> Problem | None:
    """The one warning about fields kept out by the cap, at the first line one of them is on."""
    _, count, where = seen.capped()
    if not count or where is None:
        return None
    return Problem(where[1], where[2], f"{count} more distinct fields ignored: at most {seen.cap} extra fields "
                                       f"are kept for a {'dataset' if several else 'manifest'} of this size")


@dataclass
class PartRead:
    """A read of one part of a dataset built part by part (sde.build): the bytes of the whole
    dataset, which size its cap on extra fields as a read of the whole does (0: each manifest's
    own, as for remote ones), and, once read, the fields it saw (the join caps their union)."""

    dataset_bytes: int = 0
    fields: SeenFields | None = None


_part_read: ContextVar[PartRead | None] = ContextVar("sde_part_read", default=None)


@contextmanager
def reading_part(dataset_bytes: int = 0) -> Iterator[PartRead]:
    """Reads in this context (of this thread) read a part of a dataset (:class:`PartRead`)."""
    read = PartRead(dataset_bytes)
    token = _part_read.set(read)
    try:
        yield read
    finally:
        _part_read.reset(token)


def part_read() -> PartRead | None:
    """The part being read (:func:`reading_part`), if any."""
    return _part_read.get()


# The pieces' key for where each duration came from (a manifest field of that name stays separate).
DURATION_SOURCE = "\x00duration_source"


# The pieces' key for resolved audio paths, when each manifest's lines are resolved as it is read.
AUDIO_PATH = "\x00audio_path"
