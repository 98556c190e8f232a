"""Leave-one-trial-out influence: PSIS for every trial, refits only where Pareto k is high, one compiled model."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_koa as bk
from bayes_koa.analysis.checks import ParetoKWarning
from bayes_koa.inference import sampling
from bayes_koa.workflows import influence

pytestmark = pytest.mark.slow  # ~100 s on a cold compile cache; the default suite keeps tests/unit/test_checks.py's PSIS checks

PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}


@pytest.fixture(scope="module")
def with_outlier(eight_schools):
    # eight schools plus a ninth with a huge effect (80, se 10): its Pareto k exceeds 0.7 even for the
    # integrated LOO (tests/slow/test_checks_slow.py), the eight others stay below it
    table = pd.concat([eight_schools[["trial_id", "yi", "sei"]],
                       pd.DataFrame({"trial_id": ["Z"], "yi": [80.0], "sei": [10.0]})], ignore_index=True)
    return bk.fit(table, "random_effects", priors=PRIORS, seed=5, draws=500, tune=500, warn=False)


def test_refits_happen_only_for_the_high_k_trials(with_outlier, monkeypatch):
    calls = []
    real = influence._refit_without

    def counting(result, position, label):
        calls.append(label)
        return real(result, position, label)

    monkeypatch.setattr(influence, "_refit_without", counting)
    n_models = sampling.cache_size()
    table = influence.influence(with_outlier, refit_threshold_k=0.7)
    psis = table[table["method"] == "psis"].set_index("trial")
    high = sorted(psis.index[psis["pareto_k"] > 0.7])
    assert "Z" in high and len(high) < len(psis)  # the test means something: some trials are refitted, not all
    assert sorted(calls) == high
    assert sorted(table.loc[table["method"] == "refit", "trial"]) == high
    assert table.attrs["n_refits"] == len(high)
    # refits without one trial share one compiled model (same size, neutral labels)
    assert sampling.cache_size() - n_models <= 1


def test_no_threshold_no_refits(with_outlier, monkeypatch):
    monkeypatch.setattr(influence, "_refit_without", lambda *a: pytest.fail("refitted"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)  # Z's high k is reported, asserted below
        table = influence.influence(with_outlier, refit_threshold_k=None)
    assert set(table["method"]) == {"psis"} and len(table) == 9
    assert np.isfinite(table["mu_mean"]).all()
