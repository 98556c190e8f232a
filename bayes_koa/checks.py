"""Model checking and comparison: posterior predictive checks, PSIS-LOO, model comparison, influence.

Pure functions over a fitted :class:`~bayes_koa.result.MetaAnalysis` (its DataTree and spec); they
return DataFrames and figures and never print. Only :func:`influence` runs the sampler (exact refits
without a trial, for the trials whose Pareto k says the importance-sampling estimate cannot be
trusted); :func:`posterior_predictive` uses PyMC's forward sampling for non-normal likelihoods.

Posterior predictive checks (:func:`posterior_predictive`, :func:`ppc_table`, :func:`plot_ppc`)
    ``y_rep`` is a replicate of each trial's estimate. ``predictive="conditional"`` (default) draws
    it given the trial's own effect, ``y_rep = theta_i + se_i * eps``; ``"mixed"`` draws a new effect
    for the trial first, ``y_rep = loc_i + tau_i * eps_1 + se_i * eps_2`` (``loc_i`` = the mean the
    model gives the trial: ``mu``, its source or source x origin mean, plus moderator terms). The
    conditional check is conservative in hierarchical models (theta_i is fitted to y_i, so p-values
    crowd towards 1/2; Gelman, Meng & Stern 1996, Stat Sinica 6:733); the mixed one is less so
    (Marshall & Spiegelhalter 2003, Stat Med 22:1649).
    ``p_value = P(y_rep < y | data)``: near 0 the trial's estimate is lower (more benefit) than the
    model predicts, near 1 higher; flagged outside [0.025, 0.975]. For the normal likelihood with
    known SEs the p-values and predictive means are Rao-Blackwellised (averages over draws of the
    normal cdf / mean, so no noise from ``eps``); intervals come from ``y_rep`` draws. Other
    likelihoods use PyMC's ``sample_posterior_predictive`` on the model rebuilt from the spec, and
    mid-p-values ``P(y_rep < y) + P(y_rep = y) / 2``. ``loo_pit`` is the cross-validated p-value
    ``P(y_rep_i < y_i | y_-i)`` (PSIS weights, as :func:`loo`): uniform on (0, 1) when the model is
    right, so its flag is calibrated (the cross-validatory check of Marshall & Spiegelhalter 2003).

PSIS-LOO (:func:`loo`, :func:`loo_data`, :func:`compare`)
    ArviZ's PSIS-LOO (Vehtari, Gelman & Gabry 2017, Stat Comput 27:1413; Vehtari et al. 2024, JMLR
    25:72) on the log-likelihood of each trial. For the normal models with trial effects
    (``random``, ``hierarchical``) the default is the *integrated* log-likelihood
    ``log N(y_i | loc_i, sqrt(se_i^2 + tau_i^2))``, theta_i integrated out analytically. Both forms
    estimate the same ``elpd_i = log p(y_i | y_-i)`` (theta_i appears only in trial i's likelihood
    and prior), but with one observation per trial effect the conditional form's importance ratios
    are heavy-tailed (on Rubin's eight schools, 4,000 draws, k reaches 0.6-0.8 for some schools)
    while the integrated one's are not (k < 0.4 there). ``p_loo`` differs between the two forms (the
    integrated one does not count the trial effects as parameters); ``elpd_loo`` does not.
    ``integrated=False`` gives the conditional form (the ``log_likelihood`` group of the fit).
    Pareto k above ``min(1 - 1/log10(S), 0.7)`` (S draws; 0.7 for S >= 2,154) marks a trial
    whose PSIS estimate is unreliable: a warning names the trials and gives the standard advice.

Influence (:func:`influence`)
    For each trial, the posterior without it: mean of ``mu``, ``P(mu < 0)``, ``P(best)`` of each
    source (or source x origin cell) and the first-ranked one (highest P(best)). By PSIS
    (reweighting the draws of the full fit with the same weights as :func:`loo`; with the
    integrated log-likelihood the weights are valid for every quantity that does not involve the
    left-out trial's own effect, which includes mu and the source means) and, for trials whose
    Pareto k exceeds ``refit_threshold_k``, by an exact refit without the trial (same model
    specification, priors, seed and sampler settings as the fit).

Monte Carlo SE of a self-normalised importance-sampling mean ``sum_s w_s f_s`` (weights summing to
1): ``sqrt(sum_s w_s^2 (f_s - E)^2 / r_eff)`` with ``r_eff`` = ESS / S of ``f`` (Vehtari et al.
2024, sec. 3; the ``loo`` R package's ``E_loo``). For ``elpd_i`` the SE of ``log`` of the mean
density by the delta method.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

__all__ = [
    "posterior_predictive",
    "ppc_table",
    "plot_ppc",
    "loo",
    "loo_data",
    "compare",
    "influence",
    "ParetoKWarning",
    "LIKELIHOOD",
    "P_FLAG",
    "K_THRESHOLD",
]

LIKELIHOOD = "y_obs"  # the likelihood variable of every model kind (log_likelihood / observed_data)
SAMPLE_DIMS = ("chain", "draw")
NORMAL_KINDS = ("fixed", "random", "hierarchical")  # normal likelihood with known SEs, one theta per trial
P_FLAG = (0.025, 0.975)  # two-sided 5% for a posterior predictive p-value
K_THRESHOLD = 0.7  # Pareto k above which PSIS is unreliable (Vehtari et al. 2024, for S >= 2,154)
_LOG_2PI = math.log(2.0 * math.pi)

K_ADVICE = ("Pareto k > {k:.2g}: the PSIS estimate for this trial is unreliable (it changes the "
            "posterior too much to be importance-sampled). Refit without it (influence(result), "
            "which refits such trials), or use a model with heavier-tailed trial effects.")


class ParetoKWarning(UserWarning):
    """PSIS-LOO found trials with a high Pareto k: their LOO estimates are unreliable."""


# ---------------------------------------------------------------------------------------------
# helpers: what the fit holds
# ---------------------------------------------------------------------------------------------
def _posterior(result) -> xr.Dataset:
    return result.dt["posterior"].to_dataset()


def _group(result, name: str) -> xr.Dataset | None:
    return result.dt[name].to_dataset() if name in result.dt.children else None


def _observed(result) -> xr.DataArray:
    obs = _group(result, "observed_data")
    if obs is None or LIKELIHOOD not in obs:
        raise ValueError(f"model {result.spec.name}: the result has no observed_data/{LIKELIHOOD}; "
                         "fit it with bayes_koa.fit")
    return obs[LIKELIHOOD]


def _obs_dims(da: xr.DataArray) -> tuple[str, ...]:
    return tuple(d for d in da.dims if d not in SAMPLE_DIMS)


def _is_normal(result) -> bool:
    """Normal likelihood with known SEs and one effect theta_i per trial (the univariate kinds)."""
    cd = _group(result, "constant_data")
    post = result.dt["posterior"]
    return (result.spec.kind in NORMAL_KINDS and cd is not None and "se" in cd
            and "theta" in post.data_vars and post["theta"].dims[-1] == "trial")


def _se(result) -> xr.DataArray:
    return _group(result, "constant_data")["se"]


def _by_trial(values: np.ndarray, trial: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(np.asarray(values), dims="trial", coords={"trial": trial.values})


def _trial_location(result) -> tuple[xr.DataArray, xr.DataArray] | None:
    """Draws of (loc_i, tau_i), dims (chain, draw, trial), with theta_i ~ Normal(loc_i, tau_i).

    None for the fixed-effect kind (theta_i = loc_i: nothing to integrate). Built from the model
    structure (bayes_koa.build_univariate.build) and checked against theta = loc + tau z when the
    trial effects are non-centred.
    """
    spec = result.spec
    if spec.kind == "fixed":
        return None
    post = _posterior(result)
    cd = _group(result, "constant_data")
    trial = post["trial"]

    def idx(name: str) -> xr.DataArray:
        if cd is None or name not in cd:
            raise ValueError(f"model {spec.name}: constant_data/{name} is missing; cannot rebuild "
                             "the trial means (use integrated=False)")
        return _by_trial(cd[name].values.astype(int), trial)

    if spec.kind == "random":
        loc = post["mu"]
    elif "origin" in spec.levels:
        loc = post["cell_mean"].isel(source=idx("source_idx"), origin=idx("origin_idx"))
    else:
        loc = post["source_mean"].isel(source=idx("source_idx"))
    for m in spec.moderators:
        loc = loc + post[f"beta_{m}"] * _by_trial(cd[f"X_{m}"].values, trial)
    tau = post["tau"]
    if "source" in tau.dims:
        tau = tau.isel(source=idx("source_idx"))
    drop = [c for c in ("source", "origin") if c in loc.coords or c in tau.coords]
    loc = loc.drop_vars([c for c in drop if c in loc.coords])
    tau = tau.drop_vars([c for c in drop if c in tau.coords])
    zero = 0.0 * post["theta"].transpose(*SAMPLE_DIMS, "trial")  # every draw x trial
    loc = (loc.assign_coords(trial=trial.values) if "trial" in loc.dims else loc) + zero
    tau = (tau.assign_coords(trial=trial.values) if "trial" in tau.dims else tau) + zero
    loc, tau = loc.transpose(*SAMPLE_DIMS, "trial"), tau.transpose(*SAMPLE_DIMS, "trial")
    if "z" in post and spec.parameterization in ("noncentered", "mixed"):
        rebuilt = loc + tau * post["z"].transpose(*SAMPLE_DIMS, "trial")
        err = float(np.max(np.abs(rebuilt.values - post["theta"].transpose(*SAMPLE_DIMS, "trial").values)))
        scale = 1.0 + float(np.max(np.abs(post["theta"].values)))
        if not err <= 1e-8 * scale:  # theta is a Deterministic of the same float64 values
            raise RuntimeError(f"model {spec.name}: the trial means rebuilt from the posterior do not "
                               f"reproduce theta (max error {err:.3g}); use integrated=False")
    return loc, tau


def _seed(result, seed: int | None, stream: int) -> np.random.Generator:
    if seed is None:
        seed = int(result.dt.attrs.get("bayes_koa_seed", 0))
    return np.random.default_rng([int(seed), stream])


def _table_attrs(result, table: pd.DataFrame, **extra) -> pd.DataFrame:
    table.attrs.update({"model": result.spec.name, "measure": result.spec.measure,
                        "simulated": bool(result.simulated), **extra})
    return table


def _to_frame(ds: xr.Dataset, dims: tuple[str, ...]) -> pd.DataFrame:
    df = ds.to_dataframe()
    df = df[[v for v in ds.data_vars]].reset_index()
    return df[[*dims, *[c for c in df.columns if c not in dims]]]


def _row_labels(table: pd.DataFrame, dims: tuple[str, ...]) -> list[str]:
    return [" | ".join(map(str, r)) for r in table[list(dims)].itertuples(index=False)]


# ---------------------------------------------------------------------------------------------
# posterior predictive checks
# ---------------------------------------------------------------------------------------------
def _check_predictive(result, predictive: str) -> None:
    if predictive not in ("conditional", "mixed"):
        raise ValueError(f"predictive must be 'conditional' or 'mixed', got {predictive!r}")
    if predictive == "mixed" and not _is_normal(result):
        raise ValueError(f"predictive='mixed' needs the normal likelihood with trial effects; model "
                         f"{result.spec.name} is of kind {result.spec.kind!r}")


def _pymc_predictive(result, seed: int | None) -> xr.DataArray:
    """``y_rep`` from PyMC on the model rebuilt from the spec and the rows used (not the cached model,
    whose data containers may hold another fit's values)."""
    import pymc as pm

    from .build import build_model, prepare

    design, _ = prepare(result.spec, result.effects)
    model = build_model(result.spec, design)
    if seed is None:
        seed = int(result.dt.attrs.get("bayes_koa_seed", 0))
    post = result.dt["posterior"].to_dataset()
    keep = [v for v in post.data_vars if v in model.named_vars]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = pm.sample_posterior_predictive(post[keep], model=model, var_names=[LIKELIHOOD],
                                             random_seed=np.random.default_rng([int(seed), 13]),
                                             progressbar=False)
    pp = out["posterior_predictive"] if "posterior_predictive" in getattr(out, "children", {}) \
        else out.posterior_predictive
    return pp[LIKELIHOOD].transpose(*SAMPLE_DIMS, ...)


def posterior_predictive(result, seed: int | None = None, predictive: Literal["conditional", "mixed"] = "conditional",
                         engine: Literal["auto", "numpy", "pymc"] = "auto") -> xr.DataArray:
    """Replicated data ``y_rep`` (dims chain, draw and the likelihood's dims, e.g. trial).

    ``engine="auto"``: NumPy for the normal likelihood with known SEs (``theta + se * eps``; cheap),
    PyMC's ``sample_posterior_predictive`` for every other model kind. ``seed=None`` uses the
    fit's seed, so the replicate is reproducible. See the module docstring for ``predictive``.
    """
    _check_predictive(result, predictive)
    if engine not in ("auto", "numpy", "pymc"):
        raise ValueError(f"engine must be 'auto', 'numpy' or 'pymc', got {engine!r}")
    normal = _is_normal(result)
    if engine == "numpy" and not normal:
        raise ValueError(f"engine='numpy' needs the normal likelihood; model {result.spec.name} is of "
                         f"kind {result.spec.kind!r}")
    if engine == "pymc" or not normal:
        if predictive == "mixed":
            raise ValueError("predictive='mixed' is drawn with engine='numpy' only")
        y_rep = _pymc_predictive(result, seed)
    else:
        rng = _seed(result, seed, 13)
        mean, sd = _normal_predictive_parts(result, predictive)
        y_rep = mean + sd * xr.DataArray(rng.standard_normal(mean.shape), dims=mean.dims)
    y_rep = y_rep.rename("y_rep")
    y_rep.attrs.update({"predictive": predictive, "description": "replicated trial estimates"})
    return y_rep


def _mid_p(y_rep: xr.DataArray, y: xr.DataArray) -> xr.DataArray:
    """P(y_rep < y) + P(y_rep = y) / 2 over the draws (the mid-p-value; plain P(y_rep < y) for
    continuous draws). NaN where y is missing."""
    return ((y_rep < y) + 0.5 * (y_rep == y)).mean(SAMPLE_DIMS).where(y.notnull())


def _normal_predictive_parts(result, predictive: str) -> tuple[xr.DataArray, xr.DataArray]:
    """Per-draw mean and SD of the normal predictive distribution of each trial's estimate."""
    se = _se(result)
    theta = result.dt["posterior"]["theta"].transpose(*SAMPLE_DIMS, "trial")
    parts = _trial_location(result) if predictive == "mixed" else None
    if parts is None:  # conditional, or a fixed-effect model (no trial effects to redraw)
        return theta, (se + 0.0 * theta).transpose(*theta.dims)
    loc, tau = parts
    return loc, np.sqrt(tau**2 + se**2).transpose(*loc.dims)


def ppc_table(result, seed: int | None = None, ci: float = 0.95,
              predictive: Literal["conditional", "mixed"] = "conditional",
              loo_pit: bool = True) -> pd.DataFrame:
    """Per trial: observed ``y``, predictive mean and equal-tailed ``ci`` interval, ``p_value`` =
    P(y_rep < y), ``flag`` (p outside [0.025, 0.975]), and the cross-validated ``loo_pit`` with its
    ``loo_flag`` (same bounds). See the module docstring; ``loo_pit=False`` skips the PSIS step.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    _check_predictive(result, predictive)
    y = _observed(result)
    dims = _obs_dims(y)
    y_rep = posterior_predictive(result, seed=seed, predictive=predictive)
    lo, hi = (1 - ci) / 2, (1 + ci) / 2
    q = y_rep.quantile([lo, hi], dim=SAMPLE_DIMS)
    ds = xr.Dataset({"y": y})
    normal = _is_normal(result)
    if normal:
        ds["se"] = _se(result)
        mean, sd = _normal_predictive_parts(result, predictive)
        ds["pp_mean"] = mean.mean(SAMPLE_DIMS)
        ds["pp_lower"] = q.isel(quantile=0, drop=True)
        ds["pp_upper"] = q.isel(quantile=1, drop=True)
        ds["p_value"] = xr.apply_ufunc(special.ndtr, (y - mean) / sd).mean(SAMPLE_DIMS)
    else:
        ds["pp_mean"] = y_rep.mean(SAMPLE_DIMS)
        ds["pp_lower"] = q.isel(quantile=0, drop=True)
        ds["pp_upper"] = q.isel(quantile=1, drop=True)
        ds["p_value"] = _mid_p(y_rep, y)
    ds["flag"] = (ds["p_value"] < P_FLAG[0]) | (ds["p_value"] > P_FLAG[1])
    if loo_pit:
        elpd, method = _elpd(result, None)
        w = np.exp(elpd.log_weights).transpose(*dims, *SAMPLE_DIMS)
        if normal and method == "integrated":
            loc, tau = _trial_location(result)
            cdf = xr.apply_ufunc(special.ndtr, (y - loc) / np.sqrt(tau**2 + _se(result) ** 2))
        elif normal:
            theta = result.dt["posterior"]["theta"]
            cdf = xr.apply_ufunc(special.ndtr, (y - theta) / _se(result))
        else:
            cdf = (y_rep < y) + 0.5 * (y_rep == y)
        ds["loo_pit"] = (w * cdf).sum(SAMPLE_DIMS)
        ds["loo_flag"] = (ds["loo_pit"] < P_FLAG[0]) | (ds["loo_pit"] > P_FLAG[1])
        ds["pareto_k"] = elpd.pareto_k
    table = _to_frame(ds, dims)
    return _table_attrs(result, table, predictive=predictive, ci=ci,
                        engine="numpy" if normal else "pymc",
                        n_flagged=int(table["flag"].sum()),
                        n_loo_flagged=int(table["loo_flag"].sum()) if loo_pit else None)


def plot_ppc(result, save=None, seed: int | None = None, ci: float = 0.95,
             predictive: Literal["conditional", "mixed"] = "conditional"):
    """Observed estimate of each trial against its posterior predictive interval.

    Bars: equal-tailed ``ci`` predictive interval, with the predictive mean; dots: observed
    estimates, red when the p-value is flagged. Returns a Figure (``save=path`` writes a PNG).
    """
    from .plots import _effect_label, _finish, _new_figure, _title

    table = ppc_table(result, seed=seed, ci=ci, predictive=predictive, loo_pit=False)
    dims = _obs_dims(_observed(result))
    labels = _row_labels(table, dims)
    n = len(table)
    fig, axes = _new_figure(figsize=(7.5, 1.8 + 0.32 * n))
    ax = axes[0, 0]
    ypos = np.arange(n)[::-1]
    ax.hlines(ypos, table["pp_lower"], table["pp_upper"], color="0.55", lw=2.5,
              label=f"{ci:.0%} posterior predictive interval")
    ax.plot(table["pp_mean"], ypos, "|", color="0.25", ms=12, label="predictive mean")
    flag = table["flag"].to_numpy(bool)
    ax.plot(table["y"][~flag], ypos[~flag], "o", color="C0", label="observed")
    if flag.any():
        ax.plot(table["y"][flag], ypos[flag], "o", color="C3",
                label=f"observed, p < {P_FLAG[0]} or > {P_FLAG[1]}")
    ax.set_yticks(ypos, labels)
    ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel(_effect_label(result))
    fig.legend(loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    ax.set_title(_title(result, f"Posterior predictive check ({predictive}): model {result.spec.name}"),
                 fontsize="medium")
    return _finish(fig, save)


# ---------------------------------------------------------------------------------------------
# PSIS-LOO
# ---------------------------------------------------------------------------------------------
def _resolve_integrated(result, integrated: bool | None) -> bool:
    can = _is_normal(result) and result.spec.kind != "fixed"
    if integrated is None:
        return can
    if integrated and not can:
        if _is_normal(result):  # fixed effect: theta_i = mu, the two forms coincide
            return False
        raise ValueError(f"integrated LOO needs the normal likelihood with trial effects (kinds "
                         f"'random', 'hierarchical'); model {result.spec.name} is of kind "
                         f"{result.spec.kind!r}: use integrated=False")
    return bool(integrated)


def _log_likelihood(result, integrated: bool) -> xr.DataArray:
    if integrated:
        loc, tau = _trial_location(result)
        y, se = _observed(result), _se(result)
        var = tau**2 + se**2
        ll = -0.5 * (_LOG_2PI + np.log(var) + (y - loc) ** 2 / var)
        return ll.transpose(*SAMPLE_DIMS, "trial").rename(LIKELIHOOD)
    ll = _group(result, "log_likelihood")
    if ll is not None and LIKELIHOOD in ll:
        return ll[LIKELIHOOD]
    if _is_normal(result):
        y, se = _observed(result), _se(result)
        theta = result.dt["posterior"]["theta"]
        ll = -0.5 * (_LOG_2PI + 2 * np.log(se) + ((y - theta) / se) ** 2)
        return ll.transpose(*SAMPLE_DIMS, "trial").rename(LIKELIHOOD)
    raise ValueError(f"model {result.spec.name}: the result has no log_likelihood/{LIKELIHOOD} group "
                     "(fits by bayes_koa.fit add it)")


def _sum_by_trial(result, ll: xr.DataArray) -> xr.DataArray:
    """Log-likelihood of each trial: the sum over its observations (arms, rows), found through
    ``constant_data/trial_idx`` (observation -> trial), for likelihoods not indexed by trial."""
    dims = _obs_dims(ll)
    cd = _group(result, "constant_data")
    post = result.dt["posterior"]
    if len(dims) != 1 or cd is None or "trial_idx" not in cd or cd["trial_idx"].dims != dims \
            or "trial" not in post.coords:
        raise ValueError(f"model {result.spec.name}: its likelihood {LIKELIHOOD} is over {dims}, and the "
                         "result does not say which trial each observation belongs to "
                         "(constant_data/trial_idx); leave-one-trial-out is not available")
    idx = cd["trial_idx"].values.astype(int)
    arr = ll.transpose(*SAMPLE_DIMS, dims[0]).values
    labels = post["trial"].values
    out = np.stack([arr[..., idx == t].sum(axis=-1) for t in range(len(labels))], axis=-1)
    return xr.DataArray(out, dims=(*SAMPLE_DIMS, "trial"),
                        coords={"chain": ll["chain"].values, "draw": ll["draw"].values, "trial": labels},
                        name=LIKELIHOOD)


def _elpd(result, integrated: bool | None, by_trial: bool = False):
    """(ArviZ ELPDData with pointwise values, 'integrated' | 'conditional'); ArviZ's own warning
    about high k is silenced (callers warn with trial names). ``by_trial``: one term per trial even
    when the likelihood is over arms or rows (their log-likelihoods summed: leave one trial out)."""
    import arviz as az

    integ = _resolve_integrated(result, integrated)
    ll = _log_likelihood(result, integ)
    how = "integrated" if integ else "conditional"
    if by_trial and "trial" not in ll.dims:
        ll = _sum_by_trial(result, ll)
        how += f" (summed over {_obs_dims(_observed(result))[0]} per trial)"
    tree = xr.DataTree.from_dict({"posterior": _posterior(result),
                                  "log_likelihood": xr.Dataset({LIKELIHOOD: ll})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        elpd = az.loo(tree, pointwise=True, var_name=LIKELIHOOD)
    elpd.log_likelihood_ = ll  # kept for the MC SEs below
    return elpd, how


def loo_data(result, integrated: bool | None = None):
    """ArviZ's ``ELPDData`` (PSIS-LOO, pointwise) of a result; see the module docstring for
    ``integrated``. What :func:`compare` passes to ``arviz.compare``."""
    return _elpd(result, integrated)[0]


def _r_eff(x: xr.DataArray) -> xr.DataArray:
    """ESS / S of the mean of ``x`` over chain and draw (1 where undefined)."""
    from .ranking import _ess

    n = x.sizes["chain"] * x.sizes["draw"]
    return (_ess(x, SAMPLE_DIMS) / n).clip(max=1.0)


def _is_mcse(w: xr.DataArray, f: xr.DataArray, r_eff: xr.DataArray | float) -> xr.DataArray:
    """MC SE of the self-normalised importance-sampling mean sum_s w_s f_s (module docstring)."""
    e = (w * f).sum(SAMPLE_DIMS)
    return np.sqrt((w**2 * (f - e) ** 2).sum(SAMPLE_DIMS) / r_eff)


def _high_k(elpd, k_threshold: float | None) -> float:
    return float(elpd.good_k if k_threshold is None else k_threshold)


def loo(result, integrated: bool | None = None, k_threshold: float | None = None) -> pd.DataFrame:
    """PSIS-LOO per trial: ``y``, ``elpd_i``, ``mcse_elpd_i``, ``pareto_k``, ``high_k`` and the
    ``advice`` for high-k trials.

    Totals in ``table.attrs``: ``elpd_loo``, ``se`` (its SE over trials), ``p_loo``, ``method``
    ('integrated' or 'conditional'), ``k_threshold``, ``n_high_k``, ``high_k_trials``.
    ``k_threshold=None`` uses ArviZ's ``min(1 - 1/log10(S), 0.7)``. Warns (:class:`ParetoKWarning`)
    when any trial's k exceeds it.
    """
    elpd, method = _elpd(result, integrated)
    kt = _high_k(elpd, k_threshold)
    ll = elpd.log_likelihood_
    dims = _obs_dims(ll)
    w = np.exp(elpd.log_weights)
    dens = np.exp(ll - ll.max(SAMPLE_DIMS))  # rescaled per trial: the delta-method SE is scale-free
    mean_dens = (w * dens).sum(SAMPLE_DIMS)
    mcse = _is_mcse(w, dens, _r_eff(dens)) / mean_dens
    ds = xr.Dataset({"y": _observed(result), "elpd_i": elpd.elpd_i, "mcse_elpd_i": mcse,
                     "pareto_k": elpd.pareto_k})
    ds["high_k"] = ds["pareto_k"] > kt
    table = _to_frame(ds, dims)
    table["advice"] = np.where(table["high_k"], K_ADVICE.format(k=kt), "")
    bad = _row_labels(table.loc[table["high_k"]], dims)
    if bad:
        warnings.warn(f"PSIS-LOO ({method}) of model {result.spec.name}: Pareto k > {kt:.2g} for "
                      f"{len(bad)} trial(s): {', '.join(bad)}. " + K_ADVICE.format(k=kt),
                      ParetoKWarning, stacklevel=2)
    return _table_attrs(result, table, elpd_loo=float(elpd.elpd), se=float(elpd.se), p_loo=float(elpd.p),
                        method=method, k_threshold=kt, n_high_k=len(bad), high_k_trials=bad,
                        n_draws=int(elpd.n_samples))


# ---------------------------------------------------------------------------------------------
# model comparison
# ---------------------------------------------------------------------------------------------
def _same_data(results: Mapping[str, object]) -> None:
    """Raise ValueError unless every result was fitted to the same trials and observations."""
    names = list(results)
    ref_name, ref = names[0], results[names[0]]
    ref_p = ref.provenance
    ref_y = _observed(ref)
    for name in names[1:]:
        res = results[name]
        p = res.provenance
        problems = []
        if p.get("data_sha256") != ref_p.get("data_sha256"):
            problems.append(f"data sha256 {str(p.get('data_sha256'))[:12]} vs {str(ref_p.get('data_sha256'))[:12]}")
        for key in ("outcome", "time", "measure"):
            if str(p.get(key, "")) != str(ref_p.get(key, "")):
                problems.append(f"{key} {p.get(key)!r} vs {ref_p.get(key)!r}")
        y = _observed(res)
        if y.dims != ref_y.dims or y.shape != ref_y.shape or any(
                list(map(str, y[d].values)) != list(map(str, ref_y[d].values)) for d in y.dims if d in ref_y.dims):
            a = set(map(str, y["trial"].values)) if "trial" in y.dims else set()
            b = set(map(str, ref_y["trial"].values)) if "trial" in ref_y.dims else set()
            only_a, only_b = sorted(a - b), sorted(b - a)
            detail = "; ".join(x for x in (
                only_a and f"only in {name!r}: {', '.join(only_a[:5])}" + (" ..." if len(only_a) > 5 else ""),
                only_b and f"only in {ref_name!r}: {', '.join(only_b[:5])}" + (" ..." if len(only_b) > 5 else ""),
            ) if x) or "same trials in another order or shape"
            problems.append(f"trials differ ({detail})")
        elif not np.array_equal(y.values, ref_y.values, equal_nan=True):
            diff = [str(t) for t, a, b in zip(y[y.dims[0]].values, np.atleast_1d(y.values), np.atleast_1d(ref_y.values))
                    if not (a == b or (np.isnan(a) and np.isnan(b)))] if y.ndim == 1 else []
            problems.append("observed values differ" + (f" for trial(s) {', '.join(diff[:5])}" if diff else ""))
        if problems:
            raise ValueError(f"cannot compare {name!r} with {ref_name!r}: they were fitted to different data "
                             f"({'; '.join(problems)}). LOO comparison needs the same trials and the same "
                             "observed estimates: fit every model to the same effect table, outcome and time.")


def compare(results: Mapping[str, object], integrated: bool | None = None,
            method: str = "stacking") -> pd.DataFrame:
    """Compare models fitted to the same data by PSIS-LOO (``arviz.compare``), best first.

    ``results``: ``{name: MetaAnalysis}``, at least two. Columns are ArviZ's (``rank``, ``elpd_diff``,
    ``dse``, ``p_worse``, ``diag_diff``, ``diag_elpd``, ``p``, ``elpd``, ``se``, ``weight``;
    stacking weights by default, Yao et al. 2018) plus ``model``, ``loo_method`` and ``n_high_k``.
    Raises ValueError when the results were fitted to different data (data hash, outcome, time,
    measure, trial labels or observed values differ). Warns when any trial has a high Pareto k.
    """
    import arviz as az

    if not isinstance(results, Mapping) or len(results) < 2:
        raise ValueError("compare needs a dict {name: MetaAnalysis} with at least two results")
    _same_data(results)
    elpds, extra = {}, {}
    for name, res in results.items():
        elpd, how = _elpd(res, integrated)
        elpds[name] = elpd
        n_high = int((elpd.pareto_k > elpd.good_k).sum())
        extra[name] = {"model": res.spec.name, "loo_method": how, "n_high_k": n_high}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = az.compare(elpds, method=method, round_to="none")
    for col in ("model", "loo_method", "n_high_k"):
        table[col] = [extra[n][col] for n in table.index]
    high = [f"{n} ({extra[n]['n_high_k']})" for n in table.index if extra[n]["n_high_k"]]
    if high:
        warnings.warn("PSIS-LOO: trials with Pareto k above the threshold in " + ", ".join(high) +
                      ": their elpd estimates are unreliable and can bias the comparison; see loo(result) "
                      "and influence(result).", ParetoKWarning, stacklevel=2)
    first = next(iter(results.values()))
    table.attrs.update({"method": method, "simulated": any(r.simulated for r in results.values()),
                        "data_sha256": first.provenance.get("data_sha256", "")})
    return table


# ---------------------------------------------------------------------------------------------
# influence of each trial
# ---------------------------------------------------------------------------------------------
def _rank_level(result, level: str | None) -> str | None:
    post = result.dt["posterior"]
    if level == "auto":
        return "source" if "source_mean" in post.data_vars else None
    return level


def _best_indicator(draws: xr.DataArray, dim: str, lower_is_better: bool) -> xr.DataArray:
    """Per draw, each entity's share of rank 1 (ties split), dims (chain, draw, dim)."""
    from .ranking import _indicator_array

    return _indicator_array(draws, dim, lower_is_better).sel(rank=1, drop=True).transpose(*SAMPLE_DIMS, dim)


