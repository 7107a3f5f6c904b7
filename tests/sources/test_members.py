"""sde.sources.members: a tarred manifest's line → its member's audio, read by seek and decoded
from memory, and the load-time check of every line (bad shard ids, missing or damaged tars,
absent members) as one clear problem per line while the other lines stay playable."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from sde.audio import AudioError, file_info, read_segment
from sde.audio.inputs import FileAudio, MemoryAudio
from sde.dataset import DatasetOptions, build_dataset
from sde.sources import members
from sde.sources.members import TarShards, audio_input, check_tar_members
from sde.web.audio_service import AudioService
from tests.sources.tar_kit import make_tarred


@pytest.fixture(scope="module", params=[False, True], ids=["scanned", "dali-index"])
def tarred(request, tmp_path_factory):
    return make_tarred(tmp_path_factory.mktemp("tarred"), index_files=request.param)


@pytest.fixture(scope="module")
def service(tarred):
    dataset = build_dataset(tarred.manifest, DatasetOptions(tarred_audio=tarred.pattern))
    return AudioService(dataset)


def test_the_dataset_lists_the_shards_in_shard_id_order(tarred, service):
    assert service.dataset.tar_shards == (str(tarred.folder / "audio_0.tar"), str(tarred.folder / "audio_1.tar"))


@pytest.mark.parametrize("line, kind", [(0, "spoken wav"), (1, "spoken wav"), (2, "flac"), (3, "-sub1 with offset"),
                                        (5, "tone in shard 1")])
def test_each_member_plays_as_the_segment_of_the_file_it_was_made_from(tarred, service, line, kind):
    seg = service.source(line)
    expected = tarred.expected(line)
    assert seg.sample_rate == sf.info(tarred.originals[line]["audio_filepath"]).samplerate
    assert len(seg.samples) == len(expected)
    assert np.allclose(seg.samples, expected, atol=1e-4)


def test_the_sub_line_names_the_member_nemo_stored_once(tarred):
    assert tarred.lines[3]["audio_filepath"].endswith("-sub1.wav")
    assert tarred.lines[3]["audio_filepath"].replace("-sub1", "") == tarred.lines[0]["audio_filepath"]


def test_a_member_is_read_whole_into_memory_and_named_after_tar_and_member(tarred, service):
    source = service.audio_input(1)
    assert isinstance(source, MemoryAudio)
    assert str(source) == f"{tarred.folder / 'audio_0.tar'}:{tarred.lines[1]['audio_filepath']}"


def test_a_member_too_large_to_hold_is_read_in_place(tarred, service, monkeypatch):
    monkeypatch.setattr(members, "MEMBER_IN_MEMORY_BYTES", 1000)
    source = service.audio_input(4)
    assert isinstance(source, FileAudio)
    assert np.allclose(read_segment(source).samples, tarred.expected(4), atol=1e-4)
    assert file_info(source)["duration"] == pytest.approx(tarred.originals[4]["duration"], abs=1e-3)


def test_the_signal_payload_of_a_member(service, tarred):
    payload = json.loads(service.signal_json(2)[0])
    assert payload["duration"] == pytest.approx(tarred.originals[2]["duration"], abs=1e-3)
    assert payload["sample_rate"] == 16000 and payload["figure"]["data"]


def test_every_line_of_a_good_tarred_manifest_passes_the_load_check(service, tmp_path):
    check = check_tar_members(service.dataset.utterances, service.dataset.tar_shards, cache_dir=tmp_path)
    assert check.problems == [] and check.notes == [] and check.present.all()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_format_libsndfile_refuses_is_decoded_by_ffmpeg_from_memory(tarred, tmp_path):
    m4a = tmp_path / "x.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", tarred.originals[4]["audio_filepath"], str(m4a)], check=True)
    seg = read_segment(MemoryAudio("t.tar:x.m4a", m4a.read_bytes()), 0.25, 0.5)
    assert seg.sample_rate == 16000 and len(seg.samples) == pytest.approx(8000, abs=1100)
    assert np.abs(seg.samples).max() == pytest.approx(0.3, abs=0.05)


# ---------------------------------------------------------------------------------- bad input


def _damaged(tarred, tmp_path, damage: str):
    """A copy of the tarred dataset with one kind of damage; returns (manifest, pattern)."""
    folder = tmp_path / "d"
    shutil.copytree(tarred.folder, folder, ignore=shutil.ignore_patterns("src"))
    lines = [dict(line) for line in tarred.lines]
    if damage == "missing shard":
        (folder / "audio_1.tar").unlink()
    elif damage == "absent member":
        lines[5]["audio_filepath"] = "not_in_the_tar.wav"
    elif damage == "truncated tar":
        tar = folder / "audio_1.tar"
        data = tar.read_bytes()
        tar.write_bytes(data[:len(data) // 2])
        shutil.rmtree(folder / "dali_index", ignore_errors=True)
    elif damage == "bad index file":
        (folder / "dali_index").mkdir(exist_ok=True)
        (folder / "dali_index" / "audio_1.index").write_text("v1.2 1\nwav 512 10 nothing.wav\n")
    elif damage == "shard_id out of range":
        lines[6]["shard_id"] = 9
    elif damage == "missing shard_id":
        del lines[6]["shard_id"]
    manifest = folder / "m.json"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest, str(folder / "audio__OP_0..1_CL_.tar")


@pytest.mark.parametrize("damage, lines, message, note", [
    ("missing shard", [5, 6, 7], "audio_1.tar: file not found; check --tarred-audio", "file not found"),
    ("absent member", [6], "no member 'not_in_the_tar.wav' (the tar holds 3 members)", None),
    ("truncated tar", [6, 7], "not among the 1 members before the tar's damage", "truncated"),
    ("bad index file", [], None, "audio_1.index:2: 'nothing.wav'"),
    ("shard_id out of range", [7], "shard_id 9 is not one of 0..1", None),
    ("missing shard_id", [7], 'missing field "shard_id"', None),
])
def test_bad_tarred_input_is_one_problem_per_line_and_the_rest_plays(tarred, tmp_path, damage, lines, message, note):
    manifest, pattern = _damaged(tarred, tmp_path, damage)
    dataset = build_dataset(manifest, DatasetOptions(tarred_audio=pattern))
    check = check_tar_members(dataset.utterances, dataset.tar_shards, manifest=str(manifest),
                              cache_dir=tmp_path / "idx")
    assert [line for _, line, _ in check.problems] == lines
    assert all(message in text for _, _, text in check.problems)
    assert all(path == str(manifest) for path, _, _ in check.problems)
    assert (note is None) == (check.notes == []) and all(note in n for n in check.notes)
    bad_rows = {line - 1 for line in lines}
    assert [bool(x) for x in check.present] == [row not in bad_rows for row in range(len(dataset.utterances))]
    service = AudioService(dataset)
    for row in range(len(dataset.utterances)):
        if row in bad_rows:
            with pytest.raises(AudioError) as e:
                service.source(row)
            assert e.value.reason in ("not_found", "unreadable", "truncated")
        else:
            assert len(service.source(row).samples) > 0


def test_a_row_without_tars_or_shard_id_stays_a_local_path(tarred):
    assert audio_input("/data/a.wav") == "/data/a.wav"
    assert audio_input("/data/a.wav", "a.wav", None, TarShards([])) == "/data/a.wav"


def test_a_missing_duration_comes_from_the_members_header(tarred, tmp_path):
    import pandas as pd

    table = pd.DataFrame(tarred.lines)
    table.loc[[2, 3], "duration"] = np.nan   # the FLAC, and the -sub1 segment with an offset
    check = check_tar_members(table, [str(tarred.folder / f"audio_{k}.tar") for k in range(2)], cache_dir=tmp_path)
    assert check.problems == []
    assert np.isnan(check.header_durations[[0, 1, 4, 5, 6]]).all()
    whole = sf.info(tarred.originals[3]["audio_filepath"]).duration
    assert check.header_durations[2] == pytest.approx(1.5, abs=1e-3)
    assert check.header_durations[3] == pytest.approx(whole - tarred.originals[3]["offset"], abs=1e-3)


def test_with_tar_members_marks_absent_members_and_notes_them_as_lines_kept(tarred, tmp_path):
    from sde.manifest import Problem

    manifest, pattern = _damaged(tarred, tmp_path, "absent member")
    dataset = build_dataset(manifest, DatasetOptions(tarred_audio=pattern))
    notes: list[str] = []
    checked = members.with_tar_members(dataset, Problem, cache_dir=tmp_path / "idx", status=notes.append)
    assert checked.utterances["audio_exists"].tolist() == [True] * 5 + [False, True]
    assert checked.problems == dataset.problems == []  # kept, not skipped: export writes the line
    assert [str(p) for p in checked.warnings] == [
        f"m.json:6: {tmp_path}/d/audio_1.tar: no member 'not_in_the_tar.wav' (the tar holds 3 members); "
        "check the line's shard_id and that --tarred-audio lists the shards in the order of the shard ids"]
    assert notes == [] and "audio_exists" not in dataset.utterances


def test_a_line_whose_member_is_absent_is_kept_and_noted_by_stats_and_export(tarred, tmp_path):
    # it was counted among the skipped lines ("skipped 1 bad lines (in neither file)") yet exported
    import sys
    from pathlib import Path

    manifest, pattern = _damaged(tarred, tmp_path, "absent member")
    root = Path(__file__).resolve().parents[2]

    def sde(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sde.cli", *args, "--tarred-audio", pattern, "--no-cache"],
                              capture_output=True, text=True, cwd=root, timeout=120)

    summary = json.loads(sde("stats", str(manifest), "--json").stdout)
    assert summary["utterances"] == 7 and summary["skipped_lines"] == 0, summary
    said = sde("stats", str(manifest)).stderr
    assert "warning: 1 note about the lines kept" in said and "no member 'not_in_the_tar.wav'" in said, said
    assert "bad line" not in said
    out = tmp_path / "kept.json"
    export = sde("export", str(manifest), "-o", str(out))
    assert export.returncode == 0 and "skipped" not in export.stderr, export.stderr
    assert out.read_text() == manifest.read_text()
    log = json.loads((tmp_path / "kept.json.changelog.json").read_text())
    assert log["counts"]["skipped_lines"] == 0 and log["counts"]["kept"] == 7
