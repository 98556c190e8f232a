"""Rankings from posterior draws: ranks, rank probabilities, SUCRA, P(best), pairwise probabilities.

Pure functions over an :class:`xarray.DataArray` of draws with sample dims ``chain`` and ``draw``
(either may be missing; a stacked ``sample`` dim is accepted too) and one *entity* dim (``source``,
``cell``, ``trial``, ...) whose entries are ranked within every draw. Any other dims (``time``,
``outcome``) are kept: entities are ranked separately for each of their coordinates.

Conventions
-----------
* ``lower_is_better=True`` (the package default: effects are MSC - control with negative =
  benefit): rank 1 is the entity with the smallest value in that draw.
* **Ties** have probability zero for continuous draws but occur with discretised or deterministic
  ones. :func:`ranks` gives tied entities their average rank (``ties="average"``, the default) or
  breaks ties at random (``ties="random"``, seeded). Rank probabilities, P(best), SUCRA and the
  mean rank use the *expectation over random tie-breaking*, computed exactly: an entity tied with
  ``m - 1`` others for ranks ``r .. r+m-1`` counts ``1/m`` for each of those ranks. Pairwise
  probabilities count a tie as one half.
* **SUCRA** (surface under the cumulative ranking curve; Salanti, Ades & Ioannidis 2011, J Clin
  Epidemiol 64:163-171): ``SUCRA_j = sum_{k=1}^{K-1} P(rank_j <= k) / (K - 1)``, which equals
  ``(K - E[rank_j]) / (K - 1)`` (Rücker & Schwarzer 2015, BMC Med Res Methodol 15:58). 1 = always
  best, 0 = always worst.
* **SUCRA interval.** SUCRA is a functional of the rank distribution, not a parameter, so it has no
  posterior distribution of its own. We report the distribution of the per-draw *scaled rank*
  ``(K - rank_j) / (K - 1)``, whose posterior mean is exactly SUCRA: ``sucra_lower`` /
  ``sucra_upper`` are its equal-tailed ``ci`` quantiles (``inverted_cdf``, so they are attainable
  values ``0, 1/(K-1), ..., 1``). This is the rank credible interval on the SUCRA scale; it shows
  how uncertain the position is, and is wide even when SUCRA is estimated precisely. The Monte
  Carlo uncertainty of SUCRA itself is ``sucra_mcse``.
* **Monte Carlo standard errors.** For a posterior mean of a per-draw quantity ``q_s`` (an
  indicator for a probability): ``sd(q) / sqrt(ESS)``, with ESS from ``arviz.ess(method="mean")``
  over ``chain`` and ``draw`` (a missing ``chain`` dim counts as one chain; a stacked ``sample`` dim
  as one chain in stored order). For a probability ``sd(q) = sqrt(p (1-p))``, the binomial SE with
  the effective sample size in place of the number of draws. Without ArviZ, ESS = number of draws.
  A quantity that is constant over draws has MC SE 0.

Memory: rank probabilities hold ``n_draws x K x K`` floats (16,000 draws and K = 20: 51 MB).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from ..kinds import get_kind
from ..util.draws import ess_mean as _ess
from ..util.draws import mcse_mean, sample_dims_of

__all__ = [
    "ranks",
    "rank_probabilities",
    "cumulative_rank_probabilities",
    "sucra",
    "p_best",
    "pairwise_better",
    "rank_summary",
    "mcse_mean",
    "sample_dims_of",
    "level_draws",
]



# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _check(draws: xr.DataArray, dim: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not isinstance(draws, xr.DataArray):
        raise TypeError(f"draws must be an xarray.DataArray, got {type(draws).__name__}")
    sdims = sample_dims_of(draws)
    if dim not in draws.dims:
        raise ValueError(f"draws {draws.name or ''!s} have no dim {dim!r} to rank over; "
                         f"dims are {tuple(draws.dims)}")
    if dim in sdims:
        raise ValueError(f"cannot rank over the sample dim {dim!r}")
    bad = draws.isnull()
    if bool(bad.any()):
        counts = bad.sum(dim=[d for d in draws.dims if d != dim])
        labels = [str(v) for v, c in zip(draws[dim].values, counts.values) if c > 0]
        raise ValueError(f"draws {draws.name or ''!s} contain NaN for {dim} = {', '.join(labels)} "
                         f"({int(bad.sum())} values)")
    other = tuple(d for d in draws.dims if d not in sdims and d != dim)
    return sdims, other


def _oriented(draws: xr.DataArray, dim: str, lower_is_better: bool):
    sdims, other = _check(draws, dim)
    arr = draws.transpose(*sdims, *other, dim)
    values = np.asarray(arr.values, dtype=float)
    if not lower_is_better:
        values = -values
    return arr, values, sdims, other


def _min_max_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest rank (1-based) each entry could take along the last axis (ties share)."""
    k = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="stable")
    xs = np.take_along_axis(x, order, axis=-1)
    idx = np.broadcast_to(np.arange(k), x.shape)
    starts = np.ones(x.shape, dtype=bool)
    starts[..., 1:] = xs[..., 1:] != xs[..., :-1]
    ends = np.ones(x.shape, dtype=bool)
    ends[..., :-1] = xs[..., 1:] != xs[..., :-1]
    lo_sorted = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1) + 1
    hi_sorted = np.flip(np.minimum.accumulate(np.flip(np.where(ends, idx, k - 1), -1), axis=-1), -1) + 1
    rmin = np.empty(x.shape, dtype=np.int64)
    rmax = np.empty(x.shape, dtype=np.int64)
    np.put_along_axis(rmin, order, lo_sorted, axis=-1)
    np.put_along_axis(rmax, order, hi_sorted, axis=-1)
    return rmin, rmax


