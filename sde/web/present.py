"""What pages and the JSON API show of a dataset, computed once for both: JSON-safe rows, the
hypothesis and utterances a request names, and the analysis results behind the Errors and
Comparison pages and their JSON twins (cached per dataset with sde.caching, so a page and its
route give the same numbers and pay for them once).

A mistake in a request (an unknown hypothesis, a bad filter, an `error=` that is not one) is an
`ApiError(message, status)`: the API answers it as `{"error": message}` with that status
(sde.web.api registers the one handler), and pages show the message instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde import analysis
from sde.caching import for_dataset
from sde.compressed_columns import stored_column, word_index
from sde.engine import settings
from sde.metrics import align_words
from sde.filters import combine_filters
from sde.query import Clause, QueryError, format_filter
from sde.rules import unmeasured_in_filter
from sde.text import to_arrow_strings, token_numbers, word_lists
from sde.web.state import error_words, parse_error_param
from sde.word_index import word_row_counts

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.manifest import HypothesisField

DEFAULT_RESAMPLES = 1000
_COMPARE_CACHE_SIZE = 32     # a bootstrap over a million utterances takes ~0.5 s, and pages re-ask
_GROUPS_CACHE_SIZE = 8       # breakdowns kept per dataset (one int32 per utterance each)


# ---------------------------------------------------------------- a page's link parameters
# A page (sde.web.pages) cannot refuse its link as /api does with a 400: it opens with the default
# for a parameter it cannot use and says so (sde.web.components.link_notes_alert). The rules are the
# API's own (parse_int below is the one sde.web.api.respond applies to `page`).

MAX_PAGE = 10**9            # 10^12 rows at the largest page size: any larger page number is a mistake
#: Lines a Problems page shows (its warnings, and a page of its skipped lines); its JSON twin the same.
PROBLEMS_PAGE_LINES = 500
#: Missing audio files the Problems page lists (its Samples link shows every utterance); its JSON twin the same.
MISSING_AUDIO_SHOWN = 50
_INTEGER = re.compile(r"-?[0-9]+")
#: Parameters a link may repeat (/api/utterances.jsonl?drop=…&drop=…); every other one is single-valued.
MULTI_VALUED_ARGS = frozenset({"drop"})
CACHE_BUSTER = "_"          # jQuery's `cache: false` adds `_=TIMESTAMP`: taken everywhere, read nowhere


def parse_int(name: str, raw: str | None, default: int, lo: int, hi: int | None = None) -> int:
    """``raw`` as an integer in [lo, hi] (``default`` when it is absent or empty), or ApiError 400
    naming ``name``, the value and what it takes."""
    if raw is None or raw == "":
        return default
    if len(raw) > 40:  # no number this long is valid; echoing it back would mirror megabytes
        raise ApiError(f"{name} must be an integer, got {raw[:40]!r}…")
    # digits 0-9 only: int() also takes " 5", "+5", "1_0" and "５", which no link writes
    if _INTEGER.fullmatch(raw) is None:
        raise ApiError(f"{name} must be an integer written in the digits 0-9, got {raw!r}")
    value = int(raw)
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ApiError(f"{name} must be {bound}, got {value}")
    return value


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def link_notes(page: str, params: Mapping[str, str], takes: Sequence[str], search: str | None = None) -> list[str]:
    """What a page says about its link's parameters it does not use: names it does not take, and
    names given more than once (``search``: the raw query string; the page is given the last value
    of each, as ``sde.web.state.query_params`` reads it)."""
    notes = []
    for name in params:
        if name not in takes and name != CACHE_BUSTER:
            listed = f"it takes {', '.join(takes)}" if takes else "it takes no parameters"
            notes.append(f"The link's parameter {_shown(name)} (= {_shown(params[name])}) is not one the {page} "
                         f"page takes ({listed}), so it is ignored.")
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl((search or "").lstrip("?"), keep_blank_values=False):
        values.setdefault(name, []).append(value)
    for name, given in values.items():
        if len(given) > 1 and name not in MULTI_VALUED_ARGS and name in takes:
            combine = (" To select rows that match several filters, join them in one: (A) && (B), or (A) || (B)."
                       if name == "filter" else "")
            notes.append(f"The link gives {_shown(name)} {len(given)} times ({', '.join(map(_shown, given[:3]))}"
                         f"{' …' if len(given) > 3 else ''}): the last one, {_shown(given[-1])}, is used; give it "
                         f"once.{combine}")
    return notes


def int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int | None,
              notes: list[str]) -> int:
    """The integer parameter ``name`` of a page's link; ``default`` (and a note) when it is not one."""
    try:
        return parse_int(name, (params.get(name) or "").strip() or None, default, lo, hi)
    except ApiError as e:
        notes.append(f"The link's {e.message}, so {name} {default} (the default) is used.")
        return default


