"""The network kind without sampling: rows -> design, the model's log density against closed forms,
errors, graph helpers, the KOA adapter and the network plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayes_koa as bk
from bayes_koa.data import DataValidationError
from bayes_koa.kinds import build_model, load_spec, prepare
from bayes_koa.kinds import network as nw
from bayes_koa.spec.files import SpecError

PLAIN = dict(levels=[])


def _arms(rows):
    return pd.DataFrame(rows, columns=["study", "treatment", "mean", "sd", "n"])


# a small network with a loop (A-B-C) and a three-arm trial
SMALL = _arms([
    ("t1", "A", 10.0, 4.0, 20), ("t1", "B", 8.0, 4.0, 20),
    ("t2", "A", 11.0, 5.0, 30), ("t2", "C", 7.0, 5.0, 30),
    ("t3", "B", 9.0, 3.0, 25), ("t3", "C", 8.5, 3.0, 25), ("t3", "A", 10.5, 3.0, 25),
    ("t4", "B", 9.0, 4.0, 15), ("t4", "C", 7.5, 4.0, 15),
])


def _design(table, measure="MD", **structure):
    spec = load_spec("network", measure=measure, **{**PLAIN, **structure})
    return spec, *prepare(spec, table, study="study", treatment="treatment", reference="A")


def test_design_nodes_baselines_and_random_effect_structure():
    spec, d, excluded = _design(SMALL)
    assert d.treatment == ["A", "B", "C"] and d.reference == "A" and len(excluded) == 0
    assert d.trial == ["t1", "t2", "t3", "t4"]
    # every trial's baseline arm is its lowest node: A in t1-t3, B in t4
    assert list(d.trial_base_treat) == [0, 0, 0, 1]
    # the three-arm trial's random effects: R R' = (I + J)/2 on its two contrasts (correlation 1/2)
    k = np.flatnonzero(d.arm_trial == 2)[1:]
    cols = [d.contrast.index(d.arm[i]) for i in k]
    block = d.R[np.ix_(k, cols)]
    np.testing.assert_allclose(block @ block.T, [[1.0, 0.5], [0.5, 1.0]], atol=1e-12)
    assert np.all(d.R[d.arm_treat == d.arm_base_treat] == 0)  # baseline arms have none
    # MD arm SE = sd / sqrt(n)
    np.testing.assert_allclose(d.sd[:2], [4 / np.sqrt(20)] * 2)


def test_trial_level_parameterisation_is_the_same_likelihood():
    """M v + level (decorrelated) equals the TSD2 form baseline + delta at any point, for each arm."""
    spec, d, _ = _design(SMALL, effects="fixed")
    spec_arm, d_arm, _ = _design(SMALL, effects="fixed", baseline_prior="baseline_arm")
    rng = np.random.default_rng(1)
    v = rng.normal(size=d.M.shape[1])
    base = rng.normal(size=len(d.baseline_trial))
    mean_arm = d_arm.M @ v + base[d_arm.obs_trial]             # baseline arm parameterisation
    level = base - d.M[d.baseline_rows] @ v                    # the same baselines as trial levels
    np.testing.assert_allclose(d.M @ v + level[d.obs_trial], mean_arm, atol=1e-12)


def test_model_log_density_is_the_arm_based_likelihood():
    spec, d, _ = _design(SMALL, baseline_prior="baseline_arm")
    m = build_model(spec, d)
    point = m.initial_point()
    rng = np.random.default_rng(2)
    point = {k: rng.normal(size=np.shape(v)) * 0.5 for k, v in point.items()}
    lp = m.compile_logp(vars=[m["y_obs"]], sum=False)(point)[0]
    dd = np.concatenate([[0.0], point["d_comparator"]])
    tau = np.exp(point["tau_log__"])
    delta = dd[d.arm_treat] - dd[d.arm_base_treat] + tau * (d.R @ point["z"])
    mean = point["baseline"][d.arm_trial] + delta
    np.testing.assert_allclose(lp, stats.norm.logpdf(d.y, mean, d.sd), rtol=1e-10)


def test_multi_arm_contrast_trial_covariance_against_the_closed_form():
    """A three-arm trial reported as two contrasts against its baseline arm: the decorrelated rows'
    log densities sum to the bivariate normal with Var = se_k^2, Cov = se_b^2 (the shared arm)."""
    se_b, se = 0.6, np.array([1.0, 1.3])
    y = np.array([-2.0, -0.5])
    table = pd.DataFrame({"study": ["c1"] * 3 + ["t1", "t1"], "treatment": ["A", "B", "C", "A", "B"],
                          "diff": [np.nan, *y, np.nan, np.nan], "se_diff": [se_b, *se, np.nan, np.nan],
                          "mean": [np.nan] * 3 + [1.0, 0.0], "sd": [np.nan] * 3 + [2.0, 2.0],
                          "n": [np.nan] * 3 + [40, 40]})
    spec, d, _ = _design(table, effects="fixed")
    assert d.trial == ["t1", "c1"] and d.baseline_trial == ["t1"]
    m = build_model(spec, d)
    rng = np.random.default_rng(3)
    pt_ = {"d_comparator": rng.normal(size=2), "baseline": rng.normal(size=1)}
    lp = m.compile_logp(vars=[m["y_obs"]], sum=False)(pt_)[0]
    contrast_rows = lp[2:]
    S = np.diag(se**2) + se_b**2 * (np.ones((2, 2)) - np.eye(2))
    closed = stats.multivariate_normal(mean=pt_["d_comparator"], cov=S).logpdf(y)
    assert contrast_rows.sum() == pytest.approx(closed, rel=1e-12)
    # each row is the exact conditional: the first is the marginal of y_1
    assert contrast_rows[0] == pytest.approx(stats.norm.logpdf(y[0], pt_["d_comparator"][0], se[0]), rel=1e-12)


def test_smd_arms_give_hedges_g_and_the_metafor_variance_without_the_sd_term():
    """Two-arm trials of dat.normand1999 (metafor_effect_sizes.json): the implied contrast equals
    metafor's SMD (Hedges' g, exact J) and its variance metafor's vi minus yi^2 / (2 (n1 + n2))."""
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parents[1] / "reference" / "data" / "metafor_effect_sizes.json").read_text())
    data = ref["normand1999"]["data"]
    rows = []
    for r in data:
        rows += [(str(r["study"]), "routine", r["m2i"], r["sd2i"], r["n2i"]), (str(r["study"]), "specialist",
                 r["m1i"], r["sd1i"], r["n1i"])]
    spec = load_spec("network", measure="SMD", levels=[])
    d, _ = prepare(spec, _arms(rows), study="study", treatment="treatment", reference="routine")
    g = d.y[1::2] - d.y[0::2]
    v = d.sd[1::2] ** 2 + d.sd[0::2] ** 2
    smd = ref["normand1999"]["SMD"]
    n = np.array([r["n1i"] + r["n2i"] for r in data], dtype=float)
    np.testing.assert_allclose(g, smd["yi"], rtol=1e-8)
    np.testing.assert_allclose(v, np.asarray(smd["vi"]) - np.asarray(smd["yi"]) ** 2 / (2 * n), rtol=1e-8)


