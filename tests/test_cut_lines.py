"""Exporting rows of a Lhotse CutSet (a line per cut, a row per supervision): each cut written
once with exactly its selected supervisions, through the CLI (`sde export`, kept and rejected),
the HTTP twin (/api/utterances.jsonl) and with reviews applied; read back by lhotse itself."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from sde.cut_lines import cut_keeping
from tests.browser_kit import sde_server

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
# per cut: the texts of its supervisions (one second each)
CUTS = [["hello one", "world one"], ["hello two"], ["world three", "again three", "hello three"]]


@pytest.fixture(scope="module")
def cutset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cuts")
    cuts = []
    for k, texts in enumerate(CUTS):
        path = folder / f"r{k}.wav"
        t = np.arange(SR * len(texts)) / SR
        sf.write(path, (0.2 * np.sin(2 * np.pi * (200 + 50 * k) * t)).astype(np.float32), SR)
        rec = Recording.from_file(path, recording_id=f"r{k}")
        sups = [SupervisionSegment(id=f"c{k}s{j}", recording_id=rec.id, start=float(j), duration=1.0, text=text,
                                   custom={"pred_text": text})
                for j, text in enumerate(texts)]
        cuts.append(MonoCut(id=f"c{k}", start=0.0, duration=rec.duration, channel=0, recording=rec,
                            supervisions=sups))
    target = folder / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(target)
    return target


def _sde(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _texts(path: Path) -> dict[str, list[str]]:
    return {cut.id: [s.text for s in cut.supervisions] for cut in CutSet.from_file(path)}


LINE = json.dumps({"id": "c", "supervisions": [{"id": "a", "text": "x"}, {"id": "b", "text": "y",
                                                                          "custom": {"k": 1}}]}).encode() + b"\n"


@pytest.mark.parametrize(("ids", "changes", "expected"), [
    ({"a"}, {}, [{"id": "a", "text": "x"}]),
    ({"a", "b"}, {}, [{"id": "a", "text": "x"}, {"id": "b", "text": "y", "custom": {"k": 1}}]),
    (set(), {}, None),
    ({"b"}, {"b": SimpleNamespace(status="fix", text="why", note="", tags=())},
     [{"id": "b", "text": "why", "custom": {"k": 1, "text_original": "y"}}]),
    ({"a"}, {"a": SimpleNamespace(status="keep", text=None, note="check", tags=("noisy",))},
     [{"id": "a", "text": "x", "custom": {"review_note": "check", "review_tags": ["noisy"]}}]),
], ids=["one of two", "both", "none: no line", "a fix keeps the old text", "note and tags"])
def test_a_cut_line_keeps_only_the_selected_supervisions(ids, changes, expected):
    out = cut_keeping(LINE, ids, changes)
    if expected is None:
        assert out is None
        return
    assert out.endswith(b"\n")
    assert json.loads(out) == {"id": "c", "supervisions": expected}


def test_export_writes_each_cut_once_with_its_kept_supervisions(cutset, tmp_path):
    kept, rejected = tmp_path / "kept.jsonl.gz", tmp_path / "rejected.jsonl"
    r = _sde("export", str(cutset), "-o", str(kept), "--rejected", str(rejected), "--filter", '{text} contains "hello"',
             "--no-cache", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _texts(kept) == {"c0": ["hello one"], "c1": ["hello two"], "c2": ["hello three"]}
    assert _texts(rejected) == {"c0": ["world one"], "c2": ["world three", "again three"]}
    changelog = json.loads(Path(f"{kept}.changelog.json").read_text())
    assert changelog["counts"]["kept"] == 3 and changelog["counts"]["rejected"] == 3


def test_a_wholly_kept_cut_is_copied_byte_for_byte(cutset, tmp_path):
    out = tmp_path / "c1.jsonl"
    r = _sde("export", str(cutset), "-o", str(out), "--filter", '{cut_id} = "c1"', "--no-cache", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with gzip.open(cutset, "rb") as f:
        original = f.read().splitlines(keepends=True)[1]
    assert out.read_bytes() == original


def test_sorted_export_writes_a_cut_at_its_first_selected_supervision(cutset, tmp_path):
    out = tmp_path / "sorted.jsonl"
    r = _sde("export", str(cutset), "-o", str(out), "--sort", "-text", "--no-cache", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == ["c2", "c0", "c1"]  # "world three" > "world one" > ... > "hello two": c1 comes last
    assert sum(len(v) for v in _texts(out).values()) == sum(map(len, CUTS))


def test_the_http_twin_streams_each_cut_once_with_the_selected_supervisions(cutset):
    with sde_server(str(cutset)) as url:
        query = urllib.parse.urlencode({"filter": '{text} contains "three"'})
        with urllib.request.urlopen(f"{url}/api/utterances.jsonl?{query}", timeout=60) as response:
            lines = response.read().decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["c2"]
    assert [s["text"] for s in json.loads(lines[0])["supervisions"]] == ["world three", "again three", "hello three"]
