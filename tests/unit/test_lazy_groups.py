"""Post-processing only when asked: a fit stores prior draws; log-likelihood and log-prior come on demand, once."""

import numpy as np
import pytest
from scipy import stats

import bayes_koa as bk
from bayes_koa.inference import sampling

PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}


NONCENTRED = {"parameterization": "noncentered"}


@pytest.fixture(scope="module")
def result(eight_schools):
    # non-centred: its log_likelihood group is the conditional density checked below (the marginal default's
    # group is the integrated one: tests/unit/test_marginal_random.py)
    return bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=11, draws=300, tune=300, warn=False,
                  structure=NONCENTRED)


def _closed_form_loglik(res, eight_schools):
    theta = res.dt["posterior"]["theta"].values  # chain, draw, trial
    y, se = eight_schools["yi"].to_numpy(), eight_schools["sei"].to_numpy()
    return stats.norm.logpdf(y, loc=theta, scale=se)


def test_fit_skips_the_groups_nobody_asked_for(result):
    assert {"posterior", "sample_stats", "prior", "observed_data"} <= set(result.dt.children)
    assert "log_likelihood" not in result.dt.children and "log_prior" not in result.dt.children


def test_require_adds_exact_log_likelihood_once(result, eight_schools, monkeypatch):
    result.require("log_likelihood", "log_prior")
    ll = result.dt["log_likelihood"]["y_obs"].values
    # pointwise log-likelihood equals the normal log density at the posterior draws (closed form, to rounding)
    np.testing.assert_allclose(ll, _closed_form_loglik(result, eight_schools), rtol=1e-10, atol=1e-10)
    # log_prior of mu is the Normal(0, 50) log density at its draws
    mu = result.dt["posterior"]["mu"].values
    np.testing.assert_allclose(result.dt["log_prior"]["mu"].values, stats.norm.logpdf(mu, 0, 50), rtol=1e-10)
    calls = []
    monkeypatch.setattr(sampling, "add_groups", lambda *a, **k: calls.append(a))
    result.require("log_likelihood")  # already there: nothing is computed again
    result.loo()
    assert calls == []


def test_a_loaded_result_computes_the_group_from_the_saved_table(result, eight_schools, tmp_path):
    fresh = bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=12, draws=300, tune=300, warn=False,
                   structure=NONCENTRED)
    path = fresh.save(tmp_path / "fit.nc")
    back = bk.load(path)
    assert "log_likelihood" not in back.dt.children
    back.require("log_likelihood")  # rebuilds the design from the saved rows, then adds the group
    table = back.loo(integrated=False)  # the conditional form reads that group
    np.testing.assert_allclose(back.dt["log_likelihood"]["y_obs"].values, _closed_form_loglik(back, eight_schools),
                               rtol=1e-10, atol=1e-10)
    assert len(table) == len(eight_schools)


def test_diagnostics_are_computed_once_per_set_of_draws(result, monkeypatch):
    import bayes_koa.api.result as api_result

    result.diagnostics()
    calls = []
    real = api_result.diagnose
    monkeypatch.setattr(api_result, "diagnose", lambda dt: calls.append(1) or real(dt))
    for _ in range(3):
        result.summary(include_trials=False)
        result.diagnostics()
    assert calls == []