def test_rows_left_out_with_reasons_and_bad_values_named():
    table = _arms([("t1", "A", 1.0, 1.0, 10), ("t1", "B", np.nan, 1.0, 10), ("t2", "A", 1.0, 1.0, 10),
                   ("t2", "B", 2.0, 1.0, 10), ("t3", "", 1.0, 1.0, 10), ("t3", "B", 1.0, 1.0, 10)])
    _, d, excluded = _design(table)
    why = dict(zip(excluded["study"] + "/" + excluded["treatment"].astype(str), excluded["excluded_reason"]))
    assert why["t1/B"].startswith("mean not reported")
    assert why["t1/A"].startswith("fewer than two usable arms")
    assert why["t3/"].startswith("treatment (treatment) not given")
    assert d.trial == ["t2"]
    bad = table.copy()
    bad.loc[3, "sd"] = -1.0
    with pytest.raises(DataValidationError, match=r"trial t2, arm B, column sd, row 3: -1.0 must be > 0"):
        _design(bad)
    ev = pd.DataFrame({"study": ["t1", "t1"], "treatment": ["A", "B"], "events": [3, 12], "n": [10, 10]})
    with pytest.raises(DataValidationError, match=r"trial t1, arm B, column events, row 1: .*exceed n"):
        _design(ev, measure="logOR")


