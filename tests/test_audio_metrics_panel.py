"""The Statistics page's "Audio quality" panel: both layouts, the background job's body called
directly (with a recording stand-in for Dash's set_progress), the atomic handoff file, and the
swap that adds the audio metric columns to the live dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dash
import numpy as np
import pandas as pd
import pytest
from dash import dcc, html

from sde.audio import AUDIO_METRIC_COLUMNS, compute_audio_metrics
from sde.audio_quality import (
    FILTER_CLIPPED,
    FILTER_UNREADABLE,
    StaleMetrics,
    cached_audio_quality_summary,
    has_audio_metrics,
    with_audio_metrics,
    with_measured_audio,
)
from sde.dataset import build_dataset
from sde.web.panels import audio_metrics as panel
from sde.web.state import samples_href
from tests.test_audio_quality import write_audio_set

XSS = "<script>alert(1)</script>"


def walk(component):
    """Every component in a tree."""
    stack = [component]
    while stack:
        c = stack.pop()
        if isinstance(c, (list, tuple)):
            stack.extend(c)
            continue
        if c is None or isinstance(c, (str, int, float)):
            continue
        yield c
        stack.append(getattr(c, "children", None))


def by_id(component, cid: str):
    found = [c for c in walk(component) if getattr(c, "id", None) == cid]
    assert len(found) == 1, cid
    return found[0]


def texts(component) -> str:
    out = []

    def rec(c):
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, (list, tuple)):
            for x in c:
                rec(x)
        elif c is not None and not isinstance(c, (int, float)):
            rec(getattr(c, "children", None))

    rec(component)
    return " ".join(out)


def links(component) -> dict[str, str]:
    return {texts(c) + "@" + str(i): c.href for i, c in enumerate(walk(component)) if isinstance(c, dcc.Link)}


class Recorder:
    """Stands in for the set_progress Dash passes to a background callback: records each call."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, values):
        self.calls.append(tuple(values))


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    rows = write_audio_set(tmp_path / "audio")
    rows.append({"audio_filepath": f"{XSS}.wav", "duration": 1.0, "text": "hostile name", "sample_rate": 48000})
    path = tmp_path / "audio" / "manifest.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def dataset(manifest):
    return build_dataset(manifest, workers=1)


def test_measure_layout_when_there_are_no_metrics(dataset):
    assert not has_audio_metrics(dataset.utterances)
    card = panel.layout(dataset)
    assert card.id == panel.PANEL
    text = texts(card)
    assert "Audio quality" in text
    assert "Measure sample rate, levels, clipping, silence and bandwidth of every file (7 files)." in text
    start = by_id(card, panel.START)
    assert texts(start) == "Measure audio" and not start.disabled
    assert by_id(card, panel.CANCEL).disabled
    assert by_id(card, panel.PROGRESS).value == 0
    assert isinstance(by_id(card, panel.DONE), dcc.Store)
    assert by_id(card, panel.RELOAD).refresh is True


def test_measure_layout_counts_files_not_segments(dataset):
    import dataclasses

    table = dataset.utterances.copy()
    table["audio_path"] = table["audio_path"].iloc[0]  # one recording, seven segments
    ds = dataclasses.replace(dataset, utterances=table)
    assert "(1 file, 7 utterances)" in texts(panel.layout(ds))


def test_job_writes_the_handoff_atomically_and_leaves_the_dataset_alone(dataset, tmp_path, monkeypatch):
    handoff = tmp_path / "handoff"
    before_table = dataset.utterances
    before_cols = list(before_table.columns)
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy_replace(src, dst):
        src, dst = Path(src), Path(dst)
        # The whole file exists under a temporary name in the same folder before it is renamed,
        # and the final name does not exist yet: a reader sees no file or the complete file.
        assert src.parent == dst.parent == handoff
        assert src.stat().st_size > 0 and not dst.exists()
        replaced.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)  # the module object every writer calls through
    progress = Recorder()
    done = panel.measure_audio_job(dataset, handoff, progress, workers=1)

    assert set(done) == {"token", "rows", "seconds"} and done["rows"] == 7
    final = panel.handoff_path(handoff, done["token"])
    assert replaced == [(replaced[0][0], final)] and final.exists()
    assert [p.name for p in handoff.iterdir() if p.name.endswith(".tmp")] == []
    # The job measured; it did not touch the dataset (cancel = never applying = unchanged).
    assert dataset.utterances is before_table and list(dataset.utterances.columns) == before_cols
    # Progress: a start line, then counts up to 7 / 7 with a rate.
    assert progress.calls[0][0] == 0 and "measuring 7 files" in progress.calls[0][2]
    pct, label, status = progress.calls[-1]
    assert (pct, label) == (100, "7 / 7") and status.startswith("7 / 7 files · ") and "files/s" in status
    assert all(0 <= c[0] <= 100 for c in progress.calls)

    stored = panel.read_handoff(handoff, done["token"])
    assert stored["id"].tolist() == dataset.utterances["id"].tolist()
    assert list(stored.columns) == ["id", *AUDIO_METRIC_COLUMNS]


