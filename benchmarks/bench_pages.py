#!/usr/bin/env python3
"""Every page of the app in a real browser, at scale: how long each takes to be ready.

    python benchmarks/bench_pages.py MANIFEST --cache-dir DIR [--memory-limit 2GB] [--threads 2]
                                     [--settle ready|SECONDS] [--repeats 2] [--only Samples ...]

Serves the build kept in DIR (``sde index MANIFEST --cache-dir DIR`` makes one; benchmarks/bench_scale.py
keeps its own) as ``sde MANIFEST --cache-dir DIR`` does, waits until its warm-up has ended (its
last line, ``transcripts in memory``; or SECONDS), then opens each page in headless Chromium (Debian's, driven by Playwright) and times it
from the navigation to the end of the last request the page made to the server, once the page has
been quiet (no request in flight, no Dash component loading) for half a second; each page in a new
tab, the browser's cache of scripts kept, as a user moving between pages. Reports, per page, the
time of each visit, and of its last visit the requests it made, the bytes the server sent for them
(compressed, as on the wire; scripts the browser kept cost none) and any error (a response of 400
or more, an error in the console): a page that fails is reported, not timed. Then how long the
suspicious-utterance checks that the Statistics page started in the background still took, and
the server's peak memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import Server  # noqa: E402  (a sibling script, not a package)

CHROMIUM = os.environ.get("SDE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
QUIET_S = 0.5
PAGE_TIMEOUT_S = 120.0


def pages(first_id: str) -> dict[str, str]:
    """The pages a user visits, by name: each page of the app, and the views that search or sort."""
    search = urlencode({"filter": '{text} contains "the" && {wer} > 20', "sort": "-wer"})
    return {
        "Statistics": "/",
        "Samples": "/samples",
        "Samples, searched and sorted": f"/samples?{search}",
        "Inspector": f"/utterance/{first_id}",
        "Inspector in a searched view": f"/utterance/{first_id}?{search}",
        "Vocabulary": "/vocabulary",
        "Errors": "/errors",
        "Comparison": "/comparison",
        "Problems": "/problems",
        "Rules": "/rules",
        "Duplicates": "/duplicates",
        "Duplicates, nearly the same": "/duplicates?kind=near",
        "TTS readiness": "/tts",
    }


class Visit:
    """One page load, watched: the requests to the server in flight, when the last one ended, errors."""

    def __init__(self, page, base: str) -> None:
        self.page, self.base = page, base
        self.in_flight: set = set()
        self.last_end = 0.0
        self.requests = 0
        self.bytes = 0
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", lambda r: self._finished(r, failed=True))
        page.on("console", lambda m: self.errors.append(f"console: {m.text[:200]}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {str(e)[:200]}"))

    def _request(self, request) -> None:
        if request.url.startswith(self.base):
            self.in_flight.add(request)
            self.requests += 1

    def _finished(self, request, failed: bool = False) -> None:
        if request not in self.in_flight:
            return
        self.in_flight.discard(request)
        self.last_end = time.perf_counter()
        if failed:
            self.errors.append(f"failed: {request.url[len(self.base):][:120]}")
            return
        response = request.response()
        if response is not None:
            if response.status >= 400:
                self.errors.append(f"{response.status}: {request.url[len(self.base):][:120]}")
            try:  # as it came over the wire (compressed): what a slow link carries
                self.bytes += request.sizes()["responseBodySize"]
            except Exception:  # noqa: BLE001 - sizes of a request the browser did not keep (a redirect)
                pass

    def run(self, path: str) -> float:
        """Seconds from the navigation to the end of its last request, once quiet."""
        started = time.perf_counter()
        self.page.goto(self.base + path, wait_until="load", timeout=PAGE_TIMEOUT_S * 1000)
        deadline = started + PAGE_TIMEOUT_S
        quiet_since = None
        while time.perf_counter() < deadline:
            busy = bool(self.in_flight) or self.page.evaluate(
                "() => !!document.querySelector('[data-dash-is-loading=\"true\"]')")
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.perf_counter()
            elif time.perf_counter() - quiet_since >= QUIET_S:
                return max(self.last_end, started) - started
            self.page.wait_for_timeout(20)
        self.errors.append(f"still busy after {PAGE_TIMEOUT_S:.0f} s")
        return PAGE_TIMEOUT_S


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--cache-dir", type=Path, required=True, help="the folder holding the manifest's build")
    parser.add_argument("--memory-limit", default=None, help="as sde's --memory-limit (default: none)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--settle", default="ready", help="'ready' (the warm-up's last line) or seconds")
    parser.add_argument("--repeats", type=int, default=2, help="visits of each page (the first pays for its data)")
    parser.add_argument("--only", nargs="*", default=None, help="pages by name (default: all)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    engine_args = [*(["--threads", str(args.threads)] if args.threads else []),
                   *(["--memory-limit", args.memory_limit] if args.memory_limit else [])]
    server = Server(args.manifest, args.cache_dir, engine_args)
    try:
        print(f"server answers after {server.ready_s:.1f} s", flush=True)
        server.settle(args.settle if args.settle == "ready" else float(args.settle))
        if server.warmed_s is not None:
            print(f"warm-up done after {server.warmed_s:.1f} s (pages ready after {server.pages_ready_s:.1f} s, "
                  f"sorts after {server.sorts_ready_s:.1f} s)",
                  flush=True)
        base = f"http://127.0.0.1:{server.port}"
        import orjson
        import urllib.request

        with urllib.request.urlopen(base + "/api/utterances?page_size=1", timeout=600) as response:
            first = orjson.loads(response.read())["rows"][0]
        first_id = str(first.get("id", first.get("utterance_id", 0)))
        chosen = {name: path for name, path in pages(first_id).items() if not args.only or name in args.only}
        print("\n| page | " + " | ".join(f"visit {i + 1} (s)" for i in range(args.repeats))
              + " | requests | KB sent | errors |", flush=True)
        print("|---|" + "---:|" * args.repeats + "---:|---:|---|", flush=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            for name, path in chosen.items():
                times, visit = [], None
                for _ in range(args.repeats):
                    page = context.new_page()
                    visit = Visit(page, base)
                    times.append(visit.run(path))
                    page.close()
                assert visit is not None
                errors = "; ".join(dict.fromkeys(visit.errors)) or "none"
                print(f"| {name} (`{path[:60]}`) | " + " | ".join(f"{t:.2f}" for t in times)
                      + f" | {visit.requests} | {visit.bytes / 1024:,.0f} | {errors} |", flush=True)
            browser.close()
        # the Statistics page started the suspicious-utterance checks in the background: when they end
        waited = time.perf_counter()
        server.get("/api/suspicious", until_done=True)
        print(f"\nsuspicious-utterance checks answered {time.perf_counter() - waited:.1f} s after the pages; "
              f"server peak memory {server.sampler.rss / 2**30:.1f} GiB RSS, {server.sampler.anon / 2**30:.1f} GiB anon",
              flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
