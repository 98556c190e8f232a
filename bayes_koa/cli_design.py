"""``bayes-koa design``: a simulation-based design study from the command line (prints; the rest of
the package does not).

    bayes-koa design --scenarios FILE.toml --n-sims N --workers W --out DIR

``FILE.toml`` holds ``[study]`` settings and ``[[scenario]]`` tables
(:func:`bayes_koa.koa.design.read_scenarios`); without it the study runs the default scenario
(the stated truth of the shipped simulated data on the bundled real designs). Options given on the
command line win over ``[study]``. ``DIR`` receives ``store/`` (one file per finished fit: rerun the
same command to resume a killed study), ``summary.csv``, ``by_source.csv``, ``study.nc`` (every fit's
metrics), ``power_trials.png``, ``power_patients.png`` and ``report.txt``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SIM_LINE = ("SIMULATED: every number below comes from simulated meta-analyses of a stated truth "
            "(a design study), not from trial results.")

_DEFAULTS = {"n_sims": 200, "seed": 0, "model": "source_hierarchical", "paired": False}


def add_design_parser(sub) -> argparse.ArgumentParser:
    """Add the ``design`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    d = sub.add_parser("design", help="simulation-based design / power study: how sure can the ranking be?",
                       description=__doc__.split("\n\n")[0])
    d.add_argument("--scenarios", default=None, metavar="FILE.toml",
                   help="scenarios and [study] settings (default: the stated truth on the bundled design)")
    d.add_argument("--n-sims", type=int, default=None, help=f"meta-analyses per scenario (default {_DEFAULTS['n_sims']})")
    d.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    d.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a Dask scheduler address (tcp://host:8786) instead of a local cluster")
    d.add_argument("--out", required=True, help="output folder (the store inside it makes reruns resume)")
    d.add_argument("--seed", type=int, default=None, help=f"study seed (default {_DEFAULTS['seed']})")
    d.add_argument("--model", default=None, help=f"model with the source level (default {_DEFAULTS['model']})")
    d.add_argument("--design", default=None, metavar="TRIALS.csv",
                   help="a design table in the trials.csv schema (default: the bundled real designs)")
    d.add_argument("--draws", type=int, default=None)
    d.add_argument("--tune", type=int, default=None)
    d.add_argument("--chains", type=int, default=None)
    d.add_argument("--paired", action="store_true", default=None,
                   help="common random numbers across scenarios (sharper comparisons between them)")
    d.add_argument("--quiet", action="store_true", help="no progress line")
    d.set_defaults(func=design_main)
    return d


def _settings(args) -> tuple[list, dict]:
    from .koa.design import read_scenarios

    scenarios, study = (read_scenarios(args.scenarios) if args.scenarios else (None, {}))
    merged = {**_DEFAULTS, **study}
    for key in ("n_sims", "seed", "model", "design", "workers", "draws", "tune", "chains", "paired"):
        v = getattr(args, key, None)
        if v is not None:
            merged[key] = v
    if merged.get("workers") is not None and args.scheduler:
        raise ValueError("give --workers (a local cluster) or --scheduler (an existing one), not both")
    return scenarios, merged


def design_main(args) -> int:
    """Run the study of ``args`` (see the module docstring), print its summary, write its files."""
    import matplotlib
    import pandas as pd

    from .koa.design import by_source, design_study, plot_power, summary

    matplotlib.use("Agg")
    t0 = time.time()
    scenarios, st = _settings(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sampler = {k: st[k] for k in ("draws", "tune", "chains", "target_accept") if st.get(k) is not None}
    print(SIM_LINE)
    names = [s.name for s in scenarios] if scenarios else ["published (default)"]
    print(f"bayes-koa design: {len(names)} scenario(s) x {st['n_sims']} simulated meta-analyses; model "
          f"{st['model']}; seed {st['seed']}; design {st.get('design') or 'bundled real designs'}; "
          f"store {out / 'store'}")
    ds = design_study(design=st.get("design"), scenarios=scenarios, n_sims=st["n_sims"], model=st["model"],
                      seed=st["seed"], workers=st.get("workers"), client=args.scheduler, store=out / "store",
                      sampler=sampler or None, paired=bool(st["paired"]), progress=not args.quiet)
    tab, src = summary(ds), by_source(ds)
    lines = [SIM_LINE, "",
             f"Fits: {ds.attrs['new_fits']} run now, {ds.attrs['reused_fits']} taken from the store, "
             f"{ds.attrs['failed_fits']} failed, {ds.attrs['lost_fits']} lost; {ds.attrs['workers']} worker(s); "
             f"{ds.attrs['elapsed_seconds']:.1f} s",
             f"Sampler: {ds.attrs['sampler']}", ""]
    for note in json.loads(ds.attrs["notes"]):
        lines.append(f"note: {note}")
    for err in json.loads(ds.attrs["errors"]):
        lines.append(f"failed: {err}")
    show = tab[["scenario", "n_added_trials", "n_added_patients", "fits", "healthy", "true_best", "p_top_correct",
                "p_top_lower", "p_top_upper", "mean_p_best_true", "coverage", "mean_width"]]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 50):
        lines += ["", "P(correct top rank): share of meta-analyses in which the truly best source has the "
                  "largest P(best), with its 95% Clopper-Pearson interval; coverage and width of the 95% "
                  "intervals of the source effects (SMD):", show.round(3).to_string(index=False), "",
                  "By source:", src.round(3).to_string(index=False)]
    text = "\n".join(lines)
    print(text)
    tab.to_csv(out / "summary.csv", index=False)
    src.to_csv(out / "by_source.csv", index=False)
    ds.to_netcdf(out / "study.nc", engine="h5netcdf")
    plot_power(ds, x="n_added_trials", target=0.9, save=out / "power_trials.png")
    plot_power(ds, x="n_added_patients", target=0.9, save=out / "power_patients.png")
    (out / "report.txt").write_text(text + "\n")
    print(f"\nWrote summary.csv, by_source.csv, study.nc, power_trials.png, power_patients.png, report.txt to "
          f"{out}/ ({time.time() - t0:.1f} s)")
    return 0


def main(argv=None) -> int:
    """Standalone entry (the package's ``bayes-koa`` wires :func:`add_design_parser` into its parser)."""
    p = argparse.ArgumentParser(prog="bayes-koa")
    sub = p.add_subparsers(dest="command", required=True)
    add_design_parser(sub)
    args = p.parse_args(argv)
    return args.func(args)
