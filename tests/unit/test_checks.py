"""Model checks: posterior predictive p-values, PSIS-LOO, comparison, influence (bayes_koa.checks).

References are closed forms and the exact quadrature posterior of the normal-normal model
(bayes_koa.exact): hand-made posteriors whose predictive distribution is known, independent draws
from the exact posterior, and one real eight-schools fit (Rubin 1981; BDA3 table 5.2) checked
against brute-force leave-one-out by quadrature.
"""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import bayes_koa as bk
from bayes_koa.analysis import checks
from bayes_koa.plots import figures
from bayes_koa.workflows import influence
from bayes_koa.inference.exact import NormalMixture, draws_from_exact, exact_normal_normal
from bayes_koa.api.result import MetaAnalysis
from bayes_koa.kinds import load_spec

PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}
MU_PRIOR, TAU_PRIOR = (0.0, 50.0), "HalfNormal(sigma=10)"


# ---------------------------------------------------------------------------------------------
# hand-made results (no sampling)
# ---------------------------------------------------------------------------------------------
def handmade(posterior: dict, y, se, labels, model="random_effects", constant=None, simulated=False):
    """A MetaAnalysis around a DataTree built by hand: posterior draws (1 chain), y, se."""
    labels = list(labels)
    n = len(next(iter(posterior.values())))
    coords = {"chain": [0], "draw": np.arange(n), "trial": labels}
    data = {}
    for name, val in posterior.items():
        val = np.asarray(val, float)
        if isinstance(posterior[name], xr.DataArray):
            data[name] = posterior[name].expand_dims(chain=[0])
            continue
        dims = ("chain", "draw") if val.ndim == 1 else ("chain", "draw", "trial")
        data[name] = (dims, val[None])
    post = xr.Dataset(data, coords=coords)
    cd = xr.Dataset({"se": ("trial", np.asarray(se, float)), **(constant or {})}, coords={"trial": labels})
    obs = xr.Dataset({"y_obs": ("trial", np.asarray(y, float))}, coords={"trial": labels})
    dt = xr.DataTree.from_dict({"posterior": post, "observed_data": obs, "constant_data": cd})
    dt.attrs.update(bayes_koa_simulated=int(simulated), bayes_koa_seed=1, bayes_koa_data_sha256="0" * 64)
    measure = "SMD" if model != "random_effects" else "MD"
    spec = load_spec(model, priors=PRIORS if model == "random_effects" else None, measure=measure)
    effects = pd.DataFrame({"trial_id": labels, "yi": y, "sei": se})
    return MetaAnalysis(dt=dt, spec=spec, effects=effects, excluded=pd.DataFrame())


def exact_draws_result(y, se, labels, n=4000, seed=0):
    """Independent draws from the exact posterior of the random-effects model, as a result."""
    post = exact_normal_normal(y, se, mu_prior=MU_PRIOR, tau_prior=TAU_PRIOR, labels=labels)
    ds = draws_from_exact(post, n, rng=seed)
    return handmade({"mu": ds["mu"].values[0], "tau": ds["tau"].values[0], "theta": ds["theta"].values[0]},
                    y, se, labels)


def exact_loo(y, se, i):
    """Quadrature posterior without trial i, and log p(y_i | y_-i) (normal predictive mixture)."""
    keep = np.arange(len(y)) != i
    post = exact_normal_normal(np.asarray(y)[keep], np.asarray(se)[keep], mu_prior=MU_PRIOR, tau_prior=TAU_PRIOR)
    new = post.theta_new  # p(theta_i | y_-i) = mixture of N(mu_hat, V_mu + tau^2) over the tau grid
    pred = NormalMixture(new.weights, new.means, np.sqrt(new.sds**2 + se[i] ** 2))
    return post, float(np.log(pred.pdf(y[i])))


