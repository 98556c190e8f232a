"""bayes_koa.analysis.cumulative: steps of a cumulative meta-analysis by year, and their table."""

from __future__ import annotations

import pandas as pd
import pytest

from bayes_koa.analysis.cumulative import CumulativeStep, assemble_cumulative, cumulative_steps, step_rows


def _effects():
    # T10 and T2 share a year (natural order: T2 first); T3 has two comparison rows; X is excluded
    return pd.DataFrame({
        "trial_id": ["T10", "T1", "T3", "T3", "T2", "X", "T4"],
        "year": [2015, 2012, 2018, 2018, 2015, 2010, 2018],
        "yi": [-1.0, -0.5, -0.2, -0.3, -0.8, 0.0, 0.1],
        "vi": [0.1] * 7,
        "excluded_reason": ["", "", "", "", "", "no SD", ""],
    })


def test_steps_accrue_trials_by_year():
    steps = cumulative_steps(_effects())
    assert [(s.step, s.year, s.trial_ids, s.added) for s in steps] == [
        (1, 2012, ("T1",), ("T1",)),
        (2, 2015, ("T1", "T2", "T10"), ("T2", "T10")),
        (3, 2018, ("T1", "T2", "T10", "T3", "T4"), ("T3", "T4")),
    ]
    assert [s.n_trials for s in steps] == [1, 3, 5]


def test_min_trials_skips_early_steps():
    steps = cumulative_steps(_effects(), min_trials=2)
    assert [(s.step, s.year, s.added) for s in steps] == [(1, 2015, ("T1", "T2", "T10")),
                                                         (2, 2018, ("T3", "T4"))]
    with pytest.raises(ValueError, match="no step reaches min_trials=9"):
        cumulative_steps(_effects(), min_trials=9)


def test_years_from_a_mapping_and_step_rows():
    eff = _effects().drop(columns="year")
    years = {"T10": 2015, "T1": 2012, "T3": 2018, "T2": 2015, "X": 2010, "T4": 2018}
    steps = cumulative_steps(eff, years=years)
    assert [s.year for s in steps] == [2012, 2015, 2018]
    rows = step_rows(eff, steps[1])
    assert list(rows["trial_id"]) == ["T10", "T1", "T2"]
    assert len(step_rows(eff, steps[2])) == 6  # both T3 rows; X never accrues (excluded)


def test_bad_years_are_named():
    eff = _effects()
    eff.loc[3, "year"] = 2019
    with pytest.raises(ValueError, match=r"trial 'T3' \(row 3\).*2019.*earlier row.*2018"):
        cumulative_steps(eff)
    eff = _effects()
    eff.loc[4, "year"] = None
    with pytest.raises(ValueError, match=r"trial 'T2' \(row 4\): column 'year' has year nan"):
        cumulative_steps(eff)
    with pytest.raises(KeyError, match="no 'year' column"):
        cumulative_steps(_effects().drop(columns="year"))
    with pytest.raises(ValueError, match="T4.*years mapping"):
        cumulative_steps(_effects(), years={"T1": 2012, "T2": 2015, "T10": 2015, "T3": 2018})


def test_assemble_repeats_step_columns_over_summary_rows():
    steps = cumulative_steps(_effects(), min_trials=2)
    summaries = [
        pd.DataFrame({"mean": [-0.7, 0.2], "lower": [-1.2, 0.05]}, index=pd.Index(["mu", "tau"], name="parameter")),
        {"parameter": "mu", "mean": -0.5, "lower": -0.9},
    ]
    table = assemble_cumulative(steps, summaries)
    assert list(table.columns) == ["step", "year", "n_trials", "added", "parameter", "mean", "lower"]
    assert table.to_dict("records") == [
        {"step": 1, "year": 2015, "n_trials": 3, "added": "T1, T2, T10", "parameter": "mu", "mean": -0.7, "lower": -1.2},
        {"step": 1, "year": 2015, "n_trials": 3, "added": "T1, T2, T10", "parameter": "tau", "mean": 0.2, "lower": 0.05},
        {"step": 2, "year": 2018, "n_trials": 5, "added": "T3, T4", "parameter": "mu", "mean": -0.5, "lower": -0.9},
    ]
    with pytest.raises(ValueError, match="2 steps but 1 summaries"):
        assemble_cumulative(steps, summaries[:1])
    with pytest.raises(ValueError, match="clash"):
        assemble_cumulative(steps[:1], [{"year": 1}])
    with pytest.raises(TypeError, match="DataFrame, Series or dict"):
        assemble_cumulative([CumulativeStep(1, 2000, ("a",), ("a",))], [3.0])
