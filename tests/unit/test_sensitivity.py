"""Prior sensitivity: the flip detector on constructed tables, prior-set resolution against the TOML
files, the sweep against plain fits (identical draws), power-scaling on cases with a known answer,
and the grid.

Fits are short (a few hundred draws): the sweep-vs-fit comparison needs equality of draws, not
precision, and power-scaling uses cases far from ArviZ's 0.05 threshold.
"""

from __future__ import annotations

import math
import tomllib
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import bayes_koa as bk  # noqa: E402
from bayes_koa.workflows import sensitivity as ps  # noqa: E402
from bayes_koa.inference.diagnostics import SamplingWarning# noqa: E402
from bayes_koa.spec.priors import PriorError# noqa: E402
from bayes_koa.api.result import MetaAnalysis# noqa: E402
from bayes_koa.kinds import load_spec# noqa: E402
from bayes_koa.spec import models_dir# noqa: E402


# ---------------------------------------------------------------------------------------------
# constructed tables
# ---------------------------------------------------------------------------------------------
def _table(sets: dict[str, dict]) -> pd.DataFrame:
    """A tidy table like sensitivity()'s. Per set: mu=(lo, hi), pmu=P(mu<0), best={src: p},
    first=label, claims={text: p}, mcse (for every probability; default 0.001)."""
    rows = []
    for name, d in sets.items():
        se = d.get("mcse", 0.001)
        lo, hi = d["mu"]
        rows.append(ps._row(name, "mu", "estimate", mean=(lo + hi) / 2, **{"q2.5": lo, "q97.5": hi}, mcse=0.01,
                            **{"mcse_q2.5": 0.027, "mcse_q97.5": 0.027}))
        rows.append(ps._row(name, "tau", "estimate", mean=1.0, **{"q2.5": 0.1, "q97.5": 3.0}, mcse=0.01))
        rows.append(ps._row(name, "P(mu<0)", "probability", value=d["pmu"], mcse=se))
        for s, p in d.get("best", {}).items():
            rows.append(ps._row(name, f"P(best)[{s}]", "probability", source=s, value=p, mcse=se))
            rows.append(ps._row(name, f"SUCRA[{s}]", "score", source=s, value=p, mcse=se))
        if "first" in d:
            rows.append(ps._row(name, "first_ranked", "label", source=d["first"], label=d["first"]))
        for c, p in d.get("claims", {}).items():
            rows.append(ps._row(name, f"claim: {c}", "claim", value=p, mcse=se))
    return pd.DataFrame(rows).reindex(columns=ps._COLUMNS)


REF = {"mu": (-5.0, -1.0), "pmu": 0.97, "best": {"UC": 0.92, "AD": 0.06, "BM": 0.02}, "first": "UC",
       "claims": {"UC ranks first": 0.92}}


def _flips(**other) -> pd.DataFrame:
    return ps.detect_flips(_table({"reference": REF, "other": {**REF, **other}}))


def test_identical_sets_have_no_flips():
    assert _flips().empty


def test_first_ranked_change_is_a_flip():
    f = _flips(first="AD")
    assert f[["quantity", "reference_value", "value"]].values.tolist() == [["first_ranked", "UC", "AD"]]
    assert "from UC to AD" in f["what"].iloc[0]


@pytest.mark.parametrize("p_new, crossed", [
    (0.85, [0.9]),         # 0.92 -> 0.85 crosses 0.9 only
    (0.45, [0.5, 0.9]),    # crosses both P(best) thresholds
    (0.91, []),            # stays above 0.9
    (0.96, []),            # 0.95 is not a P(best) threshold
])
def test_p_best_thresholds(p_new, crossed):
    f = _flips(best={**REF["best"], "UC": p_new})
    f = f[f["quantity"] == "P(best)[UC]"]
    assert sorted(f["threshold"]) == crossed


