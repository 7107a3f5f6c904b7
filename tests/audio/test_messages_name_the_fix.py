"""An audio error names the fix, as every sde error does: a segment past a file's end and a file cut
short named the file and the reason only (QA)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sde.audio import AudioError, read_segment


@pytest.fixture
def two_seconds(tmp_path):
    path = tmp_path / "two.wav"
    sf.write(path, 0.2 * np.sin(np.arange(32_000) / 5.0), 16_000, subtype="PCM_16")
    return path


def _cut(path, keep_s: float):
    """The WAV with its data cut to ``keep_s`` seconds, its header kept (a copy that stopped)."""
    data = path.read_bytes()
    header = data.index(b"data") + 8
    path.write_bytes(data[:header + int(keep_s * 16_000) * 2])
    return path


@pytest.mark.parametrize("file, offset, duration, reason, fix", [
    ("whole", 5.0, 1.0, "beyond the end of the file", "fix this line's offset"),
    ("cut", 0.0, 2.0, "truncated file", "copy the file again from its source"),
    ("cut", 1.5, 0.3, "beyond the end of the file", "copy the file again from its source"),
], ids=["offset past the end", "segment past a cut file's end", "offset past a cut file's end"])
def test_the_error_says_the_fix(two_seconds, file, offset, duration, reason, fix):
    path = _cut(two_seconds, 1.0) if file == "cut" else two_seconds
    with pytest.raises(AudioError) as e:
        read_segment(str(path), offset, duration)
    assert reason in str(e.value) and fix in str(e.value), str(e.value)
