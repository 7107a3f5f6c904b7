"""An export of a Lhotse source writes its lines (cuts, or supervisions of a recordings +
supervisions pair) as JSON Lines, which Lhotse reads only from a `.jsonl` / `.jsonl.gz` name: under
`-o kept.json` or `kept.json.gz`, `lhotse.load_manifest` read one JSON document and failed with
"Extra data". Such a name is refused before the build, naming the output and the name to use; the
`.jsonl` outputs load with the real `lhotse.load_manifest` and `CutSet.from_file`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = str(Path(__file__).resolve().parent.parent)
SR = 16000


@pytest.fixture
def lhotse_files(tmp_path: Path) -> Path:
    """tmp_path/cuts.jsonl.gz (three cuts, the last with two supervisions) and the recordings +
    supervisions pair of the first two."""
    lhotse = pytest.importorskip("lhotse")
    recordings, supervisions = [], []
    for i in range(3):
        audio = tmp_path / f"a{i}.wav"
        sf.write(audio, (0.1 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR)).astype("float32"), SR)
        recordings.append(lhotse.Recording.from_file(audio, recording_id=f"r{i}"))
        supervisions.append(lhotse.SupervisionSegment(id=f"s{i}", recording_id=f"r{i}", start=0, duration=0.4,
                                                      text=f"word {i}"))
    supervisions.append(lhotse.SupervisionSegment(id="s3", recording_id="r2", start=0.5, duration=0.4, text="more"))
    cuts = lhotse.CutSet.from_manifests(recordings=lhotse.RecordingSet.from_recordings(recordings),
                                        supervisions=lhotse.SupervisionSet.from_segments(supervisions))
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    lhotse.RecordingSet.from_recordings(recordings[:2]).to_file(tmp_path / "recordings.jsonl.gz")
    lhotse.SupervisionSet.from_segments(supervisions[:2]).to_file(tmp_path / "supervisions.jsonl.gz")
    return tmp_path


def _export(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "sde.cli", "export", *args, "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


SOURCES = {"a CutSet": ["cuts.jsonl.gz"], "a recordings + supervisions pair": ["recordings.jsonl.gz",
                                                                              "supervisions.jsonl.gz"]}


@pytest.mark.parametrize("sources", SOURCES.values(), ids=SOURCES.keys())
@pytest.mark.parametrize("option, name, instead", [
    ("-o", "kept.json", "kept.jsonl or kept.jsonl.gz"),
    ("-o", "kept.json.gz", "kept.jsonl or kept.jsonl.gz"),
    ("--rejected", "gone.json", "gone.jsonl or gone.jsonl.gz"),
])
def test_a_name_lhotse_reads_as_one_json_document_is_refused_before_the_build(lhotse_files, sources, option, name,
                                                                            instead):
    outputs = ["-o", name, "--rejected", "gone.jsonl"] if option == "-o" else ["-o", "kept.jsonl", "--rejected", name]
    r = _export(lhotse_files, *sources, *outputs, "--filter", "{duration} > 0.1")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    error = r.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: {option} {name}: ") and f"name it {instead}" in error and "Lhotse" in error
    assert "reading " not in r.stderr and "scoring " not in r.stderr, r.stderr[-2000:]
    assert not [p for p in lhotse_files.iterdir() if p.name.startswith(("kept", "gone"))]


@pytest.mark.parametrize("name", ["kept.jsonl", "kept.jsonl.gz"])
def test_a_cutset_exported_under_a_jsonl_name_loads_in_lhotse(lhotse_files, name):
    lhotse = pytest.importorskip("lhotse")
    r = _export(lhotse_files, "cuts.jsonl.gz", "-o", name, "--filter", "{text} != 'more'")
    assert r.returncode == 0, r.stderr[-2000:]
    for cuts in (lhotse.load_manifest(lhotse_files / name), lhotse.CutSet.from_file(lhotse_files / name)):
        assert sorted(c.id for c in cuts) == sorted(c.id for c in lhotse.CutSet.from_file(lhotse_files /
                                                                                          "cuts.jsonl.gz"))
        assert sorted(s.id for c in cuts for s in c.supervisions) == ["s0", "s1", "s2"]
    assert "use_lhotse" not in r.stderr  # the gzip note is about NeMo manifests


def test_a_pair_exported_under_a_jsonl_name_loads_in_lhotse(lhotse_files):
    lhotse = pytest.importorskip("lhotse")
    r = _export(lhotse_files, "recordings.jsonl.gz", "supervisions.jsonl.gz", "-o", "sup.jsonl.gz",
                "--filter", "{text} = 'word 1'")
    assert r.returncode == 0, r.stderr[-2000:]
    kept = lhotse.load_manifest(lhotse_files / "sup.jsonl.gz")
    assert isinstance(kept, lhotse.SupervisionSet) and [s.id for s in kept] == ["s1"]


def test_write_export_refuses_the_name_too_for_callers_besides_the_cli(lhotse_files):
    from sde.dataset import build_dataset
    from sde.export import ExportError, plan_export, write_export

    dataset = build_dataset(str(lhotse_files / "cuts.jsonl.gz"))
    with pytest.raises(ExportError, match=r"name it .*kept\.jsonl or .*kept\.jsonl\.gz"):
        write_export(dataset, plan_export(dataset), lhotse_files / "kept.json")
    assert not (lhotse_files / "kept.json").exists()