def _rank_indicators(values: np.ndarray) -> np.ndarray:
    """(..., K) -> (..., K entities, K ranks): share of each rank, exact over random tie-breaking."""
    k = values.shape[-1]
    rmin, rmax = _min_max_ranks(values)
    r = np.arange(1, k + 1)
    inside = (rmin[..., None] <= r) & (r <= rmax[..., None])
    return inside / (rmax - rmin + 1)[..., None]


def _wrap_ranked(arr: xr.DataArray, values: np.ndarray, name: str) -> xr.DataArray:
    return xr.DataArray(values, dims=arr.dims, coords=arr.coords, name=name)


# ----------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------
def ranks(draws: xr.DataArray, dim: str = "source", lower_is_better: bool = True,
          ties: Literal["average", "random"] = "average",
          seed: int | np.random.Generator | None = 0) -> xr.DataArray:
    """Rank of each entity within each draw (1 = best), same dims as ``draws``.

    ``ties="average"``: tied entities share the mean of their ranks (may be x.5);
    ``ties="random"``: ties broken uniformly at random with ``np.random.default_rng(seed)``.
    """
    arr, values, _, _ = _oriented(draws, dim, lower_is_better)
    if ties == "average":
        rmin, rmax = _min_max_ranks(values)
        out = (rmin + rmax) / 2.0
    elif ties == "random":
        key = np.random.default_rng(seed).random(values.shape)
        order = np.lexsort((key, values), axis=-1)
        out = np.empty(values.shape, dtype=np.int64)
        np.put_along_axis(out, order, np.broadcast_to(np.arange(1, values.shape[-1] + 1),
                                                      values.shape), axis=-1)
    else:
        raise ValueError(f"ties must be 'average' or 'random', got {ties!r}")
    return _wrap_ranked(arr, out, "rank").transpose(*draws.dims)


