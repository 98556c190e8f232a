"""bayes_koa.plots.funnel: the figure draws every trial and the contours center +/- z sei."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure

from bayes_koa.plots.funnel import funnel

YI = np.array([-0.9, -0.4, 0.1, -1.6, -0.2, 0.5])
SEI = np.array([0.45, 0.2, 0.15, 0.6, 0.35, 0.3])
# standard normal quantiles z_{0.95}, z_{0.975}, z_{0.995} (Abramowitz & Stegun Table 26.5, 10 digits)
Z = {0.90: 1.6448536270, 0.95: 1.9599639845, 0.99: 2.5758293035}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _by_gid(ax, gid):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def test_points_are_the_trials():
    fig = funnel(YI, SEI)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    (pts,) = _by_gid(ax, "trials")
    assert isinstance(pts, PathCollection)
    np.testing.assert_allclose(pts.get_offsets(), np.column_stack([YI, SEI]))


@pytest.mark.parametrize("center", [0.0, -0.5])
def test_contours_are_center_plus_minus_z_sei(center):
    ax = funnel(YI, SEI, center=center).axes[0]
    top = 1.05 * SEI.max()
    for level, z in Z.items():
        for side, sign in (("lower", -1), ("upper", 1)):
            (line,) = _by_gid(ax, f"contour_{level:.2f}_{side}")
            x, y = line.get_data()
            np.testing.assert_allclose(y, [0.0, top])
            np.testing.assert_allclose(x, center + sign * z * np.asarray(y), atol=1e-9)  # 10-digit z
    (c,) = _by_gid(ax, "center")
    assert c.get_xdata()[0] == center
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["p > 0.1", "0.05 < p < 0.1", "0.01 < p < 0.05", "p < 0.01", "trials"]
    # shaded regions: one background band plus one per contour level
    assert len([a for a in ax.collections if isinstance(a, PolyCollection)]) == 1 + len(Z)


def test_standard_error_axis_is_inverted_and_covers_the_points():
    ax = funnel(YI, SEI).axes[0]
    lo, hi = ax.get_ylim()
    assert lo == pytest.approx(1.05 * SEI.max()) and hi == 0
    xlo, xhi = ax.get_xlim()
    assert xlo < YI.min() and xhi > YI.max()
    assert ax.get_ylabel() == "standard error"


def test_given_axes_estimate_labels_and_save(tmp_path):
    fig0, ax0 = plt.subplots()
    fig = funnel(YI, vi=SEI ** 2, ax=ax0, estimate=-0.3, labels=[f"T{i}" for i in range(6)],
                 levels=(0.95,), save=tmp_path / "f.png", xlabel="log RR")
    assert fig is fig0
    (est,) = _by_gid(ax0, "estimate")
    assert est.get_xdata()[0] == -0.3
    assert [t.get_text() for t in ax0.texts] == [f"T{i}" for i in range(6)]
    assert len(_by_gid(ax0, "contour_0.95_lower")) == 1 and not _by_gid(ax0, "contour_0.90_lower")
    assert ax0.get_xlabel() == "log RR"
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_bad_input_raises():
    with pytest.raises(ValueError, match="sei must be positive"):
        funnel(YI, -SEI)
    with pytest.raises(TypeError, match="exactly one"):
        funnel(YI)
