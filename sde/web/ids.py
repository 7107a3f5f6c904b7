"""Component ids, as constants, so that layouts, callbacks and browser tests agree on them.

Ids are plain strings (they show up as DOM ids, which the browser tests and the keyboard script
use). Each page prefixes its own ids with its name.
"""

# The shell (app.py)
URL = "url"                      # dcc.Location: the one source of truth for the current page
RENDERED = "rendered"            # dcc.Store: {"path", "search"} of the page now shown
PAGE = "page-content"            # where the router puts the page layout
NAVBAR = "navbar"
DOC_TITLE = "doc-title"          # dummy output of the clientside callback that sets document.title
APP_TITLE = "app-title"          # dcc.Store: the manifest name

# Shared table view (samples, vocabulary): f"{prefix}-{suffix}"
GRID = "grid"
FILTER = "filter"
FILTER_FEEDBACK = "filter-feedback"
FILTER_HELP = "filter-help"
STATE = "state"                  # dcc.Store: {"filter", "grid_filter", "effective", "sort"}
COUNT = "count"
CSV = "csv"
COLUMNS = "columns"              # dbc.Checklist of visible columns
COLUMNS_TOGGLE = "columns-toggle"
COLUMNS_COLLAPSE = "columns-collapse"
PURGE = "purge"                  # dummy output of the clientside cache purge


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
UTT_SIGNAL = "utt-signal"        # dcc.Graph (waveform + spectrogram)
UTT_SIGNAL_KIND = "utt-signal-kind"
UTT_SIGNAL_MESSAGE = "utt-signal-message"
UTT_ID = "utt-id"                # dcc.Store with the utterance id
UTT_DIFF = "utt-diff"
UTT_FIELDS = "utt-fields"

# Statistics
STATS_CARDS = "stats-cards"
STATS_ALPHABET = "stats-alphabet"

# Problems
PROBLEMS_TABLE = "problems-table"
