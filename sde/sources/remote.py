"""Files behind URLs (``s3://``, ``gs://``, ``az://``, ``http(s)://``, AIStore ...) through fsspec.

Credentials come the usual way for each store (for S3: the environment, ``AWS_PROFILE`` and
``~/.aws``), or from ``--storage-options JSON``, which is passed to the fsspec filesystem as is
(``{"endpoint_url": ..., "key": ..., "secret": ..., "anon": true, "profile": ...}`` for S3).

Nothing is downloaded whole: manifests are streamed in chunks, tars are read with byte ranges.
Every request is bounded in time (``SDE_REMOTE_TIMEOUT`` seconds per attempt, few retries), so a
store that does not answer gives an error naming the URL instead of a hang. Every failure becomes
one :class:`RemoteError` that names the URL, what went wrong and the fix.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import os
import posixpath
import re
import threading
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["RemoteError", "StorageOptionsError", "audio_file", "configure", "details", "explain", "glob", "is_url", "join", "listing",
           "normalise", "open_file", "reading", "silence_is_final", "stamp", "storage_options", "timeout_s",
           "url_folder"]

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# Seconds one request may wait for a connection or an answer.
DEFAULT_TIMEOUT_S = 20.0
# Attempts per request: a flaky network gets one more chance, a dead endpoint fails fast.
ATTEMPTS = 2
# Streamed reads fetch at least this much per request.
STREAM_BLOCK_BYTES = 1 << 20
# Folders listed at once (one request) instead of asking for each file.
LIST_WHEN_FILES = 4
# Which package serves which protocol, for the "install it" hint.
BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
            "abfss": "adlfs", "ais": "aistore", "hf": "huggingface_hub", "http": "aiohttp", "https": "aiohttp"}

# A read whose connection broke after the answer began (a reset, a cut body, a body that stopped
# coming): read again, once. Not a request that got no answer: botocore has retried that already.
_BROKEN_READS = {"ClientPayloadError", "ContentLengthError", "ResponseStreamingError", "IncompleteRead",
                 "IncompleteReadError", "ServerDisconnectedError", "ConnectionResetError", "ConnectionAbortedError",
                 "BrokenPipeError", "AioReadTimeoutError"}

_configured: dict[str, Any] = {}
_lock = threading.Lock()
# While silence_is_final is on (loading a dataset): URLs whose store did not answer, and the error
# said. One load asks a source several things in turn (its cache key, its size, its lines); each
# asking anew cost SDE_REMOTE_TIMEOUT twice more (a dead store: 6x the timeout instead of 2x).
_silent: dict[str, RemoteError] = {}
_silence_final = 0
# While silence_is_final is on: what the store said of each file (an error: no such file) and each
# folder listed, so that one load asks once. The cache key, the choice of parts, the manifest's
# read and every tar's index asked the size and ETag of the same files again: a tar cost 8
# metadata requests before its first byte (its HEAD twice, HEAD + listing per index file beside it).
_known_files: dict[str, dict[str, Any] | RemoteError] = {}
_known_folders: dict[str, dict[str, dict[str, Any]]] = {}
_folder_locks: dict[str, threading.Lock] = {}  # one listing of a folder at a time: the others wait for it


class RemoteError(Exception):
    """A remote file that cannot be listed, opened or read; the message names the URL and the fix.
    ``reason``: not_found, permission (no credentials, access denied), timeout, changed (the object
    is not the version asked for: rewritten since it was indexed) or unreadable."""

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


class StorageOptionsError(RemoteError):
    """A --storage-options value the store's backend refuses (an endpoint without its scheme, an
    option it does not take): the command's option is wrong, not the data; the message says which
    and the fix."""


def is_url(path: str | os.PathLike) -> bool:
    """``scheme://...`` other than ``file://`` (local files are read directly)."""
    match = _URL.match(os.fspath(path))
    return bool(match) and match.group(1).lower() != "file"


def protocol(url: str) -> str:
    match = _URL.match(url)
    return match.group(1).lower() if match else ""


TIMEOUT_ENV = "SDE_REMOTE_TIMEOUT"


