"""Data quality wired into sde, on real espeak-ng speech with known faults (tests.quality_kit's corpus):
the columns (speech activity, duplicates, suspicious) as filters of /api/utterances, the quality
routes through a real `sde --vad` server, `sde stats --vad`, the speech job of the TTS page, the
text columns computed on demand, and the augmentation chain (seeded, exact SNR, NeMo's config keys)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
import soundfile as sf

from sde.quality.apply import ensure_quality_columns, with_quality_columns
from sde.quality.augment import (
    AugmentError,
    AugmentParams,
    AugmentSources,
    add_noise,
    augment,
    nemo_augmentor_config,
    nemo_augmentor_yaml,
    pink_noise,
    speed_perturb,
    synthetic_rir,
    time_stretch,
)
from tests.browser_kit import api, sde_server
from tests.quality_kit import need_espeak, need_vad, quality_corpus

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    need_espeak()
    return quality_corpus(tmp_path_factory.mktemp("quality") / "corpus")


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("noises")
    t = np.arange(32000) / 16000
    sf.write(d / "hum.wav", (0.2 * np.sin(2 * np.pi * 50 * t)).astype(np.float32), 16000)
    (d / "room").mkdir()
    sf.write(d / "room" / "babble.flac", np.random.default_rng(5).standard_normal(44100).astype(np.float32) * 0.1,
             44100)
    (d / "notes.txt").write_text("not audio")
    return d


@pytest.fixture(scope="module")
def server(corpus, noise_dir):
    need_vad()
    manifest, _ = corpus
    with sde_server(str(manifest), "--vad", "--estimate-audio-metrics", "--noise-dir", str(noise_dir)) as url:
        yield url


def ids_of(base: str, filter_text: str, sort: str | None = None) -> list[int]:
    params = {"filter": filter_text, "page_size": 100, **({"sort": sort} if sort else {})}
    return [r["id"] for r in api(base, "/api/utterances", **params)["rows"]]


def fetch(base: str, path: str, **params) -> tuple[int, bytes, str]:
    url = base + path + (f"?{urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read(), r.headers.get_content_type()
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get_content_type()


# ---------------------------------------------------------------- columns, filtered through the real server


@pytest.mark.parametrize("filter_text,expected", [
    ("{speech_duration} = 0", [6]),                                  # 3 s of silence
    ("{leading_silence} > 0.8 && {speech_duration} > 0", [0, 2]),    # 1.0 s of silence before the speech
    ("{trailing_silence} > 1", [5, 6, 7]),                           # 1.2 s after; silence; a 36 s segment
    ("{speech_ratio} < 0.2", [6, 7]),
    ("{dup_text_group} is not null", [0, 2, 3, 4, 7]),               # "fox" ×3 (case, punctuation), "snow" ×2
    ("{dup_audio_group} is not null", [0, 1, 2, 3]),                 # a FLAC copy, a byte copy
    ("{dup_audio_text_conflict} = true", [1, 3]),                    # same audio, other transcript
    ("{hyp_repeated_ngram} >= 3", [1]),                              # the looping hypothesis
    ("{empty_reference} = true", [6]),
    ("{length_ratio} <= 0.5", [5]),                                  # half the reference's words
    ("{char_rate_z} <= -3 && {empty_reference} = false", [7]),       # 9 words in 36 s
], ids=["no-speech", "leading", "trailing", "ratio", "dup-text", "dup-audio", "conflict", "loop", "empty",
        "short-hyp", "slow"])
def test_quality_columns_filter_the_utterances(server, filter_text, expected):
    assert sorted(ids_of(server, filter_text)) == expected


def test_a_duplicate_group_filter_selects_exactly_its_utterances(server):
    groups = api(server, "/api/duplicates", kind="text")["groups"]
    fox = next(g for g in groups if 0 in g["ids"])
    assert fox["size"] == 3 and fox["filter"] == f"{{dup_text_group}} = {fox['group']}"
    assert sorted(ids_of(server, fox["filter"])) == [0, 2, 7]


def test_vad_columns_match_the_silence_the_corpus_was_made_with(server, corpus):
    _, known = corpus
    rows = api(server, "/api/utterances", page_size=100, sort="id")["rows"]
    for row, silence, speech in zip(rows, known["silence"], known["speech_s"]):
        assert row["speech_duration"] == pytest.approx(speech, abs=0.5)
        if silence:
            assert row["leading_silence"] == pytest.approx(silence[0], abs=0.15)
            assert row["trailing_silence"] == pytest.approx(silence[1], abs=0.15)


def test_summary_has_speech_hours_when_vad_ran(server, corpus):
    _, known = corpus
    summary = api(server, "/api/summary")
    assert summary["speech_hours"] * 3600 == pytest.approx(sum(known["speech_s"]), abs=2.0)
    assert summary["speech_hours"] < summary["hours"]


# ---------------------------------------------------------------- the quality routes


def test_duplicates_route_pages_groups_largest_first(server):
    text = api(server, "/api/duplicates", kind="text")
    assert (text["groups_total"], text["utterances"]) == (2, 5)
    assert [g["size"] for g in text["groups"]] == [3, 2]
    assert set(text["groups"][0]["texts"]) == {"the quick brown fox jumps over the lazy dog",
                                               "The quick brown fox, jumps over the lazy dog!"}
    second = api(server, "/api/duplicates", kind="text", page=1, page_size=1)
    assert [g["ids"] for g in second["groups"]] == [[3, 4]]
    audio = api(server, "/api/duplicates", kind="audio")
    assert {tuple(g["ids"]): g["conflict"] for g in audio["groups"]} == {(0, 2): False, (1, 3): True}


@pytest.mark.parametrize("params,status,needle", [
    ({"kind": "video"}, 400, "kind=text"),
    ({"kind": "text", "page_size": 10**6}, 400, "page_size"),
])
def test_duplicates_route_refuses_bad_requests(server, params, status, needle):
    code, body, _ = fetch(server, "/api/duplicates", **params)
    assert code == status and needle in json.loads(body)["error"]


def test_suspicious_counts_link_to_exactly_the_rows_they_count(server):
    s = api(server, "/api/suspicious")
    counted = {f["flag"]: f for f in s["flags"]}
    assert counted["hyp_repeated_ngram"]["count"] == 1 and counted["empty_reference"]["count"] == 1
    for flag in s["flags"]:
        assert api(server, "/api/utterances", filter=flag["filter"], page_size=1)["total"] == flag["count"], flag
    assert s["duplicates"]["audio_text_conflict"]["utterances"] == 2
    assert s["speech_hours"] == pytest.approx(api(server, "/api/summary")["speech_hours"], abs=1e-4)


def test_tts_route_reports_each_speaker_against_the_guidance(server):
    r = api(server, "/api/tts", lang="en", counts=1)
    speakers = {s["speaker"]: s for s in r["speakers"]}
    assert set(speakers) == {"anna", "ben"} and r["total_speakers"] == 2
    anna, ben = speakers["anna"], speakers["ben"]
    assert anna["sample_rates"] == [22050] and ben["sample_rates"] == [16000]
    assert "low_sample_rate" in {f["flag"] for f in ben["flags"]}
    assert "low_sample_rate" not in {f["flag"] for f in anna["flags"]}
    assert all(f["flag"] != "clipping" for s in r["speakers"] for f in s["flags"])
    assert 0 < anna["speech_hours"] < anna["hours"]
    assert anna["lufs_median"] == pytest.approx(-20.5, abs=3)     # espeak-ng's level
    inventory = set(r["phoneme_inventory"])
    assert {"ð", "ʃ", "ŋ"} <= inventory and set(anna["phonemes_missing"]) <= inventory
    assert anna["phoneme_counts"]["ð"] >= 4                       # "the" in every fox line
    assert "ʒ" in anna["phonemes_missing"]                          # "measure": nobody says it
    assert "phoneme_counts" not in api(server, "/api/tts", lang="en")["speakers"][0]


def test_tts_route_pages_through_every_speaker(server):
    # only the first `limit` (at most 10,000) could be had, while the page said "the JSON has all"
    every = [s["speaker"] for s in api(server, "/api/tts", lang="en")["speakers"]]
    pages = [api(server, "/api/tts", lang="en", limit=1, page=p) for p in range(3)]
    assert [s["speaker"] for p in pages for s in p["speakers"]] == every and len(every) == 2
    assert [(p["page"], p["limit"]) for p in pages] == [(0, 1), (1, 1), (2, 1)] and pages[2]["speakers"] == []


@pytest.mark.parametrize("params,needle", [({"lang": "../x"}, "espeak-ng voice"), ({"speaker": "nope"}, "column"),
                                           ({"limit": 0}, "limit"), ({"page": -1}, "page")])
def test_tts_route_refuses_bad_parameters(server, params, needle):
    code, body, _ = fetch(server, "/api/tts", **params)
    assert code == 400 and needle in json.loads(body)["error"]


def test_augmented_audio_is_reproducible_and_seeded(server):
    params = {"noise": "white", "snr": 10, "seed": 7, "speed": 1.1}
    a = fetch(server, "/api/utterances/0/augment", **params)
    b = fetch(server, "/api/utterances/0/augment", **params)
    c = fetch(server, "/api/utterances/0/augment", **{**params, "seed": 8})
    assert a[0] == 200 and a[2] == "audio/wav"
    assert a[1] == b[1] and a[1] != c[1]
    samples, sr = sf.read(io.BytesIO(a[1]))
    original = api(server, "/api/utterances/0")
    assert sr == 22050 and len(samples) / sr == pytest.approx(original["duration"] / 1.1, abs=0.01)


@pytest.mark.parametrize("uid,params,status,needle", [
    (7, {}, 422, "at most 30 s"),                          # a 36 s segment
    (99, {}, 404, "no utterance with id 99"),
    (0, {"snr": "loud"}, 400, "snr must be a number"),
    (0, {"speed": 3}, 400, "speed must be a number from 0.5 to 2"),
    (0, {"noise": "file:../manifest.json"}, 400, 'no noise file "../manifest.json"'),
    (0, {"rir": "file:hum.wav"}, 400, "without --rir-dir"),
])
def test_augment_route_refuses_with_the_reason(server, uid, params, status, needle):
    code, body, mime = fetch(server, f"/api/utterances/{uid}/augment", **params)
    assert (code, mime) == (status, "application/json") and needle in json.loads(body)["error"]


def test_noise_files_come_from_the_noise_dir(server):
    config = api(server, "/api/utterances/4/augment/config", noise="file:room/babble.flac", snr=5, seed=1)
    assert config["noise_files"] == ["hum.wav", "room/babble.flac"] and config["rir_files"] == []
    assert "min_snr_db: 5.0" in config["nemo_yaml"] and "noise:" in config["nemo_yaml"]
    code, body, _ = fetch(server, "/api/utterances/4/augment", noise="file:room/babble.flac", snr=5, seed=1)
    noisy, sr = sf.read(io.BytesIO(body))
    code0, clean_body, _ = fetch(server, "/api/utterances/4/augment")
    clean, _ = sf.read(io.BytesIO(clean_body))
    assert code == code0 == 200 and sr == 16000
    snr = 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))
    assert snr == pytest.approx(5, abs=0.2)


# ---------------------------------------------------------------- the CLI


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_stats_vad_json_has_speech_hours(corpus):
    need_vad()
    manifest, known = corpus
    r = run_cli("stats", str(manifest), "--vad", "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["speech_hours"] * 3600 == pytest.approx(sum(known["speech_s"]), abs=2.0)
    assert summary["speech_unmeasured"] == 0
    assert "speech_hours" not in json.loads(run_cli("stats", str(manifest), "--json", "--no-cache").stdout)


def test_stats_vad_counts_the_utterances_it_could_not_read(corpus, tmp_path):
    """Speech hours leave out audio the VAD cannot read: the summary says how many (before, an
    unreadable file vanished from the hours silently)."""
    need_vad()
    manifest, known = corpus
    first = json.loads(manifest.read_text().splitlines()[0])
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wave file")
    lines = [dict(first, audio_filepath=str(manifest.parent / first["audio_filepath"])),
             dict(first, audio_filepath="bad.wav")]
    (tmp_path / "m.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    r = run_cli("stats", str(tmp_path / "m.json"), "--vad", "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["speech_unmeasured"] == 1
    assert summary["speech_hours"] * 3600 == pytest.approx(known["speech_s"][0], abs=0.5)
    text = run_cli("stats", str(tmp_path / "m.json"), "--vad", "--no-cache").stdout
    assert "1 utterance unreadable, not counted: filter {quality_error} is not null" in text


def test_stats_vad_is_cached_with_the_dataset(corpus, tmp_path):
    need_vad()
    manifest, _ = corpus
    first = run_cli("stats", str(manifest), "--vad", "--cache-dir", str(tmp_path / "cache"))
    again = run_cli("stats", str(manifest), "--vad", "--cache-dir", str(tmp_path / "cache"))
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert "measuring speech activity" in first.stderr and "measuring speech activity" not in again.stderr
    assert "loaded from cache" in again.stderr and "speech hours" in again.stdout


def test_vad_without_silero_says_what_to_install(corpus, tmp_path):
    # The real CLI in an interpreter where silero_vad is not found (as when it is not installed).
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.util\n"
        "found = importlib.util.find_spec\n"
        "def find_spec(name, package=None):\n"
        "    return None if name.split('.')[0] == 'silero_vad' else found(name, package)\n"
        "importlib.util.find_spec = find_spec\n")
    manifest, _ = corpus
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    r = run_cli("stats", str(manifest), "--vad", "--no-cache", env=env)
    assert r.returncode == 1 and 'pip install "sde[vad]"' in r.stderr and "Traceback" not in r.stderr
    assert run_cli("stats", str(manifest), "--no-cache", env=env).returncode == 0


# ---------------------------------------------------------------- the speech job and the on-demand columns


@pytest.fixture
def plain_dataset(corpus):
    from sde.build.load import load_dataset

    return load_dataset(str(corpus[0]), use_cache=False)


def test_speech_job_measures_once_then_answers_from_its_cache(plain_dataset, tmp_path):
    need_vad()
    from sde.web.panels import vad

    progress: list = []
    done = vad.measure_job(plain_dataset, tmp_path, progress.append, workers=1)
    assert done["cached"] is False and done["rows"] == 8, done
    assert progress[-1][0] == 100
    again = vad.measure_job(plain_dataset, tmp_path, progress.append, workers=1)
    assert again == {**done, "cached": True, "seconds": again["seconds"]}
    vad.apply_result(plain_dataset, tmp_path, done["key"])
    table = plain_dataset.utterances
    assert {"speech_duration", "lufs", "audio_hash", "sample_rate", "clipping_ratio"} <= set(table.columns)
    assert table["speech_duration"].iloc[6] == 0 and table["sample_rate"].iloc[4] == 16000
    assert plain_dataset.summary()["speech_hours"] > 0


@pytest.mark.parametrize("threads, said", [(1, "in 1 process"), (3, "in 3 worker processes")],
                         ids=["one", "three"])
def test_the_measure_jobs_use_the_processes_threads_allows(tmp_path, threads_setting, threads, said):
    # The web jobs measured in min(2, cores) processes whatever `sde serve --threads` said; now
    # as many as the CLI's measurements: --threads (every core by default; the VAD at most 8).
    from sde.build.load import load_dataset
    from sde.quality.apply import measure_workers
    from sde.web.panels import audio_metrics, vad

    t = np.arange(8000) / 16000
    for i in range(2):
        sf.write(tmp_path / f"t{i}.wav", (0.2 * np.sin(2 * np.pi * 220 * (i + 1) * t)).astype(np.float32), 16000)
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"t{i}.wav", "duration": 0.5, "text": "a"}) + "\n"
                                for i in range(2)), encoding="utf-8")
    threads_setting(threads=threads)
    assert measure_workers() == threads
    dataset = load_dataset(str(manifest), use_cache=False)
    heard: list = []
    done = audio_metrics.measure_audio_job(dataset, tmp_path / "handoff", heard.append)
    assert done.get("rows") == 2, done
    assert heard[0][2] == f"measuring 2 files {said} …"
    heard.clear()
    done = vad.measure_job(dataset, tmp_path / "speech", heard.append)
    assert done.get("rows") == 2 and not done["cached"], done
    assert f"measuring 2 utterances {said} …" in [status for _pct, _label, status in heard]


@pytest.mark.parametrize("key", ["", "../../etc/passwd", "a" * 63, "A" * 64, None])
def test_result_keys_from_the_browser_never_become_paths(tmp_path, key):
    from sde.web.panels.vad import ResultError, result_path

    with pytest.raises(ResultError):
        result_path(tmp_path, key)


def test_text_columns_are_added_once_and_kept(plain_dataset):
    generation = plain_dataset.generation
    ensure_quality_columns(plain_dataset)
    ensure_quality_columns(plain_dataset)
    assert plain_dataset.generation == generation + 1
    assert plain_dataset.utterances["hyp_repeated_ngram"].tolist() == [1, 4, 1, 1, 1, 1, 0, 1]


def test_counts_and_groups_leave_the_dataset_as_it_is(plain_dataset):
    from sde.web.panels.quality_data import duplicates_page
    from sde.web.panels.suspicious import summary

    generation, columns = plain_dataset.generation, list(plain_dataset.utterances.columns)
    flags = {f["flag"]: f["count"] for f in summary(plain_dataset)["flags"]}
    groups = duplicates_page(plain_dataset, "near", 0, 10)["groups"]
    assert flags["hyp_repeated_ngram"] == 1 and [g["ids"] for g in groups] == [[0, 2, 7], [3, 4]]
    assert (plain_dataset.generation, list(plain_dataset.utterances.columns)) == (generation, columns)
    ensure_quality_columns(plain_dataset)  # a filter naming a column: now they are added
    assert plain_dataset.utterances["dup_text_group"].notna().sum() == 5


def test_requests_at_once_share_one_computation_of_a_kind(plain_dataset, monkeypatch):
    # two tabs opening Statistics on a big dataset: the second waits for the first's columns
    import threading

    import sde.quality.apply as apply
    from sde.web.panels.suspicious import summary

    computed: list[str] = []
    real = apply._compute

    def slow(dataset, kind):
        computed.append(kind)
        threading.Event().wait(0.3)  # long enough for the other request to arrive meanwhile
        return real(dataset, kind)

    monkeypatch.setattr(apply, "_compute", slow)
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(summary(plain_dataset))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(computed) == ["duplicates", "suspicious"] and len(answers) == 3
    assert answers[0] == answers[1] == answers[2]


def test_tabs_opening_tts_readiness_at_once_share_one_report(plain_dataset, monkeypatch):
    import threading

    import sde.web.panels.quality_data as quality_data

    made: list[str] = []
    real = quality_data.tts_report

    def slow(table, lang, **kwargs):
        made.append(lang)
        threading.Event().wait(0.3)  # long enough for the other tabs to ask meanwhile
        return real(table, lang, **kwargs)

    monkeypatch.setattr(quality_data, "tts_report", slow)
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(quality_data.tts(plain_dataset, "en", "speaker")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == ["en"] and len(answers) == 3 and answers[0] is answers[1] is answers[2]
    assert answers[0]["speakers"]


def test_the_tts_page_makes_its_report_in_the_background_and_polls_until_done(plain_dataset, monkeypatch):
    import threading

    import sde.web.panels.quality_data as quality_data
    from sde.web.pages.tts import report_state

    release = threading.Event()
    real = quality_data.tts_report
    monkeypatch.setattr(quality_data, "tts_report", lambda *a, **k: (release.wait(10), real(*a, **k))[1])
    running, final = report_state(plain_dataset, "en", "speaker", wait_s=0.2)  # the page shows at once
    assert not final and running.id == "tts-running" and "8 utterances" in running.children
    release.set()
    deadline = time.monotonic() + 10
    while not final and time.monotonic() < deadline:
        content, final = report_state(plain_dataset, "en", "speaker")
        time.sleep(0.05)
    assert final and "tts-speakers" in str(content)


def test_the_statistics_card_computes_in_the_background_and_polls_until_done(plain_dataset, monkeypatch):
    import threading

    import sde.quality.apply as apply
    from sde.web.panels.suspicious import card_state

    release = threading.Event()
    real = apply._compute
    monkeypatch.setattr(apply, "_compute", lambda dataset, kind: (release.wait(10), real(dataset, kind))[1])
    running, final = card_state(plain_dataset)  # returns at once: the checks run on their own thread
    assert not final and running.id == "suspicious-running" and "8 utterances" in running.children
    assert card_state(plain_dataset)[1] is False
    release.set()
    deadline = time.monotonic() + 10
    while not final and time.monotonic() < deadline:
        content, final = card_state(plain_dataset)
        time.sleep(0.05)
    assert final and "hyp_repeated_ngram" in str(content)


def test_the_statistics_card_says_why_the_checks_failed(plain_dataset, monkeypatch):
    import sde.quality.apply as apply
    from sde.web.panels.suspicious import card_state

    def fails(dataset, kind):
        raise MemoryError("no room")

    monkeypatch.setattr(apply, "_compute", fails)
    deadline = time.monotonic() + 10
    content, final = card_state(plain_dataset)
    while not final and time.monotonic() < deadline:
        time.sleep(0.05)
        content, final = card_state(plain_dataset)
    assert final and content.id == "suspicious-error" and "MemoryError: no room" in content.children


def test_the_near_duplicate_search_is_refused_over_its_size_with_what_to_use(plain_dataset, monkeypatch):
    import sde.quality.apply as apply
    from sde.web.app import AppConfig, create_app
    from sde.web.pages.duplicates import layout

    monkeypatch.setattr(apply, "NEAR_DUPLICATE_MAX_ROWS", 7)  # the dataset has 8 utterances
    client = create_app(plain_dataset, AppConfig(audio_routes=False)).server.test_client()
    for path, query in (("/api/duplicates", {"kind": "near"}), ("/api/utterances", {"filter": "{dup_near_group} = 0"})):
        r = client.get(path, query_string=query)
        assert r.status_code == 422 and "kind=text" in r.get_json()["error"], (path, r.get_data(as_text=True))
    assert client.get("/api/duplicates", query_string={"kind": "text"}).status_code == 200  # exact ones: any size
    assert "refused over 7 (8 here)" in str(layout(plain_dataset, "/duplicates", {"kind": "near"}))


def test_manifest_fields_named_like_a_quality_column_are_kept(plain_dataset):
    import dataclasses

    table = plain_dataset.utterances.assign(repeated_ngram="from the manifest")
    dataset = with_quality_columns(dataclasses.replace(plain_dataset, utterances=table), ["suspicious"])
    assert dataset.utterances["manifest_repeated_ngram"].iloc[0] == "from the manifest"
    assert dataset.utterances["repeated_ngram"].iloc[0] == 1


def test_a_fresh_server_computes_the_columns_a_request_names(plain_dataset):
    from sde.web.app import AppConfig, create_app

    client = create_app(plain_dataset, AppConfig(audio_routes=False)).server.test_client()
    assert "dup_text_group" not in plain_dataset.utterances
    r = client.get("/api/utterances", query_string={"filter": "{dup_text_group} is not null", "sort": "-repeated_ngram"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert sorted(row["id"] for row in r.get_json()["rows"]) == [0, 2, 3, 4, 7]
    assert "ins_burst" in plain_dataset.utterances  # the whole kind came with it


# ---------------------------------------------------------------- the augmentation chain


def tone(seconds: float = 2.0, sr: int = 16000, hz: float = 440.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_speed_changes_tempo_and_pitch_time_stretch_only_tempo(rate):
    x = tone()
    fast = speed_perturb(x, 16000, rate)
    stretched = time_stretch(x, rate)
    assert len(fast) / 16000 == pytest.approx(2.0 / rate, abs=0.01)
    assert len(stretched) / 16000 == pytest.approx(2.0 / rate, abs=0.01)
    assert peak_hz(fast, 16000) == pytest.approx(440 * rate, rel=0.02)
    assert peak_hz(stretched, 16000) == pytest.approx(440, rel=0.02)


@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 30.0])
def test_noise_is_added_at_the_requested_snr(kind, snr):
    x = tone() * 0.2  # quiet: the sum never reaches full scale (it would be scaled down, SNR kept)
    y = augment(x, 16000, AugmentParams(noise=kind, snr_db=snr, seed=3))
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert measured == pytest.approx(snr, abs=0.05)


def test_a_short_noise_is_looped_from_a_seeded_start():
    x = tone(0.5) * 0.1
    noise = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    added = add_noise(x, noise, 10.0, np.random.default_rng(4)) - x
    assert np.allclose(added[:1000], added[1000:2000], atol=1e-6)          # period: the noise's length
    again = add_noise(x, noise, 10.0, np.random.default_rng(4)) - x
    assert np.array_equal(added, again)


def test_pink_noise_falls_3_db_per_octave():
    x = pink_noise(2**18, np.random.default_rng(0))
    power = np.abs(np.fft.rfft(x)) ** 2
    low, high = power[1000:2000].mean(), power[2000:4000].mean()
    assert 10 * np.log10(low / high) == pytest.approx(3.0, abs=0.5)


@pytest.mark.parametrize("rt60", [0.2, 0.8])
def test_synthetic_room_decays_60_db_in_rt60(rt60):
    h = synthetic_rir(16000, rt60, np.random.default_rng(0)).astype(np.float64)
    energy = np.cumsum(h[::-1] ** 2)[::-1]  # Schroeder's backward integral
    decay_db = 10 * np.log10(energy / energy[0])
    tail = decay_db[int(0.01 * 16000)]  # after the direct path
    t20 = np.argmax(decay_db < tail - 20) / 16000 - 0.01
    assert 3 * t20 == pytest.approx(rt60, rel=0.15)


@pytest.mark.parametrize("params", [
    AugmentParams(noise="white", snr_db=5, seed=1), AugmentParams(rir="synthetic", seed=2),
    AugmentParams(speed=0.9, stretch=1.1, noise="pink", rir="synthetic", seed=3),
])
def test_same_seed_same_samples(params):
    x = tone()
    assert np.array_equal(augment(x, 16000, params), augment(x, 16000, params))
    other = AugmentParams(**{**params.as_dict(), "seed": params.seed + 1})
    assert not np.array_equal(augment(x, 16000, params), augment(x, 16000, other))


@pytest.mark.parametrize("params,needle", [
    ({"speed": 0.1}, "speed must be"), ({"snr_db": float("nan")}, "snr_db must be"), ({"seed": -1}, "seed"),
    ({"noise": "brown"}, "noise must be"), ({"rir": "cathedral"}, "rir must be"),
])
def test_bad_parameters_are_refused(params, needle):
    with pytest.raises(AugmentError, match=needle):
        AugmentParams(**params)


def test_segments_over_30_s_are_refused():
    with pytest.raises(AugmentError, match="at most 30 s"):
        augment(np.zeros(31 * 8000, np.float32), 8000, AugmentParams(noise="white"))


def test_only_listed_files_of_the_folder_are_opened(noise_dir):
    src = AugmentSources(noise_dir=str(noise_dir))
    assert src.files("noise") == ["hum.wav", "room/babble.flac"]
    for name in ("../x.wav", "notes.txt", "/etc/passwd"):
        with pytest.raises(AugmentError, match="no noise file"):
            src.path_of("noise", name)


def test_nemo_config_lists_perturbations_in_the_order_applied():
    config, _ = nemo_augmentor_config(AugmentParams(speed=1.1, stretch=0.9, rir="synthetic", noise="white",
                                                    snr_db=10), 16000, signal_rms_db=-20.0)
    assert list(config) == ["speed", "time_stretch", "impulse", "white_noise"]
    assert config["white_noise"]["min_level"] == -30 and config["speed"]["min_speed_rate"] == 1.1
    assert "augmentor: null" in nemo_augmentor_yaml(AugmentParams(), 16000)


@pytest.mark.slow
def test_nemo_accepts_the_augmentor_config(tmp_path, monkeypatch):
    perturb = pytest.importorskip("nemo.collections.asr.parts.preprocessing.perturb")
    yaml = pytest.importorskip("yaml")
    sf.write(tmp_path / "n.wav", np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    for name in ("noise_manifest.json", "rir_manifest.json"):
        (tmp_path / name).write_text(json.dumps({"audio_filepath": str(tmp_path / "n.wav"), "duration": 1.0,
                                                 "offset": 0.0, "text": ""}) + "\n")
    monkeypatch.chdir(tmp_path)  # the snippet names the manifests relative to the training run
    for params, expected in [
        (AugmentParams(speed=1.1, stretch=0.9, rir="synthetic", noise="white", snr_db=10),
         ["SpeedPerturbation", "TimeStretchPerturbation", "ImpulsePerturbation", "WhiteNoisePerturbation"]),
        (AugmentParams(noise="pink", snr_db=5), ["NoisePerturbation"]),
    ]:
        config = yaml.safe_load(nemo_augmentor_yaml(params, 16000, -20.0))["model"]["train_ds"]["augmentor"]
        augmentor = perturb.process_augmentations(config)
        assert [type(p).__name__ for _, p in augmentor._pipeline] == expected


def test_tabs_applying_one_speech_result_at_once_swap_it_in_once(plain_dataset, tmp_path, monkeypatch):
    # Every tab that followed a Measure job applies its result when it ends; the "measured
    # already" check and the swap are one step, else tabs ending together each swapped the table
    # in again (its caches and duplicate groups dropped and recomputed each time).
    need_vad()
    from sde.web.panels import vad

    done = vad.measure_job(plain_dataset, tmp_path, lambda _: None, workers=1)
    applied = []
    read_result = vad.read_result
    monkeypatch.setattr(vad, "read_result", lambda *args: (applied.append(1), read_result(*args))[1])  # counts, reads
    start = threading.Barrier(6)

    def tab() -> None:
        start.wait()
        vad.apply_result(plain_dataset, tmp_path, done["key"])

    tabs = [threading.Thread(target=tab) for _ in range(6)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave at every few bytecodes, as under a busy server
    try:
        for t in tabs:
            t.start()
        for t in tabs:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert len(applied) == 1
    assert "speech_duration" in plain_dataset.utterances.columns
