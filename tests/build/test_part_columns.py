"""A manifest built part by part has the one-piece build's columns, in its order, with its values:
a field that first appears without a value, a column whose values change kind from part to part,
the cap on extra fields; parts built in any order, resumed, or as Ray tasks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sde.build.load import load_dataset
from sde.build.part_files import build_and_write
from sde.build.parts import split_parts
from sde.build.stream import build_in_parts
from sde.dataset import DatasetOptions, build_dataset
from sde.manifest import pieces
from tests.build.build_kit import PART, assert_same_dataset

LINES = 400
LATE = 300  # the first line of the last parts (~40 lines a part)

Extra = Callable[[int], dict]


def _write(folder: Path, extra: Extra, lines: int = LINES, name: str = "m.json") -> Path:
    path = folder / name
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 3, "text": "the cat sat"} | extra(i)
            for i in range(lines)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _in_parts(manifest: Path | list[str], cache: Path, **kwargs):
    messages: list[str] = []
    built = load_dataset(manifest if isinstance(manifest, list) else str(manifest), DatasetOptions(),
                         cache_dir=cache, part_bytes=PART, threads=2, status=messages.append, **kwargs)
    assert any(m.startswith("building ") and " parts " in m for m in messages), messages
    return built


def _assert_one_piece(built, manifest: Path | list[str]) -> None:
    one_piece = build_dataset(manifest if isinstance(manifest, list) else str(manifest))
    assert list(built.utterances.columns) == list(one_piece.utterances.columns)
    assert_same_dataset(built, one_piece)


FIELD_ORDER: dict[str, Extra] = {
    # the one-piece read places a field where it first appears, with a value or not
    "a field null in the first parts comes where it first appears":
        lambda i: {"early": None if i < LATE else "x", "later": f"v{i}"},
    "a field null in the first parts and a number later":
        lambda i: {"early": None if i < LATE else i, "later": 1},
    "a field null in the first parts and nested values later":
        lambda i: {"early": None if i < LATE else {"a": [i]}, "later": 1},
    "a field null in the middle parts only":
        lambda i: {"early": "x" if i < 20 or i >= LATE else None, "later": 1},
    "a field null in the first parts beside a column of mixed kinds":  # the one-piece read goes careful
        lambda i: {"early": None if i < LATE else "x", "later": 1, "mixed": i if i < 200 else f"t{i}"},
    "a field null in the first parts named like a column sde makes":
        lambda i: {"id": None if i < LATE else "x", "later": 1},
    "a field null in the first parts named like a score":
        lambda i: {"wer": None if i < LATE else 0.5, "later": 1, "pred_text": "the cat"},
    "a hypothesis null in the first parts":
        lambda i: {"pred_text_b": None if i < LATE else "the", "later": 1, "pred_text": "the cat"},
    "a field absent from the first parts comes after those they have":
        lambda i: ({"early": "x"} if i >= LATE else {}) | {"later": 1},
    "a field null on every line has no column":
        lambda i: {"nothing": None, "later": 1},
}


@pytest.mark.parametrize("extra", FIELD_ORDER.values(), ids=FIELD_ORDER.keys())
def test_fields_keep_the_one_piece_order(tmp_path, extra):
    manifest = _write(tmp_path, extra)
    _assert_one_piece(_in_parts(manifest, tmp_path / "cache"), manifest)


MIXED_KINDS: dict[str, Extra] = {
    # the one-piece read writes such a column as text: true/false, numbers as Arrow writes them
    "booleans then text": lambda i: {"flag": i % 2 == 0 if i < LATE else f"t{i}"},
    "booleans then numbers": lambda i: {"flag": i % 2 == 0 if i < LATE else i},
    "booleans with gaps then text": lambda i: {"flag": None if i % 3 == 0 else i % 2 == 0} if i < LATE
        else {"flag": f"t{i}"},
    "numbers then text": lambda i: {"flag": i if i < LATE else f"t{i}"},
    "whole numbers with gaps then text": lambda i: {"flag": None if i % 3 == 0 else i} if i < LATE
        else {"flag": f"t{i}"},
    "fractions then text": lambda i: {"flag": [0.5, 1e20, 1e-7, 2.0][i % 4] if i < LATE else f"t{i}"},
    "text then fractions": lambda i: {"flag": f"t{i}" if i < LATE else [0.5, 1e20, 1e-7, 2.0][i % 4]},
    "numbers then nested values": lambda i: {"flag": i if i < LATE else {"a": i}},
}


@pytest.mark.parametrize("extra", MIXED_KINDS.values(), ids=MIXED_KINDS.keys())
def test_a_column_whose_values_change_kind_has_the_one_piece_text(tmp_path, extra):
    manifest = _write(tmp_path, extra)
    built = _in_parts(manifest, tmp_path / "cache")
    _assert_one_piece(built, manifest)
    assert not built.utterances["flag"].astype(str).isin(["True", "False"]).any()


NULL_EARLY = FIELD_ORDER["a field null in the first parts comes where it first appears"]


def _one_piece_columns(manifest: Path) -> list[str]:
    return list(build_dataset(str(manifest)).utterances.columns)


def test_parts_built_in_any_order_join_in_the_one_piece_order(tmp_path):
    manifest = _write(tmp_path, NULL_EARLY)
    folder = tmp_path / "build"
    folder.mkdir()
    parts = split_parts(str(manifest), PART)
    assert len(parts) > 5
    for index in reversed(range(len(parts))):  # the parts with values first
        build_and_write(parts[index], DatasetOptions(), folder, index)
    messages: list[str] = []
    joined = build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=2, say=messages.append)
    assert f"resuming an interrupted build: {len(parts)} of {len(parts)} parts are done" in messages
    assert joined.column_order["utterances"] == _one_piece_columns(manifest)


def test_a_resumed_build_joins_in_the_one_piece_order(tmp_path):
    manifest = _write(tmp_path, NULL_EARLY)
    folder = tmp_path / "build"
    build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=1)
    infos = sorted(folder.glob("part-*.info"))
    for lost in (infos[0], infos[-1]):  # as if killed while building the first part and the last
        lost.unlink()
    messages: list[str] = []
    joined = build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=2, say=messages.append)
    assert any(m.startswith("building 2 parts") for m in messages), messages
    assert joined.column_order["utterances"] == _one_piece_columns(manifest)


def test_a_part_info_without_the_fields_it_saw_is_built_again(tmp_path):
    import pickle

    from sde.build.part_files import info_file

    manifest = _write(tmp_path, NULL_EARLY)
    folder = tmp_path / "build"
    build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=1)
    old = pickle.loads(info_file(folder, 0).read_bytes())
    del old.__dict__["fields"]  # as a version before that field wrote it (its default is a class attribute)
    info_file(folder, 0).write_bytes(pickle.dumps(old))
    messages: list[str] = []
    joined = build_in_parts(str(manifest), DatasetOptions(), folder, part_bytes=PART, threads=1, say=messages.append)
    assert any(m.startswith("building 1 parts") for m in messages), messages
    assert joined.column_order["utterances"] == _one_piece_columns(manifest)


def test_a_ray_build_gives_the_one_piece_columns(tmp_path, ray_instance):
    from sde.build.ray_parts import RayEngine

    manifest = _write(tmp_path, lambda i: NULL_EARLY(i) | MIXED_KINDS["whole numbers with gaps then text"](i))
    built = load_dataset(str(manifest), cache_dir=tmp_path / "cache", part_bytes=PART, engine=RayEngine())
    _assert_one_piece(built, manifest)


# ------------------------------------------------------------------------------------------------
# The cap on extra fields (sde.manifest.pieces): small here, so that a few fields reach it

CAP = 5


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(pieces, "MAX_EXTRA_FIELDS", CAP)  # the local engine's workers are forked
    monkeypatch.setattr(pieces, "MIN_EXTRA_FIELDS", CAP)


def _fields(prefix: str, first: int, last: int, step: int = 40) -> Extra:
    """Fields ``prefix0``... each on the lines from ``first + k * step`` to ``last``."""
    return lambda i: {f"{prefix}{k}": i for k in range((last - first) // step + 1) if first + k * step <= i < last}


CAPPED: dict[str, Callable[[Path], Path | list[str]]] = {
    "a manifest whose fields change over its lines":
        lambda folder: _write(folder, lambda i: _fields("f", 0, 200)(i) | _fields("g", 200, LINES)(i)),
    "a manifest whose first fields have no value":
        lambda folder: _write(folder, lambda i: {"n0": None, "n1": None} | _fields("f", 0, LINES)(i)),
    "shards with fields of their own":
        lambda folder: [str(_write(folder, _fields(f"s{k}_", 0, LINES), name=f"s{k}.json")) for k in range(3)],
    "shards with fields of their own, one cut in parts, the others sharing one":
        lambda folder: [str(_write(folder, _fields(f"s{k}_", 0, lines, step), lines=lines, name=f"s{k}.json"))
                        for k, (lines, step) in enumerate([(LINES, 40), (8, 1), (8, 1), (8, 1)])],
}


@pytest.mark.parametrize("make", CAPPED.values(), ids=CAPPED.keys())
def test_the_cap_on_extra_fields_keeps_the_one_piece_fields(tmp_path, small_cap, make):
    manifest = make(tmp_path)
    built = _in_parts(manifest, tmp_path / "cache")
    _assert_one_piece(built, manifest)  # the same fields, and the one warning with its count and line
    capped = [w for w in built.warnings if "more distinct fields ignored" in w.reason]
    assert len(capped) == 1 and f"at most {CAP} extra fields" in capped[0].reason, built.warnings
