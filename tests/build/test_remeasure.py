"""sde.build.remeasure: audio measures kept in a cache entry follow the audio files. Real WAV files,
real cache folders, the real load_dataset and CLI; files are changed on disk between two starts.

What proves a file was *not* measured again: the line sde says, which counts the files and
utterances measured again (no file's content can change without its change time, which sde
compares, moving: a same-size rewrite with its modification time put back is measured again,
tests/test_audio_replaced_same_size.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde.audio_quality import cached_audio_quality_summary, with_measured_audio
from sde.build.load import entry_key, load_dataset
from sde.build import remeasure
from sde.build.remeasure import RECORD
from sde.cache import DatasetCache
from sde.cache.identity import Recording, input_files
from sde.caching import keeping
from sde.dataset import DatasetOptions, build_dataset

SR = 16_000
METRICS = DatasetOptions(estimate_audio_metrics=True)
COLUMNS = ["sample_rate", "channels", "audio_duration", "peak_dbfs", "rms_dbfs", "clipping_ratio", "audio_error"]


def tone(seconds: float = 0.5, sr: int = SR, amplitude: float = 0.3, freq: float = 440.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)


def noise_in_place(path: Path) -> None:
    """Replace the file's bytes by noise that keeps its size and modification time; its change time
    moves, so sde measures it again (and finds no audio)."""
    st = path.stat()
    path.write_bytes(np.random.default_rng(7).integers(0, 256, st.st_size, dtype=np.uint8).tobytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


class Corpus:
    """Seven audio files in audio/ (one corrupt, one long recording cut into two utterances) and a
    manifest naming them by relative path; a cache folder of its own."""

    FILES = ("a.wav", "b.wav", "c.wav", "d.wav", "e.flac", "corrupt.wav", "long.wav")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.audio = root / "audio"
        self.audio.mkdir()
        self.cache = root / "cache"
        rows = []
        for i, name in enumerate(self.FILES[:5]):
            sf.write(self.audio / name, tone(freq=300.0 + 100 * i), SR)
            rows.append({"audio_filepath": f"audio/{name}", "duration": 0.5, "text": f"utterance {i}"})
        (self.audio / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
        rows.append({"audio_filepath": "audio/corrupt.wav", "duration": 0.5, "text": "broken"})
        sf.write(self.audio / "long.wav", tone(2.0, amplitude=0.5), SR)
        rows += [{"audio_filepath": "audio/long.wav", "offset": 0.0, "duration": 1.0, "text": "first half"},
                 {"audio_filepath": "audio/long.wav", "offset": 1.0, "duration": 1.0, "text": "second half"}]
        self.manifest = root / "manifest.json"
        self.manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def load(self, options: DatasetOptions = METRICS, **kw) -> tuple[pd.DataFrame, list[str]]:
        said: list[str] = []
        dataset = load_dataset(self.manifest, options, cache_dir=self.cache, status=said.append, **kw)
        return dataset.utterances, said

    def rows_of(self, table: pd.DataFrame, name: str) -> np.ndarray:
        return np.flatnonzero(table["audio_path"].astype(str).str.endswith("/" + name).to_numpy())


def measures(table: pd.DataFrame, rows: np.ndarray | None = None) -> pd.DataFrame:
    picked = table[COLUMNS] if rows is None else table[COLUMNS].iloc[rows]
    return picked.astype(object).where(picked.notna(), None).reset_index(drop=True)


def about(said: list[str]) -> list[str]:
    return [line for line in said if "audio measures" in line]


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    return Corpus(tmp_path)


def rewrite_at_8k(c: Corpus) -> str:
    sf.write(c.audio / "b.wav", tone(sr=8000), 8000)
    return "b.wav"


def make_clipped(c: Corpus) -> str:
    """Same rate, length and format: the same size, a new modification time."""
    before = (c.audio / "c.wav").stat()
    sf.write(c.audio / "c.wav", np.clip(tone(amplitude=3.0), -1, 1), SR)
    assert (c.audio / "c.wav").stat().st_size == before.st_size
    os.utime(c.audio / "c.wav", ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    return "c.wav"


def delete(c: Corpus) -> str:
    (c.audio / "d.wav").unlink()
    return "d.wav"


def repair_the_corrupt_one(c: Corpus) -> str:
    sf.write(c.audio / "corrupt.wav", tone(), SR)
    return "corrupt.wav"


def trim_the_long_recording(c: Corpus) -> str:
    sf.write(c.audio / "long.wav", tone(1.5, amplitude=0.5), SR)
    return "long.wav"


def touch_only(c: Corpus) -> str:
    """Nothing but the modification time: measured again all the same (a stat cannot tell more)."""
    st = (c.audio / "e.flac").stat()
    os.utime(c.audio / "e.flac", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    return "e.flac"


CHANGES: dict[str, tuple[Callable[[Corpus], str], Callable[[pd.DataFrame], None], str]] = {
    "rewritten at 8 kHz": (rewrite_at_8k, lambda m: m["sample_rate"].eq(8000).all(), ""),
    "made clipped, same size": (make_clipped, lambda m: (m["clipping_ratio"] > 0.1).all(), ""),
    "deleted": (delete, lambda m: m["audio_error"].str.contains("not found").all(), " (1 gone)"),
    "corrupt one replaced by a good one": (repair_the_corrupt_one,
                                           lambda m: m["audio_error"].isna().all() and m["sample_rate"].eq(SR).all(), ""),
    "long recording trimmed under its second utterance": (
        # measures() hands back object columns, which pandas 2 does not round: compared as floats
        trim_the_long_recording, lambda m: np.allclose(m["audio_duration"].astype(float), [1.0, 0.5], atol=5e-4), ""),
    "only its modification time bumped": (touch_only, lambda m: m["sample_rate"].eq(SR).all(), ""),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_only_the_utterances_of_a_changed_file_are_measured_again(corpus, change):
    alter, check, gone = CHANGES[change]
    before, said = corpus.load()
    assert about(said) == []  # a cold build measures everything and says nothing of changes
    name = alter(corpus)
    after, said = corpus.load()
    rows = corpus.rows_of(after, name)
    assert about(said) == [said_line(1, len(Corpus.FILES), len(rows), gone, about(said))]
    assert bool(check(measures(after, rows)))
    others = np.setdiff1d(np.arange(len(after)), rows)
    assert measures(after, others).equals(measures(before, others))
    if change == "only its modification time bumped":
        assert measures(after, rows).equals(measures(before, rows))


def said_line(changed: int, files: int, utterances: int, gone: str, said: list[str]) -> str:
    """The line expected, with the seconds it took as sde said them."""
    seconds = said[0].rsplit(" in ", 1)[1] if said else "?"
    noun = "utterance" if utterances == 1 else "utterances"
    return (f"audio measures: {changed} of {files} audio files changed since measured{gone}; re-measured their "
            f"{utterances} {noun} in {seconds}")


def test_the_entry_stored_after_measuring_again_serves_the_next_start_as_it_is(corpus):
    corpus.load()
    rewrite_at_8k(corpus)
    delete(corpus)
    refreshed, said = corpus.load()
    assert len(about(said)) == 1 and "2 of 7 audio files changed" in about(said)[0]
    again, said = corpus.load()
    assert about(said) == []
    assert measures(again).equals(measures(refreshed))
    assert measures(again, corpus.rows_of(again, "b.wav"))["sample_rate"].tolist() == [8000]


@pytest.mark.parametrize("vad", [False, True], ids=["audio metrics", "audio metrics and speech activity"])
def test_what_was_kept_beside_the_entry_is_not_served_stale(corpus, vad):
    """The audio summary (kept with the entry by the server's warm-up) follows the new measures."""
    if vad:
        from sde.quality.apply import vad_unavailable

        if vad_unavailable():
            pytest.skip(vad_unavailable())
    first = load_dataset(corpus.manifest, METRICS, cache_dir=corpus.cache, vad=vad)
    with keeping():
        assert [r["sample_rate"] for r in cached_audio_quality_summary(first)["sample_rates"]] == [SR]
    rewrite_at_8k(corpus)
    for start in ("re-measured", "read back"):
        dataset = load_dataset(corpus.manifest, METRICS, cache_dir=corpus.cache, vad=vad)
        rates = [r["sample_rate"] for r in cached_audio_quality_summary(dataset)["sample_rates"]]
        assert rates == [8000, SR], start


def test_speech_activity_and_audio_hashes_follow_the_files(corpus):
    from sde.quality.apply import vad_unavailable

    if vad_unavailable():
        pytest.skip(vad_unavailable())
    before = load_dataset(corpus.manifest, DatasetOptions(), cache_dir=corpus.cache, vad=True).utterances
    assert "audio_sample_rate" not in before.columns and "sample_rate" not in before.columns
    sf.write(corpus.audio / "b.wav", tone(freq=900.0), SR)  # other audio: another hash
    said: list[str] = []
    after = load_dataset(corpus.manifest, DatasetOptions(), cache_dir=corpus.cache, vad=True, status=said.append).utterances
    assert len(about(said)) == 1 and "1 of 7 audio files changed" in about(said)[0]
    b = corpus.rows_of(after, "b.wav")
    assert after["audio_hash"].iloc[b].tolist() != before["audio_hash"].iloc[b].tolist()
    others = np.setdiff1d(np.arange(len(after)), b)
    assert after["audio_hash"].iloc[others].tolist() == before["audio_hash"].iloc[others].tolist()
    assert np.allclose(after["lufs"].iloc[others].to_numpy(float), before["lufs"].iloc[others].to_numpy(float),
                       equal_nan=True)


def test_a_manifest_on_a_missing_folder_is_measured_once_the_folder_is_there(corpus, tmp_path):
    kept = tmp_path / "kept-aside"
    corpus.audio.rename(kept)
    before, said = corpus.load()
    assert before["audio_error"].str.contains("not found").all()
    again, said = corpus.load()  # still missing: nothing to measure
    assert about(said) == []
    kept.rename(corpus.audio)
    after, said = corpus.load()
    assert about(said) and about(said)[0].startswith("audio measures: 7 of 7 audio files changed since measured;")
    assert after["audio_error"].isna().sum() == len(after) - 1  # all but the corrupt file


def test_files_the_time_budget_did_not_reach_keep_their_measures(corpus):
    before, _ = corpus.load()
    rewrite_at_8k(corpus)
    after, said = corpus.load(audio_budget_s=0)
    assert about(said) == ["note: audio measures: checked 0 of 7 audio files for changes in 0 s (the time allowed); "
                           "the other 7 keep their measures unchecked"]
    assert measures(after).equals(measures(before))
    later, said = corpus.load()  # with the time to check: measured again then
    assert "1 of 7 audio files changed" in about(said)[0]
    assert measures(later, corpus.rows_of(later, "b.wav"))["sample_rate"].tolist() == [8000]


def test_a_start_with_many_files_says_it_checks_them_first(corpus, monkeypatch):
    corpus.load()
    monkeypatch.setattr(remeasure, "SAY_CHECKING_FILES", 7)
    _, said = corpus.load()
    assert about(said) == ["audio measures: checking 7 audio files for changes since they were measured (at most 10 s)"]
    monkeypatch.setattr(remeasure, "SAY_CHECKING_FILES", 8)
    _, said = corpus.load()
    assert about(said) == []


def test_an_entry_without_a_record_gets_one_and_notices_changes_from_then_on(corpus):
    """An entry stored without the files' states (as sde did before it kept them)."""
    measured = with_measured_audio(build_dataset(corpus.manifest, METRICS))
    cache = DatasetCache(corpus.cache)
    key = entry_key(corpus.manifest, METRICS, False)
    cache.put(key, measured)
    # with the record of its manifest (sde.cache.identity), kept with every entry: only the audio's is missing
    cache.keep_input_record(key, Recording(input_files(corpus.manifest, METRICS)).start().record())
    cache.close()
    _, said = corpus.load()
    assert about(said) == ["note: audio measures: no record of the state of the 7 audio files when they were measured; "
                           "recorded it now, so that changes from now on are noticed"]
    _, said = corpus.load()
    assert about(said) == []
    rewrite_at_8k(corpus)
    after, said = corpus.load()
    assert "1 of 7 audio files changed" in about(said)[0]
    assert measures(after, corpus.rows_of(after, "b.wav"))["sample_rate"].tolist() == [8000]


def test_the_record_is_kept_beside_the_entry(corpus):
    dataset = load_dataset(corpus.manifest, METRICS, cache_dir=corpus.cache)
    found, record = dataset.caches.keeper(dataset.generation).recall(RECORD)
    assert found and record["files"] == 7 and record["digests"].dtype == np.uint64


def test_the_sde_command_says_what_it_measured_again(corpus):
    def stats() -> str:
        done = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(corpus.manifest), "--estimate-audio-metrics",
                               "--cache-dir", str(corpus.cache)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    stats()
    repair_the_corrupt_one(corpus)
    lines = about(stats().splitlines())
    assert len(lines) == 1 and lines[0].startswith("audio measures: 1 of 7 audio files changed since measured; "
                                                    "re-measured their 1 utterance in ")
    assert about(stats().splitlines()) == []


# ---------------------------------------------------------------- a server checks while it serves


def test_a_server_serves_the_stored_measures_at_once_and_checks_the_files_meanwhile(corpus, monkeypatch, capsys):
    """sde.cli.load as `sde MANIFEST` calls it, from PRESENCE_BEFORE_START_ROWS utterances on (lowered
    here). The test holds the entry's build lock, which the check needs to store the entry anew:
    the load has returned, serving the measures stored, while the check waits for it."""
    import threading

    from sde import cli
    from sde.cache.building import lock_build
    from sde.web.app import AppConfig, create_app

    corpus.load()
    rewrite_at_8k(corpus)
    monkeypatch.setattr(cli, "PRESENCE_BEFORE_START_ROWS", 3)
    held = lock_build(corpus.cache, entry_key(corpus.manifest, METRICS, False), lambda _msg: None)
    unstick = threading.Timer(20, held.release)  # a load that waited for the check fails, and does not hang
    unstick.start()
    try:
        dataset = cli.load(str(corpus.manifest), METRICS, str(corpus.cache), False, background_write=True,
                           check_audio_later=True)
        client = create_app(dataset, AppConfig(title="t")).server.test_client()

        def at_8k() -> int:
            answer = client.get("/api/utterances?filter=%7Bsample_rate%7D%20%3D%208000")
            assert answer.status_code == 200, answer.data[:300]
            return answer.get_json()["total"]

        assert at_8k() == 0 and "audio_exists" not in dataset.utterances.columns
    finally:
        unstick.cancel()
        held.release()
    checking = [t for t in threading.enumerate() if t.name == "sde-audio-presence"]
    for thread in checking:
        thread.join(60)
    assert at_8k() == 1
    assert dataset.utterances["audio_exists"].sum() == len(Corpus.FILES) + 1  # every file is there
    lines = about(capsys.readouterr().err.splitlines())
    assert lines[0] == ("audio measures: checking the audio files of 8 utterances for changes since they were "
                        "measured, while serving (the measures shown until then are those stored)")
    assert lines[1:] == [said_line(1, len(Corpus.FILES), 1, "", lines[1:])]
    again, said = corpus.load()  # the entry was stored anew
    assert about(said) == [] and measures(again).equals(measures(dataset.utterances))
    cli.load(str(corpus.manifest), METRICS, str(corpus.cache), False, check_audio_later=True)
    for thread in [t for t in threading.enumerate() if t.name == "sde-audio-presence"]:
        thread.join(60)
    lines = about(capsys.readouterr().err.splitlines())  # nothing changed: the check's end is said all the same
    assert len(lines) == 2 and lines[1].startswith("audio measures: none of the 7 audio files changed since measured "
                                                   "(checked in ")


def test_a_value_the_served_tables_keep_after_the_check_is_not_kept_with_the_entry_stored_anew(corpus):
    """A server's warm-up computes the audio summary from the tables it serves; finishing after the
    check stored the entry anew, it must not be kept with it: the next start would read it."""
    load_dataset(corpus.manifest, METRICS, cache_dir=corpus.cache)
    rewrite_at_8k(corpus)
    checks: list = []
    served = load_dataset(corpus.manifest, METRICS, cache_dir=corpus.cache, measure_checks=checks)
    assert len(checks) == 1  # left to the caller: the measures read are the stored ones
    assert measures(served.utterances, corpus.rows_of(served.utterances, "b.wav"))["sample_rate"].tolist() == [SR]
    said: list[str] = []
    checks[0].run(served, say=said.append)
    assert "1 of 7 audio files changed" in about(said)[0]
    with keeping():  # the warm-up, late, over the tables it still serves
        assert [r["sample_rate"] for r in cached_audio_quality_summary(served)["sample_rates"]] == [SR]
    next_start = load_dataset(corpus.manifest, METRICS, cache_dir=corpus.cache)
    with keeping():
        assert [r["sample_rate"] for r in cached_audio_quality_summary(next_start)["sample_rates"]] == [8000, SR]


def test_a_small_dataset_is_checked_before_the_server_starts(corpus, capsys):
    from sde import cli

    corpus.load()
    rewrite_at_8k(corpus)
    dataset = cli.load(str(corpus.manifest), METRICS, str(corpus.cache), False, background_write=True,
                       check_audio_later=True)
    assert measures(dataset.utterances, corpus.rows_of(dataset.utterances, "b.wav"))["sample_rate"].tolist() == [8000]
    assert dataset.utterances["audio_exists"].all()
    lines = about(capsys.readouterr().err.splitlines())
    assert len(lines) == 1 and "1 of 7 audio files changed" in lines[0]


def test_a_re_packed_tar_shard_has_its_utterances_measured_again(tmp_path):
    """NeMo tarred audio: the manifest (the entry's key) stays the same when a shard is re-packed,
    so the record holds each tar's state. Shard 1 re-packed with its tones at 8 kHz: its three
    utterances are measured again; shard 0 is overwritten with noise of the same size and
    modification time: measured again too (its change time moved), its members then unreadable."""
    from tests.sources.tar_kit import make_tarred
    from tests.test_tar_index import write_nemo_shard

    tarred = make_tarred(tmp_path / "tarred")
    options = DatasetOptions(estimate_audio_metrics=True, tarred_audio=tarred.pattern)

    def load() -> tuple[pd.DataFrame, list[str]]:
        said: list[str] = []
        dataset = load_dataset(tarred.manifest, options, cache_dir=tmp_path / "cache", status=said.append)
        return dataset.utterances, said

    first, said = load()
    assert first["sample_rate"].isin([16_000, 22_050]).all() and first["audio_error"].isna().all(), measures(first)
    shard1 = np.flatnonzero(first["shard_id"].astype(int).eq(1).to_numpy())
    shard0 = np.flatnonzero(first["shard_id"].astype(int).eq(0).to_numpy())
    assert len(shard1) == 3 and len(shard0) == 4

    noise_in_place(tarred.folder / "audio_0.tar")
    for o in tarred.originals[4:]:
        sf.write(o["audio_filepath"], tone(o["duration"], sr=8000), 8000)
    write_nemo_shard(tarred.folder, tarred.originals[4:], 1)
    second, said = load()
    assert second["audio_error"].iloc[shard0].notna().all(), measures(second)
    assert second["sample_rate"].iloc[shard1].eq(8000).all(), measures(second)
    assert any("2 of 2 audio tars changed since measured" in line and "7 utterances" in line
               for line in about(said)), said

    third, said = load()
    assert measures(third).equals(measures(second)) and about(said) == [], said


def test_an_entry_another_process_serves_is_measured_again_but_not_stored_over(corpus):
    # Storing the re-measured entry deletes the old one's files, which another sde process sharing
    # the cache folder is reading (sde.cache.in_use): the new measures are used, not stored, and the
    # next start, once that process is gone, measures again and stores them.
    from tests.cache_kit import entry_held_elsewhere

    corpus.load()
    with entry_held_elsewhere(corpus.cache, entry_key(corpus.manifest, METRICS, False)):
        rewrite_at_8k(corpus)
        served, said = corpus.load()
        assert len(about(said)) == 1 and "not stored: another sde process is using the cached build" in about(said)[0]
        assert measures(served, corpus.rows_of(served, "b.wav"))["sample_rate"].tolist() == [8000]
    again, said = corpus.load()
    assert len(about(said)) == 1 and "not stored" not in about(said)[0]
    assert measures(again, corpus.rows_of(again, "b.wav"))["sample_rate"].tolist() == [8000]
    assert about(corpus.load()[1]) == []  # stored: nothing to measure again
