"""The vocabulary table: reference word counts and each hypothesis's word accuracy.

Built from word tallies (count, hits and scored occurrences per word and hypothesis) because
tallies add up: the vocabulary of a dataset built part by part (sde.build) is that of the sum of
its parts' tallies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.manifest import HypothesisField
from sde.metrics import word_counts


def hypothesis_missing(table: pd.DataFrame, h: HypothesisField) -> np.ndarray:
    """Rows whose line has no value for the hypothesis field (absent or null in the manifest, or no
    matching prediction): they are left out of that hypothesis's scores, never scored as ""."""
    return np.asarray(table[h.field].isna(), dtype=bool)


def counts_table(ref_word_counts: dict[str, int] | pa.Table) -> pd.DataFrame:
    """A word → count mapping (or an Arrow table of words and counts) as the `word_counts` table:
    most frequent first, then by word."""
    if isinstance(ref_word_counts, pa.Table):
        # Arrow orders strings by their UTF-8 bytes, which is code point order, as Python's: the
        # same order, without a Python string per word
        table = ref_word_counts.select(["word", "count"])
        table = table.take(pc.sort_indices(table, sort_keys=[("count", "descending"), ("word", "ascending")]))
        words = table["word"].combine_chunks()
        return pd.DataFrame({"word": pd.array(words.cast(pa.large_string()) if words.type != pa.large_string() else words,
                                              dtype="string[pyarrow]"),
                             "count": table["count"].to_numpy().astype("int64")})
    words = pd.array(list(ref_word_counts), dtype="string[pyarrow]")
    counts = np.fromiter(ref_word_counts.values(), dtype="int64", count=len(ref_word_counts))
    order = np.lexsort((np.asarray(words, dtype=object), -counts))
    return pd.DataFrame({"word": words[order], "count": counts[order]})


def vocabulary_table(
    ref_word_counts: pd.DataFrame,
    hypotheses: Sequence[HypothesisField],
    errors: dict[str, pd.DataFrame],
    known: set[str] | None,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """word, count, accuracy per hypothesis (and oov with a vocabulary file) from a counts table.

    `count` counts every reference; a hypothesis's accuracy only the occurrences on lines that have
    that hypothesis (`table` tells which), NaN for a word that occurs on no such line.
    """
    return vocabulary_from_tallies(word_tallies(ref_word_counts, hypotheses, errors, table), hypotheses, known)


def tally_columns(h: HypothesisField) -> tuple[str, str]:
    """The word-tally columns of one hypothesis: hits, and occurrences on lines it scores."""
    return h.column("hits"), h.column("scored")


def word_tallies(ref_word_counts: pd.DataFrame, hypotheses: Sequence[HypothesisField],
                 errors: dict[str, pd.DataFrame], table: pd.DataFrame | None = None) -> pd.DataFrame:
    """word, count and per hypothesis (hits, scored occurrences): the sums the vocabulary's
    accuracies are ratios of, so that the tallies of parts of a dataset add up (sde.build)."""
    tallies = ref_word_counts[["word", "count"]].reset_index(drop=True)
    count = tallies["count"].to_numpy(dtype="int64")
    words = _arrow_strings(tallies["word"])
    for h in hypotheses:
        hits = count - _missed(words, errors[h.field])
        scored_count = count
        missing = hypothesis_missing(table, h) if table is not None else None
        if missing is not None and missing.any():
            # every occurrence without an error is a hit above; those on unscored lines are not
            unscored = _occurrences(words, table["text"][missing]).astype("int64")
            scored_count, hits = count - unscored, hits - unscored
        hits_column, scored_column = tally_columns(h)
        tallies[hits_column] = hits
        tallies[scored_column] = scored_count
    return tallies


def vocabulary_from_tallies(tallies: pd.DataFrame, hypotheses: Sequence[HypothesisField],
                            known: set[str] | None) -> pd.DataFrame:
    """The vocabulary table (word, count, accuracy per hypothesis, and oov against ``known``, the
    --vocab word list) from word tallies."""
    vocab = tallies[["word", "count"]].reset_index(drop=True)
    for h in hypotheses:
        hits_column, scored_column = tally_columns(h)
        hits = tallies[hits_column].to_numpy(dtype="float64")
        scored_count = tallies[scored_column].to_numpy(dtype="float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            vocab[h.column("accuracy")] = np.where(scored_count > 0, 100.0 * hits / scored_count, np.nan)
    if known is not None:
        vocab["oov"] = ~vocab["word"].isin(known).to_numpy()
    return vocab


def occurrences(words: pd.Series, texts: pd.Series) -> np.ndarray:
    """How often each of `words` occurs in `texts` (float64, aligned with `words`)."""
    return _occurrences(_arrow_strings(words), texts).astype("float64")


def _occurrences(words: pa.Array, texts: pd.Series) -> np.ndarray:
    counts = word_counts(texts)
    return _per_word(words, _arrow_strings(counts["word"]), counts["count"].to_numpy(dtype="int64"))


def _missed(words: pa.Array, errors: pd.DataFrame) -> np.ndarray:
    """Per word, its occurrences as the reference side of a substitution or deletion (int64):
    what word_hits takes from the count. Arrow's hash kernels, not pandas' value_counts and reindex
    over Python strings: a third of the CPU, in every part of a build."""
    missed = (errors["op"] != "ins").to_numpy(dtype=bool)
    if not missed.any():
        return np.zeros(len(words), dtype=np.int64)
    encoded = pc.dictionary_encode(_arrow_strings(errors["ref"]))
    codes = pc.fill_null(encoded.indices, -1).to_numpy()
    codes = codes[missed & (codes >= 0)]  # a null ref is no word: value_counts drops it
    per_code = np.bincount(codes, minlength=len(encoded.dictionary)).astype(np.int64)
    return _per_word(words, encoded.dictionary, per_code)


def _per_word(words: pa.Array, keys: pa.Array, values: np.ndarray) -> np.ndarray:
    """``values`` (one per distinct key) looked up for each of ``words``, 0 for a word not among
    ``keys``, as ``pd.Series(values, keys).reindex(words, fill_value=0)``."""
    if len(keys) == 0:
        return np.zeros(len(words), dtype=values.dtype)
    position = pc.index_in(words, value_set=keys.cast(words.type))
    found = position.is_valid().to_numpy(zero_copy_only=False)
    out = np.zeros(len(words), dtype=values.dtype)
    out[found] = values[pc.fill_null(position, 0).to_numpy()[found]]
    return out


def _arrow_strings(values: pd.Series) -> pa.Array:
    """A string column as one Arrow array, zero-copy when it is Arrow-backed; missing → null."""
    arr = pa.array(values.array, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    return arr
