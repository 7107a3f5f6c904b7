"""Hypotheses that are not on every line: a predictions file merged by audio path and offset,
and the warning for a hypothesis field some lines lack.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sde.manifest.model import HypothesisField, ManifestError, Problem

# How many line numbers the warning about a missing hypothesis field quotes.
MISSING_EXAMPLES = 3


def merge_predictions(table: pd.DataFrame, preds: pd.DataFrame, preds_path: str,
                      main_path: str) -> tuple[pd.Series, int]:
    """pred_text per main row ("" where unmatched) and the number of unmatched rows.

    A line takes the last prediction with its tar shard, member name and offset where both name a
    shard (``shard``: NeMo tarred audio, whose tars may each hold a member of one name), else the
    last with its audio path as written and offset, else as resolved. A prediction naming a shard
    matches a line of another shard by name only where that name is the manifest's only one (the
    same data sharded otherwise); a name in several shards needs its own shard's prediction."""
    pred = preds["pred_text"].to_numpy(dtype=object)
    p_off, m_off = preds["offset"].round(6).to_numpy(), table["offset"].round(6).to_numpy()
    p_shard, m_shard = _shards(preds), _shards(table)
    plain = np.isnan(p_shard)

    def lookup(left: dict[str, Any], right: dict[str, Any], rows: np.ndarray) -> pd.Series:
        right_frame = pd.DataFrame({**{k: np.asarray(v)[rows] for k, v in right.items()}, "pred": pred[rows]})
        right_frame = right_frame.drop_duplicates(list(right), keep="last")
        return pd.DataFrame(left).merge(right_frame, on=list(left), how="left", sort=False)["pred"]

    def by_path(column: str) -> pd.Series:
        left = {"k": table[column].to_numpy(dtype=object), "o": m_off}
        right = {"k": preds[column].to_numpy(dtype=object), "o": p_off}
        every = lookup(left, right, np.ones(len(pred), bool))
        shared = _shared_names(left["k"], m_off, m_shard)
        if plain.all() or not shared.any():  # no name in several shards: one lookup is the answer
            return every
        return lookup(left, right, plain).where(shared, every)

    found = pd.Series([None] * len(table), dtype=object)
    if (~plain).any() and not np.isnan(m_shard).all():
        found = lookup({"s": m_shard, "k": table["audio_filepath"].to_numpy(dtype=object), "o": m_off},
                       {"s": p_shard, "k": preds["audio_filepath"].to_numpy(dtype=object), "o": p_off}, ~plain)
    for column in ("audio_filepath", "audio_path"):
        missing = found.isna().to_numpy()
        if missing.any():
            found = found.where(~missing, by_path(column))
    unmatched = int(found.isna().sum())
    if unmatched == len(table):
        raise no_prediction_matches(preds_path, main_path, table["audio_filepath"].iloc[0],
                                    preds["audio_filepath"].iloc[0])
    return found.astype(pd.StringDtype("pyarrow")), unmatched


def _shards(frame: pd.DataFrame) -> np.ndarray:
    """The frame's ``shard`` column (NaN where a line names none), all NaN without one."""
    if "shard" not in frame.columns:
        return np.full(len(frame), np.nan)
    return frame["shard"].to_numpy(dtype=np.float64)


def _shared_names(paths: np.ndarray, offsets: np.ndarray, shards: np.ndarray) -> np.ndarray:
    """Lines in a shard whose path and offset another line has too: a member name in several tars."""
    sharded = ~np.isnan(shards)
    if not sharded.any():
        return sharded
    return pd.DataFrame({"k": paths, "o": offsets}).duplicated(keep=False).to_numpy() & sharded


@dataclass(frozen=True)
class PredictionsUse:
    """What of a predictions file went unused: its lines that repeat an earlier line's audio file and
    offset (the last of each is used: a file of two runs appended is the usual cause) and those
    that match no line of the manifest (predictions of another manifest, or paths written
    otherwise); for each, how many and the first (its line, audio file, offset; for a repeat, the
    line it repeats)."""

    repeated: int = 0
    first_repeat: tuple[int, str, float, int] | None = None
    unmatched: int = 0
    first_unmatched: tuple[int, str, float] | None = None

    def warnings(self, predictions: str | Path) -> list[Problem]:
        out = []
        if self.repeated and self.first_repeat is not None:
            line, path, offset, earlier = self.first_repeat
            out.append(Problem(str(predictions), line, (
                f"{_lines(self.repeated)} of {predictions} {'repeats' if self.repeated == 1 else 'repeat'} the audio "
                f"file and offset of an earlier one (the first is here: {path!r} at {offset:g} s, as on line "
                f"{earlier}): the last prediction of each is used")))
        if self.unmatched and self.first_unmatched is not None:
            line, path, offset = self.first_unmatched
            out.append(Problem(str(predictions), line, (
                f"{_lines(self.unmatched)} of {predictions} {'matches' if self.unmatched == 1 else 'match'} no "
                f"line of the manifest (the first is here: {path!r} at {offset:g} s): predictions of another "
                "manifest, or audio paths written otherwise")))
        return out


def _lines(n: int) -> str:
    return f"{n:,} {'line' if n == 1 else 'lines'}"