def choice_param(params: Mapping[str, str], name: str, choices: Sequence[str], default: str,
                 notes: list[str]) -> str:
    """The parameter ``name`` of a page's link, one of ``choices``; ``default`` (and a note) otherwise."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if value in choices:
        return value
    notes.append(f"The link's {name} must be one of {', '.join(choices)}, got {_shown(value)}, so {name}="
                 f"{default} (the default) is used.")
    return default


class ApiError(Exception):
    """A request the server cannot answer, with the HTTP status to answer it with. `fields` are
    extra keys of the JSON body (e.g. the utterance id), `headers` extra response headers."""

    def __init__(self, message: str, status: int = 400, *, fields: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": self.message, **self.fields}


# ---------------------------------------------------------------- JSON-safe rows

def records_json(df: pd.DataFrame) -> str:
    """A JSON array of row objects; NaN/NA → null, numpy scalars → JSON numbers."""
    if df.empty:
        return "[]"
    return df.to_json(orient="records", force_ascii=False, double_precision=10)


def records(df: pd.DataFrame) -> list[dict]:
    """JSON-safe row dicts (for callbacks)."""
    return json.loads(records_json(df))


def json_safe(value: Any) -> Any:
    """One value as JSON-safe Python (NaN/NA → None, numpy → builtin)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if np.isfinite(f) else None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def row_dict(df: pd.DataFrame, position: int) -> dict:
    return {col: json_safe(df[col].iat[position]) for col in df.columns}


def rounded(x: Any) -> Any:
    """A JSON-safe number: NaN/inf → None, floats rounded to 6 decimals (like /api/summary)."""
    if x is None:
        return None
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return round(f, 6) if math.isfinite(f) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def rounded_records(df: pd.DataFrame) -> list[dict]:
    """`records` with every float rounded like `rounded`."""
    rows = records(df)
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float):
                row[k] = rounded(v)
    return rows


# ---------------------------------------------------------------- one utterance

def utterance_position(dataset: "Dataset", raw_id: Any) -> int:
    """The row position of utterance `raw_id` (ids are positions among valid lines), or ApiError 404."""
    raw = str(raw_id)
    try:
        # digits only (and a minus): "+5", " 5", "5_0" and "٥" are no id the pages link to
        uid = int(raw) if len(raw) <= 40 and raw.isascii() and raw.removeprefix("-").isdigit() else None
    except ValueError:
        uid = None
    n = len(dataset.utterances)
    if uid is None or not 0 <= uid < n:
        raise ApiError(missing_utterance(raw if uid is None else uid, n), 404, fields={"utterances": n})
    return uid


def missing_utterance(raw_id: Any, n: int) -> str:
    """Why there is no utterance `raw_id`, naming it and how many utterances there are."""
    if isinstance(raw_id, int):
        shown = str(raw_id) if len(str(raw_id)) <= 40 else str(raw_id)[:40] + "…"
    else:
        raw = str(raw_id)
        shown = repr(raw) if len(raw) <= 40 else repr(raw[:40]) + "…"
    if not n:
        return f"no utterance with id {shown}: the manifest has no valid lines (0 utterances)"
    kind = "" if isinstance(raw_id, int) else "ids are whole numbers; "
    return f"no utterance with id {shown}: {kind}there are {n:,} utterances, with ids 0 to {n - 1}"


def alignment_of(dataset: "Dataset", position: int) -> dict[str, list[dict]]:
    """Per hypothesis, the word alignment of one utterance against its reference."""
    utt = dataset.utterances
    ref = utt["text"].iat[position]
    ref = "" if ref is None or ref is pd.NA else str(ref)
    out = {}
    for h in dataset.hypotheses:
        hyp = utt[h.field].iat[position]
        if hyp is None or hyp is pd.NA:  # no such field on this line: not scored, so no diff either
            out[h.field] = [{"op": "missing", "ref": None, "hyp": None,
                             "note": f"this line has no {h.field}: it is left out of that hypothesis's scores"}]
            continue
        # "unaligned" (texts too long for a word diff) carries a "note" saying so
        out[h.field] = [{"op": w.op, "ref": w.ref, "hyp": w.hyp, **({"note": w.note} if w.note else {})}
                        for w in align_words(ref, str(hyp))]
    return out


