"""Figures of a fitted :class:`~bayes_koa.result.MetaAnalysis`: forest, rankogram, densities.

Every function returns a :class:`matplotlib.figure.Figure`, never calls ``plt.show()`` and closes
nothing; ``save=path`` also writes a PNG at 150 dpi. Figures work under the Agg backend.

Effects are ``treatment - control`` (``MSC - control`` in the KOA application); the direction set at
fit (``lower_is_better``) says which side favours the treatment, and every axis says so. Which
variables are drawn is the kind's business (its roles).
Results fitted to simulated data say SIMULATED at the start of the title.
Intervals are equal-tailed (95% by default), as in :mod:`bayes_koa.summaries`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..analysis import checks as _checks
from ..analysis import ranking as _ranking
from ..kinds import get_kind

__all__ = ["forest", "rankogram", "source_densities", "prior_posterior", "plot_ppc"]

DPI = 150
SAMPLE_DIMS = ("chain", "draw")


# -- small helpers --------------------------------------------------------------------------------
def _title(result, text: str) -> str:
    return f"SIMULATED DATA: {text}" if result.simulated else text


def _is_koa(result) -> bool:
    return result.spec.get("group", "cell_source") == "cell_source" and "cell_source" in result.effects


def _effect_label(result) -> str:
    treat = "MSC" if _is_koa(result) else "treatment"
    side = "negative" if result.lower_is_better else "positive"
    return f"{result.spec.measure}, {treat} \N{MINUS SIGN} control ({side} = favours {treat})"


def _new_figure(nrows: int = 1, ncols: int = 1, **kwargs):
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, layout="constrained", squeeze=False, **kwargs)


def _finish(fig, save):
    if save is not None:
        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    return fig


def _flat(da: xr.DataArray) -> np.ndarray:
    """All draws of a scalar parameter (or one element of a vector one) as a 1-d array."""
    return np.asarray(da.transpose(*SAMPLE_DIMS, ...).values, dtype=float).ravel()


def _interval(da: xr.DataArray, ci: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower bound, median, upper bound of the equal-tailed ``ci`` interval over chain and draw."""
    lo, hi = (1 - ci) / 2, 1 - (1 - ci) / 2
    q = da.quantile([lo, 0.5, hi], dim=SAMPLE_DIMS)
    return tuple(np.atleast_1d(q.isel(quantile=i).values) for i in range(3))


def _grid(samples: list[np.ndarray], positive: bool = False, n: int = 400) -> np.ndarray:
    allx = np.concatenate(samples)
    lo, hi = np.quantile(allx, [0.001, 0.999])
    pad = 0.1 * (hi - lo) if hi > lo else 1.0
    lo = max(lo - pad, 0.0) if positive else lo - pad
    return np.linspace(lo, hi + pad, n)


def _density(x: np.ndarray, grid: np.ndarray, positive: bool = False) -> np.ndarray | None:
    """Gaussian kernel density of ``x`` on ``grid`` (reflected at 0 when ``positive``).

    None when the draws do not vary (a kernel density is undefined).
    """
    x = x[np.isfinite(x)]
    if x.size < 2 or np.ptp(x) == 0:
        return None
    kde = stats.gaussian_kde(x)
    dens = kde(grid)
    if positive:  # reflection keeps the mass of a positive parameter on [0, inf)
        dens = np.where(grid >= 0, dens + kde(-grid), 0.0)
    return dens


def _diamond(ax, lo: float, mid: float, hi: float, y: float, half_height: float = 0.3, **kwargs):
    from matplotlib.patches import Polygon

    patch = Polygon([(lo, y), (mid, y - half_height), (hi, y), (mid, y + half_height)], closed=True, **kwargs)
    ax.add_patch(patch)
    return patch