def timeout_s() -> float:
    """``$SDE_REMOTE_TIMEOUT`` seconds (default 20). A malformed value is a :class:`RemoteError`
    naming it: silently waiting 20 s hid the typo of a user who had asked for a slow store's 120."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise RemoteError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds above 0; set it to the seconds a "
                          f"remote request may wait (e.g. {TIMEOUT_ENV}=60 for a slow store), or unset it for the "
                          f"default {DEFAULT_TIMEOUT_S:g}")
    return value


def configure(options: Mapping[str, Any] | None) -> None:
    """The storage options every later remote access of this process uses (``--storage-options``)."""
    with _lock:
        _configured.clear()
        _configured.update(options or {})


def storage_options(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The configured storage options, overridden by ``extra``."""
    with _lock:
        merged = copy.deepcopy(_configured)
    merged.update(extra or {})
    return merged


def _with_timeouts(proto: str, options: dict[str, Any]) -> dict[str, Any]:
    """The user's options plus time limits the backend understands (the user's own win)."""
    seconds = timeout_s()
    options = dict(options)
    if proto in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", seconds)
        config.setdefault("read_timeout", seconds)
        # botocore's max_attempts counts retries after the first request (3 requests for 2);
        # total_max_attempts counts every request, so a silent store costs ATTEMPTS waits.
        config.setdefault("retries", {"total_max_attempts": ATTEMPTS, "mode": "standard"})
        options["config_kwargs"] = config
    elif proto in ("http", "https"):
        import aiohttp

        client = dict(options.get("client_kwargs") or {})
        client.setdefault("timeout", aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds))
        options["client_kwargs"] = client
    elif proto in ("gs", "gcs"):
        options.setdefault("timeout", seconds)
    return options


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for ``url``; RemoteError when no backend serves it."""
    proto = protocol(url)
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError:
        raise RemoteError(f"{url}: reading URLs needs fsspec: pip install fsspec {BACKENDS.get(proto, '')}".rstrip()) \
            from None
    endpoint = _endpoint_problem(url)  # s3fs only says so at its first request, in botocore's words
    if endpoint is not None:
        raise endpoint
    try:
        fs, path = url_to_fs(url, **_with_timeouts(proto, storage_options(options)))
    except ImportError:
        package = BACKENDS.get(proto, f"the fsspec backend for {proto}://")
        raise RemoteError(f"{url}: reading {proto}:// URLs needs {package}: pip install {package}") from None
    except ValueError as e:
        if proto not in fsspec.available_protocols():
            raise RemoteError(f"{url}: fsspec knows no protocol {proto!r}; use s3://, gs://, az://, "
                              "https:// or a local path") from None
        raise _options_error(url, e) or RemoteError(f"{url}: {e}; check --storage-options") from None
    except TypeError as e:  # an option the backend does not take
        raise _options_error(url, e) or RemoteError(f"{url}: --storage-options: {e}") from None
    if hasattr(fs, "retries"):
        fs.retries = 1  # s3fs would retry timeouts 5 times on top of botocore's own retries
    return fs, path


# Where each backend's options are documented (the fix of an option it does not take).
OPTIONS_DOCS = {"s3fs": "https://s3fs.readthedocs.io/en/latest/api.html#s3fs.core.S3FileSystem",
                "gcsfs": "https://gcsfs.readthedocs.io/en/latest/api.html#gcsfs.core.GCSFileSystem",
                "adlfs": "https://fsspec.github.io/adlfs/api/",
                "aiohttp": "https://filesystem-spec.readthedocs.io/en/latest/api.html"
                           "#fsspec.implementations.http.HTTPFileSystem"}
_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '([^']+)'")
_ENDPOINT_ERROR = re.compile(r"^Invalid endpoint: (.*)$")


def _configured_endpoint() -> str | None:
    options = storage_options()
    endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
    return endpoint if isinstance(endpoint, str) else None


def _endpoint_problem(url: str) -> StorageOptionsError | None:
    """An endpoint_url without its scheme (``127.0.0.1:9000``): botocore refuses it as "Invalid
    endpoint" at the first request, which does not say that http:// is what it lacks."""
    endpoint = _configured_endpoint()
    if endpoint is None or _URL.match(endpoint):
        return None
    return _bad_endpoint(url, endpoint)


_HOST_PORT = re.compile(r"^[\w.\-\[\]:]+(?:/[^/].*)?$")  # 127.0.0.1:9000, minio.lab/api: a URL less its scheme


