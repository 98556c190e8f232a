"""Sampling: the only module that calls a sampler.

A model is compiled once per structure and data shape and cached for the session: refits under
other priors or other data of the same shape (prior sweeps, simulation studies) only sample.
All conversions between PyMC/nutpie output formats happen here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xarray as xr

from ..kinds import build_model, data_values, get_kind
from ..spec.model_spec import ModelSpec

__all__ = ["sample_spec", "clear_cache", "cache_size", "sampler_settings", "DEFAULT_SETTINGS", "SamplingInterrupted",
           "check_complete", "default_settings", "escalated_target_accept", "add_groups", "EXTRA_GROUPS",
           "ADAPTATION_ATTR"]


class SamplingInterrupted(RuntimeError):
    """Sampling stopped before every chain drew every draw (Ctrl-C, a killed worker): no result is made."""


def check_complete(dt: xr.DataTree, chains: int, draws: int) -> None:
    """Raise :class:`SamplingInterrupted` unless the posterior holds ``chains x draws`` finite draws.

    nutpie returns a NaN-padded partial trace when interrupted; such a trace must never pass for a result.
    """
    post = dt["posterior"]
    got = (post.sizes.get("chain", 0), post.sizes.get("draw", 0))
    if got != (chains, draws):
        raise SamplingInterrupted(f"sampling stopped early: the posterior has {got[0]} chains x {got[1]} draws, "
                                  f"{chains} x {draws} were asked for; nothing was saved")
    import numpy as np

    for name, da in post.data_vars.items():
        bad = ~np.isfinite(np.asarray(da.values, dtype=float))
        if bad.any():
            per_draw = bad.reshape(bad.shape[0], bad.shape[1], -1).any(-1)
            done = int((~per_draw).sum())
            raise SamplingInterrupted(f"sampling stopped early or failed: {name} has non-finite draws "
                                      f"({done} of {chains * draws} draws complete); nothing was saved")


@dataclass
class _Compiled:
    model: Any  # pm.Model
    nutpie: Any  # nutpie CompiledModel or None


_CACHE: dict[tuple, _Compiled] = {}


def clear_cache() -> None:
    """Forget this process's compiled models (the disk cache stays: compile_cache.clear(disk=True))."""
    from . import compile_cache

    _CACHE.clear()
    compile_cache.clear(memory=True)


def cache_size() -> int:
    """Number of compiled models held in this process."""
    return len(_CACHE)


def _compiled(spec: ModelSpec, design, sampler: str) -> _Compiled:
    key = (spec.structure_key(), design.shape_key(), tuple((k, tuple(v)) for k, v in design.coords.items()),
           sampler)
    hit = _CACHE.get(key)
    if hit is None:
        if sampler == "nutpie":
            # compiled once per machine: in memory, then on disk (compile_cache.py)
            from .compile_cache import compiled_model

            model, compiled = compiled_model(key[:2], lambda: build_model(spec, design), labels=key[2:])
        else:
            model, compiled = build_model(spec, design), None
        hit = _CACHE[key] = _Compiled(model, compiled)
    return hit


EXTRA_GROUPS = ("prior", "log_likelihood", "log_prior")  # what extra_groups=True adds (prior: + prior_predictive)
ADAPTATION_ATTR = "bayes_koa_adaptation"  # DataTree attr: the adaptive refit record (JSON)


def escalated_target_accept(target_accept: float) -> float | None:
    """The target_accept of the one adaptive refit after divergences: 0.99, or halfway to 1 from 0.99 up.

    None when there is no room left (>= 0.999): the divergences are then reported as they are.
    """
    ta = float(target_accept)
    if ta >= 0.999:
        return None
    return 0.99 if ta < 0.99 else round(1 - (1 - ta) / 2, 6)


def _divergences(dt: xr.DataTree) -> int:
    stats = dt["sample_stats"] if "sample_stats" in dt.children else None
    return int(stats["diverging"].sum()) if stats is not None and "diverging" in stats.data_vars else 0


