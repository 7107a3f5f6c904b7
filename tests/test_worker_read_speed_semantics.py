"""What a build worker computes outside the alignment keeps its meaning now that it scans bytes
instead of calling Arrow's per-string kernels or pandas over Python strings: audio paths resolved
(sde.manifest.paths), the references' alphabet (sde.analysis.alphabet), the word tallies
(sde.vocabulary) and the input files' digest (sde.cache.identity)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sde.analysis.alphabet import _bytes_present, reference_alphabet
from sde.cache.identity import CHUNK, digest
from sde.manifest import HypothesisField
from sde.manifest.paths import _dotty_rows, _url_rows, resolve_paths
from sde.vocabulary import occurrences, word_tallies

# (audio_filepath, base, resolved): what the match_substring version gave, written out
PATH_CASES = [
    ("a.wav", "/data", "/data/a.wav"),
    ("./a.wav", "/data", "/data/a.wav"),
    ("././a.wav", "/data/", "/data/a.wav"),
    ("../a.wav", "/data/x", "/data/a.wav"),
    ("a/./b.wav", "/data", "/data/a/b.wav"),
    ("a//b.wav", "/data", "/data/a/b.wav"),
    ("/abs/../x.wav", "/data", "/x.wav"),
    ("/abs/x.wav", "/data", "/abs/x.wav"),
    ("//host/x.wav", "/data", "//host/x.wav"),
    (".hidden/a.wav", "/data", "/data/.hidden/a.wav"),
    ("a/", "/data", "/data/a/"),
    ("", "/data", "/data/"),
    (None, "/data", None),
    ("é/../ü.wav", "/dätä", "/dätä/ü.wav"),
    ("a.wav", "/d/./e", "/d/e/a.wav"),
    ("a.wav", "/d//e", "/d/e/a.wav"),
    ("s3://b/k/../a.wav", "/data", "s3://b/a.wav"),
    ("s3://b//k/a.wav", "/data", "s3://b/k/a.wav"),
    ("file:///data/a%20b.wav", "/x", "/data/a b.wav"),
    ("file://localhost/d/./a.wav", "/x", "/d/a.wav"),
    ("file://otherhost/a.wav", "/x", "file://otherhost/a.wav"),
    ("a.wav", "s3://bucket/m", "s3://bucket/m/a.wav"),
    ("../a.wav", "s3://bucket/m/n", "s3://bucket/m/a.wav"),
    ("x//y.wav", "https://h/m", "https://h/m/x/y.wav"),
    ("a:/b", "/data", "/data/a:/b"),
    ("a://b", "/data", "a://b"),
    ("/a/.", "/data", "/a"),
    ("/a/..", "/data", "/"),
]


@pytest.mark.parametrize(("value", "base", "expected"), PATH_CASES)
def test_one_path_resolves_as_before(value: str | None, base: str, expected: str | None) -> None:
    assert resolve_paths(pa.chunked_array([[value]], pa.string()), base).to_pylist() == [expected]


def test_paths_resolve_alike_together_and_alone() -> None:
    """Each value of a column resolves as it does alone, whatever its neighbours (a URL in the
    column turns the whole chunk's rule to the remote one only where the value itself is a URL)."""
    local = [(v, e) for v, b, e in PATH_CASES if b == "/data" and v is not None and "://" not in v]
    values = [v for v, _ in local]
    assert resolve_paths(pa.chunked_array([values], pa.string()), "/data").to_pylist() == [e for _, e in local]


@pytest.mark.parametrize(("values", "base", "expected"), [
    # a "/" ending one value and a "." or "/" starting the next is no "/." nor "//"
    (["a/", ".b", "c/", "/d"], "/data", ["/data/a/", "/data/.b", "/data/c/", "/d"]),
    # a ":" ending one value and "//" starting the next is no URL: the local rule stays
    (["x:", "//y", "b//c"], "/data", ["/data/x:", "//y", "/data/b/c"]),
    (["a:/", "/b"], "/data", ["/data/a:/", "/b"]),
    # "[^:]//" needs a character before the "//" in the same value
    (["s3://b/k", "//x"], "/data", ["s3://b/k", "//x"]),
    (["", None, "", "./a"], "/data", ["/data/", None, "/data/", "/data/a"]),
    (["日本/./語.wav", "ü//ö.wav"], "/dätä", ["/dätä/日本/語.wav", "/dätä/ü/ö.wav"]),
])
def test_values_side_by_side(values: list[str | None], base: str, expected: list[str | None]) -> None:
    assert resolve_paths(pa.chunked_array([values], pa.string()), base).to_pylist() == expected


def test_a_sliced_array_resolves_its_own_values() -> None:
    whole = pa.array(["a/./x", "b.wav", "../c.wav", "d//e", "f/"], pa.string())
    for start in range(5):
        part = whole.slice(start, 5 - start)
        alone = [resolve_paths(pa.chunked_array([[v]], pa.string()), "/r").to_pylist()[0] for v in part.to_pylist()]
        assert resolve_paths(pa.chunked_array([part]), "/r").to_pylist() == alone
        assert resolve_paths(pa.chunked_array([part.slice(0, 1), part.slice(1)]), "/r").to_pylist() == alone


def _null_over_bytes() -> pa.Array:
    """["a.wav", null, "b.wav"] whose null slot still holds the bytes "/./x//" (Arrow allows it)."""
    data = b"a.wav/./x//b.wav"
    offsets = np.array([0, 5, 11, 16], dtype=np.int32).tobytes()
    validity = bytes([0b101])
    return pa.StringArray.from_buffers(3, pa.py_buffer(offsets), pa.py_buffer(data), pa.py_buffer(validity), 1)


def test_a_null_slot_holding_bytes_is_no_value() -> None:
    arr = _null_over_bytes()
    assert not _dotty_rows(arr, every_double=True).any()
    assert resolve_paths(pa.chunked_array([arr]), "/r").to_pylist() == ["/r/a.wav", None, "/r/b.wav"]


def _reference_dotty(arr: pa.Array, every_double: bool) -> np.ndarray:
    dot = pc.match_substring(arr, "/.")
    double = pc.match_substring(arr, "//") if every_double else pc.match_substring_regex(arr, "[^:]//")
    return pc.fill_null(pc.or_(dot, double), False).to_numpy(zero_copy_only=False)


def test_byte_scans_tell_the_rows_arrow_kernels_tell() -> None:
    rng = random.Random(7)
    atoms = ["/", ".", "..", ":", "//", "a", "é", "日", "s3://", ":/", "\n", ""]
    for _ in range(400):
        values = [None if rng.random() < 0.1 else "".join(rng.choice(atoms) for _ in range(rng.randint(0, 6)))
                  for _ in range(rng.randint(0, 9))]
        arr = pa.array(values, pa.string())
        for part in [arr] + ([arr.slice(1, len(arr) - 2)] if len(arr) > 2 else []):
            url = pc.fill_null(pc.match_substring(part, "://"), False).to_numpy(zero_copy_only=False)
            assert (_url_rows(part) == url).all(), values
            for every in (True, False):
                assert (_dotty_rows(part, every) == _reference_dotty(part, every)).all(), (values, every)


def test_large_strings_are_scanned_too() -> None:
    arr = pa.array(["a/", ".b", "c//d", None, "e:/", "/f", "g://h"], pa.large_string())
    assert _dotty_rows(arr, True).tolist() == [False, False, True, False, False, False, True]
    assert _url_rows(arr).tolist() == [False, False, False, False, False, False, True]


def test_bytes_present_is_the_set_of_bytes() -> None:
    rng = random.Random(3)
    assert _bytes_present(b"") == []
    # a byte only past the first sample, and every byte value once
    tail = b"a" * 200_000 + b"\x00z\xff"
    assert _bytes_present(tail) == sorted(set(tail))
    assert _bytes_present(bytes(range(256)) * 3) == list(range(256))
    # each byte value only past the samples taken before it: the histogram finishes
    runs = b"".join(bytes([b]) * 70_000 for b in range(0, 256, 13))
    assert _bytes_present(runs) == list(range(0, 256, 13))
    for _ in range(50):
        data = bytes(rng.choice(b"ab \x01\x7f\xc3\xa9") for _ in range(rng.randint(1, 300)))
        assert _bytes_present(data) == sorted(set(data))


@pytest.mark.parametrize("texts", [
    [],
    [None, None],
    ["", ""],
    ["hello world", "héllo  wörld", None, "日本語\u3000x\ty"],
    ["a" * 100_000, "b" * 100_000 + "~"],
])
def test_reference_alphabet_is_every_character(texts: list[str | None]) -> None:
    expected = sorted({c for t in texts if t for c in t})
    assert reference_alphabet(pd.Series(texts, dtype="string[pyarrow]")) == expected
    assert reference_alphabet(pd.Series(texts, dtype=object)) == expected


def test_reference_alphabet_of_a_slice_is_its_own() -> None:
    chunked = pa.chunked_array([pa.array(["xyz", "ab", "é", "q"], pa.large_string()).slice(1, 2)])
    refs = pd.Series(pd.arrays.ArrowStringArray(chunked))
    assert reference_alphabet(refs) == ["a", "b", "é"]


def _pandas_tallies(words: pd.Series, counts: np.ndarray, errors: pd.DataFrame) -> np.ndarray:
    """hits as word_hits takes them: count − (sub + del occurrences), by value_counts and reindex."""
    missed = errors.loc[errors["op"] != "ins", "ref"].value_counts()
    return counts - missed.reindex(words.to_numpy(dtype=object), fill_value=0).to_numpy(dtype=np.int64)


@pytest.mark.parametrize("refs", [
    ["a", "b", None, "a", "zz", "é"],  # "zz" is no vocabulary word; a null ref counts nowhere
    [],
    [None],
])
def test_word_tallies_take_sub_and_del_from_the_count(refs: list[str | None]) -> None:
    ops = (["sub", "del", "ins"] * 3)[: len(refs)]
    errors = pd.DataFrame({"utt": np.arange(len(refs), dtype=np.int64),
                           "op": pd.Categorical(ops, categories=["sub", "del", "ins"]),
                           "ref": pd.array(refs, dtype="string[pyarrow]")})
    counts = pd.DataFrame({"word": pd.array(["a", "b", "c", "é"], dtype="string[pyarrow]"),
                           "count": np.array([5, 4, 3, 2], dtype=np.int64)})
    h = HypothesisField("pred_text", "")
    tallies = word_tallies(counts, [h], {"pred_text": errors})
    hits, scored = (tallies[c].to_numpy() for c in (h.column("hits"), h.column("scored")))
    assert hits.tolist() == _pandas_tallies(counts["word"], counts["count"].to_numpy(), errors).tolist()
    assert scored.tolist() == [5, 4, 3, 2]


def test_unscored_lines_leave_the_tallies() -> None:
    table = pd.DataFrame({"text": pd.array(["a b a", "b c", "a"], dtype="string[pyarrow]"),
                          "pred_text": pd.array(["a b a", None, None], dtype="string[pyarrow]")})
    counts = pd.DataFrame({"word": pd.array(["a", "b", "c", "d"], dtype="string[pyarrow]"),
                           "count": np.array([3, 2, 1, 0], dtype=np.int64)})
    errors = pd.DataFrame({"utt": np.zeros(0, np.int64), "op": pd.Categorical([], categories=["sub", "del", "ins"]),
                           "ref": pd.array([], dtype="string[pyarrow]")})
    h = HypothesisField("pred_text", "")
    tallies = word_tallies(counts, [h], {"pred_text": errors}, table)
    assert tallies[h.column("scored")].tolist() == [2, 1, 0, 0]
    assert tallies[h.column("hits")].tolist() == [2, 1, 0, 0]
    assert occurrences(counts["word"], table["text"][1:]) == pytest.approx([1.0, 1.0, 1.0, 0.0])


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 7])
def test_digest_is_the_sha1_of_the_content(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert digest(str(path)) == hashlib.sha1(data, usedforsecurity=False).hexdigest()