def _bad_endpoint(url: str, endpoint: str) -> StorageOptionsError:
    if _HOST_PORT.match(endpoint) and not _URL.match(endpoint):
        fixed = "http://" + endpoint
        return StorageOptionsError(
            f"{url}: --storage-options: endpoint_url needs a scheme: {fixed} (https:// where the store serves "
            f"TLS), not {endpoint!r}; e.g. --storage-options '{{\"endpoint_url\": \"{fixed}\"}}'")
    return StorageOptionsError(f"{url}: --storage-options: endpoint_url {endpoint!r} is not a URL the store's "
                               "client takes; write it as http://HOST:PORT (https:// where the store serves TLS)")


def _options_taken(proto: str) -> list[str]:
    """The options the backend of ``proto`` takes as --storage-options, as its classes declare them
    (s3fs passes what it does not name to botocore's session: those count too)."""
    try:
        from fsspec import get_filesystem_class

        classes = [get_filesystem_class(proto)]
    except (ImportError, ValueError):
        return []
    if proto in ("s3", "s3a"):
        try:
            from aiobotocore.session import AioSession

            classes.append(AioSession)
        except ImportError:
            pass
    names: list[str] = []
    for cls in classes:
        try:
            parameters = inspect.signature(cls.__init__).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in ("self", "asynchronous", "loop") and p.name not in names]
    if proto in ("s3", "s3a"):  # handed on to fsspec's base class by s3fs
        names += [n for n in ("use_listings_cache", "listings_expiry_time", "max_paths") if n not in names]
    return names


def _options_error(url: str, error: BaseException) -> StorageOptionsError | None:
    """The backend's refusal of a configured option, said as such (None: ``error`` is no such
    refusal): an option it does not take (a TypeError naming a keyword of --storage-options, or of
    its config_kwargs / client_kwargs), or an endpoint_url botocore calls invalid."""
    text = str(error)
    endpoint = _ENDPOINT_ERROR.match(text.strip()) if isinstance(error, ValueError) else None
    if endpoint is not None:
        return _bad_endpoint(url, _configured_endpoint() or endpoint.group(1))
    unexpected = _UNEXPECTED_KEYWORD.search(text) if isinstance(error, TypeError) else None
    if unexpected is None:
        return None
    name, options = unexpected.group(1), storage_options()
    if name in options:
        where, taken = "", _options_taken(protocol(url))
    elif name in (options.get("config_kwargs") or {}):
        where, taken = "config_kwargs", []  # botocore's Config: its own list
    elif name in (options.get("client_kwargs") or {}):
        where, taken = "client_kwargs", []
    else:
        return None  # not the user's option: a fault of its own, said as it is
    package = BACKENDS.get(protocol(url), f"the {protocol(url)}:// backend")
    close = difflib.get_close_matches(name, taken, n=1)
    said = f"{url}: --storage-options: unknown storage option {name!r}" + (f" in {where}" if where else "") + \
        (f" (did you mean {close[0]!r}?)" if close else "")
    if where == "config_kwargs":
        return StorageOptionsError(f"{said}; drop it or fix its name: config_kwargs are botocore's Config options "
                                   "(connect_timeout, read_timeout, retries, signature_version, s3, ...): https://"
                                   "botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html")
    if where:
        return StorageOptionsError(f"{said}; drop it or fix its name: client_kwargs are the arguments of the "
                                   "store's client (S3: endpoint_url, region_name, aws_access_key_id, verify, ...)")
    docs = OPTIONS_DOCS.get(package)
    listed = f"{package} takes {', '.join(taken)}" if taken else f"see the options {package} takes"
    return StorageOptionsError(f"{said}; drop it or fix its name: {listed}" + (f" ({docs})" if docs else ""))


