"""Clinical relevance, prediction intervals and the heterogeneity table of a fitted DataTree.

Pure functions of the posterior draws (no sampling):

* :func:`p_beyond` -- P(benefit larger than a threshold) per element of a draws array, with its
  Monte Carlo SE: with ``lower_is_better`` the benefit is a negative effect, so P(effect < -|t|);
  otherwise P(effect > |t|). The threshold is taken by magnitude, so an MCID given as -19.9 mm
  (negative = improvement, as ``koa/data/mcid.csv`` stores it) and as 19.9 mean the same.
* :func:`clinical_table` -- that probability for the kind's overall effect, its group (source) means,
  a new trial and a new trial of each group (the kind's roles name the variables).
* :func:`prediction_table` -- the prediction interval of a new trial (of a new group) and of a new
  trial of each group, under named columns (``pi_lb``, ``pi_ub``), beside the interval of the mean.
* :func:`fit_heterogeneity` -- tau^2, I^2 and H^2 per level (Higgins & Thompson; multilevel shares as
  :mod:`bayes_koa.analysis.heterogeneity`) from the kind's SD variables and the rows' ``vi``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..kinds import get_kind
from ..util.draws import mcse_mean, sample_dims_of
from .heterogeneity import heterogeneity_by_level_summary

__all__ = ["p_beyond", "clinical_table", "prediction_table", "fit_heterogeneity", "add_prediction_columns"]


def p_beyond(draws: xr.DataArray, threshold: float, lower_is_better: bool = True) -> xr.Dataset:
    """P(benefit > |threshold|) per non-sample element of ``draws`` and its Monte Carlo SE
    (``p``, ``mcse``): the share of draws below ``-|threshold|`` (``lower_is_better``) or above
    ``|threshold|``."""
    t = abs(float(threshold))
    if not np.isfinite(t):
        raise ValueError(f"threshold must be finite; got {threshold!r}")
    sdims = sample_dims_of(draws)
    ind = (draws < -t) if lower_is_better else (draws > t)
    ind = ind.astype(float)
    return xr.Dataset({"p": ind.mean(sdims), "mcse": mcse_mean(ind, sdims)})


def _lower(dt) -> bool:
    return bool(int(dt.attrs.get("bayes_koa_lower_is_better", 1)))


def _elements(da: xr.DataArray):
    """(label, selection) for each non-sample element of ``da``."""
    dims = [d for d in da.dims if d not in ("chain", "draw", "sample")]
    if not dims:
        yield "", {}
        return
    for idx in np.ndindex(*(da.sizes[d] for d in dims)):
        sel = {d: i for d, i in zip(dims, idx)}
        yield ", ".join(str(da[d].values[i]) for d, i in sel.items()), sel


def _what(roles) -> list[tuple[str, str]]:
    """(variable, description) of the effects a reader asks about, in reading order."""
    out = []
    if roles.overall:
        out.append((roles.overall, "overall mean effect"))
    if roles.group:
        out.append((roles.group, f"{roles.group_dim} mean"))
    if roles.prediction:
        out.append((roles.prediction, "new trial" + (f" (of a new {roles.group_dim})" if roles.group else "")))
    if roles.group_prediction:
        out.append((roles.group_prediction, f"new trial of this {roles.group_dim}"))
    return out


def clinical_table(dt: xr.DataTree, spec, mcid: float, lower_is_better: bool | None = None) -> pd.DataFrame:
    """P(benefit > MCID) of the overall effect, each group mean, a new trial and a new trial of each
    group. Columns: ``quantity`` (description), ``variable``, ``group`` (the group label or empty),
    ``mcid`` (as given), ``threshold`` (the effect it means: ``-|mcid|`` when lower is better),
    ``p_benefit_gt_mcid``, ``mcse``, ``p_benefit`` (P(any benefit)), ``mean``."""
    lower = _lower(dt) if lower_is_better is None else bool(lower_is_better)
    post = dt["posterior"]
    roles = get_kind(spec.kind).roles(spec)
    rows = []
    for var, what in _what(roles):
        if var not in post.data_vars:
            continue
        da = post[var]
        pr = p_beyond(da, mcid, lower)
        anyb = ((da < 0) if lower else (da > 0)).mean(sample_dims_of(da))
        mean = da.mean(sample_dims_of(da))
        for label, sel in _elements(da):
            rows.append({"quantity": what, "variable": var, "group": label, "mcid": float(mcid),
                         "threshold": -abs(mcid) if lower else abs(mcid),
                         "p_benefit_gt_mcid": float(pr["p"][sel]), "mcse": float(pr["mcse"][sel]),
                         "p_benefit": float(anyb[sel]), "mean": float(mean[sel])})
    if not rows:
        raise ValueError(f"model {spec.name}: the kind names no overall, group or prediction variable")
    table = pd.DataFrame(rows)
    table.attrs.update(mcid=float(mcid), lower_is_better=lower)
    return table


def _interval(da: xr.DataArray, ci: float):
    sdims = sample_dims_of(da)
    q = da.quantile([(1 - ci) / 2, 0.5, 1 - (1 - ci) / 2], dim=list(sdims))
    return q


def prediction_table(dt: xr.DataTree, spec, ci: float = 0.95) -> pd.DataFrame:
    """Prediction intervals for a new trial, under named columns.

    One row for the overall effect (its mean's interval ``mean_lb``/``mean_ub`` and the interval of a
    new trial ``pi_lb``/``pi_ub``, of a new group in a hierarchical model) and one per group (the
    group mean and a new trial of that group). ``pi_mean`` is the predictive mean; ``pi_mcse_lb``/
    ``ub`` are not given (quantile MC SEs are not part of this table). Empty for kinds without
    predictions (a fixed-effect model predicts no between-trial spread)."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci}")
    post = dt["posterior"]
    roles = get_kind(spec.kind).roles(spec)
    rows = []
    pairs = [(roles.overall, roles.prediction, "overall", "new trial" + (f" of a new {roles.group_dim}" if roles.group else ""))]
    if roles.group:
        pairs.append((roles.group, roles.group_prediction, roles.group_dim, f"new trial of this {roles.group_dim}"))
    for mean_var, pred_var, level, what in pairs:
        if not mean_var or not pred_var or mean_var not in post or pred_var not in post:
            continue
        m, p = post[mean_var], post[pred_var]
        same = set(m.dims) == set(p.dims)  # e.g. a time-course mean by time beside one prediction: no pairing
        qm, qp = _interval(m, ci), _interval(p, ci)
        mm, pm_ = m.mean(sample_dims_of(m)), p.mean(sample_dims_of(p))
        for label, sel in _elements(p):
            rows.append({"level": level, "group": label, "prediction": what,
                         "mean": float(mm[sel]) if same else np.nan,
                         "mean_lb": float(qm[{"quantile": 0, **sel}]) if same else np.nan,
                         "mean_ub": float(qm[{"quantile": 2, **sel}]) if same else np.nan,
                         "pi_mean": float(pm_[sel]), "pi_lb": float(qp[{"quantile": 0, **sel}]),
                         "pi_ub": float(qp[{"quantile": 2, **sel}])})
    table = pd.DataFrame(rows, columns=["level", "group", "prediction", "mean", "mean_lb", "mean_ub",
                                        "pi_mean", "pi_lb", "pi_ub"])
    table.attrs["ci"] = ci
    return table


