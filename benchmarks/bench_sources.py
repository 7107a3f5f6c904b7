"""Sources: many manifests as one dataset, and the member index of a 2 GB tar shard.

    python benchmarks/bench_sources.py [--shards 512 --lines 2000] [--runs 3] [--build]
    python benchmarks/bench_sources.py --tar [--tar-gb 2 --member-kb 32]

The single manifest is generated with benchmarks/make_manifest.py (seeded; ~31 words per line, as
in bench_load.py) into benchmarks/output/ unless it exists, then cut into shards named
``manifest_0.json`` ... (NeMo's layout) and read back through the pattern
``manifest__OP_0..511_CL_.json``. Each measurement runs in a fresh process (nothing warm in the
interpreter; the files are in the page cache after the first run, for both alike), alternating the
two layouts; the best of --runs is reported (on a shared machine the best run is the cost itself),
with the median in parentheses, and the CPU seconds of the best runs. Measured: ``read_manifest`` (the step that differs
between the layouts), and with --build the whole ``sde stats`` path without cache (read + scoring).
The target (issue 13): shards within ±20% of the single file.

--tar: a 2 GB tar of many small members (NeMo's layout, GNU headers as Python's tarfile writes them)
is written sparse (only the headers take disk space, about 4 KB each), indexed by scanning its
headers (target: ≤ 3 s once), then loaded again from the index cache; compared with tarfile's own
listing of the same tar. The tar is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
def cpu():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
c0 = cpu()
t0 = time.perf_counter()
if {build}:
    from sde.dataset import build_dataset
    ds = build_dataset({source!r})
    rows = len(ds.utterances)
else:
    from sde.manifest import read_manifest
    m = read_manifest({source!r})
    rows = len(m.table)
print(json.dumps({{"seconds": time.perf_counter() - t0, "cpu": cpu() - c0, "rows": rows}}))
"""