def _indicator_array(draws: xr.DataArray, dim: str, lower_is_better: bool) -> xr.DataArray:
    arr, values, sdims, other = _oriented(draws, dim, lower_is_better)
    k = values.shape[-1]
    ind = _rank_indicators(values)
    coords = {c: v for c, v in arr.coords.items() if set(v.dims) <= set(arr.dims)}
    coords["rank"] = np.arange(1, k + 1)
    return xr.DataArray(ind, dims=(*arr.dims, "rank"), coords=coords)


def rank_probabilities(draws: xr.DataArray, dim: str = "source",
                       lower_is_better: bool = True) -> xr.DataArray:
    """P(entity has rank k): DataArray with dims (other dims..., ``dim``, ``rank``), rank = 1..K.
    Each row sums to 1 over ranks, and each rank column sums to 1 over entities."""
    ind = _indicator_array(draws, dim, lower_is_better)
    sdims = sample_dims_of(draws)
    return ind.mean(dim=list(sdims)).rename("rank_probability")


def cumulative_rank_probabilities(draws: xr.DataArray, dim: str = "source",
                                  lower_is_better: bool = True) -> xr.DataArray:
    """P(rank <= k), dims (other dims..., ``dim``, ``rank``) (the cumulative ranking curve)."""
    return rank_probabilities(draws, dim, lower_is_better).cumsum("rank").rename(
        "cumulative_rank_probability")


def p_best(draws: xr.DataArray, dim: str = "source", lower_is_better: bool = True) -> xr.DataArray:
    """P(entity ranks first), dims (other dims..., ``dim``)."""
    return rank_probabilities(draws, dim, lower_is_better).sel(rank=1, drop=True).rename("p_best")


def _scaled_ranks(draws: xr.DataArray, dim: str, lower_is_better: bool):
    k = draws.sizes.get(dim, 0)
    if k < 2:
        raise ValueError(f"SUCRA needs at least 2 entities along {dim!r}, got {k}")
    r = ranks(draws, dim, lower_is_better, ties="average")
    return r, (k - r) / (k - 1)


def _tidy(ds: xr.Dataset, dim: str, other: tuple[str, ...]) -> pd.DataFrame:
    ds = ds.transpose(*other, dim)
    df = ds.to_dataframe().reset_index()
    keep = [*other, dim] + [v for v in ds.data_vars]
    return df[keep]


