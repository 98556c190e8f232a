"""Issue 10 (B): ``validate_effect_table``, the check an effect table passes before ``fit``.

It applies the cell rules of ``read_trials`` (numbers, whole numbers, yes/no, ranges, the one
label rule) to the effect-table columns present, and refuses contradictions and duplicates.
The table of ``effect_sizes`` comes back unchanged.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_koa as bk
from bayes_koa.kinds import prepare
from bayes_koa.data import DataValidationError, validate_effect_table


def _table(**cols):
    base = {"trial_id": ["A", "B", "C"], "comparison": ["msc vs control"] * 3, "outcome": ["VAS"] * 3,
            "time_months": [6.0] * 3, "yi": [-10.0, -5.0, -8.0], "vi": [25.0, 16.0, 20.0],
            "cell_source": ["BM", "UC", "AD"]}
    return pd.DataFrame(base | cols)


def _lines(df) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        validate_effect_table(df)
    return [p["line"] for p in info.value.problems]


def test_effect_sizes_tables_pass_unchanged(eight_schools):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bk.data.DataValidationWarning)
        for data, measure in ((bk.load_simulated(), "SMD"), (bk.load_simulated(), "logOR"),
                              (bk.load_koa_msc(), "MD")):
            eff = bk.effect_sizes(data, measure=measure)
            out = validate_effect_table(eff)
            pd.testing.assert_frame_equal(out, eff, check_exact=True)
            assert out.attrs == eff.attrs and out is not eff
    # a user's own table with only trial_id, yi and sei (the eight schools)
    pd.testing.assert_frame_equal(validate_effect_table(eight_schools), eight_schools)


def test_white_space_in_labels_would_split_a_source_in_the_model():
    df = _table(cell_source=["BM", "BM ", "UC"])
    spec = bk.load_spec("source_hierarchical")
    raw, _ = prepare(spec, df)
    assert raw.source == ["BM", "UC", "BM "]  # what fit sees without the check: three sources
    checked, _ = prepare(spec, validate_effect_table(df))
    assert checked.source == ["BM", "UC"]
    np.testing.assert_array_equal(checked.source_idx, [0, 0, 1])
    # the same for a grouping column the schema does not know (fit(..., group="district"))
    assert validate_effect_table(df.assign(district=["north", "north ", " south"]))["district"].tolist() == [
        "north", "north", "south"]


def test_numbers_and_yes_no_given_as_text_are_converted():
    df = _table(yi=["-10", "-5.5", "-8"], in_scope=["yes", "no", "true"])
    out = validate_effect_table(df)
    assert out["yi"].dtype == "float64" and out["yi"].tolist() == [-10.0, -5.5, -8.0]
    assert out["in_scope"].tolist() == [True, False, True]


@pytest.mark.parametrize("change, line", [
    (dict(drop="yi"), "(all rows) / column yi: required column is missing (an effect table needs "
                      "trial_id, yi and vi or sei) in effect table"),
    (dict(drop="vi"), "(all rows) / column vi: an effect table needs vi (sampling variance) or sei "
                      "(standard error) in effect table"),
    (dict(rename=("vi", "VI")), ["(all rows) / column VI: column 'VI' should be named 'vi' in effect table",
                                 "(all rows) / column vi: an effect table needs vi (sampling variance) "
                                 "or sei (standard error) in effect table"]),
    (dict(cell=("yi", 1, "minus five")), "B / comparison msc vs control / column yi: yi is not a number "
                                         "(got 'minus five') in effect table index 1"),
    (dict(cell=("vi", 2, -0.5)), "C / comparison msc vs control / column vi: vi must be > 0 (got -0.5) "
                                 "in effect table index 2"),
    (dict(cell=("measure", 0, "OR")), "A / comparison msc vs control / column measure: unknown measure "
                                      "'OR' (allowed: MD, SMD, SMDH, ROM, logOR, logRR) in effect table index 0"),
    (dict(cell=("n_msc", 0, 1)), "A / comparison msc vs control / column n_msc: n_msc must be >= 2 (got 1) "
                                 "in effect table index 0"),
    (dict(cell=("in_scope", 0, "maybe")), "A / comparison msc vs control / column in_scope: expected "
                                          "yes/no or true/false (got 'maybe') in effect table index 0"),
])
def test_bad_effect_tables_are_refused(change, line):
    df = _table(measure=["MD"] * 3, n_msc=[20, 20, 20], in_scope=[True] * 3)
    if "drop" in change:
        df = df.drop(columns=change["drop"])
    if "rename" in change:
        df = df.rename(columns=dict([change["rename"]]))
    if "cell" in change:
        col, i, v = change["cell"]
        df[col] = df[col].astype(object)
        df.loc[i, col] = v
    assert _lines(df) == (line if isinstance(line, list) else [line])


def test_sei_contradicting_vi_and_duplicated_rows():
    df = _table(sei=[5.0, 4.0, 9.0])  # sqrt(20) = 4.47, not 9
    assert _lines(df) == ["C / comparison msc vs control / column sei: sei 9 contradicts vi 20 "
                          "(sqrt(vi) = 4.472) in effect table index 2"]
    ok = _table(sei=[5.0, 4.0, 4.47])  # printed to 2 decimals: fine
    validate_effect_table(ok)
    twice = pd.concat([_table(), _table().iloc[[0]]], ignore_index=True)
    assert _lines(twice) == ["A / comparison msc vs control / column trial_id: row listed 2 times (same "
                             "trial_id, comparison, outcome, time_months) in effect table index 0, 3"]
    plain = pd.DataFrame({"trial_id": ["A", "A", "B"], "yi": [0.1, 0.1, 0.2], "sei": [0.2, 0.2, 0.3]})
    assert _lines(plain) == ["A / column trial_id: row listed 2 times (identical rows; add a comparison "
                             "column if they differ) in effect table index 0, 1"]
    # two comparisons of one trial are not duplicates
    validate_effect_table(_table(trial_id=["A", "A", "B"], comparison=["a vs c", "b vs c", "a vs c"]))


def test_arm_tables_keep_the_cell_rules_without_effect_columns():
    arms = pd.DataFrame({"study": ["s1", "s1"], "treatment": ["MSC ", "placebo"], "events": [3, 1],
                         "n": [20, 20], "cell_source": ["BM", "BM"]})
    out = validate_effect_table(arms, require_effects=False)
    assert out["treatment"].tolist() == ["MSC", "placebo"]
    assert _lines(arms)[0].startswith("(all rows) / column trial_id: required column is missing")  # as an effect table
    with pytest.raises(DataValidationError, match="did you mean 'BM'"):
        validate_effect_table(arms.assign(cell_source=["bm", "BM"]), require_effects=False)
