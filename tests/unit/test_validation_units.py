"""Issue 10 (A): unit and field mix-ups that used to pass silently.

Each test builds a small extraction by hand and checks the value or the message against a hand
computation: VAS in cm next to mm, an SE typed under ``sd``, an SE contradicting the SD, a mean
outside its own CI, and change and final values in one SMD (Cochrane Handbook 10.5.2).
"""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest

from bayes_koa.data import DataValidationError, DataValidationWarning, read_trials
from bayes_koa.effects.table import effect_sizes, usable


def trials(*ids, n=25):
    return pd.DataFrame([
        {"trial_id": t, "arm_id": arm, "arm_role": arm, "n_randomized": n, "cell_source": "BM",
         "origin": "autologous", "in_scope": "yes", "control_type": "placebo" if arm == "control" else "",
         "cells_per_injection": 4e7 if arm == "msc" else None, "n_injections": 1}
        for t in ids for arm in ("msc", "control")])


def rows(trial_id, outcome, values, time=12, value_type="final", **extra):
    """values: {arm: (mean, sd)} or {arm: {column: value}}."""
    out = []
    for arm, v in values.items():
        cols = v if isinstance(v, dict) else {"mean": v[0], "sd": v[1], "stat_reported": "mean_sd"}
        out.append({"trial_id": trial_id, "arm_id": arm, "outcome": outcome, "time_months": time,
                    "value_type": value_type, **extra, **cols})
    return pd.DataFrame(out)


def hedges_g(m1, sd1, n1, m2, sd2, n2):
    df = n1 + n2 - 2
    sp = math.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / df)
    j = math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
    return j * (m1 - m2) / sp


def one(e, **where):
    sel = e
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, sel
    return sel.iloc[0]


# --------------------------------------------------------------------------- VAS cm / mm


def _vas(trial_id, scale, **extra):
    """Baseline and 12-month VAS; scale 10 (cm) or 100 (mm): the same patients in two units."""
    f = scale / 100
    return pd.concat([
        rows(trial_id, "VAS", {"msc": (65 * f, 15 * f), "control": (64 * f, 15 * f)}, time=0, **extra),
        rows(trial_id, "VAS", {"msc": (40 * f, 10 * f), "control": (50 * f, 10 * f)}, **extra),
    ])


def test_vas_in_cm_pooled_with_mm_warns_naming_the_trial():
    t = trials("MM_2020", "CM_2021")
    o = pd.concat([_vas("MM_2020", 100), _vas("CM_2021", 10)])
    with pytest.warns(DataValidationWarning) as rec:
        e = effect_sizes((t, o), measure="MD")
    text = "\n".join(str(w.message) for w in rec if issubclass(w.category, DataValidationWarning))
    assert "- CM_2021 / all arms / column scale_max: VAS scale range not stated and every value is at most 6.5" in text
    assert "MM_2020" not in text  # values up to 65: mm, as the MD priors assume
    # the warning does not change a number: the cm trial's MD is (4.0 - 5.0) cm
    assert one(e, trial_id="CM_2021")["yi"] == pytest.approx(-1.0, abs=1e-12)
    # a stated 0-10 range is rescaled to mm (x10) and needs no guess: no warning, MD -10 mm
    o_stated = pd.concat([_vas("MM_2020", 100), _vas("CM_2021", 10, scale_min=0, scale_max=10)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataValidationWarning)
        e = effect_sizes((t, o_stated), measure="MD")
    assert one(e, trial_id="CM_2021")["yi"] == pytest.approx(-10.0, abs=1e-12)
    # SMD does not depend on the unit: no warning, and the same g for both trials
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataValidationWarning)
        e = effect_sizes((t, o), measure="SMD")
    g = hedges_g(40, 10, 25, 50, 10, 25)
    assert one(e, trial_id="CM_2021")["yi"] == pytest.approx(g, abs=1e-12)
    assert one(e, trial_id="MM_2020")["yi"] == pytest.approx(g, abs=1e-12)


