"""The JSON twins of the table pages, and their CSV: summary, utterances, one utterance,
vocabulary, problems and the audio-quality summary (the routes are listed in sde.web.api).

Q is the filter language of DESIGN.md (`{wer} > 20 && {speaker} = "en-gb"`), S is `col`, `-col`
(descending) or several comma-separated. `page` is 0-based; `page_size` is 1..MAX_PAGE_SIZE.
/api/utterances also takes the Errors page's `error=sub:REF:HYP&hyp=F`, folded into the filter.
Rows are JSON-safe: NaN and missing values are null.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from flask import Response, request

from sde.audio_quality import cached_audio_quality_summary
from sde.compressed_columns import take_rows
from sde.dataset import normalized_summary
from sde.query import QueryError
from sde.text import parse_normalize
from sde.web import reviewing
from sde.web.api.respond import (
    MAX_PAGE_SIZE,
    arg,
    csv_response,
    download_name,
    filter_error,
    json_response,
    page_args,
    select_rows,
    served_dataset,
)
from sde.web.present import (ApiError, alignment_of, records_json, refuse_unmeasured, requested_filter, row_dict,
                             utterance_position)

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

PROBLEMS_PAGE_SIZE = MAX_PAGE_SIZE  # default for /api/problems: small manifests get every problem at once


def summary() -> Response:
    """/api/summary; `?normalize=lower,punct,numbers` adds the normalised numbers for that choice."""
    dataset = served_dataset()
    body = dataset.summary()
    steps = arg("normalize")
    if steps is not None:
        try:
            chosen = list(parse_normalize(steps))
        except ValueError as e:
            raise ApiError(str(e)) from None
        normalized = normalized_summary(dataset, chosen)
        for field, h in body["hypotheses"].items():
            h.pop("normalized", None)
            if field in normalized:
                h["normalized"] = normalized[field]
        body["normalize"] = chosen
    return json_response(body)


def _utterances_table() -> tuple:
    """(table, its TableQuery, the request's filter) of /api/utterances and its CSV."""
    dataset = served_dataset()
    filter_text = requested_filter(dataset, request.args)
    refuse_unmeasured(dataset.utterances.columns, filter_text)
    return reviewing.rows_table(dataset), reviewing.utterance_query(dataset, filter_text, arg("sort")), filter_text


def _vocabulary_table() -> tuple:
    """(table, its TableQuery, the request's filter) of /api/vocabulary and its CSV."""
    dataset = served_dataset()
    return dataset.vocabulary, dataset.vocabulary_query, arg("filter")


# Each route names its own table function (not a name a shared one branches on): the parameters a
# route reads are then in the code it runs, and tests/test_api_unknown_parameters.py finds them there.
def table_page(table: Callable[[], tuple]) -> Response:
    """A page of rows: {"total", "rows"} (a new sorted view's first pages without sorting all of it)."""
    page, size = page_args()
    df, query, filter_text = table()
    try:
        total, positions = query.window(filter_text or None, arg("sort") or None, page * size, (page + 1) * size)
    except QueryError as e:
        raise filter_error(e) from None
    return json_response(f'{{"total": {total}, "rows": {records_json(take_rows(df, positions))}}}')


def table_csv(name: str, table: Callable[[], tuple]) -> Response:
    """Every row of the filtered, sorted view, as CSV (a filter's mistake answered as table_page's)."""
    df, query, filter_text = table()
    return csv_response(df, download_name(name), select_rows(query, filter_text, arg("sort")))


def utterances() -> Response:
    return table_page(_utterances_table)


def utterances_csv() -> Response:
    return table_csv("utterances", _utterances_table)


def vocabulary() -> Response:
    return table_page(_vocabulary_table)


def vocabulary_csv() -> Response:
    return table_csv("vocabulary", _vocabulary_table)


def utterance(uid: str) -> Response:
    """One row, with its word alignment per hypothesis."""
    dataset = served_dataset()
    pos = utterance_position(dataset, uid)
    row = row_dict(dataset.utterances, pos)
    row["alignment"] = alignment_of(dataset, pos)
    return json_response(row)


def problems_json(dataset: "Dataset", page: int = 0, page_size: int = PROBLEMS_PAGE_SIZE) -> dict:
    """One page of the skipped lines (a million bad lines must not become one 200 MB response)."""
    start = page * page_size
    rows = [{"file": p.path, "line": int(p.line), "reason": p.reason, "message": str(p)}
            for p in dataset.problems[start:start + page_size]]
    return {
        "total_lines": int(getattr(dataset, "total_lines", 0) or 0),
        "loaded": int(len(dataset.utterances)),
        "skipped": len(dataset.problems),
        "total": len(dataset.problems),
        "page": page,
        "page_size": page_size,
        "rows": rows,
        "problems": rows,
    }


def audio_quality() -> Response:
    return json_response(cached_audio_quality_summary(served_dataset()))
