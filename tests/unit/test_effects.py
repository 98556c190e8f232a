"""effect_sizes on the bundled data and on small made-up tables, against hand computations.

The bundled CSVs are read with pandas directly (raw strings such as "yes"/"true" included), so
most tests do not depend on bayes_koa.data's reader; one also runs through ``load_koa_msc``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bayes_koa.data import DataValidationWarning
from bayes_koa.koa.bundled import load_koa_msc
from bayes_koa.effects.table import COLUMNS, effect_sizes, excluded, orient, usable

DATA = Path(__file__).resolve().parents[2] / "bayes_koa" / "koa" / "data" / "koa_msc"


@pytest.fixture(scope="module")
def koa():
    return (pd.read_csv(DATA / "trials.csv"), pd.read_csv(DATA / "outcomes.csv"))


def hedges_g(m1, sd1, n1, m2, sd2, n2):
    """Independent SMD: Hedges' g with J = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2))."""
    df = n1 + n2 - 2
    sp = math.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / df)
    j = math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
    g = j * (m1 - m2) / sp
    return g, 1 / n1 + 1 / n2 + g**2 / (2 * (n1 + n2))


def trial(trial_id="T1", arms=(("msc", "msc", 20), ("control", "control", 20)), in_scope="yes"):
    """A made-up trials table: arms as (arm_id, arm_role, n_randomized)."""
    return pd.DataFrame([
        {"trial_id": trial_id, "arm_id": a, "arm_role": role, "n_randomized": n,
         "cell_source": "BM", "origin": "autologous", "in_scope": in_scope,
         "control_type": "placebo" if role == "control" else None,
         "cells_per_injection": 4e7 if role == "msc" else None, "n_injections": 1}
        for a, role, n in arms
    ])


def rows(trial_id, outcome, values, lower="true", time=12, value_type="final", **extra):
    """Outcome rows: values = {arm_id: (mean, sd)} (or dicts of columns)."""
    out = []
    for arm, v in values.items():
        cols = v if isinstance(v, dict) else {"mean": v[0], "sd": v[1], "stat_reported": "mean_sd"}
        out.append({"trial_id": trial_id, "arm_id": arm, "outcome": outcome,
                     "lower_is_better": lower, "time_months": time, "value_type": value_type,
                     **extra, **cols})
    return pd.DataFrame(out)


def one(e, **where):
    sel = e
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, sel
    return sel.iloc[0]


# --------------------------------------------------------------------------- bundled data


def test_lamoespinosa2020_womac_total_12m_smd_by_hand(koa):
    e = effect_sizes(koa, measure="SMD")
    r = one(e, trial_id="LamoEspinosa_2020", outcome="WOMAC_total", time_months=12.0)
    # outcomes.csv: MSC 23.0 (16.6), control 22.3 (15.8); trials.csv n_analysed 24 / 26
    g, v = hedges_g(23.0, 16.6, 24, 22.3, 15.8, 26)
    assert r["yi"] == pytest.approx(g, abs=1e-12)
    assert r["vi"] == pytest.approx(v, abs=1e-12)
    assert r["sei"] == pytest.approx(math.sqrt(v), abs=1e-12)
    assert (r["n_msc"], r["n_control"], r["n_from"]) == (24, 26, "n_analysed")
    assert r["comparison"] == "msc vs control" and r["control_type"] == "PRP"
    assert r["value_type"] == "final" and r["excluded_reason"] == "" and not r["flipped"]
    assert r["scale"] == "unknown" and r["estimated"] == "" and r["in_scope"]


def test_lamoespinosa2016_is_present_and_says_why(koa):
    e = effect_sizes(koa, measure="SMD")
    lamo = e[e["trial_id"] == "LamoEspinosa_2016"]
    assert set(lamo["comparison"]) == {"msc_low vs control", "msc_high vs control"}
    r = one(lamo, comparison="msc_low vs control", outcome="WOMAC_total", time_months=12.0)
    assert np.isnan(r["yi"]) and np.isnan(r["vi"])
    assert r["excluded_reason"] == "per-arm n not reported (msc_low)"
    assert r["estimated"] == "mean/SD from median/IQR (Wan 2014)"
    # JSW: change values only (auto picks them), direction unclear, n missing
    jsw = one(lamo, comparison="msc_high vs control", outcome="JSW_mm", time_months=6.0)
    assert jsw["value_type"] == "change_from_baseline"
    assert jsw["excluded_reason"].startswith("direction unclear: lower_is_better empty for JSW_mm")


