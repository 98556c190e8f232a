"""Notebook 05 (design study): it runs, and it shows what it says it shows."""

import re
import time

import pytest

from .run import run_notebook


def _text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            parts.append(o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _cell(nb, needle: str):
    hits = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(hits) == 1, needle
    return hits[0]


@pytest.mark.notebook
def test_notebook_05_shows_the_study(tmp_path):
    t0 = time.time()
    nb = run_notebook("05_design_study.ipynb", tmp_path)
    seconds = time.time() - t0
    # the small study: three scenarios (0, 1, 2 added UC trials), each with P(correct top rank) and
    # a Clopper-Pearson interval that contains it, out of 8 meta-analyses (BAYES_KOA_FAST)
    lines = re.findall(r"P\(correct top rank\) \| (.+): ([\d.]+) \[([\d.]+), ([\d.]+)\] \(Clopper-Pearson 95%, (\d+) "
                       r"meta-analyses\)", _text(_cell(nb, "for r in table.itertuples()")))
    assert [name for name, *_ in lines] == ["published", "published + UC vs placebo (n=50/arm)",
                                            "published + UC vs placebo (n=50/arm) x 2"]
    for _, p, lo, hi, n in lines:
        assert 0 <= float(lo) <= float(p) <= float(hi) <= 1 and int(n) == 8
    table = _text(_cell(nb, "table = kd.summary(study)"))
    assert "p_top_correct" in table and "coverage" in table
    # the plot is shown
    plot = _cell(nb, "kd.plot_power(")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)
    # the value of the next trial: ranked candidates, the base design's P and the target verdict
    add = _text(_cell(nb, "kd.compare_additions("))
    assert "SIMULATED design study" in add and "Base design: P(correct top rank) =" in add
    for cand in ("UC vs placebo", "AD vs placebo", "BM vs HA"):
        assert cand in add
    assert ("Smallest addition reaching 0.9" in add) or ("No candidate reaches 0.9" in add)
    # a design without UC trials: UC reported as not estimable, not ranked
    no_uc = _text(_cell(nb, "no_uc = kd.design_study("))
    assert "note: published: UC has no trial in the design: not estimable (NaN), not ranked" in no_uc
    assert re.search(r"UC\s+False\s+not estimable", no_uc)
    print(f"notebook 05 executed in {seconds:.0f} s")