# -- forest ---------------------------------------------------------------------------------------
def forest(result, ci: float = 0.95, ax=None, save=None):
    """Forest plot: each trial's observed effect and its shrunken estimate, source and overall means.

    One row per trial: observed ``yi`` with its ``ci`` confidence interval ``yi +- z sqrt(vi)``
    (open circle) and, just below, the posterior median and ``ci`` interval of ``theta`` (the
    shrunken trial effect, filled circle). In source models trials are grouped by cell source,
    each group closed by the source mean (diamond: posterior median and interval of
    ``source_mean``; k = number of trials). At the bottom: the overall mean ``mu`` (diamond) and the prediction
    interval for a new trial (``theta_new``, a bar; absent in the fixed-effect model).

    ``ax``: draw on this axes (its figure is returned); otherwise a new figure is made.
    """
    post = result.dt["posterior"]
    roles = get_kind(result.spec.kind).roles(result.spec)
    if roles.trial is None and "theta" not in post.data_vars:
        raise ValueError(f"model {result.spec.name} (kind {result.spec.kind}) has no trial effects to draw in a forest plot")
    theta = post[roles.trial or "theta"]
    gcol = result.spec.get("group", "cell_source")
    gdim = roles.group_dim
    if "row" in theta.dims:
        raise ValueError(f"model {result.spec.name} has effects for several outcomes/times per trial; a forest "
                         "plot shows one outcome at one time: fit that with source_hierarchical, or use "
                         "result.p_better_by_time() and result.summary() for this model")
    row_dim = "comparison" if "comparison" in theta.dims else "trial"  # binomial models: per comparison
    labels = [str(t) for t in theta[row_dim].values]
    rows = result.effects.reset_index(drop=True)
    if row_dim == "comparison":
        # arm-based model: one effect per MSC arm, with no single observed yi (the arm counts are
        # the data); show the posterior only, grouped by source
        cd = result.dt["constant_data"] if "constant_data" in result.dt.children else None
        src = (np.asarray(post[gdim].values)[cd["source_idx"].values.astype(int)]
               if gdim and cd is not None and "source_idx" in cd.data_vars else np.array([""] * len(labels)))
        rows = pd.DataFrame({"yi": np.nan, "vi": np.nan, gcol: src})
    if len(rows) != len(labels):
        raise ValueError(f"result.effects has {len(rows)} rows but the posterior has {len(labels)} trials; "
                         "they must be the rows used, in model order")
    vi = rows["vi"] if "vi" in rows else rows["sei"] ** 2
    yi = rows["yi"].to_numpy(float)
    half = stats.norm.ppf(1 - (1 - ci) / 2) * np.sqrt(vi.to_numpy(float))
    t_lo, t_med, t_hi = _interval(theta, ci)
    pct = f"{ci * 100:g}%"

    # row layout, top to bottom: (label, kind, payload)
    layout: list[tuple[str, str, object]] = []
    if roles.group and roles.group in post.data_vars:
        src_of_trial = rows[gcol].astype(str).to_numpy()
        for s in post[gdim].values:
            members = np.flatnonzero(src_of_trial == str(s))
            layout += [(labels[i], "trial", i) for i in members]
            layout.append((f"{s} mean (k={len(members)})", "source", s))
    else:
        layout += [(labels[i], "trial", i) for i in range(len(labels))]
    layout.append((f"Overall mean ({roles.overall})", "overall", None))
    if roles.prediction and roles.prediction in post.data_vars:
        layout.append(("Prediction: new trial", "prediction", None))

    if ax is None:
        fig, axes = _new_figure(figsize=(8.5, 1.8 + 0.32 * len(layout)))
        ax = axes[0, 0]
    fig = ax.figure
    off = 0.16  # vertical offset between observed and shrunken markers of one trial
    handles = {}
    # every trial's two markers in two vectorised calls (one artist set each, not two per trial: drawing
    # 2 x 27 separate errorbars took most of the plot's second)
    ty = np.array([y for y, (_, kind, _) in enumerate(layout) if kind == "trial"], dtype=float)
    ti = np.array([what for _, kind, what in layout if kind == "trial"], dtype=int)
    if len(ti):
        handles[f"observed ({pct} CI)"] = ax.errorbar(yi[ti], ty - off, xerr=half[ti], fmt="o", mfc="white",
                                                        mec="0.25", ecolor="0.25", ms=5, lw=1, capsize=0)
        handles[f"shrunken (posterior median, {pct} CrI)"] = ax.errorbar(
            t_med[ti], ty + off, xerr=[t_med[ti] - t_lo[ti], t_hi[ti] - t_med[ti]], fmt="o", color="C0", ms=5,
            lw=1.5, capsize=0)
    for y, (_, kind, what) in enumerate(layout):
        if kind == "trial":
            continue
        elif kind == "source":
            lo, mid, hi = (v[0] for v in _interval(post[roles.group].sel({gdim: what}), ci))
            h = _diamond(ax, lo, mid, hi, y, facecolor="C1", edgecolor="C1")
            handles.setdefault(f"{gdim} mean ({pct} CrI)", h)
        elif kind == "overall":
            lo, mid, hi = (v[0] for v in _interval(post[roles.overall], ci))
            h = _diamond(ax, lo, mid, hi, y, facecolor="black", edgecolor="black")
            handles.setdefault(f"overall mean {roles.overall} ({pct} CrI)", h)
        else:  # prediction
            lo, _, hi = (v[0] for v in _interval(post[roles.prediction], ci))
            h = ax.hlines(y, lo, hi, color="0.45", lw=6)
            handles.setdefault(f"new trial ({pct} prediction interval)", h)
        if kind in ("source", "overall") and y + 1 < len(layout):
            ax.axhline(y + 0.5, color="0.85", lw=0.8)

    ax.axvline(0, color="0.3", lw=0.8, ls="--")
    ax.set_yticks(range(len(layout)), [label for label, _, _ in layout])
    for tick, (_, kind, _) in zip(ax.get_yticklabels(), layout):
        if kind != "trial":
            tick.set_fontweight("bold")
    ax.set_ylim(len(layout) - 0.4, -0.6)  # first row at the top
    ax.set_xlabel(_effect_label(result))
    ax.set_title(_title(result, f"Forest plot, model {result.spec.name}"))
    ax.legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8, frameon=False)
    ax.autoscale(axis="x")
    return _finish(fig, save)


