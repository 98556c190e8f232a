"""``report.html``: one self-contained page of a fit (tables, plots as base64 PNG, no script, no link).

:func:`report_parts` computes what the page shows from a :class:`~bayes_koa.api.result.MetaAnalysis`
(each part either a table or the reason it is missing); :func:`render_report` turns the parts into
HTML; :func:`write_report` writes it atomically (a temporary file in the same folder, then renamed).

Expensive parts (refits: evidence sensitivity, cumulative meta-analysis, the PET small-study model)
follow ``refits``: ``"quick"`` (default: masked refits on the fit's compiled model, 2 chains x 400
draws, :mod:`bayes_koa.workflows.evidence`), ``"fit"`` (the fit's own sampler settings) or ``"none"``
(skipped, the page says so). The page says which was used.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..inference.diagnostics import SamplingWarning
from ..workflows.evidence import QUICK

__all__ = ["report_parts", "render_report", "write_report", "REFIT_MODES"]

REFIT_MODES = ("quick", "fit", "none")
SIM_BANNER = ("SIMULATED DATA: every number on this page comes from data simulated by bayes_koa.simulate "
              "on the real trial designs, not from trial results.")


def _png_bytes(fig) -> bytes:
    """The figure as PNG at the plots' file resolution (150 dpi), closed after: the page embeds these
    bytes and the CLI writes the same bytes to forest.png etc. (one render per figure, not two)."""
    import matplotlib.pyplot as plt

    from ..plots.figures import DPI

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _png(fig) -> str:
    return base64.b64encode(_png_bytes(fig)).decode("ascii")


def _try(parts: dict, key: str, fn: Callable, errors=(Exception,)):
    """``parts[key] = fn()``; a part that fails is None and its error is listed on the page (and by the CLI):
    one failing section must not lose the rest of the report."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SamplingWarning)  # refit problems are in each table's note column
            parts[key] = fn()
    except errors as e:
        parts[key] = None
        parts.setdefault("missing", {})[key] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def report_parts(result, *, refits: str = "quick", mcid: float | None = None, risk_of_bias: str | None = None,
                 claims: pd.DataFrame | None = None, log_text: str = "",
                 progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Everything the page shows. ``mcid``: a user MCID (default: the shipped, sourced one for the
    outcome and scale, if any); ``risk_of_bias``: a column of the effect table for the evidence
    sensitivity; ``claims``: the claims table when the caller already has it; ``progress(i, n, what)``."""
    if refits not in REFIT_MODES:
        raise ValueError(f"refits must be one of {REFIT_MODES}; got {refits!r}")
    import matplotlib

    matplotlib.use("Agg")
    t0 = time.time()
    p: dict = {"result": result, "refits": refits, "log_text": log_text, "missing": {}, "seconds": {}}
    p["summary"] = result.summary(include_trials=False)
    p["diagnostics"] = result.diagnostics()
    p["priors"] = result.priors
    p["provenance"] = result.provenance
    _try(p, "heterogeneity", result.heterogeneity)
    _try(p, "predictions", result.predictions)
    info = result.default_mcid() if mcid is None else None
    p["mcid_info"] = info or ({"mcid": float(mcid), "source": "given by the user (--mcid)"} if mcid is not None else None)
    if p["mcid_info"] is None:
        p["missing"]["p_mcid"] = (f"no shipped MCID for outcome {result.provenance.get('outcome')!r} on measure "
                                  f"{result.spec.measure}: give --mcid")
        p["p_mcid"] = None
    else:
        _try(p, "p_mcid", lambda: result.p_mcid(p["mcid_info"]["mcid"]))
    _try(p, "small_study", result.small_study)
    levels = result.kind.rank_levels(result.spec)
    _try(p, "ranking", lambda: result.rank() if levels else None)
    p["claims"] = claims
    figs, png = {}, {}
    p["png"] = png  # name -> PNG bytes of the figures drawn here (forest, funnel, rankogram)
    for name, fn in (("forest", lambda: result.plot_forest()), ("funnel", lambda: result.plot_funnel()),
                     ("rankogram", (lambda: result.plot_rankogram()) if levels else None)):
        if fn is None:
            continue
        try:
            png[name] = _png_bytes(fn())
            figs[name] = base64.b64encode(png[name]).decode("ascii")
        except (ValueError, KeyError, RuntimeError) as e:
            p["missing"][f"plot {name}"] = str(e).splitlines()[0]
    p["seconds"]["tables"] = time.time() - t0
    mc = p["mcid_info"]["mcid"] if p["mcid_info"] else None
    if refits == "none":
        for k in ("evidence", "cumulative", "pet"):
            p[k] = None
            p["missing"][k] = "refits skipped (--refits none)"
    else:
        st = "quick" if refits == "quick" else "fit"
        t = time.time()
        _try(p, "pet", lambda: result.small_study_model("pet", settings=st, progress=progress))
        p["seconds"]["pet"] = time.time() - t
        t = time.time()
        _try(p, "evidence", lambda: result.evidence_sensitivity(risk_of_bias, mcid=mc, settings=st, progress=progress))
        p["seconds"]["evidence"] = time.time() - t
        t = time.time()
        _try(p, "cumulative", lambda: result.cumulative("year", mcid=mc, settings=st, progress=progress))
        p["seconds"]["cumulative"] = time.time() - t
        if p.get("cumulative") is not None and len(p["cumulative"]):
            from ..plots.cumulative import cumulative_plot

            figs["cumulative"] = _png(cumulative_plot(p["cumulative"], "year", ylabel=f"pooled effect ({result.spec.measure})",
                                                      title=("SIMULATED DATA: " if result.simulated else "")
                                                      + "cumulative meta-analysis by year"))
    p["figures"] = figs
    p["seconds"]["total"] = time.time() - t0
    return p


# -- rendering --------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;
line-height:1.4;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:0.82em;margin:0.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.banner{background:#b00020;color:#fff;font-weight:bold;padding:0.7em 1em;font-size:1.1em;margin:0.5em 0}
.problem{background:#fff3cd;border:1px solid #e0b000;padding:0.5em 1em}
.key{display:flex;flex-wrap:wrap;gap:0.8em}.key div{border:1px solid #ccc;padding:0.5em 0.8em;background:#fafafa}
.key b{display:block;font-size:1.25em}.note{color:#555;font-size:0.88em}img{max-width:100%}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;font-size:0.8em}
"""


def _short_note(text) -> str:
    """A refit's sampler problems in a few words (the CSV files keep the full text)."""
    t = str(text or "")
    if not t or t == "nan":
        return ""
    flags = []
    m = re.search(r"(\d+) divergent", t)
    if m:
        flags.append(f"{m.group(1)} divergences")
    if "R-hat" in t:
        flags.append("R-hat > 1.01")
    if "ESS below" in t:
        flags.append("low ESS")
    if "tree depth" in t or "treedepth" in t:
        flags.append("tree depth hits")
    return "sampler: " + ", ".join(flags) if flags else (t if len(t) <= 80 else t[:77] + "...")


def _table(df: pd.DataFrame | None, index: bool = False, digits: int = 3, tid: str | None = None) -> str:
    if df is None:
        return ""
    if not len(df):
        return f"<p class='note'{f' id={chr(39)}{tid}{chr(39)}' if tid else ''}>(none)</p>"
    out = df.copy()
    if "note" in out:
        out["note"] = out["note"].map(_short_note)
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}" if abs(v) >= 1e4 or (0 < abs(v) < 1e-3)
                                else f"{v:.{digits}f}")
    h = out.to_html(index=index, na_rep="", border=0, escape=True)
    if tid:
        h = h.replace("<table", f"<table id='{tid}'", 1)
    return h


