"""The built dataset: utterance table, vocabulary table and summary, derived from a manifest.

Everything the app shows is computed here once, at load time (or read back from the cache), so
that page views and API calls only filter, sort and slice precomputed columns.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.analysis import alphabet_check, has_digits
from sde.audio_presence import audio_presence_summary
from sde.analysis.alphabet import reference_alphabet
from sde.caching import CacheRegistry, for_dataset
from sde.filters import column_ref
from sde.manifest import HypothesisField, Manifest, ManifestPart, Problem, read_manifest
from sde.manifest.hypotheses import MatchedPredictions
from sde.sources import SourceSet, expand_sources
from sde.metrics import (LongUtterance, align_corpus, corpus_rates, mean_word_accuracy, utterance_rates,
                         word_counts, word_hits)
from sde.query import QueryError, TableQuery, VirtualSql
from sde.text import normalize_many, parse_normalize
from sde.vocabulary import (counts_table, hypothesis_missing, vocabulary_from_tallies, vocabulary_table,
                            word_tallies)

# Per-hypothesis columns of the utterance table, in display order. `char_edits` is kept so that
# corpus CER over any subset (breakdowns, bootstrap) is a sum, not a mean of utterance rates.
HYPOTHESIS_METRICS = ("wer", "cer", "wmr", "sub", "del", "ins", "hits", "char_edits")
#: Each hypothesis's transcript checks (sde.quality.apply adds them when asked).
HYPOTHESIS_CHECKS = ("hyp_repeated_ngram", "ins_burst", "length_ratio")
NORMALIZED_SUFFIX = "norm"
# pandas warns, at each column added to a frame of over 100 blocks, that it is "highly fragmented"
# and advises a copy. sde's tables are so on purpose: each column keeps its own (often memory-mapped)
# buffer, and a copy would read every one into memory. A dozen hypotheses (a hundred metric columns)
# made every start print the warning.
warnings.filterwarnings("ignore", message="DataFrame is highly fragmented", category=pd.errors.PerformanceWarning)
# Normalisation choices whose corpus scores are kept per dataset (the UI toggles between a few).
NORMALIZED_SUMMARY_CACHE_SIZE = 16


class DatasetError(Exception):
    """A problem with a data file other than the manifest (vocabulary, alphabet); message names the fix."""


@dataclass(frozen=True)
class DatasetOptions:
    """Every option that changes what is built (and so is part of the cache key)."""

    audio_base_path: str | None = None
    vocab: str | None = None
    pred_fields: tuple[str, ...] = ()
    # --predictions, repeatable: each file becomes a hypothesis of its own, named by
    # sde.manifest.hypotheses.predictions_fields (in this order, which settles clashing names)
    predictions: tuple[str, ...] = ()
    strict: bool = False
    normalize: tuple[str, ...] = ()
    alphabet: str | None = None
    # Measured by sde.audio_quality.with_measured_audio after the build (this module decodes no audio).
    estimate_audio_metrics: bool = False
    # --tarred-audio: NeMo tarred audio, the shard pattern as typed (expanded into Dataset.tar_shards).
    tarred_audio: str | None = None

    def __post_init__(self) -> None:
        # one file given as a string (the API before --predictions repeated) is a tuple of one
        if isinstance(self.predictions, (str, os.PathLike)):
            object.__setattr__(self, "predictions", (str(self.predictions),))
        elif self.predictions is None:
            object.__setattr__(self, "predictions", ())
        else:
            object.__setattr__(self, "predictions", tuple(str(p) for p in self.predictions))

    def files(self) -> list[str]:
        """Input files besides the manifest whose content changes the result."""
        return [f for f in (self.vocab, *self.predictions) if f]


#: The layout of Dataset.summary_sums: kept ones of another layout are computed again.
SUMS_FORMAT = 2


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
    # Notes about lines that were kept (e.g. predictions that matched no line); shown with problems.
    warnings: list[Problem] = field(default_factory=list)
    # --alphabet: the characters outside it (with counts) and references with digits.
    alphabet_report: dict | None = None
    # Extra per-hypothesis summary numbers that are costly to recompute (e.g. normalised metrics).
    extra_summary: dict = field(default_factory=dict)
    # Tar files holding the audio, index = a row's `shard_id` (NeMo tarred audio, Lhotse Shar).
    tar_shards: tuple[str, ...] = ()
    # The files its stored tables are read from, in the order a start reads them ahead
    # (sde.cache.read_ahead); () where it was built in this process and not read back.
    files: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # Size and modification time of each local manifest file as it was read (its real path → the
    # stamp, sde.lines.local_stamps): a line read back later (export, a download, a review's key)
    # refuses a file edited since, not only one edited after its first read back.
    read_stamps: dict = field(default_factory=dict, compare=False, repr=False)
    # Incremented by replace_with: the caches of sde.caching.for_dataset are per generation.
    generation: int = field(default=0, compare=False)
    _queries: dict = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # init=False: a copy (dataclasses.replace, with_predictions) starts with caches of its own.
    _caches: CacheRegistry = field(default_factory=CacheRegistry, init=False, repr=False, compare=False)

    @property
    def caches(self) -> CacheRegistry:
        """The named in-memory caches derived from this dataset (see sde.caching.for_dataset)."""
        return self._caches

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
                virtual = self._error_columns() if name == "utterances" else None
                self._queries[name] = TableQuery(getattr(self, name), virtual=virtual)
            return self._queries[name]

    def _error_columns(self) -> dict:
        """Filter-only columns `error` / `error_<label>`: `{error} = "sub cat bat"` selects the
        utterances where that hypothesis substituted "cat" by "bat" (also "del WORD", "ins WORD")."""
        return {h.column("error"): functools.partial(self._error_sql, h) for h in self.hypotheses}

    def _error_sql(self, h: HypothesisField, op: str, value: str) -> VirtualSql:
        """The clause as SQL over the hypothesis' error table (its `utt` is the row position)."""
        column = column_ref(h.column("error"))
        parts = str(value).split()
        kind = parts[0] if parts else ""
        if op != "=" or not ((kind == "sub" and len(parts) == 3) or (kind in ("del", "ins") and len(parts) == 2)):
            raise QueryError(f'{column} selects utterances by one word error: {column} = "sub REF HYP", '
                             f'{column} = "del WORD" or {column} = "ins WORD".')
        words = {"sub": "ref = ? AND hyp = ?", "del": "ref = ?", "ins": "hyp = ?"}[kind]
        table = f"errors_{self.hypotheses.index(h)}"
        return VirtualSql(f"pos IN (SELECT utt FROM {table} WHERE op = '{kind}' AND {words})",
                          tuple(parts[1:]), {table: self.errors[h.field]})

    def replace_with(self, other: "Dataset", *, keep: Iterable[str] = (), keepers: str = "none") -> None:
        """Become `other` in place (e.g. after predictions arrive), so every holder sees the update.
        Every cache derived from the old tables goes, but those named in ``keep`` (values that hold
        for `other`'s tables too), and the build's keepers are kept as ``keepers`` says
        (sde.caching.CacheRegistry.renew: "all" where `other` only gained a column no kept value
        reads, "columns" where it gained columns derived from the text)."""
        with self._lock:
            names = {f.name for f in dataclasses.fields(self)}
            for name in names:
                if not name.startswith("_") and name != "generation":
                    setattr(self, name, getattr(other, name))
            self._queries.clear()
            # Every cache derived from the old tables is now stale: for_dataset starts new ones.
            self.generation += 1
            self._caches.renew(self.generation - 1, self.generation, keep=keep, keepers=keepers)
            # Anything else hung on the instance is a cache derived from the old tables.
            for name in [k for k in vars(self) if k not in names]:
                delattr(self, name)

    def hypothesis(self, field_or_label: str) -> HypothesisField:
        for h in self.hypotheses:
            if field_or_label in (h.field, h.name):
                return h
        choices = ", ".join(h.field for h in self.hypotheses) or "none (the manifest has no predictions)"
        raise KeyError(f'unknown hypothesis "{field_or_label}"; choose one of: {choices}')

    def skipped(self) -> dict[str, int]:
        """The bad lines and the whole manifest files (of several) left out, counted apart: a file
        left out is problem line 0, not a bad line."""
        files = sum(1 for p in self.problems if not p.line)
        return {"skipped_lines": len(self.problems) - files, "skipped_files": files}

    def summary(self) -> dict:
        """The /api/summary JSON of DESIGN.md (plus a few extra keys). Computed once per dataset
        generation, from :meth:`summary_sums` (a caller asking while another computes it waits for
        that); each caller gets its own copy."""
        computed = for_dataset(self, "summary", 1).get_or_compute_once("summary", self._summary)
        return copy.deepcopy(computed)

    def summary_sums(self) -> dict:
        """The summary's sums over every row: hours, words, characters and each hypothesis' rates and
        error counts (~0.3 s at 10M utterances with the columns in memory, seconds from disk: ~24
        columns read). The cache keeps them beside a built dataset (sde.cache), so that a start reads
        no column for its first page."""
        return for_dataset(self, "summary sums", 1).get_or_compute_once("sums", self._sums)

    def preset_summary_sums(self, sums: object) -> bool:
        """Take sums kept for this dataset (see :meth:`summary_sums`) instead of computing them;
        False, and ignored, where they are not of its rows and hypotheses or of this version's
        layout. A new generation (replace_with) or a copy computes its own."""
        hypotheses = sums.get("hypotheses") if isinstance(sums, dict) else None
        if not (isinstance(sums, dict) and sums.get("format") == SUMS_FORMAT and isinstance(hypotheses, dict)
                and sums.get("utterances") == len(self.utterances)
                and set(hypotheses) == {h.field for h in self.hypotheses}):
            return False
        for_dataset(self, "summary sums", 1).put("sums", sums)
        return True

    def _sums(self) -> dict:
        utt = self.utterances
        hyps = {}
        for h in self.hypotheses:
            scored = ~hypothesis_missing(utt, h)
            counts = _counts_of(utt, h)
            rates = corpus_rates(counts, scored)
            acc = self.vocabulary[h.column("accuracy")]
            hyps[h.field] = {
                "wer": _json_float(rates["wer"]),
                "cer": _json_float(rates["cer"]),
                "wmr": _json_float(rates["wmr"]),
                "mwa": _json_float(_mean_accuracy(acc)),
                # summed in place, as corpus_rates does: a masked copy costs ~40 ms a column at 10M rows
                "substitutions": int(counts["sub"].sum(where=scored)),
                "deletions": int(counts["del"].sum(where=scored)),
                "insertions": int(counts["ins"].sum(where=scored)),
                # lines without this hypothesis (absent or null): left out of all its scores
                "missing": int(len(scored) - scored.sum()),
            }
        duration = utt["duration"].to_numpy(dtype="float64", na_value=np.nan)
        speech = (utt["speech_duration"].to_numpy(dtype="float64", na_value=np.nan)
                  if "speech_duration" in utt else None)
        return {
            "format": SUMS_FORMAT,
            "utterances": int(len(utt)),
            "hours": _json_float(float(np.nansum(duration)) / 3600.0),
            "words": int(utt["num_words"].sum()),
            "characters": int(utt["num_chars"].sum()),
            "hypotheses": hyps,
            # when speech activity was measured (--vad, or the TTS page's job): sde.quality.apply
            "speech_hours": _json_float(float(np.nansum(speech)) / 3600.0) if speech is not None else None,
            # utterances whose audio the VAD could not read: not in speech_hours
            "speech_unmeasured": int(np.isnan(speech).sum()) if speech is not None else None,
        }

    def _summary(self) -> dict:
        sums = self.summary_sums()
        hyps = {}
        for h in self.hypotheses:
            hyps[h.field] = {"label": h.label, **sums["hypotheses"][h.field], **self.extra_summary.get(h.field, {})}
        return {
            "manifest": self.name,
            "utterances": sums["utterances"],
            "hours": sums["hours"],
            "vocabulary_size": int(len(self.vocabulary)),
            "alphabet_size": len(self.alphabet),
            "alphabet": "".join(self.alphabet),
            "words": sums["words"],
            "characters": sums["characters"],
            "hypotheses": hyps,
            **self.skipped(),
            "warnings": [str(w) for w in self.warnings],
            "total_lines": int(self.total_lines),
            "normalize": list(self.options.normalize),
            # audio_missing (utterances) and audio_missing_files: None until sde.audio_presence
            # checked the files (the CLI does at every start)
            **audio_presence_summary(self.utterances),
            **({"alphabet_check": self.alphabet_report} if self.alphabet_report is not None else {}),
            **({"speech_hours": sums["speech_hours"], "speech_unmeasured": sums["speech_unmeasured"]}
               if sums["speech_hours"] is not None else {}),
        }


