"""The page registry: one module per page, each exposing `PAGE = Page(...)`.

Adding a page is one line: write `sde/web/pages/errors.py` with a module-level `PAGE` and append
"errors" to `PAGE_MODULES`. The app shell (sde/web/app.py) builds the navbar from the registry,
routes `dcc.Location` paths to `Page.layout`, and calls `Page.register_callbacks(app, dataset)`
once per app (never global `dash.callback`, so two apps can live in one process).

A page's layout is a pure function of the dataset and the URL:

    layout(dataset, path, params) -> Dash component

`path` is the URL path ("/utterance/17"), `params` the query string as a dict of single values.
Everything a page shows must be reachable from its URL, so that a link can be shared. A page that
writes its own state into the query string (Samples, Vocabulary) also writes the `ids.RENDERED`
store (`sde.web.app.rendered_key`) in the same callback, so the router does not re-render it.
Each page has a JSON twin under /api (documented on `Page.api`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import dash

    from sde.dataset import Dataset

# Navbar order. Add a page here (one line) after writing its module.
PAGE_MODULES: tuple[str, ...] = (
    "statistics",
    "samples",
    "utterance",
    "vocabulary",
    "problems",
    "errors",
    "comparison",
)

LayoutFn = Callable[["Dataset", str, Mapping[str, str]], Any]
RegisterFn = Callable[["dash.Dash", "Dataset"], None]


def _always(_dataset: "Dataset") -> bool:
    return True


@dataclass(frozen=True)
class Page:
    path: str                                # "/samples"; with prefix=True, "/utterance/" matches "/utterance/<rest>"
    name: str                                # navbar label and document title
    layout: LayoutFn
    register_callbacks: RegisterFn | None = None
    nav: bool = True                         # shown in the navbar
    prefix: bool = False
    available: Callable[["Dataset"], bool] = _always   # e.g. Comparison needs two hypotheses
    api: str = ""                            # its JSON twin, e.g. "/api/utterances"
    aliases: tuple[str, ...] = field(default=())       # other exact paths ("/" for Statistics)

    def matches(self, pathname: str) -> bool:
        if pathname in self.aliases:
            return True
        if self.prefix:
            return pathname.startswith(self.path)
        return pathname.rstrip("/") == self.path.rstrip("/") or pathname == self.path


def load_pages(dataset: "Dataset | None" = None) -> list[Page]:
    """The registered pages, in navbar order, that exist (module present) and apply to `dataset`."""
    pages = []
    for name in PAGE_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            # A page listed before its module lands (or an optional page) is skipped, nothing else.
            if e.name == f"{__name__}.{name}":
                continue
            raise
        page = getattr(module, "PAGE", None)
        if page is None:
            continue
        if dataset is not None and not page.available(dataset):
            continue
        pages.append(page)
    return pages


def resolve(pages: list[Page], pathname: str | None) -> Page | None:
    pathname = pathname or "/"
    for page in pages:
        if page.matches(pathname):
            return page
    return None
