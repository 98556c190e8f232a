"""Network graph of a network meta-analysis: treatments as nodes, direct comparisons as edges.

:func:`plot_network` draws the network a result of the ``network`` kind was fitted to
(:func:`bayes_koa.kinds.network.network_graph`): node area proportional to the patients randomised
to the treatment (to its arms when some arm has no n), edge width proportional to the number of
trials comparing the two treatments directly. Nodes sit on a circle in the network's order (the
reference at the top, comparators, then the MSC class nodes grouped by source); MSC nodes are
coloured by source. The figure is returned, never shown; ``ax=`` draws into an existing Axes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..kinds.network import network_graph

__all__ = ["plot_network"]

DPI = 150
_COMPARATOR_COLOUR = "#9e9e9e"
_SOURCE_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


def plot_network(result, ax=None, *, max_node_area: float = 1800.0, min_node_area: float = 150.0,
                 max_edge_width: float = 8.0, edge_labels: bool = True, title: str | None = None, save=None):
    """Draw the network of ``result`` (a fitted network result, or its design rows).

    Node area is proportional to the number of patients (``n_patients``; the number of arms when
    any arm lacks n), scaled so the largest node has ``max_node_area`` points^2 (at least
    ``min_node_area``); edge width to the number of trials comparing the two nodes directly (the
    largest ``max_edge_width`` points), labelled with that number when ``edge_labels``. Returns the
    :class:`matplotlib.figure.Figure`; the drawn artists carry ``gid`` ``node:<label>`` and
    ``edge:<a>|<b>``.
    """
    nodes, edges = network_graph(result)
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 6.5), layout="constrained")
    else:
        fig = ax.figure
    labels = list(nodes["treatment"])
    k = len(labels)
    angle = np.pi / 2 - 2 * np.pi * np.arange(k) / k
    pos = {t: (float(np.cos(a)), float(np.sin(a))) for t, a in zip(labels, angle)}
    size_by = "n_patients" if nodes["n_patients"].notna().all() else "n_arms"
    size = nodes[size_by].to_numpy(float)
    area = np.maximum(min_node_area, max_node_area * size / size.max())
    rows = getattr(result, "effects", result)
    spec = getattr(result, "spec", None)
    gcol = spec.get("group", "cell_source") if spec is not None else "cell_source"
    src_of = {}
    if gcol in rows:
        s = rows.drop_duplicates("nma_node").set_index("nma_node")[gcol]
        src_of = {t: str(v) for t, v in s.items() if isinstance(v, str) and v.strip()}
    sources = list(dict.fromkeys(src_of[t] for t in labels if t in src_of))
    colour = {t: (_SOURCE_COLOURS[sources.index(src_of[t]) % len(_SOURCE_COLOURS)] if t in src_of
                  else _COMPARATOR_COLOUR) for t in labels}
    wmax = float(edges["n_trials"].max()) if len(edges) else 1.0
    for a, b, n in zip(edges["treatment"], edges["comparator"], edges["n_trials"]):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ax.plot([x0, x1], [y0, y1], color="#555555", linewidth=max(0.8, max_edge_width * n / wmax),
                solid_capstyle="round", zorder=1, gid=f"edge:{a}|{b}")
        if edge_labels:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, str(int(n)), fontsize=8, ha="center", va="center", zorder=3,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8))
    for t, s in zip(labels, area):
        x, y = pos[t]
        ax.scatter([x], [y], s=float(s), color=colour[t], edgecolor="black", linewidth=0.6, zorder=2, gid=f"node:{t}")
        ax.annotate(t, (x, y), xytext=(x * 1.18, y * 1.18), textcoords="data", ha="center", va="center",
                    fontsize=9)
    ax.set_xlim(-1.55, 1.55)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.axis("off")
    what = "patients" if size_by == "n_patients" else "arms"
    n_trials = rows["nma_trial"].nunique()
    sim = "SIMULATED data. " if bool(getattr(result, "simulated", False)) else ""
    ax.set_title(title or f"{sim}Network: {k} treatments, {n_trials} trials (node area = {what}, edge width = trials)",
                 fontsize=10)
    if save is not None:
        fig.savefig(Path(save), dpi=DPI)
    return fig
