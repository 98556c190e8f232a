import re

import pytest

from .run import run_notebook, shown, shown_frame


@pytest.mark.notebook
def test_notebook_runs_and_shows_what_it_says(tmp_path):
    nb = run_notebook("01_msc_koa_meta_analysis.ipynb", tmp_path)

    # the safety section shows odds ratios (overall and per source), not only log odds ratios
    ae = shown(nb, "ae-summary")
    assert re.search(r"^odds_ratio\s", ae, re.M)
    assert {"source_odds_ratio[BM]", "source_odds_ratio[UC]", "source_odds_ratio[AD]"} <= set(re.findall(r"source_odds_ratio\[\w+\]", ae))

    # the ranking table: one row per source; P(best) sums to 1 and SUCRA = (K - mean rank) / (K - 1)
    # (Salanti 2011 / Rücker & Schwarzer 2015 identity), both within the table's rounding to 3 decimals
    rank = shown_frame(nb, "ranking").set_index("source")
    assert set(rank.index) == {"BM", "UC", "AD"}
    rank = rank.astype(float)
    k = len(rank)
    assert abs(rank["p_best"].sum() - 1.0) <= 3 * 0.0005
    for _, r in rank.iterrows():
        assert abs(r["sucra"] - (k - r["mean_rank"]) / (k - 1)) <= 0.0005 + 0.0005 / (k - 1)
        # the interval is of the per-draw scaled rank (K - rank) / (K - 1): attainable values only
        assert 0.0 <= r["sucra_lower"] <= r["sucra_upper"] <= 1.0
        assert {r["sucra_lower"], r["sucra_upper"]} <= {0.0, 0.5, 1.0}
        assert abs(r["p_best"] - r["P(rank=1)"]) <= 0.0005  # P(best) is P(rank = 1)
