"""Audio faults against the real server (`python -m sde.cli MANIFEST --port 0 --no-cache`).

One manifest holds a good espeak-ng recording and every way an audio file goes wrong in the wild:
missing, zero bytes, a truncated WAV (header claims more data), FLAC bytes named .wav, text named
.wav, a directory, an offset beyond the end, a file deleted while the server runs, and a file
with permissions 000; and an offset and a duration no recording has (1e308 s), which the manifest
reader refuses (bad lines, listed with the fix: they once reached the audio routes). `/audio/ID.wav`,
`/audio/ID.ogg` and `/api/utterances/ID/signal` must answer a JSON error that names the file and
says why, with a 4xx status (never a 500), and the server must keep serving everything else.

`SdeServer` (below) is shared with tests/test_security.py and tests/test_load.py.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 90
REQUEST_TIMEOUT_S = 30


class SdeServer:
    """The real CLI in a subprocess; `url`, `port`, `pid`, raw HTTP helpers, captured output.

    Requests go through http.client with the path sent exactly as given (no client-side
    normalisation of `..` or percent-escapes), to 127.0.0.1 only.
    """

    def __init__(self, *args: str, env: dict | None = None, port_zero: bool = True,
                 no_cache: bool = True) -> None:
        cmd = [sys.executable, "-m", "sde.cli", *args]
        if port_zero:
            cmd += ["--port", "0"]
        if no_cache:
            cmd += ["--no-cache"]
        self.cmd = cmd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **(env or {})}
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.url: str | None = None
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "SdeServer":
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        got_url = threading.Event()

        def read_out() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.stdout.append(line)
                m = re.search(r"(http://127\.0\.0\.1:(\d+))/", line)
                if m and self.url is None:
                    self.url, self.port = m.group(1), int(m.group(2))
                    got_url.set()

        def read_err() -> None:
            for line in self.proc.stderr:  # type: ignore[union-attr]
                self.stderr.append(line)

        threading.Thread(target=read_out, daemon=True).start()
        threading.Thread(target=read_err, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not got_url.is_set() and self.proc.poll() is None and time.monotonic() < deadline:
            got_url.wait(0.05)
        if self.url is None:
            self.stop()
            raise AssertionError(f"sde did not print its URL ({' '.join(self.cmd)}):\n"
                                 f"stdout: {''.join(self.stdout)}\nstderr: {''.join(self.stderr)}")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C: the documented way to stop it
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
            self.proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- HTTP --------------------------------------------------------------------------------
    def request(self, path: str, method: str = "GET", headers: dict | None = None,
                body: bytes | None = None) -> tuple[int, dict, bytes]:
        """(status, headers with lower-case names, body) of one request sent verbatim."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            # skip_accept_encoding: keep bodies plain; putrequest sends the path untouched.
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        return self.request(path, headers=headers)

    def json(self, path: str, status: int | None = None, headers: dict | None = None):
        code, hdrs, body = self.get(path, headers)
        if status is not None:
            assert code == status, (path, code, body[:500])
        assert hdrs.get("content-type", "").startswith("application/json"), (path, hdrs, body[:300])
        return json.loads(body)

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.pid).memory_info().rss


def assert_no_traceback(server: SdeServer) -> None:
    text = "".join(server.stdout) + "".join(server.stderr)
    assert "Traceback" not in text, text[-3000:]


# ---------------------------------------------------------------------------------------------


def _wav_ok(body: bytes) -> tuple[np.ndarray, int]:
    import io

    data, sr = sf.read(io.BytesIO(body), dtype="float32")
    assert sr > 0 and len(data) > 0
    return data, sr


CASES = {
    # case name (see the fixture): (expected status, words the error message must contain)
    "missing": (404, "not found"),
    "empty": (422, "zero-byte"),
    "text": (422, "not a sound file"),
    "directory": (422, "directory"),
    "offset": (422, "beyond the end"),
    "truncated_past_data": (422, "truncated"),
    # The whole segment of a WAV cut in half: refused, not silently half as long (README).
    "truncated": (422, "truncated file: expected audio up to"),
    # os.stat raises ValueError for it, not OSError: the routes answered 500
    "nul_in_path": (404, "holds a nul character"),
}
# Lines after the served ones, refused when the manifest is read: case name → the field at 1e308 s.
BEYOND_ANY_RECORDING = {"offset_huge": "offset", "duration_huge": "duration"}
AUDIO_URLS = ["/audio/{}.wav", "/audio/{}.ogg", "/api/utterances/{}/signal"]


