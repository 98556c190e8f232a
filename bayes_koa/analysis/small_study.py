"""Small-study effects: Egger's and Peters' regression tests as R metafor's ``regtest``, funnel data.

:func:`regression_test` reproduces ``metafor::regtest`` (metafor 3.8) for a vector of effects:

* ``model="rma"`` (metafor's default): a mixed-effects meta-regression of ``yi`` on an intercept,
  any moderators ``mods`` and the predictor, with the residual between-trial variance tau^2
  estimated by REML (Fisher scoring, as ``rma.uni``) and Wald z tests;
* ``model="lm"``: weighted least squares ``yi ~ 1 + mods + predictor`` with weights ``1/vi`` and a
  multiplicative dispersion (the residual mean square), t tests on ``k - p`` df. The classical
  Egger test (Egger et al. 1997, BMJ 315:629-634) is ``model="lm", predictor="sei"``.

The test statistic is that of the predictor's slope. The *limit estimate* is the intercept (the
expected effect of an infinitely precise trial) with its confidence interval; as in metafor it is
given only for the predictors ``sei``, ``vi``, ``ninv`` and ``sqrtninv`` and only without ``mods``.

:func:`peters_test` is ``regtest(predictor="ninv")``: the predictor is ``1/n`` (n the trial's total
sample size) and, as in metafor, the weights are ``1/vi``. Peters et al. (2006, JAMA 295:676-680)
weighted by an n-based approximation of the inverse variance instead, so the numbers differ
slightly from their paper's version of the test.

:func:`funnel_data` gives the points of a funnel plot and the pseudo-confidence contours
``center +/- z_{(1+level)/2} * sei`` (at 90/95/99%): around 0 for a contour-enhanced funnel plot
(Peters et al. 2008, J Clin Epidemiol 61:991-996), or around a pooled estimate for the classical
funnel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["RegressionTest", "regression_test", "egger_test", "peters_test", "reml_tau2",
           "FunnelData", "funnel_data", "PREDICTORS"]

PREDICTORS = ("sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv")
LIMIT_PREDICTORS = ("sei", "vi", "ninv", "sqrtninv")
FUNNEL_LEVELS = (0.90, 0.95, 0.99)


@dataclass(frozen=True)
class RegressionTest:
    """Result of a regression test for funnel-plot asymmetry (field names follow metafor)."""

    model: str                    # "rma" or "lm"
    predictor: str                # one of PREDICTORS
    k: int                        # number of trials
    statistic: float              # z ("rma") or t ("lm") of the predictor's slope
    stat_type: str                # "z" or "t"
    df: float | None              # residual df of the t test (None for z)
    pvalue: float                 # two-sided
    slope: float                  # coefficient of the predictor
    slope_se: float
    limit_estimate: float | None  # intercept: the effect as the predictor -> 0 (see module doc)
    limit_ci: tuple[float, float] | None
    tau2: float | None            # residual between-trial variance (REML; "rma" only)
    level: float                  # confidence level of limit_ci

    def to_dict(self) -> dict:
        return asdict(self)


# -- validation ----------------------------------------------------------------------------------
def _labels(x, k: int) -> list:
    return list(x.index) if isinstance(x, pd.Series) else list(range(k))


def _vector(x, name: str, labels: list | None = None, positive: bool = False) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one value per trial (1-d); got shape {arr.shape}")
    bad = ~np.isfinite(arr) | ((arr <= 0) if positive else False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        labels = labels if labels is not None else _labels(x, arr.size)
        where = f"trial {labels[i]!r} (position {i})" if i < len(labels) else f"position {i}"
        need = "positive and finite" if positive else "finite"
        raise ValueError(f"{name} must be {need}: {where} has {name} = {float(arr[i])!r}")
    return arr


def _inputs(yi, vi, sei, trial_ids):
    if (vi is None) == (sei is None):
        raise TypeError("give exactly one of vi (sampling variances) and sei (standard errors)")
    y0 = np.asarray(yi, dtype=float)
    labels = list(trial_ids) if trial_ids is not None else _labels(yi, y0.size)
    y = _vector(yi, "yi", labels)
    if vi is not None:
        v = _vector(vi, "vi", labels, positive=True)
    else:
        v = _vector(sei, "sei", labels, positive=True) ** 2
    if v.size != y.size or len(labels) != y.size:
        raise ValueError(f"yi has {y.size} values, {'vi' if vi is not None else 'sei'} {v.size}"
                         + ("" if trial_ids is None else f", trial_ids {len(labels)}"))
    return y, v, labels


# -- REML meta-regression (as metafor rma.uni) ---------------------------------------------------
def _p_matrix(v: np.ndarray, X: np.ndarray, tau2: float):
    W = 1.0 / (v + tau2)
    XtW = X.T * W
    A = np.linalg.inv(XtW @ X)
    P = np.diag(W) - XtW.T @ A @ XtW
    return P, A, W


def reml_tau2(yi, vi, X=None, *, tol: float = 1e-12, maxiter: int = 10000) -> float:
    """REML estimate of the (residual) between-trial variance of a meta-regression ``yi ~ X``
    (intercept only when ``X`` is None), by Fisher scoring as metafor's ``rma.uni``: start at the
    Hedges (HE) estimate, step ``(y'PPy - tr P) / tr(PP)``, halved while it would leave ``[0, inf)``,
    until a step is below ``tol``."""
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    X = np.ones((y.size, 1)) if X is None else np.asarray(X, dtype=float)
    k, p = X.shape
    # Hedges estimator as the start (metafor's default starting value for REML)
    H = X @ np.linalg.pinv(X)
    resid = y - H @ y
    tau2 = max(0.0, (resid @ resid - np.trace((np.eye(k) - H) @ np.diag(v))) / (k - p))
    for _ in range(maxiter):
        P, _, _ = _p_matrix(v, X, tau2)
        Py = P @ y
        adj = (Py @ Py - np.trace(P)) / np.sum(P * P)
        while tau2 + adj < 0:
            adj /= 2
        tau2 += adj
        if abs(adj) < tol:
            return float(tau2)
    raise RuntimeError(f"REML estimate of tau^2 did not converge in {maxiter} Fisher-scoring steps")


def _design(v: np.ndarray, predictor: str, ni, mods, labels) -> tuple[np.ndarray, bool]:
    k = v.size
    cols = [np.ones(k)]
    if mods is not None:
        m = np.asarray(mods, dtype=float)
        m = m[:, None] if m.ndim == 1 else m
        if m.shape[0] != k:
            raise ValueError(f"mods has {m.shape[0]} rows for {k} trials")
        if not np.isfinite(m).all():
            i = int(np.flatnonzero(~np.isfinite(m).all(axis=1))[0])
            raise ValueError(f"mods must be finite: trial {labels[i]!r} has {m[i].tolist()}")
        cols.extend(m.T)
    if predictor == "sei":
        x = np.sqrt(v)
    elif predictor == "vi":
        x = v
    else:
        if ni is None:
            raise TypeError(f"predictor {predictor!r} needs ni, the trials' total sample sizes")
        n = _vector(ni, "ni", labels, positive=True)
        if n.size != k:
            raise ValueError(f"ni has {n.size} values for {k} trials")
        x = {"ni": n, "ninv": 1 / n, "sqrtni": np.sqrt(n), "sqrtninv": 1 / np.sqrt(n)}[predictor]
    cols.append(x)
    X = np.column_stack(cols)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(f"the design (intercept{', mods' if mods is not None else ''}, {predictor}) is "
                         "not of full rank: the predictor is constant or collinear with the moderators")
    return X, mods is None


def regression_test(yi, vi=None, *, sei=None, predictor: str = "sei", ni=None, mods=None,
                    model: Literal["rma", "lm"] = "rma", level: float = 0.95,
                    trial_ids=None) -> RegressionTest:
    """Regression test for funnel-plot asymmetry, as ``metafor::regtest(x, vi, ni=ni, model=model,
    predictor=predictor)`` on a REML ``rma`` fit (see the module docstring).

    ``yi``: effects; ``vi`` or ``sei``: their sampling variances or standard errors; ``ni``: total
    sample sizes (for the ``ni``-based predictors); ``mods``: optional moderators (k x m) entered
    before the predictor; ``trial_ids``: labels used in error messages (a pandas Series' index is
    used otherwise)."""
    if model not in ("rma", "lm"):
        raise ValueError(f"model must be 'rma' or 'lm'; got {model!r}")
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}; got {predictor!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    y, v, labels = _inputs(yi, vi, sei, trial_ids)
    X, no_mods = _design(v, predictor, ni, mods, labels)
    k, p = X.shape
    if k <= p:
        raise ValueError(f"{k} trials are too few for a regression on {p} coefficients")
    if model == "rma":
        tau2 = reml_tau2(y, v, X)
        _, A, W = _p_matrix(v, X, tau2)
        b = A @ (X.T * W) @ y
        se = np.sqrt(np.diag(A))
        stat = b / se
        pval = 2 * stats.norm.sf(np.abs(stat))
        crit = stats.norm.ppf(1 - (1 - level) / 2)
        df = None
    else:
        tau2 = None
        W = 1.0 / v
        A = np.linalg.inv((X.T * W) @ X)
        b = A @ (X.T * W) @ y
        r = y - X @ b
        df = k - p
        sigma2 = np.sum(W * r ** 2) / df
        se = np.sqrt(np.diag(A) * sigma2)
        stat = b / se
        pval = 2 * stats.t.sf(np.abs(stat), df)
        crit = stats.t.ppf(1 - (1 - level) / 2, df)
    limit = no_mods and predictor in LIMIT_PREDICTORS
    return RegressionTest(
        model=model, predictor=predictor, k=k, statistic=float(stat[-1]),
        stat_type="z" if model == "rma" else "t", df=None if df is None else float(df),
        pvalue=float(pval[-1]), slope=float(b[-1]), slope_se=float(se[-1]),
        limit_estimate=float(b[0]) if limit else None,
        limit_ci=(float(b[0] - crit * se[0]), float(b[0] + crit * se[0])) if limit else None,
        tau2=None if tau2 is None else float(tau2), level=level)


def egger_test(yi, vi=None, *, sei=None, model: Literal["rma", "lm"] = "rma", mods=None,
               level: float = 0.95, trial_ids=None) -> RegressionTest:
    """Egger's regression test: :func:`regression_test` with the standard error as predictor.
    ``model="lm"`` is the classical test of Egger et al. (1997); ``"rma"`` (metafor's default) its
    mixed-effects version."""
    return regression_test(yi, vi, sei=sei, predictor="sei", model=model, mods=mods, level=level,
                           trial_ids=trial_ids)


def peters_test(yi, vi=None, *, ni, sei=None, model: Literal["rma", "lm"] = "rma", mods=None,
                level: float = 0.95, trial_ids=None) -> RegressionTest:
    """Peters-type test: :func:`regression_test` with ``1/ni`` as predictor (``ni`` = total sample
    size of each trial), weights ``1/vi`` as in metafor (see the module docstring)."""
    return regression_test(yi, vi, sei=sei, predictor="ninv", ni=ni, model=model, mods=mods,
                           level=level, trial_ids=trial_ids)


# -- funnel plot data ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FunnelData:
    """Points and pseudo-confidence contours of a funnel plot.

    ``points``: one row per trial (``trial_id``, ``yi``, ``sei``, ``z`` = (yi - center) / sei,
    ``p`` = its two-sided normal p value, ``band``: the narrowest contour level that contains the
    point's distance from ``center``, e.g. ``"< 0.90"``, ``"0.90-0.95"``, ``"0.95-0.99"``,
    ``"> 0.99"``). ``contours``: per level, the lines ``lower = center - z sei`` and
    ``upper = center + z sei`` on a grid of ``sei`` from 0 to ``sei_max`` (columns ``level``, ``z``,
    ``sei``, ``lower``, ``upper``)."""

    points: pd.DataFrame
    contours: pd.DataFrame
    center: float
    levels: tuple[float, ...]
    sei_max: float


def funnel_data(yi, sei=None, *, vi=None, center: float = 0.0, levels=FUNNEL_LEVELS,
                sei_max: float | None = None, n_grid: int = 2, trial_ids=None) -> FunnelData:
    """Funnel-plot data: points ``(yi, sei)`` and contours ``center +/- z_{(1+level)/2} * sei``.

    ``center=0`` (default) gives the contours of a contour-enhanced funnel plot (regions of
    two-sided significance against no effect); pass a pooled estimate for the classical funnel.
    ``sei_max`` defaults to 1.05 x the largest ``sei``. The contours are straight lines, so
    ``n_grid=2`` points per line draw them exactly; ask for more for shading or interpolation."""
    if (sei is None) == (vi is None):
        raise TypeError("give exactly one of sei (standard errors) and vi (sampling variances)")
    y, v, labels = _inputs(yi, vi, sei, trial_ids)
    s = np.sqrt(v)
    lv = tuple(float(x) for x in np.atleast_1d(levels))
    if any(not 0 < x < 1 for x in lv):
        raise ValueError(f"contour levels must be in (0, 1); got {lv}")
    lv = tuple(sorted(set(lv)))
    if not np.isfinite(center):
        raise ValueError(f"center must be finite; got {center!r}")
    top = 1.05 * float(s.max()) if sei_max is None else float(sei_max)
    if not top > 0:
        raise ValueError(f"sei_max must be positive; got {sei_max!r}")
    if n_grid < 2:
        raise ValueError(f"n_grid must be at least 2; got {n_grid}")
    z = (y - center) / s
    p = 2 * stats.norm.sf(np.abs(z))
    crit = np.array([stats.norm.ppf(0.5 + x / 2) for x in lv])
    names = [f"< {lv[0]:.2f}"] + [f"{a:.2f}-{b:.2f}" for a, b in zip(lv[:-1], lv[1:])] + [f"> {lv[-1]:.2f}"]
    band = np.array(names, dtype=object)[np.searchsorted(crit, np.abs(z), side="right")]
    points = pd.DataFrame({"trial_id": labels, "yi": y, "sei": s, "z": z, "p": p, "band": band})
    grid = np.linspace(0.0, top, n_grid)
    contours = pd.DataFrame([
        {"level": x, "z": c, "sei": g, "lower": center - c * g, "upper": center + c * g}
        for x, c in zip(lv, crit) for g in grid])
    return FunnelData(points=points, contours=contours, center=float(center), levels=lv, sei_max=top)
