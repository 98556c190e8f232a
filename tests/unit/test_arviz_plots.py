"""The standard plots come from arviz-plots, on the kind's variables (no names written outside the kind)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import bayes_koa as bk  # noqa: E402


@pytest.fixture(scope="module")
def res():
    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])  # eight schools (Rubin 1981)
    s = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    import pandas as pd

    df = pd.DataFrame({"trial_id": list("ABCDEFGH"), "yi": y, "vi": s**2})
    return bk.fit(df, model="random_effects", measure="MD", seed=1, draws=300, tune=300, chains=2)


def test_trace_prior_posterior_and_psense_show_the_kinds_parameters(res):
    for pc in (res.plot_trace(), res.plot_prior_vs_posterior(), res.plot_psense()):
        assert {"mu", "tau"} <= set(pc.data.data_vars if hasattr(pc.data, "data_vars") else pc.data.children)
        assert "z" not in set(pc.data.data_vars if hasattr(pc.data, "data_vars") else pc.data.children)


def test_ppc_uses_replicates_of_the_likelihood(res):
    from bayes_koa.plots.arviz import with_posterior_predictive

    dt = with_posterior_predictive(res, seed=2)
    pp = dt["posterior_predictive"]["y_obs"]
    assert pp.shape == (2, 300, 8)
    # conditional replicates: y_rep = theta + se * eps, so their spread around theta is the known SE
    resid = (pp - res.dt["posterior"]["theta"]).std(("chain", "draw")).values
    np.testing.assert_allclose(resid, [15, 10, 16, 11, 9, 11, 10, 18], rtol=0.15)  # 600 draws: sd of an sd ~ 3%
    assert res.plot_ppc_dist() is not None and res.plot_loo_pit() is not None
