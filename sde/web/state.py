"""What the browser holds: component ids, the router's rendered key, and every URL the app links to.

The URL is the one source of truth for what a page shows (a link can be shared), so every link
is built here, once: `samples_href`, `utterance_href`, `word_href`, `error_href` and the `error=`
codec. Nothing here touches a dataset; everything is a pure function of strings.

Ids are plain strings (they show up as DOM ids, which the browser tests and the keyboard script
use). Each page prefixes its own ids with its name.
"""

from __future__ import annotations

import math
import string
from typing import Mapping
from urllib.parse import parse_qsl, quote, unquote, urlencode

from sde.filters import Clause, combine_filters

# ---------------------------------------------------------------- component ids

# The shell (app.py)
URL = "url"                      # dcc.Location: the one source of truth for the current page
RENDERED = "rendered"            # dcc.Store: rendered_key() of the page now shown
PAGE = "page-content"            # where the router puts the page layout
NAVBAR = "navbar"
NAVBAR_TOGGLER = "navbar-toggler"
NAVBAR_COLLAPSE = "navbar-collapse"
NAV_LINK = "nav-link"            # pattern-matching id type of the navbar's links: {"type", "index": the page's href}
NAV_MEMORY = "nav-memory"        # dcc.Store (session): {page href: its last query string}, what its link returns to
NAV_PATHS = "nav-paths"          # dcc.Store: {path or alias: the href of its navbar link}
DOC_TITLE = "doc-title"          # dummy output of the clientside callback that sets document.title
APP_TITLE = "app-title"          # dcc.Store: the manifest name

# Shared table view (samples, vocabulary): f"{prefix}-{suffix}"
GRID = "grid"
FILTER = "filter"
FILTER_FEEDBACK = "filter-feedback"
FILTER_HELP = "filter-help"
APPLY = "apply"
APPLIED = "applied"              # dcc.Store: the filter box's text once applied
STATE = "state"                  # dcc.Store: {"filter", "colfilter", "effective", "sort"}
COUNT = "count"
CSV = "csv"
JSON = "json"                    # the link to the JSON twin (the API) of the view shown
COLUMNS = "columns"              # dbc.Checklist of visible columns
COLUMNS_TOGGLE = "columns-toggle"
COLUMNS_COLLAPSE = "columns-collapse"
PURGE = "purge"                  # dummy output of the clientside cache purge
FILTER_HINT = "filter-hint"      # advice under the filter box (e.g. the `=~` rewrite of an empty result)
FILTER_EXCERPT = "filter-excerpt"  # the invalid filter with a caret under the place it goes wrong
COLFILTER_TEXT = "colfilter-text"  # the grid's column filters in the filter language ("{wer} >= 50")
FOCUS = "focus"                  # dcc.Store {"uid", "index"}: the row to scroll to and select (back from the inspector)


def table_id(prefix: str, suffix: str) -> str:
    return f"{prefix}-{suffix}"


# Samples
SAMPLES = "samples"
# Vocabulary
VOCABULARY = "vocabulary"

# Inspector (utterance page)
UTT_PREV = "utt-prev"            # dcc.Link; the keyboard script clicks it
UTT_NEXT = "utt-next"
UTT_BACK = "utt-back"
UTT_AUDIO = "utt-audio"
UTT_WAV = "utt-wav"              # the WAV download link (hidden, as the player is, when the audio cannot play)
UTT_PLAY_HINT = "utt-play-hint"  # "Click the waveform … to play" (hidden with the player)
UTT_SIGNAL = "utt-signal"        # dcc.Graph (waveform + spectrogram)
UTT_SIGNAL_KIND = "utt-signal-kind"
UTT_SIGNAL_MESSAGE = "utt-signal-message"
UTT_ID = "utt-id"                # dcc.Store with the utterance id
UTT_DIFF = "utt-diff"
UTT_FIELDS = "utt-fields"
UTT_AUTOPLAY = "utt-autoplay"    # switch: play each utterance as it opens (kept in sessionStorage)

