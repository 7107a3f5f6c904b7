"""The page registry: one module per page, each exposing `PAGE = Page(...)`.

Adding a page is two lines: write `sde/web/pages/errors.py` with a module-level `PAGE`, import it
here and add it to `PAGES` (navbar order). The app shell (sde/web/app.py) builds the navbar from
the registry, routes `dcc.Location` paths to `Page.layout`, and calls `Page.callbacks(app, dataset)`
once per app (never global `dash.callback`, so two apps can live in one process). A page module holds its
layout and its callbacks; a callback unpacks its inputs, calls one function of the page (or of
sde.web.present / sde.analysis) and returns a dict keyed by its named outputs.

A page's layout is a pure function of the dataset and the URL:

    layout(dataset, path, params) -> Dash component

`path` is the URL path ("/utterance/17"), `params` the query string as a dict of single values.
Everything a page shows must be reachable from its URL, so that a link can be shared. A page that
writes its own state into the query string (Samples, Vocabulary, Errors, Comparison) also writes
the `state.RENDERED` store (`sde.web.state.rendered_key`) in the same callback, so the router does
not re-render it.
Each page has a JSON twin under /api (documented on `Page.api`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sde.caching import keeping
from sde.web.pages import comparison, errors, problems, rules, samples, statistics, utterance, vocabulary
from sde.web.pages import duplicates, tts
from sde.web.pages.page import Page
from sde.web.present import ERROR_ROWS_MADE, error_frames_with_utterances

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = ["PAGES", "PAGE_MODULES", "Page", "load_pages", "prepare_pages", "resolve"]

# Navbar order.
PAGES: tuple[Page, ...] = (
    statistics.PAGE,
    samples.PAGE,
    utterance.PAGE,
    vocabulary.PAGE,
    problems.PAGE,
    errors.PAGE,
    comparison.PAGE,
    rules.PAGE,
    duplicates.PAGE,
    tts.PAGE,
)
PAGE_MODULES: tuple[str, ...] = tuple(m.__name__.rsplit(".", 1)[1] for m in (
    statistics, samples, utterance, vocabulary, problems, errors, comparison, rules, duplicates, tts))


def load_pages(dataset: "Dataset | None" = None) -> list[Page]:
    """The pages, in navbar order, that apply to `dataset` (all of them for None)."""
    return [p for p in PAGES if dataset is None or p.available(dataset)]


def prepare_pages(dataset: "Dataset") -> list[str]:
    """Lay out once, with no URL parameters, the pages of ``dataset`` that ask for it
    (``Page.prepare``): what they compute is kept beside the dataset, so the first visit reads it
    (Statistics at 10M utterances: ~10 s → ~0.1 s). The server calls this at the end of its
    warm-up; a visit meanwhile waits for the same computation instead of repeating it. Returns the
    names of the pages laid out. The top-error tables of the other hypotheses are made after them
    (the Errors page shows the first one's). What they compute is also kept beside the dataset's
    build where it has one (sde.caching.keeping): the next start reads it (Statistics, Errors and
    Comparison at 10M utterances: ~20 s → ~0.3 s)."""
    prepared = []
    with keeping():
        for page in load_pages(dataset):
            if page.prepare:
                page.layout(dataset, page.href, {})
                prepared.append(page.name)
        # Else /api/errors?hyp=F of a hypothesis but the first counts its errors in the request
        # (~0.6 s at 10M utterances); any limit up to ERROR_ROWS_MADE is cut from these tables.
        for h in dataset.hypotheses[1:]:
            error_frames_with_utterances(dataset, h.field, None, ERROR_ROWS_MADE)
    return prepared


def resolve(pages: list[Page], pathname: str | None) -> Page | None:
    pathname = pathname or "/"
    for page in pages:
        if page.matches(pathname):
            return page
    return None
