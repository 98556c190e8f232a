"""The four defects of issue 8 and the generic-use promises, each with a test that failed before the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayes_koa as bk
from bayes_koa.spec import PriorError, SpecError

FAST = dict(draws=500, tune=500, chains=2, seed=11)


@pytest.fixture(scope="module")
def sim():
    return bk.load_simulated()


def test_safety_summary_shows_odds_ratios(sim):
    """Defect 1: summary() of a safety fit showed no odds ratio."""
    eff = bk.effect_sizes(sim, measure="logOR")
    res = bk.fit(eff, model="safety", **FAST)
    s = res.summary(include_trials=False)
    assert "odds_ratio" in s.index
    assert {f"source_odds_ratio[{g}]" for g in res.dt["posterior"]["source"].values} <= set(s.index)
    # the odds ratio is exp(mu), draw by draw: its median is exp(median mu), up to the averaging of the
    # two middle draws of an even number of draws (exp of a mean vs mean of exps: < 1e-6 relative here)
    assert s.loc["odds_ratio", "median"] == pytest.approx(np.exp(s.loc["mu", "median"]), rel=1e-6)
    # P(benefit) of a ratio is P(OR < 1) = P(mu < 0), the same event
    assert s.loc["odds_ratio", "p_benefit"] == pytest.approx(s.loc["mu", "p_benefit"], abs=1e-12)


@pytest.mark.parametrize("model, measure, kwargs", [
    ("safety", "logOR", {}),
    pytest.param("time_course", "SMD", {}, marks=pytest.mark.slow),  # a multivariate fit and refit: ~2 min
])
def test_sensitivity_runs_on_every_kind(sim, model, measure, kwargs):
    """Defect 2: bk.sensitivity raised on safety ('events') and time_course ('se') results."""
    outcomes = ["VAS"] if model == "time_course" else None
    eff = bk.effect_sizes(sim, measure=measure, **({"outcomes": outcomes} if outcomes else {}))
    res = bk.fit(eff, model=model, **FAST, **kwargs)
    sens = bk.sensitivity(res, {"tight_tau": {"tau": "HalfNormal(sigma=0.1)"}})
    t = sens.table
    assert {"reference", "tight_tau"} <= set(t["prior_set"])
    tau_ref = t[(t.prior_set == "reference") & (t.quantity == "tau")]["mean"].iloc[0]
    tau_tight = t[(t.prior_set == "tight_tau") & (t.quantity == "tau")]["mean"].iloc[0]
    # a HalfNormal(0.1) prior has mean 0.08: the refit's tau must move towards it from the reference
    assert tau_tight < tau_ref


def test_source_origin_prediction_includes_the_origin_level(sim):
    """Defect 3: theta_new left out sigma_origin, so prediction intervals were too narrow.

    By the law of total variance, with the new-trial noise independent of the parameters:
    var(theta_new) = var(mu) + E[sigma_source^2] + E[sigma_origin^2] + E[tau^2]. Before the fix the
    ratio was 0.93. Tolerance: the relative MC SE of a variance from 4,000 draws of a heavy-tailed
    mixture is about 0.03 here; 0.06 (2 such SEs) still fails the old 0.93 only if it is far enough
    away, so we also require the old formula's ratio to miss."""
    eff = bk.effect_sizes(sim, measure="SMD", outcomes=["VAS"])
    res = bk.fit(eff, model="source_origin", time=6, draws=1000, tune=1000, chains=4, seed=5)
    p = res.dt["posterior"]
    expected = float(p["mu"].var() + (p["sigma_source"] ** 2).mean() + (p["sigma_origin"] ** 2).mean()
                     + (p["tau"] ** 2).mean())
    old = float(p["mu"].var() + (p["sigma_source"] ** 2).mean() + (p["tau"] ** 2).mean())
    got = float(p["theta_new"].var())
    assert got / expected == pytest.approx(1.0, abs=0.06)
    assert abs(got / old - 1.0) > abs(got / expected - 1.0)


def test_multiarm_keep_is_refused_by_univariate_models(sim):
    """Defect 4: multiarm='keep' then a univariate fit counted a shared control twice, silently."""
    eff = bk.effect_sizes(sim, measure="MD", outcomes=["VAS"], multiarm="keep")
    assert (eff["cov_group"].fillna("") != "").any()
    with pytest.raises(SpecError, match="share an arm.*twice"):
        bk.fit(eff, model="source_hierarchical", time=6, **FAST)


def test_plain_table_without_measure_names_measure_and_priors():
    df = pd.DataFrame({"trial_id": list("abcd"), "yi": [0.1, 0.3, -0.2, 0.4], "vi": [0.1, 0.2, 0.1, 0.3]})
    with pytest.raises(PriorError, match=r"pass measure= \(one of SMD, MD, logOR, logRR\).*priors="):
        bk.fit(df, model="random_effects", **FAST)
    res = bk.fit(df, model="random_effects", measure="SMD", **FAST)
    assert "theta_new" in res.summary().index


def _grouped_table(rng, labels, effects, per=4):
    rows = []
    for g, m in zip(labels, effects):
        for j in range(per):
            rows.append({"trial_id": f"{g}-{j}", "district": g, "yi": m + rng.normal(0, 0.1), "vi": 0.01,
                         "dose": float(j), "setting": "urban" if j % 2 else "rural"})
    return pd.DataFrame(rows)


def test_any_grouping_column_natural_order_and_direction():
    rng = np.random.default_rng(1)
    df = _grouped_table(rng, ["108", "11", "9"], [0.8, 0.0, -0.6])
    res = bk.fit(df, model="source_hierarchical", group="district", measure="SMD", lower_is_better=False, **FAST)
    post = res.dt["posterior"]
    assert list(post["district"].values) == ["9", "11", "108"]  # natural order, not text order
    r = res.rank()
    assert r.sort_values("mean_rank")["district"].iloc[0] == "108"  # higher is better here
    s = res.summary(include_trials=False)
    assert "between-group SD" in set(s["what"]) and "group mean" in set(s["what"])
    fig = res.plot_rankogram()
    assert "most positive" in fig.axes[0].get_xlabel()


def test_moderators_by_column_name_continuous_and_categorical(tmp_path):
    rng = np.random.default_rng(2)
    df = _grouped_table(rng, ["a", "b"], [0.0, 0.0], per=8)
    df["yi"] = df["yi"] + 0.3 * df["dose"] + np.where(df["setting"] == "urban", -0.5, 0.0)
    model = tmp_path / "reg.toml"
    model.write_text('schema_version = 1\nname = "reg"\n[structure]\nkind = "random"\n'
                     'moderators = ["dose", "setting"]\n')
    res = bk.fit(df, model=str(model), measure="SMD", **FAST)
    s = res.summary(include_trials=False)
    # truth: +0.3 per unit of dose, -0.5 for urban vs rural (the first level in natural order)
    assert abs(s.loc["beta_dose", "mean"] - 0.3) < 4 * s.loc["beta_dose", "sd"]
    assert abs(s.loc["beta_setting[urban]", "mean"] + 0.5) < 4 * s.loc["beta_setting[urban]", "sd"]