# ---------------------------------------------------------------------------------------------
# posterior predictive checks
# ---------------------------------------------------------------------------------------------
def test_ppc_p_values_point_mass_posterior():
    # theta = 0 in every draw: y_rep ~ N(0, se^2) exactly, so P(y_rep < y) = Phi(y / se)
    n = 4000
    y, se = np.array([0.0, 20.0, -20.0, 1.5]), np.array([1.0, 2.0, 1.0, 1.0])
    r = handmade({"mu": np.zeros(n), "tau": np.full(n, 1.0), "theta": np.zeros((n, 4))}, y, se, "abcd")
    t = checks.ppc_table(r, loo_pit=False)
    # Rao-Blackwellised: an average of identical normal cdfs, exact up to rounding
    np.testing.assert_allclose(t["p_value"], stats.norm.cdf(y / se), rtol=1e-12, atol=1e-300)
    assert t["p_value"].iloc[1] > 0.999 and t["p_value"].iloc[2] < 0.001
    assert t["flag"].tolist() == [False, True, True, False]
    np.testing.assert_allclose(t["pp_mean"], 0.0, atol=1e-12)
    # 2.5% / 97.5% quantiles of 4000 normal draws: SE = sqrt(.025 * .975 / 4000) / phi(1.96)
    # = 0.042 SDs; 0.2 SDs is ~5 SEs
    np.testing.assert_allclose(t["pp_lower"] / se, -1.959964, atol=0.2)
    np.testing.assert_allclose(t["pp_upper"] / se, 1.959964, atol=0.2)
    assert t.attrs["n_flagged"] == 2


def test_ppc_p_values_with_posterior_spread():
    # theta_s ~ N(m, v) independently: y_rep ~ N(m, v + se^2), so p = Phi((y - m) / sqrt(v + se^2))
    rng = np.random.default_rng(4)
    n, m, v = 8000, 1.0, 4.0
    y, se = np.array([1.0, 6.0, -3.0]), np.array([1.0, 1.5, 3.0])
    theta = m + math.sqrt(v) * rng.standard_normal((n, 3))
    r = handmade({"mu": np.full(n, m), "tau": np.full(n, 2.0), "theta": theta}, y, se, "xyz")
    t = checks.ppc_table(r, loo_pit=False)
    expected = stats.norm.cdf((y - m) / np.sqrt(v + se**2))
    # MC error of a mean of 8000 cdf values (each in [0, 1], sd <= 0.3 here): SE <= 0.0034; 0.015 ~ 4.5 SE
    np.testing.assert_allclose(t["p_value"], expected, atol=0.015)
    # predictive SD sqrt(v + se^2): the 95% interval half-width, to ~5 quantile SEs (0.2 SDs)
    half = (t["pp_upper"] - t["pp_lower"]) / 2 / np.sqrt(v + se**2)
    np.testing.assert_allclose(half, 1.959964, atol=0.2)


def test_mixed_predictive_is_not_fooled_by_a_perfect_fit():
    # every trial effect equal to its estimate: the conditional check sees y at the centre of its
    # predictive (p = 1/2 exactly) while the mixed check redraws theta ~ N(mu = 0, tau = 2):
    # y_rep ~ N(0, tau^2 + se^2) and p = Phi(y / sqrt(5))
    n = 4000
    y, se = np.array([-6.0, 0.0, 3.0]), np.ones(3)
    r = handmade({"mu": np.zeros(n), "tau": np.full(n, 2.0), "theta": np.tile(y, (n, 1))}, y, se, "pqr")
    cond = checks.ppc_table(r, loo_pit=False)
    mixed = checks.ppc_table(r, predictive="mixed", loo_pit=False)
    np.testing.assert_allclose(cond["p_value"], 0.5, atol=1e-12)
    np.testing.assert_allclose(mixed["p_value"], stats.norm.cdf(y / math.sqrt(5.0)), rtol=1e-12)
    assert mixed["flag"].tolist() == [True, False, False]  # Phi(-6 / 2.236) = 0.0036
    y_rep = checks.posterior_predictive(r, predictive="mixed")
    assert y_rep.dims == ("chain", "draw", "trial")
    # sd of 4000 draws of N(0, 5): relative SE 1 / sqrt(2 * 4000) = 1.1%; 6% ~ 5 SEs
    np.testing.assert_allclose(y_rep.std(("chain", "draw")), math.sqrt(5.0), rtol=0.06)
    with pytest.raises(ValueError, match="predictive must be"):
        checks.ppc_table(r, predictive="prior")


