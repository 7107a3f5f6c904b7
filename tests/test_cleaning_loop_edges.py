"""The rough edges of the cleaning loop: review in the browser → reviews file → rules → `sde export`.

* A manifest renamed or moved keeps its reviews (same lines); a genuinely different manifest's
  reviews are still refused, with how to re-point them if it is the same one after all.
* Every rule's filter is checked when the rules are loaded, a disabled rule's too, naming the file,
  the line and the rule (`sde export --rules`, the Rules page's "Load rules.yaml").
* The export summary says how long the selection is in words people use ("12.0 s", "4.5 min",
  "1.25 h"), never "0.00 h" for half a minute (CLI and Rules page).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.dataset import build_dataset
from sde.reviews import ReviewStore, default_reviews_path, open_reviews, utterance_keys
from sde.durations import duration_text
from tests.browser_kit import api, sde_server

REPO = Path(__file__).resolve().parents[1]
SR = 16000


def sde(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], cwd=cwd, capture_output=True, text=True)


def write_dataset(folder: Path, name: str = "train.json", n: int = 4, seconds: float = 3.0,
                  prefix: str = "u") -> Path:
    """n utterances of real audio (a tone), `seconds` long each."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        audio = folder / f"{prefix}{i}.wav"
        t = np.arange(int(seconds * SR)) / SR
        sf.write(audio, (0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype("float32"), SR)
        rows.append({"audio_filepath": audio.name, "duration": seconds, "text": f"words of line {i}"})
    manifest = folder / name
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def review(manifest: Path, **where) -> Path:
    """A drop on line 2 and a fix on line 3 of `manifest`, saved where `where` says (cache_dir or path)."""
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, **where)
    keys = utterance_keys(dataset)
    store.set_review(keys.key(1), "drop", note="noise")
    store.set_review(keys.key(2), "fix", text="words of the fixed line")
    path = store.path
    store.close()
    return path


def exported_texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------ renamed or moved manifests

RENAMES = {
    # name: (folder, file name) the manifest moves to
    "renamed": ("data", "train_v2.json"),
    "moved to another folder": ("elsewhere", "train.json"),
    "renamed and moved": ("elsewhere", "train_v2.json"),
}


