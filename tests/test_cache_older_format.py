"""After an upgrade that changes the cache format: the rebuild says why, and what the older sde
left (its entry of the dataset, its interrupted builds) does not stay in the cache for ever."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sde import cache
from sde.cache import CACHE_FORMAT, ReadOnlyStore

ROOT = Path(__file__).resolve().parent.parent
OLDER = CACHE_FORMAT - 1

# An entry as an sde of the previous cache format writes it: this version's code with its format
# number set back before anything is keyed or stored. The number is both in the entry's key (so an
# upgrade misses it) and in its description, as it is for a real older sde; only the computed
# tables may differ from a real one's, and nothing here reads them.
_AS_OLDER_SDE = ("import runpy, sys; import sde.cache.datasets as d; d.CACHE_FORMAT = {older}; "
                 "sys.argv = ['sde', *sys.argv[1:]]; runpy.run_module('sde.cli', run_name='__main__')")

ROWS = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 3, "text": f"room {i} is the one",
         "pred_text": f"room {i} is one"} for i in range(40)]


def _sde(*args: str, older: bool = False) -> subprocess.CompletedProcess:
    command = ["-c", _AS_OLDER_SDE.format(older=OLDER)] if older else ["-m", "sde.cli"]
    result = subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result


def _formats(folder: Path) -> list[int]:
    """The cache format of each dataset stored in ``folder``."""
    import pickle

    store = ReadOnlyStore(folder)
    try:
        return sorted(pickle.loads(store.get(k))["format"] for k in store.iterkeys()
                      if isinstance(k, tuple) and k[0] == "meta")
    finally:
        store.close()


def test_an_older_formats_entry_is_named_as_the_reason_of_the_rebuild_and_removed_after_it(write_manifest, tmp_path):
    manifest = str(write_manifest(ROWS, "m.json"))
    folder = tmp_path / "cache"
    options = ["--normalize", "lower,punct", "--cache-dir", str(folder)]
    _sde("index", manifest, *options, older=True)
    _sde("index", manifest, "--cache-dir", str(folder), older=True)  # other options: another dataset
    assert _formats(folder) == [OLDER, OLDER]
    upgraded = _sde("stats", manifest, *options)
    said = [line for line in upgraded.stderr.splitlines() if "older sde" in line]
    assert said == [f"note: the cached build of m.json in {folder} was made by an older sde (cache format {OLDER}; "
                    f"this version reads {CACHE_FORMAT}): building it again"], upgraded.stderr
    assert _formats(folder) == [OLDER, CACHE_FORMAT]  # the other options' entry is not this dataset's
    again = _sde("stats", manifest, *options)
    assert "loaded from cache" in again.stderr and "older sde" not in again.stderr


def test_an_older_formats_entry_in_use_elsewhere_is_removed_by_a_later_start(write_manifest, tmp_path):
    from sde.cache import in_use

    manifest = str(write_manifest(ROWS, "m.json"))
    folder = tmp_path / "cache"
    _sde("index", manifest, "--cache-dir", str(folder), older=True)
    store = ReadOnlyStore(folder)
    (old,) = [k[1] for k in store.iterkeys() if isinstance(k, tuple) and k[0] == "meta"]
    store.close()
    # an sde process serving the older entry (one of a later format bump takes these locks too)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; from sde.cache import in_use; "
                               f"in_use.use(Path({str(folder)!r}), {old!r}); print('held', flush=True); sys.stdin.read()"],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        upgraded = _sde("stats", manifest, "--cache-dir", str(folder))
        assert "was made by an older sde" in upgraded.stderr
        assert "kept the cached build of m.json" in upgraded.stderr and "another sde process is using it" in upgraded.stderr
        assert _formats(folder) == [OLDER, CACHE_FORMAT]
    finally:
        holder.communicate("", timeout=60)
    later = _sde("stats", manifest, "--cache-dir", str(folder))
    assert "loaded from cache" in later.stderr
    assert _formats(folder) == [CACHE_FORMAT]
    assert not in_use.in_use_file(folder, old).exists()


def test_an_interrupted_build_of_an_older_format_is_removed(write_manifest, tmp_path):
    from sde.build.stream import build_in_parts
    from sde.dataset import DatasetOptions

    manifest = write_manifest(ROWS, "m.json")
    folder = tmp_path / "cache"
    _sde("index", str(manifest), "--cache-dir", str(folder))
    builds = {}
    for fmt, key in ((OLDER, "a" * 64), (CACHE_FORMAT, "b" * 64)):  # parts of other manifests, interrupted
        build = folder / cache.BUILDS / f"{key}-512-0123456789ab"
        build_in_parts(str(manifest), DatasetOptions(), build, threads=1, part_bytes=512)
        cache.mark_build_format(build)
        (build / "format").write_text(f"{fmt}\n")  # as the older sde named it
        (folder / cache.BUILDS / f"{key}.lock").touch()
        then = time.time() - cache.STALE_FILE_S - 60  # no process has written them for long
        for path in [build, *build.rglob("*")]:
            os.utime(path, (then, then))
        builds[fmt] = build
    warm = _sde("stats", str(manifest), "--cache-dir", str(folder))
    assert "loaded from cache" in warm.stderr
    assert f"removed the parts of an interrupted build (builds/{'a' * 16}…)" in warm.stderr
    assert f"made by an older sde (cache format {OLDER})" in warm.stderr
    assert not builds[OLDER].exists() and not (folder / cache.BUILDS / f"{'a' * 64}.lock").exists()
    assert builds[CACHE_FORMAT].is_dir()  # resumable: left to the size limit