def _run(comp: _Compiled, values: dict, *, sampler, draws, tune, chains, seed, cores, progress, target_accept):
    import pymc as pm

    if sampler == "nutpie":
        import nutpie

        compiled = comp.nutpie.with_data(**values)
        try:
            dt = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed, cores=cores,
                               save_warmup=False, progress_bar=progress, target_accept=target_accept)
        except KeyboardInterrupt:
            raise SamplingInterrupted("sampling interrupted (Ctrl-C); nothing was saved") from None
    elif sampler == "pymc":
        import pytensor

        from .compile_cache import FASTMATH

        with pytensor.config.change_flags(numba__fastmath=FASTMATH):  # as the nutpie path (compile_cache)
            dt = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores or min(chains, 2),
                           random_seed=seed,
                           nuts_sampler="pymc", target_accept=target_accept, progressbar=progress,
                           model=comp.model)
    else:
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {sampler!r}")
    check_complete(dt, chains, draws)
    return dt


def _attach_data(dt: xr.DataTree, model) -> None:
    """Add ``observed_data`` and ``constant_data`` from the model's data, without sampling or compiling.

    The same conversion PyMC's own converter makes (pymc.backends.arviz), scalars squeezed as it does."""
    import numpy as np
    import pymc as pm
    from pymc.backends.arviz import coords_and_dims_for_inferencedata, dict_to_dataset, find_constants, find_observations

    coords, dims = coords_and_dims_for_inferencedata(model)
    if "observed_data" not in dt.children:
        obs = find_observations(model)
        if obs:
            dt["observed_data"] = xr.DataTree(dict_to_dataset(obs, inference_library=pm, coords=coords, dims=dims,
                                                               sample_dims=[]))
    if "constant_data" not in dt.children:
        const = find_constants(model)
        if const:
            ds = dict_to_dataset(const, inference_library=pm, coords=coords, dims=dims, sample_dims=[])
            for name, value in const.items():
                if np.ndim(value) == 0 and f"{name}_dim_0" in ds.sizes:
                    ds = ds.squeeze(f"{name}_dim_0", drop=True)
            dt["constant_data"] = xr.DataTree(ds)


def add_groups(dt: xr.DataTree, spec: ModelSpec, design, groups=EXTRA_GROUPS, *, seed: int = 0,
               prior_draws: int = 1000, sampler: str = "nutpie") -> xr.DataTree:
    """Add the missing ``groups`` ("prior" with "prior_predictive", "log_likelihood", "log_prior") to ``dt``.

    Computed on the cached compiled model of ``spec`` and ``design`` (its data set again first: the cached
    model may hold another fit's data), once: groups already present are left as they are. Returns ``dt``.
    """
    import pymc as pm

    want = [g for g in groups if g not in dt.children]
    unknown = sorted(set(want) - set(EXTRA_GROUPS))
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}; extra groups are {list(EXTRA_GROUPS)}")
    if not want:
        return dt
    comp = _compiled(spec, design, sampler)
    with comp.model:
        pm.set_data(data_values(spec, design))
    if "prior" in want:
        # forward sampling compiled in PyTensor's FAST_COMPILE mode (NumPy implementations of the random
        # variables): the same random draws as the default numba mode for the same seed, without numba compiling
        # the forward graph (main model, 1000 draws, load 4: 5.7 s vs 16.2 s with an empty PyTensor cache,
        # 2.1 s vs 3.8 s with a warm one)
        try:
            prior = pm.sample_prior_predictive(draws=prior_draws, model=comp.model, random_seed=seed + 1,
                                               compile_kwargs={"mode": "FAST_COMPILE"})
        except TypeError:
            # FAST_COMPILE's Python random variables do not cast as numba's do (a Binomial whose n is a
            # float data container: "Cannot cast array data from float64 to int64"): the default mode
            prior = pm.sample_prior_predictive(draws=prior_draws, model=comp.model, random_seed=seed + 1)
        for group in ("prior", "prior_predictive"):
            if group in prior.children:
                dt[group] = prior[group]
        for group in ("observed_data", "constant_data"):
            if group not in dt.children and group in prior.children:
                dt[group] = prior[group]
    import pytensor

    from .compile_cache import FASTMATH

    with pytensor.config.change_flags(numba__fastmath=FASTMATH):  # last-bit equal in cold and warm processes
        if "log_likelihood" in want:
            pm.compute_log_likelihood(dt, model=comp.model, progressbar=False)
        if "log_prior" in want:
            pm.stats.compute_log_prior(dt, model=comp.model, progressbar=False)
    return dt


