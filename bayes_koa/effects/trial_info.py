"""Trial-level and source-level columns carried onto an effect table: ``year`` and ``evidence``.

The effect table (:func:`bayes_koa.effects.effect_sizes`) has one row per comparison x outcome x
time. A cumulative meta-analysis needs each trial's publication ``year`` (the ``trials`` table,
trial level); an evidence sensitivity analysis needs to know whether a row's numbers come from the
trial's own publication (``primary``) or from a review table or press release (``secondary``). The
schema records ``evidence`` per arm row of ``trials`` and per row of ``outcomes``; a comparison is
``secondary`` when any of the rows behind it (its MSC arm, its control arm, and their outcome rows
at that outcome and time) is secondary, ``primary`` when at least one is primary and none is
secondary, and missing otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["with_trial_columns", "comparison_evidence"]


def _norm(values) -> pd.Series:
    s = pd.Series(values, dtype="object")
    return s.map(lambda v: str(v).strip().lower() if isinstance(v, str) and str(v).strip() else None)


def comparison_evidence(effects: pd.DataFrame, trials: pd.DataFrame,
                        outcomes: pd.DataFrame | None = None) -> pd.Series:
    """``primary`` / ``secondary`` / missing per row of ``effects`` (see the module docstring)."""
    arm_ev: dict[tuple[str, str], set] = {}
    if "evidence" in trials:
        for t, a, ev in zip(trials["trial_id"].astype(str), trials["arm_id"].astype(str), _norm(trials["evidence"])):
            if ev:
                arm_ev.setdefault((t, a), set()).add(ev)
    out_ev: dict[tuple, set] = {}
    if outcomes is not None and "evidence" in outcomes:
        for t, a, o, m, ev in zip(outcomes["trial_id"].astype(str), outcomes["arm_id"].astype(str),
                                  outcomes["outcome"].astype(str), pd.to_numeric(outcomes["time_months"], errors="coerce"),
                                  _norm(outcomes["evidence"])):
            if ev:
                out_ev.setdefault((t, a, o, m), set()).add(ev)
    result = []
    for r in effects.itertuples(index=False):
        t = str(r.trial_id)
        seen: set = set()
        for arm in (getattr(r, "msc_arm", ""), getattr(r, "control_arm", "")):
            arm = str(arm) if isinstance(arm, str) else ""
            seen |= arm_ev.get((t, arm), set())
            o = getattr(r, "outcome", None)
            m = getattr(r, "time_months", np.nan)
            seen |= out_ev.get((t, arm, str(o), float(m) if pd.notna(m) else np.nan), set())
        result.append("secondary" if "secondary" in seen else ("primary" if "primary" in seen else pd.NA))
    return pd.Series(result, index=effects.index, dtype="object", name="evidence")


def with_trial_columns(effects: pd.DataFrame, data, extra=()) -> pd.DataFrame:
    """A copy of ``effects`` with ``year`` (the trial's publication year, missing for registry-only
    trials) and ``evidence`` (per comparison, see the module docstring) from ``data`` (the
    :class:`~bayes_koa.data.TrialData` the table was made from), and any ``extra`` trial-level columns
    of ``data.trials`` (e.g. a user's risk-of-bias column; a trial's first non-missing value). Columns
    already present are kept."""
    trials = data.trials
    out = effects.copy()
    for col in extra:
        if col in out:
            continue
        if col not in trials:
            raise ValueError(f"the trials table has no column {col!r}; it has {', '.join(map(str, trials.columns))}")
        first = trials.groupby(trials["trial_id"].astype(str))[col].first()
        out[col] = out["trial_id"].astype(str).map(first)
    if "year" not in out and "year" in trials:
        years = (trials.assign(_y=pd.to_numeric(trials["year"], errors="coerce"))
                 .groupby(trials["trial_id"].astype(str))["_y"].first())
        out["year"] = out["trial_id"].astype(str).map(years).astype("Int64")
    if "evidence" not in out:
        out["evidence"] = comparison_evidence(out, trials, getattr(data, "outcomes", None))
    out.attrs.update(effects.attrs)
    return out
