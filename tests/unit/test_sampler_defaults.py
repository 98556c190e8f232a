"""Sampler settings per kind (chosen by benchmarks/sampler_settings.md) and the adaptive refit after divergences."""

import warnings

import pytest

import bayes_koa as bk
from bayes_koa.inference.diagnostics import SamplingWarning, diagnostics_flag
from bayes_koa.inference.sampling import DEFAULT_SETTINGS, default_settings, escalated_target_accept
from bayes_koa.kinds import load_spec

PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}
# Eight schools with a centred parameterisation is the textbook funnel (BDA3 sec. 5.5; Betancourt &
# Girolami 2015): at target_accept 0.8 it diverges for practically every seed.
FUNNEL = dict(priors={"mu": "Normal(mu=0, sigma=50)", "tau": "HalfCauchy(beta=25)"},
              structure={"parameterization": "centered"})


def test_escalation_rule():
    assert escalated_target_accept(0.8) == 0.99
    assert escalated_target_accept(0.9) == 0.99
    assert escalated_target_accept(0.99) == pytest.approx(0.995)
    assert escalated_target_accept(0.999) is None  # no room left: divergences are reported as they are


def test_kind_defaults_follow_the_measured_table():
    # benchmarks/sampler_settings.md: random effects best at 0.9 with 1000 + 1000; source_hierarchical
    # diverged below 0.99 in some seed, so it keeps 0.99 with 2000 + 2000
    re = default_settings(load_spec("random_effects", measure="MD"))
    assert (re["target_accept"], re["draws"], re["tune"]) == (0.9, 1000, 1000)
    sh = default_settings(load_spec("source_hierarchical", measure="MD"))
    assert (sh["target_accept"], sh["draws"], sh["tune"]) == (0.99, 2000, 2000)
    # a structure nobody measured keeps the cautious package defaults
    centred = default_settings(load_spec("random_effects", measure="MD", parameterization="centered"))
    assert centred == DEFAULT_SETTINGS


def test_a_fit_records_the_settings_it_used_and_where_they_came_from(eight_schools):
    r = bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=11, draws=400, tune=400, warn=False)
    st = r.provenance["sampler_settings"]
    assert (st["draws"], st["tune"], st["chains"], st["target_accept"]) == (400, 400, 4, 0.9)
    assert st["from"] == {"draws": "argument", "tune": "argument", "chains": "package default",
                          "target_accept": "kind default"}
    assert st["adaptive_refit"]["refit"] is False
    assert st["adaptive_refit"]["divergences"] == int(r.dt["sample_stats"]["diverging"].sum())
    assert diagnostics_flag(r.diagnostics())["adaptive_refit"] is False


def test_divergences_trigger_one_recorded_refit_at_higher_target_accept(eight_schools):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # the refit may keep a few divergences: asserted below
        r = bk.fit(eight_schools, "random_effects", seed=3, draws=400, tune=400, target_accept=0.8, **FUNNEL)
        plain = bk.fit(eight_schools, "random_effects", seed=3, draws=400, tune=400, target_accept=0.8,
                       adapt=False, **FUNNEL)
    rec = r.provenance["sampler_settings"]["adaptive_refit"]
    first = int(plain.dt["sample_stats"]["diverging"].sum())
    assert first > 0, "the funnel must diverge at 0.8 for this test to mean anything"
    # same seed and settings: the first fit of the adaptive run is exactly the non-adaptive fit
    assert rec["refit"] is True and rec["target_accept"] == 0.8 and rec["divergences"] == first
    assert rec["refit_target_accept"] == 0.99
    assert r.provenance["sampler_settings"]["target_accept"] == 0.99
    assert r.provenance["sampler_settings"]["from"]["target_accept"] == "adaptive refit"
    kept = int(r.dt["sample_stats"]["diverging"].sum())
    assert rec["refit_divergences"] == kept and kept < first
    diag = r.diagnostics()
    assert diagnostics_flag(diag)["adaptive_refit"] is True
    assert any(f"had {first} divergent transitions" in n for n in diag.attrs["notes"])
    # without adaptation nothing is refitted and the divergences stay a problem
    assert plain.provenance["sampler_settings"]["adaptive_refit"]["refit"] is False
    assert any("divergent" in p for p in plain.diagnostics().attrs["problems"])


def test_safety_defaults_follow_its_measurement():
    # benchmarks/bench_safety_settings.py (RESULTS.md): 0.99 with tune 1000 and 1500 draws, no divergence and
    # R-hat <= 1.008 in 5 seeds; a structure nobody measured (plain random-effects odds ratio) keeps the defaults
    st = default_settings(load_spec("safety", measure="logOR"))
    assert (st["target_accept"], st["tune"], st["draws"]) == (0.99, 1000, 1500)
    assert default_settings(load_spec("safety", measure="logOR", levels=[])) == DEFAULT_SETTINGS