def test_disconnected_network_is_an_error_naming_its_pieces():
    table = _arms([("t1", "A", 1.0, 1.0, 10), ("t1", "B", 2.0, 1.0, 10),
                   ("t2", "C", 1.0, 1.0, 10), ("t2", "D", 2.0, 1.0, 10), ("t3", "D", 1.0, 1.0, 10),
                   ("t3", "E", 2.0, 1.0, 10)])
    with pytest.raises(SpecError, match=r"disconnected \(2 pieces\): piece 1: C, D, E \(2 trials\); "
                                        r"piece 2: A, B \(1 trial\)\. Effects between pieces are not estimable"):
        _design(table)


def test_reference_and_element_prior_errors():
    with pytest.raises(SpecError, match="reference 'placebo' is not a treatment"):
        spec = load_spec("network", measure="MD", levels=[])
        prepare(spec, SMALL, study="study", treatment="treatment")
    spec = load_spec("network", measure="MD", levels=[], priors={"d[Z]": "Normal(mu=0, sigma=1)"})
    with pytest.raises(SpecError, match="'Z' is not a treatment of the network"):
        prepare(spec, SMALL, study="study", treatment="treatment", reference="A")
    spec = load_spec("network", measure="MD", levels=[], priors={"d[A]": "Normal(mu=0, sigma=1)"})
    with pytest.raises(SpecError, match="is the reference"):
        prepare(spec, SMALL, study="study", treatment="treatment", reference="A")


def test_element_prior_enters_the_model():
    spec = load_spec("network", measure="MD", levels=[], priors={"d[C]": "Normal(mu=-3, sigma=0.5)"})
    d, _ = prepare(spec, SMALL, study="study", treatment="treatment", reference="A")
    m = build_model(spec, d)
    point = {**m.initial_point(), "d_comparator": np.array([0.7, -2.0])}
    lp = m.compile_logp(vars=[m["d_comparator"]], sum=False, jacobian=False)(point)[0]
    expected = stats.norm.logpdf([0.7, -2.0], [0.0, -3.0], [50.0, 0.5])
    np.testing.assert_allclose(lp, expected, rtol=1e-12)


CLASS = pd.DataFrame({
    "study": ["a", "a", "b", "b", "c", "c", "d", "d"],
    "treatment": ["placebo", "BM auto", "HA", "UC allo", "placebo", "HA", "placebo", "UC allo"],
    "cell_source": ["", "BM", "", "UC", "", "", "", "UC"],
    "origin": ["", "autologous", "", "allogeneic", "", "", "", "allogeneic"],
    "mean": [50, 40, 45, 30, 50, 46, 52, 35.0], "sd": [20.0] * 8, "n": [30] * 8,
})


def test_class_design_and_class_errors():
    spec = load_spec("network", measure="MD")
    d, _ = prepare(spec, CLASS, study="study", treatment="treatment")
    assert d.treatment == ["placebo", "HA", "BM auto", "UC allo"] and d.free == ["HA"]
    assert d.source == ["BM", "UC"] and d.origin == ["autologous", "allogeneic"]
    # each class node reads its source x origin cell (row-major flattening of cell_effect)
    np.testing.assert_array_equal(d.C, [[1, 0, 0, 0], [0, 0, 0, 1]])
    bad = CLASS.copy()
    bad.loc[7, "origin"] = "autologous"
    with pytest.raises(DataValidationError, match="treatment 'UC allo' has origin values allogeneic, autologous"):
        prepare(spec, bad, study="study", treatment="treatment")
    with pytest.raises(SpecError, match="is in the MSC class"):
        prepare(spec, CLASS, study="study", treatment="treatment", reference="BM auto")
    with pytest.raises(SpecError, match="no arm has a value in the class column 'cell_source'"):
        prepare(spec, SMALL.assign(cell_source=""), study="study", treatment="treatment", reference="A")