def test_lamoespinosa2016_md_from_medians_keeps_yi(koa):
    e = effect_sizes(koa, measure="MD", outcomes=["WOMAC_total"], times=[12])
    r = one(e, trial_id="LamoEspinosa_2016", comparison="msc_high vs control")
    # Table 2, 12 months: msc_high 16.5 (12, 19), control 13.5 (8, 33); Wan 2014 mean (q1+m+q3)/3
    assert r["yi"] == pytest.approx((12 + 16.5 + 19) / 3 - (8 + 13.5 + 33) / 3, abs=1e-12)
    assert np.isnan(r["vi"])
    assert r["excluded_reason"] == ("per-arm n not reported (msc_high); "
                                    "vi not computable (yi kept)")


def test_every_unusable_row_has_a_reason(koa):
    for measure in ("SMD", "MD", "ROM"):
        e = effect_sizes(koa, measure=measure)
        assert list(e.columns) == list(COLUMNS)
        bad = ~(np.isfinite(e["yi"]) & np.isfinite(e["vi"]))
        assert (e.loc[bad, "excluded_reason"] != "").all()
        assert len(usable(e)) + len(excluded(e)) == len(e)
        assert (usable(e)["trial_id"] == "LamoEspinosa_2020").all()
    # every trial of trials.csv appears (none dropped silently)
    assert set(e["trial_id"]) == set(koa[0]["trial_id"])
    kuah = e[e["trial_id"] == "Kuah_2018"]
    assert set(kuah["excluded_reason"]) == {"baseline values only (time 0): no follow-up values"}
    assert one(e, trial_id="AlNajar_2017")["excluded_reason"] == "no control arm (single-arm study)"
    assert one(e, trial_id="Ruane_2021")["excluded_reason"].startswith("trial out of scope")


def test_unlabelled_plus_minus(koa):
    e = effect_sizes(koa, outcomes=["WOMAC_unspecified"])
    r = one(e, trial_id="LeeBW_2025")
    assert "mean_pm_unlabelled" in r["excluded_reason"] and "(msc, control)" in r["excluded_reason"]
    assert "per-arm n not reported (msc, control)" in r["excluded_reason"]
    # with a user-supplied n and a reading of +/- as SD, the row becomes usable
    e = effect_sizes(koa, outcomes=["WOMAC_unspecified"], unlabelled_pm="sd",
                     n_override={"LeeBW_2025": {"msc": 12, "control": 12}})
    r = one(e, trial_id="LeeBW_2025")
    g, v = hedges_g(-5.0, 3.6, 12, -0.1, 5.5, 12)
    assert (r["yi"], r["vi"]) == (pytest.approx(g, abs=1e-12), pytest.approx(v, abs=1e-12))
    assert r["n_from"] == "user" and r["value_type"] == "change_from_baseline"
    assert r["estimated"] == "+/- taken as SD (unlabelled_pm='sd')" and r["excluded_reason"] == ""
    # read as SE: SD = SE * sqrt(n)
    e = effect_sizes(koa, outcomes=["WOMAC_unspecified"], unlabelled_pm="se",
                     n_override={"LeeBW_2025": {"msc": 12, "control": 12}})
    g, _ = hedges_g(-5.0, 3.6 * math.sqrt(12), 12, -0.1, 5.5 * math.sqrt(12), 12)
    assert one(e, trial_id="LeeBW_2025")["yi"] == pytest.approx(g, abs=1e-12)


def test_accepts_object_with_tables_and_load_koa_msc(koa):
    by_tuple = effect_sizes(koa)
    by_object = effect_sizes(SimpleNamespace(trials=koa[0], outcomes=koa[1]))
    pd.testing.assert_frame_equal(by_tuple, by_object)
    # the validated tables (nullable Int64/boolean dtypes) give the same table
    with warnings.catch_warnings():  # the loader warns about JSW_mm and the Ruane_2021 CI
        warnings.simplefilter("ignore", DataValidationWarning)
        data = load_koa_msc()
    by_loader = effect_sizes(data)
    pd.testing.assert_frame_equal(by_loader, by_tuple)


