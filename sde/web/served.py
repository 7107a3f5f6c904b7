"""The options a server was started with that the commands its pages print must repeat: a pasted
`sde export` without the server's --cache-dir builds the dataset again (minutes at scale), and after
--no-cache it would write a cache the user kept sde out of.

They hang on the Flask server (`server.extensions[CACHE_ARGS_KEY]`), set once by `create_app`, so
every page reads the options of the server answering the request."""
from __future__ import annotations

from flask import Flask, current_app, has_app_context

from sde.replay import cache_args

CACHE_ARGS_KEY = "sde.cache_args"


def install(server: Flask, cache_dir: str | None, no_cache: bool) -> None:
    server.extensions[CACHE_ARGS_KEY] = cache_args(cache_dir, no_cache)


def served_cache_args() -> list[str]:
    """The cache options of the server answering this request (none outside one)."""
    if not has_app_context():
        return []
    return list(current_app.extensions.get(CACHE_ARGS_KEY, []))
