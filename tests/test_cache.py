"""The dataset cache: hits, invalidation, corruption and unwritable folders."""

from __future__ import annotations

import time

import pandas as pd

from sde.cache import DatasetCache, fingerprint, load_dataset
from sde.dataset import DatasetOptions

ROWS = [
    {"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": f"word{i} common words here",
     "pred_text": f"word{i} common word here", "speaker": f"s{i % 2}"}
    for i in range(20)
]


def _load(manifest, cache_dir, options=DatasetOptions()):
    events, warnings = [], []
    ds = load_dataset(manifest, options, cache_dir=cache_dir, status=events.append, warn=warnings.append)
    return ds, events, warnings


def test_second_load_is_a_hit_and_equal(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    cold, events1, _ = _load(manifest, tmp_path / "cache")
    warm, events2, warnings = _load(manifest, tmp_path / "cache")
    assert "loaded from cache" not in events1
    assert "loaded from cache" in events2
    assert warnings == []
    pd.testing.assert_frame_equal(cold.utterances, warm.utterances)
    pd.testing.assert_frame_equal(cold.vocabulary, warm.vocabulary)
    pd.testing.assert_frame_equal(cold.errors["pred_text"], warm.errors["pred_text"])
    assert cold.summary() == warm.summary()
    # The cache lives where it was asked to, never beside the manifest.
    assert sorted(p.name for p in manifest.parent.iterdir() if p.name != "cache") == ["manifest.json"]


def test_manifest_change_invalidates(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    _load(manifest, tmp_path / "cache")
    time.sleep(0.01)
    write_manifest(ROWS[:5])
    ds, events, _ = _load(manifest, tmp_path / "cache")
    assert "loaded from cache" not in events
    assert len(ds.utterances) == 5


def test_option_change_invalidates(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    assert fingerprint(manifest, DatasetOptions()) != fingerprint(manifest, DatasetOptions(normalize=("lower",)))
    _load(manifest, tmp_path / "cache")
    ds, events, _ = _load(manifest, tmp_path / "cache", DatasetOptions(normalize=("lower",)))
    assert "loaded from cache" not in events
    assert "wer_norm" in ds.utterances


def test_corrupt_entry_is_rebuilt_with_a_warning(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    cache_dir = tmp_path / "cache"
    cold, _, _ = _load(manifest, cache_dir)
    arrow_files = [p for p in cache_dir.rglob("*.val")]
    assert arrow_files, "tables are stored as files"
    for p in arrow_files:
        p.write_bytes(b"garbage")
    ds, events, warnings = _load(manifest, cache_dir)
    assert any("unreadable" in w and "rebuilding" in w for w in warnings)
    pd.testing.assert_frame_equal(cold.utterances, ds.utterances)
    # ... and the rebuilt entry is good again.
    _, events, warnings = _load(manifest, cache_dir)
    assert "loaded from cache" in events and warnings == []


def test_unwritable_cache_dir_runs_without_cache(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    ds, events, warnings = _load(manifest, blocker / "cache")
    assert len(ds.utterances) == 20
    assert any("without it" in w for w in warnings)


def test_cache_never_writes_partial_entries(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    cache = DatasetCache(tmp_path / "cache")
    key = fingerprint(manifest, DatasetOptions())
    assert cache.get(key) is None
    cache.close()
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_background_write_finishes_and_is_then_a_hit(write_manifest, tmp_path):
    import threading

    manifest = write_manifest(ROWS)
    ds = load_dataset(manifest, DatasetOptions(), cache_dir=tmp_path / "cache", background_write=True)
    for t in threading.enumerate():
        if t.name == "sde-cache-write":
            t.join(timeout=60)
    warm, events, warnings = _load(manifest, tmp_path / "cache")
    assert "loaded from cache" in events and warnings == []
    pd.testing.assert_frame_equal(ds.utterances, warm.utterances)
