"""Vocabulary: every reference word with its count and accuracy per hypothesis, OOV when a word
list was given (JSON twin: /api/vocabulary, CSV: /api/vocabulary.csv). Clicking a word lists the
utterances whose reference has it as a word."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlencode

from sde.web import ids
from sde.web.components import TableSpec, fmt_int, register_table_callbacks, table_layout
from sde.web.pages import Page

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

TITLE = "Vocabulary"


def word_href(_state, row: Mapping) -> str:
    from sde.query import Clause

    word = row.get("word")
    if word is None:
        return ""
    return "/samples?" + urlencode({"filter": Clause("text", "has", str(word)).to_q()})


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
        prefix=ids.VOCABULARY, path="/vocabulary", api="/api/vocabulary", noun="words",
        df=lambda: dataset.vocabulary, query=lambda: dataset.vocabulary_query,
        labels=labels, visible=visible, wide=("word",), percent=percent,
        row_href=word_href, row_href_by_row=True,
        placeholder='{count} > 5 && {accuracy} < 50',
    )


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    v = dataset.vocabulary
    sub = [f"{fmt_int(len(v))} distinct reference words"]
    if "oov" in v.columns:
        sub.append(f" · {fmt_int(int(v['oov'].sum()))} out of vocabulary")
    sub.append(" · click a word to see its utterances")
    return table_layout(spec_for(dataset), params, TITLE, sub)


def register_callbacks(app, dataset: "Dataset") -> None:
    register_table_callbacks(app, spec_for(dataset), TITLE)


PAGE = Page(path="/vocabulary", name=TITLE, layout=layout, register_callbacks=register_callbacks,
            api="/api/vocabulary")
