"""What reading a file produces, chunk by chunk: the valid rows of a chunk (Piece), what the file
must contain (Spec), and the state shared by the chunks of one file (ReadState: problems, the cap on
extra fields).
"""

from __future__ import annotations

from dataclasses import dataclass

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
        self.warnings: list[Problem] = []
        # keys accepted so far, in order of first appearance; core keys never count against the cap
        self.accepted: dict[str, None] = dict.fromkeys(CORE_FIELDS + ("audio_filename", "text_filepath"))
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
            self.accepted[key] = None
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


# The pieces' key for where each duration came from (a manifest field of that name stays separate).
DURATION_SOURCE = "\x00duration_source"


# The pieces' key for resolved audio paths, when each manifest's lines are resolved as it is read.
AUDIO_PATH = "\x00audio_path"
