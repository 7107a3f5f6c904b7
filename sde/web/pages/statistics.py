"""Statistics: the dataset at a glance (JSON twin: /api/summary).

Stat cards (hours, utterances, words, vocabulary, alphabet, skipped lines and files), corpus
WER/CER/WMR/MWA per hypothesis, the alphabet, and histograms binned in SQL by DuckDB (bin counts, not points).
"""

from __future__ import annotations

import html as html_text
from typing import TYPE_CHECKING, Any, Mapping

import dash_bootstrap_components as dbc
import pandas as pd
from dash import ALL, MATCH, Input, Output, Patch, State, ctx, dcc, html, no_update

from sde import histograms
from sde.analysis import any_digit, count_with_digits
from sde.caching import for_dataset
from sde.dataset import normalized_summary, normalized_summary_ready
from sde.text import NORMALIZERS
from sde.filters import QueryError
from sde.web import figures, state
from sde.web.components import (
    alert_code,
    alphabet_view,
    as_list,
    as_mapping,
    as_text,
    first_point,
    fmt_float,
    fmt_int,
    fmt_pct,
    page_header,
    stat_card,
)
from sde.web.grid import categorical_columns
from sde.web.state import query_params, rendered_key, search_of
from sde.web.pages.page import Page, link_value_notes
from sde.web.present import choice_param
from sde.web.panels import audio_metrics, review, suspicious, transcribe

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

# Columns that are bookkeeping or per-hypothesis counts, not distributions worth a histogram.
_NOT_PLOTTED = {"id", "line", "offset", "dup_text_group", "dup_audio_group", "dup_near_group"}
_HYP_COUNTS = ("wmr", "sub", "del", "ins", "hits", "char_edits", "ref_chars")
_BASE_PLOTS = (
    ("duration", "Duration", "duration", "s"),
    ("num_words", "Words per utterance", "words", ""),
    ("num_chars", "Characters per utterance", "characters", ""),
    ("word_rate", "Word rate", "words per second", ""),
    ("char_rate", "Character rate", "characters per second", ""),
)


def stat_id(*parts: str) -> str:
    """DOM id of a stat value: stat-hours, stat-pred_text-wer (tests compare them with /api/summary)."""
    safe = ["".join(c if c.isalnum() or c in "-_" else "_" for c in p) for p in parts]
    return "stat-" + "-".join(safe)


def _histogram(df: pd.DataFrame, series: Mapping[str, str], title: str, xlabel: str, unit: str = ""):
    """The histogram figure of `series` (legend name → column of `df`), binned by DuckDB; a query
    DuckDB cannot run (over --memory-limit) is an empty figure that says why."""
    names = list(series)
    try:
        binned = histograms.histogram(df, [series[n] for n in names])
    except QueryError as e:
        return figures.empty_figure(title, str(e))
    return figures.histogram_figure(binned, names, title, xlabel, unit=unit, columns=series)


def other_numeric_columns(dataset: "Dataset") -> list[str]:
    """Numeric manifest fields (and audio metrics) beyond the ones plotted by name."""
    df = dataset.utterances
    skip = set(_NOT_PLOTTED) | {c for c, *_ in _BASE_PLOTS}
    for h in dataset.hypotheses:
        skip |= {h.column(m) for m in ("wer", "cer", *_HYP_COUNTS)}
        skip |= {h.column("wer") + "_norm", h.column("cer") + "_norm"}
    out = []
    for col in df.columns:
        s = df[col]
        if col in skip or pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
            continue
        out.append(str(col))
    return out


#: Histograms of other numeric fields drawn at most: a manifest with a thousand sparse per-line keys
#: drew a thousand (23 s to lay out, over a minute for a browser to render).
MAX_FIELD_HISTOGRAMS = 24


def fields_to_draw(dataset: "Dataset") -> tuple[list[str], list[str]]:
    """(the other numeric fields drawn, in the table's order; those left out): the
    MAX_FIELD_HISTOGRAMS with the most values, ties going to the earlier field. Cached: every view
    of the page names those left out, and counting them is a pass over each column."""
    def choose() -> tuple[list[str], list[str]]:
        columns = other_numeric_columns(dataset)
        if len(columns) <= MAX_FIELD_HISTOGRAMS:
            return columns, []
        df = dataset.utterances
        counts = {c: int(df[c].count()) for c in columns}
        chosen = set(sorted(columns, key=lambda c: -counts[c])[:MAX_FIELD_HISTOGRAMS])  # stable: ties keep order
        return [c for c in columns if c in chosen], [c for c in columns if c not in chosen]

    return for_dataset(dataset, "statistics-drawn", 1, kept=1).get_or_compute_once("fields", choose)


