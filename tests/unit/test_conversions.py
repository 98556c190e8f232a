"""Unit tests of bayes_koa.conversions against hand computations and closed forms.

(metafor's published values are checked in tests/reference/test_metafor_effect_sizes.py, the
median estimators in tests/reference/test_median_iqr_estimators.py.)
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from bayes_koa.effects import conversions as cv


# --------------------------------------------------------------------------- SDs


def test_sd_from_se():
    assert float(cv.sd_from_se(2.0, 25)) == 10.0
    np.testing.assert_array_equal(cv.sd_from_se([1.0, 2.0], [4, 9]), [2.0, 6.0])


def test_sd_from_ci_small_n_uses_t_quantile():
    # n = 30 < 60: t(29) 97.5% quantile = 2.0452 (printed t tables, 4 decimals; tolerance 5e-5
    # on the quantile, i.e. relative 2.5e-5 on the SD)
    low, high, n = 10.0, 14.0, 30
    sd = float(cv.sd_from_ci(low, high, n))
    q = (high - low) * math.sqrt(n) / (2 * sd)
    assert q == pytest.approx(2.0452, abs=5e-5)


def test_sd_from_ci_large_n_uses_normal_quantile():
    # n = 100 >= 60: Cochrane's 3.92 (= 2 x 1.959964, normal 97.5% quantile, 6 decimals)
    sd = float(cv.sd_from_ci(10.0, 14.0, 100))
    assert sd == pytest.approx(4.0 / (2 * 1.959964) * 10.0, rel=1e-6)
    # the documented threshold: 59 uses t, 60 the normal quantile
    assert float(cv.sd_from_ci(0, 1, 59)) < float(cv.sd_from_ci(0, 1, 60, dist="t"))
    assert float(cv.sd_from_ci(0, 1, 60)) == pytest.approx(math.sqrt(60) / (2 * 1.959964), rel=1e-6)


def test_sd_from_ci_level_and_dist_options():
    # 90% CI, normal quantile 1.644854 (6 decimals)
    sd = float(cv.sd_from_ci(0.0, 2 * 1.644854, 100, level=90, dist="z"))
    assert sd == pytest.approx(10.0, rel=1e-6)
    with pytest.raises(ValueError, match="dist"):
        cv.sd_from_ci(0, 1, 10, dist="x")
    with pytest.raises(ValueError, match="percentage"):
        cv.sd_from_ci(0, 1, 10, level=0.95)  # a fraction, not a percentage


def test_sd_change_closed_forms():
    assert float(cv.sd_change(3.0, 4.0, 0.0)) == 5.0  # independent: sqrt(9 + 16)
    assert float(cv.sd_change(3.0, 3.0, 1.0)) == 0.0  # perfectly correlated, equal SDs
    assert float(cv.sd_change(3.0, 4.0, 0.5)) == pytest.approx(math.sqrt(13.0), abs=1e-12)


# --------------------------------------------------------------------------- median estimators


def test_wan_iqr_estimators_by_hand():
    # eta(21) = 2 Phi^-1((0.75*21 - 0.125)/(21 + 0.25)), Phi^-1 from the standard library
    eta = 2 * NormalDist().inv_cdf((0.75 * 21 - 0.125) / 21.25)
    assert float(cv.sd_from_iqr(10, 20, 21)) == pytest.approx(10 / eta, rel=1e-12)
    xi = 2 * NormalDist().inv_cdf((21 - 0.375) / 21.25)
    assert float(cv.sd_from_range(0, 30, 21)) == pytest.approx(30 / xi, rel=1e-12)
    assert float(cv.mean_from_median_iqr(10, 12, 20)) == pytest.approx(14.0, abs=1e-12)
    # Luo 2018: w = 0.7 + 0.39/21
    w = 0.7 + 0.39 / 21
    assert float(cv.mean_from_median_iqr(10, 12, 20, 21, "luo2018")) == pytest.approx(
        w * 15 + (1 - w) * 12, abs=1e-12)


def test_estimate_mean_sd_dispatches_on_available_quantiles():
    median = [5.0, 5.0, 5.0, 5.0]
    q1 = [1.0, 1.0, np.nan, np.nan]
    q3 = [9.0, 9.0, np.nan, np.nan]
    lo = [0.0, np.nan, 0.0, np.nan]
    hi = [12.0, np.nan, 12.0, np.nan]
    mean, sd, label = cv.estimate_mean_sd(median, q1, q3, lo, hi, n=30)
    np.testing.assert_allclose(mean[:3], [(0 + 2 + 10 + 18 + 12) / 8, 5.0, (0 + 10 + 12) / 4])
    assert float(sd[0]) == pytest.approx(float(cv.sd_from_five_numbers(0, 1, 9, 12, 30, "wan2014")))
    assert float(sd[1]) == pytest.approx(float(cv.sd_from_iqr(1, 9, 30)))
    assert float(sd[2]) == pytest.approx(float(cv.sd_from_range(0, 12, 30)))
    assert np.isnan(mean[3]) and np.isnan(sd[3]) and label[3] == ""
    assert list(label[:3]) == ["mean/SD from median/IQR/range (Wan 2014)",
                               "mean/SD from median/IQR (Wan 2014)",
                               "mean/SD from median/range (Wan 2014)"]


def test_estimate_mean_sd_without_n():
    # Wan's mean needs no n; the SD (and Luo's mean) do
    mean, sd, _ = cv.estimate_mean_sd(12, 10, 20, n=None)
    assert float(mean) == 14.0 and np.isnan(sd)
    mean, sd, _ = cv.estimate_mean_sd(12, 10, 20, n=None, method="luo2018")
    assert np.isnan(mean) and np.isnan(sd)
    with pytest.raises(ValueError, match="median method"):
        cv.estimate_mean_sd(12, 10, 20, n=10, method="hozo")


# --------------------------------------------------------------------------- continuous effects


@pytest.mark.parametrize("df,expected", [
    (2, 1 / math.sqrt(math.pi)),                      # Gamma(1) / (1 * Gamma(1/2))
    (3, (math.sqrt(math.pi) / 2) / math.sqrt(1.5)),   # Gamma(3/2) / (sqrt(3/2) Gamma(1))
    (4, 2 / math.sqrt(2 * math.pi)),                  # Gamma(2) / (sqrt(2) Gamma(3/2))
])
def test_hedges_j_closed_forms(df, expected):
    assert float(cv.hedges_j(df)) == pytest.approx(expected, abs=1e-14)


def test_hedges_j_matches_gamma_ratio_and_approximation():
    # the gamma-function ratio with the standard library's lgamma
    for df in (5, 10, 48, 300):
        exact = math.exp(math.lgamma(df / 2) - math.lgamma((df - 1) / 2)) / math.sqrt(df / 2)
        assert float(cv.hedges_j(df)) == pytest.approx(exact, rel=1e-13)
    # large df: J ~ 1 - 3/(4 df - 1) (Hedges 1981), error O(df^-2), about 1e-6 at df = 200
    assert float(cv.hedges_j(200)) == pytest.approx(1 - 3 / 799, abs=2e-6)


def test_smd_by_hand():
    m1, sd1, n1, m2, sd2, n2 = 10.0, 4.0, 12, 13.0, 5.0, 15
    sp = math.sqrt((11 * 16 + 14 * 25) / 25)
    j = math.exp(math.lgamma(12.5) - math.log(math.sqrt(12.5)) - math.lgamma(12.0))
    g = j * (m1 - m2) / sp
    yi, vi = cv.smd(m1, sd1, n1, m2, sd2, n2)
    assert float(yi) == pytest.approx(g, abs=1e-12)
    assert float(vi) == pytest.approx(1 / 12 + 1 / 15 + g**2 / (2 * 27), abs=1e-12)


def test_missing_inputs_propagate_as_nan():
    yi, vi = cv.md(1.0, np.nan, 10, 0.0, 1.0, 10)
    assert float(yi) == 1.0 and np.isnan(vi)
    yi, vi = cv.smd(1.0, 1.0, np.nan, 0.0, 1.0, 10)
    assert np.isnan(yi) and np.isnan(vi)


def test_rom_needs_positive_means():
    yi, vi = cv.rom([2.0, -1.0], [1.0, 1.0], [10, 10], [1.0, 1.0], [1.0, 1.0], [10, 10])
    assert float(yi[0]) == pytest.approx(math.log(2.0)) and np.isnan(yi[1]) and np.isnan(vi[1])


def test_md_rejects_unknown_vtype():
    with pytest.raises(ValueError, match="vtype"):
        cv.md(1, 1, 10, 0, 1, 10, vtype="UB")


# --------------------------------------------------------------------------- binary effects


def test_log_odds_ratio_zero_cell_by_hand():
    # 0/10 vs 3/10: zero cell -> 0.5 added to all four cells: 0.5, 10.5, 3.5, 7.5
    yi, vi = cv.log_odds_ratio(0, 10, 3, 10)
    assert float(yi) == pytest.approx(math.log(0.5 * 7.5 / (10.5 * 3.5)), abs=1e-12)
    assert float(vi) == pytest.approx(1 / 0.5 + 1 / 10.5 + 1 / 3.5 + 1 / 7.5, abs=1e-12)


def test_log_odds_ratio_without_zero_is_uncorrected():
    yi, vi = cv.log_odds_ratio(2, 10, 4, 12)
    assert float(yi) == pytest.approx(math.log(2 * 8 / (8 * 4)), abs=1e-12)
    assert float(vi) == pytest.approx(1 / 2 + 1 / 8 + 1 / 4 + 1 / 8, abs=1e-12)
    # cc_when="always" corrects it anyway; "never" leaves a zero cell infinite
    yi, _ = cv.log_odds_ratio(2, 10, 4, 12, cc_when="always")
    assert float(yi) == pytest.approx(math.log(2.5 * 8.5 / (8.5 * 4.5)), abs=1e-12)
    yi, _ = cv.log_odds_ratio(0, 10, 3, 10, cc_when="never")
    assert float(yi) == -np.inf


def test_all_events_in_one_arm_is_a_zero_cell():
    # 10/10 vs 5/10: b = 0 -> corrected cells 10.5, 0.5, 5.5, 5.5
    yi, _ = cv.log_odds_ratio(10, 10, 5, 10)
    assert float(yi) == pytest.approx(math.log(10.5 * 5.5 / (0.5 * 5.5)), abs=1e-12)


def test_double_zero_tables_are_left_out():
    yi, vi = cv.log_odds_ratio([0, 1], [10, 10], [0, 0], [12, 12])
    assert np.isnan(yi[0]) and np.isnan(vi[0]) and np.isfinite(yi[1])
    yi, vi = cv.log_risk_ratio(0, 10, 0, 12)
    assert np.isnan(yi) and np.isnan(vi)
    np.testing.assert_array_equal(cv.double_zero([0, 1], [5, 5], [0, 0], [5, 5]), [True, False])
    np.testing.assert_array_equal(
        cv.needs_zero_cell_correction([0, 1, 2], [5, 5, 5], [0, 0, 2], [5, 5, 5]),
        [False, True, False])


def test_log_risk_ratio_by_hand():
    yi, vi = cv.log_risk_ratio(2, 10, 4, 12)
    assert float(yi) == pytest.approx(math.log((2 / 10) / (4 / 12)), abs=1e-12)
    assert float(vi) == pytest.approx(1 / 2 - 1 / 10 + 1 / 4 - 1 / 12, abs=1e-12)
    # zero cell: 0.5 to every cell, arm totals become 11 and 13
    yi, vi = cv.log_risk_ratio(0, 10, 4, 12)
    assert float(yi) == pytest.approx(math.log((0.5 / 11) / (4.5 / 13)), abs=1e-12)
    assert float(vi) == pytest.approx(1 / 0.5 - 1 / 11 + 1 / 4.5 - 1 / 13, abs=1e-12)


def test_cc_when_is_checked():
    with pytest.raises(ValueError, match="cc_when"):
        cv.log_odds_ratio(0, 10, 1, 10, cc_when="only0")
