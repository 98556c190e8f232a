"""Design studies: the Dask engine (seeds, stores, resume, failures) on closed-form fits, and the
knee-OA front end (data sets equal to simulate + effect_sizes, comparator effects, padding, sources
without trials, summaries, ranking of additions, scenario files, the CLI) on tiny studies."""

import math
import sys
import textwrap
import warnings

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from bayes_koa.koa import design as kd
from bayes_koa.workflows import design as wd

# the toy simulate/fit functions below go to worker processes by value (this module is not
# importable there)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

Z975 = stats.norm.ppf(0.975)


# ----------------------------------------------------------------------------- toy study
# y_1..n ~ Normal(theta, 1); the fit is the exact posterior under a flat prior, Normal(mean, 1/n),
# so its 95% interval covers theta with probability exactly 0.95.


def toy_simulate(scenario, seed):
    rng = np.random.default_rng(seed)
    return {"theta": scenario["theta"], "y": rng.normal(scenario["theta"], 1.0, scenario["n"]),
            "log": scenario.get("log"), "fail_sim": scenario.get("fail_at"), "name": scenario["name"],
            "seed": str(seed)}


def toy_fit(data, seed):
    y = data["y"]
    if data["fail_sim"] is not None and abs(y[0] - data["fail_sim"]) < 1e-12:
        raise RuntimeError("planned failure")
    m, se = float(y.mean()), 1.0 / math.sqrt(len(y))
    jitter = float(np.random.default_rng(seed).random())  # shows that the fit seed is passed
    out = {"est": m, "covered": abs(m - data["theta"]) < Z975 * se, "jitter": jitter,
           "bounds": xr.DataArray([m - Z975 * se, m + Z975 * se], dims="bound", coords={"bound": ["lo", "hi"]})}
    if data["log"]:
        with open(data["log"], "a") as fh:
            fh.write(f"{data['name']},{data['seed']}\n")
    return out


def _toy(n=16, log=None, fail_at=None):
    return [{"name": "small", "theta": 0.3, "n": n, "log": log, "fail_at": fail_at},
            {"name": "large", "theta": -1.0, "n": 4 * n, "log": log, "fail_at": fail_at}]


@pytest.fixture(scope="module")
def client2():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def _strip(ds):
    return ds.drop_vars("seconds")


def test_seeds_are_spawned_from_the_study_seed():
    ss = np.random.SeedSequence(42)
    kids = ss.spawn(3)
    for i in range(3):
        grand = kids[i].spawn(5)
        for j in range(5):
            w = grand[j].generate_state(3, np.uint32)
            assert wd.study_seeds(42, i, j) == (int(w[0]) | int(w[1]) << 32, int(w[2]) >> 1)
    # paired: the seed of sim j is shared by every scenario, and differs between sims
    assert wd.study_seeds(42, 0, 3, paired=True) == wd.study_seeds(42, 2, 3, paired=True)
    assert wd.study_seeds(42, 0, 3, paired=True) != wd.study_seeds(42, 0, 4, paired=True)
    assert wd.study_seeds(42, 0, 3) != wd.study_seeds(42, 1, 3)


@pytest.mark.slow  # a 2-worker Dask cluster and dozens of fits; tests/slow/test_design_slow.py covers the same on the real design
def test_toy_study_values_coverage_and_worker_independence(client2):
    one = wd.run_study(toy_simulate, toy_fit, _toy(), n_sims=150, seed=7, workers=1, progress=False)
    two = wd.run_study(toy_simulate, toy_fit, _toy(), n_sims=150, seed=7, client=client2, progress=False)
    assert one.attrs["workers"] == 1 and two.attrs["workers"] == 2
    xr.testing.assert_identical(_strip(one).drop_attrs(), _strip(two).drop_attrs())
    # every value is the closed form on the data drawn from study_seeds (independent recomputation)
    for i, sc in enumerate(_toy()):
        for j in (0, 77, 149):
            s_seed, f_seed = wd.study_seeds(7, i, j)
            y = np.random.default_rng(s_seed).normal(sc["theta"], 1.0, sc["n"])
            assert float(one["est"].sel(scenario=sc["name"], sim=j)) == float(y.mean())
            assert float(one["jitter"].sel(scenario=sc["name"], sim=j)) == np.random.default_rng(f_seed).random()
    assert one["bounds"].dims == ("scenario", "sim", "bound")
    assert bool(one["done"].all()) and not bool(one["failed"].any())
    # 300 intervals with exact coverage 0.95: the count is Binomial(300, 0.95) (fits independent);
    # the two-sided 99.9% acceptance region fails a correct engine once in a thousand runs
    hits = int(one["covered"].sum())
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 300, 0.95)
    assert lo <= hits <= hi, hits