def build_figures(dataset: "Dataset") -> list[tuple[str, object]]:
    """(key, figure) for every histogram of the page; pure, so tests can call it."""
    df = dataset.utterances
    out: list[tuple[str, object]] = []
    for col, title, xlabel, unit in _BASE_PLOTS:
        if col in df.columns:
            out.append((col, _histogram(df, {col: col}, title, xlabel, unit=unit)))
    if dataset.hypotheses:
        for metric, name in (("wer", "WER"), ("cer", "CER")):
            series = {h.name or h.field: h.column(metric) for h in dataset.hypotheses if h.column(metric) in df.columns}
            out.append((metric, _histogram(df, series, f"Per-utterance {name}", f"{name} (%)")))
        accuracies = {h.name or h.field: dataset.vocabulary[h.column("accuracy")].to_numpy(dtype="float64")
                      for h in dataset.hypotheses if h.column("accuracy") in dataset.vocabulary.columns}
        columns = {h.name or h.field: h.column("accuracy") for h in dataset.hypotheses}
        out.append(("word_accuracy", figures.word_accuracy_figure(accuracies, columns)))
    for col in fields_to_draw(dataset)[0]:
        out.append((col, _histogram(df, {col: col}, col, col)))
    return out


# The layout of what this page keeps with a build (one cache, so one version for all of it); 2: the
# word accuracy bars carry their Vocabulary filters; 3: histogram bars carry their edges' texts.
KEPT_VERSION = 3


def _cached_figures(dataset: "Dataset") -> list[tuple[str, dict]]:
    # The tables change only by replace_with (a new cache then): bin once, not once per page view.
    # Kept as plotly JSON: a view copies each figure to set its count axis, and copying a go.Figure
    # validates every trace again (~13 ms a histogram, most of the page's server time).
    def build() -> list[tuple[str, dict]]:
        return [(key, fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else fig)
                for key, fig in build_figures(dataset)]

    return for_dataset(dataset, "statistics", 2, kept=KEPT_VERSION).get_or_compute_once("figures", build)


def _scored_note(field: str, h: Mapping, utterances: int | None):
    """"scored on N of M utterances" when some lines lack this hypothesis (None otherwise)."""
    missing = int(h.get("missing") or 0)
    if not missing or utterances is None:
        return None
    return html.Div([f"scored on {fmt_int(utterances - missing)} of {fmt_int(utterances)} utterances: "
                     f"{fmt_int(missing)} line{'s' if missing != 1 else ''} without {field} "
                     f"{'are' if missing != 1 else 'is'} left out ",
                     dcc.Link("(see Problems)", href="/problems")],
                    className="small text-warning-emphasis mb-2", id=stat_id(field, "scored"))


