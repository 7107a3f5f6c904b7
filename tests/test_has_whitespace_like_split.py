"""``{text} has "WORD"`` finds the words ``str.split()`` finds (the Vocabulary page's words, whose
drill-down is this filter), whatever whitespace ``str.isspace()`` accepts separates them: a no-break
space, an ideographic space, \\v, \\x1c-\\x1f, \\x85… not only RE2's ``\\s`` ([\\t\\n\\f\\r ]). The same
on every path a ``has`` runs: DuckDB's regex on the lines, or the word index of stored transcripts."""
from __future__ import annotations

import json
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pytest

TEXTS = [
    "the\u00a0cat sat",         # 0: no-break space
    "cat\u3000sat",             # 1: ideographic space
    "a\u2009cat\u2009here",     # 2: thin spaces
    "one\x0bcat",               # 3: vertical tab
    "cat\x1csat",               # 4: file separator
    "dog\x85cat\u202f",         # 5: next line, narrow no-break space
    "the cat sat",              # 6: plain spaces
    "concatenate cats",         # 7: no whole word "cat"
    "bobcat\u00a0dog",          # 8: "bobcat", not "cat"
    "",                         # 9: nothing
]
WORD_ROWS = {w: [i for i, t in enumerate(TEXTS) if w in t.split()] for w in ("cat", "sat", "dog", "the")}


@pytest.fixture(scope="module", params=["regex on the lines", "word index"])
def dataset(request, tmp_path_factory):
    from sde.build.load import load_dataset
    from sde.dataset import build_dataset

    folder = tmp_path_factory.mktemp("has_ws")
    manifest = folder / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"/absent/{i}.wav", "duration": 1.0, "text": t}) + "\n"
                                for i, t in enumerate(TEXTS)), encoding="utf-8")
    if request.param == "regex on the lines":
        return build_dataset(manifest)
    load_dataset(manifest, cache_dir=folder / "cache")  # writes the cache: the next load stores compressed
    stored = load_dataset(manifest, cache_dir=folder / "cache")
    assert stored.utterance_query.warm_search(["text"]) == ["text"]  # as the server's warm-up
    return stored


@pytest.fixture(scope="module")
def query(dataset):
    return dataset.utterance_query


@pytest.fixture(scope="module")
def client(dataset):
    from sde.web.app import AppConfig, create_app

    return create_app(dataset, AppConfig(title="t", audio_routes=False)).server.test_client()


def _rows(query, filt: str) -> list[int]:
    total, page = query.page(filt, None, 0, 100)
    assert total == len(page)
    return sorted(page["id"].tolist())


@pytest.mark.parametrize("filt, expected", [
    pytest.param('{text} has "cat"', [0, 1, 2, 3, 4, 5, 6], id="has cat: split at any Unicode space"),
    pytest.param('{text} has "sat"', [0, 1, 4, 6], id="has sat: after a no-break or ideographic space"),
    pytest.param('{text} has "dog"', [5, 8], id="has dog: before \\x85, after a no-break space"),
    pytest.param('!({text} has "cat")', [7, 8, 9], id="negated with !"),
    pytest.param('not {text} has "cat"', [7, 8, 9], id="negated with not"),
    pytest.param('{text} has "cat" && {text} has "sat"', [0, 1, 4, 6], id="two has clauses"),
])
def test_has_finds_the_words_str_split_finds(query, filt, expected):
    assert _rows(query, filt) == expected


@pytest.mark.parametrize("word", sorted(WORD_ROWS))
def test_has_agrees_with_the_vocabulary_count(query, word):
    assert _rows(query, f'{{text}} has "{word}"') == WORD_ROWS[word]


@pytest.mark.parametrize("filt", [
    pytest.param('{text} has "the\u00a0cat"', id="a no-break space inside the word"),
    pytest.param('{text} has "cat\u3000sat"', id="an ideographic space inside the word"),
    pytest.param('{text} has "cat\u00a0"', id="a trailing no-break space"),
])
def test_has_with_whitespace_in_the_word_is_a_query_error_not_a_crash(query, filt):
    from sde.filters import QueryError

    with pytest.raises(QueryError, match="one whole word"):
        query.page(filt, None, 0, 10)


@pytest.mark.parametrize("filt, status, total", [
    pytest.param('{text} has "cat"', 200, 7, id="the vocabulary drill-down counts what the vocabulary counts"),
    pytest.param('{text} has "the\u00a0cat"', 400, None, id="a word holding a no-break space: a message, no 500"),
])
def test_the_api_answers_has_like_str_split(client, filt, status, total):
    from urllib.parse import quote

    got = client.get("/api/utterances?filter=" + quote(filt))
    assert got.status_code == status, got.get_data(as_text=True)
    if total is not None:
        assert got.get_json()["total"] == total


def test_the_whitespace_of_has_is_exactly_what_str_isspace_accepts():
    from sde.filters.bind import word_pattern
    from sde.text import RE2_WHITESPACE

    assert word_pattern("cat") == f"(?:^|{RE2_WHITESPACE})cat(?:{RE2_WHITESPACE}|$)"
    every = [chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF]
    matched = pc.match_substring_regex(pa.array(every), f"^{RE2_WHITESPACE}$").to_numpy(zero_copy_only=False)
    assert [c for c, m in zip(every, matched) if m] == [c for c in every if c.isspace()]
