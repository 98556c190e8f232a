"""Command line: ``bayes-koa analyze``, ``bayes-koa effects``, ``bayes-koa sensitivity``, ``bayes-koa models``.

The only module that prints. Every command states the data it used; outputs made from simulated
data say SIMULATED in their first line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from .api.fitting import fit
from .api.result import MetaAnalysis
from .cli_design import add_design_parser
from .data import read_trials
from .effects import effect_sizes
from .analysis.checks import ParetoKWarning
from .inference.diagnostics import SamplingWarning
from .inference.sampling import SamplingInterrupted
from .kinds import load_spec
from .koa.bundled import load_koa_msc
from .koa.claims import claims_table
from .koa.simulation import load_simulated
from .spec import PriorError, list_models, list_prior_sets

PROBLEM_BANNER = ("SAMPLING PROBLEMS: the sampler diagnostics failed (above); the estimates, rankings and "
                  "claims below are NOT reliable. Exit code 3.")
EXIT_DIAGNOSTICS = 3  # the run finished but its sampler diagnostics failed
EXIT_INTERRUPTED = 130

SIM_LINE = "SIMULATED DATA (bayes_koa.simulate, documented seed): not trial results."


def _load_data(spec: str):
    """``simulated`` (default), ``bundled`` (the real extracted numbers) or ``TRIALS.csv,OUTCOMES.csv``."""
    if spec == "simulated":
        return load_simulated()
    if spec == "bundled":
        return load_koa_msc()
    parts = spec.split(",")
    if len(parts) != 2:
        raise SystemExit("--data must be 'simulated', 'bundled' or 'TRIALS.csv,OUTCOMES.csv'")
    return read_trials(parts[0], parts[1])


def _is_simulated(data) -> bool:
    return bool(getattr(data, "simulated", False))


def _priors(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--prior takes NAME=SPEC, e.g. tau='HalfNormal(sigma=0.5)'; got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _write_csv(df: pd.DataFrame, path: Path, simulated: bool, index: bool = True, comment: str | None = None) -> None:
    """A CSV table; first line ``# SIMULATED ...`` for simulated data, then ``# <comment>`` (e.g. the
    sampler diagnostics of the fit the table came from). Read back with ``pd.read_csv(path, comment="#")``."""
    with path.open("w") as fh:
        if simulated:
            fh.write(f"# {SIM_LINE}\n")
        if comment:
            fh.write(f"# {comment}\n")
        df.to_csv(fh, index=index)


def _check_out(out: str | None) -> Path | None:
    """Check the report folder before any sampling: it must be creatable and writable, not a file."""
    if not out:
        return None
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder}: is a file, not a folder")
    parent = folder.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # a real write, not os.access: as root os.access says yes to read-only mounts and folders
        fd, probe = tempfile.mkstemp(prefix=f".{folder.name}.probe.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"--out {folder}: not writable ({e.strerror or e})") from None
    if folder.exists() and not os.access(folder, os.W_OK):
        raise ValueError(f"--out {folder}: not writable")
    return folder


@contextlib.contextmanager
def _staged(folder: Path):
    """Write a report into a fresh staging folder beside ``folder``; on success it replaces ``folder`` whole.

    So a report folder is always one complete set from one run: no stale tables or plots of an earlier run,
    and an interrupted run leaves the previous report as it was.
    """
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.resolve().parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(stage, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _Tee:
    """Print and keep the text for report.txt."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


def _effects_for(data, measure: str, outcome: str | None):

    eff = effect_sizes(data, measure=measure, outcomes=[outcome] if outcome else None)
    eff.attrs["simulated"] = _is_simulated(data)
    eff.attrs["source"] = str(getattr(data, "source", ""))
    return eff


def _show_effects(out: _Tee, eff: pd.DataFrame, time_months: float | None) -> None:
    cols = [c for c in ("trial_id", "comparison", "outcome", "time_months", "yi", "sei", "n_msc", "n_control",
                        "cell_source", "origin", "estimated", "excluded_reason") if c in eff]
    show = eff if time_months is None else eff[eff["time_months"] == time_months]
    used = show[show["excluded_reason"].fillna("") == ""]
    left = show[show["excluded_reason"].fillna("") != ""]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60,
                           "display.max_rows", 500):
        out(f"Effect sizes used ({len(used)} rows):")
        out(used[cols].round(3).to_string(index=False) if len(used) else "  (none)")
        out(f"Left out ({len(left)} rows), with the reason:")
        out(left[cols].to_string(index=False) if len(left) else "  (none)")


