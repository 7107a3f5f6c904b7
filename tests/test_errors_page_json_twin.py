"""The Errors page's JSON link answers the rows its tables show: the same 200 most frequent errors
of each kind, each with its utterances (the link answered 100 rows without them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from sde.web.pages import errors
from sde.web.present import selection_totals
from tests.browser_kit import get_json

DEMO = Path(__file__).resolve().parent.parent / "sde" / "demo" / "manifest.json"


@pytest.fixture(scope="module")
def demo_dataset():
    return build_dataset(DEMO)


@pytest.mark.parametrize("filter_text", ["", "{wer} > 0"])
def test_the_json_link_answers_the_tables_rows(demo_dataset, filter_text):
    h = demo_dataset.hypotheses[0]
    line = errors.summary_line(demo_dataset, h, selection_totals(demo_dataset, h, filter_text), filter_text)
    href = next(c.href for c in line.children if getattr(c, "id", None) == errors.LINKS)
    answer = get_json(create_app(demo_dataset, AppConfig(title="demo", audio_routes=False)).server.test_client(), href)
    shown = errors.top_error_rows(demo_dataset, h, filter_text)
    for kind, rows in shown.items():
        keys = ("ref", "hyp", "count", "utterances") if kind == "substitutions" else ("word", "count", "utterances")
        assert [tuple(r[k] for k in keys) for r in answer[kind]] == [tuple(r[k] for k in keys) for r in rows]
        assert rows, kind