def test_failed_write_leaves_no_file_and_reports(dataset, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", boom)
    handoff = tmp_path / "handoff"
    done = panel.measure_audio_job(dataset, handoff, Recorder(), workers=1)
    assert "error" in done and "No space left on device" in done["error"]
    assert list(handoff.glob("*.parquet*")) == []


def test_apply_adds_the_columns_in_place(dataset, tmp_path):
    handoff = tmp_path / "handoff"
    holder = dataset  # what the app and the API hold: the same object must see the update
    done = panel.measure_audio_job(dataset, handoff, Recorder(), workers=1)
    dataset.__dict__.setdefault("_sde_web_cache", {})["statistics_figures"] = ["stale"]

    panel.apply_measurement(dataset, handoff, done["token"])

    utt = holder.utterances
    assert has_audio_metrics(utt)
    assert "_sde_web_cache" not in holder.__dict__          # histograms are rebuilt with the new columns
    assert not panel.handoff_path(handoff, done["token"]).exists()
    assert holder.options.estimate_audio_metrics is True
    # The manifest's own sample_rate field is kept aside, as build_dataset does.
    assert utt["manifest_sample_rate"].iloc[-1] == 48000

    expected = compute_audio_metrics(utt[["audio_path", "offset", "duration"]], workers=1)
    for c in AUDIO_METRIC_COLUMNS:
        if c == "audio_error":
            assert utt[c].fillna("").tolist() == expected[c].fillna("").tolist()
        elif c == "duration_mismatch":
            assert utt[c].tolist() == expected[c].tolist()
        else:
            np.testing.assert_allclose(utt[c].to_numpy(float), expected[c].to_numpy(float), equal_nan=True)

    q = holder.utterance_query  # rebuilt over the new table
    names = utt["audio_filepath"].tolist()
    assert sorted(names[i] for i in q.select(FILTER_UNREADABLE)) == sorted(["missing.wav", f"{XSS}.wav"])
    assert [names[i] for i in q.select(FILTER_CLIPPED)] == ["clipped.wav"]
    assert [names[i] for i in q.select("{sample_rate} = 8000")] == ["r8k.wav"]
    assert [names[i] for i in q.select("{duration_mismatch} = true")] == ["r22k.wav"]
    assert [names[i] for i in q.select("{channels} = 2")] == ["r44k.wav"]

    # The card now shows the summary.
    card = panel.layout(holder)
    assert texts(by_id(card, panel.FILES)) == "5"
    assert texts(by_id(card, panel.UNREADABLE)) == "2"
    assert texts(by_id(card, panel.MISMATCH)) == "1"
    assert texts(by_id(card, panel.CLIPPED)) == "1"


def test_apply_matches_rows_by_id_and_refuses_a_changed_dataset(dataset, tmp_path):
    handoff = tmp_path / "handoff"
    done = panel.measure_audio_job(dataset, handoff, Recorder(), workers=1)
    metrics = panel.read_handoff(handoff, done["token"])
    shuffled = metrics.iloc[::-1].reset_index(drop=True)
    new = with_audio_metrics(dataset, shuffled)
    direct = with_audio_metrics(dataset, metrics)
    pd.testing.assert_frame_equal(new.utterances, direct.utterances)
    with pytest.raises(StaleMetrics, match="changed while"):
        with_audio_metrics(dataset, metrics.iloc[:-1])
    # Applying twice replaces the columns instead of setting them aside again.
    again = with_audio_metrics(direct, metrics)
    assert "manifest_peak_dbfs" not in again.utterances.columns
    assert list(again.utterances.columns) == list(direct.utterances.columns)


@pytest.mark.parametrize("token", [None, "", "../../etc/passwd", "a" * 31, "A" * 32, {"x": 1}])
def test_tokens_from_the_browser_never_become_paths(tmp_path, token):
    with pytest.raises(panel.HandoffError):
        panel.handoff_path(tmp_path, token)


def test_summary_layout_links_and_flags(tmp_path):
    rows = write_audio_set(tmp_path / "a")
    m = tmp_path / "a" / "m.json"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = with_measured_audio(build_dataset(m, workers=1), workers=1)
    card = panel.layout(ds)
    text = texts(card)
    hrefs = set(links(card).values())
    assert samples_href(filter='{audio_error} != ""') == "/samples?filter=%7Baudio_error%7D+%21%3D+%22%22"
    for f in ('{audio_error} != ""', "{duration_mismatch} = true", "{clipping_ratio} > 0.001",
              "{sample_rate} != 16000", "{sample_rate} < 22050"):
        assert samples_href(filter=f) in hrefs, f
    asr = by_id(card, "audioq-ready-asr")
    assert asr.color == "warning"
    assert "3 files are not 16 kHz: NeMo ASR models expect 16 kHz; resample them (e.g. sox in.wav -r 16000 out.wav)" in texts(asr)
    assert "3 files below 22.05 kHz: too low for TTS training" in texts(by_id(card, "audioq-ready-tts"))
    rates = texts(by_id(card, panel.RATES))
    for label in ("8 kHz", "16 kHz", "22.05 kHz", "44.1 kHz"):
        assert label in rates
    assert "stereo" in texts(by_id(card, panel.CHANNELS))
    assert "file not found (1)" in text
    assert not [c for c in walk(card) if getattr(c, "id", None) == panel.START]
    # Cached per table: the same object on the next render, a new one after a swap.
    assert cached_audio_quality_summary(ds) is cached_audio_quality_summary(ds)


def test_user_text_is_rendered_as_text(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    m = d / "m.json"
    m.write_text(json.dumps({"audio_filepath": f"{XSS}.wav", "duration": 1.0, "text": "x"}) + "\n", encoding="utf-8")
    ds = with_measured_audio(build_dataset(m, workers=1), workers=1)
    card = panel.layout(ds)
    # The hostile name arrives only as a plain string child (Dash escapes it); no raw-HTML component.
    assert not any(type(c).__name__ in ("Markdown", "Iframe") for c in walk(card))
    assert not any(hasattr(c, "dangerously_allow_html") for c in walk(card))


def test_callbacks_are_registered_on_the_given_app(dataset, tmp_path):
    app = dash.Dash(__name__)
    app.layout = html.Div([panel.layout(dataset)])
    handoff = tmp_path / "h"
    panel.callbacks(app, dataset, handoff)
    job = [v for k, v in app.callback_map.items() if k == f"{panel.DONE}.data"]
    assert len(job) == 1 and job[0]["background"]["cancel"] == [{"id": panel.CANCEL, "property": "n_clicks"}]
    assert (handoff / "audioq-jobs").is_dir()
    # The registered bodies, called directly: the job (as Dash would, with set_progress) ...
    progress = Recorder()
    done = job[0]["callback"].__wrapped__(progress, 1)
    assert done["rows"] == 7 and progress.calls
    # ... and the swap, which answers with a reload of the page the user is on.
    swap = next(v for k, v in app.callback_map.items() if f"{panel.RELOAD}.href" in k)["callback"].__wrapped__

    def apply(done, pathname, search):
        out = swap(done, pathname, search)
        return out["status"], out["reload"]

    status, href = apply(done, "/statistics", "")
    assert href == "/statistics" and has_audio_metrics(dataset.utterances)
    status, href = apply({"error": XSS}, "/", "")
    assert href is dash.no_update and status.children == XSS and status.color == "danger"
    status, href = apply({"token": "../../etc/passwd"}, "/", "")
    assert href is dash.no_update and status.color == "danger"
    # A protocol-relative pathname is never followed off the site.
    done2 = job[0]["callback"].__wrapped__(Recorder(), 2)
    assert apply(done2, "//evil.example/x", "")[1] == "/"


def test_progress_values():
    assert panel.progress_values(0, 0, 0.0) == (100, "0 / 0", "0 / 0 files")
    pct, label, status = panel.progress_values(250, 1000, 5.0)
    assert (pct, label) == (25, "250 / 1,000")
    assert status == "250 / 1,000 files · 50.0 files/s · about 15 s left"
    assert panel.progress_values(10, 100_000, 1.0, "utterances")[2].endswith("about 2 h 46 min left")


@pytest.mark.browser
def test_measure_audio_in_the_browser(write_manifest, tmp_path, page):
    """Statistics → "Measure audio": the background job runs, the page reloads with the audio-quality
    summary (a 22.05 kHz file flagged for ASR, a missing file counted) and the new histograms."""
    import numpy as np
    import soundfile as sf

    from tests.browser_kit import Watch, api, sde_server

    t = np.arange(16000) / 16000
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), 16000)
    t2 = np.arange(22050) / 22050
    sf.write(tmp_path / "b.flac", (0.3 * np.sin(2 * np.pi * 440 * t2)).astype("float32"), 22050)
    manifest = write_manifest([
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "a tone"},
        {"audio_filepath": "b.flac", "duration": 1.0, "text": "another tone"},
        {"audio_filepath": "missing.wav", "duration": 1.0, "text": "nothing here"},
    ])
    with sde_server(str(manifest)) as url:
        watch = Watch(page, url)
        page.goto(url + "/")
        page.wait_for_selector("#audioq-start")
        page.click("#audioq-start")
        page.wait_for_selector("#audioq-readiness", timeout=90_000)
        page.wait_for_selector("#hist-sample_rate .main-svg")
        summary = api(url, "/api/audio-quality")
        assert summary["measured"] is True
        assert page.inner_text("#audioq-unreadable").strip().startswith("1")
        assert "16 kHz" in page.inner_text("#audioq-readiness")
        rows = api(url, "/api/utterances", sort="id")["rows"]
        assert [r["sample_rate"] for r in rows[:2]] == [16000, 22050] and rows[2]["audio_error"]
        watch.check()