def _mean_accuracy(accuracy: pd.Series) -> float:
    """MWA from a vocabulary's accuracy column; words that occur only on lines without this
    hypothesis have no accuracy (NaN) and are left out."""
    values = accuracy.to_numpy(dtype="float64", na_value=np.nan)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else 0.0


def _scored_errors(errors: pd.DataFrame, missing: np.ndarray) -> pd.DataFrame:
    """The errors table without the rows of unscored utterances."""
    if not missing.any():
        return errors
    return errors[~missing[errors["utt"].to_numpy(dtype=np.int64)]].reset_index(drop=True)


def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _counts_of(utt: pd.DataFrame, h: HypothesisField) -> dict[str, np.ndarray]:
    counts = {m: utt[h.column(m)].to_numpy() for m in ("sub", "del", "ins", "hits", "char_edits")}
    counts["num_words"] = utt["num_words"].to_numpy()
    chars = h.column("ref_chars") if h.column("ref_chars") in utt else "num_chars"
    counts["num_chars"] = utt[chars].to_numpy()
    return counts


def build_dataset(
    manifest: "str | Path | Sequence[str | Path] | SourceSet",
    options: DatasetOptions = DatasetOptions(),
    *,
    progress: bool = False,
    workers: int | None = None,
    status: Callable[[str], None] | None = None,
) -> Dataset:
    """Read, validate and score a manifest. `status` receives one line per stage (for the CLI)."""
    return _build(manifest, options, progress=progress, workers=workers, status=status)[0]