def test_graph_helpers_on_a_star_and_a_loop():
    _, d, _ = _design(SMALL)
    nodes, edges = nw.network_graph(d.rows)
    assert list(nodes["treatment"]) == ["A", "B", "C"]
    assert list(nodes["n_patients"]) == [20 + 30 + 25, 20 + 25 + 15, 30 + 25 + 15]
    e = {(a, b): k for a, b, k in zip(edges["treatment"], edges["comparator"], edges["n_trials"])}
    assert e == {("B", "A"): 2, ("C", "A"): 2, ("C", "B"): 2}
    info = nw.loops(d.rows)
    assert info["has_loops"] and info["inconsistency_df"] == 1  # pairs AB, AC, BC vs 2 basic parameters
    assert nw.indirect_only(d.rows).empty
    star = _arms([("t1", "A", 1.0, 1.0, 10), ("t1", "B", 2.0, 1.0, 10), ("t2", "A", 1.0, 1.0, 10),
                  ("t2", "C", 2.0, 1.0, 10), ("t3", "A", 1.0, 1.0, 12), ("t3", "B", 1.0, 1.0, 12),
                  ("t3", "C", 1.0, 1.0, 12)])
    _, ds, _ = _design(star)
    info = nw.loops(ds.rows)
    # the only loop (A-B-C) is inside the three-arm trial: consistent by construction
    assert not info["has_loops"] and info["inconsistency_df"] == 0 and "no loops" in info["statement"]
    star2 = star[star["study"] != "t3"]
    _, d2, _ = _design(star2)
    assert nw.indirect_only(d2.rows).values.tolist() == [["C", "B"]]


def test_inconsistency_without_loops_is_a_statement_without_refit():
    from types import SimpleNamespace

    from bayes_koa.workflows.network import inconsistency

    star = _arms([("t1", "A", 1.0, 1.0, 10), ("t1", "B", 2.0, 1.0, 10), ("t2", "A", 1.0, 1.0, 10),
                  ("t2", "C", 2.0, 1.0, 10)])
    spec, d, _ = _design(star)
    check = inconsistency(SimpleNamespace(spec=spec, effects=d.rows))
    assert check.ume is None and check.comparison is None
    assert check.statement.startswith("The network has no loops of independent evidence")


def test_koa_adapter_on_the_simulated_design():
    from bayes_koa.koa.network import network_arms

    td = bk.load_simulated()
    arms = network_arms(td, "VAS", 6, measure="MD")
    assert set(arms["study"]) == set(td.trials["trial_id"])  # every trial, each arm once
    assert len(arms) == len(td.trials)
    vega = arms[arms["study"] == "SIM_Vega_2015"].set_index("arm_id")
    assert vega.loc["msc", "treatment"] == "BM allogeneic" and vega.loc["control", "treatment"] == "HA"
    assert vega.loc["control", "cell_source"] == ""  # a control arm is not in the class
    o = td.outcomes
    row = o[(o["trial_id"] == "SIM_Vega_2015") & (o["arm_id"] == "msc") & (o["outcome"] == "VAS")
            & (o["time_months"] == 6)].iloc[0]
    assert vega.loc["msc", "mean"] == row["mean"] and vega.loc["msc", "sd"] == row["sd"]
    no_ct = arms[(arms["arm_role"] == "control") & (arms["treatment"] == "")]
    assert len(no_ct) and no_ct["excluded_reason"].str.startswith("control type not reported").all()
    # higher-is-better outcomes are flipped: negative = benefit everywhere
    ly = network_arms(td, "Lysholm", 6, measure="MD")
    lrow = o[(o["trial_id"] == "SIM_Vega_2015") & (o["arm_id"] == "msc") & (o["outcome"] == "Lysholm")
             & (o["time_months"] == 6)].iloc[0]
    got = ly[(ly["study"] == "SIM_Vega_2015") & (ly["arm_id"] == "msc")].iloc[0]
    assert got["mean"] == -lrow["mean"] and bool(got["flipped"])
    spec = load_spec("network", measure="MD")
    d, excluded = prepare(spec, arms, study="study", treatment="treatment")
    # 25 simulated trials; 7 lose an arm (control type or origin not reported) and with it their comparison
    assert "SIM_Vega_2015" in d.trial and len(d.trial) == 18 and "SIM_Ha_2018" in d.trial  # Ha: PRP vs HA
    assert set(excluded["excluded_reason"]) >= {"origin not reported (needed by the origin level)"}


