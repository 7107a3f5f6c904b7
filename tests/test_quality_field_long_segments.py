"""Segment measures (VAD, loudness, hash, levels) on what a corpus really holds: reference tones
whose loudness BS.1770 fixes, espeak-ng speech at telephone and CD rates checked against ffmpeg's
EBU R128 meter, and segments too long to hold whole, measured block by block in bounded memory."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sde.audio import IN_MEMORY_MAX_FRAMES, AudioError, read_segment
from sde.quality.loudness import LoudnessMeter, integrated_loudness
from sde.quality.segments import SegmentMeasures, measure_segment
from sde.quality.vad import SpeechActivity, speech_activity
from tests.audio.audio_kit import long_recording
from tests.quality_kit import need_espeak, need_vad, noise, silence, speak, write

ALL = ("vad", "hash", "loudness", "levels")


def tone(amplitude: float, sample_rate: int, seconds: float = 3.0, hz: float = 997.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return amplitude * np.sin(2 * np.pi * hz * t)


@pytest.mark.parametrize("sample_rate,amplitude,expected,tolerance", [
    (48000, 1.0, -3.01, 0.01),    # BS.1770's own calibration: its 48 kHz coefficients, exactly
    (48000, 0.1, -23.01, 0.01),
    (44100, 1.0, -3.01, 0.05),
    (16000, 0.1, -23.01, 0.05),
    (8000, 1.0, -3.01, 0.05),     # telephone audio: pyloudnorm's filter design read -3.19
], ids=["48k-full-scale", "48k-minus-20", "44k1", "16k", "8k"])
def test_a_997_hz_sine_reads_its_bs1770_loudness_at_every_rate(sample_rate, amplitude, expected, tolerance):
    assert integrated_loudness(tone(amplitude, sample_rate), sample_rate) == pytest.approx(expected, abs=tolerance)


def _ffmpeg_lufs(path) -> float:
    run = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128",
                          "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = run.stderr[run.stderr.rindex("Integrated loudness"):]
    return float(re.search(r"I:\s*(-?[\d.]+) LUFS", summary).group(1))


@pytest.mark.parametrize("sample_rate", [8000, 22050])
def test_speech_loudness_agrees_with_ffmpegs_ebu_r128_meter(tmp_path, sample_rate):
    """ffmpeg prints one decimal: within its rounding (pyloudnorm's filters were 0.19 LU off at 8 kHz)."""
    need_espeak()
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    y, sr = speak("please call stella and ask her to bring these things with her", "en-us", sample_rate)
    path = write(tmp_path / "speech.wav", np.concatenate([silence(0.5, sr), y, silence(0.5, sr)]), sr)
    samples, _ = sf.read(path, dtype="float32")
    assert integrated_loudness(samples, sr) == pytest.approx(_ffmpeg_lufs(path), abs=0.06)


@pytest.mark.parametrize("block", [7, 4409, 65536])
def test_loudness_fed_in_blocks_equals_loudness_of_the_whole(block):
    rng = np.random.default_rng(3)
    x = np.concatenate([tone(0.3, 44100, 2.0), silence(1.0, 44100), rng.standard_normal(44100) * 0.05])
    x = x[:22050 + 17] if block < 100 else x  # a few samples at a time: keep it short (0.5 s)
    meter = LoudnessMeter(44100)
    for i in range(0, len(x), block):
        meter.feed(x[i:i + block])
    assert meter.result() == pytest.approx(integrated_loudness(x, 44100), abs=1e-9)


@pytest.fixture(scope="module")
def long_stereo(tmp_path_factory):
    """A minute of 44.1 kHz stereo (over IN_MEMORY_MAX_FRAMES: read block by block): hiss, and
    espeak-ng speech at 5 s and 40 s; returns (path, seconds of speech, where it starts)."""
    need_espeak()
    need_vad()
    y, sr = speak("the quick brown fox jumps over the lazy dog", "en", 44100)
    x = noise(60.0, sr, level=0.002)
    for start in (5.0, 40.0):
        i = int(start * sr)
        x[i:i + len(y)] += y
    assert len(x) > IN_MEMORY_MAX_FRAMES
    path = tmp_path_factory.mktemp("long") / "long.flac"
    sf.write(path, np.stack([x, 0.5 * x], axis=1), sr, subtype="PCM_16")
    return path, 2 * len(y) / sr, 5.0


def test_a_long_segment_measured_in_blocks_equals_it_measured_whole(long_stereo):
    path, speech_s, start = long_stereo
    measures = SegmentMeasures(ALL)
    blocked = measure_segment(measures, str(path))
    seg = read_segment(str(path))
    whole = measures(seg.samples, seg.sample_rate)
    assert blocked["audio_hash"] == whole["audio_hash"]
    for name in ("speech_duration", "leading_silence", "trailing_silence", "speech_ratio", "lufs",
                 "clipping_ratio", "sample_rate"):
        assert blocked[name] == pytest.approx(whole[name], abs=1e-6), name
    # and both are what was built: two sentences of speech (give or take Silero's 30 ms pads)
    assert blocked["speech_duration"] == pytest.approx(speech_s, abs=0.25)
    assert blocked["leading_silence"] == pytest.approx(start, abs=0.1)


def test_a_long_segment_damaged_in_the_middle_is_an_error_not_a_pause(long_stereo, tmp_path):
    """A stretch the decoder cannot deliver inside a segment read block by block was measured as
    silence (less speech, a quieter loudness, no error): now it fails as a segment read whole does."""
    path, _, _ = long_stereo
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + len(data) // 8] = bytes(len(data) // 8)
    damaged = tmp_path / "damaged.flac"
    damaged.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="corrupt or truncated audio data"):
        measure_segment(SegmentMeasures(("loudness", "levels")), str(damaged))
    with pytest.raises(AudioError, match="corrupt or truncated audio data"):
        read_segment(str(damaged))


