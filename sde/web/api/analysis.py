"""The JSON twins (and CSV exports) of the error-analysis pages (the routes are listed in
sde.web.api):

    GET /api/errors?hyp=F&filter=Q&limit=N          {"substitutions": [{"ref","hyp","count"}],
                                                     "deletions": [{"word","count"}], "insertions": [...]}
    GET /api/errors.csv?kind=K&hyp=F&filter=Q[&limit=N]   K = substitutions (default) | deletions | insertions;
                                                     every row unless limit is given
    GET /api/breakdown?by=COLUMN&hyp=F&filter=Q[&sort=S&page=P&page_size=N&min_words=K&min_utterances=U
                       &ci=1&n_resamples=B&seed=S]
        {"by", "hyp", "total", "groups", "page", "page_size", "sort", "min_words", "min_utterances",
         "n_resamples", "seed", "rows": [{"value","utterances","words","wer","cer","ci":[lo,hi]}]}
        any number of groups, sorted (value | utterances | words | wer | cer, "-" for descending;
        default value order) and paged on the server; groups with fewer than K reference words or
        U utterances are left out (`total` counts the rest, `groups` all of them); `ci` is each
        group's seeded 95% bootstrap interval of its WER (ci=0 leaves it out)
    GET /api/breakdown.csv?…                         ALL the groups (sorted, thresholds applied), no
                                                     intervals, streamed
    GET /api/compare?a=F&b=G&filter=Q[&n_resamples=N&seed=S]
        {"a": {"field","wer","ci":[lo,hi]}, "b": {…}, "diff": {"wer","ci":[lo,hi],"p"},
         "utterances", "n_resamples", "seed"}
    GET /api/compare.csv?…                           rows system, field, wer, ci_lo, ci_hi, p
    GET /api/compare/words?a=F&b=G&filter=Q[&limit=N]
        {"a", "b", "rows": [{"word","utterances","occurrences","acc_a","acc_b","diff","net"}]}: the
        Comparison page's word table (its first 300 rows unless limit is given), over the selected
        utterances both A and B score: `utterances` hold the word (its link to Samples lists them),
        `occurrences` count it in their references; the words where A and B differ most first
    GET /api/compare/words.csv?…                     every word unless limit is given

`hyp`, `a` and `b` take a hypothesis field (`pred_text_conformer`) or its label (`conformer`);
`hyp` and `a` default to the first hypothesis, `b` to the second. Q is the filter language of
DESIGN.md and restricts the utterances. Rates are percentages (see sde.analysis for the methods:
corpus rates are ratios of sums; `diff` = WER(b) − WER(a), a paired bootstrap over utterances
with a seeded percentile interval and two-sided p-value). Mistakes (bad filter, unknown
hypothesis or column, bad number) answer 400 {"error": message naming the valid choices}.
"""

from __future__ import annotations

import math

from flask import Response

from sde.query import MAX_PAGE_SIZE
from sde.web.api.respond import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    arg,
    csv_response,
    download_name,
    flag_arg,
    int_arg,
    json_response,
    served_dataset,
)
from sde.web.present import (
    DEFAULT_RESAMPLES,
    ApiError,
    breakdown_frame,
    breakdown_sort,
    compare_frame,
    compare_payload,
    compare_words,
    error_frames,
    error_frames_with_utterances,
    grouped_rates,
    hypothesis_of,
    rounded,
    rounded_records,
)

ERROR_KINDS = ("substitutions", "deletions", "insertions")
DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
MAX_RESAMPLES = 10_000
# Per-group intervals are computed for every row of a page: fewer resamples at most than a
# comparison, so a page of 1,000 groups stays around a second.
MAX_GROUP_RESAMPLES = 2000
MAX_SEED = 2**32 - 1
DEFAULT_WORDS = 300  # rows of the Comparison page's word table


def _limit(default: int | None) -> int | None:
    if not arg("limit") and default is None:
        return None  # CSV export: every row
    return int_arg("limit", DEFAULT_LIMIT if default is None else default, 1, MAX_LIMIT)