# Statistics
STATS_CARDS = "stats-cards"
STATS_ALPHABET = "stats-alphabet"

# Problems
PROBLEMS_TABLE = "problems-table"


# ---------------------------------------------------------------- the router's state

def rendered_key(path: str, params: Mapping[str, str], title: str) -> dict:
    """What the router stores about the page it shows (compared to skip needless re-renders).
    A page that writes its own state into the query string writes this key in the same callback."""
    return {"path": path, "params": dict(sorted(params.items())), "title": title}


def query_params(search: str | None) -> dict[str, str]:
    """A location's query string (`?a=1&b=2`) as single values; blank values are left out."""
    return dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=False))


def search_of(params: Mapping[str, str | None], safe: str = "") -> str:
    """`?a=1&b=2` of the non-empty parameters ("" when there are none)."""
    q = {k: v for k, v in params.items() if v}
    return f"?{urlencode(q, safe=safe)}" if q else ""


# The query-string state of a table page (Samples, Vocabulary), in the order it is written
# (`cols`: the visible columns, comma-separated, when they are not the page's default).
TABLE_PARAMS = ("filter", "colfilter", "sort", "cols")


def table_params(params: Mapping[str, str]) -> dict[str, str]:
    """The query-string state a table page understands, normalised (only non-empty keys)."""
    return {k: params[k] for k in TABLE_PARAMS if params.get(k)}


def table_search(state: Mapping[str, str]) -> str:
    return search_of({k: state.get(k) for k in TABLE_PARAMS})


# ---------------------------------------------------------------- links

def samples_href(**params: str | None) -> str:
    """/samples with the given non-empty query parameters, in the order given (colons kept
    readable: `error=sub:a:b`)."""
    return "/samples" + search_of(params, safe=":")


def vocabulary_href(**params: str | None) -> str:
    """/vocabulary with the given non-empty query parameters."""
    return "/vocabulary" + search_of(params)


# The list the inspector was opened from, carried in its query string: previous/next walk it and
# "back" returns to it. `from=comparison` (with a, b, metric, filter): the Comparison page's ranked
# list of differences; otherwise the Samples list of `filter`, its grid column filters
# (`colfilter`) and `sort` (with its `cols`).
INSPECTOR_PARAMS = ("from", "a", "b", "metric", "filter", "colfilter", "sort", "cols")
FROM_COMPARISON = "comparison"


def utterance_href(uid: int, filter: str | None = None, sort: str | None = None, **context: str | None) -> str:
    """The inspector on utterance `uid`, walking the list that `filter` and `sort` make (or the
    one `context` names: `from`, `a`, `b`, `metric`, `colfilter`, `cols` of INSPECTOR_PARAMS)."""
    unknown = set(context) - set(INSPECTOR_PARAMS)
    if unknown:
        raise ValueError(f"not an inspector parameter: {', '.join(sorted(unknown))}")
    params = {"filter": filter, "sort": sort, **context}
    return f"/utterance/{int(uid)}" + search_of({k: params.get(k) for k in INSPECTOR_PARAMS})


def inspector_context(params: Mapping[str, str]) -> dict[str, str]:
    """The list context of an inspector URL's parameters (what its prev/next links keep)."""
    return {k: params[k] for k in INSPECTOR_PARAMS if params.get(k)}


def comparison_params(a: str, b: str, metric: str | None = None, filter: str | None = None) -> dict[str, str]:
    """The Comparison page's query-string state (metric left out when it is the default, wer)."""
    return {k: v for k, v in (("a", a), ("b", b), ("metric", metric if metric != "wer" else None),
                               ("filter", filter)) if v}


def comparison_href(a: str, b: str, metric: str | None = None, filter: str | None = None) -> str:
    return "/comparison" + search_of(comparison_params(a, b, metric, filter))


def ranked_utterance_href(uid: int, a: str, b: str, metric: str | None = None, filter: str | None = None) -> str:
    """The inspector on `uid`, reached from Comparison: previous/next walk the utterances where A
    and B differ, largest difference first (the page's ranked table)."""
    return utterance_href(uid, **{"from": FROM_COMPARISON}, **comparison_params(a, b, metric, filter))


