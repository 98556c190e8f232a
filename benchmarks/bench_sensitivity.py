"""Benchmark: a prior sweep on the cached compiled model versus naive refits.

Data: the shipped SIMULATED data set (bayes_koa.koa.simulation.load_simulated), VAS at month 6, mean
differences (mm), model source_hierarchical. Twelve prior sets: the nine named sets with an MD
table (the Rhodes and Turner sets are published for SMD / log OR only) plus three dicts.

(a) sweep: bayes_koa.sensitivity on an existing fit (compiles once per prior-family signature,
    then only samples; no prior-predictive / log-likelihood groups);
(b) naive: for each set, clear the compile cache and call bayes_koa.fit (compile + sample +
    the extra groups every fit stores), as a user without the sweep would.

Both use the same seed and settings, so each set's draws must be identical in (a) and (b): the
script checks that too. Run: .venv/bin/python benchmarks/bench_sensitivity.py [--draws N] [--chains C]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from bayes_koa.inference import sampling as fitting
from bayes_koa.cli import SIM_LINE
from bayes_koa.effects.table import effect_sizes
from bayes_koa.workflows.sensitivity import resolve_prior_sets, sensitivity
from bayes_koa.koa.simulation import load_simulated

EXTRA_SETS = {
    "tau ~ HalfNormal(sigma=5)": {"tau": "HalfNormal(sigma=5)"},
    "tau ~ HalfCauchy(beta=3)": {"tau": "HalfCauchy(beta=3)"},
    "mu ~ Normal(mu=0, sigma=10)": {"mu": "Normal(mu=0, sigma=10)"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=20261126)
    args = ap.parse_args()
    warnings.simplefilter("ignore", fitting.SamplingWarning)  # diagnostics are not what is timed here

    print(SIM_LINE)
    data = load_simulated()
    eff = effect_sizes(data, measure="MD", outcomes=["VAS"])
    eff.attrs.update(simulated=True, source=str(data.source))
    kw = dict(outcome="VAS", time=6, seed=args.seed, draws=args.draws, tune=args.tune, chains=args.chains)

    fitting.clear_cache()
    t0 = time.perf_counter()
    ref = fitting.fit(eff, "source_hierarchical", **kw)
    t_fit = time.perf_counter() - t0
    named = [n for n, _ in resolve_prior_sets(ref.spec)[0]]
    sets = {**{n: n for n in named}, **EXTRA_SETS}
    print(f"data: {data.source}")
    print(f"VAS month 6, MD, source_hierarchical: {len(ref.effects)} comparisons; {args.chains} chains x "
          f"{args.draws} draws (+{args.tune} tune); {len(sets)} prior sets: {', '.join(sets)}")
    print(f"reference fit (compile + sample + extra groups): {t_fit:.1f} s (not part of either timing)")

    # (a) the sweep
    t0 = time.perf_counter()
    sweep = sensitivity(ref, list(sets.values()), include_reference=False)
    t_sweep = time.perf_counter() - t0
    t_compile_sets = float(sweep.runs.loc[sweep.runs["compiled"].astype(bool), "seconds"].sum())
    print(f"(a) sweep: {t_sweep:.1f} s for {len(sets)} sets "
          f"({sweep.table.attrs['compiled_models']} new compiled model(s) for new prior families, whose sets "
          f"took {t_compile_sets:.1f} s including compilation; paths: {', '.join(sorted(set(sweep.runs['path'])))})")

    # (b) naive refits
    identical = {}
    t0 = time.perf_counter()
    for name, prior_set in sets.items():
        fitting.clear_cache()
        r = fitting.fit(eff, "source_hierarchical", priors=prior_set, warn=False, **kw)
        identical[name] = all(np.array_equal(sweep.posteriors[name][v].values, r.dt["posterior"][v].values)
                              for v in ("mu", "tau", "sigma_source", "source_mean"))
    t_naive = time.perf_counter() - t0
    print(f"(b) naive refits (clear cache + bayes_koa.fit per set): {t_naive:.1f} s")
    print(f"ratio naive / sweep: {t_naive / t_sweep:.1f}x")
    bad = [n for n, ok in identical.items() if not ok]
    print("draws identical between (a) and (b) for every set: " + ("yes" if not bad else f"NO: {', '.join(bad)}"))


if __name__ == "__main__":
    main()
