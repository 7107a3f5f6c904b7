"""sde.index_files: a column's word index (words, pairs of common words, joins of words) and text
ranks written beside its file once built, and mapped from there at the next start instead of
built again."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import weakref
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde import compressed_columns as cc
from sde import index_files as ix
from sde import word_index as wi
from sde.cache import STALE_FILE_S, remove_orphan_values
from sde.query import TableQuery
from tests.test_audio_faults import ROOT, SdeServer
from tests.test_word_index import _budget, _said, _stored, _texts

SEARCHES = ['{text} contains "the"', '{text} has "cat"', '{text} contains "the other"', '{text} matches "e.o"',
            '{text} matches "th.s"', '{text} contains "other the"']


def _built(texts: list[str | None], parts: int) -> wi.WordIndex:
    chunks = [pa.array(texts[a:a + 50], pa.large_string()) for a in range(0, len(texts), 50)]
    index = wi.build_word_index(chunks, len(texts))
    if parts > 1:
        index = wi.with_pairs(index, chunks)
    if parts > 2:
        index = wi.with_joins(index, chunks)
    return index


def _same_postings(a: wi.Postings, b: wi.Postings) -> bool:
    return (np.array_equal(a.bases, b.bases) and len(a.rows) == len(b.rows) and len(a.bits) == len(b.bits)
            and all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a.rows, b.rows))
            and all(np.array_equal(x, y) and x.shape == y.shape for x, y in zip(a.bits, b.bits)))


def _same_joins(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a.rows == b.rows and len(a.segments) == len(b.segments) and all(
        s.base == t.base and s.rows == t.rows and np.array_equal(s.codes, t.codes) and np.array_equal(s.bits, t.bits)
        and all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(s.kept, t.kept))
        for s, t in zip(a.segments, b.segments))


@pytest.mark.parametrize("segment_bytes", [200, 10**9], ids=["several segments", "one segment"])
@pytest.mark.parametrize("parts", [1, 2, 3], ids=["words", "words and pairs", "words, pairs and joins"])
def test_an_index_reads_back_from_its_files_as_it_was_built(monkeypatch, tmp_path, segment_bytes, parts):
    monkeypatch.setattr(wi, "SEGMENT_BYTES", segment_bytes)
    monkeypatch.setattr(wi, "COMMON_SHARE", 0.05)
    texts = _texts(400, seed=3, lower=False)
    index = _built(texts, parts)
    column = tmp_path / "text.arrow"
    column.write_bytes(b"a column")
    for part in ix.PARTS[:parts]:
        assert ix.write_part(str(column), index, part)
    read = ix.read_index(str(column), len(texts))
    assert read.rows == index.rows and np.array_equal(read.nulls, index.nulls)
    assert read.words.equals(index.words) and read.vocabulary.equals(index.vocabulary) and read.pairs.equals(index.pairs)
    assert _same_postings(read.postings, index.postings) and _same_postings(read.pair_postings, index.pair_postings)
    assert _same_joins(read.joins, index.joins)
    assert not read.postings.rows[0].flags.writeable  # the file's pages, not a copy
    for needle in ("the", "e", "日本", "zzz"):
        test = wi.WordTest(f"contains({wi.WORD}, ?)", [needle])
        assert read.matching_rows(test).equals(index.matching_rows(test))


@pytest.mark.parametrize("spoil", ["truncated", "another format", "not an index", "another column's rows",
                                   "its column written again"])
def test_a_file_not_as_written_is_ignored_and_the_index_built_again(monkeypatch, tmp_path, spoil):
    _budget(monkeypatch, 10**9, files=True)
    texts = _texts(300, seed=4, lower=True)
    stored = _stored(tmp_path, texts)
    column = stored["text"].array.compressed
    index = wi.build_word_index(column.chunks(), column.rows)
    path = Path(ix.part_path(column.path, "words"))
    assert ix.write_part(column.path, index, "words")
    data = path.read_bytes()
    path.chmod(0o644)
    if spoil == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif spoil == "another format":
        path.write_bytes(data.replace(b'"format": 1', b'"format": 9', 1))
    elif spoil == "not an index":
        path.write_bytes(b"{}" * 100)
    elif spoil == "its column written again":  # a build folder's file written again at the same path
        st = os.stat(column.path)
        os.utime(column.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    else:
        assert ix.read_index(column.path, column.rows + 1) is None
        path.write_bytes(data.replace(f'"rows": {column.rows}'.encode(), f'"rows": {column.rows + 1}'.encode(), 1))
    assert ix.read_index(column.path, column.rows) is None
    built = cc.index_words(column)
    assert built is not None and ix.read_index(column.path, column.rows) is not None  # written again, whole
    assert TableQuery(stored).count('{text} contains "the"') == sum(t is not None and "the" in t for t in texts)


def test_a_part_that_cannot_be_written_stays_in_memory_counted_against_the_budget(monkeypatch, tmp_path):
    _budget(monkeypatch, 10**9, files=True)
    stored = _stored(tmp_path, _texts(300, seed=5, lower=True))
    column = stored["text"].array.compressed
    os.mkdir(ix.part_path(column.path, "words"))  # in the way of the file's rename
    index = cc.index_words(column)
    assert index is not None and index.postings.rows[0].flags.writeable
    assert cc._WORDS.size == index.nbytes
    assert not [p for p in os.listdir(tmp_path) if p.startswith(ix.TEMP_PREFIX)]  # no temporary file left


def test_mapped_indexes_leave_the_budget_to_the_next_build(monkeypatch, tmp_path):
    """The budget has room for one part of one column's index at a time: kept in memory, the second
    column is not indexed; written and mapped, both are, with their pairs and joins."""
    texts = _texts(3000, seed=6, lower=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _stored(tmp_path / "a", texts), _stored(tmp_path / "b", texts[::-1])
    chunks = list(first["text"].array.compressed.chunks())
    words = wi.build_word_index(chunks, len(texts))
    paired = wi.with_pairs(words, chunks)
    joined = wi.with_joins(paired, chunks)
    size = max(words.nbytes, paired.nbytes - words.nbytes, joined.nbytes - paired.nbytes)  # the biggest part
    for files in (False, True):
        _budget(monkeypatch, int(size * 1.3), files=files)
        columns = [s["text"].array.compressed for s in (first, second)]
        done = [cc.index_words(c) is not None for c in columns]
        done += [(cc.index_pairs(c) or words).pairs.num_rows > 0 for c in columns]
        done += [(cc.index_joins(c) or words).joins is not None for c in columns]
        assert all(done) is files and done[0]  # in memory, the budget holds the first column's words, not all
    assert cc._WORDS.size == 0
    for column in columns:
        assert sorted(p.name for p in Path(column.path).parent.glob("*.sdeidx")) == [
            f"text.arrow.{part}.sdeidx" for part in ("joins", "pairs", "words")]


def test_each_part_built_is_let_go_of_then_the_allocators_hand_its_memory_back(monkeypatch, tmp_path):
    """glibc keeps what a build's threads freed, and the next build did not reuse it all (10M lines:
    the joins of three columns took the process from 0.87 to 1.82 GB): once a part is written and
    mapped, the index built in memory is let go of, then the allocators hand back what they hold."""
    _budget(monkeypatch, 10**9, files=True)
    stored = _stored(tmp_path, _texts(300, seed=9, lower=True))
    column = stored["text"].array.compressed
    built: list[weakref.ref] = []
    for name in ("build_word_index", "with_pairs", "with_joins"):
        def recorded(*args, _build=getattr(cc, name), **kwargs):
            index = _build(*args, **kwargs)
            built.append(weakref.ref(index))
            return index
        monkeypatch.setattr(cc, name, recorded)
    let_go = []  # at each hand-back: whether every index built so far was let go of
    monkeypatch.setattr(cc, "release_freed_memory", lambda: let_go.append(all(ref() is None for ref in built)))
    for grow in (cc.index_words, cc.index_pairs, cc.index_joins):
        assert grow(column) is column.mapped_index
    assert len(built) == 3 and let_go == [True, True, True]


def test_a_part_kept_in_memory_is_not_handed_back(monkeypatch, tmp_path):
    _budget(monkeypatch, 10**9, files=True)
    stored = _stored(tmp_path, _texts(300, seed=9, lower=True))
    column = stored["text"].array.compressed
    os.mkdir(ix.part_path(column.path, "words"))  # in the way of the file's rename: kept in memory
    released = []
    monkeypatch.setattr(cc, "release_freed_memory", lambda: released.append(True))
    assert cc.index_words(column) is cc.word_index(column) is not None
    assert column.mapped_index is None and released == []


def test_a_mapped_index_is_never_pushed_out_by_what_the_budget_keeps(monkeypatch, tmp_path):
    _budget(monkeypatch, 10**6, files=True)
    stored = _stored(tmp_path, _texts(300, seed=8, lower=True))
    column = stored["text"].array.compressed
    mapped = cc.index_words(column)
    cc._keep_beside_indexes("another column's index kept in memory", object(), 6 * 10**5)
    cc._keep_beside_indexes("and another", object(), 6 * 10**5)  # over the budget: pushes the oldest out
    assert cc.word_index(column) is mapped
    paired = cc.index_pairs(column)  # grown, written, mapped in its place
    assert len(paired.pairs) and cc.word_index(column) is paired is column.mapped_index
    assert "another column's index kept in memory" not in cc._WORDS._items  # what the budget keeps does go


def test_a_new_start_reads_the_index_and_ranks_without_building_them(monkeypatch, tmp_path):
    _budget(monkeypatch, 10**9, files=True)
    texts = _texts(2000, seed=7, lower=True)
    stored = _stored(tmp_path, texts)
    query = TableQuery(stored)
    query.warm(text=["text"])
    assert query.warm_phrases(["text"]) == ["text"] and query.warm_joins(["text"]) == ["text"]
    assert query.warm_sorts(["text"]) == ["text"]
    want = {filt: query.page(filt, "-text", 0, 2000) for filt in SEARCHES}
    files = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.sdeidx")}
    assert len(files) == 4  # words, pairs, joins, ranks

    ranks = stored["text"].array.compressed.ranks
    _budget(monkeypatch, 10**9, files=True)  # a new process: nothing kept in memory
    restarted = cc.open_column(stored["text"].array.compressed.path)
    for build in ("build_word_index", "with_pairs", "with_joins"):
        monkeypatch.setattr(cc, build, None)  # building again would fail here
    index = cc.index_words(restarted)
    assert len(index.pairs) and index.joins is not None and not index.postings.rows[0].flags.writeable
    frame = stored.copy()
    frame["text"] = pd.Series(cc.CompressedStringArray.over(restarted), copy=False)
    query = TableQuery(frame)
    assert query.warm(text=["text"]) == ["text"] and query.warm_sorts(["text"]) == ["text"]
    assert restarted.ranks.equals(ranks) and cc._WORDS.size == 0
    for filt, (total, rows) in want.items():
        got_total, got_rows = query.page(filt, "-text", 0, 2000)
        assert got_total == total and list(got_rows["n"]) == list(rows["n"]), filt
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.sdeidx")} == files  # none written again


def test_map_indexes_maps_what_a_previous_start_wrote_and_builds_nothing(monkeypatch, tmp_path):
    _budget(monkeypatch, 10**9, files=True)
    stored = _stored(tmp_path, _texts(600, seed=5, lower=True))
    first = TableQuery(stored)
    assert first.map_indexes(["text"]) is False  # nothing written yet, and nothing built
    assert not list(tmp_path.glob("*.sdeidx")) and cc.word_index(stored["text"].array.compressed) is None
    assert first.warm_search(["text"]) == ["text"]  # built, and written beside the column
    want = {filt: first.page(filt, "-n", 0, 600) for filt in SEARCHES}

    _budget(monkeypatch, 10**9, files=True)  # a new process: nothing kept in memory
    frame = stored.copy()
    frame["text"] = pd.Series(cc.CompressedStringArray.over(cc.open_column(stored["text"].array.compressed.path)),
                              copy=False)
    monkeypatch.setattr(cc, "build_word_index", None)  # building again would fail here
    again = TableQuery(frame)
    assert again.map_indexes(["text", "n", "no such column"]) is True
    for filt, (total, rows) in want.items():
        got_total, got_rows = again.page(filt, "-n", 0, 600)
        assert got_total == total and list(got_rows["n"]) == list(rows["n"]), filt


def test_map_indexes_is_false_where_no_transcript_is_stored_compressed():
    plain = TableQuery(pd.DataFrame({"text": ["the cat", "a dog"], "n": [1, 2]}))
    assert plain.map_indexes(["text"]) is False and plain.map_indexes([]) is False


@pytest.mark.parametrize("written", [True, False], ids=["indexes written by a previous start: searches first",
                                                        "indexes to build: from the columns read whole first"])
def test_the_warm_up_reads_columns_whole_after_searches_and_pages_are_ready_when_its_indexes_are_mapped(
        monkeypatch, tmp_path, capsys, written):
    import sys

    import sde.query
    from sde.cli import _warm_queries

    _budget(monkeypatch, 10**9, files=True)
    stored = _stored(tmp_path, _texts(600, seed=5, lower=True))
    if written:
        TableQuery(stored).warm_search(["text"])
        _budget(monkeypatch, 10**9, files=True)  # a new process: nothing kept in memory
        stored["text"] = pd.Series(cc.CompressedStringArray.over(cc.open_column(stored["text"].array.compressed.path)),
                                   copy=False)
    read_whole = sde.query.preload

    def preload(frame):  # says when the warm-up reads the columns whole, then reads them
        print("(columns read whole)", file=sys.stderr)
        return read_whole(frame)

    monkeypatch.setattr(sde.query, "preload", preload)
    capsys.readouterr()
    _warm_queries(TableQuery(stored), ["text"], [], lambda: ["Statistics"])
    said = [line.split(" (")[0] for line in capsys.readouterr().err.splitlines()]
    ready = ["searches ready", "phrases ready", "sorts ready", "regexes across words ready"]
    if written:  # the pages a browser opens first come before the reads too
        assert said == [*ready, "pages ready", "(columns read whole)", "transcripts in memory"], said
    else:
        assert said == ["(columns read whole)", *ready, "pages ready", "transcripts in memory"], said


def test_the_files_of_a_column_no_longer_stored_are_removed(tmp_path):
    sub = tmp_path / "ab" / "cd"
    sub.mkdir(parents=True)
    (sub / "kept.val").write_bytes(b"x")
    for name in ("kept.val.words.sdeidx", "gone.val.words.sdeidx", "gone.val.ranks.sdeidx"):
        (sub / name).write_bytes(b"x")
    old, fresh = sub / f"{ix.TEMP_PREFIX}old{ix.SUFFIX}", sub / f"{ix.TEMP_PREFIX}new{ix.SUFFIX}"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - STALE_FILE_S - 60,) * 2)
    with sqlite3.connect(tmp_path / "cache.db") as con:  # the store's index: it knows kept.val
        con.execute("CREATE TABLE Cache (filename TEXT)")
        con.execute("INSERT INTO Cache VALUES ('ab/cd/kept.val')")
    remove_orphan_values(tmp_path)
    assert sorted(p.name for p in sub.iterdir()) == sorted(["kept.val", "kept.val.words.sdeidx", fresh.name])


@pytest.mark.parametrize("written_by", ["the first server start", "sde index --search-indexes"])
def test_a_server_started_again_maps_its_indexes_and_answers_the_same(tmp_path, written_by):
    texts = [t or "" for t in _texts(800, seed=9, lower=True)]
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 5, "text": t,
                                            "pred_text": " ".join(reversed(t.split(" ")))}) + "\n"
                                for i, t in enumerate(texts)))
    cache_dir = tmp_path / "cache"
    flag = ["--search-indexes"] if written_by.startswith("sde index") else []
    built = subprocess.run([sys.executable, "-m", "sde.cli", "index", str(manifest), "--cache-dir", str(cache_dir),
                            *flag], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    every_part = {"words.sdeidx", "pairs.sdeidx", "joins.sdeidx", "ranks.sdeidx"}
    first = {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*.sdeidx")}
    if flag:
        assert "search indexes written in" in built.stderr and "text (words, pairs, joins, ranks)" in built.stderr
        assert {p.name.split(".val.")[1] for p in first} == every_part
    else:
        assert not first and "search indexes" not in built.stderr
    answers = []
    for _ in range(2):
        with SdeServer(str(manifest), "--cache-dir", str(cache_dir), no_cache=False) as server:
            _said(server, "transcripts in memory")  # the warm-up's last line: every index built (or read)
            answers.append([server.json("/api/utterances?" + urlencode({"filter": filt, "sort": "-text",
                                                                       "page_size": 1000}), 200)
                            for filt in SEARCHES])
            files = {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*.sdeidx")}
            if not first:  # written by this start
                first = files
                assert {p.name.split(".val.")[1] for p in files} == every_part
            assert files == first  # read, not written again
    assert answers[0] == answers[1]
    assert [a["total"] for a in answers[0]] == [sum(map(_passes(filt), texts)) for filt in SEARCHES]


def _passes(filt: str):
    """What a filter of :data:`SEARCHES` keeps of a line, in Python."""
    op, value = filt.split(" ", 2)[1:]
    value = json.loads(value)
    return {"contains": lambda t: value in t, "has": lambda t: value in t.split(" "),
            "matches": lambda t: re.search(value, t) is not None}[op]


def test_sde_index_says_why_it_wrote_no_search_index(tmp_path):
    # 20 recordings repeated (as a small test set read many times): every text column is stored as
    # labels, so there is nothing to index. The note named a read-only folder, which sde index refuses.
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i % 20}.wav", "duration": 1.0,
                                            "text": f"utterance number {i % 20}"}) + "\n" for i in range(400)))
    built = subprocess.run([sys.executable, "-m", "sde.cli", "index", str(manifest), "--cache-dir",
                            str(tmp_path / "cache"), "--search-indexes"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr
    assert "no search index written: the transcripts repeat a few distinct texts" in built.stderr
    assert "read-only" not in built.stderr
