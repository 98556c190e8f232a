"""Benchmark: a design study of the real design on 1 and on 2 Dask workers, in one run.

The default scenario (the stated truth of the shipped simulated data on the 25 bundled in-scope
designs; SIMULATED meta-analyses), model source_hierarchical, N simulated meta-analyses, the
study's default sampler settings (2 chains x 1000 draws after 1000 tuning steps per fit). The study
runs once with ``workers=1`` and once with ``workers=2`` (each a fresh local cluster: start-up and one
model compile per worker are included), checks that both give identical results, and reports the
wall time, the steady throughput (fits per second after every worker's first fit, i.e. without
start-up and compiling) and the speed-ups. The target: N = 200 in <= 5 minutes on 2 cores.

Run: .venv/bin/python benchmarks/bench_design.py [--n-sims N] [--seed S] [--only-two]
"""

from __future__ import annotations

import argparse
import time

import xarray as xr

from bayes_koa.koa.design import design_study, summary


def _run(n_sims: int, seed: int, workers: int) -> tuple[xr.Dataset, dict]:
    stamps: list[float] = []

    def tick(done, total, record):
        stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    ds = design_study(n_sims=n_sims, seed=seed, workers=workers, progress=tick)
    wall = time.perf_counter() - t0
    warm = stamps[workers - 1] if len(stamps) >= workers else t0  # every worker has compiled by then
    steady_n = len(stamps) - workers
    steady = steady_n / (stamps[-1] - warm) if steady_n > 0 and stamps[-1] > warm else float("nan")
    return ds, {"wall": wall, "steady": steady, "first_fit": stamps[0] - t0 if stamps else float("nan"),
                "median_fit": float(ds["seconds"].median())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sims", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only-two", action="store_true", help="skip the 1-worker run (the 200-sim target only)")
    args = ap.parse_args()
    print("SIMULATED meta-analyses (a design study), not trial results.")
    print(f"default scenario on the bundled real design, source_hierarchical, {args.n_sims} simulated "
          f"meta-analyses, seed {args.seed}")
    runs = {}
    for w in ((2,) if args.only_two else (1, 2)):
        ds, st = _run(args.n_sims, args.seed, w)
        runs[w] = (ds, st)
        tab = summary(ds).iloc[0]
        print(f"{w} worker(s): {st['wall']:.1f} s wall ({args.n_sims / st['wall']:.2f} fits/s overall; "
              f"first fit after {st['first_fit']:.1f} s of start-up and compiling; steady "
              f"{st['steady']:.2f} fits/s; median {st['median_fit']:.2f} s per fit on its worker); "
              f"P(correct top rank) = {tab['p_top_correct']:.3f} [{tab['p_top_lower']:.3f}, "
              f"{tab['p_top_upper']:.3f}], healthy fits {tab['healthy']:.2f}")
    if len(runs) == 2:
        (d1, s1), (d2, s2) = runs[1], runs[2]
        xr.testing.assert_identical(d1.drop_vars("seconds").drop_attrs(), d2.drop_vars("seconds").drop_attrs())
        print("1 and 2 workers gave identical results (every variable but the timings)")
        print(f"speed-up 1 -> 2 workers: {s1['wall'] / s2['wall']:.2f}x wall, {s2['steady'] / s1['steady']:.2f}x steady")
    w = max(runs)
    print(f"target: {args.n_sims} meta-analyses on {w} workers in <= 300 s: {runs[w][1]['wall']:.0f} s "
          f"({'met' if runs[w][1]['wall'] <= 300 else 'NOT met'})")


if __name__ == "__main__":
    main()
