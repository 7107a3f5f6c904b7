"""HTTP routes of the signal side: the utterance's audio and its waveform/spectrogram figure.

    GET /audio/<id>.wav                       segment as 16-bit PCM WAV (Range requests, ETag)
    GET /api/utterances/<id>/signal?kind=…    {"id", "kind", "sample_rate", "channels",
                                               "duration", "offset", "file_duration",
                                               "truncated", "figure": plotly figure}

Only manifest rows are served, by integer id: no route takes a path, so nothing outside the
manifest can be read. Errors are JSON ``{"error": "..."}``: unknown id → 404; audio file missing
→ 404; unreadable (permission, empty, corrupt, truncated, offset past the end) → 422; bad
``kind`` → 400; unsatisfiable Range → 416.

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

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from sde.audio import AudioError, Segment, ogg_bytes, read_segment, wav_bytes
from sde.audio_figure import signal_figure

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = ["AudioService", "UnknownUtterance", "register_audio_routes", "EXTENSION_KEY"]

log = logging.getLogger(__name__)

#: ``server.extensions[EXTENSION_KEY]`` is the :class:`AudioService` (pages reuse its cache).
EXTENSION_KEY = "sde_audio"
SIGNAL_KINDS = ("linear", "mel")
_CACHE_CONTROL = "no-cache"
_ENCODERS: dict[str, Callable[[Segment], bytes]] = {"wav": wav_bytes, "ogg": ogg_bytes}
_MIMETYPES = {"wav": "audio/wav", "ogg": "audio/ogg"}


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
        offset = float(df["offset"].iat[utt_id]) if "offset" in df else 0.0
        duration = float(df["duration"].iat[utt_id]) if "duration" in df else float("nan")
        return str(path), (offset if math.isfinite(offset) else 0.0), _finite_or_none(duration)

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
    def segment(self, utt_id: int) -> Segment:
        """The decoded segment (AudioError if the file cannot give it)."""
        key = ("seg", utt_id, self.etag(utt_id))
        seg = self._cache.get(key)
        if seg is None:
            path, offset, duration = self.locate(utt_id)
            try:
                seg = read_segment(path, offset, duration)
            except AudioError as exc:
                # Remember failures too (until the file changes): a corrupt file would otherwise
                # cost a decoder subprocess on every request the page makes for it.
                self._cache.put(key, exc, 1024)
                raise
            self._cache.put(key, seg, seg.samples.nbytes)
        elif isinstance(seg, AudioError):
            raise seg
        return seg

    def wav(self, utt_id: int) -> tuple[bytes, str]:
        """(WAV bytes, etag)."""
        return self.encoded(utt_id, "wav")

    def encoded(self, utt_id: int, fmt: str) -> tuple[bytes, str]:
        """(the segment encoded as ``fmt`` — "wav" or "ogg" —, etag)."""
        tag = self.etag(utt_id, fmt)
        key = (fmt, utt_id, tag)
        data = self._cache.get(key)
        if data is None:
            data = _ENCODERS[fmt](self.segment(utt_id))
            self._cache.put(key, data, len(data))
        return data, tag

    def figure(self, utt_id: int, kind: str = "linear"):
        """The plotly figure of :func:`sde.audio_figure.signal_figure` (not cached: it is
        mutable; callers that only need JSON use :meth:`signal_json`)."""
        return signal_figure(self.segment(utt_id), kind=kind)

    def signal_json(self, utt_id: int, kind: str = "linear") -> tuple[str, str]:
        """(JSON text of the signal payload, etag)."""
        if kind not in SIGNAL_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SIGNAL_KINDS)}, not {kind!r}")
        tag = self.etag(utt_id, kind)
        key = ("signal", utt_id, tag)
        text = self._cache.get(key)
        if text is None:
            seg = self.segment(utt_id)
            # Plotly escapes "/" as \u002f (for <script> embedding); base64 is full of slashes
            # and this is a JSON response, so undo it: ~8 % smaller.
            fig_json = signal_figure(seg, kind=kind).to_json().replace("\\u002f", "/")
            head = _json_text({
                "id": utt_id, "kind": kind, "sample_rate": seg.sample_rate,
                "channels": seg.channels, "duration": seg.duration, "offset": seg.offset,
                "file_duration": _finite_or_none(seg.file_duration), "truncated": seg.truncated,
            })
            text = head[:-1] + ', "figure": ' + fig_json + "}"
            self._cache.put(key, text, len(text))
        return text, tag


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
    return _error(str(exc), status, id=utt_id, reason=exc.reason)


def _guard(utt_id: int, fn: Callable[[], Response]) -> Response:
    try:
        return fn()
    except UnknownUtterance as exc:
        return _error(str(exc), 404, id=utt_id)
    except AudioError as exc:
        return _audio_error(utt_id, exc)


def register_audio_routes(server: Flask, dataset: "Dataset", *,
                          cache_bytes: int = 96 << 20) -> None:
    """Add ``/audio/<id>.wav`` and ``/api/utterances/<id>/signal`` to ``server``.

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
            data, tag = service.encoded(utt_id, fmt)
            resp = Response(data, mimetype=_MIMETYPES[fmt])
            resp.set_etag(tag)
            resp.headers["Cache-Control"] = _CACHE_CONTROL
            resp.headers["Content-Disposition"] = f'inline; filename="utterance-{utt_id}.{fmt}"'
            # RFC 7233: a Range in a unit other than bytes is ignored (200 with the whole body);
            # werkzeug would answer 416, so only byte ranges get the length it needs for 206.
            rng = request.headers.get("Range", "")
            length = len(data) if not rng or rng.strip().lower().startswith("bytes=") else None
            try:
                # 206 + Content-Range for a satisfiable Range (and If-Range), 304 on a match.
                resp.make_conditional(request, accept_ranges=True, complete_length=length)
            except RequestedRangeNotSatisfiable:
                err = _error(f"requested range {request.headers.get('Range', '')!r} is not "
                             f"satisfiable: the WAV is {len(data)} bytes", 416, id=utt_id)
                err.headers["Content-Range"] = f"bytes */{len(data)}"
                err.headers["Accept-Ranges"] = "bytes"
                return err
            return resp

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
