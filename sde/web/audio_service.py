"""The audio of a dataset's utterances, by id: decoded segments, encoded WAV/Ogg bytes and the
waveform + spectrogram figure, with one byte-bounded cache per server. The /audio routes and the
inspector page share it (`service_of`): the page asks for the signal of the utterance whose audio
the player is fetching at the same moment, and pays for one decode.

Segments up to ``IN_MEMORY_MAX_FRAMES`` are decoded whole and cached; longer ones (a 60-minute
utterance) come as an open ``SegmentReader`` that the caller streams and closes, and the figure
is reduced from one block-wise pass over the file. Cache keys carry an ETag built from the row
(path, offset, duration) and the file's size and mtime (a tar member: its tar's), so a file edited
on disk is never served stale; files in object stores are taken as unchanging while serving.
Where the audio is (local path, object store, tar member) is sde.sources.members' business.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Callable

from flask import current_app

from sde.audio import (AudioError, ChannelSelection, DisplayData, MAX_SECONDS, Segment, SegmentReader, channel_selection,
                       display_data, ogg_bytes, open_segment, wav_bytes)
from sde.audio.inputs import STORE_REASONS, AudioInput, is_remote_name, local_name, store_failed, store_failure
from sde.sources.members import TarShards, audio_input, shard_number
from sde.sources.remote import is_url
from sde.web.signal_figure import signal_figure
from sde.caching import LRUCache, OneAtATime

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = ["AudioService", "EXTENSION_KEY", "SIGNAL_KINDS", "UnknownUtterance", "http_status", "service_of",
           "signal_for_page"]

log = logging.getLogger(__name__)

#: ``server.extensions[EXTENSION_KEY]`` is the :class:`AudioService` of a server.
EXTENSION_KEY = "sde_audio"
SIGNAL_KINDS = ("linear", "mel")
DEFAULT_CACHE_BYTES = 96 << 20
_ENCODERS: dict[str, Callable[[Segment], bytes]] = {"wav": wav_bytes, "ogg": ogg_bytes}


class UnknownUtterance(KeyError):
    """No manifest row has this id."""

    def __init__(self, utt_id: int, count: int) -> None:
        self.utt_id = utt_id
        self.count = count
        span = f"ids are 0..{count - 1}" if count else "the dataset has no utterances"
        self.message = f"no utterance with id {utt_id} ({span})"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def http_status(exc: AudioError) -> int:
    """The HTTP status that answers an AudioError, for every route that serves audio: 404 for a
    missing file (missing for the client too), 504 for a store that did not answer and 502 for one
    that failed or refused (a gateway's failure: ask again), 422 for anything else: a file that is
    there but no usable audio (the request was fine, the content is not)."""
    if exc.reason == "not_found":
        return 404
    if exc.store_failed:
        return 504 if exc.reason == "timeout" else 502
    return 422


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _row_time(utt_id: int, path: str, field: str, value: float) -> float:
    """A manifest offset/duration as seconds, or a 422 that names the field, value and fix."""
    if math.isfinite(value) and 0.0 <= value <= MAX_SECONDS:
        return value
    raise AudioError(path, f"utterance {utt_id}: invalid {field} {value:g} in the manifest: it "
                           f"must be a number of seconds from 0 to {MAX_SECONDS:g}; fix the "
                           f'"{field}" of this line', "invalid", field=field, value=value)


class AudioService:
    """Segments, WAVs and signal figures of a dataset's utterances, by id, with an LRU cache."""

    def __init__(self, dataset: "Dataset", cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.dataset = dataset
        self._cache = LRUCache(cache_bytes)
        self._shards = TarShards(getattr(dataset, "tar_shards", ()) or ())
        self.flights = OneAtATime()  # the figures being computed now

    def _tar_row(self, utt_id: int) -> tuple[Any, str] | None:
        """(shard_id, member name) when the utterance's audio is a member of a tar shard."""
        df = self.dataset.utterances
        if not len(self._shards) or "shard_id" not in df:
            return None
        shard_id = df["shard_id"].iat[utt_id]
        if shard_number(shard_id) is None:
            return None
        return shard_id, str(df["audio_filepath"].iat[utt_id])

    # -- rows ------------------------------------------------------------------------------
    def locate(self, utt_id: int) -> tuple[str, float, float | None]:
        """(audio_path, offset, duration or None) of utterance ``utt_id``; UnknownUtterance if none."""
        df = self.dataset.utterances
        n = len(df)
        if not 0 <= utt_id < n:
            raise UnknownUtterance(utt_id, n)
        path = df["audio_path"].iat[utt_id]
        if path is None or (not isinstance(path, str) and _is_na(path)) or str(path) == "":
            raise AudioError("(no audio path)", f"utterance {utt_id} names no audio file",
                             "not_found")
        path = str(path)
        if "\x00" in path:  # no file system names a file so (os.stat raises ValueError, not OSError)
            raise AudioError(path.replace("\x00", "\\x00"), f"utterance {utt_id}: the audio path holds a NUL character "
                             "(\\x00), which no file name can; fix audio_filepath in the manifest", "not_found")
        tar_row = self._tar_row(utt_id)
        if tar_row is not None:
            path = f"{self._shards.tar(tar_row[0])}:{tar_row[1]}"
        offset = _row_time(utt_id, path, "offset", _float(df["offset"].iat[utt_id])) \
            if "offset" in df else 0.0
        if "duration" not in df:
            return path, offset, None
        duration = _row_time(utt_id, path, "duration", _float(df["duration"].iat[utt_id]))
        # Duration 0 reads the whole file from the offset, as NeMo's audio loaders do.
        return path, offset, (duration if duration > 0 else None)

    def channel(self, utt_id: int) -> ChannelSelection:
        """The channels the utterance is on (``audio_channel``: a Lhotse supervision on one
        channel of a multi-channel file, or a MultiCut on several microphones, whose mean is
        played), None to mix them all; by sde.audio's one rule
        (:func:`~sde.audio.io.channel_selection`), so the player, the figure and the measures agree.
        An unusable value is an AudioError (422) naming it and the file."""
        df = self.dataset.utterances
        if "audio_channel" not in df:
            return None
        return channel_selection(df["audio_channel"].iat[utt_id], self.locate(utt_id)[0])

    def audio_input(self, utt_id: int) -> str | AudioInput:
        """What sde.audio reads for the utterance: its local path, a remote file read with byte
        ranges, or its tar member's bytes (read now: one pread or one ranged request)."""
        path = self.locate(utt_id)[0]
        tar_row = self._tar_row(utt_id)
        if tar_row is None:
            return audio_input(path)
        return audio_input(path, tar_row[1], tar_row[0], self._shards)

    def etag(self, utt_id: int, extra: str = "") -> str:
        """Validator of what ``utt_id`` serves now: the row plus the file's size and mtime."""
        path, offset, duration = self.locate(utt_id)
        tar_row = self._tar_row(utt_id)
        if tar_row is not None:
            stamp = self._shards.stamp(tar_row[0])
        elif is_url(path):
            stamp = "remote"  # a request per validation would cost more than it saves
        else:
            try:
                st = os.stat(local_name(path))
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except (OSError, ValueError):  # ValueError: a name the locale cannot encode
                stamp = "missing"
        raw = f"{path}|{offset!r}|{duration!r}|{self.channel(utt_id)!r}|{stamp}|{extra}"
        return hashlib.sha1(raw.encode("utf-8", "surrogateescape")).hexdigest()[:20]

    # -- products --------------------------------------------------------------------------
    def source(self, utt_id: int) -> Segment | SegmentReader:
        """The decoded segment when it fits in memory (cached), else an open
        :class:`SegmentReader` that the caller closes. AudioError if the file cannot give it."""
        key = ("seg", utt_id, self.etag(utt_id))
        hit = self._cache.get(key)
        if isinstance(hit, AudioError):
            raise hit
        if isinstance(hit, Segment):
            return hit
        path, offset, duration = self.locate(utt_id)
        audio: str | AudioInput | None = None
        try:
            audio = self.audio_input(utt_id)
            reader = open_segment(audio, offset, duration, channel=self.channel(utt_id))
            if not reader.fits_in_memory:
                return reader
            with reader:
                seg = reader.segment()
        except AudioError as exc:
            found = _store_failure(exc, audio)
            # Remember what the file is (until it changes): a corrupt file would otherwise cost a
            # decoder subprocess on every request the page makes for it. Not a store's failure to
            # answer: a remote file's validator never changes, so it would stay "failed" for the
            # server's life when the next request would have got it.
            if not store_failed(found.reason, found.path):
                self._cache.put(key, found, 1024)
            if found is exc:
                raise
            raise found from None
        self._cache.put(key, seg, seg.samples.nbytes)
        return seg

    def encoded(self, utt_id: int, fmt: str, segment: Segment) -> tuple[bytes, str]:
        """(``segment`` of ``utt_id`` encoded as ``fmt`` — "wav" or "ogg" —, etag), cached."""
        tag = self.etag(utt_id, fmt)
        key = (fmt, utt_id, tag)
        data = self._cache.get(key)
        if data is None:
            data = _ENCODERS[fmt](segment)
            self._cache.put(key, data, len(data))
        return data, tag

    def display(self, utt_id: int) -> tuple[DisplayData, dict]:
        """(what the figure shows, the segment's facts for the signal payload), cached: a long
        segment is read once for both spectrogram kinds and for the page and the API alike."""
        key = ("display", utt_id, self.etag(utt_id))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        return self.flights.run(key, lambda: self._cache.get(key) or self._display(utt_id, key))

    def _display(self, utt_id: int, key: Hashable) -> tuple[DisplayData, dict]:
        src = self.source(utt_id)
        try:
            data = display_data(src)
        finally:
            if isinstance(src, SegmentReader):
                src.close()
        facts = {"sample_rate": int(src.sample_rate), "channels": int(src.channels),
                 "duration": data.duration, "offset": float(src.offset),
                 "file_duration": _finite_or_none(src.file_duration),
                 "truncated": bool(src.truncated)}
        self._cache.put(key, (data, facts), data.nbytes + 1024)
        return data, facts

    def figure(self, utt_id: int, kind: str = "linear"):
        """The plotly figure of :func:`sde.web.signal_figure.signal_figure` (not cached: it is
        mutable; callers that only need JSON use :meth:`signal_json`)."""
        return signal_figure(self.display(utt_id)[0], kind=kind)

    def signal_json(self, utt_id: int, kind: str = "linear") -> tuple[str, str]:
        """(JSON text of the signal payload, etag)."""
        if kind not in SIGNAL_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SIGNAL_KINDS)}, not {kind!r}")
        tag = self.etag(utt_id, kind)
        key = ("signal", utt_id, tag)
        text = self._cache.get(key)
        if text is None:
            text = self.flights.run(key, lambda: self._cache.get(key) or self._signal_json(utt_id, kind, key))
        return text, tag

    def _signal_json(self, utt_id: int, kind: str, key: Hashable) -> str:
        data, facts = self.display(utt_id)
        # Plotly escapes "/" as \u002f (for <script> embedding); base64 is full of slashes
        # and this is a JSON response, so undo it: ~8 % smaller.
        fig_json = signal_figure(data, kind=kind).to_json().replace("\\u002f", "/")
        head = _json_text({"id": utt_id, "kind": kind, **facts})
        text = head[:-1] + ', "figure": ' + fig_json + "}"
        self._cache.put(key, text, len(text))
        return text


