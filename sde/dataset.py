"""The built dataset: utterance table, vocabulary table and summary, derived from a manifest.

Everything the app shows is computed here once, at load time (or read back from the cache), so
that page views and API calls only filter, sort and slice precomputed columns.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.manifest import HypothesisField, Problem, read_manifest
from sde.metrics import align_corpus, corpus_rates, mean_word_accuracy, utterance_rates, word_hits
from sde.query import TableQuery

# Per-hypothesis columns of the utterance table, in display order. `char_edits` is kept so that
# corpus CER over any subset (breakdowns, bootstrap) is a sum, not a mean of utterance rates.
HYPOTHESIS_METRICS = ("wer", "cer", "wmr", "sub", "del", "ins", "hits", "char_edits")
NORMALIZED_SUFFIX = "norm"


class DatasetError(Exception):
    """A problem with a data file other than the manifest (vocabulary, alphabet); message names the fix."""


@dataclass(frozen=True)
class DatasetOptions:
    """Every option that changes what is built (and so is part of the cache key)."""

    audio_base_path: str | None = None
    vocab: str | None = None
    pred_fields: tuple[str, ...] = ()
    predictions: str | None = None
    strict: bool = False
    normalize: tuple[str, ...] = ()
    alphabet: str | None = None
    estimate_audio_metrics: bool = False

    def files(self) -> list[str]:
        """Input files besides the manifest whose content changes the result."""
        return [f for f in (self.vocab, self.predictions) if f]


@dataclass
class Dataset:
    name: str
    manifest_path: Path
    options: DatasetOptions
    utterances: pd.DataFrame
    vocabulary: pd.DataFrame
    hypotheses: list[HypothesisField]
    errors: dict[str, pd.DataFrame]
    problems: list[Problem]
    alphabet: list[str]
    total_lines: int = 0
    # Extra per-hypothesis summary numbers that are costly to recompute (e.g. normalised metrics).
    extra_summary: dict = field(default_factory=dict)
    _queries: dict = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def utterance_query(self) -> TableQuery:
        return self._query("utterances")

    @property
    def vocabulary_query(self) -> TableQuery:
        return self._query("vocabulary")

    def _query(self, name: str) -> TableQuery:
        # Built lazily: a TableQuery caches sort orders, which cost memory only once used.
        with self._lock:
            if name not in self._queries:
                self._queries[name] = TableQuery(getattr(self, name))
            return self._queries[name]

    def refresh_queries(self) -> None:
        """Forget cached query engines after a table gained columns (e.g. new predictions)."""
        with self._lock:
            self._queries.clear()

    def hypothesis(self, field_or_label: str) -> HypothesisField:
        for h in self.hypotheses:
            if field_or_label in (h.field, h.name):
                return h
        choices = ", ".join(h.field for h in self.hypotheses) or "none (the manifest has no predictions)"
        raise KeyError(f'unknown hypothesis "{field_or_label}"; choose one of: {choices}')

    def summary(self) -> dict:
        """The /api/summary JSON of DESIGN.md (plus a few extra keys)."""
        utt = self.utterances
        hyps = {}
        for h in self.hypotheses:
            counts = _counts_of(utt, h)
            rates = corpus_rates(counts)
            acc = self.vocabulary[h.column("accuracy")]
            entry = {
                "label": h.label,
                "wer": _json_float(rates["wer"]),
                "cer": _json_float(rates["cer"]),
                "wmr": _json_float(rates["wmr"]),
                "mwa": _json_float(mean_word_accuracy(acc)),
                "substitutions": int(counts["sub"].sum()),
                "deletions": int(counts["del"].sum()),
                "insertions": int(counts["ins"].sum()),
            }
            if h.field in self.extra_summary:
                entry.update(self.extra_summary[h.field])
            hyps[h.field] = entry
        duration = utt["duration"].to_numpy(dtype="float64", na_value=np.nan)
        return {
            "manifest": self.name,
            "utterances": int(len(utt)),
            "hours": _json_float(float(np.nansum(duration)) / 3600.0),
            "vocabulary_size": int(len(self.vocabulary)),
            "alphabet_size": len(self.alphabet),
            "alphabet": "".join(self.alphabet),
            "words": int(utt["num_words"].sum()),
            "characters": int(utt["num_chars"].sum()),
            "hypotheses": hyps,
            "skipped_lines": len(self.problems),
            "total_lines": int(self.total_lines),
            "normalize": list(self.options.normalize),
        }


def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _counts_of(utt: pd.DataFrame, h: HypothesisField) -> dict[str, np.ndarray]:
    counts = {m: utt[h.column(m)].to_numpy() for m in ("sub", "del", "ins", "hits", "char_edits")}
    counts["num_words"] = utt["num_words"].to_numpy()
    chars = h.column("ref_chars") if h.column("ref_chars") in utt else "num_chars"
    counts["num_chars"] = utt[chars].to_numpy()
    return counts


def build_dataset(
    manifest: str | Path,
    options: DatasetOptions = DatasetOptions(),
    *,
    progress: bool = False,
    workers: int | None = None,
    status: Callable[[str], None] | None = None,
) -> Dataset:
    """Read, validate and score a manifest. `status` receives one line per stage (for the CLI)."""
    say = status or (lambda msg: print(msg, file=sys.stderr) if progress else None)
    workers = workers or min(2, os.cpu_count() or 1)
    m = read_manifest(
        manifest,
        audio_base_path=options.audio_base_path,
        pred_fields=options.pred_fields,
        predictions=options.predictions,
        strict=options.strict,
        progress=progress,
    )
    table = m.table
    refs = table["text"]
    _add_text_stats(table)

    errors: dict[str, pd.DataFrame] = {}
    extra: dict[str, dict] = {}
    for h in m.hypotheses:
        say(f"scoring {h.field} ({len(table):,} utterances)")
        alignment = align_corpus(refs.tolist(), table[h.field].tolist(), workers=workers)
        _add_hypothesis_columns(table, h, alignment.counts)
        errors[h.field] = alignment.errors

    vocabulary = _vocabulary(refs, m.hypotheses, errors, options.vocab)

    if options.normalize:
        from sde.text import normalize_many

        say(f"scoring with normalisation {','.join(options.normalize)}")
        norm_refs = normalize_many(refs.tolist(), options.normalize)
        for h in m.hypotheses:
            norm_hyps = normalize_many(table[h.field].tolist(), options.normalize)
            alignment = align_corpus(norm_refs, norm_hyps, workers=workers)
            rates = utterance_rates(alignment.counts)
            table[_norm_column(h, "wer")] = rates["wer"]
            table[_norm_column(h, "cer")] = rates["cer"]
            corpus = corpus_rates(alignment.counts)
            nvocab = word_hits(pd.Series(norm_refs), alignment.errors)
            nacc = 100.0 * nvocab["hits"] / nvocab["count"]
            extra[h.field] = {
                "normalized": {
                    "wer": _json_float(corpus["wer"]),
                    "cer": _json_float(corpus["cer"]),
                    "wmr": _json_float(corpus["wmr"]),
                    "mwa": _json_float(mean_word_accuracy(nacc)),
                }
            }

    if options.alphabet:
        _add_alphabet_check(table, options.alphabet)

    if options.estimate_audio_metrics:
        from sde.audio import compute_audio_metrics

        say("measuring audio")
        metrics = compute_audio_metrics(table, workers=workers, progress=progress)
        for col in metrics.columns:
            table[col] = metrics[col].to_numpy()

    return Dataset(
        name=Path(manifest).name,
        manifest_path=Path(manifest).resolve(),
        options=options,
        utterances=table,
        vocabulary=vocabulary,
        hypotheses=list(m.hypotheses),
        errors=errors,
        problems=list(m.problems),
        alphabet=_alphabet(refs),
        total_lines=m.total_lines,
        extra_summary=extra,
    )


def _norm_column(h: HypothesisField, metric: str) -> str:
    return f"{h.column(metric)}_{NORMALIZED_SUFFIX}"


def _arrow(series: pd.Series) -> pa.Array:
    arr = pa.array(series)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _add_text_stats(table: pd.DataFrame) -> None:
    text = _arrow(table["text"])
    num_words = pc.list_value_length(pc.utf8_split_whitespace(text)).to_numpy(zero_copy_only=False)
    num_chars = pc.utf8_length(text).to_numpy(zero_copy_only=False)
    duration = table["duration"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        # A zero duration has no meaningful rate: NaN, not infinity, so histograms stay sane.
        word_rate = np.where(duration > 0, num_words / duration, np.nan)
        char_rate = np.where(duration > 0, num_chars / duration, np.nan)
    table["num_words"] = num_words.astype("int64")
    table["num_chars"] = num_chars.astype("int64")
    table["word_rate"] = word_rate
    table["char_rate"] = char_rate


def _add_hypothesis_columns(table: pd.DataFrame, h: HypothesisField, counts: dict[str, np.ndarray]) -> None:
    rates = utterance_rates(counts)
    for metric in ("wer", "cer", "wmr"):
        table[h.column(metric)] = rates[metric]
    for metric in ("sub", "del", "ins", "hits", "char_edits"):
        table[h.column(metric)] = counts[metric].astype("int64")
    # The metrics module's character count is the CER denominator; keep it only where it differs
    # from the displayed `num_chars` (it may collapse whitespace the way jiwer does).
    ref_chars = counts["num_chars"].astype("int64")
    if not np.array_equal(ref_chars, table["num_chars"].to_numpy()):
        table[h.column("ref_chars")] = ref_chars


def _vocabulary(
    refs: pd.Series,
    hypotheses: Sequence[HypothesisField],
    errors: dict[str, pd.DataFrame],
    vocab_file: str | None,
) -> pd.DataFrame:
    empty_errors = pd.DataFrame(
        {
            "utt": pd.Series([], dtype="int64"),
            "op": pd.Categorical([], categories=["sub", "del", "ins"]),
            "ref": pd.Series([], dtype="string[pyarrow]"),
            "hyp": pd.Series([], dtype="string[pyarrow]"),
        }
    )
    base = word_hits(refs, empty_errors)[["word", "count"]]
    vocab = base.sort_values(["count", "word"], ascending=[False, True], kind="stable").reset_index(drop=True)
    for h in hypotheses:
        hits = word_hits(refs, errors[h.field]).set_index("word")["hits"]
        aligned = hits.reindex(vocab["word"]).to_numpy(dtype="float64")
        vocab[h.column("accuracy")] = 100.0 * aligned / vocab["count"].to_numpy(dtype="float64")
    if vocab_file:
        known = read_word_list(vocab_file)
        vocab["oov"] = ~vocab["word"].isin(known).to_numpy()
    return vocab


def read_word_list(path: str | Path) -> set[str]:
    """A vocabulary file: one word per line, or TSV whose first column is the word."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: vocabulary file not found; pass --vocab with a word list (one word per line)")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the vocabulary file ({e.strerror})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not valid UTF-8; save the vocabulary file as UTF-8")
    words = set()
    for line in text.splitlines():
        word = line.split("\t", 1)[0].strip()
        if word:
            words.add(word)
    if not words:
        raise DatasetError(f"{path}: the vocabulary file has no words; give one word per line")
    return words


