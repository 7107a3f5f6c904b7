"""``--predictions`` for a dataset built part by part: each predictions file matched once to every
line, in bounded memory, then handed to each part as its lines' predictions (one hypothesis per
file, named in order by sde.manifest.hypotheses.predictions_fields).

1. Each part's lines are read (worker processes) for what a prediction is matched by: the audio
   path as written and as resolved, and the offset (``keys-NNNNN.parquet``), and for the fields
   they have (which names the hypotheses: see predictions_fields).
   Each predictions file K is read in parts the same way (``preds-K-NNNNN.parquet``).
2. DuckDB joins them, spilling to disk beyond its memory limit: a line gets the last prediction
   with its audio path as written and its offset, else the last with its resolved path, and with
   the line's channel and tar shard where lines of one path and offset need them (as
   sde.manifest.hypotheses.merge_predictions does for a one-piece read), one file after the
   other. Each part's predictions of file K go to ``part-NNNNN.predictedK.arrow`` in line order;
   ``predictionsK.plan`` is written last, so a build interrupted before every file's plan is
   written matches again, and one interrupted after reuses the match.
"""

from __future__ import annotations

import pickle
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from sde import __version__
from sde.build.atomic import write_arrow, write_atomic, write_parquet
from sde.build.duck import build_connection
from sde.build.parts import PART_BYTES, Part, split_lines
from sde.dataset import DatasetOptions
from sde.manifest import HypothesisField, ManifestError, ManifestPart, Problem, read_manifest
from sde.manifest.columns import core_frame, shard_column, shard_numbers, string_column
from sde.manifest.files import read_file
from sde.manifest.hypotheses import (NO_CHANNEL, Ambiguity, MatchedPredictions, PredictionsUse, ambiguity_error,
                                    channel_key_array, channel_keys, no_prediction_matches, no_predictions,
                                    predictions_fields, unmatched_warning)
from sde.manifest.paths import base_dir
from sde.manifest.pieces import Spec
from sde.workers import run_unordered


@dataclass(frozen=True)
class PredictionsPlan:
    """One predictions file matched to the whole dataset: what the parts and the join need."""

    predictions: str            # the file, as given
    parts: tuple[Part, ...]     # the parts it was matched to
    field: HypothesisField      # the hypothesis the predictions become
    rows: int                   # valid lines of the manifest
    unmatched: int              # of them, lines without a prediction
    first_unmatched: tuple[str, int] | None  # (manifest, line) of the first
    problems: tuple[Problem, ...]  # the predictions file's bad lines
    version: str = __version__
    use: PredictionsUse = PredictionsUse()  # its lines repeated or matching no line
    # every --predictions file of the build, in order: the earlier ones name this one's field
    files: tuple[str, ...] = ()

    def warnings(self) -> list[Problem]:
        """The notes a one-piece read gives: lines without a prediction, predictions unused."""
        out = []
        if self.unmatched and self.first_unmatched is not None:
            shown, line = self.first_unmatched
            out.append(unmatched_warning(shown, line, self.unmatched, self.rows, self.predictions, self.field.field))
        return out + self.use.warnings(self.predictions)


def plan_file(folder: Path, which: int = 0) -> Path:
    """The plan of the ``which``-th predictions file."""
    return folder / f"predictions{which}.plan"


def predicted_file(folder: Path, index: int, which: int = 0) -> Path:
    return folder / f"part-{index:05d}.predicted{which}.arrow"


def matched_predictions(folder: Path, index: int) -> tuple[MatchedPredictions, ...]:
    """Part ``index``'s predictions, one per predictions file (in a worker building the part)."""
    first = read_plan(folder)
    if first is None:
        raise RuntimeError(f"{folder}: the predictions were not matched before the parts were built")
    out = []
    for which in range(max(1, len(first.files))):
        plan = read_plan(folder, which=which)
        if plan is None:
            raise RuntimeError(f"{folder}: the predictions were not matched before the parts were built")
        with pa.memory_map(str(predicted_file(folder, index, which)), "r") as source:
            values = pa.ipc.open_file(source).read_all().column(0)
        out.append(MatchedPredictions(plan.field, values))
    return tuple(out)


