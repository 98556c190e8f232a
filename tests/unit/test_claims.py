"""bayes_koa.claims on hand-made draws whose claim probabilities are known by construction.

Tolerances: ``atol=1e-12`` / ``abs=1e-15`` compare a share of the 1,000 constructed draws with the
exact fraction, so only floating-point rounding can differ.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from bayes_koa.koa.claims import CLAIM_COLUMNS, ClaimSpec, claims, prob, prob_mcse, verbal_probability

N = 1000  # draws, as 2 chains x 500
RNG = np.random.default_rng(2023)


def _shuffled(blocks):
    """Stack (count, row) blocks into N rows in random order (so chains are not sorted)."""
    rows = np.concatenate([np.tile(row, (count, 1)) for count, row in blocks])
    assert len(rows) == N
    return rows[RNG.permutation(N)]


def _da(values, dims, coords=None):
    values = np.asarray(values, dtype=float)
    return xr.DataArray(values.reshape(2, N // 2, *values.shape[1:]), dims=("chain", "draw", *dims),
                        coords=coords or {})


def make_draws():
    # source means (UC, AD, BM), orders chosen so that
    #   UC first: 200 + 100 = 300 draws (30%); UC < AD < BM: 200 draws (20%)
    source = _shuffled([
        (200, [-3.0, -2.0, -1.0]),  # UC < AD < BM
        (100, [-3.0, -1.0, -2.0]),  # UC < BM < AD
        (300, [-2.0, -3.0, -1.0]),  # AD < UC < BM
        (400, [-1.0, -2.0, -3.0]),  # BM < AD < UC
    ])
    # cell means (source x origin), columns: AD-auto, AD-allo, BM-auto, BM-allo
    #   AD auto < AD allo in 650 draws; |BM auto - BM allo| = 0.1 in 400 draws, 0.5 in 600
    cells = _shuffled([
        (400, [-1.0, -0.5, -0.7, -0.6]),
        (250, [-1.0, -0.5, -0.2, -0.7]),
        (350, [-0.3, -0.5, -1.0, -0.5]),
    ])
    cell = cells.reshape(N, 2, 2)
    # per-injection slope: negative (4 better than 2) in 700 draws
    beta = _shuffled([(700, [-0.1]), (300, [0.05])])[:, 0]
    # overall effect by time (3, 6, 12 months): below 0 at month 3 in 900 draws
    overall = _shuffled([(900, [-0.4, -0.2, 0.1]), (100, [0.2, -0.2, 0.1])])
    return {
        "group": _da(source, ("source",), {"source": ["UC", "AD", "BM"]}),
        "cell": _da(cell, ("source", "origin"),
                         {"source": ["AD", "BM"], "origin": ["autologous", "allogeneic"]}),
        "beta_injections": _da(beta, ()),
        "by_time": _da(overall, ("time",), {"time": [3, 6, 12]}),
    }


EXPECTED = [0.30, 0.20, 0.65, 0.40, 0.70, 0.90]


def test_probabilities_by_construction():
    tab = claims(make_draws())
    assert list(tab.columns) == CLAIM_COLUMNS
    assert len(tab) == 6
    # shares of draws are exact fractions of N: only floating-point rounding differs
    np.testing.assert_allclose(tab["probability"].to_numpy(), EXPECTED, atol=1e-12)
    # MC SE: the draws are shuffled (no autocorrelation), so ESS ~ N and the SE ~ the binomial SE;
    # ESS estimates of such series scatter by ~10%, hence the 25% band
    binom = np.sqrt(np.array(EXPECTED) * (1 - np.array(EXPECTED)) / N)
    np.testing.assert_allclose(tab["mc_se"].to_numpy(), binom, rtol=0.25)
    assert tab["interpretation"].iloc[5].startswith("very likely")  # 0.90
    assert "0.2 SMD" in tab["quantity"].iloc[3]


def test_margin_and_direction():
    draws = make_draws()
    # all |BM differences| (0.1 and 0.5) are below 0.6
    assert claims(draws, margin=0.6)["probability"].iloc[3] == pytest.approx(1.0, abs=1e-12)
    assert claims(draws, margin=0.05)["probability"].iloc[3] == pytest.approx(0.0, abs=1e-12)
    flipped = claims(draws, lower_is_better=False)["probability"].to_numpy()
    # higher is better: UC largest in 400 draws; UC > AD > BM in 400 (the BM<AD<UC block);
    # AD auto > AD allo in 350; |diff| claim unchanged; beta > 0 in 300; overall(3) > 0 in 100
    np.testing.assert_allclose(flipped, [0.40, 0.40, 0.35, 0.40, 0.30, 0.10], atol=1e-12)


def test_missing_draws_are_listed_not_dropped():
    draws = make_draws()
    del draws["beta_injections"]
    draws["cell"] = draws["cell"].sel(origin=["autologous"])  # no allogeneic cells
    tab = claims(draws)
    assert len(tab) == 6
    for i in (2, 3, 4):
        assert math.isnan(tab["probability"].iloc[i]) and math.isnan(tab["mc_se"].iloc[i])
        assert tab["interpretation"].iloc[i].startswith("not estimable: needs")
    assert "'beta_injections'" in tab["interpretation"].iloc[4]
    why = tab["interpretation"].iloc[2]
    assert "allogeneic" in why and "it has: autologous" in why
    np.testing.assert_allclose(tab["probability"].iloc[[0, 1, 5]], [0.3, 0.2, 0.9], atol=1e-12)
    # nothing at all: six rows, all not estimable
    empty = claims({})
    assert len(empty) == 6 and empty["probability"].isna().all()
    # a time point that is not there
    d = make_draws()
    d["by_time"] = d["by_time"].sel(time=[6, 12])
    assert "time = 3 (months)" in claims(d)["interpretation"].iloc[5]


def test_source_without_uc():
    d = make_draws()
    d["group"] = d["group"].sel(source=["AD", "BM"])
    tab = claims(d)
    assert tab["probability"].iloc[:2].isna().all()
    assert "source 'UC'" in tab["interpretation"].iloc[0]


def test_custom_labels_via_spec():
    d = make_draws()
    d["sources"] = d.pop("group").assign_coords(source=["umbilical", "adipose", "marrow"])
    spec = ClaimSpec(source_mean="sources", uc="umbilical", ad="adipose", bm="marrow")
    tab = claims(d, spec)
    np.testing.assert_allclose(tab["probability"].iloc[:2], [0.3, 0.2], atol=1e-12)


def test_ties_for_first_are_shared():
    # UC ties with AD for first in every draw: P(UC first) = 1/2 (expectation of random tie-breaking)
    vals = np.tile([-1.0, -1.0, 0.0], (N, 1))
    d = {"group": _da(vals, ("source",), {"source": ["UC", "AD", "BM"]})}
    tab = claims(d)
    assert tab["probability"].iloc[0] == pytest.approx(0.5, abs=1e-15)
    assert tab["mc_se"].iloc[0] == 0.0  # the same share in every draw
    assert tab["probability"].iloc[1] == 0.0  # UC < AD is false when they are equal


def test_bad_draws_raise():
    d = make_draws()
    d["by_time"] = d["by_time"].expand_dims(outcome=["VAS", "WOMAC"], axis=-1)
    with pytest.raises(ValueError, match="extra dims.*outcome"):
        claims(d)
    d = make_draws()
    d["beta_injections"] = d["beta_injections"].where(d["beta_injections"].draw != 3)
    with pytest.raises(ValueError, match="'beta_injections' contain NaN"):
        claims(d)


def test_prob_helpers_and_verbal_scale():
    x = xr.DataArray(np.arange(10).reshape(2, 5) < 3, dims=("chain", "draw"))
    assert prob(x) == pytest.approx(0.3, abs=1e-15)  # 3 of 10 draws, exact up to rounding
    p, se = prob_mcse(xr.ones_like(x))
    assert (p, se) == (1.0, 0.0)
    with pytest.raises(ValueError, match="only sample dims"):
        prob(xr.DataArray(np.zeros((2, 5, 3)), dims=("chain", "draw", "source")))
    assert [verbal_probability(v) for v in (0.995, 0.96, 0.91, 0.7, 0.5, 0.2, 0.07, 0.02, 0.001)] == [
        "virtually certain", "extremely likely", "very likely", "likely", "about as likely as not",
        "unlikely", "very unlikely", "extremely unlikely", "exceptionally unlikely"]


from bayes_koa.kinds import load_spec  # noqa: E402


def _fake_result(name, posterior_vars, measure="SMD"):
    """A stand-in for MetaAnalysis with just what claims_from_result reads."""
    from types import SimpleNamespace

    post = xr.Dataset(posterior_vars)
    dt = xr.DataTree.from_dict({"posterior": post})
    return SimpleNamespace(dt=dt, spec=load_spec(name, measure=measure), simulated=True,
                           provenance={"outcome": "VAS", "time": "6", "data_source": "sim", "data_sha256": "abc"})


def test_claims_table_takes_each_claim_from_the_model_that_estimates_it():
    from bayes_koa.koa.claims import claims_table

    n = 1000
    # source model: UC first in exactly 30% of draws (by construction, as in the tests above)
    sm = np.tile(np.array([[0.0, 1.0, 0.5]]), (n, 1))
    sm[: int(0.3 * n), 1] = -1.0
    src = _fake_result("source_hierarchical", {"source_mean": xr.DataArray(
        sm[None], dims=("chain", "draw", "source"), coords={"source": ["BM", "UC", "AD"]})})
    # regression model: beta_n_injections < 0 in exactly 70% of draws -> P(4 better than 2) = 0.7
    beta = np.where(np.arange(n) < 700, -0.1, 0.1)
    reg = _fake_result("source_regression", {"beta_n_injections": xr.DataArray(beta[None], dims=("chain", "draw"))})
    table = claims_table({"a": src, "b": reg})
    by = table.set_index("claim")
    assert by.loc["UC-MSC ranks first among cell sources", "probability"] == pytest.approx(0.3)
    assert by.loc["UC-MSC ranks first among cell sources", "model"] == "source_hierarchical"
    assert by.loc["4 injections better than 2", "probability"] == pytest.approx(0.7)
    assert by.loc["4 injections better than 2", "model"] == "source_regression"
    assert np.isnan(by.loc["MSC better than control at month 3", "probability"])
    assert by.loc["MSC better than control at month 3", "interpretation"].startswith("not estimable")
    assert (table["data"] == "SIMULATED: sim").all()
