import re

import pytest

from .run import run_notebook, shown


@pytest.mark.notebook
def test_notebook_runs_and_shows_what_it_says(tmp_path):
    nb = run_notebook("01_msc_koa_meta_analysis.ipynb", tmp_path)

    # the safety section shows odds ratios (overall and per source), not only log odds ratios
    ae = shown(nb, "ae-summary")
    assert re.search(r"^odds_ratio\s", ae, re.M)
    assert {"source_odds_ratio[BM]", "source_odds_ratio[UC]", "source_odds_ratio[AD]"} <= set(re.findall(r"source_odds_ratio\[\w+\]", ae))

    # the ranking table: one row per source; P(best) sums to 1 and SUCRA = (K - mean rank) / (K - 1)
    # (Salanti 2011 / Rücker & Schwarzer 2015 identity), both within the table's rounding to 3 decimals
    rows = [line.split() for line in shown(nb, "ranking").splitlines()[1:] if line.strip()]
    table = {r[1]: [float(x) for x in r[2:]] for r in rows}
    assert set(table) == {"BM", "UC", "AD"}
    k = len(table)
    assert abs(sum(v[1] for v in table.values()) - 1.0) <= 3 * 0.0005
    for mean_rank, p_best, sucra, lo, hi, *p_rank in table.values():
        assert abs(sucra - (k - mean_rank) / (k - 1)) <= 0.0005 + 0.0005 / (k - 1)
        assert 0.0 <= lo <= sucra <= hi <= 1.0
        assert abs(p_best - p_rank[0]) <= 0.0005  # P(best) is P(rank = 1)
