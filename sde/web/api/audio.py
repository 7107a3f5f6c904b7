"""HTTP routes of the signal side: the utterance's audio and its waveform/spectrogram figure
(listed in sde.web.api; the work is sde.web.audio_service's).

    GET /audio/<id>.wav                       segment as 16-bit PCM WAV (Range requests, ETag)
    GET /audio/<id>.ogg                       segment as Ogg Vorbis, for the inspector's player
    GET /api/utterances/<id>/signal?kind=…    {"id", "kind", "sample_rate", "channels",
                                               "duration", "offset", "file_duration",
                                               "truncated", "figure": plotly figure}

Only manifest rows are served, by integer id: no route takes a path, so nothing outside the
manifest can be read. Errors are JSON ``{"error": "..."}``: unknown id → 404; audio file missing
→ 404; unreadable (permission, empty, corrupt, truncated, offset past the end) → 422; an
offset or duration no file can satisfy (1e308, negative, NaN, inf) → 422 naming the ``field``
and ``value``; bad ``kind`` → 400; a well-formed but unsatisfiable Range → 416 (a malformed
one is ignored: 200 with the whole body); anything unexpected → a JSON 500 (never Flask's HTML
page). A duration of 0 means "to the end of the file", as NeMo reads it.

Memory per request is bounded whatever the segment's length: segments that fit in memory are
decoded whole and cached; longer ones (a 60-minute utterance) are streamed: the WAV is decoded
block by block as it is sent (its length is known, so Range requests still work), the Ogg is
encoded block by block as it is sent (no length, no Range).

Caching: responses carry an ETag built from the row (path, offset, duration) and the file's
size and mtime, with ``Cache-Control: no-cache``: browsers keep the audio but revalidate, which
costs us one ``stat`` and a 304, and a file edited on disk (or a different manifest served on
the same port) is never played stale.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import parse_range_header
from werkzeug.wsgi import ClosingIterator, FileWrapper

from sde.audio import AudioError, SegmentReader, WavStream, ogg_stream
from sde.web.audio_service import EXTENSION_KEY, SIGNAL_KINDS, AudioService, UnknownUtterance, http_status
from sde.web.present import ApiError

log = logging.getLogger(__name__)

_CACHE_CONTROL = "no-cache"
_MIMETYPES = {"wav": "audio/wav", "ogg": "audio/ogg"}
#: Bytes per chunk of a streamed response.
_STREAM_CHUNK = 1 << 17


def _service() -> AudioService:
    return current_app.extensions[EXTENSION_KEY]


def _audio_error(utt_id: int, exc: AudioError) -> ApiError:
    status = http_status(exc)
    log.info("audio for utterance %s unavailable: %s", utt_id, exc)
    fields: dict[str, Any] = {"id": utt_id, "reason": exc.reason}
    if exc.field and isinstance(exc.value, (int, float)):
        fields.update(field=exc.field, value=f"{exc.value:g}")  # inf/nan are not JSON numbers
    return ApiError(str(exc), status, fields=fields)


def _answer(utt_id: int, make: Callable[[], Response]) -> Response:
    """`make()`, with every failure as an ApiError naming the utterance (a bug here must still
    answer JSON, not HTML)."""
    try:
        return make()
    except UnknownUtterance as exc:
        raise ApiError(str(exc), 404, fields={"id": utt_id}) from None
    except AudioError as exc:
        raise _audio_error(utt_id, exc) from None
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001
        log.exception("audio for utterance %s failed", utt_id)
        raise ApiError(f"utterance {utt_id}: unexpected error while reading its audio "
                       f"({type(exc).__name__}: {exc}); see the server log", 500, fields={"id": utt_id}) from None


_ZERO_SUFFIX = re.compile(r"\s*bytes\s*=\s*-0+\s*", re.IGNORECASE)


def _conditional(resp: Response, tag: str, utt_id: int, fmt: str, length: int | None) -> Response:
    """ETag, caching, Range (206/416) and If-None-Match (304) handling of an audio response;
    ``length`` None: no Range support (a streamed Ogg)."""
    resp.set_etag(tag)
    resp.headers["Cache-Control"] = _CACHE_CONTROL
    resp.headers["Content-Disposition"] = f'inline; filename="utterance-{utt_id}.{fmt}"'
    if length is None:
        resp.headers["Accept-Ranges"] = "none"
        return resp.make_conditional(request)
    # RFC 9110 §14.2: a Range the server does not understand (another unit, a malformed or
    # invalid range-spec such as "bytes=abc" or "bytes=9-1", several ranges, which we do not
    # serve as multipart) is ignored: 200 with the whole body. werkzeug answers 416 to all of
    # them, so only one well-formed byte range gets the length it needs to answer 206 or 416.
    rng = request.headers.get("Range", "")
    parsed = parse_range_header(rng) if rng else None
    one_byte_range = parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1
    complete = length if one_byte_range else None
    try:
        # werkzeug reads the suffix range "bytes=-0" as malformed, but it is well formed and asks
        # for no bytes, which no body can satisfy (RFC 9110 §14.1.2): 416, not the whole file.
        if parsed is None and _ZERO_SUFFIX.fullmatch(rng) and "If-Range" not in request.headers:
            raise RequestedRangeNotSatisfiable(length)
        environ = request.environ
        suffix = parsed.ranges[0] if one_byte_range else None
        if suffix is not None and suffix[0] < 0 and suffix[1] is None and -suffix[0] > length:
            # a suffix longer than the body asks for all of it (RFC 9110 §14.1.2); werkzeug answers 416
            environ = {**environ, "HTTP_RANGE": "bytes=0-"}
        # 206 + Content-Range for a satisfiable Range (and If-Range), 304 on a match.
        return resp.make_conditional(environ, accept_ranges=True, complete_length=complete)
    except RequestedRangeNotSatisfiable:
        resp.close()
        raise ApiError(f"requested range {rng!r} is not satisfiable: the {fmt.upper()} is {length} bytes", 416,
                       fields={"id": utt_id},
                       headers={"Content-Range": f"bytes */{length}", "Accept-Ranges": "bytes"}) from None


def _streamed(reader: SegmentReader, fmt: str) -> tuple[Response, int | None]:
    """A response that decodes (WAV) or encodes (Ogg) the segment block by block as it is sent;
    the reader is closed when the response is (also when the client goes away)."""
    if fmt == "wav":
        stream = WavStream(reader)
        resp = Response(FileWrapper(stream, _STREAM_CHUNK), mimetype=_MIMETYPES[fmt], direct_passthrough=True)
        resp.content_length = stream.size
        return resp, stream.size
    body = ClosingIterator(ogg_stream(reader), [reader.close])
    return Response(body, mimetype=_MIMETYPES[fmt], direct_passthrough=True), None


def _audio(utt_id: int, fmt: str) -> Response:
    def make() -> Response:
        service = _service()
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
        return _conditional(Response(data, mimetype=_MIMETYPES[fmt]), tag, utt_id, fmt, len(data))

    return _answer(utt_id, make)


def wav(utt_id: int) -> Response:
    return _audio(utt_id, "wav")


def ogg(utt_id: int) -> Response:
    return _audio(utt_id, "ogg")


def signal(utt_id: int) -> Response:
    kind = request.args.get("kind", "linear")
    if kind not in SIGNAL_KINDS:
        raise ApiError(f"kind must be one of {', '.join(SIGNAL_KINDS)}, not {kind!r}", 400)

    def make() -> Response:
        text, tag = _service().signal_json(utt_id, kind)
        resp = Response(text, mimetype="application/json")
        resp.set_etag(tag)
        resp.headers["Cache-Control"] = _CACHE_CONTROL
        return resp.make_conditional(request)

    return _answer(utt_id, make)
