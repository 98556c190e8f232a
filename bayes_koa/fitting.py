"""Sampling, diagnostics and provenance: the only module that calls a sampler.

``fit`` = prepare rows -> build (or reuse) the compiled model -> sample -> one ``xarray.DataTree``
holding posterior, prior, log_likelihood, log_prior, observed and constant data, plus the
provenance in its attributes -> :class:`bayes_koa.result.MetaAnalysis`.

A model is compiled once per structure and data shape and cached for the session: refits under
other priors or other data of the same shape (prior sweeps, simulation studies) only sample.
All conversions between ArviZ/PyMC/nutpie output formats happen here.
"""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
import xarray as xr

from .build import build_model, data_values, prepare
from .spec import kind_module
from .spec import ModelSpec, load_spec

__all__ = ["fit", "sample_spec", "diagnose", "SamplingWarning", "data_hash", "clear_cache", "add_predictions"]


class SamplingWarning(UserWarning):
    """The sampler reported a problem (divergences, R-hat, ESS): read the advice in the message."""


# Diagnostic thresholds (Vehtari et al. 2021, Bayesian Analysis 16:667): R-hat <= 1.01 and bulk/tail
# ESS >= 100 per chain (400 for 4 chains); any divergence deserves a look.
RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100


@dataclass
class _Compiled:
    model: Any  # pm.Model
    nutpie: Any  # nutpie CompiledModel or None


_CACHE: dict[tuple, _Compiled] = {}


def clear_cache() -> None:
    _CACHE.clear()


def _compiled(spec: ModelSpec, design, sampler: str) -> _Compiled:
    key = (spec.structure_key(), design.shape_key(), tuple((k, tuple(v)) for k, v in design.coords.items()),
           sampler)
    hit = _CACHE.get(key)
    if hit is None:
        model = build_model(spec, design)
        compiled = None
        if sampler == "nutpie":
            import nutpie

            compiled = nutpie.compile_pymc_model(model)
        hit = _CACHE[key] = _Compiled(model, compiled)
    return hit


def data_hash(effects: pd.DataFrame) -> str:
    """sha256 of the effect table as CSV (columns sorted): the data a result was fitted to."""
    df = effects.reindex(sorted(effects.columns), axis=1)
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("bayes_koa", "pymc", "pytensor", "arviz", "nutpie", "numpy", "pandas", "xarray"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def sample_spec(spec: ModelSpec, design, *, seed: int, draws: int = 2000, tune: int = 2000,
                chains: int = 4, sampler: str = "nutpie", target_accept: float = 0.99,
                progress: bool = False, extra_groups: bool = True, prior_draws: int = 1000) -> xr.DataTree:
    """Sample ``spec`` on ``design`` (compiled once, cached) and return the DataTree.

    ``extra_groups`` adds prior, log_likelihood and log_prior groups (a few seconds; sweeps skip them).
    """
    import pymc as pm

    comp = _compiled(spec, design, sampler)
    values = data_values(spec, design)
    with comp.model:
        pm.set_data(values)
    if sampler == "nutpie":
        import nutpie

        compiled = comp.nutpie.with_data(**values)
        dt = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed,
                           save_warmup=False, progress_bar=progress, target_accept=target_accept)
    elif sampler == "pymc":
        dt = pm.sample(draws=draws, tune=tune, chains=chains, cores=min(chains, 2), random_seed=seed,
                       nuts_sampler="pymc", target_accept=target_accept, progressbar=progress,
                       model=comp.model)
    else:
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {sampler!r}")
    if extra_groups:
        prior = pm.sample_prior_predictive(draws=prior_draws, model=comp.model, random_seed=seed + 1)
        for group in ("prior", "prior_predictive"):
            if group in prior.children:
                dt[group] = prior[group]
        for group in ("observed_data", "constant_data"):
            if group not in dt.children and group in prior.children:
                dt[group] = prior[group]
        pm.compute_log_likelihood(dt, model=comp.model, progressbar=False)
        pm.stats.compute_log_prior(dt, model=comp.model, progressbar=False)
    return dt


DEFAULT_SETTINGS = {"draws": 2000, "tune": 2000, "chains": 4, "target_accept": 0.99, "sampler": "nutpie"}


def sampler_settings(result) -> dict:
    """Seed and sampler settings a result was fitted with (refits reuse them: sweeps, leave-one-out)."""
    p = result.provenance
    st = {**DEFAULT_SETTINGS, **dict(p.get("sampler_settings", {}))}
    return {"seed": int(p.get("seed", 0)), "draws": int(st["draws"]), "tune": int(st["tune"]),
            "chains": int(st["chains"]), "target_accept": float(st["target_accept"]),
            "sampler": str(p.get("sampler", DEFAULT_SETTINGS["sampler"]))}


def add_predictions(dt: xr.DataTree, spec: ModelSpec, seed: int) -> None:
    """Add draws for a new trial to the posterior, as the model's kind defines them."""
    kind_module(spec.kind).add_predictions(dt, spec, seed)