def _hypothesis_section(field: str, h: Mapping, label: str, utterances: int | None = None) -> html.Div:
    norm = h.get("normalized") or {}

    def sub(metric: str):
        return f"normalised: {fmt_pct(norm.get(metric))}" if norm else None

    cards = [
        ("WER", "wer", "word error rate: (S+D+I)/N over the corpus", "danger"),
        ("CER", "cer", "character error rate over the corpus", "warning"),
        ("WMR", "wmr", "word match rate: hits/N", "success"),
        ("Mean word accuracy", "mwa", "mean over the reference vocabulary", "info"),
    ]
    counts = (f"{fmt_int(h.get('substitutions'))} substitutions · {fmt_int(h.get('deletions'))} deletions · "
              f"{fmt_int(h.get('insertions'))} insertions") if "substitutions" in h else None
    return html.Div([
        html.Div([
            html.H6([html.Span(label, className="hyp-name"),
                     html.Span(field, className="text-muted small ms-2") if label != field else None],
                    className="mb-0"),
            html.Span(counts, className="text-muted small") if counts else None,
        ], className="d-flex justify-content-between align-items-baseline flex-wrap mb-2"),
        _scored_note(field, h, utterances),
        dbc.Row([
            dbc.Col(stat_card(name, fmt_pct(h.get(metric)), value_id=stat_id(field, metric), sub=sub(metric),
                              tone=tone, title=help_), xs=6, md=3, className="mb-2")
            for name, metric, help_, tone in cards
        ], className="g-2"),
    ], className="hyp-section mb-3")


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    s = dataset.summary()
    skipped = s.get("skipped_lines", 0)
    files = s.get("skipped_files", 0)
    skipped_sub: Any = dcc.Link("see Problems", href="/problems") if skipped or files else "all lines loaded"
    if files:
        # a whole manifest of several left out is not a bad line: said apart, and only when it happened
        skipped_sub = html.Span([html.Span(f"{fmt_int(files)} manifest {'file' if files == 1 else 'files'} skipped",
                                           id=stat_id("skipped_files")), " · ", skipped_sub])
    top = [
        stat_card("Utterances", fmt_int(s["utterances"]), value_id=stat_id("utterances")),
        stat_card("Hours", fmt_float(s["hours"], 2), value_id=stat_id("hours"),
                  sub=f"{fmt_float((s['hours'] or 0) * 60, 1)} minutes"),
        stat_card("Words", fmt_int(s.get("words")), value_id=stat_id("words")),
        stat_card("Vocabulary", fmt_int(s["vocabulary_size"]), value_id=stat_id("vocabulary_size"),
                  sub="distinct reference words", href="/vocabulary"),
        stat_card("Alphabet", fmt_int(s["alphabet_size"]), value_id=stat_id("alphabet_size"),
                  sub="distinct characters"),
        stat_card("Skipped lines", fmt_int(skipped), value_id=stat_id("skipped_lines"), sub=skipped_sub,
                  tone="danger" if skipped or files else None),
    ]
    cards = dbc.Row([dbc.Col(c, xs=6, md=4, xl=2, className="mb-2") for c in top], className="g-2 mb-2",
                    id=state.STATS_CARDS)
    hyps = s.get("hypotheses") or {}
    chosen = normalize_steps(dataset, params)
    known = [step for step in chosen if step in NORMALIZERS]
    # A choice not scored yet (a link's ?normalize=) would hold the whole page back while every
    # utterance is scored again (20-60 s at 1M): the page shows the raw numbers at once, and the
    # normalised ones follow (NORMALIZE_PENDING's callback, under the Loading spinner).
    ready = normalized_summary_ready(dataset, known)
    sections = renormalized(dataset, chosen) if ready else [
        dbc.Alert("Scoring the normalised text: its numbers appear here once every utterance is scored.",
                  color="info", className="py-2 mb-2", id="normalize-pending"), *recognition_sections(dataset, [])]
    if hyps:
        toggle = html.Div([
            html.Span("Also score normalised text:", className="small text-muted me-2"),
            dbc.Checklist(id=NORMALIZE, value=known, inline=True, className="small d-inline-block",
                          options=[{"label": "lowercase", "value": "lower"},
                                   {"label": "strip punctuation", "value": "punct"},
                                   {"label": "numbers → words", "value": "numbers"}]),
        ], className="d-flex align-items-center flex-wrap", id="normalize-toggle")
        hyp_block = dbc.Card(dbc.CardBody([
            html.Div([html.H5("Recognition", className="card-title mb-0"), toggle],
                     className="d-flex justify-content-between align-items-center flex-wrap gap-2 mb-3"),
            dcc.Loading(html.Div(sections, id=RECOGNITION), delay_show=400),
            dcc.Store(id=NORMALIZE_PENDING, data=None if ready else known),
        ]), className="mb-3")
    else:
        hyp_block = transcribe.layout(dataset)
    alphabet = dbc.Card(dbc.CardBody([
        html.H5(["Alphabet ", html.Span(f"{s['alphabet_size']} characters", className="text-muted small")],
                className="card-title"),
        alphabet_view(dataset.alphabet),
    ]), className="mb-3")
    graphs = histograms_block(dataset, choice_param(params, LOG_Y_PARAM, ("0", "1"), "0", link_value_notes()) == "1")
    return html.Div([
        page_header("Statistics", [f"{s['manifest']} · ", html.A("JSON", href=summary_json_href(known), id=SUMMARY_JSON,
                                                                 className="link-secondary")]),
        cards,
        fields_card(dataset),
        hyp_block,
        alphabet,
        _alphabet_check_block(dataset),
        review.summary_card(dataset),
        audio_metrics.layout(dataset),
        suspicious.layout(dataset),
        graphs,
    ])


