"""The vectorised R-hat / ESS (bayes_koa.util.fastdiag) equal ArviZ's, element by element."""

import numpy as np
import pytest
import xarray as xr

import arviz as az
from bayes_koa.util import fastdiag


def _ar_draws(seed=0, chains=4, draws=500, k=40):
    """AR(1) chains with autocorrelations 0-0.95, some with shifted chains (R-hat > 1) and one with ties."""
    rng = np.random.default_rng(seed)
    x = np.zeros((chains, draws, k))
    e = rng.standard_normal((chains, draws, k))
    phi = rng.uniform(0.0, 0.95, k)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    x[..., :4] += rng.standard_normal((chains, 1, 4))
    x[..., 4] = np.round(x[..., 4])
    return x


@pytest.mark.parametrize("draws", [500, 501])  # odd draws: ArviZ drops the middle draw when splitting
def test_equal_to_arviz(draws):
    x = _ar_draws(draws=draws)
    da = xr.DataArray(x, dims=("chain", "draw", "k"))
    # same estimators and the same floating-point operations: agreement to rounding
    np.testing.assert_allclose(fastdiag.rhat_rank(x), az.rhat(da).values, rtol=1e-12)
    np.testing.assert_allclose(fastdiag.ess_bulk(x), az.ess(da, method="bulk").values, rtol=1e-10)
    np.testing.assert_allclose(fastdiag.ess_tail(x), az.ess(da, method="tail").values, rtol=1e-10)
    r, b, t = fastdiag.rhat_ess(x)  # the combined pass diagnose uses
    np.testing.assert_allclose(r, az.rhat(da).values, rtol=1e-12)
    np.testing.assert_allclose(b, az.ess(da, method="bulk").values, rtol=1e-10)
    np.testing.assert_allclose(t, az.ess(da, method="tail").values, rtol=1e-10)


def test_constant_and_scalar_draws():
    x = np.ones((4, 100))
    assert fastdiag.ess_bulk(x) == pytest.approx(float(az.ess(xr.DataArray(x, dims=("chain", "draw")), method="bulk")))
    y = _ar_draws(k=10)[..., 7]
    assert fastdiag.rhat_rank(y).shape == ()
    assert float(fastdiag.rhat_rank(y)) == pytest.approx(float(az.rhat(xr.DataArray(y, dims=("chain", "draw")))), rel=1e-12)


@pytest.mark.parametrize("draws", [400, 401])
def test_ess_of_the_mean_equal_to_arviz_and_used_by_mcse_mean(draws):
    from bayes_koa.util.draws import ess_mean, mcse_mean

    x = _ar_draws(seed=3, chains=2, draws=draws)
    x[..., 5] = (x[..., 5] > 0.3).astype(float)  # an indicator, as P(benefit) / P(best) are
    da = xr.DataArray(x, dims=("chain", "draw", "k"))
    ref = az.ess(da, method="mean").values
    # same estimator (split chains, Geyer's monotone sequence, no rank normalisation): agreement to rounding
    np.testing.assert_allclose(fastdiag.ess_mean(x), ref, rtol=1e-10)
    np.testing.assert_allclose(ess_mean(da, ("chain", "draw")).values, ref, rtol=1e-10)
    sd = x.reshape(-1, x.shape[-1]).std(axis=0)
    np.testing.assert_allclose(mcse_mean(da, ("chain", "draw")).values, sd / np.sqrt(ref), rtol=1e-10)
    # a non-finite draw takes ArviZ's own path (no vectorised shortcut over NaN)
    y = x.copy()
    y[0, 3, 0] = np.nan
    got = ess_mean(xr.DataArray(y, dims=("chain", "draw", "k")), ("chain", "draw")).values
    want = az.ess(xr.DataArray(y, dims=("chain", "draw", "k")), method="mean").values
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-10)
