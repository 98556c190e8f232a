"""bayes_koa.ranking on hand-made draws whose rank probabilities are known exactly.

Tolerances: ``abs=1e-15`` / ``rtol=1e-12`` compare a share of a finite set of constructed draws
(or an exact identity such as SUCRA = (K - E[rank])/(K - 1)) with its exact value, so only the
floating-point rounding of a mean over at most 20,000 numbers can differ. Monte Carlo comparisons
state their multiple of the MC SE where they are made.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import integrate, stats

from bayes_koa.analysis.ranking import cumulative_rank_probabilities, mcse_mean, p_best, pairwise_better, rank_probabilities, rank_summary, ranks, sucra

SOURCES = ["UC", "AD", "BM"]


def make(values, dim="source", labels=SOURCES, chains=1) -> xr.DataArray:
    """(n_draws, K) array -> DataArray (chain, draw, dim)."""
    values = np.asarray(values, dtype=float)
    values = values.reshape(chains, -1, values.shape[-1])
    return xr.DataArray(values, dims=("chain", "draw", dim), coords={dim: labels[: values.shape[-1]]})


def test_deterministic_order():
    # UC < AD < BM in every draw: with lower-is-better UC is always 1st, BM always 3rd
    draws = make(np.tile([-1.0, 0.0, 2.0], (50, 1)))
    np.testing.assert_array_equal(ranks(draws).values[0], np.tile([1, 2, 3], (50, 1)))
    np.testing.assert_array_equal(rank_probabilities(draws).values, np.eye(3))
    np.testing.assert_array_equal(cumulative_rank_probabilities(draws).values,
                                  [[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(p_best(draws).values, [1, 0, 0])
    s = sucra(draws).set_index("source")
    np.testing.assert_array_equal(s["sucra"].values, [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(s["sucra_lower"].values, [1.0, 0.5, 0.0])  # no uncertainty
    np.testing.assert_array_equal(s["sucra_upper"].values, [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(s["sucra_mcse"].values, [0, 0, 0])  # constant over draws


def test_direction_flag_reverses_everything():
    draws = make(np.tile([-1.0, 0.0, 2.0], (50, 1)))
    np.testing.assert_array_equal(ranks(draws, lower_is_better=False).values[0, 0], [3, 2, 1])
    np.testing.assert_array_equal(p_best(draws, lower_is_better=False).values, [0, 0, 1])
    s = sucra(draws, lower_is_better=False).set_index("source")["sucra"]
    np.testing.assert_array_equal(s.values, [0.0, 0.5, 1.0])


def test_two_entities_known_fraction():
    # A below B in exactly 300 of 1000 draws (shuffled so the chains are not sorted)
    rng = np.random.default_rng(1)
    a_first = np.r_[np.ones(300, bool), np.zeros(700, bool)]
    rng.shuffle(a_first)
    vals = np.where(a_first[:, None], [0.0, 1.0], [1.0, 0.0])
    draws = make(vals, labels=["A", "B"], chains=2)
    probs = rank_probabilities(draws)
    assert probs.sel(source="A", rank=1).item() == pytest.approx(0.3, abs=1e-15)
    assert probs.sel(source="B", rank=1).item() == pytest.approx(0.7, abs=1e-15)
    pw = pairwise_better(draws).to_pandas()
    assert pw.loc["A", "B"] == pytest.approx(0.3, abs=1e-15)
    assert pw.loc["B", "A"] == pytest.approx(0.7, abs=1e-15)
    assert np.isnan(pw.loc["A", "A"])
    s = sucra(draws).set_index("source")["sucra"]
    # K = 2: SUCRA = P(rank 1)
    assert s["A"] == pytest.approx(0.3, abs=1e-15)


def test_ties_split_rank_probability_equally():
    # all three equal in every draw: each entity holds each rank with probability 1/3
    draws = make(np.zeros((30, 3)))
    np.testing.assert_allclose(rank_probabilities(draws).values, 1 / 3, rtol=1e-15)
    np.testing.assert_array_equal(ranks(draws).values, 2.0)  # average rank
    np.testing.assert_allclose(sucra(draws)["sucra"].values, 0.5, rtol=1e-15)
    pw = pairwise_better(draws).to_pandas()
    assert pw.loc["UC", "AD"] == 0.5
    # AD and BM tie for 2nd/3rd, UC always 1st
    draws = make(np.tile([-1.0, 1.0, 1.0], (10, 1)))
    probs = rank_probabilities(draws).sel(source="AD").values
    np.testing.assert_allclose(probs, [0, 0.5, 0.5], rtol=1e-15)
    # random tie-breaking: a permutation of 1..K in every draw, reproducible with the seed,
    # and its frequencies estimate the 1/2-1/2 split above
    r1 = ranks(make(np.tile([-1.0, 1.0, 1.0], (4000, 1))), ties="random", seed=3)
    r2 = ranks(make(np.tile([-1.0, 1.0, 1.0], (4000, 1))), ties="random", seed=3)
    xr.testing.assert_equal(r1, r2)
    np.testing.assert_array_equal(np.sort(r1.values, axis=-1)[0], np.tile([1, 2, 3], (4000, 1)))
    frac = float((r1.sel(source="AD") == 2).mean())
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / 4000)  # 4 binomial SEs


def _p_best_normals(means, sds):
    """P(X_j is the smallest) for independent normals, by 1-D quadrature."""
    out = []
    for j in range(len(means)):
        def f(x, j=j):
            others = [stats.norm.sf(x, m, s) for i, (m, s) in enumerate(zip(means, sds)) if i != j]
            return stats.norm.pdf(x, means[j], sds[j]) * np.prod(others)
        out.append(integrate.quad(f, -np.inf, np.inf, epsabs=1e-12)[0])
    return np.array(out)


def test_three_independent_normals_against_quadrature():
    means, sds = np.array([0.0, 0.3, 1.0]), np.array([1.0, 0.8, 1.5])
    n_chain, n_draw = 4, 5000
    rng = np.random.default_rng(20240611)
    draws = make(rng.normal(means, sds, size=(n_chain * n_draw, 3)), chains=n_chain)
    exact = _p_best_normals(means, sds)
    assert exact.sum() == pytest.approx(1.0, abs=1e-9)  # the reference itself is consistent
    summ = rank_summary(draws).set_index("source")
    n = n_chain * n_draw
    for label, p in zip(SOURCES, exact):
        # 4 MC SEs: for iid draws the estimate is within 4 SE with probability 0.99994, so with
        # three checks a correct implementation fails with probability < 2e-4 (seed fixed anyway)
        assert abs(summ.loc[label, "p_best"] - p) < 4 * summ.loc[label, "p_best_mcse"]
        # iid draws: the ESS-based SE should be the binomial SE sqrt(p(1-p)/n); ESS estimates of
        # iid series scatter by a few percent, hence 15%
        assert summ.loc[label, "p_best_mcse"] == pytest.approx(math.sqrt(p * (1 - p) / n), rel=0.15)
    # P(row better than column) = P(X_i < X_j) = Phi((m_j - m_i)/sqrt(s_i^2 + s_j^2))
    pw = pairwise_better(draws).to_pandas()
    for i, a in enumerate(SOURCES):
        for j, b in enumerate(SOURCES):
            if i != j:
                p = stats.norm.cdf((means[j] - means[i]) / math.hypot(sds[i], sds[j]))
                assert abs(pw.loc[a, b] - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_sucra_equals_salanti_definition_and_mean_rank():
    rng = np.random.default_rng(5)
    draws = make(rng.normal([0.0, 0.2, 0.5, 0.4], 1.0, size=(2000, 4)), labels=list("ABCD"), chains=2)
    k = 4
    cum = cumulative_rank_probabilities(draws)
    # Salanti et al. (2011): SUCRA_j = sum_{k=1}^{K-1} cum_j(k) / (K-1)
    salanti = cum.sel(rank=slice(1, k - 1)).sum("rank") / (k - 1)
    summ = rank_summary(draws).set_index("source")
    np.testing.assert_allclose(summ["sucra"].values, salanti.values, rtol=1e-12)
    np.testing.assert_allclose(summ["sucra"].values, (k - summ["mean_rank"].values) / (k - 1),
                               rtol=1e-12)
    # rank probabilities: rows and columns sum to 1
    probs = summ[[f"P(rank={r})" for r in range(1, k + 1)]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-12)
    assert list(summ.columns[:9]) == ["mean_rank", "mean_rank_mcse", "median_rank", "p_best",
                                      "p_best_mcse", "sucra", "sucra_lower", "sucra_upper",
                                      "sucra_mcse"]


def test_sucra_interval_is_scaled_rank_interval():
    # entity A: rank 1 in 50% of draws, rank 2 in 30%, rank 3 in 20% (constructed orders)
    orders = ([[0.0, 1.0, 2.0]] * 50 + [[1.0, 0.0, 2.0]] * 30 + [[2.0, 0.0, 1.0]] * 20)
    draws = make(np.array(orders), labels=["A", "B", "C"])
    s = sucra(draws, ci=0.95).set_index("source")
    # SUCRA_A = (3 - E[rank])/2 with E[rank] = 0.5*1 + 0.3*2 + 0.2*3 = 1.7
    assert s.loc["A", "sucra"] == pytest.approx(0.65, abs=1e-15)
    # scaled rank of A: 1 (50%), 0.5 (30%), 0 (20%): the 2.5% point is 0, the 97.5% point 1
    assert (s.loc["A", "sucra_lower"], s.loc["A", "sucra_upper"]) == (0.0, 1.0)
    s50 = sucra(draws, ci=0.5).set_index("source")  # 25% and 75% points: 0.5 and 1
    assert (s50.loc["A", "sucra_lower"], s50.loc["A", "sucra_upper"]) == (0.5, 1.0)
    assert rank_summary(draws).set_index("source").loc["A", "median_rank"] == 1  # P(rank<=1)=0.5


def test_extra_dims_rank_separately():
    # at time 3 UC is best, at time 12 BM is best
    vals = np.stack([np.tile([-1.0, 0.0, 1.0], (20, 1)), np.tile([1.0, 0.0, -1.0], (20, 1))], axis=1)
    draws = xr.DataArray(vals[None], dims=("chain", "draw", "time", "source"),
                         coords={"time": [3, 12], "source": SOURCES})
    pb = p_best(draws)
    assert pb.sel(time=3).values.tolist() == [1, 0, 0]
    assert pb.sel(time=12).values.tolist() == [0, 0, 1]
    summ = rank_summary(draws)
    assert list(summ.columns[:2]) == ["time", "source"]
    assert len(summ) == 6
    assert summ.query("time == 12 and source == 'BM'")["sucra"].item() == 1.0


def test_mcse_accounts_for_autocorrelation():
    # every draw repeated 10 times: the information is that of n/10 independent draws
    rng = np.random.default_rng(11)
    base = rng.normal(size=(4, 500))
    x = xr.DataArray(np.repeat(base, 10, axis=1) < 0.0, dims=("chain", "draw"))
    p = float(x.mean())
    se_iid = math.sqrt(p * (1 - p) / x.size)
    # ESS of a 10-fold repeated series is about n/10, so the SE about sqrt(10) x the iid SE;
    # the ESS estimator's own noise at 2,000 effective draws is ~10%, hence the 0.75-1.25 band
    ratio = float(mcse_mean(x)) / (se_iid * math.sqrt(10))
    assert 0.75 < ratio < 1.25


def test_bad_input():
    draws = make(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="no dim 'cell'"):
        rank_probabilities(draws, dim="cell")
    with pytest.raises(ValueError, match="'chain' and/or 'draw'"):
        rank_probabilities(xr.DataArray(np.zeros((5, 3)), dims=("x", "source")))
    bad = draws.copy()
    bad[0, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN for source = AD"):
        sucra(bad)
    with pytest.raises(ValueError, match="at least 2"):
        sucra(make(np.zeros((5, 1))))
    with pytest.raises(ValueError, match="ties"):
        ranks(draws, ties="min")


def test_draw_only_and_stacked_sample_dims():
    vals = np.tile([-1.0, 0.0, 2.0], (8, 1))
    only_draw = xr.DataArray(vals, dims=("draw", "source"), coords={"source": SOURCES})
    stacked = xr.DataArray(vals, dims=("sample", "source"), coords={"source": SOURCES})
    for d in (only_draw, stacked):
        assert isinstance(rank_summary(d), pd.DataFrame)
        np.testing.assert_array_equal(p_best(d).values, [1, 0, 0])