def test_koa_adapter_contrast_rows():
    from bayes_koa.koa.network import network_arms

    trials = pd.DataFrame({"trial_id": ["W", "W", "X", "X"], "arm_id": ["msc", "control", "msc", "control"],
                           "arm_role": ["msc", "control", "msc", "control"], "cell_source": ["BM"] * 4,
                           "origin": ["autologous"] * 4, "control_type": [None, "HA", None, "HA"],
                           "n_randomized": [28, 28, 20, 20], "in_scope": ["yes"] * 4,
                           "cells_per_injection": [None] * 4, "n_injections": [None] * 4})
    outcomes = pd.DataFrame({"trial_id": ["X", "X"], "arm_id": ["msc", "control"], "outcome": ["Lysholm"] * 2,
                             "lower_is_better": ["false"] * 2, "time_months": [12, 12], "value_type": ["final"] * 2,
                             "n": [20, 20], "mean": [80.0, 70.0], "sd": [10.0, 10.0], "stat_reported": ["mean_sd"] * 2})
    contrasts = pd.DataFrame({"trial_id": ["W"], "outcome": ["Lysholm"], "time_months": [12],
                              "contrast": ["msc_minus_control"], "estimate": [7.61], "ci_low": [1.44],
                              "ci_high": [13.79], "ci_level": [95], "adjusted": ["yes"]})
    arms = network_arms((trials, outcomes, contrasts), "Lysholm", 12, measure="MD")
    w = arms[arms["study"] == "W"].set_index("arm_id")
    se = (13.79 - 1.44) / (2 * stats.norm.ppf(0.975))
    assert w.loc["msc", "diff"] == pytest.approx(-7.61) and w.loc["msc", "se_diff"] == pytest.approx(se)
    assert np.isnan(w.loc["control", "diff"]) and (w["excluded_reason"] == "").all()
    spec = load_spec("network", measure="MD", levels=[])
    d, excluded = prepare(spec, arms, study="study", treatment="treatment", reference="HA")
    assert d.trial == ["X", "W"] and d.baseline_trial == ["X"] and len(excluded) == 0


def test_plot_network_sizes_and_widths():
    import matplotlib.pyplot as plt

    from bayes_koa.plots.network import plot_network

    _, d, _ = _design(SMALL)
    fig, ax = plt.subplots()
    out = plot_network(d.rows, ax=ax)
    assert out is fig
    nodes = {c.get_gid(): c for c in ax.collections if str(c.get_gid()).startswith("node:")}
    sizes = {k: float(v.get_sizes()[0]) for k, v in nodes.items()}
    # area proportional to patients: A 75, B 60, C 70; the largest at max_node_area
    assert sizes["node:A"] == pytest.approx(1800.0) and sizes["node:B"] == pytest.approx(1800.0 * 60 / 75)
    widths = {ln.get_gid(): ln.get_linewidth() for ln in ax.lines if str(ln.get_gid()).startswith("edge:")}
    assert set(widths) == {"edge:B|A", "edge:C|A", "edge:C|B"} and len(set(widths.values())) == 1
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# a small fit through bk.fit: the result object's generic machinery works on the kind's roles
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def koa_fit():
    from bayes_koa.koa.network import network_arms

    arms = network_arms(bk.load_simulated(), "VAS", 6, measure="MD")
    return bk.fit(arms, "network", study="study", treatment="treatment", reference="placebo",
                  priors={"d[HA]": "Normal(mu=-2, sigma=5)"}, seed=5, draws=300, tune=300, chains=2, warn=False)


