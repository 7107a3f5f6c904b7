"""TTS readiness per speaker: enough hours, a high enough sample rate, steady loudness, no clipping,
every phoneme of the language recorded. The ``/api/tts`` report.

Works on whatever columns the utterance table has: ``duration`` (always), ``speech_duration``
(VAD), ``sample_rate`` and ``clipping_ratio`` (audio metrics, or the ``levels`` measure), ``lufs``
(the ``loudness`` measure); a missing column gives null fields and no flag for it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sde.durations import duration_text
from sde.quality.phonemes import PhonemizerError, phoneme_histograms, phoneme_inventory, speaker_codes

__all__ = ["GUIDANCE", "MAX_SPEAKERS", "TooManySpeakers", "speaker_table", "tts_report", "unchecked_flags"]

#: What a single-speaker TTS voice usually wants (the flags compare against these).
GUIDANCE: dict[str, float] = {
    "target_hours": 20.0,        # ~20 h per voice for a high-quality single-speaker model
    "min_sample_rate": 22050,    # 22.05 kHz or more; 16 kHz ASR audio makes a muffled voice
    "lufs_spread_max": 6.0,      # LU between the 25th and 75th percentile of utterance loudness
    "clipping_share_max": 0.01,  # share of utterances that clip
    # An utterance clips when more than this share of its samples is at full scale: the Statistics
    # card's threshold (sde.audio_quality.CLIPPING_THRESHOLD); one overshooting sample is not clipping.
    "clipped_sample_share": 0.001,
    "rare_phoneme_count": 10,    # a phoneme heard fewer times than this is "rare"
}


#: Most speakers a report is made for: each holds its phoneme counts (a report grouped by a column
#: of transcripts or paths, one "speaker" per line, held ~7 KB a line: GBs at a million).
MAX_SPEAKERS = 100_000


class TooManySpeakers(ValueError):
    """The speaker column has more distinct values than a report is made for; the message says so."""


#: Decimals of the report's hours (1e-7 h = 0.36 ms).
HOURS_DIGITS = 7
MISSING_PHONEMES_SHOWN = 20  # in the flag's message; the row's phonemes_missing has them all


def _num(x: Any, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), digits)


def _speakers(table: pd.DataFrame, speaker_column: str) -> pd.Series | None:
    return table[speaker_column] if speaker_column in table else None


def speaker_table(table: pd.DataFrame, speaker_column: str = "speaker") -> pd.DataFrame:
    """Per speaker: utterances, hours, speech_hours, sample_rates (list), lufs_median,
    lufs_spread (IQR), clipping_share; one row per speaker, most hours first. Grouped by the
    speakers' codes (10M names as Python strings would take a GB), named after."""
    codes, names = speaker_codes(_speakers(table, speaker_column), len(table))
    if len(names) > MAX_SPEAKERS + 1:  # and "", the utterances without a speaker
        raise TooManySpeakers(f'the speaker column "{speaker_column}" has {len(names) - 1:,} distinct values: a TTS report '
                              f"is made for at most {MAX_SPEAKERS:,} speakers; name the column of speaker names "
                              "(speaker=COLUMN)")
    frame = pd.DataFrame({"speaker": codes})
    for col in ("duration", "speech_duration", "sample_rate", "lufs", "clipping_ratio"):
        frame[col] = pd.to_numeric(table[col], errors="coerce").to_numpy(np.float64) if col in table else np.nan
    clipping = frame["clipping_ratio"]
    # whether each utterance clips, unknown where it was not measured: a group's mean is its share
    frame["clips"] = (clipping > GUIDANCE["clipped_sample_share"]).astype(np.float64).where(clipping.notna())
    grouped = frame.groupby("speaker", sort=False)
    out = pd.DataFrame({
        "utterances": grouped.size(),
        "hours": grouped["duration"].sum(min_count=1) / 3600.0,
        "speech_hours": grouped["speech_duration"].sum(min_count=1) / 3600.0,
        "lufs_median": grouped["lufs"].median(),
        "lufs_spread": grouped["lufs"].quantile(0.75) - grouped["lufs"].quantile(0.25),
        "clipping_share": grouped["clips"].mean(),
    })
    # Vectorised: a Python function per speaker took seconds at 50,000 speakers.
    out["sample_rates"] = _sample_rates(frame, out.index)
    out = out.reset_index()
    out["speaker"] = np.asarray(names, dtype=object)[out["speaker"].to_numpy()]
    return out.sort_values(["hours", "speaker"], ascending=[False, True], na_position="last")


