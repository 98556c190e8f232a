"""The fit cache (bayes_koa.inference.fit_cache): a repeated fit returns the stored draws, exactly, and says so;
any change of data, prior, seed, settings or versions refits; a damaged entry is refused; writes are atomic;
an interrupted fit is never stored; a fit with sampling problems keeps them."""

import os

import numpy as np
import pytest

import bayes_koa as bk
from bayes_koa.inference import fit_cache, sampling, store
from bayes_koa.inference.diagnostics import SamplingWarning
from bayes_koa.kinds import data_values, load_spec, prepare

PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}
SMALL = dict(seed=5, draws=200, tune=200, chains=2, warn=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYES_KOA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BAYES_KOA_FIT_CACHE", raising=False)  # conftest switches it off for other tests
    fit_cache.STATS.clear()
    return tmp_path / "cache" / "fits"


def _entries(folder):
    return sorted(folder.glob("*.bka")) if folder.is_dir() else []


def _same_draws(a, b):
    for group in ("posterior", "sample_stats", "prior", "observed_data", "constant_data"):
        if group not in a.dt.children:
            continue
        assert group in b.dt.children
        da, db = a.dt[group].to_dataset(), b.dt[group].to_dataset()
        assert set(da.data_vars) == set(db.data_vars)
        for v in da.data_vars:
            x, y = da[v].values, db[v].values
            if x.dtype.kind in "fc":
                np.testing.assert_array_equal(x, y)  # bit-identical draws, not merely close
            else:
                # text: a missing message (None) is stored as "", the store's convention (inference/store.py)
                def text(a):
                    return ["" if t is None else str(t) for t in a.ravel().tolist()]

                assert text(x) == text(y), (group, v)
            assert da[v].dims == db[v].dims
    assert store.draws_checksum(a.dt["posterior"]) == store.draws_checksum(b.dt["posterior"])


def test_a_repeated_fit_returns_the_stored_draws_and_says_so(cache, eight_schools, monkeypatch):
    first = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    rec = first.provenance["fit_cache"]
    assert rec["reused"] is False and _entries(cache) and rec["path"] == str(_entries(cache)[0])
    assert fit_cache.STATS == {"misses": 1, "stored": 1}

    def no_sampling(*a, **k):
        raise AssertionError("a cache hit must not sample")

    monkeypatch.setattr(sampling, "_run", no_sampling)
    monkeypatch.setattr(sampling, "add_groups", no_sampling)  # nor draw the prior again
    again = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    rec2 = again.provenance["fit_cache"]
    assert rec2["reused"] is True and rec2["path"] == rec["path"] and rec2["key"] == rec["key"]
    assert rec2["fitted"] == rec["fitted"] and again.provenance["created"] == first.provenance["created"]
    assert fit_cache.STATS["hits"] == 1
    _same_draws(first, again)
    # what is computed from the draws is then the same too (the predictions use the recorded seed)
    np.testing.assert_array_equal(first.dt["posterior"]["theta_new"].values, again.dt["posterior"]["theta_new"].values)
    assert first.summary().round(12).equals(again.summary().round(12))
    assert first.provenance["sampler_settings"] == again.provenance["sampler_settings"]


def test_cache_false_and_refit_sample_again(cache, eight_schools, monkeypatch):
    first = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    calls = []
    real = sampling._run
    monkeypatch.setattr(sampling, "_run", lambda *a, **k: calls.append(1) or real(*a, **k))
    off = bk.fit(eight_schools, "random_effects", priors=PRIORS, cache=False, **SMALL)
    assert calls == [1] and "fit_cache" not in off.provenance
    _same_draws(first, off)  # the same seed gives the same draws: the cache changes nothing but the time
    with fit_cache.mode("refit"):  # what the CLI's --refit does
        refit = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    assert calls == [1, 1] and refit.provenance["fit_cache"]["reused"] is False
    assert len(_entries(cache)) == 1  # the entry was replaced, not duplicated
    monkeypatch.setenv("BAYES_KOA_FIT_CACHE", "off")
    bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    assert calls == [1, 1, 1]


def _key(spec, design, **over):
    base = dict(seed=1, draws=100, tune=100, chains=2, sampler="nutpie", target_accept=0.9, adapt=True,
                groups=("prior",), prior_draws=1000)
    return fit_cache.fit_key(spec, design, data_values(spec, design), **{**base, **over})


def test_every_input_of_the_draws_changes_the_key(eight_schools, monkeypatch):
    spec = load_spec("random_effects", priors=PRIORS, measure="MD")
    design, _ = prepare(spec, eight_schools)
    k0 = _key(spec, design)
    assert _key(spec, design) == k0  # deterministic
    changed = {
        "seed": _key(spec, design, seed=2), "draws": _key(spec, design, draws=101),
        "tune": _key(spec, design, tune=99), "chains": _key(spec, design, chains=3),
        "target_accept": _key(spec, design, target_accept=0.95), "adapt": _key(spec, design, adapt=False),
        "groups": _key(spec, design, groups=()), "prior_draws": _key(spec, design, prior_draws=500),
        "sampler": _key(spec, design, sampler="pymc"),
    }
    # data: one observation moved by 1e-9, one standard error, one label
    eff = eight_schools.astype({"yi": float, "sei": float})
    eff.loc[0, "yi"] += 1e-9
    changed["y"] = _key(spec, prepare(spec, eff)[0])
    eff = eight_schools.astype({"yi": float, "sei": float})
    eff.loc[3, "sei"] *= 1.5
    changed["se"] = _key(spec, prepare(spec, eff)[0])
    eff = eight_schools.copy()
    eff.loc[2, "trial_id"] = "renamed"
    changed["label"] = _key(spec, prepare(spec, eff)[0])
    changed["fewer rows"] = _key(spec, prepare(spec, eight_schools.iloc[:-1])[0])
    # priors: another value of the same family (same compiled model) and another family
    s2 = load_spec("random_effects", priors={**PRIORS, "tau": "HalfNormal(sigma=11)"}, measure="MD")
    changed["prior value"] = _key(s2, prepare(s2, eight_schools)[0])
    s3 = load_spec("random_effects", priors={**PRIORS, "tau": "HalfCauchy(beta=10)"}, measure="MD")
    changed["prior family"] = _key(s3, prepare(s3, eight_schools)[0])
    # versions and the model code
    real = fit_cache._versions
    monkeypatch.setattr(fit_cache, "_versions", lambda: real() + (("pymc", "0.0-other"),))
    changed["versions"] = _key(spec, design)
    monkeypatch.setattr(fit_cache, "_versions", real)
    monkeypatch.setattr(fit_cache, "_CODE_HASH", "edited kinds/univariate.py")
    changed["code"] = _key(spec, design)
    monkeypatch.setattr(fit_cache, "_CODE_HASH", None)
    assert _key(spec, design) == k0
    for what, k in changed.items():
        assert k != k0, f"changing {what} must change the key"
    assert len(set(changed.values())) == len(changed)


def test_a_changed_seed_or_prior_misses_in_a_real_fit(cache, eight_schools):
    bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    other = bk.fit(eight_schools, "random_effects", priors=PRIORS, **{**SMALL, "seed": 6})
    assert other.provenance["fit_cache"]["reused"] is False
    wider = bk.fit(eight_schools, "random_effects", priors={**PRIORS, "tau": "HalfNormal(sigma=20)"}, **SMALL)
    assert wider.provenance["fit_cache"]["reused"] is False
    assert fit_cache.STATS.get("hits", 0) == 0 and len(_entries(cache)) == 3


def test_a_corrupted_entry_is_refused_deleted_and_refitted(cache, eight_schools):
    first = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    (path,) = _entries(cache)
    blob = bytearray(path.read_bytes())
    blob[-9] ^= 0x01  # one bit of one stored draw
    path.write_bytes(bytes(blob))
    with pytest.raises(store.StoreError, match="sha256"):
        store.load_arrays(path)
    again = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    assert fit_cache.STATS["rejected"] == 1 and again.provenance["fit_cache"]["reused"] is False
    _same_draws(first, again)  # refitted: the same seed's draws, not the damaged ones
    assert store.load_arrays(path) is not None  # and stored again, sound
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    third = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    assert fit_cache.STATS["rejected"] == 2 and third.provenance["fit_cache"]["reused"] is False


def test_an_interrupted_fit_is_never_stored(cache, eight_schools, monkeypatch):
    def interrupted(*a, **k):
        raise sampling.SamplingInterrupted("sampling interrupted (Ctrl-C); nothing was saved")

    monkeypatch.setattr(sampling, "_run", interrupted)
    with pytest.raises(sampling.SamplingInterrupted):
        bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    assert _entries(cache) == [] and "stored" not in fit_cache.STATS


def test_the_write_is_atomic(cache, eight_schools, monkeypatch, tmp_path):
    first = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    (path,) = _entries(cache)
    before = path.read_bytes()

    def crash(src, dst):
        raise KeyboardInterrupt  # killed between writing the temporary file and the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save_arrays(first.dt, path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old entry is untouched
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # and no temporary file is left
    # a write to a fresh name crashing the same way leaves nothing under that name
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save_arrays(first.dt, tmp_path / "new.bka")
    monkeypatch.undo()
    assert not (tmp_path / "new.bka").exists()


def test_parallel_writers_of_one_entry_leave_one_sound_file(cache, eight_schools):
    import threading

    res = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    (path,) = _entries(cache)
    errors = []

    def write():
        try:
            for _ in range(5):
                store.save_arrays(res.dt, path, {"bayes_koa_fit_key": "k"})
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    back = store.load_arrays(path)  # whichever writer won, the file is whole
    assert store.draws_checksum(back) == store.draws_checksum(res.dt)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_fit_with_sampling_problems_keeps_them(cache, eight_schools):
    # 30 draws after 10 tuning steps: too few for ESS (and R-hat), so the diagnostics flag problems
    bad = dict(seed=3, draws=30, tune=10, chains=2, warn=False, adapt=False)
    first = bk.fit(eight_schools, "random_effects", priors=PRIORS, **bad)
    probs = first.diagnostics().attrs["problems"]
    assert probs
    with pytest.warns(SamplingWarning):
        again = bk.fit(eight_schools, "random_effects", priors=PRIORS, **{**bad, "warn": True})
    assert again.provenance["fit_cache"]["reused"] is True
    assert again.diagnostics().attrs["problems"] == probs
    np.testing.assert_array_equal(first.dt["sample_stats"]["diverging"].values,
                                  again.dt["sample_stats"]["diverging"].values)


def test_store_arrays_round_trip_keeps_types_and_attributes(tmp_path, eight_schools, cache):
    res = bk.fit(eight_schools, "random_effects", priors=PRIORS, cache=False, **SMALL)
    dt = res.dt.copy()
    dt["posterior"].attrs["an_array"] = np.array([1, 2], dtype="int32")
    dt["posterior"].attrs["a_float"] = np.float64(0.5)
    dt["posterior"]["mu"].attrs["note"] = "text"
    path = store.save_arrays(dt, tmp_path / "x.bka")
    back = store.load_arrays(path)
    assert store.draws_checksum(back) == store.draws_checksum(dt)
    a = back["posterior"].attrs
    assert a["an_array"].dtype == np.dtype("int32") and a["an_array"].tolist() == [1, 2]
    assert isinstance(a["a_float"], np.float64) and back["posterior"]["mu"].attrs == {"note": "text"}
    for node in dt.subtree:
        for k, v in node.to_dataset(inherit=False).variables.items():
            got = back[node.path].to_dataset(inherit=False)[k]
            assert got.dims == v.dims and got.shape == v.shape
            if v.dtype.kind != "O":
                assert got.dtype == v.dtype


def test_saving_identical_content_again_links_the_verified_file(cache, eight_schools, tmp_path, monkeypatch):
    res = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    a = res.save(tmp_path / "a" / "result.nc")
    writes = []
    real = store._write_netcdf
    monkeypatch.setattr(store, "_write_netcdf", lambda dt, p: writes.append(p) or real(dt, p))
    again = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)  # served by the fit cache
    b = again.save(tmp_path / "b" / "result.nc")
    assert writes == [] and a.read_bytes() == b.read_bytes()  # not written again: the same verified bytes
    back = bk.load(b)
    _same_draws(res, back)
    assert "reused" not in back.provenance["fit_cache"]  # the file does not say which run sampled it
    assert back.provenance["fit_cache"]["key"] == res.provenance["fit_cache"]["key"]
    # a damaged kept file is not linked: the result is written and verified afresh
    kept = sorted((cache.parent / "results").glob("*.nc"))
    assert len(kept) == 1
    kept[0].unlink()
    kept[0].write_bytes(a.read_bytes()[:-10] + b"0123456789")  # same size, other bytes (a new inode)
    c = again.save(tmp_path / "c" / "result.nc")
    assert len(writes) == 1 and bk.load(c).provenance["seed"] == res.provenance["seed"]
    # other content (another seed's draws) is its own file
    other = bk.fit(eight_schools, "random_effects", priors=PRIORS, **{**SMALL, "seed": 9})
    other.save(tmp_path / "d" / "result.nc")
    assert len(writes) == 2


