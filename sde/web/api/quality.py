"""HTTP routes of data quality (listed in sde.web.api's ROUTES):

    GET /api/tts?lang=en&speaker=COL&limit=N&counts=1
        {"speakers": [{"speaker", "utterances", "hours", "speech_hours", "sample_rates",
          "lufs_median", "lufs_spread", "clipping_share", "phonemes_missing", "phonemes_rare",
          "flags": [{"flag", "message"}], "phoneme_counts"?}], "phoneme_inventory": [...],
          "inventory_source", "language", "guidance", "total_speakers", "unchecked", "phoneme_error"?}
        (lang: an espeak-ng voice or language code, any case: en, en-GB, fr-fr; without phonemes,
        phoneme_error says why and phonemes_missing is null: not checked, never covered)
    GET /api/duplicates?kind=text|near|audio&page=P&page_size=N
        {"kind", "column", "groups_total", "utterances", "page", "page_size",
         "groups": [{"group", "size", "ids", "ids_truncated", "texts", "texts_total",
         "texts_truncated", "filter", "conflict"?}]}  (largest first; at most GROUP_MAX_IDS ids and
         GROUP_MAX_TEXTS texts a group, sde.quality.duplicates'; a flag is true when its list was cut)
    GET /api/suspicious
        {"utterances", "flags": [{"flag", "column", "count", "filter", "description"}],
         "duplicates": {...}, "speech_hours"}
    GET /api/problems?page=P&page_size=N   (the Problems page's JSON twin: every entry the page shows)
        {"total", "page", "page_size", "rows": [{"file", "line", "reason", "message"}], "problems" (= rows),
         "total_lines", "loaded", "skipped",
         "warnings": [{"file", "line", "reason", "message"}] (the first PROBLEMS_PAGE_LINES, as the page),
         "warnings_total",
         "audio_missing", "audio_missing_files" (utterances / distinct files not found; null: not checked),
         "audio_missing_listed": [{"file", "line", "audio_path", "message"}] (each of the first
         MISSING_AUDIO_SHOWN files at its first line, as the page), "audio_missing_more", "audio_missing_filter"}
        `total` and `rows` are the skipped lines (paged); the audio files not found are problems of
        lines that loaded, counted apart (`/api/utterances?filter={audio_exists} = false` lists them all).
    GET /api/utterances/ID/augment?speed=&stretch=&noise=&snr=&rir=&rt60=&seed=
        the augmented segment as 16-bit WAV (same parameters and seed: same bytes)
    GET /api/utterances/ID/augment/config?…same…
        {"id", "params", "sample_rate", "duration", "nemo_yaml", "noise_files", "rir_files"}

Errors are JSON like every route's: a bad parameter → 400 naming it, unknown id → 404, a
segment longer than the preview processes (30 s) → 422 with the reason, unreadable audio → 404/422.

/api/tts, /api/duplicates and /api/suspicious compute on a thread of their own (minutes at 10M
utterances: longer than a proxy holds a request), once per generation of the tables and
parameters, shared with the page that shows the same (sde.web.panels.background). A request waits
up to API_WAIT_S for it; while it runs the answer is 202
`{"status": "running", "task", "seconds", "retry_after", "error": null}` with a Retry-After
header, and the same request asked again later gets the result. A computation that failed answers
like any error: its message, 422 for a check refused over its size, 400 for a refused query, 500
for anything else.

:func:`install` also makes the text-derived quality columns appear on demand: a request whose
filter or sort (in the query string, or in a Dash callback's body: the Samples grid, a /samples
link) names one of them computes them first (``sde.quality.apply.ensure_quality_columns``), so
`/api/utterances?filter={dup_text_group} = 3` works on a fresh server. An /api/ request has them
computed in the background and answers 202 like the routes above until they are there; a
callback still computes them in its request (the grid has no way to ask again).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Hashable
from typing import Any

from flask import Flask, Response, request

from sde.audio import AudioError, wav_bytes
from sde.audio_presence import MISSING_AUDIO_FILTER, audio_presence_summary, missing_audio_listing
from sde.quality.apply import TooLarge, ensure_quality_columns, quality_column_kinds
from sde.quality.augment import AugmentError
from sde.quality.tts import TooManySpeakers
from sde.query import QueryError
from sde.web.api import tables
from sde.web.api.respond import (MAX_PAGE, arg, flag_arg, int_arg, internal_error_text, json_response, page_args,
                                 served_dataset)
from sde.web.audio_service import UnknownUtterance, http_status
from sde.web.panels import augment as augment_panel
from sde.web.panels import quality_data
from sde.web.panels import suspicious as suspicious_panel
from sde.web.panels.background import Progress, in_background
from sde.web.present import MISSING_AUDIO_SHOWN, PROBLEMS_PAGE_LINES, ApiError
from sde.caching import for_dataset
from sde.dataset import Dataset

log = logging.getLogger(__name__)

MAX_TTS_SPEAKERS = 10_000
_DASH_UPDATE = "/_dash-update-component"
#: How long a request waits for work that runs in the background before it answers 202: a small
#: dataset's answer still comes in the first request.
API_WAIT_S = 10.0
#: The Retry-After of a 202, in seconds.
RETRY_AFTER_S = 5


class StillRunning(ApiError):
    """The 202 of work still running in the background: a later identical request gets its result."""

    def __init__(self, task: str, progress: Progress) -> None:
        super().__init__(f"{task} is still running", 202, headers={"Retry-After": str(RETRY_AFTER_S)})
        self.task = task
        self.seconds = progress.seconds
        self.waiting = progress.waiting

    def body(self) -> dict:
        # waiting: for another computation of the same task to end (sde.web.panels.background)
        return {"status": "waiting" if self.waiting else "running", "task": self.task,
                "seconds": round(self.seconds, 1), "retry_after": RETRY_AFTER_S, "error": None}


def awaited(dataset: Dataset, task: str, key: Hashable, compute: Callable[[], Any]) -> Any:
    """The value of ``compute`` run in the background as ``task`` / ``key`` (the page's name and key
    where a page shows the same: one run for both), after waiting up to API_WAIT_S for it;
    StillRunning (202) while it runs, the ApiError of its failure once it failed."""
    progress = in_background(dataset, task, key, compute, API_WAIT_S)
    if not progress.done:
        raise StillRunning(task, progress)
    if progress.exception is not None:
        raise _failure(task, progress)
    return progress.value


def _failure(task: str, progress: Progress) -> ApiError:
    """The answer to a failed background computation, as the handlers answer the same error raised
    in a request (a new ApiError each time: the stored one would gather every request's traceback)."""
    exc = progress.exception
    if isinstance(exc, ApiError):
        return ApiError(exc.message, exc.status, fields=exc.fields, headers=exc.headers)
    if isinstance(exc, (TooLarge, TooManySpeakers)):
        return ApiError(str(exc), 422)
    if isinstance(exc, QueryError):
        return ApiError(str(exc))
    # logged with its traceback by sde.web.panels.background when it failed
    return ApiError(internal_error_text(exc, f" in {task}"), 500)


def tts() -> Response:
    dataset = served_dataset()
    raw_lang = arg("lang")
    lang = quality_data.checked_lang(raw_lang) if raw_lang else quality_data.default_lang(dataset)
    speaker = arg("speaker")
    if speaker is not None and speaker not in dataset.utterances.columns:
        raise ApiError(f'speaker must be a column of the manifest, e.g. speaker; "{speaker[:100]}" is not one')
    limit = int_arg("limit", 1000, 1, MAX_TTS_SPEAKERS)
    page = int_arg("page", 0, 0, MAX_PAGE)  # the speakers past the first `limit` were out of reach
    column = quality_data.speaker_column(dataset, speaker)
    report = dict(awaited(dataset, "tts", (lang, column), lambda: quality_data.tts(dataset, lang, column)))
    with_counts = flag_arg("counts", False)
    report["speakers"] = [s if with_counts else {k: v for k, v in s.items() if k != "phoneme_counts"}
                          for s in report["speakers"][page * limit:(page + 1) * limit]]
    report.update(page=page, limit=limit)
    return json_response(report)


def duplicates() -> Response:
    dataset = served_dataset()
    page, size = page_args()
    kind = arg("kind") or "text"
    if kind not in quality_data.KIND_COLUMNS:  # checked first: a made-up kind would get (and keep) a run of its own
        raise ApiError(f'unknown duplicate kind "{kind[:40]}": use kind=text, kind=near or kind=audio')
    # The groups of every page, found once (the page's work); then why there are none (audio never
    # measured, near-duplicates over their size: refused before any work, so within the first
    # wait: 409/422, not 202), or the page asked for.
    refused = awaited(dataset, "duplicate-groups", kind, lambda: quality_data.duplicate_groups_found(dataset, kind))
    if refused is not None:
        reason, message = refused
        raise ApiError(message, 409 if reason == "dup-not-measured" else 422)
    try:
        data = quality_data.duplicates_page(dataset, kind, page, size)
    except TooLarge as exc:
        raise ApiError(str(exc), 422) from None
    except KeyError as exc:
        raise ApiError(str(exc.args[0]), 409) from None
    return json_response(data)  # the groups come capped, with their flags


def suspicious() -> Response:
    dataset = served_dataset()
    return json_response(awaited(dataset, "suspicious", None, lambda: suspicious_panel.summary(dataset)))


def problems() -> Response:
    page, size = page_args(tables.PROBLEMS_PAGE_SIZE)
    return json_response(problems_json(served_dataset(), page, size))


def problems_json(dataset: Dataset, page: int = 0, page_size: int = tables.PROBLEMS_PAGE_SIZE) -> dict:
    """What the Problems page shows, as JSON: the skipped lines (one page of them, sde.web.api.tables'
    problems_json), the warnings about lines kept, and the audio files not found at load time, with
    the page's counts (QA: the page listed a missing file while this answered "total": 0)."""
    out = tables.problems_json(dataset, page, page_size)
    warnings = list(getattr(dataset, "warnings", None) or [])
    out["warnings"] = [{"file": w.path, "line": int(w.line), "reason": w.reason, "message": str(w)}
                       for w in warnings[:PROBLEMS_PAGE_LINES]]
    out["warnings_total"] = len(warnings)
    counts = audio_presence_summary(dataset.utterances)
    missing = missing_audio_listing(dataset.utterances, dataset.name, MISSING_AUDIO_SHOWN)
    listed = [] if missing is None else [
        {**m, "message": f"{m['file']}:{m['line']}: audio file not found: {m['audio_path']}"} for m in missing["listed"]]
    out.update(counts)  # audio_missing, audio_missing_files: as /api/summary counts them
    out.update(audio_missing_listed=listed, audio_missing_more=0 if missing is None else missing["more"],
               audio_missing_filter=MISSING_AUDIO_FILTER)
    return out


def _augmented(utt_id: int):
    dataset = served_dataset()
    try:
        params = augment_panel.params_from(request.args)
        return dataset, params, *augment_panel.augmented(dataset, utt_id, params)
    except UnknownUtterance as exc:
        raise ApiError(str(exc), 404, fields={"id": utt_id}) from None
    except augment_panel.TooLong as exc:
        raise ApiError(str(exc), 422, fields={"id": utt_id, "reason": "too_long"}) from None
    except AugmentError as exc:
        raise ApiError(str(exc), 400, fields={"id": utt_id}) from None
    except AudioError as exc:
        raise ApiError(str(exc), http_status(exc), fields={"id": utt_id, "reason": exc.reason}) from None


def augment(utt_id: int) -> Response:
    _, _, seg, _ = _augmented(utt_id)
    body = wav_bytes(seg)
    return Response(body, mimetype="audio/wav", headers={"Cache-Control": "no-cache",
                                                         "Content-Length": str(len(body))})


def augment_config(utt_id: int) -> Response:
    _, params, seg, rms_db = _augmented(utt_id)
    from sde.quality.augment import nemo_augmentor_yaml

    src = augment_panel.sources()
    return json_response({"id": utt_id, "params": params.as_dict(), "sample_rate": int(seg.sample_rate),
                          "duration": round(float(seg.duration), 4),
                          "nemo_yaml": nemo_augmentor_yaml(params, seg.sample_rate, rms_db),
                          "noise_files": src.files("noise"), "rir_files": src.files("rir")})


# ---------------------------------------------------------------- quality columns on demand


def _pattern(dataset: Dataset) -> tuple[re.Pattern, dict[str, str]]:
    # Asked on every API request and callback: built once per dataset generation (the names
    # depend only on its hypotheses and options).
    def build() -> tuple[re.Pattern, dict[str, str]]:
        kinds = quality_column_kinds(dataset)
        names = sorted(kinds, key=len, reverse=True)
        return re.compile("|".join(re.escape(n) for n in names)), kinds

    return for_dataset(dataset, "quality-column-pattern", 1).get_or_compute("pattern", build)


def _requested_kinds(dataset: Dataset) -> set[str]:
    """The quality kinds a request names (by a column the dataset does not have yet)."""
    text = request.query_string.decode("latin-1")
    if request.method == "POST" and request.path.endswith(_DASH_UPDATE):
        text += request.get_data(cache=True, as_text=True)
    if not text:
        return set()
    pattern, kinds = _pattern(dataset)
    columns = dataset.utterances.columns
    return {kinds[m] for m in set(pattern.findall(text)) if m not in columns}


def install(server: Flask) -> None:
    """Compute the text-derived quality columns before a request that names one of them: in the
    background for an /api/ request (202 until they are there), in the request for a callback."""

    def quality_columns_on_demand() -> None:
        if not (request.path.startswith("/api/") or request.path.endswith(_DASH_UPDATE)):
            return
        dataset = served_dataset()
        if not isinstance(dataset, Dataset):  # a bare table (embedding, tests): no quality columns
            return
        wanted = tuple(sorted(_requested_kinds(dataset)))
        if not wanted:
            return
        if request.path.startswith("/api/"):
            # done: the columns are in the dataset, a new generation of it, and the request goes on
            awaited(dataset, "quality-columns", wanted, lambda: ensure_quality_columns(dataset, wanted))
            return
        try:
            ensure_quality_columns(dataset, wanted)
        except TooLarge as exc:
            raise ApiError(str(exc), 422) from None

    server.before_request(quality_columns_on_demand)


__all__ = ["API_WAIT_S", "RETRY_AFTER_S", "StillRunning", "augment", "augment_config", "awaited", "duplicates",
           "install", "problems", "problems_json", "suspicious", "tts"]
