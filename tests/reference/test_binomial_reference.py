"""The binomial adverse-event model against an independent oracle: direct numerical integration.

One trial, 3/20 patients with an adverse event in the MSC arm and 0/20 in the control arm (a
zero cell: a contrast-based analysis would add 0.5 to every cell). The model with levels = []:

    0 ~ Binomial(20, expit(alpha)),  3 ~ Binomial(20, expit(alpha + theta)),
    theta = mu + tau z,  alpha ~ N(0, 5),  mu ~ N(0, 5),  tau ~ HalfNormal(0.5),  z ~ N(0, 1).

Oracle (SciPy, no sampling): with mu integrated out analytically, theta | tau ~ N(0, sqrt(5^2 +
tau^2)), so the posterior of (alpha, theta, tau) is the binomial likelihood times these priors on
a grid: alpha in [-30, 12], theta in [-15, 30] (step 0.02; both more than 6 prior SDs beyond the
posterior mass) and tau in (0, 4] (8 prior SDs). P(mu > c | data) uses mu | theta, tau ~ Normal
(theta 25 / (25 + tau^2), 5 tau / sqrt(25 + tau^2)) in closed form. Grid error (step 0.02 on a
posterior with SD ~ 2) is far below the Monte Carlo error, so the tolerances are Monte Carlo SEs.

One compiled model (two short samplings) for the whole file.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import bayes_koa as bk
from bayes_koa.kinds.binomial import p_or_above

S_ALPHA, S_MU, S_TAU = 5.0, 5.0, 0.5
PRIORS = {"alpha": f"Normal(mu=0, sigma={S_ALPHA})", "mu": f"Normal(mu=0, sigma={S_MU})",
          "tau": f"HalfNormal(sigma={S_TAU})"}
EVENTS = {"msc": (3, 20), "control": (0, 20)}
# |MCMC - oracle| <= K Monte Carlo SEs: the MCMC estimate is ~normal around the exact value with SD
# = MCSE, so 4 SEs fail a correct model with probability ~6e-5 per check, and leave room for the
# ~10% error of the MCSE estimate itself.
K = 4.0


def _effects() -> pd.DataFrame:
    trials = pd.DataFrame([{"trial_id": "T1", "arm_id": a, "arm_role": a, "n_randomized": n,
                            "cell_source": "BM", "in_scope": "yes", "origin": None, "control_type": None,
                            "cells_per_injection": None, "n_injections": None}  # required, not reported
                           for a, (_, n) in EVENTS.items()])
    outcomes = pd.DataFrame([{"trial_id": "T1", "arm_id": a, "outcome": "AE_any", "lower_is_better": "true",
                              "time_months": 12, "value_type": "final", "n": n, "events": e,
                              "stat_reported": "events"} for a, (e, n) in EVENTS.items()])
    return bk.effect_sizes((trials, outcomes), measure="logOR")


def _fit(effects):
    return bk.fit(effects, "safety", priors=PRIORS, structure={"levels": []}, seed=20251, draws=4000, tune=1000)


@pytest.fixture(scope="module")
def effects():
    return _effects()


@pytest.fixture(scope="module")
def result(effects):
    return _fit(effects)


@pytest.fixture(scope="module")
def oracle():
    h = 0.02
    alpha = np.arange(-30.0, 12.0, h)
    theta = np.arange(-15.0, 30.0, h)
    a, t = np.meshgrid(alpha, theta, indexing="ij")
    log_post = (stats.binom.logpmf(EVENTS["control"][0], EVENTS["control"][1], special.expit(a))
                + stats.binom.logpmf(EVENTS["msc"][0], EVENTS["msc"][1], special.expit(a + t))
                + stats.norm.logpdf(a, 0.0, S_ALPHA))
    lik_theta = np.exp(log_post - log_post.max()).sum(axis=0)  # alpha integrated out
    tau = np.linspace(1e-6, 8 * S_TAU, 4001)[:, None]
    joint = (lik_theta[None, :] * stats.norm.pdf(theta[None, :], 0.0, np.sqrt(S_MU**2 + tau**2))
             * stats.halfnorm.pdf(tau, scale=S_TAU))  # (tau, theta), unnormalised
    post = joint.sum(axis=0)
    post /= post.sum()
    mean = float((theta * post).sum())
    cdf = np.cumsum(post) - post / 2  # midpoint rule for the distribution function

    def p_mu_above(c):
        m = theta[None, :] * S_MU**2 / (S_MU**2 + tau**2)
        s = S_MU * tau / np.sqrt(S_MU**2 + tau**2)
        return float((joint * stats.norm.sf((c - m) / s)).sum() / joint.sum())

    return {"mean": mean, "sd": float(np.sqrt(((theta - mean) ** 2 * post).sum())),
            "quantile": lambda q: float(np.interp(q, cdf, theta)), "p_mu_above": p_mu_above}


def test_sampler_had_no_trouble(result):
    assert result.diagnostics().attrs["problems"] == []


def test_theta_matches_numerical_integration(result, oracle):
    theta = result.dt["posterior"]["theta"].isel(comparison=0)
    draws = theta.values.ravel()
    ds = theta.to_dataset(name="theta")
    mcse = float(az.mcse(ds, method="mean")["theta"])
    assert abs(draws.mean() - oracle["mean"]) <= K * mcse, (draws.mean(), oracle["mean"], mcse)
    mcse_sd = float(az.mcse(ds, method="sd")["theta"])
    assert abs(draws.std() - oracle["sd"]) <= K * mcse_sd, (draws.std(), oracle["sd"], mcse_sd)
    for q in (0.025, 0.5, 0.975):
        mcse_q = float(az.mcse(ds, method="quantile", prob=q)["theta"])
        got, want = float(np.quantile(draws, q)), oracle["quantile"](q)
        assert abs(got - want) <= K * mcse_q, (q, got, want, mcse_q)
    # the oracle is not trivially wide: the data move theta well away from its prior (mean 0)
    assert oracle["mean"] > 3.0 and oracle["quantile"](0.025) > -0.2


@pytest.mark.parametrize("threshold", [1.0, 1.5])
def test_p_or_above_matches_numerical_integration(result, oracle, threshold):
    row = p_or_above(result, threshold).loc["odds_ratio"]
    want = oracle["p_mu_above"](np.log(threshold))
    assert abs(row["p"] - want) <= K * row["mcse"], (row["p"], want, row["mcse"])
    assert 0.9 < want < 0.99  # a probability the draws can resolve (not 0 or 1)


def test_zero_cell_fits_without_any_correction(effects, result):
    """The model sees the raw counts 0/20 and 3/20; the table's 0.5-corrected yi/vi play no part."""
    assert effects["estimated"].iloc[0] == "0.5 added to every cell (zero cell)"
    dt = result.require("log_likelihood").dt  # computed when asked for
    assert list(dt["observed_data"]["y_obs"]["arm"].values) == ["T1 (control)", "T1 (msc)"]
    np.testing.assert_array_equal(dt["observed_data"]["y_obs"].values, [0, 3])
    np.testing.assert_array_equal(dt["constant_data"]["n_arm"].values, [20, 20])
    # the stored pointwise log-likelihood is the binomial pmf of the raw counts, draw by draw
    post = dt["posterior"]
    alpha = post["alpha"].isel(trial=0).values
    theta = post["theta"].isel(comparison=0).values
    ll = dt["log_likelihood"]["y_obs"]
    np.testing.assert_allclose(ll.isel(arm=0).values, stats.binom.logpmf(0, 20, special.expit(alpha)),
                               rtol=1e-9, atol=1e-9)  # float64 round-off only
    np.testing.assert_allclose(ll.isel(arm=1).values, stats.binom.logpmf(3, 20, special.expit(alpha + theta)),
                               rtol=1e-9, atol=1e-9)
    # without yi and vi at all, the same seed gives the same draws: nothing corrected is used
    blank = effects.assign(yi=np.nan, vi=np.nan, sei=np.nan, estimated="")
    again = _fit(blank)
    np.testing.assert_array_equal(again.dt["posterior"]["theta"].values, post["theta"].values)
