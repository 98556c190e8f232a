"""The main job, as a user runs it: `bayes-koa analyze` with its defaults."""

import pandas as pd
import pytest

from bayes_koa.cli import main
from bayes_koa.api.result import load


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["analyze", "--out", str(out), "--quiet"]) == 0
    return out


def test_main_job_has_no_divergences_and_converges(report):
    diag = pd.read_csv(report / "diagnostics.csv", comment="#", index_col=0)
    res = load(report / "result.nc")
    assert res.diagnostics().attrs["divergences"] == 0
    assert diag["r_hat"].max() <= 1.01 and diag["ess_bulk"].min() >= 400


def test_report_folder_and_simulated_banner(report):
    for name in ("summary.csv", "ranking.csv", "rank_probabilities.csv", "pairwise.csv", "claims.csv",
                 "priors.csv", "effects.csv", "excluded.csv", "diagnostics.csv"):
        first = (report / name).read_text().splitlines()[0]
        assert first.startswith("# SIMULATED"), name
    for name in ("forest.png", "rankogram.png", "source_densities.png", "result.nc"):
        assert (report / name).stat().st_size > 1000, name
    text = (report / "report.txt").read_text()
    assert text.splitlines()[0].startswith("SIMULATED")
    for piece in ("sigma_source       ~ HalfNormal(sigma=20)", "Diagnostics: 0 divergences",
                  "Ranking of cell sources", "P(best)", "SUCRA", "UC-MSC ranks first"):
        assert piece in text, piece


def test_ranking_probabilities_are_consistent(report):
    rank = pd.read_csv(report / "ranking.csv", comment="#")
    probs = rank[[c for c in rank.columns if c.startswith("P(rank=") and not c.endswith("_mcse")]]
    # each source has some rank, and each rank is held by one source, in every draw
    assert probs.sum(axis=1).to_numpy() == pytest.approx(1.0)
    assert probs.sum(axis=0).to_numpy() == pytest.approx(1.0)
    assert rank["p_best"].to_numpy() == pytest.approx(rank["P(rank=1)"].to_numpy())


def test_provenance_in_saved_result(report):
    p = load(report / "result.nc").provenance
    assert p["simulated"] == 1 and p["seed"] == 20261126 and p["model"] == "source_hierarchical"
    assert p["outcome"] == "VAS" and float(p["time"]) == 6.0


def test_bad_prior_and_unknown_model_are_clear_errors(capsys):
    assert main(["analyze", "--prior", "tau=HalfNormal(scale=1)", "--quiet"]) == 2
    assert "HalfNormal has parameters sigma, not 'scale'" in capsys.readouterr().err
    assert main(["analyze", "--model", "nope", "--quiet"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_effects_command_lists_left_out_rows(capsys):
    assert main(["effects", "--data", "bundled", "--measure", "SMD", "--outcome", "WOMAC_total"]) == 0
    text = capsys.readouterr().out
    assert "LamoEspinosa_2016" in text and "per-arm n not reported" in text
    assert "LamoEspinosa_2020" in text


def test_main_job_writes_report_html_with_refit_tables(report):
    """Issue 13: the main job's report.html has I^2, the prediction interval, P(benefit > MCID) with its
    source, Egger/Peters, the funnel plot, and the evidence-sensitivity and cumulative tables (quick refits)."""
    html = (report / "report.html").read_text()
    for piece in ("id='simulated-banner'", "id='i2-total'", "id='prediction-interval'", "id='p-mcid-overall'",
                  "Tubach", "id='egger-p'", "id='peters-p'", "id='funnel-plot'", "id='evidence-conclusions'",
                  "id='cumulative'", "id='pet-ranking'", "quick masked refits", "id='excluded'", "id='priors'"):
        assert piece in html, piece
    for name in ("heterogeneity.csv", "p_mcid.csv", "small_study.csv", "evidence_conclusions.csv", "cumulative.csv"):
        assert (report / name).read_text().startswith("# SIMULATED"), name
