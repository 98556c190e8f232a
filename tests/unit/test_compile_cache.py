"""The compile cache: what a second process reuses, what it must refuse, and that reuse changes nothing.

Models are the eight-schools random-effects model (10 parameters) so that each compile takes a few
seconds; draws are short (2 x 200) because only equality of draws matters, not their quality.
"""

import ctypes
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import bayes_koa as bk
from bayes_koa.kinds import build_model, prepare
from bayes_koa.inference import compile_cache as cc

ROOT = Path(__file__).resolve().parents[2]
PRIORS = {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=10)"}
SAMPLE = dict(draws=200, tune=200, chains=2, seed=7, progress_bar=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty disk cache and an empty in-memory cache, with fresh counters."""
    monkeypatch.setenv("BAYES_KOA_CACHE", str(tmp_path / "cache"))
    cc.clear(memory=True)
    cc.STATS.clear()
    yield tmp_path / "cache" / "compiled"
    cc.clear(memory=True)


def _design(effects, drop: int = 0):
    # non-centred: its dimension (mu, tau and one z per trial) tells the shapes apart below (the marginal
    # default samples mu and tau only)
    spec = bk.load_spec("random_effects", priors=PRIORS, parameterization="noncentered")
    design, _ = prepare(spec, effects.iloc[drop:].reset_index(drop=True))
    return spec, design


def _get(spec, design):
    return cc.compiled_model((spec.structure_key(), design.shape_key()), lambda: build_model(spec, design))


def _draws(compiled):
    import nutpie

    return nutpie.sample(compiled, **SAMPLE)["posterior"]["mu"].values


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.bkc")) if folder.is_dir() else []


def test_logp_and_gradient_equal_pymc(eight_schools, cache):
    """The C callback returns PyMC's own log density and gradient (compiled separately by PyMC).

    Same graph, different compiled code: agreement to 1e-9 relative is floating-point reordering only.
    """
    spec, design = _design(eight_schools)
    model, compiled = _get(spec, design)
    logp_ref, dlogp_ref = model.compile_logp(), model.compile_dlogp()
    names, slices, shapes = compiled.shape_info
    free = [v.name for v in model.value_vars]
    cf = compiled.compiled_logp_func.ctypes
    rng = np.random.default_rng(3)
    dbl = ctypes.POINTER(ctypes.c_double)
    for _ in range(3):
        x = rng.normal(size=compiled.n_dim)
        grad, logp = np.zeros(compiled.n_dim), np.zeros(())
        code = cf(compiled.n_dim, x.ctypes.data_as(dbl), grad.ctypes.data_as(dbl), logp.ctypes.data_as(dbl),
                  ctypes.c_void_p(compiled.user_data.ctypes.data))
        assert code == 0
        point = {n: x[s].reshape(sh) for n, s, sh in zip(names, slices, shapes) if n in free}
        np.testing.assert_allclose(float(logp), logp_ref(point), rtol=1e-9)
        np.testing.assert_allclose(grad, dlogp_ref(point), rtol=1e-9, atol=1e-12)
    # a wrong dimension is refused with nutpie's return code, not read out of bounds
    assert cf(compiled.n_dim + 1, x.ctypes.data_as(dbl), grad.ctypes.data_as(dbl), logp.ctypes.data_as(dbl),
              ctypes.c_void_p(compiled.user_data.ctypes.data)) == -1


_CHILD = textwrap.dedent("""
    import hashlib, json, sys
    import numba.core.ccallback as ccb
    import nutpie, nutpie.compile_pymc as ncp
    import pandas as pd
    import bayes_koa as bk
    from bayes_koa.kinds import build_model, prepare
    from bayes_koa.inference import compile_cache as cc

    calls = {"make_functions": 0, "numba_compile": 0}
    def counting(name, f):
        def wrapper(*a, **k):
            calls[name] += 1
            return f(*a, **k)
        return wrapper
    ncp._make_functions = counting("make_functions", ncp._make_functions)
    ccb.CFunc._compile_uncached = counting("numba_compile", ccb.CFunc._compile_uncached)

    df = pd.read_csv(sys.argv[1]).rename(columns={"school": "trial_id", "y": "yi", "sigma": "sei"})
    spec = bk.load_spec("random_effects", priors=json.loads(sys.argv[2]))
    design, _ = prepare(spec, df)
    model, compiled = cc.compiled_model((spec.structure_key(), design.shape_key()), lambda: build_model(spec, design))
    mu = nutpie.sample(compiled, **json.loads(sys.argv[3]))["posterior"]["mu"].values
    print(json.dumps({"stats": cc.STATS, "calls": calls, "draws": hashlib.sha256(mu.tobytes()).hexdigest()}))
""")


def test_second_process_compiles_nothing_and_draws_equal(cache):
    """Process 1 compiles and saves; process 2 loads: nutpie's function builder and numba's compiler are
    never called there (counted by wrapping both), and its draws equal process 1's for the same seed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, "-c", _CHILD, str(ROOT / "tests/reference/data/eight_schools.csv"), json.dumps(PRIORS),
            json.dumps(SAMPLE)]
    runs = []
    for _ in range(2):
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["stats"] == {"compiles": 1, "saved": 1}
    assert first["calls"]["make_functions"] == 1 and first["calls"]["numba_compile"] >= 2
    assert second["stats"] == {"disk_hits": 1}
    assert second["calls"] == {"make_functions": 0, "numba_compile": 0}
    assert second["draws"] == first["draws"]
    assert len(_entries(cache)) == 1


