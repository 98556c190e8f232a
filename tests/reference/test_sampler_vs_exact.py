"""The sampler against the exact normal-normal posterior (quadrature over tau) on eight schools.

Two tau priors with different tails. Each posterior quantile (and mean) of mu and tau from MCMC must
lie within TOL Monte Carlo standard errors of the exact value. MCSE of a quantile comes from ArviZ
(``az.mcse(method="quantile")``), which accounts for autocorrelation.
"""

import arviz as az
import numpy as np
import pytest

import bayes_koa as bk

# 14 checks per prior (6 quantities x 2 parameters + 2 means). If the sampler is right each
# standardised error is ~N(0, 1); P(|z| > 4) = 6e-5, so a false alarm somewhere in the 28 checks has
# probability < 0.2%, while a biased sampler (or a prior passed wrongly) misses by many MCSE.
TOL = 4.0
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PRIORS = {
    "halfnormal": "HalfNormal(sigma=10)",
    "halfcauchy": "HalfCauchy(beta=5)",
}


@pytest.fixture(scope="module", params=sorted(PRIORS))
def pair(request, eight_schools):
    tau_prior = PRIORS[request.param]
    res = bk.fit(eight_schools, "random_effects", seed=2024, draws=4000, tune=2000,
                 priors={"mu": "Normal(mu=0, sigma=50)", "tau": tau_prior})
    exact = bk.exact_normal_normal(eight_schools["yi"].to_numpy(float), eight_schools["sei"].to_numpy(float),
                                   mu_prior=(0.0, 50.0), tau_prior=bk.parse_prior(tau_prior),
                                   quantiles=QUANTILES)
    return res, exact


def test_no_sampling_problems(pair):
    res, _ = pair
    assert res.diagnostics().attrs["divergences"] == 0


@pytest.mark.parametrize("var", ["mu", "tau"])
def test_quantiles_within_mcse(pair, var):
    res, exact = pair
    draws = res.dt["posterior"][var]
    exact_q = exact.mu_quantiles if var == "mu" else exact.tau_quantiles
    for q in QUANTILES:
        est = float(draws.quantile(q, dim=("chain", "draw")))
        se = float(az.mcse(res.dt, var_names=[var], method="quantile", prob=q)[var])
        assert abs(est - exact_q[q]) < TOL * se, (var, q, est, exact_q[q], se)


@pytest.mark.parametrize("var", ["mu", "tau"])
def test_means_within_mcse(pair, var):
    res, exact = pair
    est = float(res.dt["posterior"][var].mean())
    se = float(az.mcse(res.dt, var_names=[var], method="mean")[var])
    truth = exact.mu.mean if var == "mu" else exact.tau_mean
    assert abs(est - truth) < TOL * se, (var, est, truth, se)


def test_prediction_for_a_new_school(pair):
    # theta_new is drawn per posterior draw; its 95% interval ends are quantiles with MCSE of the
    # same order as tau's. Tolerance: TOL standard errors of the quantile computed from draws.
    res, exact = pair
    draws = res.dt["posterior"]["theta_new"]
    for q in (0.025, 0.975):
        est = float(draws.quantile(q, dim=("chain", "draw")))
        se = float(az.mcse(res.dt, var_names=["theta_new"], method="quantile", prob=q)["theta_new"])
        assert abs(est - exact.theta_new.quantile(q)) < TOL * se
