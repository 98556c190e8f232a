"""The network as the main job's model: LOO and PPC by trial, the MSC-arm covariate (number of
injections, a network meta-regression) and the 2023 paper's claims re-based on the network.

Data: small arm-level networks simulated here with a stated truth (normal arm means, known SEs).
Independent references: the trial's contrast density written out from the model's own per-trial
relative effects (``delta``) and SciPy; the exact Gaussian posterior of a fixed-effect network with
the covariate (linear algebra); recovery of the stated truth.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayes_koa as bk
from bayes_koa.analysis.checks import ParetoKWarning
from bayes_koa.inference.diagnostics import SamplingWarning

FAST = dict(draws=500, tune=500, chains=4, progress=False, measure="MD", seed=20261202)  # seeded: reproducible tests


def _arm_rows(trials, truth, se=1.0, n=100, seed=1, outlier=None):
    """Arm table from ``trials`` = [(study, [(treatment, cell_source, origin, n_injections), ...])]:
    arm mean = trial level + truth[treatment] + beta * (injections - 1) (MSC arms) + noise(se);
    ``outlier`` = (study, arm position, shift) adds a shift to one arm's mean."""
    rng = np.random.default_rng(seed)
    rows = []
    for study, arms in trials:
        level = rng.normal(50, 10)
        for k, (t, src, org, inj) in enumerate(arms):
            m = level + truth[t] + (truth.get("beta", 0.0) * (inj - 1) if src else 0.0) + rng.normal(0, se)
            if outlier is not None and outlier[0] == study and outlier[1] == k:
                m += outlier[2]
            rows.append({"study": study, "treatment": t, "cell_source": src, "origin": org,
                         "n_injections": inj if src else np.nan, "mean": m, "sd": se * np.sqrt(n), "n": n,
                         "arm_id": f"arm{k}"})
    return pd.DataFrame(rows)


