"""The data changes between runs: what `sde stats` shows after the change is the new data, never
the cached build of the old, and a change that leaves the data as it was rebuilds nothing.

The cache key holds each input file's path, size and modification time (sde.cache.datasets). A
same-length edit whose modification time is set back (`sed -i 's/cat/bat/'` then `touch -r`, a
script's `os.utime`, `rsync -t` or `cp -p` of an edited copy) keeps all three: sde served the old
lines (vocabulary 12 where the manifest had 13 words, WER 38.9 where it was 44.4) until the build
also kept its files' inode, change time and content digest (sde.cache.identity).
Each case runs the real CLI (`python -m sde.cli`) in a subprocess, on real files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sde.cache import DatasetCache
from sde.dataset import DatasetOptions, build_dataset
from tests.build.memory_kit import generate_manifest
from tests.interrupt_kit import interrupt_when

ROOT = Path(__file__).resolve().parents[1]
LOADED = "loaded from cache"
CHANGED = "changed since the dataset was cached"
LINES = 120


def _sde(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def _stats(*args: str) -> tuple[dict, str]:
    done = _sde("stats", *args, "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout), done.stderr


def _index(*args: str) -> str:
    """What `sde index` says (it says whether it read the build from the cache; stats does not)."""
    done = _sde("index", *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def _numbers(summary: dict) -> dict:
    """What the change shows in: the summary less the manifest's name."""
    return {k: v for k, v in summary.items() if k != "manifest"}


def _write_data(folder: Path) -> tuple[Path, Path]:
    """A manifest with its hypotheses, and the same manifest without them plus a predictions file."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 4, "text": f"the cat sat on mat {i}",
             "pred_text": f"the cat sat on the mat {i}" if i % 3 else f"a cat sat on mat {i}"} for i in range(LINES)]
    manifest = folder / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    predictions = folder / "preds.json"
    predictions.write_text("".join(json.dumps({"audio_filepath": r["audio_filepath"], "pred_text": r["pred_text"]}) + "\n"
                                   for r in rows))
    return manifest, predictions


def _edit_keeping_size_and_time(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` by ``new`` (same length) in place, as `sed -i` does (a new file
    renamed over it), then set the modification time back (`touch -r`, rsync -t)."""
    assert len(old) == len(new)
    before = path.stat()
    text = path.read_text()
    assert old in text
    edited = path.with_name(path.name + ".sed")
    edited.write_text(text.replace(old, new, 1))
    os.replace(edited, path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


# (case) -> (which file is edited, the stats arguments besides the cache, the edit)
EDITS_KEEPING_SIZE_AND_TIME = {
    "a manifest line edited": ("manifest", [], ("the cat sat on mat 7", "the bat sat on mat 7")),
    "a manifest line edited, built in parts": ("manifest", ["--part-size", "4KB"],
                                               ("the cat sat on mat 7", "the bat sat on mat 7")),
    "the --predictions file edited": ("predictions", ["--predictions"], ('"a cat sat on mat 0"', '"a bat sat on mat 0"')),
}


@pytest.mark.parametrize("edited, args, edit", EDITS_KEEPING_SIZE_AND_TIME.values(),
                         ids=EDITS_KEEPING_SIZE_AND_TIME.keys())
def test_an_edit_keeping_size_and_modification_time_shows_the_new_data(tmp_path, edited, args, edit):
    manifest, predictions = _write_data(tmp_path / "data")
    if edited == "predictions":
        manifest.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "pred_text"}) + "\n"
                                    for line in manifest.read_text().splitlines()))
        args = [*args, str(predictions)]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    old, _ = _stats(str(manifest), *cache, *args)
    _edit_keeping_size_and_time(manifest if edited == "manifest" else predictions, *edit)
    fresh, _ = _stats(str(manifest), "--no-cache", *args)
    assert _numbers(fresh) != _numbers(old)  # the edit shows in the numbers
    shown, said = _stats(str(manifest), *cache, *args)
    assert _numbers(shown) == _numbers(fresh)
    assert CHANGED in said and (manifest.name if edited == "manifest" else predictions.name) in said, said
    said = _index(str(manifest), *cache, *args)  # the new build is cached in its place
    assert LOADED in said and CHANGED not in said, said


def _chmod(path: Path) -> None:
    path.chmod(0o600)


def _copy_back_unchanged(path: Path) -> None:
    """A new file (a new inode) with the same content and times: restored from a backup, `cp -p`."""
    copy = path.with_name(path.name + ".bak")
    shutil.copy2(path, copy)
    os.replace(copy, path)


def _hard_link(path: Path) -> None:
    os.link(path, path.with_name(path.name + ".link"))


UNCHANGED_CONTENT = {
    "chmod": _chmod,
    "the same content copied back with its times": _copy_back_unchanged,
    "a hard link made": _hard_link,
}


