"""Samples: every utterance in a server-side grid (JSON twin: /api/utterances, CSV: .csv).

Filtering, sorting and paging happen on the server (dash-ag-grid infinite row model → TableQuery),
so a million-row manifest costs the browser one block of rows at a time. The URL carries the
state (`/samples?filter=Q&sort=-wer&colfilter=JSON&cols=id,text,wer`); clicking a row opens the
inspector on the same filtered, sorted list, and coming back (`focus=ID`) shows that row again. Links from the Errors page add `error=sub:REF:HYP&hyp=F`, folded into
the filter (a mangled one shows all utterances, with the reason above the filter box).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, Mapping

from sde.audio_presence import COLUMN as AUDIO_EXISTS
from sde.audio_presence import audio_missing_count
from sde.caching import for_dataset
from sde.filters import combine_filters
from sde.web import reviewing, state
from sde.web.components import fmt_int
from sde.web.grid import TableSpec, example_filter
from sde.web.pages import table
from sde.web.pages.page import Page
from sde.query import QueryError, parse_sort
from sde.durations import duration_text
from sde.web.present import ApiError, requested_filter

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "Samples"
PATH = "/samples"
_METRIC_LABELS = {"wer": "WER", "cer": "CER", "wmr": "WMR", "sub": "S", "del": "D", "ins": "I", "hits": "hits",
                  "char_edits": "char edits", "ref_chars": "ref chars"}


def row_href(table_state: Mapping[str, str], row: Mapping) -> str:
    """The inspector on the clicked row, walking the list the grid shows. The box's filter and
    the grid's column filters travel apart (with the columns), so that "back" puts each where it was."""
    return state.utterance_href(row["id"], table_state.get("filter") or None, table_state.get("sort"),
                                colfilter=table_state.get("colfilter") or None, cols=table_state.get("cols") or None)


def placeholder(dataset: "Dataset", lead: str | None = None) -> str:
    """The filter box's example, with a real value of this dataset (a speaker, when there is one):
    `{wer} > 20 && {speaker} = "anna"`. The value is counted once per dataset (a pass over a
    column: ~0.25 s at 10M rows), at the first layout that shows it, not at the server's start."""
    lead = lead or ("{wer} > 20" if dataset.hypotheses else "{duration} > 5")

    def build() -> str:
        skip = {"text", "audio_filepath", "audio_path", "duration_source", "source", "oov_chars", "audio_error",
                *(h.field for h in dataset.hypotheses)}
        return example_filter(dataset.utterances, "", skip)  # the clause alone ("" where none)

    return combine_filters(lead, for_dataset(dataset, "samples-placeholder", 1).get_or_compute_once("clause", build))


def spec_for(dataset: "Dataset") -> TableSpec:
    df = dataset.utterances
    labels = {"id": "id", "duration": "duration (s)", "text": "reference", "num_words": "words",
              "num_chars": "chars", "word_rate": "words/s", "char_rate": "chars/s",
              "audio_filepath": "audio file", "audio_path": "audio path (resolved)"}
    visible = ["id", "duration", "text"]
    wide = ["text"]
    percent = []
    for h in dataset.hypotheses:
        suffix = f" {h.label}" if h.label else ""
        labels[h.field] = h.field
        wide.append(h.field)
        visible.append(h.field)
        for metric, name in _METRIC_LABELS.items():
            labels[h.column(metric)] = name + suffix
        for metric in ("wer", "cer", "wmr"):
            percent.append(h.column(metric))
            percent.append(h.column(metric) + "_norm")
            labels[h.column(metric) + "_norm"] = _METRIC_LABELS[metric] + suffix + " (norm.)"
        visible += [h.column("wer"), h.column("cer")]
    visible.append("num_words")
    known = {"id", "line", "audio_filepath", "audio_path", "offset", "duration", "text", "num_words", "num_chars",
             "word_rate", "char_rate", AUDIO_EXISTS}
    hyp_cols = {h.field for h in dataset.hypotheses}
    for h in dataset.hypotheses:
        hyp_cols |= {h.column(m) for m in (*_METRIC_LABELS, "accuracy")}
        hyp_cols |= {h.column(m) + "_norm" for m in ("wer", "cer", "wmr")}
    extra = [str(c) for c in df.columns if c not in known and c not in hyp_cols and str(c)]  # "": table.grid_columns
    visible += extra[:6]  # the manifest's own fields (speaker, lang, …); more via the column picker
    visible.append("audio_filepath")
    if audio_missing_count(df):  # shown only when some file is missing (sde.audio_presence)
        visible.append(AUDIO_EXISTS)
        labels[AUDIO_EXISTS] = "audio exists"
    return TableSpec(
        prefix=state.SAMPLES, path=PATH, api="/api/utterances", noun="utterances",
        # With reviews, the review columns are columns like any other ({review} = "drop").
        df=lambda: reviewing.utterance_table(dataset), query=lambda: reviewing.utterance_query(dataset, "review"),
        labels=labels, visible=visible, wide=wide, percent=percent, pinned=("id",),
        row_href=row_href, placeholder=functools.partial(placeholder, dataset),
    )


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    params = dict(params)
    hint = None
    try:
        params["filter"] = requested_filter(dataset, params)
    except ApiError as e:
        hint = f"The error in the link cannot be shown ({e.message}), so it is left out of the filter."
    params.pop("error", None)
    params.pop("hyp", None)
    try:
        parse_sort(params.get("sort") or None, dataset.utterance_query.columns)
    except QueryError as e:  # the grid would drop it without a word, and the valid columns with it
        hint = " ".join(h for h in (hint, f"The sort in the link is invalid ({e}), so the list is not sorted.") if h)
        params.pop("sort", None)
    s = dataset.utterances
    hours = float(s["duration"].sum()) / 3600 if len(s) else 0.0
    subtitle = [f"{fmt_int(len(s))} utterances · {duration_text(hours)} · click a row to inspect it"]
    return table.layout(spec_for(dataset), params, TITLE, subtitle, hint=hint)


def current_spec(dataset: "Dataset") -> Callable[[], TableSpec]:
    """The spec of the table as it is now (columns are added while the server runs: duplicates,
    VAD, audio metrics), made again only when its columns change: a grid request stays cheap."""
    made: dict[tuple, TableSpec] = {}

    def current() -> TableSpec:
        key = tuple(map(str, dataset.utterances.columns))
        if key not in made:
            made.clear()
            made[key] = spec_for(dataset)
        return made[key]

    return current


def callbacks(app, dataset: "Dataset") -> None:
    table.callbacks(app, current_spec(dataset), TITLE)


PAGE = Page(path=PATH, name=TITLE, layout=layout, callbacks=callbacks, api="/api/utterances",
            takes=("filter", "colfilter", "sort", "cols", "focus", "error", "hyp"))
