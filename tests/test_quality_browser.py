"""Data quality in Chromium against a real `sde` server on espeak-ng speech (tests.quality_kit's
corpus): the TTS readiness page, the inspector's augmentation player, the Statistics card's links,
the Duplicates view's click-through, and the speech job of the TTS page."""

from __future__ import annotations

import urllib.request

import pytest

from sde.quality.apply import vad_unavailable
from tests.browser_kit import Watch, api, sde_server, shot, wait_url
from tests.quality_kit import need_espeak, quality_corpus

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    need_espeak()
    if vad_unavailable():
        pytest.skip(vad_unavailable())
    return quality_corpus(tmp_path_factory.mktemp("quality-browser") / "corpus")


@pytest.fixture(scope="module")
def server(corpus):
    with sde_server(str(corpus[0]), "--vad", "--estimate-audio-metrics") as url:
        yield url


def grid_ids(page) -> list[int]:
    page.wait_for_selector('#samples-grid .ag-row [col-id="id"]')
    page.wait_for_function("[...document.querySelectorAll('#samples-grid .ag-row [col-id=\"id\"]')]"
                           ".every(c => c.innerText > '')")
    return sorted({int(c) for c in page.locator('#samples-grid .ag-row [col-id="id"]').all_inner_texts()})


def test_tts_page_shows_each_speaker_and_their_phonemes(server, page):
    watch = Watch(page, server)
    page.goto(server + "/tts")
    page.wait_for_selector("#tts-speakers tbody tr")
    rows = page.locator("#tts-speakers tbody tr")
    assert rows.count() == 2
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(2)] == ["ben", "anna"]  # most hours first
    ben, anna = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert "22.05 kHz" in anna and "low sample rate" not in anna
    assert "16 kHz" in ben and "low sample rate" in ben
    assert "bg-danger" in rows.nth(0).locator(".badge", has_text="16 kHz").get_attribute("class")
    assert page.locator("#vad-speech-hours").inner_text().strip() != ""
    # The phoneme histogram: one bar per phoneme of the English inventory, then the speaker's others.
    page.wait_for_selector("#tts-phonemes .bars path")
    assert page.locator("#tts-phonemes .bars path").count() >= 30
    assert "Phonemes of ben" in page.locator("#tts-phonemes .gtitle").text_content()
    page.select_option("#tts-phoneme-speaker", "anna")
    page.wait_for_function("document.querySelector('#tts-phonemes .gtitle').textContent.includes('anna')")
    shot(page, "tts-readiness")
    page.click("#tts-languages >> text=de")
    wait_url(page, r"/tts\?lang=de")
    page.wait_for_function("document.querySelector('#tts-guidance').innerText.includes('for de')")
    watch.check()


def test_augmentation_player_plays_and_redraws_what_the_api_serves(server, page):
    watch = Watch(page, server)
    page.goto(server + "/utterance/0")
    page.wait_for_selector("#aug-apply")
    page.select_option("#aug-noise", "white")
    page.fill("#aug-snr", "10")
    page.click("#aug-apply")
    page.wait_for_function("(document.querySelector('#aug-audio').getAttribute('src') || '').includes('noise=white')")
    src = page.get_attribute("#aug-audio", "src")
    assert "snr=10" in src and src.startswith("/api/utterances/0/augment?")
    page.wait_for_function("document.querySelector('#aug-audio').currentTime > 0.2", timeout=30_000)  # it plays
    assert page.evaluate("document.querySelector('#aug-audio').error") is None
    page.wait_for_selector("#aug-figure .js-plotly-plot .heatmaplayer")
    heat = "document.querySelector('#aug-figure .js-plotly-plot')._fullData[2].z"
    first = page.evaluate(f"JSON.stringify(Array.from({heat}[5]))")
    assert first and first != "[]"
    assert "white_noise:" in page.inner_text("#aug-config")
    page.fill("#aug-seed", "5")
    page.click("#aug-apply")
    page.wait_for_function("document.querySelector('#aug-audio').getAttribute('src').includes('seed=5')")
    page.wait_for_function(f"JSON.stringify(Array.from({heat}[5])) !== {first!r}")
    shot(page, "augmentation-preview")
    # Same parameters and seed: the same bytes, every time.
    new_src = page.get_attribute("#aug-audio", "src")
    with urllib.request.urlopen(server + new_src) as a, urllib.request.urlopen(server + new_src) as b:
        assert a.read() == b.read()
    watch.check()


def test_suspicious_card_counts_open_the_filtered_samples(server, page):
    watch = Watch(page, server)
    page.goto(server + "/statistics")
    page.wait_for_selector("#suspicious-count-hyp_repeated_ngram")
    assert page.inner_text("#suspicious-count-hyp_repeated_ngram") == "1"
    assert "Speech (VAD)" in page.inner_text("#suspicious-speech")
    shot(page, "statistics-suspicious")
    page.click("#suspicious-count-hyp_repeated_ngram")
    wait_url(page, r"/samples\?filter=")
    assert grid_ids(page) == [1]
    watch.check()


def test_duplicates_view_clicks_through_to_the_group(server, page):
    watch = Watch(page, server)
    page.goto(server + "/duplicates")
    page.wait_for_selector("#dup-table tbody tr")
    assert page.inner_text("#dup-groups") == "2"
    shot(page, "duplicates")
    page.locator("#dup-table tbody tr").first.locator("a").first.click()
    wait_url(page, r"/samples\?filter=%7Bdup_text_group%7D")
    assert grid_ids(page) == [0, 2, 7]
    page.goto(server + "/duplicates?kind=audio")
    page.wait_for_selector("#dup-table tbody tr")
    assert "different transcripts" in page.inner_text("#dup-table")
    watch.check()


def test_measure_speech_on_the_tts_page(corpus, page):
    with sde_server(str(corpus[0])) as url:
        watch = Watch(page, url)
        page.goto(url + "/tts")
        page.wait_for_selector("#vad-start")
        page.click("#vad-start")
        page.wait_for_selector("#vad-speech-hours", timeout=120_000)
        hours = api(url, "/api/summary")["speech_hours"]
        # read as people say it ("12.3 s", "4.5 min", "1.25 h"): a short corpus read "0.00" hours
        value, unit = page.inner_text("#vad-speech-hours").split()
        seconds = float(value.replace(",", "")) * {"s": 1, "min": 60, "h": 3600}[unit]
        assert seconds == pytest.approx(hours * 3600, abs=0.1 * {"s": 1, "min": 60, "h": 36}[unit])
        assert seconds > 0
        assert page.inner_text("#vad-no-speech").strip().startswith("1")
        row = api(url, "/api/tts")["speakers"][0]
        assert row["sample_rates"] and row["lufs_median"] is not None
        watch.check()