def test_p_best_of_a_minor_source_crossing_half():
    f = _flips(best={"UC": 0.4, "AD": 0.55, "BM": 0.05})
    assert set(zip(f["quantity"], f["threshold"])) == {("P(best)[UC]", 0.5), ("P(best)[UC]", 0.9),
                                                        ("P(best)[AD]", 0.5)}


@pytest.mark.parametrize("p_new, crossed", [
    (0.93, [0.95]),
    (0.85, [0.9, 0.95]),
    (0.30, [0.5, 0.9, 0.95]),
    (0.999, []),
    (0.951, []),
])
def test_p_mu_negative_thresholds(p_new, crossed):
    f = _flips(pmu=p_new)
    assert sorted(f.loc[f["quantity"] == "P(mu<0)", "threshold"]) == crossed


def test_claim_probability_crossing_and_direction():
    f = _flips(claims={"UC ranks first": 0.96})
    assert f[["quantity", "threshold"]].values.tolist() == [["claim: UC ranks first", 0.95]]
    assert "rises above 0.95" in f["what"].iloc[0]
    f = _flips(claims={"UC ranks first": 0.89})
    assert f["threshold"].tolist() == [0.9] and "falls to or below 0.9" in f["what"].iloc[0]


@pytest.mark.parametrize("interval, flipped", [
    ((-4.0, 0.5), True),    # stops excluding 0
    ((-6.0, -2.0), False),  # still excludes 0
    ((0.2, 3.0), False),    # excludes 0 on the other side: still "excludes 0"
])
def test_mu_interval_flip(interval, flipped):
    f = _flips(mu=interval)
    assert (f["quantity"] == "mu").any() == flipped


def test_mu_interval_starts_excluding_zero():
    t = _table({"reference": {**REF, "mu": (-4.0, 0.5)}, "other": REF})
    f = ps.detect_flips(t)
    assert f["what"].tolist() == ["95% interval of mu starts excluding 0"]


def test_within_mc_error_marks_noisy_crossings():
    # 0.905 vs 0.895 with MC SE 0.01: both within 2 SE of 0.9
    t = _table({"reference": {**REF, "pmu": 0.905, "mcse": 0.01}, "other": {**REF, "pmu": 0.895, "mcse": 0.01}})
    f = ps.detect_flips(t)
    assert f["within_mc_error"].tolist() == [True]
    t = _table({"reference": {**REF, "pmu": 0.99, "mcse": 0.001}, "other": {**REF, "pmu": 0.80, "mcse": 0.001}})
    assert not ps.detect_flips(t)["within_mc_error"].any()


def test_several_sets_and_missing_reference():
    t = _table({"reference": REF, "a": REF, "b": {**REF, "first": "BM"}})
    f = ps.detect_flips(t)
    assert f["prior_set"].tolist() == ["b"]
    with pytest.raises(ValueError, match="'nope' is not in the table"):
        ps.detect_flips(t, reference="nope")


def test_summary_text_lists_what_holds_and_what_flips():
    t = _table({"reference": REF, "a": {**REF, "pmu": 0.93}, "b": REF})
    res = ps.SensitivityResult(table=t, priors=pd.DataFrame(), runs=pd.DataFrame(), skipped=pd.DataFrame(),
                               simulated=True, model="m", measure="MD")
    text = res.summary_text()
    assert text.splitlines()[0].startswith("SIMULATED")
    holds = next(line for line in text.splitlines() if line.startswith("Conclusions that hold under every prior set:"))
    flips = next(line for line in text.splitlines() if line.startswith("Conclusions that flip:"))
    assert "UC is the first-ranked source" in holds and "the 95% interval of mu excludes 0" in holds
    assert "P(mu<0) > 0.95" in flips and "a: 0.930" in flips and "P(mu<0)" not in holds
    c = res.conclusions()
    assert c.set_index("quantity").loc["P(mu<0)", "flips_under"] == "a"


