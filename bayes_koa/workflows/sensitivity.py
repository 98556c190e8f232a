"""Prior sensitivity: refit under other priors (compile once), flag flipped conclusions, power-scaling.

Three tools, from cheapest to most thorough:

- :func:`power_scaling`: no refit. ArviZ's power-scaling diagnostic (Kallioinen et al. 2024,
  Stat Comput 34:57) perturbs the prior (and the likelihood) by importance sampling the draws of
  the fitted result and says which parameters move: a first look.
- :func:`sensitivity`: refit the fitted model under named prior sets (``models/priors/*.toml``),
  prior sets given as objects, or dicts of prior strings. Each set is applied with
  ``result.spec.with_priors(set)`` (the set's priors win; every other prior stays as fitted).
  Prior parameters are ``pm.Data`` containers (:mod:`bayes_koa.build`), so the model is compiled
  once per prior-family signature (:meth:`bayes_koa.spec.ModelSpec.structure_key`) and only
  re-sampled for other values; every set is sampled with the fitted result's seed and settings, so a
  set's draws equal those of ``bayes_koa.fit`` under the same priors (common random numbers also make
  differences between sets less noisy). The ``random_effects`` model is not sampled at all: its
  posterior is computed by quadrature over tau (:mod:`bayes_koa.exact`) whenever the mu prior is
  Normal (or Flat) - every tau prior has a log density. The ``path`` column says which was used.
- :func:`sensitivity_grid`: one prior's scale swept over values (compile once, swap values), drawn
  as curves.

The result is a tidy table (one row per prior set x quantity) plus :func:`detect_flips`, a pure
function over that table that lists the conclusions that change relative to the reference.

Conventions: effects are MSC - control, negative = benefit (ARCHITECTURE.md), so sources rank
"lower is better"; intervals are 95% equal-tailed; MC SE of a probability p estimated from draws is
``sd(indicator) / sqrt(ESS_mean(indicator))`` (= sqrt(p (1 - p) / ESS)).
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import arviz_stats as az  # the statistics only: the arviz meta-package also imports arviz_plots
import numpy as np
import pandas as pd
import xarray as xr

from ..analysis.ranking import rank_summary
from ..inference.diagnostics import SamplingWarning, diagnose
from ..inference.exact import exact_normal_normal
from ..inference.sampling import cache_size, sample_spec, sampler_settings
from ..kinds import get_kind, prepare
from ..spec.model_spec import ModelSpec
from ..spec.priors import DISTRIBUTIONS, Prior, PriorError, PriorSet, list_prior_sets, load_prior_set, parse_prior
from ..util.draws import mcse_mean

__all__ = [
    "sensitivity",
    "sensitivity_grid",
    "power_scaling",
    "detect_flips",
    "resolve_prior_sets",
    "psis_k_threshold",
    "prior_log_ratio",
    "psis_resample",
    "SensitivityResult",
    "SensitivityGrid",
    "PROB_THRESHOLDS",
    "BEST_THRESHOLDS",
]

REFERENCE = "reference"
# Thresholds at which a probability "flips" (a conclusion of the form P > t changes).
PROB_THRESHOLDS = (0.5, 0.9, 0.95)  # P(mu<0) and claim probabilities
BEST_THRESHOLDS = (0.5, 0.9)  # P(best) of a source
# ArviZ's default threshold on the power-scaling sensitivity (cumulative Jensen-Shannon distance
# per unit log power; Kallioinen et al. 2024 suggest 0.05).
PSENSE_THRESHOLD = 0.05

PATH_FITTED = "fitted result (MCMC)"
PATH_MCMC = "MCMC refit (cached compiled model)"
PATH_EXACT = "exact (quadrature over tau)"
PATH_PSIS = "PSIS reweighting of the fitted draws"
PSIS_MIN_ESS = 400  # importance-sampling ESS below this refits (the 400 of Vehtari et al. 2021 for 4 chains)


def psis_k_threshold(n_draws: int) -> float:
    """Largest Pareto k at which importance reweighting is trusted: min(1 - 1/log10(S), 0.7).

    Vehtari, Simpson, Gelman, Yao & Gabry (2024), "Pareto smoothed importance sampling", JMLR 25(72).
    """
    return float(min(1.0 - 1.0 / math.log10(max(n_draws, 11)), 0.7))

_COLUMNS = ["prior_set", "quantity", "kind", "source", "mean", "q2.5", "q97.5", "value", "mcse",
            "mcse_q2.5", "mcse_q97.5", "label", "path"]


# ---------------------------------------------------------------------------------------------
# which prior sets
# ---------------------------------------------------------------------------------------------
def _set_name(overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} ~ {parse_prior(v)}" for k, v in overrides.items())


def _touches(spec: ModelSpec, priors: Mapping[str, Prior]) -> list[str]:
    from ..spec.model_spec import element_key

    params = spec.parameters
    return [k for k in priors if k in params or (k == "beta" and any(p.startswith("beta_") for p in params))
            or ((el := element_key(k)) is not None and el[0] in params)]  # element priors: d[HA]


def resolve_prior_sets(spec: ModelSpec, prior_sets=None) -> tuple[list[tuple[str, ModelSpec]], pd.DataFrame]:
    """The specs to refit: ``[(name, spec.with_priors(set)), ...]`` and the sets skipped, with reasons.

    ``prior_sets``: None (every named set with a table for ``spec.measure`` that sets at least one
    of the model's parameters), a name, a :class:`~bayes_koa.priors.PriorSet`, a dict of prior
    strings (``{"tau": "HalfNormal(sigma=5)"}``; named after its content), a list of these, or a
    dict ``{name: set}``. A named set without a table for the measure, or one that sets none of the
    model's parameters, is skipped (and listed; a warning says so when it was asked for by name).
    """
    explicit = prior_sets is not None
    if prior_sets is None:
        items: list[tuple[str | None, Any]] = [(None, n) for n in list_prior_sets()]
    elif isinstance(prior_sets, (str, PriorSet)):
        items = [(None, prior_sets)]
    elif isinstance(prior_sets, Mapping):
        if prior_sets and all(isinstance(v, (Mapping, PriorSet, str)) for v in prior_sets.values()) and \
                not all(isinstance(v, str) and "(" in v for v in prior_sets.values()):
            items = [(str(k), v) for k, v in prior_sets.items()]
        else:  # one dict of prior strings
            items = [(None, dict(prior_sets))]
    else:
        items = [(None, p) for p in prior_sets]

    out: list[tuple[str, ModelSpec]] = []
    skipped = []
    seen: set[str] = set()
    for name, item in items:
        if isinstance(item, str):
            item = load_prior_set(item)
        if isinstance(item, PriorSet):
            name = name or item.name
            if spec.measure not in item.priors and "default" not in item.priors:
                skipped.append((name, f"no [priors.{spec.measure}] table (it has "
                                      f"{', '.join(sorted(item.priors)) or 'none'})"))
                continue
            touched = _touches(spec, item.for_measure(spec.measure))
            if not touched:
                skipped.append((name, f"sets none of model {spec.name}'s parameters "
                                      f"({', '.join(spec.parameters)})"))
                continue
            new = spec.with_priors(item)
        elif isinstance(item, Mapping):
            name = name or _set_name(item)
            new = spec.with_priors(dict(item), origin=f"prior set {name}")
        else:
            raise PriorError(f"a prior set must be a name, a PriorSet or a dict of prior strings; got {item!r}")
        if name == REFERENCE:
            raise PriorError(f"{REFERENCE!r} is the fitted result's own priors; give the prior set another name")
        if name in seen:
            raise PriorError(f"prior set {name!r} given twice")
        seen.add(name)
        out.append((name, new))
    skipped_df = pd.DataFrame(skipped, columns=["prior_set", "reason"])
    if explicit and len(skipped_df):
        warnings.warn("prior sets skipped:\n- " + "\n- ".join(f"{n}: {r}" for n, r in skipped), stacklevel=3)
    return out, skipped_df


# ---------------------------------------------------------------------------------------------
# quantities from draws (pure)
# ---------------------------------------------------------------------------------------------
def _row(prior_set: str, quantity: str, kind: str, source: str = "", path: str = "", **vals) -> dict:
    r = {c: np.nan for c in ("mean", "q2.5", "q97.5", "value", "mcse", "mcse_q2.5", "mcse_q97.5")}
    r.update(prior_set=prior_set, quantity=quantity, kind=kind, source=source, label="", path=path)
    r.update(vals)
    return r


def _estimate_rows(name: str, var: str, da: xr.DataArray, path: str) -> list[dict]:
    """Mean, 95% equal-tailed interval and MC SE of the mean, per element of ``da``."""
    sdims = ("chain", "draw")
    extra = [d for d in da.dims if d not in sdims]
    da = da.transpose(*sdims, *extra)
    mean = np.atleast_1d(da.mean(sdims).values).ravel()
    q = da.quantile([0.025, 0.975], dim=sdims)
    lo = np.atleast_1d(q.isel(quantile=0).values).ravel()
    hi = np.atleast_1d(q.isel(quantile=1).values).ravel()
    se = np.atleast_1d(mcse_mean(da, sdims).values).ravel()
    # ArviZ's quantile MCSE (Vehtari et al. 2021, Bayesian Analysis 16:667), for the interval ends
    qse = [np.atleast_1d(np.asarray(az.mcse(da, method="quantile", prob=p), dtype=float)).ravel()
           for p in (0.025, 0.975)]
    if not extra:
        labels = [""]
    else:
        labels = [", ".join(str(da[d].values[i]) for d, i in zip(extra, idx))
                  for idx in np.ndindex(*(da.sizes[d] for d in extra))]
    rows = []
    for i, lab in enumerate(labels):
        rows.append(_row(name, f"{var}[{lab}]" if lab else var, "estimate",
                         source=lab if extra == ["source"] else "", path=path, mean=float(mean[i]),
                         **{"q2.5": float(lo[i]), "q97.5": float(hi[i]), "mcse_q2.5": float(qse[0][i]),
                            "mcse_q97.5": float(qse[1][i])}, mcse=float(se[i])))
    return rows


def ranking_quantities(source_mean: xr.DataArray, name: str = "", path: str = "",
                       dim: str = "source", lower_is_better: bool = True) -> list[dict]:
    """Rows ``P(best)[s]``, ``SUCRA[s]`` (with MC SE) and ``first_ranked``, from
    :func:`bayes_koa.ranking.rank_summary` over ``dim``.

    The first-ranked source is the one with the highest SUCRA (= lowest mean rank); its row's
    ``value`` is that SUCRA.
    """
    rs = rank_summary(source_mean, dim=dim, lower_is_better=lower_is_better)
    labels = [str(v) for v in rs[dim]]
    rows = [_row(name, f"P(best)[{lab}]", "probability", source=lab, path=path,
                 value=float(r.p_best), mcse=float(r.p_best_mcse)) for lab, r in zip(labels, rs.itertuples())]
    rows += [_row(name, f"SUCRA[{lab}]", "score", source=lab, path=path,
                  value=float(r.sucra), mcse=float(r.sucra_mcse)) for lab, r in zip(labels, rs.itertuples())]
    top = int(np.argmax(rs["sucra"].to_numpy(float)))
    rows.append(_row(name, "first_ranked", "label", source=labels[top], path=path, label=labels[top],
                     value=float(rs["sucra"].iloc[top]), mcse=float(rs["sucra_mcse"].iloc[top])))
    return rows


def posterior_quantities(post: xr.Dataset | xr.DataTree, name: str, path: str, spec: ModelSpec,
                         lower_is_better: bool = True) -> list[dict]:
    """Rows of the tidy table from posterior draws: the quantities the kind's sweep tracks
    (:meth:`~bayes_koa.kinds.Kind.sweep_vars`), P(benefit) of the overall effect (labelled
    ``P(mu<0)``: the probability of benefit in the fit's direction) and the ranking of the groups."""
    if isinstance(post, xr.DataTree):
        post = post.to_dataset()
    roles = get_kind(spec.kind).roles(spec)
    rows: list[dict] = []
    tracked = get_kind(spec.kind).sweep_vars(spec)
    tracked += [p for p in spec.parameters if p.startswith("beta_") and p not in tracked]
    for var in tracked:
        if var in post.data_vars and var != roles.group:
            rows += _estimate_rows(name, var, post[var], path)
    if roles.group and roles.group in post.data_vars:
        rows += _estimate_rows(name, roles.group, post[roles.group], path)
    if roles.overall and roles.overall in post.data_vars:
        ov = post[roles.overall]
        ind = ((ov < 0) if lower_is_better else (ov > 0)).astype(float)
        rows.append(_row(name, "P(mu<0)", "probability", path=path, value=float(ind.mean()),
                         mcse=float(mcse_mean(ind, ("chain", "draw")))))
    if roles.group and roles.group in post.data_vars and post.sizes.get(roles.group_dim, 0) > 1:
        rows += ranking_quantities(post[roles.group], name, path, dim=roles.group_dim, lower_is_better=lower_is_better)
    return rows


# ---------------------------------------------------------------------------------------------
# claims (bayes_koa.claims, when it offers a function over a result)
# ---------------------------------------------------------------------------------------------
def _claims_function():
    """Claims come from the result object's own ``claims()`` (the application layer decides what they are)."""
    return (lambda r, diagnostics=None: r.claims(diagnostics=diagnostics)), "claims from result.claims()"


def _claim_rows(fn, result, name: str, path: str, diagnostics=None) -> list[dict]:
    """Rows ``claim: <text>`` with the probability and MC SE; claims not estimable for this model
    (probability NaN) are left out (the table's ``attrs["claims"]`` says claims come from there)."""
    df = fn(result) if diagnostics is None else fn(result, diagnostics)
    if df is None or len(df) == 0:
        return []
    df = df.reset_index() if "claim" not in df.columns else df
    label_col = next((c for c in ("claim", "name", "statement", "index") if c in df.columns), df.columns[0])
    prob_col = next((c for c in ("probability", "P", "prob", "posterior_probability", "value")
                     if c in df.columns), None)
    if prob_col is None:
        return []
    se_col = next((c for c in ("mc_se", "mcse", "MCSE") if c in df.columns), None)
    rows = []
    for _, r in df.iterrows():
        p = float(r[prob_col])
        if not np.isfinite(p):
            continue
        rows.append(_row(name, f"claim: {r[label_col]}", "claim", path=path, value=p,
                         mcse=float(r[se_col]) if se_col else np.nan))
    return rows


# ---------------------------------------------------------------------------------------------
# exact path (random_effects)
# ---------------------------------------------------------------------------------------------
def exact_possible(spec: ModelSpec) -> tuple[bool, str]:
    """Can ``spec`` be computed by :func:`bayes_koa.exact.exact_normal_normal`? And why not."""
    if spec.kind != "random":
        return False, f"model kind {spec.kind!r} (the exact path is for the normal-normal random-effects model)"
    if spec.get("moderators", ()):
        return False, "the model has moderators"
    pr = spec.prior_dict
    if pr["mu"].dist not in ("Normal", "Flat"):
        return False, f"mu prior {pr['mu']} is not Normal or Flat"
    if not callable(getattr(pr["tau"], "logp", None)):
        return False, f"tau prior {pr['tau']} has no log density"
    return True, ""


def exact_quantities(spec: ModelSpec, design, name: str) -> list[dict]:
    """Rows for the normal-normal model by quadrature: mu, tau (mean, 95% interval), P(mu<0)."""
    pr = spec.prior_dict
    m = pr["mu"].kwargs
    mu_prior = (m["mu"], m["sigma"]) if pr["mu"].dist == "Normal" else (0.0, math.inf)
    post = exact_normal_normal(design.y, design.se, mu_prior=mu_prior, tau_prior=pr["tau"],
                               labels=design.trial, quantiles=(0.025, 0.975))
    return [
        _row(name, "mu", "estimate", path=PATH_EXACT, mean=post.mu.mean, mcse=0.0,
             **{"q2.5": post.mu_quantiles[0.025], "q97.5": post.mu_quantiles[0.975]}),
        _row(name, "tau", "estimate", path=PATH_EXACT, mean=post.tau_mean, mcse=0.0,
             **{"q2.5": post.tau_quantiles[0.025], "q97.5": post.tau_quantiles[0.975]}),
        _row(name, "P(mu<0)", "probability", path=PATH_EXACT, value=float(post.mu.cdf(0.0)), mcse=0.0),
    ]


# ---------------------------------------------------------------------------------------------
# PSIS path (any kind): reweight the fitted draws by the prior ratio; refit where Pareto k is high
# ---------------------------------------------------------------------------------------------
def prior_log_ratio(post: xr.Dataset, old: ModelSpec, new: ModelSpec) -> xr.DataArray | None:
    """log p_new(theta) - log p_old(theta) per draw, summed over the parameters whose prior changed.

    Both densities are of the same variable (``Prior.logp`` on its own scale), so the ratio is the
    importance weight of a fitted draw under the new priors. None when a changed parameter has no
    draws in ``post`` (then the set is refitted)."""
    new_pr, old_pr = new.prior_dict, old.prior_dict
    total = xr.zeros_like(post[next(iter(post.data_vars))].isel(
        {d: 0 for d in post[next(iter(post.data_vars))].dims if d not in ("chain", "draw")}), dtype=float)
    for p, pr in new_pr.items():
        if p in old_pr and str(old_pr[p]) == str(pr):
            continue
        if p not in old_pr or p not in post.data_vars:
            return None
        x = post[p]
        with np.errstate(divide="ignore", invalid="ignore"):
            lr = xr.apply_ufunc(lambda v: pr.logp(v) - old_pr[p].logp(v), x)
        extra = [d for d in lr.dims if d not in ("chain", "draw")]
        total = total + (lr.sum(extra) if extra else lr)
    return total.drop_vars([c for c in total.coords if c not in ("chain", "draw")])


def psis_resample(post: xr.Dataset, log_ratio: xr.DataArray, seed: int):
    """Pareto-smoothed weights of ``log_ratio`` (k-hat over all draws), then systematic resampling within each chain.

    Returns ``(resampled posterior of the same shape, k-hat, importance ESS)``. Resampling within each chain
    keeps the chains (R-hat, ESS and MC SEs of the resampled draws then reflect both the autocorrelation and
    the repeated draws); systematic resampling adds the least resampling noise."""
    lr = log_ratio.transpose("chain", "draw")
    # psislw negates its input (it expects a log-likelihood, as in LOO): pass -log_ratio (stack-notes)
    lw, k = (-lr).azstats.psislw(dim=["chain", "draw"])
    lw = np.asarray(lw.transpose("chain", "draw").values, dtype=float)
    w_all = np.exp(lw - lw.max())
    w_all /= w_all.sum()
    ess_is = float(1.0 / np.sum(w_all ** 2))
    rng = np.random.default_rng(seed)
    n_chain, n_draw = lw.shape
    idx = np.empty((n_chain, n_draw), dtype=int)
    for c in range(n_chain):
        w = np.exp(lw[c] - lw[c].max())
        cum = np.cumsum(w / w.sum())
        cum[-1] = 1.0
        u = (rng.random() + np.arange(n_draw)) / n_draw
        idx[c] = np.searchsorted(cum, u)
    chain_ix = xr.DataArray(np.repeat(np.arange(n_chain)[:, None], n_draw, 1), dims=("chain", "draw"))
    draw_ix = xr.DataArray(idx, dims=("chain", "draw"))
    out = post.isel(chain=chain_ix, draw=draw_ix)
    out = out.assign_coords(chain=post["chain"].values, draw=post["draw"].values)
    return out, float(np.asarray(k).max()), ess_is


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------
def _settings(result) -> dict:
    return sampler_settings(result)


def _as_result(result, spec: ModelSpec, design, dt: xr.DataTree, settings: dict):
    """Wrap the draws of a refit as a result of the same type (for claims): data groups and attrs as fitted.

    A prior sweep keeps the data, so the fitted result's observed and constant data groups are reused
    as they are (whatever the kind's data look like)."""
    get_kind(spec.kind).add_predictions(dt, spec, settings["seed"])
    for group in ("constant_data", "observed_data"):
        if group in result.dt.children:
            dt[group] = result.dt[group].copy()
    # the fitted result's provenance, except what the refit recorded of itself (its fit-cache record,
    # adaptive-refit record, log-likelihood form) and its own creation time
    for k, v in result.dt.attrs.items():
        dt.attrs.setdefault(k, v)
    dt.attrs["bayes_koa_created"] = pd.Timestamp.now(tz="UTC").isoformat()
    dt.attrs["bayes_koa_priors"] = json.dumps({p: {"prior": str(pr), "from": pr.origin} for p, pr in spec.priors})
    dt.attrs["bayes_koa_sampler_settings"] = json.dumps({k: settings[k] for k in ("draws", "tune", "chains",
                                                                                   "target_accept")})
    dt.attrs["bayes_koa_seed"] = settings["seed"]
    return type(result)(dt=dt, spec=spec, effects=design.rows, excluded=result.excluded)


def _role_attrs(spec: ModelSpec) -> dict:
    """Which quantities of the table are the overall effect, the SDs and the group means (the kind's roles)."""
    r = get_kind(spec.kind).roles(spec)
    return {"overall": r.overall or "", "scales": [r.overall, *r.heterogeneity, *r.between_group],
            "group": r.group or ""}


def _priors_rows(name: str, spec: ModelSpec) -> list[tuple]:
    return [(name, p, str(pr), pr.origin) for p, pr in spec.priors]


def _diag_row(dt: xr.DataTree, spec: ModelSpec | None = None) -> dict:
    """Divergences, R-hat and ESS of the quantities the table reports (not of every trial effect)."""
    post = dt["posterior"]
    names = None if spec is None else [v for v in [*get_kind(spec.kind).sweep_vars(spec),
                                                     *[p for p in spec.parameters if p.startswith("beta_")]]
                                       if v in post.data_vars]
    d = diagnose(dt, var_names=names)
    return {"divergences": d.attrs["divergences"], "max_r_hat": float(d["r_hat"].max()),
            "min_ess_bulk": float(d["ess_bulk"].min()), "problems": " | ".join(d.attrs["problems"])}


def sensitivity(result, prior_sets=None, *, draws: int | None = None, tune: int | None = None,
                chains: int | None = None, seed: int | None = None, include_reference: bool = True,
                method: str = "auto") -> "SensitivityResult":
    """Refit ``result``'s model under each prior set; return a :class:`SensitivityResult`.

    ``prior_sets``: see :func:`resolve_prior_sets` (None = every named set with a table for the
    result's measure that touches the model). ``draws``/``tune``/``chains``/``seed`` default to the
    fitted result's, so a set's draws equal ``bayes_koa.fit`` under the same priors. ``method``:
    "auto" (exact quadrature for ``random_effects`` when possible, else MCMC), "mcmc" or "exact".
    The fitted result itself is the prior set "reference" (computed by the same path as the others:
    its own draws for MCMC, quadrature under its own priors for the exact path).
    """
    if method not in ("auto", "mcmc", "exact", "psis"):
        raise ValueError(f"method must be 'auto', 'psis', 'mcmc' or 'exact', got {method!r}")
    t_start = time.perf_counter()
    st = _settings(result)
    for k, v in (("draws", draws), ("tune", tune), ("chains", chains), ("seed", seed)):
        if v is not None:
            st[k] = int(v)
    specs, skipped = resolve_prior_sets(result.spec, prior_sets)
    fitted = sampler_settings(result)
    # reweighting stands in for a refit only at the fitted result's own settings
    same_draws = all(st[k] == fitted[k] for k in ("draws", "tune", "chains", "seed"))
    if include_reference:
        specs = [(REFERENCE, result.spec)] + specs
    claims_fn, claims_note = _claims_function()

    rows: list[dict] = []
    prior_rows: list[tuple] = []
    runs: list[dict] = []
    posteriors: dict[str, xr.Dataset] = {}
    compiled = 0
    for name, spec in specs:
        t0 = time.perf_counter()
        prior_rows += _priors_rows(name, spec)
        ok, why = exact_possible(spec)
        if method == "exact" and not ok:
            raise ValueError(f"prior set {name}: the exact path cannot be used: {why}")
        use_exact = ok and method in ("auto", "exact", "psis")
        run = {"prior_set": name, "compiled": False, "divergences": np.nan, "max_r_hat": np.nan,
               "min_ess_bulk": np.nan, "problems": "", "pareto_k": np.nan, "ess_is": np.nan}
        resampled = None
        if not use_exact and name != REFERENCE and method == "psis" and same_draws:
            ref_post = result.dt["posterior"].to_dataset()
            log_ratio = prior_log_ratio(ref_post, result.spec, spec)
            if log_ratio is not None:
                resampled, k, ess_is = psis_resample(ref_post, log_ratio, st["seed"])
                run.update(pareto_k=k, ess_is=ess_is)
                if not k <= psis_k_threshold(ref_post.sizes["chain"] * ref_post.sizes["draw"]) \
                        or ess_is < PSIS_MIN_ESS:
                    resampled = None  # the new posterior is too far from the fitted one: refit
        if use_exact:
            design, _ = prepare(spec, result.effects, **result.selection)
            rows += exact_quantities(spec, design, name)
            run["path"] = PATH_EXACT
            if claims_fn is not None and "exact path" not in claims_note:
                claims_note += " (not computed on the exact path: no draws)"
        elif name == REFERENCE:
            path = PATH_FITTED
            post = result.dt["posterior"].to_dataset()
            rows += posterior_quantities(post, name, path, spec, result.lower_is_better)
            if claims_fn is not None:
                rows += _claim_rows(claims_fn, result, name, path)
            posteriors[name] = post
            run.update(path=path, **_diag_row(result.dt, spec))
        elif resampled is not None:
            path = PATH_PSIS
            dt = xr.DataTree.from_dict({"posterior": resampled, "sample_stats": result.dt["sample_stats"].to_dataset()})
            post = resampled
            rows += posterior_quantities(post, name, path, spec, result.lower_is_better)
            # R-hat / ESS of resampled draws (repeats) mean nothing: the health is the fitted draws' plus
            # Pareto k and the importance-sampling ESS (both checked above)
            run.update(path=path, **_diag_row(result.dt, spec))
            if claims_fn is not None:  # reweighted draws of the fitted result: its sampler diagnostics
                design, _ = prepare(spec, result.effects, **result.selection)
                rows += _claim_rows(claims_fn, _as_result(result, spec, design, dt, st), name, path,
                                    diagnostics=result.diagnostics() if hasattr(result, "diagnostics") else None)
            posteriors[name] = post
        else:
            design, _ = prepare(spec, result.effects, **result.selection)
            n_cache = cache_size()
            dt = sample_spec(spec, design, adapt=True, seed=st["seed"], draws=st["draws"], tune=st["tune"],
                                     chains=st["chains"], sampler=st["sampler"],
                                     target_accept=st["target_accept"], extra_groups=False)
            run["compiled"] = cache_size() > n_cache
            compiled += int(run["compiled"])
            path = PATH_MCMC
            post = dt["posterior"].to_dataset()
            rows += posterior_quantities(post, name, path, spec, result.lower_is_better)
            run.update(path=path, **_diag_row(dt, spec))
            if claims_fn is not None:
                rows += _claim_rows(claims_fn, _as_result(result, spec, design, dt, st), name, path)
            posteriors[name] = post
        run["seconds"] = time.perf_counter() - t0
        runs.append(run)

    table = pd.DataFrame(rows).reindex(columns=_COLUMNS)
    runs_df = pd.DataFrame(runs).reindex(columns=["prior_set", "path", "seconds", "compiled", "divergences",
                                                  "max_r_hat", "min_ess_bulk", "pareto_k", "ess_is", "problems"])
    bad = runs_df[runs_df["problems"].fillna("") != ""]
    if len(bad):
        warnings.warn("sampling problems under prior sets " + ", ".join(bad["prior_set"]) +
                      " (see .runs): their rows are less reliable", SamplingWarning, stacklevel=2)
    table.attrs.update({
        "model": result.spec.name, "measure": result.spec.measure, "simulated": bool(result.simulated),
        "seed": st["seed"], "draws": st["draws"], "tune": st["tune"], "chains": st["chains"],
        "claims": claims_note, "compiled_models": compiled,
        **_role_attrs(result.spec),
        "skipped": "; ".join(f"{r.prior_set}: {r.reason}" for r in skipped.itertuples()) or "none",
        "seconds": time.perf_counter() - t_start,
    })
    priors = pd.DataFrame(prior_rows, columns=["prior_set", "parameter", "prior", "from"])
    return SensitivityResult(table=table, priors=priors, runs=runs_df, skipped=skipped,
                             posteriors=posteriors, simulated=bool(result.simulated),
                             model=result.spec.name, measure=result.spec.measure,
                             reference=REFERENCE if include_reference else None)


# ---------------------------------------------------------------------------------------------
# flips (pure)
# ---------------------------------------------------------------------------------------------
def _above(v: float, t: float) -> bool:
    return v > t


def _interval_text(lo: float, hi: float) -> str:
    return f"[{lo:.3g}, {hi:.3g}]"


def detect_flips(table: pd.DataFrame, reference: str = REFERENCE,
                 prob_thresholds: Sequence[float] = PROB_THRESHOLDS,
                 best_thresholds: Sequence[float] = BEST_THRESHOLDS, mc_sigmas: float = 2.0) -> pd.DataFrame:
    """Conclusions that change between the reference prior set and each other set.

    Flags, for every prior set other than ``reference``:

    - ``first_ranked``: the first-ranked source differs from the reference's;
    - ``P(best)[s]`` crosses one of ``best_thresholds`` (0.5, 0.9);
    - ``P(mu<0)`` or a claim probability (``kind == "claim"``) crosses one of ``prob_thresholds``
      (0.5, 0.9, 0.95);
    - ``mu``: its 95% interval starts or stops excluding 0.

    A probability is "above" t when it is > t. A crossing is flagged once per threshold crossed.
    ``within_mc_error`` is True when the reference's or the set's value lies within ``mc_sigmas``
    MC SEs of the threshold (the crossing may be Monte Carlo noise: run more draws).
    Returns columns prior_set, quantity, reference_value, value, threshold, what, within_mc_error.
    """
    cols = ["prior_set", "quantity", "reference_value", "value", "threshold", "what", "within_mc_error"]
    if reference not in set(table["prior_set"]):
        raise ValueError(f"prior set {reference!r} is not in the table (its sets: "
                         f"{', '.join(dict.fromkeys(table['prior_set']))})")
    ref = table[table["prior_set"] == reference].set_index("quantity")
    out = []
    for ps in dict.fromkeys(table["prior_set"]):
        if ps == reference:
            continue
        cur = table[table["prior_set"] == ps].set_index("quantity")
        for q in ref.index.intersection(cur.index):
            r, c = ref.loc[q], cur.loc[q]
            if q == "first_ranked":
                if str(r["label"]) != str(c["label"]):
                    out.append((ps, q, r["label"], c["label"], np.nan,
                                f"first-ranked source changes from {r['label']} to {c['label']}", False))
                continue
            if q == "mu":
                ex_r = r["q97.5"] < 0 or r["q2.5"] > 0
                ex_c = c["q97.5"] < 0 or c["q2.5"] > 0
                if ex_r != ex_c:
                    what = ("95% interval of mu stops excluding 0" if ex_r else "95% interval of mu starts excluding 0")
                    noisy = _bound_near_zero(r, mc_sigmas) or _bound_near_zero(c, mc_sigmas)
                    out.append((ps, q, _interval_text(r["q2.5"], r["q97.5"]), _interval_text(c["q2.5"], c["q97.5"]),
                                0.0, what, noisy))
                continue
            if q.startswith("P(best)["):
                thresholds = best_thresholds
            elif q == "P(mu<0)" or r["kind"] == "claim":
                thresholds = prob_thresholds
            else:
                continue
            vr, vc = float(r["value"]), float(c["value"])
            if not (np.isfinite(vr) and np.isfinite(vc)):
                continue
            se_r, se_c = float(r["mcse"]), float(c["mcse"])
            for t in thresholds:
                if _above(vr, t) != _above(vc, t):
                    verb = "falls to or below" if _above(vr, t) else "rises above"
                    # an unknown MC SE (NaN: ESS could not be estimated) counts as noisy, never as certain
                    noisy = (not (np.isfinite(se_r) and np.isfinite(se_c))
                             or abs(vr - t) <= mc_sigmas * se_r or abs(vc - t) <= mc_sigmas * se_c)
                    out.append((ps, q, vr, vc, t, f"{q} {verb} {t:g} ({vr:.3f} -> {vc:.3f})", bool(noisy)))
    return pd.DataFrame(out, columns=cols)


def _bound_near_zero(row, mc_sigmas: float) -> bool:
    """Is an end of the 95% interval of mu within ``mc_sigmas`` of its own quantile MCSE (ArviZ) of 0?

    Exact-path rows have MCSE 0; an unknown MCSE (NaN) counts as near, never as certain."""
    for q, se in (("q2.5", row.get("mcse_q2.5", np.nan)), ("q97.5", row.get("mcse_q97.5", np.nan))):
        se = float(se) if row["path"] != PATH_EXACT else 0.0
        if not np.isfinite(se) or abs(float(row[q])) <= mc_sigmas * se:
            return True
    return False


def _band(q: str, v: float, thresholds: Sequence[float]) -> str:
    t = sorted(thresholds)
    if v <= t[0]:
        return f"{q} <= {t[0]:g}"
    if v > t[-1]:
        return f"{q} > {t[-1]:g}"
    i = max(k for k in range(len(t)) if v > t[k])
    return f"{t[i]:g} < {q} <= {t[i + 1]:g}"


def conclusions(table: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """The reference's conclusions (one per quantity the flip detector checks) and where they flip."""
    ref = table[table["prior_set"] == reference]
    flips = detect_flips(table, reference)
    rows = []
    for _, r in ref.iterrows():
        q = r["quantity"]
        if q == "first_ranked":
            text = f"{r['label']} is the first-ranked source"
        elif q == "mu":
            ex = r["q97.5"] < 0 or r["q2.5"] > 0
            text = f"the 95% interval of mu {'excludes' if ex else 'includes'} 0 " \
                   f"{_interval_text(r['q2.5'], r['q97.5'])}"
        elif q.startswith("P(best)["):
            text = _band(q, r["value"], BEST_THRESHOLDS)
        elif q == "P(mu<0)" or r["kind"] == "claim":
            text = _band(q, r["value"], PROB_THRESHOLDS)
        else:
            continue
        f = flips[flips["quantity"] == q]
        under = list(dict.fromkeys(f["prior_set"]))
        rows.append({"quantity": q, "conclusion": text, "holds": not under, "flips_under": ", ".join(under)})
    return pd.DataFrame(rows, columns=["quantity", "conclusion", "holds", "flips_under"])


# ---------------------------------------------------------------------------------------------
# result objects
# ---------------------------------------------------------------------------------------------
@dataclass
class SensitivityResult:
    """The sweep: ``table`` (tidy), ``priors`` (resolved priors of every set), ``runs`` (path, time,
    diagnostics per set), ``skipped`` (sets left out, with reasons), ``posteriors`` (draws per set)."""

    table: pd.DataFrame
    priors: pd.DataFrame
    runs: pd.DataFrame
    skipped: pd.DataFrame
    posteriors: dict[str, xr.Dataset] = field(default_factory=dict, repr=False)
    simulated: bool = False
    model: str = ""
    measure: str = ""
    reference: str | None = REFERENCE

    @property
    def prior_sets(self) -> list[str]:
        return list(dict.fromkeys(self.table["prior_set"]))

    def _need_reference(self) -> str:
        if self.reference is None:
            raise ValueError("no reference prior set in this sweep (include_reference=False)")
        return self.reference

    def flips(self, **kwargs) -> pd.DataFrame:
        """See :func:`detect_flips`."""
        return detect_flips(self.table, self._need_reference(), **kwargs)

    def conclusions(self) -> pd.DataFrame:
        return conclusions(self.table, self._need_reference())

    def wide(self, quantities: Sequence[str] | None = None) -> pd.DataFrame:
        """Compact view: quantity x prior set; estimates as 'mean [q2.5, q97.5]', probabilities as values."""
        t = self.table
        if quantities is not None:
            t = t[t["quantity"].isin(quantities)]

        def cell(r):
            if r["kind"] == "estimate":
                return f"{r['mean']:.3g} [{r['q2.5']:.3g}, {r['q97.5']:.3g}]"
            if r["kind"] == "label":
                return str(r["label"])
            return f"{r['value']:.3f}"

        t = t.assign(cell=t.apply(cell, axis=1))
        out = t.pivot(index="quantity", columns="prior_set", values="cell")
        return out.reindex(index=list(dict.fromkeys(t["quantity"])), columns=self.prior_sets)

    def summary_text(self) -> str:
        """Which of the reference's conclusions hold under every prior set, and which flip."""
        c = self.conclusions()
        lines = ["SIMULATED DATA: not trial results."] if self.simulated else []
        lines.append(f"Prior sensitivity of model {self.model} ({self.measure}); prior sets: "
                     + ", ".join(self.prior_sets))
        held = c[c["holds"]]["conclusion"].tolist()
        lines.append("Conclusions that hold under every prior set: " + ("; ".join(held) if held else "none") + ".")
        flips = self.flips()
        flipped = []
        for _, r in c[~c["holds"]].iterrows():
            f = flips[flips["quantity"] == r["quantity"]]
            detail = "; ".join(f"{ps}: {v if isinstance(v, str) else f'{v:.3f}'}"
                               for ps, v in dict(zip(f["prior_set"], f["value"])).items())
            noisy = " (within MC error for some)" if f["within_mc_error"].any() else ""
            flipped.append(f"{r['conclusion']} -> flips under {detail}{noisy}")
        lines.append("Conclusions that flip: " + ("; ".join(flipped) if flipped else "none") + ".")
        return "\n".join(lines)

    def plot(self, save=None):
        """Forest-style figure: mu and SDs, source means, and probabilities per prior set."""
        return _plot_sweep(self, save)


@dataclass
class SensitivityGrid(SensitivityResult):
    """:func:`sensitivity_grid`: the table has ``grid_value``; :meth:`plot` draws curves."""

    parameter: str = ""
    family: str = ""
    arg: str = ""
    reference_value: float = float("nan")

    def plot(self, save=None):
        return _plot_grid(self, save)


# ---------------------------------------------------------------------------------------------
# grid mode
# ---------------------------------------------------------------------------------------------
def sensitivity_grid(result, parameter: str = "tau", family: str = "HalfNormal", arg: str = "sigma",
                     values: Sequence[float] | None = None, *, fixed: Mapping[str, float] | None = None,
                     include_reference: bool = True, **kwargs) -> SensitivityGrid:
    """Refit with ``parameter ~ family(arg=value, **fixed)`` for each value (compile once, swap values).

    Other parameters of ``family`` come from ``fixed`` or, if the fitted prior of ``parameter`` is of
    the same family, from it. ``values`` default to the fitted value times 0.1, 0.25, 0.5, 1, 2, 4, 10
    (when the fitted prior is of ``family``). ``kwargs`` go to :func:`sensitivity`.
    """
    spec = result.spec
    if parameter not in spec.parameters:
        raise PriorError(f"model {spec.name} has no parameter {parameter!r}; its parameters: {', '.join(spec.parameters)}")
    if family not in DISTRIBUTIONS:
        raise PriorError(f"unknown family {family!r}; known: {', '.join(sorted(DISTRIBUTIONS))}")
    if arg not in DISTRIBUTIONS[family].params:
        raise PriorError(f"{family} has parameters {', '.join(DISTRIBUTIONS[family].params)}, not {arg!r}")
    current = spec.prior_dict[parameter]
    base = dict(current.kwargs) if current.dist == family else {}
    base.update(fixed or {})
    ref_value = base.get(arg, float("nan")) if current.dist == family else float("nan")
    if values is None:
        if not np.isfinite(ref_value):
            raise PriorError(f"the fitted prior of {parameter} is {current}, not {family}: give values=[...]")
        values = [ref_value * f for f in (0.1, 0.25, 0.5, 1, 2, 4, 10)]
    sets: dict[str, dict[str, str]] = {}
    value_of: dict[str, float] = {}
    for v in values:
        kw = {**base, arg: float(v)}
        missing = [p for p in DISTRIBUTIONS[family].params if p not in kw]
        if missing:
            raise PriorError(f"{family} needs {', '.join(missing)}: pass fixed={{{missing[0]!r}: ...}}")
        prior = parse_prior(f"{family}(" + ", ".join(f"{p}={kw[p]!r}" for p in DISTRIBUTIONS[family].params) + ")")
        shown = ", ".join(f"{p}={kw[p]:g}" for p in DISTRIBUTIONS[family].params)
        name = f"{parameter} ~ {family}({shown})"
        sets[name] = {parameter: str(prior)}
        value_of[name] = float(v)
    res = sensitivity(result, sets, include_reference=include_reference, **kwargs)
    table = res.table.copy()
    table.insert(1, "grid_value", table["prior_set"].map(value_of))
    table.attrs.update(res.table.attrs, grid=f"{parameter} ~ {family}({arg}=...)")
    return SensitivityGrid(table=table, priors=res.priors, runs=res.runs, skipped=res.skipped,
                           posteriors=res.posteriors, simulated=res.simulated, model=res.model,
                           measure=res.measure, reference=res.reference, parameter=parameter,
                           family=family, arg=arg, reference_value=ref_value)


# ---------------------------------------------------------------------------------------------
# power-scaling (no refit)
# ---------------------------------------------------------------------------------------------
def prior_variables(spec: ModelSpec) -> list[str]:
    """Names in the log_prior group of the model's priors (``log_<p>`` for a LogStudentT prior)."""
    return [f"log_{p}" if pr.dist == "LogStudentT" else p for p, pr in spec.priors]


def power_scaling(result, var_names: Sequence[str] | None = None, *, threshold: float = PSENSE_THRESHOLD,
                  prior_var_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Prior and likelihood power-scaling sensitivity per parameter, without refitting.

    Wraps ``arviz.psense_summary`` (Kallioinen et al. 2024, Stat Comput 34:57). Needs the
    ``log_prior`` and ``log_likelihood`` groups that :func:`bayes_koa.fit` stores. Only the model's
    priors (mu, tau, sigma_source, ...; :func:`prior_variables`) are power-scaled, not the
    standard-normal ``z`` of the non-centred random effects: those belong to the hierarchical
    model itself, and scaling them would measure sensitivity to the random-effects distribution.
    ``threshold``: ArviZ's default 0.05 (sensitivity above it is flagged). Columns: ``prior``,
    ``likelihood`` (sensitivities), ``diagnosis`` (ArviZ's text: "potential prior-data conflict",
    "potential strong prior / weak likelihood" or "✓") and ``flagged`` (diagnosis is not "✓").
    """
    import arviz_stats as az  # the statistics only: the arviz meta-package also imports arviz_plots

    if hasattr(result, "require"):  # a fit computes these groups when first asked for
        result.require("log_prior", "log_likelihood")
    dt = result.dt
    missing = [g for g in ("log_prior", "log_likelihood") if g not in dt.children]
    if missing:
        raise ValueError(f"power-scaling needs the {' and '.join(missing)} group(s) that bayes_koa.fit stores; "
                         "this result has none (refit with bayes_koa.fit)")
    post = dt["posterior"]
    if var_names is None:
        var_names = [v for v in [*get_kind(result.spec.kind).sweep_vars(result.spec),
                                 *[p for p in result.spec.parameters if p.startswith("beta_")]] if v in post.data_vars]
    if prior_var_names is None:
        prior_var_names = [v for v in prior_variables(result.spec) if v in dt["log_prior"].data_vars]
    logger = logging.getLogger("arviz_stats.psense")
    old = logger.level
    logger.setLevel(logging.ERROR)  # ArviZ logs a pointer to its docs when something is flagged
    try:
        df = az.psense_summary(dt, var_names=list(var_names), prior_var_names=list(prior_var_names),
                               threshold=threshold)
    finally:
        logger.setLevel(old)
    df = df.copy()
    df.index.name = "parameter"
    df["flagged"] = df["diagnosis"] != "✓"
    df.attrs.update(threshold=threshold, prior_var_names=list(prior_var_names),
                    method="arviz.psense_summary (power-scaling, alphas 0.99 and 1.01)")
    return df


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------
def _title(res: SensitivityResult, text: str) -> str:
    return f"SIMULATED DATA: {text}" if res.simulated else text


def _finish(fig, save):
    if save is not None:
        from pathlib import Path

        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    return fig


def _plot_sweep(res: SensitivityResult, save=None):
    import matplotlib.pyplot as plt

    t = res.table
    sets = res.prior_sets
    y = {s: i for i, s in enumerate(sets)}
    flipped = set(res.flips()["prior_set"]) if res.reference else set()
    sources = [s for s in dict.fromkeys(t.loc[t["quantity"].str.startswith(res.table.attrs.get("group", "") + "["), "source"])]
    panels = ["scales"] + (["sources"] if sources else []) + ["probabilities"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 0.45 * len(sets) + 2.2),
                             layout="constrained", sharey=True, squeeze=False)
    axes = axes[0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def errbar(ax, rows, offset, color, label):
        yy = np.array([y[s] for s in rows["prior_set"]]) + offset
        ax.errorbar(rows["mean"], yy, xerr=[rows["mean"] - rows["q2.5"], rows["q97.5"] - rows["mean"]],
                    fmt="o", ms=4, color=color, label=label, capsize=2)

    ax = axes[0]
    scales = [q for q in t.attrs.get("scales", res.table.attrs.get("scales", [])) if q and q in set(t["quantity"])]
    for i, q in enumerate(scales):
        errbar(ax, t[t["quantity"] == q], (i - (len(scales) - 1) / 2) * 0.18, colors[i % len(colors)], q)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"{res.measure} (mu: negative = favours MSC)")
    ax.set_title("mean and 95% interval")
    ax.legend(fontsize=8)
    k = 1
    if sources:
        ax = axes[k]
        k += 1
        for i, s in enumerate(sources):
            errbar(ax, t[t["quantity"] == f"{res.table.attrs.get('group', '')}[{s}]"], (i - (len(sources) - 1) / 2) * 0.12,
                   colors[i % len(colors)], s)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel(f"source mean, {res.measure} (negative = favours MSC)")
        ax.set_title("source means")
        ax.legend(fontsize=8)
    ax = axes[k]
    pm_rows = t[t["quantity"] == "P(mu<0)"]
    ax.plot(pm_rows["value"], [y[s] for s in pm_rows["prior_set"]], "kD", ms=6, label="P(mu<0)")
    for i, s in enumerate(sources):
        r = t[t["quantity"] == f"P(best)[{s}]"]
        ax.plot(r["value"], np.array([y[p] for p in r["prior_set"]]) + (i - (len(sources) - 1) / 2) * 0.12,
                "o", ms=4, color=colors[i % len(colors)], label=f"P(best) {s}")
    for th in sorted(set(PROB_THRESHOLDS) | set(BEST_THRESHOLDS)):
        ax.axvline(th, color="grey", lw=0.6, ls="--")
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("posterior probability")
    ax.set_title("probabilities (dashed: flip thresholds)")
    ax.legend(fontsize=7)
    axes[0].set_yticks(range(len(sets)))
    axes[0].set_yticklabels(sets)
    for lab in axes[0].get_yticklabels():
        if lab.get_text() in flipped:
            lab.set_color("tab:red")
    axes[0].invert_yaxis()
    fig.suptitle(_title(res, f"prior sensitivity, model {res.model} ({res.measure}); red: a conclusion flips"))
    return _finish(fig, save)


def _plot_grid(res: SensitivityGrid, save=None):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    t = res.table[res.table["grid_value"].notna()].sort_values("grid_value")
    sources = [s for s in dict.fromkeys(t.loc[t["quantity"].str.startswith(res.table.attrs.get("group", "") + "["), "source"])]
    ov = res.table.attrs.get("overall", "mu")
    sds = [q for q in res.table.attrs.get("scales", [])[1:] if q in set(t["quantity"])]
    panels = [(ov, [ov]), ("between-trial / between-group SDs", sds)]
    if sources:
        panels += [("source means", [f"{res.table.attrs.get('group', '')}[{s}]" for s in sources]),
                   ("P(best)", [f"P(best)[{s}]" for s in sources])]
    else:
        panels += [("P(mu<0)", ["P(mu<0)"])]
    ncol = 2 if len(panels) == 4 else len(panels)
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.9 * nrow), layout="constrained", squeeze=False)
    axes = axes.ravel()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    vals = t["grid_value"].to_numpy(float)
    logx = vals.size and vals.min() > 0 and vals.max() / vals.min() > 10
    for ax, (title, qs) in zip(axes, panels):
        for i, q in enumerate(qs):
            r = t[t["quantity"] == q]
            label = r["source"].iloc[0] if len(r) and r["source"].iloc[0] else q
            c = colors[i % len(colors)]
            if r["kind"].iloc[0] == "estimate":
                ax.plot(r["grid_value"], r["mean"], "o-", color=c, label=label, ms=3)
                if not sources or title != "source means":
                    ax.fill_between(r["grid_value"], r["q2.5"], r["q97.5"], color=c, alpha=0.15)
            else:
                ax.plot(r["grid_value"], r["value"], "o-", color=c, label=label, ms=3)
        if title in ("P(best)", "P(mu<0)"):
            for th in BEST_THRESHOLDS if title == "P(best)" else PROB_THRESHOLDS:
                ax.axhline(th, color="grey", lw=0.6, ls="--")
            ax.set_ylim(-0.02, 1.02)
        if np.isfinite(res.reference_value):
            ax.axvline(res.reference_value, color="grey", lw=0.8, ls=":")
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        if len(set(vals)) <= 7:
            ax.set_xticks(sorted(set(vals)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.set_title(title)
        ax.set_xlabel(f"{res.parameter} ~ {res.family}({res.arg}=x): x")
        ax.legend(fontsize=7)
    fig.suptitle(_title(res, f"prior scale sweep, model {res.model} ({res.measure}); dotted: fitted value; "
                             "bands: 95% intervals"))
    return _finish(fig, save)


# ---------------------------------------------------------------------------------------------
# command line (the only place here that prints)
# ---------------------------------------------------------------------------------------------
