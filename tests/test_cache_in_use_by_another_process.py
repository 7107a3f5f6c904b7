"""A shared --cache-dir: a dataset a live sde process serves is not removed by another process
making room (sde.cache.in_use), and is removed by a later one once no process uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlencode

from tests.browser_kit import ROOT, sde_server
from tests.cache_kit import entry_held_elsewhere
from tests.build.memory_kit import generate_manifest


def _sde(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_served_dataset_is_kept_when_another_process_makes_room_and_removed_once_unused(tmp_path):
    served = generate_manifest(tmp_path / "m.json", 2_000)
    other = generate_manifest(tmp_path / "big.json", 6_000)  # its build alone passes the 1 MB limit
    cache = str(tmp_path / "cache")
    word = json.loads(served.read_text().split("\n", 1)[0])["text"].split()[0]
    small = {"SDE_CACHE_SIZE": "1MB"}
    indexed = _sde("index", str(served), "--cache-dir", cache)
    assert indexed.returncode == 0, indexed.stderr
    with sde_server(str(served), "--cache-dir", cache, no_cache=False) as url:
        assert _status(f"{url}/api/summary")[0] == 200
        crowded = _sde("index", str(other), "--cache-dir", cache, env=small)
        assert crowded.returncode == 0 and "Traceback" not in crowded.stderr, crowded.stderr
        assert "removed the cached build of m.json" not in crowded.stderr
        assert "kept the cached build of m.json" in crowded.stderr
        assert "another sde process is using it" in crowded.stderr
        # the searches read the compressed text columns and their word indexes by name
        for query in (f'{{text}} contains "{word}"', f'{{pred_text}} contains "{word}"', "{wer} > 10"):
            for route in ("/api/utterances", "/api/utterances.csv"):
                status, body = _status(f"{url}{route}?{urlencode({'filter': query, 'sort': 'text'})}")
                assert status == 200, (route, query, body[:500])
    later = _sde("stats", str(other), "--cache-dir", cache, env=small)  # a warm start makes room again
    assert later.returncode == 0 and "loaded from cache" in later.stderr, later.stderr
    assert "removed the cached build of m.json" in later.stderr
    again = _sde("stats", str(served), "--cache-dir", cache)
    assert "loaded from cache" not in again.stderr


def test_a_process_that_read_an_entry_keeps_it_from_another_processes_delete(write_manifest, tmp_path):
    from sde.build.load import entry_key, load_dataset
    from sde.cache import DatasetCache
    from sde.dataset import DatasetOptions

    manifest = write_manifest([{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"w{i} x", "pred_text": "x"}
                               for i in range(30)])
    folder = tmp_path / "cache"
    load_dataset(manifest, cache_dir=folder)
    key = entry_key(manifest, DatasetOptions(), False)
    with entry_held_elsewhere(folder, key):
        cache = DatasetCache(folder)
        assert not cache.delete(key) and key in cache.kept_in_use and cache.holds(key)
    assert cache.delete(key) and not cache.holds(key)
    cache.close()
