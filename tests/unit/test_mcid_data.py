"""bayes_koa/koa/data/mcid.csv: every value has its source; values are those of the cited abstracts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

MCID = Path(__file__).resolve().parents[2] / "bayes_koa" / "koa" / "data" / "mcid.csv"


def test_every_row_has_a_source_and_citation():
    d = pd.read_csv(MCID)
    assert list(d.columns) == ["outcome", "scale_range", "mcid", "unit", "source", "citation", "notes"]
    for col in ("outcome", "scale_range", "unit", "source", "citation", "notes"):
        assert d[col].fillna("").str.strip().ne("").all(), col
    assert d["mcid"].notna().all()
    # improvements are stored with the package's orientation: negative = benefit
    assert (d["mcid"] < 0).all()
    assert set(d["outcome"]) <= {"VAS", "WOMAC_pain", "WOMAC_function", "WOMAC_stiffness", "WOMAC_total"}


def test_values_match_the_cited_abstracts():
    """Tubach et al. 2005 (Ann Rheum Dis 64:29-33) knee OA MCII: pain -19.9 mm (-40.8%), WOMAC function
    -9.1 (-26.0%); J Rheumatol 2000;27:2635-41 MPCI: WOMAC pain 9.7, function 9.3, stiffness 10.0 mm."""
    d = pd.read_csv(MCID)
    got = sorted(zip(d["outcome"], d["mcid"]))
    assert got == sorted([("VAS", -19.9), ("VAS", -40.8), ("WOMAC_function", -9.1), ("WOMAC_function", -26.0),
                          ("WOMAC_pain", -9.7), ("WOMAC_function", -9.3), ("WOMAC_stiffness", -10.0)])
    assert d["citation"].str.contains("Ann Rheum Dis 2005;64").sum() == 4
