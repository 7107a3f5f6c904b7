"""The manifest's public types: problems and errors, hypothesis fields, the read Manifest, and
the ``--pred-field`` syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from sde.sources.patterns import natural_key

CORE_FIELDS = ("audio_filepath", "duration", "text", "offset")
# Columns sde makes (some for every dataset, some when asked: `source` of several manifests,
# `audio_exists` once the files are checked, the reviews, speech activity, duplicates, transcript
# checks): a manifest field of such a name is kept as manifest_<name>, always, so that a column
# means one thing. A `source` field of one manifest was taken for each line's file (sde could not
# start), a text `speech_duration` for measured speech (the Statistics page failed), a `review` hid
# the reviews saved. Each hypothesis's own columns: sde.dataset.computed_columns.
GENERATED = (
    "id", "line", "source", "audio_path", "audio_exists", "duration_source", "duration_bucket",
    "review", "review_text", "review_note", "review_tags", "review_user", "review_time",
    "speech_duration", "leading_silence", "trailing_silence", "speech_ratio", "audio_hash", "lufs", "quality_error",
    "dup_text_group", "dup_audio_group", "dup_audio_text_conflict", "dup_near_group",
    "repeated_ngram", "char_rate_z", "word_rate_z", "empty_reference", "non_alphabet",
)
STRICT_HINT = ("Fix or remove that line, or run without --strict to skip bad lines "
               "(they are listed on the Problems page).")


@dataclass(frozen=True)
class Problem:
    """A skipped line (or, in ``Manifest.warnings``, a note about a line)."""

    path: str    # the manifest path as the user gave it (several manifests: the `source` column's name)
    line: int    # 1-based physical line number; 0 for a problem of the whole file (a missing shard)
    reason: str  # e.g. 'missing field "duration"'

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}" if self.line else f"{self.path}: {self.reason}"


class ManifestError(Exception):
    """A manifest that cannot be used; the message names file[:line] and the fix."""


class PredFieldError(ManifestError, ValueError):
    """A malformed ``--pred-field`` spec: a ValueError (usage error, exit 2, when the CLI checks
    specs with parse_pred_field first) that is also a ManifestError, so it never surfaces as a
    traceback if it reaches read_manifest unchecked."""


@dataclass(frozen=True)
class HypothesisField:
    """A manifest field holding ASR hypotheses, and the label its metric columns carry."""

    field: str
    label: str

    def column(self, metric: str) -> str:
        return metric if self.label == "" else f"{metric}_{self.label}"

    @property
    def name(self) -> str:
        return self.label or self.field


@dataclass
class Manifest:
    """A read manifest: the utterance table (see internals.md for its columns) and what was skipped."""

    path: Path
    table: pd.DataFrame
    hypotheses: list[HypothesisField]
    problems: list[Problem]
    total_lines: int
    # Notes that do not skip lines (ignored extra fields, unmatched predictions). Not in the
    # internals.md contract, added with a default so that constructing a Manifest stays compatible.
    warnings: list[Problem] = field(default_factory=list)
    # The dataset's name (the file name, or the patterns as typed) and every file read, in id order.
    name: str = ""
    sources: list[str] = field(default_factory=list)
    # How problems name the manifest: the path as given (several manifests: each problem its own).
    shown: str = ""
    # Tar shards holding the audio (index = a row's `shard_id`; members named by `audio_filepath`):
    # set by readers whose data keeps its audio in tars (Lhotse Shar); --tarred-audio sets the rest.
    tar_shards: tuple[str, ...] = ()
    # The fields other than the core ones that some valid line has (hypotheses included), before
    # a predictions file adds its own.
    fields: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ManifestPart:
    """Some whole lines of one local manifest: bytes [start, stop), after ``first_line`` lines.

    A dataset too big to read at once is read part by part (sde.build); line numbers, problems and
    paths stay those of the whole file."""

    start: int
    stop: int
    first_line: int


# Manifest fields that say where and what the utterance is: never a hypothesis.
NOT_HYPOTHESES = {
    "audio_filepath": "the utterance's audio file",
    "audio_filename": "the utterance's audio file",
    "duration": "the segment's length in seconds",
    "offset": "where the segment starts in its audio file",
    "text_filepath": "the file the reference is read from",
}


def parse_pred_field(spec: str) -> HypothesisField:
    """Parse a ``--pred-field`` value: ``F`` or ``F=LABEL``.

    Plain ``F``: label "" for ``pred_text``, the part after ``pred_text_`` for ``pred_text_X``, else
    the field name itself.  Raises PredFieldError (a ValueError and a ManifestError) for an empty
    field or label.
    """
    name, sep, label = spec.partition("=")
    name, label = name.strip(), label.strip()
    if not name:
        raise PredFieldError(f"--pred-field {spec!r}: the field name is empty; use FIELD or FIELD=LABEL")
    if name == "text":
        raise PredFieldError(f"--pred-field {spec!r}: \"text\" is the reference the hypotheses are scored "
                             "against; name the field holding a model's output (e.g. pred_text)")
    if name in NOT_HYPOTHESES:  # `--pred-field duration` made every line bad: "duration" must be a string
        raise PredFieldError(f"--pred-field {spec!r}: {name!r} is {NOT_HYPOTHESES[name]}, not a model's output; "
                             "name the field holding the transcript a model wrote (e.g. pred_text)")
    if name in GENERATED:  # the hypothesis would be read as sde's column (`source`: each line's file)
        raise PredFieldError(f"--pred-field {spec!r}: {name!r} is the name of a column sde makes; sde cannot "
                             "score a field of that name (a field of that name is kept as "
                             f"manifest_{name})")
    if sep:
        if not label or any(c.isspace() for c in label):
            raise PredFieldError(f"--pred-field {spec!r}: the label must be a non-empty word; "
                             "use FIELD or FIELD=LABEL")
        return HypothesisField(name, label)
    return HypothesisField(name, default_label(name))


def default_label(name: str) -> str:
    if name == "pred_text":
        return ""
    if name.startswith("pred_text_") and len(name) > len("pred_text_"):
        return name[len("pred_text_"):]
    return name


def is_pred_name(name: str) -> bool:
    return name == "pred_text" or (name.startswith("pred_text_") and len(name) > len("pred_text_"))


def found_hypotheses(names: Iterable[str]) -> list[str]:
    """The hypothesis fields among ``names`` (a manifest's fields), as sde lists them: ``pred_text``
    first, then the others in natural order (``pred_text_m2`` before ``pred_text_m10``)."""
    found = [name for name in names if is_pred_name(name)]
    return (["pred_text"] if "pred_text" in found else []) + sorted(
        (name for name in found if name != "pred_text"), key=natural_key)