# -- ranks ----------------------------------------------------------------------------------------
def rankogram(result, level: str | None = None, save=None, ax=None):
    """Rank probabilities per source (or source x origin cell, ``level="cell"``).

    Left: grouped bars of P(rank = k), rank 1 = best (most negative effect). Right: cumulative
    rank curves P(rank <= k), with each entity's SUCRA in the legend (from ``result.rank``,
    i.e. :func:`bayes_koa.ranking.rank_summary`).
    """
    probs = result.rank_probabilities(level)
    dim = next(d for d in probs.dims if d != "rank")
    probs = probs.transpose(dim, "rank")
    names = [str(v) for v in probs[dim].values]
    ranks = probs["rank"].values
    p = np.asarray(probs.values, dtype=float)
    table = result.rank(level)
    sucra = dict(zip(table[dim].astype(str), table["sucra"].astype(float)))

    if ax is not None:  # two axes (bars, cumulative) or one (bars only)
        axs = list(np.atleast_1d(ax))
        bars, cum = axs[0], (axs[1] if len(axs) > 1 else None)
        fig = bars.figure
    else:
        fig, axes = _new_figure(1, 2, figsize=(11, 4.2))
        bars, cum = axes[0]
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        x = np.arange(len(ranks)) + (j - (len(names) - 1) / 2) * width
        bars.bar(x, p[j], width=width, color=f"C{j % 10}", label=name)
        if cum is None:
            continue
        cum.plot(np.arange(len(ranks)), np.cumsum(p[j]), marker="o", color=f"C{j % 10}",
                 label=f"{name} (SUCRA {sucra[name]:.2f})")
    best = ("most negative" if result.lower_is_better else "most positive") + " effect"
    for a in (bars, cum):
        if a is None:
            continue
        a.set_xticks(np.arange(len(ranks)), [str(r) for r in ranks])
        a.set_xlabel(f"rank (1 = best: {best})")
        a.set_ylim(0, 1.02)
    bars.set_ylabel("P(rank = k)")
    bars.legend(fontsize=8, frameon=False)
    if cum is not None:
        cum.set_ylabel("P(rank \N{LESS-THAN OR EQUAL TO} k)")
        cum.legend(fontsize=8, frameon=False, loc="best")
    what = "cell" if dim == "cell" else dim
    fig.suptitle(_title(result, f"Rankogram of {what} means, model {result.spec.name} ({result.spec.measure})"))
    return _finish(fig, save)