def test_cached_compile_draws_equal_fresh_compile_and_memory_hit(eight_schools, cache):
    spec, design = _design(eight_schools)
    model, fresh = _get(spec, design)
    assert _get(spec, design)[1] is fresh and cc.STATS["memory_hits"] == 1
    cc.clear(memory=True)
    model2, loaded = _get(spec, design)
    assert loaded is not fresh and model2 is not model and cc.STATS == {"compiles": 1, "saved": 1, "memory_hits": 1,
                                                                        "disk_hits": 1}
    np.testing.assert_array_equal(_draws(loaded), _draws(fresh))
    # with_data on a loaded model changes the data the callback reads (the posterior moves with y)
    shifted = loaded.with_data(y=np.asarray(design.y) + 100.0)
    assert np.mean(_draws(shifted)) > np.mean(_draws(loaded)) + 20  # y + 100 with se 9-18: mu moves ~+100


@pytest.mark.slow  # compiles several times (~30 s); the default suite keeps the second-process test
def test_corrupt_entry_is_rebuilt_not_used(eight_schools, cache):
    spec, design = _design(eight_schools)
    _, fresh = _get(spec, design)
    reference = _draws(fresh)
    (entry,) = _entries(cache)
    good = entry.read_bytes()
    for broken in (good[: len(good) // 2],                                         # truncated
                   good[:-100] + bytes(b ^ 0xFF for b in good[-100:]),           # flipped bytes, checksum fails
                   b"not an entry at all"):
        entry.write_bytes(broken)
        cc.clear(memory=True)
        cc.STATS.clear()
        _, rebuilt = _get(spec, design)
        assert cc.STATS == {"rejected": 1, "compiles": 1, "saved": 1}
        np.testing.assert_array_equal(_draws(rebuilt), reference)
        assert entry.read_bytes() != broken  # replaced by a good entry
    cc.clear(memory=True)
    cc.STATS.clear()
    _get(spec, design)
    assert cc.STATS == {"disk_hits": 1}


@pytest.mark.slow  # compiles several times (~30 s); the default suite keeps the second-process test
def test_other_shape_or_versions_are_not_reused(eight_schools, cache, monkeypatch):
    spec, design = _design(eight_schools)
    _get(spec, design)
    (entry,) = _entries(cache)
    # one trial fewer: another shape, another entry, compiled anew
    spec7, design7 = _design(eight_schools, drop=1)
    _, compiled7 = _get(spec7, design7)
    assert cc.STATS["compiles"] == 2 and len(_entries(cache)) == 2 and compiled7.n_dim == 9  # mu, tau, 7 z
    # other compiler versions: the old entry is not found under the new key
    real = cc.versions()
    bumped = tuple((k, v + "+other") if k == "numba" else (k, v) for k, v in real)
    monkeypatch.setattr(cc, "versions", lambda: bumped)
    cc.clear(memory=True)
    _get(spec, design)
    assert cc.STATS["compiles"] == 3 and len(_entries(cache)) == 3
    # an entry written under other versions, found at this key's file name, is refused
    monkeypatch.setattr(cc, "versions", lambda: real)
    path_now = cc.entry_path((spec.structure_key(), design.shape_key()), cc.fingerprint(build_model(spec, design))[0])
    assert path_now == entry
    new_entries = [p for p in _entries(cache) if p != entry]
    bumped_entry = max(new_entries, key=lambda p: p.stat().st_mtime)
    entry.write_bytes(bumped_entry.read_bytes())
    cc.clear(memory=True)
    cc.STATS.clear()
    _get(spec, design)
    assert cc.STATS == {"rejected": 1, "compiles": 1, "saved": 1}


def test_changed_model_under_same_key_is_not_served(eight_schools, cache):
    """The key is the caller's promise; the graph fingerprint checks it (another prior family here)."""
    spec, design = _design(eight_schools)
    key = (spec.structure_key(), design.shape_key())
    cc.compiled_model(key, lambda: build_model(spec, design))
    other = bk.load_spec("random_effects", priors={**PRIORS, "tau": "HalfCauchy(beta=5)"}, parameterization="noncentered")
    cc.clear(memory=True)
    _, compiled = cc.compiled_model(key, lambda: build_model(other, design))  # same key, different graph
    assert cc.STATS["compiles"] == 2 and len(_entries(cache)) == 2
    assert compiled.n_dim == 10


def test_disk_cache_can_be_turned_off(eight_schools, cache, monkeypatch):
    monkeypatch.setenv("BAYES_KOA_CACHE", "off")
    assert cc.cache_dir() is None
    spec, design = _design(eight_schools)
    _get(spec, design)
    assert cc.STATS == {"compiles": 1} and not _entries(cache)


@pytest.mark.slow
def test_draws_equal_stock_nutpie(eight_schools, cache):
    """Our C callbacks run the same PyTensor functions as nutpie's: identical draws for the same seed
    (nutpie compiled with the numba fastmath setting the cache compiles with, cc.FASTMATH)."""
    import nutpie
    import pytensor

    spec, design = _design(eight_schools)
    model, ours = _get(spec, design)
    with pytensor.config.change_flags(numba__fastmath=cc.FASTMATH):
        stock = nutpie.compile_pymc_model(model)
    np.testing.assert_array_equal(_draws(ours), _draws(stock))


def test_fit_compiles_through_the_cache(eight_schools, cache):
    """bk.fit goes through the cache (inference.sampling._compiled): after clear_cache it loads, not compiles."""
    from bayes_koa.inference.sampling import clear_cache

    kw = dict(priors=PRIORS, seed=5, draws=200, tune=200, chains=2, warn=False)
    clear_cache()
    first = bk.fit(eight_schools, "random_effects", **kw)
    assert cc.STATS == {"compiles": 1, "saved": 1}
    clear_cache()
    again = bk.fit(eight_schools, "random_effects", **kw)
    assert cc.STATS == {"compiles": 1, "saved": 1, "disk_hits": 1}
    np.testing.assert_array_equal(again.dt["posterior"]["tau"].values, first.dt["posterior"]["tau"].values)
    assert list(again.dt["posterior"]["trial"].values) == list(eight_schools["trial_id"])
