"""``report.html`` of the main job when it is a network meta-analysis (one self-contained page).

The network's own page: source effects against the reference, rankings (sources, source x origin
cells, every node) with SUCRA intervals, the league table, the network graph, which pairs are
informed only indirectly, the inconsistency check, LOO and PPC by trial, the 2023 paper's claims
re-based on the network, and beside it the pooled model (``source_hierarchical``) with the numbers
that say why the two differ. Every table on the page has the sampler diagnostics of the fit it came
from written under it. The rendering helpers and :func:`~bayes_koa.api.report.write_report` are the
pooled report's (:mod:`bayes_koa.api.report`).
"""

from __future__ import annotations


from .report import CSS, SIM_BANNER, _esc, _png, _table, page_end, provenance_table

__all__ = ["render_network_report", "diagnostics_line"]


def diagnostics_line(flag: dict, model: str) -> str:
    """One line of a fit's sampler health, written with every table made from it."""
    state = "OK" if flag["ok"] else "PROBLEMS: " + "; ".join(flag["problems"])
    return (f"sampling diagnostics ({model}): {flag['divergences']} divergences, max R-hat {flag['max_r_hat']:.3f}, "
            f"min bulk ESS {flag['min_ess_bulk']:.0f}: {state}")


def render_network_report(parts: dict) -> str:
    """The HTML text. ``parts``: ``result`` (the network fit), ``summary``, ``rankings`` ({level: table}),
    ``league`` (wide), ``indirect`` (table), ``inconsistency`` (an InconsistencyCheck), ``claims``,
    ``beside`` (:func:`bayes_koa.koa.network.network_vs_pooled` or None), ``pooled_model`` (name),
    ``pooled_flag`` (its diagnostics flag), ``loo`` and ``ppc`` (by trial, or None), ``figures``
    ({name: base64 png}), ``fallback_note``, ``log_text``."""
    res = parts["result"]
    sim = res.simulated
    prov = res.provenance
    flag = res._diagnostics_flag()
    dline = diagnostics_line(flag, res.spec.name)
    figs = parts.get("figures", {})

    def table(df, tid, index=False, line=dline):
        return _table(df, index=index, tid=tid) + f"<p class='note diag'>{_esc(line)}</p>"

    b = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
         "<meta name='viewport' content='width=device-width, initial-scale=1'>",
         f"<title>{'SIMULATED - ' if sim else ''}bayes_koa report: network meta-analysis</title>",
         "<link rel='icon' href='data:,'>", f"<style>{CSS}</style></head><body>"]
    if sim:
        b.append(f"<div class='banner' id='simulated-banner'>{_esc(SIM_BANNER)}</div>")
    ref = parts["league"].attrs.get("reference", "")
    b.append(f"<h1>Network meta-analysis report: model {_esc(res.spec.name)} v{_esc(res.spec.version)}</h1>")
    b.append(f"<p>Data {_esc(prov.get('data_source', ''))} (sha256 {_esc(str(prov.get('data_sha256', ''))[:16])}); "
             f"outcome {_esc(prov.get('outcome') or 'all')} at month {_esc(prov.get('time'))}; measure "
             f"{_esc(res.spec.measure)}; effects against {_esc(ref)} ({'negative' if res.lower_is_better else 'positive'} "
             f"= benefit); {res.effects['nma_trial'].nunique()} trials, {len(res.effects)} arm rows used, "
             f"{len(res.excluded)} left out.</p>")
    b.append(f"<p id='diagnostics-line'>{_esc(dline)}</p>")
    if not flag["ok"]:
        b.append("<div class='problem' id='diagnostic-problems'><b>SAMPLING PROBLEMS: the estimates below are not "
                 "reliable.</b></div>")
    s = parts["summary"]
    cols = [c for c in ("what", "mean", "sd", "eti95_lb", "eti95_ub", "median", "p_benefit", "n_comparisons",
                        "r_hat", "ess_bulk") if c in s]
    b.append("<h2>Posterior summary</h2>" + table(s[cols], "summary", index=True))
    for level, rk in parts.get("rankings", {}).items():
        b.append(f"<h2>Ranking: {_esc(level)}</h2>")
        b.append(table(rk[[c for c in rk.columns if not c.endswith("_mcse")]], f"ranking-{level}"))
    if "rankogram" in figs:
        b.append(f"<img alt='rankogram' src='data:image/png;base64,{figs['rankogram']}'>")
    b.append("<h2>League table</h2><p class='note'>row minus column, mean (95% interval)</p>")
    b.append(table(parts["league"], "league", index=True))
    b.append("<h2>Network graph</h2>")
    if "network" in figs:
        b.append(f"<img id='network-plot' alt='network graph' src='data:image/png;base64,{figs['network']}'>")
    ind = parts.get("indirect")
    if ind is not None:
        b.append(f"<p>Informed only indirectly (no trial compares them): {len(ind)} pairs.</p>")
        b.append("<details><summary>pairs</summary>" + _table(ind, tid="indirect") + "</details>")
    check = parts.get("inconsistency")
    b.append("<h2>Inconsistency</h2>")
    if check is not None:
        b.append(f"<p id='inconsistency'>{_esc(check.statement)}</p>")
        if check.pairs is not None:
            b.append(table(check.pairs, "inconsistency-pairs"))
    for key, title in (("loo", "PSIS-LOO by trial"), ("ppc", "Posterior predictive check by trial")):
        t = parts.get(key)
        if t is not None:
            b.append(f"<h2>{title}</h2>" + table(t, key))
    beside = parts.get("beside")
    if beside is not None:
        pline = diagnostics_line(parts["pooled_flag"], parts.get("pooled_model", "pooled"))
        b.append(f"<h2>Beside it: the pooled model {_esc(parts.get('pooled_model', ''))}</h2>")
        b.append(f"<p id='why-they-differ'>{_esc(beside.attrs.get('statement', ''))}</p>")
        b.append(_table(beside, tid="network-vs-pooled") + f"<p class='note diag'>{_esc(dline)}; {_esc(pline)}</p>")
    elif parts.get("beside_note"):
        b.append(f"<p class='note'>{_esc(parts['beside_note'])}</p>")
    c = parts.get("claims")
    if c is not None:
        b.append("<h2>The 2023 paper's conclusions re-based on the network</h2>")
        b.append(table(c[[x for x in ("claim", "probability", "mc_se", "interpretation") if x in c]], "claims"))
    b.append("<h2>Resolved priors</h2>" + _table(res.priors, tid="priors"))
    b.append("<h2>Sampler diagnostics</h2>" + _table(res.diagnostics(), index=True, tid="diagnostics"))
    ex = res.excluded
    b.append(f"<h2>Rows left out ({len(ex)}), with the reason</h2>")
    b.append(_table(ex[[c for c in ("study", "arm_id", "treatment", "excluded_reason") if c in ex]], tid="excluded"))
    b.append("<h2>Provenance</h2>" + provenance_table(prov))
    b.append(page_end(parts, sim))
    return "\n".join(b)


def figures(res) -> tuple[dict, dict]:
    """({name: base64 png}, {name: why missing}) of the network graph and the source rankogram."""
    import matplotlib

    matplotlib.use("Agg")
    out, missing = {}, {}
    for name, fn in (("network", lambda: res.plot_network()), ("rankogram", lambda: res.plot_rankogram("source"))):
        try:
            fig = fn()
            out[name] = _png(getattr(fig, "figure", fig))
        except (ValueError, KeyError, RuntimeError, ImportError) as e:
            missing[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
    return out, missing
