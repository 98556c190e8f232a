"""The sweep's exact path (random_effects) under the empirical tau^2 priors, against direct
numerical integration with SciPy.

The reference never uses bayes_koa's prior classes or its normal-normal algebra: the prior density
of tau is written from the published tau^2 prior (Rhodes et al. 2015, Table 3, as listed in
tests/reference/data/heterogeneity_priors.csv): log(tau^2) = location + scale * T, T ~ Student-t(5),
so with u = log(tau), the density of u is 2/scale * t5((2u - location)/scale). Given tau, (mu, y) is
jointly Gaussian: y ~ N(m0 1, C) with C = diag(s_i^2 + tau^2) + s0^2 1 1', cov(mu, y) = s0^2 1'.
The marginal likelihood is scipy's multivariate normal density, and E[mu | tau, y], Var[mu | tau, y]
come from Gaussian conditioning in covariance form (not the precision-weighted form bayes_koa.exact
uses). Posterior means of tau and mu and P(mu < 0) are then ratios of one-dimensional integrals over
u, computed with scipy.integrate.quad. mu ~ Normal(0, 1) is the package's default prior on the SMD
scale, which random_effects (a model file without priors) uses.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import integrate, stats

from bayes_koa.workflows.sensitivity import PATH_EXACT, sensitivity
from bayes_koa.api.result import MetaAnalysis
from bayes_koa.kinds import load_spec

REF = Path(__file__).parent / "data"

# a small SMD data set (five trials; values of the size seen in knee OA pain trials)
Y = np.array([-0.52, -0.18, -0.41, 0.06, -0.73])
S = np.array([0.21, 0.18, 0.30, 0.25, 0.33])
M0, S0 = 0.0, 1.0  # package default mu prior on the SMD scale: Normal(mu=0, sigma=1)

# Rhodes et al. (2015) rows and the prior set that claims to implement each
PAIN = "general physical health + adverse event + pain + QoL/functioning"
SETS = {
    "rhodes_any": ("any (marginal)", "any"),
    "rhodes_pain_pharma_placebo": (PAIN, "pharma_vs_placebo"),
    "rhodes_pain_nonpharma": (PAIN, "nonpharma_any"),
}


def _published(outcome_type: str, comparison: str) -> tuple[float, float]:
    tab = pd.read_csv(REF / "heterogeneity_priors.csv")
    hit = tab[(tab["source"] == "Rhodes2015") & (tab["distribution"] == "log-t(5)")
              & (tab["outcome_type"] == outcome_type) & (tab["comparison"] == comparison)]
    assert len(hit) == 1, (outcome_type, comparison)
    row = hit.iloc[0]
    return float(row["location"]), float(row["scale"])


def _log_prior_u(u, loc, scale):
    # u = log tau; log(tau^2) = 2u = loc + scale * T  =>  p(u) = (2/scale) t5((2u - loc)/scale)
    return stats.t.logpdf((2 * u - loc) / scale, 5) + math.log(2 / scale)


def _given_tau(u):
    """log p(y | tau), E[mu | tau, y], sd[mu | tau, y] at tau = exp(u), by Gaussian conditioning."""
    c = np.diag(S**2 + math.exp(2 * u)) + S0**2 * np.ones((Y.size, Y.size))
    loglik = stats.multivariate_normal(np.full(Y.size, M0), c).logpdf(Y)
    k = S0**2 * np.linalg.solve(c, np.ones(Y.size))  # C^-1 cov(y, mu)
    mean = M0 + k @ (Y - M0)
    var = S0**2 - S0**2 * k.sum()
    return loglik, mean, math.sqrt(var)


def _quad_posterior(loc, scale):
    """E[tau | y], E[mu | y], P(mu < 0 | y) by quad over u = log tau."""
    shift = _given_tau(math.log(0.15))[0] + _log_prior_u(math.log(0.15), loc, scale)  # cancels in ratios

    def integral(g):
        def f(u):
            loglik, m, sd = _given_tau(u)
            return g(u, m, sd) * math.exp(loglik + _log_prior_u(u, loc, scale) - shift)
        # u from -inf: p(u) has Student-t tails, so tau near 0 keeps real mass (u below log(1e-8)
        # still holds ~1e-5 of it); up to tau = 1e8, where p(y | tau) ~ tau^-5 has long vanished.
        # Split where quad needs help finding the bulk.
        cuts = [math.log(1e-3), math.log(0.02), math.log(0.1), math.log(0.5), math.log(1e3), math.log(1e8)]
        pieces = [(-np.inf, cuts[0])] + list(zip(cuts[:-1], cuts[1:]))
        return sum(integrate.quad(f, a, b, epsabs=0, epsrel=1e-11, limit=400)[0] for a, b in pieces)

    z = integral(lambda u, m, sd: 1.0)
    e_tau = integral(lambda u, m, sd: math.exp(u)) / z
    e_mu = integral(lambda u, m, sd: m) / z
    p_neg = integral(lambda u, m, sd: stats.norm.cdf(0.0, m, sd)) / z
    return e_tau, e_mu, p_neg


@pytest.fixture(scope="module")
def sweep():
    # The exact path needs only the model spec and the effect table: no draws. A MetaAnalysis
    # holding just those (and an empty DataTree) stands in for a fitted random_effects result.
    spec = load_spec("random_effects", measure="SMD")
    effects = pd.DataFrame({"trial_id": [f"T{i}" for i in range(Y.size)], "yi": Y, "vi": S**2,
                            "measure": "SMD", "excluded_reason": ""})
    fake = MetaAnalysis(dt=xr.DataTree(), spec=spec, effects=effects, excluded=effects.iloc[0:0])
    return sensitivity(fake, list(SETS), method="auto")


@pytest.mark.parametrize("name", list(SETS))
def test_exact_path_matches_direct_integration(sweep, name):
    loc, scale = _published(*SETS[name])
    e_tau, e_mu, p_neg = _quad_posterior(loc, scale)
    t = sweep.table[sweep.table["prior_set"] == name].set_index("quantity")
    assert set(t["path"]) == {PATH_EXACT}
    # The exact path integrates over tau with a 2,000-point trapezoid grid, accurate to ~1e-5
    # relative for the moments of tau (bayes_koa.exact docstring; here it agrees with a 100,000-point
    # grid to 1e-9); mu's moments and P(mu<0) are mixtures over the same weights. quad is converged
    # to ~1e-10. 1e-5 relative (absolute for the probability) is the documented grid accuracy.
    assert t.loc["tau", "mean"] == pytest.approx(e_tau, rel=1e-5)
    assert t.loc["mu", "mean"] == pytest.approx(e_mu, rel=1e-5)
    assert t.loc["P(mu<0)", "value"] == pytest.approx(p_neg, abs=1e-5)


def test_reference_would_catch_an_unconverted_tau2_prior(sweep):
    """If the tau^2 prior were used as a prior on tau unchanged (no halving of location and scale),
    E[tau] would move far beyond the tolerance above, so the comparison has teeth."""
    loc, scale = _published(*SETS["rhodes_any"])
    wrong_tau, _, _ = _quad_posterior(2 * loc, 2 * scale)  # density of log tau = t5((u - loc)/scale)/scale
    got = float(sweep.table.query("prior_set == 'rhodes_any' and quantity == 'tau'")["mean"].iloc[0])
    assert abs(wrong_tau - got) / got > 1000 * 1e-5
