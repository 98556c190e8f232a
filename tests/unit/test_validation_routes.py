"""Issue 10 (B): no way around the validation.

Every way into ``effect_sizes`` (TrialData, tuple of DataFrames, tuple of file paths, an object
with tables, a TrialData edited after reading) runs the checks of ``read_trials`` and gives the
same problem lines; labels follow one rule; duplicated column names, swapped arm roles, absurd
counts and folders given as files are refused with one-line errors.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pandas as pd
import pytest

from bayes_koa import cli
from bayes_koa.data import (
    DataValidationError,
    DataValidationWarning,
    read_trials,
    validate_effect_table,
)
from bayes_koa.effects.table import effect_sizes


def tables():
    t = pd.DataFrame([
        {"trial_id": "T1", "arm_id": "msc", "arm_role": "msc", "n_randomized": 20, "cell_source": "BM",
         "origin": "autologous", "in_scope": "yes", "control_type": "", "cells_per_injection": 4e7,
         "n_injections": 1},
        {"trial_id": "T1", "arm_id": "control", "arm_role": "control", "n_randomized": 20,
         "cell_source": "BM", "origin": "autologous", "in_scope": "yes", "control_type": "placebo",
         "cells_per_injection": None, "n_injections": 1},
    ])
    o = pd.DataFrame([
        {"trial_id": "T1", "arm_id": a, "outcome": "Lysholm", "time_months": 12, "value_type": "final",
         "mean": m, "sd": 10.0, "stat_reported": "mean_sd"} for a, m in (("msc", 80.0), ("control", 70.0))])
    return t, o


def bad_outcomes():
    """SD -15, n = 1 and a mean of 450 on a 0-100 scale (the tuple route used them all)."""
    _, o = tables()
    o.loc[0, "sd"] = -15.0
    o["n"] = pd.array([None, 1], dtype="Int64")  # whole numbers, also in the CSV written from it
    o.loc[1, "mean"] = 450.0
    return o


def _write(tmp_path, t, o):
    t.to_csv(tmp_path / "trials.csv", index=False)
    o.to_csv(tmp_path / "outcomes.csv", index=False)
    return tmp_path / "trials.csv", tmp_path / "outcomes.csv"


def _lines(call) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        call()
    return [p["line"] for p in info.value.problems]


EXPECTED = [  # cell problems in schema column order, then cross-column checks
    "T1 / arm control / column n: n must be >= 2 (got 1) in outcomes index 1",
    "T1 / arm msc / column sd: SD must be > 0 (got -15.0) in outcomes index 0",
    "T1 / arm control / column mean: mean 450 is outside the range of every version of Lysholm "
    "(0-100; scale_min/scale_max empty) in outcomes index 1",
]


def test_every_route_into_effect_sizes_runs_the_read_trials_checks(tmp_path):
    t, _ = tables()
    o = bad_outcomes()
    assert _lines(lambda: read_trials(t, o)) == EXPECTED
    assert _lines(lambda: effect_sizes((t, o))) == EXPECTED
    assert _lines(lambda: effect_sizes([t, o], measure="MD")) == EXPECTED
    assert _lines(lambda: effect_sizes(SimpleNamespace(trials=t, outcomes=o))) == EXPECTED
    # file paths, in a tuple: the same problems, named by spreadsheet row (header = row 1)
    paths = _write(tmp_path, t, o)
    from_files = [x.replace("outcomes index 0", "outcomes.csv row 2").replace("outcomes index 1", "outcomes.csv row 3")
                  for x in EXPECTED]
    assert _lines(lambda: read_trials(*paths)) == from_files
    assert _lines(lambda: effect_sizes(paths)) == from_files


def test_trial_data_edited_after_reading_is_checked_again(tmp_path):
    t, o = tables()
    data = read_trials(*_write(tmp_path, t, o))
    assert effect_sizes(data, measure="MD")["yi"].tolist() == [-10.0]  # Lysholm: higher is better
    data.outcomes.loc[0, "sd"] = -15.0
    # the file row of the edited cell is still named
    assert _lines(lambda: effect_sizes(data)) == [
        "T1 / arm msc / column sd: SD must be > 0 (got -15.0) in outcomes.csv row 2"]
    # a valid edit is used, and the provenance says the tables no longer match the files read
    data.outcomes.loc[0, "sd"] = 12.0
    e = effect_sizes(data, measure="MD")
    assert e["vi"].iloc[0] == pytest.approx(144 / 20 + 100 / 20, abs=1e-12)
    assert e.attrs["source"].endswith("(tables changed after reading)")
    assert e.attrs["data_sha256"] != data.data_hash


def test_trial_data_warnings_are_not_repeated(tmp_path):
    t, o = tables()
    o = pd.concat([o, o.assign(outcome="JSW_mm", stat_reported="mean_sd")], ignore_index=True)
    with pytest.warns(DataValidationWarning, match="JSW_mm"):
        data = read_trials(*_write(tmp_path, t, o))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataValidationWarning)
        effect_sizes(data, measure="MD")


# --------------------------------------------------------------------------- labels


def test_labels_one_rule_in_reader_effect_sizes_and_effect_tables():
    t, o = tables()
    padded = t.assign(cell_source=["BM ", " BM"], origin=["autologous\u00a0", "autologous"])
    data = read_trials(padded, o)
    assert list(data.trials["cell_source"]) == ["BM", "BM"]  # white space: removed
    e = effect_sizes((padded, o), measure="MD")
    assert list(e["cell_source"]) == ["BM"] and list(e["origin"]) == ["autologous"]
    want = ("T1 / arm msc / column cell_source: unknown cell_source 'uc' (allowed: BM, UC, AD, placenta, "
            "BMAC, other; did you mean 'UC'? labels are case-sensitive) in trials index 0")
    lower = t.assign(cell_source=["uc", "uc"])
    assert _lines(lambda: read_trials(lower, o))[0] == want
    assert _lines(lambda: effect_sizes((lower, o)))[0] == want
    # the same rule for an effect table handed to fit
    eff = pd.DataFrame({"trial_id": ["A", "B"], "yi": [0.1, 0.2], "vi": [0.04, 0.05],
                        "cell_source": ["BM ", "uc"]})
    assert _lines(lambda: validate_effect_table(eff)) == [
        "B / column cell_source: unknown cell_source 'uc' (allowed: BM, UC, AD, placenta, BMAC, other; "
        "did you mean 'UC'? labels are case-sensitive) in effect table index 1"]
    assert list(validate_effect_table(eff.iloc[:1])["cell_source"]) == ["BM"]


# --------------------------------------------------------------------------- duplicated columns


def test_duplicated_column_names_are_refused(tmp_path):
    t, o = tables()
    twice = pd.concat([o, o[["mean"]] * 0 + 1.0], axis=1)  # a second 'mean' column
    assert _lines(lambda: read_trials(t, twice)) == [
        "(all rows) / column mean: column name 'mean' is given 2 times (columns 6, 9); keep one in outcomes"]
    assert _lines(lambda: effect_sizes((t, twice))) == _lines(lambda: read_trials(t, twice))
    # in a file pandas would rename the copy 'mean.1' and read the first only
    tp, op = _write(tmp_path, t, o)
    text = op.read_text().splitlines()
    op.write_text("\n".join([text[0] + ",mean "] + [line + ",99" for line in text[1:]]) + "\n")
    assert _lines(lambda: read_trials(tp, op)) == [
        "(all rows) / column mean: column name 'mean' is given 2 times (columns 6, 9); keep one in "
        "outcomes.csv row 1"]
    eff = pd.DataFrame([[ "A", 0.1, 0.04, 0.2]], columns=["trial_id", "yi", "vi", "yi"])
    assert _lines(lambda: validate_effect_table(eff))[0].startswith("(all rows) / column yi: column name 'yi' is given 2 times")


# --------------------------------------------------------------------------- swapped roles


def test_swapped_arm_roles_are_refused():
    t, o = tables()
    # roles swapped, columns left: the msc arm has a comparator and the control arm a cell dose
    swapped = t.assign(arm_role=["control", "msc"])
    assert _lines(lambda: effect_sizes((swapped, o))) == [
        "T1 / arm msc / column cells_per_injection: a control arm has a cell dose (4e+07 cells per "
        "injection): arm_role or cells_per_injection is wrong (swapped roles flip the sign of every "
        "effect) in trials index 0",
        "T1 / arm control / column control_type: an msc arm has a control_type ('placebo'): arm_role "
        "or control_type is wrong (swapped roles flip the sign of every effect) in trials index 1",
    ]


# --------------------------------------------------------------------------- one-line errors


def test_absurd_n_and_a_folder_give_one_line_errors(tmp_path, capsys):
    t, o = tables()
    huge = t.assign(n_randomized=[1e30, 20])
    with pytest.raises(DataValidationError) as info:
        effect_sizes((huge, o))
    assert str(info.value) == ("T1 / arm msc / column n_randomized: n_randomized is too large to be a "
                               "count (got 1e+30) in trials index 0")
    with pytest.raises(DataValidationError) as info:
        read_trials(t.assign(n_randomized=[2_000_000, 20]), o)
    assert "n_randomized must be <= 1000000 (got 2000000)" in str(info.value)
    _, op = _write(tmp_path, t, o)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(DataValidationError) as info:
        read_trials(folder, op)
    assert str(info.value) == (f"trials file {folder}: a_folder is a folder, not a data file; give the "
                               "trials.csv inside it")
    with pytest.raises(DataValidationError, match="no such file"):
        effect_sizes((tmp_path / "missing.csv", op))
    # the command line prints the one line, no traceback
    assert cli.main(["effects", "--data", f"{folder},{op}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "is a folder" in err
