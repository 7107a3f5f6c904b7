"""Samples: every utterance in a server-side grid (JSON twin: /api/utterances, CSV: .csv).

Filtering, sorting and paging happen on the server (dash-ag-grid infinite row model → TableQuery),
so a million-row manifest costs the browser one block of rows at a time. The URL carries the
state (`/samples?filter=Q&sort=-wer&colfilter=JSON`); clicking a row opens the inspector on the
same filtered, sorted list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlencode

from sde.web import ids
from sde.web.components import TableSpec, fmt_float, fmt_int, register_table_callbacks, table_layout
from sde.web.pages import Page

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "Samples"
_METRIC_LABELS = {"wer": "WER", "cer": "CER", "wmr": "WMR", "sub": "S", "del": "D", "ins": "I", "hits": "hits",
                  "char_edits": "char edits", "ref_chars": "ref chars"}


def utterance_href(state: Mapping[str, str] | None, uid: int) -> str:
    state = state or {}
    q = {k: v for k, v in (("filter", state.get("effective") or state.get("filter")), ("sort", state.get("sort"))) if v}
    return f"/utterance/{uid}" + (f"?{urlencode(q)}" if q else "")


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
            col = h.column(metric)
            labels[col] = name + suffix
        for metric in ("wer", "cer", "wmr"):
            percent.append(h.column(metric))
            percent.append(h.column(metric) + "_norm")
            labels[h.column(metric) + "_norm"] = _METRIC_LABELS[metric] + suffix + " (norm.)"
        visible += [h.column("wer"), h.column("cer")]
    visible.append("num_words")
    known = {"id", "line", "audio_filepath", "audio_path", "offset", "duration", "text", "num_words", "num_chars",
             "word_rate", "char_rate"}
    hyp_cols = {h.field for h in dataset.hypotheses}
    for h in dataset.hypotheses:
        hyp_cols |= {h.column(m) for m in (*_METRIC_LABELS, "accuracy")}
        hyp_cols |= {h.column(m) + "_norm" for m in ("wer", "cer", "wmr")}
    extra = [str(c) for c in df.columns if c not in known and c not in hyp_cols]
    visible += extra[:6]  # the manifest's own fields (speaker, lang, …); more via the column picker
    visible.append("audio_filepath")
    return TableSpec(
        prefix=ids.SAMPLES, path="/samples", api="/api/utterances", noun="utterances",
        df=lambda: dataset.utterances, query=lambda: dataset.utterance_query,
        labels=labels, visible=visible, wide=wide, percent=percent, pinned=("id",),
        row_href=utterance_href,
    )


def with_error_filter(dataset: "Dataset", params: Mapping[str, str]) -> dict[str, str]:
    """Links from the Errors page carry `error=sub:REF:HYP&hyp=F`: fold them into the filter text."""
    params = dict(params)
    error, hyp = params.pop("error", None), params.pop("hyp", None)
    if error and dataset.hypotheses:
        from sde.web.components import combine_filters
        from sde.web.pages.errors import error_filter

        try:
            params["filter"] = combine_filters(error_filter(dataset, error, hyp), params.get("filter"))
        except (ValueError, KeyError):
            pass  # a mangled link: show everything rather than nothing
    return params


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    params = with_error_filter(dataset, params)
    s = dataset.utterances
    hours = float(s["duration"].sum()) / 3600 if len(s) else 0.0
    subtitle = [f"{fmt_int(len(s))} utterances · {fmt_float(hours, 2)} hours · click a row to inspect it · ",
                _json_link("/api/utterances", params)]
    return table_layout(spec_for(dataset), params, TITLE, subtitle)


def _json_link(api: str, params: Mapping[str, str]):
    from dash import html

    q = {k: params[k] for k in ("filter", "sort") if params.get(k)}
    return html.A("JSON", href=api + (f"?{urlencode(q)}" if q else ""), className="link-secondary")


def register_callbacks(app, dataset: "Dataset") -> None:
    register_table_callbacks(app, spec_for(dataset), TITLE)


PAGE = Page(path="/samples", name=TITLE, layout=layout, register_callbacks=register_callbacks,
            api="/api/utterances")