def _fit(arms, model="network", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # each test asserts the diagnostics it relies on
        return bk.fit(arms, model, study="study", treatment="treatment", arm="arm_id", **{**FAST, **kw})


def _ok(res, rhat=1.01, only=None):
    """No divergences, and R-hat <= ``rhat`` (for the variables named ``only``, when given)."""
    d = res.diagnostics()
    r = d["r_hat"] if only is None else d.loc[d.index.str.startswith(tuple(only)), "r_hat"]
    assert d.attrs["divergences"] == 0 and len(r) and r.max() <= rhat, d.attrs["problems"]


# ---------------------------------------------------------------------------------------------
# LOO and PPC by trial
# ---------------------------------------------------------------------------------------------
PLAIN = [(f"T{i}", arms) for i, arms in enumerate(
    [[("placebo", "", "", 1), ("A", "", "", 1)]] * 4 + [[("placebo", "", "", 1), ("B", "", "", 1)]] * 4
    + [[("A", "", "", 1), ("B", "", "", 1)]] * 3 + [[("placebo", "", "", 1), ("A", "", "", 1), ("B", "", "", 1)]] * 2)]
PLAIN_TRUTH = {"placebo": 0.0, "A": -5.0, "B": -9.0}


@pytest.fixture(scope="module")
def plain():
    return _fit(_arm_rows(PLAIN, PLAIN_TRUTH, se=2.0, seed=3), structure={"levels": [], "effects": "fixed"})


@pytest.fixture(scope="module")
def with_outlier():
    """The same network with one arm of two-arm trial T5 (placebo vs B) shifted by +30 (15 arm SEs).
    Both fits have fixed (common) effects: the check is of the LOO/PPC machinery, and a between-trial SD
    fitted to 13 trials would mix slowly at the unit-test draws."""
    return _fit(_arm_rows(PLAIN, PLAIN_TRUTH, se=2.0, seed=3, outlier=("T5", 1, 30.0)),
                structure={"levels": [], "effects": "fixed"})


def _contrast_loglik(res) -> np.ndarray:
    """(draws, trial): each trial's contrasts y_k - y_1 as MVN(delta_k, diag(s_k^2) + s_1^2 J), from the
    model's own per-trial relative effects ``delta`` and the arm table (independent of the kind's matrices)."""
    post = res.dt["posterior"]
    delta = post["delta"].stack(s=("chain", "draw")).transpose("s", "contrast").values
    labels = [str(c) for c in post["delta"]["contrast"].values]
    rows = res.effects
    out = []
    for t in post["trial"].values:
        g = rows[rows["nma_trial"] == t]
        base = g[g["nma_baseline"]].iloc[0]
        rest = g[~g["nma_baseline"]]
        se = rest["sd"].to_numpy(float) / np.sqrt(rest["n"].to_numpy(float))
        se_b = float(base["sd"]) / np.sqrt(float(base["n"]))
        cov = np.diag(se ** 2) + se_b ** 2
        c = rest["mean"].to_numpy(float) - float(base["mean"])
        cols = [labels.index(f"{t}: {a}") for a in rest["arm_id"]]
        out.append(stats.multivariate_normal(np.zeros(len(c)), cov).logpdf(c[None, :] - delta[:, cols]))
    return np.stack(out, axis=-1)


def test_loo_by_trial_is_the_trials_contrast_density(plain):
    """res.loo() on a network gives one row per trial; its pointwise log-likelihood is the trial's contrast
    density with its baseline integrated out (kinds.network.trial_log_likelihood), recomputed here from the
    posterior delta and SciPy: PSIS on the same matrix gives the same elpd_i (to rounding: same draws)."""
    import arviz as az
    import xarray as xr

    _ok(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)
        loo = plain.loo()
    assert list(loo["trial"]) == [t for t, _ in PLAIN] and list(loo["n_obs"]) == [len(a) for _, a in PLAIN]
    ll = _contrast_loglik(plain)
    post = plain.dt["posterior"]
    C, D = post.sizes["chain"], post.sizes["draw"]
    tree = xr.DataTree.from_dict({"posterior": post.to_dataset(), "log_likelihood": xr.Dataset(
        {"y_obs": xr.DataArray(ll.reshape(C, D, -1), dims=("chain", "draw", "trial"))})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = az.loo(tree, pointwise=True, var_name="y_obs")
    assert loo["elpd_i"].to_numpy() == pytest.approx(np.asarray(ref.elpd_i), abs=1e-8)
    assert loo.attrs["method"].startswith("integrated")


def test_conditional_loo_by_trial_sums_the_arm_terms(plain):
    """integrated=False: the trial's term is the sum of its arms' log-likelihood terms (the fit's
    log_likelihood group, one per arm), so elpd over trials equals PSIS on those sums."""
    import arviz as az
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)
        loo = plain.loo(integrated=False)
    arm_ll = plain.dt["log_likelihood"]["y_obs"]
    idx = plain.dt["constant_data"]["trial_idx"].values
    sums = np.stack([arm_ll.values[..., idx == t].sum(-1) for t in range(len(PLAIN))], axis=-1)
    # the arm terms themselves are Normal(y | mu, se) of the arm rows: each trial's sum over its arms
    y = plain.dt["observed_data"]["y_obs"].values
    parts = plain.kind.observation_parts(plain.dt, plain.spec)
    assert sums == pytest.approx(np.stack([stats.norm.logpdf(y, parts["mu"], parts["sd"])[..., idx == t].sum(-1)
                                           for t in range(len(PLAIN))], axis=-1), abs=1e-9)
    tree = xr.DataTree.from_dict({"posterior": plain.dt["posterior"].to_dataset(),
                                  "log_likelihood": xr.Dataset({"y_obs": (("chain", "draw", "trial"), sums)})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = az.loo(tree, pointwise=True, var_name="y_obs")
    assert loo["elpd_i"].to_numpy() == pytest.approx(np.asarray(ref.elpd_i), abs=1e-8)
    assert "summed over obs per trial" in loo.attrs["method"]


def test_a_trial_with_an_outlying_arm_is_flagged(plain, with_outlier):
    """One arm shifted by 15 of its SEs: that trial has the lowest elpd_i, the highest Pareto k, and its
    posterior predictive discrepancy and LOO p-value are below 0.025 (flagged); in the clean fit at most two
    trials' LOO p-values are below 0.025 (13 trials at a calibrated 0.025: 0.3 false flags expected,
    P(3 or more) = 0.004)."""
    _ok(with_outlier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)
        loo = with_outlier.loo().set_index("trial")
        ppc = with_outlier.ppc().set_index("trial")
        clean = plain.ppc()
    assert loo["elpd_i"].idxmin() == "T5" and loo["pareto_k"].idxmax() == "T5"
    assert ppc.loc["T5", "flag"] and ppc.loc["T5", "loo_flag"]
    assert list(ppc.index) == [t for t, _ in PLAIN] and (ppc["n_obs"] == [len(a) for _, a in PLAIN]).all()
    assert clean["loo_flag"].sum() <= 2 and not clean.set_index("trial").loc["T5", "loo_flag"]


def test_ppc_p_value_is_the_share_of_replicates_with_a_larger_discrepancy(plain):
    """p_value of a two-arm trial, recomputed here: T = sum over its arms of ((y - mu) / se)^2 per draw,
    T_rep the same for y_rep ~ Normal(mu, se); with 2,000 draws the two p-values (different replicate
    draws) agree within 4 binomial MC SEs of a mean of 2,000 indicators (sqrt(p (1 - p) / 2000) each)."""
    ppc = plain.ppc(loo_pit=False).set_index("trial")
    parts = plain.kind.observation_parts(plain.dt, plain.spec)
    y = plain.dt["observed_data"]["y_obs"].values
    idx = plain.dt["constant_data"]["trial_idx"].values
    rng = np.random.default_rng(99)
    k = idx == 0
    mu, se = parts["mu"][..., k], parts["sd"][k]
    t_obs = (((y[k] - mu) / se) ** 2).sum(-1)
    t_rep = (((rng.normal(mu, se) - mu) / se) ** 2).sum(-1)
    p = float((t_rep >= t_obs).mean())
    sd = np.sqrt(2 * p * (1 - p) / t_obs.size)  # the SE of the difference of two such estimates
    assert ppc.loc["T0", "p_value"] == pytest.approx(p, abs=4 * sd + 1e-9)
    assert ppc.loc["T0", "discrepancy"] == pytest.approx(float(t_obs.mean()), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# the MSC-arm covariate: number of injections (network meta-regression)
# ---------------------------------------------------------------------------------------------
def test_injections_covariate_matches_the_exact_gaussian_posterior():
    """Fixed effects, no classes, baselines on the baseline arm: the model is a Gaussian linear model,
    whose posterior mean and SD are closed forms. Each MSC arm's mean is baseline + d[node] + beta *
    (injections - 1) - (the same for the baseline arm); the sampled means of d and beta_n_injections
    must be within 4 MC SEs of the exact ones (the MC SE is the sampler's own, ArviZ's mcse_mean: the only
    error left when the model and the closed form agree), the SDs within 5%."""
    trials = ([(f"P{i}", [("placebo", "", "", 1), ("M", "BM", "autologous", inj)]) for i, inj in
               enumerate([1, 1, 2, 4, 4, 1])]
              + [(f"W{i}", [("placebo", "", "", 1), ("M", "BM", "autologous", 1), ("M", "BM", "autologous", 4)])
                 for i in range(3)]
              + [(f"H{i}", [("placebo", "", "", 1), ("HA", "", "", 1)]) for i in range(3)]
              + [(f"X{i}", [("HA", "", "", 1), ("M", "BM", "autologous", 2)]) for i in range(2)])
    truth = {"placebo": 0.0, "HA": 4.0, "M": -8.0, "beta": -1.5}
    arms = _arm_rows(trials, truth, se=1.5, seed=11)
    priors = {"d": "Normal(mu=0, sigma=50)", "baseline": "Normal(mu=0, sigma=100)",
              "beta_n_injections": "Normal(mu=0, sigma=20)"}
    res = _fit(arms, structure={"levels": [], "effects": "fixed", "moderators": ["n_injections"],
                                "baseline_prior": "baseline_arm"}, priors=priors)
    _ok(res)
    # closed form: parameters (b_1..b_T, d_HA, d_M, beta)
    studies = list(dict.fromkeys(arms["study"]))
    nodes = ["HA", "M"]
    P = len(studies) + len(nodes) + 1
    X, y, w = [], [], []
    for s in studies:
        g = arms[arms["study"] == s].reset_index(drop=True)
        base = g.iloc[0]  # the placebo (or HA) arm: the trial's first treatment in node order
        for _, r in g.iterrows():
            row = np.zeros(P)
            row[studies.index(s)] = 1.0
            for t, sign in ((r["treatment"], 1.0), (base["treatment"], -1.0)):
                if t in nodes:
                    row[len(studies) + nodes.index(t)] += sign
            xr_ = (r["n_injections"] - 1) if r["cell_source"] else 0.0
            xb = (base["n_injections"] - 1) if base["cell_source"] else 0.0
            row[-1] = xr_ - xb
            X.append(row)
            y.append(r["mean"])
            w.append(r["n"] / r["sd"] ** 2)
    X, y, W = np.array(X), np.array(y), np.diag(w)
    prior_prec = np.diag([1 / 100 ** 2] * len(studies) + [1 / 50 ** 2] * len(nodes) + [1 / 20 ** 2])
    cov = np.linalg.inv(X.T @ W @ X + prior_prec)
    mean = cov @ X.T @ W @ y
    post = res.dt["posterior"]
    import arviz as az

    for name, draws, j in (("d[HA]", post["d"].sel(treatment="HA"), len(studies)),
                           ("d[M]", post["d"].sel(treatment="M"), len(studies) + 1),
                           ("beta", post["beta_n_injections"], P - 1)):
        x = draws.squeeze(drop=True)
        mc = float(az.mcse(xr_ds(x), method="mean")["x"])
        assert float(x.mean()) == pytest.approx(mean[j], abs=4 * mc), name
        assert float(x.std()) == pytest.approx(np.sqrt(cov[j, j]), rel=0.05), name
    # the claim reads the slope: P(4 injections better than 2) = P(2 beta < 0), exact Phi(-mean / sd)
    c = res.claims().set_index("claim_id").loc["four_vs_two_injections"]
    exact = stats.norm.cdf(-mean[-1] / np.sqrt(cov[-1, -1]))
    assert c["probability"] == pytest.approx(exact, abs=4 * c["mc_se"] + 1e-3)  # 1e-3: exact is ~1, mc_se ~0


def xr_ds(x):
    return x.rename("x").to_dataset()


def test_covariate_rows_without_injections_are_left_out_with_the_reason():
    trials = [(f"P{i}", [("placebo", "", "", 1), ("M", "BM", "autologous", inj)]) for i, inj in enumerate([1, 2, 4])]
    arms = _arm_rows(trials, {"placebo": 0.0, "M": -8.0}, seed=2)
    arms.loc[arms["study"] == "P0", "n_injections"] = np.nan
    from bayes_koa.kinds import load_spec, prepare

    spec = load_spec("network_regression", measure="MD").with_structure(levels=[])
    design, excluded = prepare(spec, arms, study="study", treatment="treatment", arm="arm_id")
    why = excluded.loc[excluded["study"] == "P0", "excluded_reason"].tolist()
    assert any("n_injections not reported (needed by the covariate n_injections of MSC arms)" in w for w in why)
    assert design.x_mod is not None and sorted(set(np.round(design.x_mod, 9))) == [0.0, 1.0, 3.0]


# ---------------------------------------------------------------------------------------------
# the paper's claims re-based on the network, on data of known truth
# ---------------------------------------------------------------------------------------------
CLAIM_TRUTH = {"placebo": 0.0, "HA": 4.0, "BM autologous": -3.0, "BM allogeneic": -3.0,
               "AD autologous": -17.0, "AD allogeneic": -13.0, "UC autologous": -30.0, "UC allogeneic": -30.0,
               "beta": -1.5}


def _claim_trials():
    def arm(t, inj=1):
        src, org = t.split() if " " in t else ("", "")
        return (t, src, org, inj)

    tr = [[arm("placebo"), arm("HA")]] * 3
    tr += [[arm("HA"), arm("BM autologous")]] * 2 + [[arm("HA"), arm("BM allogeneic")]] * 2  # BM against HA only
    tr += [[arm("placebo"), arm("AD autologous"), arm("AD autologous", 4)]] * 2
    tr += [[arm("placebo"), arm("AD allogeneic", 2)]] * 2
    tr += [[arm("placebo"), arm("UC allogeneic")], [arm("HA"), arm("UC autologous", 2)],
           [arm("placebo"), arm("UC autologous")]]
    return [(f"S{i}", a) for i, a in enumerate(tr)]


def test_claims_on_a_network_of_known_truth():
    """A network where the truth makes four of the paper's claims true with wide margins (UC -30 < AD -15 <
    BM -3 against placebo; autologous AD -17 vs allogeneic -13; BM origins equal; -1.5 per injection, so 4
    injections beat 2 by 3) and BM is tested against HA only (+4 against placebo). The claims read the
    network's effects against placebo: each true claim has P >= 0.9 (reason at the assertion). Recovery:
    every cell effect and the slope within 4 posterior SDs of the truth (one data set: the estimate is off
    the truth by the data's noise, whose scale is the posterior SD; the MC SE, under a tenth of it, is
    negligible); BM, tested against HA only, is recovered against placebo through the HA-placebo trials."""
    arms = _arm_rows(_claim_trials(), CLAIM_TRUTH, se=1.0, seed=5)
    res = _fit(arms, "network_regression", structure={"effects": "fixed"}, target_accept=0.95, draws=1000, tune=1000)
    # the claims read the cells, the sources and the slope: their R-hat; d_msc and the class SDs (3 sources:
    # barely identified) mix slowly and no claim reads them; a source effect sits on its cells and sigma_origin,
    # whose slow mixing reaches it (R-hat 1.012 at 4 x 500 draws in one run): bound 1.02 at 4 x 1000
    _ok(res, rhat=1.02, only=("cell_effect", "source_effect", "beta_n_injections"))
    post = res.dt["posterior"]
    ce = post["cell_effect"]
    for (s, o) in (("BM", "autologous"), ("BM", "allogeneic"), ("AD", "autologous"), ("AD", "allogeneic"),
                   ("UC", "autologous"), ("UC", "allogeneic")):
        x = ce.sel(source=s, origin=o)
        assert abs(float(x.mean()) - CLAIM_TRUTH[f"{s} {o}"]) < 4 * float(x.std()), (s, o)
    b = post["beta_n_injections"]
    assert abs(float(b.mean()) - CLAIM_TRUTH["beta"]) < 4 * float(b.std())
    c = res.claims().set_index("claim_id")
    # every claim true in the truth is very likely: the truth's margins are >= 2 posterior SDs of the compared
    # quantities (the AD origin gap of 4 mm against a difference SD of about 1.8, the cells shrunk by the barely
    # informed sigma_origin; the source gaps of 12 mm against source SDs of about 3), so each exact probability
    # is >= 0.97; 0.9 leaves room for the MC error (MC SE <= 0.006 at these draws) and seed-to-seed spread
    for cid in ("uc_first", "uc_ad_bm", "ad_autologous_better", "bm_origins_similar", "four_vs_two_injections"):
        assert c.loc[cid, "probability"] >= 0.9, (cid, c.loc[cid, "probability"])
    assert c.loc["better_at_month_3", "interpretation"].startswith("not estimable")
    assert c.loc["uc_ad_bm", "quantity"] == "P(group[UC] < group[AD] < group[BM])"
