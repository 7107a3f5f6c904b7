"""The Comparison word table's `utterances` column (sde.web.present.word_utterances): per word, how
many selected transcripts hold it as a ``str.split()`` token, counted from the word index's postings
(sde.word_index.word_row_counts) where the stored transcripts have one, else by splitting them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde import compressed_columns as cc
from sde import word_index as wi
from sde.compressed_columns import CompressedStringArray, open_column, write_compressed
from sde.web import present

TEXTS = [
    "the the cat sat",         # a word repeated in a row: one row
    "",                        # an empty text: no word, not even ""
    None,                      # a missing transcript
    "cat, sat. the",           # punctuation stays on its word: "cat," is not "cat"
    "  the  cat ",             # runs of spaces: the index holds "" for them, str.split() nothing
    "tab\tcat the\u00a0end",   # other whitespace: str.split() splits there, the index does not
    "The CAT",                 # case kept: "The" is not "the"
    "dog",
    "\t",                      # whitespace alone
    "sat cat",
]
WORDS = ["the", "cat", "sat", "cat,", "sat.", "The", "CAT", "dog", "end", "tab", "absent", "", "a b", "tab\tcat",
         "the", "\u00a0"]

CASES = [
    pytest.param(None, id="all rows"),
    pytest.param(np.array([0, 3, 5, 9]), id="a selection"),
    pytest.param(np.array([1, 2, 4, 8]), id="a selection of empty, missing and blank texts"),
    pytest.param(np.array([], dtype=np.int64), id="an empty selection"),
    pytest.param(np.array([5]), id="one row holding other whitespace"),
]
LAYOUTS = [
    pytest.param(10**9, None, id="one segment"),
    pytest.param(1, None, id="a chunk a segment"),
    pytest.param(10**9, 0.0, id="every word kept as bits"),
    pytest.param(1, 0.0, id="bits per chunk"),
    pytest.param(10**9, 0.25, id="common words as bits, rare as rows"),
]


def _reference(texts: list[str | None], rows: np.ndarray | None, words: list[str]) -> list[int]:
    picked = range(len(texts)) if rows is None else rows.tolist()
    tokens = [set(texts[i].split()) if texts[i] is not None else set() for i in picked]
    return [sum(w in t for t in tokens) for w in words]


def _index(monkeypatch, texts: list[str | None], segment_bytes: int, bits_share: float | None) -> wi.WordIndex:
    monkeypatch.setattr(wi, "SEGMENT_BYTES", segment_bytes)
    if bits_share is not None:
        monkeypatch.setattr(wi, "BITS_SHARE", bits_share)
    step = max(3, len(texts) // 4)  # a few chunks: with segment_bytes=1, a segment each
    chunks = [pa.array(texts[a:a + step], pa.large_string()) for a in range(0, len(texts), step)]
    return wi.build_word_index(chunks, len(texts))


@pytest.mark.parametrize("rows", CASES)
@pytest.mark.parametrize("segment_bytes, bits_share", LAYOUTS)
def test_counts_from_the_postings_are_those_of_str_split(monkeypatch, rows, segment_bytes, bits_share):
    index = _index(monkeypatch, TEXTS, segment_bytes, bits_share)
    assert wi.word_row_counts(index, WORDS, rows).tolist() == _reference(TEXTS, rows, WORDS)


@pytest.mark.parametrize("words", [
    pytest.param([], id="no word"),
    pytest.param(["absent", "nowhere"], id="only absent words"),
    pytest.param(["", "  ", "\t"], id="only blanks"),
])
def test_words_in_no_row_count_zero(monkeypatch, words):
    index = _index(monkeypatch, TEXTS, 10**9, None)
    assert wi.word_row_counts(index, words, None).tolist() == [0] * len(words)


def _random_texts(n: int, seed: int) -> list[str | None]:
    rng = np.random.default_rng(seed)
    vocabulary = ["a", "b", "c", "d", "e,", "f.", "g", "h", "\t", "\u3000", "x\ty"]
    out: list[str | None] = []
    for i in range(n):
        if i % 41 == 7:
            out.append(None)
            continue
        picked = rng.choice(vocabulary, size=int(rng.integers(0, 8)), p=[.3, .2, .1, .1, .05, .05, .05, .05, .04, .03, .03])
        out.append("".join(w + (" " if rng.random() < 0.85 else "  ") for w in picked))
    return out


@pytest.mark.parametrize("segment_bytes, bits_share", LAYOUTS)
@pytest.mark.parametrize("share", [pytest.param(1.0, id="all rows"), pytest.param(0.3, id="a random third")])
def test_counts_agree_with_str_split_over_random_lines(monkeypatch, segment_bytes, bits_share, share):
    texts = _random_texts(600, seed=3)
    index = _index(monkeypatch, texts, segment_bytes, bits_share)
    rows = None if share == 1.0 else np.flatnonzero(np.random.default_rng(4).random(len(texts)) < share)
    words = ["a", "b", "c", "d", "e,", "e", "f.", "g", "h", "x", "y", "x\ty", "\u3000", ""]
    assert wi.word_row_counts(index, words, rows).tolist() == _reference(texts, rows, words)


# ---------------------------------------------------------------- the page's function

def _stored_text(tmp_path, texts: list[str | None]) -> pd.Series:
    path = tmp_path / "text.arrow"
    write_compressed(path, "text", [pa.array(texts, pa.large_string())], labels=False)
    return pd.Series(CompressedStringArray.over(open_column(path)), copy=False)


@pytest.fixture
def fresh_indexes(monkeypatch):
    """Word indexes kept in a cache of this test's own, nothing written beside the column."""
    monkeypatch.setattr(cc, "KEEP_IN_FILES", False)
    monkeypatch.setattr(cc, "_WORDS", cc.whole_cache(1 << 30))


