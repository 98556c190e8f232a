"""Marginal random effects (the random_effects default) against the exact quadrature and the non-centred model.

Eight schools (BDA3 Table 5.2) and a 60-trial simulated set with clear heterogeneity. For mu and tau:
posterior mean and SD within TOL Monte Carlo SEs of the exact values (inference/exact.py); for every
theta_i: posterior mean and SD within TOL MC SEs of the exact mixture's (theta_i drawn after sampling from its
conditional normal, so this checks the generated draws end to end, including their spread); and the marginal
fit's mu and tau means agree with the non-centred fit's within TOL combined MC SEs. MC SEs from ArviZ
(``az.mcse``, method "mean" / "sd"), which account for autocorrelation.
"""

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayes_koa as bk

# each standardised error is ~N(0, 1) if the sampler and the conditional draws are right: P(|z| > 4) = 6e-5,
# so over the ~70 checks here a false alarm has probability < 0.5%; a wrong conditional variance (e.g.
# se instead of se^2) or a likelihood missing se^2 misses by many MC SEs
TOL = 4.0
PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}


def _simulated(n=60, seed=7):
    # illustrative truth (mu -10, tau 6, SEs uniform on [2, 8]): not trial data
    rng = np.random.default_rng(seed)
    se = rng.uniform(2.0, 8.0, n)
    theta = -10.0 + 6.0 * rng.standard_normal(n)
    return pd.DataFrame({"trial_id": [f"t{i:02d}" for i in range(n)], "yi": theta + se * rng.standard_normal(n),
                         "sei": se})


@pytest.fixture(scope="module", params=["eight_schools", "simulated60"])
def fits(request, eight_schools):
    table = eight_schools if request.param == "eight_schools" else _simulated()
    marg = bk.fit(table, "random_effects", priors=PRIORS, seed=2024, draws=2000, tune=1000,
                  structure={"parameterization": "marginal"})
    nc = bk.fit(table, "random_effects", priors=PRIORS, seed=2024, draws=2000, tune=1000,
                structure={"parameterization": "noncentered"})
    exact = bk.exact_normal_normal(table["yi"].to_numpy(float), table["sei"].to_numpy(float),
                                   mu_prior=(0.0, 50.0), tau_prior=bk.parse_prior(PRIORS["tau"]))
    return marg, nc, exact


def _mcse(res, var, method):
    return np.asarray(az.mcse(res.dt, var_names=[var], method=method)[var].values, dtype=float)


def test_the_default_random_effects_model_is_marginal():
    from bayes_koa.kinds import load_spec

    assert load_spec("random_effects").get("parameterization") == "marginal"


def test_no_sampling_problems(fits):
    marg, _, _ = fits
    assert not marg.diagnostics().attrs["problems"], marg.diagnostics().attrs["problems"]


@pytest.mark.parametrize("var", ["mu", "tau"])
def test_mean_and_sd_match_quadrature(fits, var):
    marg, _, exact = fits
    d = marg.dt["posterior"][var]
    mean_ex = exact.mu_mean if var == "mu" else exact.tau_mean
    sd_ex = exact.mu_sd if var == "mu" else exact.tau_sd
    assert abs(float(d.mean()) - mean_ex) < TOL * float(_mcse(marg, var, "mean")), (var, float(d.mean()), mean_ex)
    assert abs(float(d.std()) - sd_ex) < TOL * float(_mcse(marg, var, "sd")), (var, float(d.std()), sd_ex)


def test_trial_effects_match_quadrature(fits):
    marg, _, exact = fits
    th = marg.dt["posterior"]["theta"]
    mean, sd = th.mean(("chain", "draw")).values, th.std(("chain", "draw")).values
    z_mean = (mean - exact.theta_mean) / _mcse(marg, "theta", "mean")
    z_sd = (sd - exact.theta_sd) / _mcse(marg, "theta", "sd")
    assert np.max(np.abs(z_mean)) < TOL, z_mean
    assert np.max(np.abs(z_sd)) < TOL, z_sd


@pytest.mark.parametrize("var", ["mu", "tau"])
def test_marginal_agrees_with_noncentred(fits, var):
    marg, nc, _ = fits
    diff = float(marg.dt["posterior"][var].mean() - nc.dt["posterior"][var].mean())
    se = float(np.hypot(_mcse(marg, var, "mean"), _mcse(nc, var, "mean")))  # independent runs
    assert abs(diff) < TOL * se, (var, diff, se)
