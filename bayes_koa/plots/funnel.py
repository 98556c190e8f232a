"""Contour-enhanced funnel plot (Peters et al. 2008, J Clin Epidemiol 61:991-996).

:func:`funnel` draws each trial at (effect ``yi``, standard error ``sei``), the standard error axis
inverted (precise trials at the top), and the pseudo-confidence contours ``center +/- z sei`` of
:func:`bayes_koa.analysis.small_study.funnel_data` at 90/95/99%, the regions between them shaded.
With ``center=0`` (default) the shading marks where a trial's effect is two-sidedly significant at
10%, 5% and 1%; pass a pooled estimate as ``center`` for the classical funnel. The figure is
returned, never shown; ``save=path`` also writes a PNG at 150 dpi.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.small_study import FUNNEL_LEVELS, funnel_data

__all__ = ["funnel"]

DPI = 150
# light to dark grey from the innermost region outwards (white inside the lowest level)
_SHADES = ("#ffffff", "#e3e3e3", "#c4c4c4", "#a0a0a0")


def funnel(yi, sei=None, ax=None, *, vi=None, center: float = 0.0, levels=FUNNEL_LEVELS,
           estimate: float | None = None, labels=None, xlabel: str = "effect",
           title: str | None = None, sei_max: float | None = None, save=None):
    """Contour-enhanced funnel plot of effects ``yi`` with standard errors ``sei`` (or variances ``vi``).

    ``ax``: draw into this Axes (its figure is returned); otherwise a new figure. ``center``: where
    the contours meet at ``sei = 0``; ``levels``: contour confidence levels; ``estimate``: a pooled
    estimate drawn as a dashed vertical line; ``labels``: trial labels written beside the points.
    Returns the :class:`matplotlib.figure.Figure`."""
    data = funnel_data(yi, sei, vi=vi, center=center, levels=levels, sei_max=sei_max,
                       trial_ids=labels)
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.0, 4.5), layout="constrained")
    else:
        fig = ax.figure
    top = data.sei_max
    pts = data.points
    span = max(float(np.max(np.abs(pts["yi"] - center))), float(data.contours["upper"].max() - center))
    xlo, xhi = center - 1.05 * span, center + 1.05 * span

    # shaded regions: outside the widest contour darkest, inside the narrowest white
    ax.fill_between([xlo, xhi], 0, top, color=_SHADES[min(len(data.levels), len(_SHADES) - 1)],
                    zorder=0, linewidth=0)
    for i, level in reversed(list(enumerate(data.levels))):
        c = data.contours[data.contours["level"] == level]
        ax.fill_betweenx(c["sei"], c["lower"], c["upper"], color=_SHADES[min(i, len(_SHADES) - 1)],
                         zorder=1, linewidth=0)
    for level in data.levels:
        c = data.contours[data.contours["level"] == level]
        for side in ("lower", "upper"):
            ax.plot(c[side], c["sei"], color="black", linewidth=0.6, zorder=2,
                    gid=f"contour_{level:.2f}_{side}")
    ax.axvline(center, color="black", linewidth=0.8, zorder=2, gid="center")
    if estimate is not None:
        ax.axvline(estimate, color="tab:blue", linestyle="--", linewidth=1.0, zorder=2, gid="estimate",
                   label="pooled estimate")
    ax.scatter(pts["yi"], pts["sei"], s=24, color="black", edgecolor="white", linewidth=0.5, zorder=3,
               gid="trials", label="trials")
    if labels is not None:
        for _, row in pts.iterrows():
            ax.annotate(str(row["trial_id"]), (row["yi"], row["sei"]), xytext=(4, 2),
                        textcoords="offset points", fontsize=7, zorder=4)
    from matplotlib.patches import Patch

    alphas = [1 - lv for lv in data.levels]  # two-sided significance of each contour
    names = [f"p > {alphas[0]:.2g}"] + [f"{b:.2g} < p < {a:.2g}" for a, b in zip(alphas[:-1], alphas[1:])] \
        + [f"p < {alphas[-1]:.2g}"]
    handles = [Patch(facecolor=_SHADES[min(i, len(_SHADES) - 1)], edgecolor="black", linewidth=0.4, label=n)
               for i, n in enumerate(names)]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="lower right",
              title=f"two-sided p vs {center:g}", title_fontsize=7, framealpha=0.9)
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(top, 0)  # inverted: precise trials at the top
    ax.set_xlabel(xlabel)
    ax.set_ylabel("standard error")
    bands = ", ".join(f"{lv:.0%}" for lv in data.levels)
    ax.set_title(title if title is not None else f"Funnel plot; contours at {bands} around {center:g}")
    if save is not None:
        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    return fig
