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
    ``integrated=False`` gives the conditional form ``log N(y_i | theta_i, se_i)``, computed from the trial
    effects (for a non-centred fit it equals the ``log_likelihood`` group; a ``marginal`` fit's group is the
    integrated density, and its theta_i are exact conditional draws, so the conditional form is still valid).
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

from ..kinds import build_model, get_kind, prepare
from ..util.draws import ess_mean as _ess

__all__ = [
    "posterior_predictive",
    "ppc_table",
    "loo",
    "loo_data",
    "compare",
    "ParetoKWarning",
    "LIKELIHOOD",
    "P_FLAG",
    "K_THRESHOLD",
]

LIKELIHOOD = "y_obs"  # the likelihood variable of every model kind (log_likelihood / observed_data)
SAMPLE_DIMS = ("chain", "draw")
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
    if name == "log_likelihood" and name not in result.dt.children and hasattr(result, "require"):
        result.require(name)  # computed once, when first asked for (a fit does not store it)
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
    """Normal likelihood with known SEs and one effect theta_i per trial (the kind says so)."""
    cd = _group(result, "constant_data")
    kind = get_kind(result.spec.kind)
    trial = kind.roles(result.spec).trial
    post = result.dt["posterior"]
    return (kind.normal_likelihood(result.spec) and cd is not None and "se" in cd and trial is not None
            and trial in post.data_vars and post[trial].dims[-1] == "trial")


def _theta(result) -> xr.DataArray:
    return result.dt["posterior"][get_kind(result.spec.kind).roles(result.spec).trial]


def _se(result) -> xr.DataArray:
    return _group(result, "constant_data")["se"]


