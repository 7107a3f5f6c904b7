"""TTS readiness with the language codes manifests carry (BCP-47 `en-GB`, espeak-ng's `fr-fr`), on
the real libespeak-ng sde loads. espeak_SetVoiceByName knows voice files (en, gmw/en) and not the
codes `espeak-ng --voices` lists, so a demo of en-GB and en-US lines (the tie: en-gb) had no
phonemes, /api/tts?lang=en-GB answered 400, and every speaker still read "all covered" with an
empty phonemes_missing. A voice espeak-ng lacks must read "not checked", never covered."""

from __future__ import annotations

import pytest

from sde.dataset import build_dataset
from sde.quality.phonemes import UnknownVoice, check_voice, phonemize_words
from sde.web.app import AppConfig, create_app
from tests.browser_kit import by_id, dash_update, get_json, text_of
from tests.quality_kit import need_espeak

pytestmark = pytest.mark.usefixtures("espeak")


@pytest.fixture(scope="module")
def espeak() -> None:
    need_espeak()


def _lines(langs: dict[str, int], duration: float) -> list[dict]:
    texts = ["the pleasure of a quiet morning", "boys enjoy the noise of the fair", "a tomato in the garden"]
    return [{"audio_filepath": f"{lang}{i}.wav", "duration": duration, "text": texts[i % len(texts)],
             "speaker": f"spk-{lang}", "lang": lang}
            for lang, n in langs.items() for i in range(n)]


def _app(write_manifest, langs: dict[str, int], duration: float = 2.0):
    dataset = build_dataset(write_manifest(_lines(langs, duration)))
    return create_app(dataset, AppConfig(title="tts", audio_routes=False))


def _page(app, client) -> str:
    """The TTS page's text as the browser gets it: the layout, then its polls until the report is made."""
    out = dash_update(client, app, "page-content.children", {"url.pathname": "/tts", "url.search": ""},
                      {"rendered.data": None})
    tree = out["page-content.children"]
    params = by_id(tree, "tts-report-params")["props"]["data"]
    body = by_id(tree, "tts-report")["props"]["children"]
    for _ in range(600):  # a bound for a stuck report, not a timing: each poll waits on it
        if "tts-running" not in str(body):
            return text_of(body)
        polled = dash_update(client, app, "tts-report.children", {"tts-poll.n_intervals": 1},
                             {"tts-report-params.data": params})
        body = polled["tts-report.children"]
    raise AssertionError("the TTS report never finished")


@pytest.mark.parametrize("code,same_as", [
    ("en-gb", "en"), ("en-GB", "en"),       # espeak-ng's en is British English (gmw/en)
    ("en-US", "en-us"),
    ("fr-fr", "fr"), ("fr-FR", "fr"),
])
def test_a_language_code_of_espeak_voices_phonemises_like_its_voice(code, same_as):
    check_voice(code)
    words = ["tomato", "pleasure", "garden"]
    assert phonemize_words(words, code) == phonemize_words(words, same_as)


def test_british_and_american_codes_are_different_voices():
    # tomato: t ə m ɑː t əʊ in Britain, t ə m eɪ ɾ oʊ in America
    assert "ɑː" in phonemize_words(["tomato"], "en-GB")[0]
    assert "eɪ" in phonemize_words(["tomato"], "en-US")[0]


@pytest.mark.parametrize("code", ["zz", "zz-zz", "xx-nope"])
def test_a_code_espeak_ng_lacks_is_still_an_unknown_voice(code):
    with pytest.raises(UnknownVoice, match=f'no voice "{code}"'):
        check_voice(code)


def test_the_default_en_gb_of_a_tie_counts_phonemes(write_manifest):
    app = _app(write_manifest, {"en-GB": 2, "en-US": 2, "fr-FR": 1})
    r = get_json(app.server.test_client(), "/api/tts")
    assert r["language"] == "en-gb" and "phoneme_error" not in r
    assert r["inventory_source"] == "reference text" and len(r["phoneme_inventory"]) > 30
    for speaker in r["speakers"]:  # three sentences never say every English phoneme
        assert speaker["phonemes_missing"] and "missing_phonemes" in {f["flag"] for f in speaker["flags"]}
    assert "missing_phonemes" not in {u["flag"] for u in r["unchecked"]}


@pytest.mark.parametrize("code", ["en-gb", "en-GB", "fr-fr", "fr-FR", "en-US"])
def test_the_api_takes_the_codes_espeak_ng_lists(write_manifest, code):
    app = _app(write_manifest, {"en-GB": 1, "fr-FR": 1})
    r = get_json(app.server.test_client(), f"/api/tts?lang={code}")
    assert r["language"] == code and "phoneme_error" not in r
    assert all(s["phonemes_missing"] is not None for s in r["speakers"])


def test_an_unmeasured_inventory_is_not_checked_in_the_api(write_manifest):
    # the manifest's own language, one espeak-ng has no voice for: the report comes, without phonemes
    app = _app(write_manifest, {"zz": 3})
    r = get_json(app.server.test_client(), "/api/tts")
    assert 'no voice "zz"' in r["phoneme_error"]
    for speaker in r["speakers"]:
        assert speaker["phonemes_missing"] is None and speaker["phonemes_rare"] is None
        assert "missing_phonemes" not in {f["flag"] for f in speaker["flags"]}
    unchecked = {u["flag"]: u for u in r["unchecked"]}
    assert unchecked["missing_phonemes"]["message"] == f"not checked: {r['phoneme_error']}"


def test_an_unmeasured_inventory_is_not_checked_on_the_page(write_manifest):
    # 27 h: no flag but the phonemes' could be raised, and those were never counted: not "ready"
    app = _app(write_manifest, {"zz": 3}, duration=9 * 3600.0)
    text = _page(app, app.server.test_client())
    assert "phoneme coverage not checked" in text and 'no voice "zz"' in text
    assert "not checked" in text and "phonemes not checked" in text and "ready" not in text.split("ready.", 1)[1]
    assert "all covered" not in text and "phonemes from )" not in text
    assert "0 of 1 speakers ready" in text


def test_a_measured_inventory_still_says_what_is_covered_on_the_page(write_manifest):
    app = _app(write_manifest, {"en-GB": 2, "en-US": 2})
    text = _page(app, app.server.test_client())
    assert "phonemes from sde's reference text for en-gb" in text and "missing:" in text
    assert "not checked" not in text and "espeak-ng has no voice" not in text
