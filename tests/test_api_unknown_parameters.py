"""A parameter a route does not take answers 400 naming it, the route, the parameters it takes and
the closest one. `/api/utterances?fliter=x&page_sise=5` answered 200 with every row, as if
unfiltered (found by docs QA): a script's typo returned the whole dataset without a word.

Through the real server (tests/server_kit.py): every route with a typo, and every parameter each
route declares (sde.web.api.ROUTES) with a valid value. The declarations are checked against the
code: what each route's view reads of the query string (`arg("x")`, `int_arg`, `page_args()`,
`request.args.get`, a helper handed `request.args`), found in its source, is exactly what it declares.
"""

from __future__ import annotations

import ast
import http.client
import inspect
import json
import re
import textwrap
import types
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest

from sde.web.api import CACHE_BUSTER, ROUTES, Route
from sde.web.app import AppConfig, create_app
from tests.server_kit import limited_server


@pytest.fixture(scope="module")
def port(web_dataset) -> Iterator[int]:
    # with the audio routes: their files are missing (404), but they take parameters like the rest
    app = create_app(web_dataset, AppConfig(title=web_dataset.name, audio_routes=True))
    with pytest.MonkeyPatch.context() as monkeypatch, limited_server(app, monkeypatch) as port:
        yield port


def request(port: int, method: str, path: str, query: dict[str, str], body: dict | None = None) -> tuple[int, dict]:
    """(status, JSON body or {}) of one request, its query string encoded as a script's client does."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, f"{path}?{urlencode(query)}", body=data,
                     headers={"Content-Type": "application/json"} if data is not None else {})
        answer = conn.getresponse()
        raw = answer.read()
        is_json = answer.getheader("Content-Type", "").startswith("application/json")
        return answer.status, json.loads(raw) if is_json else {}
    finally:
        conn.close()


def shown(rule: str) -> str:
    return re.sub(r"<[^>]*>", "ID", rule)


CHECKED = [r for r in ROUTES if r.params is not None]   # all but the catch-all of unknown /api paths
RULES = {(r.rule, m) for r in CHECKED for m in r.methods}

# (rule, method, path, a typo'd parameter, the one it should suggest or None)
TYPOS = [
    ("/api/summary", "GET", "/api/summary", "normalise", "normalize"),
    ("/api/utterances", "GET", "/api/utterances", "fliter", "filter"),
    ("/api/utterances.csv", "GET", "/api/utterances.csv", "srot", "sort"),
    ("/api/utterances/<uid>", "GET", "/api/utterances/0", "filter", None),
    ("/api/vocabulary", "GET", "/api/vocabulary", "page_sise", "page_size"),
    ("/api/vocabulary.csv", "GET", "/api/vocabulary.csv", "Filter", "filter"),
    ("/api/problems", "GET", "/api/problems", "pages", "page"),
    ("/api/audio-quality", "GET", "/api/audio-quality", "filter", None),
    ("/api/errors", "GET", "/api/errors", "hpy", "hyp"),
    ("/api/errors.csv", "GET", "/api/errors.csv", "kinds", "kind"),
    ("/api/breakdown", "GET", "/api/breakdown", "min_word", "min_words"),
    ("/api/breakdown.csv", "GET", "/api/breakdown.csv", "byy", "by"),
    ("/api/compare", "GET", "/api/compare", "n_resample", "n_resamples"),
    ("/api/compare.csv", "GET", "/api/compare.csv", "seeed", "seed"),
    ("/api/compare/words", "GET", "/api/compare/words", "limt", "limit"),
    ("/api/compare/words.csv", "GET", "/api/compare/words.csv", "A", "a"),
    ("/audio/<digits:utt_id>.wav", "GET", "/audio/0.wav", "offset", None),
    ("/audio/<digits:utt_id>.ogg", "GET", "/audio/0.ogg", "offset", None),
    ("/api/utterances/<digits:utt_id>/signal", "GET", "/api/utterances/0/signal", "knid", "kind"),
    ("/api/utterances.jsonl", "GET", "/api/utterances.jsonl", "drops", "drop"),
    ("/api/utterances/<uid>/review", "GET", "/api/utterances/0/review", "version", None),
    ("/api/utterances/<uid>/review", "POST", "/api/utterances/0/review", "version", None),
    ("/api/utterances/<uid>/review/undo", "POST", "/api/utterances/0/review/undo", "version", None),
    ("/api/reviews", "GET", "/api/reviews", "sortt", "sort"),
    ("/api/rules/preview", "POST", "/api/rules/preview", "filtre", "filter"),
    ("/api/tts", "GET", "/api/tts", "language", "lang"),
    ("/api/duplicates", "GET", "/api/duplicates", "knd", "kind"),
    ("/api/suspicious", "GET", "/api/suspicious", "flag", None),
    ("/api/utterances/<digits:utt_id>/augment", "GET", "/api/utterances/0/augment", "sped", "speed"),
    ("/api/utterances/<digits:utt_id>/augment/config", "GET", "/api/utterances/0/augment/config", "snr_db", "snr"),
]

RULES_BODY = {"rules": [{"name": "bad", "filter": "{wer} > 50"}]}
REVIEW_BODY = {"status": "keep"}
RATES = {"filter": "{wer} >= 0", "hyp": "pred_text"}
PAIR = {"a": "pred_text", "b": "pred_text_b", "filter": "{wer} >= 0"}
AUGMENT = {"speed": "1.1", "stretch": "1", "noise": "none", "snr": "20", "rir": "none", "rt60": "0.3", "seed": "1"}
# (rule, method, path, every parameter it declares with a valid value, body, the status expected)
KNOWN = [
    ("/api/summary", "GET", "/api/summary", {"normalize": "lower,punct"}, None, 200),
    ("/api/utterances", "GET", "/api/utterances",
     {"filter": "{wer} >= 0", "sort": "-wer", "page": "0", "page_size": "2", "error": "sub:cat:bat", "hyp": "pred_text_b"},
     None, 200),
    # a CSV twin takes its JSON's paging and has every row (tests/test_breakdown.py: paging ignored)
    ("/api/utterances.csv", "GET", "/api/utterances.csv",
     {"filter": "{wer} >= 0", "sort": "-wer", "error": "sub:cat:bat", "hyp": "pred_text_b", "page": "3",
      "page_size": "1"}, None, 200),
    ("/api/utterances/<uid>", "GET", "/api/utterances/0", {}, None, 200),
    ("/api/vocabulary", "GET", "/api/vocabulary",
     {"filter": "{count} > 0", "sort": "-count", "page": "0", "page_size": "5"}, None, 200),
    ("/api/vocabulary.csv", "GET", "/api/vocabulary.csv",
     {"filter": "{count} > 0", "sort": "-count", "page": "3", "page_size": "1"}, None, 200),
    ("/api/problems", "GET", "/api/problems", {"page": "0", "page_size": "10"}, None, 200),
    ("/api/audio-quality", "GET", "/api/audio-quality", {}, None, 200),
    ("/api/errors", "GET", "/api/errors", {**RATES, "limit": "5"}, None, 200),
    ("/api/errors.csv", "GET", "/api/errors.csv", {**RATES, "kind": "deletions", "limit": "5"}, None, 200),
    ("/api/breakdown", "GET", "/api/breakdown",
     {**RATES, "by": "speaker", "sort": "-wer", "page": "0", "page_size": "5", "min_words": "0", "min_utterances": "1",
      "ci": "1", "n_resamples": "20", "seed": "1"}, None, 200),
    ("/api/breakdown.csv", "GET", "/api/breakdown.csv",
     {**RATES, "by": "speaker", "sort": "-wer", "min_words": "0", "min_utterances": "1", "page": "3",
      "page_size": "1"}, None, 200),
    ("/api/compare", "GET", "/api/compare", {**PAIR, "n_resamples": "20", "seed": "1"}, None, 200),
    ("/api/compare.csv", "GET", "/api/compare.csv", {**PAIR, "n_resamples": "20", "seed": "1"}, None, 200),
    ("/api/compare/words", "GET", "/api/compare/words", {**PAIR, "limit": "5"}, None, 200),
    ("/api/compare/words.csv", "GET", "/api/compare/words.csv", {**PAIR, "limit": "5"}, None, 200),
    ("/audio/<digits:utt_id>.wav", "GET", "/audio/0.wav", {}, None, 404),               # its file is missing
    ("/audio/<digits:utt_id>.ogg", "GET", "/audio/0.ogg", {}, None, 404),
    ("/api/utterances/<digits:utt_id>/signal", "GET", "/api/utterances/0/signal", {"kind": "mel"}, None, 404),
    ("/api/utterances.jsonl", "GET", "/api/utterances.jsonl",
     {"filter": "{wer} >= 0", "sort": "-wer", "error": "sub:cat:bat", "hyp": "pred_text_b", "drop": "{wer} > 50",
      "removed": "1"}, None, 200),
    ("/api/utterances/<uid>/review", "GET", "/api/utterances/0/review", {}, None, 200),
    # 403: the server has no --reviews file, so nothing is stored; the request itself was taken
    ("/api/utterances/<uid>/review", "POST", "/api/utterances/0/review", {}, REVIEW_BODY, 403),
    ("/api/utterances/<uid>/review/undo", "POST", "/api/utterances/0/review/undo", {}, {}, 403),
    ("/api/reviews", "GET", "/api/reviews", {"filter": "{wer} >= 0", "sort": "-wer", "page": "0", "page_size": "5"},
     None, 200),
    ("/api/rules/preview", "POST", "/api/rules/preview", {"filter": "{wer} >= 0"}, RULES_BODY, 200),
    ("/api/tts", "GET", "/api/tts", {"lang": "en", "speaker": "speaker", "limit": "5", "page": "0", "counts": "1"},
     None, None),   # 400 where espeak-ng lacks `en`: a refused value, not an unknown parameter
    ("/api/duplicates", "GET", "/api/duplicates", {"kind": "text", "page": "0", "page_size": "5"}, None, 200),
    ("/api/suspicious", "GET", "/api/suspicious", {}, None, 200),
    ("/api/utterances/<digits:utt_id>/augment", "GET", "/api/utterances/0/augment", AUGMENT, None, 404),
    ("/api/utterances/<digits:utt_id>/augment/config", "GET", "/api/utterances/0/augment/config", AUGMENT, None, 404),
]


def test_the_case_tables_cover_every_route_and_parameter():
    assert {(rule, method) for rule, method, *_ in TYPOS} == RULES
    assert {(rule, method) for rule, method, *_ in KNOWN} == RULES
    declared = {r.rule: {*(r.params or ()), *r.ignores} for r in CHECKED}
    for rule, _, _, query, _, _ in KNOWN:
        assert set(query) == declared[rule], rule


@pytest.mark.parametrize("rule, method, path, typo, suggestion", TYPOS, ids=[f"{c[1]} {c[2]}" for c in TYPOS])
def test_a_parameter_the_route_does_not_take_is_400_naming_it_and_the_ones_it_takes(port, rule, method, path, typo,
                                                                                 suggestion):
    takes, ignores = next((r.params, r.ignores) for r in CHECKED if r.rule == rule)
    code, body = request(port, method, path, {typo: "1"}, {} if method == "POST" else None)
    assert code == 400, (code, body)
    assert (body["parameter"], body["route"], body["parameters"], body["ignored"], body["suggestion"]) == (
        typo, shown(rule), list(takes), list(ignores), suggestion)
    said = body["error"]
    assert said.startswith(f"unknown parameter {typo!r}") and path in said
    assert (f"did you mean {suggestion}?" in said) == (suggestion is not None)
    assert (f"takes {', '.join(takes)}" if takes else "takes no parameters") in said
    assert not ignores or f"(and {', '.join(ignores)}, which it ignores: it has every row)" in said


def test_the_finding_a_typo_in_filter_and_page_size_is_refused_not_answered_with_every_row(port):
    code, body = request(port, "GET", "/api/utterances", {"fliter": "x", "page_sise": "5"})
    assert code == 400 and body["unknown"] == ["fliter", "page_sise"]
    assert "'fliter' (did you mean filter?) and 'page_sise' (did you mean page_size?)" in body["error"]


@pytest.mark.parametrize("rule, method, path, query, body, status", KNOWN, ids=[f"{c[1]} {c[2]}" for c in KNOWN])
def test_every_parameter_a_route_declares_is_taken(port, rule, method, path, query, body, status):
    # a cache buster too, on every route: jQuery's `_=TIMESTAMP` (tests/test_request_bounds.py)
    code, answer = request(port, method, path, {**query, CACHE_BUSTER: "1712345678"}, body)
    assert "unknown" not in answer, answer
    assert status is None or code == status, (code, answer)


def test_an_unknown_route_is_404_whatever_it_asks(port):
    code, body = request(port, "GET", "/api/utterance", {"fliter": "x"})
    assert code == 404 and body["error"].startswith("no API route /api/utterance;")


# ------------------------------------------------- the declarations are what the code reads

ARGS_HOLDERS = ("args", "values")   # request.args and request.values: the query string


def _is_request_args(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr in ARGS_HOLDERS and isinstance(node.value, ast.Name)
            and node.value.id == "request")


def _resolve(func: ast.expr, scope: dict) -> Callable | None:
    if isinstance(func, ast.Name):
        found = scope.get(func.id)
    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        owner = scope.get(func.value.id)
        found = getattr(owner, func.attr, None) if isinstance(owner, types.ModuleType) else None
    else:
        return None
    found = inspect.unwrap(found) if callable(found) else None
    return found if inspect.isfunction(found) and found.__module__.startswith("sde.") else None


class _Reads:
    """The query parameters a view reads, following the calls that can read them: any function of
    sde.web.api (arg, int_arg, page_args, a route's helpers, called or handed on), and any function
    handed `request.args` (sde.web.present.requested_filter, sde.reviews.reviews_list_route, …),
    with the string constants it is handed (int_arg("page") → arg(name) → request.args.get(name)).
    Every branch counts: a helper reading `error` only for one of the routes that share it is read
    by all of them (give each route its own helper)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.unread: list[str] = []     # uses of the query string this cannot follow
        self._seen: set = set()

    def visit(self, fn: Callable, holders: frozenset[str] = frozenset(), consts: tuple = ()) -> None:
        key = (fn, holders, consts)
        if key in self._seen:
            return
        self._seen.add(key)
        bound = dict(consts)
        where = f"{fn.__module__}.{fn.__qualname__}"
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))

        def holds(node: ast.AST) -> bool:
            return _is_request_args(node) or (isinstance(node, ast.Name) and node.id in holders)

        def key_of(node: ast.AST) -> str | None:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return node.value
            return bound.get(node.id) if isinstance(node, ast.Name) else None

        followed: set[int] = set()
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        for node in ast.walk(tree):
            # a function of sde.web.api handed on as a value (table_page(_utterances_table)) runs too
            if isinstance(node, ast.Name) and id(node) not in called:
                named = _resolve(node, fn.__globals__)
                if named is not None and named.__module__.startswith("sde.web.api"):
                    self.visit(named)
            if isinstance(node, ast.Subscript) and holds(node.value):
                followed.add(id(node.value))
                self._read(key_of(node.slice), where)
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("get", "getlist") and holds(func.value):
                followed.add(id(func.value))
                self._read(key_of(node.args[0]) if node.args else None, where)
                continue
            callee = _resolve(func, fn.__globals__)
            if callee is None:
                continue
            params = list(inspect.signature(callee).parameters)
            given = [*zip(params, node.args), *((k.arg, k.value) for k in node.keywords if k.arg)]
            passed = frozenset(p for p, v in given if holds(v))
            if not passed and not callee.__module__.startswith("sde.web.api"):
                continue
            followed.update(id(v) for _, v in given if holds(v))
            handed = tuple(sorted((p, k) for p, v in given if (k := key_of(v)) is not None))
            self.visit(callee, passed, handed)
        for node in ast.walk(tree):
            if holds(node) and id(node) not in followed:
                self.unread.append(f"{where} line {node.lineno}: {ast.unparse(node)}")

    def _read(self, name: str | None, where: str) -> None:
        if name is None:
            self.unread.append(f"{where}: a parameter whose name is not a constant")
        else:
            self.names.add(name)


@pytest.mark.parametrize("route", CHECKED, ids=[f"{r.rule} {r.view.__name__}" for r in CHECKED])
def test_each_route_declares_exactly_the_parameters_its_code_reads(route: Route):
    reads = _Reads()
    reads.visit(route.view)
    assert not reads.unread, f"{route.rule}: cannot tell which parameters these read: {reads.unread}"
    assert not reads.names & set(route.ignores), f"{route.rule} reads what it declares it ignores"
    assert reads.names == set(route.params or ()), (
        f"{route.rule} reads {sorted(reads.names)} but declares {sorted(route.params or ())}: give its Route in "
        "sde.web.api.ROUTES the parameters its view reads (an undeclared one answers 400 before the view runs)")


def test_the_reader_sees_what_the_shared_helpers_read():
    # the helpers every table route goes through: a reader blind to them would pass any declaration
    from sde.web.api import tables

    reads = _Reads()
    reads.visit(tables.utterances)
    assert reads.names == {"filter", "sort", "page", "page_size", "error", "hyp"} and not reads.unread
