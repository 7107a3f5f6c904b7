#!/usr/bin/env python3
"""The out-of-core engine at 1M-20M utterances: cold build, warm start and queries, through the CLI
and a real server.

    python benchmarks/bench_scale.py --sizes 1000000 10000000 20000000 [--data DIR] [--threads 2]
                                     [--memory-limit 2GB] [--part-size 32MB] [--keep] [--cache-dir DIR]
                                     [--only "contains + sorted page" ...] [--predictions] [--cold-page-cache]

Per size: a seeded manifest (benchmarks/make_manifest.py: two hypotheses, 10,000 speakers, ~12 words
per line; generated once into --data), then
1. cold build: `sde index MANIFEST --cache-dir FRESH --threads T --memory-limit L`: wall time, peak
   resident memory of sde and its workers together (sampled every 20 ms; RSS = everything resident,
   anon = without the file pages the kernel may drop, e.g. of mapped tables), the dataset's size on
   disk next to the manifest's;
2. warm start: `sde MANIFEST --port 0 --cache-dir SAME` until /api/summary answers, and its RSS;
   after the requests its RSS again, and the peak from its start until then (its warm-up's, where
   the requests come before the warm-up ends: --settle);
3. queries over HTTP (first request / the same again): a filtered + sorted page of /api/utterances,
   a breakdown by speaker (10,000 groups), the bootstrap comparison of the two hypotheses, and the
   Statistics page's data.
Prints one markdown table per measure; README's Performance section shows them. With --cache-dir
(one size), the dataset already built there by `sde index` is served as it is: no cold build, and it
is kept. --cold-page-cache drops Linux's page cache before each server starts (as root): a start
the morning after, its files on the disk.
"""

from __future__ import annotations

import argparse
import compileall
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent


def compiled(tree: Path) -> None:
    """sde's bytecode written beside its sources, as pip writes it at install: with
    PYTHONDONTWRITEBYTECODE set (as on some machines) every start of a checkout compiled sde's
    modules again, ~0.35 s of a 10M-utterance warm start that no installed sde pays."""
    compileall.compile_dir(tree / "sde", quiet=1)


def _page(filter: str, sort: str, page: int = 0) -> str:
    """A page of 50 utterances of a filtered, sorted view (the first by default)."""
    return "/api/utterances?" + urlencode({"filter": filter, "sort": sort, "page": page, "page_size": 50})