NORMALIZE = "stats-normalize"
NORMALIZE_PENDING = "stats-normalize-pending"  # steps the page was laid out without scoring yet
# The ticked steps, in the URL when they are not the server's --normalize: `?normalize=lower,punct`
# (the name /api/summary takes), `none` for none ticked.
NORMALIZE_PARAM = "normalize"
NO_STEPS = "none"
SUMMARY_JSON = "stats-json"
RECOGNITION = "stats-recognition"
HISTOGRAM = "stats-hist"          # pattern-matching id type of the histograms: {"type": HISTOGRAM, "key": KEY}
LOG_Y = "stats-log-y"             # switch: log-scaled counts (`?logy=1`)
LOG_Y_PARAM = "logy"
FIELDS = "stats-fields"           # the card of categorical fields and their cardinality
# Categorical-looking text that is no field to break down by (transcripts, paths, notes).
_NOT_CATEGORICAL = {"text", "audio_filepath", "audio_path", "duration_source", "oov_chars", "audio_error",
                    "audio_exists"}


# ---------------------------------------------------------------- histograms: drill-down and log-y

def histograms_block(dataset: "Dataset", log: bool) -> html.Div:
    """Every histogram (log-scaled counts when `log`), each bar a link to its utterances."""
    cells = []
    for key, fig in _cached_figures(dataset):
        shown = go_copy(fig)
        figures.log_y(shown, log)
        graph = dcc.Graph(id={"type": HISTOGRAM, "key": key}, figure=shown, config=figures.GRAPH_CONFIG,
                          className="sde-drill")
        # A chart is a picture to a screen reader: its name says what it shows (role=figure), and
        # the bins as a table (collapsed, filled when opened) are the keyboard's way to the
        # utterances a click on a bar lists.
        chart = html.Div(graph, id=f"hist-{key}", role="figure", **{"aria-label": chart_summary(fig)})
        cells.append(dbc.Col(dbc.Card(dbc.CardBody([chart, bins_details(key)], className="p-2"),
                                      className="h-100"), xs=12, lg=6, xxl=4, className="mb-3"))
    controls = html.Div([
        dbc.Switch(id=LOG_Y, label="log-scaled counts", value=log, className="small mb-0"),
        html.Span("click a bar to list its utterances in Samples (a word accuracy bar: its words in Vocabulary)",
                  className="small text-muted"),
    ], className="d-flex align-items-center gap-3 mb-2")
    return html.Div([controls, dbc.Row(cells, className="g-3"), _fields_not_drawn(dataset)], id="stats-histograms")


BINS = "stats-bins"                # pattern-matching id type of a chart's bins table: {"type": BINS, "key": KEY}
BINS_OPEN = "stats-bins-open"      # ... and of its <summary>, whose clicks fill the table


def _title(fig: Mapping) -> str:
    return html_text.unescape(str(((fig.get("layout") or {}).get("title") or {}).get("text") or ""))


def _bars(fig: Mapping) -> list[Mapping]:
    return [t for t in fig.get("data") or () if t.get("type") == "bar" and t.get("y") is not None]


def _bar_label(trace: Mapping, i: int) -> str:
    """A bar as its hover names it: "2.5–3", "7" (an integer bin), "never recognised"."""
    custom = (trace.get("customdata") or [])[i] if i < len(trace.get("customdata") or []) else None
    if isinstance(custom, (list, tuple)) and len(custom) >= 5 and custom[3] is not None:
        if "%{x:.0f}" in str(trace.get("hovertemplate", "")):
            return f"{trace['x'][i]:.0f}"
        return f"{custom[3]}–{custom[4]}"
    return str(trace["x"][i])


def chart_summary(fig: Mapping) -> str:
    """A chart's text alternative: its title, what it counts, in how many bars, over what range,
    and its tallest bar ("Duration: 120 utterances in 18 bins from 0.5 to 9.5 s; most in 2–2.5 (31)")."""
    title, bars = _title(fig), _bars(fig)
    if not bars:
        return f"{title}: no data"
    layout = fig.get("layout") or {}
    counted = html_text.unescape(str(((layout.get("yaxis") or {}).get("title") or {}).get("text") or "values"))
    parts = []
    for trace in bars:
        ys = [int(y or 0) for y in trace["y"]]
        name = html_text.unescape(str(trace.get("name") or "")) if len(bars) > 1 else ""
        top = max(range(len(ys)), key=lambda i: ys[i])
        first, last = _bar_label(trace, 0), _bar_label(trace, len(ys) - 1)
        span = (f"from {first.split('–')[0]} to {last.split('–')[-1]}" if "–" in first
                else f"{first} to {last}")
        parts.append(f"{name + ': ' if name else ''}{fmt_int(sum(ys))} {counted} in {len(ys)} bars {span}; "
                     f"the most in {_bar_label(trace, top)} ({fmt_int(ys[top])})")
    return f"{title}. " + " · ".join(parts) + ". The bins are listed as a table below the chart."


