"""Shared test fixtures. Reference data live in tests/reference/data (copies of ../shared/reference)."""

from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

REF = Path(__file__).parent / "reference" / "data"


@pytest.fixture(scope="session", autouse=True)
def _no_fit_cache():
    """Tests sample: the fit cache (bayes_koa.inference.fit_cache) would serve a test the draws of an earlier
    run and skip what it checks (interrupts, refit counts, warnings). tests/unit/test_fit_cache.py switches it
    on for itself, in a temporary folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BAYES_KOA_FIT_CACHE", "off")
        yield


@pytest.fixture(scope="session")
def eight_schools() -> pd.DataFrame:
    """Rubin (1981) / BDA3 Table 5.2, as an effect table bayes_koa.fit accepts."""
    df = pd.read_csv(REF / "eight_schools.csv")
    return df.rename(columns={"school": "trial_id", "y": "yi", "sigma": "sei"})
