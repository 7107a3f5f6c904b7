"""Encoding a segment for the browser: 16-bit WAV (whole, or streamed with Range support) and Ogg
Vorbis (whole, or encoded block by block as it is sent). Memory per stream is a few blocks."""

from __future__ import annotations

import io
import struct
from typing import Any, Iterable, Iterator

import numpy as np
import soundfile as sf

from sde.audio.io import BLOCK_FRAMES, Segment, SegmentReader

__all__ = ["OGG_MAX_RATE", "WavStream", "ogg_bytes", "ogg_rate", "ogg_stream", "wav_bytes", "wav_header"]


def wav_header(frames: int, sample_rate: int) -> bytes:
    """The 44-byte header of a mono 16-bit PCM WAV file of ``frames`` frames."""
    size = 2 * frames
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + size, b"WAVE", b"fmt ", 16,
                       1, 1, sample_rate, sample_rate * 2, 2, 16, b"data", size)


def _pcm16(samples: np.ndarray) -> bytes:
    return np.rint(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_bytes(segment: Segment) -> bytes:
    """The segment as a mono 16-bit PCM WAV file (browsers play it everywhere)."""
    # A hand-written header: faster than a codec round trip and exactly what we mean.
    return wav_header(len(segment.samples), int(segment.sample_rate)) + _pcm16(segment.samples)


class WavStream(io.RawIOBase):
    """A segment as a mono 16-bit WAV file, decoded only where it is read.

    Seekable, with its full ``size`` known up front, so HTTP Range requests work; reading any
    part costs the blocks under it, never the whole segment. Closing it closes the reader.
    """

    def __init__(self, reader: SegmentReader) -> None:
        super().__init__()
        self._reader = reader
        self._header = wav_header(reader.frames, int(reader.sample_rate))
        self.size = len(self._header) + 2 * reader.frames
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + int(pos))
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self._pos, 2 * BLOCK_FRAMES)
        if n <= 0:
            return 0
        chunk = self._bytes(self._pos, self._pos + n)
        buffer[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def _bytes(self, a: int, b: int) -> bytes:
        head = len(self._header)
        out = self._header[a:b] if a < head else b""
        a = max(a, head) - head
        b -= head
        if b > a:
            first = a // 2
            pcm = _pcm16(self._reader.read(first, (b + 1) // 2 - first))
            out += pcm[a - 2 * first: b - 2 * first]
        return out

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


class _ByteSink:
    """The file-like object libsndfile writes an Ogg stream into; bytes are taken as they come."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # libsndfile asks for the size when it opens the file; an Ogg stream is written
        # front to back and never rewritten, so "here" is the only answer needed.
        return self._written

    def read(self, size: int = -1) -> bytes:
        return b""

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


#: The highest rate sde asks libvorbis to encode: libsndfile crashed the process (SIGSEGV) on 256 kHz
#: and more (352.8 kHz is a studio rate); faster audio is decimated for the player first.
OGG_MAX_RATE = 192_000


class _Decimator:
    """Keeps every `factor`-th sample after a low-pass FIR, block by block: the filter's state and
    the phase of the kept samples carry over, so the blocks decimate as one signal would."""

    def __init__(self, factor: int) -> None:
        from scipy.signal import firwin  # only for rates above OGG_MAX_RATE: not on every start

        self.factor = factor
        self.taps = firwin(16 * factor + 1, 0.9 / factor)  # cut-off just under the new Nyquist
        self.state = np.zeros(len(self.taps) - 1)
        self.seen = 0

    def __call__(self, block: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter

        filtered, self.state = lfilter(self.taps, 1.0, np.asarray(block, dtype=np.float64), zi=self.state)
        first = -self.seen % self.factor
        self.seen += len(block)
        return filtered[first::self.factor]


def ogg_rate(sample_rate: int) -> tuple[int, int]:
    """(the rate an Ogg of audio at `sample_rate` is encoded at, the decimation factor to it)."""
    factor = max(1, -(-int(sample_rate) // OGG_MAX_RATE))
    return max(1, round(int(sample_rate) / factor)), factor


def _ogg_chunks(blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[bytes]:
    rate, factor = ogg_rate(sample_rate)
    if factor > 1:
        decimate = _Decimator(factor)
        blocks = (decimate(b) for b in blocks)
    sink = _ByteSink()
    wrote = False
    with sf.SoundFile(sink, "w", samplerate=rate, channels=1, format="OGG",
                      subtype="VORBIS") as f:
        for block in blocks:
            # Never more than BLOCK_FRAMES per write: libvorbis overflows the stack on ~2**21.
            for i in range(0, len(block), BLOCK_FRAMES):
                f.write(np.ascontiguousarray(block[i:i + BLOCK_FRAMES], dtype=np.float32))
                wrote = True
            chunk = sink.take()
            if chunk:
                yield chunk
        if not wrote:  # libvorbis needs at least one sample to write a valid stream
            f.write(np.zeros(1, dtype=np.float32))
    yield sink.take()


def ogg_bytes(segment: Segment) -> bytes:
    """The segment as mono Ogg Vorbis: ~7x smaller than the WAV, for the inspector's player, so a
    20 s view stays well under its transfer budget (the WAV route stays for lossless listening).
    Audio faster than OGG_MAX_RATE is decimated to it or under."""
    return b"".join(_ogg_chunks([np.clip(segment.samples, -1.0, 1.0)], segment.sample_rate))


def ogg_stream(reader: SegmentReader) -> Iterator[bytes]:
    """The reader's segment as mono Ogg Vorbis, encoded block by block as it is consumed (the
    length is unknown until the end, so a streamed Ogg has no Content-Length and no Range)."""
    yield from _ogg_chunks(reader.blocks(), reader.sample_rate)