def sucra(draws: xr.DataArray, dim: str = "source", lower_is_better: bool = True,
          ci: float = 0.95) -> pd.DataFrame:
    """SUCRA per entity (Salanti et al. 2011) with the interval of the per-draw scaled rank.

    Columns: (other dims...), ``dim``, ``sucra``, ``sucra_lower``, ``sucra_upper``, ``sucra_mcse``.
    See the module docstring for the definitions.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    sdims, other = _check(draws, dim)
    _, scaled = _scaled_ranks(draws, dim, lower_is_better)
    ds = _sucra_vars(scaled, sdims, ci)
    return _tidy(ds, dim, other)


def _sucra_vars(scaled: xr.DataArray, sdims: tuple[str, ...], ci: float) -> xr.Dataset:
    lo = scaled.quantile((1 - ci) / 2, dim=list(sdims), method="inverted_cdf").drop_vars("quantile")
    hi = scaled.quantile((1 + ci) / 2, dim=list(sdims), method="inverted_cdf").drop_vars("quantile")
    return xr.Dataset({
        "sucra": scaled.mean(dim=list(sdims)),
        "sucra_lower": lo,
        "sucra_upper": hi,
        "sucra_mcse": mcse_mean(scaled, sdims),
    })


def pairwise_better(draws: xr.DataArray, dim: str = "source",
                    lower_is_better: bool = True) -> xr.DataArray:
    """P(row entity better than column entity), ties counted one half; diagonal NaN.

    Dims (other dims..., ``dim``, ``<dim>_vs``); ``.to_pandas()`` on a 2-D result gives the
    DataFrame with rows = ``dim`` and columns = ``<dim>_vs``.
    """
    arr, values, sdims, other = _oriented(draws, dim, lower_is_better)
    a, b = values[..., :, None], values[..., None, :]
    p = ((a < b) + 0.5 * (a == b)).mean(axis=tuple(range(len(sdims))))
    k = values.shape[-1]
    p[..., np.arange(k), np.arange(k)] = np.nan
    vs = f"{dim}_vs"
    coords = {c: arr.coords[c] for c in other if c in arr.coords}
    coords[dim] = arr[dim].values
    coords[vs] = arr[dim].values
    return xr.DataArray(p, dims=(*other, dim, vs), coords=coords, name="p_better")


def rank_summary(draws: xr.DataArray, dim: str = "source", lower_is_better: bool = True,
                 ci: float = 0.95) -> pd.DataFrame:
    """One row per entity (and per coordinate of any other dim).

    Columns: (other dims...), ``dim``, ``mean_rank``, ``mean_rank_mcse``, ``median_rank``,
    ``p_best``, ``p_best_mcse``, ``sucra``, ``sucra_lower``, ``sucra_upper``, ``sucra_mcse``,
    ``P(rank=1)`` ... ``P(rank=K)``, then ``P(rank=1)_mcse`` ... ``P(rank=K)_mcse``.
    ``median_rank`` is the median of the rank distribution (smallest k with P(rank <= k) >= 1/2);
    MC SEs as in the module docstring.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    sdims, other = _check(draws, dim)
    r, scaled = _scaled_ranks(draws, dim, lower_is_better)
    ind = _indicator_array(draws, dim, lower_is_better)
    probs = ind.mean(dim=list(sdims))
    probs_se = mcse_mean(ind, sdims)
    cum = probs.cumsum("rank")
    median = (cum >= 0.5 - 1e-12).argmax("rank") + 1
    ds = xr.Dataset({
        "mean_rank": r.mean(dim=list(sdims)),
        "mean_rank_mcse": mcse_mean(r, sdims),
        "median_rank": median,
        "p_best": probs.sel(rank=1, drop=True),
        "p_best_mcse": probs_se.sel(rank=1, drop=True),
    })
    ds = ds.merge(_sucra_vars(scaled, sdims, ci))
    for k in probs["rank"].values:
        ds[f"P(rank={int(k)})"] = probs.sel(rank=k, drop=True)
    for k in probs["rank"].values:
        ds[f"P(rank={int(k)})_mcse"] = probs_se.sel(rank=k, drop=True)
    return _tidy(ds, dim, other)


def level_draws(dt, spec, level: str | None = None) -> tuple[xr.DataArray, str]:
    """Draws to rank at one of the kind's levels, and the dim to rank over.

    ``level`` None is the kind's first rankable level (the groups). A level with two dims (source x
    origin cells) is stacked into one ``cell`` dim labelled ``"BM autologous"``; cells without rows
    (prior-only) are left out.
    """
    kind = get_kind(spec.kind)
    levels = kind.rank_levels(spec)
    if not levels:
        raise ValueError(f"model {spec.name} (kind {spec.kind}) has nothing to rank: no group level")
    if level is None:
        level = next(iter(levels))
    aliases = {"origin": "cell", "source_origin": "cell"}
    key = level if level in levels else aliases.get(level, level)
    if key not in levels:
        raise ValueError(f"model {spec.name} has no level {level!r} to rank; its levels are {', '.join(levels)}")
    var, dims = levels[key]
    da = dt["posterior"][var]
    if len(dims) == 1:
        return da, dims[0]
    counts = kind.group_counts(dt, spec).get(var, {})
    cell = da.stack(cell=dims)
    observed = [c for c in cell["cell"].values if counts.get(tuple(map(str, c)), 0) > 0] if counts else list(cell["cell"].values)
    cell = cell.sel(cell=observed)
    labels = [" ".join(map(str, c)) for c in cell["cell"].values]
    cell = cell.drop_vars(["cell", *dims]).assign_coords(cell=labels)
    return cell, "cell"
