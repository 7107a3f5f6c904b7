"""What the data-quality pages (TTS readiness, Duplicates) share with their JSON twins
(sde.web.api.quality): the TTS report per dataset generation and language, and a page of duplicate
groups. No components here: the pages lay these out, the routes send them as JSON."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sde.caching import for_dataset, keeping
from sde.quality.apply import TooLarge, quality_frame
from sde.quality.duplicates import duplicate_groups
from sde.quality.phonemes import PhonemizerError, UnknownVoice, check_voice, espeak_version
from sde.quality.tts import tts_report
from sde.web.present import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = ["KIND_COLUMNS", "checked_lang", "default_lang", "duplicate_groups_found", "duplicates_page", "group_filter", "speaker_column", "tts",
           "valid_lang"]

_LANG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,2}")
_SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk", "spk_id")
#: Duplicate kind (`kind=` of the page and the route) → its group column.
KIND_COLUMNS = {"text": "dup_text_group", "near": "dup_near_group", "audio": "dup_audio_group"}
_QUALITY_KIND = {"text": "duplicates", "near": "near_duplicates", "audio": "duplicates"}


# ---------------------------------------------------------------- TTS readiness


def default_lang(dataset: Dataset) -> str:
    """The manifest's most common ``lang`` when it looks like a language code, else English. A line
    without ``lang`` counts as English, the default it is measured in: 36 lines without a language
    and one each of ru, zh and ar made Russian the language of all of them. Ties go to the first
    code in alphabetical order, so the choice does not depend on the manifest's order."""
    if "lang" in dataset.utterances.columns:
        langs = dataset.utterances["lang"].astype(object).where(dataset.utterances["lang"].notna(), "")
        langs = langs.astype(str).str.strip().str.lower().replace("", "en")
        counts = langs.value_counts()
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if ranked and _LANG.fullmatch(ranked[0][0]):
            return str(ranked[0][0])
    return "en"


def valid_lang(raw: Any) -> str | None:
    """``raw`` when it looks like an espeak-ng voice name (en, en-us, de), else None."""
    return str(raw) if isinstance(raw, str) and _LANG.fullmatch(raw) else None


def checked_lang(raw: str) -> str:
    """``raw``, a language asked for (a link's or a request's ``lang``), when it is an espeak-ng
    voice; else ApiError (400) saying why: not shaped like one, or one espeak-ng does not have.
    Without espeak-ng at all it is taken as it is: the report itself says so (phoneme_error), and
    the default (the manifest's lang field) is never checked: it is not the asker's mistake."""
    lang = valid_lang(raw)
    if lang is None:
        raise ApiError(f"lang must be an espeak-ng voice such as en, en-us, de, fr or es, got {raw[:40]!r}")
    try:
        check_voice(lang)
    except UnknownVoice as exc:
        raise ApiError(f"lang: {exc}") from None
    except PhonemizerError:
        pass
    return lang


def speaker_column(dataset: Dataset, raw: Any = None) -> str:
    """``raw`` when it is a column, else the first of speaker, speaker_id, spk, spk_id present."""
    columns = dataset.utterances.columns
    if isinstance(raw, str) and raw in columns:
        return raw
    return next((c for c in _SPEAKER_COLUMNS if c in columns), "speaker")


def tts(dataset: Dataset, lang: str, speaker: str) -> dict[str, Any]:
    """:func:`sde.quality.tts.tts_report` with per-speaker phoneme counts, once per dataset
    generation, language and speaker column (espeak-ng phonemises each distinct word once), and
    kept with the dataset's build (10M utterances: ~45 s, ~1.2 GB at each start otherwise): a later
    start reads it. Kept per espeak-ng version, and only with its phonemes (a report made without
    espeak-ng says so, and a later start with it installed makes a new one)."""
    cache = for_dataset(dataset, "tts", 8, kept=1)
    key = (lang, speaker, espeak_version())
    # a second tab waits for the report instead of making a copy beside it
    report = cache.get_or_compute_once(key, lambda: tts_report(dataset.utterances, lang, speaker_column=speaker,
                                                               counts=True))
    if "phoneme_error" not in report:
        with keeping():  # the report held is kept (once: a kept one is not written again)
            cache.get_or_compute_once(key, lambda: report)
    return report


# ---------------------------------------------------------------- duplicates


def group_filter(kind: str, group: int) -> str:
    """The filter of one group: `{dup_text_group} = 12`."""
    return f"{{{KIND_COLUMNS[kind]}}} = {int(group)}"


def duplicate_groups_found(dataset: Dataset, kind: str) -> tuple[str, str] | None:
    """Compute the groups of ``kind`` (the Duplicates page's first question, and /api/duplicates',
    asks for them all: one run in the background serves both): None, or why there are none to
    show, as (the alert's id, its message): audio never measured (KeyError), too many transcripts
    (TooLarge)."""
    try:
        duplicates_page(dataset, kind, 0, 1)
    except KeyError as exc:
        return "dup-not-measured", str(exc.args[0])
    except TooLarge as exc:
        return "dup-too-large", str(exc)
    return None


def duplicates_page(dataset: Dataset, kind: str, page: int, page_size: int) -> dict[str, Any]:
    """One page of groups of ``kind`` (largest first) and the totals, from the group columns
    computed beside the dataset (``quality_frame``: the dataset itself is not changed). Each group
    lists at most GROUP_MAX_IDS ids and GROUP_MAX_TEXTS transcripts (``sde.quality.duplicates``);
    ``ids_truncated`` / ``texts_truncated`` say whether that cut some. ValueError for an unknown
    kind; KeyError when audio hashes were never measured."""
    if kind not in KIND_COLUMNS:
        raise ValueError(f'unknown duplicate kind "{kind}": use kind=text, kind=near or kind=audio')
    table = dataset.utterances
    column = KIND_COLUMNS[kind]
    if kind == "audio" and "audio_hash" not in table.columns:
        raise KeyError("audio duplicates need the audio hashes: measure them on the TTS readiness page "
                       "(or start sde with --vad)")
    groups_of = quality_frame(dataset, _QUALITY_KIND[kind])[column]
    # duplicate_groups reads dup_text_group / dup_audio_group: near groups stand in for the first.
    frame = pd.DataFrame({"id": table["id"].to_numpy() if "id" in table.columns else np.arange(len(table)),
                          "text": table["text"].array if "text" in table.columns else "",
                          "dup_text_group" if kind != "audio" else column: groups_of.array})
    # A near group's texts are its centre's neighbours: listed first, the centre says what they vary on.
    groups = duplicate_groups(frame, "audio" if kind == "audio" else "text", offset=page * page_size,
                              limit=page_size, centre_first=kind == "near")
    for g in groups:
        g["filter"] = group_filter(kind, g["group"])
        # a client reading ids or texts as the whole group would act on a sample without knowing
        g["ids_truncated"] = g["size"] > len(g["ids"])
        g["texts_truncated"] = g["texts_total"] > len(g["texts"])
    return {"kind": kind, "column": column, "groups_total": int(groups_of.nunique(dropna=True)),
            "utterances": int(groups_of.notna().sum()), "page": page, "page_size": page_size,
            "groups": groups}
