"""Data quality for ASR and TTS: speech activity, duplicates, suspicious utterances, TTS readiness.

Every check is a pure function over the utterance table (a DataFrame with the columns of
``sde.dataset``: ``id``, ``audio_path``, ``offset``, ``duration``, ``text``, hypotheses,
``speaker``) or over one segment's samples, returning new columns with the table's index, or a
JSON-ready summary:

- :func:`measure_segments` / :func:`vad_columns` (``segments``, ``vad``): reads each segment once
  in worker processes; speech activity (Silero VAD), audio hash, loudness, levels.
- :func:`duplicate_columns`, :func:`duplicate_groups` (``duplicates``): ``dup_text_group``,
  ``dup_audio_group``, ``dup_audio_text_conflict``; the ``/api/duplicates`` groups.
- :func:`suspicious_columns`, :func:`suspicious_summary` (``suspicious``): looping texts,
  insertion bursts, implausible rates, length ratios; flag counts with their filter expressions.
- :func:`tts_report` (``tts``, ``phonemes``, ``loudness``): the ``/api/tts`` report.
- ``augment``: the augmentation preview (speed, time stretch, room, noise; seeded) and its NeMo
  augmentor config.
- ``apply``: the dataset transforms that put all of this on a ``Dataset`` (:func:`with_vad` at load
  time for ``--vad``; :func:`ensure_quality_columns` on first use for the text-derived columns).

Nothing here imports dash.
"""

from sde.quality.apply import ensure_quality_columns, with_vad
from sde.quality.duplicates import duplicate_columns, duplicate_groups
from sde.quality.segments import Cancelled, SegmentMeasures, measure_segments, vad_columns
from sde.quality.suspicious import suspicious_columns, suspicious_summary
from sde.quality.tts import tts_report

__all__ = [
    "Cancelled",
    "SegmentMeasures",
    "duplicate_columns",
    "ensure_quality_columns",
    "duplicate_groups",
    "measure_segments",
    "suspicious_columns",
    "suspicious_summary",
    "tts_report",
    "vad_columns",
    "with_vad",
]
