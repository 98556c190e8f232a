"""bayes_koa.analysis.heterogeneity against R metafor 3.8-1 and closed forms.

References (tests/reference/data, made by the scripts in tests/reference/r):
* ``metafor_small_study.json`` / ``heterogeneity_bcg``: ``rma()`` on the dat.bcg log risk ratios
  (REML and DL): tau^2, I^2 (percent), H^2 and the typical within-study variance s^2;
* ``metafor_multilevel.json``: three- and two-level ``rma.mv`` fits of Konstantopoulos (2011) with the
  multilevel I^2 of the metafor FAQ, computed in R through the matrix ``P`` (an independent route to
  s^2: ``(k - p) / tr(P)``).

The JSON numbers carry 15 significant digits (jsonlite ``digits = NA``), so a formula evaluated at
the same tau^2 must agree to rounding error; the tolerances below say how much room each leaves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayes_koa.analysis import heterogeneity as het

DATA = Path(__file__).parent / "data"
SMALL = json.loads((DATA / "metafor_small_study.json").read_text())
MULTI = json.loads((DATA / "metafor_multilevel.json").read_text())
BCG = pd.read_csv(DATA / "bcg.csv")
KONST = pd.read_csv(DATA / "konstantopoulos2011.csv")


@pytest.mark.parametrize("method", ["REML", "DL", "REML_default_control"])
def test_plug_in_i2_and_h2_equal_metafor_for_bcg(method):
    """I^2 and H^2 at metafor's tau^2 equal metafor's own. Tolerance 1e-6 (as asked); the measured
    difference is ~1e-16 (same formula, 15-digit inputs)."""
    ref = SMALL["heterogeneity_bcg"][method]
    vi = BCG["vi_rr"]
    assert het.i_squared(ref["tau2"], vi) == pytest.approx(ref["I2_percent"] / 100, abs=1e-6)
    assert het.h_squared(ref["tau2"], vi) == pytest.approx(ref["H2"], abs=1e-6)
    # 15 printed digits: relative rounding 5e-15; 1e-12 leaves room for the sums in s^2
    assert het.typical_within_variance(vi) == pytest.approx(ref["typical_within_variance"], rel=1e-12)


def test_i2_values_are_the_published_bcg_ones():
    """Sanity anchor on the printed metafor summary of rma(yi, vi, data = dat.bcg RR): I^2 = 92.22%,
    H^2 = 12.86 at tau^2 = 0.3132 (print-out rounding: half a unit in the last printed digit)."""
    ref = SMALL["heterogeneity_bcg"]["REML"]
    assert round(ref["tau2"], 4) == 0.3132
    assert 100 * het.i_squared(ref["tau2"], BCG["vi_rr"]) == pytest.approx(92.22, abs=0.005)
    assert het.h_squared(ref["tau2"], BCG["vi_rr"]) == pytest.approx(12.86, abs=0.005)


@pytest.mark.parametrize("model", ["three_level", "two_level_district"])
def test_multilevel_i2_equals_metafor_faq_formula(model):
    """Per-level and total I^2 from the dict of SDs equal R's matrix computation of the metafor FAQ
    formula at metafor's REML variance components. rel 1e-10: R's tr(P) route and our closed form
    differ only by rounding (~1e-15 relative measured); the 1e-10 covers the 15-digit sigma^2 inputs."""
    ref = MULTI[model]
    comps = ref["variance_components"]
    sds = {c["level"]: np.array([np.sqrt(c["sigma2"])]) for c in comps}
    ds = het.heterogeneity_by_level(sds, KONST["vi"])
    assert ds.attrs["typical_within_variance"] == pytest.approx(ref["I2"]["typical_within_variance"], rel=1e-10)
    for c in comps:
        got = float(ds[f"{c['level']}_I2"].values[0])
        assert got == pytest.approx(ref["I2"]["I2_percent_by_level"][c["level"]] / 100, rel=1e-10)
        assert float(ds[f"{c['level']}_var"].values[0]) == pytest.approx(c["sigma2"], rel=1e-12)
    assert float(ds["total_I2"].values[0]) == pytest.approx(ref["I2"]["I2_percent_total"] / 100, rel=1e-10)
    total_var = sum(c["sigma2"] for c in comps)
    s2 = ref["I2"]["typical_within_variance"]
    assert float(ds["total_H2"].values[0]) == pytest.approx((total_var + s2) / s2, rel=1e-10)


def test_usual_random_effects_i2_for_konstantopoulos():
    """The two-level rma(yi, vi) of the same data: plug-in I^2 and H^2 equal metafor's (1e-6 as asked)."""
    ref = MULTI["random_effects_study"]
    assert het.i_squared(ref["tau2"], KONST["vi"]) == pytest.approx(ref["I2"] / 100, abs=1e-6)
    assert het.h_squared(ref["tau2"], KONST["vi"]) == pytest.approx(ref["H2"], abs=1e-6)


