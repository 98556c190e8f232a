"""The main job in a first and a second fresh process: what the disk compile cache saves, in one run.

Runs ``bayes-koa analyze`` (``python -m bayes_koa.cli analyze --quiet --out TMP``) three times as
subprocesses: (1) with an empty compile cache, (2) again with the cache process 1 wrote, and
(3) with the disk cache off (``BAYES_KOA_CACHE=off``: every process compiles, as before the cache).
Prints wall and CPU seconds of each process (CPU from ``RUSAGE_CHILDREN``, less disturbed by other
jobs on the machine than wall time), the ratios, and checks that the reports agree.

    PYTHONPATH=$PWD python benchmarks/bench_compile.py [-- extra analyze arguments]
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# these benchmarks time sampling: the fit cache (bayes_koa.inference.fit_cache) must not serve earlier draws
os.environ.setdefault("BAYES_KOA_FIT_CACHE", "off")

ROOT = Path(__file__).resolve().parents[1]


def run(cache: str, out: Path, extra: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "BAYES_KOA_CACHE": cache}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "bayes_koa.cli", "analyze", "--quiet", "--out", str(out), *extra],
                       env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise SystemExit(f"analyze failed:\n{p.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = (out / "summary.csv").read_text()
    elapsed = re.search(r"Elapsed ([0-9.]+) s", p.stdout)
    return {"wall": wall, "cpu": cpu, "summary": summary, "elapsed": float(elapsed.group(1)) if elapsed else float("nan")}


def main() -> None:
    extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    print("SIMULATED DATA (bayes_koa.simulate, documented seed): not trial results.")
    print(f"bayes-koa analyze {' '.join(extra)}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
        tmp = Path(tmp)
        first = run(str(tmp / "cache"), tmp / "r1", extra)
        second = run(str(tmp / "cache"), tmp / "r2", extra)
        off = run("off", tmp / "r3", extra)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    print(f"{'process':34s} {'wall s':>7s} {'CPU s':>7s} {'analyze Elapsed s':>18s}")
    for label, r in (("1: empty compile cache", first), ("2: cache written by process 1", second),
                     ("3: disk cache off", off)):
        print(f"{label:34s} {r['wall']:7.1f} {r['cpu']:7.1f} {r['elapsed']:18.1f}")
    print(f"second / first: wall {second['wall'] / first['wall']:.2f}, CPU {second['cpu'] / first['cpu']:.2f}")
    print(f"second / cache off: wall {second['wall'] / off['wall']:.2f}, CPU {second['cpu'] / off['cpu']:.2f}")
    same = first["summary"] == second["summary"] == off["summary"]
    print("summary.csv identical in all three: " + ("yes" if same else "NO"))


if __name__ == "__main__":
    main()
