"""Under a locale whose file names are not UTF-8 (LANG=en_US.ISO-8859-1), Python encodes a name with
the locale's encoding: données.wav became other bytes than the UTF-8 ones it is stored under, and
清单.wav none at all, so `sde stats` counted both existing files as missing and the player answered
404. A file missing under the locale's spelling is now looked for under its UTF-8 one, by the
presence check and the reader alike (sde.audio.inputs.local_name). Through the real CLI and server
with the locale set: the system's, or one compiled into a temporary LOCPATH with localedef (Debian's
`locales` package has its sources; CI installs it); skipped where neither can be had."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_audio_faults import SdeServer, assert_no_traceback

ROOT = Path(__file__).resolve().parent.parent
LOCALE = "en_US.ISO-8859-1"
NAMES = ["données.wav", "清单.wav", "plain.wav"]


def _env_with(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUTF8", "PYTHONIOENCODING", "LC_CTYPE")}
    return {**env, "LANG": LOCALE, "LC_ALL": LOCALE, "PYTHONPATH": str(ROOT), **extra}


def _is_latin1(env: dict[str, str]) -> bool:
    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
                           env=env, capture_output=True, text=True)
    return probe.stdout.strip().lower().replace("-", "") == "iso88591"


def _locale_env() -> dict[str, str] | None:
    """The environment of a process under the locale: the system's where installed, else one compiled
    for this run (glibc reads locales from $LOCPATH first), so the behaviour is tested on any Debian."""
    if _is_latin1(_env_with({})):
        return _env_with({})
    if not shutil.which("localedef") or not Path("/usr/share/i18n/locales/en_US").exists():
        return None
    folder = tempfile.mkdtemp(prefix="sde-locale-")
    subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1", f"{folder}/{LOCALE}"], capture_output=True)
    env = _env_with({"LOCPATH": folder})
    return env if _is_latin1(env) else None


_LOCALE_ENV = _locale_env()


def _latin1_env() -> dict[str, str]:
    assert _LOCALE_ENV is not None
    return _LOCALE_ENV


pytestmark = pytest.mark.skipif(_LOCALE_ENV is None, reason=f"locale {LOCALE} is neither installed nor can be compiled")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("latin1")
    for name in NAMES:
        # stored under UTF-8 bytes, as a UTF-8 system wrote them
        sf.write(os.fsencode(str(folder)) + b"/" + name.encode("utf-8"),
                 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000), 16000)
    lines = [{"audio_filepath": name, "duration": 0.5, "text": "a tone", "pred_text": "a tone"} for name in NAMES]
    path = folder / "m.json"
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return path


def test_stats_finds_non_ascii_audio_under_a_latin1_locale(manifest):
    run = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--no-cache", "--json"],
                         capture_output=True, cwd=ROOT, env=_latin1_env(), timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["audio_missing"] == 0, run.stderr.decode("latin-1")[-2000:]
    assert b"missing" not in run.stderr


def test_the_server_plays_non_ascii_audio_under_a_latin1_locale(manifest):
    with SdeServer(str(manifest), env=_latin1_env()) as server:
        assert server.json("/api/summary", 200)["audio_missing"] == 0
        for uid in range(len(NAMES)):
            code, _, body = server.get(f"/audio/{uid}.wav")
            assert code == 200, body[:300]
            audio, sr = sf.read(io.BytesIO(body))
            assert sr == 16000 and len(audio) == 8000
    assert_no_traceback(server)


def test_a_missing_non_ascii_file_names_the_locale_and_the_fix(manifest, tmp_path):
    lines = [{"audio_filepath": "absente-é.wav", "duration": 0.5, "text": "a", "pred_text": "a"}]
    gone = tmp_path / "m.json"
    gone.write_text(json.dumps(lines[0], ensure_ascii=False) + "\n", encoding="utf-8")
    with SdeServer(str(gone), env=_latin1_env()) as server:
        answer = server.json("/audio/0.wav", 404)
    assert "absente-é.wav" in answer["error"]
    assert "ISO-8859-1" in answer["error"].upper() and "PYTHONUTF8=1" in answer["error"]
