"""Fast prior sweeps: PSIS reweighting of the fitted draws, checked against quadrature and MCMC refits."""

import math
import warnings

import numpy as np
import pytest

import bayes_koa as bk
from bayes_koa.inference.diagnostics import SamplingWarning
from bayes_koa.inference.exact import exact_normal_normal
from bayes_koa.spec.priors import parse_prior
from bayes_koa.util.draws import mcse_mean
from bayes_koa.workflows import sensitivity as ps

PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}


def test_k_threshold_follows_vehtari_2024():
    assert ps.psis_k_threshold(8000) == pytest.approx(0.7)
    assert ps.psis_k_threshold(100) == pytest.approx(0.5)  # 1 - 1/log10(100)


def test_reweighted_draws_match_the_quadrature_posterior_under_the_new_prior(eight_schools):
    res = bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=21, draws=1000, tune=1000, warn=False)
    new = res.spec.with_priors({"tau": "HalfNormal(sigma=5)"})
    post = res.dt["posterior"].to_dataset()
    lr = ps.prior_log_ratio(post, res.spec, new)
    # only tau's prior changed: the ratio is the ratio of the two half-normal densities at tau
    tau = post["tau"].values
    np.testing.assert_allclose(lr.values, parse_prior("HalfNormal(sigma=5)").logp(tau)
                               - parse_prior("HalfNormal(sigma=10)").logp(tau), rtol=1e-12)
    rew, k, ess = ps.psis_resample(post, lr, seed=1)
    assert k <= ps.psis_k_threshold(tau.size) and ess > 1000
    exact = exact_normal_normal(eight_schools["yi"].to_numpy(), eight_schools["sei"].to_numpy(),
                                mu_prior=(0.0, 50.0), tau_prior=parse_prior("HalfNormal(sigma=5)"))
    # |estimate - exact| within 4 MC SEs of the reweighted draws (their ESS counts the repeated draws,
    # so the SE is honest); 4 SEs: two comparisons, a false alarm rate well under 1e-3
    for var, truth in (("mu", exact.mu.mean), ("tau", exact.tau_mean)):
        se = float(mcse_mean(rew[var], ("chain", "draw")))
        assert abs(float(rew[var].mean()) - truth) < 4 * se, (var, float(rew[var].mean()), truth, se)
    # and the reweighting moved tau towards the tighter prior (the check is not vacuous)
    assert float(rew["tau"].mean()) < float(post["tau"].mean())


@pytest.fixture(scope="module")
def hier():
    data = bk.load_simulated()
    eff = bk.effect_sizes(data, measure="MD", outcomes=["VAS"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # short runs for speed: health is not what is tested
        return bk.fit(eff, "source_hierarchical", outcome="VAS", time=6.0, seed=7, draws=500, tune=500)


def test_psis_sweep_refits_only_where_pareto_k_is_high(hier):
    mild = {"tau": "HalfNormal(sigma=15)"}          # close to the fitted HalfNormal(20)
    drastic = {"mu": "Normal(mu=-60, sigma=1)"}     # far from the posterior of mu: weights degenerate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        sweep = ps.sensitivity(hier, [mild, drastic], method="psis")
        refit = ps.sensitivity(hier, [mild], method="mcmc", include_reference=False)
    runs = sweep.runs.set_index("prior_set")
    thr = ps.psis_k_threshold(4 * 500)
    names = list(runs.index)
    m, d = names[1], names[2]
    assert runs.loc[m, "pareto_k"] <= thr and runs.loc[m, "path"] == ps.PATH_PSIS
    assert runs.loc[d, "pareto_k"] > thr and runs.loc[d, "path"] == ps.PATH_MCMC
    # the reweighted mild set agrees with an MCMC refit under the same priors: mu within 4 combined MC SEs
    t = sweep.table.set_index(["prior_set", "quantity"])
    r = refit.table.set_index(["prior_set", "quantity"])
    a, b = t.loc[(m, "mu")], r.loc[(m, "mu")]
    assert abs(a["mean"] - b["mean"]) < 4 * math.hypot(a["mcse"], b["mcse"])
    # claims are computed on the reweighted draws too
    assert any(q.startswith("claim: ") for q in t.loc[m].index)
