"""Small real fits (eight schools, 4 x 500 draws; a few seconds each once compiled)."""

import json
import warnings

import numpy as np
import pytest

import bayes_koa as bk
from bayes_koa.inference.diagnostics import SamplingWarning
from bayes_koa.inference.sampling import clear_cache

PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}


@pytest.fixture(scope="module")
def result(eight_schools):
    return bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=11, draws=500, tune=500)


def test_groups_dims_and_provenance(result, eight_schools):
    dt = result.dt
    for g in ("posterior", "sample_stats", "prior", "observed_data"):
        assert g in dt.children, g
    # log_likelihood and log_prior are computed when first asked for (tests/unit/test_lazy_groups.py)
    assert dt["posterior"]["theta"].dims == ("chain", "draw", "trial")
    assert list(dt["posterior"]["trial"].values) == list(eight_schools["trial_id"])
    p = result.provenance
    assert p["model"] == "random_effects" and p["seed"] == 11
    assert p["priors"]["tau"] == {"prior": "HalfNormal(sigma=10)", "from": "argument"}
    assert len(p["data_sha256"]) == 64 and len(p["model_file_sha256"]) == 64
    assert {"pymc", "arviz", "nutpie", "python"} <= set(p["versions"])


def test_summary_shows_priors_and_prediction(result):
    s = result.summary()
    assert {"mu", "tau", "theta_new", "theta[A]"} <= set(s.index)
    # a new school's effect is more uncertain than the mean effect: sd(theta_new)^2 = sd(mu)^2 + E[tau^2]
    post = result.dt["posterior"]
    expected = float(post["mu"].var() + (post["tau"] ** 2).mean())
    # theta_new is one normal draw per posterior draw, so its variance carries Monte Carlo error of
    # about sqrt(2/n_eff) ~ 3% relative for ~2000 effective draws; 10% is > 3 such SEs
    assert s.loc["theta_new", "sd"] ** 2 == pytest.approx(expected, rel=0.10)
    text = repr(result)
    assert "tau ~ HalfNormal(sigma=10) [argument]" in text and "diagnostics:" in text


def test_save_load_round_trip(result, tmp_path):
    path = result.save(tmp_path / "r.nc")
    back = bk.load(path)
    np.testing.assert_array_equal(back.dt["posterior"]["mu"].values, result.dt["posterior"]["mu"].values)
    assert back.provenance["priors"] == result.provenance["priors"]
    assert back.provenance["data_sha256"] == result.provenance["data_sha256"]
    assert back.spec.prior_dict["tau"].origin == "argument"
    assert list(back.effects["trial_id"]) == list(result.effects["trial_id"])
    assert back.summary().loc["mu", "mean"] == pytest.approx(result.summary().loc["mu", "mean"])


def test_same_seed_same_draws(eight_schools, result):
    again = bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=11, draws=500, tune=500)
    np.testing.assert_array_equal(again.dt["posterior"]["tau"].values, result.dt["posterior"]["tau"].values)


def test_cached_model_really_swaps_priors(eight_schools):
    """A refit on the cached compiled model equals a fit compiled from scratch under the new prior."""
    clear_cache()
    kw = dict(seed=5, draws=300, tune=300, warn=False)  # short runs: only equality of draws matters here
    bk.fit(eight_schools, "random_effects", priors={**PRIORS, "tau": "HalfNormal(sigma=1)"}, **kw)
    swapped = bk.fit(eight_schools, "random_effects", priors={**PRIORS, "tau": "HalfNormal(sigma=30)"}, **kw)
    clear_cache()
    fresh = bk.fit(eight_schools, "random_effects", priors={**PRIORS, "tau": "HalfNormal(sigma=30)"}, **kw)
    np.testing.assert_array_equal(swapped.dt["posterior"]["tau"].values, fresh.dt["posterior"]["tau"].values)


def test_sampling_problems_are_reported(eight_schools):
    # 4 chains x 30 draws cannot reach the 400 effective draws the diagnostics ask for
    with pytest.warns(SamplingWarning, match="ESS below 400"):
        r = bk.fit(eight_schools, "random_effects", priors=PRIORS, seed=2, draws=30, tune=30)
    assert r.diagnostics().attrs["problems"]
    assert "PROBLEMS" in repr(r)


def test_prior_contraction_matches_the_conjugate_closed_form():
    """Fixed effect, mu ~ N(0, s0), one trial y ~ N(mu, se): contraction = s0^2 / (s0^2 + se^2)."""
    import pandas as pd

    s0, se = 2.0, 1.0
    table = pd.DataFrame({"trial_id": ["T"], "yi": [0.5], "sei": [se]})
    r = bk.fit(table, "fixed_effect", priors={"mu": f"Normal(mu=0, sigma={s0})"}, seed=3,
               draws=2000, tune=500)
    c = r.contraction().loc["mu", "contraction"]
    # the variance ratio (true value 0.2) is estimated from 8000 posterior and 1000 prior draws: its
    # relative SE is about sqrt(2/8000 + 2/1000) = 4.7%, i.e. 0.0095 absolute; 0.04 is 4 such SEs
    assert c == pytest.approx(s0**2 / (s0**2 + se**2), abs=0.04)
    assert not r.contraction().loc["mu", "weak"]
