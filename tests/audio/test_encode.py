"""sde.audio.encode: WAV (whole, and streamed by byte range) and Ogg Vorbis encoded in blocks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from sde.audio import (
    BLOCK_FRAMES,
    IN_MEMORY_MAX_FRAMES,
    Segment,
    WavStream,
    ogg_bytes,
    ogg_stream,
    open_segment,
    read_segment,
    wav_bytes,
)
from tests.audio.audio_kit import sine


def test_wav_bytes_is_16_bit_pcm(tmp_path):
    x = sine(440, 0.5, 22050, 0.8)
    seg = Segment(x, 22050, 2, "x.wav", 0.0, 0.5)
    data = wav_bytes(seg)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert len(data) == 44 + 2 * len(x)
    info = sf.info(io.BytesIO(data))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    back, _ = sf.read(io.BytesIO(data), dtype="float32")
    np.testing.assert_allclose(back, x, atol=1.5 / 32768)
    # Out-of-range samples are clipped, not wrapped.
    loud = wav_bytes(Segment(np.array([2.0, -2.0], np.float32), 8000, 1, "", 0.0, 0.0))
    np.testing.assert_array_equal(np.frombuffer(loud[44:], "<i2"), [32767, -32767])


@pytest.mark.parametrize("start,length", [(0, 44), (0, 45), (10, 100), (43, 3), (45, 1), (46, 7),
                                          (1001, 2 * BLOCK_FRAMES + 3), (-57, 57), (-1, 1)])
def test_wav_stream_reads_any_byte_range_like_the_whole_wav(long_noise, start, length):
    path, _ = long_noise
    whole = wav_bytes(read_segment(path, 10.0, 30.0))
    with open_segment(path, 10.0, 30.0) as reader:
        stream = WavStream(reader)
        assert stream.size == len(whole)
        stream.seek(start if start >= 0 else len(whole) + start)
        got = b""
        while len(got) < length:
            piece = stream.read(length - len(got))
            assert piece, "ended early"
            got += piece
        stream.close()
    begin = start if start >= 0 else len(whole) + start
    assert got == whole[begin:begin + length]


@pytest.mark.parametrize("frames", [0, 1, BLOCK_FRAMES + 1, IN_MEMORY_MAX_FRAMES])
def test_ogg_is_encoded_in_blocks_whatever_the_length(frames):
    """One libvorbis write of 2**21 frames overflows the stack (SIGSEGV): never more than a block."""
    sr = 8000
    x = (0.3 * np.sin(2 * np.pi * 300 * np.arange(frames) / sr)).astype(np.float32)
    data = ogg_bytes(Segment(x, sr, 1, "x.wav", 0.0, frames / sr))
    info = sf.info(io.BytesIO(data))
    assert info.samplerate == sr and info.frames == max(frames, 1)


def test_ogg_of_a_reader_streams_in_pieces(long_noise):
    path, x = long_noise
    with open_segment(path, 0.0, None) as reader:
        chunks = list(ogg_stream(reader))
    assert len(chunks) > 10  # bytes leave as blocks are encoded, not all at the end
    assert sf.info(io.BytesIO(b"".join(chunks))).frames == len(x)