def bins_table(fig: Mapping) -> html.Table:
    """A chart's bars as rows (bars with nothing in them left out), each count a link to what a
    click on that bar opens (bin_href: the same filter)."""
    bars = _bars(fig)
    multi = len(bars) > 1
    names = [html_text.unescape(str(t.get("name") or "")) if multi else "count" for t in bars]
    head = html.Thead(html.Tr([html.Th("bin", scope="col")] + [html.Th(n, scope="col") for n in names]))
    rows = []
    for i in range(len(bars[0]["y"]) if bars else 0):
        counts = [int(t["y"][i] or 0) for t in bars]
        if not any(counts):
            continue
        cells = []
        for t, n in zip(bars, counts):
            custom = (t.get("customdata") or [None] * (i + 1))[i]
            href = bin_href({"points": [{"customdata": custom}]}) if n else None
            cells.append(html.Td(dcc.Link(fmt_int(n), href=href) if href else fmt_int(n), className="text-end"))
        rows.append(html.Tr([html.Th(_bar_label(bars[0], i), scope="row", className="fw-normal")] + cells))
    return html.Table([html.Caption(_title(fig), className="visually-hidden"), head, html.Tbody(rows)],
                      className="table table-sm small mb-0 stats-bins-table")


def bins_details(key: str) -> html.Details:
    """The collapsed "Bins as a table" under a chart: filled by a callback when opened (the
    tables of 18 charts would weigh on the page's data, whose size has a target)."""
    return html.Details([html.Summary("Bins as a table", id={"type": BINS_OPEN, "key": key}, n_clicks=0,
                                      className="small text-muted"),
                         html.Div(id={"type": BINS, "key": key})], className="mt-1 stats-bins")


def bins_for(dataset: "Dataset", key: Any, clicks: Any) -> Any:
    """The table of the chart `key` once its summary has been clicked (opened), else nothing new."""
    if not isinstance(clicks, int) or clicks < 1:
        return no_update
    for k, fig in _cached_figures(dataset):
        if k == key:
            return bins_table(fig)
    return no_update


FIELDS_NOT_DRAWN = "stats-fields-not-drawn"
_NOT_DRAWN_NAMED = 50


def _fields_not_drawn(dataset: "Dataset") -> html.Div | None:
    """The numeric fields left without a histogram, each a link to Samples sorted by it."""
    left = fields_to_draw(dataset)[1]
    if not left:
        return None
    links: list = []
    for col in left[:_NOT_DRAWN_NAMED]:
        links += [dcc.Link(col, href=state.samples_href(sort=f"-{col}")), " "]
    more = f" … and {fmt_int(len(left) - _NOT_DRAWN_NAMED)} more" if len(left) > _NOT_DRAWN_NAMED else ""
    return html.Div([f"{fmt_int(len(left))} more numeric fields have no histogram here (the "
                     f"{MAX_FIELD_HISTOGRAMS} drawn hold the most values); each is a column of Samples: ",
                     *links, more], className="small text-muted", id=FIELDS_NOT_DRAWN)


def go_copy(fig: dict) -> dict:
    """A kept figure (plotly JSON) to change for one page view: its layout and count axis are
    copied (what figures.log_y sets), its traces shared."""
    layout = dict(fig.get("layout", {}))
    layout["yaxis"] = dict(layout.get("yaxis", {}))
    return {**fig, "layout": layout}


def bin_href(click: Mapping | None) -> str | None:
    """The link of a clicked histogram bar: its bin's filter (customdata[2], escaped by
    sde.web.figures like all user text in a figure) in Samples, or in Vocabulary when
    customdata[3] says so (the word accuracy bars)."""
    custom = first_point(click).get("customdata")
    if not isinstance(custom, (list, tuple)) or len(custom) < 3 or not isinstance(custom[2], str) or not custom[2]:
        return None
    query = html_text.unescape(custom[2])
    if len(custom) > 3 and custom[3] == "vocabulary":
        return state.vocabulary_href(filter=query)
    return state.samples_href(filter=query)