def test_vas_above_100_is_refused_even_without_a_stated_range():
    # no version of VAS goes beyond 0-100 (mm); 450 is a typing error, named with its file row
    o = rows("T1", "VAS", {"msc": (450.0, 10.0), "control": (50.0, 10.0)})
    with pytest.raises(DataValidationError) as info:
        read_trials(trials("T1"), o)
    assert str(info.value) == ("T1 / arm msc / column mean: mean 450 is outside the range of every "
                               "version of VAS (0-100; scale_min/scale_max empty) in outcomes index 0")


# --------------------------------------------------------------------------- SE typed as SD


def test_mean_se_with_the_number_under_sd_is_refused():
    o = rows("T1", "VAS", {"msc": {"mean": 40.0, "sd": 2.0, "stat_reported": "mean_se"},
                           "control": (50.0, 10.0)})
    with pytest.raises(DataValidationError) as info:
        effect_sizes((trials("T1"), o), measure="MD")
    (p,) = info.value.problems
    assert (p["trial_id"], p["arm_id"], p["column"], p["row"]) == ("T1", "msc", "sd", 0)
    assert "stat_reported is mean_se but se is empty and sd is filled" in p["message"]
    # entered where it belongs, the SE gives SD = SE sqrt(n) = 2 * 5 = 10: vi = 10^2/25 + 10^2/25
    o_ok = rows("T1", "VAS", {"msc": {"mean": 40.0, "se": 2.0, "stat_reported": "mean_se"},
                              "control": (50.0, 10.0)})
    r = one(effect_sizes((trials("T1"), o_ok), measure="MD"), trial_id="T1")
    assert r["vi"] == pytest.approx(100 / 25 + 100 / 25, abs=1e-12)
    # (read as an SD, 2.0 would have given vi = 4/25 + 4: the arm weighted 25 times too much)


def test_spread_under_the_wrong_column_for_mean_sd_and_median_iqr():
    o = rows("T1", "VAS", {"msc": {"mean": 40.0, "se": 2.0, "stat_reported": "mean_sd"},
                           "control": {"mean": 50.0, "sd": 9.0, "stat_reported": "median_iqr"}})
    with pytest.raises(DataValidationError) as info:
        read_trials(trials("T1"), o)
    got = {(p["arm_id"], p["column"]) for p in info.value.problems}
    assert got == {("msc", "se"), ("control", "sd")}


# --------------------------------------------------------------------------- SE contradicting SD


@pytest.mark.parametrize("se, bad", [
    ("10", True),    # the SD typed again as SE: SE sqrt(25) = 50 against SD 10
    ("2.0", False),  # exactly SD / sqrt(n)
    ("2.4", False),  # 12 vs 10: within the factor 1.25 (n randomized vs analysed)
    ("2.6", True),   # >= 2.55 * 5 = 12.75 > 1.25 * 10.05 = 12.56 even after rounding
])
def test_se_contradicting_sd(se, bad):
    o = rows("T1", "VAS", {"msc": {"mean": 40.0, "sd": "10.0", "se": se, "stat_reported": "mean_sd"},
                           "control": (50.0, 10.0)})
    if not bad:
        read_trials(trials("T1"), o)
        return
    with pytest.raises(DataValidationError) as info:
        read_trials(trials("T1"), o)
    assert str(info.value) == (
        f"T1 / arm msc / column se: SE {float(se):g} contradicts SD 10: SE x sqrt(n) = "
        f"{float(se) * 5:.4g} with n = 25 (n_randomized); one of them is wrong (e.g. an SE typed "
        "as an SD) in outcomes index 0")


def test_se_sd_rounding_of_small_printed_numbers_is_allowed():
    # SD 0.9 and SE 0.2 at n = 25: 0.2 * 5 = 1.0, but SE 0.2 may be 0.15-0.25 (0.75-1.25): fine
    o = rows("T1", "VAS", {"msc": {"mean": 4.0, "sd": "0.9", "se": "0.2", "n": 25, "stat_reported": "mean_sd"},
                           "control": (5.0, 1.0)})
    read_trials(trials("T1"), o)


# --------------------------------------------------------------------------- mean outside its CI


