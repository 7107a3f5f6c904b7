"""A manifest file skipped whole (one of several: missing, unreadable, empty; a problem with line 0)
is no skipped line: `skipped_lines` counts bad lines only and `skipped_files` the files, alike in
`sde stats`, /api/summary, the Statistics page and an export's counts; and a set of shards none of
which could be read, built part by part, says so as the one-piece read does (not "every line is bad")."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from sde.build import stream
from sde.build.load import load_dataset
from sde.cli import cli
from sde.dataset import DatasetOptions, build_dataset
from sde.manifest import ManifestError
from sde.web.app import AppConfig, create_app
from tests.build.build_kit import PART
from tests.server_kit import limited_server

GOOD = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": f"word {i}"} for i in range(3)]
BAD = '{"audio_filepath": "x.wav", "text": "no duration"}'


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _sources(write_manifest, tmp_path: Path, bad_lines: int, missing_files: int) -> list[str]:
    good = write_manifest([GOOD[0], *[BAD] * bad_lines, *GOOD[1:]], name="good.json")
    return [str(good), *(str(tmp_path / f"missing_{k}.json") for k in range(missing_files))]


# name: (bad lines, missing manifest files)
SKIPPED = {
    "a missing manifest of two is a skipped file, not a skipped line": (0, 1),
    "bad lines are skipped lines, not files": (2, 0),
    "both, each counted apart": (1, 2),
}


@pytest.mark.parametrize("lines, files", SKIPPED.values(), ids=SKIPPED.keys())
def test_sde_stats_counts_skipped_files_and_lines_apart(write_manifest, tmp_path, lines, files):
    sources = _sources(write_manifest, tmp_path, lines, files)
    r = run("stats", *sources, "--no-cache")
    assert r.exit_code == 0, r.output
    assert f"skipped files    {files}\n" in r.stdout and f"skipped lines    {lines}\n" in r.stdout
    r = run("stats", *sources, "--no-cache", "--json")
    summary = json.loads(r.stdout)
    assert (summary["skipped_files"], summary["skipped_lines"]) == (files, lines)


@pytest.mark.parametrize("lines, files", SKIPPED.values(), ids=SKIPPED.keys())
def test_api_summary_counts_skipped_files_and_lines_apart(write_manifest, tmp_path, monkeypatch, lines, files):
    dataset = build_dataset(_sources(write_manifest, tmp_path, lines, files))
    app = create_app(dataset, AppConfig(title=dataset.name, audio_routes=False))
    with limited_server(app, monkeypatch) as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=60) as answer:
            summary = json.load(answer)
    assert (summary["skipped_files"], summary["skipped_lines"]) == (files, lines)


def _components(component):
    if isinstance(component, (list, tuple)):
        for c in component:
            yield from _components(c)
    elif hasattr(component, "to_plotly_json"):
        yield component
        yield from _components(getattr(component, "children", None))


@pytest.mark.parametrize("lines, files", SKIPPED.values(), ids=SKIPPED.keys())
def test_the_statistics_card_counts_bad_lines_and_says_files_only_when_some_were_skipped(write_manifest, tmp_path,
                                                                                        lines, files):
    from sde.web.pages import statistics

    layout = statistics.layout(build_dataset(_sources(write_manifest, tmp_path, lines, files)), "/", {})
    by_id = {c.id: c for c in _components(layout) if isinstance(getattr(c, "id", None), str)}
    assert by_id["stat-skipped_lines"].children == str(lines)
    said = by_id.get("stat-skipped_files")
    assert (said.children if said is not None else None) == \
        (f"{files} manifest {'file' if files == 1 else 'files'} skipped" if files else None)


FILES = "manifest {} (not read at all; `sde stats` lists them)"
LINES = "bad {} (in neither file; `sde stats` lists them)"
# name: (bad lines, missing files, the export's lines about them, spaces squeezed)
EXPORTED = {
    "a missing manifest is a skipped file": (0, 1, ["skipped 1 " + FILES.format("file")]),
    "bad lines are skipped lines": (2, 0, ["skipped 2 " + LINES.format("lines")]),
    "both, each on its line": (1, 2, ["skipped 2 " + FILES.format("files"), "skipped 1 " + LINES.format("line")]),
}


@pytest.mark.parametrize("lines, files, said", EXPORTED.values(), ids=EXPORTED.keys())
def test_an_export_counts_skipped_files_and_lines_apart(write_manifest, tmp_path, lines, files, said):
    out = tmp_path / "kept.json"
    r = run("export", *_sources(write_manifest, tmp_path, lines, files), "-o", str(out), "--no-cache")
    assert r.exit_code == 0, r.output
    assert [" ".join(line.split()) for line in r.stderr.splitlines() if line.startswith("skipped")] == said
    counts = json.loads(out.with_name("kept.json.changelog.json").read_text())["counts"]
    assert (counts["skipped_files"], counts["skipped_lines"], counts["kept"]) == (files, lines, len(GOOD))


def _shards(folder: Path, count: int) -> str:
    """``count`` NeMo shards over one part in all, each a few lines; their NeMo pattern."""
    for k in range(count):
        rows = [{"audio_filepath": f"s{k}_{i}.wav", "duration": 1.0, "text": "a few words " * 8} for i in range(20)]
        (folder / f"m_{k}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(folder / f"m__OP_0..{count - 1}_CL_.json")


def test_shards_all_gone_by_the_part_by_part_read_say_none_could_be_read(tmp_path, monkeypatch):
    folder = tmp_path / "shards"
    folder.mkdir()
    pattern = _shards(folder, 3)
    planned = []
    split = stream.split_parts

    def split_then_lose_the_shards(path: object, part_bytes: int) -> list:
        parts = split(path, part_bytes)
        planned.append(len(parts))
        # every shard gone between the plan and the parts' reads: the one way a set with none left
        # gets that far (a pattern that matches no file stops before)
        for shard in folder.glob("m_*.json"):
            shard.unlink()
        return parts

    monkeypatch.setattr(stream, "split_parts", split_then_lose_the_shards)
    with pytest.raises(ManifestError) as e:
        load_dataset(pattern, DatasetOptions(), cache_dir=tmp_path / "cache", part_bytes=PART)
    assert planned and planned[0] > 1, "built part by part"
    message = str(e.value)
    assert message.startswith("none of the 3 manifests could be read:\n  m_0.json: file not found"), message
    assert "check the paths (relative ones are read from" in message
    assert "every line is bad" not in message and "read without it" not in message


def test_unreadable_shards_built_part_by_part_say_what_the_one_piece_read_says(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    pattern = _shards(folder, 3)
    for shard in sorted(folder.glob("m_*.json")):  # a NeMo first line (so parts are planned), then binary
        shard.write_bytes(shard.read_bytes().split(b"\n", 1)[0] + b"\n" + b"\x00\x01\x02" * 700 + b"\n")
    with pytest.raises(ManifestError) as in_parts:
        load_dataset(pattern, DatasetOptions(), cache_dir=tmp_path / "cache", part_bytes=PART)
    with pytest.raises(ManifestError) as one_piece:
        build_dataset(pattern)
    assert str(in_parts.value).startswith("none of the 3 manifests could be read:"), str(in_parts.value)
    assert str(in_parts.value) == str(one_piece.value)
