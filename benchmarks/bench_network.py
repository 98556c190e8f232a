"""Benchmark: a network fit of the bundled design against today's source_hierarchical fit.

Data: the shipped SIMULATED data set (bayes_koa.koa.simulation.load_simulated), VAS at month 6, mean
differences (mm). (a) source_hierarchical on the effect table (bayes_koa.effect_sizes); (b) the
network kind (models/network.toml: arm-based, random effects, MSC class source -> origin) on the arm
table of bayes_koa.koa.network.network_arms. Each model is fitted twice in one process with the
package's default sampler settings (4 chains x 2000 draws + 2000 tune, target_accept 0.99): the first
fit compiles (and stores the prior draws, as every ``fit`` does; log-likelihood and log-prior come when
asked), the
second reuses the compiled model (another seed). The fit cache is off (every fit samples) and the
compiled-model cache is a new empty folder (the first fit compiles; PyTensor's and Numba's own caches
stay as they are). Prints the times and the ratios network /
source_hierarchical (target: <= 2).

Run: .venv/bin/python benchmarks/bench_network.py [--draws N] [--tune N] [--chains C]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time
import warnings

# set before bayes_koa reads them: every fit samples (no stored draws), and the first fit compiles
os.environ["BAYES_KOA_FIT_CACHE"] = "off"
os.environ["BAYES_KOA_CACHE"] = tempfile.mkdtemp(prefix="bk-bench-network-")
atexit.register(shutil.rmtree, os.environ["BAYES_KOA_CACHE"], ignore_errors=True)

from bayes_koa.api.fitting import fit
from bayes_koa.cli import SIM_LINE
from bayes_koa.effects.table import effect_sizes
from bayes_koa.inference import sampling
from bayes_koa.inference.diagnostics import SamplingWarning
from bayes_koa.koa.network import network_arms
from bayes_koa.koa.simulation import load_simulated


def _time(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--tune", type=int, default=2000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=20261126)
    args = ap.parse_args()
    warnings.simplefilter("ignore", SamplingWarning)  # diagnostics are printed below, not timed
    print(SIM_LINE)
    data = load_simulated()
    eff = effect_sizes(data, measure="MD", outcomes=["VAS"])
    arms = network_arms(data, "VAS", 6, measure="MD")
    kw = dict(draws=args.draws, tune=args.tune, chains=args.chains)
    sampling.clear_cache()
    times = {}
    results = {}
    for name, call in (
        ("source_hierarchical", lambda s: fit(eff, "source_hierarchical", outcome="VAS", time=6, seed=s, **kw)),
        ("network", lambda s: fit(arms, "network", study="study", treatment="treatment", reference="placebo",
                                  measure="MD", seed=s, **kw)),
    ):
        first, t1 = _time(lambda: call(args.seed))
        second, t2 = _time(lambda: call(args.seed + 1))
        times[name] = (t1, t2)
        results[name] = second
        diag = second.diagnostics().attrs
        print(f"{name:>20}: first fit (compile + sample) {t1:6.1f} s, second fit (compiled model reused) "
              f"{t2:6.1f} s; {len(second.effects)} rows used, divergences {diag['divergences']}, "
              f"problems: {'; '.join(diag['problems']) or 'none'}")
    net = results["network"]
    print(f"network: {net.effects['nma_trial'].nunique()} trials, {net.dt['posterior'].sizes['node']} nodes, "
          f"{len(net.effects)} arms; compiled models in cache: {sampling.cache_size()}")
    (h1, h2), (n1, n2) = times["source_hierarchical"], times["network"]
    print(f"ratio network / source_hierarchical: first fit {n1 / h1:.2f}, second fit {n2 / h2:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
