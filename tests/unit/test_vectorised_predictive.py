"""Posterior predictive draws of non-normal likelihoods in one vectorised call (analysis.checks) against
PyMC's own per-draw ``sample_posterior_predictive`` on the same posterior: the same distribution.

Two independent sets of y_rep draws from the same posterior draws: per element, the difference of their
means has SE sqrt(mcse_a^2 + mcse_b^2) (MC SEs of each mean, autocorrelation included, util.draws.mcse_mean).
"""

import numpy as np
import pytest

import bayes_koa as bk
from bayes_koa.analysis import checks
from bayes_koa.util.draws import mcse_mean

# max over the ~60-110 elements of |z|: under the null P(max |z| > 4.5) < 1e-3 (Bonferroni, 110 x 6.8e-6),
# while a replicate drawn from the wrong draws or the wrong parameter (e.g. logits as probabilities) is off
# by many SEs
TOL = 4.5


@pytest.fixture(scope="module", params=[("safety", "logOR", "AE_any"), ("time_course", "SMD", "VAS")])
def fitted(request):
    model, measure, outcome = request.param
    eff = bk.effect_sizes(bk.load_simulated(), measure=measure, outcomes=[outcome])
    return bk.fit(eff, model, seed=4, draws=500, tune=500, groups=(), warn=False)


def test_vectorised_replicates_match_pymcs_loop(fitted, monkeypatch):
    calls = []
    real = checks._vectorised_predictive
    monkeypatch.setattr(checks, "_vectorised_predictive", lambda *a, **k: calls.append(r := real(*a, **k)) or r)
    fast = checks._pymc_predictive(fitted, seed=2)
    # the vectorised path was taken (a None would have fallen back to the loop and compared it with itself)
    assert len(calls) == 1 and calls[0] is not None
    monkeypatch.setattr(checks, "_vectorised_predictive", real)
    slow = checks._pymc_predictive(fitted, seed=2, vectorised=False)
    assert fast.dims == slow.dims and fast.shape == slow.shape
    for d in fast.dims[2:]:
        assert list(fast[d].values) == list(slow[d].values)
    diff = fast.mean(("chain", "draw")) - slow.mean(("chain", "draw"))
    se = np.sqrt(mcse_mean(fast) ** 2 + mcse_mean(slow) ** 2)
    z = (diff / se).values
    assert np.nanmax(np.abs(z)) < TOL, z
    np.testing.assert_allclose(fast.std(("chain", "draw")), slow.std(("chain", "draw")), rtol=0.15)  # 2,000 draws:
    # relative SE of an SD ~2-3% with autocorrelation; 15% catches a wrong spread, not noise
    # reproducible: the same seed gives the same draws
    np.testing.assert_array_equal(fast.values, checks._pymc_predictive(fitted, seed=2).values)
