"""Heterogeneity statistics from posterior draws: tau^2, I^2 and H^2, per level and in total.

Definitions (Higgins & Thompson 2002, Stat Med 21:1539-1558; as in R metafor and bayesmeta):

* the *typical within-trial variance* of trials with sampling variances ``v_i`` (weights
  ``w_i = 1 / v_i``, ``k`` trials) is ``s^2 = (k - 1) sum(w) / ((sum w)^2 - sum(w^2))``;
* ``I^2 = tau^2 / (tau^2 + s^2)``, the share of the total variance that is between trials;
* ``H^2 = (tau^2 + s^2) / s^2 = 1 / (1 - I^2)``.

I^2 is returned as a **fraction** in [0, 1) (metafor prints it in percent: multiply by 100).

With several between-trial variance components (e.g. ``sigma_source`` for the spread of cell
sources and ``tau`` for trials within a source) the multilevel I^2 of each level ``l`` is
``sigma_l^2 / (sum_m sigma_m^2 + s^2)`` and the total I^2 is ``sum_m sigma_m^2 / (sum_m sigma_m^2 + s^2)``
(Cheung 2014, Psychol Methods 19:211-229; the metafor FAQ formula, whose ``(k - p) / tr(P)`` equals
``s^2`` for an intercept-only model with independent sampling errors). H^2 is given for the total.

Each function works on one draw or on a DataArray of draws (any dims, ``chain``/``draw`` kept);
``*_summary`` functions reduce the draws to mean, SD, median and an equal-tailed interval (95% by
default) with the Monte Carlo SE of the mean.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from ..util.draws import mcse_mean, sample_dims_of

__all__ = [
    "typical_within_variance", "i_squared", "h_squared", "heterogeneity_draws",
    "heterogeneity_summary", "heterogeneity_by_level", "heterogeneity_by_level_summary",
    "heterogeneity_from_posterior",
]

SUMMARY_COLUMNS = ("mean", "sd", "median", "lower", "upper", "mcse_mean")


# -- validation ----------------------------------------------------------------------------------
def _labels(vi) -> list:
    return list(vi.index) if isinstance(vi, pd.Series) else list(range(len(np.atleast_1d(vi))))


def _check_vi(vi) -> np.ndarray:
    """Sampling variances as a 1-d float array; positive and finite, at least two of them."""
    arr = np.asarray(vi, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"vi must be one sampling variance per trial (1-d); got shape {arr.shape}")
    labels = _labels(vi)
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        i = bad[0]
        where = f"trial {labels[i]!r}" if isinstance(vi, pd.Series) else f"position {i}"
        raise ValueError(f"vi must be positive and finite: {where} has vi = {float(arr[i])!r}")
    if arr.size < 2:
        raise ValueError(f"the typical within-trial variance needs at least 2 trials; got {arr.size}")
    return arr


def _check_nonnegative(x, name: str):
    vals = np.asarray(x, dtype=float)
    if np.any(np.isnan(vals)) or np.any(vals < 0):
        raise ValueError(f"{name} draws must be non-negative numbers; found "
                         f"{np.nanmin(vals) if np.any(vals < 0) else 'NaN'}")


def _as_draws(x, name: str):
    """A DataArray stays one (named ``name`` if unnamed); anything else becomes a float ndarray."""
    if isinstance(x, xr.DataArray):
        return x.astype(float).rename(x.name or name)
    return np.asarray(x, dtype=float)


def _draws_array(x) -> xr.DataArray:
    """Draws as a DataArray: a DataArray as it is; a 1-d array as ``draw``, a 2-d one as ``(chain, draw)``."""
    if isinstance(x, xr.DataArray):
        return x.astype(float).rename(None)
    arr = np.asarray(x, dtype=float)
    dims = {0: (), 1: ("draw",), 2: ("chain", "draw")}.get(arr.ndim)
    if dims is None:
        raise ValueError(f"draws given as an array must be 1-d (draw) or 2-d (chain, draw); got shape "
                         f"{arr.shape}: pass a DataArray with named dims instead")
    return xr.DataArray(arr, dims=dims)


# -- the statistics ------------------------------------------------------------------------------
def typical_within_variance(vi) -> float:
    """Higgins-Thompson typical within-trial variance ``(k-1) sum w / ((sum w)^2 - sum w^2)``, ``w = 1/vi``.

    ``vi`` may be a pandas Series indexed by trial id (an error then names the trial)."""
    w = 1.0 / _check_vi(vi)
    k = w.size
    return float((k - 1) * w.sum() / (w.sum() ** 2 - (w ** 2).sum()))


def i_squared(tau2, vi):
    """I^2 = tau^2 / (tau^2 + s^2) as a fraction, for a number, an array or a DataArray of tau^2."""
    _check_nonnegative(tau2, "tau^2")
    s2 = typical_within_variance(vi)
    t2 = _as_draws(tau2, "tau2")
    return t2 / (t2 + s2)


def h_squared(tau2, vi):
    """H^2 = (tau^2 + s^2) / s^2 = 1 / (1 - I^2), for a number, an array or a DataArray of tau^2."""
    _check_nonnegative(tau2, "tau^2")
    s2 = typical_within_variance(vi)
    t2 = _as_draws(tau2, "tau2")
    return (t2 + s2) / s2


def heterogeneity_draws(tau=None, vi=None, *, tau2=None) -> xr.Dataset:
    """Draws of ``tau``, ``tau2``, ``I2`` (fraction) and ``H2`` from draws of the between-trial SD
    ``tau`` (as the models sample it) or of its square ``tau2`` (give exactly one).

    ``tau``/``tau2``: a DataArray (with ``chain``/``draw`` dims, as in a posterior) or an array of
    draws; ``vi``: the trials' sampling variances. Returns a Dataset with the draws' dims."""
    if vi is None:
        raise TypeError("heterogeneity_draws needs vi, the trials' sampling variances")
    if (tau is None) == (tau2 is None):
        raise TypeError("give exactly one of tau (the between-trial SD) and tau2 (its square)")
    if tau is not None:
        _check_nonnegative(tau, "tau")
        sd = _as_draws(tau, "tau")
        var = sd ** 2
    else:
        _check_nonnegative(tau2, "tau^2")
        var = _as_draws(tau2, "tau2")
        sd = np.sqrt(var)
    s2 = typical_within_variance(vi)

    var_da = _draws_array(var)
    out = xr.Dataset({"tau": _draws_array(sd), "tau2": var_da, "I2": var_da / (var_da + s2),
                      "H2": (var_da + s2) / s2})
    out.attrs["typical_within_variance"] = s2
    out.attrs["k"] = int(np.asarray(vi).size)
    return out


def _summarise(draws: xr.Dataset, ci: float) -> pd.DataFrame:
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci}")
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    rows = []
    for name, x in draws.data_vars.items():
        sdims = sample_dims_of(x)
        if set(x.dims) - set(sdims):
            raise ValueError(f"{name}: summaries need scalar draws (dims {sdims} only); it has dims {x.dims}")
        q = x.quantile([lo_q, 0.5, hi_q], dim=list(sdims)).values
        rows.append({"quantity": name, "mean": float(x.mean()), "sd": float(x.std(ddof=1)),
                     "median": float(q[1]), "lower": float(q[0]), "upper": float(q[2]),
                     "mcse_mean": float(mcse_mean(x, sdims))})
    table = pd.DataFrame(rows).set_index("quantity")
    table.attrs["ci"] = ci
    return table


def heterogeneity_summary(tau=None, vi=None, *, tau2=None, ci: float = 0.95) -> pd.DataFrame:
    """One row per quantity (``tau``, ``tau2``, ``I2``, ``H2``): mean, sd, median, the equal-tailed
    ``ci`` interval (``lower``, ``upper``) and ``mcse_mean``. ``attrs``: ``ci``,
    ``typical_within_variance``."""
    draws = heterogeneity_draws(tau, vi, tau2=tau2)
    table = _summarise(draws, ci)
    table.attrs["typical_within_variance"] = draws.attrs["typical_within_variance"]
    return table


def heterogeneity_by_level(sds: Mapping[str, object], vi) -> xr.Dataset:
    """Multilevel heterogeneity from a dict of named between-trial SD draws, e.g.
    ``{"sigma_source": post["sigma_source"], "tau": post["tau"]}`` (same draws, same dims).

    Returns a Dataset with, per level ``l``, ``<l>_var`` (sigma_l^2) and ``<l>_I2`` (its share
    sigma_l^2 / (sum sigma^2 + s^2)), and ``total_var``, ``total_I2``, ``total_H2``."""
    if not sds:
        raise ValueError("heterogeneity_by_level needs at least one named SD")
    s2 = typical_within_variance(vi)
    variances = {}
    for name, sd in sds.items():
        _check_nonnegative(sd, name)
        variances[name] = _draws_array(sd) ** 2
    shapes = {name: dict(v.sizes) for name, v in variances.items()}
    if len({tuple(sorted(s.items())) for s in shapes.values()}) > 1:
        raise ValueError(f"the SD draws must have the same dims and sizes; got {shapes}")
    total = sum(variances.values())
    out = {}
    for name, v in variances.items():
        out[f"{name}_var"] = v
        out[f"{name}_I2"] = v / (total + s2)
    out["total_var"] = total
    out["total_I2"] = total / (total + s2)
    out["total_H2"] = (total + s2) / s2
    ds = xr.Dataset(out)
    ds.attrs["typical_within_variance"] = s2
    ds.attrs["levels"] = list(sds)
    return ds


def heterogeneity_by_level_summary(sds: Mapping[str, object], vi, *, ci: float = 0.95) -> pd.DataFrame:
    """:func:`heterogeneity_by_level` summarised: rows indexed by (``level``, ``quantity``) with
    ``quantity`` in ``var``, ``I2`` (and ``H2`` for ``level == "total"``); columns as
    :func:`heterogeneity_summary`."""
    ds = heterogeneity_by_level(sds, vi)
    table = _summarise(ds, ci)
    levels = list(sds) + ["total"]
    keys = []
    for name in table.index:
        level = next(lv for lv in levels if name.startswith(f"{lv}_") and name[len(lv) + 1:] in ("var", "I2", "H2"))
        keys.append((level, name[len(level) + 1:]))
    table.index = pd.MultiIndex.from_tuples(keys, names=["level", "quantity"])
    table.attrs["typical_within_variance"] = ds.attrs["typical_within_variance"]
    return table


def heterogeneity_from_posterior(posterior, vi, sd_vars, *, ci: float = 0.95) -> pd.DataFrame:
    """:func:`heterogeneity_by_level_summary` of the SD variables ``sd_vars`` (names, e.g.
    ``["sigma_source", "tau"]``) of a posterior: a DataTree with a ``posterior`` group, or the
    posterior Dataset itself. Each variable must be a scalar per draw."""
    if isinstance(sd_vars, str):
        sd_vars = [sd_vars]
    post = posterior["posterior"] if "posterior" in getattr(posterior, "children", {}) else posterior
    missing = [v for v in sd_vars if v not in post]
    if missing:
        raise KeyError(f"posterior has no variable(s) {missing}; it has {sorted(post.data_vars)}")
    return heterogeneity_by_level_summary({v: post[v] for v in sd_vars}, vi, ci=ci)
