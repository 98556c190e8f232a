"""Leave-one-trial-out influence: PSIS first, exact refits only where Pareto k is high.

For each trial, the posterior without it: mean of the overall effect, P(benefit) and P(best) of each
group (or cell) and the first-ranked one. By PSIS (reweighting the draws of the full fit with the
weights of :func:`bayes_koa.analysis.checks.loo`) and, for trials whose Pareto k exceeds
``refit_threshold_k``, by an exact refit without the trial (same spec, priors, seed and sampler
settings; the compiled model is shared by refits of the same size). Which variable is the overall
effect and which are the group means is the kind's business (its roles).

Why not ``arviz_stats.loo_expectations`` / ``loo_influence``: they weight per observation of the
log-likelihood, while a trial here is several rows (multi-arm trials, outcomes, times) whose
log-likelihoods are summed first, and the quantities are posterior parameters and P(best) indicators
of several groups at once; the weights are ``az.loo``'s Pareto-smoothed ``log_weights`` of the
trial-level log-likelihood, and the expectations are the same weighted sums those helpers compute.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..analysis.checks import K_THRESHOLD, SAMPLE_DIMS, ParetoKWarning, _elpd, _is_mcse, _r_eff, _table_attrs
from ..analysis.ranking import _indicator_array, level_draws
from ..inference.diagnostics import diagnose
from ..inference.sampling import sample_spec, sampler_settings
from ..kinds import get_kind, prepare
from ..util.draws import mcse_mean

__all__ = ["influence"]


def _rank_level(result, level: str | None) -> str | None:
    if level == "auto":
        levels = get_kind(result.spec.kind).rank_levels(result.spec)
        return next(iter(levels)) if levels else None
    return level


def _best_indicator(draws: xr.DataArray, dim: str, lower_is_better: bool) -> xr.DataArray:
    """Per draw, each entity's share of rank 1 (ties split), dims (chain, draw, dim)."""
    return _indicator_array(draws, dim, lower_is_better).sel(rank=1, drop=True).transpose(*SAMPLE_DIMS, dim)


def _level_draws_of(post: xr.Dataset, spec, level: str, labels: Sequence[str]) -> tuple[xr.DataArray, str]:
    """Entity draws of a refit posterior, restricted to ``labels`` (entities it lacks are left out)."""
    levels = get_kind(spec.kind).rank_levels(spec)
    var, dims = levels["cell" if level in ("origin", "cell", "source_origin") else level]
    da = post[var]
    if len(dims) == 1:
        present = [str(x) for x in da[dims[0]].values]
        return da.sel({dims[0]: [s for s in labels if s in present]}), dims[0]
    cell = da.stack(cell=dims)
    names = [" ".join(map(str, c)) for c in cell["cell"].values]
    cell = cell.drop_vars(["cell", *dims]).assign_coords(cell=names)
    return cell.sel(cell=[c for c in labels if c in names]), "cell"


def _settings(result) -> dict:
    return sampler_settings(result)


def _refit_without(result, position: int, label: str) -> tuple[xr.Dataset, str]:
    """Posterior of the fitted model on the rows used minus trial ``label`` (same spec, priors, seed
    and sampler settings as the fit). Returns (posterior, problems)."""
    eff = result.effects.reset_index(drop=True)
    overall = get_kind(result.spec.kind).roles(result.spec).overall
    if get_kind(result.spec.kind).normal_likelihood(result.spec):  # one row per trial entry, in model order
        keep = eff.drop(index=position)
    elif "trial_id" in eff and (eff["trial_id"].astype(str) == label).any():
        keep = eff[eff["trial_id"].astype(str) != label]
    else:
        raise NotImplementedError(f"model {result.spec.name}: cannot tell which rows of the effect table "
                                  f"belong to trial {label!r}; refits are not available for this kind")
    design, excluded = prepare(result.spec, keep.reset_index(drop=True), **result.selection)
    if len(excluded):
        raise RuntimeError(f"refit without trial {label!r}: rows that the fit used are now left out "
                           f"({', '.join(sorted(set(excluded['excluded_reason'])))})")
    if get_kind(result.spec.kind).normal_likelihood(result.spec):
        # the compile cache keys on coords: neutral trial labels let every refit of the same size
        # (and the same sources) share one compiled model; the labels are not used below
        design.trial = [f"loo_{k}" for k in range(len(design.trial))]
    st = _settings(result)
    dt = sample_spec(result.spec, design, adapt=True, seed=st["seed"], draws=st["draws"], tune=st["tune"],
                     chains=st["chains"], sampler=st["sampler"], target_accept=st["target_accept"],
                     extra_groups=False)
    problems = diagnose(dt, var_names=[overall]).attrs["problems"]
    return dt["posterior"].to_dataset(), " ".join(problems)