def _sample_rates(frame: pd.DataFrame, speakers: pd.Index) -> list[list[int]]:
    """Per speaker (in ``speakers``' order), the distinct sample rates of its utterances, sorted."""
    pairs = frame.loc[frame["sample_rate"].notna(), ["speaker", "sample_rate"]]
    pairs = pairs.assign(sample_rate=pairs["sample_rate"].astype(np.int64)).drop_duplicates()
    pairs = pairs.sort_values(["speaker", "sample_rate"], kind="stable")
    owners = pairs["speaker"].to_numpy()
    rates = pairs["sample_rate"].to_numpy().tolist()
    starts = np.searchsorted(owners, speakers.to_numpy(), side="left")
    ends = np.searchsorted(owners, speakers.to_numpy(), side="right")
    return [rates[a:b] for a, b in zip(starts.tolist(), ends.tolist())]


def _flags(row: Any, missing: list[str]) -> list[dict[str, str]]:
    flags: list[dict[str, str]] = []
    hours = row["speech_hours"] if pd.notna(row["speech_hours"]) else row["hours"]
    kind = "speech" if pd.notna(row["speech_hours"]) else "audio"
    if pd.notna(hours) and hours < GUIDANCE["target_hours"]:

        # "0.0 h" for a speaker of a few seconds hid how far off it is: seconds and minutes say it
        flags.append({"flag": "few_hours",
                      "message": f"{duration_text(hours)} of {kind}; ~{GUIDANCE['target_hours']:g} h per voice "
                                 "is the usual target"})
    rates = row["sample_rates"]
    if rates and min(rates) < GUIDANCE["min_sample_rate"]:
        flags.append({"flag": "low_sample_rate",
                      "message": f"{min(rates)} Hz audio; TTS wants {GUIDANCE['min_sample_rate']:g} Hz or more"})
    if pd.notna(row["lufs_spread"]) and row["lufs_spread"] > GUIDANCE["lufs_spread_max"]:
        flags.append({"flag": "uneven_loudness",
                      "message": f"loudness varies by {row['lufs_spread']:.1f} LU (interquartile); "
                                 f"normalise to one level (≤ {GUIDANCE['lufs_spread_max']:g} LU)"})
    if pd.notna(row["clipping_share"]) and row["clipping_share"] > GUIDANCE["clipping_share_max"]:
        flags.append({"flag": "clipping",
                      "message": f"{100 * row['clipping_share']:.1f}% of utterances clip"})
    if missing:
        shown = " ".join(missing[:MISSING_PHONEMES_SHOWN])
        more = len(missing) - MISSING_PHONEMES_SHOWN
        flags.append({"flag": "missing_phonemes",
                      "message": f"{len(missing)} phonemes never spoken: {shown}"
                                 + (f" … and {more} more (phonemes_missing lists them all)" if more > 0 else "")})
    return flags


#: Flags that need a measured column, and how to measure it: without the column the flag can never
#: be raised, and an empty ``flags`` list must not read as "passed" (after ``--vad`` alone, no
#: speaker of 8 kHz audio was ever flagged ``low_sample_rate``).
_MEASURED_BY: dict[str, tuple[str, str]] = {
    "low_sample_rate": ("sample_rate", "the audio metrics: --estimate-audio-metrics, or Measure on the TTS "
                                       "readiness page"),
    "clipping": ("clipping_ratio", "the audio metrics: --estimate-audio-metrics, or Measure on the TTS "
                                   "readiness page"),
    "uneven_loudness": ("lufs", "loudness: --vad, or Measure on the TTS readiness page"),
}


def unchecked_flags(table: pd.DataFrame) -> list[dict[str, str]]:
    """The flags this table cannot raise for want of a measured column: ``[{"flag", "column",
    "message"}]`` (the message says how to measure it)."""
    return [{"flag": flag, "column": column, "message": f"not checked: no {column} column; measure {how}"}
            for flag, (column, how) in _MEASURED_BY.items() if column not in table.columns]


def _phoneme_coverage(table: pd.DataFrame, lang: str, speaker_column: str, text_column: str
                      ) -> tuple[pd.DataFrame, list[str], str]:
    """(histograms, inventory, where the inventory comes from)."""
    speakers = _speakers(table, speaker_column)
    texts = table[text_column] if text_column in table else pd.Series([""] * len(table))
    hist = phoneme_histograms(texts, speakers, lang)
    inventory = phoneme_inventory(lang)
    if inventory is None:
        return hist, sorted(set(hist["phoneme"])), "dataset"
    return hist, inventory, "reference text"


