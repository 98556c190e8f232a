"""Parameter recovery of the multivariate model (multi_outcome) on SIMULATED data with known truth.

Design: the bundled in-scope RCT designs (25 trials) replicated three times (75 trials: 42 BM, 27 AD,
6 UC; the trial ids get a suffix _r0/_r1/_r2), every trial reporting all four outcomes at 3, 6 and 12
months (so every data set has the same shape and the model compiles once). Data:
``bayes_koa.simulate`` with the default truth (SMD scale) and N_SEEDS independent seeds; effects
``effect_sizes(..., measure="SMD")``. The simulation draws independent sampling errors across outcomes
and times, so the model is fitted with rho_outcome = rho_time = 0 (its stated covariance is then the
true one).

Truth the model estimates (the simulation's generating model, ``bayes_koa.simulation``):
- ``source_time_mean[s, t] = f(t) * m_s`` with ``f(3) = 0.8, f(6) = 1, f(12) = 0.9`` and ``m_s`` the
  design average of the comparison means of source s (``truth["design_mean_theta"]``: source mean
  plus origin, dose and injection terms averaged over the design's MSC arms; the model has no
  moderators, so this is its target). ``source_mean = source_time_mean[:, 6]``.
- ``overall_by_time[t] = f(t) * mean_s(m_s)`` (the model's overall effect is the mean over sources).

Expected coverage of 95% equal-tailed intervals: 0.95 if the model were exactly the generating
model with the truth drawn from its prior. Here the truth is fixed and the model is close to, not
equal to, the generator (time enters the truth as a multiplier, the model is additive with a
source x time term; arms of a trial differ by dose in the truth, not in the model), and with three
sources the source means are shrunk towards each other, which can lower coverage of the extreme
UC. The overall effect is a mean over three sources, so its intervals are wide (coverage near 1).

Checks and tolerances (binomial reasoning; seeds are independent):
- each of the 12 quantities (9 source x time means, 3 overall times) is covered in at least
  N_SEEDS - MAX_MISSES_EACH seeds: with true coverage 0.95, misses ~ Binomial(20, 0.05) and
  P(misses >= 6) = 0.00033, so over 12 quantities a false failure has probability < 0.004 (union
  bound). The check catches a quantity covered in 70% of seeds or less.
- pooled over the 180 source x time intervals, coverage >= 0.85: the 3 times of a source share most
  of their information, so at worst the 180 intervals are 60 independent units (3 sources x 20
  seeds) each counted 3 times; 0.85 allows 27 misses = 9 units, and P(Binomial(60, 0.05) >= 10) =
  0.0009.
- sharpness, so that coverage does not come from uninformative intervals: the mean width of each
  source-mean interval is below twice the width the trial count allows, 2 x 3.92 x tau / sqrt(k_s)
  (tau = 0.25 the true between-trial SD, k_s the source's trials: 42 BM, 27 AD, 6 UC; a source mean
  cannot be known better than the spread of its trials' effects over sqrt(k_s)). (A first version
  required every width below the BM-UC gap, 0.415; UC, with 6 trials, failed it at 0.443.)
Run with ``pytest -m slow tests/slow/test_multivariate_recovery.py -s`` to see the numbers; about
20 s per seed once compiled.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

import bayes_koa as bk
from bayes_koa.kinds import prepare
from bayes_koa.inference.diagnostics import diagnose
from bayes_koa.inference.sampling import sample_spec
from bayes_koa.koa.simulation import _bundled_trials
from bayes_koa.kinds import load_spec

pytestmark = pytest.mark.slow

N_SEEDS = 20
MAX_MISSES_EACH = 5          # see module docstring: P(Binomial(20, 0.05) >= 6) = 0.00033
MIN_POOLED_SOURCE = 0.85     # see module docstring
SOURCES = ("BM", "UC", "AD")
TIMES = (3.0, 6.0, 12.0)
FULL_REPORTING = {"report_probability": {"Lequesne": 1.0, "Lysholm": 1.0}}


def _design(replicates: int = 3) -> pd.DataFrame:
    trials = _bundled_trials()
    return pd.concat([trials.assign(trial_id=trials["trial_id"] + f"_r{k}") for k in range(replicates)],
                     ignore_index=True)


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    design_trials = _design()
    # centred source level (parameterization "mixed"): every source here has hundreds of rows (27-42
    # trials x 4 outcomes x 3 times, or 6 UC trials x 12), the regime where a centred level mixes better.
    # Non-centred, the pooled mu reached R-hat 1.016-1.021 in one of 20 seeds at 4 x 2000 draws (mu and
    # the source z's trade off along a ridge); centred, 10 seeds gave max R-hat 1.003-1.011.
    spec = load_spec("multi_outcome", rho_outcome=0.0, rho_time=0.0, parameterization="mixed")
    rows = []
    for seed in range(1, N_SEEDS + 1):
        data = bk.simulate(design=design_trials, truth=FULL_REPORTING, seed=seed, adverse_events=False)
        effects = bk.effect_sizes(data, measure="SMD")
        design, excluded = prepare(spec, effects)
        # same shape for every seed (one compile): 432 rows per replicate (38 comparisons, 4 outcomes,
        # 3 times, minus the times after a trial's follow-up)
        assert excluded.empty and len(design.row) == 3 * 432
        # no warning filter: sample_spec itself warns about nothing; sampler health is asserted below
        dt = sample_spec(spec, design, seed=seed, draws=2000, tune=2000, extra_groups=False)
        post = dt["posterior"]
        health = diagnose(dt, var_names=["mu", "tau", "overall_by_time", "source_time_mean"])
        # a coverage count from a fit that did not converge would mean nothing: R-hat <= 1.02 and divergences
        # isolated (<= 0.5% of the 8,000 draws; 0-29 seen in 10 seeds). Why 1.02 and not 1.01: centred, the
        # worst of the 14 checked quantities reached 1.003-1.011 over 10 seeds with bulk ESS 550-1400, the
        # spread R-hat has between converged chains at that ESS; chains that disagree give more than 1.02
        # (the non-centred model's mu reached 1.021, which this refuses).
        assert (health["r_hat"] <= 1.02).all() and health.attrs["divergences"] <= 40, health.attrs["problems"]
        f, m = data.truth["time_profile"], data.truth["design_mean_theta"]
        n_div = int(dt["sample_stats"]["diverging"].sum())

        def add(what, draws, truth, source=""):
            lo, hi = np.quantile(draws.values.ravel(), [0.025, 0.975])
            rows.append({"seed": seed, "what": what, "source": source, "truth": truth, "lo": lo, "hi": hi,
                         "mean": float(draws.mean()), "covered": lo <= truth <= hi, "divergences": n_div})

        for t in TIMES:
            add(f"overall_by_time[{t:g}]", post["overall_by_time"].sel(time=t),
                f[f"{t:g}"] * float(np.mean([m[s] for s in SOURCES])))
            for s in SOURCES:
                add(f"source_time_mean[{s}, {t:g}]", post["source_time_mean"].sel(source=s, time=t),
                    f[f"{t:g}"] * m[s], source=s)
        rows.append({"seed": seed, "what": "tau", "truth": np.nan, "mean": float(post["tau"].mean()),
                     "lo": float(post["tau"].quantile(0.025)), "hi": float(post["tau"].quantile(0.975)),
                     "covered": np.nan, "divergences": n_div, "source": ""})
    table = pd.DataFrame(rows)
    table.attrs["trials_per_source"] = effects.groupby("cell_source")["trial_id"].nunique().to_dict()
    cov = (table[table["what"] != "tau"].astype({"covered": float}).groupby("what")["covered"]
           .agg(["sum", "count", "mean"]))
    bias = table[table["what"] != "tau"].assign(err=lambda d: d["mean"] - d["truth"]).groupby("what")["err"].mean()
    print("\nSIMULATED data: coverage of 95% intervals over", N_SEEDS, "seeds\n",
          cov.join(bias.rename("mean error")).round(3).to_string())
    print("pooled source x time coverage:",
          round(float(table[table["source"] != ""]["covered"].astype(float).mean()), 3),
          "; overall_by_time coverage:",
          round(float(table[table["what"].str.startswith("overall")]["covered"].astype(float).mean()), 3),
          "; divergences per seed:", table.groupby("seed")["divergences"].first().tolist(),
          "; posterior mean tau (truth 0.25 for the trial effect before the time multiplier):",
          round(float(table[table["what"] == "tau"]["mean"].mean()), 3))
    return table


def test_each_quantity_is_covered_in_most_seeds(runs):
    q = runs[runs["what"] != "tau"]
    misses = q.groupby("what")["covered"].apply(lambda c: int((~c.astype(bool)).sum()))
    assert (misses <= MAX_MISSES_EACH).all(), misses[misses > MAX_MISSES_EACH].to_dict()


def test_pooled_source_coverage(runs):
    src = runs[runs["source"] != ""]
    assert len(src) == N_SEEDS * 9
    assert src["covered"].astype(float).mean() >= MIN_POOLED_SOURCE


def test_source_intervals_are_informative(runs):
    at6 = runs[runs["what"].str.startswith("source_time_mean") & runs["what"].str.endswith(", 6]")]
    width = (at6["hi"] - at6["lo"]).groupby(at6["source"]).mean()
    k = pd.Series(runs.attrs["trials_per_source"])
    assert k.to_dict() == {"AD": 27, "BM": 42, "UC": 6}
    bound = 2 * 3.92 * 0.25 / np.sqrt(k)  # see module docstring
    assert (width < bound.reindex(width.index)).all(), (width.to_dict(), bound.to_dict())