def word_clause(word: str) -> str:
    """The filter clause of the references that have `word` as a whole word."""
    return Clause("text", "has", str(word)).to_q()


def char_href(char: str) -> str:
    """/samples restricted to the references that contain the character `char`, in its case (the
    alphabet lists "T" and "t" apart; `contains` ignores case, and "T" listed 61 references where
    one had it)."""
    char = str(char)
    literal = "\\" + char if char in string.punctuation else char  # RE2 takes \ before any ASCII punctuation
    return samples_href(filter=Clause("text", "matches", literal).to_q())


#: The references with a digit (Unicode Nd, as the Statistics page's alphabet check counts them).
DIGITS_FILTER = Clause("text", "matches", r"\p{Nd}").to_q()


def word_href(word: str, filter: str | None = None) -> str:
    """/samples restricted to the references that have `word` (and to `filter`, when given)."""
    return samples_href(filter=combine_filters(filter, word_clause(word)))


def audio_href(uid: int, fmt: str = "wav") -> str:
    return f"/audio/{int(uid)}.{fmt}"


#: The inspector's player fetches the Ogg (7x smaller) for segments up to this long; longer
#: ones play the WAV, streamed with Range support so the browser can seek anywhere at once (a
#: long Ogg is encoded while it streams: no length, no Range, no seeking ahead).
PLAYER_OGG_MAX_S = 40.0


def player_src(uid: int, duration: float | None) -> str:
    """The URL the inspector's audio player plays for an utterance of `duration` seconds."""
    short = isinstance(duration, (int, float)) and math.isfinite(duration) and 0 < duration <= PLAYER_OGG_MAX_S
    return audio_href(uid, "ogg" if short else "wav")


# ---------------------------------------------------------------- the error= parameter

ERROR_OPS = ("sub", "del", "ins")


def error_param(op: str, ref: str | None = None, hyp: str | None = None) -> str:
    """The samples page's `error=` value: `sub:REF:HYP`, `del:WORD` or `ins:WORD`.

    Each word is percent-encoded (so a ':' or '%' inside a word is unambiguous); plain words stay
    readable. `parse_error_param` is the inverse."""
    def q(word: str | None) -> str:
        return quote(word or "", safe="")

    if op == "sub":
        return f"sub:{q(ref)}:{q(hyp)}"
    if op == "del":
        return f"del:{q(ref)}"
    if op == "ins":
        return f"ins:{q(hyp)}"
    raise ValueError(f"unknown error kind {op!r}; choose sub, del or ins")


def parse_error_param(value: str) -> tuple[str, str | None, str | None]:
    """`sub:REF:HYP` → ("sub", REF, HYP); `del:W` → ("del", W, None); `ins:W` → ("ins", None, W).

    The arguments of `sde.analysis.utterances_with_error(errors, op, ref, hyp)`. ValueError with a
    message for anything else."""
    parts = (value or "").split(":")
    op = parts[0]
    if op == "sub" and len(parts) == 3:
        return "sub", unquote(parts[1]), unquote(parts[2])
    if op == "del" and len(parts) == 2:
        return "del", unquote(parts[1]), None
    if op == "ins" and len(parts) == 2:
        return "ins", None, unquote(parts[1])
    raise ValueError(f'invalid error {value!r}: use "sub:REF:HYP", "del:WORD" or "ins:WORD" '
                     "(words percent-encoded)")


def error_words(op: str, ref: str | None, hyp: str | None) -> str:
    """The value of a hypothesis's `error` column that matches this error (`"sub REF HYP"`)."""
    return {"sub": f"sub {ref} {hyp}", "del": f"del {ref}", "ins": f"ins {hyp}"}[op]


def error_href(hyp_field: str, op: str, ref: str | None = None, hyp: str | None = None,
               filter_text: str | None = None) -> str:
    """/samples listing the utterances where hypothesis `hyp_field` makes this error."""
    return samples_href(error=error_param(op, ref, hyp), hyp=hyp_field, filter=filter_text)
