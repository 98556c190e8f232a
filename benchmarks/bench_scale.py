"""How a fit scales with the number of trials: 100, 1,000 and 10,000 simulated (yi, vi) rows.

Each (model, size) runs in its own process (so peak memory is its own): ``bayes_koa.fit`` with the
sampler settings given (default: each model kind's own measured setting), the wall time of every stage (compile,
sampling, prior predictive, log-likelihood, log-prior, predictions, diagnostics, summary), peak
resident memory (``resource.getrusage``), the smallest bulk ESS and ESS per second of sampling.
Data are made here with numpy (seeded): sources BM/UC/AD in turn, true mu -10, source SD 5,
between-trial SD 8, standard errors uniform on [3, 15] (an illustrative truth, not trial data).

    PYTHONPATH=$PWD python benchmarks/bench_scale.py [--sizes 100,1000,10000] [--draws 2000 --tune 2000]

Prints each stage's share of the total, so what makes large fits slow is visible in one run, and a
markdown table (model, trials, wall time, peak memory, min bulk ESS, ESS/s). Another kind joins by an
entry in :data:`SIMULATORS` (model file -> function ``n -> table`` the model can fit), e.g. the network
kind with an arm table: ``SIMULATORS["network"] = simulate_network`` (``--models network``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# these benchmarks time sampling: the fit cache (bayes_koa.inference.fit_cache) must not serve earlier draws
os.environ.setdefault("BAYES_KOA_FIT_CACHE", "off")

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("random_effects", "source_hierarchical")


def simulate(n: int, seed: int = 20261126):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    sources = np.array(["BM", "UC", "AD"])[np.arange(n) % 3]
    source_mean = -10.0 + 5.0 * rng.standard_normal(3)
    theta = source_mean[np.arange(n) % 3] + 8.0 * rng.standard_normal(n)
    se = rng.uniform(3.0, 15.0, n)
    return pd.DataFrame({"trial_id": [f"t{i:05d}" for i in range(n)], "yi": theta + se * rng.standard_normal(n),
                         "vi": se**2, "cell_source": sources})


# model file -> simulator of an n-trial table it can fit (the hook for other kinds, e.g. network)
SIMULATORS = {"random_effects": lambda n: simulate(n), "source_hierarchical": lambda n: simulate(n)}


def child(model: str, n: int, draws, tune, chains, target_accept, summary: bool = True) -> dict:
    import functools
    import warnings

    t_start = time.perf_counter()
    import pymc as pm

    import bayes_koa as bk
    from bayes_koa.api import fitting
    from bayes_koa.inference import compile_cache
    from bayes_koa.inference.diagnostics import SamplingWarning
    from bayes_koa.kinds import get_kind, load_spec

    stages: dict[str, float] = {}

    def timed(owner, name, label):
        f = getattr(owner, name)

        @functools.wraps(f)
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                stages[label] = stages.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, name, wrapper)

    import nutpie

    timed(compile_cache, "compiled_model", "compile")
    timed(nutpie, "sample", "sampling")
    timed(pm, "sample_prior_predictive", "prior predictive")
    timed(pm, "compute_log_likelihood", "log-likelihood")
    timed(pm.stats, "compute_log_prior", "log-prior")
    kind = get_kind(load_spec(model, measure="MD").kind)
    kind.add_predictions = kind.add_predictions  # an instance attribute that timed() can replace
    timed(kind, "add_predictions", "predictions")
    from bayes_koa.api import result as api_result

    timed(api_result, "diagnose", "diagnostics")
    eff = SIMULATORS[model](n)
    t_import = time.perf_counter() - t_start
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # diagnostics are reported below
        res = bk.fit(eff, model, measure="MD", seed=1, draws=draws, tune=tune, chains=chains, target_accept=target_accept)
    st = res.provenance["sampler_settings"]
    t_fit = time.perf_counter() - t
    if summary:  # after the fit, not part of its wall time (az.summary of every trial effect)
        t = time.perf_counter()
        res.summary()
        stages["summary"] = time.perf_counter() - t
    diag = res.diagnostics()
    return {"model": model, "n": n, "fit_s": t_fit, "import_s": t_import, "stages": stages,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "min_ess_bulk": float(diag["ess_bulk"].min()), "divergences": int(diag.attrs["divergences"]),
            "parameters": int(len(diag)), "settings": f"{st['chains']} x ({st['tune']} + {st['draws']}) at "
                                                     f"{st['target_accept']:g}"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--draws", type=int, default=None, help="default: the model kind's setting")
    ap.add_argument("--tune", type=int, default=None)
    ap.add_argument("--chains", type=int, default=None)
    ap.add_argument("--target-accept", type=float, default=None)
    ap.add_argument("--no-summary", action="store_true",
                    help="do not time result.summary() after the fit (at 10,000 trials it takes longer than the fit)")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.draws, args.tune, args.chains,
                               args.target_accept, summary=not args.no_summary)))
        return
    print(f"simulated (yi, vi) tables (illustrative truth, see the docstring); sampler settings "
          f"{'given' if args.draws else 'of each kind'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = []
    for model in args.models.split(","):
        for n in map(int, args.sizes.split(",")):
            cmd = [sys.executable, __file__, "--child", model, str(n)]
            for flag, v in (("--draws", args.draws), ("--tune", args.tune), ("--chains", args.chains),
                            ("--target-accept", args.target_accept)):
                if v is not None:
                    cmd += [flag, str(v)]
            if args.no_summary:
                cmd.append("--no-summary")
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
            if p.returncode:
                print(f"{model} n={n}: FAILED {p.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            rows.append(r)
            st = r["stages"]
            other = r["fit_s"] - sum(v for k, v in st.items() if k != "summary")
            shares = ", ".join(f"{k} {v:.1f}" for k, v in st.items()) + f", rest of fit {other:.1f}"
            print(f"{model:20s} n={n:6d}: fit {r['fit_s']:7.1f} s (import {r['import_s']:.1f} s before it), "
                  f"peak RSS {r['maxrss_mb']:7.0f} MB, min bulk ESS {r['min_ess_bulk']:6.0f}, "
                  f"ESS/s of sampling {r['min_ess_bulk'] / st['sampling']:7.0f}, divergences {r['divergences']}, "
                  f"{r['parameters']} reported parameters", flush=True)
            print(f"{'':22s}stages (s): {shares}", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    print()
    print(markdown_table(rows))
    for model in {r["model"] for r in rows}:
        sub = sorted((r for r in rows if r["model"] == model), key=lambda r: r["n"])
        if len(sub) > 1:
            print(f"{model}: fit time ratio largest/smallest n = {sub[-1]['fit_s'] / sub[0]['fit_s']:.1f} "
                  f"for {sub[-1]['n'] / sub[0]['n']:.0f}x the trials")


def markdown_table(rows: list[dict]) -> str:
    head = ("| model | trials | settings | fit wall (s) | sampling (s) | peak RSS (MB) | min bulk ESS | "
            "bulk ESS/s (sampling) | divergences |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        samp = r["stages"].get("sampling", float("nan"))
        lines.append(f"| {r['model']} | {r['n']:,} | {r.get('settings', '')} | {r['fit_s']:.1f} | {samp:.1f} | "
                     f"{r['maxrss_mb']:.0f} | {r['min_ess_bulk']:.0f} | {r['min_ess_bulk'] / samp:.0f} | "
                     f"{r['divergences']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