@pytest.mark.slow  # a 2-worker Dask cluster and dozens of fits; tests/slow/test_design_slow.py covers the same on the real design
def test_interrupted_study_resumes_without_refitting(tmp_path, client2, inproc):
    log = tmp_path / "fits.log"  # one line per finished fit (the log is part of the scenario)
    store = tmp_path / "store"
    reference = wd.run_study(toy_simulate, toy_fit, _toy(), n_sims=30, seed=3, client=inproc, progress=False)

    def stop_after_7(done, total, record):
        if done >= 7:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        wd.run_study(toy_simulate, toy_fit, _toy(log=str(log)), n_sims=30, seed=3, client=client2,
                     store=store, progress=stop_after_7)
    first = log.read_text().splitlines()
    stored = sorted(store.glob("fits/*/*.nc"))
    assert 7 <= len(stored) < 60
    assert not list(store.glob("fits/*/.*"))  # no half-written file left behind
    # a fit that finished after the interrupt is either stored or lost with its worker, never half
    done = wd.run_study(toy_simulate, toy_fit, _toy(log=str(log)), n_sims=30, seed=3, client=client2,
                        store=store, progress=False)
    assert done.attrs["reused_fits"] == len(stored)
    assert done.attrs["new_fits"] == 60 - len(stored)
    rerun = log.read_text().splitlines()[len(first):]
    assert len(rerun) == len(set(rerun)) == 60 - len(stored)     # each missing fit once
    recs = [wd._read_record(p) for p in stored]
    stored_keys = {f"{r.attrs['scenario']},{r.attrs['sim_seed']}" for r in recs}
    every = {f"{sc['name']},{wd.study_seeds(3, i, j)[0]}" for i, sc in enumerate(_toy()) for j in range(30)}
    assert len(stored_keys) == len(stored) and stored_keys <= every
    # no stored fit is fitted again, and the rerun fits exactly the rest
    assert stored_keys.isdisjoint(rerun) and stored_keys | set(rerun) == every
    # every stored fit was finished in the first run (a fit finished there but not stored, because
    # its worker stopped in between, is simply fitted again)
    assert stored_keys <= set(first)
    xr.testing.assert_identical(_strip(done).drop_attrs(), _strip(reference).drop_attrs())
    # a third run fits nothing
    again = wd.run_study(toy_simulate, toy_fit, _toy(log=str(log)), n_sims=30, seed=3, store=store,
                         progress=False)
    assert again.attrs["new_fits"] == 0 and len(log.read_text().splitlines()) == len(first) + len(rerun)
    xr.testing.assert_identical(_strip(again).drop_attrs(), _strip(reference).drop_attrs())
    loaded = wd.load_study(store)
    xr.testing.assert_identical(_strip(loaded).drop_attrs(), _strip(reference).drop_attrs())


