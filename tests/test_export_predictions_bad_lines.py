"""`sde export --predictions P`: a bad line of P is no manifest line, so it is not counted among the
lines "in neither file" (every manifest line is written); it is said apart, with what it costs."""

from __future__ import annotations

import json

import pytest

from tests.test_export import line, run_cli


@pytest.mark.parametrize("manifest_bad, predictions_bad", [(0, 1), (1, 0), (1, 2)])
def test_bad_prediction_lines_are_counted_apart_from_the_manifests(tmp_path, manifest_bad, predictions_bad):
    rows = [line(f"a{i}.wav", 1.0, f"word {i}") for i in range(4)]
    (tmp_path / "m.json").write_bytes(b"\n".join(rows + [b"{not json"] * manifest_bad) + b"\n")
    preds = [json.dumps({"audio_filepath": f"a{i}.wav", "pred_text": f"word {i}"}).encode() for i in range(4)]
    (tmp_path / "p.json").write_bytes(b"\n".join(preds + [b"{not json either"] * predictions_bad) + b"\n")
    done = run_cli("export", "m.json", "--predictions", "p.json", "-o", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert len((tmp_path / "out.json").read_bytes().splitlines()) == 4
    assert ("(in neither file;" in said) == bool(manifest_bad)
    if manifest_bad:
        assert f"skipped   {manifest_bad:>10,} bad line " in said
    assert ("of the predictions file (their predictions not merged" in said) == bool(predictions_bad)
    if predictions_bad:
        assert f"skipped   {predictions_bad:>10,} bad line{'s' if predictions_bad > 1 else ''} of the predictions" in said
    counts = json.loads(next(tmp_path.glob("out*changelog*.json")).read_text())["counts"]
    assert counts["skipped_lines"] == manifest_bad and counts["skipped_prediction_lines"] == predictions_bad
