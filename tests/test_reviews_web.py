"""The curation API through a real `sde` server process (sde/web/api/curation.py): reviews with
versions, conflicts and undo, bounded requests, read-only servers, the byte-exact manifest
download (equal to `sde export`), the drop-rules preview (equal to `sde export --rules`), and a
kill -9 in the middle of a burst of edits."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from sde.dataset import build_dataset
from sde.reviews import ReviewStore, utterance_keys
from tests.browser_kit import sde_server

REPO = Path(__file__).resolve().parents[1]


def _line(i: int, duration: float, text: str, pred: str, **extra) -> bytes:
    return json.dumps({"audio_filepath": f"clip{i}.wav", "duration": duration, "text": text, "pred_text": pred,
                       **extra}, ensure_ascii=False).encode("utf-8")


# Lines as users write them: odd spacing, escapes, Unicode, CRLF ends, a bad line (skipped) and a
# last line without a line end. Utterance i is valid line i of this list.
LINES = [
    b'  {"audio_filepath": "clip0.wav",\t"duration": 1.0,   "text": "two  spaces ", "pred_text": "two spaces"}  \r\n',
    _line(1, 2.0, "naïve café \U0001F600", "naive cafe", speaker="s1") + b"\n",
    b'{"audio_filepath": "clip2.wav", "duration": 3.0, "text": "a \\"quoted\\" \\/ word", "pred_text": "a word"}\r\n',
    _line(3, 4.0, "the cat sat", "the bat sat", speaker="s2") + b"\n",
    _line(4, 0.5, "hello world", "hello world", speaker="s1") + b"\n",
    _line(5, 6.0, "one two three four", "one too tree for", speaker="s2") + b"\n",
    _line(6, 1.5, "日本語のテキスト", "日本語", speaker="s3") + b"\n",
    _line(7, 2.5, "good morning", "good mourning", speaker="s3") + b"\n",
    _line(8, 3.5, "speech data explorer", "speech data explorer", speaker="s1") + b"\n",
    _line(9, 1.2, "rules replay", "rule replay", speaker="s2") + b"\n",
    _line(10, 0.8, "short one", "short", speaker="s1") + b"\n",
    _line(11, 5.0, "the last line has no end", "the last line", speaker="s3"),
]
DURATIONS = [float(json.loads(line)["duration"]) for line in LINES]
BAD = b'{"audio_filepath": "broken.wav", "duration": \n'
RULES_YAML = ('rules:\n  - name: high WER\n    filter: "{wer} > 40"\n  - name: long\n    filter: "{duration} > 4.5"\n'
              '  - name: no speaker\n    filter: "{speaker} = \\"s9\\""\n')


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("curation")
    path = folder / "manifest.json"
    path.write_bytes(b"".join(LINES[:4]) + BAD + b"".join(LINES[4:]))
    return path


@pytest.fixture(scope="module")
def served(manifest):
    """(URL, reviews file) of `sde manifest.json --reviews FILE`."""
    reviews = manifest.parent / "reviews.sqlite"
    with sde_server(str(manifest), "--reviews", str(reviews)) as url:
        yield url, reviews


def call(url: str, method: str = "GET", body=None, raw: bytes | None = None, headers: dict | None = None):
    """(status, JSON body) of one request; 4xx/5xx are answers too."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/x-ndjson"
        assert r.headers["Content-Disposition"].startswith("attachment")
        return r.read()


def review_url(base: str, uid, undo: bool = False) -> str:
    return f"{base}/api/utterances/{uid}/review" + ("/undo" if undo else "")