def _by_trial(values: np.ndarray, trial: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(np.asarray(values), dims="trial", coords={"trial": trial.values})


def _trial_location(result) -> tuple[xr.DataArray, xr.DataArray] | None:
    """Draws of (loc_i, tau_i), dims (chain, draw, trial), with theta_i ~ Normal(loc_i, tau_i): the kind's."""
    return get_kind(result.spec.kind).trial_location(result.dt, result.spec)


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


def _vectorised_predictive(model, post: xr.Dataset, rng: np.random.Generator,
                           obs_shape: tuple[int, ...]) -> xr.DataArray | None:
    """``y_rep`` for every draw at once: the likelihood's graph vectorised over the draws (pytensor's
    ``vectorize_graph``, the free variables replaced by their posterior draws), one call instead of one per
    draw as ``pm.sample_posterior_predictive`` makes (there a call costs ~1 ms of Numba argument typing).

    None (the caller then uses PyMC's loop) when the graph does not allow it: a free variable without draws,
    another random variable left in the graph, or a likelihood whose shape comes only from its ``size``."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.replace import vectorize_graph
    from pytensor.graph.traversal import ancestors
    from pytensor.tensor.random.op import RandomVariable

    obs = model[LIKELIHOOD]
    free = list(model.free_RVs)
    if any(rv.name not in post.data_vars for rv in free) or not isinstance(obs.owner.op, RandomVariable):
        return None
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    node = obs.owner
    rng_var, _size, *params = node.inputs
    unsized = node.op.make_node(rng_var, None, *params).outputs[1]  # shape from the (batched) parameters
    batched = {rv: pt.tensor(dtype=rv.dtype, shape=(None,) * (rv.ndim + 1), name=rv.name) for rv in free}
    try:
        out = vectorize_graph(unsized, replace=batched)
    except (ValueError, NotImplementedError, TypeError):
        return None
    n_rv = sum(1 for v in ancestors([out]) if v.owner is not None and isinstance(v.owner.op, RandomVariable))
    if n_rv != 1:  # only the likelihood itself may be random here
        return None
    rng_var.set_value(rng)
    f = pytensor.function(list(batched.values()), out, mode="FAST_COMPILE")  # one call: no compile to pay for
    values = [np.asarray(post[rv.name].transpose("chain", "draw", ...).values).reshape(n_chain * n_draw, *post[rv.name].shape[2:])
              for rv in free]
    draws = np.asarray(f(*values))
    if draws.shape[1:] != obs_shape:
        return None
    dims = model.named_vars_to_dims.get(LIKELIHOOD) or tuple(f"{LIKELIHOOD}_dim_{i}" for i in range(len(obs_shape)))
    coords = {d: list(model.coords[d]) for d in dims if d in model.coords}
    return xr.DataArray(draws.reshape(n_chain, n_draw, *obs_shape), dims=(*SAMPLE_DIMS, *dims),
                        coords={"chain": post["chain"].values, "draw": post["draw"].values, **coords})


def _pymc_predictive(result, seed: int | None, vectorised: bool = True) -> xr.DataArray:
    """``y_rep`` from PyMC on the model rebuilt from the spec and the rows used (not the cached model,
    whose data containers may hold another fit's values): vectorised over the draws where the graph
    allows (:func:`_vectorised_predictive`), else ``pm.sample_posterior_predictive``."""
    import pymc as pm

    design, _ = prepare(result.spec, result.effects, **result.selection)
    model = build_model(result.spec, design)
    if seed is None:
        seed = int(result.dt.attrs.get("bayes_koa_seed", 0))
    post = result.dt["posterior"].to_dataset()
    trial = get_kind(result.spec.kind).roles(result.spec).trial
    if trial and trial in post.data_vars and trial not in model.named_vars:
        # trial effects integrated out of the likelihood (drawn after sampling): PyMC's forward draws of
        # y_obs would be the mixed predictive, not the conditional replicate asked for
        raise ValueError(f"model {result.spec.name} integrates its trial effects out of the likelihood; "
                         "use engine='numpy' (predictive='conditional' or 'mixed')")
    rng = np.random.default_rng([int(seed), 13])
    if vectorised:
        y_rep = _vectorised_predictive(model, post, rng, tuple(_observed(result).shape))
        if y_rep is not None:
            return y_rep
    keep = [v for v in post.data_vars if v in model.named_vars]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = pm.sample_posterior_predictive(post[keep], model=model, var_names=[LIKELIHOOD],
                                             random_seed=rng,
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
    theta = _theta(result).transpose(*SAMPLE_DIMS, "trial")
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
    if _loo_by_trial(result):
        if predictive != "conditional":
            raise ValueError(f"model {result.spec.name}: the check by trial is conditional (predictive='conditional')")
        return _ppc_by_trial(result, seed, ci, loo_pit)
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
            theta = _theta(result)
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


def _discrepancy(y, mu, sd, n, binom) -> np.ndarray:
    """Per observation: ``((y - mu) / sd)^2`` on normal rows, the binomial deviance
    ``2 [y log(y / (n p)) + (n - y) log((n - y) / (n (1 - p)))]`` (0 log 0 = 0) on binomial rows."""
    z2 = ((y - mu) / sd) ** 2
    if not np.any(binom):
        return z2
    p = special.expit(mu)
    nn = np.where(binom, n, 1.0)
    yy = np.where(binom, y, 0.0)
    dev = 2.0 * (special.xlogy(yy, yy) - special.xlogy(yy, nn * p)
                 + special.xlogy(nn - yy, nn - yy) - special.xlogy(nn - yy, nn * (1.0 - p)))
    return np.where(binom, dev, z2)


def _ppc_by_trial(result, seed: int | None, ci: float, loo_pit: bool) -> pd.DataFrame:
    """The posterior predictive check of a kind whose trials have several observations (arms): one row
    per trial, the realized discrepancy ``T_i(y, theta)`` = the sum over the trial's observations of
    ``((y - mu) / sd)^2`` (normal rows; the decorrelated contrast rows are independent given the means)
    or the binomial deviance, against ``T_i(y_rep, theta)`` with ``y_rep`` drawn from the likelihood
    given the same draw (Gelman, Meng & Stern 1996). ``p_value = P(T(y_rep) >= T(y))`` (ties split, the
    mid-p-value): small = the trial's arms fit worse than the model's own replicates; ``flag`` when
    below 0.025 (one-sided: only a poor fit is a problem). ``loo_p_value``: the same with the trial's
    PSIS-LOO weights (the trial left out whole, as :func:`loo`), the cross-validated check, with
    ``loo_flag`` (below 0.025) and ``pareto_k``. Interval columns: the central ``ci`` interval of
    ``T(y_rep)``."""
    parts = get_kind(result.spec.kind).observation_parts(result.dt, result.spec)
    y = np.asarray(_observed(result).values, dtype=float)
    mu, sd, n, binom, idx = parts["mu"], parts["sd"], parts["n"], parts["binomial"], parts["trial_idx"]
    rng = _seed(result, seed, 13)
    rep = np.where(binom, rng.binomial(np.where(binom, n, 1).astype(np.int64), special.expit(mu)),
                   rng.normal(mu, sd))
    d_obs, d_rep = _discrepancy(y, mu, sd, n, binom), _discrepancy(rep, mu, sd, n, binom)
    labels = result.dt["posterior"]["trial"].values
    T = np.zeros(mu.shape[:2] + (len(labels),))
    T_rep = np.zeros_like(T)
    for t in range(len(labels)):
        T[..., t] = d_obs[..., idx == t].sum(axis=-1)
        T_rep[..., t] = d_rep[..., idx == t].sum(axis=-1)
    exceed = (T_rep > T) + 0.5 * (T_rep == T)
    lo, hi = (1 - ci) / 2, (1 + ci) / 2
    flat = T_rep.reshape(-1, len(labels))
    table = pd.DataFrame({"trial": labels, "n_obs": np.bincount(idx, minlength=len(labels)),
                          "discrepancy": T.mean(axis=(0, 1)), "rep_mean": flat.mean(axis=0),
                          "rep_lower": np.quantile(flat, lo, axis=0), "rep_upper": np.quantile(flat, hi, axis=0),
                          "p_value": exceed.mean(axis=(0, 1))})
    table["flag"] = table["p_value"] < P_FLAG[0]
    if loo_pit:
        elpd, _ = _elpd(result, None, by_trial=True)
        w = np.exp(elpd.log_weights.transpose(*SAMPLE_DIMS, "trial").values)
        table["loo_p_value"] = (w * exceed).sum(axis=(0, 1))
        table["loo_flag"] = table["loo_p_value"] < P_FLAG[0]
        table["pareto_k"] = np.asarray(elpd.pareto_k.values, dtype=float)
    return _table_attrs(result, table, predictive="conditional", ci=ci, engine="numpy (by trial)",
                        statistic="sum over the trial's observations of ((y - mu) / sd)^2 or binomial deviance",
                        n_flagged=int(table["flag"].sum()),
                        n_loo_flagged=int(table["loo_flag"].sum()) if loo_pit else None)


# ---------------------------------------------------------------------------------------------
# PSIS-LOO
# ---------------------------------------------------------------------------------------------
def _resolve_integrated(result, integrated: bool | None) -> bool:
    can = _is_normal(result) and bool(get_kind(result.spec.kind).roles(result.spec).heterogeneity)
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
    if _is_normal(result):  # conditional: from the trial effects, whatever the kind sampled (a marginal
        # parameterisation's log_likelihood group is the integrated density, not this one)
        y, se = _observed(result), _se(result)
        theta = _theta(result)
        ll = -0.5 * (_LOG_2PI + 2 * np.log(se) + ((y - theta) / se) ** 2)
        return ll.transpose(*SAMPLE_DIMS, "trial").rename(LIKELIHOOD)
    ll = _group(result, "log_likelihood")
    if ll is not None and LIKELIHOOD in ll:
        return ll[LIKELIHOOD]
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
    import arviz_stats as az  # the statistics only: the arviz meta-package also imports arviz_plots

    kind = get_kind(result.spec.kind)
    ll = None
    if by_trial and integrated is not False and _loo_by_trial(result) and hasattr(kind, "trial_log_likelihood"):
        ll = kind.trial_log_likelihood(result.dt, result.spec)  # the trial's baseline integrated out (normal)
        how = "integrated (each trial's contrasts: its baseline integrated out)"
    if ll is None:
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

    n = x.sizes["chain"] * x.sizes["draw"]
    return (_ess(x, SAMPLE_DIMS) / n).clip(max=1.0)


def _is_mcse(w: xr.DataArray, f: xr.DataArray, r_eff: xr.DataArray | float) -> xr.DataArray:
    """MC SE of the self-normalised importance-sampling mean sum_s w_s f_s (module docstring)."""
    e = (w * f).sum(SAMPLE_DIMS)
    return np.sqrt((w**2 * (f - e) ** 2).sum(SAMPLE_DIMS) / r_eff)


def _high_k(elpd, k_threshold: float | None) -> float:
    return float(elpd.good_k if k_threshold is None else k_threshold)


def _loo_by_trial(result) -> bool:
    """The kind sums its likelihood's terms per trial for LOO and PPC (the network kind: arms)."""
    return bool(getattr(get_kind(result.spec.kind), "loo_by_trial", False))


def _n_obs_by_trial(result) -> xr.DataArray:
    cd = _group(result, "constant_data")
    idx = cd["trial_idx"].values.astype(int)
    labels = result.dt["posterior"]["trial"].values
    return xr.DataArray(np.bincount(idx, minlength=len(labels)), dims="trial", coords={"trial": labels})


def loo(result, integrated: bool | None = None, k_threshold: float | None = None,
        by_trial: bool | None = None) -> pd.DataFrame:
    """PSIS-LOO per trial: ``y``, ``elpd_i``, ``mcse_elpd_i``, ``pareto_k``, ``high_k`` and the
    ``advice`` for high-k trials.

    ``by_trial`` (default: the kind's ``loo_by_trial``, True for the network kind): the pointwise
    log-likelihood of a trial is the sum of its observations' terms (arms, contrast rows), so a trial
    is left out whole: one row per trial, ``n_obs`` (its terms) in place of ``y``. A multi-arm trial
    is one unit, and in the arm-based binomial/normal form the trial's baseline belongs to the
    left-out trial (leaving out one arm would keep the baseline informed by the trial's other arms).

    Totals in ``table.attrs``: ``elpd_loo``, ``se`` (its SE over trials), ``p_loo``, ``method``
    ('integrated' or 'conditional'), ``k_threshold``, ``n_high_k``, ``high_k_trials``.
    ``k_threshold=None`` uses ArviZ's ``min(1 - 1/log10(S), 0.7)``. Warns (:class:`ParetoKWarning`)
    when any trial's k exceeds it.
    """
    bt = _loo_by_trial(result) if by_trial is None else bool(by_trial)
    elpd, method = _elpd(result, integrated, by_trial=bt)
    kt = _high_k(elpd, k_threshold)
    ll = elpd.log_likelihood_
    dims = _obs_dims(ll)
    w = np.exp(elpd.log_weights)
    dens = np.exp(ll - ll.max(SAMPLE_DIMS))  # rescaled per trial: the delta-method SE is scale-free
    mean_dens = (w * dens).sum(SAMPLE_DIMS)
    mcse = _is_mcse(w, dens, _r_eff(dens)) / mean_dens
    first = {"n_obs": _n_obs_by_trial(result)} if dims != _obs_dims(_observed(result)) else {"y": _observed(result)}
    ds = xr.Dataset({**first, "elpd_i": elpd.elpd_i, "mcse_elpd_i": mcse, "pareto_k": elpd.pareto_k})
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
    ``dse``, ``p_worse``, ``diag_diff``, ``diag_elpd``, ``p``, ``elpd``, ``se``, ``weight``; by trial
    for kinds whose likelihood is over arms (``loo_by_trial``, as :func:`loo`);
    stacking weights by default, Yao et al. 2018) plus ``model``, ``loo_method`` and ``n_high_k``.
    Raises ValueError when the results were fitted to different data (data hash, outcome, time,
    measure, trial labels or observed values differ). Warns when any trial has a high Pareto k.
    """
    import arviz_stats as az  # the statistics only: the arviz meta-package also imports arviz_plots

    if not isinstance(results, Mapping) or len(results) < 2:
        raise ValueError("compare needs a dict {name: MetaAnalysis} with at least two results")
    _same_data(results)
    elpds, extra = {}, {}
    by_trial = all(_loo_by_trial(r) for r in results.values())  # network kinds: a trial left out whole, as loo()
    for name, res in results.items():
        elpd, how = _elpd(res, integrated, by_trial=by_trial)
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