def fit_heterogeneity(dt: xr.DataTree, spec, vi, ci: float = 0.95) -> pd.DataFrame:
    """tau^2, I^2 (fraction) and H^2 per level of a fit: the kind's group-level SDs (e.g.
    ``sigma_source``) and between-trial SD (``tau``), with the typical within-trial variance of the
    rows' sampling variances ``vi``. Rows indexed by (``level``, ``quantity``), ``quantity`` in ``sd``,
    ``var``, ``I2`` (and ``H2`` for ``total``). A per-source tau (one per group) is averaged as a variance
    over the groups, weighted by their trial counts. Raises for kinds without between-trial SDs."""
    post = dt["posterior"]
    roles = get_kind(spec.kind).roles(spec)
    names = [v for v in (*roles.between_group, *roles.heterogeneity) if v in post.data_vars]
    if not names:
        raise ValueError(f"model {spec.name} has no between-trial SD: I^2 is 0 by construction (fixed effect)")
    sds = {}
    vi = np.asarray(vi, dtype=float)
    for v in names:
        da = post[v]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if extra:  # per-group tau: pooled as a variance, weighted by trials per group
            cd = dt["constant_data"] if "constant_data" in dt.children else None
            if cd is not None and "source_idx" in cd and len(extra) == 1:
                counts = np.bincount(np.asarray(cd["source_idx"].values, int), minlength=da.sizes[extra[0]])
                w = xr.DataArray(counts / counts.sum(), dims=extra)
            else:
                w = 1.0 / da.sizes[extra[0]]
            da = np.sqrt((da ** 2 * w).sum(extra))
        sds[v] = da
    table = heterogeneity_by_level_summary(sds, vi, ci=ci)
    sd_rows = []
    for v, da in sds.items():
        q = da.quantile([(1 - ci) / 2, 0.5, 1 - (1 - ci) / 2], dim=["chain", "draw"]).values
        sd_rows.append(((v, "sd"), {"mean": float(da.mean()), "sd": float(da.std(ddof=1)), "median": float(q[1]),
                                   "lower": float(q[0]), "upper": float(q[2]),
                                   "mcse_mean": float(mcse_mean(da, ("chain", "draw")))}))
    sd_table = pd.DataFrame([r for _, r in sd_rows],
                            index=pd.MultiIndex.from_tuples([k for k, _ in sd_rows], names=["level", "quantity"]))
    out = pd.concat([sd_table, table]).sort_index(level=0, sort_remaining=False, key=lambda i: i.map(
        {n: k for k, n in enumerate([*names, "total"])}))
    out.attrs.update(table.attrs)
    out.attrs.update(ci=ci, levels=names, k=int(vi.size))
    return out


def add_prediction_columns(summary: pd.DataFrame, dt: xr.DataTree, spec, ci: float = 0.95) -> pd.DataFrame:
    """The summary table with ``pi{ci}_lb`` / ``pi{ci}_ub`` (e.g. ``pi95_lb``): on the overall effect's
    row, the prediction interval of a new trial (of a new group in hierarchical models); on each group
    mean's row, that of a new trial of the group; NaN elsewhere. The prediction rows stay as they were."""
    pred = prediction_table(dt, spec, ci)
    lo, hi = f"pi{round(ci * 100):d}_lb", f"pi{round(ci * 100):d}_ub"
    out = summary.copy()
    out[lo], out[hi] = np.nan, np.nan
    roles = get_kind(spec.kind).roles(spec)
    for r in pred.itertuples(index=False):
        if np.isnan(r.mean):  # not paired with a mean row
            continue
        name = roles.overall if r.level == "overall" else f"{roles.group}[{r.group}]"
        if name in out.index:
            out.loc[name, lo], out.loc[name, hi] = r.pi_lb, r.pi_ub
    out.attrs.update(summary.attrs)
    out.attrs["prediction_interval_columns"] = (lo, hi)
    return out
