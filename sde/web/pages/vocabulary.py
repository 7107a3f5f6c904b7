"""Vocabulary: every reference word with its count and accuracy per hypothesis, OOV when a word
list was given (JSON twin: /api/vocabulary, CSV: /api/vocabulary.csv). Clicking a word lists the
utterances whose reference has it as a word."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from sde.web import state
from sde.web.components import fmt_int
from sde.web.grid import TableSpec
from sde.web.pages import table
from sde.web.pages.page import Page

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "Vocabulary"
PATH = "/vocabulary"


def row_href(_table_state: Mapping, row: Mapping) -> str:
    word = row.get("word")
    return state.word_href(str(word)) if word is not None else ""


def spec_for(dataset: "Dataset") -> TableSpec:
    labels = {"word": "word", "count": "count", "oov": "OOV"}
    visible = ["word", "count"]
    percent = []
    for h in dataset.hypotheses:
        col = h.column("accuracy")
        labels[col] = f"accuracy {h.name}" if h.label else "accuracy"
        visible.append(col)
        percent.append(col)
    if "oov" in dataset.vocabulary.columns:
        visible.append("oov")
    visible += [str(c) for c in dataset.vocabulary.columns if str(c) not in visible]
    return TableSpec(
        prefix=state.VOCABULARY, path=PATH, api="/api/vocabulary", noun="words",
        df=lambda: dataset.vocabulary, query=lambda: dataset.vocabulary_query,
        labels=labels, visible=visible, wide=("word",), percent=percent,
        row_href=row_href, placeholder=lambda: '{count} > 5 && {accuracy} < 50',
    )


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    v = dataset.vocabulary
    sub = [f"{fmt_int(len(v))} distinct reference words"]
    if "oov" in v.columns:
        sub.append(f" · {fmt_int(int(v['oov'].sum()))} out of vocabulary")
    sub.append(" · click a word to see its utterances")
    return table.layout(spec_for(dataset), params, TITLE, sub)


def callbacks(app, dataset: "Dataset") -> None:
    spec = spec_for(dataset)  # the vocabulary's columns never change while the server runs
    table.callbacks(app, lambda: spec, TITLE)


PAGE = Page(path=PATH, name=TITLE, layout=layout, callbacks=callbacks, api="/api/vocabulary",
            takes=("filter", "colfilter", "sort", "cols", "focus"))
