"""Reviews follow a manifest that was renamed or moved (or copied byte for byte), not another
manifest made of its lines while the reviewed one is still in place: `sde export`'s output, a copy
edited since. Lines alone cannot tell them apart (an export keeps its lines byte for byte): the
reviews file keeps where its manifest was and which file it was (sde.reviews.moved_here)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from sde.dataset import build_dataset
from sde.export import export_dataset
from sde.reviews import open_reviews, utterance_keys

SR = 16000
KEPT = '{audio_filepath} in ("u0.wav", "u1.wav", "u2.wav")'   # 3 of the 6 lines, both reviewed ones among them


def sde(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], cwd=cwd, capture_output=True, text=True)


def reviewed_manifest(tmp_path: Path) -> Path:
    """data/train.json: 6 utterances of real audio, line 2 dropped and line 3 fixed, the reviews
    kept in the default location of the cache folder tmp_path/cache (as the server keeps them)."""
    folder = tmp_path / "data"
    folder.mkdir()
    rows = []
    for i in range(6):
        t = np.arange(SR // 2) / SR
        sf.write(folder / f"u{i}.wav", (0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype("float32"), SR)
        rows.append({"audio_filepath": f"u{i}.wav", "duration": 0.5, "text": f"words of line {i}"})
    manifest = folder / "train.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, cache_dir=tmp_path / "cache")
    keys = utterance_keys(dataset)
    store.set_review(keys.key(1), "drop", note="noise")
    store.set_review(keys.key(2), "fix", text="words of the fixed line")
    store.close()
    return manifest


def edited(path: Path) -> None:
    """An unreviewed line's text changed (a new file in its place, as an editor writes it)."""
    text = path.read_text(encoding="utf-8").replace("words of line 5", "words of line five")
    path.unlink()
    path.write_text(text, encoding="utf-8")


def renamed(tmp_path: Path, manifest: Path) -> Path:
    return manifest.rename(manifest.with_name("train_v2.json"))


def moved_to_another_file_system(tmp_path: Path, manifest: Path) -> Path:
    """A copy, then the original removed (mv across file systems): another inode, nothing left."""
    moved = shutil.copy2(manifest, manifest.with_name("train_v2.json"))
    manifest.unlink()
    return Path(moved)


def moved_and_edited(tmp_path: Path, manifest: Path) -> Path:
    moved = manifest.rename(manifest.with_name("train_v2.json"))
    edited(moved)
    return moved


def copied(tmp_path: Path, manifest: Path) -> Path:
    return Path(shutil.copy(manifest, manifest.with_name("train_copy.json")))


def copied_and_edited(tmp_path: Path, manifest: Path) -> Path:
    copy = copied(tmp_path, manifest)
    edited(copy)
    return copy


def exported(tmp_path: Path, manifest: Path, output: str = "data/kept.json") -> Path:
    """`sde export MANIFEST --filter KEPT -o OUTPUT` (its function, in this process: seconds less)."""
    out = tmp_path / output
    out.parent.mkdir(exist_ok=True)
    export_dataset(build_dataset(manifest), out, filter=KEPT, cache_dir=tmp_path / "cache")
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3
    return out


def exported_as_train_json_elsewhere(tmp_path: Path, manifest: Path) -> Path:
    return exported(tmp_path, manifest, "out/train.json")


def written_before_sde_kept_the_place(tmp_path: Path, manifest: Path) -> Path:
    """The export's case with a reviews file that does not say where its manifest was (an older
    sde's): told by the lines alone, as before."""
    for reviews in (tmp_path / "cache" / "reviews").glob("*.sqlite"):
        with sqlite3.connect(reviews) as con:
            con.execute("DELETE FROM meta WHERE key = 'files'")
    return exported(tmp_path, manifest)


DERIVED: dict[str, tuple[Callable[[Path, Path], Path], bool]] = {
    # how the manifest opened was made from the reviewed one: (make it, whether the reviews follow)
    "renamed": (renamed, True),
    "moved to another file system": (moved_to_another_file_system, True),
    "moved and edited": (moved_and_edited, True),
    "copied byte for byte": (copied, True),
    "copied and edited": (copied_and_edited, False),
    "exported": (exported, False),
    "exported under the same name elsewhere": (exported_as_train_json_elsewhere, False),
    "exported, reviews file of an older sde": (written_before_sde_kept_the_place, True),
}


@pytest.mark.parametrize("how", list(DERIVED), ids=list(DERIVED))
def test_the_reviews_follow_only_the_manifest_moved(tmp_path, how):
    make, follows = DERIVED[how]
    source = reviewed_manifest(tmp_path)
    before = source.read_bytes() if source.exists() else None
    opened = make(tmp_path, source)
    store = open_reviews(build_dataset(opened), cache_dir=tmp_path / "cache")   # as `sde OPENED` opens them
    try:
        statuses = sorted(r.status for r in store.reviews())
        notes = " ".join(store.notes)
    finally:
        store.close()
    assert statuses == (["drop", "fix"] if follows else []), notes
    if follows:
        assert "renamed or moved" in notes or "copied" in notes, notes
    else:
        assert f"they were made for {source}, which is still there" in notes and "pass --reviews" in notes, notes
    if before is not None and source.exists():
        assert source.read_bytes() == before


EXPORTS = {
    # the manifest exported with --apply-reviews: (made by, the export says)
    "renamed": (renamed, "1 dropped, 1 fixed"),
    "an export's output": (exported, "has no reviews yet"),
}


@pytest.mark.parametrize("case", list(EXPORTS), ids=list(EXPORTS))
def test_sde_export_applies_the_reviews_of_a_renamed_manifest_not_of_an_exports_source(tmp_path, case):
    make, said = EXPORTS[case]
    opened = make(tmp_path, reviewed_manifest(tmp_path))
    out = tmp_path / "again.json"
    r = sde("export", str(opened), "--cache-dir", str(tmp_path / "cache"), "--apply-reviews", "-o", str(out),
            cwd=tmp_path)
    assert said in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.returncode == (0 if case == "renamed" else 1)
    assert out.exists() == (case == "renamed")


def test_reviews_named_with_reviews_file_are_read_with_an_export_saying_so(tmp_path):
    source = reviewed_manifest(tmp_path)
    reviews = next((tmp_path / "cache" / "reviews").glob("train-*.sqlite"))
    kept = exported(tmp_path, source)
    out = tmp_path / "again.json"
    r = sde("export", str(kept), "--reviews", str(reviews), "--apply-reviews", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 dropped, 1 fixed" in r.stderr
    assert f"they were made for {source}, which is still there: read with kept.json as --reviews names" in r.stderr
