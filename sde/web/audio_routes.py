"""HTTP routes of the signal side: the utterance's audio and its waveform/spectrogram figure.

    GET /audio/<id>.wav                       segment as 16-bit PCM WAV (Range requests, ETag)
    GET /audio/<id>.ogg                       segment as Ogg Vorbis, for the inspector's player
    GET /api/utterances/<id>/signal?kind=…    {"id", "kind", "sample_rate", "channels",
                                               "duration", "offset", "file_duration",
                                               "truncated", "figure": plotly figure}

Only manifest rows are served, by integer id: no route takes a path, so nothing outside the
manifest can be read. Errors are JSON ``{"error": "..."}``: unknown id → 404; audio file missing
→ 404; unreadable (permission, empty, corrupt, truncated, offset past the end) → 422; an
offset or duration no file can satisfy (1e308, negative, NaN, inf) → 422 naming the ``field``
and ``value``; bad ``kind`` → 400; unsatisfiable Range → 416; anything unexpected → a JSON 500
(never Flask's HTML page). A duration of 0 means "to the end of the file", as NeMo reads it.

Memory per request is bounded whatever the segment's length. Segments up to
``IN_MEMORY_MAX_FRAMES`` are decoded whole and cached; longer ones (a 60-minute utterance) are
streamed: the WAV is decoded block by block as it is sent (its length is known, so Range
requests still work), the Ogg is encoded block by block as it is sent (no length, no Range), and
the figure is reduced from one block-wise pass over the file.

Caching: responses carry an ETag built from the row (path, offset, duration) and the file's
size and mtime, with ``Cache-Control: no-cache``: browsers keep the audio but revalidate, which
costs us one ``stat`` and a 304, and a file edited on disk (or a different manifest served on
the same port) is never played stale. Decoded segments, WAVs and figure JSON are kept in a small
in-process LRU (the inspector asks for the audio and the signal of the same utterance at once).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import ClosingIterator, FileWrapper

from sde.audio import (AudioError, DisplayData, MAX_SECONDS, Segment, SegmentReader, WavStream,
                       display_data, ogg_bytes, ogg_stream, open_segment, wav_bytes)
from sde.audio_figure import signal_figure

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = ["AudioService", "EXTENSION_KEY", "PLAYER_OGG_MAX_S", "UnknownUtterance",
           "player_src", "register_audio_routes", "signal_for_page"]

log = logging.getLogger(__name__)

#: ``server.extensions[EXTENSION_KEY]`` is the :class:`AudioService` (pages reuse its cache).
EXTENSION_KEY = "sde_audio"
SIGNAL_KINDS = ("linear", "mel")
_CACHE_CONTROL = "no-cache"
_ENCODERS: dict[str, Callable[[Segment], bytes]] = {"wav": wav_bytes, "ogg": ogg_bytes}
_MIMETYPES = {"wav": "audio/wav", "ogg": "audio/ogg"}
#: Bytes per chunk of a streamed response.
_STREAM_CHUNK = 1 << 17
#: The inspector's player fetches the Ogg (7x smaller) for segments up to this long; longer
#: ones play the WAV, streamed with Range support so the browser can seek anywhere at once (a
#: long Ogg is encoded while it streams: no length, no Range, no seeking ahead).
PLAYER_OGG_MAX_S = 40.0


def player_src(utt_id: int, duration: float | None) -> str:
    """The URL the inspector's audio player plays for an utterance of ``duration`` seconds."""
    short = duration is not None and math.isfinite(duration) and 0 < duration <= PLAYER_OGG_MAX_S
    return f"/audio/{utt_id}.{'ogg' if short else 'wav'}"


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