def build_part(manifest: "str | Path | SourceSet", part: ManifestPart | None, options: DatasetOptions = DatasetOptions(),
               matched: MatchedPredictions | None = None) -> tuple[Dataset, pd.DataFrame, dict[str, NormalizedScores]]:
    """Some lines of one local manifest, or some whole manifests of a set (``SourceSet.subset``),
    built alone (sde.build builds big datasets part by part), with its word tallies (see
    word_tallies: the dataset's vocabulary is their sum over the parts) and, with --normalize,
    each hypothesis's normalised scores (their sums and word tallies add up the same way). A part
    without valid lines gives an empty dataset whose problems say why. ``matched``: with
    --predictions, the part's lines' predictions (matched once for the whole dataset)."""
    return _build(manifest, options, workers=1, part=part, status=lambda _msg: None, matched=matched)


def _build(
    manifest: "str | Path | Sequence[str | Path] | SourceSet",
    options: DatasetOptions,
    *,
    progress: bool = False,
    workers: int | None = None,
    status: Callable[[str], None] | None = None,
    part: ManifestPart | None = None,
    matched: MatchedPredictions | None = None,
) -> tuple[Dataset, pd.DataFrame, dict[str, NormalizedScores]]:
    say = status or (lambda msg: print(msg, file=sys.stderr) if progress else None)
    workers = workers or min(2, os.cpu_count() or 1)
    m = read_manifest(
        manifest,
        audio_base_path=options.audio_base_path,
        pred_fields=options.pred_fields,
        predictions=options.predictions,
        strict=options.strict,
        progress=progress,
        part=part,
        matched=matched,
    )
    if m.table.empty and (part is not None or getattr(manifest, "part_of_set", False)):
        return _empty_dataset(m, options), pd.DataFrame(), {}
    table = m.table
    _set_aside_computed_names(table, m.hypotheses, options)
    refs = table["text"]

    errors: dict[str, pd.DataFrame] = {}
    extra: dict[str, dict] = {}
    long_notes: list[Problem] = []
    ref_word_counts: pd.DataFrame | None = None
    for h in m.hypotheses:
        lacking = int(hypothesis_missing(table, h).sum())
        say(f"scoring {h.field} ({len(table) - lacking:,} of {len(table):,} utterances; {lacking:,} lack the field)"
            if lacking else f"scoring {h.field} ({len(table):,} utterances)")
        # Lines without this hypothesis are not aligned and are left out of its scores: NaN
        # metrics, no error rows, no vocabulary counts. References are still counted in full.
        alignment = align_corpus(refs, table[h.field], workers=workers, count_ref_words=ref_word_counts is None,
                                 skip_missing=True)
        if ref_word_counts is None:
            ref_word_counts = counts_table(alignment.ref_word_table)
            num_words = alignment.counts["num_words"]
        missing = hypothesis_missing(table, h)
        _add_hypothesis_columns(table, h, alignment.counts, missing)
        errors[h.field] = _scored_errors(alignment.errors, missing)
        long_notes += long_utterance_warnings(m.shown or str(manifest), table, h, alignment.long_utterances,
                                              missing)
    if ref_word_counts is None:
        ref_word_counts = word_counts(refs)
        num_words = _count_words(refs)
    _insert_text_stats(table, num_words)

    tallies = word_tallies(ref_word_counts, m.hypotheses, errors, table)
    vocabulary = vocabulary_from_tallies(tallies, m.hypotheses, read_word_list(options.vocab) if options.vocab else None)

    normalized: dict[str, NormalizedScores] = {}
    if options.normalize:
        say(f"scoring with normalisation {','.join(options.normalize)}")
        normalized = _normalized_scores(table, m.hypotheses, options.normalize, workers)
        for field_name, scores in normalized.items():
            h = next(h for h in m.hypotheses if h.field == field_name)
            table[normalized_column(h, "wer")] = scores.rates["wer"]
            table[normalized_column(h, "cer")] = scores.rates["cer"]
            extra[field_name] = {"normalized": scores.corpus}

    alphabet_report = _add_alphabet_check(table, options.alphabet) if options.alphabet else None

    single_chunk_columns(table)
    dataset = Dataset(
        name=m.name,
        manifest_path=m.path,
        options=options,
        utterances=table,
        vocabulary=vocabulary,
        hypotheses=list(m.hypotheses),
        errors=errors,
        problems=list(m.problems),
        alphabet=reference_alphabet(refs),
        total_lines=m.total_lines,
        warnings=list(m.warnings) + long_notes,
        extra_summary=extra,
        alphabet_report=alphabet_report,
        tar_shards=tuple(m.tar_shards) or tar_shards_of(options),
    )
    return dataset, tallies, normalized


