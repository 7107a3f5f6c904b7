"""The JSON/CSV API and the audio routes: every page has a JSON twin, served by the same Flask
server as the UI. Every route of sde is in `ROUTES` below (Datasette style): three Flask
blueprints, one per module, and one error handler.

    page                       JSON twin                                     CSV
    /  and /statistics         GET /api/summary[?normalize=lower,punct]
    /samples?filter&sort       GET /api/utterances?filter=Q&sort=S&page=P&page_size=N
                                                                             GET /api/utterances.csv?filter=Q&sort=S
    /utterance/ID              GET /api/utterances/ID   (the row + word alignment per hypothesis)
    /vocabulary?filter&sort    GET /api/vocabulary?filter=Q&sort=S&page=P&page_size=N
                                                                             GET /api/vocabulary.csv?filter=Q&sort=S
    /problems?page=P           GET /api/problems?page=P&page_size=N
    (Statistics card)          GET /api/audio-quality
    /errors                    GET /api/errors, /api/breakdown               GET /api/errors.csv, /api/breakdown.csv
    /comparison                GET /api/compare, /api/compare/words          GET /api/compare.csv, /api/compare/words.csv
    (audio)                    GET /audio/ID.wav, /audio/ID.ogg, /api/utterances/ID/signal
    (curation)                 GET|POST /api/utterances/ID/review, POST …/review/undo, GET /api/reviews,
                               GET /api/utterances.jsonl?filter=Q&sort=S, POST /api/rules/preview

Details of each are in sde.web.api.tables, .analysis and .audio. A mistake in a request is an
ApiError (sde.web.present), answered by the one handler as JSON `{"error": message}` with its
status: 400 for a bad filter/sort/page/parameter, 404 for an unknown id or route, and the audio
statuses of sde.web.api.audio.

Every request is bounded (sde.query's limits, and its queries run MAX_REQUEST_SECONDS at most all
together: sde.filters.engine.request_budget): a `page_size` over MAX_PAGE_SIZE, a `page` that is
not a whole number in 0..MAX_PAGE, a filter over 10,000 characters or 16 clauses and a sort over 8
distinct columns answer 400 with the limit in the message (never clamped silently: a script asking
for 5,000 rows must learn it got fewer). So does a parameter given twice (`filter=A&filter=B`: one
user means A and B, another A or B, and using the first answered a question nobody asked; join
them in one filter instead), and a parameter name that is the rest of a filter whose `&&` was not
URL-encoded (`filter={wer}>10&&{cer}>5` reaches the server as `filter={wer}>10` and `{cer}>5`).
A method a route does not take is a JSON 405 naming the ones it does. /api/problems pages like the tables:
`{"total", "page", "page_size", "rows"}` plus the counts `total_lines`, `loaded`, `skipped`, and
`problems` (the same rows as `rows`, the field's name before paging).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

from flask import Blueprint, Flask, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import IntegerConverter

from sde.filters.engine import end_request_budget, request_budget
from sde.query import MAX_PAGE_SIZE, QueryError
from sde.web.api import analysis, audio, curation, quality, tables
from sde.web.api.respond import (DATASET_KEY, MAX_PAGE, check_query_string, error_response, query_error_response,
                                 unexpected_response)
from sde.web.audio_service import DEFAULT_CACHE_BYTES, EXTENSION_KEY, AudioService
from sde.web.present import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = ["MAX_PAGE", "MAX_PAGE_SIZE", "ROUTES", "register_api"]

TABLES = Blueprint("sde_tables", __name__)
ANALYSIS = Blueprint("sde_analysis", __name__)
AUDIO = Blueprint("sde_audio", __name__)
CURATION = Blueprint("sde_curation", __name__)
QUALITY = Blueprint("sde_quality", __name__)
# A blueprint's handlers are looked up before the app's, each for the whole class hierarchy: the
# ApiError handler is here too, or the catch-all would answer every ApiError. A QueryError reaching
# the handlers (DuckDB over --memory-limit in /api/errors' or /api/suspicious' counting) is a 400
# like any refused query, not a 500.
for _blueprint in (TABLES, ANALYSIS, AUDIO, CURATION, QUALITY):
    _blueprint.before_request(check_query_string)
    _blueprint.register_error_handler(ApiError, error_response)
    _blueprint.register_error_handler(QueryError, query_error_response)
    _blueprint.register_error_handler(Exception, unexpected_response)


class DigitsConverter(IntegerConverter):
    """An utterance id in a path: ASCII digits only. Werkzeug's int takes any Unicode digit, so
    /audio/٣.wav served utterance 3 where /api/utterances/٣ answered 404 (utterance_position)."""

    regex = r"[0-9]+"


class Route(NamedTuple):
    blueprint: Blueprint
    rule: str
    view: Callable
    methods: tuple[str, ...] = ("GET",)


def _no_route(path: str) -> ApiError:
    return ApiError(f"no API route /api/{path}; see /api/summary, /api/utterances, /api/vocabulary, /api/problems, "
                    "/api/audio-quality, /api/errors, /api/breakdown, /api/compare", 404)


def api_not_found(path: str):
    # GET of a POST-only route (…/review/undo) lands here, the rule that takes any GET under /api/
    try:
        endpoint = current_app.create_url_adapter(request).match(method="POST")[0]
    except HTTPException:
        endpoint = None
    if endpoint is not None and endpoint != request.endpoint:
        raise ApiError(f"{request.method} is not allowed on {request.path}; use POST", 405, headers={"Allow": "POST"})
    raise _no_route(path)


ROUTES: tuple[Route, ...] = (
    Route(TABLES, "/api/summary", tables.summary),
    Route(TABLES, "/api/utterances", tables.utterances),
    Route(TABLES, "/api/utterances.csv", tables.utterances_csv),
    Route(TABLES, "/api/utterances/<uid>", tables.utterance),
    Route(TABLES, "/api/vocabulary", tables.vocabulary),
    Route(TABLES, "/api/vocabulary.csv", tables.vocabulary_csv),
    Route(TABLES, "/api/problems", tables.problems),
    Route(TABLES, "/api/audio-quality", tables.audio_quality),
    # Less specific than every route above: only unknown /api paths land here.
    Route(TABLES, "/api/<path:path>", api_not_found),
    Route(ANALYSIS, "/api/errors", analysis.errors),
    Route(ANALYSIS, "/api/errors.csv", analysis.errors_csv),
    Route(ANALYSIS, "/api/breakdown", analysis.breakdown),
    Route(ANALYSIS, "/api/breakdown.csv", analysis.breakdown_csv),
    Route(ANALYSIS, "/api/compare", analysis.compare),
    Route(ANALYSIS, "/api/compare.csv", analysis.compare_csv),
    Route(ANALYSIS, "/api/compare/words", analysis.compare_words_json),
    Route(ANALYSIS, "/api/compare/words.csv", analysis.compare_words_csv),
    Route(AUDIO, "/audio/<digits:utt_id>.wav", audio.wav),
    Route(AUDIO, "/audio/<digits:utt_id>.ogg", audio.ogg),
    Route(AUDIO, "/api/utterances/<digits:utt_id>/signal", audio.signal),
    Route(CURATION, "/api/utterances.jsonl", curation.utterances_jsonl),
    Route(CURATION, "/api/utterances/<uid>/review", curation.review, ("GET", "POST")),
    Route(CURATION, "/api/utterances/<uid>/review/undo", curation.review_undo, ("POST",)),
    Route(CURATION, "/api/reviews", curation.reviews),
    Route(CURATION, "/api/rules/preview", curation.rules_preview, ("POST",)),
    Route(QUALITY, "/api/tts", quality.tts),
    Route(QUALITY, "/api/duplicates", quality.duplicates),
    Route(QUALITY, "/api/suspicious", quality.suspicious),
    Route(QUALITY, "/api/utterances/<digits:utt_id>/augment", quality.augment),
    Route(QUALITY, "/api/utterances/<digits:utt_id>/augment/config", quality.augment_config),
)

for _route in ROUTES:
    _route.blueprint.add_url_rule(_route.rule, _route.view.__name__, _route.view, methods=list(_route.methods))

_AUDIO_FILES = {f"{AUDIO.name}.{r.view.__name__}" for r in ROUTES if r.rule.startswith("/audio/")}


def _audio_by_id_only() -> None:
    # Any other /audio/... path (negative ids, "../", "//etc/passwd") would otherwise fall
    # through to Dash's catch-all page route and answer 200 with the app shell.
    if isinstance(request.routing_exception, MethodNotAllowed):  # an audio route, another method: 405
        return
    if request.path.startswith("/audio/") and request.endpoint not in _AUDIO_FILES:
        raise ApiError(f"no audio at {request.path}: audio is served by utterance id only, as "
                       "/audio/ID.wav or /audio/ID.ogg (ID from /api/utterances)", 404)


def _method_not_allowed(e: MethodNotAllowed):
    # Raised while routing, before any blueprint owns the request: only an app-level handler sees it,
    # and Flask's answer is an HTML page a script reading /api/... cannot parse.
    if not request.path.startswith(("/api/", "/audio/")):
        return e
    try:
        endpoint = current_app.create_url_adapter(request).match(method="GET")[0]
    except HTTPException:
        endpoint = None
    if endpoint == f"{TABLES.name}.{api_not_found.__name__}":  # no route, whatever the method
        return error_response(_no_route(request.path[len("/api/"):]))
    allowed = sorted(set(e.valid_methods or ()) - {"HEAD", "OPTIONS"})
    return error_response(ApiError(f"{request.method} is not allowed on {request.path}; use "
                                   f"{' or '.join(allowed) or 'GET'}", 405,
                                   headers={"Allow": ", ".join(e.valid_methods or ())}))


def _start_query_budget() -> None:
    # Every request, the pages' callbacks included: its queries run MAX_REQUEST_SECONDS at most
    # together (a streamed CSV's rows, sent after the request's teardown, are not queries).
    g.sde_query_budget = request_budget()


def _end_query_budget(_exc: BaseException | None) -> None:
    token = g.pop("sde_query_budget", None)
    if token is not None:
        try:
            end_request_budget(token)
        except ValueError:  # set in another context (a server that runs requests so): nothing to lift here
            pass


def register_api(server: Flask, dataset: "Dataset", *, audio_routes: bool = True,
                 audio_cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
    """Serve `dataset` on `server` (the Dash app's Flask server): the routes of `ROUTES` (the audio
    ones only with `audio_routes`) and the ApiError handler. The AudioService behind the audio
    routes is ``server.extensions[EXTENSION_KEY]``; ``audio_cache_bytes=0`` disables its cache."""
    server.extensions[DATASET_KEY] = dataset
    server.url_map.converters["digits"] = DigitsConverter
    server.before_request(_start_query_budget)
    server.teardown_request(_end_query_budget)
    server.register_error_handler(ApiError, error_response)
    server.register_error_handler(MethodNotAllowed, _method_not_allowed)
    server.register_blueprint(TABLES)
    server.register_blueprint(ANALYSIS)
    server.register_blueprint(CURATION)
    server.register_blueprint(QUALITY)
    quality.install(server)  # text-derived quality columns, computed when a request names one
    if audio_routes:
        server.extensions[EXTENSION_KEY] = AudioService(dataset, cache_bytes=audio_cache_bytes)
        server.register_blueprint(AUDIO)
        server.before_request(_audio_by_id_only)
