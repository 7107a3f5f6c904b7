"""Audio that is not a plain local file: the bytes of a tar member held in memory, or a seekable
file object opened on demand (a file in an object store read with byte ranges, a large tar member
read in place). The reader of :mod:`sde.audio.io` takes these wherever it takes a path.

sde.audio imports no other part of sde, so it cannot open URLs itself: :mod:`sde.sources`
installs the function that turns a URL into an :class:`AudioInput` (:func:`set_url_opener`), and a
URL given as a path goes through it (``file_info("s3://b/a.wav")`` reads the header with byte
ranges). Without it a URL is an ordinary missing file. Other names that are not files (a tar
member of a NeMo tarred dataset, named by a prefix) get their opener the same way
(:func:`set_prefix_opener`), so worker processes of the audio jobs read them by name.
"""

from __future__ import annotations

import io
import os
import re
import threading
from typing import Any, BinaryIO, Callable

__all__ = ["AudioInput", "FileAudio", "MemoryAudio", "as_input", "install_openers", "installed_openers",
           "set_prefix_opener", "set_url_opener", "shown_name"]

# Formats libsndfile refuses go to ffmpeg through a pipe: at most this much is handed over.
MAX_PIPED_BYTES = 512 << 20

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_url_opener: Callable[[str], "AudioInput"] | None = None
_prefix_openers: dict[str, Callable[[str], "AudioInput"]] = {}
_opener_lock = threading.Lock()


class AudioInput:
    """Audio bytes that live somewhere other than a local path. ``str()`` is the name messages
    show (``audio_3.tar:x.wav``, ``s3://b/x.wav``)."""

    name: str
    #: the first failure of the underlying file (a network error inside a decoder callback)
    failure: Exception | None = None

    def open(self) -> BinaryIO:
        """A new seekable binary file object positioned at 0 (the caller closes it)."""
        raise NotImplementedError

    def size(self) -> int | None:
        return None

    def read_all(self) -> bytes:
        """Every byte, for decoders that read a pipe (bounded by MAX_PIPED_BYTES)."""
        size = self.size()
        if size is not None and size > MAX_PIPED_BYTES:
            raise ValueError(f"{size:,} bytes is too large to decode through ffmpeg from memory "
                             f"(at most {MAX_PIPED_BYTES >> 20} MiB); convert it to WAV or FLAC")
        with self.open() as f:
            data = f.read(MAX_PIPED_BYTES + 1)
        if len(data) > MAX_PIPED_BYTES:
            raise ValueError(f"too large to decode through ffmpeg from memory (at most {MAX_PIPED_BYTES >> 20} "
                             "MiB); convert it to WAV or FLAC")
        return data

    def explain(self, error: BaseException) -> tuple[str, str]:
        """(why, AudioError reason) for a failure of the underlying file."""
        return f"cannot read ({type(error).__name__}: {error})", "unreadable"

    def __str__(self) -> str:
        return self.name


class MemoryAudio(AudioInput):
    """A whole small file in memory (a tar member read with one pread or one ranged request)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def size(self) -> int:
        return len(self.data)

    def read_all(self) -> bytes:
        return self.data


class FileAudio(AudioInput):
    """A file opened on demand by ``opener`` (a remote file, a window on a tar). ``explain`` turns
    a failure of the opener or of a read into (why, reason) for the AudioError."""

    def __init__(self, name: str, opener: Callable[[], BinaryIO], size: int | None = None,
                 explain: Callable[[BaseException], tuple[str, str]] | None = None) -> None:
        self.name = name
        self._opener = opener
        self._size = size
        self._explain = explain

    def open(self) -> BinaryIO:
        return _Guarded(self, self._opener())

    def size(self) -> int | None:
        return self._size

    def explain(self, error: BaseException) -> tuple[str, str]:
        return self._explain(error) if self._explain else super().explain(error)


class _Guarded(io.RawIOBase):
    """A file whose read errors become end-of-file plus a note on its AudioInput: libsndfile reads
    through Python callbacks, where an exception would only print a traceback and turn into a
    vague decoder error; the note lets the reader say what really happened (a timeout, a 403)."""

    def __init__(self, owner: AudioInput, raw: Any) -> None:
        super().__init__()
        self._owner = owner
        self._raw = raw

    def _failed(self, error: Exception) -> None:
        if self._owner.failure is None:
            self._owner.failure = error

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._raw.read(size)
        except Exception as e:  # noqa: BLE001 - any backend failure: see the class docstring
            self._failed(e)
            return b""

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._raw.seek(offset, whence)
        except Exception as e:  # noqa: BLE001
            self._failed(e)
            return self.tell()

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def set_url_opener(opener: Callable[[str], AudioInput] | None) -> None:
    """How a URL given as an audio path is opened (installed by sde.sources)."""
    global _url_opener
    with _opener_lock:
        _url_opener = opener


def set_prefix_opener(prefix: str, opener: Callable[[str], AudioInput]) -> None:
    """How a name starting with ``prefix`` is opened (installed by sde.sources: tar members)."""
    with _opener_lock:
        _prefix_openers[prefix] = opener


def installed_openers() -> tuple:
    """The openers installed here, for :func:`install_openers` in a worker process: module-level
    functions pickle by name, so a spawned worker imports their modules and has them too."""
    with _opener_lock:
        return _url_opener, dict(_prefix_openers)


def install_openers(openers: tuple) -> None:
    """A pool's initializer: install what :func:`installed_openers` returned in the parent."""
    global _url_opener
    url_opener, prefix_openers = openers
    with _opener_lock:
        _url_opener = url_opener
        _prefix_openers.update(prefix_openers)


def as_input(path: "str | os.PathLike | AudioInput") -> "str | AudioInput":
    """A local path as a string, an AudioInput as itself, a URL or a prefixed name through the
    installed opener."""
    if isinstance(path, AudioInput):
        return path
    text = os.fspath(path)
    for prefix, opener in _prefix_openers.items():
        if text.startswith(prefix):
            return opener(text)
    if _URL.match(text) and not text.lower().startswith("file://") and _url_opener is not None:
        return _url_opener(text)
    return text


def shown_name(path: "str | os.PathLike | AudioInput") -> str:
    return str(path) if isinstance(path, AudioInput) else os.fspath(path)
