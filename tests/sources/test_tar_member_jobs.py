"""Audio jobs on NeMo tarred audio: audio metrics and segment measures (hash, loudness, levels,
speech activity) read each line's member by seek in worker processes, forked or started fresh,
and the dataset shows where each member is (``<tar>:<member>``)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager

import numpy as np
import pytest

from sde.audio import compute_audio_metrics
from sde.audio_quality import with_measured_audio
from sde.dataset import DatasetOptions, build_dataset
from sde.manifest import Problem
from sde.quality.segments import measure_segments
from sde.sources import members
from sde.sources.members import job_audio_table, open_tar_member, parse_tar_member_path, tar_member_path
from sde.web.panels.audio_metrics import measure_audio_job, read_handoff
from tests.sources.tar_kit import SR, make_tarred, tone
from tests.test_tar_index import write_nemo_shard


@pytest.fixture(scope="module")
def tarred(tmp_path_factory):
    return make_tarred(tmp_path_factory.mktemp("jobs"))


@pytest.fixture(scope="module")
def dataset(tarred):
    return build_dataset(tarred.manifest, DatasetOptions(tarred_audio=tarred.pattern))


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """80 short tones in one tar (enough members for the jobs' process pools), as a dataset."""
    folder = tmp_path_factory.mktemp("many")
    (folder / "src").mkdir()
    entries = [{"audio_filepath": str(folder / "src" / f"t{k}.wav"), "text": f"tone {k}",
                "duration": tone(folder / "src" / f"t{k}.wav", 0.5 + k / 400, 200 + 5 * k)} for k in range(80)]
    _, lines = write_nemo_shard(folder, entries, 0)
    manifest = folder / "m.json"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return build_dataset(manifest, DatasetOptions(tarred_audio=str(folder / "audio__OP_0..0_CL_.tar"))), entries


@contextmanager
def another_thread_running():
    """A second thread makes the jobs start their workers fresh (forkserver), not by fork: then
    the workers have only what travels to them (the installed openers)."""
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def _with_workers(start: str, job):
    """``job()`` with its worker processes forked ("fork") or started fresh ("fresh")."""
    if start == "fresh":
        with another_thread_running():
            return job()
    return job()


@pytest.mark.parametrize("name", ["a.wav", "dir/ü b.flac", 'quote".wav'])
def test_a_tar_member_path_names_tar_and_member_in_one_string(name):
    path = tar_member_path("/data/audio_3.tar", name)
    assert parse_tar_member_path(path) == ("/data/audio_3.tar", name)
    assert parse_tar_member_path("/data/audio_3.wav") is None


def test_job_rows_name_their_members_and_untarred_tables_are_unchanged(dataset, tarred):
    rows = job_audio_table(dataset.utterances, dataset.tar_shards)
    tars = [parse_tar_member_path(p)[0] for p in rows["audio_path"]]
    assert tars == [dataset.tar_shards[int(k)] for k in dataset.utterances["shard_id"]]
    assert [parse_tar_member_path(p)[1] for p in rows["audio_path"]] == [x["audio_filepath"] for x in tarred.lines]
    assert job_audio_table(dataset.utterances, ()) is dataset.utterances


@pytest.mark.parametrize("start", ["fork", "fresh"])
def test_audio_metrics_of_tar_members_in_worker_processes(many, start):
    dataset, entries = many
    rows = job_audio_table(dataset.utterances, dataset.tar_shards)
    metrics = _with_workers(start, lambda: compute_audio_metrics(rows, workers=2))
    assert metrics["audio_error"].isna().all(), metrics["audio_error"].dropna().tolist()[:3]
    assert (metrics["sample_rate"] == SR).all()
    assert metrics["audio_duration"].to_numpy() == pytest.approx([e["duration"] for e in entries], abs=1e-3)


def test_an_absent_member_is_a_per_row_error_not_a_failed_job(dataset, tarred):
    rows = job_audio_table(dataset.utterances, dataset.tar_shards).copy()
    rows.loc[0, "audio_path"] = tar_member_path(dataset.tar_shards[0], "not_there.wav")
    metrics = compute_audio_metrics(rows, workers=1)
    assert "no member 'not_there.wav'" in metrics["audio_error"].iloc[0]
    assert metrics["audio_error"].iloc[1:].isna().all()


@pytest.mark.parametrize("start", ["fork", "fresh"])
def test_segment_measures_of_tar_members_in_worker_processes(many, start):
    dataset, _ = many
    rows = job_audio_table(dataset.utterances, dataset.tar_shards)
    measured = _with_workers(start, lambda: measure_segments(rows, ("hash", "loudness", "levels"), workers=2))
    assert measured["quality_error"].isna().all(), measured["quality_error"].dropna().tolist()[:3]
    assert (measured["sample_rate"] == SR).all()
    assert np.isfinite(measured["lufs"].to_numpy(dtype=float)).all()
    assert measured["audio_hash"].nunique() == len(rows)  # 80 different tones


def test_the_sub_member_is_measured_as_its_own_segment(dataset, tarred):
    measured = measure_segments(job_audio_table(dataset.utterances, dataset.tar_shards), ("hash",), workers=1)
    # line 3 is the second half of line 0's file (NeMo's -sub member): a different segment
    assert measured["quality_error"].isna().all()
    assert measured["audio_hash"].nunique() == len(tarred.lines)


def test_the_statistics_pages_audio_job_measures_a_tarred_dataset(dataset, tarred, tmp_path):
    progress: list = []
    done = measure_audio_job(dataset, tmp_path / "handoff", progress.append, workers=1)
    assert "error" not in done, done
    metrics = read_handoff(tmp_path / "handoff", done["token"])
    assert metrics["audio_error"].isna().all()
    assert metrics["audio_duration"].to_numpy() == pytest.approx([o["duration"] for o in tarred.originals], abs=0.01)


def test_cli_style_measuring_of_a_tarred_dataset(dataset, tarred):
    measured = with_measured_audio(dataset, workers=1)
    assert measured.utterances["audio_error"].isna().all()
    assert not measured.utterances["duration_mismatch"].any()


def test_the_served_dataset_shows_each_member_as_tar_colon_member(dataset, tarred, tmp_path):
    checked = members.with_tar_members(dataset, Problem, cache_dir=tmp_path / "idx")
    shown = checked.utterances["audio_path"].tolist()
    assert shown == [f"{dataset.tar_shards[int(k)]}:{x['audio_filepath']}"
                     for k, x in zip(dataset.utterances["shard_id"], tarred.lines)]
    # what a job reads is still the member, whichever audio_path the table shows
    member = open_tar_member(job_audio_table(checked.utterances, checked.tar_shards)["audio_path"].iloc[2])
    assert member.size() > 0


def test_durations_from_member_headers_give_word_and_char_rates(tarred, tmp_path):
    lines = [{k: v for k, v in line.items() if k != "duration"} for line in tarred.lines]
    manifest = tmp_path / "no_durations.json"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    built = build_dataset(manifest, DatasetOptions(tarred_audio=tarred.pattern))
    table = members.with_tar_members(built, Problem, cache_dir=tmp_path / "idx").utterances
    assert (table["duration_source"] == "header").all()
    words = np.array([len(line["text"].split()) for line in lines])
    assert table["word_rate"].to_numpy() == pytest.approx(words / table["duration"].to_numpy(), rel=1e-9)
    assert table["char_rate"].to_numpy() == pytest.approx(
        np.array([len(line["text"]) for line in lines]) / table["duration"].to_numpy(), rel=1e-9)
