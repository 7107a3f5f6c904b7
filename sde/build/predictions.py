"""``--predictions`` for a dataset built part by part: the predictions file matched once to every
line, in bounded memory, then handed to each part as its lines' predictions.

1. Each part's lines are read (worker processes) for what a prediction is matched by: the audio
   path as written and as resolved, and the offset (``keys-NNNNN.parquet``), and for the fields
   they have (the hypothesis is ``pred_text`` unless the manifest has one: see predictions_field).
   The predictions file is read in parts the same way (``preds-NNNNN.parquet``).
2. DuckDB joins them, spilling to disk beyond its memory limit: a line gets the last prediction
   with its audio path as written and its offset, else the last with its resolved path (as
   sde.manifest.hypotheses.merge_predictions does for a one-piece read). Each part's predictions
   go to ``part-NNNNN.predicted.arrow`` in line order; ``predictions.plan`` is written last, so a
   build interrupted before it matches again, and one interrupted after reuses the match.
"""

from __future__ import annotations

import pickle
import time
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
from sde.manifest.hypotheses import (MatchedPredictions, PredictionsUse, no_prediction_matches, predictions_field,
                                    unmatched_warning)
from sde.manifest.paths import base_dir
from sde.manifest.pieces import Spec
from sde.workers import run_unordered


@dataclass(frozen=True)
class PredictionsPlan:
    """The predictions file matched to the whole dataset: what the parts and the join need."""

    predictions: str            # the file, as given
    parts: tuple[Part, ...]     # the parts it was matched to
    field: HypothesisField      # the hypothesis the predictions become
    rows: int                   # valid lines of the manifest
    unmatched: int              # of them, lines without a prediction
    first_unmatched: tuple[str, int] | None  # (manifest, line) of the first
    problems: tuple[Problem, ...]  # the predictions file's bad lines
    version: str = __version__
    use: PredictionsUse = PredictionsUse()  # its lines repeated or matching no line

    def warnings(self) -> list[Problem]:
        """The notes a one-piece read gives: lines without a prediction, predictions unused."""
        out = []
        if self.unmatched and self.first_unmatched is not None:
            shown, line = self.first_unmatched
            out.append(unmatched_warning(shown, line, self.unmatched, self.rows, self.predictions, self.field.field))
        return out + self.use.warnings(self.predictions)


def plan_file(folder: Path) -> Path:
    return folder / "predictions.plan"


def predicted_file(folder: Path, index: int) -> Path:
    return folder / f"part-{index:05d}.predicted.arrow"


def matched_predictions(folder: Path, index: int) -> MatchedPredictions:
    """Part ``index``'s predictions (in a worker building the part)."""
    plan = read_plan(folder)
    if plan is None:
        raise RuntimeError(f"{folder}: the predictions were not matched before the parts were built")
    with pa.memory_map(str(predicted_file(folder, index)), "r") as source:
        values = pa.ipc.open_file(source).read_all().column(0)
    return MatchedPredictions(plan.field, values)