def test_store_refuses_another_study_and_accepts_appended_scenarios(tmp_path, inproc):
    store = tmp_path / "s"
    scen = _toy()[:1]
    wd.run_study(toy_simulate, toy_fit, scen, n_sims=2, seed=1, client=inproc, store=store, progress=False,
                 settings={"draws": 10})
    with pytest.raises(wd.StudyStoreError, match="seed"):
        wd.run_study(toy_simulate, toy_fit, scen, n_sims=2, seed=2, client=inproc, store=store, progress=False,
                     settings={"draws": 10})
    with pytest.raises(wd.StudyStoreError, match="settings"):
        wd.run_study(toy_simulate, toy_fit, scen, n_sims=2, seed=1, client=inproc, store=store, progress=False,
                     settings={"draws": 20})
    changed = [{**scen[0], "theta": 0.4}]
    with pytest.raises(wd.StudyStoreError, match="content"):
        wd.run_study(toy_simulate, toy_fit, changed, n_sims=2, seed=1, client=inproc, store=store, progress=False,
                     settings={"draws": 10})
    more = wd.run_study(toy_simulate, toy_fit, _toy(), n_sims=3, seed=1, client=inproc, store=store,
                        progress=False, settings={"draws": 10})
    assert more.attrs["reused_fits"] == 2 and more.attrs["new_fits"] == 4


def test_a_failing_fit_is_stored_as_failed_and_not_retried(tmp_path, inproc):
    sc = _toy(log=str(tmp_path / "log"))[:1]
    s_seed, _ = wd.study_seeds(5, 0, 2)
    sc[0]["fail_at"] = float(np.random.default_rng(s_seed).normal(sc[0]["theta"], 1.0, sc[0]["n"])[0])
    store = tmp_path / "store"
    ds = wd.run_study(toy_simulate, toy_fit, sc, n_sims=4, seed=5, client=inproc, store=store, progress=False)
    assert ds["failed"].values.tolist() == [[False, False, True, False]]
    assert np.isnan(float(ds["est"].sel(sim=2).squeeze())) and np.isfinite(float(ds["est"].sel(sim=3).squeeze()))
    assert "planned failure" in ds.attrs["errors"] and ds.attrs["failed_fits"] == 1
    n_logged = len((tmp_path / "log").read_text().splitlines())
    again = wd.run_study(toy_simulate, toy_fit, sc, n_sims=4, seed=5, client=inproc, store=store, progress=False)
    assert again.attrs["new_fits"] == 0 and len((tmp_path / "log").read_text().splitlines()) == n_logged


def test_bad_metrics_are_refused():
    with pytest.raises(TypeError, match="no dims"):
        wd._as_dataset({"x": np.zeros(3)})
    with pytest.raises(ValueError, match="reserved"):
        wd._as_dataset({"sim": 1.0})
    with pytest.raises(TypeError, match="numbers"):
        wd._as_dataset({"x": xr.DataArray(np.array(["a"]), dims="k")})


# ----------------------------------------------------------------------------- KOA front end


@pytest.fixture(scope="module")
def base():
    return kd._design_frame(None)[0]