# A request's path, or a function of the dataset's size giving it.
QUERIES: dict[str, str | Callable[[int], str]] = {
    "filtered + sorted page": _page("{wer} > 20 && {duration} < 10", "-cer"),
    "contains + sorted page": _page('{text} contains "the"', "duration"),
    "another search of that column, 3 s later": _page('{text} contains "er"', "-wer"),
    "a phrase in that column": _page('{text} contains "of the"', "duration"),
    "a regex within words": _page('{text} matches "th(e|em)"', "duration"),
    "a regex that may span words": _page('{text} matches "th.s"', "duration"),
    "that regex, deep in its view (row 500,000 at 10M)": lambda size: _page('{text} matches "th.s"', "-duration",
                                                                          page=size // 1000),
    "a phrase with a rare word": _page('{text} contains "clipuzir the"', "duration"),
    "a regex whose ways across words are in most lines": _page('{text} matches "e.t"', "duration"),
    "a regex tested on most lines (a.*b: its .* may hold spaces)": _page('{text} matches "a.*b"', "-duration"),
    "a search of the first hypothesis": _page('{pred_text} contains "the"', "-wer"),
    "a search of the second hypothesis": _page('{pred_text_b} contains "the"', "-wer"),
    "every utterance sorted by speaker": _page("", "speaker"),
    "every utterance sorted by transcript": _page("", "-text"),
    "page 100 of every utterance by -snr (rows 5,000-5,050)": _page("", "-snr", page=100),
    "a page in the middle by -snr (rows 5,000,000-5,000,050 at 10M)": lambda size: _page("", "-snr", page=size // 100),
    "a page in the middle by transcript": lambda size: _page("", "text", page=size // 100),
    "a search, deep in its view by transcript": lambda size: _page('{text} contains "the"', "-text", page=size // 400),
    "breakdown by speaker": "/api/breakdown?" + urlencode({"by": "speaker", "sort": "-wer", "page_size": 50}),
    "breakdown by language (4 groups)": "/api/breakdown?" + urlencode({"by": "lang", "sort": "-wer", "page_size": 50}),
    "breakdown by duration bucket": "/api/breakdown?" + urlencode({"by": "duration_bucket", "sort": "-wer",
                                                                   "page_size": 50}),
    "breakdown of a filtered view by language": "/api/breakdown?" + urlencode(
        {"by": "lang", "sort": "-wer", "page_size": 50, "filter": "{duration} > 3"}),
    "bootstrap comparison": "/api/compare?" + urlencode({"n_resamples": 1000, "seed": 0}),
    "errors of the first hypothesis": "/api/errors?limit=100",
    "vocabulary page by count": "/api/vocabulary?" + urlencode({"sort": "-count", "page_size": 50}),
    "summary": "/api/summary",
}


# Seconds a user takes before the request (reading the last answer): the server's background work
# after a search (reading the searched column whole when it fits) runs meanwhile.
PAUSE_BEFORE = {"another search of that column, 3 s later": 3.0}


def manifest_of(size: int, data: Path) -> Path:
    path = data / f"scale_{size}.json"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_manifest.py"), str(path), "--utterances",
                        str(size), "--hypotheses", "2", "--speakers", "10000", "--seed", "0", "--quiet"], check=True)
    return path


def _memory_of_tree(pid: int) -> tuple[int, int]:
    """(RSS, anonymous RSS) in bytes of a process and its children."""
    rss = anon = 0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                status = Path(f"/proc/{p.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon += int(line.split()[1]) * 1024
    except psutil.Error:
        pass
    return rss, anon


class PeakSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.rss, self.anon = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, anon = _memory_of_tree(self.pid)
            self.rss, self.anon = max(self.rss, rss), max(self.anon, anon)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def predictions_of(manifest: Path) -> Path:
    """A predictions file for ``manifest`` (as `sde transcribe` writes one: audio path and pred_text,
    here the reference with every seventh word dropped), written once beside it."""
    path = manifest.with_name(manifest.stem + "_predictions.json")
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    with open(manifest, "rb") as lines, open(tmp, "wb") as out:
        for line in lines:
            row = orjson.loads(line)
            words = row["text"].split()
            out.write(orjson.dumps({"audio_filepath": row["audio_filepath"],
                                    "pred_text": " ".join(w for k, w in enumerate(words) if k % 7 != 6)}) + b"\n")
    tmp.replace(path)
    return path


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def cold_build(manifest: Path, cache: Path, engine_args: list[str]) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sde.cli", "index", str(manifest), "--cache-dir", str(cache),
                             *engine_args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    sampler = PeakSampler(proc.pid)
    _, stderr = proc.communicate()
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(stderr[-3000:])
    return {"seconds": time.perf_counter() - started, "peak_rss": sampler.rss, "peak_anon": sampler.anon,
            "disk": folder_bytes(cache)}


class Server:
    def __init__(self, manifest: Path, cache: Path, engine_args: list[str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "sde.cli", str(manifest), "--port", "0", "--cache-dir",
                                      str(cache), *engine_args], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.loaded_s: float | None = None
        self.searches_ready_s: float | None = None
        self.phrases_ready_s: float | None = None
        self.sorts_ready_s: float | None = None
        self.regexes_ready_s: float | None = None
        self.pages_ready_s: float | None = None
        self.warmed_s: float | None = None  # the warm-up's last line ("transcripts in memory")

        def watch_stderr() -> None:
            for line in self.proc.stderr:  # type: ignore[union-attr]
                if "loaded from cache" in line and self.loaded_s is None:
                    self.loaded_s = time.perf_counter() - self.started
                if line.startswith("searches ready"):
                    self.searches_ready_s = time.perf_counter() - self.started
                if line.startswith("phrases ready"):
                    self.phrases_ready_s = time.perf_counter() - self.started
                if line.startswith("sorts ready"):
                    self.sorts_ready_s = time.perf_counter() - self.started
                if line.startswith("regexes across words ready"):
                    self.regexes_ready_s = time.perf_counter() - self.started
                if line.startswith(("pages ready", "warning: the pages were not prepared")):
                    self.pages_ready_s = time.perf_counter() - self.started
                if line.startswith("transcripts in memory"):
                    self.warmed_s = time.perf_counter() - self.started

        threading.Thread(target=watch_stderr, daemon=True).start()
        self.sampler = PeakSampler(self.proc.pid)
        self.port = None
        for line in self.proc.stdout:  # type: ignore[union-attr]
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = int(found.group(1))
                break
        if self.port is None:
            raise RuntimeError("the server did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        self.get("/api/summary")
        self.ready_s = time.perf_counter() - self.started

    def settle(self, how: float | str) -> None:
        """Wait ``how`` seconds, or ("ready") until the server's warm-up has ended: its searches,
        phrases, sorts and pages ready, its transcripts in memory where they fit (its last line)."""
        if how != "ready":
            time.sleep(float(how))
            return
        deadline = time.perf_counter() + 600
        while self.warmed_s is None and time.perf_counter() < deadline:
            time.sleep(0.1)

    def get(self, path: str, *, until_done: bool = False) -> tuple[float, int]:
        """(seconds, bytes) of one request; ``until_done``: asked again while it answers 202 (work
        running in the background: /api/suspicious, /api/tts, ...), the seconds until it answered."""
        t = time.perf_counter()
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if not (until_done and response.status == 202):
                break
            time.sleep(float(response.getheader("Retry-After") or 1))
        elapsed = time.perf_counter() - t
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:300]!r}")
        return elapsed, len(body)

    def stop(self) -> None:
        self.sampler.stop()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def drop_page_cache() -> None:
    """Write dirty pages out and drop the clean ones from Linux's page cache (needs root)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError as e:
        raise SystemExit(f"--cold-page-cache: cannot drop the page cache ({e}); run as root on Linux") from None


def _settle(text: str) -> float | str:
    if text == "ready":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--settle takes seconds or 'ready', not {text!r}") from None


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--data", type=Path, default=Path("/tmp/sde-bench-scale"))
    ap.add_argument("--threads", default="2")
    ap.add_argument("--memory-limit", default="2GB", help="sde's --memory-limit (default 2GB); none: sde's default")
    ap.add_argument("--part-size", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the built datasets (default: removed after each size)")
    ap.add_argument("--only", nargs="+", choices=list(QUERIES), default=list(QUERIES), metavar="REQUEST",
                    help=f"measure only these requests (default: all of {', '.join(QUERIES)})")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="serve the dataset already built in DIR (`sde index MANIFEST --cache-dir DIR`) "
                         "instead of building one: measures the warm start and queries only (one size)")
    ap.add_argument("--predictions", action="store_true",
                    help="also merge a predictions file (`--predictions`, one line per utterance, written once "
                         "beside the manifest) into the build and the server")
    ap.add_argument("--settle", type=_settle, default=5.0,
                    help="seconds to wait after the server first answers, before the queries: its start-up "
                         "work (the query engine's warm-up; up to 2M utterances the audio-file check) runs in "
                         "the background meanwhile, as it does while a user opens the browser (default 5); "
                         "'ready': until the server says its searches and phrases are ready (transcripts indexed)")
    ap.add_argument("--cold-page-cache", action="store_true",
                    help="drop the OS page cache before the server starts (Linux, as root): a start the morning "
                         "after, when the build's files come from the disk")
    args = ap.parse_args()
    compiled(ROOT)
    args.data.mkdir(parents=True, exist_ok=True)
    if args.cache_dir is not None and len(args.sizes) != 1:
        ap.error("--cache-dir serves one dataset: give one size")
    engine_args = ["--threads", args.threads]
    if args.memory_limit.lower() != "none":
        engine_args += ["--memory-limit", args.memory_limit]
    if args.part_size:
        engine_args += ["--part-size", args.part_size]
    builds, starts, queries = [], [], []
    for size in args.sizes:
        manifest = manifest_of(size, args.data)
        cache = args.cache_dir or args.data / f"cache_{size}"
        sde_args = engine_args + (["--predictions", str(predictions_of(manifest))] if args.predictions else [])
        if args.cache_dir is None:
            built = cold_build(manifest, cache, sde_args)
            builds.append(f"| {size:,} | {mb(manifest.stat().st_size)} | {built['seconds']:.1f} s | "
                          f"{mb(built['peak_rss'])} / {mb(built['peak_anon'])} | {mb(built['disk'])} |")
            print(builds[-1], flush=True)
        if args.cold_page_cache:
            drop_page_cache()
        server = Server(manifest, cache, sde_args)
        peak = PeakSampler(server.proc.pid)  # from the start through the requests: the warm-up's too
        try:
            rss, anon = _memory_of_tree(server.proc.pid)
            loaded = f"{server.loaded_s:.2f} s" if server.loaded_s is not None else "(not from the cache)"
            starts.append(f"| {size:,} | {loaded} | {server.ready_s:.2f} s | {mb(rss)} / {mb(anon)} |")
            print(starts[-1], flush=True)
            server.settle(args.settle)
            ready = [f"{t:.1f} s" if t is not None else "(not yet)"
                     for t in (server.searches_ready_s, server.phrases_ready_s, server.sorts_ready_s,
                               server.regexes_ready_s)]
            starts[-1] += f" {' / '.join(ready)} |"
            for name in args.only:
                path = QUERIES[name](size) if callable(QUERIES[name]) else QUERIES[name]
                time.sleep(PAUSE_BEFORE.get(name, 0.0))
                first, size_bytes = server.get(path)
                again, _ = server.get(path)
                queries.append(f"| {size:,} | {name} | {first * 1000:,.0f} / {again * 1000:,.0f} | {size_bytes / 1024:,.0f} KB |")
                print(queries[-1], flush=True)
            rss, anon = _memory_of_tree(server.proc.pid)
            peak.stop()
            starts[-1] += f" {mb(rss)} / {mb(anon)} | {mb(peak.rss)} / {mb(peak.anon)} |"
        finally:
            peak.stop()
            server.stop()
        if not args.keep and args.cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)
    print("\n| utterances | manifest | cold build (`sde index`) | peak memory: RSS / anon | dataset on disk |")
    print("|---:|---:|---:|---:|---:|")
    print("\n".join(builds))
    print("\n| utterances | warm start: dataset loaded | server answers /api/summary | server memory: RSS / anon "
          "| searches / phrases / sorts / regexes across words ready | after the requests | peak until then |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(starts))
    print("\n| utterances | request | first / again (ms) | answer |")
    print("|---:|---|---:|---:|")
    print("\n".join(queries))
    print(f"\ncommand: python benchmarks/bench_scale.py --sizes {' '.join(map(str, args.sizes))} "
          f"--threads {args.threads} --memory-limit {args.memory_limit} --settle {args.settle}"
          f"{' --predictions' if args.predictions else ''}{' --cold-page-cache' if args.cold_page_cache else ''}; "
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