def test_fit_result_summary_ranks_counts_and_league(koa_fit, tmp_path):
    res = koa_fit
    assert res.simulated and res.provenance["measure"] == "MD"
    pri = res.priors.set_index("parameter")
    assert pri.loc["d[HA]", "prior"] == "Normal(mu=-2, sigma=5)" and pri.loc["d[HA]", "from"] == "argument"
    s = res.summary(include_trials=False)
    assert {"d_msc", "source_effect", "cell_effect", "d", "tau", "sigma_source", "sigma_origin"} <= set(s["variable"])
    # trials behind each source and cell (SIMULATED design: BM trials, UC only Matas_2019)
    n = s["n_comparisons"]
    assert n["source_effect[UC]"] == 1 and n["cell_effect[UC, autologous]"] == 0
    assert n["d[HA, placebo]"] == len({t for t in res.effects.loc[res.effects["nma_node"] == "HA", "nma_trial"]})
    # rank levels: sources, observed origin cells (prior-only cells left out), every node
    assert list(res.rank("source")["source"]) == ["BM", "UC", "AD"]
    cells = res.rank("origin")["cell"].tolist()
    assert "UC autologous" not in cells and "BM autologous" in cells
    nodes = res.rank("treatment")
    assert set(nodes["node"]) == set(res.dt["posterior"]["node"].values) and len(nodes) == 10
    # league table: antisymmetric, and d[t] is the effect of t against the reference
    lt = nw.league_table(res).set_index(["treatment", "comparator"])
    assert lt.loc[("HA", "placebo"), "mean"] == pytest.approx(-lt.loc[("placebo", "HA"), "mean"])
    d_ha = float(res.dt["posterior"]["d"].sel(treatment="HA", reference="placebo").mean())
    assert lt.loc[("HA", "placebo"), "mean"] == pytest.approx(d_ha)
    wide = nw.league_table(res, wide=True)
    assert wide.loc["HA", "HA"] == "HA" and wide.shape == (10, 10)
    ind = nw.indirect_only(res)
    assert ((lt.loc[list(zip(ind["treatment"], ind["comparator"])), "evidence"]) == "indirect only").all()
    # LOO by trial (a trial's arms left out together); predictions for a new MSC source
    loo = res.loo()
    assert list(loo["trial"]) == list(dict.fromkeys(res.effects["nma_trial"])) and np.isfinite(loo.attrs["elpd_loo"])
    assert "theta_new" in res.dt["posterior"] and "theta_new_source" in res.dt["posterior"]
    # save and load round trip keeps the element prior and the structure
    path = res.save(tmp_path / "net.nc")
    back = bk.load(path)
    assert str(back.spec.prior_dict["d[HA]"]) == "Normal(mu=-2, sigma=5)"
    assert back.rank("source")["sucra"].tolist() == pytest.approx(res.rank("source")["sucra"].tolist())


def test_plot_network_of_a_result(koa_fit):
    import matplotlib.pyplot as plt

    from bayes_koa.plots.network import plot_network

    fig = plot_network(koa_fit)
    ax = fig.axes[0]
    nodes = {c.get_gid() for c in ax.collections if str(c.get_gid()).startswith("node:")}
    assert nodes == {f"node:{t}" for t in koa_fit.dt["posterior"]["node"].values}
    assert ax.get_title().startswith("SIMULATED data. Network: 10 treatments")
    plt.close(fig)


def test_result_delegates_the_network_helpers(koa_fit):
    res = koa_fit
    assert res.league().equals(nw.league_table(res))
    assert res.league(wide=True).shape == (10, 10)
    assert res.indirect_only().equals(nw.indirect_only(res))
    nodes, edges = res.network_graph()
    assert list(nodes["treatment"]) == [str(x) for x in res.dt["posterior"]["node"].values]
    # every directly compared pair is an edge, every other pair is indirect-only
    assert len(edges) + len(res.indirect_only()) == len(nodes) * (len(nodes) - 1) // 2
    import matplotlib.pyplot as plt

    fig = res.plot_network()
    assert {c.get_gid() for c in fig.axes[0].collections if str(c.get_gid()).startswith("node:")} == \
        {f"node:{t}" for t in nodes["treatment"]}
    plt.close(fig)


