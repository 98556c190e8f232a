"""One test per kind of bad input: each mutates a small valid table (the LamoEspinosa_2020 rows of
the bundled CSVs, read as text) and checks that the error names the trial, the arm and the column."""

from __future__ import annotations

import csv
import io
import warnings
from importlib import resources

import pandas as pd
import pytest

from bayes_koa.data import DataValidationError, DataValidationWarning, validate

TRIAL = "LamoEspinosa_2020"


def _bundled_text(filename: str) -> pd.DataFrame:
    raw = resources.files("bayes_koa.koa").joinpath("data", "koa_msc", filename).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(raw)))
    return pd.DataFrame(rows, dtype=object)


@pytest.fixture
def tables():
    """Valid in-memory tables: LamoEspinosa_2020 (2 arms, 36 outcome rows), as text."""
    trials = _bundled_text("trials.csv")
    outcomes = _bundled_text("outcomes.csv")
    trials = trials[trials["trial_id"] == TRIAL].reset_index(drop=True)
    outcomes = outcomes[outcomes["trial_id"] == TRIAL].reset_index(drop=True)
    assert len(trials) == 2 and len(outcomes) == 36  # outcomes.csv lines 62-97
    return trials, outcomes


def _row(df: pd.DataFrame, **match) -> int:
    mask = pd.Series(True, index=df.index)
    for k, v in match.items():
        mask &= df[k] == v
    (idx,) = df.index[mask]
    return idx


def _vas0(outcomes, arm="msc") -> int:
    return _row(outcomes, arm_id=arm, outcome="VAS", time_months="0")


def _errors(trials, outcomes, contrasts=None) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        validate(trials, outcomes, contrasts)
    return info.value


def _one(err: DataValidationError, column: str) -> dict:
    hits = [p for p in err.problems if p["column"] == column]
    assert len(hits) == 1, str(err)
    return hits[0]


def _names(problem: dict, trial: str, arm: str, column: str) -> None:
    """The problem line names the trial, the arm and the column."""
    assert problem["trial_id"] == trial
    assert problem["arm_id"] == arm
    assert problem["column"] == column
    assert problem["line"].startswith(f"{trial} / arm {arm} / column {column}: "), problem["line"]


def test_valid_tables_pass(tables):
    trials, outcomes = tables
    validate(trials, outcomes)  # no error, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(trials, outcomes)


def test_missing_values_are_not_errors(tables):
    trials, outcomes = tables
    i = _vas0(outcomes)
    outcomes.loc[i, ["mean", "sd"]] = ""
    trials.loc[0, ["country", "n_randomized", "rct"]] = ""
    trials.loc[1, ["country", "rct"]] = ""  # trial-level columns must still agree
    validate(trials, outcomes)


def test_missing_required_column(tables):
    trials, outcomes = tables
    err = _errors(trials, outcomes.drop(columns="value_type"))
    p = _one(err, "value_type")
    assert p["table"] == "outcomes" and p["row"] is None
    assert "required column is missing" in p["line"]


def test_column_name_differing_only_in_case(tables):
    trials, outcomes = tables
    err = _errors(trials, outcomes.rename(columns={"sd": "SD"}))
    assert "should be named 'sd'" in _one(err, "SD")["message"]


def test_non_numeric_value(tables):
    trials, outcomes = tables
    i = _vas0(outcomes)
    outcomes.loc[i, "mean"] = "5,3"
    p = _one(_errors(trials, outcomes), "mean")
    _names(p, TRIAL, "msc", "mean")
    assert "not a number (got '5,3')" in p["message"]
    assert p["row"] == i


def test_sd_not_positive(tables):
    trials, outcomes = tables
    i = _vas0(outcomes)
    outcomes.loc[i, "sd"] = "-1.9"
    p = _one(_errors(trials, outcomes), "sd")
    _names(p, TRIAL, "msc", "sd")
    assert p["line"] == f"{TRIAL} / arm msc / column sd: SD must be > 0 (got -1.9) in outcomes index {i}"


