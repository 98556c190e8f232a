"""Recovery of the per-source log odds ratios of adverse events (SIMULATED data; slow).

bayes_koa.simulate draws AE_any per arm on the 25 real trial designs with a trial-specific
baseline (control risk 0.15, logit SD 0.5 between trials) and true log odds ratios MSC vs
control BM 0.5, UC 0.4, AD 0.3 (truth["adverse_events"]). Over 20 seeds the safety model's 95%
intervals for source_mean[s] (its log odds ratio per source) must cover the truth at a rate
consistent with 95%.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import bayes_koa as bk
from bayes_koa.inference.diagnostics import SamplingWarning

SEEDS = range(101, 121)
SOURCES = ("BM", "UC", "AD")


@pytest.mark.slow
def test_source_log_odds_ratios_are_recovered():
    covered, width, divergences, rows = 0, [], 0, []
    for seed in SEEDS:
        data = bk.simulate(seed=seed, outcomes=("VAS",), times=(6,))
        truth = data.truth["adverse_events"]["log_or"]
        effects = bk.effect_sizes(data, measure="logOR", outcomes=["AE_any"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SamplingWarning)
            result = bk.fit(effects, "safety", seed=seed, draws=1000, tune=1000)
        divergences += result.diagnostics().attrs["divergences"]
        sm = result.dt["posterior"]["source_mean"]
        lo, hi = sm.quantile([0.025, 0.975], dim=("chain", "draw")).values
        for j, s in enumerate(sm["source"].values):
            covered += bool(lo[j] <= truth[s] <= hi[j])
            width.append(hi[j] - lo[j])
            rows.append((seed, s, truth[s], lo[j], hi[j]))
    n = len(rows)
    assert n == len(SEEDS) * len(SOURCES)
    # Binomial tolerance: were the n intervals independent with exact 95% coverage, the number
    # covering would be Binomial(n, 0.95); accept anything from its 0.1% quantile up (51 of 60).
    # Intervals of one data set share mu and sigma_source, which widens the spread a little, and
    # the upper side cannot reject at all here (P(all 60 cover) = 0.95^60 = 0.046).
    lower = stats.binom.ppf(0.001, n, 0.95)
    per_source = {s: int(sum(lo <= t <= hi for _, src, t, lo, hi in rows if src == s)) for s in SOURCES}
    report = f"{covered}/{n} intervals cover (lower limit {lower:g}; per source {per_source} of " \
             f"{len(SEEDS)}); mean width {np.mean(width):.2f}; {divergences} divergences"
    print(report)
    assert covered >= lower, report
    # the intervals say something: narrower than the prior's 95% interval for a source mean
    # (mu ~ N(0, 1.5), sigma_source ~ HalfNormal(0.5): width > 5.8)
    assert np.mean(width) < 2.0, report