def test_mid_p_value_for_discrete_draws():
    # y_rep uniform on 0..9 and y = 5: P(y_rep < 5) = 0.5, P(y_rep = 5) = 0.1 -> mid-p 0.55
    draws = xr.DataArray(np.tile(np.arange(10), 100)[None, :, None], dims=("chain", "draw", "trial"))
    y = xr.DataArray([5.0], dims="trial")
    assert float(checks._mid_p(draws, y)[0]) == pytest.approx(0.55, abs=1e-12)


def test_plot_ppc_says_simulated(tmp_path):
    n = 500
    y, se = np.array([0.0, 3.0]), np.ones(2)
    kw = dict(posterior={"mu": np.zeros(n), "tau": np.ones(n), "theta": np.zeros((n, 2))}, y=y, se=se, labels="ab")
    fig = figures.plot_ppc(handmade(**kw, simulated=True), save=tmp_path / "ppc.png")
    assert fig.axes[0].get_title().startswith("SIMULATED")
    assert (tmp_path / "ppc.png").stat().st_size > 0
    assert "SIMULATED" not in figures.plot_ppc(handmade(**kw)).axes[0].get_title()
    ax = fig.axes[0]
    pos = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    assert pos["a"] > pos["b"]  # first trial on top


# ---------------------------------------------------------------------------------------------
# influence on hand-made posteriors
# ---------------------------------------------------------------------------------------------
ES = pd.read_csv(__import__("pathlib").Path(__file__).parents[1] / "reference" / "data" / "eight_schools.csv")


