"""The dataset cache's key changes whenever a source's content can have changed."""

from __future__ import annotations

import os

from sde.sources import expand_sources, source_stamps


def test_rewriting_a_file_inside_a_folder_source_changes_its_stamp(tmp_path):
    shar = tmp_path / "shar"
    shar.mkdir()
    (shar / "cuts.000000.jsonl.gz").write_bytes(b"one")
    (shar / "recording.000000.tar").write_bytes(b"audio")
    before = source_stamps(expand_sources([str(shar)]))
    # same size, a later time: a shard rewritten in place (the folder's own stat does not change)
    os.utime(shar / "cuts.000000.jsonl.gz", ns=(1, 10**18))
    (shar / "cuts.000000.jsonl.gz").write_bytes(b"two")
    assert source_stamps(expand_sources([str(shar)])) != before


def test_a_file_source_stamp_is_its_size_and_time(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{}\n")
    [stamp] = source_stamps(expand_sources([str(path)]))
    assert stamp["size"] == 3 and "files" not in stamp
