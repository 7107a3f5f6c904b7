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
from sde.audio.encode import _Decimator
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


@pytest.mark.parametrize("rate, encoded", [(48000, 48000), (192000, 192000), (200000, 100000), (256000, 128000),
                                           (352800, 176400), (384000, 192000), (1_000_000, 166667)])
def test_ogg_of_fast_audio_is_decimated_to_a_rate_vorbis_encodes(rate, encoded):
    """libsndfile crashed the process (SIGSEGV) encoding 256 kHz and more; a 1 kHz tone stays 1 kHz."""
    x = sine(1000, 0.5, rate, 0.5)
    data = ogg_bytes(Segment(x, rate, 1, "x.wav", 0.0, 0.5))
    back, sr = sf.read(io.BytesIO(data), dtype="float64")
    assert sr == encoded
    assert abs(len(back) / sr - 0.5) < 0.01
    spectrum = np.abs(np.fft.rfft(back * np.hanning(len(back))))
    assert abs(np.argmax(spectrum) * sr / len(back) - 1000) < 5


@pytest.mark.parametrize("factor, block", [(2, BLOCK_FRAMES), (2, 1000), (3, 1000), (6, 7), (3, 1)])
def test_decimating_block_by_block_equals_decimating_the_whole(factor, block):
    x = np.random.default_rng(0).standard_normal(30_000)
    whole = _Decimator(factor)(x)
    decimate = _Decimator(factor)
    pieces = np.concatenate([decimate(x[i:i + block]) for i in range(0, len(x), block)])
    assert len(pieces) == len(whole) == -(-len(x) // factor)
    np.testing.assert_allclose(pieces, whole, atol=1e-12)


def test_a_fast_file_streams_as_ogg_at_half_its_rate(tmp_path):
    rate = 384000
    x = sine(1000, 3 * BLOCK_FRAMES / rate, rate, 0.5)
    sf.write(tmp_path / "fast.wav", x, rate, subtype="FLOAT")
    with open_segment(str(tmp_path / "fast.wav"), 0.0, None) as reader:
        streamed, sr = sf.read(io.BytesIO(b"".join(ogg_stream(reader))))
    assert sr == 192000 and len(streamed) == len(x) // 2
    spectrum = np.abs(np.fft.rfft(streamed * np.hanning(len(streamed))))
    assert abs(np.argmax(spectrum) * sr / len(streamed) - 1000) < 5
