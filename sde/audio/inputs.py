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

import codecs
import errno
import io
import os
import re
import sys
import threading
from typing import Any, BinaryIO, Callable

__all__ = ["AudioInput", "FileAudio", "MemoryAudio", "STORE_REASONS", "as_input", "install_openers",
           "installed_openers", "is_remote_name", "local_name", "set_prefix_opener", "set_url_opener", "shown_name",
           "store_failed", "store_failure", "store_reason", "utf8_spelling", "written_name"]

# Formats libsndfile refuses go to ffmpeg through a pipe: at most this much is handed over.
MAX_PIPED_BYTES = 512 << 20
# soundfile (0.14) opens every file under one process-wide lock, and libsndfile reads the header
# through our callbacks while it holds it: a read from the network there made one stalled store
# request block every other audio open of the server, local files included. So what the open
# reads is fetched before it: a file up to this size whole (one request, as a remote tar member
# is), a larger one its first and last bytes (the header, and chunks some formats keep at the
# end); the segment's frames are read after the open, outside the lock.
PREFETCH_WHOLE_BYTES = 4 << 20
PREFETCH_HEAD_BYTES = 64 << 10
PREFETCH_TAIL_BYTES = 64 << 10
# An open that asked for bytes not fetched is retried after fetching them (at least this much
# each), up to PREFETCH_MAX_BYTES in all; past that (a header of megabytes) it reads as it goes.
PREFETCH_MISS_BYTES = 64 << 10
PREFETCH_MAX_BYTES = 8 << 20

#: AudioError reasons of a store that failed or did not answer (not of the file itself): the same
#: request may well succeed a moment later, so they are never remembered as the file's state.
#: ``timeout``: no answer in time, or no connection; ``store_error``: an error of the store
#: (5xx, throttling, a reset connection). A store's refusal (403, expired credentials) keeps the
#: reason ``permission``, as a local file's, and is not remembered either (:func:`store_failed`).
STORE_REASONS = ("timeout", "store_error")

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
        return _Guarded(self, self._opener(), self._size)

    def size(self) -> int | None:
        return self._size

    def explain(self, error: BaseException) -> tuple[str, str]:
        why, reason = self._explain(error) if self._explain else super().explain(error)
        return store_failure(why, reason, error) if is_remote_name(self.name) else (why, reason)


def is_remote_name(name: str) -> bool:
    """A URL (``s3://b/a.wav``) or a member of a tar behind one (``s3://b/t.tar:a.wav``)."""
    return bool(_URL.match(name)) and not name.lower().startswith("file://")


_STORE_ERRNOS = {errno.EREMOTEIO, errno.EBUSY, errno.EAGAIN, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                 errno.ETIMEDOUT}
_STORE_ERROR_NAMES = {"ClientConnectionError", "ClientPayloadError", "ServerDisconnectedError", "ResponseStreamingError",
                      "IncompleteReadError", "IncompleteRead", "ProtocolError", "ConnectionClosedError"}
# no answer in time, or no connection at all
_STORE_UNREACHED_NAMES = {"ReadTimeoutError", "ConnectTimeoutError", "FSTimeoutError", "ServerTimeoutError",
                          "ConnectionTimeoutError", "ReadTimeout", "ConnectTimeout", "ClientConnectorError",
                          "EndpointConnectionError"}


