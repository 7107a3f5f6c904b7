"""A page's link with a parameter the page cannot use (a name it does not take, a value outside
what it accepts, a name given twice) opens the page with the default for it and a dismissible
warning naming the parameter, the value and what it takes; /api refuses the same with a 400
(sde.web.api.respond). Through the router's callback as the browser sends it, over the demo
dataset (two hypotheses, so every page applies); tests/test_browser_link_parameters_ignored.py
opens two of these in Chromium."""

from __future__ import annotations

import pytest

from sde.dataset import build_dataset
from sde.demo import DEMO_MANIFEST
from sde.web.app import AppConfig, create_app
from tests.browser_kit import by_id, components, dash_update, prop, text_of

NOTES = "link-notes"


@pytest.fixture(scope="module")
def app():
    return create_app(build_dataset(DEMO_MANIFEST), AppConfig(audio_routes=False))


def opened(app, path: str, search: str):
    """The layout of ``path?search`` as the router answers it (never a 500, never blank)."""
    out = dash_update(app.server.test_client(), app, "page-content.children",
                      {"url.pathname": path, "url.search": search})
    return out["page-content.children"]


def notes_of(layout) -> str:
    found = [c for c in components(layout) if prop(c, "id") == NOTES]
    return text_of(found[0]) if found else ""


@pytest.mark.parametrize("path, search, named", [
    ("/samples", "?kind=bogus", ["'kind'", "'bogus'", "filter, colfilter, sort, cols, focus, error, hyp"]),
    ("/samples", "?page=-1", ["'page'", "'-1'", "not one the Samples page takes"]),
    ("/vocabulary", "?page=abc", ["'page'", "'abc'", "not one the Vocabulary page takes"]),
    ("/", "?logy=yes", ["logy must be one of 0, 1", "'yes'", "logy=0 (the default)"]),
    ("/errors", "?show=middle", ["show must be one of worst, best", "'middle'", "show=worst"]),
    ("/errors", "?min_utts=abc", ["min_utts must be an integer written in the digits 0-9", "'abc'",
                                  "min_utts 1 (the default)"]),
    ("/errors", "?min_utts=0", ["min_utts must be at least 1, got 0", "min_utts 1 (the default)"]),
    ("/comparison", "?sort=wer", ["'sort'", "not one the Comparison page takes", "a, b, metric, filter"]),
    ("/duplicates", "?kind=bogus", ["kind must be one of text, near, audio", "'bogus'", "kind=text (the default)"]),
    ("/duplicates", "?page=-1", ["page must be between 0 and 1000000000, got -1", "page 0 (the default)"]),
    ("/duplicates", "?page=abc", ["page must be an integer written in the digits 0-9, got 'abc'"]),
    ("/problems", "?page=x1", ["page must be an integer written in the digits 0-9, got 'x1'"]),
    ("/rules", "?drop=x", ["'drop'", "not one the Rules page takes (it takes filter, add)"]),
    ("/tts", "?speakers=a", ["'speakers'", "(it takes lang, speaker)"]),
    ("/utterance/0", "?focus=3", ["'focus'", "not one the Utterance page takes"]),
])
def test_a_parameter_the_page_cannot_use_is_named_above_it(app, path, search, named):
    layout = opened(app, path, search)
    said = notes_of(layout)
    for part in named:
        assert part in said, (part, said)
    assert prop(by_id(layout, NOTES), "dismissable") is True
    assert "This page failed to render" not in text_of(layout)


@pytest.mark.parametrize("path", ["/samples", "/errors", "/comparison", "/rules"])
def test_a_repeated_filter_says_which_value_is_used(app, path):
    said = notes_of(opened(app, path, "?filter=%7Bwer%7D+%3E+10&filter=%7Bwer%7D+%3E+50"))
    assert "The link gives 'filter' 2 times ('{wer} > 10', '{wer} > 50'): the last one, '{wer} > 50', is used" in said
    assert "(A) && (B)" in said


@pytest.mark.parametrize("path, search", [("/samples", "?filter=%7Bwer%7D+%3E+10&sort=-wer"), ("/duplicates", "?kind=audio"),
                                          ("/errors", "?show=best&min_utts=2"), ("/", "?logy=1"), ("/problems", ""),
                                          ("/comparison", "?metric=cer"), ("/utterance/0", "?from=comparison&a=pred_text")])
def test_a_link_the_page_takes_whole_has_no_warning(app, path, search):
    assert notes_of(opened(app, path, search)) == ""
