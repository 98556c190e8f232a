"""Effect-size arithmetic: spreads from SE/CI, mean/SD from medians, metafor's effect sizes.

Pure, vectorised functions of NumPy arrays (scalars work too; inputs broadcast). Missing inputs
are NaN and give NaN outputs; nothing here reads a table or decides what to exclude (that is
:mod:`bayes_koa.effects`). The special functions (log-gamma, normal and t quantiles) come from
``scipy.special``.

Conventions, as in R metafor's ``escalc`` (Viechtbauer 2010, J Stat Softw 36(3)): group 1 is the
treatment (MSC) arm, group 2 the control arm; every function returns ``(yi, vi)``, the estimate
and its sampling variance. Orientation (the sign flip for higher-is-better scales) is not done
here.

References
----------
- Cochrane Handbook for Systematic Reviews of Interventions, version 6.4 (2023), section 6.5.2
  (SDs from SEs and CIs; change-score SDs) and 23.3.4 (multi-arm trials).
- Wan X, Wang W, Liu J, Tong T (2014). Estimating the sample mean and standard deviation from the
  sample size, median, range and/or interquartile range. BMC Med Res Methodol 14:135.
- Luo D, Wan X, Liu J, Tong T (2018). Optimally estimating the sample mean from the sample size,
  median, mid-range, and/or mid-quartile range. Stat Methods Med Res 27(6):1785-1805.
- Shi J, Luo D, Weng H, Zeng X-T, Lin L, Chu H, Tong T (2020). Optimally estimating the sample
  standard deviation from the five-number summary. Res Synth Methods 11(5):641-654.
- Hedges LV (1981). Distribution theory for Glass's estimator of effect size and related
  estimators. J Educ Stat 6:107-128 (exact bias correction J).
- Bonett DG (2008, 2009): SMD with heteroscedastic variances (metafor "SMDH").
- Morris SB (2008). Estimating effect sizes from pretest-posttest-control group designs. Organ
  Res Methods 11:364-386 (metafor "SMCR", "SMCC", "MC").
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = [
    "sd_from_se",
    "sd_from_ci",
    "sd_change",
    "wan_xi",
    "wan_eta",
    "mean_from_median_iqr",
    "mean_from_median_range",
    "mean_from_five_numbers",
    "sd_from_iqr",
    "sd_from_range",
    "sd_from_five_numbers",
    "estimate_mean_sd",
    "MEDIAN_METHODS",
    "hedges_j",
    "md",
    "smd",
    "smdh",
    "rom",
    "smcr",
    "smcc",
    "mc",
    "needs_zero_cell_correction",
    "double_zero",
    "log_odds_ratio",
    "log_risk_ratio",
    "CC_WHEN",
]

MEDIAN_METHODS = ("wan2014", "luo2018")
"""Estimators for mean/SD from medians: ``"wan2014"`` (Wan 2014 means and SDs) or ``"luo2018"``
(Luo 2018 means; Wan 2014 SDs from the IQR or the range; Shi 2020 SD from all five numbers)."""

CC_WHEN = ("any_zero", "always", "never")
"""When :func:`log_odds_ratio` / :func:`log_risk_ratio` add the continuity correction."""

# Cochrane Handbook 6.5.2.2: use a t quantile for small samples ("say fewer than 60").
T_BELOW_N = 60


def _f(x) -> np.ndarray:
    """Float array (None -> NaN), so missing inputs propagate as NaN."""
    if x is None:
        return np.array(np.nan)
    return np.asarray(x, dtype=float)


# --------------------------------------------------------------------------- spreads


def sd_from_se(se, n):
    """SD of one arm from the standard error of its mean: ``SD = SE * sqrt(n)``.

    Cochrane Handbook 6.5.2.2.
    """
    return _f(se) * np.sqrt(_f(n))


def sd_from_ci(low, high, n, level=95.0, dist="auto"):
    """SD of one arm from a confidence interval of its mean.

    ``SE = (high - low) / (2 q)`` and ``SD = SE * sqrt(n)``, with ``q`` the ``(1 + level/100)/2``
    quantile of

    - ``dist="auto"`` (default): Student's t with ``n - 1`` df when ``n < 60``, the standard
      normal otherwise. This is the rule of the Cochrane Handbook 6.5.2.2 (for small samples,
      "say fewer than 60 participants in each group", the CI was presumably computed with a t
      distribution; e.g. 2 x 2.045 = 4.09 instead of 3.92 for n = 30 and a 95% CI);
    - ``dist="t"``: always t with ``n - 1`` df; ``dist="z"``: always the normal (3.92 for 95%).

    ``level`` is in percent (95, not 0.95). A CI of a mean must be roughly symmetric; the
    function does not check that.
    """
    low, high, n, level = _f(low), _f(high), _f(n), _f(level)
    if np.any((level <= 1) | (level >= 100)):
        raise ValueError(f"level must be a percentage in (1, 100), e.g. 95; got {level}")
    p = (1.0 + level / 100.0) / 2.0
    z = special.ndtri(p)
    with np.errstate(invalid="ignore"):
        t = special.stdtrit(n - 1.0, p)
    if dist == "auto":
        q = np.where(n < T_BELOW_N, t, z)
    elif dist == "t":
        q = t
    elif dist == "z":
        q = np.broadcast_to(z, np.broadcast(n, p).shape)
    else:
        raise ValueError(f"dist must be 'auto', 't' or 'z', got {dist!r}")
    return (high - low) / (2.0 * q) * np.sqrt(n)


def sd_change(sd_pre, sd_post, r):
    """SD of a change score from the baseline and follow-up SDs and their correlation ``r``.

    ``SD_change = sqrt(sd_pre^2 + sd_post^2 - 2 r sd_pre sd_post)`` (Cochrane Handbook 6.5.2.8;
    Morris 2008). ``r`` is rarely reported; any value used is an assumption.
    """
    a, b, r = _f(sd_pre), _f(sd_post), _f(r)
    return np.sqrt(a**2 + b**2 - 2.0 * r * a * b)


# --------------------------------------------------------------------------- medians


def wan_xi(n):
    """Wan 2014 eq. (9): ``xi(n) = 2 Phi^-1((n - 0.375) / (n + 0.25))``.

    Blom's approximation of the expected range of ``n`` standard-normal values (Wan 2014 Table 1
    gives the exact values for n <= 50; e.g. 3.078 for n = 10, where this gives 3.093).
    """
    n = _f(n)
    return 2.0 * special.ndtri((n - 0.375) / (n + 0.25))


def wan_eta(n):
    """Wan 2014 eq. (16): ``eta(n) = 2 Phi^-1((0.75 n - 0.125) / (n + 0.25))``.

    Approximate expected interquartile range of ``n`` standard-normal values; tends to
    ``2 Phi^-1(0.75) = 1.349`` for large n.
    """
    n = _f(n)
    return 2.0 * special.ndtri((0.75 * n - 0.125) / (n + 0.25))


def _check_method(method):
    if method not in MEDIAN_METHODS:
        raise ValueError(f"median method must be one of {MEDIAN_METHODS}, got {method!r}")


def mean_from_median_iqr(q1, median, q3, n=None, method="wan2014"):
    """Sample mean from the median and the quartiles (Wan 2014 scenario S3).

    - ``"wan2014"``: ``(q1 + m + q3) / 3`` (Wan 2014 eq. 14); needs no n.
    - ``"luo2018"``: ``w (q1 + q3)/2 + (1 - w) m`` with ``w = 0.7 + 0.39/n`` (Luo 2018 eq. 11).
    """
    _check_method(method)
    q1, m, q3 = _f(q1), _f(median), _f(q3)
    if method == "wan2014":
        return (q1 + m + q3) / 3.0
    w = 0.7 + 0.39 / _f(n)
    return w * (q1 + q3) / 2.0 + (1.0 - w) * m


def mean_from_median_range(minimum, median, maximum, n=None, method="wan2014"):
    """Sample mean from the median and the range (Wan 2014 scenario S1).

    - ``"wan2014"``: ``(a + 2m + b) / 4`` (Hozo 2005, kept by Wan 2014 eq. 2); needs no n.
    - ``"luo2018"``: ``w (a + b)/2 + (1 - w) m`` with ``w = 4 / (4 + n^0.75)`` (Luo 2018 eq. 7).
    """
    _check_method(method)
    a, m, b = _f(minimum), _f(median), _f(maximum)
    if method == "wan2014":
        return (a + 2.0 * m + b) / 4.0
    w = 4.0 / (4.0 + _f(n) ** 0.75)
    return w * (a + b) / 2.0 + (1.0 - w) * m


def mean_from_five_numbers(minimum, q1, median, q3, maximum, n=None, method="wan2014"):
    """Sample mean from min, q1, median, q3, max (Wan 2014 scenario S2).

    - ``"wan2014"``: ``(a + 2 q1 + 2 m + 2 q3 + b) / 8`` (Wan 2014 eq. 10); needs no n.
    - ``"luo2018"``: ``w1 (a + b)/2 + w2 (q1 + q3)/2 + (1 - w1 - w2) m`` with
      ``w1 = 2.2 / (2.2 + n^0.75)``, ``w2 = 0.7 - 0.72 / n^0.55`` (Luo 2018 eq. 15).
    """
    _check_method(method)
    a, q1, m, q3, b = _f(minimum), _f(q1), _f(median), _f(q3), _f(maximum)
    if method == "wan2014":
        return (a + 2.0 * q1 + 2.0 * m + 2.0 * q3 + b) / 8.0
    n = _f(n)
    w1 = 2.2 / (2.2 + n**0.75)
    w2 = 0.7 - 0.72 / n**0.55
    return w1 * (a + b) / 2.0 + w2 * (q1 + q3) / 2.0 + (1.0 - w1 - w2) * m


def sd_from_iqr(q1, q3, n):
    """SD from the interquartile range: ``(q3 - q1) / eta(n)`` (Wan 2014 eq. 16; :func:`wan_eta`).

    Assumes normally distributed data; n is needed.
    """
    return (_f(q3) - _f(q1)) / wan_eta(n)


def sd_from_range(minimum, maximum, n):
    """SD from the range: ``(b - a) / xi(n)`` (Wan 2014 eq. 9, see :func:`wan_xi`).

    Assumes normally distributed data; n is needed.
    """
    return (_f(maximum) - _f(minimum)) / wan_xi(n)


def sd_from_five_numbers(minimum, q1, q3, maximum, n, method="shi2020"):
    """SD from min, q1, q3, max (Wan 2014 scenario S2).

    - ``"shi2020"`` (default): ``w (b - a)/xi(n) + (1 - w) (q3 - q1)/eta(n)`` with
      ``w = 1 / (1 + 0.07 n^0.6)`` (Shi et al. 2020, eq. 10 and its approximate optimal weight;
      as implemented in metafor's ``conv.fivenum``).
    - ``"wan2014"``: the unweighted average ``((b - a)/xi(n) + (q3 - q1)/eta(n)) / 2`` (Wan 2014
      eq. 12).
    """
    a, q1, q3, b, n = _f(minimum), _f(q1), _f(q3), _f(maximum), _f(n)
    by_range = (b - a) / wan_xi(n)
    by_iqr = (q3 - q1) / wan_eta(n)
    if method == "wan2014":
        return (by_range + by_iqr) / 2.0
    if method == "shi2020":
        w = 1.0 / (1.0 + 0.07 * n**0.6)
        return w * by_range + (1.0 - w) * by_iqr
    raise ValueError(f"method must be 'shi2020' or 'wan2014', got {method!r}")


def estimate_mean_sd(median, q1=None, q3=None, minimum=None, maximum=None, n=None,
                     method="wan2014"):
    """Mean and SD from whichever of (q1, q3) and (min, max) is available, element-wise.

    For each element: both quartiles and both extremes -> five-number estimators; only the
    quartiles -> IQR estimators; only the extremes -> range estimators; neither -> NaN.
    ``method`` is one of :data:`MEDIAN_METHODS`:

    =========  ============================  ==================================================
    method     mean                          SD
    =========  ============================  ==================================================
    wan2014    Wan 2014 eqs. 2, 10, 14       Wan 2014 eqs. 9, 12, 16
    luo2018    Luo 2018 eqs. 7, 11, 15       Wan 2014 eqs. 9, 16; Shi 2020 for five numbers
    =========  ============================  ==================================================

    Returns ``(mean, sd, label)``; ``label`` is an object array of strings naming the estimator
    used (e.g. ``"mean/SD from median/IQR (Wan 2014)"``), ``""`` where nothing was estimated.
    The SD (and the Luo mean) need n; without it they are NaN.
    """
    _check_method(method)
    m, q1, q3, a, b, n = (_f(v) for v in (median, q1, q3, minimum, maximum, n))
    m, q1, q3, a, b, n = np.broadcast_arrays(m, q1, q3, a, b, n)
    has_iqr = np.isfinite(q1) & np.isfinite(q3) & np.isfinite(m)
    has_range = np.isfinite(a) & np.isfinite(b) & np.isfinite(m)
    five = has_iqr & has_range
    iqr_only = has_iqr & ~has_range
    range_only = has_range & ~has_iqr

    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.select(
            [five, iqr_only, range_only],
            [mean_from_five_numbers(a, q1, m, q3, b, n, method),
             mean_from_median_iqr(q1, m, q3, n, method),
             mean_from_median_range(a, m, b, n, method)],
            default=np.nan,
        )
        sd = np.select(
            [five, iqr_only, range_only],
            [sd_from_five_numbers(a, q1, q3, b, n, "wan2014" if method == "wan2014" else "shi2020"),
             sd_from_iqr(q1, q3, n),
             sd_from_range(a, b, n)],
            default=np.nan,
        )
    if method == "wan2014":
        names = ("mean/SD from median/IQR (Wan 2014)",
                 "mean/SD from median/range (Wan 2014)",
                 "mean/SD from median/IQR/range (Wan 2014)")
    else:
        names = ("mean from median/IQR (Luo 2018), SD (Wan 2014)",
                 "mean from median/range (Luo 2018), SD (Wan 2014)",
                 "mean from five numbers (Luo 2018), SD (Shi 2020)")
    label = np.select([iqr_only, range_only, five], list(names), default="").astype(object)
    return mean, sd, label


# --------------------------------------------------------------------------- continuous effects


def hedges_j(df):
    """Exact small-sample bias correction of the SMD (Hedges 1981), as in metafor.

    ``J(df) = exp(lgamma(df/2) - log(sqrt(df/2)) - lgamma((df - 1)/2))``, i.e.
    ``Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2))``; ``J -> 1 - 3/(4 df - 1)`` for large df.
    """
    df = _f(df)
    with np.errstate(invalid="ignore"):
        return np.exp(special.gammaln(df / 2.0) - np.log(np.sqrt(df / 2.0))
                      - special.gammaln((df - 1.0) / 2.0))


def _pooled_sd(sd1, n1, sd2, n2):
    return np.sqrt(((n1 - 1.0) * sd1**2 + (n2 - 1.0) * sd2**2) / (n1 + n2 - 2.0))


def md(m1, sd1, n1, m2, sd2, n2, vtype="LS"):
    """Raw mean difference ``m1 - m2`` (metafor ``escalc("MD")``).

    ``vtype="LS"`` (metafor's default): ``vi = sd1^2/n1 + sd2^2/n2`` (variances not assumed
    equal). ``vtype="HO"``: ``vi = sp^2 (1/n1 + 1/n2)`` with the pooled SD
    ``sp^2 = ((n1-1) sd1^2 + (n2-1) sd2^2) / (n1 + n2 - 2)`` (homoscedastic).
    """
    m1, sd1, n1, m2, sd2, n2 = (_f(v) for v in (m1, sd1, n1, m2, sd2, n2))
    yi = m1 - m2
    if vtype == "LS":
        vi = sd1**2 / n1 + sd2**2 / n2
    elif vtype == "HO":
        vi = _pooled_sd(sd1, n1, sd2, n2) ** 2 * (1.0 / n1 + 1.0 / n2)
    else:
        raise ValueError(f"vtype must be 'LS' or 'HO', got {vtype!r}")
    return yi, vi


def smd(m1, sd1, n1, m2, sd2, n2):
    """Standardised mean difference, Hedges' g with the exact correction (metafor ``"SMD"``).

    ``yi = J(n1 + n2 - 2) (m1 - m2) / sp`` with the pooled SD ``sp`` (see :func:`md`) and
    :func:`hedges_j`; ``vi = 1/n1 + 1/n2 + yi^2 / (2 (n1 + n2))`` (metafor's default
    ``vtype="LS"``, large-sample; Hedges 1981).
    """
    m1, sd1, n1, m2, sd2, n2 = (_f(v) for v in (m1, sd1, n1, m2, sd2, n2))
    yi = hedges_j(n1 + n2 - 2.0) * (m1 - m2) / _pooled_sd(sd1, n1, sd2, n2)
    vi = 1.0 / n1 + 1.0 / n2 + yi**2 / (2.0 * (n1 + n2))
    return yi, vi


def smdh(m1, sd1, n1, m2, sd2, n2):
    """SMD with heteroscedastic variances (Bonett 2008, 2009; metafor ``"SMDH"``).

    ``s = sqrt((sd1^2 + sd2^2)/2)``, ``J = J(n1 + n2 - 2)``, ``yi = J (m1 - m2) / s``,
    ``vi = J^2 [yi^2 (sd1^4/(n1-1) + sd2^4/(n2-1)) / (8 s^4)
    + (sd1^2/(n1-1) + sd2^2/(n2-1)) / s^2]``.
    As in metafor, the corrected ``yi`` is plugged into ``vi`` (Bonett 2009 uses the uncorrected).
    """
    m1, sd1, n1, m2, sd2, n2 = (_f(v) for v in (m1, sd1, n1, m2, sd2, n2))
    s2 = (sd1**2 + sd2**2) / 2.0
    j = hedges_j(n1 + n2 - 2.0)
    yi = j * (m1 - m2) / np.sqrt(s2)
    vi = j**2 * (yi**2 * (sd1**4 / (n1 - 1.0) + sd2**4 / (n2 - 1.0)) / (8.0 * s2**2)
                 + (sd1**2 / (n1 - 1.0) + sd2**2 / (n2 - 1.0)) / s2)
    return yi, vi


def rom(m1, sd1, n1, m2, sd2, n2):
    """Log ratio of means ``log(m1/m2)`` (metafor ``"ROM"``; Hedges, Gurevitch & Curtis 1999).

    ``vi = sd1^2/(n1 m1^2) + sd2^2/(n2 m2^2)``. Needs positive means (NaN otherwise).
    """
    m1, sd1, n1, m2, sd2, n2 = (_f(v) for v in (m1, sd1, n1, m2, sd2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (m1 > 0) & (m2 > 0)
        yi = np.where(ok, np.log(np.where(ok, m1 / m2, 1.0)), np.nan)
        vi = np.where(ok, sd1**2 / (n1 * m1**2) + sd2**2 / (n2 * m2**2), np.nan)
    return yi, vi


def smcr(m1, m2, sd1, n, r):
    """Standardised mean change, raw-score standardisation (Morris 2008; metafor ``"SMCR"``).

    One group measured twice: ``m1`` = follow-up mean, ``m2`` = baseline mean, ``sd1`` = baseline
    SD, ``r`` = pre-post correlation. ``yi = J(n - 1) (m1 - m2) / sd1``,
    ``vi = 2 (1 - r) / n + yi^2 / (2 n)`` (metafor's default ``vtype="LS"``).
    """
    m1, m2, sd1, n, r = (_f(v) for v in (m1, m2, sd1, n, r))
    yi = hedges_j(n - 1.0) * (m1 - m2) / sd1
    vi = 2.0 * (1.0 - r) / n + yi**2 / (2.0 * n)
    return yi, vi


def smcc(m1, m2, sd1, sd2, n, r):
    """Standardised mean change, change-score standardisation (Morris 2008; metafor ``"SMCC"``).

    ``m1``/``sd1`` follow-up, ``m2``/``sd2`` baseline; ``sd_d = sd_change(sd1, sd2, r)``
    (:func:`sd_change`), ``yi = J(n - 1) (m1 - m2) / sd_d``, ``vi = 1/n + yi^2 / (2 n)``.
    """
    m1, m2, sd1, sd2, n, r = (_f(v) for v in (m1, m2, sd1, sd2, n, r))
    yi = hedges_j(n - 1.0) * (m1 - m2) / sd_change(sd1, sd2, r)
    vi = 1.0 / n + yi**2 / (2.0 * n)
    return yi, vi


def mc(m1, m2, sd1, sd2, n, r):
    """Raw mean change (metafor ``"MC"``): ``yi = m1 - m2``, ``vi = sd_change(sd1, sd2, r)^2/n``."""
    m1, m2, sd1, sd2, n, r = (_f(v) for v in (m1, m2, sd1, sd2, n, r))
    return m1 - m2, sd_change(sd1, sd2, r) ** 2 / n


# --------------------------------------------------------------------------- binary effects


def _cells(e1, n1, e2, n2):
    e1, n1, e2, n2 = (_f(v) for v in (e1, n1, e2, n2))
    return e1, n1 - e1, e2, n2 - e2


def double_zero(e1, n1, e2, n2):
    """True where neither arm has an event: such a table carries no information on an OR or RR.

    :func:`log_odds_ratio` and :func:`log_risk_ratio` return NaN for these tables instead of
    correcting them (metafor's ``escalc`` would correct them by default, ``drop00=FALSE``; we
    follow the Cochrane Handbook 10.4.4.2 and leave them out).
    """
    e1, e2 = _f(e1), _f(e2)
    return (e1 == 0) & (e2 == 0)


def needs_zero_cell_correction(e1, n1, e2, n2, cc_when="any_zero"):
    """Where the continuity correction is added (never to double-zero tables, :func:`double_zero`).

    ``cc_when``: ``"any_zero"`` (metafor's default ``to="only0"``: tables with a zero cell, i.e. no
    events or only events in an arm), ``"always"`` (``to="all"``) or ``"never"`` (``to="none"``).
    """
    if cc_when not in CC_WHEN:
        raise ValueError(f"cc_when must be one of {CC_WHEN}, got {cc_when!r}")
    a, b, c, d = _cells(e1, n1, e2, n2)
    shape = np.broadcast(a, b, c, d).shape
    if cc_when == "always":
        out = np.ones(shape, dtype=bool)
    elif cc_when == "never":
        out = np.zeros(shape, dtype=bool)
    else:
        out = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    return out & ~double_zero(e1, n1, e2, n2)


def _corrected_cells(e1, n1, e2, n2, cc, cc_when):
    add = np.where(needs_zero_cell_correction(e1, n1, e2, n2, cc_when), _f(cc), 0.0)
    a, b, c, d = _cells(e1, n1, e2, n2)
    keep = ~double_zero(e1, n1, e2, n2)
    return [np.where(keep, x + add, np.nan) for x in (a, b, c, d)]


def log_odds_ratio(e1, n1, e2, n2, cc=0.5, cc_when="any_zero"):
    """Log odds ratio of arm 1 vs arm 2 (metafor ``escalc("OR")``).

    Cells ``a = e1``, ``b = n1 - e1``, ``c = e2``, ``d = n2 - e2``; where
    :func:`needs_zero_cell_correction` says so, ``cc`` (default 0.5) is added to all four cells
    (metafor's default ``add=1/2, to="only0"``). ``yi = log(a d / (b c))``,
    ``vi = 1/a + 1/b + 1/c + 1/d``. Tables with no events in either arm give NaN
    (:func:`double_zero`).
    """
    a, b, c, d = _corrected_cells(e1, n1, e2, n2, cc, cc_when)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(a * d / (b * c)), 1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d


def log_risk_ratio(e1, n1, e2, n2, cc=0.5, cc_when="any_zero"):
    """Log risk ratio of arm 1 vs arm 2 (metafor ``escalc("RR")``).

    Cells and zero-cell correction as in :func:`log_odds_ratio` (the corrected arm totals are
    ``a + b`` and ``c + d``). ``yi = log((a/(a+b)) / (c/(c+d)))``,
    ``vi = 1/a - 1/(a+b) + 1/c - 1/(c+d)``. Double-zero tables give NaN.
    """
    a, b, c, d = _corrected_cells(e1, n1, e2, n2, cc, cc_when)
    with np.errstate(divide="ignore", invalid="ignore"):
        yi = np.log((a / (a + b)) / (c / (c + d)))
        vi = 1.0 / a - 1.0 / (a + b) + 1.0 / c - 1.0 / (c + d)
    return yi, vi
