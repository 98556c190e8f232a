"""Ways to stop paying for the model compile in every process, measured in one run.

Each option compiles the main job's model (source_hierarchical, shipped SIMULATED data, VAS month 6,
MD) in a fresh process, twice in a row with the same cache folders (fresh temporary folders per
option, so run 1 is cold and run 2 shows what a cache gives), then samples it. Printed: compile wall
and CPU seconds, sampling seconds, the posterior mean of mu (same seed: equal numbers = same draws),
and the ratio of each compile to stock nutpie's in a fresh process (the baseline; CPU seconds, which
the load of other processes on the machine disturbs less than wall time).

    PYTHONPATH=$PWD python benchmarks/bench_compile_options.py [--jax-site DIR] [--only a,b]

``--jax-site``: a folder with jax and jaxlib installed (``pip install --target DIR jax jaxlib
ml_dtypes opt_einsum --no-deps``), added to the path of the jax option only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRAWS = TUNE = 1000
CHAINS = 4
TARGET_ACCEPT = 0.95
SEED = 1

OPTIONS = {
    "nutpie": "stock nutpie.compile_pymc_model (numba backend), PyTensor's numba cache as it is on this machine",
    "nutpie-cold-pytensor": "stock nutpie with an empty PyTensor compiledir (PyTensor's own numba cache cold, then warm)",
    "nutpie-numba-cache": "nutpie.compile_pymc_model(model, cache=True) with NUMBA_CACHE_DIR (numba's on-disk cache)",
    "pickle": "cloudpickle of the compiled nutpie model to disk, loaded by the second process",
    "pymc-c": "PyMC's own NUTS on PyTensor's C backend (mode CVM; C modules cached in the compiledir), cores=2",
    "nutpie-jax": "nutpie backend='jax' (gradient by PyTensor), JAX persistent compilation cache",
    "bayes_koa": "bayes_koa.inference.compile_cache (own C callbacks + numba compile results on disk)",
    "bayes_koa-new-size": "compile_cache after the main shape is cached: a data set one trial smaller",
}


def child(option: str, workdir: Path, run: int) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    import numpy as np
    import pymc as pm

    import bayes_koa as bk
    from bayes_koa.kinds import build_model, prepare
    from bayes_koa.kinds import load_spec

    out = {"option": option, "run": run, "import_s": time.perf_counter() - t0}
    eff = bk.effect_sizes(bk.load_simulated(), measure="MD", outcomes=["VAS"])
    spec = load_spec("source_hierarchical", measure="MD")
    if option == "bayes_koa-new-size" and run == 2:
        eff = eff[eff["trial_id"] != eff.loc[eff["excluded_reason"].fillna("") == "", "trial_id"].iloc[0]]
    design, _ = prepare(spec, eff, outcome="VAS", time=6.0)
    model = build_model(spec, design)
    out["n_trials"] = len(design.trial)
    sample = None
    t, c = time.perf_counter(), time.process_time()
    if option in ("nutpie", "nutpie-cold-pytensor", "nutpie-numba-cache", "pickle"):
        import nutpie

        path = workdir / "compiled.pkl"
        if option == "pickle" and run == 2:
            import cloudpickle

            compiled = cloudpickle.loads(path.read_bytes())
        else:
            compiled = nutpie.compile_pymc_model(model, **({"cache": True} if option == "nutpie-numba-cache" else {}))
            if option == "nutpie-numba-cache":
                out["note"] = f"numba cache hits: logp {compiled.compiled_logp_func.cache_hits}, " \
                              f"expand {compiled.compiled_expand_func.cache_hits}"
            if option == "pickle":
                import cloudpickle

                try:
                    path.write_bytes(cloudpickle.dumps(compiled))
                    out["note"] = f"pickled {path.stat().st_size / 1e6:.1f} MB"
                except Exception as e:  # noqa: BLE001 - the failure is the measurement
                    out["note"] = f"cloudpickle failed: {type(e).__name__}: {str(e)[:80]}"
        sample = lambda: nutpie.sample(compiled, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED,  # noqa: E731
                                       progress_bar=False, target_accept=TARGET_ACCEPT)
    elif option in ("bayes_koa", "bayes_koa-new-size"):
        import nutpie

        from bayes_koa.inference import compile_cache

        _, compiled = compile_cache.compiled_model((spec.structure_key(), design.shape_key()), lambda: model)
        out["note"] = "STATS " + json.dumps(compile_cache.STATS)
        sample = lambda: nutpie.sample(compiled, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED,  # noqa: E731
                                       progress_bar=False, target_accept=TARGET_ACCEPT)
    elif option == "pymc-c":
        model.logp_dlogp_function(ravel_inputs=True, mode="CVM")  # what pm.sample compiles for NUTS
        sample = lambda: pm.sample(draws=DRAWS, tune=TUNE, chains=CHAINS, cores=2, random_seed=SEED,  # noqa: E731
                                   nuts_sampler="pymc", target_accept=TARGET_ACCEPT, progressbar=False,
                                   compile_kwargs={"mode": "CVM"}, model=model)
    elif option == "nutpie-jax":
        import jax
        import nutpie

        jax.config.update("jax_compilation_cache_dir", str(workdir / "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        jax.config.update("jax_enable_x64", True)
        compiled = nutpie.compile_pymc_model(model, backend="jax", gradient_backend="pytensor")
        out["note"] = "jax jit-compiles at the first call: inside the sampling time"
        sample = lambda: nutpie.sample(compiled, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED,  # noqa: E731
                                       progress_bar=False, target_accept=TARGET_ACCEPT)
    else:
        raise SystemExit(f"unknown option {option}")
    out["compile_wall"], out["compile_cpu"] = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    dt = sample()
    out["sample_wall"] = time.perf_counter() - t
    post = dt["posterior"]
    out["mu_mean"] = float(post["mu"].mean())
    out["divergences"] = int(dt["sample_stats"]["diverging"].sum())
    out["process_wall"], out["process_cpu"] = time.perf_counter() - t0, time.process_time() - c0
    return out


def run_option(option: str, jax_site: str | None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"bench-{option}-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "BAYES_KOA_CACHE": str(tmp / "bayes_koa")}
        if option == "nutpie-numba-cache":
            env["NUMBA_CACHE_DIR"] = str(tmp / "numba")
        if option in ("nutpie-cold-pytensor", "pymc-c"):
            env["PYTENSOR_FLAGS"] = f"base_compiledir={tmp / 'pytensor'}"
        if option == "nutpie-jax":
            if not jax_site:
                return [{"option": option, "run": 0, "note": "skipped: no --jax-site"}]
            env["PYTHONPATH"] = str(ROOT) + os.pathsep + jax_site
        for run in (1, 2):
            p = subprocess.run([sys.executable, __file__, "--child", option, "--workdir", str(tmp), "--run", str(run)],
                               env=env, capture_output=True, text=True, timeout=1800)
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
            if p.returncode or not lines:
                rows.append({"option": option, "run": run, "note": "FAILED: " + (p.stderr.strip().splitlines() or ["?"])[-1][:100]})
                break
            rows.append(json.loads(lines[-1]))
            print(f"  {option} run {run}: compile {rows[-1]['compile_cpu']:.2f} s CPU", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--workdir")
    ap.add_argument("--run", type=int, default=1)
    ap.add_argument("--jax-site", default=None)
    ap.add_argument("--only", default=None, help="comma-separated options")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.workdir), args.run)))
        return
    print("SIMULATED DATA (bayes_koa.simulate, documented seed): not trial results.")
    print(f"model source_hierarchical, VAS month 6, MD; sampling {CHAINS} x ({TUNE} + {DRAWS}) at target_accept "
          f"{TARGET_ACCEPT}, seed {SEED}; load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    chosen = args.only.split(",") if args.only else list(OPTIONS)
    rows = []
    for option in chosen:
        rows += run_option(option, args.jax_site)
    base = next((r["compile_cpu"] for r in rows if r["option"] == "nutpie" and r.get("run") == 1
                 and "compile_cpu" in r), None)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print()
    print(f"{'option':22s} {'run':>3s} {'trials':>6s} {'compile s':>9s} {'CPU s':>7s} {'vs stock':>8s} "
          f"{'sample s':>8s} {'process CPU s':>13s} {'mu mean':>12s} {'div':>4s}  note")
    for r in rows:
        if "compile_cpu" not in r:
            print(f"{r['option']:22s} {r.get('run', 0):3d}  {r.get('note', '')}")
            continue
        ratio = f"{r['compile_cpu'] / base:.2f}" if base else "-"
        print(f"{r['option']:22s} {r['run']:3d} {r['n_trials']:6d} {r['compile_wall']:9.2f} {r['compile_cpu']:7.2f} "
              f"{ratio:>8s} {r['sample_wall']:8.2f} {r['process_cpu']:13.2f} {r['mu_mean']:12.6f} "
              f"{r['divergences']:4d}  {r.get('note', '')}")
    print()
    for k, v in OPTIONS.items():
        if k in chosen:
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
