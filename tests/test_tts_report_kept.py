"""The TTS readiness report (/api/tts, the TTS page: ~45 s at 10M utterances) is kept with the
dataset's build, as the suspicious counts are: a later start reads it; per espeak-ng version, and
never a report made without espeak-ng (a later start that has it makes a real one)."""

from __future__ import annotations

import pytest

from sde.build.load import load_dataset
from sde.quality import phonemes
from sde.web.panels import quality_data
from tests.quality_kit import need_espeak

ROWS = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": text, "speaker": "anna" if i % 2 else "ben"}
        for i, text in enumerate(["the quick brown fox", "she sells sea shells", "a stitch in time", "good morning"])]


@pytest.fixture
def start(write_manifest, tmp_path):
    """A function that starts on the build as a server does (the build made first)."""
    manifest, folder = write_manifest(ROWS), tmp_path / "cache"
    load_dataset(manifest, cache_dir=folder)
    return lambda: load_dataset(manifest, cache_dir=folder)


def _refuse_reports(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the report was made again")

    monkeypatch.setattr(quality_data, "tts_report", refuse)


def test_a_later_start_reads_the_report_kept_with_the_build(start, monkeypatch):
    need_espeak()
    first = quality_data.tts(start(), "en", "speaker")
    assert first["phoneme_inventory"] and "phoneme_error" not in first
    _refuse_reports(monkeypatch)
    assert quality_data.tts(start(), "en", "speaker") == first


def test_a_report_is_kept_per_language_and_speaker_column(start, monkeypatch):
    need_espeak()
    quality_data.tts(start(), "en", "speaker")
    _refuse_reports(monkeypatch)
    with pytest.raises(AssertionError, match="made again"):
        quality_data.tts(start(), "de", "speaker")


def test_a_report_of_another_espeak_version_is_made_again(start, monkeypatch):
    need_espeak()
    first = quality_data.tts(start(), "en", "speaker")
    monkeypatch.setattr(quality_data, "espeak_version", lambda: "0.0-another")
    made = []
    real = quality_data.tts_report
    monkeypatch.setattr(quality_data, "tts_report", lambda *a, **k: made.append(1) or real(*a, **k))
    assert quality_data.tts(start(), "en", "speaker") == first and made == [1]


def test_a_report_made_without_espeak_is_not_kept(start, monkeypatch):
    missing = phonemes.PhonemizerError("phoneme coverage needs espeak-ng (its library libespeak-ng)")

    def no_espeak():
        raise missing

    monkeypatch.setattr(phonemes, "_espeak", no_espeak)  # a machine without the library
    without = quality_data.tts(start(), "en", "speaker")
    assert without["phoneme_error"].startswith("phoneme coverage needs espeak-ng")
    monkeypatch.undo()
    need_espeak()
    again = quality_data.tts(start(), "en", "speaker")  # espeak-ng installed since: a real report
    assert "phoneme_error" not in again and again["phoneme_inventory"]


@pytest.mark.parametrize("later", [False, True], ids=["audio checked before serving", "audio checked while serving"])
def test_a_server_checking_the_audio_keeps_and_reads_the_report(write_manifest, tmp_path, monkeypatch, later):
    """The server checks the audio files at each start (a copy with `audio_exists`, or that swapped
    in while serving): the report is kept with the build and read back all the same."""
    import time

    from sde import cli
    from sde.dataset import DatasetOptions

    need_espeak()
    monkeypatch.setattr(cli, "PRESENCE_BEFORE_START_ROWS", 0 if later else 10**6)
    manifest, folder = write_manifest(ROWS), str(tmp_path / "cache")

    def serve():
        dataset = cli.load(str(manifest), DatasetOptions(), folder, no_cache=False, quiet=True,
                           check_audio_later=later)
        deadline = time.monotonic() + 60
        while "audio_exists" not in dataset.utterances.columns and time.monotonic() < deadline:
            time.sleep(0.01)
        return dataset

    first = quality_data.tts(serve(), "en", "speaker")
    _refuse_reports(monkeypatch)
    assert quality_data.tts(serve(), "en", "speaker") == first
