"""Design studies with real fits (slow): calibration of the 95% intervals on the model's own truth,
identical results on 1 and 2 workers (and after a worker is killed), a killed study resumed from
its store, padding, and the value of added trials."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from bayes_koa.koa import design as kd

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHORT = {"draws": 300, "tune": 300}


def _two_arm(trials):
    """The bundled design with each trial cut to its first MSC arm and its first control arm, so that
    every trial gives one comparison: the design the model assumes (one effect per row). Only the
    trials that are simulated (bayes_koa.simulation.select_design) are kept."""
    trials = kd.select_design(trials)[0]
    keep = []
    for _, sub in trials.groupby("trial_id", sort=False):
        for role in ("msc", "control"):
            arms = sub[sub["arm_role"] == role]
            if len(arms):
                keep.append(arms.index[0])
    return trials.loc[keep].reset_index(drop=True)


def _strip(ds):
    return ds.drop_vars("seconds").drop_attrs()


def test_intervals_are_calibrated_on_the_models_own_truth():
    base = kd._design_frame(None)[0]
    # the data come from the model itself: one comparison per trial, trial effects Normal(source
    # mean, tau), and source means drawn per data set from Normal(mu, sigma_source), with the stated
    # mu = -0.66 (mean of truth.json's source means), tau = 0.25 and sigma_source = 0.20 (truth.json's
    # sigma_source_implied, the SD of its three source means); hyperparameters fixed, not drawn
    sc = kd.Scenario(name="model's own truth", between_source_sd=0.2)
    ds = kd.design_study(design=_two_arm(base), scenarios=[sc], n_sims=150, seed=2026, workers=2, progress=False)
    assert int(ds["done"].sum()) == 150 and not bool(ds["failed"].any())
    assert float(ds["healthy"].mean()) >= 0.75, float(ds["healthy"].mean())
    n = 150
    # each source's 150 intervals are independent across data sets: with true coverage 0.95 the count
    # is Binomial(150, 0.95), and falls outside its two-sided 99.9% region once in a thousand runs
    # per source (132 to 149 of 150). Power: a true coverage of 0.85 (UC's at the fixed published
    # truth on the real design, where 6 of its comparisons come from 2 trials) is caught 82% of the
    # time, one of 0.80 more than 99% of the time
    lo, hi = stats.binom.ppf([0.0005, 0.9995], n, 0.95)
    assert 1 - stats.binom.cdf(lo - 1, n, 0.80) < 0.01
    for s in kd.SOURCES:
        hits = int(ds["covered"].sel(source=s).sum())
        assert lo <= hits <= hi, (s, hits, (lo, hi), kd.by_source(ds).to_string())
    # the same for tau (one interval per data set)
    hits = int(ds["tau_covered"].sum())
    assert lo <= hits <= hi, ("tau", hits)


def test_same_results_on_one_and_two_workers_and_after_a_worker_is_killed(tmp_path):
    scs = kd.scenarios_adding("UC", "placebo", 60, counts=(0, 1))
    one = kd.design_study(scenarios=scs, n_sims=4, seed=9, workers=1, sampler=SHORT, progress=False)
    two = kd.design_study(scenarios=scs, n_sims=4, seed=9, workers=2, sampler=SHORT, progress=False)
    xr.testing.assert_identical(_strip(one), _strip(two))
    assert one.attrs["workers"] == 1 and two.attrs["workers"] == 2
    killed = []

    def kill_one_worker(done, total, record):
        # after the second fit, kill the process that made it (a worker of this test's own cluster)
        if done == 2 and not killed:
            pid = int(record.attrs["worker"].rsplit(":", 1)[1])
            assert pid != os.getpid()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    again = kd.design_study(scenarios=scs, n_sims=4, seed=9, workers=2, sampler=SHORT, store=tmp_path / "s",
                            progress=kill_one_worker)
    assert killed and again.attrs["lost_fits"] == 0 and bool(again["done"].all())
    assert len(list((tmp_path / "s").glob("fits/*/*.nc"))) == 8
    xr.testing.assert_identical(_strip(again), _strip(one))


def test_killed_study_resumes_from_its_store(tmp_path):
    out = tmp_path / "out"
    toml = tmp_path / "s.toml"
    toml.write_text('[study]\ndraws = 300\ntune = 300\nseed = 5\n\n[[scenario]]\nname = "as is"\n\n'
                    '[[scenario]]\nname = "+1 AD"\nadded = [ { source = "AD", comparator = "HA", n = 40 } ]\n')
    cmd = [sys.executable, "-c", "import sys; from bayes_koa.cli_design import main; sys.exit(main(sys.argv[1:]))",
           "design", "--scenarios", str(toml), "--n-sims", "12", "--workers", "2", "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # its own session, so the driver, its scheduler and both worker processes are killed together
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    fits = out / "store" / "fits"
    t0 = time.time()
    try:
        while len(list(fits.glob("*/*.nc"))) < 6:
            assert proc.poll() is None, "the study ended before it could be killed"
            assert time.time() - t0 < 600
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stored = {p: p.stat().st_mtime_ns for p in fits.glob("*/*.nc")}
    assert 6 <= len(stored) < 24
    scs, st = kd.read_scenarios(toml)
    ds = kd.design_study(scenarios=scs, n_sims=12, seed=5, workers=2, sampler=SHORT, store=out / "store",
                         progress=False)
    # every stored fit was read, not refitted (its file is untouched), and only the rest was fitted
    assert ds.attrs["reused_fits"] == len(stored) and ds.attrs["new_fits"] == 24 - len(stored)
    assert all(p.stat().st_mtime_ns == m for p, m in stored.items())
    assert bool(ds["done"].all()) and len(list(fits.glob("*/*.nc"))) == 24
    # and the resumed study equals one run in a single go
    fresh = kd.design_study(scenarios=scs, n_sims=12, seed=5, workers=2, sampler=SHORT, progress=False)
    xr.testing.assert_identical(_strip(ds), _strip(fresh))


def test_added_uc_trials_narrow_the_uc_interval_and_help_the_ranking():
    cands = [("UC", "placebo", 30), ("UC", "placebo", 150), [("UC", "placebo", 150)] * 3]
    res = kd.compare_additions(cands, n_sims=40, seed=3, workers=2, target=0.9, progress=False)
    t = res.table.set_index("candidate")
    small, big1, big3 = (kd._added_name("base", kd._candidate(c)) for c in cands)
    assert set(t.index) == {small, big1, big3}
    # more information about UC (the truly best source, 2 trials in the real design) must narrow its
    # interval, monotonically in the number of patients added (paired data: the base trials are the
    # same in every scenario of a sim)
    assert 0 < t.loc[small, "shrinkage_best"] < t.loc[big1, "shrinkage_best"] < t.loc[big3, "shrinkage_best"]
    # three large UC trials raise P(correct top rank): the paired gain is more than 2 of its SEs
    assert t.loc[big3, "gain"] > 2 * t.loc[big3, "gain_se"], t
    assert res.smallest is None or res.smallest["p_top_correct"] >= 0.9
    assert "Base design" in res.note


def test_padding_leaves_the_posterior_unchanged():
    from bayes_koa.inference.sampling import sample_spec
    from bayes_koa.kinds import kind_of, prepare
    from bayes_koa.util.draws import mcse_mean

    base = kd._design_frame(None)[0]
    plan = kd._make_plan(kd.Scenario(), base, "fast")
    spec = kd._load_study_spec("source_hierarchical", None)
    design, _ = prepare(spec, kd._draw_effects(plan, 3), outcome="VAS", time=6.0)
    padded = kd._pad(design, 40)
    assert len(design.y) == 38 and padded.trial[-1] == "slot_039" and padded.se[-1] == kd.PAD_SE
    kw = dict(draws=1000, tune=1000, chains=2, extra_groups=False, cores=1)
    group = kind_of(spec).roles(spec).group  # the source means
    a = sample_spec(spec, design, seed=1, **kw)["posterior"][group]
    b = sample_spec(spec, padded, seed=2, **kw)["posterior"][group].assign_coords(source=a["source"].values)
    # the padded rows change the log posterior by < 1e-5 (kd._pad), so the two posterior means differ
    # only by Monte Carlo error: within 4 combined MC SEs
    diff = abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw")))
    tol = 4 * np.sqrt(mcse_mean(a) ** 2 + mcse_mean(b) ** 2)
    assert bool((diff < tol).all()), (diff.values, tol.values)