def test_speech_activity_fed_in_odd_blocks_equals_it_of_the_whole():
    need_espeak()
    need_vad()
    y, sr = speak("six spoons of fresh snow peas", "en-gb", 22050)
    x = np.concatenate([silence(1.3, sr), y, noise(0.7, sr, level=0.002)])
    activity = SpeechActivity(sr)
    for i in range(0, len(x), 7001):
        activity.feed(x[i:i + 7001])
    assert activity.result() == pytest.approx(speech_activity(x, sr), abs=1e-9)


_PEAK_RSS_GROWTH = """
import json, resource, sys
import pandas as pd
import sde.sources.members  # reads tar members named by sde.sources.members.tar_member_path
from sde.quality.segments import measure_segments

def peak_mb():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes there, KiB here

def measured(duration):
    table = pd.DataFrame({"audio_path": [sys.argv[1]], "offset": [0.0], "duration": [duration]})
    return measure_segments(table, ("vad", "hash", "loudness", "levels"), workers=1).iloc[0]

measured(20.0)  # imports, the VAD model, first-use allocations
before = peak_mb()
m = measured(float("nan"))  # the whole file
print(json.dumps({"grew_mb": peak_mb() - before, "speech": float(m["speech_duration"]),
                  "lead": float(m["leading_silence"]), "lufs": float(m["lufs"]), "error": m["quality_error"]
                  if isinstance(m["quality_error"], str) else None}))
"""


