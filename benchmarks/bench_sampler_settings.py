"""Sampler settings by evidence: ESS per second and divergences over seeds, in one run.

For the source_hierarchical and random_effects models on the shipped SIMULATED data (VAS at
month 6 as a mean difference, as ``bayes-koa analyze`` fits it; ``--models network``: the main job's
network on the arm table of ``bayes_koa.koa.network.network_arms``), every combination of
target_accept and draws (tune = draws) is sampled with several seeds on one compiled model.
Reported per setting: sampling seconds (nutpie only; the model is compiled once beforehand),
the smallest bulk and tail ESS over the reported parameters (those ``diagnose`` checks), bulk ESS
per second, divergent transitions (total over seeds, and in how many seeds any), the largest
R-hat, and the ratio of ESS/s to today's default (0.99, 2000). Writes a markdown table.

    PYTHONPATH=$PWD python benchmarks/bench_sampler_settings.py --seeds 5 --out benchmarks/sampler_settings.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
import pandas as pd

# these benchmarks time sampling: the fit cache (bayes_koa.inference.fit_cache) must not serve earlier draws
os.environ.setdefault("BAYES_KOA_FIT_CACHE", "off")

MODELS = ("source_hierarchical", "random_effects")
TARGETS = (0.8, 0.9, 0.95, 0.99)
DRAWS = (1000, 2000)
CHAINS = 4


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which is not installed)."""
    cells = [[str(c) for c in df.columns]] + [[f"{v:g}" if isinstance(v, float) else str(v) for v in row]
                                              for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("---" for _ in df.columns) + "|")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated model files")
    ap.add_argument("--targets", default=",".join(map(str, TARGETS)), help="comma-separated target_accept values")
    ap.add_argument("--draws", default=",".join(map(str, DRAWS)), help="comma-separated draws (tune = draws)")
    ap.add_argument("--parameterizations", default="",
                    help="comma-separated structure.parameterization values to compare (default: the model file's)")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    targets = [float(t) for t in args.targets.split(",") if t]
    draws_list = [int(d) for d in args.draws.split(",") if d]

    import bayes_koa as bk
    from bayes_koa.inference.diagnostics import diagnose
    from bayes_koa.inference.sampling import sample_spec
    from bayes_koa.kinds import load_spec, prepare

    load0 = os.getloadavg()[0]
    data = bk.load_simulated()
    eff = bk.effect_sizes(data, measure="MD", outcomes=["VAS"])
    rows = []
    params = [p for p in args.parameterizations.split(",") if p] or [None]
    arms = None
    for name, param in ((m, p) for m in models for p in params):
        spec = load_spec(name, measure="MD", **({"parameterization": param} if param else {}))
        name = f"{name} ({spec.get('parameterization')})" if param else name
        if spec.kind == "network":  # the arm table of the main job's network (VAS month 6, MD)
            from bayes_koa.koa.network import network_arms

            arms = network_arms(data, "VAS", 6, measure="MD") if arms is None else arms
            design, _ = prepare(spec, arms, study="study", treatment="treatment", reference="placebo")
        else:
            design, _ = prepare(spec, eff, outcome="VAS", time=6.0)
        sample_spec(spec, design, seed=0, draws=100, tune=100, chains=2, extra_groups=False)  # compile
        for ta in targets:
            for draws in draws_list:
                for seed in range(1, args.seeds + 1):
                    t = time.perf_counter()
                    dt = sample_spec(spec, design, seed=seed, draws=draws, tune=draws, chains=CHAINS,
                                             target_accept=ta, extra_groups=False)
                    secs = time.perf_counter() - t
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # R-hat of constant draws is not expected here
                        d = diagnose(dt)
                    steps = dt["sample_stats"]["n_steps"].values if "n_steps" in dt["sample_stats"] else np.nan
                    rows.append({"model": name, "target_accept": ta, "draws": draws, "seed": seed, "seconds": secs,
                                 "min_ess_bulk": d["ess_bulk"].min(), "min_ess_tail": d["ess_tail"].min(),
                                 "max_rhat": d["r_hat"].max(), "divergences": d.attrs["divergences"],
                                 "mean_steps": float(np.mean(steps))})
                print(f"{name} target_accept={ta} draws={draws}: done", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    df["ess_per_s"] = df["min_ess_bulk"] / df["seconds"]
    g = df.groupby(["model", "target_accept", "draws"])
    table = pd.DataFrame({
        "seconds (median)": g["seconds"].median(),
        "leapfrog steps/draw": g["mean_steps"].mean(),
        "min bulk ESS (worst seed)": g["min_ess_bulk"].min(),
        "min tail ESS (worst seed)": g["min_ess_tail"].min(),
        "bulk ESS/s (median)": g["ess_per_s"].median(),
        "divergences (total)": g["divergences"].sum(),
        "seeds with divergences": g["divergences"].apply(lambda s: int((s > 0).sum())),
        "max R-hat": g["max_rhat"].max(),
    })
    base = (table.xs((0.99, 2000), level=("target_accept", "draws"))["bulk ESS/s (median)"]
            if (0.99 in targets and 2000 in draws_list) else None)
    table["ESS/s vs 0.99/2000"] = [v / base[m] if base is not None else np.nan
                                   for (m, _, _), v in table["bulk ESS/s (median)"].items()]
    fmt = table.reset_index()
    for c, nd in (("seconds (median)", 2), ("leapfrog steps/draw", 1), ("min bulk ESS (worst seed)", 0),
                  ("min tail ESS (worst seed)", 0), ("bulk ESS/s (median)", 0), ("max R-hat", 3),
                  ("ESS/s vs 0.99/2000", 2)):
        fmt[c] = fmt[c].round(nd)
    cmd = "PYTHONPATH=$PWD python " + " ".join(["benchmarks/bench_sampler_settings.py", *sys.argv[1:]])
    head = [f"Command: `{cmd}`",
            "",
            f"SIMULATED data (bundled, seed 20261126), VAS month 6, MD; {CHAINS} chains, tune = draws, "
            f"seeds 1-{args.seeds}; nutpie; load average {load0:.1f} at start and {os.getloadavg()[0]:.1f} at end "
            f"on {os.cpu_count()} cores (other jobs share them: seconds are noisy, ratios within one run less so); "
            f"Python {platform.python_version()}.",
            "Reported parameters are those `diagnose` checks (every sampled parameter but the standardised offsets z*, e.g. mu, tau, sigma_source, source_mean, theta; network: d, tau, class means and SDs, trial baselines and effects).",
            ""]
    md = "\n".join(head) + markdown(fmt) + "\n"
    print(md)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(md)


if __name__ == "__main__":
    main()