def read_plan(folder: Path, parts: list[Part] | None = None, predictions: str | None = None) -> PredictionsPlan | None:
    """The plan of an earlier match of these parts and predictions (any, when not given), or None."""
    try:
        plan = pickle.loads(plan_file(folder).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
        return None
    if not isinstance(plan, PredictionsPlan) or plan.version != __version__:
        return None
    if parts is not None and (plan.parts != tuple(parts) or plan.predictions != predictions):
        return None
    if not all(predicted_file(folder, i).exists() for i in range(len(plan.parts))):
        return None
    return plan


def match_predictions(parts: list[Part], options: DatasetOptions, folder: Path, *, threads: int = 1,
                      part_bytes: int = PART_BYTES, memory_limit: str | None = None,
                      say: Callable[[str], None] = lambda _msg: None) -> PredictionsPlan:
    """Match ``options.predictions`` to every line of ``parts`` (see the module docstring); raises
    ManifestError as a one-piece read would (--strict's first bad line, a predictions file without
    a valid line, one that matches no line)."""
    predictions = str(options.predictions)
    found = read_plan(folder, parts, predictions)
    if found is not None:
        return found
    say(f"matching the predictions in {predictions} to the manifest's lines")
    started = time.monotonic()
    pred_parts = split_lines(predictions, part_bytes)
    jobs = [("keys", folder, i, part, options) for i, part in enumerate(parts)]
    jobs += [("preds", folder, i, lines, options) for i, lines in enumerate(pred_parts)]
    results = {(r.kind, r.index): r for r in run_unordered(_read_job, jobs, threads)}
    keys = [results["keys", i] for i in range(len(parts))]
    preds = [results["preds", i] for i in range(len(pred_parts))]
    # --strict: the manifest's first bad line, then the predictions file's (a one-piece read's order)
    failed = next((r for r in keys + preds if r.error), None)
    if failed is not None:
        raise ManifestError(failed.error or "")
    rows = sum(r.rows for r in keys)
    problems = tuple(q for r in preds for q in r.problems)
    present = {f for r in keys for f in r.fields}
    field = predictions_field(present, predictions)
    if rows and not any(r.rows for r in preds):
        read_file(predictions, Spec(predictions=True), options.strict, False)  # raises its one-piece error
    joined = _joined(folder, [r for r in keys if r.rows], [r for r in preds if r.rows], len(parts),
                     memory_limit, threads) if rows else _Joined(0, None, None, None)
    if rows and joined.unmatched == rows:
        raise no_prediction_matches(predictions, parts[0].shown, joined.first_written, joined.first_prediction)
    plan = PredictionsPlan(predictions, tuple(parts), field, rows, joined.unmatched, joined.first_unmatched, problems,
                           use=joined.use)
    write_atomic(plan_file(folder), pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
    for r in keys + preds:
        r.path(folder).unlink(missing_ok=True)
    say(f"matched: {rows - plan.unmatched:,} of {rows:,} lines have a prediction ({time.monotonic() - started:.1f} s)")
    return plan


@dataclass(frozen=True)
class _Read:
    """One job's result: a part's keys, or a part of the predictions file."""

    kind: str  # "keys" | "preds"
    index: int
    rows: int = 0
    fields: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    error: str | None = None
    sharded: bool = False  # some line names a tar shard

    def path(self, folder: Path) -> Path:
        return folder / f"{self.kind}-{self.index:05d}.parquet"


def _read_job(job: tuple) -> _Read:
    kind, folder, index, what, options = job
    return _part_keys(folder, index, what, options) if kind == "keys" else _prediction_part(folder, index, what, options)


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
    result = _Read("keys", index, rows=len(table), fields=tuple(m.fields), sharded=bool((~np.isnan(shards)).any()))
    if len(table):
        shown = table["source"].astype(str) if "source" in table.columns else pd.Series(m.shown, index=table.index)
        write_parquet(result.path(folder), pd.DataFrame({
            "part": np.full(len(table), index, dtype=np.int64), "row": np.arange(len(table), dtype=np.int64),
            "line": table["line"].to_numpy(dtype=np.int64), "shown": shown.to_numpy(dtype=object),
            "k": table["audio_filepath"].astype(str).to_numpy(dtype=object),
            "p": table["audio_path"].astype(str).to_numpy(dtype=object),
            "o": table["offset"].round(6).to_numpy(dtype=np.float64),
            "s": shards}))
    return result


def _prediction_part(folder: Path, index: int, lines: ManifestPart, options: DatasetOptions) -> _Read:
    """Some lines of the predictions file: audio path (as written, resolved), offset, pred_text."""
    predictions = str(options.predictions)
    try:
        pieces, state, _ = read_file(predictions, Spec(predictions=True), options.strict, False, part=lines,
                                     allow_empty=True)
    except ManifestError as e:
        return _Read("preds", index, error=str(e))
    shards = shard_column(pieces)
    result = _Read("preds", index, rows=sum(p.n for p in pieces), problems=tuple(state.problems),
                   sharded=bool((~np.isnan(shards)).any()))
    if result.rows:
        keys = core_frame(pieces, base_dir(predictions, options.audio_base_path))
        write_parquet(result.path(folder), pd.DataFrame({
            "seq": np.asarray(keys["line"], dtype=np.int64),
            "k": pd.Series(keys["audio_filepath"]).astype(str).to_numpy(dtype=object),
            "p": pd.Series(keys["audio_path"]).astype(str).to_numpy(dtype=object),
            "o": pd.Series(keys["offset"]).round(6).to_numpy(dtype=np.float64),
            "pred": pd.arrays.ArrowStringArray(string_column(pieces, "pred_text")),
            "s": shards}))
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

# Where both the lines and the predictions name tar shards (s: NeMo tarred audio, whose tars may
# each hold a member of one name), a line takes first the last prediction of its shard, member and
# offset; a prediction of another shard (or none) then matches by path as above, but a name that
# lines of several shards share (shared_k, shared_p) takes only predictions naming no shard
# (sde.manifest.hypotheses.merge_predictions).
_SHARDED = """
preds AS (SELECT seq, k, p, o, pred, CASE WHEN isnan(s) THEN NULL ELSE s END AS s FROM read_parquet($preds)),
keys AS (SELECT *, s IS NOT NULL AND count(*) OVER (PARTITION BY k, o) > 1 AS shared_k,
                s IS NOT NULL AND count(*) OVER (PARTITION BY p, o) > 1 AS shared_p
         FROM (SELECT part, row, line, shown, k, p, o, CASE WHEN isnan(s) THEN NULL ELSE s END AS s
               FROM read_parquet($keys)))
"""
_MATCH_SHARDED_SQL = f"""
CREATE TABLE matched AS
WITH {_SHARDED},
     in_shard AS (SELECT s, k, o, arg_max(pred, seq) AS pred FROM preds WHERE s IS NOT NULL GROUP BY s, k, o),
     written AS (SELECT k, o, arg_max(pred, seq) AS pred FROM preds GROUP BY k, o),
     written_plain AS (SELECT k, o, arg_max(pred, seq) AS pred FROM preds WHERE s IS NULL GROUP BY k, o),
     resolved AS (SELECT p, o, arg_max(pred, seq) AS pred FROM preds GROUP BY p, o),
     resolved_plain AS (SELECT p, o, arg_max(pred, seq) AS pred FROM preds WHERE s IS NULL GROUP BY p, o)
SELECT m.part, m.row, m.line, m.shown, m.k,
       coalesce(i.pred, CASE WHEN m.shared_k THEN wp.pred ELSE w.pred END,
                CASE WHEN m.shared_p THEN rp.pred ELSE r.pred END) AS pred
FROM keys AS m
LEFT JOIN in_shard AS i ON m.s = i.s AND m.k = i.k AND m.o IS NOT DISTINCT FROM i.o
LEFT JOIN written AS w ON m.k = w.k AND m.o IS NOT DISTINCT FROM w.o
LEFT JOIN written_plain AS wp ON m.k = wp.k AND m.o IS NOT DISTINCT FROM wp.o
LEFT JOIN resolved AS r ON m.p = r.p AND m.o IS NOT DISTINCT FROM r.o
LEFT JOIN resolved_plain AS rp ON m.p = rp.p AND m.o IS NOT DISTINCT FROM rp.o
ORDER BY m.part, m.row
"""

# The predictions left unused (PredictionsUse, as sde.manifest.hypotheses.predictions_use finds
# them in a one-piece read): lines that repeat an earlier line's shard, path as written and offset,
# and lines that match no line as _MATCH_SQL (_MATCH_SHARDED_SQL) matches them.
_REPEATS_SQL = """
WITH r AS (SELECT seq, k, o, row_number() OVER (PARTITION BY s, k, o ORDER BY seq) AS n,
                  min(seq) OVER (PARTITION BY s, k, o) AS earlier
           FROM (SELECT seq, k, o, CASE WHEN isnan(s) THEN NULL ELSE s END AS s FROM read_parquet($preds)))
SELECT (SELECT count(*) FROM r WHERE n > 1), seq, k, o, earlier FROM r WHERE n > 1 ORDER BY seq LIMIT 1
"""
_UNUSED_SQL = """
WITH keys AS (SELECT k, p, o FROM read_parquet($keys)),
     u AS (SELECT x.seq, x.k, x.o FROM read_parquet($preds) AS x
           WHERE NOT EXISTS (SELECT 1 FROM keys AS m WHERE m.k = x.k AND m.o IS NOT DISTINCT FROM x.o)
             AND NOT EXISTS (SELECT 1 FROM keys AS m WHERE m.p = x.p AND m.o IS NOT DISTINCT FROM x.o))
SELECT (SELECT count(*) FROM u), seq, k, o FROM u ORDER BY seq LIMIT 1
"""
_UNUSED_SHARDED_SQL = f"""
WITH {_SHARDED},
     u AS (SELECT x.seq, x.k, x.o FROM preds AS x
           WHERE NOT EXISTS (SELECT 1 FROM keys AS m WHERE m.s = x.s AND m.k = x.k AND m.o IS NOT DISTINCT FROM x.o)
             AND NOT EXISTS (SELECT 1 FROM keys AS m WHERE m.k = x.k AND m.o IS NOT DISTINCT FROM x.o
                                                       AND (x.s IS NULL OR NOT m.shared_k))
             AND NOT EXISTS (SELECT 1 FROM keys AS m WHERE m.p = x.p AND m.o IS NOT DISTINCT FROM x.o
                                                       AND (x.s IS NULL OR NOT m.shared_p)))
SELECT (SELECT count(*) FROM u), seq, k, o FROM u ORDER BY seq LIMIT 1
"""


def _joined(folder: Path, keys: list[_Read], preds: list[_Read], parts: int,
            memory_limit: str | None, threads: int) -> _Joined:
    """Join (see _MATCH_SQL) and write each part's predictions."""
    sharded = any(r.sharded for r in keys) and any(r.sharded for r in preds)
    database = folder / "predictions.duckdb"
    database.unlink(missing_ok=True)
    files = {"keys": [str(r.path(folder)) for r in keys], "preds": [str(r.path(folder)) for r in preds]}
    try:
        with build_connection(folder, memory_limit, threads, what="matching the predictions to the lines",
                              database=str(database)) as con:
            con.execute(_MATCH_SHARDED_SQL if sharded else _MATCH_SQL, files)
            for index in range(parts):
                values = con.sql("SELECT pred FROM matched WHERE part = ? ORDER BY row",
                                 params=[index]).to_arrow_table()
                write_arrow(predicted_file(folder, index),
                            pa.table({"pred": values.column(0).cast(pa.large_string())}))
            unmatched = con.execute("SELECT count(*) FROM matched WHERE pred IS NULL").fetchone()[0]
            first = con.execute("SELECT shown, line FROM matched WHERE pred IS NULL ORDER BY part, row LIMIT 1"
                                ).fetchone()
            first_written = con.execute("SELECT k FROM matched ORDER BY part, row LIMIT 1").fetchone()
            first_prediction = con.execute("SELECT k FROM read_parquet(?) ORDER BY seq LIMIT 1",
                                           [files["preds"][0]]).fetchone()
            repeat = con.execute(_REPEATS_SQL, {"preds": files["preds"]}).fetchone()
            unused = con.execute(_UNUSED_SHARDED_SQL if sharded else _UNUSED_SQL, files).fetchone()
    finally:
        database.unlink(missing_ok=True)
        Path(str(database) + ".wal").unlink(missing_ok=True)
    use = PredictionsUse(
        repeated=int(repeat[0]) if repeat else 0,
        first_repeat=(int(repeat[1]), str(repeat[2]), float(repeat[3]), int(repeat[4])) if repeat else None,
        unmatched=int(unused[0]) if unused else 0,
        first_unmatched=(int(unused[1]), str(unused[2]), float(unused[3])) if unused else None)
    return _Joined(int(unmatched), (str(first[0]), int(first[1])) if first else None,
                   first_written[0] if first_written else None, first_prediction[0] if first_prediction else None,
                   use)