def store_reason(error: BaseException | None, reason: str) -> str:
    """The AudioError reason of a failed read of a remote file: one of STORE_REASONS when the store
    failed or did not answer (``reason`` as sde.sources.remote explained it: ``timeout``, or
    ``unreadable`` for a 5xx, throttling or a reset), ``permission`` when it refused, else
    ``reason`` itself (not found, rewritten, bytes that are no audio: answers about the file)."""
    if reason == "store_error":
        return reason
    chain: list[BaseException] = []
    while error is not None and all(error is not e for e in chain):  # the backend's error may be wrapped
        chain.append(error)
        error = error.__cause__ or error.__context__
    # the root cause first: botocore calls a reset connection "Could not connect to the endpoint"
    for error in reversed(chain):
        names = {cls.__name__ for cls in type(error).__mro__}
        status = getattr(error, "status", None)
        if isinstance(error, (TimeoutError, ConnectionRefusedError)) or names & _STORE_UNREACHED_NAMES:
            return "timeout"
        if isinstance(error, PermissionError):
            return "permission"
        if isinstance(error, ConnectionError) or names & _STORE_ERROR_NAMES or \
                (isinstance(error, OSError) and error.errno in _STORE_ERRNOS) or \
                (isinstance(status, int) and (status >= 500 or status == 429)):
            return "store_error"
    return reason


def store_failed(reason: str, name: str) -> bool:
    """Whether an AudioError of ``name`` is a store's failure to answer or its refusal (a state of
    the store, which the next request may find gone), not an answer about the file."""
    return reason in STORE_REASONS or (reason == "permission" and is_remote_name(name))


def store_failure(why: str, reason: str, error: BaseException | None) -> tuple[str, str]:
    """(why, reason) of a failed read of a remote file, ``error`` the backend's exception: a
    store's failure gets its reason (:func:`store_reason`) and says how to get past it."""
    reason = store_reason(error, reason)
    return _with_store_fix(why, reason), reason


def _with_store_fix(why: str, reason: str) -> str:
    """``why`` plus the fix of a store's failure where the store's own explanation lacks one."""
    if "try again" in why:  # said already
        return why
    if reason == "store_error":
        return f"the store failed to send it ({why}); try again: the next request asks the store again"
    if reason == "timeout" and "SDE_REMOTE_TIMEOUT" not in why:
        return f"{why}; try again, or set SDE_REMOTE_TIMEOUT=SECONDS for a slow store"
    if reason == "timeout":
        return f"{why}; try again: the next request asks the store again"
    return why


