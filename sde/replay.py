"""The words of an `sde` command that reproduces a served dataset: its manifests by path and the
data options it was built with (what the Rules page and the review panel print for `sde export`,
to run from any folder).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sde.lines import ExportError, source_files

if TYPE_CHECKING:  # pragma: no cover - typing only
    from sde.dataset import Dataset

__all__ = ["cache_args", "data_args", "source_args"]

# Up to this many manifests are listed one by one; more (shards) are named as typed.
MAX_LISTED_SOURCES = 8


def source_args(dataset: "Dataset") -> list[str]:
    """The manifest files as `sde export` takes them, by absolute path: each file when there are
    a few, else the names as typed (a shard pattern) in the files' folder."""
    names = str(dataset.name).split(" + ")
    try:
        files, _ = source_files(dataset)
    except ExportError:
        return names
    paths = [_local(f.path) for f in files]
    if len(files) == 1 and os.path.basename(files[0].path) == names[0] or 1 < len(files) <= MAX_LISTED_SOURCES:
        return paths
    folders = {os.path.dirname(p) for p in paths}
    if len(folders) == 1 and all(f.local for f in files):   # shards of one folder (a Lhotse pair)
        return [os.path.join(folders.pop(), name) for name in names]
    return names


def _local(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def data_args(dataset: "Dataset") -> list[str]:
    """The options that change what is built (DatasetOptions), as `sde export` takes them."""
    o = dataset.options
    args: list[str] = []
    for option, value in (("--audio-base-path", o.audio_base_path), ("--vocab", o.vocab),
                          *(("--predictions", p) for p in o.predictions), ("--tarred-audio", o.tarred_audio)):
        if value:
            args += [option, _local(str(value))]
    for field in o.pred_fields:
        args += ["--pred-field", field]
    if o.normalize:
        args += ["--normalize", ",".join(o.normalize)]
    if o.alphabet:
        args += ["--alphabet", o.alphabet.rstrip(" ") or o.alphabet]
    if o.strict:
        args.append("--strict")
    if o.estimate_audio_metrics:
        args.append("--estimate-audio-metrics")
    return args


def cache_args(cache_dir: str | None, no_cache: bool, vad: bool = False) -> list[str]:
    """The options that decide which stored build a command reads, as `sde export` takes them:
    without the server's --cache-dir a pasted command builds the dataset again (minutes at scale),
    and after a --no-cache server it would write a cache the user kept sde out of. --vad is part
    of the build's key too (sde.build.load.entry_key) and makes the speech-activity columns a rule
    may name: without it the command builds (or reads) the build without them. None and False,
    the defaults, need no word."""
    args = ["--no-cache"] if no_cache else ["--cache-dir", _local(cache_dir)] if cache_dir else []
    return args + (["--vad"] if vad else [])
