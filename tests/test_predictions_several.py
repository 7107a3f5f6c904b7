"""`--predictions` repeated: each NeMo output manifest is merged as a hypothesis of its own
(pred_text_<file stem>: pred_text alone is one file's, where the manifest has none), each scored and
comparable, each file's problems named by that file, on a one-piece read and part by part alike;
the cache key follows every file. Real CLI subprocesses, real builds, the real API routes; the
expected numbers are worked out by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sde.build.load import load_dataset
from sde.dataset import DatasetOptions, build_dataset
from tests.browser_kit import get_json
from tests.test_audio_faults import SdeServer
from tests.test_analysis_api import make_client

ROOT = str(Path(__file__).resolve().parent.parent)
TEXTS = ["the cat sat", "hello world", "good morning", "speech data explorer"]
# of the 10 words, conformer misses one (a substitution), parakeet four
CONFORMER = ["the cat sat", "hello world", "good morning", "speech data exploder"]
PARAKEET = ["the bat sat", "hello word", "good mourning", "speech dada explorer"]


def _sde(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SDE_PORT", "SDE_HOST", "SDE_AUTH")}
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**env, "PYTHONPATH": ROOT})


def _write(path: Path, preds: list[str] | None, own: list[str] | None = None) -> Path:
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": t,
             **({"pred_text": preds[i]} if preds else {}), **({"pred_text": own[i]} if own else {})}
            for i, t in enumerate(TEXTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _stats(cwd: Path, *args: str) -> dict:
    r = _sde("stats", *args, "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)["hypotheses"]


def models(folder: Path, first: str = "conformer.json", second: str = "parakeet.json") -> Path:
    """manifest.json (no predictions) and the two models' outputs, named ``first`` and ``second``."""
    _write(folder / "manifest.json", None)
    _write(folder / first, CONFORMER)
    _write(folder / second, PARAKEET)
    return folder


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    return models(tmp_path)


@pytest.mark.parametrize("command", [["stats", "--json"], ["index"]])
def test_every_command_takes_several_predictions_files(files, command):
    r = _sde(*command, "manifest.json", "--predictions", "conformer.json", "--predictions", "parakeet.json",
             "--cache-dir", "cache", cwd=files)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_export_filters_on_each_hypothesis(files):
    # conformer right and parakeet wrong: a0, a1, a2 (a3 conformer gets wrong)
    r = _sde("export", "manifest.json", "--predictions", "conformer.json", "--predictions", "parakeet.json",
             "--filter", "{wer_conformer} = 0 && {wer_parakeet} > 0", "-o", "kept.json", "--no-cache", cwd=files)
    assert r.returncode == 0, r.stderr[-2000:]
    kept = [json.loads(line)["audio_filepath"] for line in (files / "kept.json").read_text().splitlines()]
    assert kept == ["a0.wav", "a1.wav", "a2.wav"]


def test_each_file_is_scored_as_its_own_hypothesis(files):
    scored = _stats(files, "manifest.json", "--predictions", "conformer.json", "--predictions", "parakeet.json",
                    "--no-cache")
    assert list(scored) == ["pred_text_conformer", "pred_text_parakeet"]
    assert scored["pred_text_conformer"]["wer"] == pytest.approx(10.0, abs=0.01)
    assert scored["pred_text_conformer"]["substitutions"] == 1
    assert scored["pred_text_conformer"]["label"] == "conformer"
    assert scored["pred_text_parakeet"]["wer"] == pytest.approx(40.0, abs=0.01)
    assert scored["pred_text_parakeet"]["substitutions"] == 4
    assert scored["pred_text_parakeet"]["label"] == "parakeet"


def test_beside_the_manifests_own_pred_text_each_file_is_named_after_its_stem(files):
    _write(files / "manifest.json", None, own=TEXTS)  # the manifest's own pred_text: every word right
    scored = _stats(files, "manifest.json", "--predictions", "conformer.json", "--predictions", "parakeet.json",
                    "--no-cache")
    assert list(scored) == ["pred_text", "pred_text_conformer", "pred_text_parakeet"]
    assert [scored[f]["wer"] for f in scored] == pytest.approx([0.0, 10.0, 40.0], abs=0.01)