# ---------------------------------------------------------------- hypotheses

def hypothesis_of(dataset: "Dataset", name: str | None, default_index: int = 0,
                  param: str = "hyp") -> "HypothesisField":
    """The hypothesis named by a field or label; the `default_index`-th one when `name` is empty."""
    if not dataset.hypotheses:
        raise ApiError("the manifest has no hypothesis fields (pred_text…), so there are no errors to analyse; "
                       "add predictions with --predictions FILE or --pred-field F")
    if not name:
        if default_index >= len(dataset.hypotheses):
            raise ApiError(f"{param} is required: the manifest has only one hypothesis "
                           f"({dataset.hypotheses[0].field}), and a comparison needs two")
        return dataset.hypotheses[default_index]
    try:
        return dataset.hypothesis(name)
    except KeyError as e:
        message = e.args[0] if e.args else f"unknown hypothesis {name!r}"
        raise ApiError(f"{param}: {message}") from None


def resolve_hypothesis(dataset: "Dataset", name: str | None, default_index: int = 0
                       ) -> tuple["HypothesisField | None", str | None]:
    """(hypothesis, warning) for a page: an unknown name falls back to the default with a message."""
    if not dataset.hypotheses:
        return None, None
    default = dataset.hypotheses[min(default_index, len(dataset.hypotheses) - 1)]
    try:
        return hypothesis_of(dataset, name, default_index) if name else default, None
    except ApiError:
        choices = ", ".join(h.field for h in dataset.hypotheses)
        return default, (f'There is no hypothesis "{name}" in this manifest (choose one of: {choices}); '
                         f"showing {default.field}.")


def hyp_options(dataset: "Dataset") -> list[dict]:
    """The hypotheses as dropdown options: "label (field)", or the field."""
    return [{"label": h.field if not h.label else f"{h.label} ({h.field})", "value": h.field}
            for h in dataset.hypotheses]


# ---------------------------------------------------------------- selections

def select(query: Any, filter_text: str | None, sort_text: str | None) -> np.ndarray:
    """Positions of a TableQuery's rows that `filter_text` selects, sorted; ApiError for a bad one."""
    try:
        return np.asarray(query.select(filter_text or None, sort_text or None))
    except QueryError as e:
        raise ApiError(str(e)) from None


def refuse_unmeasured(columns: Any, filter_text: str | None) -> None:
    """ApiError (with the column and the option as fields) when the filter names a column that
    only a build option measures and this table lacks: the query alone would answer "Unknown
    column", or select nothing from an empty duplicate-audio group, without saying how to get it."""
    found = unmeasured_in_filter(columns, filter_text)
    if found is not None:
        raise ApiError(str(found), fields={"column": found.column, "option": found.option})


def check_filter(query: Any, text: str | None) -> str | None:
    """None when `text` is a valid filter for this table, else the message to show under the box."""
    found = unmeasured_in_filter(query.columns, text)
    if found is not None:
        return str(found)
    try:
        query.clauses(text or None)
    except QueryError as e:
        return str(e)
    return None


def selected_ids(dataset: "Dataset", filter_text: str | None) -> np.ndarray | None:
    """Utterance ids selected by a filter (None: all); ApiError for a bad filter."""
    if not filter_text or not filter_text.strip():
        return None
    refuse_unmeasured(dataset.utterances.columns, filter_text)
    return np.asarray(select(dataset.utterance_query, filter_text.strip(), None), dtype=np.int64)


def selection(dataset: "Dataset", filter_text: str | None) -> tuple[np.ndarray | None, str | None]:
    """(utterance ids or None for all, the message of an invalid filter) for a page."""
    try:
        return selected_ids(dataset, filter_text), None
    except ApiError as e:
        return None, e.message


def error_clause(dataset: "Dataset", error: str, hyp_field: str | None = None) -> str:
    """The `error=` parameter (`sub:REF:HYP`, see sde.web.state) as a clause of the filter language
    (`{error} = "sub REF HYP"` on the hypothesis's error column), so the samples grid, its CSV, the
    JSON API and the inspector's previous/next all honour it alike. ApiError for a bad value or
    an unknown hypothesis."""
    try:
        op, ref, hyp = parse_error_param(error)
    except ValueError as e:
        raise ApiError(str(e)) from None
    h = hypothesis_of(dataset, hyp_field)
    return format_filter([Clause(h.column("error"), "=", error_words(op, ref, hyp))])