def _empty_dataset(m: Manifest, options: DatasetOptions) -> Dataset:
    """A part of a manifest without a valid line: nothing but its problems and line count."""
    return Dataset(name=m.name, manifest_path=m.path, options=options, utterances=pd.DataFrame(),
                   vocabulary=pd.DataFrame(), hypotheses=[], errors={}, problems=list(m.problems),
                   alphabet=[], total_lines=m.total_lines, warnings=list(m.warnings))


def tar_shards_of(options: DatasetOptions) -> tuple[str, ...]:
    """The tar locations --tarred-audio names, in shard order (none without the option)."""
    if not options.tarred_audio:
        return ()
    return tuple(s.location for s in expand_sources([options.tarred_audio]).sources)


def long_utterance_warnings(path: str, table: pd.DataFrame, h: HypothesisField,
                            long_utterances: Sequence[LongUtterance],
                            missing: np.ndarray | None = None) -> list[Problem]:
    """One warning per utterance too long to align exactly (scored in windows, see sde.metrics),
    at its manifest line; none where this hypothesis is missing (it is not scored there)."""
    lines = table["line"].to_numpy()
    sources = table["source"] if "source" in table else None  # several manifests: each line's own
    return [Problem(path if sources is None else str(sources.iloc[u.utt]), int(lines[u.utt]),
                    f"{h.field}: {u.reason()}")
            for u in long_utterances if missing is None or not missing[u.utt]]


