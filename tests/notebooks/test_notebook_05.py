"""Notebook 05 (design study): it runs, and it shows what it says it shows."""

import re
import time

import pytest

from .run import run_notebook, shown


@pytest.mark.notebook
def test_notebook_05_shows_the_study(tmp_path):
    t0 = time.time()
    nb = run_notebook("05_design_study.ipynb", tmp_path)
    seconds = time.time() - t0
    # the stated truth it says it uses (truth.json's source means, tau 0.25)
    truth = shown(nb, "truth")
    assert "'BM': -0.45, 'UC': -0.85, 'AD': -0.68" in truth and "tau=0.25" in truth
    # three scenarios (0, 1, 2 added UC trials), each with P(correct top rank) and a Clopper-Pearson
    # interval that contains it, out of 6 meta-analyses (BAYES_KOA_FAST)
    lines = re.findall(r"P\(correct top rank\) \| (.+): ([\d.]+) \[([\d.]+), ([\d.]+)\] \(Clopper-Pearson 95%, "
                       r"(\d+) meta-analyses\)", shown(nb, "p-top"))
    assert [name for name, *_ in lines] == ["published", "published + UC vs placebo (n=50/arm)",
                                            "published + 2 x UC vs placebo (n=50/arm)"]
    for _, p, lo, hi, n in lines:
        assert 0 <= float(lo) <= float(p) <= float(hi) <= 1 and int(n) == 6
    summary = shown(nb, "summary")
    assert "p_top_correct" in summary and "coverage" in summary and "width_UC" in summary
    # the plot shows those P(correct top rank) at 0, 100 and 200 added patients
    points = re.findall(r"\((\d+), ([\d.]+)\)", shown(nb, "power-plot"))
    assert [int(x) for x, _ in points] == [0, 100, 200]
    assert [y for _, y in points] == [p for _, p, *_ in lines]
    # the value of the next trial: the three candidates ranked, the base design's P, the verdict
    add = shown(nb, "additions")
    assert "SIMULATED design study" in add and "Base design: P(correct top rank) =" in add
    ranks = [ln.split()[0] for ln in add.splitlines() if re.match(r"\s*[123]\s+base \+", ln)]
    assert ranks == ["1", "2", "3"], add
    for cand in ("UC vs placebo", "AD vs placebo", "BM vs HA"):
        assert cand in add
    assert ("Smallest addition reaching 0.9" in add) or ("No candidate reaches 0.9" in add)
    # a design without UC trials: UC reported as not estimable, not ranked
    no_uc = shown(nb, "no-uc")
    assert "note: published: UC has no trial in the design: not estimable (NaN), not ranked" in no_uc
    assert re.search(r"UC\s+False\s+not estimable", no_uc)
    print(f"notebook 05 executed in {seconds:.0f} s")
