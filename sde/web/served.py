"""The options a server was started with that the commands its pages print must repeat: a pasted
`sde export` without the server's --cache-dir builds the dataset again (minutes at scale), after
--no-cache it would write a cache the user kept sde out of, and without --vad it reads another
build, one without the speech-activity columns the page's rules may name.

They hang on the Flask server (`server.extensions[CACHE_ARGS_KEY]`), set once by `create_app`
from its AppConfig, so every page reads the options of the server answering the request."""
from __future__ import annotations

from flask import Flask, current_app, has_app_context

from sde.replay import cache_args

CACHE_ARGS_KEY = "sde.cache_args"


def install(server: Flask, cache_dir: str | None, no_cache: bool, vad: bool = False) -> None:
    server.extensions[CACHE_ARGS_KEY] = cache_args(cache_dir, no_cache, vad)


def served_cache_args() -> list[str]:
    """The cache options (and --vad) of the server answering this request (none outside one)."""
    if not has_app_context():
        return []
    return list(current_app.extensions.get(CACHE_ARGS_KEY, []))
