"""Parameter recovery of source_hierarchical on data SIMULATED on the real designs (slow).

Truth: the simulation's source means (SMD at 6 months, bayes_koa/koa/data/simulated/truth.json) with
the origin, dose and injection terms switched off, so the model without those terms is the true
model. Over N_SEEDS data sets x 3 sources, the 95% credible intervals should cover the truth about
95% of the time.
"""

import numpy as np
import pytest
from scipy import stats

import bayes_koa as bk

pytestmark = pytest.mark.slow

N_SEEDS = 20
TRUTH_OFF = {"origin_offsets": {s: {"autologous": 0.0, "allogeneic": 0.0} for s in ("BM", "UC", "AD")},
             "beta": {"log_dose": 0.0, "n_injections": 0.0}}


def _coverage():
    hits, total, rows, troubled = 0, 0, [], []
    for seed in range(N_SEEDS):
        data = bk.simulate(truth=TRUTH_OFF, seed=1000 + seed, outcomes=("VAS",), times=(6.0,),
                           adverse_events=False)
        truth = data.truth["source_means"]
        eff = bk.effect_sizes(data, measure="SMD", outcomes=["VAS"])
        res = bk.fit(eff, "source_hierarchical", time=6, seed=seed, warn=False)
        if res.diagnostics().attrs["problems"]:
            troubled.append((seed, res.diagnostics().attrs["problems"]))
        q = res.draws("source_mean").quantile([0.025, 0.975], dim=("chain", "draw"))
        for s in q["source"].values:
            lo, hi = (float(v) for v in q.sel(source=s).values)
            hits += lo <= truth[s] <= hi
            total += 1
            rows.append((seed, s, lo, hi, truth[s]))
    return hits, total, rows, troubled


def test_source_means_are_covered_at_the_nominal_rate():
    hits, total, rows, troubled = _coverage()
    # coverage only means something if the sampler worked. R-hat and ESS must pass in every fit; an
    # isolated divergence (1 in 8000 transitions, seen in 1 of 20 fits when run) marks a rare visit to
    # the funnel of sigma_source, while a real problem shows as many divergences in many fits: allow at
    # most 2 fits with at most 5 divergences each
    other = [(s, p) for s, ps in troubled for p in ps if "divergent" not in p]
    assert not other, other
    divergent = [(s, p) for s, ps in troubled for p in ps if "divergent" in p]
    assert len(divergent) <= 2 and all(int(p.split()[0]) <= 5 for _, p in divergent), divergent
    # Intervals are correlated within a data set, but even as independent Bernoulli(0.95) trials the
    # probability of fewer than 51 hits out of 60 is 0.6% (binomial cdf), while a model that is
    # biased or too confident (true coverage 80%) falls below 51 with probability 88%.
    assert total == 3 * N_SEEDS
    floor = 51
    assert stats.binom.cdf(floor - 1, total, 0.95) < 0.01
    assert hits >= floor, (hits, total, rows)
    # and not wildly over-covered (intervals uselessly wide): 60/60 is allowed, since with the
    # package's weakly informative priors slight over-coverage is expected for UC (2 trials)
    widths = np.array([hi - lo for *_, lo, hi, _ in rows])
    assert np.median(widths) < 1.0  # SMD units: the half-width of a useful interval is < 0.5