def influence(result, refit_threshold_k: float | None = K_THRESHOLD, level: str | None = "auto",
              integrated: bool | None = None, lower_is_better: bool | None = None,
              refit_trials: Sequence[str] = (), progress=None) -> pd.DataFrame:
    """Leave-one-trial-out influence on the pooled effect ``mu`` and on the ranking.

    One ``psis`` row per trial, plus a ``refit`` row for every trial whose Pareto k exceeds
    ``refit_threshold_k`` (None: never refit) or that is named in ``refit_trials``. Columns:
    ``trial``, ``method``, ``pareto_k``, ``mu_mean`` (without the trial), ``mu_change`` (minus the
    full-data mean), ``mu_mcse``, ``P(mu<0)``, ``P(best) <entity>`` for each source (``level=
    "source"``; ``"cell"`` for source x origin cells; ``"auto"``: sources when the model has them,
    else no ranking columns), ``first_ranked`` (highest P(best)), ``first_ranked_changes``, and
    ``note`` (refit sampling problems; sources a refit lost). Full-data values are in
    ``table.attrs`` (``mu_mean_full``, ``p_best_full``, ``first_ranked_full``). ``progress``: a callable
    ``(i, n, label)`` called before each trial (the CLI's progress line).
    """
    post = result.dt["posterior"]
    if lower_is_better is None:
        lower_is_better = bool(int(result.dt.attrs.get("bayes_koa_lower_is_better", 1)))
    overall = get_kind(result.spec.kind).roles(result.spec).overall
    if overall is None or overall not in post.data_vars or post[overall].ndim != 2:
        raise ValueError(f"influence needs a scalar overall effect; model {result.spec.name} has none")
    level = _rank_level(result, level)
    elpd, method = _elpd(result, integrated, by_trial=True)
    trials = [str(t) for t in elpd.pareto_k["trial"].values]
    w = np.exp(elpd.log_weights).transpose("trial", *SAMPLE_DIMS)
    mu = post[overall].transpose(*SAMPLE_DIMS)
    better = (lambda x: x < 0) if lower_is_better else (lambda x: x > 0)
    mu_full = float(mu.mean())
    psis_mu = (w * mu).sum(SAMPLE_DIMS)
    psis_mcse = _is_mcse(w, mu, _r_eff(mu))
    psis_pneg = (w * better(mu)).sum(SAMPLE_DIMS)

    entities: list[str] = []
    if level is not None:
        ent_draws, edim = level_draws(result.dt, result.spec, level)
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
        if progress is not None:
            progress(i + 1, len(trials), t)
        pb = dict(zip(entities, psis_pbest.values[i])) if level is not None else None
        rows.append(row(t, "psis", float(ks[i]), float(psis_mu.values[i]), float(psis_mcse.values[i]),
                        float(psis_pneg.values[i]), pb))
        needs = (refit_threshold_k is not None and ks[i] > refit_threshold_k) or t in map(str, refit_trials)
        if needs:
            rpost, problems = _refit_without(result, i, t)
            rmu = rpost[overall]
            note = problems
            pb = None
            if level is not None:
                rd, rdim = _level_draws_of(rpost, result.spec, level, entities)
                lost = [e for e in entities if e not in [str(x) for x in rd[rdim].values]]
                if lost:
                    note = (note + " " if note else "") + f"without this trial the model has no {', '.join(lost)}."
                pb = dict(zip([str(x) for x in rd[rdim].values],
                              _best_indicator(rd, rdim, lower_is_better).mean(SAMPLE_DIMS).values))
            rows.append(row(t, "refit", float(ks[i]), float(rmu.mean()), float(mcse_mean(rmu)),
                            float(better(rmu).mean()), pb, note))
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
