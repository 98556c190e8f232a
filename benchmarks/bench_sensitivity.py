"""Benchmark: a prior sweep versus fair naive refits doing the same post-processing, side by side in one run.

Data: the shipped SIMULATED data set (bayes_koa.koa.simulation.load_simulated), VAS at month 6, mean
differences (mm), model source_hierarchical (the main model) at its own sampler settings. Twelve prior
sets: the nine named sets with an MD table (the Rhodes and Turner sets are published for SMD / log OR
only) plus three dicts.

(a) sweep: ``bayes_koa.sensitivity(ref, sets, method="psis")``: each set reweights the fitted draws by
    the prior ratio (Pareto-smoothed importance sampling) and refits by MCMC on the cached compiled model
    only where Pareto k is high; per set it computes the tracked quantities, the ranking, the claims and
    the diagnostics.
(b) naive: for each set ``bayes_koa.fit(..., priors=set, groups=())`` (compiled model reused in the
    process, no extra groups) followed by exactly the same per-set post-processing (the sweep's own
    functions: tracked quantities, ranking, claims, diagnostics). ``--naive-compile`` also clears the
    compiled models and turns the disk cache off before each naive fit (a user with no compile cache).

Printed: both timings and their ratio, the path each set took, and whether every reweighted set agrees
with its MCMC refit (mu and tau means within 4 combined MC SEs).
Run: PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_sensitivity.py [--draws N] [--naive-compile]
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

from bayes_koa.api.fitting import fit
from bayes_koa.cli import SIM_LINE
from bayes_koa.effects.table import effect_sizes
from bayes_koa.inference import sampling
from bayes_koa.inference.diagnostics import SamplingWarning
from bayes_koa.koa.simulation import load_simulated
from bayes_koa.workflows import sensitivity as ps

# these benchmarks time sampling: the fit cache (bayes_koa.inference.fit_cache) must not serve earlier draws
os.environ.setdefault("BAYES_KOA_FIT_CACHE", "off")

EXTRA_SETS = {
    "tau ~ HalfNormal(sigma=5)": {"tau": "HalfNormal(sigma=5)"},
    "tau ~ HalfCauchy(beta=3)": {"tau": "HalfCauchy(beta=3)"},
    "mu ~ Normal(mu=0, sigma=10)": {"mu": "Normal(mu=0, sigma=10)"},
}


def naive_post_processing(res, name: str) -> list[dict]:
    """What the sweep computes per set, on a plain fit (the sweep's own functions)."""
    rows = ps.posterior_quantities(res.dt["posterior"], name, "naive", res.spec, res.lower_is_better)
    rows += ps._claim_rows(lambda r: r.claims(), res, name, "naive")
    ps._diag_row(res.dt, res.spec)
    return rows


def run(draws: int | None = None, naive_compile: bool = False, seed: int = 20261126) -> dict:
    warnings.simplefilter("ignore", SamplingWarning)  # diagnostics are reported per set, not timed away
    data = load_simulated()
    eff = effect_sizes(data, measure="MD", outcomes=["VAS"])
    eff.attrs.update(simulated=True, source=str(data.source))
    kw = dict(outcome="VAS", time=6, seed=seed, warn=False)
    if draws:
        kw.update(draws=draws, tune=draws)
    t0 = time.perf_counter()
    ref = fit(eff, "source_hierarchical", **kw)
    t_fit = time.perf_counter() - t0
    st = ref.provenance["sampler_settings"]
    named = [n for n, _ in ps.resolve_prior_sets(ref.spec)[0]]
    sets = {**{n: n for n in named}, **EXTRA_SETS}

    t0 = time.perf_counter()
    sweep = ps.sensitivity(ref, list(sets.values()), include_reference=False, method="psis")
    t_sweep = time.perf_counter() - t0

    naive_rows = {}
    old_env = os.environ.get("BAYES_KOA_CACHE")
    t0 = time.perf_counter()
    try:
        for name, prior_set in sets.items():
            if naive_compile:
                os.environ["BAYES_KOA_CACHE"] = "off"
                sampling.clear_cache()
            r = fit(eff, "source_hierarchical", priors=prior_set, groups=(), **kw)
            naive_rows[name] = naive_post_processing(r, name)
    finally:
        if old_env is None:
            os.environ.pop("BAYES_KOA_CACHE", None)
        else:
            os.environ["BAYES_KOA_CACHE"] = old_env
    t_naive = time.perf_counter() - t0

    runs = sweep.runs.set_index("prior_set")
    table = sweep.table.set_index(["prior_set", "quantity"])
    disagree = []
    for set_name, rows in zip(runs.index, naive_rows.values()):
        if runs.loc[set_name, "path"] != ps.PATH_PSIS:
            continue
        by_q = {r["quantity"]: r for r in rows}
        for q in ("mu", "tau"):
            a, b = table.loc[(set_name, q)], by_q[q]
            if not abs(a["mean"] - b["mean"]) < 4 * math.hypot(a["mcse"], b["mcse"]):
                disagree.append(f"{set_name} {q}: {a['mean']:.3f} vs {b['mean']:.3f}")
    return {"t_fit": t_fit, "t_sweep": t_sweep, "t_naive": t_naive, "ratio": t_naive / t_sweep,
            "n_sets": len(sets), "paths": runs["path"].value_counts().to_dict(), "runs": sweep.runs,
            "disagree": disagree, "settings": st, "naive_compile": naive_compile}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=None, help="draws = tune (default: the model kind's setting)")
    ap.add_argument("--naive-compile", action="store_true", help="naive refits compile every time (no cache)")
    ap.add_argument("--seed", type=int, default=20261126)
    args = ap.parse_args()
    print(SIM_LINE)
    out = run(args.draws, args.naive_compile, args.seed)
    st = out["settings"]
    print(f"source_hierarchical, VAS month 6, MD; {st['chains']} chains x ({st['tune']} + {st['draws']}) at "
          f"target_accept {st['target_accept']}; {out['n_sets']} prior sets")
    print(f"reference fit: {out['t_fit']:.1f} s (not part of either timing)")
    print(out["runs"][["prior_set", "path", "seconds", "pareto_k", "ess_is", "divergences"]].round(3).to_string(index=False))
    print(f"(a) sweep (method='psis'): {out['t_sweep']:.1f} s; paths: {out['paths']}")
    print(f"(b) naive refits + the same post-processing{' (compiling every time)' if out['naive_compile'] else ''}: "
          f"{out['t_naive']:.1f} s")
    print(f"ratio naive / sweep: {out['ratio']:.1f}x")
    print("reweighted sets agree with their MCMC refits (mu, tau within 4 MC SEs): "
          + ("yes" if not out["disagree"] else "NO: " + "; ".join(out["disagree"])))


if __name__ == "__main__":
    main()
