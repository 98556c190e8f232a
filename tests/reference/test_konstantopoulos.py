"""A published three-level data set through the generic core: studies within districts, any grouping column.

Data: dat.konstantopoulos2011 (R metadat 1.2-0; Konstantopoulos 2011, Research Synthesis Methods 2:61-76),
56 studies of modified school calendars in 11 districts, standardized mean differences (positive = better
achievement), copied into tests/reference/data/konstantopoulos2011.csv. Independent fit: brms 2.18 (R 4.2.2,
Stan 2.21), ``yi | se(sqrt(vi)) ~ 1 + (1 | district) + (1 | district:school)`` with Intercept ~ normal(0, 1)
and both SDs half-normal(0, 0.5), 4 chains x 4000 draws (tests/reference/r/brms_multilevel.R, results in
brms_multilevel.json). bayes_koa's ``source_hierarchical`` with ``group="district"`` is the same model:
mu = Intercept, sigma_source = sd(district), tau = sd(district:school), source_mean = district means.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_koa as bk

DATA = Path(__file__).parent / "data"
# 4 combined Monte Carlo SEs: for 14 compared quantities a false alarm has probability ~ 14 x 6e-5
Z = 4.0


@pytest.fixture(scope="module")
def fitted():
    df = pd.read_csv(DATA / "konstantopoulos2011.csv")
    df["trial_id"] = df["district"].astype(str) + "." + df["school"].astype(str)
    res = bk.fit(df, model="source_hierarchical", group="district", measure="SMD", lower_is_better=False,
                 priors={"mu": "Normal(mu=0, sigma=1)", "tau": "HalfNormal(sigma=0.5)",
                         "sigma_source": "HalfNormal(sigma=0.5)"},
                 seed=20261201, draws=4000, tune=2000, chains=4)
    return res, json.loads((DATA / "brms_multilevel.json").read_text())["three_level"]


def _close(ours_mean, ours_mcse, ref):
    tol = Z * np.hypot(ours_mcse, ref["mcse_mean"])
    assert abs(ours_mean - ref["mean"]) < tol, (ours_mean, ref["mean"], tol)


def test_sampler_health(fitted):
    res, _ = fitted
    d = res.diagnostics()
    assert d.attrs["divergences"] <= 5 and (d["r_hat"] < 1.01).all()


def test_agrees_with_brms_under_matched_priors(fitted):
    res, ref = fitted
    s = res.summary(include_trials=False)
    _close(s.loc["mu", "mean"], s.loc["mu", "mcse_mean"], ref["intercept"])
    _close(s.loc["sigma_source", "mean"], s.loc["sigma_source", "mcse_mean"], ref["sd"]["sd_district__Intercept"])
    _close(s.loc["tau", "mean"], s.loc["tau", "mcse_mean"], ref["sd"]["sd_district:school__Intercept"])
    for row in ref["district_mean"]:
        key = f"source_mean[{row['district']}]"
        _close(s.loc[key, "mean"], s.loc[key, "mcse_mean"], row)


def test_generic_labels_order_and_direction(fitted):
    res, ref = fitted
    post = res.dt["posterior"]
    districts = [str(x) for x in post["district"].values]
    assert districts == sorted(districts, key=int)  # natural order: 11, 12, 18, ..., 108 (not '108' < '11')
    r = res.rank()
    means = {row["district"]: row["mean"] for row in ref["district_mean"]}
    # higher is better here: the district ranked first has one of the two largest brms means
    top = r.sort_values("mean_rank")["district"].iloc[0]
    assert top in sorted(means, key=means.get)[-2:]
    assert "positive = favours treatment" in res.plot_forest().axes[0].get_xlabel()