@pytest.fixture(scope="module")
def inproc():
    """An in-process cluster: its worker shares this process's compile cache (one compile)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                           silence_logs=40)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


TINY = {"draws": 300, "tune": 300}


def test_fast_data_sets_equal_simulate_plus_effect_sizes(base):
    sc = kd.Scenario(name="x", added=(kd.AddedTrial("UC", "placebo", 40), kd.AddedTrial("AD", "HA", 25)),
                     tau=0.4, truth={"sd_trial_time": 0.05})
    plan = kd._make_plan(sc, base, "fast")
    assert len(plan.template) == 40 and plan.n_slots == 40  # 38 comparisons of the real design + 2
    for seed in (0, 123456789012345):
        fast, ref = kd._draw_effects(plan, seed), kd._reference_effects(plan, seed)
        np.testing.assert_array_equal(fast["yi"].to_numpy(), ref["yi"].to_numpy())
        np.testing.assert_array_equal(fast["vi"].to_numpy(), ref["vi"].to_numpy())
    # the bundled truth on the bundled design: the shipped data's generator, seed by seed
    plan0 = kd._make_plan(kd.Scenario(truth={k: v for k, v in kd.DEFAULT_TRUTH.items() if k in kd.STUDY_TRUTH}),
                          base, "fast")
    np.testing.assert_array_equal(kd._draw_effects(plan0, 7)["yi"].to_numpy(),
                                  kd._reference_effects(plan0, 7)["yi"].to_numpy())


def test_truth_drawn_per_data_set(base):
    sc = kd.Scenario(between_source_sd=0.2)
    a, b = sc.draw_means(1), sc.draw_means(2)
    assert a == sc.draw_means(1) and a != b
    # mu is the mean of the stated means, -0.66; over 4000 data sets each source's mean is within
    # 4 SE (0.2 / sqrt(4000) = 0.0032) of it, and the sd within 4 SE (0.2 / sqrt(8000)) of 0.2
    draws = np.array([list(sc.draw_means(k).values()) for k in range(4000)])
    assert np.all(np.abs(draws.mean(0) + 0.66) < 4 * 0.2 / math.sqrt(4000))
    assert np.all(np.abs(draws.std(0, ddof=1) - 0.2) < 4 * 0.2 / math.sqrt(8000))
    # the data of a drawn truth are simulate()'s on that truth
    plan = kd._make_plan(sc, base, "fast")
    for seed in (5, 6):
        fast = kd._simulate_one(plan, seed)
        ref = kd._reference_effects(plan, seed, {**plan.truth, "source_means": fast.means})
        np.testing.assert_array_equal(fast.effects["yi"].to_numpy(), ref["yi"].to_numpy())
    with pytest.raises(ValueError, match="between_source_sd must be > 0"):
        kd.Scenario(between_source_sd=0)


def test_comparator_effect_shifts_the_contrast_by_its_value(base):
    # one huge added UC-vs-PRP trial, no heterogeneity: its Hedges' g estimates the source mean plus
    # the PRP effect with SE sqrt(2 / 5000 + g^2 / 20000) = 0.020; 4 SE = 0.08 (a false alarm once in
    # 15,000 runs), while the wrong sign would miss by 0.6
    sc = kd.Scenario(tau=0.0, comparator_effects={"PRP": 0.3}, added=(kd.AddedTrial("UC", "PRP", 5000),))
    plan = kd._make_plan(sc, base, "fast")
    eff = kd._draw_effects(plan, 11)
    row = eff[eff["trial_id"].str.contains("ADDED")].iloc[0]
    se = math.sqrt(row["vi"])
    assert abs(row["yi"] - (-0.85 + 0.3)) < 4 * se
    with pytest.raises(ValueError, match="generator='fast'"):
        kd._make_plan(sc, base, "simulate")


def test_a_source_without_trials_is_not_estimable_and_not_ranked(base, inproc):
    no_uc = base[base["cell_source"] != "UC"]
    ds = kd.design_study(design=no_uc, n_sims=2, seed=4, client=inproc, sampler=TINY, progress=False)
    assert ds["estimable"].sel(source="UC").values.tolist() == [False]
    for v in ("p_best", "estimate", "covered", "width"):
        assert bool(ds[v].sel(source="UC").isnull().all()), v
    # ranking among BM and AD only: their P(best) add up to 1, and the truly best is AD (-0.68)
    np.testing.assert_allclose(ds["p_best"].sel(source=["BM", "AD"]).sum("source").values, 1.0)
    assert str(ds["true_best"].values[0]) == "AD"
    assert bool(ds["claim_probability"].isnull().all())  # both claims involve UC
    assert any("UC has no trial in the design: not estimable" in n for n in __import__("json").loads(ds.attrs["notes"]))
    bs = kd.by_source(ds)
    assert bs.set_index("source").loc["UC", "note"].startswith("not estimable")
    assert bool(ds["done"].all()) and np.isfinite(ds["max_rhat"].values).all()


def test_fewer_than_two_sources_are_refused(base):
    with pytest.raises(ValueError, match="fewer than two"):
        kd.design_study(design=base[base["cell_source"] == "BM"], n_sims=1, workers=1, progress=False)


def test_clopper_pearson_against_closed_forms_and_scipy():
    # closed forms: 0 of n -> (0, 1 - 0.025^(1/n)); n of n -> (0.025^(1/n), 1)
    assert kd.clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** 0.1, abs=1e-12))
    assert kd.clopper_pearson(10, 10) == (pytest.approx(0.025 ** 0.1, abs=1e-12), 1.0)
    ref = stats.binomtest(37, 50).proportion_ci(0.95, method="exact")
    np.testing.assert_allclose(kd.clopper_pearson(37, 50), (ref.low, ref.high), atol=1e-10)


def _fake_study(tops, patients, best_width):
    """A study Dataset with given top_correct per scenario (no fitting)."""
    names = list(tops)
    n = len(next(iter(tops.values())))
    src = list(kd.SOURCES)
    shape = (len(names), n, 3)
    width = np.stack([np.tile(best_width[k], (n, 1)) for k in names])
    ds = xr.Dataset(
        {"top_correct": (("scenario", "sim"), np.array([tops[k] for k in names], float)),
         "p_best_true": (("scenario", "sim"), np.full((len(names), n), 0.5)),
         "covered": (("scenario", "sim", "source"), np.ones(shape)),
         "width": (("scenario", "sim", "source"), width),
         "estimate": (("scenario", "sim", "source"), np.zeros(shape)),
         "p_best": (("scenario", "sim", "source"), np.full(shape, 1 / 3)),
         "claim_probability": (("scenario", "sim", "claim"), np.full((len(names), n, 2), 0.5)),
         "healthy": (("scenario", "sim"), np.ones((len(names), n))),
         "divergences": (("scenario", "sim"), np.zeros((len(names), n))),
         "max_rhat": (("scenario", "sim"), np.ones((len(names), n))),
         "done": (("scenario", "sim"), np.ones((len(names), n), bool)),
         "failed": (("scenario", "sim"), np.zeros((len(names), n), bool)),
         "estimable": (("scenario", "source"), np.ones((len(names), 3), bool)),
         "true_effect": (("scenario", "source"), np.tile([-0.45, -0.85, -0.68], (len(names), 1))),
         "claim_true": (("scenario", "claim"), np.ones((len(names), 2))),
         "true_value": (("scenario", "sim", "source"), np.tile([-0.45, -0.85, -0.68], (len(names), n, 1))),
         "claim_holds": (("scenario", "sim", "claim"), np.ones((len(names), n, 2)))},
        coords={"scenario": names, "sim": np.arange(n), "source": src, "claim": list(kd.CLAIMS),
                "n_added_trials": ("scenario", [0 if k == "base" else 1 for k in names]),
                "n_added_patients": ("scenario", [patients[k] for k in names]),
                "n_comparisons": ("scenario", [38] * len(names)),
                "series": ("scenario", ["" if k == "base" else k for k in names]),
                "true_best": ("scenario", ["UC"] * len(names))})
    return ds


def test_rank_additions_gain_shrinkage_and_smallest():
    tops = {"base": [1, 0, 0, 1, 0, 1, 0, 0, 1, 0],      # 0.4
            "small": [1, 1, 0, 1, 0, 1, 1, 0, 1, 1],     # 0.7
            "medium": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0],    # 0.9
            "large": [1] * 10}                            # 1.0
    patients = {"base": 0, "small": 50, "medium": 100, "large": 400}
    widths = {"base": [0.4, 0.8, 0.5], "small": [0.4, 0.6, 0.5], "medium": [0.4, 0.4, 0.5], "large": [0.4, 0.2, 0.5]}
    ds = _fake_study(tops, patients, widths)
    table, smallest, note = kd.rank_additions(ds, "base", target=0.9)
    assert table["candidate"].tolist() == ["large", "medium", "small"]
    np.testing.assert_allclose(table["gain"], [0.6, 0.5, 0.3])
    # paired SE of the gain: sd of the per-sim differences / sqrt(10)
    d = np.array(tops["small"]) - np.array(tops["base"])
    assert table.set_index("candidate").loc["small", "gain_se"] == pytest.approx(d.std(ddof=1) / math.sqrt(10))
    # UC (the truly best) interval: 0.8 -> 0.4 is a shrinkage of one half
    assert table.set_index("candidate").loc["medium", "shrinkage_best"] == pytest.approx(0.5)
    assert smallest["candidate"] == "medium" and "medium" in note
    _, none, note = kd.rank_additions(ds, "base", target=1.01)
    assert none is None and "No candidate" in note


def test_summary_and_plot_of_a_study():
    import matplotlib.pyplot as plt

    ds = _fake_study({"base": [1, 0, 1, 1], "x": [1, 1, 1, 1]}, {"base": 0, "x": 60},
                     {"base": [0.4, 0.8, 0.5], "x": [0.4, 0.6, 0.5]})
    tab = kd.summary(ds)
    assert tab["p_top_correct"].tolist() == [0.75, 1.0]
    assert (tab["p_top_lower"], tab["p_top_upper"]) and tab.loc[0, "p_top_lower"] == pytest.approx(
        stats.beta.ppf(0.025, 3, 2))
    fig, ax = plt.subplots()
    out = kd.plot_power(ds, x="n_added_patients", ax=ax, target=0.9)
    assert out is fig and ax.get_xlabel() == "added patients"
    line = ax.lines[0]
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), [0.75, 1.0])
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0, 60])
    plt.close(fig)


def test_scenario_files_and_their_errors(tmp_path):
    f = tmp_path / "s.toml"
    (tmp_path / "d").mkdir()
    f.write_text(textwrap.dedent("""
        [study]
        n_sims = 12
        design = "d/trials.csv"

        [[scenario]]
        name = "as published"

        [[scenario]]
        name = "two more UC"
        tau = 0.3
        comparator_effects = { PRP = 0.2 }
        added = [ { source = "UC", comparator = "placebo", n = 60, count = 2 } ]
    """))
    scs, study = kd.read_scenarios(f)
    assert [s.name for s in scs] == ["as published", "two more UC"]
    assert scs[1].n_added_trials == 2 and scs[1].n_added_patients == 240 and scs[1].tau == 0.3
    assert scs[0].source_means == {"BM": -0.45, "UC": -0.85, "AD": -0.68}  # truth.json's values
    assert study["n_sims"] == 12 and study["design"] == str((tmp_path / "d" / "trials.csv").resolve())
    f.write_text('[[scenario]]\nname = "a"\ntaus = 0.3\n')
    with pytest.raises(ValueError, match=r"s\.toml: scenario 'a': unknown key\(s\) \['taus'\]"):
        kd.read_scenarios(f)
    f.write_text('[[scenario]]\nname = "b"\nadded = [ { source = "XX", n = 10 } ]\n')
    with pytest.raises(ValueError, match=r"s\.toml: scenario 'b': added trial: source 'XX'"):
        kd.read_scenarios(f)
    f.write_text('[[scenario]]\nname = "c"\nsource_means = { BM = -0.4, UC = -0.8 }\n')
    with pytest.raises(ValueError, match="scenario 'c': source_means needs exactly BM, UC, AD; missing AD"):
        kd.read_scenarios(f)


def test_cli_writes_store_tables_and_plots(tmp_path, inproc, capsys):
    from bayes_koa import cli_design

    f = tmp_path / "s.toml"
    f.write_text('[study]\ndraws = 300\ntune = 300\n\n[[scenario]]\nname = "as is"\n\n'
                 '[[scenario]]\nname = "+1 UC"\nadded = [ { source = "UC", comparator = "HA", n = 80 } ]\n')
    out = tmp_path / "out"
    args = ["design", "--scenarios", str(f), "--n-sims", "2", "--scheduler", inproc.scheduler.address,
            "--out", str(out), "--quiet"]
    assert cli_design.main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("SIMULATED") and "P(correct top rank)" in text and "+1 UC" in text
    for name in ("summary.csv", "by_source.csv", "study.nc", "power_trials.png", "power_patients.png", "report.txt"):
        assert (out / name).exists(), name
    tab = pd.read_csv(out / "summary.csv")
    assert tab["scenario"].tolist() == ["as is", "+1 UC"] and tab["fits"].tolist() == [2, 2]
    assert len(list((out / "store").glob("fits/*/*.nc"))) == 4
    # rerun: everything from the store
    assert cli_design.main(args) == 0
    assert "0 run now, 4 taken from the store" in capsys.readouterr().out
