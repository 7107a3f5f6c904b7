"""Cold build of one manifest by several versions of sde, alternating, on this machine now.

    python benchmarks/bench_versions.py --revs 3ae0ca7 HEAD --runs 3
    python benchmarks/bench_versions.py --manifest M.json --revs ddb11f2 3ae0ca7 HEAD

This machine's speed changes from day to day (up to ~2x) and within an hour, so a version's time is
only comparable with another's measured in the same minutes: each run builds the manifest once with
every version in turn. A version is checked out into a temporary git worktree (its bytecode compiled,
as `pip install` leaves it) and imported from there in a fresh process; "ready" is when
`sde MANIFEST` could start serving (the process's start to the dataset built, imports included, its
cache entry written in the background where the version does so), as in bench_load.py. 3ae0ca7 is the
last version before the out-of-core engine (its one-piece build: 7.6 s for this manifest the day the
issue "Out-of-core engine" was filed). The manifest defaults to bench_load.py's 1M lines of 15 words.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_load import ensure_manifest  # noqa: E402

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
if os.path.exists(os.path.join({root!r}, "sde", "build", "load.py")):
    from sde.build.load import load_dataset
else:  # before the part-by-part build (sde.build)
    from sde.cache import load_dataset
from sde.dataset import DatasetOptions
import sde
assert sde.__file__.startswith({root!r}), sde.__file__
ds = load_dataset({manifest!r}, DatasetOptions(), cache_dir={cache!r}, background_write=True)
ready_s = time.perf_counter() - t0
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(json.dumps({{"ready_s": ready_s, "cpu_s": sum(u.ru_utime + u.ru_stime for u in usage),
                  "rss_mb": usage[0].ru_maxrss / 1024, "utterances": len(ds.utterances)}}), flush=True)
os._exit(0)  # the cache entry's write is not timed
"""


def checkout(rev: str, into: Path) -> Path:
    """Version ``rev`` in a worktree at ``into``, its bytecode compiled."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(into), rev], check=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(into / "sde")], check=True,
                   stdout=subprocess.DEVNULL)
    return into


def cold_build(root: Path, manifest: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="sde-bench-cache-") as cache:
        code = CHILD.format(root=str(root), manifest=str(manifest), cache=cache)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--revs", nargs="+", default=["3ae0ca7", "HEAD"], help="git revisions to compare")
    ap.add_argument("--runs", type=int, default=3, help="builds by each version, alternating")
    ap.add_argument("--manifest", type=Path, help="default: 1M generated lines of 15 words (bench_load.py's)")
    ap.add_argument("--out", type=Path, default=HERE / "output")
    args = ap.parse_args()
    manifest = args.manifest or ensure_manifest(1_000_000, args.out, 15)
    results: dict[str, list[dict]] = {rev: [] for rev in args.revs}
    with tempfile.TemporaryDirectory(prefix="sde-bench-versions-") as scratch:
        roots = {rev: checkout(rev, Path(scratch) / f"v{k}") for k, rev in enumerate(args.revs)}
        try:
            for run in range(args.runs):
                for rev in args.revs:
                    result = cold_build(roots[rev], manifest)
                    results[rev].append(result)
                    print(f"run {run + 1}: {rev}: ready {result['ready_s']:.2f} s, CPU {result['cpu_s']:.1f} s, "
                          f"peak RSS {result['rss_mb']:.0f} MB", file=sys.stderr)
        finally:
            for root in roots.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root)], check=False)

    def span(values: list[float], unit: str, digits: int) -> str:
        low, high = min(values), max(values)
        return f"{low:.{digits}f}–{high:.{digits}f} {unit} (median {statistics.median(values):.{digits}f})"

    print(f"| version | ready ({args.runs} runs) | CPU | peak RSS |")
    print("|---|---:|---:|---:|")
    for rev, runs in results.items():
        print(f"| {rev} | {span([r['ready_s'] for r in runs], 's', 1)} | {span([r['cpu_s'] for r in runs], 's', 1)} "
              f"| {span([r['rss_mb'] for r in runs], 'MB', 0)} |")


if __name__ == "__main__":
    main()