def log_y_update(on: bool, keys: list, pathname: str | None, search: str | None) -> dict:
    """The log-y switch changed: every histogram's count axis (a Patch each), and the URL. Nothing
    when the switch says what the URL says: the switch reports its value as the page is laid out,
    and patches answered after the user had moved to another page were patches of figures no
    longer there (Dash: "Cannot patch undefined")."""
    if on == (query_params(search).get(LOG_Y_PARAM) == "1"):
        return {"figures": [no_update] * len(keys or []), "search": no_update, "rendered": no_update}
    patches = []
    for _ in keys or []:
        patch = Patch()
        patch["layout"]["yaxis"]["type"] = "log" if on else "linear"
        patch["layout"]["yaxis"]["rangemode"] = "normal" if on else "tozero"
        patch["layout"]["yaxis"]["autorange"] = True
        patches.append(patch)
    params = {k: v for k, v in query_params(search).items() if k != LOG_Y_PARAM}
    if on:
        params[LOG_Y_PARAM] = "1"
    path = pathname or "/"
    return {"figures": patches, "search": search_of(params) or "", "rendered": rendered_key(path, params, PAGE.name)}


# ---------------------------------------------------------------- categorical fields

def categorical_fields(dataset: "Dataset") -> dict[str, int]:
    """{field: distinct values} of the manifest's categorical fields (speakers, languages), cached."""
    skip = _NOT_CATEGORICAL | {h.field for h in dataset.hypotheses}
    return for_dataset(dataset, "statistics-fields", 1, kept=1).get_or_compute_once(
        "categorical", lambda: categorical_columns(dataset.utterances, skip))


def computed_field_names(dataset: "Dataset") -> set[str]:
    """The names of the columns sde makes rather than reads from the manifest: every dataset's
    (sde.manifest.model.GENERATED: ids, audio presence, reviews, speech activity, duplicates,
    transcript checks), each hypothesis's, the text-derived quality columns, and the audio
    metrics once measured (duration_mismatch, audio_error, …). A manifest field of such a name was
    kept as manifest_<name>, so a name here is never the manifest's own field (the audio metrics'
    names count only when the metrics are there: until then a manifest field may bear one)."""
    from sde.audio_quality import AUDIO_METRIC_COLUMNS, has_audio_metrics
    from sde.dataset import computed_columns
    from sde.manifest.model import GENERATED
    from sde.quality.apply import quality_column_kinds

    names = set(GENERATED) | computed_columns(dataset.hypotheses) | set(quality_column_kinds(dataset))
    if has_audio_metrics(dataset.utterances):
        names |= set(AUDIO_METRIC_COLUMNS)
    return names


FIELDS_COMPUTED = "stats-fields-computed"


def _field_item(dataset: "Dataset", field: str, distinct: int, computed: bool) -> html.Div:
    if dataset.hypotheses:
        href, label = "/errors" + search_of({"by": field}), "WER by " + field
    else:
        href, label = state.samples_href(sort=field), "list by " + field
    return html.Div([
        html.Span(field, className="fw-bold me-2" + (" fst-italic" if computed else "")),
        html.Span(fmt_int(distinct), id=stat_id("field", field), className="stat-field-count"),
        html.Span(" distinct values · " if distinct != 1 else " distinct value · ", className="text-muted"),
        dcc.Link(label, href=href, id=stat_id("field", field, "link")),
    ], className="me-4 mb-1" + (" stat-field-computed" if computed else " stat-field-manifest"))


def fields_card(dataset: "Dataset"):
    """How many distinct values each categorical field of the manifest has, each linked to its
    breakdown (the Errors page `by=FIELD`; without hypotheses, Samples sorted by it). The columns
    sde computed (duration_mismatch, empty_reference, dup_audio_text_conflict, …) come after them,
    apart and said to be computed: they are no fields of the manifest."""
    fields = categorical_fields(dataset)
    if not fields:
        return None
    computed = computed_field_names(dataset)
    own = [f for f in fields if f not in computed]
    made = [f for f in fields if f in computed]
    body: list = [html.H6("Fields", className="card-title fw-bold mb-2")]
    if own:
        body.append(html.Div([_field_item(dataset, f, fields[f], False) for f in own], className="d-flex flex-wrap small"))
    else:
        body.append(html.Div("No categorical field in the manifest.", className="small text-muted mb-1"))
    if made:
        body.append(html.Div([html.Span("Computed by sde (not manifest fields):", className="text-muted me-3 mb-1"),
                              *[_field_item(dataset, f, fields[f], True) for f in made]],
                             className="d-flex flex-wrap small border-top pt-1 mt-1", id=FIELDS_COMPUTED))
    return dbc.Card(dbc.CardBody(body, className="py-2"), className="mb-3", id=FIELDS)


