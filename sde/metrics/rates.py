"""WER, CER and WMR per utterance and over a corpus, with the empty-reference rule.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _rate(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """100·num/den, and the empty-reference rule where den == 0: 0 if num == 0 else 100."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    empty_rate = np.where(numerator > 0, 100.0, 0.0)
    return np.where(denominator > 0, 100.0 * numerator / safe, empty_rate)


def utterance_rates(counts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-utterance ``wer``, ``cer``, ``wmr`` (percent, float64) from ``align_corpus`` counts.

    Empty reference (N = 0, hence C = 0): wer and cer are 0 when the hypothesis is empty too,
    else 100. wmr is 0 for an empty reference (no reference word can be matched; this is also
    what NeMo SDE's hits/1e-9 gives), never NaN.
    """
    errors = np.asarray(counts["sub"]) + np.asarray(counts["del"]) + np.asarray(counts["ins"])
    return {
        "wer": _rate(errors, counts["num_words"]),
        "cer": _rate(counts["char_edits"], counts["num_chars"]),
        "wmr": _rate(counts["hits"], counts["num_words"]),  # hits = 0 when N = 0 → 0
    }


def corpus_rates(
    counts: Mapping[str, np.ndarray], mask: np.ndarray | None = None
) -> dict[str, float]:
    """Corpus ``wer``, ``cer``, ``wmr`` in percent: 100·ΣE/ΣN, 100·ΣCE/ΣC, 100·Σhits/ΣN.

    ``mask`` (boolean array, or integer positions) restricts the utterances. When ΣN = 0 (no
    reference words selected) the empty-reference rule applies to the sums, as for one utterance.
    """

    boolean = mask is not None and np.asarray(mask).dtype == bool

    def total(key: str) -> int:
        values = np.asarray(counts[key])
        if mask is None:
            return int(values.sum())
        if boolean:  # summed in place: a masked copy of each column costs more (10M rows: ~0.1 s each)
            return int(values.sum(where=mask))
        return int(values[mask].sum())

    errors = total("sub") + total("del") + total("ins")
    rates = {
        "wer": _rate(np.array([errors]), np.array([total("num_words")])),
        "cer": _rate(np.array([total("char_edits")]), np.array([total("num_chars")])),
        "wmr": _rate(np.array([total("hits")]), np.array([total("num_words")])),
    }
    return {name: float(value[0]) for name, value in rates.items()}