def _compact_ranking(rank: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader needs: entity, mean rank, P(best), SUCRA [interval], P(rank = k)."""
    entity = rank.columns[0]
    out = pd.DataFrame({entity: rank[entity], "mean rank": rank["mean_rank"].round(2),
                        "P(best)": rank["p_best"].round(3),
                        "SUCRA [95% CrI]": [f"{s:.2f} [{lo:.2f}, {hi:.2f}]" for s, lo, hi in
                                            zip(rank["sucra"], rank["sucra_lower"], rank["sucra_upper"])]})
    for c in rank.columns:
        if c.startswith("P(rank=") and not c.endswith("_mcse"):
            out[c] = rank[c].round(3)
    return out


def _progress(args, what: str):
    """A progress callback ``(i, n, label)`` writing one overwritten line to stderr; None with --quiet."""
    if getattr(args, "quiet", False):
        return None
    start = time.time()

    def show(i: int, n: int, label: str = "") -> None:
        end = "\n" if i >= n else ""
        print(f"\r{what}: {i}/{n} {label[:60]:<60} {time.time() - start:5.1f} s", end=end, file=sys.stderr, flush=True)

    return show


def cmd_effects(args) -> int:
    data = _load_data(args.data)
    out = _Tee()
    if _is_simulated(data):
        out(SIM_LINE)
    out(f"data: {getattr(data, 'source', args.data)}")
    eff = _effects_for(data, args.measure, args.outcome)
    _show_effects(out, eff, args.time)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        _write_csv(eff, Path(args.out) / "effects.csv", _is_simulated(data), index=False)
        out(f"wrote {Path(args.out) / 'effects.csv'}")
    return 0


def cmd_models(args) -> int:


    for name in list_models():
        try:
            print(load_spec(name, measure=args.measure).describe())
        except PriorError:  # e.g. the adverse-event model has priors on the logOR scale only
            print(load_spec(name, measure="logOR").describe())
        print()
    print("prior sets:", ", ".join(list_prior_sets()) or "(none)")
    return 0


def _model_kind(model: str) -> str:
    """The ``[structure] kind`` of a model file (name or path), read without resolving its priors."""
    import tomllib

    from .spec.files import model_path

    try:
        return str(tomllib.loads(model_path(model).read_text()).get("structure", {}).get("kind", ""))
    except Exception:  # an unknown model: the fit below says what is wrong
        return ""


def _start_analyze(args, model_note: str = ""):
    """The start every ``analyze`` shares: the report folder checked before any work, the data read, the
    SIMULATED line and the header line. Returns (start time, output tee, data, simulated)."""
    t0 = time.time()
    _check_out(args.out)
    out = _Tee()
    data = _load_data(args.data)
    simulated = _is_simulated(data)
    if simulated:
        out(SIM_LINE)
    out(f"bayes-koa analyze: data {getattr(data, 'source', args.data)}; outcome {args.outcome} at month "
        f"{args.time:g}; measure {args.measure}; model {args.model}{model_note}")
    return t0, out, data, simulated


def _fit_cache_line(res) -> str:
    """One line: the draws came from the fit cache (which file, fitted when) or were sampled now and stored."""
    rec = res.provenance.get("fit_cache")
    if not rec:
        return "Fit cache: off (sampled now, not stored)"
    if rec.get("reused"):
        return (f"Fit cache: reused the draws fitted {rec.get('fitted', '?')} ({rec.get('path', '')}); "
                "nothing was sampled (--refit samples again)")
    return f"Fit cache: sampled now and stored ({rec.get('path') or 'not stored: see the log'})"


def _process_seconds() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included); None off Linux."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # clock ticks after boot
        boot = next(float(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines()
                    if ln.startswith("btime"))
        return time.time() - (boot + started)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _elapsed_line() -> str:
    """The whole run's time, printed last (after plots, result.nc and report.html were written)."""
    from .inference import fit_cache

    s = _process_seconds()
    st = fit_cache.STATS
    fits = (f"; fit cache: {st.get('hits', 0)} fit(s) reused, {st.get('stored', 0)} sampled and stored"
            + (f", {st['rejected']} damaged entr(ies) refitted" if st.get("rejected") else ""))
    return (f"Elapsed {s:.1f} s (whole process, report written{fits})" if s is not None
            else f"Elapsed: see the shell's timer{fits}")


POOLED_MODEL = "source_hierarchical"  # the main job's pooled model: beside the network, and its fallback


def _pooled_fit(data, args, quiet: bool = True):
    """The pooled source model on the same data, outcome and time (beside the network, or its fallback)."""
    eff = _effects_for(data, args.measure, args.outcome)
    return fit(eff, POOLED_MODEL, outcome=args.outcome, time=args.time, seed=args.seed, draws=args.draws,
               tune=args.tune, chains=args.chains, progress=not quiet, warn=False)


def _diag_comment(flag: dict, model: str) -> str:
    from .api.network_report import diagnostics_line

    return diagnostics_line(flag, model)


def _analyze_network(args, fallback: bool = False) -> int:
    """``analyze`` with the network model (the default main job, or ``--model network``): the KOA arm table
    as a network (comparators as nodes, MSC treatments nested in source and origin); source effects
    against placebo, ranks, league table, inconsistency, LOO and PPC by trial, the claims re-based on
    the network, and beside it the pooled source model with why the two differ.

    ``fallback`` (the default main job): when the network cannot be used (the data do not make a
    connected network, its sampling failed, or too few comparator data: ``koa.network.network_unusable``)
    say why in one line and run the pooled job instead.
    """
    import warnings

    from .koa.network import network_arms, network_unusable, network_vs_pooled

    t0, out, data, simulated = _start_analyze(args, " (network meta-analysis)")
    sim = " (SIMULATED)" if simulated else ""
    caught: list = []
    try:
        arms = network_arms(data, args.outcome, args.time, measure=args.measure)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SamplingWarning)
            out(f"Sampling (seed {args.seed}; sampler settings: "
                f"{'the kind default' if args.draws is None else args.draws} draws) ...")
            t_fit = time.time()
            res = fit(arms, args.model, priors=_priors(args.prior), measure=args.measure, study="study",
                      treatment="treatment", outcome=args.outcome, time=args.time, seed=args.seed, draws=args.draws, tune=args.tune, chains=args.chains,
                      progress=not args.quiet)
            t_fit = time.time() - t_fit
        why_not = network_unusable(res) if fallback else None
    except ValueError as e:  # disconnected network, no usable rows, ...
        if not fallback or isinstance(e, PriorError):  # a user's prior is wrong for every model: say so
            raise
        why_not = str(e).splitlines()[0]
        usable = arms[(arms["excluded_reason"] == "") & (arms["arm_role"] == "msc")] if "arms" in locals() else None
        if usable is not None and usable.empty:
            why_not = (f"no MSC arm has usable {args.outcome} values at month {args.time:g} (bayes_koa.koa.network."
                       "network_arms lists each arm's reason)")
    if why_not:
        out(f"The network model cannot be used ({why_not}); falling back to the pooled model {POOLED_MODEL}.")
        args.model = POOLED_MODEL
        return _analyze_pooled(args, started=(t0, out, data, simulated))
    for w in caught:
        if not issubclass(w.category, SamplingWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    st = res.provenance["sampler_settings"]
    reused = bool(res.provenance.get("fit_cache", {}).get("reused"))
    out(f"{'Draws of' if reused else 'Sampled'} {st['chains']} chains x ({st['tune']} tune + {st['draws']} draws) "
        f"at target_accept {st['target_accept']:g}, {'read from the fit cache' if reused else 'fitted'} in {t_fit:.1f} s")
    out(_fit_cache_line(res))
    out("")
    out(res.spec.describe())
    nodes, edges = res.network_graph()
    out(f"\nNetwork{sim}: {len(nodes)} treatments, {res.effects['nma_trial'].nunique()} trials, {len(edges)} directly "
        f"compared pairs; {len(res.excluded)} rows left out")
    flag = res._diagnostics_flag()
    dline = _diag_comment(flag, res.spec.name)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500,
                           "display.max_colwidth", 80):
        out(nodes.to_string(index=False))
        diag = res.diagnostics()
        probs = diag.attrs["problems"]
        out(f"\nDiagnostics: {diag.attrs['divergences']} divergences; max R-hat {diag['r_hat'].max():.3f}; "
            f"min bulk ESS {diag['ess_bulk'].min():.0f}")
        out("  OK" if not probs else "  PROBLEMS:\n  - " + "\n  - ".join(probs))
        if probs:
            out(PROBLEM_BANNER)
        summ = res._with_diagnostics(res.summary(include_trials=False))
        league = res._with_diagnostics(res.league())
        ref = league.attrs["reference"]
        out(f"\nPosterior summary{sim} (effects against {ref}; negative = benefit; 95% equal-tailed intervals):")
        cols = ["what", "mean", "eti95_lb", "median", "eti95_ub", "p_benefit", "n_comparisons"]
        out(summ[[c for c in cols if c in summ]].round(3).to_string())
        rankings = {}
        for level, what in (("source", "cell sources"), ("origin", "source x origin cells"), ("treatment", "all nodes")):
            if level not in res.kind.rank_levels(res.spec) and level != "origin":
                continue
            try:
                rankings[level] = res.rank(level)
            except ValueError:
                continue
            out(f"\nRanking of {what}{sim} (rank 1 = largest benefit; SUCRA with its 95% interval; P(rank = k)):")
            out(_compact_ranking(rankings[level]).to_string(index=False))
        out(f"\nLeague table{sim}: row minus column, mean (95% interval):")
        wide = res.league(wide=True, digits=1)
        out(wide.to_string())
        ind = res.indirect_only()
        out(f"\nInformed only indirectly (no trial compares them): {len(ind)} of {len(league) // 2} pairs")
        check = res.inconsistency()
        out(f"\nInconsistency check{sim}: {check.statement}")
        with warnings.catch_warnings():  # high Pareto k is in the table (column high_k), not a warning
            warnings.simplefilter("ignore", ParetoKWarning)
            loo = res._with_diagnostics(res.loo())
            ppc = res._with_diagnostics(res.ppc())
        out(f"\nPSIS-LOO by trial{sim} (a trial's arms left out together): elpd_loo {loo.attrs['elpd_loo']:.1f} "
            f"(SE {loo.attrs['se']:.1f}); Pareto k > {loo.attrs['k_threshold']:.2g} for {loo.attrs['n_high_k']} of "
            f"{len(loo)} trials{': ' + ', '.join(loo.attrs['high_k_trials']) if loo.attrs['high_k_trials'] else ''}; "
            f"posterior predictive check by trial: {int(ppc['flag'].sum())} flagged"
            + (f", LOO-PIT {int(ppc['loo_flag'].sum())} flagged" if "loo_flag" in ppc else ""))
        claims = res.claims()
        out(f"\nThe 2023 paper's conclusions re-based on the network{sim} (sources and origin cells against {ref}):")
        out(claims[["claim", "probability", "mc_se", "interpretation"]].round(3).to_string(index=False))
        beside, pooled, beside_note = None, None, ""
        try:
            t_pool = time.time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SamplingWarning)  # its diagnostics are printed with its table
                pooled = _pooled_fit(data, args)
            t_pool = time.time() - t_pool
            beside = network_vs_pooled(res, pooled)
        except ValueError as e:  # e.g. fewer than two sources in the pooled data
            beside_note = f"the pooled model {POOLED_MODEL} was not fitted beside it ({str(e).splitlines()[0]})"
            out(f"\n{beside_note}")
        if beside is not None:
            pflag = pooled._diagnostics_flag()
            out(f"\nBeside it, the pooled model {POOLED_MODEL} (MSC minus whatever control; fitted in {t_pool:.1f} s)"
                f"{sim}:")
            show = pd.DataFrame({
                "source": beside["source"],
                f"network vs {ref} [95% CrI]": [f"{m:.1f} [{lo:.1f}, {hi:.1f}]" for m, lo, hi in
                                                zip(beside["network_mean"], beside["network_lower"], beside["network_upper"])],
                "network P(best)": beside["network_p_best"].round(3),
                "pooled vs control [95% CrI]": [f"{m:.1f} [{lo:.1f}, {hi:.1f}]" for m, lo, hi in
                                                zip(beside["pooled_mean"], beside["pooled_lower"], beside["pooled_upper"])],
                "pooled P(best)": beside["pooled_p_best"].round(3),
                "comparators (MSC-comparator pairs)": beside["comparators"],
                "comparator offset": beside["comparator_offset"].round(1)})
            out(show.to_string(index=False))
            out(f"  {_diag_comment(pflag, POOLED_MODEL)}")
            out("Why they differ: " + beside.attrs["statement"])
            for w in beside["why"]:
                out(f"  - {w}")
    out(f"\nComputed in {time.time() - t0:.1f} s (before the report files; the whole run: the last line)")
    if args.out:
        from .api.network_report import figures, render_network_report
        from .api.report import write_report

        with _staged(Path(args.out)) as folder:
            def csv(df, name, index=False, line=dline):
                _write_csv(df, folder / name, simulated, index=index, comment=line)

            csv(summ, "summary.csv", index=True)
            csv(diag, "diagnostics.csv", index=True)
            csv(league, "league.csv")
            csv(res.league(wide=True, digits=2), "league_wide.csv", index=True)
            for level, table in rankings.items():
                csv(table, "ranking.csv" if level == "source" else f"ranking_{level}.csv")
            if "source" in rankings:
                csv(res.rank_probabilities("source").to_pandas(), "rank_probabilities.csv", index=True)
            csv(nodes, "network_nodes.csv")
            csv(edges, "network_edges.csv")
            csv(ind, "indirect_only.csv")
            inc = check.pairs if check.pairs is not None else pd.DataFrame({"statement": [check.statement]})
            csv(inc, "inconsistency.csv")
            if check.comparison is not None:
                csv(check.comparison, "inconsistency_loo.csv", index=True)
            csv(loo, "loo.csv")
            csv(ppc, "ppc.csv")
            csv(claims, "claims.csv")
            if beside is not None:
                both = f"{dline}; {_diag_comment(pooled._diagnostics_flag(), POOLED_MODEL)}"
                csv(beside, "network_vs_pooled.csv", line=both)
                csv(pooled.rank("source"), "pooled_ranking.csv", line=_diag_comment(pooled._diagnostics_flag(), POOLED_MODEL))
            csv(res.priors, "priors.csv", line=None)
            csv(arms, "arms.csv", line=None)
            csv(res.excluded, "excluded.csv", line=None)
            figs, missing = figures(res)
            import base64

            for name, png in figs.items():
                (folder / f"{name}.png").write_bytes(base64.b64decode(png))
            for name, why in missing.items():
                out(f"plot {name} not drawn ({why})")
            res.save(folder / "result.nc")
            (folder / "report.txt").write_text("\n".join(out.lines) + "\n")
            write_report(render_network_report({
                "result": res, "summary": summ, "rankings": rankings, "league": wide, "indirect": ind,
                "inconsistency": check, "claims": claims, "beside": beside, "beside_note": beside_note,
                "pooled_model": POOLED_MODEL, "pooled_flag": pooled._diagnostics_flag() if pooled is not None else None,
                "loo": loo, "ppc": ppc, "figures": figs, "log_text": "\n".join(out.lines)}), folder / "report.html")
        print(f"Report written to {args.out}/ (report.html, summary, ranking, league, inconsistency, loo, ppc, claims, "
              "network_vs_pooled, network.png, result.nc, report.txt)")
    print(_elapsed_line())
    if probs:
        print(PROBLEM_BANNER, file=sys.stderr)
        return EXIT_DIAGNOSTICS
    return 0


