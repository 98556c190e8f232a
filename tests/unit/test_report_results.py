"""Result methods of issue 13: heterogeneity (I^2 against the closed form), prediction columns,
P(benefit > MCID) against the draws and against exact quadrature, the sourced default MCID, the
small-study tests on the rows used, and the trial columns (year, evidence) of an effect table."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayes_koa as bk
from bayes_koa.analysis.clinical import fit_heterogeneity, p_beyond
from bayes_koa.analysis.small_study import egger_test, peters_test
from bayes_koa.effects.trial_info import with_trial_columns
from bayes_koa.inference.exact import exact_normal_normal
from bayes_koa.kinds import load_spec
from bayes_koa.util.draws import mcse_mean


@pytest.fixture(scope="module")
def sim_fit():
    data = bk.load_simulated()
    eff = with_trial_columns(bk.effect_sizes(data, measure="MD", outcomes=["VAS"]), data)
    return bk.fit(eff, "source_hierarchical", outcome="VAS", time=6.0, seed=2, draws=300, tune=300, chains=2,
                  warn=False)


def test_i2_closed_form_for_known_tau_and_variances():
    spec = load_spec("random_effects", measure="MD")
    vi = np.array([4.0, 9.0, 16.0, 25.0])
    w = 1 / vi
    s2 = (len(vi) - 1) * w.sum() / (w.sum() ** 2 - (w ** 2).sum())  # Higgins & Thompson 2002, eq. 9
    tau = 3.0
    post = xr.Dataset({"tau": (("chain", "draw"), np.full((2, 50), tau)), "mu": (("chain", "draw"), np.zeros((2, 50)))})
    dt = xr.DataTree.from_dict({"posterior": post})
    h = fit_heterogeneity(dt, spec, vi)
    assert h.loc[("tau", "I2"), "mean"] == pytest.approx(tau ** 2 / (tau ** 2 + s2), rel=1e-12)
    assert h.loc[("total", "H2"), "mean"] == pytest.approx((tau ** 2 + s2) / s2, rel=1e-12)
    assert h.loc[("tau", "sd"), "mean"] == pytest.approx(tau)


def test_heterogeneity_of_a_fit_per_level(sim_fit):
    h = sim_fit.heterogeneity()
    post = sim_fit.dt["posterior"]
    vi = sim_fit.effects["vi"].to_numpy()
    w = 1 / vi
    s2 = (len(vi) - 1) * w.sum() / (w.sum() ** 2 - (w ** 2).sum())
    total = post["sigma_source"] ** 2 + post["tau"] ** 2
    assert h.loc[("total", "I2"), "mean"] == pytest.approx(float((total / (total + s2)).mean()), rel=1e-10)
    assert h.loc[("sigma_source", "I2"), "mean"] == pytest.approx(float((post["sigma_source"] ** 2 / (total + s2)).mean()), rel=1e-10)
    assert h.attrs["diagnostics"]["divergences"] >= 0
    pred = h.attrs["prediction"]
    assert list(pred["level"]) == ["overall"] + ["source"] * 3
    lo = float(post["theta_new"].quantile(0.025))
    assert pred.iloc[0]["pi_lb"] == pytest.approx(lo, rel=1e-12)


def test_summary_has_named_prediction_columns(sim_fit):
    s = sim_fit.summary(include_trials=False)
    post = sim_fit.dt["posterior"]
    assert s.loc["mu", "pi95_ub"] == pytest.approx(float(post["theta_new"].quantile(0.975)), rel=1e-12)
    uc = post["theta_new_source"].sel(source="UC")
    assert s.loc["source_mean[UC]", "pi95_lb"] == pytest.approx(float(uc.quantile(0.025)), rel=1e-12)
    assert np.isnan(s.loc["tau", "pi95_lb"])
    assert "diagnostics" in s.attrs


def test_p_mcid_against_the_draws_and_its_source(sim_fit):
    t = sim_fit.p_mcid()
    info = t.attrs["mcid_source"]
    assert info["mcid"] == -19.9 and "Tubach" in info["citation"]
    post = sim_fit.dt["posterior"]
    assert t.iloc[0]["p_benefit_gt_mcid"] == pytest.approx(float((post["mu"] < -19.9).mean()), abs=1e-12)
    uc = t[(t["variable"] == "source_mean") & (t["group"] == "UC")].iloc[0]
    assert uc["p_benefit_gt_mcid"] == pytest.approx(float((post["source_mean"].sel(source="UC") < -19.9).mean()), abs=1e-12)
    # a user MCID, given as a magnitude, means the same threshold
    t10 = sim_fit.p_mcid(10.0)
    assert t10.iloc[0]["p_benefit_gt_mcid"] == pytest.approx(float((post["mu"] < -10).mean()), abs=1e-12)
    assert t10.attrs["mcid_source"]["source"] == "given by the user"
    assert "diagnostics" in t10.attrs


def test_p_beyond_against_exact_quadrature():
    y = np.array([-8.0, -3.0, -12.0, 1.0, -6.0, -10.0])
    se = np.array([4.0, 5.0, 6.0, 3.0, 5.5, 7.0])
    res = bk.fit(pd.DataFrame({"trial_id": list("ABCDEF"), "yi": y, "sei": se}), "random_effects", measure="MD",
                 priors={"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}, seed=4, draws=1000,
                 tune=600, chains=2, warn=False)
    exact = exact_normal_normal(y, se, mu_prior=(0.0, 50.0), tau_prior="HalfNormal(sigma=10)")
    pr = p_beyond(res.dt["posterior"]["mu"], 5.0, lower_is_better=True)
    # 4 MC SEs (binomial SE over the effective sample size)
    assert abs(float(pr["p"]) - float(exact.mu.cdf(-5.0))) < 4 * float(pr["mcse"])
    with pytest.raises(ValueError, match="mcid="):
        pd.DataFrame(res.p_mcid())  # no outcome recorded, no shipped MCID


def test_small_study_tests_on_the_rows_used(sim_fit):
    t = sim_fit.small_study().set_index("test")
    e = sim_fit.effects
    eg = egger_test(e["yi"].to_numpy(), e["vi"].to_numpy())
    pe = peters_test(e["yi"].to_numpy(), e["vi"].to_numpy(), ni=(e["n_msc"] + e["n_control"]).to_numpy(float))
    assert t.loc["Egger (predictor: SE)", "pvalue"] == pytest.approx(eg.pvalue, rel=1e-12)
    assert t.loc["Peters (predictor: 1/n)", "statistic"] == pytest.approx(pe.statistic, rel=1e-12)
    assert t.loc["Egger (predictor: SE)", "k"] == len(e)


def test_trial_columns_year_and_evidence():
    data = bk.load_simulated()
    eff = with_trial_columns(bk.effect_sizes(data, measure="MD", outcomes=["VAS"]), data)
    row = eff[(eff["trial_id"] == "SIM_Gupta_2016")].iloc[0]
    assert row["year"] == 2016
    # Gupta_2016's control arm is sourced from a review (secondary), so every comparison is secondary
    tr = data.trials
    assert set(tr.loc[(tr["trial_id"] == "SIM_Gupta_2016") & (tr["arm_role"] == "control"), "evidence"]) == {"secondary"}
    assert set(eff.loc[eff["trial_id"] == "SIM_Gupta_2016", "evidence"]) == {"secondary"}
    assert set(eff.loc[eff["trial_id"] == "SIM_Wong_2013", "evidence"]) == {"primary"}
    assert eff.loc[eff["trial_id"] == "SIM_CUHK_NCT04326985", "year"].isna().all()  # registry only


def test_progress_line_and_quiet(capsys):
    from types import SimpleNamespace

    from bayes_koa.cli import _progress

    assert _progress(SimpleNamespace(quiet=True), "x") is None
    show = _progress(SimpleNamespace(quiet=False), "claims models")
    show(1, 2, "fitting a")
    show(2, 2, "fitting b")
    err = capsys.readouterr().err
    assert "claims models: 1/2 fitting a" in err and "claims models: 2/2 fitting b" in err and err.endswith("\n")


def test_diagnostics_flag_computed_once_per_fit_and_copied(sim_fit, monkeypatch):
    calls = []
    real = type(sim_fit).diagnostics
    monkeypatch.setattr(type(sim_fit), "diagnostics", lambda self: calls.append(1) or real(self))
    sim_fit.__dict__.pop("_flag_cache", None)
    a, b = sim_fit.heterogeneity(), sim_fit.p_mcid()
    assert len(calls) == 1
    assert a.attrs["diagnostics"] == b.attrs["diagnostics"]
    a.attrs["diagnostics"]["problems"].append("x")
    assert "x" not in b.attrs["diagnostics"]["problems"]


def test_default_mcid_only_where_the_scale_fits():
    from bayes_koa.koa.mcid import default_mcid, mcid_table

    t = mcid_table()
    assert t["source"].notna().all() and t["citation"].notna().all()  # every shipped number has its source
    assert default_mcid("VAS", "MD", "0-100")["mcid"] == -19.9
    assert default_mcid("VAS", "MD", "unknown") is None  # e.g. a 0-10 cm VAS the effect step could not place
    assert default_mcid("VAS", "SMD") is None  # standardised: the user gives it
    assert default_mcid("WOMAC_pain", "MD", "0-20") is None  # Likert WOMAC: the 0-100 MPCI does not apply
    assert default_mcid("WOMAC_pain", "MD", "0-100")["mcid"] == -9.7
    assert "11093446" in default_mcid("WOMAC_pain", "MD", "0-100")["source"]


def test_trial_columns_extra_for_a_risk_of_bias_column():
    data = bk.load_simulated()
    eff = bk.effect_sizes(data, measure="MD", outcomes=["VAS"])
    out = with_trial_columns(eff, data, extra=["country"])  # any trial-level column, e.g. a user's RoB
    tr = data.trials.dropna(subset=["country"]).drop_duplicates("trial_id").set_index("trial_id")["country"]
    assert (out["country"].fillna("-").to_numpy() == out["trial_id"].map(tr).fillna("-").to_numpy()).all()
    assert out["country"].notna().sum() > 0
    with pytest.raises(ValueError, match="no column 'rob2'"):
        with_trial_columns(eff, data, extra=["rob2"])


def test_write_report_is_atomic_and_readable(tmp_path, monkeypatch):
    import os

    from bayes_koa.api import report as rep

    path = rep.write_report("<!DOCTYPE html><html><body>first</body></html>", tmp_path / "report.html")
    assert oct(path.stat().st_mode & 0o777) == "0o644"

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(rep.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        rep.write_report("<html>second</html>", tmp_path / "report.html")
    assert "first" in path.read_text()  # the earlier page is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind
