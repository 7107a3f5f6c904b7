"""read_manifest: one or several manifests (and a predictions file) into one validated table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sde.manifest.columns import core_frame, extra_column, float_column, has_values, shard_column, string_column
from sde.manifest.files import FileRead, every_line_bad, read_file
from sde.manifest.hypotheses import (MatchedPredictions, channel_keys, match_predictions, merge_predictions,
                                    missing_hypothesis_warning, predictions_fields, predictions_use, unmatched_warning,
                                    with_predictions)
from sde.manifest.lhotse_reads import lhotse_kind, read_lhotse_sources
from sde.manifest.model import (
    GENERATED,
    HypothesisField,
    Manifest,
    ManifestError,
    ManifestPart,
    Problem,
    default_label,
    found_hypotheses,
    parse_pred_field,
)
from sde.manifest.paths import base_dir
from sde.manifest.pieces import DURATION_SOURCE, Piece, SeenFields, Spec, cap_warning, part_read
from sde.manifest.several import read_sources, source_set
from sde.sources import SourceSet


def _empty_part(sources: SourceSet, shown: str, problems: list[Problem], total: int) -> Manifest:
    """A part of a manifest in which no line is valid: no rows, its problems and line count."""
    return Manifest(path=sources.manifest_path, table=pd.DataFrame(), hypotheses=[], problems=problems,
                    total_lines=total, name=sources.name, sources=[s.location for s in sources.sources],
                    shown=shown)


def _present_fields(reads: list[FileRead], pieces: list[Piece], spec: Spec, warnings: list[Problem],
                    several: bool, partial: bool) -> list[str]:
    """Fields other than the core ones that some valid line has, in order of first appearance over
    all manifests (with a value or not: where chunks or parts begin does not move a field).
    Several manifests together keep at most as many extra fields as one would (their reads'
    smallest cap), counted as one read counts them (sde.manifest.pieces.ReadState.admit): every
    field seen, with a value or not. ``partial`` (a part of a dataset built part by part,
    sde.build): the fields without a value too, other than hypotheses, so that the join places
    each where the whole read does when a later part has values in it (sde.build.merge drops
    those no part has); the fields it saw go to the join, which caps them over the dataset and
    words the one warning."""
    states = list({id(r.state): r.state for r in reads if r.state is not None}.values())  # a batch shares one
    seen = SeenFields.joined([state.seen_fields() for state in states])
    cut, _, _ = seen.capped()
    current = part_read()
    if partial and current is not None:
        current.fields = seen
    elif (warning := cap_warning(seen, several)) is not None:
        warnings.append(warning)
    keys = ["text_filepath"] + [k for k in seen.first if k not in cut]
    return [k for k in keys if has_values(pieces, k) or (partial and not spec.is_hyp(k))]


def _merged_predictions(predictions: str | Path, field: HypothesisField, main: pd.DataFrame, shown: str,
                        audio_base_path: str | Path | None, strict: bool, progress: bool, problems: list[Problem],
                        warnings: list[Problem], lines: np.ndarray, row_sources: Any) -> pd.Series:
    """One predictions file matched to the lines of ``main`` (audio path, offset, shard, channel):
    each line's prediction, for the hypothesis ``field``; its bad lines go to ``problems``, its
    notes (lines without a prediction, its lines unused) to ``warnings``, each naming this file."""
    p_pieces, p_state, _ = read_file(predictions, Spec(predictions=True), strict, progress)
    p_table = pd.DataFrame(core_frame(p_pieces, base_dir(predictions, audio_base_path)))
    p_table["pred_text"] = pd.arrays.ArrowStringArray(string_column(p_pieces, "pred_text"))
    p_table["shard"] = shard_column(p_pieces)
    if (channels := channel_keys(p_pieces)) is not None:
        p_table["channel"] = channels
    problems.extend(p_state.problems)
    p_table = with_predictions(p_table, predictions)
    matched = match_predictions(main, p_table)  # the merge and the warnings below read it
    values, unmatched = merge_predictions(main, p_table, str(predictions), shown, matched)
    if unmatched:
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        warnings.append(unmatched_warning(shown if row_sources is None else str(row_sources[row]),
                                          int(lines[row]), unmatched, len(main), predictions, field.field))
    warnings += predictions_use(p_table, main, matched).warnings(predictions)
    return values


def read_manifest(path: str | Path | Sequence[str | Path] | SourceSet, *,
                  audio_base_path: str | Path | None = None,
                  pred_fields: Sequence[str] = (), predictions: str | Path | Sequence[str | Path] | None = None,
                  strict: bool = False, progress: bool = False, part: ManifestPart | None = None,
                  matched: MatchedPredictions | Sequence[MatchedPredictions] | None = None) -> Manifest:
    """Read a NeMo JSONL manifest into a validated table (see the module docstring for the rules).

    ``path``: one manifest (a file or a URL), or several, globs and NeMo shard patterns (a list, or
    a SourceSet from sde.sources.expand_sources): their lines become one table, ids in the order of
    the sources, with a ``source`` column naming each line's manifest; relative audio paths start
    from each manifest's own folder. Of several manifests, one that is missing or unusable is one
    problem (line 0) and the others load.

    Bad lines are skipped and listed in ``problems`` (``strict=True``: the first raises
    ManifestError ``path:line: reason``).  Whole-file problems (missing, directory, empty, JSON
    array, binary, no valid line) raise ManifestError with the fix.  ``progress`` shows progress on
    stderr: a bar (bytes) on a terminal, else one line when done (see sde.progress).
    ``part``: only these lines of one local manifest, NeMo or a Lhotse CutSet (a part without valid
    lines is no error: its problems say why; the table is then empty). A SourceSet that is a subset of a bigger one
    (``SourceSet.subset``) is read the same way, as a part of that set.
    ``predictions``: one predictions file or several, each merged as a hypothesis of its own
    (sde.manifest.hypotheses.predictions_fields names them in order).
    ``matched``: a part's predictions already matched to its lines (sde.build matches big
    predictions files once for the whole dataset), one per file; they replace reading ``predictions``.
    """
    hyp_specs = [parse_pred_field(s) for s in pred_fields]
    explicit = frozenset(h.field for h in hyp_specs) if hyp_specs else None
    spec = Spec(explicit_hyps=explicit)
    sources = source_set(path)
    partial = part is not None or sources.part_of_set  # a part of the dataset (sde.build)
    lhotse = lhotse_kind(sources, part)
    tar_shards: tuple[str, ...] = ()
    if lhotse:  # a Lhotse source: sources become the files its rows come from
        sources, reads, tar_shards = read_lhotse_sources(lhotse, sources, spec, strict, audio_base_path, part)
    several = sources.several
    shown = sources.name if several else sources.sources[0].given
    if not lhotse:
        reads = read_sources(sources, shown, spec, strict, progress, audio_base_path, part)
    pieces = [p for r in reads for p in r.pieces]
    problems = [q for r in reads for q in r.problems]
    if not pieces and partial:
        return _empty_part(sources, shown, problems, sum(r.total for r in reads))
    if not pieces:
        raise every_line_bad(shown, problems)
    total = sum(r.total for r in reads)
    from_header = any(r.from_header for r in reads)

    source_names = [s.name for s in sources.sources] if several else None
    data = core_frame(pieces, [r.base for r in reads] if several else reads[0].base, source_names)
    data["duration"] = float_column(pieces, "duration")
    if from_header:
        data["duration_source"] = pd.arrays.ArrowStringArray(
            string_column(pieces, DURATION_SOURCE, fill="manifest"))
    data["text"] = pd.arrays.ArrowStringArray(string_column(pieces, "text"))
    warnings: list[Problem] = []
    present = _present_fields(reads, pieces, spec, warnings, several, partial)
    n = len(data["id"])
    row_sources = data.get("source")

    merged: dict[str, tuple[HypothesisField, pd.Series]] = {}  # each predictions file's hypothesis and values
    fields = list(present)
    if matched is not None:
        for one in [matched] if isinstance(matched, MatchedPredictions) else matched:
            if len(one.values) != n:
                raise ValueError(f"{shown}: {n} lines read, but {len(one.values)} matched predictions: "
                                 "the manifest changed during the build; run sde again")
            merged[one.field.field] = (one.field, pd.Series(pd.arrays.ArrowStringArray(one.values)))
            present.append(one.field.field)
    elif predictions:
        main = pd.DataFrame({"audio_filepath": data["audio_filepath"], "audio_path": data["audio_path"],
                             "offset": data["offset"], "shard": shard_column(pieces)})
        # one side of a call: both sides share a path and offset, only audio_channel tells them apart
        if (channels := channel_keys(pieces)) is not None:
            main["channel"] = channels
        files = [predictions] if isinstance(predictions, (str, Path)) else list(predictions)
        for path, field in zip(files, predictions_fields(present, files)):
            values = _merged_predictions(path, field, main, shown, audio_base_path, strict, progress,
                                         problems, warnings, data["line"], row_sources)
            merged[field.field] = (field, values)
            present.append(field.field)

    if hyp_specs:
        hyps = list(hyp_specs)
        for h in hyps:
            if h.field not in present and not partial:  # a part may lack it; sde.build checks the whole
                # the fields a transcript could be in: not the path, duration, text, offset
                fields = ", ".join(present) or "none but audio_filepath, duration and text"
                raise ManifestError(f'{shown}: no line has the hypothesis field "{h.field}"; its other fields '
                                    f"are: {fields}. Pass the one holding the transcripts to --pred-field")
        hyps += [field for name, (field, _) in merged.items() if name not in {h.field for h in hyps}]
    else:
        hyps = [HypothesisField(k, default_label(k)) for k in found_hypotheses(present)]
    labels = [h.label for h in hyps]
    if len(set(labels)) != len(labels):
        dup = next(label for label in labels if labels.count(label) > 1)
        raise ManifestError(f"{shown}: two hypothesis fields have the label {dup!r} "
                            f"({', '.join(h.field for h in hyps if h.label == dup)}); "
                            "give them distinct labels with --pred-field FIELD=LABEL")
    for h in hyps:
        if h.field in merged:
            data[h.field] = merged[h.field][1].array
        else:
            # <NA> where the line has no such field: it is left out of that hypothesis's scores
            data[h.field] = pd.arrays.ArrowStringArray(string_column(pieces, h.field))
            warning = missing_hypothesis_warning(shown, h.field, data[h.field], data["line"], row_sources)
            if warning is not None:
                warnings.append(warning)
    hyp_names = {h.field for h in hyps}
    for key in present:
        if key in hyp_names:
            continue
        column = f"manifest_{key}" if key in GENERATED else key
        # a field kept without a value (a part's) has no type: the join takes the other parts'
        data[column] = extra_column(pieces, key) if has_values(pieces, key) else np.full(n, None, dtype=object)

    table = pd.DataFrame(data, index=pd.RangeIndex(n))
    return Manifest(path=sources.manifest_path, table=table, hypotheses=hyps,
                    problems=problems, total_lines=total, warnings=warnings, name=sources.name,
                    sources=[s.name for s in sources.sources], shown=shown, tar_shards=tar_shards,
                    fields=fields)