def diagnose(dt: xr.DataTree, var_names: list[str] | None = None) -> pd.DataFrame:
    """One row per parameter: R-hat, bulk and tail ESS, MCSE of the mean; plus divergences.

    The frame's ``attrs`` hold ``divergences``, ``draws`` and the list of ``problems`` (plain
    sentences with advice); empty when all is well.
    """
    import arviz as az

    post = dt["posterior"]
    if var_names is None:
        var_names = [v for v in post.data_vars if not v.startswith(("z", "log_")) and v != "theta_new"
                     and v != "theta_new_source"]
    # ArviZ 1 returns the posterior node (a DataTree) of per-variable statistics
    rhat = az.rhat(dt, var_names=var_names).to_dataset()
    ess_b = az.ess(dt, var_names=var_names, method="bulk").to_dataset()
    ess_t = az.ess(dt, var_names=var_names, method="tail").to_dataset()
    rows = []
    for v in var_names:
        r, eb, et = rhat[v], ess_b[v], ess_t[v]
        for idx in np.ndindex(r.shape):
            label = v + ("[" + ", ".join(str(r[d].values[i]) if d in r.coords else str(i)
                                         for d, i in zip(r.dims, idx)) + "]" if idx else "")
            rows.append((label, float(r.values[idx]), float(eb.values[idx]), float(et.values[idx])))
    table = pd.DataFrame(rows, columns=["parameter", "r_hat", "ess_bulk", "ess_tail"]).set_index("parameter")
    stats = dt["sample_stats"]
    n_div = int(stats["diverging"].sum()) if "diverging" in stats.data_vars else 0
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    problems = []
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
    table.attrs.update(divergences=n_div, draws=n_chain * n_draw, chains=n_chain, problems=problems)
    return table


def fit(effects: pd.DataFrame, model: str = "source_hierarchical", priors: Mapping[str, Any] | None = None, *,
        outcome: str | None = None, time: float | None = None, measure: str | None = None,
        seed: int | None = None, draws: int = 2000, tune: int = 2000, chains: int = 4,
        sampler: str = "nutpie", target_accept: float = 0.99, progress: bool = False,
        structure: Mapping[str, Any] | None = None, warn: bool = True):
    """Fit a model file to an effect table and return a :class:`~bayes_koa.result.MetaAnalysis`.

    ``effects``: the table of :func:`bayes_koa.effect_sizes`, or any DataFrame with ``trial_id``,
    ``yi`` and ``vi`` (or ``sei``) plus the moderator columns the model needs (``cell_source``,
    ``origin``, ...). Rows with an ``excluded_reason``, non-finite values or missing moderators are
    left out and listed in ``result.excluded``.
    ``priors``: ``{"tau": "HalfNormal(sigma=0.3)", ...}`` or a prior set; they win over the model
    file, which wins over the package defaults.
    ``measure``: the effect measure (taken from the table's ``measure`` column when present),
    used to pick the priors of that scale.
    ``seed``: fixes the result; when None a seed is drawn and recorded.
    Sampler defaults (4 x 2000 draws after 2000 tuning steps, target_accept 0.99) are chosen for
    hierarchical models with three sources, where the between-source SD makes a funnel: on the
    shipped simulated data they give no divergences and bulk ESS > 600 over several seeds, and
    sampling takes 1-3 s with nutpie (compiling takes longer and happens once per session).
    """
    from .result import MetaAnalysis

    if measure is None and "measure" in effects:
        m = effects.loc[effects.get("excluded_reason", pd.Series("", index=effects.index)).fillna("") == "",
                        "measure"].dropna().unique()
        if len(m) > 1:
            raise ValueError(f"the effect table mixes measures {sorted(m)}; fit one at a time")
        measure = m[0] if len(m) else None
    spec = load_spec(model, priors=priors, measure=measure or "default", **dict(structure or {}))
    design, excluded = prepare(spec, effects, outcome=outcome, time=time)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    dt = sample_spec(spec, design, seed=seed, draws=draws, tune=tune, chains=chains, sampler=sampler,
                     target_accept=target_accept, progress=progress)
    add_predictions(dt, spec, seed)
    simulated = bool(effects.attrs.get("simulated", False))
    dt.attrs.update({
        "bayes_koa_model": spec.name,
        "bayes_koa_model_version": spec.version,
        "bayes_koa_model_file": spec.file_text,
        "bayes_koa_model_file_sha256": spec.file_hash,
        "bayes_koa_model_path": spec.path,
        "bayes_koa_structure": json.dumps({"kind": spec.kind, "levels": list(spec.levels),
                                           "between_trial_sd": spec.between_trial_sd,
                                           "parameterization": spec.parameterization,
                                           "moderators": list(spec.moderators),
                                           **{k: list(v) if isinstance(v, tuple) else v
                                              for k, v in spec.options}}),
        "bayes_koa_measure": spec.measure,
        "bayes_koa_priors": json.dumps({p: {"prior": str(pr), "from": pr.origin} for p, pr in spec.priors}),
        "bayes_koa_data_sha256": data_hash(effects),
        "bayes_koa_raw_data_sha256": str(effects.attrs.get("data_sha256", "")),
        "bayes_koa_data_source": str(effects.attrs.get("source", "user DataFrame")),
        "bayes_koa_simulated": int(simulated),
        "bayes_koa_outcome": "" if outcome is None else str(outcome),
        "bayes_koa_time": "" if time is None else str(time),
        "bayes_koa_seed": int(seed),
        "bayes_koa_sampler": sampler,
        "bayes_koa_sampler_settings": json.dumps({"draws": draws, "tune": tune, "chains": chains,
                                                  "target_accept": target_accept}),
        "bayes_koa_versions": json.dumps(_versions()),
        "bayes_koa_created": pd.Timestamp.now(tz="UTC").isoformat(),
    })
    result = MetaAnalysis(dt=dt, spec=spec, effects=design.rows, excluded=excluded)
    diag = result.diagnostics()
    if warn and diag.attrs["problems"]:
        warnings.warn("Sampling problems:\n- " + "\n- ".join(diag.attrs["problems"]), SamplingWarning, stacklevel=2)
    return result
