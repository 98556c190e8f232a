"""Sampler settings of the safety model (binomial kind, the claims model of adverse events) over seeds.

    PYTHONPATH=$PWD python benchmarks/bench_safety_settings.py [--seeds 5] [--settings 0.99:2000:2000,0.99:1000:1500]

Each setting is target_accept:tune:draws; 4 chains, adapt=False (the first fit as it is), SIMULATED data
(AE_any, logOR). Prints per seed the sampling seconds, min bulk / tail ESS, max R-hat and divergences of
the parameters ``diagnose`` checks, then the worst seed per setting.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--settings", default="0.99:2000:2000,0.99:1000:1500")
    args = ap.parse_args()
    import bayes_koa as bk
    from bayes_koa.inference.diagnostics import SamplingWarning

    eff = bk.effect_sizes(bk.load_simulated(), measure="logOR", outcomes=["AE_any"])
    print(f"safety, SIMULATED data, AE_any logOR; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    bk.fit(eff, "safety", seed=0, draws=50, tune=50, groups=(), warn=False, adapt=False)  # compile / cache load
    worst = {}
    for setting in args.settings.split(","):
        ta, tune, draws = setting.split(":")
        for seed in range(1, args.seeds + 1):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SamplingWarning)  # the problems are printed below
                r = bk.fit(eff, "safety", seed=seed, draws=int(draws), tune=int(tune), target_accept=float(ta),
                           groups=(), adapt=False)
            secs = time.perf_counter() - t
            d = r.diagnostics()
            row = (secs, d["ess_bulk"].min(), d["ess_tail"].min(), d["r_hat"].max(), d.attrs["divergences"])
            print(f"{setting} seed {seed}: {row[0]:5.1f} s, min ESS bulk {row[1]:5.0f} tail {row[2]:5.0f}, "
                  f"max R-hat {row[3]:.4f}, divergences {row[4]}", flush=True)
            w = worst.setdefault(setting, [0.0, 1e9, 1e9, 0.0, 0])
            worst[setting] = [max(w[0], row[0]), min(w[1], row[1]), min(w[2], row[2]), max(w[3], row[3]), w[4] + row[4]]
    for setting, w in worst.items():
        print(f"{setting}: worst seed: {w[0]:.1f} s, min ESS bulk {w[1]:.0f} tail {w[2]:.0f}, max R-hat {w[3]:.4f}; "
              f"divergences total {w[4]}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
