"""A tar member whose bytes are no audio (a FLAC member overwritten with garbage inside a shard NeMo
wrote): the error names the member, never a Python object's address (soundfile's "Error opening
<_io.BytesIO object at 0x…>"), and says the fix. Through a real server's /audio route, and through
the audio reader on a real tar in a local folder and in an S3 bucket (moto's server)."""

from __future__ import annotations

import json
import tarfile
import urllib.error
import urllib.request

import pytest

from sde.audio import AudioError, read_segment
from sde.sources.members import TarShards
from tests.browser_kit import sde_server
from tests.sources.tar_kit import make_tarred

FLAC_LINE = 2  # make_tarred: line 2 is the FLAC member of shard 0


def _corrupt_flac(tar_path) -> str:
    """Overwrite the FLAC member's bytes in place (same size: the tar itself stays whole); its name."""
    with tarfile.open(tar_path) as t:
        member = next(m for m in t.getmembers() if m.name.endswith(".flac"))
    with open(tar_path, "r+b") as f:
        f.seek(member.offset_data)
        f.write((b"garbage! " * (member.size // 9 + 1))[:member.size])
    return member.name


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    tarred = make_tarred(tmp_path_factory.mktemp("damaged"))
    name = _corrupt_flac(tarred.folder / "audio_0.tar")
    assert tarred.lines[FLAC_LINE]["audio_filepath"] == name
    return tarred, name


def _says_the_member_and_the_fix(message: str, shown: str) -> None:
    assert message.startswith(f"{shown}: not a sound file, or corrupt (extension '.flac')"), message
    assert "<_io." not in message and "object at 0x" not in message, message
    assert 'libsndfile says "Format not recognised"' in message, message
    assert "pipe:0" not in message, message
    assert "re-create the shard" in message, message


def test_the_servers_audio_route_names_the_member_not_a_bytesio(damaged):
    tarred, name = damaged
    with sde_server(str(tarred.manifest), "--tarred-audio", tarred.pattern) as url:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}/audio/{FLAC_LINE}.wav", timeout=60)
        body = json.loads(e.value.read())
    assert e.value.code == 422
    assert body["reason"] == "unreadable"
    _says_the_member_and_the_fix(body["error"], f"{tarred.folder}/audio_0.tar:{name}")


@pytest.mark.parametrize("in_memory", [True, False], ids=["member-in-memory", "member-read-in-place"])
def test_the_reader_on_a_local_tar(damaged, tmp_path, monkeypatch, in_memory):
    from sde.sources import members

    if not in_memory:  # a large member is read through a window on the tar, not a BytesIO
        monkeypatch.setattr(members, "MEMBER_IN_MEMORY_BYTES", 0)
    tarred, name = damaged
    shards = TarShards([str(tarred.folder / "audio_0.tar"), str(tarred.folder / "audio_1.tar")], tmp_path)
    with pytest.raises(AudioError) as e:
        read_segment(shards.member(0, name))
    _says_the_member_and_the_fix(str(e.value), f"{tarred.folder}/audio_0.tar:{name}")


@pytest.mark.parametrize("in_memory", [True, False], ids=["member-in-memory", "member-read-in-place"])
def test_the_reader_on_a_tar_in_a_bucket(damaged, configured, tmp_path, monkeypatch, in_memory):
    pytest.importorskip("s3fs", reason="reading s3:// needs s3fs (pip install s3fs)")
    from sde.sources import members
    from tests.s3_kit import client

    if not in_memory:
        monkeypatch.setattr(members, "REMOTE_MEMBER_IN_MEMORY_BYTES", 0)
    tarred, name = damaged
    s3 = client(configured)
    bucket = f"sde-damaged-{'mem' if in_memory else 'ranged'}"
    s3.create_bucket(Bucket=bucket)
    for k in range(2):
        s3.upload_file(str(tarred.folder / f"audio_{k}.tar"), bucket, f"t/audio_{k}.tar")
    shards = TarShards([f"s3://{bucket}/t/audio_0.tar", f"s3://{bucket}/t/audio_1.tar"], tmp_path)
    with pytest.raises(AudioError) as e:
        read_segment(shards.member(0, name))
    _says_the_member_and_the_fix(str(e.value), f"s3://{bucket}/t/audio_0.tar:{name}")