def computed_columns(hypotheses: Sequence[HypothesisField]) -> set[str]:
    """Names of the columns sde computes (a manifest field of such a name becomes manifest_<name>)."""
    names = {"num_words", "num_chars", "word_rate", "char_rate", "oov_chars", "has_digits"}
    for h in hypotheses:
        names.update(h.column(m) for m in (*HYPOTHESIS_METRICS, "ref_chars", "error", *HYPOTHESIS_CHECKS))
        names.update(normalized_column(h, m) for m in ("wer", "cer"))
    return names


def _set_aside_computed_names(table: pd.DataFrame, hypotheses: Sequence[HypothesisField],
                              options: DatasetOptions) -> None:
    """Manifest fields named like a computed column (NeMo output manifests often carry `wer`) are
    kept as `manifest_<name>` instead of being overwritten."""
    computed = computed_columns(hypotheses)
    table.columns = [f"manifest_{c}" if c in computed else c for c in table.columns]


@dataclass(frozen=True)
class NormalizedScores:
    """One hypothesis scored on normalised text: what adds up over the parts of a dataset (the
    alignment's count sums, the per-word tallies of the normalised references) and the
    per-utterance rates."""

    sums: dict[str, int]     # sub, del, ins, hits, num_words, char_edits, num_chars
    hits: pd.DataFrame       # word, count, hits (normalised reference words)
    rates: dict[str, np.ndarray]

    @property
    def corpus(self) -> dict:
        return normalized_corpus(self.sums, self.hits)


