"""The Rules page's downloads of a Lhotse CutSet (`/api/utterances.jsonl?drop=F`, and `removed=1`):
a cut's line holds several supervisions, each a row; the download must write each cut once with
only the supervisions the rules keep (or remove), as `sde export --rules` does, never the whole
cut (the dropped supervisions would come back) nor a cut once per supervision."""

from __future__ import annotations

import json
from pathlib import Path

import flask
import numpy as np
import pytest
import soundfile as sf

from sde.dataset import build_dataset
from sde.export import export_dataset
from sde.web.api import register_api

lhotse = pytest.importorskip("lhotse")
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment  # noqa: E402

SR = 16000
CUTS = [["hello one", "world one"], ["hello two"], ["world three", "again three", "hello three"]]
RULE = '{text} contains "world"'


@pytest.fixture
def cutset(tmp_path) -> Path:
    cuts = []
    for k, texts in enumerate(CUTS):
        path = tmp_path / f"r{k}.wav"
        sf.write(path, np.zeros(SR * len(texts), dtype=np.float32), SR)
        rec = Recording.from_file(path, recording_id=f"r{k}")
        sups = [SupervisionSegment(id=f"c{k}s{j}", recording_id=rec.id, start=float(j), duration=1.0, text=text,
                                   custom={"pred_text": text}) for j, text in enumerate(texts)]
        cuts.append(MonoCut(id=f"c{k}", start=0.0, duration=rec.duration, channel=0, recording=rec, supervisions=sups))
    target = tmp_path / "cuts.jsonl"
    CutSet.from_cuts(cuts).to_file(target)
    return target


def texts(body: bytes) -> list[tuple[str, list[str]]]:
    return [(c["id"], [s["text"] for s in c["supervisions"]]) for c in map(json.loads, body.splitlines())]


def test_the_kept_and_removed_downloads_write_each_cut_once_with_its_supervisions(cutset, tmp_path):
    dataset = build_dataset(cutset)
    server = flask.Flask("cuts")
    register_api(server, dataset)
    client = server.test_client()
    kept = client.get("/api/utterances.jsonl", query_string={"drop": RULE})
    removed = client.get("/api/utterances.jsonl", query_string={"drop": RULE, "removed": "1"})
    assert kept.status_code == removed.status_code == 200
    assert texts(kept.data) == [("c0", ["hello one"]), ("c1", ["hello two"]), ("c2", ["again three", "hello three"])]
    assert texts(removed.data) == [("c0", ["world one"]), ("c2", ["world three"])]
    # the same lines as the export the page's command runs
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"rules:\n  - name: world\n    filter: {json.dumps(RULE)}\n")
    export_dataset(dataset, tmp_path / "kept.jsonl", rules_path=rules, rejected=tmp_path / "dropped.jsonl")
    assert kept.data == (tmp_path / "kept.jsonl").read_bytes()
    assert removed.data == (tmp_path / "dropped.jsonl").read_bytes()
