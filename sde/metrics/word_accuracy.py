"""Per-word accuracy over the reference vocabulary, and its mean (MWA).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.text import split_words, to_arrow_strings

_STRING_DTYPE = pd.StringDtype("pyarrow")


def word_counts(ref_texts: Sequence[str] | pd.Series | pa.Array) -> pd.DataFrame:
    """Reference vocabulary: ``word`` (string[pyarrow]) and ``count`` (int64, occurrences).

    Sorted by count descending, then word. Vectorised with Arrow (split + hash count), because it
    runs over every reference word at load time. Words are ``str.split()`` tokens.
    """
    tokens = split_words(to_arrow_strings(ref_texts))
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    encoded = pc.dictionary_encode(tokens)
    counts = np.bincount(
        encoded.indices.to_numpy(zero_copy_only=False), minlength=len(encoded.dictionary)
    ).astype(np.int64)
    vocab = pd.DataFrame(
        {
            "word": pd.array(encoded.dictionary.cast(pa.large_string()), dtype=_STRING_DTYPE),
            "count": counts,
        }
    )
    return _sort_vocab(vocab)


def _sort_vocab(vocab: pd.DataFrame) -> pd.DataFrame:
    order = np.lexsort((vocab["word"].to_numpy(dtype=object), -vocab["count"].to_numpy()))
    return vocab.iloc[order].reset_index(drop=True)


def word_hits(
    ref_texts: Sequence[str] | pd.Series | pa.Array | pd.DataFrame, errors: pd.DataFrame
) -> pd.DataFrame:
    """Per reference word: ``word``, ``count`` (reference occurrences), ``hits`` (int64).

    hits = count − occurrences of the word as the reference side of a sub/del error, i.e. the
    reference occurrences aligned as hits; word accuracy = 100·hits/count. ``ref_texts`` may also
    be a ``word_counts`` table, so several hypotheses can share one count of the references.
    ``errors`` is ``CorpusAlignment.errors`` of the same references.
    """
    vocab = ref_texts if isinstance(ref_texts, pd.DataFrame) else word_counts(ref_texts)
    vocab = vocab[["word", "count"]].reset_index(drop=True)
    missed_refs = errors.loc[errors["op"] != "ins", "ref"]
    missed = missed_refs.value_counts()  # index: word, value: sub + del occurrences
    missed_per_word = missed.reindex(vocab["word"].to_numpy(dtype=object), fill_value=0)
    vocab["hits"] = vocab["count"].to_numpy(dtype=np.int64) - missed_per_word.to_numpy(
        dtype=np.int64
    )
    return vocab


def mean_word_accuracy(vocab_hits: pd.DataFrame) -> float:
    """MWA: mean over the reference vocabulary of word accuracy 100·hits/count, in percent.

    Words with count 0 are ignored; an empty vocabulary gives 0.0 (never NaN, like the rates).
    """
    count = vocab_hits["count"].to_numpy(dtype=np.float64)
    hits = vocab_hits["hits"].to_numpy(dtype=np.float64)
    present = count > 0
    if not present.any():
        return 0.0
    return float(np.mean(100.0 * hits[present] / count[present]))
