"""What a page is: its path, its name in the navbar, its layout and its callbacks (see
sde.web.pages for the contract)."""

from __future__ import annotations

import functools
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import dash
from dash import html

from sde.web import state
from sde.web.components import link_notes_alert
from sde.web.present import link_notes

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

LayoutFn = Callable[["Dataset", str, Mapping[str, str]], Any]
CallbacksFn = Callable[["dash.Dash", "Dataset"], None]


def _always(_dataset: "Dataset") -> bool:
    return True


@dataclass(frozen=True)
class Page:
    path: str                                # "/samples"; with prefix=True, "/utterance/" matches "/utterance/<rest>"
    name: str                                # navbar label and document title
    layout: LayoutFn
    callbacks: CallbacksFn | None = None
    nav: bool = True                         # shown in the navbar
    prefix: bool = False
    available: Callable[["Dataset"], bool] = _always   # e.g. Comparison needs two hypotheses
    api: str = ""                            # its JSON twin, e.g. "/api/utterances"
    aliases: tuple[str, ...] = field(default=())       # other exact paths ("/" for Statistics)
    # Laid out once when the server's warm-up is done (sde.web.pages.prepare_pages), so that its
    # first visit reads what it shows from the dataset's caches: for pages whose first layout
    # computes for seconds at millions of utterances, from data every visit needs.
    prepare: bool = False
    # The query parameters its link takes (None: not checked). A link with another name, or with
    # one of them twice, opens the page with a note saying what was ignored; a page's layout adds
    # notes of its own for values it cannot use (link_value_notes).
    takes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.takes is not None:
            object.__setattr__(self, "layout", _noting(self.name, self.takes, self.layout))

    def matches(self, pathname: str) -> bool:
        if pathname in self.aliases:
            return True
        if self.prefix:
            return pathname.startswith(self.path)
        return pathname.rstrip("/") == self.path.rstrip("/") or pathname == self.path

    @property
    def href(self) -> str:
        """Where the navbar links: the first alias ("/" for Statistics), else the path."""
        return self.aliases[0] if self.aliases else self.path

    @property
    def exact(self) -> bool:
        """Whether the navbar marks it active on exactly its href (not on paths below it)."""
        return bool(self.aliases) or self.path == "/"



# The notes of the layout running in this context (None outside a checked page's layout).
_NOTES: ContextVar[list[str] | None] = ContextVar("sde_link_notes", default=None)


def link_value_notes() -> list[str]:
    """Where a page's layout adds what it found wrong in its link's values (sde.web.present's
    int_param and choice_param append to it): shown above the page, with the parameters it does
    not take. Outside a checked layout (a test calling it), a list nobody reads."""
    notes = _NOTES.get()
    return notes if notes is not None else []


def requested_search() -> str | None:
    """The raw query string of the location being laid out: the router's callback input (the
    params a layout gets keep one value of each name, so a repeat is only seen here)."""
    try:
        inputs = dash.callback_context.inputs
    except Exception:  # not in a callback: prepare_pages, a test calling the layout
        return None
    search = inputs.get(f"{state.URL}.search") if isinstance(inputs, dict) else None
    return search if isinstance(search, str) else None


def _noting(name: str, takes: tuple[str, ...], layout: LayoutFn) -> LayoutFn:
    @functools.wraps(layout)
    def noted(dataset: "Dataset", path: str, params: Mapping[str, str]) -> Any:
        found: list[str] = []
        token = _NOTES.set(found)
        try:
            made = layout(dataset, path, params)
        finally:
            _NOTES.reset(token)
        notes = link_notes(name, params, takes, requested_search()) + found
        return html.Div([link_notes_alert(notes), made]) if notes else made

    return noted