def measure(source: str, build: bool) -> dict:
    code = CHILD.format(root=str(ROOT), source=source, build=build)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_single(lines: int, out_dir: Path) -> Path:
    path = out_dir / f"synthetic_{lines}.json"
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / "make_manifest.py"), str(path), "--utterances", str(lines),
                        "--seed", "0", "--mean-words", "31", "--max-words", "100", "--quiet"], check=True)
        print(f"generated {path} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return path


def ensure_shards(single: Path, shards: int, lines: int, out_dir: Path) -> Path:
    """``out_dir/shards_S/manifest_K.json``, K < S, each ``lines`` lines of ``single`` in order."""
    folder = out_dir / f"shards_{shards}x{lines}"
    if not (folder / f"manifest_{shards - 1}.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        with open(single, "rb") as f:
            for k in range(shards):
                with open(folder / f"manifest_{k}.json", "wb") as out:
                    for _ in range(lines):
                        out.write(f.readline())
    return folder


def write_sparse_tar(path: Path, total_bytes: int, member_bytes: int) -> int:
    """A valid tar of ``member_bytes`` members up to ``total_bytes``, the data left as holes."""
    import os
    import tarfile

    block = 512
    step = block + (member_bytes + block - 1) // block * block
    count = total_bytes // step
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for k in range(count):
            info = tarfile.TarInfo(f"_data_speaker{k % 500:03d}_utt_{k:07d}.wav")
            info.size = member_bytes
            os.pwrite(fd, info.tobuf(format=tarfile.GNU_FORMAT), k * step)
        end = count * step + 2 * block
        os.ftruncate(fd, (end + 10239) // 10240 * 10240)  # end marker and record padding: zeros
    finally:
        os.close(fd)
    return count


TAR_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
if {mode!r} == "tarfile":
    import tarfile
    with tarfile.open({tar!r}) as tar:
        n = sum(1 for m in tar.getmembers() if m.isreg())
    origin = "tarfile"
else:
    from sde.sources.tar_index import load_tar_index
    index = load_tar_index({tar!r}, cache_dir={cache!r})
    n, origin = len(index), index.origin
print(json.dumps({{"seconds": time.perf_counter() - t0, "members": n, "origin": origin}}))
"""


def bench_tar(gigabytes: float, member_kb: int, out_dir: Path) -> None:
    import os
    import shutil
    import tempfile

    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sde-bench-tar-", dir=out_dir))
    tar = work / "audio_0.tar"
    try:
        count = write_sparse_tar(tar, int(gigabytes * 2**30), member_kb << 10)
        disk_mb = os.stat(tar).st_blocks * 512 / 2**20
        results = {}
        for mode in ("scan", "cache", "tarfile"):
            code = TAR_CHILD.format(root=str(ROOT), tar=str(tar), cache=str(work / "cache"), mode=mode)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            assert results[mode]["members"] == count, results[mode]
        print(json.dumps(results), file=sys.stderr)
        size_gb = tar.stat().st_size / 2**30
        print(f"| tar ({size_gb:.2f} GiB, {count:,} members of {member_kb} KB; {disk_mb:.0f} MB on disk) | seconds |")
        print("|---|---:|")
        print(f"| index by scanning the headers (first time) | {results['scan']['seconds']:.2f} |")
        print(f"| index from the cache (after) | {results['cache']['seconds']:.2f} |")
        print(f"| Python's tarfile listing, for comparison | {results['tarfile']['seconds']:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=512)
    ap.add_argument("--lines", type=int, default=2000, help="lines per shard")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--build", action="store_true", help="also time the whole build (read + scoring)")
    ap.add_argument("--out", type=Path, default=HERE / "output")
    ap.add_argument("--tar", action="store_true", help="benchmark the tar member index instead")
    ap.add_argument("--tar-gb", type=float, default=2.0)
    ap.add_argument("--member-kb", type=int, default=32)
    args = ap.parse_args()
    if args.tar:
        bench_tar(args.tar_gb, args.member_kb, args.out)
        return
    total = args.shards * args.lines
    single = ensure_single(total, args.out)
    folder = ensure_shards(single, args.shards, args.lines, args.out)
    pattern = str(folder / f"manifest__OP_0..{args.shards - 1}_CL_.json")
    steps = [("read_manifest", False)] + ([("build_dataset", True)] if args.build else [])
    rows = []
    for label, build in steps:
        times: dict[str, list[float]] = {"one file": [], "shards": []}
        cpus: dict[str, list[float]] = {"one file": [], "shards": []}
        measure(str(single), build)  # page cache warm for both layouts alike
        measure(pattern, build)
        for _ in range(args.runs):
            for name, source in (("one file", str(single)), ("shards", pattern)):
                result = measure(source, build)
                assert result["rows"] == total, result
                times[name].append(result["seconds"])
                cpus[name].append(result["cpu"])
        both = ("one file", "shards")
        rows.append((label, *(min(times[n]) for n in both), *(min(cpus[n]) for n in both),
                     *(statistics.median(times[n]) for n in both)))
        print(json.dumps({"step": label, "seconds": times, "cpu_seconds": cpus}), file=sys.stderr)
    size_mb = single.stat().st_size / 2**20
    # The best of the runs is the cost itself; the median shows how much a busy machine adds.
    print(f"| {total:,} lines ({size_mb:.0f} MB), best (median) of {args.runs} | one file | {args.shards} shards × "
          f"{args.lines:,} lines | shards / one file | CPU: one file / shards |")
    print("|---|---:|---:|---:|---:|")
    for label, one, sharded, one_cpu, sharded_cpu, one_m, sharded_m in rows:
        print(f"| {label} | {one:.2f} s ({one_m:.2f}) | {sharded:.2f} s ({sharded_m:.2f}) | {sharded / one:.2f} "
              f"({sharded_m / one_m:.2f}) | {one_cpu:.2f} / {sharded_cpu:.2f} s |")


if __name__ == "__main__":
    main()
