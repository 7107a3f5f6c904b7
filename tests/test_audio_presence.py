"""sde.audio_presence: folders holding many of the files are listed once instead of a stat per
file; the answers must be exactly those of a stat per file, whatever the folder holds."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde import audio_presence as P
from sde.dataset import build_dataset

MANY = P.LIST_AT_LEAST + 4  # enough files in one folder for it to be listed


def stat_each(paths: list[str]) -> dict[str, bool | None]:
    """The reference: one stat per path (a custom `is_file` turns the folder listing off)."""
    return P.check_paths(paths, is_file=P._is_file).exists


def folder_of_files(folder: Path, present: int, missing: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"utt_{i:03d}.wav" for i in range(present + missing)]
    for p in paths[:present]:
        p.write_bytes(b"RIFF")
    return [str(p) for p in paths]


@pytest.fixture
def layouts(tmp_path: Path) -> dict[str, list[str]]:
    """Named sets of paths, each with a folder that is listed."""
    full = folder_of_files(tmp_path / "spk1", present=MANY, missing=3)
    odd = tmp_path / "odd"
    odd_paths = folder_of_files(odd, present=MANY, missing=2)
    (odd / "a-folder.wav").mkdir()
    (odd / "link.wav").symlink_to(odd / "utt_000.wav")
    (odd / "broken.wav").symlink_to(odd / "nowhere.wav")
    (odd / "Upper.wav").write_bytes(b"RIFF")
    odd_paths += [str(odd / n) for n in ("a-folder.wav", "link.wav", "broken.wav", "upper.wav", "Upper.wav")]
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a folder")
    return {
        "existing folder, some files missing": full,
        "folder not there at all": [str(tmp_path / "gone" / f"x{i}.wav") for i in range(MANY)],
        "a file where the folder should be": [str(a_file / f"x{i}.wav") for i in range(MANY)],
        "directories, links, broken links, another case": odd_paths,
        "spelt with // and /./ and a trailing /": [p.replace("/spk1/", "/spk1//") for p in full[:MANY // 2]]
        + [p.replace("/spk1/", "/./spk1/") for p in full[MANY // 2:]] + [str(tmp_path / "spk1") + "/"],
        "urls, empty and few files beside many": full + ["s3://bucket/a.wav", "", str(tmp_path / "lone.wav")],
    }


LAYOUTS = [
    "existing folder, some files missing",
    "folder not there at all",
    "a file where the folder should be",
    "directories, links, broken links, another case",
    "spelt with // and /./ and a trailing /",
    "urls, empty and few files beside many",
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_listing_folders_answers_as_a_stat_per_file_does(layouts, layout):
    paths = layouts[layout]
    got = P.check_paths(paths)
    assert got.exists == stat_each(paths)
    assert not got.timed_out


def test_what_a_listed_folder_answers(layouts):
    odd = layouts["directories, links, broken links, another case"]
    got = P.check_paths(odd).exists
    names = {Path(p).name: got[p] for p in odd}
    assert (names["utt_000.wav"], names[f"utt_{MANY + 1:03d}.wav"]) == (True, False)
    assert (names["a-folder.wav"], names["link.wav"], names["broken.wav"]) == (False, True, False)
    assert (names["Upper.wav"], names["upper.wav"]) == (True, False)  # a case-sensitive file system
    assert P.check_paths(["s3://bucket/a.wav"] + odd).exists["s3://bucket/a.wav"] is None


def test_relative_paths_are_listed_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i in range(MANY):
        Path(f"r{i}.wav").write_bytes(b"RIFF")
    paths = [f"r{i}.wav" for i in range(MANY)] + ["missing.wav"]
    assert P.check_paths(paths).exists == {**{p: True for p in paths[:-1]}, "missing.wav": False}


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any folder")
def test_a_folder_that_cannot_be_listed_is_checked_file_by_file(tmp_path):
    paths = folder_of_files(tmp_path / "locked", present=MANY, missing=1)
    (tmp_path / "locked").chmod(0o311)  # files reachable, folder not listable
    try:
        assert P.check_paths(paths).exists == {**{p: True for p in paths[:-1]}, paths[-1]: False}
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_audio_exists_column_from_listed_folders(tmp_path, write_manifest):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(MANY):
        sf.write(audio / f"u{i}.wav", np.zeros(160, dtype="float32"), 16000)
    names = [f"audio/u{i}.wav" for i in range(MANY)] + ["audio/gone.wav", "elsewhere/x.wav", "audio/u0.wav"]
    manifest = write_manifest([{"audio_filepath": n, "duration": 0.01, "text": "a"} for n in names])
    notes: list[str] = []
    checked = P.with_audio_presence(build_dataset(manifest), status=notes.append)
    assert checked.utterances["audio_exists"].tolist() == [True] * MANY + [False, False, True]
    assert P.audio_presence_summary(checked.utterances) == {"audio_missing": 2, "audio_missing_files": 2}
    assert notes == [f"note: 2 of {MANY + 2} audio files are missing (2 utterances); listed on the Problems "
                     "page, filter {audio_exists} = false"]


def test_a_case_sensitive_folder_is_not_taken_for_a_loose_one(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "A.wav").write_bytes(b"RIFF")
    (tmp_path / "é.wav").write_bytes(b"RIFF")
    assert not P._matches_loosely(str(tmp_path), ["a.wav", "A.wav", "é.wav"])


@pytest.mark.parametrize("name, escaped", [
    ("wavs/a.wav\n", True),      # a line break the page did not show: the file "a.wav" looked present
    ("wavs/a.wav ", True),
    ("wavs/a\x00.wav", True),
    ("wavs/gone.wav", False),
], ids=["a line break at the end", "a space at the end", "a NUL", "a plain missing file"])
def test_the_problems_page_shows_a_missing_path_with_what_a_page_hides_escaped(tmp_path, write_manifest, name, escaped):
    import json

    from sde.web.pages.problems import missing_audio_block

    (tmp_path / "wavs").mkdir()
    sf.write(tmp_path / "wavs" / "a.wav", np.zeros(160, dtype="float32"), 16000)
    manifest = write_manifest([{"audio_filepath": "wavs/a.wav", "duration": 0.01, "text": "a"},
                               {"audio_filepath": name, "duration": 0.01, "text": "b"}])
    checked = P.with_audio_presence(build_dataset(manifest), status=lambda _: None)
    assert checked.utterances["audio_exists"].tolist() == [True, False]
    block = json.dumps(missing_audio_block(checked).to_plotly_json(), default=lambda o: o.to_plotly_json())
    path = f"{tmp_path}/{name}"
    assert json.dumps(repr(path) if escaped else path) in block, block[-600:]


# ---------------------------------------------------------------- file states (sde.build.remeasure reads them)


def stat_digest(path: str) -> int:
    """The reference: one stat per path, as a digest (something there that is no regular file: what it is)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return P.NO_FILE
    if not stat.S_ISREG(st.st_mode):
        return P._NOT_A_FILE + (stat.S_IFMT(st.st_mode) >> 12)
    return P.digest(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def states_of(paths: list[str], **kw) -> tuple[dict[str, int], P.FileStates]:
    import pandas as pd

    names, codes = P.distinct_paths(pd.Series(paths, dtype="string[pyarrow]"))
    states = P.file_states(names, codes, **kw)
    return dict(zip(names.to_pylist(), states.digests.tolist())), states


@pytest.mark.parametrize("layout", LAYOUTS)
def test_file_states_answer_as_a_stat_per_file_does(layouts, layout):
    paths = layouts[layout]
    got, states = states_of(paths)
    want = {p: P.NOT_CHECKED if p == "" or p.startswith("s3://") else stat_digest(p) for p in paths}
    assert got == want
    assert not states.timed_out and states.unchecked == 0


@pytest.mark.parametrize("other, same", [
    ((1000, 5_000_000_000), True),
    ((1001, 5_000_000_000), False),   # a byte more
    ((1000, 5_000_000_001), False),   # a nanosecond later
    ((5_000_000_000, 1000), False),   # the two swapped
    ((0, 0), False),
])
def test_a_digest_tells_size_and_modification_time_apart(other, same):
    assert (P.digest(*other) == P.digest(1000, 5_000_000_000)) is same
    assert P.digest(*other) not in (P.NO_FILE, P.NOT_CHECKED)


def test_no_time_at_all_checks_no_file(layouts):
    paths = layouts["urls, empty and few files beside many"]
    got, states = states_of(paths, budget_s=0)
    assert set(got.values()) == {P.NOT_CHECKED}
    assert states.timed_out and states.unchecked == len(set(paths)) - 2  # not the URL nor ""


def test_states_just_taken_answer_the_presence_check(tmp_path, write_manifest):
    """One pass over the files per start: the presence check reads the states taken at load."""
    for i in range(3):
        sf.write(tmp_path / f"u{i}.wav", np.zeros(160, dtype="float32"), 16000)
    manifest = write_manifest([{"audio_filepath": f"u{i}.wav", "duration": 0.01, "text": "a"} for i in range(4)])
    dataset = build_dataset(manifest)
    names, codes = P.distinct_paths(dataset.utterances["audio_path"])
    P.remember(dataset, P.file_states(names, codes))
    (tmp_path / "u0.wav").unlink()  # after the states were taken: the check does not stat again
    checked = P.with_audio_presence(dataset)
    assert checked.utterances["audio_exists"].tolist() == [True, True, True, False]
    assert P.with_audio_presence(build_dataset(manifest)).utterances["audio_exists"].tolist() == [False, True, True, False]


class _Answering:
    """A task answering one file after `seconds` (a stat on a mount of that round trip)."""

    def __init__(self, row: int, seconds: float, threads: set) -> None:
        self.row, self.seconds, self.threads = row, seconds, threads

    def run(self, board) -> None:
        import threading
        import time

        time.sleep(self.seconds)
        self.threads.add(threading.get_ident())
        board.write(self.row, 1)


@pytest.mark.parametrize("seconds, threads", [
    (0.0, 1),      # files answering at once (a local disk): one thread, no fight over the GIL
    (0.02, 8),     # a round trip each (a network mount): every thread
])
def test_states_are_taken_on_more_threads_only_where_files_answer_slowly(seconds, threads):
    import time

    used: set = set()
    tasks = [_Answering(i, seconds, used) for i in range(200)]
    got = P._run(tasks, np.zeros(200, dtype=np.int8), workers=8, deadline=time.monotonic() + 30, ramp=True)
    assert got.sum() == 200
    assert len(used) == threads


@pytest.mark.parametrize("paths, exists, shown, files, rows", [
    (["a", "b", "a", "c"], [False, False, False, False], 2, 3, [0, 1]),
    (["a", "b", "a", "c"], [True, False, False, False], 5, 3, [1, 2, 3]),   # a's first missing row is 2
    (["a", "a", "a"], [False, False, False], 50, 1, [0]),
    (["a", "b"], [True, True], 50, 0, []),
    (["a", "b", "c"], [None, False, None], 50, 1, [1]),                     # unchecked rows are not missing
], ids=["the first two of three", "a file present on one line", "one file on every line", "none missing",
        "unchecked"])
def test_first_missing_files_counts_each_file_once_and_names_its_first_row(paths, exists, shown, files, rows):
    frame = pd.DataFrame({"audio_path": pd.array(paths, dtype="string"), "audio_exists": pd.array(exists, "boolean")})
    count, first = P.first_missing_files(frame, shown)
    assert count == files and first.tolist() == rows


def test_the_problems_page_lists_the_first_files_and_counts_the_rest(tmp_path, write_manifest):
    from sde.web.pages.problems import MISSING_AUDIO_SHOWN, missing_audio_block
    from tests.browser_kit import text_of

    lines = [{"audio_filepath": f"gone/{i % 60}.wav", "duration": 1.0, "text": "a"} for i in range(180)]
    checked = P.with_audio_presence(build_dataset(write_manifest(lines)), status=lambda _: None)
    text = text_of(missing_audio_block(checked))
    assert "60 audio files not found (180 utterances)" in text
    assert f"… and {60 - MISSING_AUDIO_SHOWN} more" in text
    assert text.count("gone/") == MISSING_AUDIO_SHOWN and "gone/0.wav (" in text and f"gone/{MISSING_AUDIO_SHOWN}.wav" not in text