def _uniform_i2_draws(n_chain=4, n_draw=2500, seed=11):
    """tau^2 = s^2 U / (1 - U), U ~ Uniform(0, 1) iid, gives I^2 = U exactly and H^2 = 1 / (1 - U)."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=(n_chain, n_draw))
    s2 = het.typical_within_variance(BCG["vi_rr"])
    return xr.DataArray(s2 * u / (1 - u), dims=("chain", "draw")), u


def test_i2_draws_from_tau2_recover_a_known_distribution():
    """With I^2 ~ Uniform(0, 1) by construction (see helper) the summary's mean, median and 2.5%/97.5%
    quantiles of I^2 must be 0.5, 0.5, 0.025, 0.975 within 4 Monte Carlo SEs: for the mean the
    summary's own mcse_mean; for a quantile q of a Uniform, sqrt(q (1 - q) / n) (density 1, iid draws).
    4 SEs: a false failure has probability ~6e-5 per comparison."""
    tau2, u = _uniform_i2_draws()
    n = u.size
    table = het.heterogeneity_summary(vi=BCG["vi_rr"], tau2=tau2)
    i2 = table.loc["I2"]
    assert i2["mean"] == pytest.approx(0.5, abs=4 * i2["mcse_mean"])
    # iid uniform draws: the mcse of the mean is sd / sqrt(n) with sd = sqrt(1/12); ESS ~ n (within 10%)
    assert i2["mcse_mean"] == pytest.approx(np.sqrt(1 / 12 / n), rel=0.1)
    for col, q in (("lower", 0.025), ("median", 0.5), ("upper", 0.975)):
        assert i2[col] == pytest.approx(q, abs=4 * np.sqrt(q * (1 - q) / n))
    # H^2 = 1 / (1 - I^2) is monotone, so its median is 1 / (1 - median I^2) up to interpolation
    # between neighbouring order statistics (n even): spacing ~1/n in U, derivative 1/(1-U)^2 = 4
    assert table.loc["H2", "median"] == pytest.approx(1 / (1 - i2["median"]), abs=4 * 4 / n)
    assert table.attrs["ci"] == 0.95


def test_tau_and_tau2_inputs_agree_and_draws_keep_dims():
    tau2, _ = _uniform_i2_draws(n_chain=2, n_draw=100)
    a = het.heterogeneity_draws(vi=BCG["vi_rr"], tau2=tau2)
    b = het.heterogeneity_draws(np.sqrt(tau2), BCG["vi_rr"])
    assert a["I2"].dims == ("chain", "draw")
    for name in ("tau", "tau2", "I2", "H2"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-12)
    # the identity H^2 = 1 / (1 - I^2) draw by draw
    np.testing.assert_allclose(a["H2"].values, 1 / (1 - a["I2"].values), rtol=1e-10)


def test_by_level_summary_and_posterior_datatree():
    rng = np.random.default_rng(3)
    post = xr.Dataset({"sigma_source": (("chain", "draw"), np.abs(rng.normal(0.3, 0.1, (2, 301)))),
                       "tau": (("chain", "draw"), np.abs(rng.normal(0.2, 0.05, (2, 301))))})
    dt = xr.DataTree.from_dict({"posterior": post})
    table = het.heterogeneity_from_posterior(dt, KONST["vi"], ["sigma_source", "tau"])
    direct = het.heterogeneity_by_level_summary({"sigma_source": post["sigma_source"], "tau": post["tau"]},
                                                KONST["vi"])
    pd.testing.assert_frame_equal(table, direct)
    assert list(table.index) == [("sigma_source", "var"), ("sigma_source", "I2"), ("tau", "var"),
                                 ("tau", "I2"), ("total", "var"), ("total", "I2"), ("total", "H2")]
    # the level shares add up to the total share, draw by draw, hence in the mean
    ds = het.heterogeneity_by_level({"sigma_source": post["sigma_source"], "tau": post["tau"]}, KONST["vi"])
    np.testing.assert_allclose((ds["sigma_source_I2"] + ds["tau_I2"]).values, ds["total_I2"].values, rtol=1e-12)
    assert table.loc[("total", "I2"), "mean"] == pytest.approx(
        table.loc[("sigma_source", "I2"), "mean"] + table.loc[("tau", "I2"), "mean"], rel=1e-12)
    with pytest.raises(KeyError, match="no variable"):
        het.heterogeneity_from_posterior(dt, KONST["vi"], ["sigma_cell"])


def test_bad_input_is_named():
    vi = pd.Series([0.1, 0.0, 0.2], index=["Vega_2015", "Lamo_2016", "Emadedin_2018"])
    with pytest.raises(ValueError, match="trial 'Lamo_2016' has vi = 0.0"):
        het.typical_within_variance(vi)
    with pytest.raises(ValueError, match="at least 2 trials"):
        het.typical_within_variance([0.1])
    with pytest.raises(ValueError, match="non-negative"):
        het.i_squared(-0.1, [0.1, 0.2])
    with pytest.raises(TypeError, match="exactly one"):
        het.heterogeneity_draws(np.ones(3), [0.1, 0.2], tau2=np.ones(3))
    with pytest.raises(ValueError, match="same dims"):
        het.heterogeneity_by_level({"a": np.ones(3), "b": np.ones(4)}, [0.1, 0.2])
