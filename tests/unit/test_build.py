import numpy as np
import pandas as pd
import pytest

from bayes_koa.kinds import build_model, prepare
from bayes_koa.spec import SpecError
from bayes_koa.kinds import load_spec


def _table():
    return pd.DataFrame({
        "trial_id": ["A", "B", "C", "D", "E", "F"],
        "comparison": ["msc vs control"] * 6,
        "outcome": ["VAS"] * 6,
        "time_months": [6] * 6,
        "yi": [-10.0, -5.0, -20.0, np.nan, -8.0, -12.0],
        "vi": [25.0, 16.0, 30.0, 20.0, 10.0, 12.0],
        "cell_source": ["BM", "AD", "UC", "BM", "AD", "BM"],
        "origin": ["autologous", "allogeneic", "allogeneic", "autologous", None, "allogeneic"],
        "cells_per_injection": [4e7, 1e8, np.nan, 4e7, 4e7, 4e6],
        "n_injections": [1, 1, 2, 1, 1, 4],
        "excluded_reason": ["", "", "", "", "", ""],
    })


def test_prepare_lists_every_left_out_row_with_its_reason():
    spec = load_spec("source_origin")
    design, excluded = prepare(spec, _table())
    assert design.trial == ["A", "B", "C", "F"]
    reasons = dict(zip(excluded["trial_id"], excluded["excluded_reason"]))
    assert reasons == {"D": "yi or vi not finite",
                       "E": "origin (autologous/allogeneic) not reported (needed by source_origin)"}
    assert design.source == ["BM", "UC", "AD"]  # canonical order, not order of appearance
    np.testing.assert_array_equal(design.source_idx, [0, 2, 1, 0])
    np.testing.assert_allclose(design.se, np.sqrt([25.0, 16.0, 30.0, 12.0]))


def test_moderators_are_transformed_as_documented():
    spec = load_spec("source_regression", measure="MD")
    design, excluded = prepare(spec, _table())
    assert "C" in set(excluded["trial_id"])  # no dose reported
    i = design.trial.index("F")
    assert design.X["log_dose"][i] == pytest.approx(np.log10(4e6 / 4e7))  # = -1: ten-fold fewer cells
    assert design.X["n_injections"][i] == 3.0  # per extra injection beyond one


def test_rows_ruled_out_by_effect_sizes_are_carried_through():
    t = _table()
    t.loc[1, "excluded_reason"] = "per-arm n not reported (msc)"
    _, excluded = prepare(load_spec("random_effects"), t)
    assert "per-arm n not reported (msc)" in set(excluded["excluded_reason"])


def test_several_outcomes_need_a_choice():
    t = pd.concat([_table(), _table().assign(outcome="WOMAC_total")])
    with pytest.raises(SpecError, match="holds 2 outcomes .*pass outcome="):
        prepare(load_spec("random_effects"), t)
    design, _ = prepare(load_spec("random_effects"), t, outcome="WOMAC_total")
    assert len(design.trial) == 5
    with pytest.raises(SpecError, match="outcome 'Lysholm' is not in the effect table"):
        prepare(load_spec("random_effects"), t, outcome="Lysholm")


def test_multi_arm_rows_get_distinct_labels():
    t = _table().iloc[:3].copy()
    extra = t.iloc[[0]].assign(comparison="msc_high vs control")
    design, _ = prepare(load_spec("random_effects"), pd.concat([t, extra]))
    assert design.trial[0] == "A (msc vs control)" and design.trial[-1] == "A (msc_high vs control)"


def test_model_has_named_dims_and_swappable_data():
    spec = load_spec("source_origin", between_trial_sd="per_source")
    design, _ = prepare(spec, _table())
    m = build_model(spec, design)
    assert m.named_vars_to_dims["cell_mean"] == ("source", "origin")
    assert m.named_vars_to_dims["tau"] == ("source",)
    assert m.named_vars_to_dims["theta"] == ("trial",)
    data = {v.name for v in m.data_vars}
    assert {"y", "se", "source_idx", "origin_idx", "prior__tau__sigma", "prior__mu__mu"} <= data
    # non-centred by default: the trial effects are deterministic transforms of standard normals
    assert "z" in m.named_vars and "theta" in {d.name for d in m.deterministics}


def test_centered_parameterisation_switch():
    spec = load_spec("random_effects", parameterization="centered")
    design, _ = prepare(spec, _table())
    m = build_model(spec, design)
    assert "theta" in {v.name for v in m.free_RVs} and "z" not in m.named_vars


def test_table_without_required_columns():
    with pytest.raises(SpecError, match="needs 'vi'"):
        prepare(load_spec("random_effects"), pd.DataFrame({"trial_id": ["A"], "yi": [1.0]}))
    with pytest.raises(SpecError, match="needs a 'cell_source' column"):
        prepare(load_spec("source_hierarchical"), pd.DataFrame({"trial_id": ["A"], "yi": [1.0], "vi": [1.0]}))
