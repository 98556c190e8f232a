"""Model checks that refit (influence by exact leave-one-out refits) or fit several models.

Run with `make test-slow`. References: the exact quadrature posterior of the normal-normal model
(bayes_koa.exact) and data simulated with a stated truth (bayes_koa.simulate).
"""

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_koa as bk
from bayes_koa.analysis import checks
from bayes_koa.workflows import influence
from bayes_koa.inference.exact import exact_normal_normal

pytestmark = pytest.mark.slow

PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}
MU_PRIOR, TAU_PRIOR = (0.0, 50.0), "HalfNormal(sigma=10)"
ES = pd.read_csv(Path(__file__).parents[1] / "reference" / "data" / "eight_schools.csv")


def exact_mu_without(y, se, i) -> float:
    keep = np.arange(len(y)) != i
    return exact_normal_normal(np.asarray(y)[keep], np.asarray(se)[keep], mu_prior=MU_PRIOR,
                               tau_prior=TAU_PRIOR).mu.mean


def test_refits_match_exact_and_psis(eight_schools):
    """Every school refitted (one compile for all eight: same size, neutral labels)."""
    r = bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=21, draws=1000, tune=1000)
    table = influence.influence(r, refit_threshold_k=None, refit_trials=list(ES["school"]))
    y, se = ES["y"].to_numpy(float), ES["sigma"].to_numpy(float)
    psis = table[table["method"] == "psis"].set_index("trial")
    refit = table[table["method"] == "refit"].set_index("trial")
    assert list(refit.index) == list(ES["school"]) and (refit["note"] == "").all()
    for i, school in enumerate(ES["school"]):
        exact = exact_mu_without(y, se, i)
        # an MCMC mean within 4 of its MC SEs of the exact posterior mean
        assert abs(refit.loc[school, "mu_mean"] - exact) < 4 * refit.loc[school, "mu_mcse"], school
        # PSIS (k < 0.7 here) and the refit: independent MC errors, 4 SEs of their difference
        tol = 4 * math.hypot(refit.loc[school, "mu_mcse"], psis.loc[school, "mu_mcse"])
        assert abs(refit.loc[school, "mu_mean"] - psis.loc[school, "mu_mean"]) < tol, school


def test_outlier_with_high_k_is_refitted():
    # a ninth school with a huge effect (80, se 10): k > 0.7 even for the integrated LOO, so the
    # default threshold refits it; the refit matches the exact posterior without it
    y = np.r_[ES["y"].to_numpy(float), 80.0]
    se = np.r_[ES["sigma"].to_numpy(float), 10.0]
    table_in = pd.DataFrame({"trial_id": [*ES["school"], "Z"], "yi": y, "sei": se})
    r = bk.fit(table_in, "random_effects", priors=PRIORS, seed=5, draws=1000, tune=1000)
    table = influence.influence(r)
    z = table[table["trial"] == "Z"].set_index("method")
    assert z.loc["psis", "pareto_k"] > 0.7 and "refit" in z.index
    assert list(table.loc[table["method"] == "refit", "trial"]) == ["Z"]
    exact = exact_mu_without(y, se, 8)
    assert abs(z.loc["refit", "mu_mean"] - exact) < 4 * z.loc["refit", "mu_mcse"]  # 4 MC SEs
    # the exact drop is ~ -9 (quadrature): removing the outlier moves mu down
    assert z.loc["refit", "mu_change"] < -5


@pytest.fixture(scope="module")
def separated():
    """SIMULATED VAS SMDs at 6 months with well separated source means (BM 0, AD -0.75, UC -1.5)."""
    truth = {"source_means": {"BM": 0.0, "UC": -1.5, "AD": -0.75}, "mu": -0.75, "tau": 0.1}
    data = bk.simulate(truth=truth, seed=3)
    return bk.effect_sizes(data, measure="SMD", outcomes=["VAS"], times=[6])


def test_compare_prefers_the_model_with_sources(separated):
    kw = dict(seed=4, draws=1000, tune=1000, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", checks.ParetoKWarning)
        table = checks.compare({"random": bk.fit(separated, "random_effects", **kw),
                                "source": bk.fit(separated, "source_hierarchical", **kw)})
    assert table.attrs["simulated"]
    # the truth has source means 0.75 SMD apart with tau = 0.1: a single mean with a wide tau
    # predicts each trial worse, by more than 2 SEs of the difference
    assert table.index[0] == "source" and table.loc["source", "weight"] > 0.5
    assert table.loc["random", "elpd_diff"] < -2 * table.loc["random", "dse"]


def test_ranking_influence_psis_agrees_with_refits(separated):
    r = bk.fit(separated, "source_hierarchical", seed=6, draws=1000, tune=1000, warn=False)
    psis = influence.influence(r, refit_threshold_k=None)
    # refit the three trials whose removal moves P(best) of the full-data leader most
    leader = psis.attrs["first_ranked_full"]
    col = f"P(best) {leader}"
    picks = psis.assign(shift=(psis[col] - psis.attrs["p_best_full"][leader]).abs()).nlargest(3, "shift")
    table = influence.influence(r, refit_threshold_k=None, refit_trials=list(picks["trial"]))
    refit = table[table["method"] == "refit"].set_index("trial")
    by_psis = table[table["method"] == "psis"].set_index("trial")
    sources = [c for c in table.columns if c.startswith("P(best) ")]
    for t in refit.index:
        for c in sources:
            # two estimates of a probability near 0.8 (sd 0.4) from 4000 draws each, ESS >= 1000:
            # SE of the difference <= 0.4 * sqrt(2 / 1000) = 0.018; 0.06 ~ 3.4 SEs
            assert refit.loc[t, c] == pytest.approx(by_psis.loc[t, c], abs=0.06), (t, c)
        assert refit.loc[t, "first_ranked"] == by_psis.loc[t, "first_ranked"]
    # the test has teeth: leaving out the most influential trial moves P(best) of the leader by more
    # than that tolerance, by PSIS and by refitting alike
    top = picks["trial"].iloc[0]
    full = psis.attrs["p_best_full"][leader]
    assert abs(by_psis.loc[top, col] - full) > 0.06 and abs(refit.loc[top, col] - full) > 0.06