def test_influence_of_an_outlier_matches_exact_leave_one_out():
    # eight schools plus a ninth school Z with a huge effect (40, se 10): the posterior without Z,
    # by PSIS on independent draws from the exact posterior, against the quadrature posterior
    y = np.r_[ES["y"].to_numpy(float), 40.0]
    se = np.r_[ES["sigma"].to_numpy(float), 10.0]
    labels = [*ES["school"], "Z"]
    r = exact_draws_result(y, se, labels, n=4000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", checks.ParetoKWarning)  # k < 0.7 for every school here
        table = influence.influence(r, refit_threshold_k=None)
    assert list(table["trial"]) == labels and set(table["method"]) == {"psis"}
    full = exact_normal_normal(y, se, mu_prior=MU_PRIOR, tau_prior=TAU_PRIOR).mu.mean
    for i, row in table.iterrows():
        exact = exact_loo(y, se, i)[0].mu.mean
        # PSIS with k < 0.7: error within 4 of its own MC SEs (module docstring of checks)
        assert abs(row["mu_mean"] - exact) < 4 * row["mu_mcse"], row["trial"]
    z = table.set_index("trial").loc["Z"]
    assert full - exact_loo(y, se, 8)[0].mu.mean > 3.0  # the exact drop in mu without Z
    assert z["mu_change"] < -2.5  # ... which PSIS sees too (in the right direction)


def test_influence_warns_for_high_k_without_refit():
    # with Z at 80 the posterior without Z is too far from the full one for PSIS (k > 1)
    y = np.r_[ES["y"].to_numpy(float), 80.0]
    se = np.r_[ES["sigma"].to_numpy(float), 10.0]
    r = exact_draws_result(y, se, [*ES["school"], "Z"], n=2000, seed=1)
    with pytest.warns(checks.ParetoKWarning, match="Z"):
        table = influence.influence(r, refit_threshold_k=None)
    assert table.set_index("trial").loc["Z", "pareto_k"] > 0.7
    with pytest.warns(checks.ParetoKWarning, match=r"1 trial\(s\): Z"):
        lt = checks.loo(r)
    assert lt.set_index("trial").loc["Z", "advice"].startswith("Pareto k > 0.7")
    assert lt.attrs["high_k_trials"] == ["Z"]


def test_influence_on_ranking_matches_conjugate_reweighting():
    # Two sources. Draws: source_mean[A] ~ N(-1, 0.5^2), source_mean[B] ~ N(-0.8, 0.5^2), tau = 0.5,
    # trial a1 (source A) has y = -2, se^2 = 0.75, so tau^2 + se^2 = 1. Leaving a1 out divides the
    # density by N(-2 | source_mean[A], 1): precision 1/0.25 - 1 = 3, mean (-1/0.25 + 2) / 3 = -2/3.
    # P(A best) = P(A < B) goes from Phi(0.2 / sqrt(0.5)) = 0.611 to
    # Phi((-0.8 + 2/3) / sqrt(1/3 + 1/4)) = 0.431: the first-ranked source changes from A to B.
    rng = np.random.default_rng(7)
    n = 20000
    sm = np.column_stack([-1.0 + 0.5 * rng.standard_normal(n), -0.8 + 0.5 * rng.standard_normal(n)])
    source_mean = xr.DataArray(sm, dims=("draw", "source"), coords={"source": ["A", "B"]})
    post = {"mu": rng.standard_normal(n), "tau": np.full(n, 0.5), "sigma_source": np.ones(n),
            "theta": sm[:, [0, 1]], "source_mean": source_mean}
    r = handmade(post, y=[-2.0, -0.8], se=[math.sqrt(0.75), math.sqrt(0.75)], labels=["a1", "b1"],
                 model="source_hierarchical", constant={"source_idx": ("trial", np.array([0, 1]))})
    table = influence.influence(r, refit_threshold_k=None).set_index("trial")
    full_a = stats.norm.cdf(0.2 / math.sqrt(0.5))
    loo_a = stats.norm.cdf((-0.8 + 2 / 3) / math.sqrt(1 / 3 + 1 / 4))
    # P(best) from 20,000 draws: SE <= 0.0035 unweighted, ~0.005 after reweighting; 0.025 ~ 5 SEs
    assert table.attrs["p_best_full"]["A"] == pytest.approx(full_a, abs=0.025)
    assert table.attrs["first_ranked_full"] == "A"
    assert table.loc["a1", "P(best) A"] == pytest.approx(loo_a, abs=0.025)
    assert table.loc["a1", "P(best) A"] + table.loc["a1", "P(best) B"] == pytest.approx(1.0, abs=1e-12)
    assert table.loc["a1", "first_ranked"] == "B" and bool(table.loc["a1", "first_ranked_changes"])
    # mu is independent of the source means here: reweighting leaves its mean within MC error (0.007 SE)
    assert table.loc["a1", "mu_change"] == pytest.approx(0.0, abs=0.04)


# ---------------------------------------------------------------------------------------------
# a real fit: eight schools, random effects
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fit8(eight_schools):
    return bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=11, draws=1000, tune=1000)


@pytest.fixture(scope="module")
def exact8():
    y, se = ES["y"].to_numpy(float), ES["sigma"].to_numpy(float)
    return [exact_loo(y, se, i) for i in range(len(y))]


def test_loo_matches_brute_force_leave_one_out(fit8, exact8):
    table = checks.loo(fit8)
    assert table.attrs["method"] == "integrated"
    assert list(table["trial"]) == list(ES["school"])
    # integrating theta_i out keeps the importance ratios light-tailed (k < 0.7 for every school)
    assert (table["pareto_k"] < 0.7).all() and table.attrs["n_high_k"] == 0
    exact = np.array([e[1] for e in exact8])
    # PSIS error with k < 0.7 is within a few of its MC SEs (MC SE includes the MCMC autocorrelation
    # through r_eff); 4 SEs per school, and the sum of the per-school bounds for the total
    np.testing.assert_array_less(np.abs(table["elpd_i"] - exact), 4 * table["mcse_elpd_i"])
    assert abs(table.attrs["elpd_loo"] - exact.sum()) < 4 * table["mcse_elpd_i"].sum()
    # SE of elpd_loo is sqrt(n) * sd(elpd_i) (Vehtari et al. 2017, eq. 23)
    assert table.attrs["se"] == pytest.approx(math.sqrt(8) * np.std(table["elpd_i"], ddof=1), rel=1e-6)