# --------------------------------------------------------------------------- made-up data


def test_higher_is_better_outcome_is_flipped():
    t = trial()
    o = rows("T1", "Lysholm", {"msc": (80.0, 10.0), "control": (70.0, 12.0)}, lower="false")
    e = effect_sizes((t, o), measure="MD")
    r = one(e, outcome="Lysholm")
    # MSC better by 10 points on a higher-is-better scale -> yi = -(80 - 70) = -10
    assert r["yi"] == -10.0 and r["flipped"]
    assert r["vi"] == pytest.approx(100 / 20 + 144 / 20, abs=1e-12)
    # the same numbers on a lower-is-better scale keep their sign
    o2 = o.assign(outcome="VAS", lower_is_better="true")
    r2 = one(effect_sizes((t, o2), measure="MD"), outcome="VAS")
    assert r2["yi"] == 10.0 and not r2["flipped"]


def test_orient_rule():
    yi, flipped = orient([1.0, 1.0, 1.0], [True, False, None])
    np.testing.assert_array_equal(yi, [1.0, -1.0, 1.0])
    np.testing.assert_array_equal(flipped, [False, True, False])


def test_direction_from_registry_when_empty():
    t = trial()
    o = rows("T1", "KOOS_unspecified", {"msc": (70.0, 10.0), "control": (60.0, 10.0)}, lower=None)
    r = one(effect_sizes((t, o), measure="MD"), outcome="KOOS_unspecified")
    assert r["flipped"] and r["yi"] == -10.0  # KOOS: higher is better (schema registry)


def test_multiarm_split_and_keep():
    t = trial(arms=(("msc_low", "msc", 20), ("msc_high", "msc", 21), ("control", "control", 20)))
    o = rows("T1", "VAS", {"msc_low": (40.0, 10.0), "msc_high": (35.0, 12.0),
                           "control": (50.0, 11.0)})
    e = effect_sizes((t, o), measure="MD")
    low = one(e, comparison="msc_low vs control")
    # control n 20 shared by 2 comparisons -> 10 in each variance (Cochrane Handbook 23.3.4)
    assert low["n_control"] == 10 and low["n_msc"] == 20
    assert low["vi"] == pytest.approx(100 / 20 + 121 / 10, abs=1e-12)
    assert low["yi"] == -10.0
    assert low["multiarm"] == "split: control n 20 -> 10 (shared by 2 comparisons)"
    assert low["cov_group"] == ""
    # a control n of 21 shared by 2 comparisons is rounded down to 10
    t2 = t.assign(n_randomized=[20, 21, 21])
    high = one(effect_sizes((t2, o), measure="MD"), comparison="msc_high vs control")
    assert high["n_control"] == 10 and high["n_msc"] == 21
    # SMD: yi from the full n, vi from the split n
    e = effect_sizes((t, o), measure="SMD")
    high = one(e, comparison="msc_high vs control")
    assert high["yi"] == pytest.approx(hedges_g(35.0, 12.0, 21, 50.0, 11.0, 20)[0], abs=1e-12)
    assert high["vi"] == pytest.approx(hedges_g(35.0, 12.0, 21, 50.0, 11.0, 10)[1], abs=1e-12)
    # keep: full n, and the comparisons are grouped by the shared control
    e = effect_sizes((t, o), measure="MD", multiarm="keep")
    low = one(e, comparison="msc_low vs control")
    assert low["n_control"] == 20 and low["vi"] == pytest.approx(100 / 20 + 121 / 20, abs=1e-12)
    assert set(e["cov_group"]) == {"T1:control"}
    assert low["multiarm"] == "keep: control shared by 2 comparisons"


def test_split_never_below_two():
    t = trial(arms=(("a", "msc", 10), ("b", "msc", 10), ("c", "msc", 10),
                    ("control", "control", 5)))
    o = rows("T1", "VAS", {a: (40.0, 10.0) for a in ("a", "b", "c", "control")})
    e = effect_sizes((t, o), measure="MD")
    assert set(e["n_control"]) == {2}  # floor(5 / 3) = 1 -> at least 2