def run_export(manifest: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SDE_CACHE_DIR": str(manifest.parent / "cache")}
    return subprocess.run([sys.executable, "-m", "sde.cli", "export", str(manifest), "--no-cache", *args],
                          cwd=manifest.parent, env=env, capture_output=True, text=True, timeout=180)


# ---------------------------------------------------------------- reviews: versions, conflicts, undo

def test_save_get_and_undo_count_versions(served):
    url, _ = served
    assert call(review_url(url, 0))[1]["version"] == 0
    code, saved = call(review_url(url, 0), "POST", {"status": "fix", "text": "two spaces", "note": "double space",
                                                    "tags": ["typo"], "version": 0})
    assert code == 200 and (saved["status"], saved["version"], saved["tags"]) == ("fix", 1, ["typo"])
    code, got = call(review_url(url, 0))
    assert code == 200 and got["text"] == "two spaces" and got["version"] == 1 and got["editable"] is True
    code, undone = call(review_url(url, 0, undo=True), "POST", {"version": 1})
    assert code == 200 and undone["status"] is None and undone["version"] == 2
    assert call(review_url(url, 0, undo=True), "POST", {"version": 2})[0] == 409  # back at the start


def test_a_stale_version_is_409_with_both_values_and_nothing_is_overwritten(served):
    url, _ = served
    assert call(review_url(url, 1), "POST", {"status": "keep", "version": 0})[0] == 200
    code, conflict = call(review_url(url, 1), "POST", {"status": "drop", "note": "noisy", "version": 0})
    assert code == 409
    assert conflict["stored"]["status"] == "keep" and conflict["stored"]["version"] == 1
    assert conflict["attempted"]["status"] == "drop" and conflict["attempted"]["note"] == "noisy"
    assert call(review_url(url, 1))[1]["status"] == "keep"


@pytest.mark.parametrize("method, path, body, status, fragment", [
    ("POST", "/api/utterances/999/review", {"status": "keep"}, 404, "no utterance with id"),
    ("POST", "/api/utterances/-1/review", {"status": "keep"}, 404, "no utterance with id"),
    ("GET", "/api/utterances/x/review", None, 404, "no utterance with id"),
    ("POST", "/api/utterances/2/review", {"status": "maybe"}, 400, "status must be one of"),
    ("POST", "/api/utterances/2/review", {"status": "keep", "note": "n" * 10_001}, 400, "at most 10,000"),
    ("POST", "/api/utterances/2/review", {"status": "fix", "text": "two\nlines"}, 400, "one line"),
    ("POST", "/api/utterances/2/review", {"status": "fix", "text": "t" * 100_001}, 400, "at most 100,000"),
    ("POST", "/api/utterances/2/review", {"status": "keep", "tags": ["two words"]}, 400, "one word"),
    ("POST", "/api/utterances/2/review", {"status": "keep", "tags": ["t"] * 33}, 400, "at most 32"),
    ("POST", "/api/utterances/2/review", {"status": "keep", "color": "red"}, 400, "unknown field"),
    ("POST", "/api/utterances/2/review", {"status": "keep", "version": -1}, 400, "version must be"),
    # a version no review can have was taken for a stale one (409), and falsy tags for none (saved)
    ("POST", "/api/utterances/2/review", {"status": "keep", "version": 10**30}, 400,
     "got 1000000000000000000000000000000"),
    ("POST", "/api/utterances/2/review", {"status": "keep", "version": 2**63}, 400, "got 9223372036854775808"),
    ("POST", "/api/utterances/2/review", b'{"status": "keep", "version": 1e30}', 400, "got 1e+30"),
    ("POST", "/api/utterances/2/review/undo", {"version": 10**30}, 400, "got 1000000000000000000000000000000"),
    ("POST", "/api/utterances/2/review", {"status": "keep", "tags": 0}, 400, '"accent"]; got 0'),
    ("POST", "/api/utterances/2/review", {"status": "keep", "tags": False}, 400, '"accent"]; got False'),
    ("POST", "/api/utterances/2/review", b"{not json", 400, "not valid JSON"),
    ("POST", "/api/utterances/2/review", b"x" * ((4 << 20) + 1), 413, "at most 4,194,304"),
    ("POST", "/api/utterances/2/review", b"[" * 50 + b"]" * 50, 400, "nested"),
    ("POST", "/api/utterances/2/review/undo", {}, 409, "nothing to undo"),
    ("GET", "/api/reviews?page_size=5000", None, 400, "page_size"),
    ("GET", "/api/reviews?filter=%7Breview%7D%20%3E", None, 400, "missing value"),
    ("GET", "/api/utterances.jsonl?filter=%7Bnope%7D%20%3D%201", None, 400, "nope"),
    ("GET", "/api/utterances.jsonl?drop=%7Bwer%7D%20%3E", None, 400, "drop 1"),
    # an empty rule dropped every line, removed=1 alone sent them all, removed=yes was taken for false
    ("GET", "/api/utterances.jsonl?drop=", None, 400, "drop rule 1 is empty"),
    ("GET", "/api/utterances.jsonl?drop=%7Bwer%7D%20%3E%2050&drop=%20", None, 400, "drop rule 2 is empty"),
    ("GET", "/api/utterances.jsonl?removed=1", None, 400, "give at least one drop=FILTER"),
    ("GET", "/api/utterances.jsonl?drop=%7Bwer%7D%20%3E%2050&removed=2", None, 400, "removed must be 1 or 0"),
    ("POST", "/api/rules/preview", {"rules": [{"name": "typo", "filter": "{werr} > 1"}]}, 400, "typo"),
    ("POST", "/api/rules/preview", {"yaml": "rules: [1, 2"}, 400, "not valid YAML"),
])
def test_bad_requests_are_4xx_with_a_message_and_save_nothing(served, method, path, body, status, fragment):
    url, _ = served
    raw = body if isinstance(body, bytes) else None
    code, payload = call(url + path, method, None if raw is not None else body, raw=raw)
    assert code == status, payload
    assert fragment in payload["error"]
    assert call(review_url(url, 2))[1]["version"] == 0


def test_the_largest_review_fits_the_request_limit_as_json_encoders_escape_it(served):
    """Every field at its limit, every character an emoji: json.dumps' default \\u escapes make it
    ~1.35 MB (413 when the limit was 1 MiB, inside the documented 100,000 characters)."""
    from sde.review_store import MAX_NOTE_CHARS, MAX_TAG_CHARS, MAX_TAGS, MAX_TEXT_CHARS

    url, _ = served
    body = {"status": "fix", "text": "😀" * MAX_TEXT_CHARS, "note": "😀" * MAX_NOTE_CHARS,
            "tags": ["😀" * MAX_TAG_CHARS] * MAX_TAGS}
    code, saved = call(review_url(url, 4), "POST", body)
    assert code == 200, saved
    assert saved["text"] == body["text"] and saved["note"] == body["note"]


def review_some(url: str) -> None:
    """Drops on 3 and 5 and a fix on 7, tagged (no version: the last writer wins, so it can be repeated)."""
    for uid, body in ((3, {"status": "drop", "tags": ["noise", "music"]}), (5, {"status": "drop"}),
                      (7, {"status": "fix", "text": "good morning", "tags": ["noise"]})):
        assert call(review_url(url, uid), "POST", body)[0] == 200


def test_review_columns_filter_the_samples_table_and_are_counted(served):
    url, _ = served
    review_some(url)
    cases = {'{review} = "drop" && {id} >= 3': [3, 5], '{review_tags} has "noise"': [3, 7],
             '{review} = "fix" && {review_text} contains "morning"': [7]}
    for flt, ids in cases.items():
        rows = call(f"{url}/api/utterances?" + urlencode({"filter": flt, "page_size": 100}))[1]["rows"]
        assert [r["id"] for r in rows] == ids, flt
    listing = call(f"{url}/api/reviews?" + urlencode({"filter": '{review_tags} has "noise"'}))[1]
    assert [r["id"] for r in listing["rows"]] == [3, 7] and listing["rows"][0]["reference"] == "the cat sat"
    drops = call(f"{url}/api/reviews?" + urlencode({"filter": '{review} = "drop"', "page_size": 1000}))[1]
    summary = drops["summary"]
    assert summary["drop"] == drops["total"] >= 2
    assert summary["hours_drop"] == pytest.approx(sum(DURATIONS[r["id"]] for r in drops["rows"]) / 3600)


# ---------------------------------------------------------------- the manifest download = sde export

@pytest.mark.parametrize("flt, sort, expected", [
    ("", "", list(range(12))),
    ('{speaker} = "s1"', "-duration", [8, 1, 10, 4]),
    ('{review} = "drop" && {id} >= 3', "", [3, 5]),
], ids=["everything", "filtered and sorted", "a review column"])
def test_manifest_download_is_byte_exact_and_equals_sde_export(served, manifest, tmp_path, flt, sort, expected):
    url, reviews = served
    review_some(url)
    params = {k: v for k, v in (("filter", flt), ("sort", sort)) if v}
    body = download(f"{url}/api/utterances.jsonl" + (f"?{urlencode(params)}" if params else ""))
    lines = [(LINES[i] if LINES[i].endswith(b"\n") else LINES[i] + b"\n") for i in expected]
    assert body == b"".join(lines)
    out = tmp_path / "kept.json"
    args = ["-o", str(out)] + (["--filter", flt] if flt else []) + (["--sort", sort] if sort else [])
    r = run_export(manifest, *args, "--reviews", str(reviews))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == body


def test_rules_preview_and_downloads_equal_sde_export_rules(served, manifest):
    url, _ = served
    code, preview = call(f"{url}/api/rules/preview", "POST", {"yaml": RULES_YAML})
    assert code == 200
    (manifest.parent / "rules.yaml").write_text(RULES_YAML)
    kept, dropped = manifest.parent / "rules-kept.json", manifest.parent / "rules-dropped.json"
    r = run_export(manifest, "--rules", "rules.yaml", "-o", str(kept), "--rejected", str(dropped))
    assert r.returncode == 0, r.stderr
    log = json.loads(Path(f"{kept}.changelog.json").read_text())["rules"]
    assert [(x["name"], x["utterances"], x["only"]) for x in preview["rules"]] == \
        [(x["name"], x["utterances"], x["only"]) for x in log["rules"]]
    assert [x["hours"] for x in preview["rules"]] == pytest.approx([x["hours"] for x in log["rules"]])
    assert preview["union"]["utterances"] == log["union"]["utterances"] > 0
    drops = [("drop", "{wer} > 40"), ("drop", "{duration} > 4.5"), ("drop", '{speaker} = "s9"')]
    assert download(f"{url}/api/utterances.jsonl?" + urlencode(drops)) == kept.read_bytes()
    assert download(f"{url}/api/utterances.jsonl?" + urlencode([*drops, ("removed", "1")])) == dropped.read_bytes()


# ---------------------------------------------------------------- read-only, --auth, another manifest

def test_a_read_only_server_shows_reviews_and_refuses_edits(served, manifest):
    url, reviews = served
    assert call(review_url(url, 4), "POST", {"status": "keep", "note": "fine"})[0] == 200
    with sde_server(str(manifest), "--reviews", str(reviews), "--read-only") as ro:
        code, got = call(review_url(ro, 4))
        assert code == 200 and got["status"] == "keep" and got["editable"] is False
        code, refused = call(review_url(ro, 4), "POST", {"status": "drop"})
        assert code == 403 and "--read-only" in refused["error"]
        assert call(review_url(ro, 4, undo=True), "POST", {})[0] == 403
    assert call(review_url(url, 4))[1]["status"] == "keep"


def _app(manifest: Path, reviews: Path, **config):
    from sde.web.app import AppConfig, create_app

    return create_app(build_dataset(manifest), AppConfig(audio_routes=False, reviews=str(reviews), **config))


def test_with_auth_each_edit_records_the_user(manifest, tmp_path):
    client = _app(manifest, tmp_path / "r.sqlite", auth="ann:s3cret").server.test_client()
    basic = {"Authorization": "Basic " + base64.b64encode(b"ann:s3cret").decode()}
    assert client.post("/api/utterances/6/review", json={"status": "keep"}).status_code == 401
    saved = client.post("/api/utterances/6/review", json={"status": "drop"}, headers=basic).get_json()
    assert saved["user"] == "ann"
    assert client.get("/api/reviews", headers=basic).get_json()["rows"][0]["user"] == "ann"


def test_another_manifests_reviews_file_turns_editing_off_and_says_why(manifest, tmp_path, write_manifest):
    other = write_manifest([{"audio_filepath": "x.wav", "duration": 1.0, "text": "x"}], name="other.json")
    foreign = tmp_path / "other.sqlite"
    ReviewStore(foreign, sources=["other.json"]).close()
    client = _app(manifest, foreign).server.test_client()
    got = client.get("/api/utterances/0/review").get_json()
    assert got["editable"] is False
    r = client.post("/api/utterances/0/review", json={"status": "keep"})
    assert r.status_code == 403 and str(foreign) in r.get_json()["error"] and "other.json" in r.get_json()["error"]
    assert other.exists()


# ---------------------------------------------------------------- kill -9 during a burst

def _burst(url: str, uid: int, acknowledged: list, stop: threading.Event) -> None:
    version, i = 0, 0
    while not stop.is_set():
        note = f"edit {uid}-{i}"
        try:
            code, saved = call(review_url(url, uid), "POST",
                               {"status": ("keep", "drop")[i % 2], "note": note, "version": version})
        except (OSError, ValueError, http.client.HTTPException):
            return  # the server is gone (killed mid-answer: an incomplete read)
        if code != 200:
            return
        version = saved["version"]
        acknowledged.append((uid, version, note))
        i += 1


def test_kill_9_during_a_burst_of_edits_loses_nothing_acknowledged(manifest, tmp_path):
    reviews = tmp_path / "burst.sqlite"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sde.cli", str(manifest), "--reviews", str(reviews), "--port", "0",
                             "--no-cache"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    acknowledged: list[tuple[int, int, str]] = []
    stop = threading.Event()
    try:
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline())
            url = m.group(1) if m else None
        assert url, "sde did not print its URL"
        threads = [threading.Thread(target=_burst, args=(url, uid, acknowledged, stop)) for uid in (8, 9, 10)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 90 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # mid-burst: requests are in flight
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    assert len(acknowledged) >= 90
    keys = utterance_keys(build_dataset(manifest))
    store = ReviewStore(reviews, sources=["manifest.json"])
    try:
        for uid, version, note in acknowledged:
            history = {h["version"]: h for h in store.history(keys.key(uid))}
            assert history[version]["note"] == note
            assert store.get(keys.key(uid)).version >= version
    finally:
        store.close()


# ---------------------------------------------------------------- the pages' own logic (no browser)

@pytest.fixture(scope="module")
def reviewed_app(manifest, tmp_path_factory):
    """An app over the manifest whose reviews mark utterances 1 and 3 (its Flask server, its dataset)."""
    from sde.web.app import AppConfig, create_app

    dataset = build_dataset(manifest)
    reviews = tmp_path_factory.mktemp("pages") / "r.sqlite"
    app = create_app(dataset, AppConfig(audio_routes=False, reviews=str(reviews)))
    client = app.server.test_client()
    for uid in (1, 3):
        assert client.post(f"/api/utterances/{uid}/review", json={"status": "keep"}).status_code == 200
    return app.server, dataset


@pytest.mark.parametrize("uid, params, expected", [
    (0, {}, 2),                                     # 1 is reviewed: skipped
    (2, {}, 4),
    (11, {}, 0),                                    # past the end: wraps to the start
    (0, {"filter": "{id} <= 3"}, 2),
    (2, {"filter": "{id} <= 3"}, 0),                # wraps within the list
    (0, {"filter": "{id} <= 3", "sort": "-id"}, 2),  # 0 is last of the sorted list: wraps to 3 (reviewed), 2
    (0, {"filter": "{review} is null"}, 2),         # a list on a review column
    (5, {"filter": "{id} = 1 || {id} = 3"}, None),  # everything reviewed
    (0, {"filter": "{nope} = 1"}, 2),               # a bad filter walks the whole manifest
])
def test_next_unreviewed_walks_the_list_and_wraps(reviewed_app, uid, params, expected):
    from sde.web.panels.review import next_unreviewed

    server, dataset = reviewed_app
    with server.test_request_context():
        assert next_unreviewed(dataset, uid, params) == expected


@pytest.mark.parametrize("data, names", [
    (None, []),
    ("rules", []),
    ({"rules": "x"}, []),
    ({"rules": [1, {"name": "a"}, {"name": "b", "filter": "{wer} > 1"}, {"filter": "x"}]}, ["b"]),
])
def test_the_rules_page_ignores_stored_data_that_is_not_a_rule(data, names):
    from sde.web.pages.rules import stored_rules

    assert [r["name"] for r in stored_rules(data)] == names


@pytest.mark.parametrize("name, flt, error", [
    ("", "{wer} > 1", "give the rule a name"),
    ("w", "", "give the rule a filter"),
    ("high WER", "{wer} > 1", "already a rule named"),
    ("typo", "{werr} > 1", "Unknown column"),
    ("ok", "{duration} > 2", None),
])
def test_adding_a_rule_checks_it_first(reviewed_app, name, flt, error):
    from sde.web.pages.rules import add_rule

    server, dataset = reviewed_app
    existing = [{"name": "high WER", "filter": "{wer} > 40"}]
    with server.test_request_context():
        rules, message = add_rule(dataset, existing, name, flt)
    if error is None:
        assert message is None and rules[-1] == {"name": name, "filter": flt}
    else:
        assert error in message and rules == existing


@pytest.mark.parametrize("view, rules, kept, removed", [
    ("", [], {}, None),
    ("{duration} > 1", [{"name": "a", "filter": "{wer} > 40"}],
     {"filter": ["{duration} > 1"], "drop": ["{wer} > 40"]},
     {"filter": ["{duration} > 1"], "drop": ["{wer} > 40"], "removed": ["1"]}),
    ("", [{"name": "a", "filter": "{wer} > 40"}, {"name": "b", "filter": "{x} = 1", "enabled": False}],
     {"drop": ["{wer} > 40"]}, {"drop": ["{wer} > 40"], "removed": ["1"]}),
])
def test_rule_downloads_carry_each_enabled_rule_as_its_own_drop(view, rules, kept, removed):
    from urllib.parse import parse_qs, urlparse

    from sde.web.pages.rules import download_hrefs

    kept_href, removed_href = download_hrefs(view, rules)
    assert parse_qs(urlparse(kept_href).query) == kept
    assert (parse_qs(urlparse(removed_href).query) if removed_href else None) == removed


@pytest.mark.parametrize("text, tags", [("", []), ("noise", ["noise"]), (" noise,  music ,accent ", ["noise", "music", "accent"])])
def test_tags_are_typed_as_words(text, tags):
    from sde.web.panels.review import parse_tags

    assert parse_tags(text) == tags


@pytest.mark.parametrize("button, note, conflict", [
    ("review-keep", "", False),          # the same review saved twice (a key pressed twice): no conflict
    ("review-drop", "", True),           # a different one against a stale version: both values shown
    ("review-keep", "a note", True),
])
def test_a_stale_save_is_a_conflict_only_when_the_values_differ(reviewed_app, button, note, conflict):
    from sde.web.panels.review import review_action

    server, dataset = reviewed_app
    values = {"uid": 1, "saved": {"id": 1, "version": 0, "review": {}, "conflict": None}, "text": "",
              "note": note, "tags": "", "mode": False, "search": "", "last": None}
    with server.test_request_context():
        out = review_action(dataset, button, values)
    assert (out["saved"]["conflict"] is not None) == conflict
    assert out["conflict_style"] == ({} if conflict else {"display": "none"})
    if not conflict:
        assert out["saved"]["version"] == 1 and out["saved"]["review"]["status"] == "keep"