def _level_draws_of(post: xr.Dataset, level: str, labels: Sequence[str]) -> tuple[xr.DataArray, str]:
    """Entity draws of a refit posterior, restricted to ``labels`` (entities it lacks are left out)."""
    if level == "source":
        da = post["source_mean"]
        return da.sel(source=[s for s in labels if s in da["source"].values]), "source"
    cell = post["cell_mean"].stack(cell=("source", "origin"))
    names = [f"{s} {o}" for s, o in cell["cell"].values]
    cell = cell.drop_vars(["cell", "source", "origin"]).assign_coords(cell=names)
    return cell.sel(cell=[c for c in labels if c in names]), "cell"


def _settings(result) -> dict:
    from .fitting import sampler_settings

    return sampler_settings(result)


def _refit_without(result, position: int, label: str) -> tuple[xr.Dataset, str]:
    """Posterior of the fitted model on the rows used minus trial ``label`` (same spec, priors, seed
    and sampler settings as the fit). Returns (posterior, problems)."""
    from .build import prepare
    from .fitting import diagnose, sample_spec

    eff = result.effects.reset_index(drop=True)
    if result.spec.kind in NORMAL_KINDS:  # one row per trial entry, in model order
        keep = eff.drop(index=position)
    elif "trial_id" in eff and (eff["trial_id"].astype(str) == label).any():
        keep = eff[eff["trial_id"].astype(str) != label]
    else:
        raise NotImplementedError(f"model {result.spec.name}: cannot tell which rows of the effect table "
                                  f"belong to trial {label!r}; refits are not available for this kind")
    design, excluded = prepare(result.spec, keep.reset_index(drop=True))
    if len(excluded):
        raise RuntimeError(f"refit without trial {label!r}: rows that the fit used are now left out "
                           f"({', '.join(sorted(set(excluded['excluded_reason'])))})")
    if type(design).__module__ == "bayes_koa.build_univariate":
        # the compile cache keys on coords: neutral trial labels let every refit of the same size
        # (and the same sources) share one compiled model; the labels are not used below
        design.trial = [f"loo_{k}" for k in range(len(design.trial))]
    st = _settings(result)
    dt = sample_spec(result.spec, design, seed=st["seed"], draws=st["draws"], tune=st["tune"],
                     chains=st["chains"], sampler=st["sampler"], target_accept=st["target_accept"],
                     extra_groups=False)
    problems = diagnose(dt, var_names=["mu"]).attrs["problems"]
    return dt["posterior"].to_dataset(), " ".join(problems)