def test_log_odds_ratio_with_zero_cell_arm():
    t = trial(arms=(("msc", "msc", 15), ("control", "control", 14)))
    o = rows("T1", "AE_any", {"msc": {"events": 0, "n": 15, "stat_reported": "events"},
                              "control": {"events": 4, "n": 14, "stat_reported": "events"}})
    r = one(effect_sizes((t, o), measure="logOR"), outcome="AE_any")
    # cells 0/15 vs 4/14 -> +0.5 each: a 0.5, b 15.5, c 4.5, d 10.5
    assert r["yi"] == pytest.approx(math.log(0.5 * 10.5 / (15.5 * 4.5)), abs=1e-12)
    assert r["vi"] == pytest.approx(1 / 0.5 + 1 / 15.5 + 1 / 4.5 + 1 / 10.5, abs=1e-12)
    assert r["estimated"] == "0.5 added to every cell (zero cell)"
    assert r["excluded_reason"] == "" and r["scale"] == "events" and r["n_from"] == "outcome"
    # measure="auto" picks logOR for events; a continuous measure is refused with a reason
    assert one(effect_sizes((t, o), measure="auto"), outcome="AE_any")["measure"] == "logOR"
    smd = one(effect_sizes((t, o), measure="SMD"), outcome="AE_any")
    assert np.isnan(smd["yi"]) and "binary outcome" in smd["excluded_reason"]


def test_double_zero_table_is_excluded_not_corrected():
    t = trial()
    o = rows("T1", "AE_serious", {"msc": {"events": 0, "n": 20, "stat_reported": "events"},
                                  "control": {"events": 0, "n": 20, "stat_reported": "events"}})
    r = one(effect_sizes((t, o), measure="logRR"), outcome="AE_serious")
    assert np.isnan(r["yi"]) and "no events in either arm" in r["excluded_reason"]


def test_n_sources_and_override():
    t = trial().assign(n_analysed=[18, np.nan])
    o = rows("T1", "VAS", {"msc": (40.0, 10.0), "control": (50.0, 10.0)})
    r = one(effect_sizes((t, o), measure="MD"), outcome="VAS")
    assert (r["n_msc"], r["n_control"]) == (18, 20)
    assert r["n_from"] == "msc: n_analysed; control: n_randomized"
    o = o.assign(n=[17, 19])
    r = one(effect_sizes((t, o), measure="MD"), outcome="VAS")
    assert (r["n_msc"], r["n_control"], r["n_from"]) == (17, 19, "outcome")
    r = one(effect_sizes((t, o), measure="MD", n_override={"T1": {"control": 16}}), outcome="VAS")
    assert (r["n_msc"], r["n_control"]) == (17, 16)
    assert r["n_from"] == "msc: outcome; control: user"
    with pytest.raises(ValueError, match="trial T1, arm nope"):
        effect_sizes((t, o), n_override={"T1": {"nope": 10}})
    with pytest.raises(ValueError, match="trial T9"):
        effect_sizes((t, o), n_override={"T9": {"msc": 10}})


def test_missing_n_is_never_invented():
    t = trial().assign(n_randomized=[np.nan, 20])
    o = rows("T1", "VAS", {"msc": (40.0, 10.0), "control": (50.0, 10.0)})
    r = one(effect_sizes((t, o), measure="SMD"), outcome="VAS")
    assert np.isnan(r["yi"]) and pd.isna(r["n_msc"])
    assert r["excluded_reason"] == "per-arm n not reported (msc)"
    r = one(effect_sizes((t, o), measure="MD"), outcome="VAS")
    assert r["yi"] == -10.0 and np.isnan(r["vi"])


def test_sd_from_se_and_ci():
    t = trial(arms=(("msc", "msc", 25), ("control", "control", 100)))
    o = rows("T1", "VAS", {
        "msc": {"mean": 40.0, "se": 2.0, "stat_reported": "mean_se"},
        "control": {"mean": 50.0, "ci_low": 48.0, "ci_high": 52.0, "stat_reported": "mean_ci"}})
    r = one(effect_sizes((t, o), measure="MD"), outcome="VAS")
    sd_ctl = 4.0 / (2 * 1.959964) * 10  # n = 100 >= 60: normal quantile (6 decimals)
    assert r["vi"] == pytest.approx(10.0**2 / 25 + sd_ctl**2 / 100, rel=1e-6)
    assert r["estimated"] == "msc: SD = SE*sqrt(n); control: SD from 95% CI (normal quantile)"