def test_mean_outside_its_own_ci_is_flagged(tmp_path):
    o = rows("T1", "VAS", {"msc": {"mean": 40.0, "ci_low": 42.0, "ci_high": 50.0, "stat_reported": "mean_ci"},
                           "control": (50.0, 10.0)})
    t = trials("T1")
    t.to_csv(tmp_path / "trials.csv", index=False)
    o.to_csv(tmp_path / "outcomes.csv", index=False)
    with pytest.warns(DataValidationWarning) as rec:
        data = read_trials(tmp_path / "trials.csv", tmp_path / "outcomes.csv")
    assert data.warnings == ("T1 / arm msc / column mean: mean 40 lies outside its own CI (42, 50); "
                             "kept as printed in outcomes.csv row 2",)
    assert any("outside its own CI" in str(w.message) for w in rec)


# --------------------------------------------------------------------------- change vs final in SMD


def _mixed():
    """C_2019 reports change from baseline only; F_2020 and F_2021 final values only."""
    t = trials("C_2019", "F_2020", "F_2021")
    o = pd.concat([
        rows("C_2019", "WOMAC_total", {"msc": (-20.0, 8.0), "control": (-10.0, 8.0)},
             value_type="change_from_baseline"),
        rows("F_2020", "WOMAC_total", {"msc": (30.0, 15.0), "control": (36.0, 15.0)}),
        rows("F_2021", "WOMAC_total", {"msc": (28.0, 14.0), "control": (33.0, 16.0)}),
    ])
    return t, o


def test_smd_does_not_mix_change_and_final_values_by_default():
    t, o = _mixed()
    e = effect_sizes((t, o), measure="SMD")
    # final values are the majority (2 comparisons against 1): they are used ...
    for trial, (m1, s1, m2, s2) in (("F_2020", (30, 15, 36, 15)), ("F_2021", (28, 14, 33, 16))):
        r = one(e, trial_id=trial)
        assert r["value_type"] == "final" and r["excluded_reason"] == ""
        assert r["yi"] == pytest.approx(hedges_g(m1, s1, 25, m2, s2, 25), abs=1e-12)
    # ... and the change-score SMD is computed but left out, saying why and how to override
    c = one(e, trial_id="C_2019")
    assert c["value_type"] == "change_from_baseline"
    assert c["yi"] == pytest.approx(hedges_g(-20, 8, 25, -10, 8, 25), abs=1e-12)
    assert c["excluded_reason"] == (
        "change-from-baseline SMD not combined with the final-value SMDs of 2 comparisons at this "
        "outcome and time (Cochrane Handbook 10.5.2: their SDs differ); mix_change_final=True combines them")
    assert set(usable(e)["trial_id"]) == {"F_2020", "F_2021"}


def test_mix_change_final_override_and_md_mixes_as_the_handbook_allows():
    t, o = _mixed()
    e = effect_sizes((t, o), measure="SMD", mix_change_final=True)
    assert set(usable(e)["trial_id"]) == {"C_2019", "F_2020", "F_2021"}
    assert one(e, trial_id="C_2019")["yi"] == pytest.approx(hedges_g(-20, 8, 25, -10, 8, 25), abs=1e-12)
    # MD of change and final values may be combined (Handbook 10.5.2): nothing left out
    md = effect_sizes((t, o), measure="MD")
    assert set(usable(md)["trial_id"]) == {"C_2019", "F_2020", "F_2021"}
    assert one(md, trial_id="C_2019")["yi"] == -10.0
    # an explicit value type already gives one type
    fin = effect_sizes((t, o), measure="SMD", value_type="final")
    assert set(usable(fin)["trial_id"]) == {"F_2020", "F_2021"}


def test_a_trial_with_both_value_types_follows_the_choice():
    t, o = _mixed()
    both = rows("C_2019", "WOMAC_total", {"msc": (31.0, 15.0), "control": (35.0, 15.0)})
    e = effect_sizes((t, pd.concat([o, both])), measure="SMD")
    # C_2019 has final values too: all three trials use final values, none left out
    assert set(usable(e)["trial_id"]) == {"C_2019", "F_2020", "F_2021"}
    assert one(e, trial_id="C_2019")["yi"] == pytest.approx(hedges_g(31, 15, 25, 35, 15, 25), abs=1e-12)
