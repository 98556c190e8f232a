"""bayes_koa.analysis.small_study against R metafor 3.8-1 ``regtest`` (tests/reference/data/metafor_small_study.json).

The JSON was made by tests/reference/r/metafor_small_study.R: REML fits with the Fisher-scoring
threshold tightened to 1e-13, numbers written with 15 significant digits. Two precisions are tested:

* the full-precision values: ``rtol = 1e-9``. The JSON's rounding is 5e-15 relative; both sides
  stop Fisher scoring when a tau^2 step is below 1e-12 to 1e-13, and the statistics move with tau^2
  at O(1) rates, so the residual differences are ~1e-11 (measured: at most 7e-12 relative over all
  values); 1e-9 leaves two orders of magnitude of room and still catches any real difference
  (a wrong weight, df or predictor changes the 2nd-4th digit);
* regtest's own print-out (4 decimals): each printed number equals ours rounded, i.e. within half a
  unit of the 4th decimal (5e-5), which is the precision R printed.

The ``tests_default_control`` block (metafor's default threshold 1e-5) is checked on tau^2 only:
metafor stops when a step falls below 1e-5 and the steps shrink geometrically near the optimum, so
its tau^2 is within 1e-5 of the optimum we compute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_koa.analysis import small_study as ss

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "metafor_small_study.json").read_text())
BCG = pd.read_csv(DATA / "bcg.csv")
HACK = pd.read_csv(DATA / "hackshaw1998.csv")
EGG = pd.read_csv(DATA / "egger2001.csv")

SETS = {
    "bcg_rr": (BCG["yi_rr"], BCG["vi_rr"], BCG["ni"]),
    "bcg_or": (BCG["yi_or"], BCG["vi_or"], BCG["ni"]),
    "hackshaw1998_or": (HACK["yi"], HACK["vi"], None),
    "egger2001_or": (EGG["yi"], EGG["vi"], EGG["ni"]),
}
CASES = [(s, key) for s in REF["tests"] for key in REF["tests"][s]]
RTOL = 1e-9  # see module docstring
HALF_UNIT_4DP = 5e-5 + 1e-12  # half a unit of the 4th printed decimal (+ float slack on the boundary)


def _run(dataset, key, **kw):
    yi, vi, ni = SETS[dataset]
    r = REF["tests"][dataset][key]
    return ss.regression_test(yi, vi, predictor=r["predictor"], ni=ni, model=r["model"], **kw), r


@pytest.mark.parametrize(("dataset", "key"), CASES)
def test_regtest_full_precision(dataset, key):
    t, r = _run(dataset, key)
    assert t.stat_type == r["stat_type"]
    assert t.statistic == pytest.approx(r["stat"], rel=RTOL)
    assert t.pvalue == pytest.approx(r["pval"], rel=RTOL)
    assert t.slope == pytest.approx(r["slope"], rel=RTOL)
    assert t.slope_se == pytest.approx(r["slope_se"], rel=RTOL)
    assert t.limit_estimate == pytest.approx(r["limit_estimate"], rel=RTOL)
    assert t.limit_ci == pytest.approx((r["limit_ci_lb"], r["limit_ci_ub"]), rel=RTOL)
    if r["model"] == "rma":
        assert t.df is None
        assert t.tau2 == pytest.approx(r["tau2"], rel=RTOL)
    else:
        assert t.df == r["df"] == t.k - 2
        assert t.tau2 is None


_NUM = r"(-?\d+\.\d+)"


@pytest.mark.parametrize(("dataset", "key"), CASES)
def test_regtest_print_out(dataset, key):
    """Every number in metafor's print-out equals ours rounded to the printed 4 decimals."""
    t, r = _run(dataset, key)
    text = r["printed"]
    m = re.search(rf"Asymmetry: ([zt]) = {_NUM}(?:, df = (\d+))?, p (=|<) (\.?\d*\.?\d+)", text)
    assert m, text
    assert m.group(1) == t.stat_type
    assert abs(t.statistic - float(m.group(2))) <= HALF_UNIT_4DP
    if m.group(3):
        assert t.df == int(m.group(3))
    if m.group(4) == "=":
        assert abs(t.pvalue - float(m.group(5))) <= HALF_UNIT_4DP
    else:  # "p < .0001"
        assert t.pvalue < float(m.group(5))
    lim = re.search(rf"b = {_NUM} \(CI: {_NUM}, {_NUM}\)", text)
    assert lim, text
    for ours, printed in zip((t.limit_estimate, *t.limit_ci), lim.groups()):
        assert abs(ours - float(printed)) <= HALF_UNIT_4DP


@pytest.mark.parametrize(("dataset", "key"), [c for c in CASES if c[1].endswith("_rma")])
def test_default_control_tau2_within_metafor_threshold(dataset, key):
    t, _ = _run(dataset, key)
    default = REF["tests_default_control"][dataset][key]
    assert abs(t.tau2 - default["tau2"]) < 1e-5  # metafor's default Fisher-scoring threshold
    # and the default-control test statistic agrees to the printed 4 decimals
    assert abs(t.statistic - default["stat"]) <= HALF_UNIT_4DP


@pytest.mark.parametrize("key", ["egger_rma", "egger_lm"])
def test_egger_after_a_moderator(key):
    """regtest after rma(yi, vi, mods = ~ ablat): sei is added to the moderators; no limit estimate."""
    r = REF["bcg_rr_mods_ablat"][key]
    t = ss.egger_test(BCG["yi_rr"], BCG["vi_rr"], mods=BCG["ablat"], model=r["model"])
    assert t.statistic == pytest.approx(r["stat"], rel=RTOL)
    assert t.pvalue == pytest.approx(r["pval"], rel=RTOL)
    assert t.slope == pytest.approx(r["slope"], rel=RTOL)
    assert t.slope_se == pytest.approx(r["slope_se"], rel=RTOL)
    assert t.limit_estimate is None and t.limit_ci is None and "limit_estimate" not in r
    if r["model"] == "rma":
        assert t.tau2 == pytest.approx(r["tau2"], rel=RTOL)
    else:
        assert t.df == r["df"] == 10


