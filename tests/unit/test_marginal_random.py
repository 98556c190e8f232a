"""The marginal random-effects parameterisation: theta_i integrated out of the likelihood while sampling,
then drawn from its exact conditional (``Kind.generated_quantities``).

References are closed forms written independently of the kind's code: the conditional of theta_i given
(mu, tau, y_i) in precision form (BDA3 eq. 5.17: mean = (y/s^2 + mu/tau^2) / (1/s^2 + 1/tau^2), variance =
1 / (1/s^2 + 1/tau^2)), and the marginal density N(y_i | mu, tau^2 + s_i^2) (scipy) for the log-likelihood group.
"""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import bayes_koa as bk
from bayes_koa.kinds import build_model, get_kind, load_spec, prepare

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SE = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
LABELS = list("ABCDEFGH")
PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}


def _tree(mu: np.ndarray, tau: np.ndarray) -> xr.DataTree:
    """A posterior of (mu, tau) draws with the data groups a fit attaches."""
    post = xr.Dataset({"mu": (("chain", "draw"), mu), "tau": (("chain", "draw"), tau)})
    return xr.DataTree.from_dict({
        "posterior": post,
        "observed_data": xr.Dataset({"y_obs": ("trial", Y)}, coords={"trial": LABELS}),
        "constant_data": xr.Dataset({"y": ("trial", Y), "se": ("trial", SE)}, coords={"trial": LABELS}),
    })


def _marginal_spec():
    return load_spec("random_effects", priors=PRIORS, parameterization="marginal")


def test_conditional_draws_match_the_closed_form_normal():
    mu0, tau0, n = 4.0, 6.0, (4, 25_000)
    dt = _tree(np.full(n, mu0), np.full(n, tau0))
    get_kind("random").generated_quantities(dt, _marginal_spec(), None, seed=3)
    theta = dt["posterior"]["theta"]
    assert theta.dims == ("chain", "draw", "trial") and list(theta["trial"].values) == LABELS
    prec = 1 / SE**2 + 1 / tau0**2
    mean, var = (Y / SE**2 + mu0 / tau0**2) / prec, 1 / prec
    m = n[0] * n[1]
    got_mean = theta.mean(("chain", "draw")).values
    got_var = theta.var(("chain", "draw"), ddof=1).values
    # iid normal draws: SE of a mean sqrt(var/m), of a sample variance var*sqrt(2/(m-1)); 4 SE leaves
    # a false alarm probability < 1e-3 over the 16 checks, while a wrong weight (e.g. se instead of se^2)
    # moves the means by several units, hundreds of SEs
    assert np.all(np.abs(got_mean - mean) < 4 * np.sqrt(var / m)), (got_mean, mean)
    assert np.all(np.abs(got_var - var) < 4 * var * np.sqrt(2 / (m - 1))), (got_var, var)


def test_tau_zero_gives_theta_equal_to_mu_and_draws_are_seeded():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(2, 50))
    dt = _tree(mu, np.zeros((2, 50)))
    get_kind("random").generated_quantities(dt, _marginal_spec(), None, seed=1)
    np.testing.assert_array_equal(dt["posterior"]["theta"].values, np.repeat(mu[..., None], len(Y), axis=2))
    tau = np.abs(rng.normal(size=(2, 50))) * 5
    a, b, c = _tree(mu, tau), _tree(mu, tau), _tree(mu, tau)
    for t, s in ((a, 1), (b, 1), (c, 2)):
        get_kind("random").generated_quantities(t, _marginal_spec(), None, seed=s)
    np.testing.assert_array_equal(a["posterior"]["theta"].values, b["posterior"]["theta"].values)
    assert not np.allclose(a["posterior"]["theta"].values, c["posterior"]["theta"].values)


def test_non_marginal_fits_get_no_generated_quantities():
    dt = _tree(np.zeros((1, 5)), np.ones((1, 5)))
    get_kind("random").generated_quantities(dt, load_spec("random_effects", priors=PRIORS,
                                                          parameterization="noncentered"), None, seed=1)
    assert "theta" not in dt["posterior"]


def test_the_marginal_model_samples_only_mu_and_tau():
    table = pd.DataFrame({"trial_id": LABELS, "yi": Y, "vi": SE**2})
    spec = _marginal_spec()
    design, _ = prepare(spec, table)
    m = build_model(spec, design)
    assert {v.name for v in m.free_RVs} == {"mu", "tau"}
    assert "theta" not in m.named_vars and "z" not in m.named_vars


@pytest.fixture(scope="module")
def marginal_fit(eight_schools):
    return bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=5, draws=500, tune=500,
                  structure={"parameterization": "marginal"})


def test_a_marginal_fit_has_theta_with_the_trial_dims_and_a_marginal_log_likelihood(marginal_fit, eight_schools):
    post = marginal_fit.dt["posterior"]
    assert post["theta"].dims == ("chain", "draw", "trial")
    assert list(post["theta"]["trial"].values) == list(eight_schools["trial_id"])
    assert "theta[A]" in marginal_fit.diagnostics().index  # diagnosed like the sampled draws
    marginal_fit.require("log_likelihood")
    ll = marginal_fit.dt["log_likelihood"]["y_obs"].transpose("chain", "draw", "trial").values
    mu, tau = post["mu"].values[..., None], post["tau"].values[..., None]
    y, s = eight_schools["yi"].to_numpy(float), eight_schools["sei"].to_numpy(float)
    np.testing.assert_allclose(ll, stats.norm.logpdf(y, mu, np.sqrt(tau**2 + s**2)), rtol=1e-9)
    # LOO of a marginal fit: the integrated log-likelihood is this same density
    loo = marginal_fit.loo()
    assert np.isfinite(loo["elpd_i"]).all()


def test_loo_pit_plot_pairs_the_integrated_likelihood_with_the_mixed_replicate(eight_schools):
    """plot_loo_pit hands ArviZ the log-likelihood group and a replicate; for a marginal fit that group is
    the integrated density, so the replicate must be the mixed one (not theta_i + se_i eps, which still
    conditions on y_i through theta_i and pulls the PIT towards 0.5). Reference: ppc_table's loo_pit,
    computed independently from the integrated predictive CDF. Reviewer's numbers before the fix (seed 5,
    4 x 1000): school E 0.220 by the plot vs 0.174 by ppc_table."""
    from arviz_stats import loo_pit

    from bayes_koa.plots.arviz import loo_pit_tree

    res = bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=5,  # the model file is marginal
                 draws=1000, tune=1000, warn=False)
    assert res.dt.attrs["bayes_koa_log_likelihood"] == "integrated"
    plot_vals = np.asarray(loo_pit(loo_pit_tree(res))["y_obs"].values).ravel()
    ref = res.ppc()["loo_pit"].to_numpy()
    # two PSIS-weighted averages over the same 4,000 draws, one of 4,000 replicate indicators, one of exact
    # CDF values: their difference is Monte Carlo error of a weighted mean of Bernoulli(p) draws, sd
    # <= sqrt(0.25 / ESS_IS) ~ 0.012 at ESS_IS ~ 2,000; 0.04 is over 3 such SDs, under the 0.046 bias
    # the conditional replicate gave for school E
    assert np.max(np.abs(plot_vals - ref)) < 0.04, (plot_vals, ref)