# ---------------------------------------------------------------------------------------------
# which prior sets
# ---------------------------------------------------------------------------------------------
def _sets_with_table(measure: str, params: set[str]) -> list[str]:
    """Straight from the TOML files: sets with a [priors.<measure>] table setting one of params."""
    out = []
    for path in sorted((models_dir() / "priors").glob("*.toml")):
        raw = tomllib.loads(path.read_text())["priors"]
        table = raw.get(measure, {})
        keys = {"tau" if k == "tau2" else k for k in table}
        if keys & params:
            out.append(path.stem)
    return out


def test_default_sets_for_md_hierarchical():
    spec = load_spec("source_hierarchical", measure="MD")
    specs, skipped = ps.resolve_prior_sets(spec)
    names = [n for n, _ in specs]
    assert names == _sets_with_table("MD", {"mu", "tau", "sigma_source"})
    # the empirical tau^2 priors are published for SMD and log OR only
    assert {"rhodes_any", "turner_adverse_events"} <= set(skipped["prior_set"])
    assert skipped.set_index("prior_set").loc["rhodes_any", "reason"].startswith("no [priors.MD] table")
    # precedence: the set's priors win, the rest stays as fitted (model file)
    narrow = dict(specs)["source_sd_narrow"].prior_dict
    assert str(narrow["sigma_source"]) == "HalfNormal(sigma=2)"
    assert str(narrow["tau"]) == str(spec.prior_dict["tau"]) and narrow["tau"].origin == spec.prior_dict["tau"].origin


def test_default_sets_for_smd_random_effects():
    spec = load_spec("random_effects", measure="SMD")
    specs, skipped = ps.resolve_prior_sets(spec)
    assert [n for n, _ in specs] == _sets_with_table("SMD", {"mu", "tau"})
    why = skipped.set_index("prior_set")["reason"]
    assert why["source_sd_narrow"].startswith("sets none of model random_effects's parameters")
    # Rhodes et al. 2015, any outcome (heterogeneity_priors.csv): log(tau^2) = -3.44 + 2.59 t5, so on
    # tau the location and scale halve
    tau = dict(specs)["rhodes_any"].prior_dict["tau"]
    assert tau.dist == "LogStudentT" and tau.kwargs == {"nu": 5.0, "mu": -3.44 / 2, "sigma": 2.59 / 2}


def test_dicts_names_and_errors():
    spec = load_spec("source_hierarchical", measure="MD")
    specs, _ = ps.resolve_prior_sets(spec, [{"tau": "HalfNormal(sigma=5)"}, "tau_large"])
    assert [n for n, _ in specs] == ["tau ~ HalfNormal(sigma=5)", "tau_large"]
    assert dict(specs)["tau ~ HalfNormal(sigma=5)"].prior_dict["tau"].origin == "prior set tau ~ HalfNormal(sigma=5)"
    specs, _ = ps.resolve_prior_sets(spec, {"my set": {"mu": "Normal(mu=0, sigma=10)"}})
    assert [n for n, _ in specs] == ["my set"]
    with pytest.raises(PriorError, match="reference"):
        ps.resolve_prior_sets(spec, {"reference": {"mu": "Normal(mu=0, sigma=10)"}})
    with pytest.raises(PriorError, match="given twice"):
        ps.resolve_prior_sets(spec, ["tau_large", "tau_large"])
    with pytest.raises(PriorError, match="no parameter 'sigma_origin'"):
        ps.resolve_prior_sets(spec, [{"sigma_origin": "HalfNormal(sigma=1)"}])
    with pytest.warns(UserWarning, match="rhodes_any: no \\[priors.MD\\] table"):
        specs, skipped = ps.resolve_prior_sets(spec, ["rhodes_any", "tau_small"])
    assert [n for n, _ in specs] == ["tau_small"] and skipped["prior_set"].tolist() == ["rhodes_any"]