def requested_filter(dataset: "Dataset", params: Mapping[str, str | None]) -> str:
    """The filter a /samples link or an /api/utterances request asks for: `filter`, with the
    Errors page's `error=…&hyp=F` folded into it. ApiError for a bad `error`."""
    text = params.get("filter") or ""
    if not params.get("error"):
        return text
    return combine_filters(error_clause(dataset, str(params["error"]), params.get("hyp")), text)


# ---------------------------------------------------------------- error analysis results

# Top-error tables are made at least this long, and a shorter one is cut from them: the Errors
# page's (200 rows), laid out in the warm-up, then answers /api/errors' default of 100 too, where a
# second count of each error's utterances took 0.6-0.8 s at 10M. Their order is total (count, then
# the words), so the first rows of a longer table are the shorter table.
ERROR_ROWS_MADE = 200


def _made_limit(limit: int | None) -> int | None:
    return None if limit is None else max(limit, ERROR_ROWS_MADE)


def _cut(frames: dict[str, pd.DataFrame], limit: int | None) -> dict[str, pd.DataFrame]:
    if limit is None or limit >= ERROR_ROWS_MADE:
        return frames
    return {kind: frame.head(limit) for kind, frame in frames.items()}


def error_frames(dataset: "Dataset", hyp: str | None, filter_text: str | None,
                 limit: int | None) -> dict[str, pd.DataFrame]:
    """The top substitutions, deletions and insertions of a hypothesis over a filter's selection,
    kept for the next requests (counting the errors of 10M utterances takes a second)."""
    h = hypothesis_of(dataset, hyp)
    text = (filter_text or "").strip()
    made = _made_limit(limit)

    def compute() -> dict[str, pd.DataFrame]:
        return analysis.top_errors(dataset.errors[h.field], utt_ids=selected_ids(dataset, text), limit=made)

    cache = for_dataset(dataset, "top-errors", _GROUPS_CACHE_SIZE, kept=1)
    return _cut(cache.get_or_compute_once((h.field, text, made), compute), limit)


def error_frames_with_utterances(dataset: "Dataset", hyp: str | None, filter_text: str | None,
                                 limit: int | None) -> dict[str, pd.DataFrame]:
    """`error_frames` with each row's `utterances`: how many distinct utterances of the selection
    have that error (the Errors page's tables), kept too: at 10M utterances counting them costs
    another second per visit."""
    h = hypothesis_of(dataset, hyp)
    text = (filter_text or "").strip()
    made = _made_limit(limit)
    frames = error_frames(dataset, h.field, text, made)

    def compute() -> dict[str, pd.DataFrame]:
        errors, ids = dataset.errors[h.field], selected_ids(dataset, text)
        return {kind: frame.assign(utterances=analysis.affected_utterances(errors, kind, frame, ids))
                for kind, frame in frames.items()}

    cache = for_dataset(dataset, "top-errors", _GROUPS_CACHE_SIZE, kept=1)
    return _cut(cache.get_or_compute_once((h.field, text, made, "utterances"), compute), limit)


def selection_totals(dataset: "Dataset", h: "HypothesisField", filter_text: str | None) -> dict[str, float]:
    """`analysis.selection_totals` of a hypothesis over a filter's selection, kept (0.4 s at 10M)."""
    text = (filter_text or "").strip()

    def compute() -> dict[str, float]:
        return analysis.selection_totals(dataset.utterances, h, selected_ids(dataset, text))

    return for_dataset(dataset, "selection-totals", _GROUPS_CACHE_SIZE, kept=1).get_or_compute_once((h.field, text), compute)


def grouped_rates(dataset: "Dataset", h: "HypothesisField", by: str | None,
                  filter_text: str | None) -> analysis.GroupedRates:
    """`analysis.group_rates` of a hypothesis, column and filter, kept for the next pages (a
    breakdown over a million utterances costs ~0.1 s, a page of it ~1 ms); ApiError for a bad
    column or filter."""
    if not by:
        raise ApiError("by is required: the column to break down by; choose one of: "
                       + ", ".join(analysis.breakdown_columns(dataset.utterances)))
    text = (filter_text or "").strip()

    def compute() -> analysis.GroupedRates:
        try:
            return analysis.group_rates(dataset.utterances, by, h, utt_ids=selected_ids(dataset, text))
        except (ValueError, KeyError) as e:
            raise ApiError(e.args[0] if e.args else str(e)) from None

    return for_dataset(dataset, "breakdowns", _GROUPS_CACHE_SIZE).get_or_compute_once((h.field, by, text), compute)


