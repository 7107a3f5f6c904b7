"""One utterance's word diff for the inspector, through ``jiwer.process_words``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sde.metrics.windows import MAX_EXACT_WORDS


@dataclass(frozen=True)
class AlignedWord:
    """One position of a word alignment: ``op`` is "equal", "sub", "del" or "ins".

    For texts too long to diff (``MAX_EXACT_WORDS``) the alignment is one ``AlignedWord`` with op
    "unaligned", ``hyp`` the whole hypothesis and ``note`` saying why.
    """

    op: str
    ref: str | None
    hyp: str | None
    note: str | None = None


_JIWER_OPS = {"equal": "equal", "substitute": "sub", "delete": "del", "insert": "ins"}


def align_words(ref: str, hyp: str) -> list[AlignedWord]:
    """Word alignment of one utterance (the inspector's diff), via ``jiwer.process_words``.

    Every reference and hypothesis word appears once, in order; ops are "equal", "sub", "del",
    "ins". Words are ``str.split()`` tokens (texts are re-joined with single spaces before jiwer
    sees them, see the module docstring), so the ops agree with ``align_corpus``. Beyond
    ``MAX_EXACT_WORDS`` words on either side: one "unaligned" entry (see ``AlignedWord``).
    """
    ref_words = (ref or "").split()
    hyp_words = (hyp or "").split()
    too_long = [f"the {side} has {len(words):,} words" for side, words in (("reference", ref_words),
                                                                          ("hypothesis", hyp_words))
                if len(words) > MAX_EXACT_WORDS]
    if too_long:
        # An exact diff would take seconds to minutes, and hundreds of thousands of spans no
        # browser shows usefully: the hypothesis as it is, and why.
        note = (f"No word diff: {' and '.join(too_long)} (at most {MAX_EXACT_WORDS:,} are aligned "
                "word by word); the hypothesis is shown as it is.")
        return [AlignedWord("unaligned", None, hyp or "", note=note)]
    # Older jiwer versions raise on an empty reference; no alignment is needed for these anyway.
    if not ref_words:
        return [AlignedWord("ins", None, w) for w in hyp_words]
    if not hyp_words:
        return [AlignedWord("del", w, None) for w in ref_words]

    import jiwer  # imported here: the bulk path does not need it

    output = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words))
    aligned: list[AlignedWord] = []
    for chunk in output.alignments[0]:
        op = _JIWER_OPS[chunk.type]
        refs = ref_words[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if op in ("equal", "sub"):  # equal-length blocks in a Levenshtein alignment
            aligned.extend(AlignedWord(op, r, h) for r, h in zip(refs, hyps))
        elif op == "del":
            aligned.extend(AlignedWord("del", r, None) for r in refs)
        else:
            aligned.extend(AlignedWord("ins", None, h) for h in hyps)
    return aligned
