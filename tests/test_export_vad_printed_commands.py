"""A server started with --vad prints commands (the Rules page's replay, the Statistics card's
apply-reviews) that carry --vad: pasted, they read the server's own cached build (the --vad build
is an entry of its own) instead of building the dataset again, and a drop rule on a speech-activity
column removes what it removes on the page. Before, the commands had no --vad (and `sde export` did
not take it): the build was made again without the columns, and the rule was an "Unknown column".

The real CLI server, the pages read in Chromium, the commands run as printed."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser_kit import sde_server
from tests.quality_kit import need_espeak, need_vad, padded, speak, write

REPO = Path(__file__).resolve().parents[1]
SENTENCE = "the quick brown fox jumps over the lazy dog"
# (name, silence before and after the speech in seconds): the padded ones are mostly silence
CLIPS = [("tight_a", 0.0, 0.0), ("padded_a", 3.0, 3.0), ("tight_b", 0.1, 0.1), ("padded_b", 4.0, 0.5)]
RULES = 'rules:\n  - name: mostly silence\n    filter: "{speech_ratio} < 0.5"\n'


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    need_espeak()
    need_vad()
    d = tmp_path_factory.mktemp("vadserved")
    y, sr = speak(SENTENCE)
    lines = []
    for name, before, after in CLIPS:
        audio = padded(y, sr, before, after)
        path = write(d / f"{name}.wav", audio, sr)
        lines.append({"audio_filepath": str(path), "duration": round(len(audio) / sr, 3), "text": name})
    (d / "m.json").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return d


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def vad_server(folder: Path):
    """`sde serve m.json --vad` with its own cache folder and reviews file; yields its URL."""
    return sde_server("serve", "m.json", "--vad", "--cache-dir", str(folder / "cache"),
                      "--reviews", str(folder / "reviews.sqlite"), cwd=folder, no_cache=False)


def printed(page, url: str, element: str) -> list[str]:
    page.goto(url)
    code = page.locator(f"#{element}")
    code.filter(has_text="sde export").wait_for()
    return shlex.split(code.inner_text())


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    assert argv[:2] == ["sde", "export"]
    return subprocess.run([sys.executable, "-m", "sde.cli", *argv[1:]], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=300)


def texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_printed_commands_carry_vad_and_read_the_server_build(corpus, page):
    with vad_server(corpus) as url:
        replay = printed(page, f"{url}/rules", "rules-command")
        apply = printed(page, url, "review-apply-command")
    for argv in (replay, apply):
        assert "--vad" in argv and argv[argv.index("--cache-dir") + 1] == str(corpus / "cache"), argv

    elsewhere = corpus / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "rules.yaml").write_text(RULES, encoding="utf-8")
    done = run(replay, elsewhere)
    assert done.returncode == 0, done.stderr
    # the server's build, read back: no manifest read, no audio measured again
    assert "loaded from cache" in done.stderr and "reading m.json" not in done.stderr, done.stderr
    assert texts(elsewhere / "kept.json") == ["tight_a", "tight_b"]
    assert texts(elsewhere / "dropped.json") == ["padded_a", "padded_b"]

    applied = run(apply, elsewhere)
    assert applied.returncode == 0, applied.stderr
    assert "loaded from cache" in applied.stderr and "reading m.json" not in applied.stderr, applied.stderr
    assert texts(elsewhere / "clean.json") == [name for name, _, _ in CLIPS]
