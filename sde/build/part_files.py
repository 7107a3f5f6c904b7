"""One part of a dataset built and written to the build folder (runs in a worker process).

A part's files: ``part-NNNNN.utterances.arrow``, ``part-NNNNN.errorsK.arrow`` (one per hypothesis
the part has), ``part-NNNNN.tallies.parquet`` (word tallies, summed by DuckDB when the parts are
joined) and, written last, ``part-NNNNN.info`` (a pickled :class:`PartInfo`). A part counts as
built only when its info exists: every file is written under a temporary name and renamed, so an
interrupted worker leaves nothing the next run mistakes for a finished part.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from sde.dataset import DatasetOptions, build_part
from sde.build.atomic import write_arrow, write_atomic, write_parquet
from sde.build.parts import Part
from sde.build.predictions import matched_predictions
from sde.manifest import HypothesisField, ManifestError, Problem
from sde.manifest.hypotheses import MISSING_EXAMPLES, is_missing_hypothesis_warning
from sde.manifest.pieces import SeenFields, reading_part


@dataclass
class PartInfo:
    """What the driver needs of a built part (its tables stay in files)."""

    index: int
    part: Part
    rows: int
    hypotheses: list[HypothesisField]
    problems: list[Problem]
    warnings: list[Problem]
    total_lines: int
    alphabet: list[str]
    alphabet_report: dict | None
    name: str
    manifest_path: str
    dtypes: dict[str, str]
    # --strict: the part's first bad line (the driver raises the earliest part's)
    error: str | None = None
    tar_shards: tuple[str, ...] = ()
    error_dtypes: dict[str, dict[str, str]] = field(default_factory=dict)
    # Per hypothesis field: (lines without it, the first few of them); and the part's first lines
    # (all of them lack a hypothesis the part never has). The join words one warning per field.
    missing: dict[str, tuple[int, list[int]]] = field(default_factory=dict)
    first_lines: list[int] = field(default_factory=list)
    # Of a part of several manifests: the manifest of each example line above (else empty)
    missing_sources: dict[str, list[str]] = field(default_factory=dict)
    first_sources: list[str] = field(default_factory=list)
    # --normalize: per hypothesis field, the sums of its normalised alignment (the word tallies
    # of the normalised references are in the part's normtallies file)
    normalized_sums: dict[str, dict[str, int]] = field(default_factory=dict)
    shown: str = ""  # how messages name the manifest (the path as given)
    # The extra fields the part's read saw, in order (those without a value too): the join keeps
    # at most as many over the dataset as a one-piece read would, and words its one warning
    fields: SeenFields | None = None


def part_name(index: int) -> str:
    return f"part-{index:05d}"


def utterances_file(folder: Path, index: int) -> Path:
    return folder / f"{part_name(index)}.utterances.arrow"


def errors_file(folder: Path, index: int, k: int) -> Path:
    """The errors of the part's ``k``-th hypothesis (PartInfo.hypotheses order)."""
    return folder / f"{part_name(index)}.errors{k}.arrow"


def tallies_file(folder: Path, index: int) -> Path:
    return folder / f"{part_name(index)}.tallies.parquet"


def normalized_tallies_file(folder: Path, index: int) -> Path:
    return folder / f"{part_name(index)}.normtallies.parquet"


def info_file(folder: Path, index: int) -> Path:
    return folder / f"{part_name(index)}.info"


def build_and_write(part: Part, options: DatasetOptions, folder: Path, index: int) -> PartInfo:
    """Build ``part`` (lines of a manifest, or manifests of a set) and write it as part ``index``
    of ``folder``."""
    path = part.shown
    try:
        matched = matched_predictions(folder, index) if options.predictions else None
        with reading_part(part.dataset_bytes) as read:
            dataset, tallies, normalized = build_part(part.manifest, part.lines, options, matched)
    except ManifestError as e:  # --strict: a bad line in this part
        info = PartInfo(index, part, 0, [], [], [], 0, [], None, "", path, {}, error=str(e))
        write_atomic(info_file(folder, index), pickle.dumps(info, protocol=pickle.HIGHEST_PROTOCOL))
        return info
    utterances = dataset.utterances
    if len(utterances):
        write_arrow(utterances_file(folder, index), utterances)
        for k, h in enumerate(dataset.hypotheses):
            write_arrow(errors_file(folder, index, k), dataset.errors[h.field])
        write_parquet(tallies_file(folder, index), tallies)
        if normalized:
            write_parquet(normalized_tallies_file(folder, index), pd.concat(
                [scores.hits.assign(field=f) for f, scores in normalized.items()], ignore_index=True))
    missing, missing_sources = _missing_lines(utterances, dataset.hypotheses)
    sources = utterances["source"] if "source" in utterances.columns else None
    info = PartInfo(
        index=index, part=part, rows=len(utterances), hypotheses=list(dataset.hypotheses),
        problems=list(dataset.problems), total_lines=dataset.total_lines,
        # the join words one warning per field for the whole dataset instead of the part's
        warnings=[w for w in dataset.warnings
                  if not any(count and is_missing_hypothesis_warning(w, f) for f, (count, _) in missing.items())],
        missing=missing, missing_sources=missing_sources,
        normalized_sums={f: dict(scores.sums) for f, scores in normalized.items()},
        first_sources=[] if sources is None else sources.iloc[:MISSING_EXAMPLES].astype(str).tolist(),
        shown=path, first_lines=utterances["line"].iloc[:MISSING_EXAMPLES].astype(int).tolist() if len(utterances) else [],
        alphabet=list(dataset.alphabet), alphabet_report=dataset.alphabet_report, name=dataset.name,
        manifest_path=str(dataset.manifest_path), dtypes=frame_dtypes(utterances), tar_shards=dataset.tar_shards,
        error_dtypes={h.field: frame_dtypes(dataset.errors[h.field]) for h in dataset.hypotheses},
        fields=read.fields,
    )
    write_atomic(info_file(folder, index), pickle.dumps(info, protocol=pickle.HIGHEST_PROTOCOL))
    return info


def _missing_lines(utterances: pd.DataFrame, hypotheses: list[HypothesisField]
                   ) -> tuple[dict[str, tuple[int, list[int]]], dict[str, list[str]]]:
    """Per hypothesis field: (lines without it, the first few), and those lines' manifests when
    the part has several."""
    out, sources = {}, {}
    for h in hypotheses:
        missing = utterances[h.field].isna().to_numpy(dtype=bool)
        out[h.field] = (int(missing.sum()), utterances["line"].to_numpy()[missing][:MISSING_EXAMPLES].astype(int).tolist())
        if "source" in utterances.columns:
            sources[h.field] = utterances["source"].to_numpy(dtype=object)[missing][:MISSING_EXAMPLES].astype(str).tolist()
    return out, sources


def read_info(folder: Path, index: int, part: Part) -> PartInfo | None:
    """The info of part ``index`` if it was built from these very lines, else None (build it)."""
    try:
        info = pickle.loads(info_file(folder, index).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
        return None
    # a field with a default is a class attribute too: only the instance's own say it was written
    if not isinstance(info, PartInfo) or any(f.name not in vars(info) for f in fields(PartInfo)):
        return None  # written by another version of sde: built again
    if info.index != index or info.part != part or info.error:
        return None
    return info


def frame_dtypes(df: pd.DataFrame) -> dict[str, str]:
    """Each column's pandas dtype by name (restored after the Arrow round trip)."""
    return {str(c): str(t) for c, t in df.dtypes.items()}