def test_loo_warns_and_advises_for_high_k(fit8):
    with pytest.warns(checks.ParetoKWarning, match="8 trial"):
        table = checks.loo(fit8, integrated=False, k_threshold=0.0)  # every k > 0: all flagged
    assert table.attrs["method"] == "conditional" and table["high_k"].all()
    assert table["advice"].str.contains("Refit without it").all()


def test_influence_on_a_real_fit_matches_exact(fit8, exact8):
    table = influence.influence(fit8)  # k < 0.7 everywhere (previous test): PSIS only, no refit
    assert set(table["method"]) == {"psis"} and "first_ranked" not in table  # no sources to rank
    for (_, row), (post, _) in zip(table.iterrows(), exact8):
        assert abs(row["mu_mean"] - post.mu.mean) < 4 * row["mu_mcse"], row["trial"]  # 4 MC SEs
    change = table.set_index("trial")["mu_change"]
    # school A (28, the largest effect) pulls mu up and C (-3) pulls it down; exact changes are
    # -1.8 and +0.8 (quadrature), far beyond the MC SE (~0.15)
    assert change["A"] < -1.0 and change["C"] > 0.3


def test_ppc_on_a_real_fit_numpy_agrees_with_pymc(fit8, eight_schools):
    # the default random_effects fit is marginal: PyMC's forward draws would be the mixed predictive
    with pytest.raises(ValueError, match="engine='numpy'"):
        checks.posterior_predictive(fit8, seed=3, engine="pymc")
    # the non-centred model samples theta, so PyMC's conditional replicate is a check of the NumPy one
    nc = bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=11, draws=1000, tune=1000,
                structure={"parameterization": "noncentered"})
    fast = checks.posterior_predictive(nc, seed=3)
    slow = checks.posterior_predictive(nc, seed=3, engine="pymc")
    assert fast.dims == slow.dims == ("chain", "draw", "trial")
    sd = fast.std(("chain", "draw"))
    # two independent sets of 4000 draws of y_rep (mostly the normal noise, so nearly independent
    # draws): the difference of the means has SE ~ sd * sqrt(2 / 4000); allow 5 SEs. SDs to 8%
    # (relative SE of an SD from 4000 draws ~1.1%, plus autocorrelation of theta)
    assert (abs(fast.mean(("chain", "draw")) - slow.mean(("chain", "draw"))) < 5 * sd * math.sqrt(2 / 4000)).all()
    np.testing.assert_allclose(sd, slow.std(("chain", "draw")), rtol=0.08)


def test_loo_pit_matches_exact_cross_validated_p_value(fit8):
    # P(y_rep_i < y_i | y_-i): the cdf of the exact leave-one-out predictive mixture (quadrature)
    y, se = ES["y"].to_numpy(float), ES["sigma"].to_numpy(float)
    exact = []
    for i in range(8):
        keep = np.arange(8) != i
        p = exact_normal_normal(y[keep], se[keep], mu_prior=MU_PRIOR, tau_prior=TAU_PRIOR).theta_new
        exact.append(float(NormalMixture(p.weights, p.means, np.sqrt(p.sds**2 + se[i] ** 2)).cdf(y[i])))
    t = checks.ppc_table(fit8)
    # a weighted mean of normal cdf values that vary little over the posterior (sd < 0.15: the
    # predictive SD >= 9 exceeds the posterior SD of mu, ~5); with ESS >= 1000 the MC SE is < 0.005,
    # so 0.02 is 4 SEs
    np.testing.assert_allclose(t["loo_pit"], exact, atol=0.02)
    assert not t["loo_flag"].any() and not t["flag"].any()  # eight schools fit the model (BDA3 5.5)


