"""Filters with as many arithmetic operators as the language allows, through the real server, in
every shape: a chain, divisions nested in divisors, negations, products of sums. Before, DuckDB
planned 2^n copies of n nested operators (each NaN test repeated its operands): 16 terms took 20 s
and 19 ran into the 60 s query limit with the server grown by gigabytes (found by exploratory QA).
Each answers the right rows now, by a reference worked out row by row in Python."""

from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf

from sde.filters.language import MAX_ARITHMETIC
from tests.test_audio_faults import SdeServer, assert_no_traceback

SR = 16000
DURATIONS = [1.0, 2.0, 4.0, 0.5]
N = MAX_ARITHMETIC


def _chain() -> tuple[str, list[int]]:
    # N durations summed (N - 1 operators) less a number (one more): d > N·d - K
    k = 3 * N - 3
    return "{duration} > " + " + ".join(["{duration}"] * N) + f" - {k}", [
        i for i, d in enumerate(DURATIONS) if d > N * d - k]


def _nested_divisors() -> tuple[str, list[int]]:
    # d / (d / (d / ... d)): N nested divisions, d for an even N, 1 for an odd one
    expr = "{duration}"
    for _ in range(N):
        expr = f"{{duration}} / ({expr})"
    value = (lambda d: d) if N % 2 == 0 else (lambda d: 1.0)
    return f"{expr} > 1.5", [i for i, d in enumerate(DURATIONS) if value(d) > 1.5]


def _negations() -> tuple[str, list[int]]:
    # -(-(... -d)) with N minus signs, each one an operator of its own: d or -d
    expr = "{duration}"
    for _ in range(N // 2):
        expr = f"-({expr} * 1)"
    sign = -1 if (N // 2) % 2 else 1
    return f"{expr} > 1.5", [i for i, d in enumerate(DURATIONS) if sign * d > 1.5]


def _products_of_sums() -> tuple[str, list[int]]:
    # ((d + 1) * 1 + 0) * 1 ...: N/2 rounds of "+ 0) * 1", so the value stays d + 1
    expr = "({duration} + 1)"
    for _ in range(N // 2 - 1):
        expr = f"(({expr} + 0) * 1)"
    return f"{expr} >= 3", [i for i, d in enumerate(DURATIONS) if d + 1 >= 3]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long_arithmetic")
    sf.write(folder / "a.wav", np.zeros(SR * 4, dtype=np.float32), SR, subtype="PCM_16")
    lines = [{"audio_filepath": "a.wav", "duration": d, "text": f"line {i}"} for i, d in enumerate(DURATIONS)]
    (folder / "m.json").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    with SdeServer(str(folder / "m.json"), "--no-cache") as s:
        yield s
    assert_no_traceback(s)


@pytest.mark.parametrize("shape", [_chain, _nested_divisors, _negations, _products_of_sums],
                         ids=lambda f: f.__name__.strip("_"))
def test_the_most_operators_allowed_answer_the_right_rows(server, shape):
    filter_text, expected = shape()
    code, _, body = server.get("/api/utterances?sort=id&filter=" + quote(filter_text))
    assert code == 200, body[:300]
    assert [r["id"] for r in json.loads(body)["rows"]] == expected, filter_text