class _LRU:
    """Thread-safe LRU bounded by an approximate byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        if size > self.max_bytes // 4:  # one huge segment must not flush everything else
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, s) = self._items.popitem(last=False)
                self._bytes -= s


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

    def __init__(self, dataset: "Dataset", cache_bytes: int = 96 << 20) -> None:
        self.dataset = dataset
        self._cache = _LRU(cache_bytes)

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
        offset = _row_time(utt_id, path, "offset", _float(df["offset"].iat[utt_id])) \
            if "offset" in df else 0.0
        if "duration" not in df:
            return path, offset, None
        duration = _row_time(utt_id, path, "duration", _float(df["duration"].iat[utt_id]))
        # Duration 0 reads the whole file from the offset, as NeMo's audio loaders do.
        return path, offset, (duration if duration > 0 else None)

    def etag(self, utt_id: int, extra: str = "") -> str:
        """Validator of what ``utt_id`` serves now: the row plus the file's size and mtime."""
        path, offset, duration = self.locate(utt_id)
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        raw = f"{path}|{offset!r}|{duration!r}|{stamp}|{extra}"
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
        try:
            reader = open_segment(path, offset, duration)
            if not reader.fits_in_memory:
                return reader
            with reader:
                seg = reader.segment()
        except AudioError as exc:
            # Remember failures too (until the file changes): a corrupt file would otherwise
            # cost a decoder subprocess on every request the page makes for it.
            self._cache.put(key, exc, 1024)
            raise
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
        """The plotly figure of :func:`sde.audio_figure.signal_figure` (not cached: it is
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
            data, facts = self.display(utt_id)
            # Plotly escapes "/" as \u002f (for <script> embedding); base64 is full of slashes
            # and this is a JSON response, so undo it: ~8 % smaller.
            fig_json = signal_figure(data, kind=kind).to_json().replace("\\u002f", "/")
            head = _json_text({"id": utt_id, "kind": kind, **facts})
            text = head[:-1] + ', "figure": ' + fig_json + "}"
            self._cache.put(key, text, len(text))
        return text, tag


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


def _error(message: str, status: int, **extra: Any) -> Response:
    resp = jsonify({"error": message, **extra})
    resp.status_code = status
    return resp


def _audio_error(utt_id: int, exc: AudioError) -> Response:
    # A missing file is "not found" for the client too; everything else is a file we found but
    # cannot turn into audio (422: the request was fine, the content is not).
    status = 404 if exc.reason == "not_found" else 422
    log.info("audio for utterance %s unavailable: %s", utt_id, exc)
    extra: dict[str, Any] = {"id": utt_id, "reason": exc.reason}
    if exc.field:
        extra.update(field=exc.field, value=f"{exc.value:g}")  # inf/nan are not JSON numbers
    return _error(str(exc), status, **extra)


def _guard(utt_id: int, fn: Callable[[], Response]) -> Response:
    try:
        return fn()
    except UnknownUtterance as exc:
        return _error(str(exc), 404, id=utt_id)
    except AudioError as exc:
        return _audio_error(utt_id, exc)
    except Exception as exc:  # noqa: BLE001 - a bug here must still answer JSON, not HTML
        log.exception("audio for utterance %s failed", utt_id)
        return _error(f"utterance {utt_id}: unexpected error while reading its audio "
                      f"({type(exc).__name__}: {exc}); see the server log", 500, id=utt_id)


def _service_for(dataset: "Dataset") -> AudioService:
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
        return _service_for(dataset).figure(utt_id, kind), None
    except (AudioError, UnknownUtterance) as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a decoder failure must not break the page
        log.exception("signal figure of utterance %s failed", utt_id)
        return None, f"utterance {utt_id}: {type(exc).__name__}: {exc}"


def _conditional(resp: Response, tag: str, utt_id: int, fmt: str, length: int | None) -> Response:
    """ETag, caching, Range (206/416) and If-None-Match (304) handling of an audio response;
    ``length`` None: no Range support (a streamed Ogg)."""
    resp.set_etag(tag)
    resp.headers["Cache-Control"] = _CACHE_CONTROL
    resp.headers["Content-Disposition"] = f'inline; filename="utterance-{utt_id}.{fmt}"'
    if length is None:
        resp.headers["Accept-Ranges"] = "none"
        return resp.make_conditional(request)
    # RFC 7233: a Range in a unit other than bytes is ignored (200 with the whole body);
    # werkzeug would answer 416, so only byte ranges get the length it needs for 206.
    rng = request.headers.get("Range", "")
    complete = length if not rng or rng.strip().lower().startswith("bytes=") else None
    try:
        # 206 + Content-Range for a satisfiable Range (and If-Range), 304 on a match.
        return resp.make_conditional(request, accept_ranges=True, complete_length=complete)
    except RequestedRangeNotSatisfiable:
        resp.close()
        err = _error(f"requested range {rng!r} is not satisfiable: the {fmt.upper()} is "
                     f"{length} bytes", 416, id=utt_id)
        err.headers["Content-Range"] = f"bytes */{length}"
        err.headers["Accept-Ranges"] = "bytes"
        return err


def _streamed(reader: SegmentReader, fmt: str) -> tuple[Response, int | None]:
    """A response that decodes (WAV) or encodes (Ogg) the segment block by block as it is sent;
    the reader is closed when the response is (also when the client goes away)."""
    if fmt == "wav":
        stream = WavStream(reader)
        resp = Response(FileWrapper(stream, _STREAM_CHUNK), mimetype=_MIMETYPES[fmt],
                        direct_passthrough=True)
        resp.content_length = stream.size
        return resp, stream.size
    body = ClosingIterator(ogg_stream(reader), [reader.close])
    return Response(body, mimetype=_MIMETYPES[fmt], direct_passthrough=True), None


def register_audio_routes(server: Flask, dataset: "Dataset", *,
                          cache_bytes: int = 96 << 20) -> None:
    """Add ``/audio/<id>.wav``, ``/audio/<id>.ogg`` and ``/api/utterances/<id>/signal`` to
    ``server``.

    The :class:`AudioService` behind them is ``server.extensions[EXTENSION_KEY]``;
    ``cache_bytes=0`` disables its cache (benchmarks)."""
    service = AudioService(dataset, cache_bytes=cache_bytes)
    server.extensions[EXTENSION_KEY] = service

    def audio_view(utt_id: int, fmt: str = "wav") -> Response:
        def run() -> Response:
            tag = service.etag(utt_id, fmt)
            if tag in request.if_none_match:
                # Revalidation: answer before decoding anything.
                resp = Response(status=304)
                resp.set_etag(tag)
                resp.headers["Cache-Control"] = _CACHE_CONTROL
                return resp
            src = service.source(utt_id)
            if isinstance(src, SegmentReader):
                try:
                    resp, length = _streamed(src, fmt)
                    return _conditional(resp, tag, utt_id, fmt, length)
                except BaseException:
                    src.close()  # the response will never be sent: release the file now
                    raise
            data, tag = service.encoded(utt_id, fmt, src)
            return _conditional(Response(data, mimetype=_MIMETYPES[fmt]), tag, utt_id, fmt,
                                len(data))

        return _guard(utt_id, run)

    def signal_view(utt_id: int) -> Response:
        kind = request.args.get("kind", "linear")
        if kind not in SIGNAL_KINDS:
            return _error(f"kind must be one of {', '.join(SIGNAL_KINDS)}, not {kind!r}", 400)

        def run() -> Response:
            text, tag = service.signal_json(utt_id, kind)
            resp = Response(text, mimetype="application/json")
            resp.set_etag(tag)
            resp.headers["Cache-Control"] = _CACHE_CONTROL
            return resp.make_conditional(request)

        return _guard(utt_id, run)

    server.add_url_rule("/audio/<int:utt_id>.wav", "sde_audio_wav", audio_view)
    server.add_url_rule("/audio/<int:utt_id>.ogg", "sde_audio_ogg", lambda utt_id: audio_view(utt_id, "ogg"))
    server.add_url_rule("/api/utterances/<int:utt_id>/signal", "sde_audio_signal", signal_view)

    @server.before_request
    def _audio_by_id_only() -> Response | None:
        # Any other /audio/... path (negative ids, "../", "//etc/passwd") would otherwise fall
        # through to Dash's catch-all page route and answer 200 with the app shell.
        if request.path.startswith("/audio/") and request.endpoint not in ("sde_audio_wav", "sde_audio_ogg"):
            return _error(f"no audio at {request.path}: audio is served by utterance id only, as "
                          "/audio/ID.wav or /audio/ID.ogg (ID from /api/utterances)", 404)
        return None
