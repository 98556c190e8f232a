"""Sampler diagnostics: R-hat, ESS, divergences, tree depth, as a table with the problems in plain words.

Thresholds (Vehtari et al. 2021, Bayesian Analysis 16:667): R-hat <= 1.01 and bulk/tail ESS >= 100 per
chain (400 for 4 chains); any divergence deserves a look; draws at the maximum tree depth are reported.
The problems travel with every table made from a fit (``attrs["diagnostics"]``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["diagnose", "SamplingWarning", "RHAT_MAX", "ESS_PER_CHAIN_MIN", "diagnostics_flag", "adaptive_refit"]


class SamplingWarning(UserWarning):
    """The sampler reported a problem (divergences, R-hat, ESS): read the advice in the message."""


# Diagnostic thresholds (Vehtari et al. 2021, Bayesian Analysis 16:667): R-hat <= 1.01 and bulk/tail
# ESS >= 100 per chain (400 for 4 chains); any divergence deserves a look.
RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100


def diagnose(dt: xr.DataTree, var_names: list[str] | None = None) -> pd.DataFrame:
    """One row per parameter: R-hat, bulk and tail ESS, MCSE of the mean; plus divergences.

    The frame's ``attrs`` hold ``divergences``, ``draws`` and the list of ``problems`` (plain
    sentences with advice); empty when all is well.
    """
    post = dt["posterior"]
    if var_names is None:  # every sampled quantity; draws made after sampling (predictions) are not diagnosed
        var_names = [v for v in post.data_vars if not v.startswith(("z", "log_"))
                     and post[v].attrs.get("bayes_koa_role") != "prediction"]
    rows = []
    for v in var_names:
        da = post[v].transpose("chain", "draw", ...)
        r, eb, et = _stats(da)
        dims = da.dims[2:]
        labels = [[str(x) for x in da[d].values] if d in da.coords else None for d in dims]
        for idx in np.ndindex(r.shape):
            label = v + ("[" + ", ".join(labels[j][i] if labels[j] is not None else str(i)
                                         for j, i in enumerate(idx)) + "]" if idx else "")
            rows.append((label, float(r[idx]), float(eb[idx]), float(et[idx])))
    table = pd.DataFrame(rows, columns=["parameter", "r_hat", "ess_bulk", "ess_tail"]).set_index("parameter")
    stats = dt["sample_stats"] if "sample_stats" in dt.children else xr.DataTree()
    n_div = int(stats["diverging"].sum()) if "diverging" in stats.data_vars else 0
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    problems = []
    if "sample_stats" not in dt.children:
        problems.append("the result has no sample_stats group: divergences and tree depth cannot be checked")
    if n_div:
        problems.append(f"{n_div} divergent transitions out of {n_chain * n_draw}: the posterior may be "
                        "biased. Raise target_accept (e.g. fit(..., target_accept=0.99)), keep the "
                        "non-centred parameterisation, or use more informative priors on the SDs.")
    # written as "not <= / not >=" so a NaN statistic (a stuck or constant chain) counts as a problem
    bad_r = table.index[~(table["r_hat"] <= RHAT_MAX)].tolist()
    if bad_r:
        problems.append(f"R-hat > {RHAT_MAX} for {', '.join(bad_r[:6])}{' ...' if len(bad_r) > 6 else ''}: "
                        "chains disagree. Run more draws/tune (fit(..., draws=4000, tune=2000)) and check the trace.")
    ess_min = ESS_PER_CHAIN_MIN * n_chain
    low = table.index[~((table["ess_bulk"] >= ess_min) & (table["ess_tail"] >= ess_min))].tolist()
    if low:
        problems.append(f"ESS below {ess_min} for {', '.join(low[:6])}{' ...' if len(low) > 6 else ''}: "
                        "too few effective draws for stable intervals. Run more draws.")
    depth_hits = 0
    for name in ("reached_max_treedepth", "maxdepth_reached"):
        if name in stats.data_vars:
            depth_hits = int(np.asarray(stats[name].values).astype(bool).sum())
            break
    if depth_hits:
        problems.append(f"{depth_hits} of {n_chain * n_draw} draws hit the maximum tree depth: the sampler "
                        "could not finish its trajectories, so it explores slowly. Reparameterise or use "
                        "more informative priors on the SDs.")
    refit = adaptive_refit(dt)
    notes = []
    if refit and refit.get("refit"):
        notes.append(f"adaptive refit: the first fit at target_accept {refit['target_accept']:g} had "
                     f"{refit['divergences']} divergent transitions; these draws are from a refit at "
                     f"target_accept {refit['refit_target_accept']:g} ({refit['refit_divergences']} divergences)")
    table.attrs.update(divergences=n_div, max_treedepth_hits=depth_hits, draws=n_chain * n_draw, chains=n_chain,
                       problems=problems, adaptive_refit=refit, notes=notes)
    return table


def adaptive_refit(dt: xr.DataTree) -> dict | None:
    """The adaptive-refit record a fit wrote (``sampler_settings["adaptive_refit"]``), or None."""
    import json

    raw = dt.attrs.get("bayes_koa_sampler_settings")
    if not raw:
        return None
    try:
        return json.loads(raw).get("adaptive_refit")
    except (TypeError, ValueError, AttributeError):
        return None


def _stats(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-hat (rank-normalised split, max of bulk and tail), bulk ESS and tail ESS per element of ``da``.

    Vectorised over the elements (:mod:`bayes_koa.util.fastdiag`, the same estimators as ArviZ, checked
    against it in tests/unit/test_fastdiag.py); ArviZ itself for draws with non-finite values."""
    from ..util import fastdiag

    x = np.asarray(da.values, dtype=float)
    n_chain, n_draw = x.shape[:2]
    if not np.isfinite(x).all() or n_draw < 4:
        import arviz_stats as az  # the statistics only: the arviz meta-package also imports arviz_plots

        ds = xr.Dataset({"x": da})
        return (np.asarray(az.rhat(ds)["x"].values, dtype=float), np.asarray(az.ess(ds, method="bulk")["x"].values, dtype=float),
                np.asarray(az.ess(ds, method="tail")["x"].values, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        rhat, bulk, tail = fastdiag.rhat_ess(x)
    if n_chain < 2:  # as ArviZ: no R-hat from one chain
        rhat = np.full(x.shape[2:], np.nan)
    return np.asarray(rhat), np.asarray(bulk), np.asarray(tail)


def _extreme(values: pd.Series, how) -> float:
    """Largest / smallest finite value; NaN when there is none (a NaN statistic is already a problem)."""
    finite = values[np.isfinite(values.to_numpy(float))]
    return float(how(finite)) if len(finite) else float("nan")


def diagnostics_flag(diag: pd.DataFrame) -> dict:
    """The short record of a fit's sampler health that every table made from it carries."""
    a = diag.attrs
    return {"ok": not a["problems"], "divergences": int(a["divergences"]),
            "max_treedepth_hits": int(a.get("max_treedepth_hits", 0)),
            "max_r_hat": _extreme(diag["r_hat"], max), "min_ess_bulk": _extreme(diag["ess_bulk"], min),
            "problems": list(a["problems"]),
            "adaptive_refit": bool((a.get("adaptive_refit") or {}).get("refit", False)),
            "notes": list(a.get("notes", []))}