def test_compare_against_exact_and_refuses_other_data(fit8, eight_schools):
    narrow = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=1)"}
    other = bk.fit(eight_schools, "random_effects", priors=narrow, seed=12, draws=1000, tune=1000)
    table = checks.compare({"wide": fit8, "narrow": other})
    assert set(table.index) == {"wide", "narrow"} and table["weight"].sum() == pytest.approx(1.0)
    assert (table["weight"] >= 0).all() and (table["loo_method"] == "integrated").all()
    # each model's elpd_loo against brute-force LOO by quadrature under that model's tau prior
    y, se = ES["y"].to_numpy(float), ES["sigma"].to_numpy(float)
    for name, tau_prior in (("wide", TAU_PRIOR), ("narrow", "HalfNormal(sigma=1)")):
        exact = 0.0
        for i in range(8):
            keep = np.arange(8) != i
            p = exact_normal_normal(y[keep], se[keep], mu_prior=MU_PRIOR, tau_prior=tau_prior).theta_new
            exact += math.log(NormalMixture(p.weights, p.means, np.sqrt(p.sds**2 + se[i] ** 2)).pdf(y[i]))
        # the total's MC SE is < 0.1 (sum of per-school SEs in test_loo_...); 0.3 ~ 3 such bounds
        assert table.loc[name, "elpd"] == pytest.approx(exact, abs=0.3)

    changed = MetaAnalysis(dt=other.dt.copy(deep=True), spec=other.spec, effects=other.effects, excluded=other.excluded)
    obs = changed.dt["observed_data"].to_dataset()
    obs["y_obs"] = obs["y_obs"].copy(data=np.r_[30.0, obs["y_obs"].values[1:]])
    changed.dt["observed_data"] = xr.DataTree(obs)
    with pytest.raises(ValueError, match=r"observed values differ for trial\(s\) A"):
        checks.compare({"wide": fit8, "changed": changed})
    changed.dt.attrs["bayes_koa_data_sha256"] = "f" * 64
    with pytest.raises(ValueError, match="different data.*data sha256"):
        checks.compare({"wide": fit8, "changed": changed})
    fewer = MetaAnalysis(dt=other.dt.isel(trial=slice(0, 7)), spec=other.spec, effects=other.effects.iloc[:7],
                         excluded=other.excluded)
    with pytest.raises(ValueError, match=r"trials differ \(only in 'wide': H\)"):
        checks.compare({"wide": fit8, "fewer": fewer})
    with pytest.raises(ValueError, match="at least two"):
        checks.compare({"wide": fit8})


def test_leave_one_trial_out_sums_the_arms_of_a_trial():
    # arm-level likelihoods (binomial kind): a trial's log-likelihood is the sum over its arms
    n = 5
    r = handmade({"mu": np.zeros(n), "tau": np.ones(n), "theta": np.zeros((n, 2))}, [0.0, 1.0], [1.0, 1.0],
                 ["t1", "t2"], constant={"trial_idx": ("arm", np.array([0, 0, 1, 1, 1]))})
    ll = xr.DataArray(np.arange(25.0).reshape(1, 5, 5), dims=("chain", "draw", "arm"),
                      coords={"chain": [0], "draw": np.arange(5)})
    by_trial = checks._sum_by_trial(r, ll)
    assert by_trial.dims == ("chain", "draw", "trial") and list(by_trial["trial"].values) == ["t1", "t2"]
    np.testing.assert_array_equal(by_trial.values[0, :, 0], ll.values[0, :, :2].sum(-1))
    np.testing.assert_array_equal(by_trial.values[0, :, 1], ll.values[0, :, 2:].sum(-1))
    r.dt["constant_data"] = xr.DataTree(r.dt["constant_data"].to_dataset().drop_vars("trial_idx"))
    with pytest.raises(ValueError, match="which trial each observation belongs to"):
        checks._sum_by_trial(r, ll)
