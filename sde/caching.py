"""The one in-memory cache helper of sde: a thread-safe LRU, and per-dataset caches that empty
themselves when the dataset's tables are swapped.

Two ways to bound an :class:`LRUCache`: by entry count (the default) or by the sum of a size
function over its values (e.g. bytes of decoded audio), and optionally by entry count as well.
Values are computed outside the lock, so a slow computation never blocks readers of other keys;
two threads asking for the same missing key may both compute it (harmless when it is cheap: the
results are equal, the second one is kept), unless they ask through
:meth:`LRUCache.get_or_compute_once` (minutes and gigabytes at 10M utterances: computed once).

:func:`for_dataset` gives the cache of a given name for one dataset. It is keyed by
``dataset.generation``, which ``Dataset.replace_with`` increments: after a swap (a hypothesis
added, audio measured) every cache derived from the old tables is gone, and nobody has to know
which caches exist to clear them.

A cache made with ``kept=VERSION`` also outlives the process where the dataset has a build in the
dataset cache (sde.cache): what it computes inside :func:`keeping` (the pages the server's warm-up
lays out: seconds of work at 10M utterances) is written beside the build through the registry's
:class:`Keeper`, and a later process reading that build recalls it instead of computing it again.
Values computed outside it (a visit's filter, say) stay in memory only, so the kept entries stay few.

:class:`OneAtATime` runs one computation per key at a time, its value or error shared with the
threads that asked meanwhile (a figure of an hour of audio), without keeping it.

:class:`ComputedOnce` is unbounded: facts learnt once about objects that never change (whether a
column holds upper case, or a number), optionally held by weak keys so that they go with the object.

:func:`default_cache_dir` is where sde's caches on disk are (sde.cache's datasets, sde.sources' tar
indexes) unless ``--cache-dir`` says otherwise: here, the bottom layer, so that both may ask.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Protocol, TypeVar

from platformdirs import user_cache_dir

__all__ = ["CACHE_DIR_VARIABLE", "CacheRegistry", "ComputedOnce", "KeptCache", "Keeper", "LRUCache", "OneAtATime",
           "configured_cache_dir", "default_cache_dir", "for_dataset", "homeless_cache_dir", "keeping",
           "user_cache_folder"]

#: The cache folder when --cache-dir is not given.
CACHE_DIR_VARIABLE = "SDE_CACHE_DIR"

V = TypeVar("V")
_MISSING = object()
#: With a size function, one value larger than this fraction of the budget is not kept: a single
#: huge entry must not flush everything else.
MAX_ITEM_FRACTION = 4


class ComputedOnce:
    """Answers computed once per key and remembered, safe from several threads: a key asked by two
    at once is computed once, the other waits for its answer; a computation that raises is not
    remembered. ``weak``: the keys are held weakly, their answers forgotten with them."""

    def __init__(self, weak: bool = False) -> None:
        self._known: Any = weakref.WeakKeyDictionary() if weak else {}
        self._locks: Any = weakref.WeakKeyDictionary() if weak else {}
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], V]) -> V:
        try:
            return self._known[key]
        except KeyError:
            pass
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._known:
                self._known[key] = compute()
            return self._known[key]

    def known(self, key: Any) -> Any:
        """The answer for ``key`` if computed already, else None."""
        return self._known.get(key)


class LRUCache:
    """Least-recently-used entries, bounded by ``max_size`` entries, or by ``max_size`` units of
    ``size_of(value)`` when a size function is given, and then also by ``max_items`` entries when
    given. ``max_size <= 0`` keeps nothing. A value larger than ``max_size // max_item_fraction``
    is not kept."""

    def __init__(self, max_size: int, size_of: Callable[[Any], int] | None = None, *,
                 max_item_fraction: int = MAX_ITEM_FRACTION, max_items: int | None = None) -> None:
        self.max_size = int(max_size)
        self._size_of = size_of
        self._max_item_fraction = max_item_fraction
        self._max_items = max_items
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()
        self._computing: dict[Hashable, list] = {}  # key → [the lock of its one computation, its threads]

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            hit = self._items.get(key, _MISSING)
            if hit is _MISSING:
                return default
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: Any, size: int | None = None) -> None:
        """Keep ``value``; ``size`` (when given) overrides ``size_of(value)``, for caches holding
        values of several kinds."""
        sized = size is not None or self._size_of is not None
        if size is None:
            size = int(self._size_of(value)) if self._size_of is not None else 1
        if self.max_size <= 0 or (sized and size > self.max_size // self._max_item_fraction):
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._total -= old[1]
            self._items[key] = (value, size)
            self._total += size
            self._evict_over_max()

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = compute()
            self.put(key, value)
        return value

    def get_or_compute_once(self, key: Hashable, compute: Callable[[], V]) -> V:
        """:meth:`get_or_compute` where one thread computes a missing key and the others asking for
        it meanwhile wait for its value, instead of computing their own copies beside it."""
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        with self._lock:
            # [the key's lock, threads holding or waiting for it]: it goes when the last is done. Dropped
            # when its first holder was done, a thread arriving then made a second lock and computed
            # beside one still waiting on the first (a value too big to keep is computed by each in turn)
            computing = self._computing.setdefault(key, [threading.Lock(), 0])
            computing[1] += 1
        try:
            with computing[0]:
                return LRUCache.get_or_compute(self, key, compute)
        finally:
            with self._lock:
                computing[1] -= 1
                if not computing[1] and self._computing.get(key) is computing:
                    del self._computing[key]

    def make_room(self, size: int) -> None:
        """Let least recently used entries go until a value of ``size`` fits beside the rest, before
        it is computed (a value that would not be kept evicts nothing): a cache of ~1 GB columns
        otherwise holds the old beside the new while the new one is read."""
        if self.max_size <= 0 or size > self.max_size // self._max_item_fraction:
            return
        with self._lock:
            self._evict_over_max(coming=size)

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` if it is held (e.g. when the object it stands for is gone)."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._total -= old[1]

    def resize(self, max_size: int) -> None:
        """A new bound; entries over it go, least recently used first (a budget that shrank)."""
        with self._lock:
            self.max_size = int(max_size)
            self._evict_over_max()

    def _evict_over_max(self, coming: int = 0) -> None:
        # with the lock held; ``coming``: the size of a value about to be put (see make_room)
        while self._items and (self._total + coming > self.max_size
                               or (self._max_items is not None and len(self._items) > self._max_items)):
            _, (_, dropped) = self._items.popitem(last=False)
            self._total -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._total = 0

    @property
    def size(self) -> int:
        """Entries held, or the sum of their sizes with a size function."""
        return self._total

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items


class OneAtATime:
    """One computation per key at a time: a thread asking for a key while it is being computed
    waits for that computation's value (or error: unlike LRUCache.get_or_compute_once, whose
    waiters each try again) instead of computing its own beside it. Six requests at once for the
    figure of a 60-minute utterance (the page reloaded, its inspector and a script) read the file
    six times over, ~14 s of both cores of a laptop, where one read takes ~2.4 s and the cache
    then answers the rest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Hashable, Future] = {}
        self._waiting: dict[Hashable, int] = {}

    def run(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            running = self._running.get(key)
            if running is None:
                mine: Future = Future()
                self._running[key] = mine
            else:
                self._waiting[key] = self._waiting.get(key, 0) + 1
        if running is not None:
            try:
                return running.result()
            finally:
                with self._lock:
                    self._waiting[key] -= 1
                    if not self._waiting[key]:
                        del self._waiting[key]
        try:
            value = compute()
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        else:
            mine.set_result(value)
            return value
        finally:
            with self._lock:
                del self._running[key]

    def waiting(self, key: Hashable) -> int:
        """How many threads wait for the computation of ``key`` now."""
        with self._lock:
            return self._waiting.get(key, 0)


class Keeper(Protocol):
    """Where values derived from one dataset's tables outlive the process: beside its build in the
    dataset cache (sde.cache.datasets.KeptWithBuild). Both methods fail quietly: a value that cannot
    be read back is computed, one that cannot be written is only in memory."""

    def recall(self, name: str) -> tuple[bool, Any]:
        """(True, the value kept under ``name``) or (False, None)."""

    def keep(self, name: str, value: Any) -> None:
        """Keep ``value`` under ``name`` (unless one is kept already)."""

    def recall_columns(self, name: str, index: Any) -> Any:
        """The frame of columns kept under ``name``, on ``index`` (memory-mapped), or None."""

    def keep_columns(self, name: str, frame: Any) -> Any:
        """Keep the frame of columns ``frame`` under ``name``; the kept frame (memory-mapped), or
        None where it was not kept."""


_keeping = threading.local()


@contextlib.contextmanager
def keeping() -> Iterator[None]:
    """Within it, this thread's values of kept caches (``for_dataset(..., kept=VERSION)``) are also
    written beside the dataset's build (see the module doc)."""
    before = getattr(_keeping, "on", False)
    _keeping.on = True
    try:
        yield
    finally:
        _keeping.on = before


class KeptCache(LRUCache):
    """An :class:`LRUCache` of one dataset generation whose misses first ask the dataset's
    :class:`Keeper` (a value a previous process kept), and whose values computed or read inside
    :func:`keeping` are kept by it. ``keeper`` gives the keeper of this generation, or None (a
    dataset with no build in a cache, or one changed since: replace_with)."""

    def __init__(self, max_size: int, size_of: Callable[[Any], int] | None, name: str, version: int,
                 keeper: Callable[[], Keeper | None]) -> None:
        super().__init__(max_size, size_of)
        self._prefix = f"{name}/v{version}/"
        self._keeper = keeper

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value held, else the one the keeper holds (held from then on), else ``default``."""
        value = super().get(key, _MISSING)
        if value is _MISSING:
            keeper = self._keeper()
            found, value = keeper.recall(self._prefix + repr(key)) if keeper is not None else (False, None)
            if not found:
                return default
            self.put(key, value)
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        return self._kept(key, super().get_or_compute(key, compute))

    def get_or_compute_once(self, key: Hashable, compute: Callable[[], V]) -> V:
        return self._kept(key, super().get_or_compute_once(key, compute))

    def _kept(self, key: Hashable, value: V) -> V:
        """``value``, kept by the keeper first inside :func:`keeping` (a value a visit computed
        before the warm-up asked for it is kept too)."""
        if getattr(_keeping, "on", False):
            keeper = self._keeper()
            if keeper is not None:
                keeper.keep(self._prefix + repr(key), value)
        return value


class CacheRegistry:
    """The named caches of one dataset, each valid for one generation of its tables, and the
    :class:`Keeper` of the generation a build in the dataset cache holds."""

    def __init__(self) -> None:
        self._caches: dict[str, tuple[int, LRUCache]] = {}
        self._keeper: tuple[int, Keeper] | None = None
        self._columns_keeper: tuple[int, Keeper] | None = None
        # (another registry, its generation, ours, "all" or "columns"): our generation keeps with
        # that one's keepers (all, or the columns' only), now or once it is given them
        self._follows: tuple[CacheRegistry, int, int, str] | None = None
        self._lock = threading.Lock()

    def cache(self, name: str, generation: int, max_size: int,
              size_of: Callable[[Any], int] | None = None, kept: int | None = None) -> LRUCache:
        with self._lock:
            held = self._caches.get(name)
            if held is None or held[0] != generation:
                made = LRUCache(max_size, size_of) if kept is None else \
                    KeptCache(max_size, size_of, name, kept, lambda: self.keeper(generation))
                held = (generation, made)
                self._caches[name] = held
            return held[1]

    def keep_with(self, keeper: Keeper, generation: int) -> None:
        """Kept caches of ``generation`` recall from and keep with ``keeper`` from now on."""
        with self._lock:
            self._keeper = (generation, keeper)
            self._columns_keeper = (generation, keeper)

    def follow(self, other: "CacheRegistry", other_generation: int, generation: int) -> None:
        """Our ``generation`` keeps with the keepers ``other`` has for ``other_generation``, now or
        once given: a copy of a dataset whose tables only gained a column no kept value reads,
        made before its build was stored (sde.audio_presence: the build is written beside)."""
        with self._lock:
            self._follows = (other, other_generation, generation, "all")

    def stop_keeping(self) -> None:
        """Keep and recall nothing with the build from now on: its entry is being stored anew from
        other tables (sde.build.remeasure), which values computed from these must not join."""
        with self._lock:
            self._keeper = None
            self._columns_keeper = None
            self._follows = None

    def keeper(self, generation: int) -> Keeper | None:
        held, follows = self._keeper, self._follows
        if held is not None and held[0] == generation:
            return held[1]
        if follows is not None and follows[2] == generation and follows[3] == "all":
            return follows[0].keeper(follows[1])
        return None

    def columns_keeper(self, generation: int) -> Keeper | None:
        """The keeper of the columns derived from the build's text (sde.quality.apply's quality
        columns), which a generation that only added such columns (or the audio's presence: no
        kind's input) keeps too: see :meth:`renew`."""
        held, follows = self._columns_keeper, self._follows
        if held is not None and held[0] == generation:
            return held[1]
        if follows is not None and follows[2] == generation:
            return follows[0].columns_keeper(follows[1])
        return None

    def renew(self, old: int, new: int, *, keep: Iterable[str] = (), keepers: str = "none") -> None:
        """The tables went from generation ``old`` to ``new`` (Dataset.replace_with): every cache
        goes but those named in ``keep`` (their values hold for the new tables too), and ``new``
        keeps with ``old``'s keepers: ``"all"`` of them (a swap that added a column no kept value
        reads), ``"columns"`` (one that added columns derived from the text: the pages kept read
        every column, the columns derived from the text read none of them) or ``"none"``."""
        with self._lock:
            keeper = self.keeper(old) if keepers == "all" else None
            columns = self.columns_keeper(old) if keepers in ("all", "columns") else None
            follows = self._follows
            self._caches = {name: (new, cache) for name, (generation, cache) in self._caches.items()
                            if name in keep and generation == old}
            self._keeper = None if keeper is None else (new, keeper)
            self._columns_keeper = None if columns is None else (new, columns)
            # a build stored later still reaches a copy made before it
            self._follows = None
            if follows is not None and follows[2] == old and keepers != "none":
                self._follows = (*follows[:2], new, "all" if keepers == "all" and follows[3] == "all" else "columns")

    def clear(self) -> None:
        with self._lock:
            self._caches.clear()
            self._keeper = None  # the tables it kept values of are gone
            self._columns_keeper = None
            self._follows = None


class HasCaches(Protocol):
    """What :func:`for_dataset` needs of a dataset (``sde.dataset.Dataset`` has both)."""

    generation: int
    caches: CacheRegistry


def for_dataset(dataset: HasCaches, name: str, max_size: int,
                size_of: Callable[[Any], int] | None = None, kept: int | None = None) -> LRUCache:
    """The cache ``name`` of ``dataset`` (made on first use with ``max_size`` and ``size_of``),
    a new empty one after ``dataset.replace_with(...)``. ``kept``: the version of its values'
    layout, for a cache whose values also outlive the process (:class:`KeptCache`; bump it when what
    it holds changes shape, so that values kept by an older sde are not read). Its values must
    depend on the dataset's tables alone, and be small: the warm-up's pages, not a visit's."""
    return dataset.caches.cache(name, dataset.generation, max_size, size_of, kept)


# ------------------------------------------------------------------------------ the cache folder

def configured_cache_dir() -> Path | None:
    """The folder $SDE_CACHE_DIR names, "~" expanded; None where it is unset or empty."""
    value = os.environ.get(CACHE_DIR_VARIABLE)
    # SDE_CACHE_DIR="~/sde-cache" in a job script is not expanded by the shell that sets it
    return Path(os.path.expanduser(value)) if value else None


def user_cache_folder() -> Path | None:
    """The platform's user cache folder for sde (~/.cache/sde), None where there is no home folder
    to find it in: no HOME, and a uid with no passwd entry (``docker run -u 12345``)."""
    try:
        found = Path(user_cache_dir("sde"))
    except RuntimeError:  # platformdirs 4.x: "could not determine the home directory"
        return None
    # older platformdirs return "~/.cache/sde" unexpanded: a "~" folder under the current one
    return found if found.is_absolute() else None


def homeless_cache_dir() -> Path:
    """The cache folder of a process with no home folder: this uid's own folder in the temporary
    folder. A container run as such a uid loses it with the container, as it would its ~/.cache."""
    name = f"sde-cache-{os.geteuid()}" if hasattr(os, "geteuid") else "sde-cache"  # Windows: a home always
    return Path(tempfile.gettempdir()) / name


def default_cache_dir() -> Path:
    """$SDE_CACHE_DIR, else the user cache folder, else (no home folder) :func:`homeless_cache_dir`."""
    return configured_cache_dir() or user_cache_folder() or homeless_cache_dir()
