"""Masked refits, evidence sensitivity, cumulative meta-analysis and the PET model (workflows.evidence).

Small fits (2 chains x 400-1000 draws); Bayesian tolerances in Monte Carlo SE units, reason beside each."""

import numpy as np
import pandas as pd
import pytest

import bayes_koa as bk
from bayes_koa.inference.exact import exact_normal_normal
from bayes_koa.workflows import evidence as ev

MU_PRIOR, TAU_PRIOR = (0.0, 50.0), "HalfNormal(sigma=10)"
PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}


def _table():
    # eight trials, two rows for T2 (a multi-arm trial), years 2010-2014, evidence and risk of bias
    rows = [("T1", "a", -8.0, 16.0, 2010, "primary", "low"), ("T2", "a", -3.0, 25.0, 2011, "secondary", "high"),
            ("T2", "b", -5.0, 20.0, 2011, "secondary", "high"), ("T3", "a", -12.0, 36.0, 2011, "primary", "some"),
            ("T4", "a", 1.0, 9.0, 2012, "secondary", "low"), ("T5", "a", -6.0, 30.0, 2013, "primary", "low"),
            ("T6", "a", -10.0, 49.0, 2014, "primary", "high"), ("T7", "a", -2.0, 12.0, None, "primary", "low")]
    t = pd.DataFrame(rows, columns=["trial_id", "comparison", "yi", "vi", "year", "evidence", "rob"])
    t["sei"] = np.sqrt(t["vi"])
    t["year"] = t["year"].astype("Int64")
    return t


@pytest.fixture(scope="module")
def random_fit():
    return bk.fit(_table(), "random_effects", priors=PRIORS, measure="MD", seed=3, draws=1000, tune=600,
                  chains=2, warn=False)


def test_masked_refit_equals_exact_posterior_of_the_kept_rows(random_fit):
    t = random_fit.effects.reset_index(drop=True)
    keep = ~t["trial_id"].isin(["T2", "T6"]).to_numpy()
    dt = ev.masked_refit(random_fit, keep, settings={"draws": 1000, "tune": 600, "chains": 2})
    exact = exact_normal_normal(t.loc[keep, "yi"].to_numpy(), t.loc[keep, "sei"].to_numpy(),
                                mu_prior=MU_PRIOR, tau_prior=TAU_PRIOR)
    mu = dt["posterior"]["mu"]
    from bayes_koa.util.draws import mcse_mean

    mcse = float(mcse_mean(mu))
    # 4 MC SEs: the sampler mean is within 4 SE of the exact mean except with probability ~6e-5
    assert abs(float(mu.mean()) - exact.mu.mean) < 4 * mcse
    p = float((mu < 0).mean())
    p_exact = float(exact.mu.cdf(0.0))
    pse = float(mcse_mean((mu < 0).astype(float)))
    assert abs(p - p_exact) < 4 * max(pse, 1e-3)  # 1e-3 floor: p near 1 has a near-zero binomial SE
    # the spread is that of the kept rows, not of all rows (the mask did something): exact SDs 3.08 vs
    # 2.08; 10% is ~3 MC SEs of an SD from ~500 effective draws
    full = exact_normal_normal(t["yi"].to_numpy(), t["sei"].to_numpy(), mu_prior=MU_PRIOR, tau_prior=TAU_PRIOR)
    assert float(mu.std()) == pytest.approx(exact.mu.sd, rel=0.10)
    assert abs(exact.mu.sd - full.mu.sd) > 0.3 * exact.mu.sd
    assert dt.attrs["kept"] == keep.astype(int).tolist()


