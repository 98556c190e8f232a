"""``make benchmark``: every benchmark, each figure as a ratio against its baseline measured in the same run
(except R brms, whose side is a dated cached baseline by default: part 6).

Parts (each in fresh subprocesses where the process is what is measured):

1. main job, first vs second run: ``bayes-koa analyze`` with empty compile and fit caches, then again with the
   caches the first run wrote (every fit of the second run is served by the fit cache); the other parts run
   with the fit cache off (``BAYES_KOA_FIT_CACHE=off``), since they time sampling;
2. prior sweep vs fair naive refits doing the same post-processing (benchmarks/bench_sensitivity.py);
3. ``bayes-koa claims`` (one process, warm cache) against the issue's 30 s target;
4. scale: random_effects at 100 / 1,000 / 10,000 and source_hierarchical at 100 simulated trials
   (benchmarks/bench_scale.py), table of wall time, peak memory and ESS/s (source_hierarchical's 10,000-trial
   fit takes minutes, 1,000 about 40 s: ``benchmarks/bench_scale.py --models source_hierarchical --sizes 1000,10000``);
5. network vs source_hierarchical fit on the bundled design (benchmarks/bench_network.py: first fit compiles
   into an empty compiled-model cache, second reuses it; target ratio <= 2);
6. R brms on the main model (benchmarks/brms_main_model.R), only where R with brms is installed
   (skipped with a message otherwise), against one bayes_koa process doing the same fit. brms spends most
   of its 1.5-3.5 minutes compiling the Stan model, more than the whole 5-minute budget allows, so by default
   the brms side is read from ``benchmarks/brms_baseline.json`` (written by ``--brms live``, which runs both
   sides and records the date, command, load average and versions); the bayes_koa side always runs in this
   run, and the output says which numbers are cached. ``--brms live`` measures both now (and refreshes the file).

    PYTHONPATH=$PWD python benchmarks/run_all.py [--quick] [--skip brms,scale] [--brms cached|live]

``--quick`` leaves the 10,000-trial random-effects fit out. The scale part times the fits only
(``bench_scale.py --no-summary``: the summary table of 10,000 trial effects takes longer than the fit;
``bench_scale.py`` without the flag times it). The machine's load average is printed at start and
end: absolute seconds move with other jobs, ratios within one run much less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# every part but the main job times sampling: the fit cache must not serve draws of an earlier run
os.environ.setdefault("BAYES_KOA_FIT_CACHE", "off")
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _run(cmd, env=None, timeout=1800):
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return time.perf_counter() - t, p


def part_main_job(tmp: Path) -> list[str]:
    """The issue's main-job target: ``bayes-koa analyze --out DIR`` on a fresh clone (empty compile and fit
    caches: the first run) and again (the second run, every fit served by the fit cache), one process each."""
    cache = tmp / "cache"
    env = {k: v for k, v in ENV.items() if k != "BAYES_KOA_FIT_CACHE"}  # the main job uses its caches
    env["BAYES_KOA_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "bayes_koa.cli", "analyze", "--quiet", "--out", str(tmp / "report")]
    load1 = os.getloadavg()[0]
    t1, p1 = _run(cmd, env)
    load2 = os.getloadavg()[0]
    t2, p2 = _run(cmd, env)
    if p1.returncode not in (0, 3) or p2.returncode not in (0, 3):
        return [f"main job: FAILED ({(p1.stderr or p2.stderr).strip().splitlines()[-1:]})"]
    reuse = [ln for ln in p2.stdout.splitlines() if ln.startswith(("Fit cache:", "Elapsed"))]
    return [f"main job `bayes-koa analyze --quiet --out DIR`: first run (empty compile and fit caches) {t1:.1f} s "
            f"(load {load1:.1f}), second run {t2:.1f} s (load {load2:.1f}): ratio first/second {t1 / t2:.2f}x "
            f"(targets <= 15 s and <= 8 s on a quiet 2-core machine)", *[f"  second run: {ln}" for ln in reuse]]


def part_sensitivity() -> list[str]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_sensitivity

    out = bench_sensitivity.run()
    return [f"prior sweep, {out['n_sets']} sets of source_hierarchical ({out['settings']['chains']} x "
            f"({out['settings']['tune']} + {out['settings']['draws']}) at {out['settings']['target_accept']:g}): "
            f"sweep {out['t_sweep']:.1f} s vs naive refits + same post-processing {out['t_naive']:.1f} s: "
            f"ratio {out['ratio']:.1f}x (target >= 5x, sweep <= 10 s); paths {out['paths']}; reweighted sets "
            f"agree with refits: {'yes' if not out['disagree'] else 'NO ' + '; '.join(out['disagree'])}"]


def part_claims(tmp: Path) -> list[str]:
    t, p = _run([sys.executable, "-m", "bayes_koa.cli", "claims"])
    if p.returncode not in (0, 3):
        return [f"claims: FAILED ({p.stderr.strip().splitlines()[-1:]})"]
    return [f"`bayes-koa claims` (5 models, warm compile cache): {t:.1f} s: ratio to the 30 s target {t / 30:.2f}"]


def part_scale(plan: dict[str, str]) -> list[str]:
    """bench_scale.py per model with its sizes (source_hierarchical at 10,000 trials takes minutes: not in the
    default plan, run it with benchmarks/bench_scale.py --models source_hierarchical --sizes 10000)."""
    out, table = [], []
    for model, sizes in plan.items():
        t, p = _run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--models", model, "--sizes", sizes,
                     "--no-summary"], timeout=3600)
        rows = [ln for ln in p.stdout.splitlines() if ln.startswith("|")]
        if not rows:
            out.append(f"scale {model}: FAILED {p.stderr[-500:]}")
            continue
        table = table or rows[:2]
        table += rows[2:]
        out += [ln for ln in p.stdout.splitlines() if "ratio" in ln]
        out.append(f"scale {model} ({sizes}): {t:.0f} s for the part")
    return table + out


def part_network() -> list[str]:
    _, p = _run([sys.executable, str(ROOT / "benchmarks" / "bench_network.py")])
    if p.returncode != 0:
        return [f"network: FAILED ({p.stderr.strip().splitlines()[-1:]})"]
    return [ln for ln in p.stdout.splitlines() if ln.strip() and not ln.startswith("SIMULATED")]


BRMS_BASELINE = ROOT / "benchmarks" / "brms_baseline.json"


def _bayes_koa_main_fit(tmp: Path) -> tuple[float, float, Path] | str:
    """One bayes_koa process fitting the main model (as brms does below): (seconds, mu mean, rows csv)."""
    script = (
        "import bayes_koa as bk, sys\n"
        "eff = bk.effect_sizes(bk.load_simulated(), measure='MD', outcomes=['VAS'])\n"
        "r = bk.fit(eff, 'source_hierarchical', outcome='VAS', time=6.0, seed=20261126, warn=False)\n"
        "r.effects[['yi', 'sei', 'cell_source']].to_csv(sys.argv[1], index=False)\n"
        "print(float(r.dt['posterior']['mu'].mean()))\n")
    csv = tmp / "effects_main.csv"
    t_py, p = _run([sys.executable, "-c", script, str(csv)])
    if p.returncode:
        return f"bayes_koa side FAILED {p.stderr[-300:]}"
    return t_py, float(p.stdout.strip().splitlines()[-1]), csv


def _brms_live(tmp: Path) -> list[str]:
    py = _bayes_koa_main_fit(tmp)
    if isinstance(py, str):
        return [f"R brms: {py}"]
    t_py, mu_py, csv = py
    load = os.getloadavg()[0]
    t_r, q = _run(["Rscript", str(ROOT / "benchmarks" / "brms_main_model.R"), str(csv)])
    if q.returncode:
        return [f"R brms: FAILED {q.stderr.strip()[-300:]}"]
    r = json.loads(q.stdout.strip().splitlines()[-1])
    ver = subprocess.run(["Rscript", "-e", "cat(as.character(packageVersion('brms')), R.version.string)"],
                         capture_output=True, text=True).stdout.strip()
    record = {"date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": "PYTHONPATH=$PWD python benchmarks/run_all.py --brms live  (part brms)",
              "load_average_at_start": round(load, 2), "cores": os.cpu_count(), "brms_and_R": ver,
              "settings": "source_hierarchical, MD, VAS month 6, SIMULATED data, 4 x (2000 + 2000) at 0.99",
              "seconds_brms_process": round(t_r, 2), "seconds_brm_call": r["seconds_fit"],
              "brms_mu_mean": r["mu_mean"], "brms_mu_sd": r["mu_sd"],
              "seconds_bayes_koa_process_same_run": round(t_py, 2), "bayes_koa_mu_mean": mu_py}
    BRMS_BASELINE.write_text(json.dumps(record, indent=1) + "\n")
    return [f"main model, one process each, 4 x (2000 + 2000) at 0.99, both measured now: bayes_koa {t_py:.1f} s vs "
            f"R brms {t_r:.1f} s (of which brm() {r['seconds_fit']:.1f} s): ratio brms/bayes_koa {t_r / t_py:.1f}x; "
            f"mu mean {mu_py:.2f} vs {r['mu_mean']:.2f} (brms sd {r['mu_sd']:.2f}); baseline written to "
            f"{BRMS_BASELINE.relative_to(ROOT)}"]


def part_brms(tmp: Path, mode: str = "cached") -> list[str]:
    if shutil.which("Rscript") is None:
        return ["R brms: skipped (Rscript not installed)"]
    if mode == "live" or not BRMS_BASELINE.exists():
        probe = subprocess.run(["Rscript", "-e", "suppressPackageStartupMessages(library(brms))"],
                               capture_output=True, text=True)
        if probe.returncode:
            return ["R brms: skipped (the R package brms is not installed)"]
        lines = [] if mode == "live" else [f"no cached brms baseline ({BRMS_BASELINE.name}): measuring brms now"]
        return lines + _brms_live(tmp)
    base = json.loads(BRMS_BASELINE.read_text())
    py = _bayes_koa_main_fit(tmp)
    if isinstance(py, str):
        return [f"R brms: {py}"]
    t_py, mu_py, _ = py
    return [f"R brms side CACHED (not this run): {base['seconds_brms_process']:.1f} s (brm() {base['seconds_brm_call']:.1f} s), "
            f"measured {base['date_utc']} by `{base['command']}` at load {base['load_average_at_start']}, "
            f"{base['brms_and_R']}; in that run bayes_koa took {base['seconds_bayes_koa_process_same_run']:.1f} s "
            f"(ratio {base['seconds_brms_process'] / base['seconds_bayes_koa_process_same_run']:.1f}x, same run)",
            f"bayes_koa side measured now: {t_py:.1f} s (mu mean {mu_py:.2f} vs brms {base['brms_mu_mean']:.2f}, brms sd "
            f"{base['brms_mu_sd']:.2f}): ratio cached brms / bayes_koa now {base['seconds_brms_process'] / t_py:.1f}x "
            f"(mixes two runs; `--brms live` measures both in one)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: main,sensitivity,claims,scale,network,brms")
    ap.add_argument("--brms", choices=("cached", "live"), default="cached",
                    help="cached: the brms side from benchmarks/brms_baseline.json (bayes_koa side live); live: both now")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    t0 = time.perf_counter()
    print(f"bayes_koa benchmarks; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; SIMULATED data")
    with tempfile.TemporaryDirectory(prefix="bk-bench-") as d:
        tmp = Path(d)
        parts = [("main", lambda: part_main_job(tmp)), ("sensitivity", part_sensitivity),
                 ("claims", lambda: part_claims(tmp)),
                 ("scale", lambda: part_scale({"random_effects": "100,1000" if args.quick else "100,1000,10000",
                                               "source_hierarchical": "100"})),
                 ("network", part_network),
                 ("brms", lambda: part_brms(tmp, args.brms))]
        for name, fn in parts:
            if name in skip:
                print(f"[{name}] skipped (--skip)")
                continue
            t = time.perf_counter()
            for line in fn():
                print(f"[{name}] {line}", flush=True)
            print(f"[{name}] part took {time.perf_counter() - t:.0f} s", flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s; load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
