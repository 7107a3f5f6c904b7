"""Text checks of transcripts: characters outside a model's alphabet, and digits a character
model cannot spell. Vectorised with pyarrow's string kernels.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.analysis.rates import STRING, _unique_counts
from sde.compressed_columns import string_chunks
from sde.text import string_buffers

class AlphabetCheck(NamedTuple):
    oov_chars: pd.Series   # string: each utterance's distinct characters outside the alphabet, sorted ("" if none)
    counts: pd.DataFrame   # char, count (occurrences), utterances (containing it), example_id (first one); by count desc


def _text_array(texts: pd.Series) -> pa.Array:
    """Texts as one Arrow string array, missing → ""."""
    if isinstance(texts.dtype, pd.StringDtype):
        arr = pa.array(texts.array)
    else:
        arr = pa.array(pd.Series(texts, dtype=object).where(texts.notna(), ""), type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.fill_null(arr, "")


def has_digits(texts: pd.Series) -> pd.Series:
    """Boolean Series: the text contains a decimal digit of any script (Unicode Nd: 0-9, ٠-٩, …),
    i.e. numbers a char model cannot spell unless they are written out as words."""
    found = pc.match_substring_regex(_text_array(texts), r"\p{Nd}").to_numpy(zero_copy_only=False).astype(bool)
    return pd.Series(found, index=texts.index, name="has_digits")


def any_digit(chars: Iterable[str]) -> bool:
    """Whether any of the characters is one :func:`has_digits` looks for (Unicode Nd)."""
    return any(unicodedata.category(c) == "Nd" for c in chars)


def count_with_digits(texts: pd.Series) -> int:
    """How many texts :func:`has_digits` would flag, read a batch at a time (a transcript column of
    10M rows stored compressed is never decompressed whole for it)."""
    return sum(int(pc.sum(pc.match_substring_regex(chunk, r"\p{Nd}")).as_py() or 0)
               for chunk in string_chunks(texts))


def _utf8_lengths(cps: np.ndarray) -> np.ndarray:
    return 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)


def alphabet_check(texts: pd.Series, alphabet: str | Sequence[str]) -> AlphabetCheck:
    """Characters of ``texts`` outside ``alphabet`` (e.g. NeMo char models: "abc…z '").

    The alphabet is taken literally, character by character (include the space if it is allowed).
    Returns ``(oov_chars, counts)`` (see :class:`AlphabetCheck`; digits: :func:`has_digits`).
    Missing texts count as empty. Vectorised: pyarrow strips the allowed characters, and the few
    left over are counted as code points.
    """
    allowed = sorted(set("".join(alphabet)))
    index = texts.index
    arr = _text_array(texts)
    if allowed:
        cls = "[" + "".join(f"\\x{{{ord(c):X}}}" for c in allowed) + "]+"
        rest = pc.replace_substring_regex(arr, cls, "")
    else:
        rest = arr
    lengths = pc.utf8_length(rest).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(lengths)
    nonempty = np.flatnonzero(lengths)
    if nonempty.size:
        joined = "".join(rest.take(pa.array(nonempty)).to_pylist())
        cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        utt = np.repeat(nonempty, lengths[nonempty])
    else:
        cps = np.zeros(0, dtype=np.int64)
        utt = np.zeros(0, dtype=np.int64)

    # Dense codes for the distinct characters (few: an alphabet's worth), in code point order.
    if cps.size:
        full = np.bincount(cps)
        chars = np.flatnonzero(full)
        count = full[chars]
        lookup = np.zeros(full.size, dtype=np.int64)
        lookup[chars] = np.arange(chars.size)
        code = lookup[cps]
    else:
        chars = count = code = np.zeros(0, dtype=np.int64)
    nchars = max(chars.size, 1)
    # Distinct (utterance, char) pairs, sorted by utterance then code point.
    pair, _ = _unique_counts(utt * nchars + code)
    p_utt, p_code = pair // nchars, pair % nchars
    p_cp = chars[p_code] if chars.size else p_code
    # Build the per-utterance strings straight as an Arrow array: offsets from UTF-8 byte lengths.
    byte_len = np.bincount(p_utt, weights=_utf8_lengths(p_cp), minlength=n).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(byte_len, out=offsets[1:])
    data = p_cp.astype(np.uint32).tobytes().decode("utf-32-le").encode("utf-8")
    oov = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
    oov_series = pd.Series(pd.array(oov.cast(pa.string()), dtype=STRING), index=index, name="oov_chars")

    utterances = np.bincount(p_code, minlength=chars.size)
    first = np.full(chars.size, n, dtype=np.int64)
    np.minimum.at(first, p_code, p_utt)  # p_utt is a position; ids are the index's labels
    example = np.asarray(index)[first] if chars.size else np.zeros(0, dtype=np.int64)
    char_str = np.array([chr(c) for c in chars], dtype=object)
    order = np.lexsort([chars, -count])
    counts = pd.DataFrame({
        "char": pd.array(char_str[order].tolist(), dtype=STRING),
        "count": count[order].astype(np.int64),
        "utterances": utterances[order].astype(np.int64),
        "example_id": example[order].astype(np.int64),
    })
    return AlphabetCheck(oov_series, counts)


def reference_alphabet(refs: pd.Series) -> list[str]:
    """Every distinct character of the references, sorted."""
    chars: set[str] = set()
    for arr in arrow_chunks(refs):
        if arr.null_count == len(arr):  # nothing, and perhaps of the null type (no offsets)
            continue
        offsets, data = string_buffers(arr)
        start, end = int(offsets[0]), int(offsets[-1])
        present = _bytes_present(data[start:end].tobytes()) if end > start else []
        chars.update(chr(b) for b in present if b < 0x80)
        if present and present[-1] >= 0x80:
            # Only the utterances with non-ASCII text need decoding into code points.
            non_ascii = pc.filter(arr, pc.invert(pc.fill_null(pc.string_is_ascii(arr), True)))
            for text in non_ascii.to_pylist():
                chars.update(text)
    return sorted(chars)


def _bytes_present(data: bytes) -> list[int]:
    """The distinct byte values of ``data``, ascending. A sample's bytes are deleted from the rest
    (bytes.translate: ~1 ns a byte, no copy to int64 as np.bincount makes, a sixth of its cost)
    until nothing is left: text uses few distinct bytes, most of them in any sample of it."""
    present: set[int] = set()
    rest = data
    for _ in range(8):
        if not rest:
            return sorted(present)
        sample = set(rest[: 1 << 16])
        present |= sample
        rest = rest.translate(None, bytes(sample))
    # Bytes that keep turning up only past each sample (data sorted by byte, say): a histogram
    # bounds the passes over them
    tail = np.frombuffer(rest, dtype=np.uint8)
    for lo in range(0, len(tail), 1 << 20):  # bincount widens to int64: chunks bound that copy
        present.update(np.flatnonzero(np.bincount(tail[lo : lo + (1 << 20)], minlength=256)).tolist())
    return sorted(present)


def arrow_chunks(series: pd.Series) -> list[pa.Array]:
    """The column's Arrow chunks, zero-copy when it is Arrow-backed."""
    data = getattr(series.array, "_pa_array", None)
    if data is None:
        data = pa.array(series, from_pandas=True)
    return list(data.chunks) if isinstance(data, pa.ChunkedArray) else [data]
