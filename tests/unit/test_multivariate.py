"""The multivariate kind (outcomes x times): structure, whitened likelihood, left-out rows, one real fit.

The likelihood test compares the model's log density of ``y_obs`` with scipy's multivariate normal
on the covariance written out entry by entry (not with the module's own correlation function).
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayes_koa as bk
from bayes_koa.inference.diagnostics import SamplingWarning
from bayes_koa.kinds import build_model, prepare
from bayes_koa.kinds.multivariate import _walk_matrix, p_better_by_time, whiten, within_correlation
from bayes_koa.spec.priors import PriorError
from bayes_koa.spec import SpecError
from bayes_koa.kinds import load_spec


def _table():
    """Three comparisons (trial T1 has two MSC arms) reporting different outcome x time subsets."""
    rows = []
    def add(trial, comp, source, outcome, t, y, v, reason=""):
        rows.append({"trial_id": trial, "comparison": comp, "outcome": outcome, "time_months": t,
                     "yi": y, "vi": v, "cell_source": source, "excluded_reason": reason})
    # T1 arm a: VAS at 3, 6, 12 and WOMAC at 3, 12 (WOMAC 6 not reported)
    for t, y, v in [(3, -0.5, 0.10), (6, -0.7, 0.12), (12, -0.4, 0.15)]:
        add("T1", "a vs control", "BM", "VAS", t, y, v)
    for t, y, v in [(3, -0.3, 0.11), (12, -0.6, 0.14)]:
        add("T1", "a vs control", "BM", "WOMAC_total", t, y, v)
    # T1 arm b: VAS at 6 only
    add("T1", "b vs control", "BM", "VAS", 6, -0.2, 0.20)
    # T2: VAS and WOMAC at 6, Lysholm at 6 (not modelled by a VAS+WOMAC model)
    add("T2", "msc vs control", "AD", "VAS", 6, -0.9, 0.09)
    add("T2", "msc vs control", "AD", "WOMAC_total", 6, -0.8, 0.08)
    add("T2", "msc vs control", "AD", "Lysholm", 6, -0.1, 0.08)
    # T3: VAS at 24 months, a NaN, a missing source, an adverse-event row ruled out upstream
    add("T3", "msc vs control", "UC", "VAS", 24, -0.4, 0.2)
    add("T3", "msc vs control", "UC", "VAS", 3, np.nan, 0.2)
    add("T3", "msc vs control", "UC", "VAS", 6, -0.6, 0.2)
    add("T4", "msc vs control", None, "VAS", 6, -0.3, 0.2)
    add("T3", "msc vs control", "UC", "AE_any", 12, np.nan, np.nan, "binary outcome (events): measure SMD does not apply")
    return pd.DataFrame(rows)


TWO = {"outcomes": ["VAS", "WOMAC_total"], "times": [3, 6, 12]}


def test_spec_parameters_and_options():
    spec = load_spec("multi_outcome")
    assert spec.kind == "multivariate" and spec.get("levels", ()) == ("source",)
    assert spec.parameters == ("mu", "sigma_time", "sigma_source", "sigma_source_time", "sigma_outcome",
                               "sigma_source_outcome", "tau", "tau_time", "tau_outcome")
    # every parameter's prior comes from the model file, none from the package defaults
    assert all(pr.origin == "model file multi_outcome.toml" for _, pr in spec.priors)
    assert spec.struct["outcomes"] == ("VAS", "WOMAC_total", "Lequesne", "Lysholm")
    assert spec.struct["reference_time"] == 6.0 and spec.struct["time_prior"] == "random_walk"
    one = load_spec("time_course")
    assert one.parameters == ("mu", "sigma_time", "sigma_source", "sigma_source_time", "tau", "tau_time")
    assert all(pr.origin == "model file time_course.toml" for _, pr in load_spec("time_course", measure="MD").priors)
    # options change the compile key (rho is part of the structure)
    assert load_spec("multi_outcome", rho_time=0.2).structure_key() != spec.structure_key()


@pytest.mark.parametrize("override, message", [
    ({"rho_outcome": 1.0}, r"rho_outcome must be in \[0, 1\)"),
    ({"time_prior": "ar1"}, "time_prior must be"),
    ({"times": [3, 12]}, "reference_time 6 is not one of structure.times"),
    ({"outcomes": []}, "outcomes must be a non-empty list"),
    ({"moderators": ["log_dose"]}, "takes no moderators"),
    ({"color": "red"}, r"unknown structure key\(s\) \['color'\]"),
    ({"parameterization": "centered"}, "'noncentered' or 'mixed'"),
])
def test_bad_structure_is_refused(override, message):
    with pytest.raises(SpecError, match=message):
        load_spec("multi_outcome", **override)


def test_multi_outcome_needs_smd():
    # MD priors are not given for several outcomes (pooling mm and points would be meaningless)
    with pytest.raises(PriorError, match="no prior for 'sigma_time' on the 'MD' scale"):
        load_spec("multi_outcome", measure="MD")
    spec = load_spec("multi_outcome", measure="MD", priors={p: "HalfNormal(sigma=1)" if p != "mu" else
                                                            "Normal(mu=0, sigma=1)" for p in load_spec("multi_outcome").parameters})
    with pytest.raises(SpecError, match="needs standardised mean differences"):
        prepare(spec, _table())


def test_rows_left_out_with_reasons_and_partial_reporting_kept():
    spec = load_spec("multi_outcome", **TWO)
    design, excluded = prepare(spec, _table())
    reasons = sorted(zip(excluded["trial_id"], excluded["outcome"], excluded["time_months"],
                         excluded["excluded_reason"]), key=str)
    assert reasons == sorted([
        ("T2", "Lysholm", 6, "outcome Lysholm is not modelled by multi_outcome (outcomes: VAS, WOMAC_total)"),
        ("T3", "VAS", 24, "time 24 months is not modelled by multi_outcome (times: 3, 6, 12)"),
        ("T3", "VAS", 3, "yi or vi not finite"),
        ("T4", "VAS", 6, "cell source not reported (needed by multi_outcome)"),
        ("T3", "AE_any", 12, "binary outcome (events): measure SMD does not apply"),
    ], key=str)
    # nothing silently dropped: used + left out = the whole table
    assert len(design.rows) + len(excluded) == len(_table())
    # two comparisons of T1 get their own labels but share the trial; rows ordered comparison, outcome, time
    assert design.comparison == ["T1 (a vs control)", "T1 (b vs control)", "T2", "T3"]
    assert design.trial == ["T1", "T2", "T3"]
    np.testing.assert_array_equal(design.trial_idx, [0, 0, 0, 0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(design.comparison_idx, [0, 0, 0, 0, 0, 1, 2, 2, 3])
    assert design.row[:5] == ["T1 (a vs control) | VAS | 3 mo", "T1 (a vs control) | VAS | 6 mo",
                              "T1 (a vs control) | VAS | 12 mo", "T1 (a vs control) | WOMAC_total | 3 mo",
                              "T1 (a vs control) | WOMAC_total | 12 mo"]
    assert design.source == ["BM", "UC", "AD"]
    np.testing.assert_array_equal(design.source_idx, [0, 0, 2, 1])
    assert design.time == [3.0, 6.0, 12.0] and design.outcome == ["VAS", "WOMAC_total"]
    # with times = "all" the 24-month row is used and joins the time grid
    design_all, _ = prepare(load_spec("multi_outcome", outcomes=["VAS", "WOMAC_total"]), _table())
    assert design_all.time == [3.0, 6.0, 12.0, 24.0]


def test_prepare_refuses_ambiguous_input():
    spec = load_spec("multi_outcome", **TWO)
    with pytest.raises(SpecError, match="do not pass outcome= or time="):
        prepare(spec, _table(), outcome="VAS")
    dup = pd.concat([_table(), _table().iloc[[0]]])
    with pytest.raises(SpecError, match="trial 'T1' has more than one row for outcome VAS at 3 months"):
        prepare(spec, dup)
    no6 = _table()
    no6 = no6[no6["time_months"] != 6]
    with pytest.raises(SpecError, match="reference_time 6 months has no data"):
        prepare(load_spec("multi_outcome", outcomes=["VAS", "WOMAC_total"]), no6)


def test_within_correlation_is_a_submatrix_of_the_kronecker_product():
    # rows (outcome, time): (0,0) (0,2) (1,0) (1,1); R_outcome (x) R_time with exchangeable blocks
    o, t = np.array([0, 0, 1, 1]), np.array([0, 2, 0, 1])
    ro, rt = 0.6, 0.3
    Ro = np.full((2, 2), ro) + (1 - ro) * np.eye(2)
    Rt = np.full((3, 3), rt) + (1 - rt) * np.eye(3)
    full = np.kron(Ro, Rt)
    pick = o * 3 + t
    np.testing.assert_allclose(within_correlation(o, t, ro, rt), full[np.ix_(pick, pick)], rtol=0, atol=1e-15)


def test_whitening_reproduces_the_multivariate_normal_density():
    rng = np.random.default_rng(3)
    y, se = rng.normal(size=6), rng.uniform(0.2, 0.6, 6)
    block, o, t = np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 0, 1, 0]), np.array([0, 1, 1, 0, 0, 0])
    theta = rng.normal(size=6)
    yw, sdw, Wi, Wv = whiten(y, se, block, o, t, 0.5, 0.4)
    ours = stats.norm.logpdf(yw, (Wv * theta[Wi]).sum(1), sdw).sum()
    ref = 0.0
    for b in range(3):
        i = np.flatnonzero(block == b)
        S = np.array([[se[a] * se[c] * (1 if o[a] == o[c] else 0.5) * (1 if t[a] == t[c] else 0.4)
                       for c in i] for a in i])
        ref += stats.multivariate_normal(theta[i], S).logpdf(y[i])
    # float64 Cholesky and triangular solve on 3 x 3 blocks: rounding ~1e-15 relative
    assert ours == pytest.approx(ref, abs=1e-10)


def _point(model, rng):
    """Random values (on the transformed scale) for every free variable of ``model``."""
    return {v.name: rng.normal(size=v.type.shape if all(s is not None for s in v.type.shape)
                               else model.initial_point()[v.name].shape) * 0.5
            for v in model.value_vars}


@pytest.mark.parametrize("rho", [(0.5, 0.3), (0.0, 0.0)])
def test_model_likelihood_equals_scipy_mvnormal(rho):
    ro, rt = rho
    spec = load_spec("multi_outcome", rho_outcome=ro, rho_time=rt, **TWO)
    design, _ = prepare(spec, _table())
    model = build_model(spec, design)
    rng = np.random.default_rng(7)
    point = _point(model, rng)
    logp_y = model.compile_logp(vars=[model["y_obs"]], sum=True)(point)
    names = ["theta", "overall_by_time", "source_time_mean", "outcome_effect", "tau", "tau_time",
             "tau_outcome", "sigma_source_outcome", "sigma_outcome"]
    outs = model.replace_rvs_by_values([model[n] for n in names])  # evaluate at the point, do not draw
    f = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    theta, overall, stm, oeff, tau, tau_t, tau_o, s_so, s_o = f(point)

    # theta from the named pieces, written out independently of the model graph
    rows = design.rows
    o_idx = rows["outcome"].map({"VAS": 0, "WOMAC_total": 1}).to_numpy()
    t_idx = rows["time_months"].map({3: 0, 6: 1, 12: 2}).to_numpy()
    i_idx, c_idx = design.trial_idx, design.comparison_idx  # trial effects; whitening blocks
    s_idx = design.source_idx[c_idx]
    gamma = oeff - overall[1]  # outcome_effect = overall at the reference time (6 months) + gamma
    z = {k: point[k] for k in point}
    d = s_so * z["z_source_outcome"]
    u, v, w = tau * z["z_trial"], tau_t * z["z_trial_time"], tau_o * z["z_trial_outcome"]
    expected = (stm[s_idx, t_idx] + gamma[o_idx] + d[s_idx, o_idx] + u[i_idx] + v[i_idx, t_idx]
                + w[i_idx, o_idx])
    np.testing.assert_allclose(theta, expected, rtol=0, atol=1e-12)  # same float64 sums, other order

    y, se = rows["yi"].to_numpy(float), np.sqrt(rows["vi"].to_numpy(float))
    ref = 0.0
    for c in range(len(design.comparison)):
        i = np.flatnonzero(c_idx == c)
        S = np.array([[se[a] * se[b] * (1.0 if o_idx[a] == o_idx[b] else ro) * (1.0 if t_idx[a] == t_idx[b] else rt)
                       for b in i] for a in i])
        ref += stats.multivariate_normal(theta[i], S).logpdf(y[i])
    # exact up to float64 rounding in the Cholesky factor of 5 x 5 blocks (~1e-14); the brief asks 1e-8
    assert float(logp_y) == pytest.approx(ref, abs=1e-8)
    if ro == rt == 0.0:
        assert float(logp_y) == pytest.approx(stats.norm.logpdf(y, theta, se).sum(), abs=1e-10)


def test_random_walk_is_brownian_motion_anchored_at_the_reference_time():
    times = [1.0, 3.0, 6.0, 9.0, 12.0, 24.0]
    A, g = _walk_matrix(times, ref_idx=2)
    cov = A @ np.diag(g ** 2) @ A.T  # covariance of overall_by_time / sigma_time given mu
    # Brownian motion from 6 months, in units of 6 months: Cov = min(|s-6|, |t-6|)/6 on one side, 0 across
    ref = np.array([[min(abs(s - 6), abs(t - 6)) / 6 if (s - 6) * (t - 6) > 0 else 0.0 for t in times]
                    for s in times])
    np.testing.assert_allclose(cov, ref, rtol=0, atol=1e-14)


# -- one real fit on the shipped SIMULATED data (multi_outcome, 4 x 300 draws) ---------------------


@pytest.fixture(scope="module")
def effects():
    return bk.effect_sizes(bk.load_simulated(), measure="SMD")


@pytest.fixture(scope="module")
def result(effects):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # 4 x 300 draws are too few for the ESS rule; not checked here
        return bk.fit(effects, "multi_outcome", seed=5, draws=300, tune=300)


def test_fit_dims_and_left_out_rows(result, effects):
    post = result.dt["posterior"]
    assert post["overall_by_time"].dims == ("chain", "draw", "time")
    assert list(post["time"].values) == [3.0, 6.0, 12.0]
    assert post["source_time_mean"].dims == ("chain", "draw", "source", "time")
    assert post["source_mean"].dims == ("chain", "draw", "source")
    assert list(post["source"].values) == ["BM", "UC", "AD"]
    assert list(post["outcome"].values) == ["VAS", "WOMAC_total", "Lequesne", "Lysholm"]
    assert post["source_outcome_mean"].dims == ("chain", "draw", "source", "outcome")
    assert post["theta"].dims == ("chain", "draw", "row")
    # trial effects per trial (25 simulated trials), sampling blocks per comparison (38)
    assert post["z_trial"].dims == ("chain", "draw", "trial") and post.sizes["trial"] == 25
    assert result.dt["constant_data"]["source_idx"].dims == ("comparison",)
    assert result.dt["constant_data"].sizes["comparison"] == 38
    assert post.sizes["draw"] == 300 and post.sizes["chain"] == 4
    # source_mean is source_time_mean at the reference time (6 months), draw by draw
    np.testing.assert_array_equal(post["source_mean"].values, post["source_time_mean"].sel(time=6.0).values)
    # every continuous row is used; the 38 adverse-event rows are left out with their reason
    usable = effects["excluded_reason"] == ""
    assert len(result.effects) == int(usable.sum())
    assert set(result.excluded["excluded_reason"]) == set(effects.loc[~usable, "excluded_reason"])
    result.require("log_likelihood")  # computed when asked for (a fit stores prior draws only)
    assert "log_likelihood" in result.dt.children and result.dt["log_likelihood"]["y_obs"].shape[-1] == usable.sum()
    s = result.summary(include_trials=False)
    assert {"overall_by_time[3.0]", "source_time_mean[UC, 12.0]", "outcome_effect[Lysholm]",
            "tau_outcome", "theta_new", "theta_new_outcome[VAS]"} <= set(s.index)
    assert np.isnan(s.loc["tau_time", "p_benefit"])  # an SD has no "benefit" probability


def test_claims_month_3_and_p_better_by_time(result):
    c = result.claims().set_index("claim")
    p3 = c.loc["MSC better than control at month 3", "probability"]
    assert np.isfinite(p3)
    draws = result.dt["posterior"]["overall_by_time"].sel(time=3.0)
    assert p3 == pytest.approx(float((draws < 0).mean()), abs=1e-12)  # the same event, counted directly
    assert np.isfinite(c.loc["UC > AD > BM in benefit", "probability"])  # source_mean drives the ranking claims
    tab = p_better_by_time(result)
    assert list(tab["time_months"]) == [3.0, 6.0, 12.0]
    assert tab.loc[0, "p_benefit"] == pytest.approx(p3, abs=1e-12)
    q = np.quantile(result.dt["posterior"]["overall_by_time"].sel(time=12.0).values.ravel(), [0.025, 0.975])
    np.testing.assert_allclose(tab.loc[2, ["eti95_lb", "eti95_ub"]].to_numpy(float), q, rtol=1e-12)
    by_src = p_better_by_time(result, by_source=True)
    assert len(by_src) == 9 and set(by_src["source"]) == {"BM", "UC", "AD"}
    uc12 = result.dt["posterior"]["source_time_mean"].sel(source="UC", time=12.0)
    row = by_src[(by_src["source"] == "UC") & (by_src["time_months"] == 12.0)].iloc[0]
    assert row["p_benefit"] == pytest.approx(float((uc12 < 0).mean()), abs=1e-12)
    assert tab.attrs["simulated"] is True


def test_prediction_variance_adds_every_component(result):
    post = result.dt["posterior"]
    expected = float(post["overall_by_time"].sel(time=6.0).var()) + float(sum(
        (post[v] ** 2).mean() for v in ("sigma_source", "sigma_source_time", "sigma_outcome",
                                        "sigma_source_outcome", "tau", "tau_time", "tau_outcome")))
    # one normal draw per posterior draw (1200 draws): the variance has Monte Carlo relative error
    # about sqrt(2/1200) ~ 4%; 15% is more than 3 such SEs
    assert float(post["theta_new"].var()) == pytest.approx(expected, rel=0.15)


def test_save_load_round_trip(result, tmp_path):
    back = bk.load(result.save(tmp_path / "mv.nc"))
    assert back.spec.kind == "multivariate" and back.spec.struct == result.spec.struct
    np.testing.assert_array_equal(back.dt["posterior"]["overall_by_time"].values,
                                  result.dt["posterior"]["overall_by_time"].values)


@pytest.mark.parametrize("time_prior, param", [("random_walk", "noncentered"), ("exchangeable", "mixed")])
def test_variants_and_every_data_value_feeds_the_likelihood(time_prior, param):
    from pytensor.graph.traversal import ancestors

    spec = load_spec("multi_outcome", time_prior=time_prior, parameterization=param, **TWO)
    design, _ = prepare(spec, _table())
    model = build_model(spec, design)
    # nutpie swaps data by name and refuses names the log density does not use: design.data()
    # must name exactly the containers the likelihood depends on
    used = {v.name for v in ancestors([model.logp()]) if v.name in set(design.data())}
    assert used == set(design.data())
    point = _point(model, np.random.default_rng(1))
    names = ["overall_by_time", "mu", "sigma_time"]
    f = model.compile_fn(model.replace_rvs_by_values([model[n] for n in names]), inputs=model.value_vars,
                         on_unused_input="ignore")
    overall, mu, s_time = f(point)
    z = point["z_time"]
    if time_prior == "exchangeable":
        np.testing.assert_allclose(overall, mu + s_time * z, rtol=0, atol=1e-12)
        assert "source_level" in model.named_vars  # mixed: the source level is a centred variable
    else:
        # anchored at 6 months; 3 months is a 3-month step back, 12 a 6-month step forward
        np.testing.assert_allclose(overall, [mu + s_time * np.sqrt(3 / 6) * z[0], mu, mu + s_time * z[2]],
                                   rtol=0, atol=1e-12)


def test_time_course_on_the_shipped_data(effects):
    spec = load_spec("time_course")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # VAS is reported: no "prior only" warning
        design, excluded = prepare(spec, effects)
    assert design.outcome == ["VAS"] and design.time == [3.0, 6.0, 12.0]
    assert set(design.rows["outcome"]) == {"VAS"}
    vas = (effects["outcome"] == "VAS") & (effects["excluded_reason"] == "")
    assert len(design.rows) == int(vas.sum()) and len(excluded) == len(effects) - int(vas.sum())
    assert "outcome_idx" not in design.data()  # one outcome: no outcome terms
    model = build_model(spec, design)
    assert model.named_vars_to_dims["outcome_effect"] == ("outcome",)
    assert "sigma_outcome" not in model.named_vars and "tau_outcome" not in model.named_vars
    # VAS rows at three times of one comparison form one whitening block of up to 3 rows
    assert design.W_idx.shape == (len(design.row), 3)


def test_listed_outcome_without_rows_warns():
    spec = load_spec("multi_outcome", **{**TWO, "outcomes": ["VAS", "WOMAC_total", "KOOS"]})
    with pytest.warns(UserWarning, match="no usable rows for outcome\\(s\\) KOOS"):
        design, _ = prepare(spec, _table())
    assert design.outcome == ["VAS", "WOMAC_total", "KOOS"]
