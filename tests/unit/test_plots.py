"""Plots of a hand-built MetaAnalysis (no sampling): figures are returned, PNGs written, and what
is drawn is checked against values computed here with NumPy/SciPy from the same draws and data."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402
from scipy import stats  # noqa: E402

from bayes_koa.plots import figures as plots# noqa: E402
from bayes_koa.api.result import MetaAnalysis# noqa: E402
from bayes_koa.kinds import load_spec# noqa: E402

CHAINS, DRAWS = 2, 50
TRIALS = ["Trial_A", "Trial_B", "Trial_C", "Trial_D", "Trial_E"]
SOURCE_OF_TRIAL = ["UC", "BM", "UC", "AD", "BM"]  # deliberately not grouped: the plot must group them
SOURCES = ["BM", "UC", "AD"]  # model order (bayes_koa.kinds.common.SOURCE_ORDER)
YI = np.array([-0.8, -0.3, -0.5, 0.1, -0.2])
VI = np.array([0.04, 0.09, 0.0625, 0.16, 0.01])
Z975 = 1.959963984540054  # 97.5% quantile of the standard normal (Abramowitz & Stegun 26.2)


def _draws(rng, loc, scale, *extra):
    return loc + scale * rng.standard_normal((CHAINS, DRAWS, *extra))


def _make_result(model: str = "source_hierarchical", simulated: bool = False, prior: bool = True,
                 per_source_tau: bool = False) -> MetaAnalysis:
    """A MetaAnalysis with random draws of the right dims, as bayes_koa.fitting would store them."""
    rng = np.random.default_rng(20261101)
    spec = load_spec(model, measure="SMD")
    cd = ("chain", "draw")
    coords = {"chain": np.arange(CHAINS), "draw": np.arange(DRAWS), "trial": TRIALS}
    post = {"mu": (cd, _draws(rng, -0.4, 0.15)), "theta": (cd + ("trial",), _draws(rng, YI, 0.1, len(TRIALS)))}
    if spec.kind != "fixed":
        post["tau"] = (cd, np.abs(_draws(rng, 0.0, 0.3)))
        post["theta_new"] = (cd, _draws(rng, -0.4, 0.4))
    if "source" in spec.get("levels", ()):
        coords["source"] = SOURCES
        post["sigma_source"] = (cd, np.abs(_draws(rng, 0.0, 0.2)))
        post["source_mean"] = (cd + ("source",), _draws(rng, np.array([-0.3, -0.6, 0.05]), 0.2, 3))
        post["theta_new_source"] = (cd + ("source",), _draws(rng, np.array([-0.3, -0.6, 0.05]), 0.4, 3))
        if per_source_tau:
            post["tau"] = (cd + ("source",), np.abs(_draws(rng, 0.0, 0.3, 3)))
    dt = xr.DataTree.from_dict({
        "posterior": xr.Dataset(post, coords=coords),
        "observed_data": xr.Dataset({"y_obs": ("trial", YI)}, coords={"trial": TRIALS}),
        "constant_data": xr.Dataset({"se": ("trial", np.sqrt(VI)),
                                     "source_idx": ("trial", [SOURCES.index(s) for s in SOURCE_OF_TRIAL])},
                                    coords={"trial": TRIALS}),
    })
    if prior and "source" in spec.get("levels", ()):
        pc = {"chain": [0], "draw": np.arange(200)}
        dt["prior"] = xr.DataTree(xr.Dataset({
            "mu": (cd, rng.normal(0, 1, (1, 200))),
            "source_mean": (cd + ("source",), rng.normal(0, 1, (1, 200, 3))),
        }, coords={**pc, "source": SOURCES}))
    dt.attrs["bayes_koa_simulated"] = int(simulated)
    effects = pd.DataFrame({"trial_id": TRIALS, "yi": YI, "vi": VI, "cell_source": SOURCE_OF_TRIAL,
                            "excluded_reason": ""})
    return MetaAnalysis(dt=dt, spec=spec, effects=effects, excluded=effects.iloc[0:0])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _q(x, p):
    return np.quantile(np.asarray(x).ravel(), p)


def _rows(ax) -> dict[str, float]:
    """Forest row label -> its y position."""
    return {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}


def _errorbar_at(ax, y: float, tol: float = 0.3) -> list[tuple[float, float, float]]:
    """(x of marker, left end, right end) of the error bars drawn within ``tol`` of row ``y``."""
    out = []
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            line, _, (bars,) = c.lines  # one container may hold many rows' bars (one per point)
            for x0, y0, seg in zip(line.get_xdata(), line.get_ydata(), bars.get_segments()):
                if abs(y0 - y) < tol:
                    a, b = seg[:, 0]
                    out.append((x0, a, b))
    return out


def _png_size(path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG header (IHDR chunk, bytes 16-24)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# -- forest ---------------------------------------------------------------------------------------
def test_forest_rows_grouped_by_source_then_overall_and_prediction():
    fig = plots.forest(_make_result())
    assert isinstance(fig, Figure)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["Trial_B", "Trial_E", "BM mean (k=2)",
                      "Trial_A", "Trial_C", "UC mean (k=2)",
                      "Trial_D", "AD mean (k=1)",
                      "Overall mean (mu)", "Prediction: new trial"]


def test_forest_draws_observed_ci_shrunken_interval_and_diamonds():
    res = _make_result()
    ax = plots.forest(res).axes[0]
    rows = _rows(ax)
    post = res.dt["posterior"]
    # tolerance 1e-9: the same quantiles computed twice (xarray vs NumPy, both linear interpolation);
    # differences are floating-point rounding only
    for i, trial in enumerate(TRIALS):
        (obs, shrunk) = sorted(_errorbar_at(ax, rows[trial]), key=lambda e: e[0] != YI[i])
        half = Z975 * np.sqrt(VI[i])  # closed form: yi +- 1.96 sqrt(vi)
        assert obs == pytest.approx((YI[i], YI[i] - half, YI[i] + half), abs=1e-9)
        th = post["theta"].sel(trial=trial).values
        assert shrunk == pytest.approx((_q(th, 0.5), _q(th, 0.025), _q(th, 0.975)), abs=1e-9)
    diamonds = {round(float(p.get_xy()[0, 1]), 6): p.get_xy() for p in ax.patches if isinstance(p, Polygon)}
    for label, draws in [("BM mean (k=2)", post["source_mean"].sel(source="BM").values),
                         ("AD mean (k=1)", post["source_mean"].sel(source="AD").values),
                         ("Overall mean (mu)", post["mu"].values)]:
        xy = diamonds[round(rows[label], 6)]
        assert xy[0, 0] == pytest.approx(_q(draws, 0.025), abs=1e-9)
        assert xy[1, 0] == pytest.approx(_q(draws, 0.5), abs=1e-9)
        assert xy[2, 0] == pytest.approx(_q(draws, 0.975), abs=1e-9)
    (bar,) = [c for c in ax.collections if isinstance(c, LineCollection) and len(c.get_segments()) == 1
              and c.get_segments()[0][0, 1] == rows["Prediction: new trial"]]
    nt = post["theta_new"].values
    assert bar.get_segments()[0][:, 0] == pytest.approx([_q(nt, 0.025), _q(nt, 0.975)], abs=1e-9)


def test_forest_ci_argument_sets_every_interval():
    res = _make_result()
    ax = plots.forest(res, ci=0.8).axes[0]
    z90 = 1.2815515655446004  # 90% quantile of the standard normal: the 80% interval's half-width
    (obs, _) = sorted(_errorbar_at(ax, _rows(ax)["Trial_A"]), key=lambda e: e[0] != YI[0])
    assert obs[2] - obs[1] == pytest.approx(2 * z90 * np.sqrt(VI[0]), abs=1e-9)  # rounding only
    assert "80% CI" in " ".join(t.get_text() for t in ax.get_legend().get_texts())


def test_forest_labels_title_and_zero_line():
    ax = plots.forest(_make_result()).axes[0]
    assert ax.get_xlabel().startswith("SMD") and "negative = favours MSC" in ax.get_xlabel()
    assert "source_hierarchical" in ax.get_title()
    assert not ax.get_title().startswith("SIMULATED")
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())


def test_forest_simulated_title():
    ax = plots.forest(_make_result(simulated=True)).axes[0]
    assert ax.get_title().startswith("SIMULATED")


@pytest.mark.parametrize("model, extra_rows", [("random_effects", ["Overall mean (mu)", "Prediction: new trial"]),
                                               ("fixed_effect", ["Overall mean (mu)"])])
def test_forest_without_sources(model, extra_rows):
    fig = plots.forest(_make_result(model))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == TRIALS + extra_rows  # model order, no source groups
    assert model in fig.axes[0].get_title()


def test_forest_on_given_axes_returns_its_figure():
    fig, (left, right) = plt.subplots(1, 2)
    assert plots.forest(_make_result(), ax=right) is fig
    assert len(right.get_yticks()) == len(TRIALS) + 3 + 2 and not left.has_data()


def test_forest_rejects_effects_not_matching_the_posterior():
    res = _make_result()
    res.effects = res.effects.iloc[:4]
    with pytest.raises(ValueError, match="5 trials"):
        plots.forest(res)


def test_save_writes_png_at_150_dpi(tmp_path):
    fig = plots.forest(_make_result(), save=tmp_path / "sub" / "forest.png")
    path = tmp_path / "sub" / "forest.png"
    assert path.stat().st_size > 0
    w, h = fig.get_size_inches() * 150
    assert _png_size(path) == (round(w), round(h))


# -- rankogram ------------------------------------------------------------------------------------
def _independent_rank_probs(draws: np.ndarray) -> np.ndarray:
    """P(rank = k) per entity (rows) from draws (n, entity); rank 1 = lowest (most negative)."""
    ranks = np.argsort(np.argsort(draws, axis=1), axis=1)  # 0 = lowest
    k = draws.shape[1]
    return np.array([[np.mean(ranks[:, j] == r) for r in range(k)] for j in range(k)])


def test_rankogram_bars_are_rank_probabilities(tmp_path):
    res = _make_result()
    fig = plots.rankogram(res, save=tmp_path / "rank.png")
    assert isinstance(fig, Figure) and (tmp_path / "rank.png").stat().st_size > 0
    bars = fig.axes[0]
    sm = res.dt["posterior"]["source_mean"].transpose("chain", "draw", "source").values.reshape(-1, 3)
    expected = _independent_rank_probs(sm)  # rows in SOURCES order
    heights = np.array([[b.get_height() for b in c] for c in bars.containers])
    # tolerance 1e-12: both are proportions of the same 100 draws; only rounding can differ
    np.testing.assert_allclose(heights, expected, atol=1e-12)
    assert [t.get_text() for t in bars.get_legend().get_texts()] == SOURCES
    cum = fig.axes[1]
    for line, p in zip(cum.get_lines(), expected):
        np.testing.assert_allclose(line.get_ydata(), np.cumsum(p), atol=1e-12)  # rounding only
    # SUCRA = (K - E[rank]) / (K - 1) (Ruecker & Schwarzer 2015, BMC Med Res Methodol 15:58)
    mean_rank = expected @ np.arange(1, 4)
    sucra = (3 - mean_rank) / 2
    texts = [t.get_text() for t in cum.get_legend().get_texts()]
    assert [t.split(" (SUCRA ")[0] for t in texts] == SOURCES
    shown = [float(t.split(" (SUCRA ")[1].rstrip(")")) for t in texts]
    # the legend shows 2 decimals: at most half a unit of the last digit away
    np.testing.assert_allclose(shown, sucra, atol=0.005 + 1e-9)
    assert not fig.get_suptitle().startswith("SIMULATED")


def test_rankogram_simulated_title():
    fig = plots.rankogram(_make_result(simulated=True))
    assert fig.get_suptitle().startswith("SIMULATED")


def test_rankogram_needs_a_source_level():
    with pytest.raises(ValueError, match="no group level"):
        plots.rankogram(_make_result("random_effects"))


# -- densities ------------------------------------------------------------------------------------
def test_source_densities_one_curve_per_source_and_mu(tmp_path):
    res = _make_result()
    fig = plots.source_densities(res, save=tmp_path / "dens.png")
    assert isinstance(fig, Figure) and (tmp_path / "dens.png").stat().st_size > 0
    ax = fig.axes[0]
    post = res.dt["posterior"]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    p_benefit = [np.mean(post["source_mean"].sel(source=s).values < 0) for s in SOURCES]
    p_benefit.append(np.mean(post["mu"].values < 0))
    assert texts == [f"{name} (P<0 = {p:.2f})" for name, p in zip(SOURCES + ["overall mean mu"], p_benefit)]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
    assert len(curves) == 4
    for line in curves:
        # a density integrates to 1; the grid stops 10% of the 0.1-99.9% range beyond it, so the
        # kernel tails left out hold well under 2% of the mass with 100 draws
        assert np.trapezoid(line.get_ydata(), line.get_xdata()) == pytest.approx(1.0, abs=0.02)
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())
    assert "negative = favours MSC" in ax.get_xlabel()


def test_source_densities_simulated_and_without_sources():
    assert plots.source_densities(_make_result(simulated=True)).get_suptitle().startswith("SIMULATED")
    fig = plots.source_densities(_make_result("random_effects"))
    assert [t.get_text().split(" (")[0] for t in fig.axes[0].get_legend().get_texts()] == ["overall mean mu"]


# -- prior vs posterior ---------------------------------------------------------------------------
def test_prior_posterior_tau_uses_the_exact_prior_density(tmp_path):
    res = _make_result()
    fig = plots.prior_posterior(res, "tau", save=tmp_path / "tau.png")
    assert isinstance(fig, Figure) and (tmp_path / "tau.png").stat().st_size > 0
    ax = fig.axes[0]
    prior_line, post_line = ax.get_lines()[:2]
    assert prior_line.get_label() == "prior HalfNormal(sigma=0.5) [model file source_hierarchical.toml]"
    x = prior_line.get_xdata()
    assert x.min() >= 0
    # source_hierarchical.toml, [priors.SMD]: tau ~ HalfNormal(sigma=0.5); closed-form density,
    # identical up to rounding
    np.testing.assert_allclose(prior_line.get_ydata(), stats.halfnorm.pdf(x, scale=0.5), rtol=1e-12)
    # posterior of a positive parameter: the density is reflected at 0, so it integrates to 1 on
    # [0, upper end]; the upper tail left out holds well under 2% of the mass with 100 draws
    assert np.trapezoid(post_line.get_ydata(), post_line.get_xdata()) == pytest.approx(1.0, abs=0.02)


def test_prior_posterior_per_source_tau_and_derived_variables():
    res = _make_result(per_source_tau=True)
    labels = [line.get_label() for line in plots.prior_posterior(res, "tau").axes[0].get_lines()]
    assert labels[1:] == [f"posterior {s}" for s in SOURCES]
    # source_mean has no prior of its own in the spec: the prior draws are used, pooled over source
    labels = [line.get_label() for line in plots.prior_posterior(res, "source_mean").axes[0].get_lines()]
    assert labels[0] == "prior (draws, pooled over source)"


def test_prior_posterior_errors_and_simulated():
    res = _make_result(simulated=True)
    assert plots.prior_posterior(res, "mu").get_suptitle().startswith("SIMULATED")
    with pytest.raises(ValueError, match="theta_new"):
        plots.prior_posterior(res, "theta_new")  # no prior in the spec, none in dt['prior']
    with pytest.raises(ValueError, match="not in the posterior"):
        plots.prior_posterior(res, "sigma_origin")