def errors() -> Response:
    # with each error's utterances, as the Errors page's tables show them
    frames = error_frames_with_utterances(served_dataset(), arg("hyp"), arg("filter"), _limit(DEFAULT_LIMIT))
    return json_response({k: rounded_records(frames[k]) for k in ERROR_KINDS})


def errors_csv() -> Response:
    kind = arg("kind") or "substitutions"
    if kind not in ERROR_KINDS:
        raise ApiError(f"unknown kind {kind!r}; choose one of: {', '.join(ERROR_KINDS)}")
    dataset = served_dataset()
    h = hypothesis_of(dataset, arg("hyp"))
    frames = error_frames(dataset, h.field, arg("filter"), _limit(None))
    return csv_response(frames[kind], download_name(h.name, kind))


def _thresholds() -> tuple[int, int]:
    return int_arg("min_words", 0, 0), int_arg("min_utterances", 0, 0)


def breakdown() -> Response:
    dataset = served_dataset()
    h = hypothesis_of(dataset, arg("hyp"))
    by = arg("by")
    sort = breakdown_sort(arg("sort"))
    page = int_arg("page", 0, 0, MAX_PAGE)
    size = int_arg("page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    min_words, min_utterances = _thresholds()
    ci = flag_arg("ci", True)
    n_resamples = int_arg("n_resamples", DEFAULT_RESAMPLES, 1, MAX_GROUP_RESAMPLES)
    seed = int_arg("seed", 0, 0, MAX_SEED)
    grouped = grouped_rates(dataset, h, by, arg("filter"))
    view = grouped.view(sort, min_words, min_utterances)
    shown = view.iloc[page * size:(page + 1) * size]
    rows = rounded_records(shown)
    for row, value in zip(rows, shown["value"].tolist() if "value" in shown.columns else []):
        if isinstance(value, float) and math.isinf(value):  # JSON has no infinity, and null is the missing group
            row["value"] = "inf" if value > 0 else "-inf"
    if ci:
        lo, hi = grouped.intervals(shown.index.to_numpy(), n_resamples, seed)
        for row, a, b in zip(rows, lo.tolist(), hi.tolist()):
            row["ci"] = [rounded(a), rounded(b)]
    return json_response({"by": by, "hyp": h.field, "total": len(view), "groups": len(grouped.groups), "page": page,
                          "page_size": size, "sort": sort, "min_words": min_words, "min_utterances": min_utterances,
                          "n_resamples": n_resamples if ci else None, "seed": seed if ci else None, "rows": rows})


def breakdown_csv() -> Response:
    dataset = served_dataset()
    h = hypothesis_of(dataset, arg("hyp"))
    by = arg("by")
    df = breakdown_frame(dataset, by, h.field, arg("filter"), arg("sort"), *_thresholds())
    return csv_response(df, download_name(h.name, "by", by or ""))


def _compare() -> dict:
    return compare_payload(served_dataset(), arg("a"), arg("b"), arg("filter"),
                           n_resamples=int_arg("n_resamples", DEFAULT_RESAMPLES, 1, MAX_RESAMPLES),
                           seed=int_arg("seed", 0, 0, MAX_SEED))


def compare() -> Response:
    return json_response(_compare())


def compare_csv() -> Response:
    return csv_response(compare_frame(_compare()), download_name("compare"))


def _compare_words(default_limit: int | None):
    dataset = served_dataset()
    a, b = hypothesis_of(dataset, arg("a"), 0, "a"), hypothesis_of(dataset, arg("b"), 1, "b")
    return a, b, compare_words(dataset, a.field, b.field, arg("filter"), _limit(default_limit))


def compare_words_json() -> Response:
    """The Comparison page's word table: the words where A and B differ most (the page's first 300)."""
    a, b, words = _compare_words(DEFAULT_WORDS)
    return json_response({"a": a.field, "b": b.field, "rows": rounded_records(words)})


def compare_words_csv() -> Response:
    a, b, words = _compare_words(None)
    return csv_response(words, download_name("compare", "words", a.name, b.name))
