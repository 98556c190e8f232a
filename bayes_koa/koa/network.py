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

__all__ = ["network_arms", "MSC_NODE"]

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