# ---------------------------------------------------------------------------------------------
# the sweep against plain fits
# ---------------------------------------------------------------------------------------------
EFFECTS = pd.DataFrame({
    "trial_id": [f"T{i}" for i in range(9)],
    "yi": [-12.0, -8.5, -15.2, -20.1, -17.4, -24.0, -6.3, -9.8, -2.5],
    "vi": np.array([5.0, 6.5, 4.0, 7.0, 5.5, 8.0, 4.5, 6.0, 5.0]) ** 2,
    "cell_source": ["BM", "BM", "BM", "UC", "UC", "UC", "AD", "AD", "AD"],
    "measure": "MD",
})
KW = dict(seed=2024, draws=300, tune=300, chains=2, warn=False)  # equality of draws, not precision


@pytest.fixture(scope="module")
def fitted():
    return bk.fit(EFFECTS, "source_hierarchical", **KW)


@pytest.fixture(scope="module")
def sweep(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # 2 x 300 draws: ESS warnings expected
        return ps.sensitivity(fitted, ["tau_large", "sceptical"])


def test_sweep_draws_equal_a_plain_fit(sweep):
    """Same seed, same settings, same compiled model: bayes_koa.fit under the set gives the same draws."""
    plain = bk.fit(EFFECTS, "source_hierarchical", priors="tau_large", **KW)
    for var in ("mu", "tau", "sigma_source", "source_mean"):
        np.testing.assert_array_equal(sweep.posteriors["tau_large"][var].values, plain.dt["posterior"][var].values)
    # and the table is computed from those draws
    t = sweep.table[sweep.table["prior_set"] == "tau_large"].set_index("quantity")
    mu = plain.dt["posterior"]["mu"].values.ravel()
    assert t.loc["mu", "mean"] == pytest.approx(mu.mean(), rel=1e-12)  # same numbers, rounding only
    assert t.loc["mu", "q2.5"] == pytest.approx(np.quantile(mu, 0.025), rel=1e-12)
    assert t.loc["P(mu<0)", "value"] == pytest.approx((mu < 0).mean(), abs=1e-15)


def test_reference_is_the_fitted_result(sweep, fitted):
    t = sweep.table[sweep.table["prior_set"] == "reference"].set_index("quantity")
    assert set(t["path"]) == {ps.PATH_FITTED}
    sm = fitted.dt["posterior"]["source_mean"]
    assert t.loc["source_mean[UC]", "mean"] == pytest.approx(float(sm.sel(source="UC").mean()), rel=1e-12)
    pri = sweep.priors.set_index(["prior_set", "parameter"])
    assert pri.loc[("reference", "tau"), "prior"] == "HalfNormal(sigma=20)"  # model file, MD table
    assert pri.loc[("tau_large", "tau"), "prior"] == "HalfNormal(sigma=25)"
    assert pri.loc[("tau_large", "tau"), "from"] == "prior set tau_large"
    assert pri.loc[("tau_large", "mu"), "from"].startswith("model file")


def test_compiled_once_per_family(sweep):
    # the fit compiled the (Normal, HalfNormal, HalfNormal) model; both sets use the same families
    assert sweep.table.attrs["compiled_models"] == 0
    assert not sweep.runs["compiled"].any()
    assert sweep.runs.set_index("prior_set").loc["tau_large", "path"] == ps.PATH_MCMC


def test_ranking_rows_from_the_draws(sweep):
    """P(best) and SUCRA counted directly from the stored draws (lower = better)."""
    sm = sweep.posteriors["sceptical"]["source_mean"]
    x = sm.transpose("chain", "draw", "source").values.reshape(-1, sm.sizes["source"])
    labels = [str(s) for s in sm["source"].values]
    rank = np.argsort(np.argsort(x, axis=1), axis=1) + 1
    t = sweep.table[sweep.table["prior_set"] == "sceptical"].set_index("quantity")
    k = len(labels)
    for j, s in enumerate(labels):
        assert t.loc[f"P(best)[{s}]", "value"] == pytest.approx((rank[:, j] == 1).mean(), abs=1e-12)
        assert t.loc[f"SUCRA[{s}]", "value"] == pytest.approx(((k - rank[:, j]) / (k - 1)).mean(), abs=1e-12)
        p = t.loc[f"P(best)[{s}]", "value"]
        # MC SE >= the iid binomial SE * sqrt(n / ESS) with ESS <= ~1.5 n for NUTS: a loose sanity band
        assert t.loc[f"P(best)[{s}]", "mcse"] >= 0.5 * math.sqrt(p * (1 - p) / x.shape[0]) - 1e-12
    sucra = {s: t.loc[f"SUCRA[{s}]", "value"] for s in labels}
    assert t.loc["first_ranked", "label"] == max(sucra, key=sucra.get)


def test_table_shape_and_views(sweep, tmp_path):
    t = sweep.table
    assert list(t.columns) == ps._COLUMNS
    assert sweep.prior_sets == ["reference", "tau_large", "sceptical"]
    per_set = t.groupby("prior_set", sort=False)["quantity"].apply(list)
    assert per_set["reference"] == per_set["tau_large"] == per_set["sceptical"]
    assert {"mu", "tau", "sigma_source", "source_mean[BM]", "P(mu<0)", "P(best)[UC]", "SUCRA[AD]",
            "first_ranked"} <= set(per_set["reference"])
    assert "claims" in t.attrs and t.attrs["claims"]
    w = sweep.wide()
    assert list(w.columns) == sweep.prior_sets and w.loc["first_ranked", "reference"] in {"BM", "UC", "AD"}
    fig = sweep.plot(save=tmp_path / "s.png")
    assert isinstance(fig, Figure) and (tmp_path / "s.png").stat().st_size > 0
    assert "Conclusions that hold under every prior set:" in sweep.summary_text()


def test_grid_on_the_hierarchical_model_reuses_the_compiled_model(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        g = ps.sensitivity_grid(fitted, "sigma_source", "HalfNormal", "sigma", [5.0, 50.0], include_reference=False)
    assert g.table.attrs["compiled_models"] == 0
    assert g.prior_sets == ["sigma_source ~ HalfNormal(sigma=5)", "sigma_source ~ HalfNormal(sigma=50)"]
    fig = g.plot()
    # the P(best) panel has one line per source
    ax = next(a for a in fig.axes if a.get_title() == "P(best)")
    assert sorted(line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")) == \
        ["AD", "BM", "UC"]


# ---------------------------------------------------------------------------------------------
# exact path and grid on random_effects (no sampling)
# ---------------------------------------------------------------------------------------------
def _re_result(y, s, measure="SMD") -> MetaAnalysis:
    """The exact path uses only the spec and the effect table: a result without draws will do."""
    eff = pd.DataFrame({"trial_id": [f"S{i}" for i in range(len(y))], "yi": y, "vi": np.asarray(s) ** 2,
                        "measure": measure, "excluded_reason": ""})
    return MetaAnalysis(dt=xr.DataTree(), spec=load_spec("random_effects", measure=measure), effects=eff,
                        excluded=eff.iloc[0:0])


def test_exact_path_grid_is_monotone_in_the_prior_scale():
    """HalfNormal(s) priors have a monotone likelihood ratio in s, so the posterior of tau is
    stochastically increasing in s whatever the data: E[tau | y] must increase along the grid."""
    res = _re_result([-0.5, -0.1, -0.9, 0.2, -0.4, -0.7], [0.2, 0.25, 0.3, 0.2, 0.15, 0.35])
    g = ps.sensitivity_grid(res, values=[0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
    t = g.table[g.table["quantity"] == "tau"].dropna(subset=["grid_value"]).sort_values("grid_value")
    assert (np.diff(t["mean"].to_numpy()) > 0).all()
    assert set(g.runs["path"]) == {ps.PATH_EXACT}
    # the reference row (HalfNormal(sigma=0.5), the package default) equals the grid row at 0.5
    ref = g.table.query("prior_set == 'reference' and quantity == 'tau'")["mean"].iloc[0]
    assert ref == pytest.approx(t.loc[t["grid_value"] == 0.5, "mean"].iloc[0], rel=1e-12)
    assert isinstance(g.plot(), Figure)


def test_method_choice():
    res = _re_result([-0.5, -0.1, -0.9], [0.2, 0.25, 0.3])
    with pytest.raises(ValueError, match="exact path cannot be used: mu prior StudentT"):
        ps.sensitivity(res, [{"mu": "StudentT(nu=3, mu=0, sigma=1)"}], method="exact", include_reference=False)
    ok, why = ps.exact_possible(load_spec("source_hierarchical", measure="MD"))
    assert not ok and "hierarchical" in why
    with pytest.raises(ValueError, match="method must be"):
        ps.sensitivity(res, method="quick")


# ---------------------------------------------------------------------------------------------
# power-scaling
# ---------------------------------------------------------------------------------------------
N_PS = 30
Y_PS = -10 + np.sqrt(29.0) * np.random.default_rng(5).standard_normal(N_PS)  # tau = 5, se = 2


def _ps_fit(se: float, priors: dict):
    eff = pd.DataFrame({"trial_id": [f"P{i:02d}" for i in range(N_PS)], "yi": Y_PS, "sei": se})
    return bk.fit(eff, "random_effects", priors=priors, seed=3, draws=500, tune=500, warn=False)


def test_power_scaling_quiet_when_data_dominate():
    """30 precise trials (se 2) and weak priors: neither mu nor tau is prior-sensitive."""
    r = _ps_fit(2.0, {"mu": "Normal(mu=0, sigma=100)", "tau": "HalfNormal(sigma=50)"})
    d = ps.power_scaling(r)
    assert d.attrs["threshold"] == 0.05 and d.attrs["prior_var_names"] == ["mu", "tau"]
    assert list(d.index) == ["mu", "tau"]
    assert (d["prior"] < 0.05).all() and not d["flagged"].any()


def test_power_scaling_flags_strong_prior_weak_likelihood():
    """30 trials with se 200 (almost no information) and informative priors: the posterior is the
    prior, so power-scaling the prior moves it and scaling the likelihood does not."""
    r = _ps_fit(200.0, {"mu": "Normal(mu=-10, sigma=1)", "tau": "HalfNormal(sigma=5)"})
    d = ps.power_scaling(r)
    assert d["flagged"].all()
    assert (d["prior"] >= 0.05).all() and (d["likelihood"] < 0.05).all()
    assert set(d["diagnosis"]) == {"potential strong prior / weak likelihood"}


def test_power_scaling_needs_log_groups():
    res = _re_result([-0.5, -0.1, -0.9], [0.2, 0.25, 0.3])
    with pytest.raises(ValueError, match="log_prior and log_likelihood"):
        ps.power_scaling(res)


def test_mu_interval_flip_near_zero_is_marked_noisy():
    # the interval ends have quantile MC SE 0.027 in _table (as ArviZ's az.mcse(method="quantile")
    # reports them); an end at +0.03 is within 2 such SEs of 0, an end at +0.5 is not
    near = ps.detect_flips(_table({"reference": REF, "other": {**REF, "mu": (-4.0, 0.03)}}))
    far = ps.detect_flips(_table({"reference": REF, "other": {**REF, "mu": (-4.0, 0.5)}}))
    assert near.set_index("quantity").loc["mu", "within_mc_error"]
    assert not far.set_index("quantity").loc["mu", "within_mc_error"]


def test_unknown_mcse_never_makes_a_crossing_look_certain():
    t = _table({"reference": {**REF, "pmu": 0.99, "mcse": float("nan")}, "other": {**REF, "pmu": 0.80}})
    f = ps.detect_flips(t)
    assert f[f["quantity"] == "P(mu<0)"]["within_mc_error"].all()