NORMALIZED_SUMS = ("sub", "del", "ins", "hits", "num_words", "char_edits", "num_chars")


def normalized_corpus(sums: Mapping[str, int], hits: pd.DataFrame) -> dict:
    """Corpus WER/CER/WMR/MWA of normalised text from its sums and word tallies (summed over the
    parts of a dataset built part by part: every one of them adds up)."""
    corpus = corpus_rates({k: np.array([int(sums.get(k, 0))]) for k in NORMALIZED_SUMS})
    return {"wer": _json_float(corpus["wer"]), "cer": _json_float(corpus["cer"]),
            "wmr": _json_float(corpus["wmr"]), "mwa": _json_float(mean_word_accuracy(hits))}


def _normalized_scores(table: pd.DataFrame, hypotheses: Sequence[HypothesisField], steps: Sequence[str],
                       workers: int) -> dict[str, NormalizedScores]:
    """Per hypothesis field: its scores on normalised text."""
    norm_refs = normalize_many(table["text"], steps)
    out = {}
    for h in hypotheses:
        missing = hypothesis_missing(table, h)
        scored = np.flatnonzero(~missing)
        refs = norm_refs if not missing.any() else [norm_refs[i] for i in scored.tolist()]
        hyps = table[h.field] if not missing.any() else table[h.field].iloc[scored]
        alignment = align_corpus(refs, normalize_many(hyps, steps), workers=workers)
        sums = {k: int(np.asarray(alignment.counts[k]).sum()) for k in NORMALIZED_SUMS}
        hits = word_hits(pd.Series(refs, dtype=object), alignment.errors)
        rates = utterance_rates(alignment.counts)
        if missing.any():  # back to one value per utterance, NaN where unscored
            rates = {k: _scatter(v, scored, len(table)) for k, v in rates.items()}
        out[h.field] = NormalizedScores(sums, hits, rates)
    return out


