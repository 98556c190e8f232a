"""`bayes-koa claims`: every claim of the 2023 paper gets a number and its model gets a check (slow)."""

import math

import pandas as pd
import pytest

from bayes_koa.cli import main

pytestmark = pytest.mark.slow


def test_every_claim_has_a_number_and_a_model_check(tmp_path):
    assert main(["claims", "--out", str(tmp_path)]) == 0  # the package's default sampler settings
    claims = pd.read_csv(tmp_path / "claims_all_models.csv", comment="#")
    checks = pd.read_csv(tmp_path / "model_checks.csv", comment="#")
    assert len(claims) == 7  # six efficacy claims and the safety claim
    assert all(0.0 <= p <= 1.0 and not math.isnan(p) for p in claims["probability"])
    assert set(claims["model"]) <= set(checks["model"])
    assert (checks["divergences"] == 0).all() and (checks["max R-hat"] <= 1.01).all()
    # SIMULATED truth (truth.json): UC is the best source and MSC beat control at month 3, so both
    # claims must come out likely; the data are strong enough for P > 0.9 (0.97 and 0.99 when run)
    by = claims.set_index("claim_id")["probability"]
    assert by["uc_first"] > 0.9 and by["better_at_month_3"] > 0.9
    assert (tmp_path / "claims_report.txt").read_text().startswith("SIMULATED")