def test_named_wrappers_are_regtest():
    yi, vi, ni = SETS["egger2001_or"]
    assert ss.egger_test(yi, vi, model="lm") == ss.regression_test(yi, vi, predictor="sei", model="lm")
    p = ss.peters_test(yi, vi, ni=ni, model="lm")
    r = REF["tests"]["egger2001_or"]["peters_lm"]
    assert p.predictor == "ninv" and p.statistic == pytest.approx(r["stat"], rel=RTOL)
    # sei= instead of vi= gives the same test
    assert ss.egger_test(yi, sei=np.sqrt(vi)).statistic == pytest.approx(
        REF["tests"]["egger2001_or"]["egger_rma"]["stat"], rel=RTOL)


def test_every_block_of_the_json_is_tested():
    assert set(REF["tests"]) == set(SETS) == set(REF["tests_default_control"])
    assert {k for k in REF if isinstance(REF[k], dict)} == {
        "data_files", "tests", "tests_default_control", "bcg_rr_mods_ablat", "heterogeneity_bcg"}
    # heterogeneity_bcg is tested in test_heterogeneity_metafor.py


def test_reml_tau2_without_predictor_is_metafor_rma():
    """The intercept-only REML tau^2 equals rma()'s (heterogeneity_bcg, threshold 1e-13): rel 1e-9 as above."""
    ref = REF["heterogeneity_bcg"]["REML"]
    assert ss.reml_tau2(BCG["yi_rr"], BCG["vi_rr"]) == pytest.approx(ref["tau2"], rel=RTOL)


def test_bad_input_is_named():
    yi = pd.Series([0.1, 0.2, -0.3, 0.4], index=["A_2010", "B_2011", "C_2012", "D_2013"])
    vi = pd.Series([0.1, 0.2, np.nan, 0.1], index=yi.index)
    with pytest.raises(ValueError, match=r"trial 'C_2012' \(position 2\) has vi = nan"):
        ss.egger_test(yi, vi)
    with pytest.raises(TypeError, match="needs ni"):
        ss.regression_test(yi, [0.1, 0.2, 0.3, 0.1], predictor="ninv")
    with pytest.raises(ValueError, match="ni must be positive"):
        ss.peters_test(yi, [0.1, 0.2, 0.3, 0.1], ni=[10, 0, 20, 30])
    with pytest.raises(ValueError, match="too few"):
        ss.egger_test([0.1, 0.2], [0.1, 0.2])
    with pytest.raises(ValueError, match="not of full rank"):
        ss.egger_test(yi, [0.1, 0.1, 0.1, 0.1])  # constant sei
    with pytest.raises(TypeError, match="exactly one"):
        ss.egger_test(yi, [0.1] * 4, sei=[0.3] * 4)


# -- funnel data: closed forms ------------------------------------------------------------------
# standard normal quantiles z_{0.95}, z_{0.975}, z_{0.995} (Abramowitz & Stegun Table 26.5 to 10 digits)
Z = {0.90: 1.6448536270, 0.95: 1.9599639845, 0.99: 2.5758293035}


def test_funnel_contours_are_center_plus_minus_z_sei():
    sei = np.array([0.1, 0.2, 0.4])
    fd = ss.funnel_data([0.0, 0.1, -0.2], sei, center=0.3, n_grid=5)
    assert fd.levels == (0.90, 0.95, 0.99)
    assert fd.sei_max == pytest.approx(1.05 * 0.4)
    for level, z in Z.items():
        c = fd.contours[fd.contours["level"] == level]
        assert c["z"].iloc[0] == pytest.approx(z, abs=1e-10)  # 10 printed digits
        np.testing.assert_allclose(c["upper"], 0.3 + z * c["sei"], atol=1e-10)
        np.testing.assert_allclose(c["lower"], 0.3 - z * c["sei"], atol=1e-10)
        np.testing.assert_allclose(c["sei"], np.linspace(0, 0.42, 5))


def test_funnel_points_p_values_and_bands():
    sei = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    z = np.array([1.0, 1.7, 2.2, 3.0, -2.2])  # one point in every band, one on the left side
    fd = ss.funnel_data(z * sei, vi=sei ** 2, trial_ids=list("abcde"))
    pts = fd.points
    assert list(pts["trial_id"]) == list("abcde")
    np.testing.assert_allclose(pts["z"], z)
    # two-sided normal p of z = 1.0 and 3.0 (A&S Table 26.1: Phi(1) = 0.8413447461, Phi(3) = 0.9986501020)
    assert pts["p"].iloc[0] == pytest.approx(2 * (1 - 0.8413447461), abs=1e-9)
    assert pts["p"].iloc[3] == pytest.approx(2 * (1 - 0.9986501020), abs=1e-9)
    assert list(pts["band"]) == ["< 0.90", "0.90-0.95", "0.95-0.99", "> 0.99", "0.95-0.99"]


def test_funnel_data_input_errors():
    with pytest.raises(TypeError, match="exactly one"):
        ss.funnel_data([0.1, 0.2])
    with pytest.raises(ValueError, match="levels must be in"):
        ss.funnel_data([0.1, 0.2], [0.1, 0.2], levels=(0.95, 95))
    with pytest.raises(ValueError, match="sei must be positive"):
        ss.funnel_data([0.1, 0.2], [0.1, -0.2])
