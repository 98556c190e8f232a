"""Sampling: the only module that calls a sampler.

A model is compiled once per structure and data shape and cached for the session: refits under
other priors or other data of the same shape (prior sweeps, simulation studies) only sample.
All conversions between PyMC/nutpie output formats happen here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xarray as xr

from ..kinds import build_model, data_values
from ..spec.model_spec import ModelSpec

__all__ = ["sample_spec", "clear_cache", "cache_size", "sampler_settings", "DEFAULT_SETTINGS", "SamplingInterrupted",
           "check_complete"]


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


def sample_spec(spec: ModelSpec, design, *, seed: int, draws: int = 2000, tune: int = 2000,
                chains: int = 4, sampler: str = "nutpie", target_accept: float = 0.99,
                progress: bool = False, extra_groups: bool = True, prior_draws: int = 1000,
                cores: int | None = None) -> xr.DataTree:
    """Sample ``spec`` on ``design`` (compiled once, cached) and return the DataTree.

    ``extra_groups`` adds prior, log_likelihood and log_prior groups (a few seconds; sweeps skip them).
    ``cores``: threads for the chains (default: nutpie uses every core, PyMC's NUTS up to 2); a
    single-threaded worker of a parallel study passes 1. The draws do not depend on it.
    """
    import pymc as pm

    comp = _compiled(spec, design, sampler)
    values = data_values(spec, design)
    with comp.model:
        pm.set_data(values)
    if sampler == "nutpie":
        import nutpie

        compiled = comp.nutpie.with_data(**values)
        try:
            dt = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed, cores=cores,
                               save_warmup=False, progress_bar=progress, target_accept=target_accept)
        except KeyboardInterrupt:
            raise SamplingInterrupted("sampling interrupted (Ctrl-C); nothing was saved") from None
    elif sampler == "pymc":
        dt = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores or min(chains, 2), random_seed=seed,
                       nuts_sampler="pymc", target_accept=target_accept, progressbar=progress,
                       model=comp.model)
    else:
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {sampler!r}")
    check_complete(dt, chains, draws)
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
