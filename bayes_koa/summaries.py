"""Summary tables from a fitted DataTree: pure functions, no sampling, no printing.

Intervals are 95% equal-tailed by default (meta-analysis reports use 95%; ArviZ's default is 89%).
``P(benefit)`` is the posterior probability that the effect is below 0: effects are oriented so
that negative = benefit of MSC for every outcome (ARCHITECTURE.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["summary_table", "draws", "LABELS"]

LABELS = {
    "mu": "overall mean effect",
    "tau": "between-trial SD",
    "sigma_source": "between-source SD",
    "sigma_origin": "between-origin SD (within source)",
    "source_mean": "source mean",
    "cell_mean": "source x origin mean",
    "theta_new": "new trial (prediction)",
    "theta_new_source": "new trial of this source (prediction)",
    "theta": "trial effect (shrunken)",
    # multivariate kind (bayes_koa.build_multivariate): outcomes x times
    "overall_by_time": "overall effect at this time (months)",
    "sigma_time": "time-course SD of the overall effect",
    "sigma_source_time": "source x time SD",
    "sigma_outcome": "between-outcome SD",
    "sigma_source_outcome": "source x outcome SD",
    "tau_time": "trial x time SD",
    "tau_outcome": "trial x outcome SD",
    "source_time_mean": "source mean at this time (months)",
    "outcome_effect": "overall effect on this outcome (reference time)",
    "source_outcome_mean": "source mean on this outcome (reference time)",
    "theta_new_outcome": "new trial, this outcome (prediction)",
}
_ORDER = ["mu", "overall_by_time", "sigma_time", "sigma_source", "sigma_source_time", "sigma_outcome",
          "sigma_source_outcome", "sigma_origin", "tau", "tau_time", "tau_outcome", "source_mean",
          "source_time_mean", "outcome_effect", "source_outcome_mean", "cell_mean", "theta_new",
          "theta_new_source", "theta_new_outcome"]


def draws(dt: xr.DataTree, var: str) -> xr.DataArray:
    """Posterior draws of ``var`` with dims (chain, draw, ...)."""
    return dt["posterior"][var]


def _rows(da: xr.DataArray, var: str, ci: float, mcse: xr.DataArray, ess: xr.DataArray,
          rhat: xr.DataArray, counts: dict | None) -> list[dict]:
    lo, hi = (1 - ci) / 2, 1 - (1 - ci) / 2
    q = da.quantile([lo, 0.5, hi], dim=("chain", "draw"))
    mean, sd = da.mean(("chain", "draw")), da.std(("chain", "draw"))
    pben = (da < 0).mean(("chain", "draw"))
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    out = []
    for idx in np.ndindex(*(da.sizes[d] for d in dims)):
        sel = {d: i for d, i in zip(dims, idx)}
        labels = {d: str(da[d].values[i]) for d, i in sel.items()}
        name = var + ("[" + ", ".join(labels.values()) + "]" if labels else "")
        row = {
            "parameter": name, "what": LABELS.get(var, var),
            "mean": float(mean[sel]), "sd": float(sd[sel]),
            f"q{lo * 100:g}": float(q.isel(quantile=0)[sel]), "median": float(q.isel(quantile=1)[sel]),
            f"q{hi * 100:g}": float(q.isel(quantile=2)[sel]),
            "P(effect<0)": float(pben[sel]) if not var.startswith(("tau", "sigma")) else np.nan,
            "mcse_mean": float(mcse[sel]) if mcse is not None else np.nan,
            "ess_bulk": float(ess[sel]) if ess is not None else np.nan,
            "r_hat": float(rhat[sel]) if rhat is not None else np.nan,
        }
        if counts is not None:
            row["n_comparisons"] = counts.get(tuple(labels.values()), 0)
        out.append(row)
    return out


def _trial_counts(dt: xr.DataTree) -> dict[str, dict]:
    """Trials behind each source and each source x origin cell (0 = prior-only)."""
    cd = dt["constant_data"] if "constant_data" in dt.children else None
    out: dict[str, dict] = {}
    if cd is None or "source_idx" not in cd.data_vars:
        return out
    post = dt["posterior"]
    src = post["source"].values
    s_idx = cd["source_idx"].values.astype(int)
    out["source_mean"] = {(s,): int((s_idx == i).sum()) for i, s in enumerate(src)}
    out["theta_new_source"] = out["source_mean"]
    out["source_odds_ratio"] = out["source_mean"]
    if "tau" in post.data_vars and "source" in post["tau"].dims:
        out["tau"] = out["source_mean"]
    if "origin_idx" in cd.data_vars and "origin" in post.coords:
        org = post["origin"].values
        o_idx = cd["origin_idx"].values.astype(int)
        out["cell_mean"] = {(s, o): int(((s_idx == i) & (o_idx == j)).sum())
                            for i, s in enumerate(src) for j, o in enumerate(org)}
    return out


def summary_table(dt: xr.DataTree, ci: float = 0.95, include_trials: bool = True) -> pd.DataFrame:
    """The posterior summary a meta-analyst reports.

    Rows: overall mean, between-source/-origin/-trial SDs, each source (and source x origin) mean,
    meta-regression coefficients, the prediction for a new trial, and the shrunken trial effects.
    Columns: mean, sd, equal-tailed ``ci`` interval, median, P(effect < 0), MCSE of the mean, bulk
    ESS, R-hat, and the number of comparisons (trial x MSC arm rows) behind each source/cell (0 = prior only).
    """
    import arviz as az

    post = dt["posterior"]
    names = [v for v in _ORDER if v in post.data_vars]
    names += sorted(v for v in post.data_vars if v.startswith("beta_"))
    if include_trials and "theta" in post.data_vars:
        names.append("theta")
    # ArviZ 1 returns the posterior node (a DataTree) of per-variable statistics
    mcse = az.mcse(dt, var_names=names).to_dataset()
    ess = az.ess(dt, var_names=names, method="bulk").to_dataset()
    rhat = az.rhat(dt, var_names=names).to_dataset()
    counts = _trial_counts(dt)
    rows = []
    for v in names:
        rows += _rows(post[v], v, ci, mcse[v], ess[v], rhat[v], counts.get(v))
    table = pd.DataFrame(rows).set_index("parameter")
    table.attrs["ci"] = ci
    return table


# Contraction below this means the data narrowed the prior by less than a fifth of its variance: the
# prior, not the data, decides that parameter (Schad, Betancourt & Vasishth 2021, Psychol Methods 26:103).
WEAK_CONTRACTION = 0.2


def prior_contraction(dt: xr.DataTree, var_names: list[str] | None = None) -> pd.DataFrame:
    """Posterior contraction 1 - var(posterior) / var(prior) per scalar parameter (and source).

    Near 1: the data dominate. Near 0 (or negative): the posterior is the prior; the data cannot
    tell this parameter. ``weak`` flags contraction below :data:`WEAK_CONTRACTION`.
    """
    if "prior" not in dt.children:
        raise ValueError("the result has no prior group (fit stores one by default)")
    post, prior = dt["posterior"], dt["prior"]
    if var_names is None:
        var_names = [v for v in ("mu", "sigma_source", "sigma_origin", "tau", "source_mean", "cell_mean")
                     if v in post.data_vars and v in prior.data_vars]
        var_names += sorted(v for v in post.data_vars if v.startswith("beta_") and v in prior.data_vars)
    rows = []
    for v in var_names:
        pv = post[v].var(("chain", "draw"))
        qv = prior[v].var(("chain", "draw"))
        dims = [d for d in pv.dims]
        for idx in np.ndindex(*(pv.sizes[d] for d in dims)):
            sel = dict(zip(dims, idx))
            label = v + ("[" + ", ".join(str(pv[d].values[i]) for d, i in sel.items()) + "]" if sel else "")
            c = 1.0 - float(pv[sel]) / float(qv[sel])
            rows.append({"parameter": label, "prior_sd": float(np.sqrt(qv[sel])),
                         "posterior_sd": float(np.sqrt(pv[sel])), "contraction": c,
                         "weak": c < WEAK_CONTRACTION})
    return pd.DataFrame(rows).set_index("parameter")