# -- densities ------------------------------------------------------------------------------------
def source_densities(result, save=None, ax=None):
    """Posterior densities of each source mean and of the overall mean ``mu``.

    Kernel density estimates over all chains and draws; the legend gives P(effect < 0), the
    posterior probability of a benefit of MSC. Models without sources show ``mu`` only.
    """
    post = result.dt["posterior"]
    roles = get_kind(result.spec.kind).roles(result.spec)
    curves: list[tuple[str, np.ndarray, dict]] = []
    if roles.group and roles.group in post.data_vars:
        for j, s in enumerate(post[roles.group_dim].values):
            curves.append((str(s), _flat(post[roles.group].sel({roles.group_dim: s})), {"color": f"C{j % 10}"}))
    curves.append((f"overall mean {roles.overall}", _flat(post[roles.overall]), {"color": "black", "lw": 2.2, "ls": "--"}))
    if ax is None:
        fig, axes = _new_figure(figsize=(8, 4.5))
        ax = axes[0, 0]
    fig = ax.figure
    better = (lambda x: x < 0) if result.lower_is_better else (lambda x: x > 0)
    sign = "<" if result.lower_is_better else ">"
    grid = _grid([x for _, x, _ in curves])
    for name, x, style in curves:
        label = f"{name} (P{sign}0 = {np.mean(better(x)):.2f})"
        dens = _density(x, grid)
        if dens is None:  # draws that do not vary: mark the value
            ax.axvline(x[0], label=label, **style)
        else:
            ax.plot(grid, dens, label=label, **style)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel(_effect_label(result))
    ax.set_ylabel("posterior density")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, frameon=False)
    fig.suptitle(_title(result, f"Posterior of the group means, model {result.spec.name}"))
    return _finish(fig, save)