def breakdown_sort(raw: str | None) -> str:
    """A breakdown sort (`-wer`, `value`, …) checked and normalised; ApiError for a bad one."""
    try:
        key, descending = analysis.parse_breakdown_sort(raw)
    except ValueError as e:
        raise ApiError(str(e)) from None
    return ("-" if descending else "") + key


def breakdown_frame(dataset: "Dataset", by: str | None, hyp: str | None, filter_text: str | None,
                    sort: str | None = None, min_words: int = 0, min_utterances: int = 0) -> pd.DataFrame:
    """Every group (sorted, thresholds applied): DataFrame[value, utterances, words, wer, cer]."""
    grouped = grouped_rates(dataset, hypothesis_of(dataset, hyp), by, filter_text)
    return grouped.view(breakdown_sort(sort), min_words, min_utterances).reset_index(drop=True)


def _paired(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", ids: Any) -> int:
    """How many of the selected utterances both hypotheses were scored on: those compared."""
    rows = analysis.scored_rows(dataset.utterances, b, analysis.scored_rows(dataset.utterances, a, ids))
    return int(len(dataset.utterances) if rows is None else len(rows))


def compare_payload(dataset: "Dataset", a: str | None, b: str | None, filter_text: str | None,
                    n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """The /api/compare payload: corpus WER of A and B with their intervals and the paired
    bootstrap of the difference, cached per dataset (a new one after `replace_with`)."""
    ha = hypothesis_of(dataset, a, 0, "a")
    hb = hypothesis_of(dataset, b, 1, "b")
    text = (filter_text or "").strip()
    ids = selected_ids(dataset, text)

    def compute() -> dict:
        r = analysis.compare(dataset.utterances, ha, hb, n_resamples=n_resamples, seed=seed, utt_ids=ids)
        return {
            "a": {"field": ha.field, "wer": rounded(r["a"]["wer"]), "ci": [rounded(v) for v in r["a"]["ci"]]},
            "b": {"field": hb.field, "wer": rounded(r["b"]["wer"]), "ci": [rounded(v) for v in r["b"]["ci"]]},
            "diff": {"wer": rounded(r["diff"]["wer"]), "ci": [rounded(v) for v in r["diff"]["ci"]],
                     "p": rounded(r["diff"]["p"])},
            "utterances": _paired(dataset, ha, hb, ids),
            "n_resamples": n_resamples,
            "seed": seed,
        }

    key = (ha.field, hb.field, text, n_resamples, seed)
    return for_dataset(dataset, "compare", _COMPARE_CACHE_SIZE, kept=1).get_or_compute_once(key, compute)


WORD_SLICE_ROWS = 1 << 18  # transcripts split at a time when counting the utterances of words (~130 MB at a time)


def word_utterances(texts: pd.Series, rows: np.ndarray | None, words: list[str]) -> np.ndarray:
    """For each of `words`, how many transcripts among `rows` (distinct positions; None: all) hold it
    as a whole word (``str.split()`` tokens, as the vocabulary and the filter's ``has`` take them).
    Counted from the transcripts' word index (sde.word_index.word_row_counts: milliseconds) once the
    server's warm-up has built or mapped it (a stored dataset's text; never built or waited for
    here: a build holds its lock for seconds), else by splitting every selected transcript (~1.7 s
    at 1M)."""
    index = word_index(stored_column(texts))
    if index is not None and index.rows == len(texts):
        return word_row_counts(index, words, rows)
    return _split_word_utterances(texts, rows, words)


def _split_word_utterances(texts: pd.Series, rows: np.ndarray | None, words: list[str]) -> np.ndarray:
    """`word_utterances` by splitting the selected transcripts, WORD_SLICE_ROWS at a time on each of
    the engine's threads (Arrow's kernels, the column's decompression and numpy's sort run without
    the GIL: 10M transcripts in ~9 s on two cores instead of ~18 s)."""
    number = token_numbers(words)  # "" would match the [""] an empty text splits to
    if not number:
        return np.zeros(len(words), dtype=np.int64)
    wanted = pa.array(list(number), type=pa.large_string())
    positions = np.arange(len(texts), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)

    def count(start: int) -> np.ndarray:
        arr = to_arrow_strings(texts.iloc[positions[start:start + WORD_SLICE_ROWS]])
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        lists = word_lists(arr.cast(pa.large_string()))
        which = pc.index_in(pc.list_flatten(lists), value_set=wanted, skip_nulls=True)
        found = which.is_valid()
        word = which.filter(found).to_numpy().astype(np.int64)
        parent = pc.list_parent_indices(lists).filter(found).to_numpy().astype(np.int64)
        # (row, word) pairs, each counted once: the pairs come in row order, so sorting them is
        # sorting within each row, which timsort (numpy's stable sort of int64) does in few passes
        pairs = np.sort(parent * len(number) + word, kind="stable")
        first = np.ones(len(pairs), dtype=bool)
        first[1:] = pairs[1:] != pairs[:-1]
        return np.bincount(pairs[first] % len(number), minlength=len(number))

    starts = range(0, len(positions), WORD_SLICE_ROWS)
    workers = max(1, min(settings().processes, len(starts)))
    counts = np.zeros(len(number), dtype=np.int64)
    with ThreadPoolExecutor(workers, thread_name_prefix="sde-word-counts") as pool:
        for part in pool.map(count, starts):
            counts += part
    return np.array([counts[number[w]] if w in number else 0 for w in words], dtype=np.int64)


def word_comparison(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField",
                    filter_text: str | None) -> pd.DataFrame:
    """`analysis.word_comparison` of A and B over a filter's selection (word, count, acc_a, acc_b,
    diff, net), kept: the Comparison page's word scatter and its table (compare_words) both read it."""
    text = (filter_text or "").strip()

    def compute() -> pd.DataFrame:
        return analysis.word_comparison(dataset.utterances, dataset.vocabulary, dataset.errors, a, b,
                                        selected_ids(dataset, text))

    return for_dataset(dataset, "compare", _COMPARE_CACHE_SIZE, kept=1).get_or_compute_once(
        ("word-comparison", a.field, b.field, text), compute)


def compare_words(dataset: "Dataset", a: str | None, b: str | None, filter_text: str | None,
                  limit: int | None = None) -> pd.DataFrame:
    """The Comparison page's word table and its JSON twin (/api/compare/words): per reference word
    of the selected utterances that both A and B score, `utterances` (how many of them hold the
    word: the rows its link to Samples lists), `occurrences` (its count in their references),
    `acc_a`, `acc_b` (word accuracy, %), `diff` (B − A, points) and `net` (occurrences B gets
    right minus those A gets right); the words where A and B differ most first (|net|, |diff|).
    The first `limit` rows (None: all), kept per (a, b, filter, limit)."""
    ha = hypothesis_of(dataset, a, 0, "a")
    hb = hypothesis_of(dataset, b, 1, "b")
    text = (filter_text or "").strip()

    def compute() -> pd.DataFrame:
        ids = selected_ids(dataset, text)
        table = dataset.utterances
        words = word_comparison(dataset, ha, hb, text)
        if limit is not None:
            words = words.head(limit)
        rows = analysis.scored_rows(table, hb, analysis.scored_rows(table, ha, ids))
        listed = [str(w) for w in words["word"]]
        return pd.DataFrame({
            "word": listed,
            "utterances": word_utterances(table["text"], rows, listed),
            "occurrences": words["count"].to_numpy(dtype=np.int64),
            "acc_a": words["acc_a"].to_numpy(dtype=np.float64),
            "acc_b": words["acc_b"].to_numpy(dtype=np.float64),
            "diff": words["diff"].to_numpy(dtype=np.float64),
            "net": words["net"].to_numpy(dtype=np.int64),
        })

    key = ("words", ha.field, hb.field, text, limit)
    return for_dataset(dataset, "compare", _COMPARE_CACHE_SIZE, kept=1).get_or_compute_once(key, compute)


def compare_frame(payload: Mapping) -> pd.DataFrame:
    """The compare payload as rows system, field, wer, ci_lo, ci_hi, p (its CSV)."""
    rows = []
    for system in ("a", "b", "diff"):
        entry = payload[system]
        rows.append({"system": system, "field": entry.get("field", ""), "wer": entry["wer"],
                     "ci_lo": entry["ci"][0], "ci_hi": entry["ci"][1], "p": entry.get("p")})
    return pd.DataFrame(rows, columns=["system", "field", "wer", "ci_lo", "ci_hi", "p"])
