"""Helpers for posterior draws shared by every layer: sample dims and Monte Carlo standard errors.

For a posterior mean of a per-draw quantity ``q_s`` (an indicator for a probability) the MC SE is
``sd(q) / sqrt(ESS)``, with ESS from ``arviz.ess(method="mean")`` over ``chain`` and ``draw`` (a
missing ``chain`` dim counts as one chain; a stacked ``sample`` dim as one chain in stored order).
For a probability ``sd(q) = sqrt(p (1-p))``. A quantity constant over draws has MC SE 0; a
non-finite ESS (stuck chains) gives NaN, never an iid-sized SE that would hide a sampling problem.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["SAMPLE_DIMS", "sample_dims_of", "ess_mean", "mcse_mean"]

SAMPLE_DIMS = ("chain", "draw", "sample")


def sample_dims_of(draws: xr.DataArray) -> tuple[str, ...]:
    """The sample dims present in ``draws`` (``chain``, ``draw`` and/or ``sample``)."""
    dims = tuple(d for d in SAMPLE_DIMS if d in draws.dims)
    if not dims:
        raise ValueError(f"draws {draws.name or ''!s} need a 'chain' and/or 'draw' (or 'sample') dim; "
                         f"they have dims {tuple(draws.dims)}")
    return dims


def ess_mean(x: xr.DataArray, sdims: tuple[str, ...]) -> xr.DataArray:
    """Effective sample size of the mean of ``x`` over its sample dims (see module docstring)."""
    n = int(np.prod([x.sizes[d] for d in sdims]))
    reduced = x.isel({d: 0 for d in sdims}, drop=True)
    fallback = xr.full_like(reduced, float(n), dtype=float)
    try:
        import arviz_stats as az  # the statistics only: the arviz meta-package also imports arviz_plots
    except ImportError:  # pragma: no cover - arviz is a dependency
        return fallback
    da = x
    if "sample" in sdims:
        da = da.rename({"sample": "draw"}) if "draw" not in da.dims else da
    if "chain" not in da.dims:
        da = da.expand_dims(chain=1)
    if da.sizes["draw"] < 4:  # too short for an autocorrelation estimate
        return fallback
    da = da.transpose("chain", "draw", ...).drop_vars(["chain", "draw"], errors="ignore")
    values = np.asarray(da.values, dtype=float)
    if np.isfinite(values).all():  # one vectorised NumPy pass, equal to ArviZ's (tests/unit/test_fastdiag.py)
        from .fastdiag import ess_mean as _fast_ess_mean

        with np.errstate(invalid="ignore", divide="ignore"):
            fast = _fast_ess_mean(values)
        ess = xr.DataArray(np.asarray(fast, dtype=float), dims=reduced.dims, coords=reduced.coords)
        return ess.where(np.isfinite(ess) & (ess > 0))
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            ess = az.ess(da, sample_dims=["chain", "draw"], method="mean")
    except Exception:  # pragma: no cover - defensive: never fail a summary on ESS
        return fallback
    ess = xr.DataArray(np.asarray(ess.values, dtype=float), dims=reduced.dims, coords=reduced.coords)
    # a non-finite ESS (stuck chains) stays NaN, so the MCSE shows NaN instead of an iid-sized SE that
    # would hide a sampling problem; constant quantities get MCSE 0 in mcse_mean
    return ess.where(np.isfinite(ess) & (ess > 0))


def mcse_mean(x: xr.DataArray, sample_dims: tuple[str, ...] | None = None) -> xr.DataArray:
    """Monte Carlo SE of the posterior mean of ``x``: ``sd(x) / sqrt(ESS)`` (0 where ``x`` is
    constant). For an indicator this is the binomial SE ``sqrt(p (1 - p) / ESS)``."""
    sdims = tuple(sample_dims) if sample_dims is not None else sample_dims_of(x)
    x = x.astype(float)
    sd = x.std(dim=list(sdims), ddof=0)
    se = sd / np.sqrt(ess_mean(x, sdims))
    return se.where(sd > 0, 0.0)