def _call(fs: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """A metadata call with one deadline for all its requests and retries (s3fs's info may ask
    three things in turn): fsspec's async filesystems take it as ``timeout``."""
    from fsspec.asyn import AsyncFileSystem

    if isinstance(fs, AsyncFileSystem):
        kwargs["timeout"] = timeout_s() * ATTEMPTS + 1
    return getattr(fs, method)(*args, **kwargs)


def _endpoint(url: str) -> str:
    options = storage_options()
    endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
    return str(endpoint) if endpoint else f"the {protocol(url) or 'remote'} service"


def _broken_read(error: BaseException) -> bool:
    return bool({cls.__name__ for cls in type(error).__mro__} & _BROKEN_READS)


def explain(url: str, error: BaseException) -> RemoteError:
    """One message for any failure of a remote access: what happened to ``url`` and the fix."""
    if isinstance(error, RemoteError):
        return error
    refused = _options_error(url, error)  # s3fs hands the options to botocore at its first request
    if refused is not None:
        return refused
    names = {cls.__name__ for cls in type(error).__mro__}
    text = str(error).strip() or type(error).__name__
    store = _endpoint(url)
    credentials = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or pass "
                   "--storage-options '{\"key\": \"...\", \"secret\": \"...\"}' (a public bucket: "
                   "--storage-options '{\"anon\": true}')") if protocol(url) in ("s3", "s3a") else \
        "configure the store's credentials, or pass them with --storage-options JSON"
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return RemoteError(f"{url}: no credentials found for {store}; {credentials}", "permission")
    if "ProfileNotFound" in names:
        return RemoteError(f"{url}: {text}; check AWS_PROFILE or the \"profile\" storage option")
    if names & {"ConnectTimeoutError", "ReadTimeoutError", "FSTimeoutError", "TimeoutError",
                "ServerTimeoutError", "timeout"}:
        return RemoteError(f"{url}: {store} did not answer within {timeout_s():g} s; check the endpoint "
                           "(--storage-options '{\"endpoint_url\": ...}') and the network, or set "
                           "SDE_REMOTE_TIMEOUT=SECONDS for a slow store", "timeout")
    if _broken_read(error):
        return RemoteError(f"{url}: the connection to {store} broke while reading it ({text}); try again (a flaky "
                           "network), or check the network to the store", "unreadable")
    if names & {"EndpointConnectionError", "ClientConnectorError", "ConnectionError", "ConnectionRefusedError"}:
        return RemoteError(f"{url}: cannot connect to {store} ({text}); check the endpoint "
                           "(--storage-options '{\"endpoint_url\": ...}') and the network", "timeout")
    if isinstance(error, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return RemoteError(f"{url}: access denied ({text}); check that your credentials may read it: {credentials}",
                           "permission")
    if isinstance(error, FileNotFoundError):
        # the store's words, not the path: a missing key of "team-data-bucket" is no missing bucket
        said = text.replace(url, "").replace(url.split("://", 1)[-1], "")
        if "bucket" in said.lower():
            return RemoteError(f"{url}: the bucket does not exist ({text}); check the URL", "not_found")
        return RemoteError(f"{url}: no such file; check the URL (list the folder with your store's tools)", "not_found")
    if "FileExpired" in names:
        return RemoteError(f"{url}: rewritten in the store since sde first read it (another ETag); ask again: sde "
                           "reads the new version", "changed")
    if isinstance(error, IsADirectoryError):
        return RemoteError(f"{url}: is a folder; pass the manifest file inside it")
    return RemoteError(f"{url}: {type(error).__name__}: {text}")


@contextmanager
def reading(url: str) -> Iterator[None]:
    """Turn any failure inside the block into the RemoteError that explains it. Under
    :func:`silence_is_final`, a URL whose store did not answer fails at once, with that error."""
    with _lock:
        # a folder whose listing got no answer speaks for its files: they are not asked either
        silent = (_silent.get(url) or _silent.get(url_folder(url))) if _silence_final else None
    if silent is not None:
        raise silent
    try:
        yield
    except Exception as e:  # noqa: BLE001 - backends raise anything; each becomes one clear message
        error = explain(url, e)
        if error.reason == "timeout":
            with _lock:
                if _silence_final:
                    _silent.setdefault(url, error)
        if error is e:
            raise
        raise error from None


@contextmanager
def silence_is_final() -> Iterator[None]:
    """Within the block (one load of a dataset), a URL whose store did not answer (its attempts
    spent) is not asked again, nor the files of a folder whose listing did not answer: each later
    access raises the same RemoteError at once. What the store said of a file or folder (info,
    listing) is kept for the block too. Outside it
    (a server answering requests for hours), every access asks anew."""
    global _silence_final
    with _lock:
        _silence_final += 1
    try:
        yield
    finally:
        with _lock:
            _silence_final -= 1
            if not _silence_final:
                _silent.clear()
                _known_files.clear()
                _known_folders.clear()
                _folder_locks.clear()


def open_file(url: str, *, ranged: bool = False, size: int | None = None, etag: str | None = None) -> Any:
    """A seekable binary file object for ``url``. ``ranged``: every read is one byte-range request
    of exactly what is asked (tar headers); else reads are buffered for streaming. ``etag``: read
    only that version (S3): a read of a rewritten object fails (RemoteError, reason "changed")
    instead of returning bytes at offsets that belonged to the old one."""
    fs, path = filesystem(url)
    with reading(url):
        kwargs: dict[str, Any] = {"cache_type": "none"} if ranged else \
            {"block_size": STREAM_BLOCK_BYTES, "cache_type": "readahead"}
        if size is not None:
            kwargs["size"] = size
        try:
            f = fs.open(path, "rb", **kwargs)
        except TypeError:  # a backend without these knobs
            f = fs.open(path, "rb")
    if size is not None:
        _known_details(f, url, path, size, etag)
    if etag:
        _pin_version(f, etag)
    _read_again_when_broken(f)
    return f


def _known_details(f: Any, url: str, path: str, size: int, etag: str | None) -> None:
    """Hand ``f`` what sde knows of its file already (the listing's or info's answer): s3fs ≥ 2026.9
    reads a file's details at its first ranged GET, and unset they cost a HEAD per file opened (a
    pattern of 512 tar shards: 512 more round trips per load), though its size came from a listing."""
    if getattr(f, "_details", False) is not None:  # known already, or not an fsspec buffered file
        return
    known = _known_info(url)
    f.details = {**(known if isinstance(known, dict) else {}), "name": path, "size": size, "type": "file",
                 **({"ETag": etag} if etag else {})}


def _read_again_when_broken(f: Any) -> None:
    """A byte range whose connection broke mid-body is fetched again, once (ATTEMPTS). s3fs would
    retry it itself, but only together with timeouts (fs.retries, set to 1 in filesystem(): it
    multiplied botocore's own attempts), so a reset 200 KB into a manifest ended the load."""
    cache = getattr(f, "cache", None)
    fetch = getattr(cache, "fetcher", None)
    if fetch is None:
        return

    def fetch_again_when_broken(start: int, end: int) -> bytes:
        try:
            return fetch(start, end)
        except Exception as e:
            if not _broken_read(e):
                raise
        return fetch(start, end)  # the second of ATTEMPTS; explain() names a failure of both

    cache.fetcher = fetch_again_when_broken


def _pin_version(f: Any, etag: str) -> None:
    """Make every GET of ``f`` ask for that ETag. s3fs ≥ 2026 sends ``read_kw`` with its GETs (a dict
    it shares with other calls, so it is replaced, not changed); earlier ones send ``req_kw``."""
    if isinstance(getattr(f, "read_kw", None), dict):
        f.read_kw = {**f.read_kw, "IfMatch": etag}
    elif isinstance(getattr(f, "req_kw", None), dict):
        f.req_kw["IfMatch"] = etag


def info(url: str) -> dict[str, Any]:
    """What the store says of ``url`` (size, ETag, ...). Under :func:`silence_is_final`, asked once
    per load: later calls, and files of a folder listed in this load, are answered from that."""
    known = _known_info(url)
    if known is None:
        fs, path = filesystem(url)
        try:
            with reading(url):
                fs.invalidate_cache(path)  # a listing cached earlier in this process may be out of date
                known = _call(fs, "info", path)
        except RemoteError as e:
            if e.reason == "not_found":
                _remember(url, e)
            raise
        _remember(url, known)
    if isinstance(known, RemoteError):
        raise known
    if known.get("type") == "directory":
        raise RemoteError(f"{url}: is a folder; pass the manifest file inside it")
    return known


def _known_info(url: str) -> dict[str, Any] | RemoteError | None:
    """What this load learnt of ``url`` (an error: that it does not exist); None: nothing."""
    with _lock:
        if not _silence_final:
            return None
        if url in _known_files:
            return _known_files[url]
        folder = _known_folders.get(url_folder(url))
    if folder is None:
        return None
    return folder.get(url) or explain(url, FileNotFoundError())


def _remember(url: str, found: dict[str, Any] | RemoteError) -> None:
    with _lock:
        if _silence_final:
            _known_files[url] = found


def stamp(found: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies one version of a remote file: its size and ETag (else modification time)."""
    etag = found.get("ETag") or found.get("etag") or found.get("md5Hash") or found.get("content_md5")
    modified = found.get("LastModified") or found.get("mtime") or found.get("updated") or found.get("last_modified")
    return {"size": found.get("size"), "etag": str(etag) if etag else None,
            "modified": None if etag else str(modified)}


def details(urls: Iterable[str], *, one_by_one: bool = True) -> dict[str, dict[str, Any] | None]:
    """``info`` of each URL (None: no such file). The files of a folder holding LIST_WHEN_FILES or
    more of them are found by listing the folder once, not by one request each; the others are
    asked one by one. ``one_by_one=False``, for a caller that asks each file itself, in parallel
    (the tars of a load, sde.sources.members): only the listings, whose answers the later asks read
    under :func:`silence_is_final`; the other files, and a folder whose listing failed (its files'
    asks then say why), are left out of the answer."""
    urls = list(dict.fromkeys(urls))
    by_folder: dict[str, list[str]] = {}
    for url in urls:
        by_folder.setdefault(url_folder(url), []).append(url)
    found: dict[str, dict[str, Any] | None] = {}
    for folder, members in by_folder.items():
        if len(members) >= LIST_WHEN_FILES:
            try:
                entries = listing(folder)
            except RemoteError:
                if one_by_one:
                    raise
                continue
            found.update({url: _file_entry(entries.get(url)) for url in members})
            continue
        if not one_by_one:
            continue
        for url in members:
            try:
                found[url] = info(url)
            except RemoteError as e:
                if "no such file" not in str(e):
                    raise
                found[url] = None
    return found


def _file_entry(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    return entry if entry is not None and entry.get("type") != "directory" else None


def listing(folder: str) -> dict[str, dict[str, Any]]:
    """URL → entry (``type`` "file" or "directory") of what is directly in ``folder``: one listing
    (a request per 1,000 entries on S3). Under :func:`silence_is_final`, one per load and folder."""
    with _lock:
        known = _known_folders.get(folder) if _silence_final else None
        lock = _folder_locks.setdefault(folder, threading.Lock()) if _silence_final else threading.Lock()
    if known is not None:
        return known
    with lock:  # threads indexing the tars of one folder: the first lists it, the others read that
        with _lock:
            known = _known_folders.get(folder) if _silence_final else None
        if known is not None:
            return known
        fs, path = filesystem(folder)
        with reading(folder):
            fs.invalidate_cache(path)
            try:
                entries = _call(fs, "ls", path, detail=True)
            except FileNotFoundError:
                entries = []
        scheme = protocol(folder)
        found = {f"{scheme}://{e['name'].lstrip('/').rstrip('/')}": e for e in entries}
        with _lock:
            if _silence_final:
                _known_folders[folder] = found
        return found


def glob(pattern: str) -> list[str]:
    """URLs matching a glob pattern (``s3://bucket/shards/*.json``), unsorted."""
    fs, path = filesystem(pattern)
    with reading(pattern):
        names = _call(fs, "glob", path)
    scheme = protocol(pattern)
    return [f"{scheme}://{name.lstrip('/')}" for name in names]


def url_folder(url: str) -> str:
    return url.rsplit("/", 1)[0] if "/" in url[len(protocol(url)) + 3:] else url


def normalise(url: str) -> str:
    """``s3://b/a/./x/../y.wav`` → ``s3://b/a/y.wav`` (the bucket part is kept as is)."""
    match = _URL.match(url)
    if not match:
        return posixpath.normpath(url)
    rest = url[match.end():]
    host, sep, path = rest.partition("/")
    if not sep:
        return url
    return f"{match.group(0)}{host}/{posixpath.normpath(path).lstrip('/') if path else ''}"


def join(folder: str, relative: str) -> str:
    return normalise(folder.rstrip("/") + "/" + relative)


# ------------------------------------------------------------------------------------- audio files


def audio_file(url: str) -> Any:
    """An audio file in a store as sde.audio reads it: a file object fetched with byte ranges
    (the header first, then the segment's frames), never downloaded whole."""
    from sde.audio.inputs import FileAudio

    def explain_audio(error: BaseException) -> tuple[str, str]:
        why = explain(url, error)
        text = str(why)
        return (text[len(url) + 2:] if text.startswith(f"{url}: ") else text), why.reason

    return FileAudio(url, lambda: open_file(url), explain=explain_audio)


def install_audio_opener() -> None:
    """sde.audio cannot import sde.sources (it is the bottom layer): hand it the opener for URLs.
    Called by the modules that read audio (sde.sources.members, the manifest's header durations),
    not at import: loading a dataset must not load the audio package (worker start-up time)."""
    from sde.audio.inputs import set_url_opener

    set_url_opener(audio_file)
