"""The TTS page's `lang` link parameter is checked as /api/tts checks it: a value not shaped like an
espeak-ng voice, or a voice espeak-ng does not have, opens the page in the default language with
the same dismissible warning as the other pages' unusable link parameters, giving /api/tts's own
reason for its 400 (before, the first fell back silently and the second made a report whose only
trace was a phoneme error under its guidance). Through the router's callback as the browser sends
it, over the demo dataset, beside the real /api/tts of the same app."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from sde.dataset import build_dataset
from sde.demo import DEMO_MANIFEST
from sde.web.app import AppConfig, create_app
from sde.web.panels.quality_data import default_lang
from tests.browser_kit import by_id, components, dash_update, prop, text_of
from tests.quality_kit import need_espeak

NOTES = "link-notes"


@pytest.fixture(scope="module")
def dataset():
    return build_dataset(DEMO_MANIFEST)


@pytest.fixture(scope="module")
def app(dataset):
    return create_app(dataset, AppConfig(audio_routes=False))


@pytest.fixture(scope="module")
def default(dataset) -> str:
    """The manifest's language (the demo's lines say en-gb), which the page falls back to."""
    return default_lang(dataset)


def opened(app, search: str):
    out = dash_update(app.server.test_client(), app, "page-content.children",
                      {"url.pathname": "/tts", "url.search": search})
    return out["page-content.children"]


def notes_of(layout) -> str:
    found = [c for c in components(layout) if prop(c, "id") == NOTES]
    return text_of(found[0]) if found else ""


def api_refusal(app, lang: str) -> str:
    r = app.server.test_client().get(f"/api/tts?lang={quote(lang)}")
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    return r.get_json()["error"]


def report_lang(layout) -> str:
    return prop(by_id(layout, "tts-report-params"), "data")["lang"]


@pytest.mark.parametrize("lang", ["e n!", "english-language-x"])
def test_a_lang_not_shaped_like_a_voice_is_warned_of_with_the_apis_reason(app, default, lang):
    layout = opened(app, "?lang=" + quote(lang))
    assert notes_of(layout) == f"The link's {api_refusal(app, lang)}, so lang={default} (the default) is used."
    assert prop(by_id(layout, NOTES), "dismissable") is True
    assert report_lang(layout) == default


def test_a_voice_espeak_lacks_is_warned_of_with_the_apis_reason(app, default):
    need_espeak()
    layout = opened(app, "?lang=qq")
    said = notes_of(layout)
    assert said == f"The link's {api_refusal(app, 'qq')}, so lang={default} (the default) is used."
    assert 'espeak-ng has no voice "qq"' in said
    assert report_lang(layout) == default


def test_a_voice_espeak_has_opens_without_a_warning(app):
    need_espeak()
    layout = opened(app, "?lang=de")
    assert notes_of(layout) == ""
    assert report_lang(layout) == "de"
