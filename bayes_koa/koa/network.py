"""The KOA trial data as the arm table of the network kind (:mod:`bayes_koa.kinds.network`).

:func:`network_arms` turns a :class:`~bayes_koa.data.TrialData` (``bayes_koa.load_simulated()``,
``bayes_koa.load_koa_msc()``, a user's extraction) into one row per trial arm at one outcome and
time, with the arm's treatment node:

- control arms: their ``control_type`` (placebo, HA, PRP, corticosteroid, conservative, analgesic);
  a control arm whose comparator is not reported is left out with that reason (or becomes the node
  ``unknown_control`` when given);
- MSC arms: ``"<cell_source> <origin>"`` (``msc_node="cell"``, default; ``"BM allogeneic"``), or with
  the dose (``"dose"``) or the trial's arm (``"arm"``) added, or any function of the arm's row. They
  carry ``cell_source`` and ``origin`` (the class columns); control arms carry none (in
  ``trials.csv`` a control arm has its trial's cell source: it is not an MSC treatment).

A multi-arm trial is one trial (its arms share one baseline in the model). Arm values come from
the same step as :func:`bayes_koa.effect_sizes` (n from the outcome row, else ``n_analysed``, else
``n_randomized``; SD from SE or CI; medians converted with ``median_method``; "+/-" read as
``unlabelled_pm`` says). ``value_type="auto"``: change-from-baseline values where every arm of the
trial has them at that time, final values otherwise (one type per trial; MDs of both types may be
combined, Cochrane Handbook 10.5.2). Higher-is-better outcomes are multiplied by -1 (``flipped``),
so negative = benefit, as everywhere in the package (fit with ``lower_is_better=True``).

Trials reporting the outcome only as a between-arm contrast (``contrasts.csv``, ``msc_minus_control``
with a CI) enter as contrast rows (``diff``, ``se_diff``; the control arm's row without ``diff``), at
the requested time; a contrast whose trial has arm values, or whose time is not stated, is left out
with the reason. Every arm row is kept, with ``excluded_reason`` saying why it cannot be used (empty:
usable), so the fit lists every row left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..data import as_trial_data
from ..effects.table import _arm_values, _prepare_outcomes, _prepare_trials  # the effect-size step's arm values

__all__ = ["network_arms", "MSC_NODE", "network_vs_pooled", "network_unusable", "MIN_REFERENCE_TRIALS"]

MSC_NODE = ("cell", "dose", "arm")
COLUMNS = ("study", "arm_id", "treatment", "arm_role", "cell_source", "origin", "control_type",
           "cells_per_injection", "n_injections", "outcome", "time_months", "measure", "value_type", "mean", "sd", "se",
           "n", "events", "diff", "se_diff", "flipped", "notes", "excluded_reason")


def _msc_label(row, how) -> str:
    src, org = str(row["cell_source"]), str(row["origin"])
    base = f"{src} {org}" if org else f"{src} (origin not stated)"
    if callable(how):
        return str(how(row))
    if how == "cell":
        return base
    if how == "dose":
        c = row["cells_per_injection"]
        return f"{base} {c:.3g} cells" if np.isfinite(c) else f"{base} (dose not stated)"
    return f"{base} [{row['trial_id']} {row['arm_id']}]"


def network_arms(data, outcome: str, time: float | None = None, measure: str = "MD",
                 value_type: str = "auto", msc_node="cell", unknown_control: str | None = None,
                 include_out_of_scope: bool = False, median_method: str | None = "wan2014",
                 unlabelled_pm: str | None = None, contrasts: bool = True) -> pd.DataFrame:
    """One row per arm of every trial at ``outcome`` and ``time`` (months), for ``fit(..., model="network")``.

    ``measure``: "MD" or "SMD" (arm means, SDs, n) or "logOR" (events, n; ``time=None`` takes each
    trial's last reported time, as adverse events are counted to the end of follow-up). Continuous
    outcomes need ``time``. Returns the columns :data:`COLUMNS`; ``attrs`` carry ``source``,
    ``simulated``, ``data_sha256``, ``measure``, ``outcome``, ``time``.
    """
    if measure not in ("MD", "SMD", "logOR"):
        raise ValueError(f"measure must be 'MD', 'SMD' or 'logOR', got {measure!r}")
    if value_type not in ("auto", "final", "change"):
        raise ValueError(f"value_type must be 'auto', 'final' or 'change', got {value_type!r}")
    if not (callable(msc_node) or msc_node in MSC_NODE):
        raise ValueError(f"msc_node must be one of {MSC_NODE} or a function of the arm's row, got {msc_node!r}")
    binary = measure == "logOR"
    if time is None and not binary:
        raise ValueError("a continuous outcome needs time= (months); the network pools one time point")
    td = as_trial_data(data, stacklevel=3)
    trials = _prepare_trials(td.trials.copy())
    out = _prepare_outcomes(td.outcomes.copy())
    if outcome not in set(out["outcome"]) and (td.contrasts is None or outcome not in set(td.contrasts["outcome"])):
        raise ValueError(f"outcome {outcome!r} is not in the data; it has {sorted(set(out['outcome']))}")
    out = out[out["outcome"] == outcome]
    lib = next((v for v in out["lower_is_better"] if v is not None), None)
    arms_v = _arm_values(out, trials, {}, median_method, unlabelled_pm)
    follow = arms_v[arms_v["time_months"] > 0]
    if time is not None:
        follow = follow[follow["time_months"] == float(time)]
    elif binary:
        last = follow[follow["binary"]].groupby("trial_id")["time_months"].transform("max")
        follow = follow[follow["binary"]][follow.loc[follow["binary"], "time_months"] == last]

    rows = []
    for trial, arms in trials.groupby("trial_id", sort=False):
        f_t = follow[follow["trial_id"] == trial]
        chosen = None
        if not binary and len(f_t):
            kinds = {vt: set(f_t.loc[f_t["value_type"] == vt, "arm_id"]) for vt in ("change_from_baseline", "final")}
            all_arms = set(arms["arm_id"])
            if value_type == "change":
                chosen = "change_from_baseline"
            elif value_type == "final":
                chosen = "final"
            else:
                chosen = "change_from_baseline" if kinds["change_from_baseline"] >= all_arms else "final"
        for _, a in arms.iterrows():
            r = {c: np.nan for c in COLUMNS}
            r.update(study=trial, arm_id=a["arm_id"], arm_role=a["arm_role"], outcome=outcome, measure=measure,
                     time_months=np.nan if time is None else float(time), value_type="", flipped=False,
                     notes="", excluded_reason="", cells_per_injection=a["cells_per_injection"],
                     n_injections=a["n_injections"], control_type=a["control_type"], cell_source="", origin="")
            why = []
            if a["arm_role"] == "msc":
                r["cell_source"], r["origin"] = a["cell_source"], a["origin"]
                r["treatment"] = _msc_label(a, msc_node) if a["cell_source"] else ""
                if not a["cell_source"]:
                    why.append("cell source not reported: the MSC arm has no node")
            else:
                ct = a["control_type"] or (unknown_control or "")
                r["treatment"] = ct
                if not ct:
                    why.append("control type not reported: the arm has no node in the network (pass "
                               "unknown_control='<label>' to keep it as a node of its own)")
            if not a["in_scope"] and not include_out_of_scope:
                why.append("trial not in scope (in_scope = no; include_out_of_scope=True uses it)")
            v = f_t[f_t["arm_id"] == a["arm_id"]]
            if not binary and chosen is not None:
                v = v[v["value_type"] == chosen]
            if len(v):
                v = v.iloc[0]
                r["n"] = v["n_arm"]
                r["notes"] = "; ".join(v["notes"])
                if binary:
                    r["events"] = v["events"]
                    r["time_months"] = v["time_months"]
                else:
                    sign = -1.0 if lib is False else 1.0
                    r["mean"], r["sd"] = sign * v["mean_hat"], v["sd_hat"]
                    r["value_type"], r["flipped"] = v["value_type"], lib is False
                why += list(v["problems"])
            else:
                what = (f"{'events' if binary else (chosen or 'values').replace('_', ' ')} for {outcome}"
                        + ("" if time is None else f" at month {time:g}"))
                why.append(f"no {what} for this arm")
            r["excluded_reason"] = "; ".join(dict.fromkeys(w.replace(" ({arms})", "") for w in why))
            rows.append(r)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if contrasts and not binary and td.contrasts is not None and len(td.contrasts):
        table = _with_contrasts(table, td.contrasts, trials, outcome, time, measure, lib)
    table.attrs.update(source=str(td.source), simulated=bool(getattr(td, "simulated", False)),
                       data_sha256=str(td.data_hash), measure=measure, outcome=outcome,
                       time="" if time is None else float(time))
    return table


def _with_contrasts(table, con, trials, outcome, time, measure, lib) -> pd.DataFrame:
    """Turn ``msc_minus_control`` contrasts of trials without arm values into contrast rows."""
    con = con[con["outcome"] == outcome]
    used_trials = set(table.loc[table["excluded_reason"] == "", "study"])
    extra = []
    for i, c in con.iterrows():
        trial = str(c["trial_id"]).strip()
        arms = trials[trials["trial_id"] == trial]
        why = ""
        if str(c["contrast"]).strip() != "msc_minus_control":
            why = f"contrast {c['contrast']!r} is a within-arm change, not a between-arm contrast"
        elif pd.isna(c["time_months"]):
            why = ("time not stated (an estimate from a model over several visits): not pooled with "
                   f"month {time:g} values")
        elif float(c["time_months"]) != float(time):
            continue
        elif trial in used_trials:
            why = "the trial's arm-level values are used instead"
        elif (arms["arm_role"] == "msc").sum() != 1 or (arms["arm_role"] == "control").sum() != 1:
            why = "msc_minus_control in a trial with several MSC or control arms: which arms is not stated"
        if not why:
            lo, hi, est = float(c["ci_low"]), float(c["ci_high"]), float(c["estimate"])
            level = float(c["ci_level"]) if pd.notna(c.get("ci_level")) else 95.0
            if not (lo < est < hi):
                why = f"estimate {est:g} outside its CI ({lo:g}, {hi:g})"
            se = (hi - lo) / (2.0 * stats.norm.ppf(0.5 + level / 200.0))
        part = table[table["study"] == trial].copy()
        if not len(part):
            continue
        if why:
            if not (trial in used_trials and why.startswith("the trial's arm-level")):
                part["excluded_reason"] = part["excluded_reason"].where(part["excluded_reason"] != "", why)
            note = table.index[table["study"] == trial]
            table.loc[note, "notes"] = (table.loc[note, "notes"].fillna("") + f"; contrast row {i}: {why}").str.strip("; ")
            continue
        sign = -1.0 if lib is False else 1.0
        part["mean"] = part["sd"] = part["n"] = np.nan
        msc = part["arm_role"] == "msc"
        part.loc[msc, "diff"] = sign * est
        part.loc[msc, "se_diff"] = se
        part["flipped"] = lib is False
        part["excluded_reason"] = [r if not r.startswith("no ") else "" for r in part["excluded_reason"]]
        part["notes"] = f"contrast from contrasts.csv row {i} ({'adjusted' if str(c.get('adjusted')) == 'yes' else 'unadjusted'}; SE from the {level:g}% CI)"
        extra.append((trial, part))
    for trial, part in extra:
        table = pd.concat([table[table["study"] != trial], part], ignore_index=True)
    return table


# ---------------------------------------------------------------------------------------------
# the main job: is the network usable, and what the pooled model says beside it
# ---------------------------------------------------------------------------------------------
MIN_REFERENCE_TRIALS = 2
"""A network whose reference (placebo) arm is in fewer trials than this puts every source effect
against the reference on one trial: too few comparator data for the main job to use it."""


def network_unusable(result) -> str | None:
    """Why a fitted network cannot be the main job's model (one line), or None when it passes its checks.

    Checks, in order: the sampler diagnostics (divergences, R-hat, ESS: ``result.diagnostics()``);
    at least two cell sources with trials (else nothing to rank); the reference treatment in at
    least :data:`MIN_REFERENCE_TRIALS` trials (else too few comparator data: every effect against
    the reference rests on one trial).
    """
    probs = result.diagnostics().attrs["problems"]
    if probs:
        first = probs[0].split(": ")[0]
        return f"sampling problems in the network fit: {first[:120]}{' ...' if len(first) > 120 else ''}"
    counts = result.kind.group_counts(result.dt, result.spec)
    roles = result.kind.roles(result.spec)
    src = {k[0]: v for k, v in counts.get(roles.group, {}).items()} if roles.group else {}
    with_trials = [s for s, k in src.items() if k > 0]
    if len(with_trials) < 2:
        return (f"fewer than two cell sources with trials in the network ({', '.join(with_trials) or 'none'}): "
                "nothing to rank")
    nodes, _ = result.network_graph()
    ref = str(nodes["treatment"].iloc[0])
    k_ref = int(nodes["n_trials"].iloc[0])
    if k_ref < MIN_REFERENCE_TRIALS:
        return (f"too few comparator data: the reference {ref!r} is in {k_ref} trial(s) (fewer than "
                f"{MIN_REFERENCE_TRIALS}), so every source effect against it rests on one trial")
    return None


def _interval(x: np.ndarray) -> tuple[float, float, float]:
    return float(x.mean()), float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))


def network_vs_pooled(network, pooled) -> pd.DataFrame:
    """Per cell source: the network's effect against its reference and P(best) beside the pooled
    model's "MSC minus control" effect and P(best), with the comparators that source's trials used and
    the part of the difference those comparators explain.

    Both arguments are fitted results (``network``: the network kind; ``pooled``: a model with
    source means, e.g. ``source_hierarchical``) of the same data, outcome and time. The pooled
    model estimates, per source, the average of ``MSC - control`` over the controls its trials
    happened to use; under the network's consistency model ``MSC - c = d_MSC - d_c``, so the pooled
    effect should be close to ``network effect - comparator_offset`` with ``comparator_offset`` =
    the mean, over the source's MSC-vs-comparator pairs in the network rows, of the comparator's
    network effect against the reference (0 for the reference itself). What is left
    (``residual`` = pooled - (network - offset)) comes from the two models' other assumptions
    (class shrinkage, trial baselines, contrast-only trials, rows each can use).

    Columns: ``source``, ``network_mean/_lower/_upper`` (95% equal-tailed), ``network_p_best``,
    ``pooled_mean/_lower/_upper``, ``pooled_p_best``, ``n_trials`` (network trials with the source),
    ``n_vs_reference``, ``n_vs_active`` (MSC-vs-comparator pairs), ``comparators`` ("HA 4, placebo 3"),
    ``comparator_offset``, ``residual``, ``why`` (a sentence from these numbers).
    ``attrs["statement"]``: the rankings of both models and what separates them;
    ``attrs["diagnostics"]``: both fits' diagnostics flags.
    """
    net_d, net_dim = network.level_draws("source")
    pool_d, pool_dim = pooled.level_draws("source")
    net_rank = network.rank("source").set_index(network.rank("source").columns[0])
    pool_rank = pooled.rank("source").set_index(pooled.rank("source").columns[0])
    ne = network.dt["posterior"]["node_effect"]
    node_mean = {str(k): float(v) for k, v in zip(ne["node"].values, ne.mean(("chain", "draw")).values)}
    ref = str(ne["node"].values[0])
    rows = network.effects
    gcol = network.spec.get("group", "cell_source")
    in_class = rows[gcol].notna() & (rows[gcol].astype(str).str.strip() != "") if gcol in rows else \
        pd.Series(False, index=rows.index)
    lower = network.lower_is_better
    out = []
    pooled_labels = [str(x) for x in pool_d[pool_dim].values]
    for s in [str(x) for x in net_d[net_dim].values]:
        pairs = []  # (comparator) per MSC arm of source s vs each comparator arm of its trial
        trials = []
        for t, g in rows.groupby("nma_trial", sort=False):
            cls = in_class.loc[g.index]
            k_s = int((cls & (g[gcol].astype(str) == s)).sum())
            if not k_s:
                continue
            trials.append(t)
            comps = g.loc[~cls, "nma_node"].astype(str).tolist()
            pairs += [c for _ in range(k_s) for c in comps]
        comp = pd.Series(pairs, dtype=object).value_counts()
        offset = float(np.mean([node_mean[c] for c in pairs])) if pairs else float("nan")
        nm, nlo, nhi = _interval(net_d.sel({net_dim: s}).values.ravel())
        has = s in pooled_labels
        pm_, plo, phi = _interval(pool_d.sel({pool_dim: s}).values.ravel()) if has else (np.nan,) * 3
        resid = pm_ - (nm - offset) if has and pairs else float("nan")
        n_ref, n_act = int(comp.get(ref, 0)), int(comp.sum() - comp.get(ref, 0))
        if not has:
            why = f"{s} has no rows the pooled model can use"
        elif not pairs:
            why = f"{s}'s trials have no comparator arm in the network rows"
        else:
            act = [c for c in comp.index if c != ref]
            act_text = (f"{n_act} against active comparators ({', '.join(f'{c} {comp[c]}' for c in act)}) whose network "
                        f"effects against {ref} are " + ", ".join(f"{c} {node_mean[c]:+.1f}" for c in act)) if act else \
                "none against an active comparator"
            # pooled ~ network - offset: a positive offset (comparators worse than the reference when lower is
            # better) makes 'MSC - control' look better than 'MSC - reference'
            direction = ("makes {s} look better than" if (offset > 0) == lower else "makes {s} look worse than") \
                if abs(offset) > 1e-12 else "equals {s}"
            why = (f"{s}: {len(pairs)} MSC-comparator pair(s), {n_ref} against {ref} and {act_text}; so 'MSC - control' "
                   f"{direction.format(s=s)} against {ref} by {abs(offset):.1f} on average (network {nm:.1f} - offset "
                   f"{offset:.1f} = {nm - offset:.1f}, pooled {pm_:.1f}; the other {resid:+.1f} from the models' "
                   "other assumptions)")
        out.append({"source": s, "network_mean": nm, "network_lower": nlo, "network_upper": nhi,
                    "network_p_best": float(net_rank.loc[s, "p_best"]),
                    "pooled_mean": pm_, "pooled_lower": plo, "pooled_upper": phi,
                    "pooled_p_best": float(pool_rank.loc[s, "p_best"]) if s in pool_rank.index else float("nan"),
                    "n_trials": len(trials), "n_vs_reference": n_ref, "n_vs_active": n_act,
                    "comparators": ", ".join(f"{k} {v}" for k, v in comp.items()) or "none",
                    "comparator_offset": offset, "residual": resid, "why": why})
    table = pd.DataFrame(out)
    by_net = table.sort_values("network_p_best", ascending=False)["source"].tolist()
    by_pool = table.dropna(subset=["pooled_p_best"]).sort_values("pooled_p_best", ascending=False)["source"].tolist()
    same_first = bool(by_net and by_pool and by_net[0] == by_pool[0])
    big = table.dropna(subset=["comparator_offset"])
    big = big.iloc[(big["comparator_offset"].abs()).argsort()[::-1]] if len(big) else big
    lead = (f"The network (effects against {ref}) ranks {' > '.join(by_net)} by P(best); the pooled model "
            f"('MSC - control' over whatever control) ranks {' > '.join(by_pool)}: "
            + ("the same first source" if same_first else "a different first source") + ".")
    if len(big):
        r = big.iloc[0]
        lead += (f" The comparators matter most for {r['source']} (offset {r['comparator_offset']:+.1f}: "
                 f"{r['n_vs_active']} of {r['n_vs_active'] + r['n_vs_reference']} comparisons against active "
                 "comparators)")
        small = big.iloc[-1]
        if small["source"] != r["source"]:
            lead += f" and least for {small['source']} (offset {small['comparator_offset']:+.1f})"
        lead += "."
    table.attrs["statement"] = lead
    table.attrs["reference"] = ref
    table.attrs["diagnostics"] = {"network": network._diagnostics_flag(), "pooled": pooled._diagnostics_flag()}
    table.attrs["simulated"] = bool(network.simulated)
    return table
