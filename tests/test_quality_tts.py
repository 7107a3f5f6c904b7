"""TTS readiness: loudness (BS.1770 reference tones), clipping, espeak-ng phonemes and inventories,
the /api/tts report over two espeak-ng "speakers" recorded at 22.05 and 16 kHz, and /api/tts's
language and missing speakers through a real server."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sde.quality.loudness import clipping_ratio, integrated_loudness
from sde.quality.phonemes import (
    PhonemizerError,
    phoneme_histograms,
    phoneme_inventory,
    phoneme_tokens,
    phonemize_words,
)
from sde.quality.segments import measure_segments
from sde.quality.tts import GUIDANCE, tts_report
from tests.browser_kit import api, sde_server
from tests.quality_kit import need_espeak, need_vad, padded, speak, write


def tone(amplitude: float, seconds: float = 3.0, sample_rate: int = 48000, hz: float = 997.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("samples,sample_rate,expected", [
    (tone(1.0), 48000, -3.01),                  # full-scale 997 Hz sine, one channel
    (tone(0.1), 48000, -23.01),                 # -20 dBFS
    (tone(0.1, sample_rate=16000), 16000, -23.01),
    (tone(0.1, seconds=0.3), 48000, np.nan),    # shorter than one 400 ms block
    (np.zeros(48000, np.float32), 48000, np.nan),
], ids=["full-scale", "minus-20", "16k", "too-short", "silence"])
def test_integrated_loudness_of_reference_tones(samples, sample_rate, expected):
    assert np.isclose(integrated_loudness(samples, sample_rate), expected, atol=0.1, equal_nan=True)


@pytest.mark.parametrize("samples,expected", [
    (np.array([0.0, 0.5, -0.5, 0.2]), 0.0),
    (np.array([1.0, -1.0, 0.5, 0.2]), 0.5),
    (np.array([32767 / 32768, 0.0]), 0.5),      # int16 full scale counts as clipped
    (np.array([]), np.nan),
])
def test_clipping_ratio(samples, expected):
    assert np.isclose(clipping_ratio(samples), expected, equal_nan=True)


@pytest.mark.parametrize("ipa,expected", [
    ("h_ə_l_ˈəʊ", ["h", "ə", "l", "əʊ"]),
    ("dʒ_ˈɔɪ  ð_ə", ["dʒ", "ɔɪ", "ð", "ə"]),
    ("ʃ_ˈøː_n_ə_ _ˌaʊ_s", ["ʃ", "øː", "n", "ə", "aʊ", "s"]),
    ("(en)h_ˈɛ_l_oʊ(fr) b_ɔ̃", ["h", "ɛ", "l", "oʊ", "b", "ɔ̃"]),
    ("l_ə-", ["l", "ə"]),
    ("??", []),
], ids=["stress", "words", "empty-separators", "language-switch", "link", "unknown"])
def test_phoneme_tokens(ipa, expected):
    assert phoneme_tokens(ipa) == expected


@pytest.fixture(scope="module")
def espeak():
    need_espeak()


@pytest.mark.parametrize("lang,word,phonemes", [
    ("en", "measure", ["m", "ɛ", "ʒ", "ə"]),
    ("en", "joy", ["dʒ", "ɔɪ"]),
    ("en-us", "better", ["b", "ɛ", "ɾ", "ɚ"]),
    ("de", "ich", ["ɪ", "ç"]),
    ("fr", "pain", ["p", "ɛ̃"]),
])
def test_phonemize_words(espeak, lang, word, phonemes):
    assert phonemize_words([word, ""], lang) == [phonemes, []]


@pytest.mark.parametrize("lang,must_have", [
    ("en", {"ʒ", "ɔɪ", "θ", "ð", "ŋ", "tʃ", "dʒ", "eə", "ʊə", "əʊ"}),
    ("en-us", {"ɚ", "ɾ", "oʊ", "æ"}),
    ("de", {"ç", "x", "pf", "ts", "øː", "yː"}),
    ("fr", {"ɑ̃", "ɔ̃", "ɛ̃", "ʁ", "ɲ", "y"}),
    ("es", {"θ", "x", "ɲ", "ʎ", "r", "ɾ"}),
])
def test_inventory_from_the_reference_text(espeak, lang, must_have):
    inventory = phoneme_inventory(lang)
    assert must_have <= set(inventory)
    assert inventory == sorted(inventory) and len(inventory) >= 30


def test_no_reference_text_means_no_inventory(espeak):
    assert phoneme_inventory("fi") is None


def test_unknown_voice_is_a_clear_error(espeak):
    with pytest.raises(PhonemizerError, match='no voice "xx-nope".*espeak-ng --voices'):
        phonemize_words(["a"], "xx-nope")


def test_phoneme_histograms_count_per_speaker(espeak):
    hist = phoneme_histograms(["Joy, joy!", "measure", "joy"], ["a", "b", None], "en")
    counts = {(r.speaker, r.phoneme): r.count for r in hist.itertuples()}
    assert counts[("a", "dʒ")] == 2 and counts[("a", "ɔɪ")] == 2
    assert counts[("b", "ʒ")] == 1 and ("b", "dʒ") not in counts
    assert counts[("", "dʒ")] == 1  # no speaker
    assert hist["count"].sum() == 2 * 2 + 4 + 2


@pytest.mark.parametrize("chunk_rows", [1, 2, 65_536])
def test_phoneme_histograms_by_chunks_of_stored_columns_equal_those_at_once(espeak, tmp_path, monkeypatch, chunk_rows):
    # as a dataset stores them: speakers as labels (missing and "" are one speaker), texts compressed
    import pyarrow as pa

    import sde.quality.phonemes as phonemes
    from sde.compressed_columns import CompressedStringArray, LabelColumn, open_column, write_compressed

    texts = ["Joy, joy!", "measure", "joy", None, "the usual treasure", "boys", "", "Measure joy"] * 3
    speakers = ["a", "b", None, "a", "", "b", "a", None] * 3
    stored = {}
    for name, values in (("text", texts), ("speaker", speakers)):
        write_compressed(tmp_path / f"{name}.arrow", name, [pa.array(values, pa.large_string())], labels=name == "speaker")
        stored[name] = pd.Series(CompressedStringArray.over(open_column(tmp_path / f"{name}.arrow")), copy=False)
    assert isinstance(open_column(tmp_path / "speaker.arrow"), LabelColumn)
    want = phoneme_histograms(pd.Series(texts, dtype=object), pd.Series(speakers, dtype=object), "en")
    monkeypatch.setattr(phonemes, "CHUNK_ROWS", chunk_rows)
    got = phoneme_histograms(stored["text"], stored["speaker"], "en")
    pd.testing.assert_frame_equal(got, want)
    assert set(got["speaker"]) == {"a", "b", ""} and got.loc[got["speaker"] == "", "count"].sum() > 0


@pytest.fixture(scope="module")
def corpus(espeak, tmp_path_factory) -> pd.DataFrame:
    """Anna (22.05 kHz, 3 utterances) and Bob (16 kHz, 2 utterances, one clipped and loud)."""
    need_vad()  # the report reads their speech activity
    d = tmp_path_factory.mktemp("tts")
    rows = []
    for i, (speaker, text, rate, gain) in enumerate([
        ("anna", "the pleasure of a quiet morning", None, 1.0),
        ("anna", "she thought about the usual treasure", None, 0.5),
        ("anna", "boys enjoy the noise of the fair", None, 1.0),
        ("bob", "hello there", 16000, 1.0),
        ("bob", "good night", 16000, 8.0),
    ]):
        y, sr = speak(text, sample_rate=rate)
        path = write(d / f"{i}.wav", np.clip(padded(y * gain, sr, 0.5, 0.5), -1, 1), sr)
        rows.append({"id": i, "audio_path": str(path), "offset": 0.0, "duration": len(y) / sr + 1.0,
                     "text": text, "speaker": speaker})
    table = pd.DataFrame(rows)
    return pd.concat([table, measure_segments(table, ("vad", "loudness", "levels"), workers=1)], axis=1)


def test_report_has_the_api_shape(corpus):
    report = tts_report(corpus, "en")
    json.dumps(report)  # JSON-ready: no NaN, no numpy types
    assert set(report) >= {"speakers", "phoneme_inventory", "inventory_source", "guidance"}
    assert report["inventory_source"] == "reference text"
    assert report["phoneme_inventory"] == phoneme_inventory("en")
    for speaker in report["speakers"]:
        assert set(speaker) >= {"speaker", "utterances", "hours", "speech_hours", "sample_rates",
                                "lufs_median", "phonemes_missing"}


def test_report_per_speaker_numbers_and_flags(corpus):
    report = {s["speaker"]: s for s in tts_report(corpus, "en")["speakers"]}
    anna, bob = report["anna"], report["bob"]
    assert [anna["utterances"], bob["utterances"]] == [3, 2]
    assert anna["hours"] == pytest.approx(corpus["duration"][:3].sum() / 3600, abs=1e-4)
    assert 0 < anna["speech_hours"] < anna["hours"]
    assert anna["sample_rates"] == [22050] and bob["sample_rates"] == [16000]
    assert -40 < anna["lufs_median"] < -10
    assert anna["clipping_share"] == 0 and bob["clipping_share"] == pytest.approx(0.5)
    flags = {name: {f["flag"] for f in s["flags"]} for name, s in report.items()}
    assert flags["anna"] == {"few_hours", "missing_phonemes"}
    # Bob's second utterance is 18 dB louder (and clips): his loudness is not one level
    assert flags["bob"] == {"few_hours", "missing_phonemes", "low_sample_rate", "clipping", "uneven_loudness"}
    assert bob["lufs_spread"] > GUIDANCE["lufs_spread_max"] > anna["lufs_spread"]
    assert {"ʒ", "ɔɪ"}.isdisjoint(anna["phonemes_missing"])   # pleasure, treasure, boys, enjoy
    assert {"ʒ", "ɔɪ"} <= set(bob["phonemes_missing"])
    assert set(anna["phonemes_missing"]) <= set(phoneme_inventory("en"))
    assert "ʒ" in anna["phonemes_rare"]  # heard twice, under GUIDANCE["rare_phoneme_count"]


def test_the_missing_phonemes_message_says_how_many_it_leaves_out(corpus):
    for speaker in tts_report(corpus, "en")["speakers"]:
        missing = speaker["phonemes_missing"]
        message = next(f["message"] for f in speaker["flags"] if f["flag"] == "missing_phonemes")
        assert message.startswith(f"{len(missing)} phonemes never spoken: {' '.join(missing[:20])}")
        if len(missing) > 20:  # bob says two words: most of the inventory
            assert message.endswith(f" … and {len(missing) - 20} more (phonemes_missing lists them all)")
        else:
            assert "more" not in message
    assert len(next(s for s in tts_report(corpus, "en")["speakers"] if s["speaker"] == "bob")["phonemes_missing"]) > 20


def test_report_without_audio_columns_or_language(corpus):
    report = tts_report(corpus[["id", "duration", "text", "speaker"]], None)
    anna = report["speakers"][0]
    assert anna["speech_hours"] is None and anna["lufs_median"] is None and anna["sample_rates"] == []
    assert anna["phonemes_missing"] == [] and report["phoneme_inventory"] == []
    assert {f["flag"] for f in anna["flags"]} == {"few_hours"}


def test_report_for_a_language_without_reference_text_uses_the_dataset(corpus):
    report = tts_report(corpus, "sw")
    assert report["inventory_source"] == "dataset"
    used = set().union(*[set(p) for p in phonemize_words(list(corpus["text"]), "sw")])
    assert set(report["phoneme_inventory"]) == used


def test_report_names_a_missing_voice(corpus):
    report = tts_report(corpus, "xx-nope")
    assert "no voice" in report["phoneme_error"] and report["speakers"][0]["phonemes_missing"] is None


def test_guidance_is_the_usual_tts_target():
    assert GUIDANCE["target_hours"] == 20 and GUIDANCE["min_sample_rate"] == 22050


def test_the_speaker_table_is_each_speakers_own_numbers():
    # vectorised (a Python function per speaker took seconds at 50,000): checked against the rows
    from sde.quality.tts import speaker_table

    rng = np.random.default_rng(7)
    n = 3000
    table = pd.DataFrame({
        "speaker": pd.array(rng.choice([f"s{i}" for i in range(40)] + [None], n), dtype=object),
        "duration": rng.uniform(0.5, 9, n),
        "sample_rate": np.where(rng.random(n) < 0.2, np.nan, rng.choice([8000, 16000, 44100], n)),
        "lufs": np.where(rng.random(n) < 0.3, np.nan, rng.normal(-23, 4, n)),
        "clipping_ratio": np.where(rng.random(n) < 0.5, np.nan, rng.random(n) * 0.002),
    })
    table.loc[table["speaker"] == "s3", "clipping_ratio"] = np.nan  # a speaker never measured
    got = speaker_table(table).set_index("speaker")
    for name, rows in table.assign(speaker=table["speaker"].fillna("")).groupby("speaker"):
        row = got.loc[name]
        assert row["utterances"] == len(rows)
        assert row["hours"] == pytest.approx(rows["duration"].sum() / 3600)
        assert row["sample_rates"] == sorted({int(v) for v in rows["sample_rate"].dropna()})
        clip = rows["clipping_ratio"].dropna()
        if len(clip):
            assert row["clipping_share"] == pytest.approx((clip > GUIDANCE["clipped_sample_share"]).mean())
        else:
            assert np.isnan(row["clipping_share"])
        assert row["lufs_median"] == pytest.approx(rows["lufs"].median(), nan_ok=True)


# ---------------------------------------------------------------- /api/tts through a real server

# Anna, then three lines without a speaker (no field, null, an empty name: one group), all of a
# language espeak-ng has no voice for (the manifest's lang field, the report's default).
SERVED = [("anna", "the pleasure of a quiet morning"), ("anna", "boys enjoy the noise"),
          (None, "hello there"), ("null", "good night"), ("", "good morning")]


@pytest.fixture(scope="module")
def served(espeak, tmp_path_factory):
    path = tmp_path_factory.mktemp("tts-served") / "manifest.json"
    lines = []
    for i, (speaker, text) in enumerate(SERVED):
        line = {"audio_filepath": f"{i}.wav", "duration": 2.0, "text": text, "pred_text": text, "lang": "xx"}
        if speaker is not None:
            line["speaker"] = None if speaker == "null" else speaker
        lines.append(json.dumps(line) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    with sde_server(str(path)) as url:
        yield url, path


def tts_answer(url: str, **params) -> tuple[int, dict]:
    import urllib.error

    try:
        return 200, api(url, "/api/tts", **params)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("params, status, says", [
    ({"lang": "xx"}, 400, 'lang: espeak-ng has no voice "xx"; `espeak-ng --voices` lists them'),  # was 200
    ({"lang": "zz-yy"}, 400, 'no voice "zz-yy"'),
    ({"lang": "../x"}, 400, "lang must be an espeak-ng voice"),
    ({"lang": "en-US"}, 200, None),
    # the manifest's own language is no mistake of the request: the report says why it has no phonemes
    ({}, 200, 'espeak-ng has no voice "xx"'),
])
def test_a_language_espeak_has_no_voice_for_is_a_400_when_asked_for(served, params, status, says):
    code, body = tts_answer(served[0], **params)
    assert code == status, body
    said = body["error"] if status != 200 else body.get("phoneme_error")
    assert said == says if says is None else says in said


def test_utterances_without_a_speaker_are_the_null_speaker_as_in_breakdown(served):
    # they were the speaker "" where /api/breakdown's group of missing values is null
    url, _ = served
    speakers = {s["speaker"]: s["utterances"] for s in api(url, "/api/tts", lang="en")["speakers"]}
    assert speakers == {"anna": 2, None: 3}
    assert None in {row["value"] for row in api(url, "/api/breakdown", by="speaker")["rows"]}


def test_the_tts_page_shows_the_null_speaker_as_none_linking_to_its_utterances(served):
    from urllib.parse import parse_qs, urlparse

    from sde.build.load import load_dataset
    from sde.web.pages.tts import CHART_SPEAKER, phoneme_figure, report_state

    dataset = load_dataset(str(served[1]), use_cache=False)
    content, final = report_state(dataset, "en", "speaker", wait_s=60)
    components = list(_walk(content))
    link = next(c for c in components if getattr(c, "children", None) == "(none)" and hasattr(c, "href"))
    shown = parse_qs(urlparse(link.href).query)["filter"][0]
    assert final and len(dataset.utterance_query.select(shown, None)) == 3
    picker = next(c for c in components if getattr(c, "id", None) == CHART_SPEAKER)
    assert {"label": "(none)", "value": ""} in picker.options
    report = api(served[0], "/api/tts", lang="en", counts=1)
    assert "Phonemes of (none)" in phoneme_figure(report, "").layout.title.text


def _walk(component):
    """A Dash layout's components, depth first."""
    if isinstance(component, (list, tuple)):
        for c in component:
            yield from _walk(c)
    elif component is not None and hasattr(component, "to_plotly_json"):
        yield component
        yield from _walk(getattr(component, "children", None))
