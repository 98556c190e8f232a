"""The main job, as a user runs it: `bayes-koa analyze` with its defaults (the network meta-analysis with
the pooled model beside it), and `bayes-koa analyze --model source_hierarchical` (the pooled job)."""

import numpy as np
import pandas as pd
import pytest

from bayes_koa.cli import main
from bayes_koa.api.result import load


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The default main job: the network model, the pooled source model beside it."""
    out = tmp_path_factory.mktemp("report")
    assert main(["analyze", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def pooled_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("pooled")
    assert main(["analyze", "--model", "source_hierarchical", "--out", str(out), "--quiet"]) == 0
    return out


def _csv(path):
    return pd.read_csv(path, comment="#")


# -- the default main job: network ------------------------------------------------------------------
def test_main_job_is_the_network_and_converges(report):
    res = load(report / "result.nc")
    assert res.spec.kind == "network" and res.provenance["model"] == "network"
    assert res.provenance["simulated"] == 1 and res.provenance["seed"] == 20261126
    assert res.provenance["outcome"] == "VAS" and float(res.provenance["time"]) == 6.0
    diag = pd.read_csv(report / "diagnostics.csv", comment="#", index_col=0)
    assert res.diagnostics().attrs["divergences"] == 0
    assert diag["r_hat"].max() <= 1.01 and diag["ess_bulk"].min() >= 400


def test_network_report_folder_says_simulated_and_carries_diagnostics(report):
    tables = ("summary.csv", "ranking.csv", "rank_probabilities.csv", "league.csv", "inconsistency.csv", "loo.csv",
              "ppc.csv", "claims.csv", "network_vs_pooled.csv", "diagnostics.csv")
    for name in tables + ("pooled_ranking.csv", "priors.csv", "arms.csv", "excluded.csv"):
        assert (report / name).read_text().startswith("# SIMULATED"), name
    for name in tables:  # the tables from a fit carry that fit's sampler diagnostics on their second line
        second = (report / name).read_text().splitlines()[1]
        assert second.startswith("# sampling diagnostics (network): 0 divergences") and second.endswith("OK"), name
    assert "(source_hierarchical)" in (report / "network_vs_pooled.csv").read_text().splitlines()[1]
    second = (report / "pooled_ranking.csv").read_text().splitlines()[1]  # the pooled fit's own diagnostics
    assert second.startswith("# sampling diagnostics (source_hierarchical): 0 divergences") and second.endswith("OK")
    for name in ("network.png", "rankogram.png", "result.nc", "report.html"):
        assert (report / name).stat().st_size > 1000, name
    text = (report / "report.txt").read_text()
    assert text.splitlines()[0].startswith("SIMULATED")
    for piece in ("model network", "Ranking of cell sources", "SUCRA", "League table", "Inconsistency check",
                  "PSIS-LOO by trial", "UC-MSC ranks first", "Beside it, the pooled model source_hierarchical",
                  "Why they differ:"):
        assert piece in text, piece
    html = (report / "report.html").read_text()
    for piece in ("id='simulated-banner'", "id='network-plot'", "id='league'", "id='inconsistency'",
                  "id='why-they-differ'", "id='network-vs-pooled'", "id='claims'", "id='loo'", "id='ppc'",
                  "id='excluded'", "id='priors'"):
        assert piece in html, piece
    # every table computed from the fit is followed by its diagnostics line
    assert html.count("class='note diag'") >= 8


def test_ranking_probabilities_are_consistent(report):
    rank = _csv(report / "ranking.csv")
    probs = rank[[c for c in rank.columns if c.startswith("P(rank=") and not c.endswith("_mcse")]]
    # each source has some rank, and each rank is held by one source, in every draw
    assert probs.sum(axis=1).to_numpy() == pytest.approx(1.0)
    assert probs.sum(axis=0).to_numpy() == pytest.approx(1.0)
    assert rank["p_best"].to_numpy() == pytest.approx(rank["P(rank=1)"].to_numpy())


def test_why_they_differ_is_computed_from_the_comparators(report):
    """The comparator offset of each source, recomputed here from the arm table the fit used (arms.csv:
    which comparators each source's MSC arms met) and the league table (each comparator's effect against
    placebo), must equal the one printed; and the sentence quotes it."""
    beside = _csv(report / "network_vs_pooled.csv").set_index("source")
    res = load(report / "result.nc")
    league = _csv(report / "league.csv")
    vs_ref = league[league["comparator"] == "placebo"].set_index("treatment")["mean"].to_dict()
    vs_ref["placebo"] = 0.0
    rows = res.effects
    for s, r in beside.iterrows():
        pairs = []
        for _, g in rows.groupby("nma_trial"):
            k = int((g["cell_source"].astype(str) == s).sum())
            comps = g.loc[g["cell_source"].isna() | (g["cell_source"].astype(str).str.strip() == ""), "nma_node"]
            pairs += [c for _ in range(k) for c in comps]
        assert len(pairs) == r["n_vs_reference"] + r["n_vs_active"]
        # the league means and the offset come from the same draws: equal to rounding of the CSV
        assert r["comparator_offset"] == pytest.approx(np.mean([vs_ref[c] for c in pairs]), abs=1e-9)
        assert r["residual"] == pytest.approx(r["pooled_mean"] - (r["network_mean"] - r["comparator_offset"]))
        assert f"offset {r['comparator_offset']:.1f}" in r["why"]
    # the pooled P(best) are from the pooled fit's ranking, written beside
    pooled = _csv(report / "pooled_ranking.csv").set_index("source")
    assert beside["pooled_p_best"].to_numpy() == pytest.approx(pooled.loc[beside.index, "p_best"].to_numpy())


def test_loo_and_ppc_tables_have_one_row_per_trial(report):
    res = load(report / "result.nc")
    loo, ppc = _csv(report / "loo.csv"), _csv(report / "ppc.csv")
    trials = sorted(res.effects["nma_trial"].unique())
    assert sorted(loo["trial"]) == trials and sorted(ppc["trial"]) == trials
    n_arms = res.effects.groupby("nma_trial").size()
    assert (loo.set_index("trial")["n_obs"].sort_index() == n_arms.sort_index()).all()


def test_fallback_to_the_pooled_model_with_its_reason(tmp_path, capsys):
    """2 chains x 20 draws cannot pass the network's checks: the main job says why in one line and runs the
    pooled job (whose diagnostics fail too at these settings: exit 3, and the report is the pooled one)."""
    code = main(["analyze", "--out", str(tmp_path / "r"), "--quiet", "--draws", "20", "--tune", "20", "--chains", "2",
                 "--refits", "none"])
    assert code == 3
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("The network model cannot be used")]
    assert len(line) == 1 and "sampling problems in the network fit" in line[0]
    assert line[0].endswith("falling back to the pooled model source_hierarchical.")
    assert load(tmp_path / "r" / "result.nc").provenance["model"] == "source_hierarchical"


# -- the pooled job ----------------------------------------------------------------------------------
def test_pooled_job_has_no_divergences_and_converges(pooled_report):
    diag = pd.read_csv(pooled_report / "diagnostics.csv", comment="#", index_col=0)
    res = load(pooled_report / "result.nc")
    assert res.diagnostics().attrs["divergences"] == 0
    assert diag["r_hat"].max() <= 1.01 and diag["ess_bulk"].min() >= 400


def test_pooled_report_folder_and_simulated_banner(pooled_report):
    for name in ("summary.csv", "ranking.csv", "rank_probabilities.csv", "pairwise.csv", "claims.csv",
                 "priors.csv", "effects.csv", "excluded.csv", "diagnostics.csv"):
        first = (pooled_report / name).read_text().splitlines()[0]
        assert first.startswith("# SIMULATED"), name
    for name in ("forest.png", "rankogram.png", "source_densities.png", "result.nc"):
        assert (pooled_report / name).stat().st_size > 1000, name
    text = (pooled_report / "report.txt").read_text()
    assert text.splitlines()[0].startswith("SIMULATED")
    for piece in ("sigma_source       ~ HalfNormal(sigma=20)", "Diagnostics: 0 divergences",
                  "Ranking of cell sources", "P(best)", "SUCRA", "UC-MSC ranks first"):
        assert piece in text, piece


def test_pooled_provenance_in_saved_result(pooled_report):
    p = load(pooled_report / "result.nc").provenance
    assert p["simulated"] == 1 and p["seed"] == 20261126 and p["model"] == "source_hierarchical"
    assert p["outcome"] == "VAS" and float(p["time"]) == 6.0


def test_bad_prior_and_unknown_model_are_clear_errors(capsys):
    assert main(["analyze", "--prior", "tau=HalfNormal(scale=1)", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "HalfNormal has parameters sigma, not 'scale'" in captured.err
    assert "falling back" not in captured.out  # a wrong prior is the user's error for every model
    assert main(["analyze", "--model", "nope", "--quiet"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_effects_command_lists_left_out_rows(capsys):
    assert main(["effects", "--data", "bundled", "--measure", "SMD", "--outcome", "WOMAC_total"]) == 0
    text = capsys.readouterr().out
    assert "LamoEspinosa_2016" in text and "per-arm n not reported" in text
    assert "LamoEspinosa_2020" in text


def test_pooled_job_writes_report_html_with_refit_tables(pooled_report):
    """Issue 13: the pooled job's report.html has I^2, the prediction interval, P(benefit > MCID) with its
    source, Egger/Peters, the funnel plot, and the evidence-sensitivity and cumulative tables (quick refits)."""
    html = (pooled_report / "report.html").read_text()
    for piece in ("id='simulated-banner'", "id='i2-total'", "id='prediction-interval'", "id='p-mcid-overall'",
                  "Tubach", "id='egger-p'", "id='peters-p'", "id='funnel-plot'", "id='evidence-conclusions'",
                  "id='cumulative'", "id='pet-ranking'", "quick masked refits", "id='excluded'", "id='priors'"):
        assert piece in html, piece
    for name in ("heterogeneity.csv", "p_mcid.csv", "small_study.csv", "evidence_conclusions.csv", "cumulative.csv"):
        assert (pooled_report / name).read_text().startswith("# SIMULATED"), name
