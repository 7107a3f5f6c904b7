"""sde.caching: the one LRU, bounded by count or by size, and per-dataset caches that a
`Dataset.replace_with` empties (a real dataset built from a manifest)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sde.caching import LRUCache, for_dataset
from sde.dataset import build_dataset, normalized_summary, with_predictions

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("max_size, keys, kept", [
    (2, ["a", "b", "c"], ["b", "c"]),          # the oldest goes first
    (2, ["a", "b", "a", "c"], ["a", "c"]),     # putting a key again makes it recent
    (0, ["a"], []),                            # a zero budget keeps nothing
])
def test_count_bound_drops_the_least_recently_used(max_size, keys, kept):
    cache = LRUCache(max_size)
    for k in keys:
        cache.put(k, k.upper())
    assert [k for k in "abc" if k in cache] == kept
    assert len(cache) == len(kept) == cache.size


def test_a_read_makes_an_entry_recent():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert "a" in cache and "b" not in cache


@pytest.mark.parametrize("sizes, kept", [
    ([25, 25, 25, 25, 25], [1, 2, 3, 4]),  # 125 > 100: the first goes
    ([10, 20, 5], [0, 1, 2]),              # 35 fits
    ([10, 26, 10], [0, 2]),                # 26 > 100 // 4: never kept, nothing flushed
])
def test_size_bound_counts_the_size_function(sizes, kept):
    cache = LRUCache(100, size_of=len)
    for i, n in enumerate(sizes):
        cache.put(i, b"x" * n)
    assert [i for i in range(len(sizes)) if i in cache] == kept
    assert cache.size == sum(sizes[i] for i in kept)


@pytest.mark.parametrize("sizes, kept", [
    ([10, 10, 10, 10], [1, 2, 3]),  # three entries at most, though 40 fits
    ([40, 40, 10], [1, 2]),         # 90 > 60: the oldest goes before the count bounds it
])
def test_size_and_count_bound_together_drop_whichever_is_passed(sizes, kept):
    cache = LRUCache(60, size_of=len, max_item_fraction=1, max_items=3)
    for i, n in enumerate(sizes):
        cache.put(i, b"x" * n)
    assert [i for i in range(len(sizes)) if i in cache] == kept
    assert cache.size == sum(sizes[i] for i in kept) and len(cache) == len(kept)


@pytest.mark.parametrize("new_size, kept", [
    (100, [0, 1, 2, 3]),   # all fit still
    (60, [1, 2, 3]),       # the oldest goes
    (25, [3]),
    (0, []),
])
def test_a_smaller_bound_drops_the_least_recently_used(new_size, kept):
    cache = LRUCache(100, size_of=len)
    for i in range(4):
        cache.put(i, b"x" * 20)
    cache.resize(new_size)
    assert [i for i in range(4) if i in cache] == kept and cache.size == 20 * len(kept)
    assert cache.max_size == new_size


@pytest.mark.parametrize("coming, kept", [
    (20, [0, 1, 2, 3]),   # fits beside them all: nothing goes
    (30, [1, 2, 3]),      # the least recently used goes first
    (61, [3]),
    (100, []),            # the cache's whole size: every entry goes
    (101, [0, 1, 2, 3]),  # never kept: nothing goes for it
])
def test_room_is_made_before_a_value_comes(coming, kept):
    cache = LRUCache(100, size_of=len, max_item_fraction=1)
    for i in range(4):
        cache.put(i, b"x" * 20)
    cache.make_room(coming)
    assert [i for i in range(4) if i in cache] == kept and cache.size == 20 * len(kept)


def test_an_explicit_size_overrides_the_size_function():
    cache = LRUCache(100, size_of=len)
    cache.put("k", "short", size=20)
    cache.put("big", "x", size=26)   # over 100 // 4
    assert cache.size == 20 and "big" not in cache


def test_get_or_compute_computes_once_and_caches_none():
    calls = []
    cache = LRUCache(4)

    def compute():
        calls.append(1)
        return None

    assert cache.get_or_compute("k", compute) is None
    assert cache.get_or_compute("k", compute) is None
    assert len(calls) == 1
    assert cache.get("missing", "default") == "default"


@pytest.mark.parametrize("max_size, runs", [(4, 1), (0, 3)],
                         ids=["kept: computed once for every thread", "nothing kept: one at a time, each its own"])
def test_get_or_compute_once_makes_threads_asking_at_once_wait_for_one_computation(max_size, runs):
    cache, made, inside, most = LRUCache(max_size), [], [], []
    lock = threading.Lock()

    def compute():
        with lock:
            inside.append(1)
            most.append(len(inside))
        threading.Event().wait(0.1)  # long enough for the other threads to ask meanwhile
        with lock:
            inside.pop()
        made.append(1)
        return "value"

    got: list = []
    threads = [threading.Thread(target=lambda: got.append(cache.get_or_compute_once("k", compute))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == ["value"] * 3 and len(made) == runs and max(most) == 1 and not cache._computing


def test_threads_share_one_cache_within_its_bound():
    cache = LRUCache(50)

    def work(offset: int) -> None:
        for i in range(2000):
            key = (offset + i) % 80
            assert cache.get_or_compute(key, lambda k=key: k * 2) == key * 2

    threads = [threading.Thread(target=work, args=(t * 7,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == cache.size <= 50


@pytest.fixture
def dataset(tmp_path):
    m = tmp_path / "m.json"
    rows = [{"audio_filepath": f"{i}.wav", "duration": 1.0, "text": "the cat sat", "pred_text": "The cat sat."}
            for i in range(3)]
    m.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return build_dataset(m, workers=1)


def test_dataset_caches_are_new_after_replace_with(dataset):
    cache = for_dataset(dataset, "test", 4)
    cache.put("k", 1)
    assert for_dataset(dataset, "test", 4) is cache
    generation = dataset.generation
    dataset.replace_with(with_predictions(dataset, "pred_text_b", ["the cat sat"] * 3))
    assert dataset.generation == generation + 1
    fresh = for_dataset(dataset, "test", 4)
    assert fresh is not cache and "k" not in fresh


def test_a_copy_does_not_share_the_originals_caches(dataset):
    for_dataset(dataset, "test", 4).put("k", 1)
    copy = with_predictions(dataset, "pred_text_b", ["the cat sat"] * 3)
    assert "k" not in for_dataset(copy, "test", 4)
    assert "k" in for_dataset(dataset, "test", 4)


def test_normalized_summary_is_recomputed_after_a_swap(dataset):
    before = normalized_summary(dataset, ["lower", "punct"])
    assert before["pred_text"]["wer"] == pytest.approx(0.0)
    dataset.replace_with(with_predictions(dataset, "pred_text_b", ["the dog sat"] * 3))
    after = normalized_summary(dataset, ["lower", "punct"])
    assert after["pred_text_b"]["wer"] == pytest.approx(100.0 / 3)
    assert np.isclose(after["pred_text"]["wer"], 0.0)


def test_dataset_module_does_not_load_the_audio_package():
    code = "import sys, sde.dataset, sde.query, sde.caching; assert 'sde.audio' not in sys.modules, 'sde.audio'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr


def _most_computing_at_once(threads: int) -> int:
    """Threads asking a cache that keeps nothing for one key at once: the most computing together."""
    cache, inside, most = LRUCache(0), [], []
    lock = threading.Lock()

    def compute():
        with lock:
            inside.append(1)
            most.append(len(inside))
        threading.Event().wait(0.001)
        with lock:
            inside.pop()
        return "value"

    asking = [threading.Thread(target=lambda: cache.get_or_compute_once("k", compute)) for _ in range(threads)]
    for thread in asking:
        thread.start()
    for thread in asking:
        thread.join()
    assert not cache._computing
    return max(most)


def test_threads_arriving_while_a_computation_ends_still_compute_one_at_a_time():
    # Nothing kept (max_size 0): each thread computes in turn. The key's lock was dropped as its
    # first holder finished; a thread arriving then made a second lock and computed beside one
    # still waiting on the first (seen in CI under load; threads switched every microsecond here).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        together = sum(_most_computing_at_once(8) > 1 for _ in range(500))
    finally:
        sys.setswitchinterval(switch)
    assert together == 0