def _scatter(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[rows] = values
    return out


def normalized_summary(dataset: Dataset, steps: Sequence[str]) -> dict[str, dict]:
    """Corpus WER/CER/WMR/MWA per hypothesis with normalisation `steps` (the UI toggle and
    `/api/summary?normalize=`), computed once per choice and kept on the dataset."""
    steps = tuple(parse_normalize(list(steps)))
    if not steps:
        return {}
    if steps == tuple(dataset.options.normalize):
        return {f: e["normalized"] for f, e in dataset.extra_summary.items() if "normalized" in e}

    def compute() -> dict[str, dict]:
        workers = min(2, os.cpu_count() or 1)
        scores = _normalized_scores(dataset.utterances, dataset.hypotheses, steps, workers)
        return {f: score.corpus for f, score in scores.items()}

    cache = for_dataset(dataset, "normalized-summary", NORMALIZED_SUMMARY_CACHE_SIZE)
    return cache.get_or_compute(steps, compute)


def normalized_summary_ready(dataset: Dataset, steps: Sequence[str]) -> bool:
    """Whether :func:`normalized_summary` of ``steps`` answers at once (none, the build's own, or
    computed before): otherwise it scores every utterance again (~20-60 s at 1M on two cores)."""
    steps = tuple(parse_normalize([s for s in steps if isinstance(s, str)]))
    return (not steps or steps == tuple(dataset.options.normalize)
            or steps in for_dataset(dataset, "normalized-summary", NORMALIZED_SUMMARY_CACHE_SIZE))


def single_chunk_columns(table: pd.DataFrame) -> None:
    """Make every Arrow-backed column one contiguous array, in place.

    Taking a page of 50 rows from a column split into hundreds of chunks costs ~10 ms per column
    in Arrow; from one chunk it costs microseconds. Done column by column, so the extra memory at
    any moment is one column's copy.
    """
    for column in table.columns:
        values = table[column].array
        chunked = getattr(values, "_pa_array", None)
        if isinstance(chunked, pa.ChunkedArray) and chunked.num_chunks > 1:
            table[column] = pd.array(chunked.combine_chunks(), dtype=table[column].dtype)


def normalized_column(h: HypothesisField, metric: str) -> str:
    return f"{h.column(metric)}_{NORMALIZED_SUFFIX}"


def _arrow(series: pd.Series) -> pa.Array:
    arr = pa.array(series)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _count_words(text: pd.Series) -> np.ndarray:
    arr = _arrow(text)
    # Trimmed first: splitting " a " or "" on whitespace yields empty tokens, which are not words.
    trimmed = pc.utf8_trim_whitespace(arr)
    counts = pc.if_else(pc.equal(trimmed, ""), 0, pc.list_value_length(pc.utf8_split_whitespace(trimmed)))
    return counts.to_numpy(zero_copy_only=False).astype("int64")


def _insert_text_stats(table: pd.DataFrame, num_words: np.ndarray) -> None:
    """Word and character counts and rates, placed right after the text columns."""
    num_chars = pc.utf8_length(_arrow(table["text"])).to_numpy(zero_copy_only=False).astype("int64")
    duration = table["duration"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # over: a duration of 1e-310 s
        # A zero duration has no meaningful rate: NaN, not infinity, so histograms stay sane.
        word_rate = np.where(duration > 0, num_words / duration, np.nan)
        char_rate = np.where(duration > 0, num_chars / duration, np.nan)
    stats = {"num_words": num_words.astype("int64"), "num_chars": num_chars,
             "word_rate": word_rate, "char_rate": char_rate}
    for column, values in stats.items():
        table[column] = values


def _add_hypothesis_columns(table: pd.DataFrame, h: HypothesisField, counts: dict[str, np.ndarray],
                            missing: np.ndarray | None = None) -> None:
    """Per-utterance metric columns; NaN on the `missing` rows (the counts become float64 then)."""
    rates = utterance_rates(counts)
    unscored = missing is not None and bool(missing.any())
    for metric in ("wer", "cer", "wmr"):
        table[h.column(metric)] = np.where(missing, np.nan, rates[metric]) if unscored else rates[metric]
    for metric in ("sub", "del", "ins", "hits", "char_edits"):
        values = counts[metric].astype("int64")
        table[h.column(metric)] = np.where(missing, np.nan, values) if unscored else values
    # The metrics module's character count is the CER denominator; keep it only where it differs
    # from the displayed `num_chars` (it may collapse whitespace the way jiwer does).
    ref_chars = counts["num_chars"].astype("int64")
    raw_chars = pc.utf8_length(_arrow(table["text"])).to_numpy(zero_copy_only=False)
    if not np.array_equal(ref_chars, raw_chars):
        table[h.column("ref_chars")] = ref_chars


def read_word_list(path: str | Path) -> set[str]:
    """A vocabulary file: one word per line, or TSV whose first column is the word."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: vocabulary file not found; pass --vocab with a word list (one word per line)") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the vocabulary file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not valid UTF-8; save the vocabulary file as UTF-8") from None
    words = set()
    for line in text.splitlines():
        word = line.split("\t", 1)[0].strip()
        if word:
            words.add(word)
    if not words:
        raise DatasetError(f"{path}: the vocabulary file has no words; give one word per line")
    return words


def _add_alphabet_check(table: pd.DataFrame, alphabet: str) -> dict:
    """Columns `oov_chars` and `has_digits`; returns the report shown on the Statistics page."""
    result = alphabet_check(table["text"], alphabet)
    table["oov_chars"] = result.oov_chars
    table["has_digits"] = has_digits(table["text"]).to_numpy()
    return {
        "allowed": alphabet,
        "utterances": int((result.oov_chars.fillna("") != "").sum()),
        "chars": [{"char": r.char, "count": int(r.count), "utterances": int(r.utterances),
                   "example_id": int(r.example_id)} for r in result.counts.itertuples(index=False)],
        "digits": int(table["has_digits"].sum()),
    }


def with_predictions(dataset: Dataset, field_name: str, predictions: Sequence[str], label: str = "") -> Dataset:
    """A copy of `dataset` with one more hypothesis field scored (e.g. after transcription in the UI)."""
    table = dataset.utterances.copy()
    table[field_name] = pd.Series(list(predictions), dtype="string[pyarrow]").to_numpy()
    h = HypothesisField(field=field_name, label=label)
    alignment = align_corpus(table["text"].tolist(), table[field_name].tolist(), workers=min(2, os.cpu_count() or 1),
                             skip_missing=True)
    missing = hypothesis_missing(table, h)
    _add_hypothesis_columns(table, h, alignment.counts, missing)
    errors = dict(dataset.errors)
    errors[field_name] = _scored_errors(alignment.errors, missing)
    hypotheses = [*dataset.hypotheses, h]
    # Same references, so the existing vocabulary's counts serve: no second pass over the text.
    vocabulary = vocabulary_table(dataset.vocabulary, hypotheses, errors,
                                  read_word_list(dataset.options.vocab) if dataset.options.vocab else None, table)
    long_notes = long_utterance_warnings(str(dataset.manifest_path), table, h, alignment.long_utterances, missing)
    return dataclasses.replace(
        dataset,
        utterances=table,
        vocabulary=vocabulary,
        hypotheses=hypotheses,
        errors=errors,
        warnings=[*dataset.warnings, *long_notes],
        _queries={},
        _lock=threading.Lock(),
    )