def _counts_by_speaker(hist: pd.DataFrame) -> dict[str, dict[str, int]]:
    """speaker → {phoneme: count} from phoneme_histograms' rows, each speaker's in their order."""
    order = np.argsort(hist["speaker"].to_numpy(dtype=object), kind="stable")
    owners = hist["speaker"].to_numpy(dtype=object)[order].tolist()
    phonemes = hist["phoneme"].to_numpy(dtype=object)[order].tolist()
    counts = hist["count"].to_numpy()[order].tolist()
    out: dict[str, dict[str, int]] = {}
    start = 0
    for end in range(1, len(owners) + 1):
        if end == len(owners) or owners[end] != owners[start]:
            out[owners[start]] = dict(zip(phonemes[start:end], counts[start:end]))
            start = end
    return out


def tts_report(table: pd.DataFrame, lang: str | None = "en", *, speaker_column: str = "speaker",
               text_column: str = "text", limit: int | None = None, counts: bool = False) -> dict[str, Any]:
    """The ``/api/tts`` JSON: ``{"speakers": [...], "phoneme_inventory": [...], ...}``.

    Each speaker: ``speaker, utterances, hours, speech_hours, sample_rates, lufs_median,
    lufs_spread, clipping_share, phonemes_missing, phonemes_rare, flags`` (``flags``: ``[{"flag",
    "message"}]`` against :data:`GUIDANCE`); ``speaker`` is None for the utterances without one.
    ``lang`` None skips phonemes. When espeak-ng is missing or lacks the voice, ``phoneme_error``
    says why, each speaker's ``phonemes_missing`` and ``phonemes_rare`` are None (not measured: an
    empty list would read as every phoneme heard) and ``unchecked`` lists ``missing_phonemes``.
    ``limit`` keeps the speakers with the most hours. ``counts`` adds each speaker's
    ``phoneme_counts`` (phoneme → times heard, most frequent first: the histogram). ``unchecked``
    lists the flags no speaker could get because their column was never measured.
    """
    speaker_stats = speaker_table(table, speaker_column)
    stats = speaker_stats.head(limit) if limit is not None else speaker_stats
    report: dict[str, Any] = {"phoneme_inventory": [], "inventory_source": None, "guidance": dict(GUIDANCE)}
    seen: dict[str, dict[str, int]] = {}
    if lang:
        try:
            hist, inventory, source = _phoneme_coverage(table, lang, speaker_column, text_column)
            report.update(phoneme_inventory=inventory, inventory_source=source, language=lang)
            seen = _counts_by_speaker(hist)
        except PhonemizerError as exc:
            report["phoneme_error"] = str(exc)
    unmeasured = "phoneme_error" in report
    speakers = []
    for row in stats.to_dict("records"):  # iterrows made a Series per speaker: seconds at 50,000
        counts_of = seen.get(row["speaker"], {})
        missing = [p for p in report["phoneme_inventory"] if p not in counts_of] if lang else []
        rare = sorted(p for p, c in counts_of.items() if c < GUIDANCE["rare_phoneme_count"])
        speakers.append({
            # "" inside (no speaker: missing or empty alike), null outside, as /api/breakdown names
            # its group of missing values
            "speaker": row["speaker"] if row["speaker"] != "" else None,
            "utterances": int(row["utterances"]),
            # 4 decimals (0.36 s) made a speaker of a 0.1 s clip 0.0 hours
            "hours": _num(row["hours"], HOURS_DIGITS),
            "speech_hours": _num(row["speech_hours"], HOURS_DIGITS),
            "sample_rates": list(row["sample_rates"]),
            "lufs_median": _num(row["lufs_median"], 2),
            "lufs_spread": _num(row["lufs_spread"], 2),
            "clipping_share": _num(row["clipping_share"], 4),
            "phonemes_missing": None if unmeasured else missing,
            "phonemes_rare": None if unmeasured else rare,
            "flags": _flags(row, missing),
            **({"phoneme_counts": None if unmeasured else {p: int(c) for p, c in counts_of.items()}}
               if counts else {}),
        })
    report["speakers"] = speakers
    report["total_speakers"] = int(len(speaker_stats))
    report["unchecked"] = unchecked_flags(table)
    if unmeasured:  # no column to measure: espeak-ng is what is missing, and phoneme_error says the fix
        report["unchecked"].append({"flag": "missing_phonemes", "column": None,
                                    "message": f"not checked: {report['phoneme_error']}"})
    return {"speakers": report.pop("speakers"), **report}