@pytest.mark.parametrize("kept", ["in a file", "in a tar"])
def test_measuring_a_long_segment_adds_bounded_memory(tmp_path, kept):
    """10 minutes at 16 kHz in one segment, a sentence every minute: read whole, VAD + hash +
    loudness peaked ~260 MB above their start (515 MB for 20 minutes); block by block, ~10 MB."""
    need_espeak()
    need_vad()
    sr = 16000
    y, _ = speak("the quick brown fox jumps over the lazy dog", "en", sr)
    minute = np.concatenate([silence(10.0, sr), y, silence(50.0 - len(y) / sr, sr)])
    name = long_recording(tmp_path, minute, 10, sr, kept)
    run = subprocess.run([sys.executable, "-c", _PEAK_RSS_GROWTH, name], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    m = json.loads(run.stdout.splitlines()[-1])
    assert m["error"] is None
    assert m["speech"] == pytest.approx(10 * len(y) / sr, rel=0.05)
    assert m["lead"] == pytest.approx(10.0, abs=0.1)
    assert np.isfinite(m["lufs"])
    assert m["grew_mb"] < 40, f"measuring 10 minutes took {m['grew_mb']:.0f} MB more memory"


@pytest.mark.parametrize("threads,said", [
    (1, "(here; --threads sets how many)"),
    (3, "(in 3 worker processes; --threads sets how many)"),  # was 2 whatever --threads said
], ids=["one", "three"])
def test_vad_at_load_uses_the_processes_threads_allows(tmp_path, threads_setting, threads, said):
    need_espeak()
    need_vad()
    from sde.dataset import build_dataset
    from sde.quality.apply import with_vad

    y, sr = speak("please call stella and ask her", "en", 16000)
    lines = []
    for i, before in enumerate((0.2, 0.6, 1.0, 1.4)):
        write(tmp_path / f"{i}.wav", np.concatenate([silence(before, sr), y, silence(0.5, sr)]), sr)
        lines.append(json.dumps({"audio_filepath": f"{i}.wav", "duration": before + len(y) / sr + 0.5, "text": "x"}))
    (tmp_path / "m.json").write_text("\n".join(lines) + "\n")
    threads_setting(threads=threads)
    heard: list[str] = []
    table = with_vad(build_dataset(tmp_path / "m.json"), status=heard.append).utterances
    assert any(said in line for line in heard), heard
    assert table["leading_silence"].to_numpy() == pytest.approx([0.2, 0.6, 1.0, 1.4], abs=0.1)


@pytest.mark.parametrize("texts,kinds", [
    (["{dup_text_group} is not null"], ["duplicates"]),
    (["{char_rate} > 20", None, "-duration"], []),             # char_rate is not char_rate_z
    (["{wer} > 50", "-char_rate_z"], ["suspicious"]),          # a sort names a column too
    (["{dup_near_group} = 0 || {repeated_ngram} >= 3"], ["near_duplicates", "suspicious"]),
], ids=["rule", "plain-columns", "sort", "both"])
def test_quality_columns_that_rules_name_are_found_and_added(tmp_path, texts, kinds):
    """A rule set POSTed to /api/rules/preview, or `sde export --rules`, names {dup_text_group}
    without any request having computed it: 'Unknown column' until a GET happened to name it."""
    from sde.dataset import build_dataset
    from sde.quality.apply import ensure_named_quality_columns, named_quality_kinds

    rows = [("a.wav", "Hello, world.", 2.0), ("b.wav", "hello world", 2.0), ("c.wav", "something else entirely", 3.0)]
    (tmp_path / "m.json").write_text("".join(
        json.dumps({"audio_filepath": a, "text": t, "duration": d, "pred_text": t}) + "\n" for a, t, d in rows))
    dataset = build_dataset(tmp_path / "m.json")
    assert named_quality_kinds(dataset, texts) == kinds
    assert ensure_named_quality_columns(dataset, texts) == kinds
    assert named_quality_kinds(dataset, texts) == []  # added: nothing left to compute
    if "duplicates" in kinds:
        assert list(dataset.utterance_query.select("{dup_text_group} is not null")) == [0, 1]


def test_a_huge_duplicate_group_lists_a_bounded_sample_and_counts_the_rest():
    """5,000 silent clips of one length share an audio hash, each with its own transcript: the group
    listed every id and every transcript (the whole corpus's silent clips in one JSON answer)."""
    import pandas as pd

    from sde.quality.duplicates import GROUP_MAX_IDS, GROUP_MAX_TEXTS, audio_hash, duplicate_columns, duplicate_groups

    n = 5000
    silent = audio_hash(np.zeros(32000, np.float32), 16000)
    table = pd.DataFrame({"id": np.arange(n + 2), "text": [f"clip number {i}" for i in range(n)] + ["a", "a"],
                          "audio_hash": [silent] * n + ["x", "y"]})
    table = pd.concat([table, duplicate_columns(table)], axis=1)
    [audio] = duplicate_groups(table, "audio")
    assert audio["size"] == n and audio["conflict"] is True
    assert audio["ids"] == list(range(GROUP_MAX_IDS)) and audio["texts_total"] == n
    assert audio["texts"] == [f"clip number {i}" for i in range(GROUP_MAX_TEXTS)]
    [whole] = duplicate_groups(table, "audio", max_ids=None, max_texts=None)
    assert len(whole["ids"]) == n and len(whole["texts"]) == n
    [text] = duplicate_groups(table, "text")
    assert text == {"group": 0, "size": 2, "ids": [n, n + 1], "texts": ["a"], "texts_total": 1}


@pytest.mark.parametrize("duration,sentences,error", [
    (0.0, 0, None),                            # an empty segment: no speech, no hash
    (-1.0, None, 'invalid duration -1 in the manifest'),
    (float("nan"), 2, None),                   # no duration: to the end of the file
], ids=["zero", "negative", "missing"])
def test_a_zero_or_negative_duration_is_not_the_rest_of_the_file(tmp_path, duration, sentences, error):
    """A 0 s line of a long recording was measured to the end of the file: its speech counted in
    speech_hours (which then exceeded the hours of the manifest)."""
    need_espeak()
    need_vad()
    import pandas as pd

    from sde.quality.segments import measure_segments

    y, sr = speak("please call stella", "en", 16000)
    one = np.concatenate([silence(1.0, sr), y, silence(1.0, sr)])
    write(tmp_path / "rec.wav", np.concatenate([one, one]), sr)
    table = pd.DataFrame({"audio_path": [str(tmp_path / "rec.wav")], "offset": [0.0], "duration": [duration]})
    m = measure_segments(table, ("vad", "hash"), workers=1).iloc[0]
    if error is None:
        assert pd.isna(m["quality_error"])
        # Silero's pads and hangover add ~0.1 s to each sentence
        assert m["speech_duration"] == pytest.approx(sentences * len(y) / sr, abs=0.1 + 0.15 * sentences)
        assert pd.isna(m["audio_hash"]) == (sentences == 0)
    else:
        assert error in m["quality_error"] and np.isnan(m["speech_duration"])


@pytest.mark.parametrize("columns,unchecked", [
    (("duration", "speech_duration", "lufs"), ["low_sample_rate", "clipping"]),   # what --vad measures
    (("duration", "sample_rate", "clipping_ratio"), ["uneven_loudness"]),        # audio metrics alone
    (("duration", "sample_rate", "clipping_ratio", "lufs"), []),
], ids=["vad-only", "metrics-only", "both"])
def test_tts_report_names_the_checks_it_could_not_make(columns, unchecked):
    """After --vad alone an 8 kHz voice came back without a low_sample_rate flag, as if it passed."""
    import pandas as pd

    from sde.quality.tts import tts_report

    values = {"duration": [3.0, 4.0], "speech_duration": [2.0, 3.0], "lufs": [-20.0, -21.0],
              "sample_rate": [8000.0, 8000.0], "clipping_ratio": [0.0, 0.0]}
    table = pd.DataFrame({"speaker": ["bob", "bob"], "text": ["a", "b"], **{c: values[c] for c in columns}})
    report = tts_report(table, lang=None)
    assert [u["flag"] for u in report["unchecked"]] == unchecked
    assert all("measure" in u["message"] for u in report["unchecked"])
    flags = {f["flag"] for f in report["speakers"][0]["flags"]}
    assert ("low_sample_rate" in flags) == ("sample_rate" in columns)