def prior_posterior(result, var: str = "tau", save=None, ax=None):
    """Prior and posterior densities of ``var`` overlaid (the prior-sensitivity picture).

    The prior is the exact density of the model's prior when ``var`` has one (``mu``, ``tau``,
    ``sigma_source``, ``sigma_origin``, ``beta_*``; read from ``result.spec``), otherwise a kernel
    density of the prior draws in ``dt["prior"]`` (pooled over any extra dims, whose elements
    share one prior). A ``var`` with extra dims (``tau`` per source, ``source_mean``) gets one
    posterior curve per element.
    """
    post = result.dt["posterior"]
    if var not in post.data_vars:
        raise ValueError(f"{var!r} is not in the posterior; it has {', '.join(map(str, post.data_vars))}")
    da = post[var]
    extra = [d for d in da.dims if d not in SAMPLE_DIMS]
    if extra:
        stacked = da.stack(_element=extra)
        elements = [(", ".join(map(str, np.atleast_1d(k))), _flat(stacked.isel(_element=i)))
                    for i, k in enumerate(stacked["_element"].values)]
    else:
        elements = [("", _flat(da))]

    spec_prior = result.spec.prior_dict.get(var)
    if spec_prior is not None and not spec_prior.is_proper():
        spec_prior = None  # an improper prior has no density to draw
    has_draws = "prior" in result.dt.children and var in result.dt["prior"].data_vars
    prior_draws = _flat(result.dt["prior"][var]) if has_draws else None
    if spec_prior is None and prior_draws is None:
        raise ValueError(f"no prior to draw for {var!r}: model {result.spec.name} gives it no proper prior "
                         "and the result has no prior draws of it (dt['prior'])")

    roles = get_kind(result.spec.kind).roles(result.spec)
    # SDs live on positive values: their kernel density is reflected at 0
    positive = (var in (*roles.heterogeneity, *roles.between_group)
                or (spec_prior is not None and spec_prior.support == "positive"))
    if ax is None:
        fig, axes = _new_figure(figsize=(8, 4.5))
        ax = axes[0, 0]
    fig = ax.figure
    # the x range covers the posterior and, when drawn, the prior
    grid = _grid([x for _, x in elements] + ([prior_draws] if prior_draws is not None else []), positive)
    if spec_prior is not None:
        ax.plot(grid, np.exp(spec_prior.logp(grid)), color="0.4", lw=2, ls="--",
                label=f"prior {spec_prior} [{spec_prior.origin or 'model file'}]")
    else:
        dens = _density(prior_draws, grid, positive)
        if dens is not None:
            ax.plot(grid, dens, color="0.4", lw=2, ls="--",
                    label="prior (draws" + (f", pooled over {', '.join(extra)})" if extra else ")"))
    for j, (name, x) in enumerate(elements):
        dens = _density(x, grid, positive)
        label = "posterior" + (f" {name}" if name else "")
        if dens is None:
            ax.axvline(x[0], color=f"C{j % 10}", label=label)
        else:
            ax.plot(grid, dens, color=f"C{j % 10}", label=label)
    if not positive:
        ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel(f"{var} ({result.spec.measure} scale)" if positive else f"{var}: {_effect_label(result)}")
    ax.set_ylabel("density")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, frameon=False)
    fig.suptitle(_title(result, f"Prior and posterior of {var}, model {result.spec.name} ({result.spec.measure})"))
    return _finish(fig, save)


def plot_ppc(result, save=None, seed: int | None = None, ci: float = 0.95, ax=None,
             predictive: Literal["conditional", "mixed"] = "conditional"):
    """Observed estimate of each trial against its posterior predictive interval.

    Bars: equal-tailed ``ci`` predictive interval, with the predictive mean; dots: observed
    estimates, red when the p-value is flagged. Returns a Figure (``save=path`` writes a PNG).
    """
    table = _checks.ppc_table(result, seed=seed, ci=ci, predictive=predictive, loo_pit=False)
    dims = _checks._obs_dims(_checks._observed(result))
    labels = _checks._row_labels(table, dims)
    n = len(table)
    if ax is None:
        fig, axes = _new_figure(figsize=(7.5, 1.8 + 0.32 * n))
        ax = axes[0, 0]
    fig = ax.figure
    ypos = np.arange(n)[::-1]
    ax.hlines(ypos, table["pp_lower"], table["pp_upper"], color="0.55", lw=2.5,
              label=f"{ci:.0%} posterior predictive interval")
    ax.plot(table["pp_mean"], ypos, "|", color="0.25", ms=12, label="predictive mean")
    flag = table["flag"].to_numpy(bool)
    ax.plot(table["y"][~flag], ypos[~flag], "o", color="C0", label="observed")
    if flag.any():
        ax.plot(table["y"][flag], ypos[flag], "o", color="C3",
                label=f"observed, p < {_checks.P_FLAG[0]} or > {_checks.P_FLAG[1]}")
    ax.set_yticks(ypos, labels)
    ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel(_effect_label(result))
    fig.legend(loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    ax.set_title(_title(result, f"Posterior predictive check ({predictive}): model {result.spec.name}"),
                 fontsize="medium")
    return _finish(fig, save)