def _alphabet(refs: pd.Series) -> list[str]:
    joined = "".join(refs.tolist())
    if not joined:
        return []
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    present = np.flatnonzero(np.bincount(codes))
    return [chr(c) for c in present]


def _add_alphabet_check(table: pd.DataFrame, alphabet: str) -> None:
    from sde.analysis import alphabet_check

    oov_chars, _counts = alphabet_check(table["text"], alphabet)
    table["oov_chars"] = oov_chars


def with_predictions(dataset: Dataset, field_name: str, predictions: Sequence[str], label: str = "") -> Dataset:
    """A copy of `dataset` with one more hypothesis field scored (e.g. after transcription in the UI)."""
    table = dataset.utterances.copy()
    table[field_name] = pd.Series(list(predictions), dtype="string[pyarrow]").to_numpy()
    h = HypothesisField(field=field_name, label=label)
    alignment = align_corpus(table["text"].tolist(), table[field_name].tolist(), workers=min(2, os.cpu_count() or 1))
    _add_hypothesis_columns(table, h, alignment.counts)
    errors = dict(dataset.errors)
    errors[field_name] = alignment.errors
    hypotheses = [*dataset.hypotheses, h]
    vocabulary = _vocabulary(table["text"], hypotheses, errors, dataset.options.vocab)
    return dataclasses.replace(
        dataset,
        utterances=table,
        vocabulary=vocabulary,
        hypotheses=hypotheses,
        errors=errors,
        _queries={},
        _lock=threading.Lock(),
    )