def test_vas_0_10_rescaled_and_md_scale_conflict():
    t = pd.concat([trial("T1"), trial("T2")])
    o = pd.concat([
        rows("T1", "VAS", {"msc": (4.0, 1.0), "control": (5.0, 1.5)}, scale_min=0, scale_max=10),
        rows("T2", "VAS", {"msc": (40.0, 10.0), "control": (50.0, 15.0)},
             scale_min=0, scale_max=100),
    ])
    e = effect_sizes((t, o), measure="MD")
    r1, r2 = one(e, trial_id="T1"), one(e, trial_id="T2")
    assert r1["yi"] == pytest.approx(-10.0) and r1["vi"] == pytest.approx(100 / 20 + 225 / 20)
    assert r1["scale"] == r2["scale"] == "0-100"
    assert r1["estimated"] == "VAS 0-10 rescaled to 0-100 mm (x10)"
    # different stated ranges in one family: no pooled MD (an SMD is fine)
    o_bad = pd.concat([
        rows("T1", "WOMAC_total", {"msc": (30.0, 10.0), "control": (35.0, 10.0)},
             scale_min=0, scale_max=96),
        rows("T2", "WOMAC_total", {"msc": (80.0, 20.0), "control": (90.0, 20.0)},
             scale_min=0, scale_max=240),
    ])
    with pytest.raises(ValueError, match="WOMAC.*0-240: T2 WOMAC_total.*0-96: T1 WOMAC_total"):
        effect_sizes((t, o_bad), measure="MD")
    assert len(usable(effect_sizes((t, o_bad), measure="SMD"))) == 2


def test_value_types():
    t = trial()
    final = pd.concat([
        rows("T1", "VAS", {"msc": (60.0, 10.0), "control": (60.0, 10.0)}, time=0),
        rows("T1", "VAS", {"msc": (40.0, 12.0), "control": (50.0, 12.0)}, time=6),
    ])
    change = rows("T1", "VAS", {"msc": (-21.0, 9.0), "control": (-9.0, 9.0)}, time=6,
                  value_type="change_from_baseline")
    both = pd.concat([final, change])
    # auto prefers change when both arms have it; final ignores change rows
    auto = one(effect_sizes((t, both), measure="MD"), outcome="VAS")
    assert auto["value_type"] == "change_from_baseline" and auto["yi"] == -12.0
    fin = one(effect_sizes((t, both), measure="MD", value_type="final"), outcome="VAS")
    assert fin["value_type"] == "final" and fin["yi"] == -10.0
    # change without change rows: excluded unless pre_post_r is given
    r = one(effect_sizes((t, final), measure="MD", value_type="change"), outcome="VAS")
    assert np.isnan(r["yi"]) and "pass pre_post_r" in r["excluded_reason"]
    r = one(effect_sizes((t, final), measure="MD", value_type="change", pre_post_r=0.5),
            outcome="VAS")
    sd = math.sqrt(10.0**2 + 12.0**2 - 2 * 0.5 * 10.0 * 12.0)  # Cochrane Handbook 6.5.2.8
    assert r["yi"] == -10.0 and r["vi"] == pytest.approx(2 * sd**2 / 20, abs=1e-12)
    assert r["estimated"] == "change derived from final values (pre-post r = 0.5)"
    # baseline is never an effect
    assert set(effect_sizes((t, final), measure="MD")["time_months"]) == {6.0}


def test_out_of_scope_rows_are_computed_but_excluded():
    t = trial(in_scope="no")
    o = rows("T1", "VAS", {"msc": (40.0, 10.0), "control": (50.0, 10.0)})
    r = one(effect_sizes((t, o), measure="MD"), outcome="VAS")
    assert r["yi"] == -10.0 and r["excluded_reason"].startswith("trial out of scope")
    r = one(effect_sizes((t, o), measure="MD", include_out_of_scope=True), outcome="VAS")
    assert r["excluded_reason"] == "" and not r["in_scope"]


def test_several_controls_each_pair_named():
    t = trial(arms=(("msc", "msc", 20), ("control_ha", "control", 20),
                    ("control_none", "control", 20)))
    o = rows("T1", "VAS", {"msc": (40.0, 10.0), "control_ha": (45.0, 10.0),
                           "control_none": (50.0, 10.0)})
    e = effect_sizes((t, o), measure="MD")
    assert list(e["comparison"]) == ["msc vs control_ha", "msc vs control_none"]
    assert list(e["yi"]) == [-5.0, -10.0]
    # the MSC arm is shared by the two comparisons: its n is split too
    assert set(e["n_msc"]) == {10} and set(e["n_control"]) == {20}