def predictions_use(preds: pd.DataFrame, table: pd.DataFrame) -> PredictionsUse:
    """What of ``preds`` (a predictions file's audio_filepath, audio_path, offset, line and maybe
    shard) the lines of ``table`` (audio_filepath, audio_path, offset, maybe shard) leave unused;
    a prediction is matched as merge_predictions matches it."""
    keys = pd.DataFrame({"s": _shards(preds),
                         "k": preds["audio_filepath"].astype(str).to_numpy(dtype=object),
                         "p": preds["audio_path"].astype(str).to_numpy(dtype=object),
                         "o": preds["offset"].round(6).to_numpy(dtype=np.float64)})
    lines = np.asarray(preds["line"], dtype=np.int64)
    use = {}
    later = keys.duplicated(["s", "k", "o"], keep="first").to_numpy()
    if later.any():
        row = int(np.flatnonzero(later)[0])
        group = keys.groupby(["s", "k", "o"], dropna=False, sort=False).ngroup().to_numpy()
        earlier = int(np.flatnonzero(group == group[row])[0])
        use.update(repeated=int(later.sum()),
                   first_repeat=(int(lines[row]), keys["k"][row], float(keys["o"][row]), int(lines[earlier])))
    main_o = table["offset"].round(6).to_numpy(dtype=np.float64)
    main_s = _shards(table)
    plain = np.isnan(keys["s"].to_numpy())
    sharded = ~np.isnan(main_s)
    used = np.zeros(len(keys), dtype=bool)
    if sharded.any() and not plain.all():
        in_shard = pd.MultiIndex.from_arrays([main_s[sharded], table["audio_filepath"].astype(str).to_numpy(
            dtype=object)[sharded], main_o[sharded]])
        used |= ~plain & pd.MultiIndex.from_arrays([keys["s"], keys["k"], keys["o"]]).isin(in_shard)
    for column, key in (("audio_filepath", "k"), ("audio_path", "p")):
        paths = table[column].astype(str).to_numpy(dtype=object)
        open_rows = ~_shared_names(paths, main_o, main_s)
        asked = pd.MultiIndex.from_arrays([keys[key], keys["o"]])
        used |= np.where(plain, asked.isin(pd.MultiIndex.from_arrays([paths, main_o])),
                         asked.isin(pd.MultiIndex.from_arrays([paths[open_rows], main_o[open_rows]])))
    unused = ~used
    if unused.any():
        row = int(np.flatnonzero(unused)[0])
        use.update(unmatched=int(unused.sum()), first_unmatched=(int(lines[row]), keys["k"][row], float(keys["o"][row])))
    return PredictionsUse(**use)


def no_prediction_matches(preds_path: str, main_path: str, example: str, p_example: str) -> ManifestError:
    return ManifestError(
        f"{preds_path}: no line matches {main_path}: predictions are matched by audio_filepath "
        f"(as written or resolved) and offset, e.g. {main_path} has {example!r} while "
        f"{preds_path} has {p_example!r}; use the manifest that was transcribed, or --audio-base-path")


def predictions_field(present: Collection[str], predictions: str | Path) -> HypothesisField:
    """The hypothesis a predictions file becomes: ``pred_text``, or ``pred_text_<file stem>`` when
    the manifest has a pred_text of its own (``present``: the manifest's fields)."""
    if "pred_text" not in present:
        return HypothesisField("pred_text", "")
    stem = re.sub(r"\W+", "_", Path(predictions).stem).strip("_") or "predictions"
    name, k = f"pred_text_{stem}", 2
    while name in present:
        name, k = f"pred_text_{stem}_{k}", k + 1
    return HypothesisField(name, name[len("pred_text_"):])


def unmatched_warning(shown: str, line: int, unmatched: int, rows: int, predictions: str | Path,
                      field_name: str) -> Problem:
    """The note that ``unmatched`` of ``rows`` utterances have no prediction (``shown``:``line``:
    the first of them)."""
    return Problem(shown, line, f"{unmatched} of {rows} utterances have no prediction in {predictions} "
                                f"(the first is here): left out of {field_name}'s scores")


@dataclass(frozen=True)
class MatchedPredictions:
    """A predictions file matched to some lines (sde.build matches it once for a whole dataset
    read part by part): the hypothesis it becomes and each line's prediction (null: none)."""

    field: HypothesisField
    values: pa.ChunkedArray


def missing_hypothesis_warning(path: str, field_name: str, values: pd.arrays.ArrowStringArray,
                                lines: np.ndarray, sources: Any = None) -> Problem | None:
    """One warning per hypothesis field that some lines lack (absent or null), naming a few
    (``sources``, for several manifests: each row's manifest, so examples read file:line)."""
    missing = np.asarray(values.isna(), dtype=bool)
    count = int(missing.sum())
    if not count:
        return None
    rows = np.flatnonzero(missing)[:MISSING_EXAMPLES]
    return missing_lines_warning(path, field_name, count, [int(lines[r]) for r in rows],
                                 None if sources is None else [str(sources[r]) for r in rows])


def missing_lines_warning(path: str, field_name: str, count: int, shown: list[int],
                          sources: list[str] | None = None) -> Problem:
    """The warning for ``count`` lines without the hypothesis, a few ``shown`` (line numbers; with
    ``sources``, of several manifests: each example's manifest, so that it reads file:line)."""
    shown = shown[:MISSING_EXAMPLES]
    if sources:
        examples = ("e.g. " if count > len(shown) else "") + ", ".join(
            f"{source}:{line}" for source, line in zip(sources, shown))
        return Problem(sources[0], shown[0], _missing_reason(field_name, count, examples))
    which = ", ".join(map(str, shown))
    examples = f"e.g. lines {which}" if count > len(shown) else f"line{'s' if count > 1 else ''} {which}"
    return Problem(path, shown[0], _missing_reason(field_name, count, examples))


def is_missing_hypothesis_warning(warning: Problem, field_name: str) -> bool:
    """Whether ``warning`` is the one of :func:`missing_lines_warning` for this field."""
    return warning.reason.startswith(f"{field_name} missing on ") and warning.reason.endswith("left out of its scores")


def _missing_reason(field_name: str, count: int, examples: str) -> str:
    return f"{field_name} missing on {count:,} line{'s' if count > 1 else ''} ({examples}): left out of its scores"
