"""bayes_koa.exact against independent references.

References used: a brute-force 2-D grid over (mu, tau); closed-form fixed-effect and
known-tau (joint Gaussian) posteriors; the numbers BDA3 prints for complete pooling of the eight
schools; distributions whose posterior equals the prior; SciPy adaptive quadrature.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

from bayes_koa.inference.exact import draws_from_exact, exact_normal_normal

DATA = Path(__file__).parent / "data" / "eight_schools.csv"
PROBS = (0.025, 0.25, 0.5, 0.75, 0.975)


@pytest.fixture(scope="module")
def schools() -> pd.DataFrame:
    return pd.read_csv(DATA)


def brute_force_2d(y, s, log_prior_tau, mu_prior=(0.0, 50.0), mu_lim=(-50.0, 70.0),
                   tau_max=250.0, n_mu=1601, n_tau=1601):
    """p(mu, tau | y) on a plain rectangular grid (theta integrated out: y_i ~ N(mu, s_i^2+tau^2)),
    normalised with the 2-D trapezoid rule. Shares no code with bayes_koa.inference.exact."""
    mu = np.linspace(*mu_lim, n_mu)
    tau = np.linspace(0.0, tau_max, n_tau)
    m, t = np.meshgrid(mu, tau, indexing="ij")
    v = s**2 + t[..., None] ** 2
    log_lik = -0.5 * (np.log(2 * np.pi * v) + (y - m[..., None]) ** 2 / v).sum(-1)
    log_joint = log_lik + stats.norm.logpdf(m, *mu_prior) + log_prior_tau(t)
    w_mu = np.full(n_mu, mu[1] - mu[0])
    w_mu[[0, -1]] /= 2
    w_tau = np.full(n_tau, tau[1] - tau[0])
    w_tau[[0, -1]] /= 2
    top = log_joint.max()
    cell = np.exp(log_joint - top) * w_mu[:, None] * w_tau[None, :]
    z = cell.sum()
    cell /= z
    p_mu, p_tau = cell.sum(1), cell.sum(0)

    def quantiles(x, mass, w):
        dens = mass / w
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(x))])
        return np.interp(PROBS, cdf / cdf[-1], x)

    def mean_sd(x, mass):
        mean = np.sum(mass * x)
        return mean, math.sqrt(np.sum(mass * (x - mean) ** 2))

    return {
        "mu": (*mean_sd(mu, p_mu), quantiles(mu, p_mu, w_mu)),
        "tau": (*mean_sd(tau, p_tau), quantiles(tau, p_tau, w_tau)),
        "log_ml": math.log(z) + top,
        "h_mu": mu[1] - mu[0],
        "h_tau": tau[1] - tau[0],
        "edge_mass": max(p_mu[0], p_mu[-1], p_tau[-1]),
    }


@pytest.mark.parametrize(
    "log_prior_tau",
    [stats.halfnorm(scale=10).logpdf, stats.halfcauchy(scale=25).logpdf],
    ids=["HalfNormal(sigma=10)", "HalfCauchy(beta=25)"],
)
def test_eight_schools_against_brute_force_grid(schools, log_prior_tau):
    y, s = schools["y"].to_numpy(float), schools["sigma"].to_numpy(float)
    bf = brute_force_2d(y, s, log_prior_tau)
    # the brute-force box must hold the posterior (else the reference itself is truncated)
    assert bf["edge_mass"] < 1e-8
    post = exact_normal_normal(y, s, mu_prior=(0.0, 50.0), tau_prior=log_prior_tau)
    exact = {
        "mu": (post.mu.mean, post.mu.sd, np.array([post.mu_quantiles[p] for p in PROBS])),
        "tau": (post.tau_mean, post.tau_sd, np.array([post.tau_quantiles[p] for p in PROBS])),
    }
    for name, h in (("mu", bf["h_mu"]), ("tau", bf["h_tau"])):
        bf_mean, bf_sd, bf_q = bf[name]
        ex_mean, ex_sd, ex_q = exact[name]
        # Tolerances are set by the brute-force grid (steps h_mu = 0.075, h_tau = 0.156), whose
        # trapezoid moments carry O(h^2) error and whose quantiles come from interpolating a cdf
        # known only at nodes h apart: 2% of a step for moments and 5% of a step for quantiles.
        # (Halving h was checked to shrink the differences about 4-fold, so they are the
        # brute force's own error; a missing V_mu^1/2 factor in p(tau | y) moves tau's
        # quantiles by more than 0.5.)
        assert ex_mean == pytest.approx(bf_mean, abs=0.02 * h), name
        assert ex_sd == pytest.approx(bf_sd, abs=0.02 * h), name
        np.testing.assert_allclose(ex_q, bf_q, atol=0.05 * h, err_msg=name)
    # log p(y): both are quadratures of the same proper integrand; the brute force's relative
    # O(h^2) error is ~1e-6 here, so 1e-4 on the log scale is loose but still catches any lost
    # normalising constant (each is >= 0.5 on the log scale)
    assert post.log_marginal_likelihood == pytest.approx(bf["log_ml"], abs=1e-4)


def _fixed_effect(y, s, m0=0.0, s0=math.inf):
    prec = np.sum(1 / s**2) + (0.0 if math.isinf(s0) else 1 / s0**2)
    mean = (np.sum(y / s**2) + (0.0 if math.isinf(s0) else m0 / s0**2)) / prec
    return mean, math.sqrt(1 / prec)


@pytest.mark.parametrize("mu_prior", [(0.0, math.inf), (3.0, 5.0)], ids=["flat mu", "mu~N(3,5)"])
def test_tau_near_zero_gives_fixed_effect_posterior(schools, mu_prior):
    """A prior on tau concentrated at 0 (HalfNormal(1e-6)) makes the model a fixed-effect one:
    mu | y ~ N(inverse-variance mean, 1/sum(1/s^2)), with a normal prior on mu acting as one more
    observation; every theta_i and theta_new then equal mu."""
    y, s = schools["y"].to_numpy(float), schools["sigma"].to_numpy(float)
    post = exact_normal_normal(y, s, mu_prior=mu_prior,
                               tau_prior=stats.halfnorm(scale=1e-6).logpdf)
    mean, sd = _fixed_effect(y, s, *mu_prior)
    # tau <= ~5e-6 changes s_i^2 + tau^2 by < 1e-12 relative, so agreement to 1e-9 is expected
    assert post.mu.mean == pytest.approx(mean, rel=1e-9)
    assert post.mu.sd == pytest.approx(sd, rel=1e-9)
    np.testing.assert_allclose([post.mu_quantiles[p] for p in PROBS],
                               stats.norm(mean, sd).ppf(PROBS), rtol=1e-9)
    np.testing.assert_allclose(post.theta_mean, mean, rtol=1e-6)  # shrinkage B_i = 1 - O(1e-12)
    assert post.theta_new.sd == pytest.approx(sd, rel=1e-9)


def test_bda3_complete_pooling_numbers(schools):
    """BDA3 section 5.5 (eight schools): under complete pooling (all theta_j equal; tau = 0) with a
    noninformative prior, the posterior mean of the common effect is 7.7 and its posterior
    variance 16.6 (as printed, one decimal)."""
    y, s = schools["y"].to_numpy(float), schools["sigma"].to_numpy(float)
    post = exact_normal_normal(y, s, tau_prior=stats.halfnorm(scale=1e-6).logpdf)
    # half a unit in the last printed digit
    assert post.mu.mean == pytest.approx(7.7, abs=0.05)
    assert post.mu.sd**2 == pytest.approx(16.6, abs=0.05)


def test_known_tau_matches_joint_gaussian(schools):
    """Given tau, (mu, theta_1..J) | y is jointly Gaussian; build its precision matrix directly,
    invert it, and compare. A one-point grid fixes tau. Also log p(y | tau) = log MVN(y; m0 1,
    diag(s^2 + tau^2) + s0^2 11')."""
    y, s = schools["y"].to_numpy(float), schools["sigma"].to_numpy(float)
    tau0, m0, s0 = 10.0, 2.0, 20.0
    post = exact_normal_normal(y, s, mu_prior=(m0, s0), grid=[tau0])
    j = y.size
    # parameters x = (mu, theta_1..theta_J); -2 log p = x' Q x - 2 b' x + const
    q = np.zeros((j + 1, j + 1))
    b = np.zeros(j + 1)
    q[0, 0] = 1 / s0**2 + j / tau0**2
    b[0] = m0 / s0**2
    q[0, 1:] = q[1:, 0] = -1 / tau0**2
    q[1:, 1:] = np.diag(1 / tau0**2 + 1 / s**2)
    b[1:] = y / s**2
    cov = np.linalg.inv(q)
    mean = cov @ b
    sd = np.sqrt(np.diag(cov))
    # both are exact linear algebra in double precision
    assert post.mu.mean == pytest.approx(mean[0], rel=1e-10)
    assert post.mu.sd == pytest.approx(sd[0], rel=1e-10)
    np.testing.assert_allclose(post.theta_mean, mean[1:], rtol=1e-10)
    np.testing.assert_allclose(post.theta_sd, sd[1:], rtol=1e-10)
    assert post.theta_new.sd == pytest.approx(math.sqrt(sd[0] ** 2 + tau0**2), rel=1e-10)
    marginal_cov = np.diag(s**2 + tau0**2) + s0**2
    expected = stats.multivariate_normal(np.full(j, m0), marginal_cov).logpdf(y)
    assert post.log_marginal_likelihood == pytest.approx(expected, rel=1e-10)


def test_single_trial_tau_posterior_is_the_prior():
    """With one trial and a flat prior on mu, p(y | tau) does not depend on tau (mu absorbs y), so
    p(tau | y) is the prior: checks the grid, its cdf inversion and the moments."""
    prior = stats.halfnorm(scale=10)
    post = exact_normal_normal([3.0], [2.0], tau_prior=prior.logpdf)
    # default 2,000-point grid: quantiles ~1e-6 relative, moments ~1e-6 (grid convergence)
    np.testing.assert_allclose(post.tau_quantile(PROBS), prior.ppf(PROBS), rtol=2e-5)
    assert post.tau_mean == pytest.approx(prior.mean(), rel=1e-5)
    assert post.tau_sd == pytest.approx(prior.std(), rel=1e-5)
    # mu | tau, y ~ N(3, 4 + tau^2): mean 3 exactly
    assert post.mu.mean == pytest.approx(3.0, rel=1e-12)


def test_heavy_tailed_halfcauchy_single_trial():
    """HalfCauchy(25) with one trial: p(tau | y) is the HalfCauchy itself (tail tau^-2), whose
    mean and variance are infinite and must be reported as inf; quantiles are finite and known
    (25 tan(pi p / 2)). The 97.5% quantile of mu (a normal scale mixture with Cauchy-tailed
    scale) is checked against SciPy adaptive quadrature."""
    prior = stats.halfcauchy(scale=25)
    with pytest.warns(RuntimeWarning, match="infinite"):
        post = exact_normal_normal([3.0], [2.0], tau_prior=prior.logpdf)
    assert post.grid_info["upper"] > 1e9  # the grid reaches far into the tail
    # grid of 2,000 points spread over ~10 decades: observed error < 5e-5 relative
    np.testing.assert_allclose(post.tau_quantile(PROBS), 25 * np.tan(np.pi * np.array(PROBS) / 2),
                               rtol=2e-4)
    assert math.isinf(post.tau_mean) and math.isinf(post.tau_sd)
    assert math.isinf(post.mu.sd) and math.isinf(post.theta_new.sd)

    def cdf(x):
        f = lambda t: stats.norm.cdf(x, 3.0, math.sqrt(4 + t * t)) * prior.pdf(t)  # noqa: E731
        return integrate.quad(f, 0, np.inf, limit=500)[0]

    q975 = optimize.brentq(lambda x: cdf(x) - 0.975, 3.0, 1e5, xtol=1e-8)
    # quad's own accuracy here is ~1e-8; the grid's ~1e-5 relative
    assert post.mu.quantile(0.975) == pytest.approx(q975, rel=1e-4)


def test_prior_density_infinite_at_zero(schools):
    """Gamma(shape 0.5) on tau has density ~ tau^-1/2 at 0: the grid switches to tau = exp(u) and
    starts where the mass below is < 1e-10. Reference: p(tau | y) by direct quadrature on log tau."""
    y, s = schools["y"].to_numpy(float), schools["sigma"].to_numpy(float)
    prior = stats.gamma(a=0.5, scale=10)
    post = exact_normal_normal(y, s, tau_prior=prior.logpdf)
    assert post.grid_info["transform"] == "tau = exp(u)"

    # reference p(log tau | y) on a log-tau grid; the flat mu is integrated numerically (trapezoid
    # over [-100, 120], step 0.05, where the integrand is negligible at both ends)
    v = np.linspace(-60, math.log(400), 301)  # mass below tau = e^-60 is ~e^-30 of the total
    t = np.exp(v)
    mu = np.linspace(-100, 120, 4401)
    var = s**2 + t[:, None, None] ** 2
    log_lik = (-0.5 * (np.log(2 * np.pi * var) + (y - mu[None, :, None]) ** 2 / var)).sum(-1)
    lik = integrate.trapezoid(np.exp(log_lik + 30), mu, axis=1)
    dens = prior.pdf(t) * t * lik
    cdf = integrate.cumulative_simpson(dens, x=v, initial=0.0)
    cdf /= cdf[-1]
    ref_median = math.exp(np.interp(0.5, cdf, v))
    # the reference median interpolates its cdf linearly between nodes 0.22 apart in log tau:
    # ~4e-4 relative error (7e-5 with 4x finer nodes); the grid's own error is ~1e-4
    assert post.tau_quantile(0.5) == pytest.approx(ref_median, rel=2e-3)


def test_bounded_uniform_prior_is_the_flat_prior_truncated(schools):
    """Uniform(0, 10) on tau gives the uniform-prior (BDA3) posterior truncated to [0, 10]: its
    p-quantile is the flat-prior quantile at p * F(10). The grid must end exactly at 10 (a jump of
    the density), which the trapezoid rule would otherwise straddle (relative error 2-3e-4 without
    locating the support's edge)."""
    y, s = schools["y"].to_numpy(float), schools["sigma"].to_numpy(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # bounded support: no heavy-tail warning
        post = exact_normal_normal(y, s, tau_prior=stats.uniform(0, 10).logpdf)
    assert post.grid_info["upper"] == pytest.approx(10.0, abs=1e-12)
    flat = exact_normal_normal(y, s)
    f10 = np.interp(10.0, flat.tau, flat.tau_cdf)  # flat grid is ~0.05 apart near 10: cdf to ~1e-6
    probs = np.array(PROBS)
    # both grids converge to ~1e-6 relative; 2e-5 leaves room for the interpolated F(10)
    np.testing.assert_allclose(post.tau_quantile(probs), flat.tau_quantile(probs * f10), rtol=2e-5)


def test_improper_posterior_raises(schools):
    y, s = schools["y"].to_numpy(float), schools["sigma"].to_numpy(float)
    # uniform prior on tau + flat prior on mu: p(tau | y) ~ tau^-(J-1), improper for J = 2
    with pytest.raises(ValueError, match="improper"):
        exact_normal_normal(y[:2], s[:2])


def test_draws_from_exact_match_the_exact_posterior(schools):
    y, s = schools["y"].to_numpy(float), schools["sigma"].to_numpy(float)
    post = exact_normal_normal(y, s, mu_prior=(0.0, 50.0),
                               tau_prior=stats.halfnorm(scale=10).logpdf, labels=schools["school"])
    n = 200_000
    draws = draws_from_exact(post, n, rng=20240611)
    assert draws["theta"].dims == ("chain", "draw", "trial")
    assert list(draws["trial"].values) == list(schools["school"])
    # independent draws: MC SE of a mean is sd/sqrt(n); of P(X <= q) it is sqrt(p(1-p)/n).
    # 4 SE: with 16 comparisons the chance of a false failure is < 1e-3 (the seed is fixed, so
    # the test is deterministic)
    for name, mix in (("mu", post.mu), ("theta_new", post.theta_new)):
        x = draws[name].values.ravel()
        assert abs(x.mean() - mix.mean) < 4 * mix.sd / math.sqrt(n), name
        for p in (0.025, 0.5, 0.975):
            frac = np.mean(x <= mix.quantile(p))
            assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n), (name, p)
    tau = draws["tau"].values.ravel()
    assert abs(tau.mean() - post.tau_mean) < 4 * post.tau_sd / math.sqrt(n)
    for p in (0.025, 0.5, 0.975):
        assert abs(np.mean(tau <= post.tau_quantile(p)) - p) < 4 * math.sqrt(p * (1 - p) / n)
    theta_a = draws["theta"].sel(trial="A").values.ravel()
    assert abs(theta_a.mean() - post.theta_mean[0]) < 4 * post.theta_sd[0] / math.sqrt(n)


def test_prior_forms_agree(schools):
    """A callable, a scalar-only callable, an object with .logp and a prior string give one answer."""
    y, s = schools["y"].to_numpy(float), schools["sigma"].to_numpy(float)

    class HN:
        def logp(self, x):
            return stats.halfnorm(scale=10).logpdf(x)

    def scalar_only(t: float) -> float:  # math-based: fails on arrays, so evaluated pointwise
        return math.log(2 / (10 * math.sqrt(2 * math.pi))) - t * t / 200

    ref = exact_normal_normal(y, s, tau_prior=stats.halfnorm(scale=10).logpdf, quantiles=(0.5,))
    for form in (HN(), scalar_only, "HalfNormal(sigma=10)"):
        other = exact_normal_normal(y, s, tau_prior=form, quantiles=(0.5,))
        # identical densities -> identical grids; only floating-point rounding differs
        assert other.mu.mean == pytest.approx(ref.mu.mean, rel=1e-10)
        assert other.tau_quantiles[0.5] == pytest.approx(ref.tau_quantiles[0.5], rel=1e-10)
        assert other.log_marginal_likelihood == pytest.approx(ref.log_marginal_likelihood, rel=1e-10)


def test_summary_layout(schools):
    post = exact_normal_normal(schools["y"], schools["sigma"], labels=schools["school"],
                               tau_prior=stats.halfnorm(scale=10).logpdf)
    tab = post.summary()
    assert list(tab.columns) == ["mean", "sd", "q2.5", "q50", "q97.5"]
    assert list(tab.index) == ["mu", "tau"] + [f"theta[{c}]" for c in "ABCDEFGH"] + ["theta_new"]
    # the same root finding run twice: equal up to the root finder's tolerance (~1e-13 relative)
    assert tab.loc["mu", "q50"] == pytest.approx(post.mu_quantiles[0.5], rel=1e-12)
    lo, hi = post.theta_new_interval95
    assert (tab.loc["theta_new", "q2.5"], tab.loc["theta_new", "q97.5"]) == pytest.approx(
        (lo, hi), rel=1e-12)


def test_bad_input_names_the_trial():
    with pytest.raises(ValueError, match="trial 'B'.*sigma"):
        exact_normal_normal([1.0, 2.0], [1.0, 0.0], labels=["A", "B"])
    with pytest.raises(ValueError, match="trial 'A'.*not finite"):
        exact_normal_normal([np.nan, 2.0], [1.0, 1.0], labels=["A", "B"])
    with pytest.raises(ValueError, match="sigma has 1"):
        exact_normal_normal([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        exact_normal_normal([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], grid=[0.0, 2.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a proper problem emits no warning
        exact_normal_normal([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], tau_prior="HalfNormal(sigma=1)")