def test_ppc_and_leave_one_trial_out_on_a_network_fit(koa_fit):
    """PPC by trial (tests/unit/test_network_main.py checks its values); influence leaves one *trial* out (all
    its arms): PSIS on the trial's log-likelihood, by default with its baseline integrated out (the trial's
    contrasts); the conditional form is the per-trial sum of the arm log-likelihoods, checked here by hand."""
    import warnings

    from bayes_koa.analysis.checks import ParetoKWarning, _elpd

    res = koa_fit
    ppc = res.ppc()
    assert len(ppc) == res.effects["nma_trial"].nunique()
    assert ((ppc["rep_lower"] <= ppc["rep_mean"]) & (ppc["rep_mean"] <= ppc["rep_upper"])).all()
    elpd, how = _elpd(res, False, by_trial=True)
    ll = res.dt["log_likelihood"]["y_obs"].values
    idx = res.dt["constant_data"]["trial_idx"].values
    trials = list(res.dt["posterior"]["trial"].values)
    assert trials == list(dict.fromkeys(res.effects["nma_trial"]))
    t = 3
    np.testing.assert_allclose(elpd.log_likelihood_.values[..., t], ll[..., idx == t].sum(axis=-1))
    assert "per trial" in how and len(elpd.pareto_k) == len(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)
        inf = res.influence(refit_threshold_k=None)
    assert list(inf["trial"]) == trials and np.isfinite(inf["mu_mean"]).all()


@pytest.mark.slow
def test_cli_analyze_network_prints_the_network_report(tmp_path, capsys):
    from bayes_koa.cli import main

    code = main(["analyze", "--model", "network", "--draws", "300", "--tune", "300", "--chains", "2", "--quiet",
                 "--out", str(tmp_path / "net")])
    text = capsys.readouterr().out
    assert code in (0, 3)  # 3: sampling problems, stated in the report (short chains here)
    assert text.startswith("SIMULATED")
    for part in ("source_effect[BM]", "Ranking of cell sources (SIMULATED)", "Ranking of all nodes", "SUCRA [95% CrI]",
                 "League table (SIMULATED)", "Informed only indirectly", "Inconsistency check (SIMULATED)",
                 "re-based on the network (SIMULATED)", "Beside it, the pooled model source_hierarchical",
                 "comparators (MSC-comparator pairs)", "Why they differ:"):
        assert part in text, part
    for f in ("summary.csv", "league.csv", "claims.csv", "network_vs_pooled.csv", "ranking.csv", "network.png",
              "result.nc", "report.txt"):
        assert (tmp_path / "net" / f).exists(), f


def test_claims_are_re_based_on_the_network(koa_fit):
    """The paper's source claims read the network's source effects against placebo (a common
    comparator): P(UC first) is the ranking's P(best) of UC; the origin claims read the cells; the
    injection and time-course claims need terms the network has not, and say so."""
    res = koa_fit
    c = res.claims().set_index("claim_id")
    p_best = res.rank("source").set_index("source").loc["UC", "p_best"]
    assert c.loc["uc_first", "probability"] == pytest.approx(p_best, abs=1e-12)
    ce = res.dt["posterior"]["cell_effect"]
    auto, allo = ce.sel(source="AD", origin="autologous"), ce.sel(source="AD", origin="allogeneic")
    assert c.loc["ad_autologous_better", "probability"] == pytest.approx(float((auto < allo).mean()), abs=1e-12)
    for cid in ("four_vs_two_injections", "better_at_month_3"):
        assert np.isnan(c.loc[cid, "probability"]) and c.loc[cid, "interpretation"].startswith("not estimable")


def test_binomial_network_prior_predictive_has_events_within_n():
    """The prior predictive of the arm-based binomial form (the fit's default "prior" group): it must be
    computed (FAST_COMPILE's random variables refused the float n container; add_groups then uses the
    default mode) and its replicated events are integers in [0, n] of each arm."""
    arms = pd.DataFrame({"study": ["s1", "s1", "s2", "s2", "s3", "s3"],
                         "treatment": ["A", "B", "A", "C", "B", "C"],
                         "events": [3, 6, 4, 9, 5, 8], "n": [20, 20, 25, 25, 30, 30]})
    res = bk.fit(arms, "network", study="study", treatment="treatment", reference="A", measure="logOR",
                 structure={"levels": []}, seed=3, draws=200, tune=200, chains=2, warn=False)
    pp = res.dt["prior_predictive"]
    (name,) = list(pp.data_vars)
    y = pp[name].values
    n = np.broadcast_to(np.array([20, 20, 25, 25, 30, 30]), y.shape[-1:])
    assert y.shape[-1] == 6 and np.all(y >= 0) and np.all(y <= n) and np.all(y == np.round(y))