def cmd_analyze(args) -> int:
    """``analyze``: the network model by default (falling back to the pooled model with the reason),
    or the model named by ``--model``."""
    if args.model is None:
        args.model = "network"
        return _analyze_network(args, fallback=True)
    if _model_kind(args.model) == "network":
        return _analyze_network(args)
    return _analyze_pooled(args)


def _analyze_pooled(args, started=None) -> int:
    import warnings

    t0, out, data, simulated = started if started is not None else _start_analyze(args)
    eff = _effects_for(data, args.measure, args.outcome)
    if hasattr(data, "trials"):  # publication year and primary/secondary source, for the report's refits
        from .effects.trial_info import with_trial_columns

        eff = with_trial_columns(eff, data, extra=[args.risk_of_bias] if args.risk_of_bias else [])
    _show_effects(out, eff, args.time)
    priors = _priors(args.prior)
    out("")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        out(f"Sampling (seed {args.seed}) ...")
        res = fit(eff, args.model, priors=priors, outcome=args.outcome, time=args.time, seed=args.seed,
                  draws=args.draws, tune=args.tune, chains=args.chains, progress=not args.quiet)
    st = res.provenance["sampler_settings"]
    out(_fit_cache_line(res))
    reused = bool(res.provenance.get("fit_cache", {}).get("reused"))
    out(f"{'Draws of' if reused else 'Sampled'} {st['chains']} chains x ({st['tune']} tune + {st['draws']} draws) "
        f"at target_accept {st['target_accept']:g} (" + ", ".join(f"{k} from {v}" for k, v in st.get("from", {}).items()) + ")")
    out("")
    out(res.spec.describe())
    out("")
    diag = res.diagnostics()
    probs = diag.attrs["problems"]
    out(f"Diagnostics: {diag.attrs['divergences']} divergences; max R-hat {diag['r_hat'].max():.3f}; "
        f"min bulk ESS {diag['ess_bulk'].min():.0f}; min tail ESS {diag['ess_tail'].min():.0f}")
    out("  OK" if not probs else "  PROBLEMS:\n  - " + "\n  - ".join(probs))
    for note in diag.attrs.get("notes", []):
        out(f"  note: {note}")
    if probs:
        out("")
        out(PROBLEM_BANNER)
    for w in caught:
        if not issubclass(w.category, SamplingWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if len(res.excluded):
        out(f"Left out of this fit: {len(res.excluded)} rows (see excluded.csv)")
    summ = res.summary()
    unit = "mm on a 0-100 VAS" if args.measure == "MD" and args.outcome == "VAS" else args.measure
    out("")
    out(f"Posterior summary ({unit}; negative = favours MSC; 95% equal-tailed intervals):")
    cols = ["what", "mean", "eti95_lb", "median", "eti95_ub", "p_benefit", "n_comparisons"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 200):
        s = summ[[c for c in cols if c in summ]]
        out(s[~s.index.str.startswith("theta[")].round(3).to_string())
        out("")
        n_sources = len(res.dt["posterior"]["source"]) if "source" in res.dt["posterior"].coords else 0
        has_groups = "source" in res.kind.rank_levels(res.spec)
        if has_groups and n_sources >= 2:
            out("Ranking of cell sources (rank 1 = largest benefit; SUCRA with its 95% interval):")
            out(_compact_ranking(res.rank("source")).to_string(index=False))
            out("")
        elif has_groups:
            out(f"Ranking of cell sources: not possible, the data have {n_sources} source(s) with trials.")
            out("")
        weak = res.contraction()
        weak = weak[weak["weak"]]
        if len(weak):
            out("What these data cannot tell (posterior barely narrower than the prior, contraction < 0.2):")
            out(weak.round(3).to_string())
            out("")
        claims = res.claims()
        out("The 2023 paper's conclusions as posterior probabilities (this model and data):")
        out(claims[["claim", "probability", "mc_se", "interpretation"]].round(3).to_string(index=False))
    parts = None
    if args.out:
        from .api.report import report_parts

        t_rep = time.time()
        parts = report_parts(res, refits=args.refits, mcid=args.mcid, risk_of_bias=args.risk_of_bias,
                             claims=claims, progress=_progress(args, f"report refits ({args.refits})"))
        het, pm = parts.get("heterogeneity"), parts.get("p_mcid")
        if het is not None:
            t = het.loc[("total", "I2")]
            out(f"I^2 (total): {t['mean']:.2f} [{t['lower']:.2f}, {t['upper']:.2f}]")
        if pm is not None:
            info = parts["mcid_info"]
            out(f"P(overall benefit > MCID {abs(info['mcid']):g}): {pm.iloc[0]['p_benefit_gt_mcid']:.3f} "
                f"(MCID source: {info.get('citation', info.get('source', ''))[:90]})")
        if parts.get("small_study") is not None:
            for _, r in parts["small_study"].iterrows():
                if pd.notna(r.get("pvalue")):
                    out(f"{r['test']}: {r['stat_type']} = {r['statistic']:.2f}, p = {r['pvalue']:.3f}")
        for k, why in parts["missing"].items():
            out(f"report.html: {k} not shown ({why})")
        out(f"Report tables and refits ({args.refits}): {time.time() - t_rep:.1f} s")
    out(f"\nFit and tables: {time.time() - t0:.1f} s")
    if args.out:
        with _staged(Path(args.out)) as folder:
            _write_csv(summ, folder / "summary.csv", simulated)
            _write_csv(diag, folder / "diagnostics.csv", simulated)
            _write_csv(res.priors, folder / "priors.csv", simulated, index=False)
            _write_csv(eff, folder / "effects.csv", simulated, index=False)
            _write_csv(res.excluded, folder / "excluded.csv", simulated, index=False)
            _write_csv(claims, folder / "claims.csv", simulated, index=False)
            _write_csv(res.contraction(), folder / "contraction.csv", simulated)
            if has_groups and n_sources >= 2:
                _write_csv(res.rank("source"), folder / "ranking.csv", simulated, index=False)
                _write_csv(res.rank_probabilities("source").to_pandas(), folder / "rank_probabilities.csv", simulated)
                pw = res.pairwise("source")
                _write_csv(pw if isinstance(pw, pd.DataFrame) else pw.to_pandas(), folder / "pairwise.csv", simulated)
            try:
                import matplotlib

                matplotlib.use("Agg")
                drawn = (parts or {}).get("png", {})  # the report drew these already: same figure, same bytes
                for name, draw in (("forest", res.plot_forest),
                                   ("rankogram", res.plot_rankogram if has_groups and n_sources >= 2 else None)):
                    if name in drawn:
                        (folder / f"{name}.png").write_bytes(drawn[name])
                    elif draw is not None:
                        draw(save=folder / f"{name}.png")
                if has_groups and n_sources >= 2:
                    res.plot_densities(save=folder / "source_densities.png")
            except ImportError as e:  # plots module not available
                out(f"plots skipped: {e}")
            res.save(folder / "result.nc")
            (folder / "report.txt").write_text("\n".join(out.lines) + "\n")
            from .api.report import write_report

            for name in ("heterogeneity", "predictions", "p_mcid", "small_study", "cumulative"):
                if parts.get(name) is not None:
                    _write_csv(parts[name], folder / f"{name}.csv", simulated, index=name == "heterogeneity")
            if parts.get("evidence") is not None:
                _write_csv(parts["evidence"].scenarios, folder / "evidence_scenarios.csv", simulated, index=False)
                _write_csv(parts["evidence"].conclusions, folder / "evidence_conclusions.csv", simulated, index=False)
            if parts.get("pet") is not None:
                _write_csv(parts["pet"][0], folder / "pet_ranking.csv", simulated, index=False)
            parts["log_text"] = "\n".join(out.lines)
            write_report(parts, folder / "report.html")
        print(f"Report written to {args.out}/ (report.html, summary, ranking, diagnostics, priors, effects, plots, result.nc)")
    print(_elapsed_line())
    if probs:
        print(PROBLEM_BANNER, file=sys.stderr)
        return EXIT_DIAGNOSTICS
    return 0


# The models behind each of the paper's claims: (model, measure, outcome, time) on the chosen data.
CLAIM_MODELS = (
    ("source_hierarchical", "MD", "VAS", 6.0),
    ("source_origin", "MD", "VAS", 6.0),
    ("source_regression", "MD", "VAS", 6.0),
    ("time_course", "SMD", "VAS", None),
    ("safety", "logOR", "AE_any", None),
)


def cmd_claims(args) -> int:
    _check_out(args.out)
    """Fit the models each claim needs, print the claims table with a model check per model."""
    import warnings


    out = _Tee()
    data = _load_data(args.data)
    simulated = _is_simulated(data)
    if simulated:
        out(SIM_LINE)
    out(f"bayes-koa claims: data {getattr(data, 'source', args.data)}")
    results, checks, failed = [], [], []
    show = _progress(args, "claims models")
    for i, (model, measure, outcome, when) in enumerate(CLAIM_MODELS):
        if show:
            show(i + 1, len(CLAIM_MODELS), f"fitting {model}")
        eff = _effects_for(data, measure, outcome)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SamplingWarning)  # reported below, per model
            try:
                res = fit(eff, model, outcome=outcome if when is not None else None, time=when,
                          seed=args.seed, draws=args.draws, tune=args.draws, groups=())
            except ValueError as e:  # e.g. the data have no rows this model can use
                out(f"{model}: not fitted ({e})")
                continue
        results.append(res)
        diag = res.diagnostics()
        with warnings.catch_warnings():  # high Pareto k is reported in the table, not as a warning
            warnings.simplefilter("ignore", ParetoKWarning)
            loo = res.loo()
            ppc = res.ppc()
        if diag.attrs["problems"]:
            failed.append(model)
        checks.append({"model": model, "measure": measure, "outcome": outcome,
                       "time": "all" if when is None else f"{when:g}", "rows used": len(res.effects),
                       "divergences": diag.attrs["divergences"], "max R-hat": round(float(diag["r_hat"].max()), 3),
                       "min ESS": int(diag["ess_bulk"].min()),
                       "Pareto k > 0.7": int(loo["high_k"].sum()) if "high_k" in loo else 0,
                       "PPC flags": int(ppc["flag"].sum()) if "flag" in ppc else 0})
    if not results:
        out("no model could be fitted to these data")
        return 2
    table = claims_table(results)
    with pd.option_context("display.width", 220, "display.max_colwidth", 70, "display.max_columns", 20):
        out("")
        out("Model checks (sampler diagnostics, PSIS-LOO Pareto k, posterior predictive flags):")
        out(pd.DataFrame(checks).to_string(index=False))
        out("")
        out("The 2023 paper's conclusions as posterior probabilities, each from the model that estimates it:")
        out(table[["claim", "probability", "mc_se", "interpretation", "model", "measure", "outcome",
                   "time_months"]].round(3).to_string(index=False))
    if args.out:
        with _staged(Path(args.out)) as folder:
            _write_csv(table, folder / "claims_all_models.csv", simulated, index=False)
            _write_csv(pd.DataFrame(checks), folder / "model_checks.csv", simulated, index=False)
            (folder / "claims_report.txt").write_text("\n".join(out.lines) + "\n")
            print(f"Wrote claims_all_models.csv, model_checks.csv, claims_report.txt to {folder}/")
    if failed:
        print(f"{PROBLEM_BANNER} (models: {', '.join(failed)})", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    return 0


def cmd_sensitivity(args) -> int:
    _check_out(args.out)
    """``bayes-koa sensitivity``: fit, sweep the prior sets, print and write the results."""
    import warnings

    t0 = time.time()
    data = _load_data(args.data)
    simulated = bool(getattr(data, "simulated", False))
    if simulated:
        print(SIM_LINE)
    print(f"bayes-koa sensitivity: data {getattr(data, 'source', args.data)}; outcome {args.outcome} at month "
          f"{args.time:g}; measure {args.measure}; model {args.model}")
    eff = _effects_for(data, args.measure, args.outcome)
    sets = [s.strip() for s in args.prior_sets.split(",") if s.strip()] if getattr(args, "prior_sets", None) else None
    tune = getattr(args, "tune", None) or args.draws  # as the main job: tune = draws (None: the kind's setting)
    show = _progress(args, "sensitivity")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        if show:
            show(1, 2, "reference fit")
        res = fit(eff, args.model, outcome=args.outcome, time=args.time, seed=args.seed, draws=args.draws,
                  tune=tune, chains=args.chains)
        if show:
            show(2, 2, f"sweep of {len(sets) if sets else 'all'} prior sets (compiled once per prior family)")
        st = res.provenance["sampler_settings"]
        print(f"Reference fit: {len(res.effects)} comparisons used, {len(res.excluded)} left out; seed {args.seed}, "
              f"{st['chains']} chains x {st['draws']} draws at target_accept {st['target_accept']:g}")
        sweep = res.sensitivity(sets, method=args.method)
    for w in caught:
        print(f"warning: {w.message}")
    print("")
    print("Prior sets and their resolved priors (the set's priors win; the rest as in the model file):")
    wide_priors = sweep.priors.pivot(index="prior_set", columns="parameter", values="prior")
    wide_priors = wide_priors.reindex(index=sweep.prior_sets, columns=list(res.spec.parameters))
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 60,
                           "display.max_rows", 500):
        print(wide_priors.to_string())
        if len(sweep.skipped):
            print("Skipped: " + "; ".join(f"{r.prior_set} ({r.reason})" for r in sweep.skipped.itertuples()))
        print("")
        print(f"Posterior under each prior set ({res.spec.measure}; negative = favours MSC; "
              "mean [95% interval]; probabilities):")
        print(sweep.wide().to_string())
        print("")
        print("Paths: " + "; ".join(f"{r.prior_set}: {r.path}" for r in sweep.runs.itertuples()))
        print(f"Claims: {sweep.table.attrs['claims']}")
        flips = sweep.flips()
        print("")
        print(f"Flips relative to the reference ({len(flips)}):")
        print(flips.to_string(index=False) if len(flips) else "  (none)")
    print("")
    print(sweep.summary_text())
    print(f"\nElapsed {time.time() - t0:.1f} s (sweep {sweep.table.attrs['seconds']:.1f} s, "
          f"{sweep.table.attrs['compiled_models']} new compiled model(s))")
    if args.out:
        with _staged(Path(args.out)) as folder:
            _write_csv(sweep.table, folder / "sensitivity.csv", simulated, index=False)
            _write_csv(flips, folder / "flips.csv", simulated, index=False)
            _write_csv(sweep.priors, folder / "sensitivity_priors.csv", simulated, index=False)
            import matplotlib

            matplotlib.use("Agg")
            sweep.plot(save=folder / "sensitivity.png")
            print(f"Wrote sensitivity.csv, flips.csv, sensitivity_priors.csv, sensitivity.png to {folder}/")
    bad = [r for r in sweep.runs.itertuples() if str(r.problems or "")] if hasattr(sweep, "runs") else []
    names = (["reference"] if res.diagnostics().attrs["problems"] else []) + [r.prior_set for r in bad]
    if names:
        print(f"{PROBLEM_BANNER} (prior sets: {', '.join(dict.fromkeys(names))})", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    return 0


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bayes-koa", description="Bayesian meta-analysis of MSC injections for knee OA")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, measure_default="MD"):
        sp.add_argument("--data", default="simulated",
                        help="'simulated' (default: the shipped SIMULATED dataset), 'bundled' (the real "
                             "extracted trial numbers) or 'TRIALS.csv,OUTCOMES.csv'")
        sp.add_argument("--outcome", default="VAS")
        sp.add_argument("--time", type=float, default=6.0, help="months after injection")
        sp.add_argument("--measure", default=measure_default, help="MD or SMD (or logOR for adverse events)")
        sp.add_argument("--out", default=None, help="report folder")

    a = sub.add_parser("analyze", help="fit a model and rank cell sources")
    common(a)
    a.add_argument("--model", default=None,
                   help="default: the network meta-analysis (model network) with the pooled source_hierarchical "
                        "beside it; the pooled model instead, with the reason, when the network cannot be used")
    a.add_argument("--prior", action="append", metavar="NAME=SPEC",
                   help="e.g. --prior tau='HalfNormal(sigma=10)' (repeatable); wins over the model file")
    a.add_argument("--seed", type=int, default=20261126)
    a.add_argument("--draws", type=_count(1), default=None, help="default: the model kind's measured setting")
    a.add_argument("--tune", type=_count(0), default=None, help="default: the model kind's measured setting")
    a.add_argument("--chains", type=_count(1), default=None, help="default: 4")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.add_argument("--refit", action="store_true",
                   help="sample every fit again instead of reusing the fit cache's draws of an identical earlier "
                        "run (BAYES_KOA_FIT_CACHE=off switches the cache off)")
    a.add_argument("--refits", choices=("quick", "fit", "none"), default="quick",
                   help="report.html's refits (evidence sensitivity, cumulative, PET model): 'quick' (default: "
                        "2 chains x 400 draws on the fit's compiled model), 'fit' (the fit's settings) or 'none'")
    a.add_argument("--mcid", type=float, default=None,
                   help="minimal clinically important difference in the measure's units (default: the shipped, "
                        "sourced MCID for the outcome and scale, if any)")
    a.add_argument("--risk-of-bias", default=None, metavar="COLUMN",
                   help="a trials-table column of risk-of-bias judgements: the report refits without the "
                        "highest-risk trials ('high', or the largest number)")
    a.set_defaults(func=cmd_analyze)

    e = sub.add_parser("effects", help="print the effect-size table, with every left-out row and its reason")
    common(e)
    e.set_defaults(func=cmd_effects, time=None)

    s = sub.add_parser("sensitivity", help="refit under named prior sets and show which conclusions flip")
    common(s)
    s.add_argument("--model", default="source_hierarchical")
    s.add_argument("--prior-sets", default=None, help="comma-separated names (default: all that fit the measure)")
    s.add_argument("--seed", type=int, default=20261126)
    s.add_argument("--draws", type=_count(1), default=None, help="default: the model kind's measured setting")
    s.add_argument("--chains", type=_count(1), default=None, help="default: 4")
    s.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    s.add_argument("--method", default="psis", choices=("psis", "auto", "mcmc", "exact"),
                   help="psis (default): reweight the fitted draws, refit where Pareto k is high; "
                        "auto: exact quadrature where possible, else refit every set")
    s.set_defaults(func=cmd_sensitivity)

    c = sub.add_parser("claims", help="fit the models behind each of the paper's claims and print the claims table")
    c.add_argument("--data", default="simulated")
    c.add_argument("--out", default=None)
    c.add_argument("--seed", type=int, default=20261126)
    c.add_argument("--draws", type=_count(1), default=None,
                   help="draws = tune per model (default: each model kind's measured setting)")
    c.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    c.set_defaults(func=cmd_claims)

    add_design_parser(sub)  # bayes-koa design: simulation-based design and power studies (Dask)

    m = sub.add_parser("models", help="list model files, their resolved priors, and the prior sets")
    m.add_argument("--measure", default="SMD")
    m.set_defaults(func=cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 2 bad input (one line on stderr); 3 done but the sampler diagnostics failed;
    130 interrupted (nothing written)."""
    args = parser().parse_args(argv)
    from .inference import fit_cache

    try:
        with fit_cache.mode("refit" if getattr(args, "refit", False) else "use"):
            return args.func(args)
    except (ValueError, OSError) as e:  # data, prior, model and file errors: say what and stop
        if isinstance(e, BrokenPipeError):
            raise
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SamplingInterrupted) as e:
        print(f"interrupted: {e or 'Ctrl-C'}; no report was written (an earlier report is kept as it was)",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The console script: ``main`` plus a quiet exit when the output pipe closes (``| head``)."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
