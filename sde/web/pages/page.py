"""What a page is: its path, its name in the navbar, its layout and its callbacks (see
sde.web.pages for the contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import dash

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