def _esc(x) -> str:
    return html.escape(str(x))


def _fmt(v, d=2) -> str:
    return "NA" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{d}f}"


def render_report(parts: dict) -> str:
    """The HTML text of the page (see the module docstring)."""
    res = parts["result"]
    prov = parts["provenance"]
    sim = res.simulated
    diag = parts["diagnostics"]
    probs = diag.attrs["problems"]
    measure = res.spec.measure
    miss = parts.get("missing", {})
    b: list[str] = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
                    "<meta name='viewport' content='width=device-width, initial-scale=1'>",
                    f"<title>{'SIMULATED - ' if sim else ''}bayes_koa report: {_esc(res.spec.name)}</title>",
                    "<link rel='icon' href='data:,'>",  # no favicon request
                    f"<style>{CSS}</style></head><body>"]
    if sim:
        b.append(f"<div class='banner' id='simulated-banner'>{_esc(SIM_BANNER)}</div>")
    b.append(f"<h1>Bayesian meta-analysis report: model {_esc(res.spec.name)} v{_esc(res.spec.version)}</h1>")
    b.append(f"<p>Data {_esc(prov.get('data_source', ''))} (sha256 {_esc(str(prov.get('data_sha256', ''))[:16])}); outcome "
             f"{_esc(prov.get('outcome') or 'all')}{' at month ' + _esc(prov.get('time')) if prov.get('time') else ''}; "
             f"measure {_esc(measure)} (treatment - control; "
             f"{'negative' if res.lower_is_better else 'positive'} = favours MSC); {len(res.effects)} comparisons used, "
             f"{len(res.excluded)} left out.</p>")
    if probs:
        b.append("<div class='problem' id='diagnostic-problems'><b>SAMPLING PROBLEMS: the estimates below are not "
                 "reliable.</b><ul>" + "".join(f"<li>{_esc(x)}</li>" for x in probs) + "</ul></div>")

    # key numbers
    s = parts["summary"]
    roles = res.kind.roles(res.spec)
    key = []
    if roles.overall in s.index:
        r = s.loc[roles.overall]
        key.append(("overall-effect", "Overall effect (mean [95% CrI])",
                    f"{_fmt(r['mean'])} [{_fmt(r['eti95_lb'])}, {_fmt(r['eti95_ub'])}]"))
        key.append(("p-benefit", "P(any benefit)", _fmt(r["p_benefit"], 3)))
        if "pi95_lb" in s and np.isfinite(r.get("pi95_lb", np.nan)):
            key.append(("prediction-interval", "95% prediction interval, new trial",
                        f"[{_fmt(r['pi95_lb'])}, {_fmt(r['pi95_ub'])}]"))
    het = parts.get("heterogeneity")
    if het is not None:
        t = het.loc[("total", "I2")]
        key.append(("i2-total", "I² (total, mean [95% CrI])",
                    f"{100 * t['mean']:.0f}% [{100 * t['lower']:.0f}%, {100 * t['upper']:.0f}%]"))
    pm = parts.get("p_mcid")
    if pm is not None:
        r0 = pm.iloc[0]
        key.append(("p-mcid-overall", f"P(benefit > MCID {abs(r0['mcid']):g})", f"{r0['p_benefit_gt_mcid']:.3f}"))
    ss = parts.get("small_study")
    if ss is not None:
        for _, r in ss.iterrows():
            if pd.notna(r.get("pvalue", np.nan)):
                key.append(("egger-p" if r["test"].startswith("Egger") else "peters-p", f"{r['test']} p",
                            f"{r['pvalue']:.3f}"))
    b.append("<h2>Key numbers</h2><div class='key'>" + "".join(
        f"<div id='{k}'><span>{_esc(lab)}</span><b>{_esc(v)}</b></div>" for k, lab, v in key) + "</div>")

    b.append("<h2>Posterior summary</h2><p class='note'>95% equal-tailed intervals (eti95); pi95_lb/pi95_ub: "
             "95% prediction interval of a new trial (overall: of a new source; source rows: a new trial of that "
             "source).</p>")
    cols = [c for c in ("what", "mean", "sd", "eti95_lb", "eti95_ub", "pi95_lb", "pi95_ub", "median", "p_benefit",
                        "n_comparisons", "r_hat", "ess_bulk") if c in s]
    pred_vars = {roles.prediction, roles.group_prediction}
    b.append(_table(s.loc[~s["variable"].isin(pred_vars), cols], index=True, tid="summary"))

    b.append("<h2>Heterogeneity and prediction</h2>")
    if het is not None:
        b.append("<p class='note'>I² = between-trial variance share (Higgins &amp; Thompson 2002, as bayesmeta): per "
                 f"level sigma²/(sum sigma² + s²), s² = typical within-trial variance "
                 f"{het.attrs['typical_within_variance']:.4g} of the {het.attrs['k']} rows; I² as a fraction.</p>")
        b.append(_table(het.reset_index(), tid="heterogeneity"))
    else:
        b.append(f"<p class='note'>{_esc(miss.get('heterogeneity', ''))}</p>")
    if parts.get("predictions") is not None:
        b.append(_table(parts["predictions"], tid="predictions"))

    b.append("<h2>Clinical relevance: P(benefit &gt; MCID)</h2>")
    info = parts.get("mcid_info")
    if pm is not None:
        src = _esc(info.get("citation", info.get("source", "")))
        b.append(f"<p id='mcid-source'>MCID {abs(info['mcid']):g} ({_esc(info.get('unit', measure))}); source: {src} "
                 f"{_esc(info.get('source', '')) if 'citation' in info else ''}."
                 + (f" Caveat: {_esc(info['caveat'])}." if info.get("caveat") else "") + "</p>")
        b.append(_table(pm, tid="p-mcid"))
    else:
        b.append(f"<p class='note'>{_esc(miss.get('p_mcid', ''))}</p>")

    b.append("<h2>Small-study effects</h2>")
    if ss is not None:
        b.append("<p class='note'>Egger (SE) and Peters (1/n) regression tests as metafor's regtest (mixed-effects, "
                 "REML); limit estimate = the intercept (effect of an infinitely precise trial).</p>")
        b.append(_table(ss.drop(columns=[c for c in ("level",) if c in ss]), tid="small-study"))
    if "funnel" in parts["figures"]:
        b.append(f"<img id='funnel-plot' alt='contour-enhanced funnel plot' src='data:image/png;base64,{parts['figures']['funnel']}'>")
    pet = parts.get("pet")
    if pet is not None:
        ranking, summ = pet
        b.append("<h3>Bayesian PET model (standard error as moderator)</h3><p class='note'>slope prior "
                 f"{_esc(summ.attrs.get('prior', ''))}; group means at SE 0. {_esc(summ.attrs.get('problems', ''))}</p>")
        b.append(_table(summ, tid="pet-summary"))
        b.append("<p>Source ranking without and with the PET adjustment:</p>" + _table(ranking, tid="pet-ranking"))
    elif "pet" in miss:
        b.append(f"<p class='note'>PET model: {_esc(miss['pet'])}</p>")

    if parts.get("ranking") is not None:
        b.append("<h2>Ranking</h2>")
        rk = parts["ranking"]
        b.append(_table(rk[[c for c in rk.columns if not c.endswith("_mcse")]], tid="ranking"))
        if "rankogram" in parts["figures"]:
            b.append(f"<img alt='rankogram' src='data:image/png;base64,{parts['figures']['rankogram']}'>")
    if "forest" in parts["figures"]:
        b.append("<h2>Forest plot</h2>"
                 f"<img id='forest-plot' alt='forest plot' src='data:image/png;base64,{parts['figures']['forest']}'>")

    ev = parts.get("evidence")
    st = ev.scenarios.attrs.get("refit_settings", QUICK) if ev is not None else QUICK
    refit_text = {"quick": f"quick masked refits on the fit's compiled model ({st['chains']} chains x {st['draws']} "
                           f"draws, {st['tune']} tuning; rows dropped by giving them no weight; leave-one-trial-out "
                           "by PSIS, refitted where Pareto k > 0.7)",
                  "fit": "masked refits on the fit's compiled model with the fit's own sampler settings",
                  "none": "skipped (--refits none)"}[parts["refits"]]
    b.append(f"<h2>Evidence sensitivity</h2><p class='note' id='refit-mode'>Refits: {_esc(refit_text)}.</p>")
    if ev is not None:
        b.append("<p>Which conclusions survive:</p>" + _table(ev.conclusions, tid="evidence-conclusions"))
        sc = ev.scenarios
        b.append("<details><summary>All scenarios</summary>" + _table(sc, tid="evidence-scenarios") + "</details>")
    elif "evidence" in miss:
        b.append(f"<p class='note'>{_esc(miss['evidence'])}</p>")
    b.append("<h2>Cumulative meta-analysis by year</h2>")
    cu = parts.get("cumulative")
    if cu is not None:
        if cu.attrs.get("no_year"):
            b.append(f"<p class='note'>Never entered (no publication year): {_esc(', '.join(cu.attrs['no_year']))}.</p>")
        b.append(_table(cu, tid="cumulative"))
        if "cumulative" in parts["figures"]:
            b.append(f"<img id='cumulative-plot' alt='cumulative plot' src='data:image/png;base64,{parts['figures']['cumulative']}'>")
    elif "cumulative" in miss:
        b.append(f"<p class='note'>{_esc(miss['cumulative'])}</p>")

    if parts.get("claims") is not None:
        b.append("<h2>The 2023 paper's conclusions as posterior probabilities</h2>")
        c = parts["claims"]
        b.append(_table(c[[x for x in ("claim", "probability", "mc_se", "interpretation") if x in c]], tid="claims"))

    b.append("<h2>Resolved priors</h2>" + _table(parts["priors"], tid="priors"))
    b.append("<h2>Sampler diagnostics</h2>")
    b.append(f"<p id='diagnostics-line'>{diag.attrs['divergences']} divergences; max R-hat {diag['r_hat'].max():.3f}; "
             f"min bulk ESS {diag['ess_bulk'].min():.0f}: {'OK' if not probs else 'PROBLEMS'}</p>")
    b.append(_table(diag, index=True, tid="diagnostics"))
    b.append(f"<h2>Rows left out ({len(res.excluded)}), with the reason</h2>")
    ex = res.excluded
    b.append(_table(ex[[c for c in ("trial_id", "comparison", "outcome", "time_months", "excluded_reason") if c in ex]],
                    tid="excluded"))
    b.append("<h2>Rows used</h2>")
    eff = res.effects
    b.append("<details><summary>effect table</summary>" + _table(eff[[c for c in (
        "trial_id", "comparison", "yi", "sei", "n_msc", "n_control", "cell_source", "origin", "year", "evidence",
        "estimated") if c in eff]], tid="effects") + "</details>")
    b.append("<h2>Provenance</h2>")
    b.append(provenance_table(prov))
    if miss:
        b.append("<h2>Not shown</h2><ul>" + "".join(f"<li>{_esc(k)}: {_esc(v)}</li>" for k, v in miss.items()) + "</ul>")
    secs = parts.get("seconds", {})
    b.append(f"<p class='note'>Report computed in {secs.get('total', 0):.1f} s "
             + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items() if k != "total") + ".</p>")
    b.append(page_end(parts, sim))
    return "\n".join(b)


def provenance_table(prov: dict) -> str:
    """The provenance items of a result (its priors have their own table) as an HTML table."""
    pv = {k: v for k, v in prov.items() if k != "priors"}
    return _table(pd.DataFrame({"item": list(pv), "value": [str(v) for v in pv.values()]}), tid="provenance")


def page_end(parts: dict, sim: bool) -> str:
    """The end of a report page: the command output (folded), the SIMULATED banner, the closing tags."""
    b = []
    if parts.get("log_text"):
        b.append("<details><summary>command output</summary><pre>" + _esc(parts["log_text"]) + "</pre></details>")
    if sim:
        b.append(f"<div class='banner'>{_esc(SIM_BANNER)}</div>")
    b.append("</body></html>")
    return "\n".join(b)


def write_report(parts_or_html, path) -> Path:
    """Write the page atomically (temporary file beside ``path``, then renamed)."""
    text = parts_or_html if isinstance(parts_or_html, str) else render_report(parts_or_html)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