def recognition_sections(dataset: "Dataset", steps: list[str]) -> list:
    """One section per hypothesis: raw corpus numbers, with the normalised ones beneath them for
    the chosen steps (never instead of them)."""
    summary = dataset.summary()
    hyps = summary["hypotheses"]
    normalized = normalized_summary(dataset, steps) if steps else {}
    labels = {h.field: (h.name or h.field) for h in dataset.hypotheses}
    sections = []
    for field, h in hyps.items():
        h = {**h}
        h.pop("normalized", None)
        if field in normalized:
            h["normalized"] = normalized[field]
        sections.append(_hypothesis_section(field, h, labels.get(field, field), summary["utterances"]))
    return sections


def renormalized(dataset: "Dataset", steps: Any) -> list:
    """The recognition sections for the ticked normalisation steps; steps the page never offers
    (a script's POST) are named in a warning above the raw numbers, not a server error."""
    chosen = as_list(steps)
    known = [s for s in chosen[:len(NORMALIZERS) * 2] if isinstance(s, str) and s in NORMALIZERS]
    unknown = [s for s in chosen[:len(NORMALIZERS) * 2] if s not in NORMALIZERS]
    if steps is not None and (not isinstance(steps, list) or unknown or len(chosen) > len(NORMALIZERS) * 2):
        shown = ", ".join(repr(s)[:40] for s in unknown[:3]) if unknown else repr(steps)[:60]
        message = dbc.Alert(f"unknown normalisation steps ({shown}): choose among {', '.join(NORMALIZERS)}",
                            color="warning", className="py-2 mb-2", id="normalize-warning")
        return [message, *recognition_sections(dataset, known)]
    return recognition_sections(dataset, known)


def normalize_steps(dataset: "Dataset", params: Mapping[str, str]) -> list[str]:
    """The normalisation steps the URL asks for (unknown ones too: the page names them), else the
    server's --normalize."""
    raw = params.get(NORMALIZE_PARAM)
    if raw is None:
        return list(dataset.options.normalize)
    return [] if raw == NO_STEPS else [step for step in raw.split(",") if step]


def summary_json_href(steps: list[str]) -> str:
    return "/api/summary" + search_of({NORMALIZE_PARAM: ",".join(steps)})


def normalize_update(dataset: "Dataset", steps: Any, pathname: str | None, search: str | None) -> dict:
    """The normalisation boxes changed: the recognition numbers, the JSON link and the URL (so a
    reload or a shared link shows the same numbers). Nothing when the boxes say what the URL says
    (Dash reports their value as the page is laid out)."""
    given = as_list(steps)
    if not isinstance(steps, list) or not all(isinstance(step, str) and step in NORMALIZERS for step in given):
        # not what the boxes send: the numbers name the unknown steps, the URL stays
        return {"sections": renormalized(dataset, steps), "json": no_update, "search": no_update,
                "rendered": no_update}
    def ordered(steps: Any) -> list[str]:  # NORMALIZERS' order: one URL per choice
        return [step for step in NORMALIZERS if step in steps]

    chosen = ordered(given)
    params = query_params(search)
    if chosen == ordered(normalize_steps(dataset, params)):
        return {"sections": no_update, "json": no_update, "search": no_update, "rendered": no_update}
    params.pop(NORMALIZE_PARAM, None)
    if chosen != ordered(dataset.options.normalize):
        params[NORMALIZE_PARAM] = ",".join(chosen) or NO_STEPS
    path = pathname or "/"
    return {"sections": renormalized(dataset, chosen), "json": summary_json_href(chosen),
            "search": search_of(params) or "", "rendered": rendered_key(path, params, PAGE.name)}


