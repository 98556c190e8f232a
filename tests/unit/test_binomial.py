"""The binomial (arm-based adverse-event) kind without sampling: arm counts in the effect table,
arms rebuilt from comparison rows (each arm once), input errors, the model's density against
SciPy, and p_or_above / predictions on made-up draws. Fits are in
tests/reference/test_binomial_reference.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special, stats

from bayes_koa.kinds.binomial import add_predictions, arms_from_effects, p_or_above, prepare
from bayes_koa.data import DataValidationError
from bayes_koa.effects.table import COLUMNS, effect_sizes
from bayes_koa.spec import SpecError
from bayes_koa.kinds import load_spec


def trial(arms, trial_id="T1", source="BM"):
    """A made-up trials table: arms as (arm_id, arm_role, n_randomized)."""
    return pd.DataFrame([{"trial_id": trial_id, "arm_id": a, "arm_role": role, "n_randomized": n,
                          "cell_source": source, "origin": "autologous", "in_scope": "yes",
                          # required columns of the trials schema; not reported here
                          "control_type": None, "cells_per_injection": None, "n_injections": None}
                         for a, role, n in arms])


def ae_rows(events, trial_id="T1", time=12, outcome="AE_any"):
    """AE outcome rows: events = {arm_id: (events, n)}."""
    return pd.DataFrame([{"trial_id": trial_id, "arm_id": a, "outcome": outcome, "lower_is_better": "true",
                          "time_months": time, "value_type": "final", "n": n, "events": e,
                          "stat_reported": "events"} for a, (e, n) in events.items()])


def three_arm(multiarm="split"):
    """Three MSC arms sharing one control with 1 event in 19 patients."""
    t = trial((("a", "msc", 19), ("b", "msc", 19), ("c", "msc", 19), ("control", "control", 19)))
    o = ae_rows({"a": (5, 19), "b": (4, 19), "c": (0, 19), "control": (1, 19)})
    return effect_sizes((t, o), measure="logOR", multiarm=multiarm)


SPEC = load_spec("safety", measure="logOR")
SPEC_RE = load_spec("safety", measure="logOR", levels=[])


# --------------------------------------------------------------------------- effect table counts


def test_effect_table_carries_raw_counts_never_corrected():
    t = trial((("msc", "msc", 20), ("control", "control", 20)))
    o = pd.concat([ae_rows({"msc": (3, 20), "control": (0, 20)}),
                   ae_rows({"msc": (40.0, 10.0), "control": (50.0, 10.0)}, outcome="VAS").assign(
                       events=np.nan, stat_reported="mean_sd", mean=[40.0, 50.0], sd=[10.0, 10.0])])
    e = effect_sizes((t, o), measure="auto")
    assert list(e.columns) == list(COLUMNS)
    assert COLUMNS.index("events_msc") == COLUMNS.index("n_control") + 1
    ae = e[e["outcome"] == "AE_any"].iloc[0]
    # yi/vi carry the 0.5 zero-cell correction (metafor's default); the counts stay raw
    assert ae["estimated"] == "0.5 added to every cell (zero cell)"
    assert ae["yi"] == pytest.approx(math.log(3.5 * 20.5 / (17.5 * 0.5)), abs=1e-12)
    assert (ae["events_msc"], ae["n_msc"], ae["events_control"], ae["n_control"]) == (3, 20, 0, 20)
    vas = e[e["outcome"] == "VAS"].iloc[0]
    assert np.isnan(vas["events_msc"]) and np.isnan(vas["events_control"])


def test_split_apportions_whole_events_that_add_up():
    e = three_arm("split")
    # control n 19 split by 3 -> 6 each (floor); quota 1 x 6/19 = 0.316 each, total round(0.947) = 1,
    # given by largest remainder (all equal: first comparison in order, "a vs control")
    assert list(e["n_control"]) == [6, 6, 6]
    assert list(e["events_control"]) == [1.0, 0.0, 0.0]
    assert list(e["comparison"]) == ["a vs control", "b vs control", "c vs control"]
    assert list(e["events_msc"]) == [5.0, 4.0, 0.0]  # MSC arms are not shared: their own events
    keep = three_arm("keep")
    assert list(keep["n_control"]) == [19, 19, 19] and list(keep["events_control"]) == [1.0, 1.0, 1.0]


def test_split_pieces_respect_their_n():
    # 17 of 17 control patients with an event, shared by 2: n 8 + 8; quotas 8 and 8 -> 8 + 8 (not 9)
    t = trial((("a", "msc", 10), ("b", "msc", 10), ("control", "control", 17)))
    e = effect_sizes((t, ae_rows({"a": (2, 10), "b": (3, 10), "control": (17, 17)})), measure="logOR")
    assert list(e["n_control"]) == [8, 8] and list(e["events_control"]) == [8.0, 8.0]


# --------------------------------------------------------------------------- arms, each once


def test_split_and_keep_rebuild_each_arm_once():
    for multiarm, n_control in (("split", 18), ("keep", 19)):  # split: floor(19/3) x 3 = 18 patients
        design, excluded = prepare(SPEC, three_arm(multiarm))
        arms = design.arms
        assert list(arms["arm_id"]) == ["control", "a", "b", "c"]
        ctl = arms.iloc[0]
        assert (ctl["events"], ctl["n"], ctl["rows"]) == (1, n_control, 3)
        assert ctl["how"] == ("3 split pieces summed" if multiarm == "split" else "same counts in 3 rows, used once")
        assert list(arms["events"][1:]) == [5, 4, 0] and list(arms["n"][1:]) == [19, 19, 19]
        assert design.trial == ["T1"] and design.comparison == ["T1 (a)", "T1 (b)", "T1 (c)"]
        assert design.arm == ["T1 (control)", "T1 (a)", "T1 (b)", "T1 (c)"]
        np.testing.assert_array_equal(design.comparison_idx, [0, 1, 2, 3])  # control takes no theta
        np.testing.assert_array_equal(design.trial_idx, [0, 0, 0, 0])
        assert excluded.empty and len(design.rows) == 3


def test_two_controls_share_the_baseline_and_sources_are_per_msc_arm():
    t1 = trial((("msc", "msc", 20), ("ha", "control", 20), ("none", "control", 20)), trial_id="T1", source="UC")
    t2 = trial((("msc", "msc", 30), ("control", "control", 30)), trial_id="T2", source="AD")
    o = pd.concat([ae_rows({"msc": (4, 20), "ha": (2, 20), "none": (1, 20)}, trial_id="T1"),
                   ae_rows({"msc": (6, 30), "control": (3, 30)}, trial_id="T2", time=6)])
    design, _ = prepare(SPEC, effect_sizes((pd.concat([t1, t2]), o), measure="logOR", multiarm="keep"))
    assert design.arm == ["T1 (ha)", "T1 (none)", "T1 (msc)", "T2 (control)", "T2 (msc)"]
    np.testing.assert_array_equal(design.trial_idx, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(design.comparison_idx, [0, 0, 1, 0, 2])
    np.testing.assert_array_equal(design.events, [2, 1, 4, 3, 6])
    assert design.comparison == ["T1", "T2"]
    assert design.source == ["UC", "AD"]  # canonical order BM, UC, AD ...
    np.testing.assert_array_equal(design.source_idx, [0, 1])


def test_last_time_per_trial_and_rows_left_out_with_reasons():
    t = trial((("msc", "msc", 20), ("control", "control", 20)))
    o = pd.concat([ae_rows({"msc": (1, 20), "control": (0, 20)}, time=6),
                   ae_rows({"msc": (3, 20), "control": (1, 20)}, time=12)])
    e = effect_sizes((t, o), measure="logOR")
    design, excluded = prepare(SPEC, e)
    np.testing.assert_array_equal(design.events, [1, 3])  # the 12-month counts
    assert excluded["time_months"].tolist() == [6.0]
    assert excluded["excluded_reason"].iloc[0].startswith("earlier time point")
    design6, excluded6 = prepare(SPEC, e, time=6)
    np.testing.assert_array_equal(design6.events, [0, 1])
    assert excluded6.empty
    # a row without counts is listed, not dropped silently
    e2 = e.copy()
    e2.loc[e2["time_months"] == 12, "events_control"] = np.nan
    design2, excluded2 = prepare(SPEC, e2)
    np.testing.assert_array_equal(design2.events, [0, 1])
    assert "events or n missing" in excluded2["excluded_reason"].iloc[0]


def test_double_zero_rows_are_used_unless_excluded():
    t = pd.concat([trial((("msc", "msc", 20), ("control", "control", 20)), trial_id="T1"),
                   trial((("a", "msc", 20), ("b", "msc", 20), ("control", "control", 20)), trial_id="T2")])
    o = pd.concat([ae_rows({"msc": (0, 20), "control": (0, 20)}, trial_id="T1"),
                   ae_rows({"a": (2, 20), "b": (0, 20), "control": (0, 20)}, trial_id="T2")])
    e = effect_sizes((t, o), measure="logOR", multiarm="keep")
    assert e["excluded_reason"].str.contains("no events in either arm").sum() == 2  # T1, T2 b vs control
    design, excluded = prepare(SPEC, e)  # double_zero = "include" (safety.toml)
    assert excluded.empty and design.trial == ["T1", "T2"]
    assert design.arm == ["T1 (control)", "T1 (msc)", "T2 (control)", "T2 (a)", "T2 (b)"]
    np.testing.assert_array_equal(design.events, [0, 0, 0, 2, 0])
    design, excluded = prepare(load_spec("safety", measure="logOR", double_zero="exclude"), e)
    assert design.arm == ["T2 (control)", "T2 (a)"]
    assert list(excluded["comparison"]) == ["msc vs control", "b vs control"]
    # a double-zero row with another problem stays out, with its reasons
    e.loc[0, "excluded_reason"] += "; trial out of scope (in_scope = no)"
    design, excluded = prepare(SPEC, e)
    assert design.trial == ["T2"] and excluded["trial_id"].tolist() == ["T1"]


# --------------------------------------------------------------------------- bad input


def test_bad_counts_name_trial_arm_and_column():
    e = three_arm("keep")
    bad = e.copy()
    bad.loc[0, "events_msc"] = 25
    with pytest.raises(DataValidationError, match=r"trial T1, arm a, column events_msc: events \(25\) > n \(19\)"):
        prepare(SPEC, bad)
    bad = e.copy()
    bad.loc[1, "events_control"] = 2  # the shared control now has 1 and 2 events
    with pytest.raises(DataValidationError, match="trial T1, arm control, column events_control: the arm has different"):
        prepare(SPEC, bad)
    bad = e.copy()
    bad.loc[2, "events_msc"] = 1.5
    with pytest.raises(DataValidationError, match="trial T1, arm c, column events_msc: 1.5 is not a whole number"):
        prepare(SPEC, bad)


def test_tables_the_model_cannot_read():
    user = pd.DataFrame({"trial_id": ["A", "A"], "events_msc": [1, 2], "n_msc": [10, 10],
                         "events_control": [0, 0], "n_control": [10, 10]})
    with pytest.raises(SpecError, match="trial A has several rows .* msc_arm and control_arm"):
        prepare(SPEC, user)
    with pytest.raises(SpecError, match="lacks events_msc, events_control"):
        prepare(SPEC, user.drop(columns=["events_msc", "events_control"]))
    with pytest.raises(SpecError, match="measure='logOR'"):
        prepare(load_spec("safety", measure="logRR", priors={"alpha": "Normal(mu=0, sigma=2)"}), user)
    one = user.iloc[:1].assign(cell_source="BM")
    design, _ = prepare(SPEC, one)  # one row per trial: arm ids are not needed
    assert design.arm == ["A (control)", "A (msc)"]


def test_structure_checks_and_parameters():
    assert SPEC.parameters == ("mu", "tau", "sigma_source", "alpha")
    assert SPEC_RE.parameters == ("mu", "tau", "alpha")
    for bad, msg in (({"levels": ["source", "origin"]}, "levels of a binomial model"),
                     ({"moderators": ["log_dose"]}, "takes no moderators"),
                     ({"parameterization": "mixed"}, "'noncentered' or 'centered'"),
                     ({"between_trial_sd": "per_source", "levels": []}, "needs levels"),
                     ({"double_zero": "correct"}, "double_zero must be")):
        with pytest.raises(SpecError, match=msg):
            load_spec("safety", measure="logOR", **bad)


# --------------------------------------------------------------------------- the model's density


def test_model_density_equals_scipy():
    """log p(data, parameters) of the built model = the binomial likelihood and priors written in SciPy."""
    from bayes_koa.kinds import build_model

    t = pd.concat([trial((("a", "msc", 20), ("b", "msc", 20), ("control", "control", 20)), trial_id="T1"),
                   trial((("msc", "msc", 15), ("control", "control", 16)), trial_id="T2", source="AD")])
    o = pd.concat([ae_rows({"a": (3, 20), "b": (0, 20), "control": (0, 20)}, trial_id="T1"),
                   ae_rows({"msc": (5, 15), "control": (2, 16)}, trial_id="T2")])
    design, _ = prepare(SPEC, effect_sizes((t, o), measure="logOR", multiarm="keep"))
    model = build_model(SPEC, design)
    assert design.arm == ["T1 (control)", "T1 (a)", "T1 (b)", "T2 (control)", "T2 (msc)"]
    point = {"mu": 0.3, "tau_log__": np.log(0.4), "sigma_source_log__": np.log(0.2),
             "z_source": np.array([0.5, -1.0]), "z": np.array([0.2, -0.3, 1.1]), "alpha": np.array([-1.5, -0.7])}
    logp = model.compile_logp(jacobian=False)(point)

    tau, ss = 0.4, 0.2
    source_mean = 0.3 + ss * np.array([0.5, -1.0])  # BM, AD
    theta = source_mean[[0, 0, 1]] + tau * np.array([0.2, -0.3, 1.1])  # T1 a, T1 b, T2 msc
    alpha = np.array([-1.5, -0.7])
    lp_arms = (stats.binom.logpmf(0, 20, special.expit(alpha[0]))  # T1 control: zero events, no correction
               + stats.binom.logpmf(3, 20, special.expit(alpha[0] + theta[0]))
               + stats.binom.logpmf(0, 20, special.expit(alpha[0] + theta[1]))
               + stats.binom.logpmf(2, 16, special.expit(alpha[1]))
               + stats.binom.logpmf(5, 15, special.expit(alpha[1] + theta[2])))
    lp_priors = (stats.norm.logpdf(0.3, 0, 1.5) + stats.lognorm.logpdf(tau, s=0.76, scale=np.exp(-0.935))
                 + stats.halfnorm.logpdf(ss, scale=0.5) + stats.norm.logpdf([0.5, -1.0]).sum()
                 + stats.norm.logpdf([0.2, -0.3, 1.1]).sum() + stats.norm.logpdf(alpha, 0, 2).sum())
    # both are double-precision sums of the same ~20 terms
    assert logp == pytest.approx(lp_arms + lp_priors, abs=1e-9)


def test_per_source_tau_and_centred_variant_build():
    from bayes_koa.kinds import build_model

    spec = load_spec("safety", measure="logOR", between_trial_sd="per_source", parameterization="centered")
    t = pd.concat([trial((("msc", "msc", 20), ("control", "control", 20)), trial_id=k, source=s)
                   for k, s in (("T1", "BM"), ("T2", "AD"))])
    o = pd.concat([ae_rows({"msc": (3, 20), "control": (1, 20)}, trial_id=k) for k in ("T1", "T2")])
    model = build_model(spec, prepare(spec, effect_sizes((t, o), measure="logOR"))[0])
    dims = model.named_vars_to_dims
    assert dims["tau"] == ("source",) and dims["theta"] == ("comparison",) and dims["y_obs"] == ("arm",)
    assert {v.name for v in model.free_RVs} == {"mu", "tau", "sigma_source", "source_mean", "theta", "alpha"}
    assert dims["source_odds_ratio"] == ("source",) and "odds_ratio" in model.named_vars


# --------------------------------------------------------------------------- draws -> answers


def _posterior(seed=0, sources=("BM", "UC", "AD")):
    rng = np.random.default_rng(seed)
    shape = (4, 1000)
    mu = rng.normal(0.2, 0.3, shape)
    post = xr.Dataset({
        "mu": (("chain", "draw"), mu),
        "tau": (("chain", "draw"), np.abs(rng.normal(0, 0.3, shape))),
        "sigma_source": (("chain", "draw"), np.abs(rng.normal(0, 0.4, shape))),
        "source_mean": (("chain", "draw", "source"), mu[..., None] + rng.normal(0, 0.3, shape + (len(sources),))),
    }, coords={"chain": range(4), "draw": range(1000), "source": list(sources)})
    return xr.DataTree.from_dict({"posterior": post})


def test_p_or_above_counts_draws_above_the_log_threshold():
    dt = _posterior()
    tab = p_or_above(dt, threshold=1.5)
    assert list(tab.index) == ["odds_ratio", "source_odds_ratio[BM]", "source_odds_ratio[UC]",
                               "source_odds_ratio[AD]"]
    mu = dt["posterior"]["mu"].values
    p = float((mu > np.log(1.5)).mean())  # exp(mu) > 1.5  <=>  mu > log 1.5
    assert tab.loc["odds_ratio", "p"] == p and tab.loc["odds_ratio", "draws"] == 4000
    ad = dt["posterior"]["source_mean"].sel(source="AD").values
    assert tab.loc["source_odds_ratio[AD]", "p"] == float((ad > np.log(1.5)).mean())
    # independent draws: MC SE ~ sqrt(p (1 - p) / n); the ESS estimate of 4000 iid draws scatters
    # by a few percent, so 15% on the SE
    assert tab.loc["odds_ratio", "mcse"] == pytest.approx(math.sqrt(p * (1 - p) / 4000), rel=0.15)
    assert tab["threshold"].eq(1.5).all() and list(tab["level"]) == ["overall", "BM", "UC", "AD"]
    assert p_or_above(dt).loc["odds_ratio", "p"] == float((mu > 0).mean())  # default threshold OR 1
    with pytest.raises(ValueError, match="odds ratio > 0"):
        p_or_above(dt, threshold=0)


def test_predictions_for_a_new_trial():
    dt = _posterior(seed=1)
    add_predictions(dt, SPEC, seed=3)
    post = dt["posterior"]
    # theta_new = mu + sigma_source e1 + tau e2: variance var(mu) + E[sigma_source^2] + E[tau^2];
    # one normal draw per posterior draw (4000) gives ~2-3% Monte Carlo error on a variance, so 10%
    expected = float(post["mu"].var() + (post["sigma_source"] ** 2).mean() + (post["tau"] ** 2).mean())
    assert float(post["theta_new"].var()) == pytest.approx(expected, rel=0.10)
    assert post["theta_new_source"].dims == ("chain", "draw", "source")
