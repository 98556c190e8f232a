"""Summary tables from a fitted DataTree: pure functions, no sampling, no printing.

The statistics and diagnostic columns come from ``arviz.summary`` (95% equal-tailed intervals:
``eti95_lb``, ``eti95_ub``; ArviZ's default is 89%). Which variables are shown, in which order and
under which label is the model kind's business (:meth:`bayes_koa.kinds.Kind.summary_vars`).
``p_benefit`` is the posterior probability of benefit in the direction set at fit: P(effect < 0)
when lower is better, P(effect > 0) otherwise; for ratio variables (odds ratios) against 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..kinds import get_kind

__all__ = ["summary_table", "tidy_summary", "draws", "prior_contraction", "WEAK_CONTRACTION"]


def draws(dt: xr.DataTree, var: str) -> xr.DataArray:
    """Posterior draws of ``var`` with dims (chain, draw, ...)."""
    return dt["posterior"][var]


def _lower_is_better(dt) -> bool:
    return bool(int(dt.attrs.get("bayes_koa_lower_is_better", 1)))


def summary_table(dt: xr.DataTree, spec, ci: float = 0.95, include_trials: bool = True) -> pd.DataFrame:
    """The posterior summary a meta-analyst reports: one row per variable element.

    Rows: the kind's summary variables (overall effect, SDs, group and cell means, moderators,
    predictions; the shrunken trial effects with ``include_trials``). Columns: ``what`` (label), ArviZ's
    mean, sd, ``eti{ci}_lb``/``_ub``, ess_bulk, ess_tail, r_hat, mcse_mean, mcse_sd; ``median``;
    ``p_benefit`` (NaN for SDs); ``n_comparisons`` (rows behind each group/cell, 0 = prior only).
    ``attrs``: ``ci``, ``lower_is_better``, the kind's roles.
    """
    import arviz_stats as az  # the statistics only: the arviz meta-package also imports arviz_plots

    kind = get_kind(spec.kind)
    roles = kind.roles(spec)
    post = dt["posterior"]
    labels = kind.summary_vars(spec)
    names = [v for v in labels if v in post.data_vars and (include_trials or v != roles.trial)]
    if not names:
        raise ValueError(f"model {spec.name}: none of the kind's summary variables is in the posterior")
    table = az.summary(dt, var_names=names, ci_kind="eti", ci_prob=ci, round_to="none")
    lo, hi = [c for c in table.columns if c.startswith("eti")][:2]
    lower = _lower_is_better(dt)
    sds = set(roles.heterogeneity) | set(roles.between_group)
    counts = kind.group_counts(dt, spec)
    rows = []
    for v in names:
        da = post[v]
        dims = [d for d in da.dims if d not in ("chain", "draw")]
        med = da.median(("chain", "draw"))
        ref = 1.0 if v in roles.ratio else 0.0
        ben = ((da < ref) if lower else (da > ref)).mean(("chain", "draw"))
        for idx in np.ndindex(*(da.sizes[d] for d in dims)):
            sel = dict(zip(dims, idx))
            labs = tuple(str(da[d].values[i]) for d, i in sel.items())
            name = v + ("[" + ", ".join(labs) + "]" if labs else "")
            row = {"parameter": name, "variable": v, "what": labels.get(v, v), "median": float(med[sel]),
                   "p_benefit": np.nan if (v in sds or v.startswith(("tau", "sigma"))) else float(ben[sel])}
            row.update({d: lab for d, lab in zip(dims, labs)})
            if counts:
                row["n_comparisons"] = counts[v].get(labs, 0) if v in counts else np.nan
            rows.append(row)
    extra = pd.DataFrame(rows).set_index("parameter")
    out = extra[["variable", "what"]].join(table[["mean", "sd", lo, hi]]).join(extra[["median", "p_benefit"]])
    out = out.join(table[[c for c in ("ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd") if c in table]])
    dim_cols = [c for c in extra.columns if c not in ("variable", "what", "median", "p_benefit", "n_comparisons")]
    out = out.join(extra[[c for c in ("n_comparisons",) if c in extra] + dim_cols])
    out.attrs.update(ci=ci, lower_is_better=lower, interval=(lo, hi), dims=dim_cols)
    return out


def tidy_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The long form of :func:`summary_table`: one row per variable element, one column per dim."""
    dims = list(table.attrs.get("dims", []))
    out = table.reset_index().rename(columns={"variable": "parameter_name"})
    cols = ["parameter_name", *dims] + [c for c in out.columns if c not in ("parameter", "parameter_name", *dims)]
    out = out[cols].rename(columns={"parameter_name": "parameter"})
    out.attrs.update(table.attrs)
    return out


# Contraction below this means the data narrowed the prior by less than a fifth of its variance: the
# prior, not the data, decides that parameter (Schad, Betancourt & Vasishth 2021, Psychol Methods 26:103).
WEAK_CONTRACTION = 0.2


def prior_contraction(dt: xr.DataTree, spec=None, var_names: list[str] | None = None) -> pd.DataFrame:
    """Posterior contraction 1 - var(posterior) / var(prior) per scalar parameter (and source).

    Near 1: the data dominate. Near 0 (or negative): the posterior is the prior; the data cannot
    tell this parameter. ``weak`` flags contraction below :data:`WEAK_CONTRACTION`.
    """
    if "prior" not in dt.children:
        raise ValueError("the result has no prior group (fit stores one by default)")
    post, prior = dt["posterior"], dt["prior"]
    if var_names is None:  # the kind's parameters and group/cell means that have a prior draw
        r = get_kind(spec.kind).roles(spec)
        wanted = [*spec.parameters, r.group, r.cell]
        var_names = [v for v in wanted if v and v in post.data_vars and v in prior.data_vars]
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
