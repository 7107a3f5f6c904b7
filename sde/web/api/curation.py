"""The curation routes: reviews, the manifest export and the drop-rules preview (listed in
sde.web.api's ROUTES; the work is done by the HTTP twins of sde.reviews, sde.export and sde.rules).

    GET  /api/utterances/ID/review          the review of one utterance: {"status", "text", "note", "tags",
                                            "user", "time", "version", "editable", ...}; status null and
                                            version 0 when it has none
    POST /api/utterances/ID/review          {"status": "keep"|"drop"|"fix", "text"?, "note"?, "tags"?,
                                            "version"?} → 200 the stored review with its new version;
                                            409 {"error", "stored", "attempted"} when `version` is not the
                                            stored one (someone saved since): nothing is overwritten
    POST /api/utterances/ID/review/undo     {"version"?} → the state before the last change, as a new version
    GET  /api/reviews?filter=Q&sort=S&page=P&page_size=N
                                            the reviewed utterances the filter selects, and "summary":
                                            counts and hours per status
    GET  /api/utterances.jsonl?filter=Q&sort=S   (also error=…&hyp=F like /api/utterances)
                                            the selected lines of the user's manifest, byte for byte,
                                            streamed, in manifest order unless sorted; `drop=F`
                                            (repeatable): without what drop rule F matches, as
                                            `sde export --rules` (`removed=1`: only those lines)
    POST /api/rules/preview                 {"rules": [{"name", "filter"}...]} or {"yaml": TEXT}, and
                                            "filter"? (the view) → what each rule removes, and the union

An edit is acknowledged (200 with its version) only once it is committed to the SQLite file, so
a crash never loses an edit the client saw saved. Bodies larger than MAX_REQUEST_BYTES are refused
(413) before they are read; a server started with --read-only, or whose reviews file could not be
opened, answers 403 to edits, saying why. With --auth each edit records the signed-in user. The
two edits and the rules preview take only `Content-Type: application/json` (415 otherwise), which
another web site's page cannot send without the browser asking this server first (sde.web.sites
refuses the rest).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np
from flask import Response, request

from sde.cut_lines import has_shared_lines, selected_cut_lines
from sde.export import (ExportError, LineStream, manifest_download_name, manifest_lines, plan_export,
                        utterances_jsonl_route)
from sde.lines import in_chunks
from sde.reviews import (
    MAX_REQUEST_BYTES,
    review_get_route,
    review_post_route,
    review_summary,
    review_undo_route,
    reviews_list_route,
)
from sde.rules import MAX_RULES, Rule, RulesError, rules_preview_route
from sde.web import reviewing
from sde.web.api.respond import attachment, flag_arg, json_response, safe_name, served_dataset
from sde.web.present import ApiError, requested_filter

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.reviews import ReviewStore

_MAX_JSON_DEPTH = 20   # a review or a rules list is a few levels deep; deeper is not one


REVIEW_EXAMPLE = '{"status": "drop", "version": 0}'
RULES_EXAMPLE = '{"rules": [{"name": "short", "filter": "{duration} < 1"}]}'


def request_body(example: str = REVIEW_EXAMPLE) -> Any:
    """The request's JSON body, read only when it is at most MAX_REQUEST_BYTES (413 otherwise);
    `example` is the body this route takes, for the message when it is not JSON."""
    limit = MAX_REQUEST_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(f"the request body is {request.content_length:,} bytes; at most {limit:,} "
                       "(a review's text, note and tags, or a rules file)", 413)
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(f"the request body is larger than {limit:,} bytes", 413)
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(f"the request body is not UTF-8 (byte {e.start + 1}); send JSON") from None
    if _nesting(text) > _MAX_JSON_DEPTH:
        raise ApiError(f"the JSON body is nested more than {_MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text)
    except ValueError as e:
        raise ApiError(f"the request body is not valid JSON ({e}); send e.g. {example}") from None


def _nesting(text: str) -> int:
    """An upper bound of the JSON's nesting (brackets in strings count too: a bound, cheaply)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def require_json_type(what: str = "a review") -> None:
    """415 unless the request says its body is JSON: a web page can send a form or a no-cors fetch
    (text/plain) to another site without asking it first, never application/json. `what` is what
    the body is, for the message."""
    if request.mimetype != "application/json":
        given = f"Content-Type {request.content_type!r}" if request.content_type else "no Content-Type"
        raise ApiError(f"the request has {given}; {what} is sent as JSON: set the header Content-Type: "
                       "application/json (curl: -H 'Content-Type: application/json'; Python requests: "
                       "json=BODY)", 415)


def _answer(status_payload: tuple[int, Any]) -> Response:
    status, payload = status_payload
    if status == 403 and not reviewing.current().editable:
        payload = {**payload, "error": reviewing.current().why_not_editable()}
    return json_response(payload, status, headers={"Cache-Control": "no-store"})


