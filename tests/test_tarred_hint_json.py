"""A NeMo tarred manifest (lines with shard_id, audio_filepath naming tar members) given to `sde stats`
without --tarred-audio: the note that says how to give its tars, which the terminal gets, is in
--json's warnings too (its stdout is all a script reads), and only where it applies. Real CLI, real
shards written as NeMo writes them (tests.sources.tar_kit)."""

from __future__ import annotations

import json

import pytest

from tests.sources.tar_kit import make_tarred
from tests.test_s3 import sde


@pytest.fixture(scope="module")
def tarred(tmp_path_factory):
    return make_tarred(tmp_path_factory.mktemp("hint"))


def _summary(*args: str) -> dict:
    r = sde("stats", *args, "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_json_warnings_say_how_to_give_the_tars(tarred):
    summary = _summary(str(tarred.manifest))
    assert summary["audio_missing"] == len(tarred.lines)
    hints = [w for w in summary["warnings"] if "served with its tars" in w]
    assert hints == [f"all {len(tarred.lines)} audio files are missing ({len(tarred.lines)} utterances); its lines "
                     "name tar shards (shard_id 0..1): a NeMo tarred manifest is served with its tars, e.g. "
                     "--tarred-audio 'audio_{0..1}.tar'"], summary["warnings"]


def test_the_terminal_says_the_same(tarred):
    r = sde("stats", str(tarred.manifest), "--no-cache")
    assert r.returncode == 0, r.stderr
    assert "--tarred-audio 'audio_{0..1}.tar'" in r.stderr


def test_no_such_warning_with_the_tars(tarred):
    summary = _summary(str(tarred.manifest), "--tarred-audio", tarred.pattern)
    assert not [w for w in summary["warnings"] if "tarred-audio" in w], summary["warnings"]


def test_no_such_warning_when_the_members_are_there_as_files(tarred, tmp_path):
    # the same lines with every member's name present as a file beside the manifest: nothing missing
    for line in tarred.lines:
        (tmp_path / line["audio_filepath"]).write_bytes((tarred.folder / "src").joinpath(
            line["audio_filepath"].rsplit("_src_", 1)[1].replace("-sub1", "")).read_bytes())
    manifest = tmp_path / tarred.manifest.name
    manifest.write_text(tarred.manifest.read_text())
    summary = _summary(str(manifest))
    assert summary["audio_missing"] == 0
    assert not [w for w in summary["warnings"] if "tarred-audio" in w], summary["warnings"]
