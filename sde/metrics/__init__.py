"""Word/character alignment and the metrics of DESIGN.md ("Metrics").

Two paths compute the same numbers:

- ``align_corpus``: the bulk path used at load time (up to 1M utterances). It calls rapidfuzz's
  Levenshtein directly (jiwer's own engine) on whitespace-split word lists and on stripped
  strings, skipping jiwer's per-call overhead, and splits the work over forked processes.
- ``align_words``: one utterance through ``jiwer.process_words`` (the inspector's diff).

Agreement with jiwer 4 (tests check both, pair by pair, against jiwer):

* Words. jiwer's default word transform collapses runs of >= 2 whitespace characters to one space,
  strips, then splits on " " only, so a *single* tab/newline/NBSP between two words stays inside
  one jiwer "word". DESIGN.md says words = whitespace split, so we use ``str.split()``: S, D, I and
  hits equal ``jiwer.process_words(" ".join(ref.split()), " ".join(hyp.split()))``, which is
  ``jiwer.process_words(ref, hyp)`` whenever words are separated by spaces (or runs of any
  whitespace). jiwer derives S/D/I/hits from ``Levenshtein.opcodes`` on integer word ids; opcodes
  are built from ``Levenshtein.editops``, and rapidfuzz's alignment depends only on which
  elements are equal, so ``editops`` on the word lists gives the same split of the same distance.
* Characters. jiwer's default character transform only strips leading/trailing whitespace
  (``str.strip()``); repeated spaces, tabs etc. inside the string are kept and count as
  characters. So ``char_edits = Levenshtein.distance(ref.strip(), hyp.strip())`` and
  ``num_chars = len(ref.strip())``: our CER equals ``jiwer.cer(ref, hyp)`` for every non-empty
  reference, and for a manifest without leading/trailing whitespace C is NeMo SDE's ``len(text)``.

Long utterances. Exact Levenshtein costs time ~ length² per utterance: one 330,000-word line took
minutes. An utterance whose reference or hypothesis has more than ``MAX_EXACT_WORDS`` words or
``MAX_EXACT_CHARS`` characters is aligned in windows instead: both texts are cut into consecutive
pieces of at most ``WINDOW_WORDS`` words (``WINDOW_CHARS`` characters for CER) on a side, or of at
most that squared in area (a long stretch one text lacks: cheap to align whole), each cut placed at
an anchor, a run of equal words (characters) found once in the reference and at most a few times in
the hypothesis, on the longest chain of such runs in order (so a truncated hypothesis, a skipped
passage or a repeated loop is lined up wherever it is), else proportionally (and proportional
cuts throughout where they cost fewer edits); each pair of pieces is aligned exactly. Time and memory are linear in the text. The pieces concatenate to the
whole texts, so the result is a real alignment: its error counts are never below the exact ones,
and equal to them unless an optimal alignment crosses a cut. It is not skipped, so every corpus sum
keeps the utterance. ``CorpusAlignment.long_utterances`` lists these utterances (the app shows one
warning per utterance). The inspector's ``align_words`` gives no word diff beyond ``MAX_EXACT_WORDS``.

The package: ``windows`` (long utterances, aligned in windows), ``corpus`` (``align_corpus``, the
bulk path), ``rates`` (WER/CER/WMR), ``word_accuracy`` (vocabulary, per-word hits, MWA), ``diff``
(``align_words``, one utterance).
"""

from sde.metrics.corpus import COUNT_KEYS, CorpusAlignment, LongUtterance, align_corpus
from sde.metrics.diff import AlignedWord, align_words
from sde.metrics.rates import corpus_rates, utterance_rates
from sde.metrics.windows import MAX_EXACT_CHARS, MAX_EXACT_WORDS, OPS
from sde.metrics.word_accuracy import mean_word_accuracy, word_counts, word_hits

__all__ = [
    "COUNT_KEYS",
    "MAX_EXACT_CHARS",
    "MAX_EXACT_WORDS",
    "OPS",
    "AlignedWord",
    "CorpusAlignment",
    "LongUtterance",
    "align_corpus",
    "align_words",
    "corpus_rates",
    "mean_word_accuracy",
    "utterance_rates",
    "word_counts",
    "word_hits",
]
