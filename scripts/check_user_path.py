"""The new user's path, checked from outside: `sde demo` from a given installation serves every page.

    python scripts/check_user_path.py /path/to/venv/bin/sde

Starts `sde demo --port 0` with a private cache folder, waits until /api/summary answers, GETs every
page, the utterance table, one Ogg Vorbis segment and one signal figure, then stops the server by
PID. Standard library only, so it runs with any Python, before or without the project's own
dependencies. Exits 1 with one line naming the failed step (and the server's output) on any failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

PAGES = ("/", "/samples", "/utterance/0", "/vocabulary", "/errors", "/comparison", "/problems", "/rules",
         "/duplicates", "/tts")
START_TIMEOUT_S = 120


class CheckFailed(Exception):
    pass


def _get(url: str, timeout: float = 30) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def _expect(url: str, content_type: str) -> bytes:
    status, ctype, body = _get(url)
    if status != 200 or not ctype.startswith(content_type):
        raise CheckFailed(f"GET {url} answered {status} {ctype!r}, expected 200 {content_type}: {body[:300]!r}")
    return body


class _Server:
    """`sde demo --port 0` in the background, its output collected for the failure message."""

    def __init__(self, sde: str, cache_dir: str) -> None:
        self.output: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sde, "demo", "--port", "0", "--cache-dir", cache_dir],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            m = re.search(r"serving on (http://\S+)", line)
            if m and self.url is None:
                self.url = m.group(1).rstrip("/")
                self._ready.set()
        self._ready.set()

    def wait_url(self) -> str:
        self._ready.wait(START_TIMEOUT_S)
        if self.url is None:
            status = self.proc.poll()
            if status is not None:
                raise CheckFailed(f"`sde demo` exited with status {status} before serving")
            raise CheckFailed(f"`sde demo` did not start serving within {START_TIMEOUT_S} s")
        return self.url

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise CheckFailed("`sde demo` did not stop within 15 s of SIGTERM") from None
        return self.proc.returncode


def check(sde: str) -> None:
    with tempfile.TemporaryDirectory(prefix="sde-user-path-") as cache_dir:
        server = _Server(sde, cache_dir)
        try:
            base = server.wait_url()
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    summary = json.loads(_expect(base + "/api/summary", "application/json"))
                    break
                except (CheckFailed, OSError):
                    if time.monotonic() > deadline or server.proc.poll() is not None:
                        raise
                    time.sleep(0.5)
            if summary.get("utterances", 0) < 1:
                raise CheckFailed(f"/api/summary reports no utterances: {summary}")
            for page in PAGES:
                html = _expect(base + page, "text/html")
                if b"_dash-renderer" not in html and b"dash_renderer" not in html:
                    raise CheckFailed(f"GET {page} is not the Dash app shell: {html[:300]!r}")
            _expect(base + "/_dash-layout", "application/json")
            rows = json.loads(_expect(base + "/api/utterances?page_size=5", "application/json"))["rows"]
            utt = rows[0]["id"]
            ogg = _expect(f"{base}/audio/{utt}.ogg", "audio/ogg")
            if not ogg.startswith(b"OggS"):
                raise CheckFailed(f"/audio/{utt}.ogg is not Ogg data: {ogg[:16]!r}")
            signal_fig = json.loads(_expect(f"{base}/api/utterances/{utt}/signal", "application/json"))
            if not signal_fig.get("figure", {}).get("data"):
                raise CheckFailed(f"/api/utterances/{utt}/signal has no traces")
        except CheckFailed as e:
            server.stop()
            tail = "\n    ".join(server.output[-30:])
            raise CheckFailed(f"{e}\n  server output:\n    {tail}") from None
        server.stop()
        print(f"user path OK: {sde} demo served {summary['utterances']} utterances, "
              f"{len(PAGES)} pages, audio and signal at {base}")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        check(sys.argv[1])
    except CheckFailed as e:
        print(f"USER PATH FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