@pytest.mark.parametrize("how", list(RENAMES))
@pytest.mark.parametrize("where", ["default location", "--reviews FILE"])
def test_reviews_follow_a_renamed_or_moved_manifest_into_the_export(tmp_path, how, where):
    manifest = write_dataset(tmp_path / "data")
    cache = tmp_path / "cache"
    reviews = review(manifest, cache_dir=cache) if where == "default location" else \
        review(manifest, path=tmp_path / "reviews.sqlite")
    folder, name = RENAMES[how]
    (tmp_path / folder).mkdir(exist_ok=True)
    for f in (tmp_path / "data").glob("u*.wav"):
        if folder != "data":
            shutil.copy(f, tmp_path / folder / f.name)
    moved = tmp_path / folder / name
    manifest.rename(moved)
    before = reviews.read_bytes()
    option = ["--cache-dir", str(cache)] if where == "default location" else ["--reviews", str(reviews)]
    r = sde("export", str(moved), *option, "--apply-reviews", "-o", str(tmp_path / "kept.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert exported_texts(tmp_path / "kept.json") == ["words of line 0", "words of the fixed line", "words of line 3"]
    assert "1 dropped, 1 fixed" in r.stderr
    # a note says where the reviews came from (a file of the same name needs none)
    said = "renamed or moved" in r.stderr or "renamed, moved or copied" in r.stderr
    assert said == (where == "default location" or name != "train.json")
    assert reviews.read_bytes() == before       # the old file is read, never changed by an export


def test_reviews_follow_renamed_shards(tmp_path):
    shards = [write_dataset(tmp_path, f"m_{i}.json", prefix=f"s{i}_") for i in range(2)]
    dataset = build_dataset(tmp_path / "m_{0..1}.json")
    store = open_reviews(dataset, tmp_path / "reviews.sqlite")
    keys = utterance_keys(dataset)
    store.set_review(keys.key(1), "drop")          # m_0.json line 2
    store.set_review(keys.key(6), "drop")          # m_1.json line 3
    store.close()
    for i, shard in enumerate(shards):
        shard.rename(tmp_path / f"v2_{i}.json")
    out = tmp_path / "kept.json"
    r = sde("export", str(tmp_path / "v2_{0..1}.json"), "--no-cache", "--reviews", str(tmp_path / "reviews.sqlite"),
            "--apply-reviews", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 dropped" in r.stderr and "made for m_0.json" in r.stderr and "made for m_1.json" in r.stderr
    assert [json.loads(line)["audio_filepath"] for line in out.read_text().splitlines()] == \
        ["s0_0.wav", "s0_2.wav", "s0_3.wav", "s1_0.wav", "s1_1.wav", "s1_3.wav"]


def test_a_renamed_manifest_is_reviewed_on_in_the_server_editing_the_same_reviews(tmp_path):
    manifest = write_dataset(tmp_path)
    path = review(manifest, path=tmp_path / "reviews.sqlite")
    renamed = manifest.rename(tmp_path / "train_v2.json")
    with sde_server(str(renamed), "--reviews", str(path)) as url:
        got = api(url, "/api/utterances/1/review")
        assert got["status"] == "drop" and got["note"] == "noise" and got["version"] == 1 and got["editable"]
        listed = api(url, "/api/reviews")
        assert listed["total"] == 2 and listed["stale"] == 0
        saved = post(url, "/api/utterances/1/review", {"status": "keep", "version": 1})
        assert saved["status"] == "keep" and saved["version"] == 2 and saved["source"] == "train_v2.json"
    store = open_reviews(build_dataset(renamed), path)
    try:
        assert len(store.reviews()) == 2          # the review was edited, not a second one started
    finally:
        store.close()


def post(base: str, route: str, body: dict) -> dict:
    request = urllib.request.Request(base + route, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("started_before", [False, True])
def test_a_renamed_manifest_served_from_the_cache_continues_a_copy_of_its_reviews(tmp_path, started_before):
    """started_before: the renamed manifest was served once before (by an sde that did not look for
    its reviews), which left an empty reviews file in its default location."""
    manifest = write_dataset(tmp_path)
    old = review(manifest, cache_dir=tmp_path / "cache")
    before = old.read_bytes()
    renamed = manifest.rename(tmp_path / "train_v2.json")
    dataset = build_dataset(renamed)
    if started_before:
        ReviewStore(default_reviews_path(dataset, tmp_path / "cache"), sources=["train_v2.json"]).close()
    store = open_reviews(dataset, cache_dir=tmp_path / "cache")   # as `sde train_v2.json` opens them
    try:
        assert store.path != old and store.path.name.startswith("train_v2-")
        assert any(f"starts as a copy of {old}" in note for note in store.notes)
        assert sorted(r.status for r in store.reviews()) == ["drop", "fix"]
        store.set_review(utterance_keys(dataset).key(3), "keep")
    finally:
        store.close()
    assert old.read_bytes() == before


def test_another_manifests_reviews_are_refused_with_how_to_repoint_them(tmp_path):
    manifest = write_dataset(tmp_path / "a")
    path = review(manifest, path=tmp_path / "reviews.sqlite")
    other = write_dataset(tmp_path / "b", "other.json", prefix="x")
    r = sde("export", str(other), "--reviews", str(path), "--apply-reviews", "-o", str(tmp_path / "kept.json"),
            cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "holds the reviews of train.json, not of other.json" in r.stderr
    assert "UPDATE reviews SET source = 'other.json' WHERE source = 'train.json'" in r.stderr
    assert not (tmp_path / "kept.json").exists()


def test_the_repoint_command_of_the_refusal_makes_the_reviews_follow(tmp_path):
    """A manifest renamed and edited so that few reviewed lines are still there: refused, and the
    command the message gives re-points the reviews (those of lines gone stay unapplied)."""
    manifest = write_dataset(tmp_path, n=4)
    path = review(manifest, path=tmp_path / "reviews.sqlite")      # drop line 2 (u1), fix line 3 (u2)
    dataset = build_dataset(manifest)
    store = open_reviews(dataset, path)
    store.set_review(utterance_keys(dataset).key(0), "keep")          # and keep line 1 (u0)
    store.close()
    lines = manifest.read_text().splitlines()
    renamed = tmp_path / "train_v2.json"
    new = [json.dumps(json.loads(lines[3]) | {"audio_filepath": f"new{i}.wav"}) for i in range(2)]
    renamed.write_text("\n".join([*new, lines[2], lines[3]]) + "\n")    # only u2 is still on its line
    manifest.unlink()
    out = tmp_path / "kept.json"
    r = sde("export", str(renamed), "--reviews", str(path), "--apply-reviews", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "re-point the reviews" in r.stderr, r.stderr
    assert not out.exists()
    command = r.stderr[r.stderr.index("sqlite3 "):].strip()
    subprocess.run(command, shell=True, check=True, cwd=tmp_path)
    r = sde("export", str(renamed), "--reviews", str(path), "--apply-reviews", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "0 dropped, 1 fixed" in r.stderr and "2 match no line any more" in r.stderr
    assert exported_texts(out)[2] == "words of the fixed line"


# ------------------------------------------------------------------------ disabled rules are checked

BAD_DISABLED_RULES = {
    # name: (the disabled rule's filter, what the message says about it)
    "a syntax error": ("{duration} >", "missing value"),
    "an unknown column": ("{duraton} > 3", 'Unknown column "duraton"'),
    "a type mismatch": ('{duration} > "long"', "duration"),
}


def rules_file(folder: Path, flt: str) -> Path:
    path = folder / "rules.yaml"
    path.write_text("rules:\n  - name: short\n    filter: \"{duration} < 1\"\n"
                    f"  - name: later\n    filter: {json.dumps(flt)}\n    enabled: false\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("case", list(BAD_DISABLED_RULES))
def test_a_disabled_rules_bad_filter_is_refused_by_export_naming_file_line_and_rule(tmp_path, case):
    flt, said = BAD_DISABLED_RULES[case]
    manifest = write_dataset(tmp_path, seconds=0.5, n=2)
    path = rules_file(tmp_path, flt)
    r = sde("export", str(manifest), "--no-cache", "--rules", str(path), "-o", str(tmp_path / "kept.json"),
            cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{path}:4: rule 'later' (enabled: false" in r.stderr and said in r.stderr, r.stderr
    assert not (tmp_path / "kept.json").exists()


# ------------------------------------------------------------------------ durations people read

DURATIONS = {
    # seconds: as shown
    0: "0 s",
    12.34: "12.3 s",
    59.9: "59.9 s",
    60: "1.0 min",
    270: "4.5 min",
    3500: "58.3 min",
    3599: "1.00 h",     # not "60.0 min"
    4500: "1.25 h",
    3600 * 1234.5: "1,234.50 h",
}


@pytest.mark.parametrize("seconds", list(DURATIONS))
def test_durations_read_in_seconds_minutes_or_hours(seconds):
    assert duration_text(seconds / 3600) == DURATIONS[seconds]


def test_the_export_summary_of_a_short_selection_is_not_zero_hours(tmp_path):
    manifest = write_dataset(tmp_path, n=4, seconds=3.0)     # 12 s of audio
    first = tmp_path / "rules.yaml"
    first.write_text('rules:\n  - name: first\n    filter: "{line} = 1"\n', encoding="utf-8")
    r = sde("export", str(manifest), "--no-cache", "--rules", str(first), "-o", str(tmp_path / "kept.json"),
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    said = {line.split()[0]: line for line in r.stderr.splitlines() if line.strip()}
    assert "0.00 h" not in r.stderr
    assert "9.0 s" in said["kept"] and "3.0 s" in said["rejected"]
    assert "rule 'first': 1 utterances, 3.0 s" in r.stderr and "all rules: 1 utterances, 3.0 s" in r.stderr


# ------------------------------------------------------------------------ the Rules page

@pytest.mark.browser
def test_the_rules_page_refuses_a_loaded_file_with_a_bad_disabled_rule_and_shows_seconds(tmp_path, page):
    manifest = write_dataset(tmp_path, n=4, seconds=3.0)
    bad = rules_file(tmp_path, "{duraton} > 3")
    good = tmp_path / "good.yaml"
    good.write_text('rules:\n  - name: first\n    filter: "{line} = 1"\n', encoding="utf-8")
    with sde_server(str(manifest)) as url:
        page.goto(url + "/rules")
        page.set_input_files("input[type=file]", str(bad))
        page.wait_for_selector("#rules-error")
        error = page.inner_text("#rules-error")
        assert "rules.yaml:4: rule 'later' (enabled: false" in error and "duraton" in error
        assert page.query_selector("#rules-row-0") is None
        page.set_input_files("input[type=file]", str(good))
        page.wait_for_selector("#rules-row-0")
        page.wait_for_function("document.querySelector('#rules-hours-0').innerText.includes('3.0 s')")
        page.wait_for_function("document.querySelector('#rules-union').innerText.includes('1 utterances · 3.0 s')")


@pytest.mark.browser
def test_the_statistics_page_says_where_a_renamed_manifests_reviews_came_from_in_seconds(tmp_path, page):
    manifest = write_dataset(tmp_path, n=4, seconds=3.0)
    path = review(manifest, path=tmp_path / "reviews.sqlite")
    renamed = manifest.rename(tmp_path / "train_v2.json")
    with sde_server(str(renamed), "--reviews", str(path)) as url:
        page.goto(url + "/")
        page.wait_for_selector("#review-summary")
        text = page.inner_text("#review-summary")
        assert "made for train.json" in text and "renamed or moved" in text
        assert page.inner_text("#stat-review-drop-duration") == "3.0 s"
        assert page.inner_text("#stat-review-reviewed-duration") == "6.0 s"


# ------------------------------------------------------------------------ review columns without reviews

NO_REVIEWS_FOUND = {
    # name: (the export's options, what the message names)
    "a rule": (["--rules", "RULES"], "rule 'reviewed drop' (RULES:2) names the review column {review}"),
    "the filter": (["--filter", '{review_tags} has "noise"'], "--filter names the review column {review_tags}"),
    "the sort": (["--sort", "-review_time"], "--sort names the review column {review_time}"),
}


@pytest.mark.parametrize("case", list(NO_REVIEWS_FOUND))
def test_a_review_column_with_no_reviews_found_says_where_it_looked_and_what_to_pass(tmp_path, case):
    """The server kept its reviews under --cache-dir; the export was run without it."""
    manifest = write_dataset(tmp_path, n=3, seconds=0.5)
    review(manifest, cache_dir=tmp_path / "server-cache")
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text('rules:\n  - name: reviewed drop\n    filter: \'{review} = "drop"\'\n', encoding="utf-8")
    options, said = NO_REVIEWS_FOUND[case]
    options = [str(rules_path) if o == "RULES" else o for o in options]
    r = sde("export", str(manifest), "--cache-dir", str(tmp_path / "other-cache"), *options,
            "-o", str(tmp_path / "kept.json"), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert said.replace("RULES", str(rules_path)) in r.stderr, r.stderr
    assert "--reviews FILE" in r.stderr and "--cache-dir the server was started with" in r.stderr


# (behaviour, the moves after the first review: each a new name, or a new folder and name)
MOVED_AGAIN = [
    ("renamed twice", ["b.json", "c.json"]),
    ("renamed three times", ["b.json", "c.json", "d.json"]),
    ("moved to another folder, then renamed", ["elsewhere/train.json", "elsewhere/b.json"]),
]


@pytest.mark.parametrize("behaviour, moves", MOVED_AGAIN, ids=[m[0] for m in MOVED_AGAIN])
def test_reviews_follow_a_manifest_renamed_or_moved_again_with_those_made_between(tmp_path, behaviour, moves):
    manifest = write_dataset(tmp_path / "data")
    review(manifest, cache_dir=tmp_path / "cache")          # a drop on line 2, a fix on line 3
    for step, target in enumerate(moves):
        moved = tmp_path / "data" / target
        moved.parent.mkdir(exist_ok=True)
        if moved.parent != manifest.parent:  # its audio goes with it
            for wav in manifest.parent.glob("*.wav"):
                wav.rename(moved.parent / wav.name)
        manifest = manifest.rename(moved)
        dataset = build_dataset(manifest)
        store = open_reviews(dataset, cache_dir=tmp_path / "cache")   # as `sde NEW` opens them
        try:
            assert len(store.reviews()) == min(2 + step, 4), (target, store.notes)
            # a drop of line 1 after the first move, of line 4 after the others (the same review again)
            store.set_review(utterance_keys(dataset).key(0 if step == 0 else 3), "drop", note=f"after move {step}")
        finally:
            store.close()
    r = sde("export", str(manifest), "--apply-reviews", "--cache-dir", str(tmp_path / "cache"), "-o",
            str(tmp_path / "kept.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "reviews: 3 dropped, 1 fixed" in r.stderr
    assert exported_texts(tmp_path / "kept.json") == ["words of the fixed line"]