def test_se_zero(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes, "control"), "se"] = "0"
    p = _one(_errors(trials, outcomes), "se")
    _names(p, TRIAL, "control", "se")
    assert "SE must be > 0 (got 0)" in p["message"]


def test_n_below_two(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), "n"] = "1"
    p = _one(_errors(trials, outcomes), "n")
    _names(p, TRIAL, "msc", "n")
    assert "n must be >= 2 (got 1)" in p["message"]


def test_n_not_whole(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), "n"] = "24.5"
    _names(_one(_errors(trials, outcomes), "n"), TRIAL, "msc", "n")


def _with_ae(outcomes: pd.DataFrame, **changes) -> pd.DataFrame:
    """Add a valid AE_any row (events per arm) for the msc arm, with changes applied."""
    row = {c: "" for c in outcomes.columns}
    row.update(trial_id=TRIAL, arm_id="msc", outcome="AE_any", time_months="12", value_type="final",
               n="24", events="3", stat_reported="events", lower_is_better="true")
    row.update(changes)
    return pd.concat([outcomes.assign(events=""), pd.DataFrame([row])], ignore_index=True)


def test_events_row_is_valid(tables):
    trials, outcomes = tables
    validate(trials, _with_ae(outcomes))


def test_events_negative(tables):
    trials, outcomes = tables
    p = _one(_errors(trials, _with_ae(outcomes, events="-1")), "events")
    _names(p, TRIAL, "msc", "events")
    assert "events must be >= 0 (got -1)" in p["message"]


def test_events_above_n(tables):
    trials, outcomes = tables
    p = _one(_errors(trials, _with_ae(outcomes, events="25")), "events")
    _names(p, TRIAL, "msc", "events")
    assert "events (25) > n (24)" in p["message"]


def test_events_row_needs_n_final_and_stat(tables):
    trials, outcomes = tables
    err = _errors(trials, _with_ae(outcomes, n="", value_type="change_from_baseline",
                                   stat_reported="mean_sd"))
    for column in ("n", "value_type", "stat_reported"):
        _names(_one(err, column), TRIAL, "msc", column)


@pytest.mark.parametrize(
    "column, value",
    [("cell_source", "bone marrow"), ("origin", "autologus"), ("arm_role", "treatment")],
)
def test_unknown_category(tables, column, value):
    trials, outcomes = tables
    trials[column] = value  # both arms, so trial-level columns still agree
    err = _errors(trials, outcomes)
    hits = [p for p in err.problems if p["column"] == column]
    assert [p["arm_id"] for p in hits] == ["msc", "control"]
    _names(hits[0], TRIAL, "msc", column)
    assert f"unknown {column} {value!r}" in hits[0]["message"]


def test_trial_arm_listed_twice(tables):
    trials, outcomes = tables
    trials = pd.concat([trials, trials.iloc[[1]]], ignore_index=True)
    p = _one(_errors(trials, outcomes), "arm_id")
    _names(p, TRIAL, "control", "arm_id")
    assert "listed 2 times" in p["message"]
    assert p["line"].endswith("in trials index 1, 2")


def test_outcome_listed_twice(tables):
    trials, outcomes = tables
    i = _vas0(outcomes)
    outcomes = pd.concat([outcomes, outcomes.loc[[i]]], ignore_index=True)
    p = _one(_errors(trials, outcomes), "outcome")
    _names(p, TRIAL, "msc", "outcome")
    assert "VAS at 0 months (final) is listed 2 times" in p["message"]


def test_outcome_arm_not_in_trials(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), "arm_id"] = "msc_high"
    p = _one(_errors(trials, outcomes), "arm_id")
    _names(p, TRIAL, "msc_high", "arm_id")
    assert "has no arm 'msc_high' in trials (arms: msc, control)" in p["message"]


def test_outcome_trial_not_in_trials(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), "trial_id"] = "LamoEspinosa_2021"
    p = _one(_errors(trials, outcomes), "trial_id")
    _names(p, "LamoEspinosa_2021", "msc", "trial_id")


