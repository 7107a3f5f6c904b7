"""Hypotheses that are not on every line: a predictions file merged by audio path and offset
(and channel, and tar shard, where lines of one path and offset need them to be told apart), and
the warning for a hypothesis field some lines lack.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.manifest.model import HypothesisField, ManifestError, Problem
from sde.manifest.pieces import Piece

# How many line numbers the warning about a missing hypothesis field quotes.
MISSING_EXAMPLES = 3


def merge_predictions(table: pd.DataFrame, preds: pd.DataFrame, preds_path: str,
                      main_path: str, matched: PredictionMatch | None = None) -> tuple[pd.Series, int]:
    """pred_text per main row ("" where unmatched) and the number of unmatched rows.

    A line takes the last prediction of its audio path as written and offset, else as resolved,
    and of its channel where it has one (``channel``, from :func:`channel_keys`: one side of a
    call). Where both name a tar shard (``shard``: NeMo tarred audio, whose tars may each hold a
    member of one name), a prediction of the line's own shard comes first; one of another shard
    matches by name where that name and offset are in one shard only (the same data sharded
    otherwise). A prediction that lacks what tells the lines apart (no shard_id for a name in
    several shards, no audio_channel for a file and offset on several channels) is used by none of
    them, and :func:`predictions_use` says so: a pick would put one speaker's words on the other.
    Every line unmatched is a ManifestError naming the fix."""
    matched = matched if matched is not None else match_predictions(table, preds)
    chosen = matched.chosen
    found = pd.Series(preds["pred_text"].to_numpy(dtype=object)[np.maximum(chosen, 0)], dtype=object)
    found[chosen < 0] = None
    unmatched = int((chosen < 0).sum())
    if unmatched == len(table):
        if matched.ambiguous:
            raise ambiguity_error(preds_path, main_path, matched.ambiguous[0])
        raise no_prediction_matches(preds_path, main_path, table["audio_filepath"].iloc[0],
                                    preds["audio_filepath"].iloc[0])
    return found.astype(pd.StringDtype("pyarrow")), unmatched


# A line's channel key when it names no audio_channel (every channel, mixed).
NO_CHANNEL = -1.0
# The key of a list of channels (their mean, a MultiCut of a microphone array) is this plus the
# bitmask of its channels: exact in a float64 for channels 0..51, above every single channel, and
# the same for [0, 1] and [1, 0] (the same audio). A list naming a channel past 51 (no array
# known has so many) gets a code below _LIST_CODE instead, equal for equal sets, as a bad value does.
LIST_KEY_BASE = float(2 ** 52)
_MASK_CHANNELS = 52
_LIST_CODE = -float(2 ** 33)


def channel_keys(pieces: Sequence[Piece]) -> np.ndarray | None:
    """Each line's ``audio_channel`` as a merge key (None when no line has one), by
    :func:`sde.audio.channel_selection`'s rule: the channel number (``1``, ``1.0``, ``"1"``, ``[1]``
    alike); for a list of channels (their mean) a key of its set of channels (:data:`LIST_KEY_BASE`:
    ``[0, 1]``, ``[1, 0]`` and ``"[0, 1]"`` alike, and another line than channel 0's or the mix's);
    :data:`NO_CHANNEL` where the line has none; and for a value sde cannot read (``"left"``, ``1.5``,
    ``[0, 0]``) a negative code of that value's JSON text, so that it matches only the same value:
    the line is refused when its audio is read, not here."""
    columns = [p.cols.get("audio_channel") for p in pieces]
    if all(c is None for c in columns):
        return None
    return np.concatenate([np.full(piece.n, NO_CHANNEL) if column is None else channel_key_array(column)
                           for piece, column in zip(pieces, columns)])


def channel_key_array(values: pa.Array | pa.ChunkedArray | np.ndarray | pd.Series) -> np.ndarray:
    """:func:`channel_keys` of one column (an Arrow one, or a table's ``audio_channel``)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)) and pa.types.is_integer(values.type):
        # the usual case (a Lhotse source's rows): no Python per line
        missing = np.asarray(values.is_null(), dtype=bool)
        keys = pc.fill_null(values.cast(pa.int64()), 0).to_numpy(zero_copy_only=False).astype(np.float64)
        negative = (keys < 0) & ~missing
        keys[negative] = [_invalid_key(int(v)) for v in keys[negative]]
        keys[missing] = NO_CHANNEL
        return keys
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        items = values.to_pylist()
    elif isinstance(values, pd.Series):
        items = values.astype(object).tolist()
    else:
        items = list(values)
    return np.array([_channel_key(v) for v in items], dtype=np.float64)


def _channel_key(value: object) -> float:
    # sde.audio is imported only for files that name channels: its import costs every start
    from sde.audio.io import AudioError, channel_selection

    try:
        selected = channel_selection(value)
    except AudioError:
        return _invalid_key(value)
    if selected is None:
        return NO_CHANNEL
    if isinstance(selected, tuple):
        if max(selected) < _MASK_CHANNELS:
            return LIST_KEY_BASE + float(sum(1 << c for c in selected))
        return _LIST_CODE - zlib.crc32(json.dumps(list(selected)).encode())
    return float(selected)


def channel_key_text(key: float) -> str:
    """A channel key as a message says it: ``1``, or ``[0, 1]`` for a list's."""
    if key >= LIST_KEY_BASE:
        mask = int(key - LIST_KEY_BASE)
        return "[" + ", ".join(str(c) for c in range(_MASK_CHANNELS) if mask >> c & 1) + "]"
    return str(int(key))


def _invalid_key(value: object) -> float:
    if value is None:
        return NO_CHANNEL
    return -2.0 - zlib.crc32(json.dumps(value, sort_keys=True, default=str).encode())


def _shards(frame: pd.DataFrame) -> np.ndarray:
    """The frame's ``shard`` column (NaN where a line names none), all NaN without one."""
    if "shard" not in frame.columns:
        return np.full(len(frame), np.nan)
    return frame["shard"].to_numpy(dtype=np.float64)


def _channels(frame: pd.DataFrame) -> np.ndarray:
    """The frame's ``channel`` keys (:func:`channel_keys`), all NO_CHANNEL without one."""
    if "channel" not in frame.columns:
        return np.full(len(frame), NO_CHANNEL)
    return frame["channel"].to_numpy(dtype=np.float64)


# What a prediction may lack that tells lines of one path and offset apart (Ambiguity.kind), in
# the order a prediction lacking several is said.
AMBIGUITY_KINDS = ("shard", "channel", "mixed")


@dataclass(frozen=True)
class Ambiguity:
    """Predictions left unused because several lines fit them (``kind``: "shard": no shard_id for
    a member name in several tars; "channel": no audio_channel for a file and offset on several
    channels; "mixed": an audio_channel for lines that mix every channel, with several channels
    predicted): how many, and the first (its line, audio file, offset, what the lines have)."""

    kind: str
    count: int
    line: int
    path: str
    offset: float
    values: tuple[int, ...]  # the shards, or channels, the lines (predictions, for "mixed") have


def ambiguity_error(preds_path: str, main_path: str, ambiguity: Ambiguity) -> ManifestError:
    """No line has a prediction because each fits several (sde.build's match says it the same way)."""
    return ManifestError(f"{_ambiguity_problem(preds_path, ambiguity)}; no line of {main_path} has a prediction")


def _ambiguity_problem(predictions: str | Path, a: Ambiguity) -> Problem:
    shown = [str(v) if a.kind == "shard" else channel_key_text(v) for v in a.values]
    listed = f"{', '.join(shown[:-1])} and {shown[-1]}" if len(shown) > 1 else "".join(shown)
    lines = f"{_lines(a.count)} of {predictions} {'names' if a.count == 1 else 'name'}"
    first = f"(the first is here: {a.path!r} at {a.offset:g} s"
    if a.kind == "shard":
        reason = (f"{lines} no shard_id while the manifest has their member name and offset in several tar "
                  f"shards {first}, in shards {listed}): which shard's audio each transcribes is unknown, so "
                  "none is used; write each prediction's shard_id as the tarred manifest has it (NeMo's "
                  "transcription of a tarred manifest keeps it) and load again")
    elif a.kind == "channel":
        reason = (f"{lines} no audio_channel while the manifest has their audio file and offset on several "
                  f"channels {first}, on channels {listed}): which side each transcribes is unknown, so none "
                  "is used; write each prediction's audio_channel as the manifest has it (sde transcribe "
                  "keeps it) and load again")
    else:
        reason = (f"{lines} an audio_channel while the manifest's line of their audio file and offset has none "
                  f"(it mixes every channel) and the predictions name several {first}, channels {listed}): which "
                  "one is its transcript is unknown, so none is used; load the manifest the predictions were "
                  "made from (with its audio_channel), or predictions of the whole file")
    return Problem(str(predictions), a.line, reason)


@dataclass(frozen=True)
class PredictionMatch:
    chosen: np.ndarray   # per line: the row in preds of its prediction, -1 where none
    usable: np.ndarray   # per prediction: whether some line takes it by its key (repeats included)
    several: np.ndarray  # per prediction: unused because several lines fit it
    ambiguous: tuple[Ambiguity, ...]


def match_predictions(table: pd.DataFrame, preds: pd.DataFrame) -> PredictionMatch:
    """Each line's prediction (see merge_predictions), the predictions some line takes, and those
    several lines fit: made once for merge_predictions and predictions_use alike."""
    n, n_preds = len(table), len(preds)
    m_off, p_off = table["offset"].round(6).to_numpy(np.float64), preds["offset"].round(6).to_numpy(np.float64)
    m_shard, p_shard = _shards(table), _shards(preds)
    m_channel, p_channel = _channels(table), _channels(preds)
    lines = np.asarray(preds["line"], dtype=np.int64) if "line" in preds.columns else np.arange(1, n_preds + 1)
    chosen = np.full(n, -1, dtype=np.int64)
    usable = np.zeros(n_preds, dtype=bool)
    # why a prediction fits several lines, the first of AMBIGUITY_KINDS of any of its pairs (0: it does not)
    flagged = np.full(n_preds, len(AMBIGUITY_KINDS), dtype=np.int64)
    last_of = np.arange(n_preds)  # each prediction's last repeat (by the path as written)
    passes: list[tuple[pd.DataFrame, np.ndarray, np.ndarray]] = []  # (pairs, their prediction, their reason)
    for column in ("audio_filepath", "audio_path"):
        main = pd.DataFrame({"row": np.arange(n), "k": table[column].to_numpy(dtype=object), "o": m_off,
                             "s_m": m_shard, "c_m": m_channel})
        # how many shards hold a name and offset, and how many channel keys a member's lines have:
        # a prediction without the key that tells them apart fits several
        main["shards"] = (main.groupby(["k", "o"], sort=False, dropna=False)["s_m"].transform("nunique")
                          if not np.isnan(m_shard).all() else 0)
        main["channels"] = (main.groupby(["s_m", "k", "o"], sort=False, dropna=False)["c_m"].transform("nunique")
                            if (m_channel != NO_CHANNEL).any() else 1)
        # a repeat of a key is never better than its last: only the last of each is a candidate
        pred = pd.DataFrame({"k": preds[column].to_numpy(dtype=object), "o": p_off, "s_p": p_shard,
                             "c_p": p_channel})
        group = pred.groupby(["k", "o", "s_p", "c_p"], sort=False, dropna=False).ngroup().to_numpy()
        last = pd.Series(np.arange(n_preds)).groupby(group).transform("max").to_numpy()
        if column == "audio_filepath":
            last_of = last
        pred["seq"] = np.arange(n_preds)
        cand = main.merge(pred[last == np.arange(n_preds)], on=["k", "o"], how="inner", sort=False)
        if cand.empty:
            continue
        s_m, s_p, c_m, c_p = (cand[c].to_numpy() for c in ("s_m", "s_p", "c_m", "c_p"))
        shards, channels = cand["shards"].to_numpy(), cand["channels"].to_numpy()
        same_shard = s_m == s_p
        shard_ok = np.isnan(s_m) | same_shard | (shards <= 1)
        shard_unclear = ~shard_ok & np.isnan(s_p)
        named = np.where(c_p != NO_CHANNEL, c_p, np.nan)
        predicted = (pd.Series(named).groupby(cand["row"].to_numpy()).transform("nunique").to_numpy()
                     if (c_p != NO_CHANNEL).any() else np.zeros(len(cand)))
        m_named, p_named = c_m != NO_CHANNEL, c_p != NO_CHANNEL
        same_channel = c_m == c_p
        channel_ok = (same_channel | (m_named & ~p_named & (channels == 1))
                      | (~m_named & p_named & (channels == 1) & (predicted == 1)))
        channel_unclear = ~channel_ok & ~(m_named & p_named)
        ok = shard_ok & channel_ok
        seq = cand["seq"].to_numpy()
        # a repeat stands or falls with the last of its key (it is said as a repeat)
        usable |= np.isin(last, seq[ok])
        reason = np.where(shard_unclear & (channel_ok | channel_unclear), 0,
                          np.where(channel_unclear & shard_ok, np.where(m_named, 1, 2), len(AMBIGUITY_KINDS)))
        np.minimum.at(flagged, seq, reason)
        passes.append((cand, seq, reason))
        rows = cand["row"].to_numpy()
        take = ok & (chosen[rows] < 0)
        if take.any():
            # the line's own shard, then its own channel, then the latest
            best = pd.DataFrame({"row": rows[take], "r1": (~same_shard)[take], "r2": (~same_channel)[take],
                                 "seq": -seq[take]}).sort_values(["row", "r1", "r2", "seq"], kind="stable")
            best = best.drop_duplicates("row", keep="first")
            chosen[best["row"].to_numpy()] = -best["seq"].to_numpy()
    # a prediction some line takes is no ambiguity, whatever other lines it also fits
    flagged[usable] = len(AMBIGUITY_KINDS)
    several = np.isin(last_of, np.flatnonzero(flagged < len(AMBIGUITY_KINDS))) & ~usable
    ambiguous = []
    for code, kind in enumerate(AMBIGUITY_KINDS):
        which = np.flatnonzero(flagged == code)
        if not len(which):
            continue
        first = int(which[0])
        cand, at = next((cand, cand.iloc[int(np.flatnonzero((seq == first) & (reason == code))[0])])
                        for cand, seq, reason in passes if ((seq == first) & (reason == code)).any())
        if kind == "mixed":
            same = cand[(cand["row"] == at["row"]) & (cand["c_p"] != NO_CHANNEL)]["c_p"]
        else:
            group = cand[(cand["k"] == at["k"]) & (cand["o"] == at["o"])]
            if kind == "channel":  # of the member's own shard (or of lines without one)
                group = group[group["s_m"].isna() if np.isnan(at["s_m"]) else group["s_m"] == at["s_m"]]
            same = group["s_m" if kind == "shard" else "c_m"]
        values = tuple(sorted({int(v) for v in same.dropna() if v >= 0}))
        ambiguous.append(Ambiguity(kind, len(which), int(lines[first]), str(preds["audio_filepath"].iloc[first]),
                                   float(p_off[first]), values))
    return PredictionMatch(chosen, usable, several, tuple(ambiguous))


@dataclass(frozen=True)
class PredictionsUse:
    """What of a predictions file went unused: its lines that repeat an earlier line's audio file,
    offset, channel and shard (the last of each is used: a file of two runs appended is the usual
    cause), those that match no line of the manifest (predictions of another manifest, or paths
    written otherwise), and those several lines fit (:class:`Ambiguity`); for each, how many and
    the first (its line, audio file, offset; for a repeat, the line it repeats)."""

    repeated: int = 0
    first_repeat: tuple[int, str, float, int] | None = None
    unmatched: int = 0
    first_unmatched: tuple[int, str, float] | None = None
    ambiguous: tuple[Ambiguity, ...] = ()

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
        out += [_ambiguity_problem(predictions, a) for a in self.ambiguous]
        return out


def _lines(n: int) -> str:
    return f"{n:,} {'line' if n == 1 else 'lines'}"


def predictions_use(preds: pd.DataFrame, table: pd.DataFrame, matched: PredictionMatch | None = None) -> PredictionsUse:
    """What of ``preds`` (a predictions file's audio_filepath, audio_path, offset, line, maybe
    shard and channel) the lines of ``table`` (audio_filepath, audio_path, offset, maybe shard and
    channel) leave unused; a prediction is matched as merge_predictions matches it."""
    keys = pd.DataFrame({"s": _shards(preds), "c": _channels(preds),
                         "k": preds["audio_filepath"].astype(str).to_numpy(dtype=object),
                         "o": preds["offset"].round(6).to_numpy(dtype=np.float64)})
    lines = np.asarray(preds["line"], dtype=np.int64)
    use: dict[str, Any] = {}
    later = keys.duplicated(["s", "k", "o", "c"], keep="first").to_numpy()
    if later.any():
        row = int(np.flatnonzero(later)[0])
        group = keys.groupby(["s", "k", "o", "c"], dropna=False, sort=False).ngroup().to_numpy()
        earlier = int(np.flatnonzero(group == group[row])[0])
        use.update(repeated=int(later.sum()),
                   first_repeat=(int(lines[row]), keys["k"][row], float(keys["o"][row]), int(lines[earlier])))
    matched = matched if matched is not None else match_predictions(table, preds)
    unused = ~matched.usable & ~matched.several  # those several lines fit are said as such, not twice
    if unused.any():
        row = int(np.flatnonzero(unused)[0])
        use.update(unmatched=int(unused.sum()), first_unmatched=(int(lines[row]), keys["k"][row], float(keys["o"][row])))
    return PredictionsUse(**use, ambiguous=matched.ambiguous)


def no_prediction_matches(preds_path: str, main_path: str, example: str, p_example: str) -> ManifestError:
    return ManifestError(
        f"{preds_path}: no line matches {main_path}: predictions are matched by audio_filepath "
        f"(as written or resolved) and offset, e.g. {main_path} has {example!r} while "
        f"{preds_path} has {p_example!r}; use the manifest that was transcribed, or --audio-base-path")


def no_predictions(preds_path: str | Path) -> ManifestError:
    """The error for a predictions file whose valid lines all lack pred_text: nothing to merge."""
    return ManifestError(
        f"{preds_path}: no line has a pred_text, so there is no prediction to merge (a model's output "
        "line has none where its audio could not be read): transcribe again where the audio can be read "
        "(sde transcribe --audio-base-path), or give the output manifest of a run that read it")


def with_predictions(preds: pd.DataFrame, preds_path: str | Path) -> pd.DataFrame:
    """The lines of a predictions file that hold a prediction: a line without pred_text (audio the
    model could not read) is none, so the line it matches is left without one, as unmatched lines
    are. Raises :func:`no_predictions` when none is left."""
    kept = preds["pred_text"].notna().to_numpy(dtype=bool)
    if not kept.any():
        raise no_predictions(preds_path)
    return preds if kept.all() else preds[kept].reset_index(drop=True)


def predictions_field(present: Collection[str], predictions: str | Path) -> HypothesisField:
    """The hypothesis a predictions file becomes: ``pred_text``, or ``pred_text_<file stem>`` when
    the manifest has a pred_text of its own (``present``: the manifest's fields)."""
    if "pred_text" not in present:
        return HypothesisField("pred_text", "")
    stem = predictions_stem(predictions)
    name, k = f"pred_text_{stem}", 2
    while name in present:
        name, k = f"pred_text_{stem}_{k}", k + 1
    return HypothesisField(name, name[len("pred_text_"):])


def predictions_stem(predictions: str | Path) -> str:
    """What names a predictions file's hypothesis (``pred_text_<stem>``): its file name's stem."""
    return re.sub(r"\W+", "_", Path(predictions).stem).strip("_") or "predictions"


def predictions_fields(present: Collection[str], predictions: Sequence[str | Path]) -> list[HypothesisField]:
    """The hypotheses predictions files become, in order: one file as :func:`predictions_field`
    names it (``pred_text`` where the manifest has none); several each ``pred_text_<its stem>``, so
    that every model compared is named by its file (a ``pred_text`` among them would not say which
    model it is), as if the earlier ones were fields of the manifest."""
    named = set(present) if len(predictions) < 2 else {*present, "pred_text"}
    fields: list[HypothesisField] = []
    for path in predictions:
        fields.append(predictions_field({*named, *(f.field for f in fields)}, path))
    return fields


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
