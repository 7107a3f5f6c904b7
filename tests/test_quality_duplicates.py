"""Duplicate transcripts (exact after normalisation, and near) and duplicate audio (espeak-ng
speech written as WAV, as a FLAC copy, resampled, and named twice by offset lines)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sde.quality.duplicates import (
    DUPLICATE_COLUMNS,
    audio_duplicate_groups,
    audio_hash,
    duplicate_columns,
    duplicate_groups,
    text_duplicate_groups,
)
from sde.quality.segments import measure_segments
from tests.quality_kit import need_espeak, padded, speak, write


def groups(series: pd.Series) -> list:
    return [None if pd.isna(v) else int(v) for v in series]


@pytest.mark.parametrize("texts,expected", [
    (["a b", "c d"], [None, None]),
    (["Hello, world.", "hello world", "HELLO   WORLD!"], [0, 0, 0]),
    (["x y", "p q", "x y", "p q", "r"], [0, 1, 0, 1, None]),
    (["", "", "  ", None], [None, None, None, None]),       # empty texts are not duplicates
    (["don't stop", "dont stop"], [None, None]),             # apostrophes inside words are kept
], ids=["unique", "case-and-punctuation", "ids-in-first-seen-order", "empty-never-matches", "apostrophe"])
def test_exact_text_duplicates_after_normalisation(texts, expected):
    assert groups(text_duplicate_groups(texts)) == expected


@pytest.mark.parametrize("chunk_rows", [1, 2, 5, 65_536])
def test_text_groups_of_a_stored_column_by_chunks_equal_those_at_once(tmp_path, monkeypatch, chunk_rows):
    # as a dataset stores its transcripts (compressed, read a batch at a time), digested a chunk at a time
    import pyarrow as pa

    import sde.quality.duplicates as duplicates
    from sde.compressed_columns import BATCH_ROWS, CompressedStringArray, open_column, write_compressed

    words = ["Hello, world.", "hello world", "x y", None, "", "p q", "X Y!", "r"]
    texts = [words[(i * 5) % len(words)] if i % 11 else f"unique {i}" for i in range(2 * BATCH_ROWS + 3)]
    write_compressed(tmp_path / "t.arrow", "text", [pa.array(texts, pa.large_string())], labels=False)
    stored = pd.Series(CompressedStringArray.over(open_column(tmp_path / "t.arrow")), copy=False)
    monkeypatch.setattr(duplicates, "KEY_CHUNK_ROWS", chunk_rows)
    want = duplicates._group_ids(duplicates.normalized_texts(texts), np.array([bool(t) for t in duplicates.normalized_texts(texts)]))
    got = groups(text_duplicate_groups(stored))
    assert got == groups(want) and got[1:4] == [0, 1, 2] and got.count(None) > BATCH_ROWS // 11


LONG = "the weather in the north will be cold and windy tomorrow"


@pytest.mark.parametrize("texts,max_edits,expected", [
    ([LONG, LONG.replace("cold", "colt")], 1, [0, 0]),
    ([LONG, LONG.replace("cold", "colt")], 0, [None, None]),
    ([LONG, LONG + " again"], 2, [None, None]),                       # 6 edits apart
    ([LONG, "x" + LONG[1:-1] + "x"], 2, [0, 0]),                      # both ends edited, still adjacent
    (["ok then", "no then"], 2, [None, None]),                        # short texts only match exactly
    # cold ~ colt ~ bolt, cold ≁ bolt: no chain; colt joins the first centre (alphabetical: "bolt")
    ([LONG, LONG.replace("cold", "colt"), LONG.replace("cold", "bolt")], 1, [None, 0, 0]),
], ids=["one-edit", "exact-only", "too-far", "both-ends", "short", "no-chain"])
def test_near_duplicates_within_max_edits(texts, max_edits, expected):
    assert groups(text_duplicate_groups(texts, max_edits=max_edits)) == expected


def test_near_duplicates_found_among_many_texts():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(500)]
    texts = [" ".join(rng.choice(vocab, 12)) for _ in range(5000)]
    texts[4321] = texts[17][:-1] + "Z"  # one substitution at the end of a text far away
    got = text_duplicate_groups(texts, max_edits=1)
    assert got[17] == got[4321] == 0
    assert got.notna().sum() == 2


@pytest.fixture(scope="module")
def audio_table(tmp_path_factory) -> pd.DataFrame:
    need_espeak()
    d = tmp_path_factory.mktemp("dups")
    y, sr = speak("please call stella and ask her to bring these things")
    z, _ = speak("a different sentence entirely")
    write(d / "a.wav", padded(y, sr, 0.2, 0.2), sr)
    write(d / "a_copy.flac", padded(y, sr, 0.2, 0.2), sr)             # lossless copy: same audio
    write(d / "a_16k.wav", speak("please call stella and ask her to bring these things", sample_rate=16000)[0], 16000)
    write(d / "b.wav", z, sr)
    write(d / "long.wav", np.concatenate([y, z, y]), sr)             # y twice inside one file
    n = len(y) / sr
    rows = [("a.wav", 0.0, None, "Please call Stella."),
            ("a_copy.flac", 0.0, None, "please call stella"),
            ("a_16k.wav", 0.0, None, "please call stella"),
            ("b.wav", 0.0, None, "a different sentence entirely"),
            ("long.wav", 0.0, n, "please call stella and ask her"),
            ("long.wav", n + len(z) / sr, n, "please call stella and ask her to bring these things"),
            ("missing.wav", 0.0, 1.0, "a different sentence entirely")]
    table = pd.DataFrame({"id": range(len(rows)), "audio_path": [str(d / r[0]) for r in rows],
                          "offset": [r[1] for r in rows], "duration": [r[2] for r in rows],
                          "text": [r[3] for r in rows]})
    return pd.concat([table, measure_segments(table, ("hash",), workers=1)], axis=1)


def test_audio_hash_ignores_container_but_not_resampling(audio_table):
    h = audio_table["audio_hash"]
    assert h[0] == h[1]            # WAV and its FLAC copy
    assert h[0] != h[2]            # the same speech at 16 kHz is other samples
    assert h[4] == h[5]            # the same samples at two offsets of one file
    assert pd.isna(h[6])           # unreadable: no hash, never a duplicate


def test_duplicate_columns_find_text_and_audio_groups_and_conflicts(audio_table):
    out = duplicate_columns(audio_table)
    assert list(out.columns) == list(DUPLICATE_COLUMNS)
    assert out.index.equals(audio_table.index)
    assert groups(out["dup_text_group"]) == [0, 0, 0, 1, None, None, 1]
    assert groups(out["dup_audio_group"]) == [0, 0, None, None, 1, 1, None]
    # same audio, different transcripts: only the offset pair disagrees
    assert out["dup_audio_text_conflict"].tolist() == [False, False, False, False, True, True, False]


def test_duplicate_columns_without_hashes_leave_audio_empty(audio_table):
    out = duplicate_columns(audio_table.drop(columns="audio_hash"))
    assert out["dup_audio_group"].isna().all() and not out["dup_audio_text_conflict"].any()


@pytest.mark.parametrize("kind,expected", [
    ("text", [{"group": 0, "size": 3, "ids": [0, 1, 2]}, {"group": 1, "size": 2, "ids": [3, 6]}]),
    ("audio", [{"group": 0, "size": 2, "ids": [0, 1], "conflict": False},
               {"group": 1, "size": 2, "ids": [4, 5], "conflict": True}]),
])
def test_duplicate_groups_list_ids_largest_first(audio_table, kind, expected):
    table = pd.concat([audio_table, duplicate_columns(audio_table)], axis=1)
    got = duplicate_groups(table, kind)
    assert [{k: g[k] for k in e} for g, e in zip(got, expected)] == expected
    assert len(got) == len(expected)
    assert got[0]["texts"][0] == "Please call Stella."
    assert duplicate_groups(table, kind, limit=1) == got[:1]
    assert duplicate_groups(table, kind, offset=1, limit=5) == got[1:]


def test_duplicate_groups_reject_unknown_kind(audio_table):
    with pytest.raises(ValueError, match="kind=text or kind=audio"):
        duplicate_groups(audio_table, "video")


@pytest.mark.parametrize("a,b,same", [
    (np.zeros(100, np.float32), np.zeros(100, np.float32), True),
    (np.zeros(100, np.float32), np.zeros(101, np.float32), False),
    (np.full(10, 0.5, np.float32), np.full(10, 0.5 + 1e-7, np.float32), True),  # below one 16-bit step
    (np.full(10, 0.5, np.float32), np.full(10, 0.51, np.float32), False),
])
def test_audio_hash_compares_16_bit_samples(a, b, same):
    assert (audio_hash(a, 16000) == audio_hash(b, 16000)) is same


def test_audio_hash_includes_the_rate():
    x = np.zeros(100, np.float32)
    assert audio_hash(x, 16000) != audio_hash(x, 8000)
    assert groups(audio_duplicate_groups(["h1", None, "h1", None, "h2"])) == [0, None, 0, None, None]