def review(uid: str) -> Response:
    """GET or POST /api/utterances/ID/review."""
    dataset, store = served_dataset(), reviewing.current_store()
    if request.method == "GET":
        return _answer(review_get_route(dataset, store, uid))
    require_json_type()
    return _answer(review_post_route(dataset, store, uid, request_body(), user=reviewing.request_user()))


def review_undo(uid: str) -> Response:
    """POST /api/utterances/ID/review/undo."""
    require_json_type()
    dataset, store = served_dataset(), reviewing.current_store()
    return _answer(review_undo_route(dataset, store, uid, request_body(), user=reviewing.request_user()))


def reviews() -> Response:
    """GET /api/reviews: the reviewed utterances of a filter, and the counts of the Statistics page."""
    dataset, store = served_dataset(), reviewing.current_store()
    status, payload = reviews_list_route(dataset, store, request.args)
    if status == 200:
        payload["summary"] = review_summary(dataset, store)
        payload["editable"] = reviewing.current().editable
    return _answer((status, payload))


def utterances_jsonl() -> Response:
    """GET /api/utterances.jsonl: the selected manifest lines as they are in the user's file.

    `drop=F` (repeatable) leaves out what each drop rule F matches, exactly as `sde export --rules`
    does (a rule whose column is missing on a line does not match it, so the line is kept: the
    negated filter `!(F)` would leave it out too); with `removed=1` it sends those lines instead.
    """
    dataset = served_dataset()
    store = reviewing.current_store()
    args = {"filter": requested_filter(dataset, request.args), "sort": request.args.get("sort") or ""}
    drops = request.args.getlist("drop")
    removed = flag_arg("removed", False)
    for i, text in enumerate(drops):
        if not text.strip():  # an empty rule would match every line: refused, as sde export refuses it
            raise ApiError(f"drop rule {i + 1} is empty: give the filter of the lines to drop, e.g. "
                           "drop={wer} > 50")
    if removed and not drops:
        raise ApiError("removed=1 sends the lines drop rules remove: give at least one drop=FILTER")
    if drops:
        return _stream(*_rules_selection(dataset, store, args, drops, removed))
    status, payload = utterances_jsonl_route(dataset, args, store)
    if not isinstance(payload, LineStream):
        return _answer((status, payload))
    return _stream(payload.chunks, payload.filename)


def _rules_selection(dataset: "Dataset", store: "ReviewStore | None", args: Mapping[str, str],
                     drops: Sequence[str], removed: bool) -> tuple[Iterator[bytes], str]:
    """The chunks of the lines the drop rules keep (or remove), planned as `sde export` plans them."""
    if len(drops) > MAX_RULES:
        raise ApiError(f"{len(drops)} drop rules; at most {MAX_RULES}")
    rules = [Rule(f"drop {i + 1}", text) for i, text in enumerate(drops)]
    try:
        plan = plan_export(dataset, filter=args["filter"] or None, sort=args["sort"] or None, rules=rules, store=store)
        lines = manifest_lines(dataset)
        lines.check_unchanged()
    except RulesError as e:
        raise ApiError(str(e), fields={"rule": e.rule, "position": e.position}) from None
    except ExportError as e:
        message = str(e)
        if message.startswith("--"):   # the CLI's option names: here they are URL parameters
            message = message[2:]
        raise ApiError(message, 409 if "changed" in message or "cannot read" in message else 400) from None
    positions = np.asarray(np.flatnonzero(plan.rules.mask) if removed and plan.rules is not None else plan.kept,
                           dtype=np.int64)
    name = manifest_download_name(dataset.name, "removed" if removed else "kept")
    if has_shared_lines(dataset, lines):
        # A Lhotse cut's line holds several rows: each cut once, with only its selected
        # supervisions (copied whole, the dropped ones came back, and the cut once per row)
        return in_chunks(line for _, line in selected_cut_lines(dataset, lines, positions)), name
    return lines.chunks(positions), name


def _stream(chunks: Iterator[bytes], filename: str) -> Response:
    name = safe_name(filename) or "selection.jsonl"
    return Response(chunks, status=200, mimetype="application/x-ndjson",
                    headers={"Content-Disposition": attachment(name), "Cache-Control": "no-store"})


def rules_preview() -> Response:
    """POST /api/rules/preview (the view's filter may also come as ?filter=Q); a body not sent as
    JSON is a 415, as the review routes answer it (a rules file travels inside it, {"yaml": TEXT})."""
    require_json_type('a rules preview ({"rules": [{"name", "filter"}...]} or {"yaml": "rules: ..."})')
    dataset = served_dataset()
    return _answer(rules_preview_route(dataset, reviewing.current_store(), request_body(RULES_EXAMPLE),
                                       request.args.get("filter") or None))


__all__ = ["request_body", "review", "review_undo", "reviews", "rules_preview", "utterances_jsonl"]
