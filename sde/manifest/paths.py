"""Audio path resolution: NeMo's rule (absolute paths and URLs as written, others joined to the
manifest's folder or ``--audio-base-path``), vectorised over a column.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from sde.sources import is_url, remote

# Columns up to this size are resolved as one array (string offsets are 32-bit: stay well below 2 GB).
COMBINE_BYTES = 256 << 20


def resolve_paths(fp: pa.ChunkedArray, base: str) -> pa.ChunkedArray:
    """NeMo's rule, vectorised: absolute paths and URLs as written, others joined to base (a folder,
    or a URL's folder for a remote manifest); normalised."""
    prefix = base if base.endswith("/") else base + "/"
    base_is_url = is_url(base)
    if fp.num_chunks > 1 and fp.nbytes < COMBINE_BYTES:
        fp = pa.chunked_array([fp.combine_chunks()], pa.string())  # ~10 compute calls per chunk add up
    chunks = []
    for chunk in fp.chunks:
        urls = pc.any(pc.match_substring(chunk, "://")).as_py()
        if urls:
            chunk = _local_file_urls(chunk)
            urls = pc.any(pc.match_substring(chunk, "://")).as_py()
        is_abs = pc.starts_with(chunk, "/")
        if urls:  # s3://..., https://...: a location of its own, never joined to the base
            is_abs = pc.or_(is_abs, pc.match_substring_regex(chunk, r"^[A-Za-z][A-Za-z0-9+.\-]*://"))
        rel = chunk
        if pc.any(pc.starts_with(chunk, "./")).as_py():
            rel = pc.replace_substring_regex(chunk, r"^(\./)+", "")  # the common "./x.wav"
        out = pc.if_else(is_abs, chunk, pc.binary_join_element_wise(prefix, rel, ""))
        # plain substring searches are far cheaper than a regex over millions of paths
        # "/." finds "/./", "/../" and a trailing "/." or "/.." (and hidden folders: harmless)
        if urls or base_is_url:  # "//" belongs in "s3://": only other double slashes need fixing
            dotty = pc.or_(pc.match_substring(out, "/."), pc.match_substring_regex(out, "[^:]//"))
            normalise = remote.normalise
        else:
            dotty = pc.or_(pc.match_substring(out, "/."), pc.match_substring(out, "//"))
            normalise = os.path.normpath
        if pc.any(dotty).as_py():
            fixed = [normalise(p) for p in pc.filter(out, dotty).to_pylist()]
            out = pc.replace_with_mask(out, dotty, pa.array(fixed, pa.string()))
        chunks.append(out)
    return pa.chunked_array(chunks, pa.string())


def _local_file_urls(chunk: pa.Array) -> pa.Array:
    """``file:///data/a%20b.wav`` (and ``file://localhost/…``) as the local path it names
    (``/data/a b.wav``, percent-decoded as RFC 8089 writes it): a file URL is a local file, which
    sde checks, plays and measures as one (read as a URL, it was "not found" and never counted
    missing). A file URL naming another host is left as it is."""
    found = pc.match_substring_regex(chunk, "^(?i)file://(localhost)?/")
    if not pc.any(found).as_py():
        return chunk
    paths = [unquote(urlsplit(url).path) for url in pc.filter(chunk, found).to_pylist()]
    return pc.replace_with_mask(chunk, found, pa.array(paths, pa.string()))


def base_dir(path: str | Path, audio_base_path: str | Path | None) -> str:
    """Where relative audio paths start: --audio-base-path, else the manifest's own folder (a URL's
    folder for a remote manifest)."""
    if audio_base_path is not None:
        if is_url(str(audio_base_path)):
            return str(audio_base_path).rstrip("/")
        return os.path.abspath(os.path.expanduser(str(audio_base_path)))
    if is_url(str(path)):
        return remote.url_folder(str(path))
    return os.path.dirname(os.path.abspath(str(path)))


def resolve_audio_path(value: str, manifest: str | Path, audio_base_path: str | Path | None = None) -> str:
    """One line's audio_filepath resolved as read_manifest resolves the column (for tools that read
    a manifest line by line, such as ``sde transcribe``)."""
    return resolve_paths(pa.chunked_array([[value]], pa.string()), base_dir(manifest, audio_base_path))[0].as_py()