def test_clear_deletes_the_entries_and_kept_results(cache, eight_schools, tmp_path):
    res = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    res.save(tmp_path / "r.nc")
    assert _entries(cache) and list((cache.parent / "results").glob("*.nc"))
    assert fit_cache.clear() == 1
    assert _entries(cache) == [] and list((cache.parent / "results").glob("*")) == []
    again = bk.fit(eight_schools, "random_effects", priors=PRIORS, **SMALL)
    assert again.provenance["fit_cache"]["reused"] is False


def test_cli_second_run_reuses_the_fits_and_says_so_refit_samples_again(cache, tmp_path, capsys):
    from bayes_koa import cli

    args = ["analyze", "--quiet", "--model", "random_effects", "--draws", "200", "--tune", "200", "--chains", "2",
            "--refits", "none"]
    runs = []
    for extra in ([], [], ["--refit"]):
        out = tmp_path / f"r{len(runs)}"
        assert cli.main([*args, "--out", str(out), *extra]) in (0, 3)
        text = capsys.readouterr().out
        runs.append((text, (out / "result.nc").read_bytes()))
    first, second, refit = runs
    assert "Fit cache: sampled now and stored" in first[0]
    assert "Fit cache: reused the draws fitted" in second[0] and "nothing was sampled" in second[0]
    assert "Fit cache: sampled now and stored" in refit[0]
    # Elapsed is the last line before the exit, for the whole process, with the cache's count
    assert second[0].strip().splitlines()[-1].startswith("Elapsed") and "1 fit(s) reused" in second[0]
    # the same draws and provenance give the same file, byte for byte (the second save linked the first's)
    assert first[1] == second[1]
    assert store.draws_checksum(bk.load(tmp_path / "r2" / "result.nc").dt["posterior"]) == \
        store.draws_checksum(bk.load(tmp_path / "r0" / "result.nc").dt["posterior"])


def test_a_changed_pytensor_config_file_changes_the_key(eight_schools, tmp_path, monkeypatch):
    spec = load_spec("random_effects", priors=PRIORS, measure="MD")
    design, _ = prepare(spec, eight_schools)
    rc = tmp_path / "pytensorrc"
    monkeypatch.setenv("PYTENSORRC", str(rc))
    k0 = _key(spec, design)
    rc.write_text("[numba]\nfastmath = True\n")
    k1 = _key(spec, design)
    rc.write_text("[numba]\nfastmath = False\n")
    assert len({k0, k1, _key(spec, design)}) == 3