def test_blank_key(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), "outcome"] = ""
    _names(_one(_errors(trials, outcomes), "outcome"), TRIAL, "msc", "outcome")


@pytest.mark.parametrize("column, value", [("country", "Portugal"), ("year", "2019"), ("rct", "no")])
def test_arms_disagree_on_trial_level_field(tables, column, value):
    trials, outcomes = tables
    trials.loc[1, column] = value
    p = _one(_errors(trials, outcomes), column)
    assert p["trial_id"] == TRIAL and p["arm_id"] == "msc, control"
    assert p["line"].startswith(f"{TRIAL} / arms msc, control / column {column}: arms disagree")


def _multi_source(trials: pd.DataFrame, control_source: str) -> pd.DataFrame:
    """Two msc arms with different sources (as MILES) and a control arm."""
    extra = trials.iloc[[0]].assign(arm_id="msc_ad", cell_source="AD")
    trials = pd.concat([trials, extra], ignore_index=True)
    trials.loc[trials["arm_role"] == "control", "cell_source"] = control_source
    return trials


def test_multi_source_trial_control_other_is_valid(tables):
    trials, outcomes = tables
    validate(_multi_source(trials, "other"), outcomes)


def test_multi_source_trial_control_not_other(tables):
    trials, outcomes = tables
    p = _one(_errors(_multi_source(trials, "BM"), outcomes), "cell_source")
    _names(p, TRIAL, "control", "cell_source")
    assert "control arms must be 'other'" in p["message"]


def test_single_source_trial_control_other_is_an_error(tables):
    trials, outcomes = tables
    trials.loc[trials["arm_role"] == "control", "cell_source"] = "other"
    p = _one(_errors(trials, outcomes), "cell_source")
    assert p["arm_id"] == "msc, control"


def test_unknown_direction(tables):
    trials, outcomes = tables
    i = _vas0(outcomes)
    outcomes.loc[i, ["outcome", "lower_is_better"]] = ["Oxford_knee", ""]
    p = _one(_errors(trials, outcomes), "lower_is_better")
    _names(p, TRIAL, "msc", "lower_is_better")
    assert "'Oxford_knee' is not in the registry" in p["message"]
    # with a stated direction the same row is valid
    outcomes.loc[i, "lower_is_better"] = "false"
    validate(trials, outcomes)


def test_jsw_direction_unknown_is_a_warning(tables):
    trials, outcomes = tables
    i = _row(outcomes, arm_id="msc", outcome="WOMAC_total", time_months="12")
    outcomes.loc[i, ["outcome", "lower_is_better", "value_type"]] = ["JSW_mm", "", "change_from_baseline"]
    with pytest.warns(DataValidationWarning, match="JSW_mm has no known direction") as rec:
        validate(trials, outcomes)
    assert f"{TRIAL} / arm msc / column lower_is_better" in str(rec[0].message)


def test_direction_contradicts_registry(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), "lower_is_better"] = "false"
    p = _one(_errors(trials, outcomes), "lower_is_better")
    _names(p, TRIAL, "msc", "lower_is_better")
    assert "VAS is lower-is-better in the registry" in p["message"]


def test_unreadable_boolean(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), "lower_is_better"] = "maybe"
    p = _one(_errors(trials, outcomes), "lower_is_better")
    _names(p, TRIAL, "msc", "lower_is_better")


def test_value_outside_stated_scale(tables):
    trials, outcomes = tables
    i = _vas0(outcomes)
    outcomes.loc[i, ["scale_min", "scale_max"]] = ["0", "5"]  # mean is 5.3 on the row
    p = _one(_errors(trials, outcomes), "mean")
    _names(p, TRIAL, "msc", "mean")
    assert "mean 5.3 is outside the stated scale 0-5" in p["message"]