def read_plan(folder: Path, parts: list[Part] | None = None, files: tuple[str, ...] | None = None,
              which: int = 0) -> PredictionsPlan | None:
    """The plan of an earlier match of these parts and the ``which``-th of these predictions files
    (any, when not given), or None."""
    try:
        plan = pickle.loads(plan_file(folder, which).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
        return None
    if not isinstance(plan, PredictionsPlan) or plan.version != __version__:
        return None
    if parts is not None and (plan.parts != tuple(parts) or plan.files != files):
        return None
    if not all(predicted_file(folder, i, which).exists() for i in range(len(plan.parts))):
        return None
    return plan


def match_predictions(parts: list[Part], options: DatasetOptions, folder: Path, *, threads: int = 1,
                      part_bytes: int = PART_BYTES, memory_limit: str | None = None,
                      say: Callable[[str], None] = lambda _msg: None) -> tuple[PredictionsPlan, ...]:
    """Match each of ``options.predictions`` to every line of ``parts`` (see the module docstring):
    one plan per file, in order. Raises ManifestError as a one-piece read would (--strict's first
    bad line, a predictions file without a valid line, one that matches no line)."""
    files = tuple(str(p) for p in options.predictions)
    found = [read_plan(folder, parts, files, which) for which in range(len(files))]
    if all(plan is not None for plan in found):
        return tuple(plan for plan in found if plan is not None)
    say(f"matching the predictions in {', '.join(files)} to the manifest's lines")
    started = time.monotonic()
    pred_parts = [split_lines(path, part_bytes) for path in files]
    jobs = [("keys", folder, i, part, options, "") for i, part in enumerate(parts)]
    jobs += [("preds", folder, i, lines, options, path) for path, split in zip(files, pred_parts)
             for i, lines in enumerate(split)]
    results = {(r.kind, r.file, r.index): r for r in run_unordered(_read_job, jobs, threads)}
    keys = [results["keys", "", i] for i in range(len(parts))]
    preds = [[results["preds", path, i] for i in range(len(split))] for path, split in zip(files, pred_parts)]
    # --strict: the manifest's first bad line, then each predictions file's (a one-piece read's order)
    failed = next((r for r in keys if r.error), None)
    if failed is not None:
        raise ManifestError(failed.error or "")
    rows = sum(r.rows for r in keys)
    fields = predictions_fields({f for r in keys for f in r.fields}, files)
    plans = []
    for which, (path, field, file_preds) in enumerate(zip(files, fields, preds)):
        plans.append(_match_file(folder, which, path, field, parts, keys, file_preds, rows, options, files,
                                 memory_limit, threads))
    for r in keys + [r for file_preds in preds for r in file_preds]:
        r.path(folder).unlink(missing_ok=True)
    said = "; ".join(f"{rows - plan.unmatched:,} of {rows:,} lines have a prediction"
                     + (f" in {plan.predictions}" if len(plans) > 1 else "") for plan in plans)
    say(f"matched: {said} ({time.monotonic() - started:.1f} s)")
    return tuple(plans)


def _match_file(folder: Path, which: int, path: str, field: HypothesisField, parts: list[Part], keys: list[_Read],
                preds: list[_Read], rows: int, options: DatasetOptions, files: tuple[str, ...],
                memory_limit: str | None, threads: int) -> PredictionsPlan:
    """Match the ``which``-th predictions file (read in ``preds``) to the lines' ``keys``, write its plan."""
    failed = next((r for r in preds if r.error), None)
    if failed is not None:
        raise ManifestError(failed.error or "")
    problems = tuple(q for r in preds for q in r.problems)
    if rows and not any(r.rows for r in preds):
        read_file(path, Spec(predictions=True), options.strict, False)  # raises its one-piece error
        raise no_predictions(path)  # valid lines, none with a pred_text
    joined = _joined(folder, which, [r for r in keys if r.rows], [r for r in preds if r.rows], len(parts),
                     memory_limit, threads) if rows else _Joined(0, None, None, None)
    if rows and joined.unmatched == rows and joined.use.ambiguous:
        raise ambiguity_error(path, parts[0].shown, joined.use.ambiguous[0])
    if rows and joined.unmatched == rows:
        raise no_prediction_matches(path, parts[0].shown, joined.first_written, joined.first_prediction)
    plan = PredictionsPlan(path, tuple(parts), field, rows, joined.unmatched, joined.first_unmatched, problems,
                           use=joined.use, files=files)
    write_atomic(plan_file(folder, which), pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
    return plan


@dataclass(frozen=True)
class _Read:
    """One job's result: a part's keys, or a part of the predictions file."""

    kind: str  # "keys" | "preds"
    index: int
    file: str = ""  # the predictions file ("" for the manifest's keys)
    rows: int = 0
    fields: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    error: str | None = None
    sharded: bool = False  # some line names a tar shard
    channeled: bool = False  # some line names an audio_channel

    def path(self, folder: Path) -> Path:
        if self.kind == "keys":
            return folder / f"keys-{self.index:05d}.parquet"
        # several files' parts side by side: the file's position would do, but its name is stabler
        return folder / f"preds-{_file_tag(self.file)}-{self.index:05d}.parquet"


def _file_tag(path: str) -> str:
    return f"{zlib.crc32(path.encode()):08x}"


def _read_job(job: tuple) -> _Read:
    kind, folder, index, what, options, path = job
    return (_part_keys(folder, index, what, options) if kind == "keys"
            else _prediction_part(folder, index, what, options, path))


def _part_keys(folder: Path, index: int, part: Part, options: DatasetOptions) -> _Read:
    """What the lines of ``part`` are matched by, as the part's build reads them."""
    try:
        m = read_manifest(part.manifest, audio_base_path=options.audio_base_path, pred_fields=options.pred_fields,
                          strict=options.strict, part=part.lines)
    except ManifestError as e:
        return _Read("keys", index, error=str(e))
    table = m.table
    shards = (shard_numbers(pa.array(table["shard_id"])) if "shard_id" in table.columns
              else np.full(len(table), np.nan))
    channels = (channel_key_array(table["audio_channel"]) if "audio_channel" in table.columns
                else np.full(len(table), NO_CHANNEL))
    result = _Read("keys", index, rows=len(table), fields=tuple(m.fields),
                   sharded=bool((~np.isnan(shards)).any()), channeled=bool((channels != NO_CHANNEL).any()))
    if len(table):
        shown = table["source"].astype(str) if "source" in table.columns else pd.Series(m.shown, index=table.index)
        write_parquet(result.path(folder), pd.DataFrame({
            "part": np.full(len(table), index, dtype=np.int64), "row": np.arange(len(table), dtype=np.int64),
            "line": table["line"].to_numpy(dtype=np.int64), "shown": shown.to_numpy(dtype=object),
            "k": table["audio_filepath"].astype(str).to_numpy(dtype=object),
            "p": table["audio_path"].astype(str).to_numpy(dtype=object),
            "o": table["offset"].round(6).to_numpy(dtype=np.float64),
            "s": shards, "c": channels}))
    return result


def _prediction_part(folder: Path, index: int, lines: ManifestPart, options: DatasetOptions,
                     predictions: str) -> _Read:
    """Some lines of a predictions file: audio path (as written, resolved), offset, pred_text;
    those without a pred_text hold no prediction (sde.manifest.hypotheses.with_predictions)."""
    try:
        pieces, state, _ = read_file(predictions, Spec(predictions=True), options.strict, False, part=lines,
                                     allow_empty=True)
    except ManifestError as e:
        return _Read("preds", index, predictions, error=str(e))
    shards = shard_column(pieces)
    channels = channel_keys(pieces)
    if channels is None:
        channels = np.full(sum(p.n for p in pieces), NO_CHANNEL)
    frame = pd.DataFrame()
    if pieces:
        keys = core_frame(pieces, base_dir(predictions, options.audio_base_path))
        frame = pd.DataFrame({
            "seq": np.asarray(keys["line"], dtype=np.int64),
            "k": pd.Series(keys["audio_filepath"]).astype(str).to_numpy(dtype=object),
            "p": pd.Series(keys["audio_path"]).astype(str).to_numpy(dtype=object),
            "o": pd.Series(keys["offset"]).round(6).to_numpy(dtype=np.float64),
            "pred": pd.arrays.ArrowStringArray(string_column(pieces, "pred_text")),
            "s": shards, "c": channels})
        frame = frame[frame["pred"].notna().to_numpy(dtype=bool)]
    result = _Read("preds", index, predictions, rows=len(frame), problems=tuple(state.problems),
                   sharded=bool((~np.isnan(frame["s"])).any()) if len(frame) else False,
                   channeled=bool((frame["c"] != NO_CHANNEL).any()) if len(frame) else False)
    if result.rows:
        write_parquet(result.path(folder), frame)
    return result


@dataclass(frozen=True)
class _Joined:
    unmatched: int
    first_unmatched: tuple[str, int] | None
    first_written: str | None     # the manifest's first audio path (for the no-match message)
    first_prediction: str | None  # the predictions file's first
    use: PredictionsUse = PredictionsUse()


# The last prediction of each key (keep="last" of a one-piece read: the latest line wins); a line
# without one by its path as written falls back to its resolved path. IS NOT DISTINCT FROM: a
# missing offset matches a missing one, as pandas' merge matches NaN with NaN.
_MATCH_SQL = """
CREATE TABLE matched AS
WITH preds AS (SELECT * FROM read_parquet($preds)),
     written AS (SELECT k, o, arg_max(pred, seq) AS pred FROM preds GROUP BY k, o),
     resolved AS (SELECT p, o, arg_max(pred, seq) AS pred FROM preds GROUP BY p, o)
SELECT m.part, m.row, m.line, m.shown, m.k, coalesce(w.pred, r.pred) AS pred
FROM read_parquet($keys) AS m
LEFT JOIN written AS w ON m.k = w.k AND m.o IS NOT DISTINCT FROM w.o
LEFT JOIN resolved AS r ON m.p = r.p AND m.o IS NOT DISTINCT FROM r.o
ORDER BY m.part, m.row
"""

# Where the lines name tar shards or channels, or the predictions channels (as
# sde.manifest.hypotheses.merge_predictions matches them): keys and predictions are tables of the
# database, and for each path (k: as written, p: resolved) fit_<path> holds every pair of a line
# and the last prediction of a shard, path, offset and channel, with whether the prediction's shard
# and channel fit the line. A prediction of another shard, or of none, fits a name and offset that
# only one shard holds; one without a channel fits a file and offset the lines have on one channel
# only; one with a channel fits a line without one where the predictions name only that channel.
_NO = repr(float(NO_CHANNEL))
_KEYED_TABLES = [
    "CREATE TABLE preds AS SELECT seq, k, p, o, pred, CASE WHEN isnan(s) THEN NULL ELSE s END AS s, c "
    "FROM read_parquet($preds)",
    "CREATE TABLE keys AS SELECT part, row, line, shown, k, p, o, CASE WHEN isnan(s) THEN NULL ELSE s END AS s, c "
    "FROM read_parquet($keys)",
]
for _x in ("k", "p"):
    _KEYED_TABLES += [
        f"CREATE TABLE last_{_x} AS SELECT {_x}, o, s, c, max(seq) AS seq FROM preds GROUP BY {_x}, o, s, c",
        f"""CREATE TABLE fit_{_x} AS
WITH shards AS (SELECT {_x}, o, count(DISTINCT s) AS shards FROM keys GROUP BY {_x}, o),
     channels AS (SELECT s, {_x}, o, count(DISTINCT c) AS channels FROM keys GROUP BY s, {_x}, o),
     pairs AS (SELECT m.part, m.row, l.seq, l.{_x} AS x, l.o, m.s AS s_m, l.s AS s_p, m.c AS c_m, l.c AS c_p,
                      sh.shards, ch.channels
               FROM keys AS m
               JOIN last_{_x} AS l ON m.{_x} = l.{_x} AND m.o IS NOT DISTINCT FROM l.o
               JOIN shards AS sh ON m.{_x} = sh.{_x} AND m.o IS NOT DISTINCT FROM sh.o
               JOIN channels AS ch ON m.{_x} = ch.{_x} AND m.o IS NOT DISTINCT FROM ch.o
                                      AND m.s IS NOT DISTINCT FROM ch.s),
     named AS (SELECT part, row, count(DISTINCT CASE WHEN c_p <> {_NO} THEN c_p END) AS predicted
               FROM pairs GROUP BY part, row)
SELECT q.*, q.s_m IS NULL OR q.s_m IS NOT DISTINCT FROM q.s_p OR q.shards <= 1 AS shard_ok,
       q.c_m = q.c_p OR (q.c_m <> {_NO} AND q.c_p = {_NO} AND q.channels = 1)
           OR (q.c_m = {_NO} AND q.c_p <> {_NO} AND q.channels = 1 AND n.predicted = 1) AS channel_ok
FROM pairs AS q JOIN named AS n ON q.part = n.part AND q.row = n.row"""]
# A line's prediction: its own shard first, then its own channel, then the latest.
_BEST = """SELECT part, row, seq FROM (
    SELECT part, row, seq, row_number() OVER (PARTITION BY part, row ORDER BY coalesce(s_m = s_p, false) DESC,
                                              c_m = c_p DESC, seq DESC) AS n
    FROM fit_{x} WHERE shard_ok AND channel_ok) WHERE n = 1"""
_MATCH_KEYED_SQL = f"""
CREATE TABLE matched AS
WITH best_k AS ({_BEST.format(x="k")}), best_p AS ({_BEST.format(x="p")})
SELECT m.part, m.row, m.line, m.shown, m.k, coalesce(pk.pred, pp.pred) AS pred
FROM keys AS m
LEFT JOIN best_k AS bk ON m.part = bk.part AND m.row = bk.row
LEFT JOIN preds AS pk ON pk.seq = bk.seq
LEFT JOIN best_p AS bp ON m.part = bp.part AND m.row = bp.row
LEFT JOIN preds AS pp ON pp.seq = bp.seq
ORDER BY m.part, m.row
"""
# Why a pair does not fit where the prediction lacks what tells the lines apart: 1, no shard_id for
# a name in several shards; 2, no audio_channel for a file on several channels; 3, channels for a
# line that mixes them (the order of sde.manifest.hypotheses' Ambiguity kinds).
_KIND = f"""CASE WHEN NOT shard_ok AND s_p IS NULL AND (channel_ok OR c_m = {_NO} OR c_p = {_NO}) THEN 1
     WHEN NOT channel_ok AND (c_m = {_NO} OR c_p = {_NO}) AND shard_ok THEN CASE WHEN c_m <> {_NO} THEN 2 ELSE 3 END
END"""
_SEVERAL = f"""
ok AS (SELECT seq FROM fit_k WHERE shard_ok AND channel_ok UNION SELECT seq FROM fit_p WHERE shard_ok AND channel_ok),
several AS (SELECT seq, min(kind) AS kind
            FROM (SELECT seq, {_KIND} AS kind FROM fit_k UNION ALL SELECT seq, {_KIND} AS kind FROM fit_p)
            WHERE kind IS NOT NULL AND seq NOT IN (SELECT seq FROM ok) GROUP BY seq)
"""
_UNUSED_KEYED_SQL = f"""
WITH {_SEVERAL},
     mapped AS (SELECT x.seq, x.k, x.o, lk.seq AS last_k, lp.seq AS last_p FROM preds AS x
                LEFT JOIN last_k AS lk ON x.k = lk.k AND x.o IS NOT DISTINCT FROM lk.o
                                          AND x.s IS NOT DISTINCT FROM lk.s AND x.c = lk.c
                LEFT JOIN last_p AS lp ON x.p = lp.p AND x.o IS NOT DISTINCT FROM lp.o
                                          AND x.s IS NOT DISTINCT FROM lp.s AND x.c = lp.c),
     u AS (SELECT m.seq, m.k, m.o FROM mapped AS m
           WHERE NOT EXISTS (SELECT 1 FROM ok WHERE ok.seq = m.last_k)
             AND NOT EXISTS (SELECT 1 FROM ok WHERE ok.seq = m.last_p)
             AND NOT EXISTS (SELECT 1 FROM several AS v WHERE v.seq = m.last_k))
SELECT (SELECT count(*) FROM u), seq, k, o FROM u ORDER BY seq LIMIT 1
"""
_SEVERAL_SQL = f"WITH {_SEVERAL} SELECT kind, count(*), min(seq) FROM several GROUP BY kind ORDER BY kind"
_AMBIGUITY_KINDS = {1: "shard", 2: "channel", 3: "mixed"}

# The predictions left unused (PredictionsUse, as sde.manifest.hypotheses.predictions_use finds
# them in a one-piece read): lines that repeat an earlier line's shard, path as written, offset and
# channel, and lines that match no line as _MATCH_SQL (_MATCH_KEYED_SQL) matches them.
_REPEATS_SQL = """
WITH r AS (SELECT seq, k, o, row_number() OVER (PARTITION BY s, k, o, c ORDER BY seq) AS n,
                  min(seq) OVER (PARTITION BY s, k, o, c) AS earlier
           FROM (SELECT seq, k, o, c, CASE WHEN isnan(s) THEN NULL ELSE s END AS s FROM read_parquet($preds)))
SELECT (SELECT count(*) FROM r WHERE n > 1), seq, k, o, earlier FROM r WHERE n > 1 ORDER BY seq LIMIT 1
"""
_UNUSED_SQL = """
WITH keys AS (SELECT k, p, o FROM read_parquet($keys)),
     u AS (SELECT x.seq, x.k, x.o FROM read_parquet($preds) AS x
           WHERE NOT EXISTS (SELECT 1 FROM keys AS m WHERE m.k = x.k AND m.o IS NOT DISTINCT FROM x.o)
             AND NOT EXISTS (SELECT 1 FROM keys AS m WHERE m.p = x.p AND m.o IS NOT DISTINCT FROM x.o))
SELECT (SELECT count(*) FROM u), seq, k, o FROM u ORDER BY seq LIMIT 1
"""


def _ambiguities(con) -> tuple[Ambiguity, ...]:
    """The predictions several lines fit (after _KEYED_TABLES): per kind, how many and the first,
    with the shards or channels that the lines (predictions, for "mixed") have."""
    out = []
    for kind, count, first in con.execute(_SEVERAL_SQL).fetchall():
        name = _AMBIGUITY_KINDS[int(kind)]
        pair = None
        for x in ("k", "p"):
            pair = con.execute(f"SELECT part, row, x, o, s_m FROM fit_{x} WHERE seq = ? AND ({_KIND}) = ? LIMIT 1",
                               [first, kind]).fetchone()
            if pair is not None:
                break
        values: list = []
        if pair is not None:
            part, row, path, offset, shard = pair
            if name == "shard":
                values = con.execute(f"SELECT DISTINCT s FROM keys WHERE {x} = ? AND o IS NOT DISTINCT FROM ? "
                                     "AND s IS NOT NULL", [path, offset]).fetchall()
            elif name == "channel":
                values = con.execute(f"SELECT DISTINCT c FROM keys WHERE {x} = ? AND o IS NOT DISTINCT FROM ? "
                                     "AND s IS NOT DISTINCT FROM ? AND c >= 0", [path, offset, shard]).fetchall()
            else:
                values = con.execute(f"SELECT DISTINCT c_p FROM fit_{x} WHERE part = ? AND row = ? AND c_p >= 0",
                                     [part, row]).fetchall()
        path, offset = con.execute("SELECT k, o FROM preds WHERE seq = ?", [first]).fetchone()
        out.append(Ambiguity(name, int(count), int(first), str(path), float(offset),
                             tuple(sorted(int(v[0]) for v in values))))
    return tuple(out)


def _joined(folder: Path, which: int, keys: list[_Read], preds: list[_Read], parts: int,
            memory_limit: str | None, threads: int) -> _Joined:
    """Join (see _MATCH_SQL) and write each part's predictions of the ``which``-th file."""
    # shards or channels need the keyed match; the plain join is the usual, faster case
    keyed = any(r.sharded or r.channeled for r in keys) or any(r.channeled for r in preds)
    database = folder / "predictions.duckdb"
    database.unlink(missing_ok=True)
    files = {"keys": [str(r.path(folder)) for r in keys], "preds": [str(r.path(folder)) for r in preds]}
    try:
        with build_connection(folder, memory_limit, threads, what="matching the predictions to the lines",
                              database=str(database)) as con:
            if keyed:
                for statement in _KEYED_TABLES:
                    con.execute(statement, {name: paths for name, paths in files.items() if f"${name}" in statement})
            con.execute(_MATCH_KEYED_SQL if keyed else _MATCH_SQL, None if keyed else files)
            for index in range(parts):
                values = con.sql("SELECT pred FROM matched WHERE part = ? ORDER BY row",
                                 params=[index]).to_arrow_table()
                write_arrow(predicted_file(folder, index, which),
                            pa.table({"pred": values.column(0).cast(pa.large_string())}))
            unmatched = con.execute("SELECT count(*) FROM matched WHERE pred IS NULL").fetchone()[0]
            first = con.execute("SELECT shown, line FROM matched WHERE pred IS NULL ORDER BY part, row LIMIT 1"
                                ).fetchone()
            first_written = con.execute("SELECT k FROM matched ORDER BY part, row LIMIT 1").fetchone()
            first_prediction = con.execute("SELECT k FROM read_parquet(?) ORDER BY seq LIMIT 1",
                                           [files["preds"][0]]).fetchone()
            repeat = con.execute(_REPEATS_SQL, {"preds": files["preds"]}).fetchone()
            unused = con.execute(_UNUSED_KEYED_SQL).fetchone() if keyed else con.execute(_UNUSED_SQL, files).fetchone()
            ambiguous = _ambiguities(con) if keyed else ()
    finally:
        database.unlink(missing_ok=True)
        Path(str(database) + ".wal").unlink(missing_ok=True)
    use = PredictionsUse(
        repeated=int(repeat[0]) if repeat else 0,
        first_repeat=(int(repeat[1]), str(repeat[2]), float(repeat[3]), int(repeat[4])) if repeat else None,
        unmatched=int(unused[0]) if unused else 0,
        first_unmatched=(int(unused[1]), str(unused[2]), float(unused[3])) if unused else None,
        ambiguous=ambiguous)
    return _Joined(int(unmatched), (str(first[0]), int(first[1])) if first else None,
                   first_written[0] if first_written else None, first_prediction[0] if first_prediction else None,
                   use)
