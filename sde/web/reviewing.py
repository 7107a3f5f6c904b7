"""The reviews a server edits: its ReviewStore (sde.reviews), opened once at start-up, or why there
is none, and the utterance query that knows the review columns.

The store hangs on the Flask server (`server.extensions[REVIEWS_KEY]`), so every route, page and
callback of one app reaches the same store, and two apps in one process (tests) never share one.
A store that cannot be opened (another manifest's file, a locked or read-only database) does not
stop the server: it serves without editing and the inspector says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, current_app, has_app_context, has_request_context, request

from sde.reviews import ReviewError, ReviewStore, aligned_reviews, open_reviews, query_for

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.query import TableQuery

REVIEWS_KEY = "sde_reviews"
OFF = ("reviews are off for this server: start sde with --reviews FILE (the reviews of this "
       "manifest are kept in that SQLite file)")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reviewing:
    """The store of a server (None when reviews are off) and, when editing is off, why."""

    store: ReviewStore | None = None
    problem: str | None = None      # why there is no store, for the panel and the 403
    record_users: bool = False      # --auth: each edit records the signed-in user

    @property
    def editable(self) -> bool:
        return self.store is not None and not self.store.read_only

    def why_not_editable(self) -> str:
        if self.store is not None and self.store.read_only:
            return self.store.read_only_message  # --read-only, or a file system sde cannot write
        return self.problem or OFF


def open_for(dataset: "Dataset", path: str | Path | None, *, read_only: bool = False,
             record_users: bool = False) -> Reviewing:
    """Open the reviews file `path` of `dataset` (None: reviews off); a failure is kept as the reason."""
    if path is None:
        return Reviewing(None, OFF, record_users)
    try:
        store = open_reviews(dataset, path, read_only=read_only)
    except ReviewError as e:
        log.warning("reviews are off: %s", e)
        return Reviewing(None, f"reviews are off: {e}", record_users)
    return Reviewing(store, None, record_users)


def install(server: Flask, reviewing: Reviewing) -> None:
    server.extensions[REVIEWS_KEY] = reviewing


def current() -> Reviewing:
    """The reviews of the app serving this request (off outside a request, or when none was installed)."""
    if has_app_context():
        found = current_app.extensions.get(REVIEWS_KEY)
        if found is not None:
            return found
    return Reviewing(None, OFF)


def current_store() -> ReviewStore | None:
    return current().store


def request_user() -> str | None:
    """The --auth user who sent this request, recorded with each edit (None without --auth)."""
    if not current().record_users or not has_request_context():
        return None
    auth = request.authorization
    return auth.username if auth is not None and auth.username else None


def utterance_query(dataset: "Dataset", *texts: str | None) -> "TableQuery":
    """The utterance query for filters and sorts `texts`: with the review columns (`{review}`,
    `{review_tags}`, ...) when one of them names one and this server has reviews."""
    return query_for(dataset, current_store(), *texts)


def utterance_table(dataset: "Dataset"):
    """The utterances with the review columns (when this server has reviews): the table the
    Samples grid shows, row for row the same as `dataset.utterances`."""
    return utterance_query(dataset, "review").df


def rows_table(dataset: "Dataset"):
    """The table `/api/utterances` and its CSV take their rows from: with the review columns once
    this server holds a review (whoever filters `{review} = "drop"` wants the notes and tags in the
    file they share), else the utterances as they are (no six empty columns on every export)."""
    store = current_store()
    if store is None or not aligned_reviews(dataset, store).reviews:
        return dataset.utterances
    return utterance_table(dataset)


__all__ = ["OFF", "REVIEWS_KEY", "Reviewing", "current", "current_store", "install", "open_for", "request_user", "rows_table",
           "utterance_query", "utterance_table"]