def _no_split(*_args):
    raise AssertionError("the transcripts were split: the word index was not used")


@pytest.mark.parametrize("rows", CASES)
def test_a_stored_transcript_column_with_an_index_is_counted_from_it(tmp_path, monkeypatch, fresh_indexes, rows):
    texts = _stored_text(tmp_path, TEXTS)
    assert cc.index_words(cc.stored_column(texts)) is not None
    monkeypatch.setattr(present, "_split_word_utterances", _no_split)
    assert present.word_utterances(texts, rows, WORDS).tolist() == _reference(TEXTS, rows, WORDS)


@pytest.mark.parametrize("rows", CASES)
@pytest.mark.parametrize("stored", [pytest.param(True, id="stored, index not built yet"),
                                    pytest.param(False, id="in memory")])
def test_without_an_index_the_transcripts_are_split_to_the_same_counts(tmp_path, fresh_indexes, rows, stored):
    texts = _stored_text(tmp_path, TEXTS) if stored else pd.Series(TEXTS, dtype=pd.StringDtype("pyarrow"))
    assert present.word_utterances(texts, rows, WORDS).tolist() == _reference(TEXTS, rows, WORDS)
    if stored:
        assert cc.word_index(cc.stored_column(texts)) is None  # counting built none: the warm-up builds it


@pytest.mark.parametrize("slice_rows", [1, 3, 1 << 18], ids=["a row a slice", "slices of three", "one slice"])
@pytest.mark.parametrize("rows", CASES)
def test_slices_split_on_two_threads_add_up_to_the_same_counts(tmp_path, fresh_indexes, monkeypatch, rows, slice_rows):
    from sde.filters.engine import configure

    monkeypatch.setattr(present, "WORD_SLICE_ROWS", slice_rows)
    configure(threads=2)
    try:
        texts = _stored_text(tmp_path, TEXTS)
        assert present.word_utterances(texts, rows, WORDS).tolist() == _reference(TEXTS, rows, WORDS)
    finally:
        configure(None, None)


# ---------------------------------------------------------------- the server

MANIFEST_ROWS = [  # text, pred_text, pred_text_b
    ("the cat sat", "the cat sat", "a cat sat"),
    ("the the dog", "the dog", "the the dog"),   # "the" twice: one utterance
    ("cat,\tdog the", "cat dog", "cat, dog the"),  # a tab between words: the index holds "cat,\tdog"
    ("dog  cat", "dog cat", "dog cat"),           # two spaces
]


@pytest.fixture(scope="module")
def stored_manifest(tmp_path_factory):
    """A manifest and its cache: its second load gives stored (compressed) transcripts."""
    import json

    folder = tmp_path_factory.mktemp("stored")
    manifest = folder / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"/absent/{i}.wav", "duration": 1.0 + i, "text": t,
                                            "pred_text": p, "pred_text_b": q}) + "\n"
                                for i, (t, p, q) in enumerate(MANIFEST_ROWS)), encoding="utf-8")
    return manifest, folder / "cache"


@pytest.mark.parametrize("query, rows", [
    pytest.param("", [0, 1, 2, 3], id="all utterances"),
    pytest.param("&filter={duration} > 2.5", [2, 3], id="a filter's selection"),
])
def test_the_api_word_table_counts_a_stored_dataset_from_its_word_index(monkeypatch, stored_manifest, query, rows):
    from sde.build.load import load_dataset
    from sde.web.app import AppConfig, create_app

    manifest, cache = stored_manifest
    load_dataset(manifest, cache_dir=cache)  # builds the cache (this load's transcripts are in memory)
    dataset = load_dataset(manifest, cache_dir=cache)
    assert dataset.utterance_query.warm_search(["text"]) == ["text"]  # as the server's warm-up
    monkeypatch.setattr(present, "_split_word_utterances", _no_split)
    client = create_app(dataset, AppConfig(title="t", audio_routes=False)).server.test_client()
    got = client.get("/api/compare/words?a=pred_text&b=pred_text_b&limit=1000" + query)
    assert got.status_code == 200, got.get_data(as_text=True)
    counted = {r["word"]: r["utterances"] for r in got.get_json()["rows"]}
    texts = [MANIFEST_ROWS[i][0] for i in rows]
    assert counted and counted == dict(zip(counted, _reference(texts, None, list(counted))))
