"""Shared test fixtures. Reference data live in tests/reference/data (copies of ../shared/reference)."""

from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

REF = Path(__file__).parent / "reference" / "data"


@pytest.fixture(scope="session")
def eight_schools() -> pd.DataFrame:
    """Rubin (1981) / BDA3 Table 5.2, as an effect table bayes_koa.fit accepts."""
    df = pd.read_csv(REF / "eight_schools.csv")
    return df.rename(columns={"school": "trial_id", "y": "yi", "sigma": "sei"})