def test_two_files_of_one_name_are_refused_naming_both(files):
    (files / "other").mkdir()
    _write(files / "other" / "conformer.json", PARAKEET)
    r = _sde("stats", "manifest.json", "--predictions", "conformer.json", "--predictions", "other/conformer.json",
             "--no-cache", cwd=files)
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr[-2000:]
    assert "conformer.json and other/conformer.json have one name" in errors[0]
    assert "rename or copy one of them (e.g. to conformer_2.json)" in errors[0]
    assert "reading " not in r.stderr  # refused as the command line is read


def test_one_file_given_twice_is_refused(files):
    r = _sde("stats", "manifest.json", "--predictions", "conformer.json", "--predictions", "./conformer.json",
             "--no-cache", cwd=files)
    assert r.returncode == 2 and "./conformer.json is given twice; give each predictions file once" in r.stderr


def test_each_files_problems_name_that_file(files):
    lines = (files / "parakeet.json").read_text().splitlines()
    lines[1] = "{not json"  # a1's prediction lost: a1 is left out of parakeet's scores
    lines.append(json.dumps({"audio_filepath": "elsewhere.wav", "pred_text": "x"}))
    (files / "parakeet.json").write_text("\n".join(lines) + "\n")
    r = _sde("stats", "manifest.json", "--predictions", "conformer.json", "--predictions", "parakeet.json",
             "--json", "--no-cache", cwd=files)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "parakeet.json:2: invalid JSON" in r.stderr
    out = json.loads(r.stdout)
    assert out["warnings"] == [
        "manifest.json:2: 1 of 4 utterances have no prediction in parakeet.json (the first is here): left out of "
        "pred_text_parakeet's scores",
        "parakeet.json:5: 1 line of parakeet.json matches no line of the manifest (the first is here: "
        "'elsewhere.wav' at 0 s): predictions of another manifest, or audio paths written otherwise"]
    # parakeet without "hello word": 3 substitutions of 8 words; conformer untouched
    assert out["hypotheses"]["pred_text_parakeet"]["wer"] == pytest.approx(37.5, abs=0.01)
    assert out["hypotheses"]["pred_text_conformer"]["wer"] == pytest.approx(10.0, abs=0.01)


def test_the_cache_follows_every_predictions_file(files):
    cache = ["--cache-dir", str(files / "cache")]
    both = ["manifest.json", "--predictions", "conformer.json", "--predictions", "parakeet.json", *cache]
    assert _stats(files, *both)["pred_text_conformer"]["wer"] == pytest.approx(10.0, abs=0.01)
    # reordered: the same hypotheses, each named by its file (listed in natural order)
    swapped = _stats(files, "manifest.json", "--predictions", "parakeet.json", "--predictions", "conformer.json",
                     *cache)
    assert list(swapped) == ["pred_text_conformer", "pred_text_parakeet"]
    assert [swapped[f]["wer"] for f in swapped] == pytest.approx([10.0, 40.0], abs=0.01)
    # removed (one file alone is pred_text), and added back
    assert list(_stats(files, "manifest.json", "--predictions", "conformer.json", *cache)) == ["pred_text"]
    # the second file changed: its scores are made again (every word right now)
    _write(files / "parakeet.json", TEXTS)
    os.utime(files / "parakeet.json", ns=(1, 1))
    assert _stats(files, *both)["pred_text_parakeet"]["wer"] == pytest.approx(0.0, abs=0.01)


def _big(folder: Path) -> DatasetOptions:
    """200 utterances of 3 words. Model a drops "alpha" on every 10th (20 deletions of 600 words);
    model b says "gamma" for "beta" on every 4th (50 substitutions), has none for 4 lines (i % 50 == 7:
    588 words scored), one bad line and one prediction of no line."""
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"word{i} alpha beta"} for i in range(200)]
    (folder / "big.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = [{"audio_filepath": f"a{i}.wav", "pred_text": f"word{i} beta" if i % 10 == 0 else r["text"]}
         for i, r in enumerate(rows)]
    b = [json.dumps({"audio_filepath": f"a{i}.wav", "pred_text": f"word{i} alpha gamma" if i % 4 == 0 else r["text"]})
         for i, r in enumerate(rows) if i % 50 != 7]
    b.insert(5, "{not json")
    b.append(json.dumps({"audio_filepath": "zzz.wav", "pred_text": "x"}))
    (folder / "model_a.json").write_text("".join(json.dumps(x) + "\n" for x in a))
    (folder / "model_b.json").write_text("\n".join(b) + "\n")
    return DatasetOptions(predictions=(str(folder / "model_a.json"), str(folder / "model_b.json")))


