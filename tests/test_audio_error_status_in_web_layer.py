"""The HTTP status of an audio failure is the web layer's choice (sde.web.audio_service.http_status,
which /audio, /api/utterances/ID/signal and /api/utterances/ID/augment answer): sde.audio, the core,
says what went wrong in its own words (the error's reason, whether a store failed) and knows no HTTP.
Its AudioError carried a `status` property of HTTP codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.audio import AudioError, read_segment
from sde.web.audio_service import http_status


def _failure(path: Path) -> AudioError:
    with pytest.raises(AudioError) as exc:
        read_segment(str(path))
    return exc.value


def test_the_core_audio_error_knows_no_http(tmp_path):
    error = _failure(tmp_path / "gone.wav")
    assert not hasattr(error, "status")
    assert (error.reason, error.store_failed) == ("not_found", False)


def test_files_read_from_disk_get_the_status_of_what_went_wrong(tmp_path):
    sf.write(tmp_path / "short.wav", np.zeros(1600, dtype=np.float32), 16000)
    (tmp_path / "text.wav").write_text("not audio\n" * 50)
    (tmp_path / "empty.wav").write_bytes(b"")
    assert http_status(_failure(tmp_path / "gone.wav")) == 404
    assert http_status(_failure(tmp_path / "text.wav")) == 422
    assert http_status(_failure(tmp_path / "empty.wav")) == 422
    with pytest.raises(AudioError) as beyond:
        read_segment(str(tmp_path / "short.wav"), offset=5.0)
    assert http_status(beyond.value) == 422


@pytest.mark.parametrize("name, reason, status", [
    ("s3://bucket/a.wav", "timeout", 504),        # the store did not answer: ask again
    ("s3://bucket/a.wav", "store_error", 502),    # it failed
    ("s3://bucket/a.wav", "permission", 502),     # it refused: a state of the store
    ("/data/a.wav", "permission", 422),           # a local file we may not read: the content's problem
    ("s3://bucket/a.wav", "not_found", 404),
])
def test_store_failures_are_a_gateways_failure(name, reason, status):
    error = AudioError(name, "why", reason)
    assert error.store_failed is (status in (502, 504))
    assert http_status(error) == status