def test_change_outside_stated_scale(tables):
    trials, outcomes = tables
    i = _vas0(outcomes)
    outcomes.loc[i, ["scale_min", "scale_max", "value_type", "mean"]] = ["0", "10", "change_from_baseline", "-10.5"]
    p = _one(_errors(trials, outcomes), "mean")
    assert "within +/-10" in p["message"]
    outcomes.loc[i, "mean"] = "-9.5"  # a change of -9.5 on a 0-10 scale is possible
    validate(trials, outcomes)


def test_q1_above_median(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), ["median", "q1", "q3"]] = ["5", "6", "8"]
    p = _one(_errors(trials, outcomes), "q1")
    _names(p, TRIAL, "msc", "q1")
    assert "q1 (6) > median (5)" in p["message"]


def test_median_above_q3(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), ["median", "q1", "q3"]] = ["9", "6", "8"]
    p = _one(_errors(trials, outcomes), "q3")
    _names(p, TRIAL, "msc", "q3")
    assert "median (9) > q3 (8)" in p["message"]


def test_ci_low_above_ci_high(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), ["ci_low", "ci_high"]] = ["6.1", "4.5"]
    p = _one(_errors(trials, outcomes), "ci_low")
    _names(p, TRIAL, "msc", "ci_low")
    assert "ci_low (6.1) > ci_high (4.5)" in p["message"]


def _contrast(**changes) -> pd.DataFrame:
    row = dict(trial_id=TRIAL, outcome="WOMAC_total", time_months="12", contrast="msc_minus_control",
               estimate="0.7", ci_low="-8", ci_high="9.4", ci_level="95", adjusted="no")
    row.update(changes)
    return pd.DataFrame([row])


def test_contrast_valid(tables):
    trials, outcomes = tables
    validate(trials, outcomes, _contrast())
    validate(trials, outcomes, _contrast(contrast="control_change_from_baseline"))


def test_contrast_arm_not_in_trials(tables):
    trials, outcomes = tables
    err = _errors(trials, outcomes, _contrast(contrast="bmac_change_from_baseline"))
    p = _one(err, "contrast")
    assert p["line"].startswith(f"{TRIAL} / contrast bmac_change_from_baseline / column contrast: ")
    assert "no arm 'bmac'" in p["message"]


def test_contrast_ci_reversed(tables):
    trials, outcomes = tables
    p = _one(_errors(trials, outcomes, _contrast(ci_low="9.4", ci_high="-8")), "ci_low")
    assert p["line"].startswith(f"{TRIAL} / contrast msc_minus_control / column ci_low: ")


def test_contrast_estimate_outside_ci_is_a_warning(tables):
    trials, outcomes = tables
    with pytest.warns(DataValidationWarning, match="outside its own CI"):
        validate(trials, outcomes, _contrast(estimate="10"))


def test_several_problems_reported_together(tables):
    trials, outcomes = tables
    outcomes.loc[_vas0(outcomes), "sd"] = "-1.9"
    outcomes.loc[_vas0(outcomes, "control"), "q1"] = "9"  # median is empty on this row; mean_sd row
    outcomes.loc[_vas0(outcomes, "control"), "q3"] = "3"
    trials.loc[0, "origin"] = "donor"
    trials.loc[1, "origin"] = "donor"
    err = _errors(trials, outcomes)
    got = {(p["table"], p["arm_id"], p["column"]) for p in err.problems}
    assert got == {
        ("outcomes", "msc", "sd"),
        ("outcomes", "control", "q1"),
        ("trials", "msc", "origin"),
        ("trials", "control", "origin"),
    }
    lines = str(err).splitlines()
    assert lines[0] == "4 problems in the trial data:"
    assert len(lines) == 5 and all(line.startswith(f"- {TRIAL} / arm ") for line in lines[1:])


def test_typed_frames_validate(tables):
    """validate accepts the typed columns of a TrialData as well as text."""
    from bayes_koa.data import read_trials

    trials, outcomes = tables
    data = read_trials(trials, outcomes)
    assert data.trials["rct"].tolist() == [True, True]
    validate(data.trials, data.outcomes, data.contrasts, data.pooled_targets)