def test_matched_part_by_part_as_a_one_piece_read(tmp_path):
    options = _big(tmp_path)
    messages: list[str] = []
    in_parts = load_dataset(str(tmp_path / "big.json"), options, use_cache=False, part_bytes=4096, threads=2,
                            status=messages.append)
    assert any(m.startswith("matching the predictions in") for m in messages), messages
    assert any(m.startswith("building ") and " parts " in m for m in messages), messages
    one_piece = build_dataset(str(tmp_path / "big.json"), options, workers=1)
    for dataset in (in_parts, one_piece):
        scored = dataset.summary()["hypotheses"]
        assert list(scored) == ["pred_text_model_a", "pred_text_model_b"]
        assert scored["pred_text_model_a"]["wer"] == pytest.approx(100 * 20 / 600, abs=1e-4)
        assert scored["pred_text_model_a"]["deletions"] == 20 and scored["pred_text_model_a"]["missing"] == 0
        assert scored["pred_text_model_b"]["wer"] == pytest.approx(100 * 50 / 588, abs=1e-4)
        assert scored["pred_text_model_b"]["substitutions"] == 50 and scored["pred_text_model_b"]["missing"] == 4
        assert [(p.path, p.line) for p in dataset.problems] == [(options.predictions[1], 6)]
    assert [str(w) for w in in_parts.warnings] == [str(w) for w in one_piece.warnings]


def test_the_server_compares_the_two_files(files):
    with SdeServer("serve", str(files / "manifest.json"), "--predictions", str(files / "conformer.json"),
                   "--predictions", str(files / "parakeet.json")) as server:
        r = server.json("/api/compare?a=conformer&b=parakeet&n_resamples=100", status=200)
    assert (r["a"]["field"], r["b"]["field"]) == ("pred_text_conformer", "pred_text_parakeet")
    assert r["diff"]["wer"] == pytest.approx(30.0, abs=1e-4)  # B − A: 40 % − 10 %


def test_compare_between_two_predictions_files(files):
    options = DatasetOptions(predictions=(str(files / "conformer.json"), str(files / "parakeet.json")))
    client = make_client(build_dataset(str(files / "manifest.json"), options, workers=1))
    r = get_json(client, "/api/compare?a=conformer&b=parakeet&n_resamples=200")
    assert r["a"]["field"] == "pred_text_conformer" and r["b"]["field"] == "pred_text_parakeet"
    assert r["a"]["wer"] == pytest.approx(10.0, abs=1e-4) and r["b"]["wer"] == pytest.approx(40.0, abs=1e-4)
    assert r["diff"]["wer"] == pytest.approx(30.0, abs=1e-4)  # B − A
    errors = get_json(client, "/api/errors?hyp=parakeet")
    assert sorted((s["ref"], s["hyp"]) for s in errors["substitutions"]) == [
        ("cat", "bat"), ("data", "dada"), ("morning", "mourning"), ("world", "word")]


def test_export_refuses_to_write_over_any_predictions_file(files):
    r = _sde("export", "manifest.json", "--predictions", "conformer.json", "--predictions", "parakeet.json",
             "-o", "parakeet.json", "--no-cache", cwd=files)
    assert r.returncode != 0 and "-o parakeet.json is the --predictions file sde reads" in r.stderr, r.stderr[-2000:]
    assert (files / "parakeet.json").read_text() == _write(files / "again.json", PARAKEET).read_text()


def test_the_commands_sde_prints_repeat_every_predictions_file(files):
    from sde.replay import data_args

    options = DatasetOptions(predictions=(str(files / "conformer.json"), str(files / "parakeet.json")))
    args = data_args(build_dataset(str(files / "manifest.json"), options, workers=1))
    assert args == ["--predictions", str(files / "conformer.json"), "--predictions", str(files / "parakeet.json")]
