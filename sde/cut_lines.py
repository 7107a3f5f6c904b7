"""Lines that hold several utterances: a Lhotse cut (one line of a CutSet) with several
supervisions, each of which is a row of sde. Exporting a selection of rows must not copy such a
line whole (the supervisions left out would come back): each cut line is written once, at its
first selected row, with only the selected supervisions, and a cut none of whose supervisions is
selected is not written. A cut whose every supervision is selected is copied byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sde.lines import ExportError, ManifestLines
from sde.reviews import write_review

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

SUPERVISION_ID = "supervision_id"


def _line_keys(lines: ManifestLines) -> np.ndarray:
    """One number per row naming its (source, line)."""
    width = int(lines.lines.max()) + 1 if len(lines.lines) else 1
    return lines.codes.astype(np.int64) * width + lines.lines


def has_shared_lines(dataset: "Dataset", lines: ManifestLines) -> bool:
    """Whether some manifest line holds several rows (a Lhotse cut with several supervisions)."""
    if SUPERVISION_ID not in dataset.utterances.columns or len(lines.lines) < 2:
        return False
    keys = _line_keys(lines)
    return len(np.unique(keys)) < len(keys)


def selected_cut_lines(dataset: "Dataset", lines: ManifestLines, positions: np.ndarray,
                       rewrites: Mapping[int, Any] | None = None, *,
                       hash_sources: bool = False) -> Iterator[tuple[int, bytes]]:
    """(first row position, line) of each cut line holding a selected row, in the order of
    ``positions``, keeping only the selected supervisions; ``rewrites``: row position → review
    whose fix, note or tags change that supervision."""
    positions = np.asarray(positions, dtype=np.int64)
    if not len(positions):
        return
    ids = dataset.utterances[SUPERVISION_ID].astype(object).to_numpy()
    keys = _line_keys(lines)
    chosen: dict[int, list[int]] = {}
    for key, position in zip(keys[positions].tolist(), positions.tolist()):
        chosen.setdefault(key, []).append(position)
    on_line = dict(zip(*(a.tolist() for a in np.unique(keys, return_counts=True))))
    first = np.asarray([rows[0] for rows in chosen.values()], dtype=np.int64)
    for position, raw in lines.read(first, hash_sources=hash_sources):
        key = int(keys[position])
        rows = chosen[key]
        changes = {str(ids[r]): rewrites[r] for r in rows if rewrites and r in rewrites}
        if len(rows) == on_line[key] and not changes:
            yield position, raw
            continue
        where = f"{lines.sources[int(lines.codes[position])].path}:{int(lines.lines[position])}"
        kept = cut_keeping(raw, {str(ids[r]) for r in rows}, changes, where)
        if kept is not None:
            yield position, kept


def cut_keeping(raw: bytes, supervision_ids: set[str], changes: Mapping[str, Any], where: str = "") -> bytes | None:
    """The cut line ``raw`` with only these supervisions (None when none is left), ``changes``
    (supervision id → review) applied to theirs: a fixed text (the old one kept in
    ``custom.text_original``), a note (``custom.review_note``), tags (``custom.review_tags``)."""
    body = raw.rstrip(b"\r\n")
    end = raw[len(body):] or b"\n"
    try:
        cut = json.loads(body)
        supervisions = cut["supervisions"]
    except (ValueError, KeyError, TypeError) as e:
        raise ExportError(f"{where}: no longer the Lhotse cut sde loaded ({type(e).__name__}: {e}); the manifest "
                          "changed after sde loaded it; load it again") from None
    kept = [s for s in supervisions if isinstance(s, dict) and str(s.get("id")) in supervision_ids]
    if not kept:
        return None
    for supervision in kept:
        review = changes.get(str(supervision.get("id")))
        if review is not None:
            _apply_review(supervision, review)
    cut["supervisions"] = kept
    return json.dumps(cut, ensure_ascii=False).encode("utf-8") + end


def _apply_review(supervision: dict, review: Any) -> None:
    custom = supervision.get("custom") if isinstance(supervision.get("custom"), dict) else {}
    write_review(supervision, custom, review, supervision.get("text"))
    if custom:
        supervision["custom"] = custom
