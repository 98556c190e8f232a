"""Effect sizes per trial x comparison x outcome x time, from arm-level summaries.

:func:`effect_sizes` turns the arm-level ``outcomes`` table into the effect table that ``fit``
reads (columns in ARCHITECTURE.md): one row per comparison (each MSC arm against each control arm
of its trial), outcome and follow-up time, oriented so that **negative = benefit of MSC**
(:func:`orient`). Rows that cannot be used stay in the table, with ``yi``/``vi`` as far as they
are known and a precise ``excluded_reason``; :func:`usable` and :func:`excluded` split them.

The arithmetic is in :mod:`bayes_koa.conversions`; this module decides which numbers go in
(value type, n, spread, estimators, multi-arm handling) and records every choice in the audit
columns ``n_from``, ``estimated``, ``flipped``, ``scale``, ``multiarm`` and ``cov_group``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..data import (DataValidationError, DataValidationWarning, TrialData, as_trial_data,
                    outcome_info)
from . import conversions as cv

__all__ = [
    "effect_sizes",
    "usable",
    "excluded",
    "orient",
    "COLUMNS",
    "MEASURES",
    "CONTINUOUS_MEASURES",
    "BINARY_MEASURES",
]

CONTINUOUS_MEASURES = ("MD", "SMD", "SMDH", "ROM")
BINARY_MEASURES = ("logOR", "logRR")
MEASURES = CONTINUOUS_MEASURES + BINARY_MEASURES + ("auto",)
VALUE_TYPES = ("auto", "final", "change")
MULTIARM = ("split", "keep")
STANDARDIZED = ("SMD", "SMDH")

COLUMNS = (
    "trial_id", "comparison", "msc_arm", "control_arm", "outcome", "time_months", "measure",
    "yi", "vi", "sei", "n_msc", "n_control", "events_msc", "events_control", "n_from",
    "cell_source", "origin", "cells_per_injection", "n_injections", "control_type",
    "value_type", "estimated", "flipped", "scale", "multiarm", "cov_group",
    "in_scope", "excluded_reason",
)
"""Columns of the effect table, in order."""

_NUMERIC = ("scale_min", "scale_max", "time_months", "n", "mean", "sd", "se", "median", "q1", "q3",
            "min", "max", "ci_low", "ci_high", "ci_level", "events")
_VT_LONG = {"final": "final", "change": "change_from_baseline"}
_VT_WORD = {"final": "final-value", "change_from_baseline": "change-from-baseline"}
_KEY = ["trial_id", "arm_id", "outcome", "time_months", "value_type"]


# --------------------------------------------------------------------------- public helpers


def orient(yi, lower_is_better):
    """Orient MSC-minus-control effects so that negative = benefit of MSC, for every outcome.

    The one rule used everywhere: where the outcome is higher-is-better (``lower_is_better`` is
    False: Lysholm, KOOS, IKDC), ``yi`` is multiplied by -1 and ``flipped`` is True; where it is
    lower-is-better (True: VAS, WOMAC, Lequesne, NPRS, adverse events) ``yi`` keeps its sign. Where
    the direction is unknown (None/NA, e.g. ``JSW_mm``) ``yi`` keeps its raw MSC-minus-control sign,
    ``flipped`` is False, and :func:`effect_sizes` excludes the row ("direction unclear").
    A variance is unchanged by orientation.

    Returns ``(yi_oriented, flipped)`` as NumPy arrays.
    """
    yi = np.asarray(yi, dtype=float)
    lib = pd.array(np.broadcast_to(np.asarray(lower_is_better, dtype=object), yi.shape).ravel(),
                   dtype="boolean")
    flipped = (lib == False).fillna(False).to_numpy(dtype=bool).reshape(yi.shape)  # noqa: E712
    return np.where(flipped, -yi, yi), flipped


def usable(effects: pd.DataFrame) -> pd.DataFrame:
    """Rows that a model can use: empty ``excluded_reason`` and finite ``yi`` and ``vi``."""
    ok = (effects["excluded_reason"].fillna("") == "").to_numpy() \
        & np.isfinite(effects["yi"].to_numpy(dtype=float)) \
        & np.isfinite(effects["vi"].to_numpy(dtype=float))
    return effects[ok]


def excluded(effects: pd.DataFrame) -> pd.DataFrame:
    """Rows with a non-empty ``excluded_reason`` (each says why it cannot be used)."""
    return effects[(effects["excluded_reason"].fillna("") != "").to_numpy()]


# --------------------------------------------------------------------------- main entry


def effect_sizes(data, measure="SMD", outcomes=None, times=None, value_type="auto",
                 multiarm="split", median_method="wan2014", include_out_of_scope=False,
                 n_override=None, *, unlabelled_pm=None, pre_post_r=None, cc=0.5,
                 cc_when="any_zero", mix_change_final=False) -> pd.DataFrame:
    """Effect sizes of every MSC arm against every control arm of its trial.

    Parameters
    ----------
    data
        A :class:`~bayes_koa.data.TrialData` (e.g. ``bayes_koa.load_koa_msc()``), a ``(trials,
        outcomes)`` tuple of DataFrames or file paths, or any object with DataFrame attributes
        ``trials`` and ``outcomes``; columns as in ``docs/data_schema.md``. Every form passes the
        same checks as :func:`bayes_koa.read_trials` (:func:`bayes_koa.data.as_trial_data`; a
        TrialData is checked again, as its tables may have been edited).
    measure
        ``"SMD"`` (Hedges' g), ``"MD"``, ``"SMDH"``, ``"ROM"`` for continuous outcomes;
        ``"logOR"``, ``"logRR"`` for binary ones (rows with ``events``); ``"auto"``: SMD for
        continuous and logOR for binary outcomes. Formulas: :mod:`bayes_koa.conversions` (as R
        metafor's ``escalc``). A measure that does not fit an outcome's kind gives an excluded row.
    outcomes, times
        Keep only these outcome names / follow-up times in months (None: all). Baseline (time 0)
        values are never effects.
    value_type
        ``"final"``: final values at each time > 0. ``"change"``: change-from-baseline values;
        where an arm has none, they are derived from its final values only if ``pre_post_r`` is
        given: mean change = final - baseline, ``SD = sqrt(sd0^2 + sd1^2 - 2 r sd0 sd1)``
        (Cochrane Handbook 6.5.2.8), noted in ``estimated``. ``"auto"`` (default): change values
        where both arms have them at that time, final values otherwise; for standardized measures
        (SMD, SMDH, and ``"auto"``) one value type per outcome and time, as SMDs of change and of
        final values are not combined (Cochrane Handbook 10.5.2): the type with more in-scope
        comparisons (a tie: change), the others excluded with the reason (``mix_change_final``).
    multiarm
        How arms shared by several comparisons of one trial enter the variances (Cochrane Handbook
        23.3.4). ``"split"`` (default): a shared arm's n is divided by the number k of comparisons
        using it at that outcome and time (rounded down, at least 2); events are scaled in
        proportion. The whole variance formula uses the split n, ``yi`` the full n; ``n_msc`` and
        ``n_control`` show the n used in the variance, and ``events_msc`` / ``events_control``
        the events among those patients (whole numbers: see :func:`_row_events`). ``"keep"``: full n, and ``cov_group`` names
        the shared arms (``trial:arm``; several separated by ``; ``) so a model can carry the
        covariance between those comparisons. The ``multiarm`` column says what was done.
    median_method
        Estimators for arms reported as median (IQR) or median (range):
        ``"wan2014"`` (default; Wan 2014 means and SDs; the mean needs no n) or ``"luo2018"``
        (Luo 2018 means, Wan 2014/Shi 2020 SDs; the mean needs n); see
        :func:`bayes_koa.conversions.estimate_mean_sd`. ``None``: such arms are not converted.
        The SD always needs n: without it an MD keeps its ``yi`` and loses ``vi``.
    include_out_of_scope
        Use trials with ``in_scope = no`` (by default their rows are computed but excluded).
    n_override
        ``{trial_id: {arm_id: n}}``: per-arm n that the user has a source for; takes precedence
        over the data (``n_from = "user"``).
    unlabelled_pm
        How to read ``stat_reported = mean_pm_unlabelled`` (mean +/- x, x undefined): None
        (default: such arms are excluded), ``"sd"`` or ``"se"`` (then SD = x sqrt(n)).
    pre_post_r
        Pre-post correlation for deriving change values (``value_type="change"`` only).
    cc, cc_when
        Zero-cell correction of binary outcomes (:func:`bayes_koa.conversions.log_odds_ratio`):
        by default 0.5 is added to every cell of a table with a zero cell; a table with no events
        in either arm is excluded, not corrected.
    mix_change_final
        ``True``: under ``value_type="auto"``, combine change and final values in one SMD (the
        Handbook advises against it). MDs may always combine them (Handbook 10.5.2).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, sorted by trial, comparison, outcome and time. The per-arm n is
        the outcome row's ``n``, else the arm's ``n_analysed``, else its ``n_randomized``
        (``n_from`` says which; an n is never invented). ``yi`` is MSC minus control, oriented by
        :func:`orient`; ``sei = sqrt(vi)``; ``scale`` is ``"min-max"`` where the data state the
        range, else ``"unknown"`` (VAS stated as 0-10 is rescaled to 0-100 mm, noted in
        ``estimated``). ``events_msc`` and ``events_control`` are the raw event counts behind
        ``n_msc`` and ``n_control`` on binary rows (never zero-cell corrected; NaN on continuous
        rows), so an arm-based binomial model can read the arms from this table. Comparisons without any follow-up value for the selection get one row
        (``outcome`` and ``time_months`` empty) that says so, so no trial disappears silently.

    Raises
    ------
    DataValidationError
        Malformed tables (missing column, unknown arm, duplicate rows, conflicting directions),
        an ``n_override`` naming an unknown trial or arm, or ``measure="MD"`` with usable rows of
        one outcome family on different stated scale ranges (raw differences on different ranges
        cannot be pooled: use SMD, or select outcomes of one range).
    ValueError
        Invalid arguments.

    Warns
    -----
    DataValidationWarning
        Kept-but-suspect data (from the checks), and ``measure="MD"`` on VAS rows with no stated
        range whose values are all <= 10, as on a 0-10 cm scale (named by trial).
    """
    outcome_sel = [outcomes] if isinstance(outcomes, str) else outcomes
    time_sel = None if times is None else [float(t) for t in np.atleast_1d(times)]
    _check_args(measure, value_type, multiarm, median_method, unlabelled_pm, pre_post_r,
                cc_when, time_sel)
    td, trials, out = _tables(data)
    trials = _prepare_trials(trials)
    out = _prepare_outcomes(out)
    overrides = _check_n_override(n_override, trials)
    out_all = out

    if outcome_sel is not None:
        missing = sorted(set(outcome_sel) - set(out["outcome"]))
        if missing:
            warnings.warn(f"no values in the data for outcome(s) {missing}", stacklevel=2)
        out = out[out["outcome"].isin(outcome_sel)]
    if time_sel is not None:
        out = out[out["time_months"].isin(time_sel + [0.0])]

    arms = _arm_values(out, trials, overrides, median_method, unlabelled_pm)
    if value_type == "change" and pre_post_r is not None:
        arms = pd.concat([arms, _derived_changes(arms, pre_post_r)], ignore_index=True)

    comparisons = _comparisons(trials)
    standardized = measure in STANDARDIZED or measure == "auto"
    pairs = _pairs(comparisons, arms, value_type, pre_post_r,
                   one_value_type=standardized and not mix_change_final,
                   include_out_of_scope=include_out_of_scope)
    pairs = _multiarm(pairs, multiarm)
    pairs["m_events_row"], pairs["c_events_row"] = _row_events(pairs, multiarm)
    parts = [_effects(pairs, measure, cc, cc_when, include_out_of_scope),
             _unmatched(trials, comparisons, pairs, out_all, measure, outcome_sel, time_sel,
                        include_out_of_scope)]
    table = _with_dtypes(pd.concat([x for x in parts if x is not None], ignore_index=True))
    if measure == "MD":
        _check_md_scales(table)
        _check_vas_units(table, out_all)
    table = table.sort_values(["trial_id", "comparison", "outcome", "time_months"],
                              na_position="last", kind="stable").reset_index(drop=True)
    table = table[list(COLUMNS)]
    # provenance travels with the table into fit(): where the numbers came from
    own = not isinstance(data, TrialData)  # an object of the user's may carry its own labels
    table.attrs.update(source=str(getattr(data, "source", td.source) if own else td.source),
                       simulated=bool(getattr(data, "simulated", False) if own
                                      else getattr(td, "simulated", False)),
                       data_sha256=str(td.data_hash), measure=measure)
    return table


# --------------------------------------------------------------------------- input


def _check_args(measure, value_type, multiarm, median_method, unlabelled_pm, pre_post_r,
                cc_when, time_sel):
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    if value_type not in VALUE_TYPES:
        raise ValueError(f"value_type must be one of {VALUE_TYPES}, got {value_type!r}")
    if multiarm not in MULTIARM:
        raise ValueError(f"multiarm must be one of {MULTIARM}, got {multiarm!r}")
    if median_method is not None and median_method not in cv.MEDIAN_METHODS:
        raise ValueError(f"median_method must be one of {cv.MEDIAN_METHODS} or None, "
                         f"got {median_method!r}")
    if unlabelled_pm not in (None, "sd", "se"):
        raise ValueError(f"unlabelled_pm must be None, 'sd' or 'se', got {unlabelled_pm!r}")
    if pre_post_r is not None and not -1.0 <= float(pre_post_r) <= 1.0:
        raise ValueError(f"pre_post_r must be a correlation in [-1, 1], got {pre_post_r!r}")
    if pre_post_r is not None and value_type != "change":
        raise ValueError("pre_post_r derives change values: use it with value_type='change'")
    if cc_when not in cv.CC_WHEN:
        raise ValueError(f"cc_when must be one of {cv.CC_WHEN}, got {cc_when!r}")
    if time_sel is not None and 0.0 in time_sel:
        raise ValueError("times: 0 is baseline, not a follow-up time; baseline values are not "
                         "effects")


def _tables(data):
    """The trials and outcomes tables, validated by the data layer's one set of checks
    (:func:`bayes_koa.data.as_trial_data`, the checks of ``read_trials``), whatever the form."""
    td = as_trial_data(data, stacklevel=5)
    return td, td.trials.copy(), td.outcomes.copy()


def _text(s):
    return s.astype("string").fillna("").str.strip()


def _float(s):
    return pd.to_numeric(s, errors="raise").astype("float64")


def _prepare_trials(trials):
    """Validated trials -> the working form (text "" for empty, numbers float, in_scope bool)."""
    trials = trials.reset_index(drop=True)
    for c in ("trial_id", "arm_id", "arm_role", "cell_source", "origin", "control_type"):
        trials[c] = _text(trials[c])
    for c in ("n_randomized", "n_analysed", "cells_per_injection", "n_injections"):
        trials[c] = _float(trials[c])
    trials["in_scope"] = trials["in_scope"].astype("boolean").fillna(True).astype(bool)
    return trials


def _prepare_outcomes(out):
    """Validated outcomes -> the working form; lower_is_better from the registry where empty."""
    out = out.reset_index(drop=True)
    for c in ("trial_id", "arm_id", "outcome", "value_type", "stat_reported"):
        out[c] = _text(out[c])
    for c in _NUMERIC:  # min, max, ci_level: extension columns, only where the data have them
        out[c] = _float(out[c]) if c in out else np.nan
    lib = out["lower_is_better"].astype("boolean")
    registry = out["outcome"].map(lambda o: getattr(outcome_info(o), "lower_is_better", None))
    out["lower_is_better"] = lib.astype(object).where(lib.notna(), registry)
    out["lower_is_better"] = out["lower_is_better"].map(lambda v: None if pd.isna(v) else bool(v))
    return out


def _check_n_override(n_override, trials):
    if not n_override:
        return {}
    arms = trials.groupby("trial_id")["arm_id"].agg(set)
    result = {}
    for trial, by_arm in n_override.items():
        if trial not in arms.index:
            raise DataValidationError(f"n_override: trial {trial} is not in trials")
        for arm, n in by_arm.items():
            if arm not in arms[trial]:
                raise DataValidationError(f"n_override: trial {trial}, arm {arm} is not in trials")
            if isinstance(n, bool) or not float(n).is_integer() or n < 2:
                raise DataValidationError(f"n_override: trial {trial}, arm {arm}, column n: "
                                          f"{n!r} is not a whole number >= 2")
            result[(trial, arm)] = float(n)
    return result


# --------------------------------------------------------------------------- arm level


def _scale_text(lo, hi):
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{lo:g}-{hi:g}"
    return "unknown"


def _arm_values(out, trials, overrides, median_method, unlabelled_pm):
    """One row per outcome row: the arm's n, mean, SD (or events), and how they were obtained.

    ``notes``: tuple of what was estimated; ``problems``: tuple of what is missing (each text
    names no arm; :func:`_merge` adds the arms).
    """
    a = out.merge(trials[["trial_id", "arm_id", "n_analysed", "n_randomized"]],
                  on=["trial_id", "arm_id"], how="left")
    user = np.array([overrides.get((t, r), np.nan) for t, r in zip(a["trial_id"], a["arm_id"])])
    sources = [("user", user), ("outcome", a["n"]), ("n_analysed", a["n_analysed"]),
               ("n_randomized", a["n_randomized"])]
    n = np.full(len(a), np.nan)
    n_from = np.full(len(a), "", dtype=object)
    for name, values in reversed(sources):
        v = np.asarray(values, dtype=float)
        n = np.where(np.isfinite(v), v, n)
        n_from = np.where(np.isfinite(v), name, n_from)
    a["n_arm"], a["n_from"] = n, n_from

    notes = [[] for _ in range(len(a))]
    problems = [[] for _ in range(len(a))]

    # VAS stated as 0-10: rescale to 0-100 mm (only when scale_min/scale_max say so)
    vas10 = ((a["outcome"] == "VAS") & (a["scale_min"] == 0) & (a["scale_max"] == 10)).to_numpy()
    for c in ("mean", "sd", "se", "median", "q1", "q3", "min", "max", "ci_low", "ci_high"):
        a[c] = np.where(vas10, a[c] * 10.0, a[c])
    a["scale_max"] = np.where(vas10, 100.0, a["scale_max"])
    a["scale"] = [_scale_text(lo, hi) for lo, hi in zip(a["scale_min"], a["scale_max"])]

    binary = ((a["stat_reported"] == "events") | a["events"].notna()).to_numpy()
    pm = (a["stat_reported"] == "mean_pm_unlabelled").to_numpy()
    mean = a["mean"].to_numpy(dtype=float)
    sd = np.where(pm, np.nan, a["sd"].to_numpy(dtype=float))
    if unlabelled_pm == "sd":
        sd = np.where(pm, a["sd"], sd)
    elif unlabelled_pm == "se":
        sd = np.where(pm, cv.sd_from_se(a["sd"], n), sd)
    from_se = ~pm & np.isnan(sd) & a["se"].notna().to_numpy()
    sd = np.where(from_se, cv.sd_from_se(a["se"], n), sd)
    has_ci = a["ci_low"].notna().to_numpy() & a["ci_high"].notna().to_numpy()
    from_ci = ~pm & np.isnan(sd) & ~from_se & has_ci
    level = a["ci_level"].fillna(95.0).to_numpy()
    sd = np.where(from_ci, cv.sd_from_ci(a["ci_low"], a["ci_high"], n, level), sd)

    from_median = np.isnan(mean) & a["median"].notna().to_numpy()
    if median_method is not None:
        m_est, sd_est, label = cv.estimate_mean_sd(a["median"], a["q1"], a["q3"], a["min"],
                                                   a["max"], n, median_method)
        mean = np.where(from_median, m_est, mean)
        sd = np.where(from_median & np.isnan(sd), sd_est, sd)
    else:
        label = np.full(len(a), "", dtype=object)

    spread = (a["sd"].notna() | a["se"].notna() | (a["q1"].notna() & a["q3"].notna())
              | (a["min"].notna() & a["max"].notna())).to_numpy() | has_ci
    for i in range(len(a)):
        if vas10[i]:
            notes[i].append("VAS 0-10 rescaled to 0-100 mm (x10)")
        if not np.isfinite(n[i]):
            problems[i].append("per-arm n not reported")
        if binary[i]:
            if np.isnan(a["events"].iat[i]):
                problems[i].append("events not reported")
            continue
        if pm[i] and unlabelled_pm is None:
            problems[i].append("+/- not labelled SD or SE ({arms}): stat_reported "
                               "mean_pm_unlabelled; pass unlabelled_pm='sd' or 'se' if a "
                               "source says which")
        elif pm[i]:
            notes[i].append(f"+/- taken as {unlabelled_pm.upper()} (unlabelled_pm="
                            f"'{unlabelled_pm}')" + (", SD = SE*sqrt(n)" * (unlabelled_pm == "se")))
        if from_se[i]:
            notes[i].append("SD = SE*sqrt(n)")
        if from_ci[i]:
            dist = "t" if n[i] < cv.T_BELOW_N else "normal"
            notes[i].append(f"SD from {level[i]:g}% CI ({dist} quantile)")
        if from_median[i] and median_method is None:
            problems[i].append("median not converted to a mean (median_method=None)")
        elif from_median[i] and label[i]:
            notes[i].append(str(label[i]))
        elif from_median[i]:
            problems[i].append("median reported without IQR or range")
        elif np.isnan(mean[i]):
            problems[i].append("mean not reported")
        if not spread[i] and not from_median[i]:
            problems[i].append("SD not reported (nor SE, CI, IQR or range)")
    a["mean_hat"], a["sd_hat"], a["binary"] = mean, sd, binary
    a["notes"] = [tuple(x) for x in notes]
    a["problems"] = [tuple(x) for x in problems]
    return a


def _derived_changes(arms, r):
    """Change-from-baseline arm values derived from final values and a pre-post correlation."""
    final = arms[(arms["value_type"] == "final") & ~arms["binary"]]
    base = final[final["time_months"] == 0]
    follow = final[final["time_months"] > 0]
    have = arms[arms["value_type"] == "change_from_baseline"][_KEY[:4]]
    d = follow.merge(base[["trial_id", "arm_id", "outcome", "mean_hat", "sd_hat", "notes",
                           "problems"]], on=["trial_id", "arm_id", "outcome"], suffixes=("", "_0"))
    d = d.merge(have, on=_KEY[:4], how="left", indicator=True)
    d = d[d["_merge"] == "left_only"].drop(columns="_merge")
    d["mean_hat"] = d["mean_hat"] - d["mean_hat_0"]
    d["sd_hat"] = cv.sd_change(d["sd_hat_0"], d["sd_hat"], r)
    d["value_type"] = "change_from_baseline"
    d["notes"] = [tuple(dict.fromkeys(n + n0 + (f"change derived from final values "
                                                 f"(pre-post r = {r:g})",)))
                  for n, n0 in zip(d["notes"], d["notes_0"])]
    d["problems"] = [tuple(dict.fromkeys(p + p0)) for p, p0 in zip(d["problems"], d["problems_0"])]
    return d.drop(columns=["mean_hat_0", "sd_hat_0", "notes_0", "problems_0"])


# --------------------------------------------------------------------------- comparisons


def _comparisons(trials):
    """Every MSC arm x every control arm of a trial, with the moderators of each arm."""
    msc = trials[trials["arm_role"] == "msc"]
    ctl = trials[trials["arm_role"] == "control"]
    c = msc.merge(ctl[["trial_id", "arm_id", "control_type"]], on="trial_id",
                  suffixes=("", "_ctl"))
    c = c.rename(columns={"arm_id": "msc_arm", "arm_id_ctl": "control_arm"})
    c["control_type"] = c["control_type_ctl"]
    c["comparison"] = c["msc_arm"] + " vs " + c["control_arm"]
    return c[["trial_id", "comparison", "msc_arm", "control_arm", "cell_source", "origin",
              "cells_per_injection", "n_injections", "control_type", "in_scope"]]


def _pairs(comparisons, arms, value_type, pre_post_r, one_value_type=False,
           include_out_of_scope=False):
    """One row per comparison x outcome x follow-up time, with both arms' values (m_*, c_*).

    ``one_value_type`` (standardized measures under ``value_type="auto"``, unless
    ``mix_change_final=True``): all comparisons of one outcome and time use one value type, as
    SMDs of change scores and of final values are not on one scale (Cochrane Handbook 10.5.2):
    the type that gives more in-scope comparisons with values in both arms (a tie: change values,
    as ``auto`` prefers them); a comparison that has only the other type keeps it, with the reason
    in ``vt_problem`` (so it is excluded, not dropped).
    """
    follow = arms[arms["time_months"] > 0]
    keys = follow[["trial_id", "arm_id", "outcome", "time_months"]].drop_duplicates()
    p = pd.concat([
        comparisons.merge(keys.rename(columns={"arm_id": side}), on=["trial_id", side])
        for side in ("msc_arm", "control_arm")
    ]).drop_duplicates(["trial_id", "comparison", "outcome", "time_months"]).reset_index(drop=True)

    def have(vt):
        rows = set(map(tuple, follow.loc[follow["value_type"] == vt,
                                         ["trial_id", "arm_id", "outcome", "time_months"]]
                       .itertuples(index=False)))
        return np.array([(t, m, o, x) in rows and (t, c, o, x) in rows
                         for t, m, c, o, x in p[["trial_id", "msc_arm", "control_arm", "outcome",
                                                 "time_months"]].itertuples(index=False)], dtype=bool)

    change, final = "change_from_baseline", "final"
    p["vt_problem"] = ""
    if value_type == "auto":
        ch, fi = have(change), have(final)
        p["value_type"] = np.where(ch, change, final)
        if one_value_type and len(p):
            counted = p["in_scope"].to_numpy(dtype=bool) | include_out_of_scope
            for _, idx in p.groupby(["outcome", "time_months"], sort=False).groups.items():
                idx = np.asarray(idx)
                if not (ch[idx].any() and (fi[idx] & ~ch[idx]).any()):
                    continue  # one value type already
                n_c, n_f = int((ch & counted)[idx].sum()), int((fi & counted)[idx].sum())
                chosen, other = (change, final) if n_c >= n_f else (final, change)
                has_chosen, has_other = (ch, fi) if chosen == change else (fi, ch)
                for j in idx:
                    if has_chosen[j] or not has_other[j]:
                        p.at[j, "value_type"] = chosen
                        continue
                    p.at[j, "value_type"] = other
                    n_chosen = n_c if chosen == change else n_f
                    p.at[j, "vt_problem"] = (
                        f"{_VT_WORD[other]} SMD not combined with the {_VT_WORD[chosen]} SMDs of "
                        f"{n_chosen} comparison{'s' * (n_chosen != 1)} at this outcome and time "
                        "(Cochrane Handbook 10.5.2: their SDs differ); mix_change_final=True "
                        "combines them")
    else:
        p["value_type"] = _VT_LONG[value_type]

    cols = ["n_arm", "n_from", "mean_hat", "sd_hat", "events", "binary", "scale", "notes",
            "problems"]
    side = follow[_KEY + cols]
    for prefix, arm in (("m_", "msc_arm"), ("c_", "control_arm")):
        p = p.merge(side.rename(columns={"arm_id": arm} | {c: prefix + c for c in cols}),
                    on=["trial_id", arm, "outcome", "time_months", "value_type"], how="left")
    p["m_present"] = p["m_n_from"].notna()
    p["c_present"] = p["c_n_from"].notna()
    # direction is a property of the outcome (the data layer refuses rows that disagree)
    direction = arms.groupby(["trial_id", "outcome"])["lower_is_better"].agg(
        lambda s: next((v for v in s if v is not None), None))
    p["lower_is_better"] = [direction.get((t, o)) for t, o in zip(p["trial_id"], p["outcome"])]
    p["pre_post_r"] = pre_post_r
    return p.reset_index(drop=True)


def _multiarm(p, multiarm):
    """Split (or keep and group) the n of arms shared by several comparisons (Handbook 23.3.4)."""
    both = p["m_present"] & p["c_present"]
    at = ["trial_id", "outcome", "time_months", "value_type"]
    k_c = p[both].groupby(at + ["control_arm"])["msc_arm"].transform("nunique")
    k_m = p[both].groupby(at + ["msc_arm"])["control_arm"].transform("nunique")
    p["k_c"] = k_c.reindex(p.index).fillna(1).astype(int)
    p["k_m"] = k_m.reindex(p.index).fillna(1).astype(int)

    def split(n, k):
        return np.where((k > 1) & np.isfinite(n), np.maximum(2.0, np.floor(n / k)), n)

    if multiarm == "split":
        p["m_n_var"] = split(p["m_n_arm"].to_numpy(dtype=float), p["k_m"].to_numpy())
        p["c_n_var"] = split(p["c_n_arm"].to_numpy(dtype=float), p["k_c"].to_numpy())
    else:
        p["m_n_var"], p["c_n_var"] = p["m_n_arm"], p["c_n_arm"]

    texts, groups = [], []
    for r in p.itertuples(index=False):
        shared = [(arm, k, n, nv) for arm, k, n, nv in
                  ((r.msc_arm, r.k_m, r.m_n_arm, r.m_n_var),
                   (r.control_arm, r.k_c, r.c_n_arm, r.c_n_var)) if k > 1]
        if not shared:
            texts.append("")
            groups.append("")
        elif multiarm == "split":
            texts.append("split: " + "; ".join(
                f"{arm} n {_fmt_n(n)} -> {_fmt_n(nv)} (shared by {k} comparisons)"
                for arm, k, n, nv in shared))
            groups.append("")
        else:
            texts.append("keep: " + "; ".join(f"{arm} shared by {k} comparisons"
                                              for arm, k, _, _ in shared))
            groups.append("; ".join(f"{r.trial_id}:{arm}" for arm, *_ in shared))
    p["multiarm"], p["cov_group"] = texts, groups
    return p


def _row_events(p, multiarm):
    """Raw events behind each row's ``n_msc`` and ``n_control`` (NaN where no events are reported).

    ``keep``, or an arm used by one comparison: the arm's reported events. ``split``: an arm shared
    by k comparisons has its n split (:func:`_multiarm`), and its events e are apportioned to its k
    rows in proportion to the split n: quota ``q_j = e * n_j / n`` (what the variance uses), total
    ``round(sum q_j)`` (half up; = e unless the floor of n / k dropped patients), whole numbers by
    largest remainder (ties in comparison order), never above ``n_j``. So every row is a 2x2 table
    of whole numbers, and the pieces of a split arm add up to its events again (an arm-based model
    sums them: :mod:`bayes_koa.build_binomial`). Never zero-cell corrected.
    Returns ``(events_msc, events_control)`` as float arrays.
    """
    out = []
    for prefix, arm, k in (("m_", "msc_arm", "k_m"), ("c_", "control_arm", "k_c")):
        events = p[prefix + "events"].to_numpy(dtype=float).copy()
        if multiarm == "split":
            n_full = p[prefix + "n_arm"].to_numpy(dtype=float)
            n_var = p[prefix + "n_var"].to_numpy(dtype=float)
            shared = (p[k].to_numpy() > 1) & np.isfinite(events)
            keys = ["trial_id", "outcome", "time_months", "value_type", arm]
            for _, g in p[shared].groupby(keys, sort=False):
                idx = g.sort_values("comparison").index.to_numpy()
                events[idx] = _apportion(events[idx[0]], n_full[idx[0]], n_var[idx])
        out.append(events)
    return out[0], out[1]


def _apportion(e, n, pieces):
    """Whole events per piece of an arm (largest remainder; see :func:`_row_events`)."""
    if not (np.isfinite(n) and n > 0 and np.isfinite(pieces).all()):
        return np.full(len(pieces), np.nan)
    quota = e * pieces / n
    total = min(math.floor(quota.sum() + 0.5), int(pieces.sum()))
    whole = np.minimum(np.floor(quota), pieces)
    order = sorted(range(len(pieces)), key=lambda j: (-(quota[j] - whole[j]), j))
    left = total - int(whole.sum())
    for j in order:
        if left <= 0:
            break
        if whole[j] < pieces[j]:
            whole[j] += 1
            left -= 1
    return whole


def _fmt_n(n):
    return "NA" if not np.isfinite(n) else f"{n:g}"


# --------------------------------------------------------------------------- effects


def _merge(m_items, c_items, msc_arm, control_arm, prefix_arm=False):
    """Items of the two arms as text, naming the arm(s) each applies to."""
    order = list(dict.fromkeys(list(m_items) + list(c_items)))
    out = []
    for item in order:
        arms = [a for a, items in ((msc_arm, m_items), (control_arm, c_items)) if item in items]
        if prefix_arm:
            out.append(item if len(arms) == 2 else f"{arms[0]}: {item}")
        elif "{arms}" in item:
            out.append(item.format(arms=", ".join(arms)))
        else:
            out.append(f"{item} ({', '.join(arms)})")
    return out


def _effects(p, measure, cc, cc_when, include_out_of_scope):
    if p.empty:
        return None
    binary = (p["m_binary"].fillna(False) | p["c_binary"].fillna(False)).to_numpy(dtype=bool)
    if measure == "auto":
        row_measure = np.where(binary, "logOR", "SMD")
    else:
        row_measure = np.full(len(p), measure, dtype=object)

    args_full = [p[c].to_numpy(dtype=float) for c in ("m_mean_hat", "m_sd_hat", "m_n_arm",
                                                      "c_mean_hat", "c_sd_hat", "c_n_arm")]
    args_var = [p[c].to_numpy(dtype=float) for c in ("m_mean_hat", "m_sd_hat", "m_n_var",
                                                     "c_mean_hat", "c_sd_hat", "c_n_var")]
    ev = [p[c].to_numpy(dtype=float) for c in ("m_events", "m_n_arm", "c_events", "c_n_arm")]
    ratio_m = p["m_n_var"].to_numpy(dtype=float) / ev[1]
    ratio_c = p["c_n_var"].to_numpy(dtype=float) / ev[3]
    ev_var = [ev[0] * ratio_m, ev[1] * ratio_m, ev[2] * ratio_c, ev[3] * ratio_c]
    functions = {"MD": cv.md, "SMD": cv.smd, "SMDH": cv.smdh, "ROM": cv.rom,
                 "logOR": lambda *x: cv.log_odds_ratio(*x, cc=cc, cc_when=cc_when),
                 "logRR": lambda *x: cv.log_risk_ratio(*x, cc=cc, cc_when=cc_when)}
    yi = np.full(len(p), np.nan)
    vi = np.full(len(p), np.nan)
    with np.errstate(all="ignore"):
        for name, f in functions.items():
            rows = (row_measure == name) & (binary == (name in BINARY_MEASURES))
            if not rows.any():
                continue
            full, var = (ev, ev_var) if name in BINARY_MEASURES else (args_full, args_var)
            yi = np.where(rows, f(*full)[0], yi)
            vi = np.where(rows, f(*var)[1], vi)

    lib = list(p["lower_is_better"])
    yi, flipped = orient(yi, np.array(lib, dtype=object))
    corrected = binary & cv.needs_zero_cell_correction(*ev, cc_when=cc_when)
    double_zero = binary & cv.double_zero(*ev)

    estimated, reasons, scales = [], [], []
    for i, r in enumerate(p.itertuples(index=False)):
        m_notes = r.m_notes if r.m_present else ()
        c_notes = r.c_notes if r.c_present else ()
        notes = _merge(m_notes, c_notes, r.msc_arm, r.control_arm, prefix_arm=True)
        if corrected[i]:
            notes.append(f"{cc:g} added to every cell (zero cell)")
        estimated.append("; ".join(notes))
        scale, scale_problem = _pair_scale(r, binary[i])
        scales.append(scale)
        reasons.append("; ".join(_reasons(r, row_measure[i], binary[i], lib[i], yi[i], vi[i],
                                          double_zero[i], scale_problem, include_out_of_scope)))
    return pd.DataFrame({
        "trial_id": p["trial_id"], "comparison": p["comparison"], "msc_arm": p["msc_arm"],
        "control_arm": p["control_arm"], "outcome": p["outcome"],
        "time_months": p["time_months"], "measure": row_measure, "yi": yi, "vi": vi,
        "sei": np.sqrt(vi), "n_msc": p["m_n_var"].astype("Int64"),
        "n_control": p["c_n_var"].astype("Int64"),
        "events_msc": p["m_events_row"].astype("float64"),
        "events_control": p["c_events_row"].astype("float64"),
        "n_from": [_n_from(r) for r in p.itertuples(index=False)],
        "cell_source": p["cell_source"], "origin": p["origin"],
        "cells_per_injection": p["cells_per_injection"], "n_injections": p["n_injections"],
        "control_type": p["control_type"], "value_type": p["value_type"],
        "estimated": estimated, "flipped": flipped, "scale": scales,
        "multiarm": p["multiarm"], "cov_group": p["cov_group"],
        "in_scope": p["in_scope"].astype(bool), "excluded_reason": reasons,
    })


def _n_from(r):
    m = r.m_n_from if r.m_present else ""
    c = r.c_n_from if r.c_present else ""
    if m == c:
        return m
    return f"{r.msc_arm}: {m or 'none'}; {r.control_arm}: {c or 'none'}"


def _pair_scale(r, binary):
    if binary:
        return "events", ""
    known = {s for s, present in ((r.m_scale, r.m_present), (r.c_scale, r.c_present))
             if present and s != "unknown"}
    if len(known) > 1:
        return "/".join(sorted(known)), (f"arms on different scales ({r.msc_arm} {r.m_scale}, "
                                         f"{r.control_arm} {r.c_scale})")
    return (known.pop() if known else "unknown"), ""


def _reasons(r, measure, binary, lib, yi, vi, double_zero, scale_problem, include_out_of_scope):
    reasons = []
    if not r.in_scope and not include_out_of_scope:
        reasons.append("trial out of scope (in_scope = no; include_out_of_scope=True to use it)")
    missing = [arm for present, arm in ((r.m_present, r.msc_arm), (r.c_present, r.control_arm))
               if not present]
    if missing:
        hint = ""
        if r.value_type == "change_from_baseline" and r.pre_post_r is None:
            hint = "; pass pre_post_r to derive change values from final values"
        elif r.value_type == "final":
            hint = "; value_type='change' or 'auto' uses change values"
        reasons.append(f"no {r.value_type} value at {r.time_months:g} months "
                       f"({', '.join(missing)}){hint}")
    if binary and measure in CONTINUOUS_MEASURES:
        reasons.append(f"binary outcome (events): measure {measure} does not apply; "
                       "use logOR or logRR")
    if not binary and measure in BINARY_MEASURES:
        reasons.append(f"continuous outcome: measure {measure} does not apply")
    if lib is None:
        reasons.append(f"direction unclear: lower_is_better empty for {r.outcome}")
    if scale_problem:
        reasons.append(scale_problem)
    if r.vt_problem:
        reasons.append(r.vt_problem)
    m_problems = r.m_problems if r.m_present else ()
    c_problems = r.c_problems if r.c_present else ()
    reasons += _merge(m_problems, c_problems, r.msc_arm, r.control_arm)
    if double_zero:
        reasons.append("no events in either arm (double-zero table: no information on "
                       f"{measure}; not corrected)")
    if measure == "ROM" and r.m_present and r.c_present and not binary and \
            not (r.m_mean_hat > 0 and r.c_mean_hat > 0):
        reasons.append("ROM needs positive means in both arms")
    if not reasons and not (np.isfinite(yi) and np.isfinite(vi)):
        reasons.append(f"{measure} not computable from the reported values")
    if np.isfinite(yi) and not np.isfinite(vi):
        reasons.append("vi not computable (yi kept)")
    return reasons


def _unmatched(trials, comparisons, pairs, out_all, measure, outcome_sel, time_sel,
               include_out_of_scope):
    """One row for each comparison (or trial without one) that has no effect row, saying why.

    ``out_all``: the outcomes before the outcome/time selection, to tell "nothing in the data"
    and "baseline only" from "nothing in the selection".
    """
    done = set(zip(pairs["trial_id"], pairs["comparison"]))
    times = out_all.groupby(["trial_id", "arm_id"])["time_months"].agg(set).to_dict()
    rows = []
    for r in comparisons.itertuples(index=False):
        if (r.trial_id, r.comparison) in done:
            continue
        arm_times = times.get((r.trial_id, r.msc_arm), set()) | times.get(
            (r.trial_id, r.control_arm), set())
        if not arm_times:
            why = "no arm-level outcome values in the data"
        elif arm_times == {0.0}:
            why = "baseline values only (time 0): no follow-up values"
        else:
            why = "no values for the selected outcomes/times"
        if not r.in_scope and not include_out_of_scope:
            why = "trial out of scope (in_scope = no; include_out_of_scope=True to use it); " + why
        rows.append(r._asdict() | {"excluded_reason": why})
    for trial, arms in trials.groupby("trial_id", sort=False):
        roles = set(arms["arm_role"])
        if roles == {"msc", "control"}:
            continue
        first = arms.iloc[0]
        why = "no control arm (single-arm study)" if "control" not in roles else "no MSC arm"
        rows.append({"trial_id": trial, "comparison": "", "msc_arm": "", "control_arm": "",
                     "cell_source": first["cell_source"], "origin": first["origin"],
                     "in_scope": bool(first["in_scope"]), "excluded_reason": why})
    if not rows:
        return None
    u = pd.DataFrame(rows)
    u["outcome"] = pd.NA
    u["time_months"] = np.nan
    u["measure"] = measure
    u["yi"] = u["vi"] = u["sei"] = np.nan
    u["n_msc"] = u["n_control"] = pd.array([pd.NA] * len(u), dtype="Int64")
    for c in ("n_from", "value_type", "estimated", "scale", "multiarm", "cov_group"):
        u[c] = ""
    u["flipped"] = False
    return u.reindex(columns=list(COLUMNS))


def _with_dtypes(table):
    """Fixed dtypes whatever the mix of rows: numbers float, n Int64, flags bool, text str."""
    if table.empty:
        return pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, "str")) for c in COLUMNS})
    for c in COLUMNS:
        kind = _DTYPES.get(c, "str")
        # text columns: "" for empty, except outcome, which is missing on summary rows
        table[c] = table[c].astype(kind) if kind != "str" or c == "outcome" \
            else table[c].fillna("").astype(kind)
    return table


_DTYPES = {"time_months": "float64", "yi": "float64", "vi": "float64", "sei": "float64",
           "n_msc": "Int64", "n_control": "Int64", "events_msc": "float64", "events_control": "float64", "cells_per_injection": "float64",
           "n_injections": "float64", "flipped": "bool", "in_scope": "bool"}


def _check_md_scales(table):
    """Raw mean differences on different stated ranges of one outcome family cannot be pooled."""
    ok = usable(table)
    ok = ok[~ok["scale"].isin(["unknown", "events"])]
    if ok.empty:
        return
    family = ok["outcome"].map(lambda o: getattr(outcome_info(o), "family", o))
    for fam, rows in ok.groupby(family):
        ranges = rows.groupby("scale")
        if ranges.ngroups > 1:
            detail = "; ".join(f"{scale}: " + ", ".join(sorted(set(
                g["trial_id"] + " " + g["outcome"]))) for scale, g in ranges)
            raise DataValidationError(
                f"measure='MD': outcome family {fam} has rows on different scale ranges "
                f"({detail}); raw mean differences on different ranges cannot be pooled. "
                "Use measure='SMD', or select outcomes of one range with outcomes=[...]")


_VAS_CM_TOP = 10.0  # a 0-10 cm VAS: no value above 10; a 0-100 mm VAS of knee OA patients has baselines far above


def _check_vas_units(table, out):
    """VAS rows pooled as MD without a stated range: warn, naming the trial, where every value
    is at most 10, as on a 0-10 cm scale (an MD in cm next to MDs in mm is 10 times too small;
    the MD priors are in mm). A stated 0-10 is rescaled to mm and needs no guess."""
    ok = usable(table)
    vas = ok[(ok["outcome"] == "VAS") & (ok["scale"] == "unknown")]
    if vas.empty:
        return
    rows = out[(out["outcome"] == "VAS") & out["scale_min"].isna() & out["scale_max"].isna()]
    largest = rows.groupby("trial_id")[["mean", "median", "q1", "q3", "min", "max"]].max().max(axis=1)
    lines = []
    for trial in dict.fromkeys(vas["trial_id"]):
        top = largest.get(trial, np.nan)
        if np.isfinite(top) and top <= _VAS_CM_TOP:
            lines.append(f"{trial} / all arms / column scale_max: VAS scale range not stated and every "
                         f"value is at most {top:g}, as on a 0-10 cm scale, while MDs are in mm; "
                         "state scale_min/scale_max (a stated 0-10 is rescaled to mm)")
    if lines:
        warnings.warn("measure='MD': VAS units unclear:\n" + "\n".join(f"- {x}" for x in lines),
                      DataValidationWarning, stacklevel=3)
