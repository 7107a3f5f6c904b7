"""Error analysis over the utterance table and the per-hypothesis error tables.

Pure computation (numpy / pandas / pyarrow, never dash): the error-analysis page, the JSON routes
``/api/errors``, ``/api/breakdown``, ``/api/compare`` and users' scripts all call these functions.

Inputs are the structures of docs/internals.md:

- the utterance table (``Dataset.utterances``): RangeIndex == utterance id, shared columns
  ``num_words`` and ``num_chars``, and per hypothesis ``sub del ins hits wer cer wmr char_edits``
  under ``HypothesisField.column(metric)`` names (``sub`` / ``sub_conformer`` …);
- an errors table (``CorpusAlignment.errors``): ``utt`` (int64 id), ``op`` ("sub"|"del"|"ins"),
  ``ref`` (<NA> for insertions), ``hyp`` (<NA> for deletions).

Functions that take hypothesis columns accept either a ``HypothesisField`` (anything with a
``column(metric)`` method) or a mapping ``metric -> column name`` (see :func:`hypothesis_columns`).
A subset of utterances (a filter's result) is passed as ``utt_ids``: an integer array of ids or a
boolean mask over the utterance table.

Rates follow DESIGN.md: corpus WER = 100·ΣE/ΣN and CER = 100·ΣCE/ΣC (sums, not means); when the
denominator is 0 (only empty references) the rate is 0 if there are no errors, else 100.

One module per job, their public names re-exported here: ``rates`` (hypothesis columns, selections,
corpus rates), ``errors`` (confusions), ``bootstrap`` (intervals, paired comparison), ``groups``
(breakdowns by a column), ``comparison`` (A vs B per word and utterance), ``alphabet`` (text checks).
"""

from __future__ import annotations

from sde.analysis.alphabet import AlphabetCheck, alphabet_check, any_digit, count_with_digits, has_digits
from sde.analysis.bootstrap import bootstrap_wer, compare
from sde.analysis.groups import (
    BREAKDOWN_SORTS,
    CI_EXACT_MAX,
    DURATION_BUCKET_EDGES,
    DURATION_BUCKET_LABELS,
    GroupedRates,
    breakdown,
    breakdown_columns,
    duration_bucket,
    group_counts,
    group_rates,
    parse_breakdown_sort,
)
from sde.analysis.comparison import (
    subset_vocabulary,
    utterance_comparison,
    word_accuracy_comparison,
    word_comparison,
)
from sde.analysis.errors import affected_utterances, prepare as prepare_errors, top_errors, utterances_with_error
from sde.analysis.rates import Columns, UttIds, corpus_wer, hypothesis_columns, scored_rows, selection_totals

__all__ = [
    "BREAKDOWN_SORTS",
    "CI_EXACT_MAX",
    "DURATION_BUCKET_EDGES",
    "DURATION_BUCKET_LABELS",
    "AlphabetCheck",
    "GroupedRates",
    "affected_utterances",
    "alphabet_check",
    "bootstrap_wer",
    "breakdown",
    "breakdown_columns",
    "compare",
    "corpus_wer",
    "any_digit",
    "count_with_digits",
    "duration_bucket",
    "group_counts",
    "group_rates",
    "has_digits",
    "hypothesis_columns",
    "parse_breakdown_sort",
    "scored_rows",
    "selection_totals",
    "subset_vocabulary",
    "top_errors",
    "prepare_errors",
    "utterance_comparison",
    "utterances_with_error",
    "word_accuracy_comparison",
    "word_comparison",
    "Columns",
    "UttIds",
]