def test_median_methods():
    t = trial()
    med = {"median": 12.0, "q1": 10.0, "q3": 20.0, "stat_reported": "median_iqr"}
    o = rows("T1", "VAS", {"msc": med, "control": (20.0, 8.0)})
    wan = one(effect_sizes((t, o), measure="MD"), outcome="VAS")
    assert wan["yi"] == pytest.approx(14.0 - 20.0)
    luo = one(effect_sizes((t, o), measure="MD", median_method="luo2018"), outcome="VAS")
    w = 0.7 + 0.39 / 20
    assert luo["yi"] == pytest.approx(w * 15 + (1 - w) * 12 - 20.0, abs=1e-12)
    assert luo["estimated"] == "msc: mean from median/IQR (Luo 2018), SD (Wan 2014)"
    none = one(effect_sizes((t, o), measure="MD", median_method=None), outcome="VAS")
    assert np.isnan(none["yi"]) and "median_method=None" in none["excluded_reason"]


def test_bad_input_names_trial_arm_and_column():
    t = trial()
    o = rows("T1", "VAS", {"msc": (40.0, 10.0), "ghost": (50.0, 10.0)})
    with pytest.raises(ValueError, match="T1 / arm ghost / column arm_id: trial T1 has no arm 'ghost'"):
        effect_sizes((t, o))
    o = rows("T1", "VAS", {"msc": (40.0, 10.0), "control": (50.0, 10.0)}).assign(
        stat_reported=["mean_sd", "mean_sdx"])
    with pytest.raises(ValueError, match="T1 / arm control / column stat_reported: unknown stat_reported 'mean_sdx'"):
        effect_sizes((t, o))
    o = rows("T1", "VAS", {"msc": (40.0, 10.0), "control": (50.0, 10.0)}).assign(
        mean=["40", "fifty"])
    with pytest.raises(ValueError, match="T1 / arm control / column mean: mean is not a number"):
        effect_sizes((t, o))
    with pytest.raises(ValueError, match="column arm_role: required column is missing in trials"):
        effect_sizes((t.drop(columns="arm_role"), o))
    with pytest.raises(ValueError, match="measure"):
        effect_sizes((t, o), measure="OR")
    with pytest.raises(TypeError):
        effect_sizes(t)


def test_reasons_for_missing_pieces():
    t = trial().assign(n_randomized=[np.nan, 20])
    o = rows("T1", "VAS", {"msc": {"mean": 40.0, "stat_reported": "mean_sd"},
                           "control": {"median": 50.0, "stat_reported": "median_iqr"}})
    r = one(effect_sizes((t, o), measure="MD"), outcome="VAS")
    assert r["excluded_reason"] == ("per-arm n not reported (msc); "
                                    "SD not reported (nor SE, CI, IQR or range) (msc); "
                                    "median reported without IQR or range (control)")
    assert np.isnan(r["yi"])


def test_selection_reasons_use_the_whole_data(koa):
    # Kuah_2018 has baseline values only, whatever the selection
    e = effect_sizes(koa, outcomes=["VAS"], times=[12])
    assert set(e.loc[e["trial_id"] == "Kuah_2018", "excluded_reason"]) == {
        "baseline values only (time 0): no follow-up values"}
    # LeeBW_2025 has 9-month values, none at 12 months
    assert one(e, trial_id="LeeBW_2025")["excluded_reason"] == (
        "no values for the selected outcomes/times")
    assert one(e, trial_id="Vega_2015")["excluded_reason"] == (
        "no arm-level outcome values in the data")


def test_argument_errors():
    t = trial()
    o = rows("T1", "VAS", {"msc": (40.0, 10.0), "control": (50.0, 10.0)})
    with pytest.raises(ValueError, match="value_type='change'"):
        effect_sizes((t, o), pre_post_r=0.5)  # would be ignored under value_type="auto"
    with pytest.raises(ValueError, match="baseline"):
        effect_sizes((t, o), times=[0, 12])
    with pytest.warns(UserWarning, match="Lysholm"):
        effect_sizes((t, o), outcomes=["Lysholm"])