@pytest.fixture(scope="module")
def faulty(audio_dir, tmp_path_factory):
    """(server, ids by case name, files by case name) for a manifest of broken audio."""
    src_dir, durations = audio_dir
    d = tmp_path_factory.mktemp("faulty")
    good = d / "good.wav"
    shutil.copy(src_dir / "one.wav", good)
    good_dur = durations["one.wav"]
    info = sf.info(str(good))
    files: dict[str, Path] = {"good": good}

    files["missing"] = d / "missing.wav"
    (d / "empty.wav").write_bytes(b"")
    files["empty"] = d / "empty.wav"
    raw = good.read_bytes()
    files["truncated"] = d / "truncated.wav"
    files["truncated"].write_bytes(raw[: 44 + (len(raw) - 44) // 2])  # header still claims it all
    files["truncated_past_data"] = files["truncated"]
    data, sr = sf.read(str(good), dtype="float32")
    files["flac_named_wav"] = d / "flac_named.wav"
    sf.write(str(files["flac_named_wav"]), data, sr, format="FLAC")
    files["text"] = d / "text.wav"
    files["text"].write_text("this is not audio at all, just words\n" * 20)
    files["directory"] = d / "a_directory.wav"
    files["directory"].mkdir()
    files["offset"] = good
    files["deleted"] = d / "deleted_later.wav"
    shutil.copy(good, files["deleted"])
    files["perm000"] = d / "perm000.wav"
    shutil.copy(good, files["perm000"])
    os.chmod(files["perm000"], 0)
    files["truncated_inside"] = files["truncated"]
    files["nul_in_path"] = Path(f"{d}/ba\\x00d.wav")  # as messages write it; the line holds the character

    rows = []
    order = ["good", "missing", "empty", "truncated", "truncated_past_data", "flac_named_wav", "text",
             "directory", "offset", "deleted", "perm000", "truncated_inside", "nul_in_path"]
    for name in order:
        offset, duration = 0.0, good_dur
        if name == "offset":
            offset = good_dur + 5.0
        if name == "truncated_past_data":
            offset = good_dur * 0.9  # beyond the half that is really there
            duration = 0.05
        if name == "truncated_inside":
            duration = good_dur * 0.4  # inside the half that is there
        path = str(files[name]) if name != "nul_in_path" else f"{d}/ba\x00d.wav"
        rows.append({"audio_filepath": path, "offset": offset, "duration": duration,
                     "text": f"{name} hello world", "pred_text": "hello world"})
    for name, field in BEYOND_ANY_RECORDING.items():
        rows.append({"audio_filepath": str(good), "offset": 0.0, "duration": good_dur, field: 1e308,
                     "text": f"{name} hello world", "pred_text": "hello world"})
    manifest = d / "faulty.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ids = {name: i for i, name in enumerate(order)}
    assert info.frames > 0
    with SdeServer(str(manifest)) as server:
        yield server, ids, files
    os.chmod(files["perm000"], 0o644)
    assert_no_traceback(server)


def _check_error(server: SdeServer, path: str, status: int, file: Path, words: str) -> dict:
    code, hdrs, body = server.get(path)
    assert code == status, (path, code, body[:500])
    assert 400 <= code < 500
    assert hdrs["content-type"].startswith("application/json"), hdrs
    payload = json.loads(body)
    assert str(file) in payload["error"], payload
    assert words in payload["error"].lower(), payload
    return payload


def _still_serving(server: SdeServer, ids: dict) -> None:
    code, hdrs, body = server.get(f"/audio/{ids['good']}.wav")
    assert code == 200 and hdrs["content-type"] == "audio/wav"
    _wav_ok(body)
    assert server.json("/api/summary", 200)["utterances"] == len(ids)
    assert server.alive


@pytest.mark.parametrize("name", list(CASES))
def test_broken_audio_is_a_json_4xx_naming_the_file(faulty, name):
    server, ids, files = faulty
    status, words = CASES[name]
    uid = ids[name]
    payloads = [_check_error(server, url.format(uid), status, files[name], words)
                 for url in AUDIO_URLS]
    assert {p["id"] for p in payloads} == {uid}
    # twice: a remembered failure answers the same
    _check_error(server, f"/audio/{uid}.wav", status, files[name], words)
    # the rest of the utterance still works: its row and alignment
    row = server.json(f"/api/utterances/{uid}", 200)
    assert row["id"] == uid and row["alignment"]["pred_text"]
    _still_serving(server, ids)


def test_good_audio_and_range(faulty):
    server, ids, _ = faulty
    code, hdrs, body = server.get(f"/audio/{ids['good']}.wav")
    assert code == 200
    _wav_ok(body)
    code, hdrs, part = server.get(f"/audio/{ids['good']}.wav", {"Range": "bytes=0-99"})
    assert code == 206 and part == body[:100] and hdrs["content-range"] == f"bytes 0-99/{len(body)}"
    code, _, _ = server.get(f"/audio/{ids['good']}.wav", {"Range": f"bytes={len(body) + 10}-"})
    assert code == 416
    sig = server.json(f"/api/utterances/{ids['good']}/signal", 200)
    assert sig["truncated"] is False and sig["figure"]["data"]


def test_truncated_wav_plays_a_segment_inside_its_data_and_says_so(faulty):
    """A segment that lies inside what a truncated file holds is served, flagged `truncated`."""
    server, ids, _ = faulty
    code, _, body = server.get(f"/audio/{ids['truncated_inside']}.wav")
    assert code == 200, body[:300]
    data, sr = _wav_ok(body)
    good, _ = _wav_ok(server.get(f"/audio/{ids['good']}.wav")[2])
    assert len(data) == pytest.approx(0.4 * len(good), abs=sr * 0.01)
    sig = server.json(f"/api/utterances/{ids['truncated_inside']}/signal", 200)
    assert sig["truncated"] is True


def test_truncated_wav_error_says_expected_and_actual_length(faulty):
    server, ids, files = faulty
    good_s = sf.info(str(files["good"])).duration
    payload = _check_error(server, f"/audio/{ids['truncated']}.wav", 422, files["truncated"],
                           "truncated")
    assert payload["reason"] == "truncated"
    expected = re.search(r"expected audio up to ([\d.]+) s", payload["error"])
    has = re.search(r"the file has ([\d.]+) s", payload["error"])
    assert expected and has, payload
    assert float(expected.group(1)) == pytest.approx(good_s, abs=0.01)
    assert float(has.group(1)) == pytest.approx(good_s / 2, abs=0.01)


@pytest.mark.parametrize("name,field", list(BEYOND_ANY_RECORDING.items()))
def test_times_no_recording_has_are_bad_lines_naming_field_value_and_fix(faulty, name, field):
    """1e308 s once reached the audio routes and overflowed their frame arithmetic (an HTML 500,
    then a 422); the reader now refuses the line, and the Problems page says which field and why."""
    server, ids, files = faulty
    line = len(ids) + 1 + list(BEYOND_ANY_RECORDING).index(name)
    problems = [p for p in server.json("/api/problems", 200)["rows"] if p["line"] == line]
    assert len(problems) == 1, problems
    assert f'"{field}" is 1e+308 seconds, longer than any recording' in problems[0]["reason"]
    assert "another unit than seconds" in problems[0]["reason"]
    _still_serving(server, ids)


def test_flac_bytes_named_wav_are_decoded_by_content(faulty):
    server, ids, _ = faulty
    code, hdrs, body = server.get(f"/audio/{ids['flac_named_wav']}.wav")
    assert code == 200, body[:300]
    data, _ = _wav_ok(body)
    good, _ = _wav_ok(server.get(f"/audio/{ids['good']}.wav")[2])
    assert len(data) == len(good)
    np.testing.assert_allclose(data, good, atol=1e-3)


def test_file_deleted_while_serving(faulty):
    server, ids, files = faulty
    uid = ids["deleted"]
    code, _, body = server.get(f"/audio/{uid}.wav")
    assert code == 200
    _wav_ok(body)
    assert server.get(f"/api/utterances/{uid}/signal")[0] == 200
    files["deleted"].unlink()
    _check_error(server, f"/audio/{uid}.wav", 404, files["deleted"], "not found")
    _check_error(server, f"/api/utterances/{uid}/signal", 404, files["deleted"], "not found")
    _still_serving(server, ids)


def test_permission_denied(faulty):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading, so there is no "
                    "permission error to observe")
    server, ids, files = faulty
    uid = ids["perm000"]
    _check_error(server, f"/audio/{uid}.wav", 422, files["perm000"], "permission denied")
    _check_error(server, f"/api/utterances/{uid}/signal", 422, files["perm000"], "permission denied")
    _still_serving(server, ids)


def test_unknown_ids_are_json_404(faulty):
    server, ids, _ = faulty
    for uid in (len(ids), 99999):
        for path in (f"/audio/{uid}.wav", f"/api/utterances/{uid}/signal"):
            code, hdrs, body = server.get(path)
            assert code == 404 and "no utterance" in json.loads(body)["error"], (path, body)
    _still_serving(server, ids)


def test_an_audio_file_named_by_a_file_url_plays_and_is_counted_present(tmp_path):
    # read as a URL it was "file not found" (404), audio_exists null and never counted missing
    wav = tmp_path / "my file.wav"
    sf.write(wav, np.zeros(8000, dtype=np.float32), 16000)
    rows = [{"audio_filepath": wav.as_uri(), "duration": 0.5, "text": "a"},
            {"audio_filepath": (tmp_path / "gone.wav").as_uri(), "duration": 0.5, "text": "b"}]
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with SdeServer(str(manifest)) as server:
        code, hdrs, body = server.get("/audio/0.wav")
        assert code == 200 and hdrs["content-type"] == "audio/wav"
        summary = server.json("/api/summary", 200)
        assert summary["audio_missing"] == 1 and summary["audio_missing_files"] == 1
        assert server.json("/api/utterances/0", 200)["audio_exists"] is True
        assert server.get("/audio/1.wav")[0] == 404
    assert_no_traceback(server)
