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
A parameter a route does not take answers 400 too, naming it, the route, the ones it takes and the
closest (`fliter=x` on /api/utterances: "did you mean filter?"), or a typo would quietly answer
for every row; each route declares its parameters beside it in `ROUTES` (`_`, a cache buster, is
taken everywhere; a CSV twin takes its JSON's `page` and `page_size` and ignores them: it has every
row). A method a route does not take is a JSON 405 naming the ones it does. /api/problems pages
like the tables:
`{"total", "page", "page_size", "rows"}` plus the counts `total_lines`, `loaded`, `skipped`, and
`problems` (the same rows as `rows`, the field's name before paging).
"""

from __future__ import annotations

import difflib
import re
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

__all__ = ["CACHE_BUSTER", "MAX_PAGE", "MAX_PAGE_SIZE", "ROUTES", "register_api"]

TABLES = Blueprint("sde_tables", __name__)
ANALYSIS = Blueprint("sde_analysis", __name__)
AUDIO = Blueprint("sde_audio", __name__)
CURATION = Blueprint("sde_curation", __name__)
QUALITY = Blueprint("sde_quality", __name__)

# A cache buster (jQuery's `cache: false` adds `_=TIMESTAMP`): taken by every route, read by none.
CACHE_BUSTER = "_"
#: The query parameters of each endpoint ("sde_tables.utterances"), from ROUTES; endpoints not here
#: (the catch-all of unknown /api paths) take any.
_PARAMETERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}   # (params, ignores)
_SHOWN = 5  # unknown parameters named in a message (a script's 100 stray ones need not all be echoed)


def _only_known_parameters() -> None:
    """ApiError 400 naming the parameters the route does not take: a typo (`fliter=`, `page_sise=`)
    was ignored, and the answer looked right while it held every row, unfiltered."""
    declared = _PARAMETERS.get(request.endpoint or "")
    if declared is None:
        return
    takes, ignores = declared
    unknown = [name for name in request.args if name not in takes and name not in ignores and name != CACHE_BUSTER]
    if not unknown:
        return
    route = re.sub(r"<[^>]*>", "ID", request.url_rule.rule) if request.url_rule is not None else request.path
    guesses = [_closest(name, takes + ignores) for name in unknown[:_SHOWN]]
    named = " and ".join(repr(name if len(name) <= 80 else name[:80] + "…") + (f" (did you mean {guess}?)" if guess else "")
                         for name, guess in zip(unknown, guesses))
    more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
    listed = f"takes {', '.join(takes)}" if takes else "takes no parameters"
    if ignores:
        listed += f" (and {', '.join(ignores)}, which it ignores: it has every row)"
    raise ApiError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {named}{more} on {request.path}: "
                   f"{'it' if route == request.path else route} {listed}; see docs/api.md",
                   fields={"parameter": unknown[0], "unknown": unknown[:_SHOWN], "route": route,
                           "parameters": list(takes), "ignored": list(ignores), "suggestion": guesses[0]})


def _closest(name: str, takes: tuple[str, ...]) -> str | None:
    # lower-cased: `Filter=` and `PAGE=` are typos too; `-`/`_` alike (page-size)
    wanted = name.lower().replace("-", "_")
    if wanted in takes:
        return wanted
    found = difflib.get_close_matches(wanted, takes, n=1, cutoff=0.6)
    return found[0] if found else None


# A blueprint's handlers are looked up before the app's, each for the whole class hierarchy: the
# ApiError handler is here too, or the catch-all would answer every ApiError. A QueryError reaching
# the handlers (DuckDB over --memory-limit in /api/errors' or /api/suspicious' counting) is a 400
# like any refused query, not a 500.
for _blueprint in (TABLES, ANALYSIS, AUDIO, CURATION, QUALITY):
    _blueprint.before_request(check_query_string)  # first: a non-word name or a repeat has its own message
    _blueprint.before_request(_only_known_parameters)
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
    #: The query parameters `view` reads; any other answers 400. None: any (the catch-all). Kept
    #: equal to what the code reads by tests/test_api_unknown_parameters.py.
    params: tuple[str, ...] | None = ()
    #: Taken but not read: a CSV twin's paging (a paged JSON URL with .csv added still answers, with
    #: every row, as the CSV always has).
    ignores: tuple[str, ...] = ()


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


# Parameters several routes take. `error` and `hyp` of the utterances' routes are the Errors page's
# `error=sub:REF:HYP&hyp=F`, folded into the filter (sde.web.present.requested_filter).
_PAGED = ("page", "page_size")
_VIEW = ("filter", "sort")
_ERROR = ("error", "hyp")
_AUGMENT = ("speed", "stretch", "noise", "snr", "rir", "rt60", "seed")

ROUTES: tuple[Route, ...] = (
    Route(TABLES, "/api/summary", tables.summary, params=("normalize",)),
    Route(TABLES, "/api/utterances", tables.utterances, params=(*_VIEW, *_PAGED, *_ERROR)),
    Route(TABLES, "/api/utterances.csv", tables.utterances_csv, params=(*_VIEW, *_ERROR), ignores=_PAGED),
    Route(TABLES, "/api/utterances/<uid>", tables.utterance),
    Route(TABLES, "/api/vocabulary", tables.vocabulary, params=(*_VIEW, *_PAGED)),
    Route(TABLES, "/api/vocabulary.csv", tables.vocabulary_csv, params=_VIEW, ignores=_PAGED),
    Route(TABLES, "/api/problems", quality.problems, params=_PAGED),
    Route(TABLES, "/api/audio-quality", tables.audio_quality),
    # Less specific than every route above: only unknown /api paths land here (404, whatever they ask).
    Route(TABLES, "/api/<path:path>", api_not_found, params=None),
    Route(ANALYSIS, "/api/errors", analysis.errors, params=("hyp", "filter", "limit")),
    Route(ANALYSIS, "/api/errors.csv", analysis.errors_csv, params=("kind", "hyp", "filter", "limit")),
    Route(ANALYSIS, "/api/breakdown", analysis.breakdown,
          params=("by", "hyp", "filter", "sort", *_PAGED, "min_words", "min_utterances", "ci", "n_resamples",
                  "seed")),
    Route(ANALYSIS, "/api/breakdown.csv", analysis.breakdown_csv,
          params=("by", "hyp", "filter", "sort", "min_words", "min_utterances"), ignores=_PAGED),
    Route(ANALYSIS, "/api/compare", analysis.compare, params=("a", "b", "filter", "n_resamples", "seed")),
    Route(ANALYSIS, "/api/compare.csv", analysis.compare_csv, params=("a", "b", "filter", "n_resamples", "seed")),
    Route(ANALYSIS, "/api/compare/words", analysis.compare_words_json, params=("a", "b", "filter", "limit")),
    Route(ANALYSIS, "/api/compare/words.csv", analysis.compare_words_csv, params=("a", "b", "filter", "limit")),
    Route(AUDIO, "/audio/<digits:utt_id>.wav", audio.wav),
    Route(AUDIO, "/audio/<digits:utt_id>.ogg", audio.ogg),
    Route(AUDIO, "/api/utterances/<digits:utt_id>/signal", audio.signal, params=("kind",)),
    Route(CURATION, "/api/utterances.jsonl", curation.utterances_jsonl, params=(*_VIEW, *_ERROR, "drop", "removed")),
    Route(CURATION, "/api/utterances/<uid>/review", curation.review, ("GET", "POST")),
    Route(CURATION, "/api/utterances/<uid>/review/undo", curation.review_undo, ("POST",)),
    Route(CURATION, "/api/reviews", curation.reviews, params=(*_VIEW, *_PAGED)),
    Route(CURATION, "/api/rules/preview", curation.rules_preview, ("POST",), params=("filter",)),
    Route(QUALITY, "/api/tts", quality.tts, params=("lang", "speaker", "limit", "page", "counts")),
    Route(QUALITY, "/api/duplicates", quality.duplicates, params=("kind", *_PAGED)),
    Route(QUALITY, "/api/suspicious", quality.suspicious),
    Route(QUALITY, "/api/utterances/<digits:utt_id>/augment", quality.augment, params=_AUGMENT),
    Route(QUALITY, "/api/utterances/<digits:utt_id>/augment/config", quality.augment_config, params=_AUGMENT),
)

for _route in ROUTES:
    _route.blueprint.add_url_rule(_route.rule, _route.view.__name__, _route.view, methods=list(_route.methods))
    if _route.params is not None:
        _PARAMETERS[f"{_route.blueprint.name}.{_route.view.__name__}"] = (_route.params, _route.ignores)

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