@pytest.mark.parametrize("change", UNCHANGED_CONTENT.values(), ids=UNCHANGED_CONTENT.keys())
def test_a_change_that_keeps_the_content_rebuilds_nothing(tmp_path, change):
    manifest, _ = _write_data(tmp_path / "data")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert LOADED not in _index(str(manifest), *cache)
    built, _ = _stats(str(manifest), *cache)
    change(manifest)
    for _ in range(2):  # the first run reads the file once to compare; both are served from the cache
        said = _index(str(manifest), *cache)
        assert LOADED in said and CHANGED not in said, said
    shown, _ = _stats(str(manifest), *cache)
    assert shown == built


# (case) -> how the data changes, returning the path sde is given the second time
def _append_line(manifest: Path) -> Path:
    with manifest.open("a") as f:
        f.write(json.dumps({"audio_filepath": "new.wav", "duration": 2.0, "text": "a new line",
                            "pred_text": "a new lane"}) + "\n")
    return manifest


def _swap_symlink(manifest: Path) -> Path:
    other, _ = _write_data(manifest.parent.parent / "other")
    _edit_keeping_size_and_time(other, "the cat sat on mat 7", "the bat sat on mat 7")
    link = manifest.parent / "current.json"
    os.symlink(manifest, link)
    _stats(str(link), "--cache-dir", str(manifest.parent.parent / "cache"))
    swapped = manifest.parent / "swap.json"
    os.symlink(other, swapped)
    os.replace(swapped, link)  # atomic swap, as deployment tools do
    return link


def _same_name_other_folder(manifest: Path) -> Path:
    other, _ = _write_data(manifest.parent.parent / "other")
    _edit_keeping_size_and_time(other, "the cat sat on mat 7", "the bat sat on mat 7")
    return other


OTHER_DATA = {
    "a line appended": _append_line,
    "the manifest replaced by a symlink swap": _swap_symlink,
    "the same manifest name in another folder, one cache folder": _same_name_other_folder,
}


@pytest.mark.parametrize("change", OTHER_DATA.values(), ids=OTHER_DATA.keys())
def test_other_data_under_a_known_name_is_not_served_from_the_cache(tmp_path, change):
    manifest, _ = _write_data(tmp_path / "data")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    old, _ = _stats(str(manifest), *cache)
    given = change(manifest)
    fresh, _ = _stats(str(given), "--no-cache")
    assert _numbers(fresh) != _numbers(old)
    shown, _ = _stats(str(given), *cache)
    assert _numbers(shown) == _numbers(fresh)


def test_values_kept_from_a_replaced_build_are_not_kept_with_the_new_one(tmp_path):
    """A server reading build 1 of an entry keeps what its pages computed beside it; once another
    process stored build 2 under the same key (the manifest edited keeping size and time, audio
    measured again), the server's values, computed from build 1, must not be kept with build 2."""
    manifest, _ = _write_data(tmp_path / "data")
    first = build_dataset(manifest, DatasetOptions())
    serving = DatasetCache(tmp_path / "cache")
    serving.put("key", first)
    served = serving.get("key")
    assert served is not None
    keeper = served.caches.keeper(served.generation)
    assert keeper is not None
    _edit_keeping_size_and_time(manifest, "the cat sat on mat 7", "the bat sat on mat 7")
    other = DatasetCache(tmp_path / "cache")  # another process builds it again
    other.delete("key")
    other.put("key", build_dataset(manifest, DatasetOptions()))
    keeper.keep("page", pd.DataFrame({"words": [12]}))  # computed from build 1
    read = DatasetCache(tmp_path / "cache").get("key")
    assert read is not None
    found, _ = read.caches.keeper(read.generation).recall("page")
    assert not found


def test_a_build_interrupted_then_resumed_after_an_edit_keeping_size_and_time_reads_the_edit(tmp_path):
    """Ctrl-C during a part-by-part build, a line of a finished part edited (size and time kept),
    the same command again: the finished parts were built from the old line, so they are not
    resumed (before, the resumed build served the old line, and its entry was then taken as
    current)."""
    manifest = generate_manifest(tmp_path / "m.json", 60_000)
    cache = tmp_path / "cache"
    args = [str(manifest), "--cache-dir", str(cache), "--part-size", "256KB", "--threads", "2"]
    process = subprocess.Popen([sys.executable, "-m", "sde.cli", "index", *args], stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    # the first part among those built: on a loaded machine the second worker's parts may end first
    stderr = interrupt_when(process, lambda: len(list(cache.glob("builds/*/part-*.info"))) >= 2
                            and any(cache.glob("builds/*/part-00000.info")), "2 parts built, the first among them")
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert (cache / "builds").is_dir() and list(cache.glob("builds/*/part-00000.info"))
    first = json.loads(manifest.read_text().split("\n", 1)[0])["text"]
    _edit_keeping_size_and_time(manifest, json.dumps(first), json.dumps(("x" if first[0] != "x" else "y") + first[1:]))
    said = _index(*args)
    assert "resuming an interrupted build" not in said, said
    shown, _ = _stats(*args)
    fresh, _ = _stats(str(manifest), "--no-cache", "--part-size", "256KB")
    assert _numbers(shown) == _numbers(fresh)
