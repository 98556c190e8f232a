"""Notebook 04 (network meta-analysis): it runs, and it shows what it says it shows."""

import re
import time

import numpy as np
import pandas as pd
import pytest

from .run import run_notebook, shown


@pytest.mark.notebook
def test_notebook_04_shows_the_network_analysis(tmp_path):
    t0 = time.time()
    nb = run_notebook("04_network_meta_analysis.ipynb", tmp_path)
    seconds = time.time() - t0
    arms = shown(nb, "arms")
    assert "SIMULATED: True" in arms and "placebo" in arms and "HA" in arms
    assert "SIMULATED" in shown(nb, "fit")
    # the graph's nodes are the network's treatments; comparators and MSC cells both
    graph = shown(nb, "graph")
    n_nodes = int(re.search(r"SIMULATED network: (\d+) nodes", graph).group(1))
    assert n_nodes >= 6 and "BM autologous" in graph and "placebo" in graph
    # source effects vs placebo beside the stated truth (BM -0.45, UC -0.85, AD -0.68)
    src = shown(nb, "source-effects")
    assert "SIMULATED" in src
    for s, truth in (("BM", "-0.45"), ("UC", "-0.85"), ("AD", "-0.68")):
        assert re.search(rf"source_effect\[{s}\]\s+{truth}", src), src
    assert "d[HA, placebo]" in shown(nb, "basic") and "tau" in shown(nb, "basic")
    # three ranking levels, each with SUCRA and its interval; SUCRA inside its interval
    ranks = shown(nb, "ranks")
    for level in ("source", "origin", "treatment"):
        assert f"SIMULATED ranking ({level}):" in ranks
    for m in re.finditer(r"^\s*(\S.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", ranks, re.M):
        sucra, lo, hi = float(m.group(4)), float(m.group(5)), float(m.group(6))
        assert 0 <= lo <= sucra <= hi <= 1, m.group(0)
    # the league table is square over the nodes, its diagonal the node names
    league = shown(nb, "league")
    assert league.count("(") >= n_nodes * (n_nodes - 1)
    assert re.search(r"of \d+ pairs are informed only indirectly", shown(nb, "indirect"))
    inc = shown(nb, "inconsistency")
    assert "SIMULATED:" in inc and ("elpd_loo UME - consistency" in inc or "no loops" in inc)
    ext = shown(nb, "comparator-evidence")
    assert "0.34" in ext and "P(best), comparator_evidence" in ext
    pooled = shown(nb, "pooled")
    assert "network P(best)" in pooled and "pooled P(best)" in pooled
    # the main job (bayes-koa analyze, run by the notebook into tmp_path/main_report): the network is used, and
    # what the cell shows is what the report folder holds
    main = shown(nb, "main-job")
    assert "SIMULATED: True | exit code 0 | main job model: network" in main
    assert "The network model cannot be used" not in main and "Why they differ: The network" in main
    beside = pd.read_csv(tmp_path / "main_report" / "network_vs_pooled.csv", comment="#")
    for r in beside.itertuples():
        row = re.search(rf"^\s*{r.source}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s", main, re.M)
        assert row, r.source
        shown_vals = [float(x) for x in row.groups()]
        # rounded as the printed table rounds (pandas/NumPy: scale, then round half to even, so 0.0615 -> 0.062;
        # Python's round() rounds the binary value 0.06149999... -> 0.061): the same number, shown at 3 decimals
        want = np.round([r.network_mean, r.network_p_best, r.pooled_mean, r.pooled_p_best], 3)
        assert shown_vals == pytest.approx(list(want), abs=1e-9)
        # the decomposition the sentence states: pooled = network - comparator offset + residual
        assert r.pooled_mean == pytest.approx(r.network_mean - r.comparator_offset + r.residual, abs=1e-9)
        assert f"{r.source}: " in main and f"offset {r.comparator_offset:.1f}" in main
    for name in ("report.html", "summary.csv", "ranking.csv", "league.csv", "inconsistency.csv", "network.png",
                 "result.nc", "report.txt", "loo.csv", "ppc.csv"):
        assert name in main, name
    print(f"notebook 04 executed in {seconds:.0f} s")