def _store_failure(exc: AudioError, audio: str | AudioInput | None) -> AudioError:
    """``exc``, or the store's failure under it: a read of a remote file that failed under the
    decoder (its frames cut short: "truncated"), or a remote tar member's read that failed before it."""
    if isinstance(audio, AudioInput) and audio.failure is not None and exc.reason not in STORE_REASONS:
        why, reason = audio.explain(audio.failure)
        if store_failed(reason, exc.path):
            return AudioError(exc.path, why, reason)
    if not is_remote_name(exc.path):
        return exc
    why, reason = store_failure(exc.why, exc.reason, exc.__cause__ or exc.__context__)
    return exc if (why, reason) == (exc.why, exc.reason) else AudioError(exc.path, why, reason)


def _float(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):  # pd.NA, None
        return float("nan")


def _is_na(x: Any) -> bool:
    try:
        return bool(x != x)  # NaN / pd.NA-like
    except TypeError:
        return True


def _json_text(payload: dict) -> str:
    return json.dumps(payload, allow_nan=False)


def service_of(dataset: "Dataset") -> AudioService:
    """The AudioService of the current server when it serves `dataset` (shared cache), else a
    service without a cache (scripts, tests)."""
    try:
        service = current_app.extensions.get(EXTENSION_KEY)
    except RuntimeError:  # outside a request (scripts, tests)
        service = None
    if isinstance(service, AudioService) and service.dataset is dataset:
        return service
    return AudioService(dataset, cache_bytes=0)


def signal_for_page(dataset: "Dataset", utt_id: int, kind: str):
    """(figure, None) or (None, why) for the inspector page: the same service, cache and
    bounded-memory reading as ``/api/utterances/ID/signal``."""
    try:
        return service_of(dataset).figure(utt_id, kind), None
    except (AudioError, UnknownUtterance) as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a decoder failure must not break the page
        log.exception("signal figure of utterance %s failed", utt_id)
        return None, f"utterance {utt_id}: {type(exc).__name__}: {exc}"
