"""The kind interface: a kind is one file. A tiny kind defined here runs through the whole toolkit.

The tiny kind ``group_means``: y_i ~ Normal(m[g(i)], se_i) with independent m_g ~ Normal(0, s0), one
unpooled mean per group. Its posterior is conjugate normal, so every check is against a closed form:
m_g | y ~ Normal(b_g, v_g), v_g = 1 / (1/s0^2 + sum_i 1/se_i^2), b_g = v_g * sum_i y_i / se_i^2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayes_koa as bk
from bayes_koa.kinds import Kind, Option, Roles, register
from bayes_koa.kinds.common import Selection, prior_variable
from bayes_koa.util.order import ordered


class _Design:
    def __init__(self, rows, groups, idx):
        self.rows, self.groups, self.idx = rows, groups, idx

    @property
    def coords(self):
        return {"trial": self.rows["trial_id"].astype(str).tolist(), "group": self.groups}

    def shape_key(self):
        return (len(self.rows), len(self.groups))

    def data(self):
        return {"y": self.rows["yi"].to_numpy(float), "se": np.sqrt(self.rows["vi"].to_numpy(float)),
                "group_idx": self.idx}


class GroupMeans(Kind):
    name = "group_means_test"
    structure_schema = {"group": Option("arm_group", str, "grouping column")}
    default_priors = {"default": {"m": "Normal(mu=0, sigma=10)"}}
    labels = {"m": "group mean (unpooled)"}

    def parameters(self, structure):
        return ["m"]

    def prepare(self, spec, table, **selection):
        sel = Selection(table)
        sel.drop(~np.isfinite(pd.to_numeric(sel.rows["yi"], errors="coerce")), "yi not finite")
        rows = sel.rows.reset_index(drop=True)
        col = spec.get("group")
        groups = ordered(rows[col].astype(str))
        idx = np.array([groups.index(g) for g in rows[col].astype(str)])
        return _Design(rows, groups, idx), sel.excluded()

    def build(self, spec, design):
        import pymc as pm

        with pm.Model(coords=design.coords) as model:
            y = pm.Data("y", design.data()["y"], dims="trial")
            se = pm.Data("se", design.data()["se"], dims="trial")
            g = pm.Data("group_idx", design.idx, dims="trial")
            m = prior_variable(spec.prior_dict["m"], "m", dims="group")
            pm.Normal("y_obs", m[g], se, observed=y, dims="trial")
        return model

    def roles(self, spec):
        return Roles(group="m", group_dim="group")

    def sweep_vars(self, spec):
        return ["m"]


register(GroupMeans())

# groups "11" and "108" check natural ordering (11 before 108, not as text)
TABLE = pd.DataFrame({"trial_id": [f"t{i}" for i in range(6)],
                      "arm_group": ["108", "108", "11", "11", "2", "2"],
                      "yi": [1.0, 1.4, -0.5, -0.1, 0.3, 0.2], "vi": [0.04, 0.09, 0.05, 0.04, 0.2, 0.1]})


def _closed_form(s0=10.0):
    out = {}
    for g, d in TABLE.groupby("arm_group"):
        prec = 1 / s0**2 + (1 / d["vi"]).sum()
        out[g] = ((d["yi"] / d["vi"]).sum() / prec, np.sqrt(1 / prec))
    return out


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("kind") / "group_means_test.toml"
    p.write_text('schema_version = 1\nname = "group_means_test"\nversion = "0.1"\n'
                 '[structure]\nkind = "group_means_test"\n')
    return p


@pytest.fixture(scope="module")
def result(model_file):
    return bk.fit(TABLE, model=str(model_file), measure="MD", seed=3, draws=1000, tune=500, chains=2)


def test_fit_and_summary_match_the_closed_form(result):
    cf = _closed_form()
    s = result.summary()
    assert list(result.dt["posterior"]["group"].values) == ["2", "11", "108"]  # natural order
    for g, (mean, sd) in cf.items():
        row = s.loc[f"m[{g}]"]
        # 5 MC standard errors: the mean's MCSE from ArviZ; a 5-sigma miss would be a real bias
        assert abs(row["mean"] - mean) < 5 * row["mcse_mean"]
        assert abs(row["sd"] - sd) < 5 * row["mcse_sd"]
        # p_benefit = P(m < 0) (lower is better by default): closed form within 4 binomial MC SEs (ESS-based)
        p = stats.norm.cdf(0, mean, sd)
        assert abs(row["p_benefit"] - p) < 4 * np.sqrt(max(p * (1 - p), 1e-4) / row["ess_bulk"])
    assert {"eti95_lb", "eti95_ub", "ess_bulk", "r_hat", "group"} <= set(s.columns)
    # the sampler's health travels with every table made from the fit
    d = s.attrs["diagnostics"]
    assert d["divergences"] == int(result.dt["sample_stats"]["diverging"].sum())
    assert d["max_r_hat"] == pytest.approx(float(result.diagnostics()["r_hat"].max()))


def test_rank_and_direction(result, model_file):
    r = result.rank()
    assert r.attrs["diagnostics"]["ok"] in (True, False) and "divergences" in r.attrs["diagnostics"]
    best_low = r.sort_values("mean_rank")["group"].iloc[0]
    assert best_low == "11"  # the most negative mean is best when lower is better
    up = bk.fit(TABLE, model=str(model_file), measure="MD", seed=3, draws=1000, tune=500, chains=2,
                lower_is_better=False)
    assert up.rank().sort_values("mean_rank")["group"].iloc[0] == "108"
    # the same draws, ranked in the other direction: P(best) of the top group in each direction
    assert up.summary().loc["m[108]", "p_benefit"] > 0.99


def test_sensitivity_and_save_load(result, tmp_path):
    sens = bk.sensitivity(result, {"narrow": {"m": "Normal(mu=0, sigma=0.1)"}})
    t = sens.table
    narrow = t[(t["prior_set"] == "narrow") & (t["quantity"] == "m[108]")]["mean"].iloc[0]
    # under Normal(0, 0.1) the closed-form mean of group 108 shrinks to ~0.3 of the data mean
    cf_mean, cf_sd = _closed_form(0.1)["108"]
    assert abs(narrow - cf_mean) < 5 * cf_sd / np.sqrt(500)  # 5 MC SEs with ESS >= 500 of 2,000 draws
    path = result.save(tmp_path / "r.nc")
    back = bk.load(path)
    assert back.spec.kind == "group_means_test"
    np.testing.assert_array_equal(back.dt["posterior"]["m"].values, result.dt["posterior"]["m"].values)
    pd.testing.assert_frame_equal(back.rank(), result.rank(), check_dtype=False)


def test_unknown_structure_key_is_an_error(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('schema_version = 1\n[structure]\nkind = "group_means_test"\ngrup = "x"\n')
    from bayes_koa.spec import SpecError

    with pytest.raises(SpecError, match="did you mean .group."):
        bk.load_spec(p, measure="MD")
