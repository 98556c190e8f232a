"""Cumulative meta-analysis plot: the pooled effect (with its 95% interval) and P(best) per group as
trials accrue (the table of :func:`bayes_koa.workflows.evidence.cumulative`). Figure returned, ``ax=``
accepted (a pair of Axes: effect, P(best)); ``save=path`` writes a PNG at 150 dpi."""

from __future__ import annotations

from pathlib import Path

__all__ = ["cumulative_plot"]


def cumulative_plot(table, by: str = "year", ax=None, *, ylabel: str = "pooled effect", title: str | None = None,
                    save=None):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(9.0, 3.6), layout="constrained")
    fig = ax[0].figure
    x = table[by].to_numpy()
    ax[0].fill_between(x, table["mu_lb"], table["mu_ub"], color="tab:blue", alpha=0.2, linewidth=0,
                       label="95% interval")
    ax[0].plot(x, table["mu_mean"], "o-", color="tab:blue", gid="mu_mean", label="posterior mean")
    ax[0].axhline(0, color="black", linewidth=0.7)
    ax[0].set_xlabel(by)
    ax[0].set_ylabel(ylabel)
    ax[0].legend(fontsize=7)
    for c in [c for c in table.columns if c.startswith("P(best) ")]:
        ax[1].plot(x, table[c], "o-", label=c.removeprefix("P(best) "), gid=c)
    ax[1].set_ylim(-0.02, 1.02)
    ax[1].set_xlabel(by)
    ax[1].set_ylabel("P(best)")
    if ax[1].lines:
        ax[1].legend(fontsize=7)
    fig.suptitle(title or f"Cumulative meta-analysis by {by}")
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=150)
    return fig