def test_evidence_sensitivity_drops_exactly_the_right_rows(random_fit):
    out = ev.evidence_sensitivity(random_fit, "rob", leave_one_out="psis")
    sc = out.scenarios.set_index("scenario")
    assert sc.loc["all rows", "rows_dropped"] == 0
    assert sc.loc["without secondary-source rows", "trials_dropped"] == "T2, T4"
    assert sc.loc["without secondary-source rows", "rows_dropped"] == 3  # T2 has two rows
    assert sc.loc["without highest risk of bias", "trials_dropped"] == "T2, T6"
    for t, n in (("T1", 1), ("T2", 2), ("T7", 1)):
        assert sc.loc[f"without {t}", "rows_dropped"] == n and sc.loc[f"without {t}", "trials_dropped"] == t
    assert len(sc) == 3 + 7  # reference, secondary, risk of bias, 7 trials
    assert set(sc["method"]) <= {"refit", "psis"}
    assert set(out.conclusions["conclusion"]) == {"overall benefit (P >= 0.95)"}
    # the leave-one-out PSIS estimate without T4 (the most precise, near-zero trial) is exact within MC error
    exact = exact_normal_normal(*[random_fit.effects.query("trial_id != 'T4'")[c].to_numpy() for c in ("yi", "sei")],
                                mu_prior=MU_PRIOR, tau_prior=TAU_PRIOR)
    r = sc.loc["without T4"]
    assert abs(r["mu_mean"] - exact.mu.mean) < 4 * r["mu_mcse"]  # 4 importance-sampling MC SEs
    # numeric risk of bias: the largest value is the highest risk
    t = random_fit.effects.copy()
    t["rob_score"] = t["rob"].map({"low": 1, "some": 2, "high": 3})
    assert (ev._high_risk_mask(t["rob_score"], None) == (t["rob"] == "high")).all()
    with pytest.raises(ValueError, match="no column 'nope'"):
        ev.evidence_sensitivity(random_fit, "nope", leave_one_out=False)


def test_cumulative_steps_by_year(random_fit):
    cu = random_fit.cumulative("year", min_trials=2)
    assert cu["year"].tolist() == [2011, 2012, 2013, 2014]  # 2010 alone has one trial (< min_trials)
    assert cu["n_trials"].tolist() == [3, 4, 5, 6]
    assert cu["rows_used"].tolist() == [4, 5, 6, 7]
    assert cu.attrs["no_year"] == ["T7"]
    assert "diagnostics" in cu.attrs
    # the last step has every trial with a year: exact posterior of those rows
    rows = random_fit.effects[random_fit.effects["year"].notna()]
    exact = exact_normal_normal(rows["yi"].to_numpy(), rows["sei"].to_numpy(), mu_prior=MU_PRIOR, tau_prior=TAU_PRIOR)
    last = cu.iloc[-1]
    assert abs(last["mu_mean"] - exact.mu.mean) < 4 * last["mu_mcse"]  # 4 MC SEs


def test_pet_model_finds_a_planted_small_study_effect():
    rng = np.random.default_rng(11)
    k = 24
    se = rng.uniform(2.0, 14.0, k)
    src = np.where(np.arange(k) % 2 == 0, "BM", "AD")
    true = np.where(src == "BM", -4.0, -8.0)
    y = true - 1.5 * se + rng.normal(0, se)  # smaller trials (larger SE) show larger benefits
    t = pd.DataFrame({"trial_id": [f"S{i}" for i in range(k)], "yi": y, "vi": se ** 2, "sei": se, "cell_source": src})
    res = bk.fit(t, "source_hierarchical", measure="MD", seed=5, draws=400, tune=400, chains=2, warn=False)
    ranking, summary = res.small_study_model("pet")
    slope = summary.iloc[2]
    assert slope["p"] > 0.9  # P(slope < 0): the planted slope -1.5 is ~3 posterior SDs from 0
    assert slope["lb"] < -1.5 < slope["ub"]
    assert set(ranking["source"]) == {"BM", "AD"}
    assert {"p_best", "p_best_adjusted", "mean_adjusted"} <= set(ranking.columns)
    assert "diagnostics" in ranking.attrs and "diagnostics" in summary.attrs
    # the adjusted source means are the effects at SE 0: closer to the truth than the unadjusted ones
    adj = ranking.set_index("source")
    assert abs(adj.loc["BM", "mean_adjusted"] + 4) < abs(adj.loc["BM", "mean"] + 4)


def test_influence_reports_progress_per_trial(random_fit):
    import warnings

    from bayes_koa.analysis.checks import ParetoKWarning

    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)  # no refits asked for: high k is only reported
        table = random_fit.influence(refit_threshold_k=None, progress=lambda i, n, t: seen.append((i, n, t)))
    trials = table.loc[table["method"] == "psis", "trial"].tolist()
    assert seen == [(i + 1, len(trials), t) for i, t in enumerate(trials)]