def sample_spec(spec: ModelSpec, design, *, seed: int, draws: int = 2000, tune: int = 2000,
                chains: int = 4, sampler: str = "nutpie", target_accept: float = 0.99,
                progress: bool = False, extra_groups=True, prior_draws: int = 1000,
                cores: int | None = None, adapt: bool = False, cache: bool | str | None = None) -> xr.DataTree:
    """Sample ``spec`` on ``design`` (compiled once, cached) and return the DataTree.

    ``extra_groups``: True adds prior (+ prior_predictive), log_likelihood and log_prior groups; False none
    (sweeps, refits); or a tuple of those names. :func:`add_groups` adds the others later, when asked.
    ``cores``: threads for the chains (default: nutpie uses every core, PyMC's NUTS up to 2); a
    single-threaded worker of a parallel study passes 1. The draws do not depend on it.
    ``adapt``: when the fit shows divergences, refit once at :func:`escalated_target_accept` (same seed,
    draws, tune). The record goes into ``dt.attrs[ADAPTATION_ATTR]`` (JSON: first target_accept and its
    divergences, the refit's target_accept) whether or not a refit happened; diagnostics report it.
    ``cache``: the fit cache (:mod:`bayes_koa.inference.fit_cache`): None/True use it (a call with the
    same model, data, priors, seed, settings and versions returns the stored draws, sampling nothing and
    importing no PyMC), "refit" samples again and replaces the entry, False neither reads nor writes.
    """
    import json

    from . import fit_cache

    values = data_values(spec, design)
    groups = EXTRA_GROUPS if extra_groups is True else tuple(extra_groups or ())
    how = fit_cache.current_mode(cache)
    key = None
    if how != "off":
        key = fit_cache.fit_key(spec, design, values, seed=seed, draws=draws, tune=tune, chains=chains,
                                sampler=sampler, target_accept=target_accept, adapt=adapt, groups=groups,
                                prior_draws=prior_draws)
        if how == "use":
            hit = fit_cache.lookup(key)
            if hit is not None:
                return hit

    import pymc as pm

    comp = _compiled(spec, design, sampler)
    with comp.model:
        pm.set_data(values)
    run = dict(sampler=sampler, draws=draws, tune=tune, chains=chains, seed=seed, cores=cores, progress=progress)
    dt = _run(comp, values, target_accept=target_accept, **run)
    record = {"adaptive": bool(adapt), "target_accept": float(target_accept), "divergences": _divergences(dt),
              "refit": False}
    higher = escalated_target_accept(target_accept) if adapt and record["divergences"] else None
    if higher is not None:
        dt = _run(comp, values, target_accept=higher, **run)
        record.update(refit=True, refit_target_accept=higher, refit_divergences=_divergences(dt))
    dt.attrs[ADAPTATION_ATTR] = json.dumps(record)
    _attach_data(dt, comp.model)  # the data the draws were made from (cheap: no sampling, no compile)
    get_kind(spec.kind).generated_quantities(dt, spec, design, seed)  # e.g. integrated-out trial effects
    if groups:
        add_groups(dt, spec, design, groups, seed=seed, prior_draws=prior_draws, sampler=sampler)
    if key is not None:  # only a complete fit gets here (an interrupted one raised in _run)
        fit_cache.store(key, dt)
    return dt


DEFAULT_SETTINGS = {"draws": 2000, "tune": 2000, "chains": 4, "target_accept": 0.99, "sampler": "nutpie"}


def default_settings(spec: ModelSpec) -> dict:
    """The settings a fit of ``spec`` starts from: :data:`DEFAULT_SETTINGS` updated by its kind's measured choice."""
    return {**DEFAULT_SETTINGS, **get_kind(spec.kind).sampler_defaults(spec)}


def sampler_settings(result) -> dict:
    """Seed and sampler settings a result was fitted with (refits reuse them: sweeps, leave-one-out).

    ``target_accept`` is the one the final draws used (after an adaptive refit, the higher one)."""
    p = result.provenance
    st = {**default_settings(result.spec), **dict(p.get("sampler_settings", {}))}
    return {"seed": int(p.get("seed", 0)), "draws": int(st["draws"]), "tune": int(st["tune"]),
            "chains": int(st["chains"]), "target_accept": float(st["target_accept"]),
            "sampler": str(p.get("sampler", DEFAULT_SETTINGS["sampler"]))}