class _Guarded(io.RawIOBase):
    """A file whose read errors become end-of-file plus a note on its AudioInput: libsndfile reads
    through Python callbacks, where an exception would only print a traceback and turn into a
    vague decoder error; the note lets the reader say what really happened (a timeout, a 403).

    It also holds the bytes :meth:`prefetch` fetched: while ``offline`` (libsndfile opening it,
    see PREFETCH_WHOLE_BYTES) a read of bytes not fetched reads as end-of-file and is noted in
    ``missed``, for :meth:`fetch_missed` to fetch before the open is tried again."""

    def __init__(self, owner: AudioInput, raw: Any, size: int | None = None) -> None:
        super().__init__()
        self._owner = owner
        self._raw = raw
        self._size = size
        self._pos = 0
        self._spans: list[tuple[int, bytes]] = []  # (first byte, bytes) fetched ahead
        self._fetched = 0
        self.offline = False
        self.missed: list[tuple[int, int]] = []

    def _failed(self, error: Exception) -> None:
        if self._owner.failure is None:
            self._owner.failure = error

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def size(self) -> int:
        if self._size is None:
            self._size = self._raw.seek(0, os.SEEK_END)  # a remote file knows its size: no request
        return self._size

    # -- fetching ahead (raises: outside libsndfile, the caller explains the failure) -------------
    def prefetch(self) -> None:
        """Fetch what libsndfile reads as it opens the file: all of it when small, else its head and tail."""
        size = self.size()
        if size <= PREFETCH_WHOLE_BYTES:
            self._fetch(0, size)
            return
        self._fetch(0, PREFETCH_HEAD_BYTES)
        self._fetch(size - PREFETCH_TAIL_BYTES, PREFETCH_TAIL_BYTES)

    def fetch_missed(self) -> bool:
        """Fetch the bytes the last offline open asked for and lacked; False when there were none,
        or when fetching more would pass PREFETCH_MAX_BYTES (then the open reads as it goes)."""
        missed, self.missed = self.missed, []
        if not missed or self._fetched >= PREFETCH_MAX_BYTES:
            return False
        before = self._fetched
        for start, count in missed:
            self._fetch(start, max(count, PREFETCH_MISS_BYTES))
        return self._fetched > before

    def _fetch(self, start: int, count: int) -> None:
        start = max(0, min(start, self.size()))
        count = max(0, min(count, self.size() - start))
        if count == 0 or self._held(start, count) is not None:
            return
        self._raw.seek(start)
        data = self._raw.read(count)
        self._spans.append((start, data))
        self._fetched += len(data)

    def _held(self, start: int, count: int) -> bytes | None:
        for first, data in self._spans:
            if first <= start and start + count <= first + len(data):
                return data[start - first:start - first + count]
        return None

    # -- the file ----------------------------------------------------------------------------------
    def read(self, size: int | None = -1) -> bytes:
        try:
            if self._pos >= self.size():
                return b""
            count = max(0, self.size() - self._pos) if size is None or size < 0 else size
            held = self._held(self._pos, min(count, max(0, self.size() - self._pos)))
            if held is None and self.offline:
                self.missed.append((self._pos, count))
                return b""
            if held is None:
                self._raw.seek(self._pos)
                held = self._raw.read(count)
            self._pos += len(held)
            return held
        except Exception as e:  # noqa: BLE001 - any backend failure: see the class docstring
            self._failed(e)
            return b""

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size()}[whence]
        except Exception as e:  # noqa: BLE001
            self._failed(e)
            return self._pos
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            self._spans = []
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
    """A local path as a string (:func:`local_name`), an AudioInput as itself, a URL or a prefixed
    name through the installed opener."""
    if isinstance(path, AudioInput):
        return path
    text = os.fspath(path)
    for prefix, opener in _prefix_openers.items():
        if text.startswith(prefix):
            return opener(text)
    if _URL.match(text) and not text.lower().startswith("file://") and _url_opener is not None:
        return _url_opener(text)
    return local_name(text)


#: Python encodes file names with the locale's encoding: UTF-8 unless the locale says otherwise
#: (LANG=en_US.ISO-8859-1; LANG=C is coerced to UTF-8).
_NAMES_IN_UTF8 = os.name != "posix" or codecs.lookup(sys.getfilesystemencoding()).name == "utf-8"


def utf8_spelling(path: str) -> str | None:
    """Under a locale whose file names are not UTF-8, the name whose bytes are ``path``'s UTF-8 ones
    (the bytes a UTF-8 manifest's files are stored under; the locale's encoding gives other bytes,
    or none for 清单.wav in ISO-8859-1); None where that is the name itself."""
    if _NAMES_IN_UTF8 or path.isascii():
        return None
    try:
        respelt = os.fsdecode(path.encode("utf-8", "surrogateescape"))
    except UnicodeError:
        return None
    return None if respelt == path else respelt


def local_name(path: str) -> str:
    """``path`` as the OS finds it: itself, or under a locale whose file names are not UTF-8, its
    UTF-8 spelling (:func:`utf8_spelling`) when the locale's is not there and that one is: an
    existing données.wav was "file not found" under LANG=en_US.ISO-8859-1."""
    respelt = utf8_spelling(path)
    if respelt is None or os.path.lexists(path) or not os.path.lexists(respelt):
        return path
    return respelt


def written_name(path: str) -> str:
    """A local name as the manifest wrote it, for messages: the inverse of :func:`local_name`."""
    if _NAMES_IN_UTF8 or path.isascii():
        return path
    try:
        return os.fsencode(path).decode("utf-8")
    except UnicodeError:  # a name in the locale's own encoding: shown as it is
        return path


def shown_name(path: "str | os.PathLike | AudioInput") -> str:
    return str(path) if isinstance(path, AudioInput) else written_name(os.fspath(path))