def influence(result, refit_threshold_k: float | None = K_THRESHOLD, level: str | None = "auto",
              integrated: bool | None = None, lower_is_better: bool = True,
              refit_trials: Sequence[str] = ()) -> pd.DataFrame:
    """Leave-one-trial-out influence on the pooled effect ``mu`` and on the ranking.

    One ``psis`` row per trial, plus a ``refit`` row for every trial whose Pareto k exceeds
    ``refit_threshold_k`` (None: never refit) or that is named in ``refit_trials``. Columns:
    ``trial``, ``method``, ``pareto_k``, ``mu_mean`` (without the trial), ``mu_change`` (minus the
    full-data mean), ``mu_mcse``, ``P(mu<0)``, ``P(best) <entity>`` for each source (``level=
    "source"``; ``"cell"`` for source x origin cells; ``"auto"``: sources when the model has them,
    else no ranking columns), ``first_ranked`` (highest P(best)), ``first_ranked_changes``, and
    ``note`` (refit sampling problems; sources a refit lost). Full-data values are in
    ``table.attrs`` (``mu_mean_full``, ``p_best_full``, ``first_ranked_full``).
    """
    from .ranking import mcse_mean

    post = result.dt["posterior"]
    if "mu" not in post.data_vars or post["mu"].ndim != 2:
        raise ValueError(f"influence needs a scalar overall mean 'mu'; model {result.spec.name} has none")
    level = _rank_level(result, level)
    elpd, method = _elpd(result, integrated, by_trial=True)
    trials = [str(t) for t in elpd.pareto_k["trial"].values]
    w = np.exp(elpd.log_weights).transpose("trial", *SAMPLE_DIMS)
    mu = post["mu"].transpose(*SAMPLE_DIMS)
    mu_full = float(mu.mean())
    psis_mu = (w * mu).sum(SAMPLE_DIMS)
    psis_mcse = _is_mcse(w, mu, _r_eff(mu))
    psis_pneg = (w * (mu < 0)).sum(SAMPLE_DIMS)

    entities: list[str] = []
    if level is not None:
        ent_draws, edim = result._level_draws(level)
        entities = [str(e) for e in ent_draws[edim].values]
        ind = _best_indicator(ent_draws, edim, lower_is_better)
        pbest_full = ind.mean(SAMPLE_DIMS)
        first_full = entities[int(np.argmax(pbest_full.values))]
        psis_pbest = xr.dot(w, ind, dim=list(SAMPLE_DIMS)).transpose("trial", edim)

    def row(trial, how, k, mu_mean, mcse, pneg, pbest: dict | None, note=""):
        r = {"trial": trial, "method": how, "pareto_k": k, "mu_mean": mu_mean, "mu_change": mu_mean - mu_full,
             "mu_mcse": mcse, "P(mu<0)": pneg}
        if level is not None:
            for e in entities:
                r[f"P(best) {e}"] = pbest.get(e, np.nan)
            first = max(pbest, key=pbest.get) if pbest else ""
            r["first_ranked"] = first
            r["first_ranked_changes"] = bool(first != first_full)
        r["note"] = note
        return r

    rows = []
    ks = elpd.pareto_k.values
    unknown = [t for t in refit_trials if str(t) not in trials]
    if unknown:
        raise ValueError(f"refit_trials: no trial {', '.join(map(repr, unknown))} in model {result.spec.name}")
    for i, t in enumerate(trials):
        pb = dict(zip(entities, psis_pbest.values[i])) if level is not None else None
        rows.append(row(t, "psis", float(ks[i]), float(psis_mu.values[i]), float(psis_mcse.values[i]),
                        float(psis_pneg.values[i]), pb))
        needs = (refit_threshold_k is not None and ks[i] > refit_threshold_k) or t in map(str, refit_trials)
        if needs:
            rpost, problems = _refit_without(result, i, t)
            rmu = rpost["mu"]
            note = problems
            pb = None
            if level is not None:
                rd, rdim = _level_draws_of(rpost, level, entities)
                lost = [e for e in entities if e not in [str(x) for x in rd[rdim].values]]
                if lost:
                    note = (note + " " if note else "") + f"without this trial the model has no {', '.join(lost)}."
                pb = dict(zip([str(x) for x in rd[rdim].values],
                              _best_indicator(rd, rdim, lower_is_better).mean(SAMPLE_DIMS).values))
            rows.append(row(t, "refit", float(ks[i]), float(rmu.mean()), float(mcse_mean(rmu)),
                            float((rmu < 0).mean()), pb, note))
    table = pd.DataFrame(rows)
    extra = {"mu_mean_full": mu_full, "loo_method": method, "refit_threshold_k": refit_threshold_k,
             "n_refits": int((table["method"] == "refit").sum()), "level": level}
    if level is not None:
        extra.update(p_best_full=dict(zip(entities, map(float, pbest_full.values))), first_ranked_full=first_full)
    refitted = set(table.loc[table["method"] == "refit", "trial"])
    high = [t for t, k in zip(trials, ks) if k > elpd.good_k and t not in refitted]
    if high:
        warnings.warn(f"influence of model {result.spec.name}: Pareto k > {elpd.good_k:.2g} for "
                      f"{', '.join(high)} and no refit was made; their PSIS rows are unreliable "
                      "(set refit_threshold_k to refit them).", ParetoKWarning, stacklevel=2)
    return _table_attrs(result, table, **extra)
