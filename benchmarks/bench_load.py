"""Load benchmark: cold load with all metrics, warm load from cache, peak RSS, page queries.

    python benchmarks/bench_load.py --sizes 100000 1000000
    python benchmarks/bench_load.py --sizes 1000000 --mean-words 12   # the generator's default lines

Each measurement runs in a fresh subprocess so peak RSS is that of one sde process. Manifests are
generated with benchmarks/make_manifest.py (seeded; ~31 words per utterance so that 1M lines make the
~505 MB manifest of DESIGN.md's targets) into benchmarks/output/ unless they exist.
Prints a markdown table for the README.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from sde.build.load import load_dataset
from sde.dataset import DatasetOptions
# As `sde MANIFEST` does: the dataset is ready when built; the cache entry is written meanwhile.
ds = load_dataset({manifest!r}, DatasetOptions(), cache_dir={cache!r}, use_cache={use_cache}, background_write=True)
load_s = time.perf_counter() - t0
import threading
for thread in threading.enumerate():
    if thread.name == "sde-cache-write":
        thread.join()
written_s = time.perf_counter() - t0
# CPU of the build, this process and its workers (a loaded machine stretches wall time, less so this)
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
build_cpu_s = sum(u.ru_utime + u.ru_stime for u in usage)
q = ds.utterance_query
# As the server does while the browser opens (sde.cli._serve): the engine's view of the table, and
# the compressed columns small enough to keep read whole.
t = time.perf_counter()
q.warm(text=["text", *(h.field for h in ds.hypotheses)])
warmup_s = time.perf_counter() - t
queries = [("{{wer}} > 20 && {{duration}} < 10", "-cer"), ("{{text}} contains \"the\"", "duration"),
           ("{{speaker}} = \"spk0042\"", "-wer"), ("", "-duration")]
timings = {{}}
for filt, sort in queries:
    t = time.perf_counter(); q.page(filt, sort, 3, 50); first = time.perf_counter() - t
    runs = []
    for page in range(5):
        t = time.perf_counter(); q.page(filt, sort, page, 50); runs.append(time.perf_counter() - t)
    runs.sort()
    timings[f"{{filt}} | sort {{sort}}"] = {{"first_ms": first * 1000, "median_ms": runs[2] * 1000}}
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# The same through the HTTP API (Flask test client: routing, JSON encoding, no network).
from urllib.parse import urlencode
from sde.web.app import AppConfig, create_app
client = create_app(ds, AppConfig(title="bench")).server.test_client()
api = {{}}
for filt, sort in queries:
    url = "/api/utterances?" + urlencode({{"filter": filt, "sort": sort, "page": 3, "page_size": 50}})
    t = time.perf_counter(); r = client.get(url); first = time.perf_counter() - t
    assert r.status_code == 200, r.data[:200]
    runs = []
    for page in range(5):
        url = "/api/utterances?" + urlencode({{"filter": filt, "sort": sort, "page": page, "page_size": 50}})
        t = time.perf_counter(); client.get(url); runs.append(time.perf_counter() - t)
    runs.sort()
    api[f"{{filt}} | sort {{sort}}"] = {{"first_ms": first * 1000, "median_ms": runs[2] * 1000}}
print(json.dumps({{"load_s": load_s, "written_s": written_s, "build_cpu_s": build_cpu_s, "warmup_s": warmup_s, "rss_mb": rss_mb, "queries": timings, "api": api,
                  "utterances": len(ds.utterances), "summary": ds.summary()["hypotheses"]}}))
"""


def measure(manifest: Path, cache: Path, use_cache: bool) -> dict:
    code = CHILD.format(root=str(ROOT), manifest=str(manifest), cache=str(cache), use_cache=use_cache)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_manifest(n: int, out_dir: Path, mean_words: int = 31) -> Path:
    path = out_dir / (f"synthetic_{n}.json" if mean_words == 31 else f"synthetic_{n}_{mean_words}w.json")
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        longest = ["--max-words", "100"] if mean_words == 31 else []  # else the generator's default
        subprocess.run([sys.executable, str(HERE / "make_manifest.py"), str(path), "--utterances", str(n),
                        "--seed", "0", "--mean-words", str(mean_words), *longest], check=True)
        print(f"generated {path} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--out", type=Path, default=HERE / "output")
    ap.add_argument("--mean-words", type=int, default=31,
                    help="words per utterance of the generated manifests (31: the design's ~505 MB per 1M; "
                         "12: the generator's default)")
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        manifest = ensure_manifest(n, args.out, args.mean_words)
        with tempfile.TemporaryDirectory(prefix="sde-bench-cache-") as cache:
            cold = measure(manifest, Path(cache), use_cache=True)  # builds and writes the cache
            warm = measure(manifest, Path(cache), use_cache=True)
        size_mb = manifest.stat().st_size / 2**20
        rows.append((n, size_mb, cold, warm))
        print(json.dumps({"n": n, "cold": cold, "warm": warm}, indent=1), file=sys.stderr)

    print("| utterances | manifest | cold load, all metrics: ready / cache written (CPU, user+sys) "
          "| warm load (cache) | engine warm-up (in the background) | peak RSS cold / warm |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, size_mb, cold, warm in rows:
        print(f"| {n:,} | {size_mb:.0f} MB | {cold['load_s']:.1f} s / {cold['written_s']:.1f} s "
              f"({cold['build_cpu_s']:.1f} s) "
              f"| {warm['load_s']:.2f} s | {warm['warmup_s']:.2f} s | {cold['rss_mb']:.0f} / {warm['rss_mb']:.0f} MB |")
    print()
    print("| utterances | filter | sort | query engine: first / next pages (ms) "
          "| GET /api/utterances: first / next pages (ms) |")
    print("|---:|---|---|---:|---:|")
    for n, _, _, warm in rows:
        for label, v in warm["queries"].items():
            filt, sort = label.split(" | sort ")
            a = warm["api"][label]
            print(f"| {n:,} | `{filt or '(none)'}` | `{sort}` | {v['first_ms']:.0f} / {v['median_ms']:.1f} "
                  f"| {a['first_ms']:.0f} / {a['median_ms']:.1f} |")


if __name__ == "__main__":
    main()