def callbacks(app, dataset: "Dataset") -> None:
    @app.callback(
        output={"sections": Output(RECOGNITION, "children"), "json": Output(SUMMARY_JSON, "href"),
                "search": Output(state.URL, "search", allow_duplicate=True),
                "rendered": Output(state.RENDERED, "data", allow_duplicate=True)},
        inputs={"steps": Input(NORMALIZE, "value"), "pathname": State(state.URL, "pathname"),
                "search": State(state.URL, "search")},
        prevent_initial_call=True,
    )
    def renormalize(steps, pathname, search):
        return normalize_update(dataset, steps, as_text(pathname) or None, as_text(search))

    @app.callback(Output(RECOGNITION, "children", allow_duplicate=True), Input(NORMALIZE_PENDING, "data"),
                  prevent_initial_call="initial_duplicate")
    def score_pending(steps):
        return renormalized(dataset, steps) if isinstance(steps, list) and steps else no_update

    @app.callback(Output(state.URL, "href", allow_duplicate=True),
                  Input({"type": HISTOGRAM, "key": ALL}, "clickData"), prevent_initial_call=True)
    def drill_down(_clicks):
        return bin_href(ctx.triggered[0]["value"] if ctx.triggered else None) or no_update

    @app.callback(Output({"type": BINS, "key": MATCH}, "children"), Input({"type": BINS_OPEN, "key": MATCH}, "n_clicks"),
                  State({"type": BINS_OPEN, "key": MATCH}, "id"), prevent_initial_call=True)
    def fill_bins(clicks, summary_id):
        return bins_for(dataset, as_mapping(summary_id).get("key"), clicks)

    @app.callback(
        output={"figures": Output({"type": HISTOGRAM, "key": ALL}, "figure"),
                "search": Output(state.URL, "search", allow_duplicate=True),
                "rendered": Output(state.RENDERED, "data", allow_duplicate=True)},
        inputs={"on": Input(LOG_Y, "value"), "keys": State({"type": HISTOGRAM, "key": ALL}, "id"),
                "pathname": State(state.URL, "pathname"), "search": State(state.URL, "search")},
        prevent_initial_call=True,
    )
    def switch_log_y(on, keys, pathname, search):
        return log_y_update(bool(on), as_list(keys), as_text(pathname) or None, as_text(search))


def _alphabet_check_block(dataset: "Dataset"):
    """Training-data check: characters outside the model's alphabet, and digits in references."""
    check = for_dataset(dataset, "statistics", 2, kept=KEPT_VERSION).get_or_compute_once("alphabet_check",
                                                                 lambda: alphabet_check_summary(dataset))
    if check is None:
        return None
    body = [html.H5("Alphabet check", className="card-title")]
    if check["allowed"] is not None:
        body.append(html.P(["Allowed characters: ", html.Code(check["allowed"]), f" — {fmt_int(check['utterances'])} "
                            "utterances use others ",
                            dcc.Link("(show them)", href=state.samples_href(filter='{oov_chars} != ""'))]))
        if check["chars"]:
            body.append(html.Div([
                html.Span([html.Kbd(c["char"] if c["char"].strip() else repr(c["char"])), f" ×{fmt_int(c['count'])}"],
                          className="me-3 d-inline-block", title=f"{c['utterances']} utterances")
                for c in check["chars"][:60]
            ], id="alphabet-oov-chars", className="mb-2"))
    if check["digits"]:
        digits_filter = "{has_digits} = true" if "has_digits" in dataset.utterances else state.DIGITS_FILTER
        one = check["digits"] == 1
        body.append(dbc.Alert([f"{fmt_int(check['digits'])} reference{'' if one else 's'} contain{'s' if one else ''} "
                               "digits ", dcc.Link("(show them)", href=state.samples_href(filter=digits_filter),
                                                   id="alphabet-digits-link"),
                               ". Character-based models (QuartzNet, Jasper) cannot emit digits: spell numbers out, "
                               "or score with ", alert_code("--normalize numbers"), " to see the WER without them."],
                              color="warning", className="mb-0 py-2", id="alphabet-digits"))
    return dbc.Card(dbc.CardBody(body), className="mb-3", id="alphabet-check")


def alphabet_check_summary(dataset: "Dataset") -> dict | None:
    """The --alphabet report built at load time; without --alphabet, just the references with digits."""
    if dataset.alphabet_report is not None:
        return dataset.alphabet_report
    # Every character of the references is in dataset.alphabet: without a digit there, no
    # reference has one (reading 10M transcripts for it took ~3 s).
    digits = count_with_digits(dataset.utterances["text"]) if any_digit(dataset.alphabet) else 0
    return {"allowed": None, "utterances": 0, "chars": [], "digits": digits} if digits else None


PAGE = Page(path="/statistics", name="Statistics", layout=layout, callbacks=callbacks,
            aliases=("/",), api="/api/summary", prepare=True, takes=(NORMALIZE_PARAM, LOG_Y_PARAM))
