"""SIMULATED arm-level trial data on the real in-scope trial designs, from a stated truth.

The bundled outcome data are too thin to rank cell sources (four trials have numbers), so this
module draws arm-level summaries for the designs of the real in-scope randomized trials (arms, cell
source, origin, dose, number of injections, control, follow-up, n) from a hierarchical model whose
parameters are stated in :data:`DEFAULT_TRUTH`. Every feature of the package (ranking, time course,
four outcomes, origin, dose, injections, adverse events) can then be shown and its parameter recovery
tested. Everything made from these data must say SIMULATED: the tables carry it on every row
(``source``, ``notes``), the returned object has ``simulated = True`` and a ``source`` starting with
"SIMULATED", and trial ids carry the prefix :data:`ID_PREFIX`.

Generating model (SMD units, MSC - control, negative = benefit; ARCHITECTURE.md):

* comparison (MSC arm j of trial i, source s, origin o):
  ``theta_ij = source_mean[s] + origin_offset[s, o] + beta_dose * log10(cells / 4e7)
  + beta_inj * (n_injections - 1) + u_i``, ``u_i ~ Normal(0, tau)``. A missing origin, dose or
  number of injections is generated at the reference (midpoint of the origins, 4e7 cells, one
  injection) and stays missing in the tables.
* time and outcome: ``delta_ijtk = f(t) * theta_ij + d_it + e_ik`` with ``d_it ~ Normal(0,
  sd_trial_time)`` (trial x time) and ``e_ik ~ Normal(0, sd_trial_outcome)`` (trial x outcome).
* arms: control true mean ``m_k(t) + c_ik * SD_k`` (``c_ik ~ Normal(0, sd_trial_level)``, shared by
  both arms, so it cancels in MSC - control); MSC true mean = control + ``delta * SD_k`` on
  lower-is-better scales and ``- delta * SD_k`` on higher-is-better ones (Lysholm). Baseline
  (time 0): both arms at the control baseline. Observed mean ~ Normal(true, SD/sqrt(n)); observed SD
  = SD * sqrt(chi2(n-1)/(n-1)).
* adverse events (``AE_any``): ``events ~ Binomial(n, p)``, ``logit p = logit(p_control) + b_i
  (+ log_or[s] in MSC arms)``, ``b_i ~ Normal(0, sd_trial_logit)``.

Random numbers: one :class:`numpy.random.SeedSequence` from ``seed``, spawned into one child per
trial (design order); within a trial the draws come in a fixed order over the full outcome x time x
arm grid, so the same seed gives identical tables, and the continuous data do not depend on
``adverse_events``.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

from ..data import DataValidationWarning, TrialData, read_trials
from ..data.schema import SCHEMA
from .bundled import load_koa_msc

__all__ = [
    "SEED",
    "ID_PREFIX",
    "SIM_SOURCES",
    "DEFAULT_OUTCOMES",
    "DEFAULT_TIMES",
    "DEFAULT_TRUTH",
    "FILES",
    "SimulatedTrialData",
    "default_truth",
    "select_design",
    "arm_sizes",
    "simulate",
    "load_simulated",
    "write_simulated",
]

SEED = 20261126
"""Seed of the shipped simulated data set (``bayes_koa/koa/data/simulated``)."""

ID_PREFIX = "SIM_"
"""Prefix of every simulated trial id, so a forest-plot row can never pass for a real trial."""

SIM_SOURCES = ("BM", "UC", "AD")
DEFAULT_OUTCOMES = ("VAS", "WOMAC_total", "Lequesne", "Lysholm")
DEFAULT_TIMES = (3, 6, 12)
FILES = ("trials.csv", "outcomes.csv", "truth.json", "README.md")
SIMULATED_DIR = "simulated"
REF_CELLS = 4e7  # reference dose, as bayes_koa.spec.MODERATORS (log10(x / 4e7))

# Every number of the generating model. Keys of time-indexed dicts are the month as text ("6").
DEFAULT_TRUTH: dict = {
    "measure": "SMD",
    "direction": "MSC - control; negative = benefit of MSC on every outcome (higher-is-better "
                 "scales are generated with the opposite sign of the score difference)",
    "mu": -0.66,
    "mu_basis": "Ma 2020 pooled WOMAC total SMD -0.66 (95% CI -1.09 to -0.23; pooled_targets.csv); "
                "-0.66 x VAS SD 20 mm = -13.2 mm, close to BoneJointRes 2020 VAS MD -13.24 "
                "(pooled_targets.csv). mu is the unweighted mean of the three source means.",
    "source_means": {"BM": -0.45, "UC": -0.85, "AD": -0.68},
    "source_means_basis": "Chosen (not estimated) so that the ordering UC > AD > BM (the 2023 "
                          "paper's claim) is TRUE in the simulation and their mean equals mu. They "
                          "are the effects at 6 months, one injection of 4e7 cells, midpoint of "
                          "the two origins.",
    "origin_offsets": {
        "BM": {"autologous": 0.0, "allogeneic": 0.0},
        "UC": {"autologous": 0.0, "allogeneic": 0.0},
        "AD": {"autologous": -0.075, "allogeneic": 0.075},
    },
    "origin_basis": "Autologous AD 0.15 SMD better than allogeneic AD; no origin effect for BM or "
                    "UC. Offsets are +/- half the difference, so a source mean is the midpoint of "
                    "its two origins; a trial with no stated origin is generated at the midpoint.",
    "beta": {"log_dose": -0.05, "n_injections": -0.10},
    "beta_basis": "log_dose: per 10-fold more cells per injection relative to 4e7 cells; "
                  "n_injections: per extra injection relative to one (4 injections beat 2 by "
                  "0.20). As bayes_koa.spec.MODERATORS. Missing dose or number of injections: "
                  "generated at the reference (term 0), left missing in the tables.",
    "tau": 0.25,
    "time_profile": {"3": 0.8, "6": 1.0, "12": 0.9},
    "sd_trial_time": 0.08,
    "sd_trial_outcome": 0.10,
    "sd_trial_level": 0.20,
    "scales": {
        "VAS": {"scale_min": 0.0, "scale_max": 100.0, "sd": 20.0, "lower_is_better": True,
                "control_mean": {"0": 60.0, "3": 47.0, "6": 45.0, "12": 46.0}},
        "WOMAC_total": {"scale_min": 0.0, "scale_max": 96.0, "sd": 15.0, "lower_is_better": True,
                        "control_mean": {"0": 45.0, "3": 37.0, "6": 35.0, "12": 36.0}},
        "Lequesne": {"scale_min": 0.0, "scale_max": 24.0, "sd": 4.0, "lower_is_better": True,
                     "control_mean": {"0": 12.0, "3": 10.0, "6": 9.5, "12": 10.0}},
        "Lysholm": {"scale_min": 0.0, "scale_max": 100.0, "sd": 15.0, "lower_is_better": False,
                    "control_mean": {"0": 55.0, "3": 63.0, "6": 65.0, "12": 64.0}},
    },
    "report_probability": {"VAS": 1.0, "WOMAC_total": 1.0, "Lequesne": 0.4, "Lysholm": 0.4},
    "adverse_events": {
        "outcome": "AE_any",
        "p_control": 0.15,
        "log_or": {"BM": 0.5, "UC": 0.4, "AD": 0.3},
        "sd_trial_logit": 0.5,
        "tau_log_or": 0.0,
        "time_if_followup_unknown": 12.0,
        "basis": "Assumptions, not estimates: MSC injections often cause transient pain or "
                 "swelling, so MSC arms have more patients with any adverse event (odds ratios "
                 "exp(0.5) = 1.65 BM, exp(0.4) = 1.49 UC, exp(0.3) = 1.35 AD); no between-trial "
                 "heterogeneity in the log odds ratio.",
    },
    "decimals": 2,
}
"""The stated truth (see module docstring). Override parts with ``simulate(truth={...})``."""

_DERIVED_KEYS = ("SIMULATED", "seed", "generator", "call", "cell_means", "sigma_source_implied",
                 "implied_outcome_correlation", "design", "design_mean_theta", "clips",
                 "trial_effects", "comparison_effects", "true_effects", "true_ae")


# --------------------------------------------------------------------------- result object


@dataclass(frozen=True, eq=False, repr=False)
class SimulatedTrialData(TrialData):
    """A :class:`~bayes_koa.data.TrialData` of SIMULATED trials.

    ``truth``: every parameter of the generating model and the realised true effects (the content of
    ``truth.json``); ``simulated``: always True; ``files``: the exact text of ``trials.csv``,
    ``outcomes.csv``, ``truth.json`` and ``README.md``.
    """

    truth: dict = field(default_factory=dict)
    simulated: bool = True
    files: dict = field(default_factory=dict)

    def _summary(self) -> list[str]:
        return ["SIMULATED DATA (not trial results); truth in .truth"] + super()._summary()

    def __repr__(self) -> str:
        head = f"SIMULATED TrialData(source={self.source!r}, data_hash={self.data_hash[:12]!r})"
        return "\n".join([head] + ["  " + s for s in self._summary()])


# --------------------------------------------------------------------------- truth


def default_truth() -> dict:
    """A deep copy of :data:`DEFAULT_TRUTH`."""
    return copy.deepcopy(DEFAULT_TRUTH)


def _merge(base: dict, over: dict, path: str = "truth") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in out and path == "truth":
            raise ValueError(f"{path}: unknown key {k!r} (known: {', '.join(out)})")
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, f"{path}.{k}")
        else:
            out[k] = copy.deepcopy(v)
    return out


def _tkey(t: float) -> str:
    return f"{float(t):g}"


def _check_truth(truth: dict, outcomes: tuple[str, ...], times: tuple[float, ...]) -> None:
    for s in SIM_SOURCES:
        if s not in truth["source_means"]:
            raise ValueError(f"truth.source_means has no value for source {s}")
        if s not in truth["adverse_events"]["log_or"]:
            raise ValueError(f"truth.adverse_events.log_or has no value for source {s}")
        for o in ("autologous", "allogeneic"):
            if o not in truth["origin_offsets"].get(s, {}):
                raise ValueError(f"truth.origin_offsets.{s} has no value for origin {o}")
    for t in times:
        if t <= 0:
            raise ValueError(f"times must be > 0 months (baseline 0 is always written), got {t:g}")
        if _tkey(t) not in truth["time_profile"]:
            raise ValueError(f"truth.time_profile has no multiplier for {_tkey(t)} months")
    for k in outcomes:
        sc = truth["scales"].get(k)
        if sc is None:
            raise ValueError(f"outcome {k!r} has no entry in truth.scales "
                             f"(known: {', '.join(truth['scales'])})")
        for t in (0.0, *times):
            if _tkey(t) not in sc["control_mean"]:
                raise ValueError(f"truth.scales.{k}.control_mean has no value for {_tkey(t)} months")
            m = sc["control_mean"][_tkey(t)]
            if not sc["scale_min"] < m < sc["scale_max"]:
                raise ValueError(f"truth.scales.{k}.control_mean at {_tkey(t)} months ({m:g}) is "
                                 f"outside the scale {sc['scale_min']:g}-{sc['scale_max']:g}")
        if k not in truth["report_probability"]:
            raise ValueError(f"truth.report_probability has no value for outcome {k}")
    for name in ("tau", "sd_trial_time", "sd_trial_outcome", "sd_trial_level"):
        if truth[name] < 0:
            raise ValueError(f"truth.{name} must be >= 0, got {truth[name]}")


def _cell_mean(truth: dict, source: str, origin) -> float:
    off = 0.0 if _na(origin) else truth["origin_offsets"][source][origin]
    return truth["source_means"][source] + off


def _implied_correlation(truth: dict, times) -> dict:
    """Correlation of two outcomes' true SMDs of one comparison at one time (sampling error
    excluded): (f^2 tau^2 + sd_time^2) / (f^2 tau^2 + sd_time^2 + sd_outcome^2)."""
    out = {}
    for t in times:
        f = truth["time_profile"][_tkey(t)]
        shared = f * f * truth["tau"] ** 2 + truth["sd_trial_time"] ** 2
        total = shared + truth["sd_trial_outcome"] ** 2
        out[_tkey(t)] = round(shared / total, 4) if total > 0 else 1.0
    return out


# --------------------------------------------------------------------------- design


def _na(v) -> bool:
    return v is None or (pd.api.types.is_scalar(v) and bool(pd.isna(v)))


@functools.lru_cache(maxsize=1)
def _bundled_trials() -> pd.DataFrame:
    with warnings.catch_warnings():
        # the bundled data warn about outcome/contrast rows (JSW_mm, a printed CI); only the
        # trials table is used here
        warnings.simplefilter("ignore", DataValidationWarning)
        return load_koa_msc().trials


def _design_trials(design) -> pd.DataFrame:
    """The design as a validated, typed trials table."""
    if design is None:
        return _bundled_trials().copy()
    if isinstance(design, TrialData):
        return design.trials
    if not isinstance(design, pd.DataFrame):
        raise TypeError(f"design must be None, a TrialData or a trials DataFrame, got "
                        f"{type(design).__name__}")
    df = design.copy()
    for c in SCHEMA["trials"].names:
        if c not in df.columns:
            df[c] = ""
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in SCHEMA["outcomes"].names})
    return read_trials(df[list(SCHEMA["trials"].names)], empty).trials


def select_design(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a typed trials table into the arms simulated and the trials left out.

    A trial is simulated when it is an RCT (``rct`` not no), in scope (``in_scope`` not no), every
    arm's ``cell_source`` is BM, UC or AD, and it has at least one msc and one control arm. Returns
    ``(kept arms, left_out)`` where ``left_out`` has one row per trial left out: ``trial_id``,
    ``cell_source`` (its sources, joined by ``/``) and ``reason``.
    """
    keep_idx, left = [], []
    for trial, sub in trials.groupby("trial_id", sort=False):
        reasons = []
        if (sub["rct"] == False).any():  # noqa: E712 (pandas boolean, NA = not stated)
            reasons.append("not a randomized trial (rct = no)")
        if (sub["in_scope"] == False).any():  # noqa: E712
            note = sub["scope_note"].iloc[0]
            reasons.append("in_scope = no" + ("" if _na(note) else f" ({note})"))
        sources = list(dict.fromkeys(sub["cell_source"].tolist()))
        bad = [s for s in sources if s not in SIM_SOURCES]
        if bad:
            reasons.append(f"cell source {'/'.join(map(str, bad))} is not simulated (only "
                           f"{', '.join(SIM_SOURCES)})")
        roles = set(sub["arm_role"])
        for role in ("msc", "control"):
            if role not in roles:
                reasons.append(f"no {role} arm")
        if reasons:
            left.append({"trial_id": trial, "cell_source": "/".join(map(str, sources)),
                         "reason": "; ".join(reasons)})
        else:
            keep_idx.extend(sub.index)
    kept = trials.loc[keep_idx].reset_index(drop=True)
    left_out = pd.DataFrame(left, columns=["trial_id", "cell_source", "reason"])
    return kept, left_out


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def arm_sizes(design: pd.DataFrame) -> pd.DataFrame:
    """The n behind each simulated arm, with the fill rule where the design gives none.

    Reported n = ``n_analysed`` if given, else ``n_randomized``. An arm with neither gets the median
    reported n of its trial's other arms (rounded half up), else, when no arm of the trial reports
    n, the median reported n over all arms of ``design``. Returns ``trial_id``, ``arm_id``, ``n``,
    ``filled`` (bool) and ``rule`` (text; empty where n was reported).
    """
    rep = design["n_analysed"].astype("Float64").fillna(design["n_randomized"].astype("Float64"))
    known = rep.dropna()
    overall = _round_half_up(float(np.median(known.to_numpy(float)))) if len(known) else None
    rows = []
    for i in design.index:
        trial, arm = design.at[i, "trial_id"], design.at[i, "arm_id"]
        if not _na(rep.at[i]):
            rows.append((trial, arm, int(rep.at[i]), False, ""))
            continue
        others = rep[(design["trial_id"] == trial) & rep.notna()]
        if len(others):
            n = _round_half_up(float(np.median(others.to_numpy(float))))
            rule = (f"n filled by rule: median reported n of this trial's other arms "
                    f"({', '.join(str(int(v)) for v in others)}) = {n}")
        elif overall is not None:
            n = overall
            rule = (f"n filled by rule: no arm of this trial reports n, so the median reported "
                    f"arm n of the {len(known)} simulated arms that report one = {n}")
        else:
            raise ValueError(f"{trial} / arm {arm} / column n_randomized: no arm of the design "
                             "reports n, so it cannot be filled")
        rows.append((trial, arm, n, True, rule))
    return pd.DataFrame(rows, columns=["trial_id", "arm_id", "n", "filled", "rule"])


# --------------------------------------------------------------------------- text formatting


def _num_text(x) -> str:
    x = float(x)
    if abs(x) >= 1e6:
        m, e = f"{x:.15e}".split("e")
        m = m.rstrip("0").rstrip(".")
        return f"{m}e{int(e)}"
    if x.is_integer():
        return str(int(x))
    return repr(x)


def _cell(v, kind: str, bool_words=("yes", "no")) -> str:
    if _na(v):
        return ""
    if kind == "bool":
        return bool_words[0] if bool(v) else bool_words[1]
    if kind == "int":
        return str(int(v))
    if kind == "float":
        return _num_text(v)
    return str(v)


def _to_csv(rows: list[dict], table: str) -> str:
    cols = list(SCHEMA[table].names)
    df = pd.DataFrame(rows, columns=cols, dtype=object).fillna("")
    return df.to_csv(index=False, lineterminator="\n")


def _read_text(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


# --------------------------------------------------------------------------- simulation


def _sim_id(trial: str) -> str:
    return trial if str(trial).startswith(ID_PREFIX) else f"{ID_PREFIX}{trial}"


def _source_text(seed: int, real_source) -> str:
    real = "(no source given)" if _na(real_source) or not str(real_source).strip() else real_source
    return f"SIMULATED by bayes_koa.simulate (seed {seed}); design from: {real}"


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _r6(x: float) -> float:
    return round(float(x), 6)


def simulate(
    design=None,
    truth: dict | None = None,
    seed: int = SEED,
    outcomes=DEFAULT_OUTCOMES,
    times=DEFAULT_TIMES,
    adverse_events: bool = True,
) -> SimulatedTrialData:
    """SIMULATED arm-level summaries on real (or given) trial designs from a stated truth.

    Parameters
    ----------
    design : None (the bundled in-scope RCTs with cell source BM, UC or AD), a TrialData, or a
        trials DataFrame (missing schema columns are taken as empty). Trials that are not simulated
        are listed with their reason in ``truth["design"]["left_out"]``.
    truth : overrides of :data:`DEFAULT_TRUTH` (nested dicts are merged), e.g. ``{"tau": 0}``.
    seed : seed of :func:`numpy.random.SeedSequence`; the same seed gives identical tables.
    outcomes : continuous outcomes to draw (each needs an entry in ``truth["scales"]``).
    times : follow-up months (each needs a ``truth["time_profile"]`` multiplier); baseline (0) is
        always written; a time beyond the trial's ``followup_months`` (when known) is not reported.
    adverse_events : also draw ``AE_any`` events per arm at the trial's follow-up (12 if unknown).

    Returns
    -------
    SimulatedTrialData with validated ``trials`` and ``outcomes`` (the bundled schema, plus
    ``events``), empty ``contrasts`` / ``pooled_targets``, ``truth``, ``simulated = True``,
    ``source`` starting with "SIMULATED", and ``files`` (the text of the four shipped files).
    """
    seed = int(seed)
    outcomes = tuple(outcomes)
    times = tuple(sorted(float(t) for t in times))
    if len(set(outcomes)) != len(outcomes) or len(set(times)) != len(times):
        raise ValueError("outcomes and times must not repeat")
    if truth is not None and any(k in _DERIVED_KEYS for k in truth):
        raise ValueError(f"truth keys {', '.join(k for k in truth if k in _DERIVED_KEYS)} are "
                         "derived by simulate and cannot be set")
    tr = _merge(DEFAULT_TRUTH, truth or {})
    _check_truth(tr, outcomes, times)

    all_trials = _design_trials(design)
    kept, left_out = select_design(all_trials)
    if kept.empty:
        raise ValueError("the design has no trial that can be simulated: " +
                         "; ".join(f"{r.trial_id}: {r.reason}" for r in left_out.itertuples()))
    sizes = arm_sizes(kept)
    n_arm = dict(zip(zip(sizes["trial_id"], sizes["arm_id"]), sizes["n"]))
    rule = dict(zip(zip(sizes["trial_id"], sizes["arm_id"]), sizes["rule"]))

    tcols = SCHEMA["trials"].columns
    trial_rows = []
    for i in kept.index:
        r = kept.loc[i]
        row = {c.name: _cell(r[c.name], c.kind) for c in tcols}
        key = (r["trial_id"], r["arm_id"])
        row["trial_id"] = _sim_id(r["trial_id"])
        note = ("SIMULATED. Design (arms, cell source, origin, dose, injections, control, "
                "follow-up, n) copied from the real trial; no outcome number of this trial is real.")
        if rule[key]:
            row["n_randomized"] = str(n_arm[key])
            note += f" {rule[key]}."
        elif not _na(r["n_analysed"]) and _na(r["n_randomized"]):
            note += " n_randomized not reported; the simulated values use n_analysed."
        row["source"] = _source_text(seed, r["source"])
        row["notes"] = note
        trial_rows.append(row)

    ss = np.random.SeedSequence(seed)
    children = ss.spawn(kept["trial_id"].nunique())
    ae = tr["adverse_events"]
    out_rows: list[dict] = []
    clips: list[dict] = []
    trial_effects, comp_effects, true_effects, true_ae = {}, [], [], []
    beta = tr["beta"]

    for (trial, sub), child in zip(kept.groupby("trial_id", sort=False), children):
        rng = np.random.default_rng(child)
        sid = _sim_id(trial)
        source = sub["cell_source"].iloc[0]
        origin = sub["origin"].iloc[0]
        fu = sub["followup_months"].iloc[0]
        real_source = dict(zip(sub["arm_id"], sub["source"]))
        arms = list(sub["arm_id"])
        roles = dict(zip(sub["arm_id"], sub["arm_role"]))

        # trial-level draws, fixed order
        u = rng.normal(0.0, tr["tau"])
        report_u = rng.random(len(outcomes))
        d_time = rng.normal(0.0, tr["sd_trial_time"], len(times))
        e_out = rng.normal(0.0, tr["sd_trial_outcome"], len(outcomes))
        c_level = rng.normal(0.0, tr["sd_trial_level"], len(outcomes))
        b_ae = rng.normal(0.0, ae["sd_trial_logit"])
        b_lor = rng.normal(0.0, ae["tau_log_or"], len(arms))
        # arm-level grid draws: outcome x (0 + times) x arm
        grid = (len(outcomes), len(times) + 1, len(arms))
        z_mean = rng.standard_normal(grid)
        df_grid = np.broadcast_to(np.array([n_arm[(trial, a)] - 1 for a in arms], float), grid)
        chi = rng.chisquare(df_grid)
        trial_effects[sid] = _r6(u)

        theta = {}
        for _, a in sub[sub["arm_role"] == "msc"].iterrows():
            cells, ninj = a["cells_per_injection"], a["n_injections"]
            x_dose = 0.0 if _na(cells) else math.log10(float(cells) / REF_CELLS)
            x_inj = 0.0 if _na(ninj) else float(ninj) - 1.0
            fixed = _cell_mean(tr, source, origin) + beta["log_dose"] * x_dose + beta["n_injections"] * x_inj
            theta[a["arm_id"]] = fixed + u
            comp_effects.append({"trial_id": sid, "arm_id": a["arm_id"], "cell_source": source,
                                 "origin": None if _na(origin) else origin,
                                 "expected_theta": _r6(fixed), "theta": _r6(fixed + u)})

        all_times = (0.0, *times)
        for k_i, k in enumerate(outcomes):
            if report_u[k_i] >= tr["report_probability"][k]:
                continue
            sc = tr["scales"][k]
            sd, lo, hi = sc["sd"], sc["scale_min"], sc["scale_max"]
            orient = 1.0 if sc["lower_is_better"] else -1.0
            for t_i, t in enumerate(all_times):
                if t > 0 and not _na(fu) and t > float(fu):
                    continue
                ctrl = sc["control_mean"][_tkey(t)] + c_level[k_i] * sd
                for a_i, arm in enumerate(arms):
                    n = n_arm[(trial, arm)]
                    true = ctrl
                    if t > 0 and roles[arm] == "msc":
                        delta = (tr["time_profile"][_tkey(t)] * theta[arm] + d_time[t_i - 1]
                                 + e_out[k_i])
                        true = ctrl + orient * delta * sd
                        true_effects.append({"trial_id": sid, "arm_id": arm, "outcome": k,
                                             "time_months": t, "smd": _r6(delta)})
                    mean = true + z_mean[k_i, t_i, a_i] * sd / math.sqrt(n)
                    sdo = sd * math.sqrt(chi[k_i, t_i, a_i] / (n - 1))
                    mean = round(mean, tr["decimals"])
                    sdo = max(round(sdo, tr["decimals"]), 10.0 ** -tr["decimals"])
                    note = "SIMULATED."
                    if not lo <= mean <= hi:
                        clipped = min(max(mean, lo), hi)
                        clips.append({"trial_id": sid, "arm_id": arm, "outcome": k,
                                      "time_months": t, "drawn": mean, "kept": clipped})
                        note += f" Drawn mean {mean:g} clipped to the scale range {lo:g}-{hi:g}."
                        mean = clipped
                    out_rows.append({
                        "trial_id": sid, "arm_id": arm, "outcome": k,
                        "scale_min": _num_text(lo), "scale_max": _num_text(hi),
                        "lower_is_better": "true" if sc["lower_is_better"] else "false",
                        "time_months": _num_text(t), "value_type": "final", "n": str(n),
                        "mean": f"{mean:.{tr['decimals']}f}", "sd": f"{sdo:.{tr['decimals']}f}",
                        "stat_reported": "mean_sd",
                        "source": _source_text(seed, real_source[arm]),
                        "source_location": "simulated (bayes_koa.simulate); see "
                                           "bayes_koa/koa/data/simulated/README.md",
                        "notes": note,
                    })
        # adverse events: always drawn (keeps the stream independent of the flag)
        t_ae = float(fu) if not _na(fu) else float(ae["time_if_followup_unknown"])
        base = _logit(ae["p_control"]) + b_ae
        for a_i, arm in enumerate(arms):
            n = n_arm[(trial, arm)]
            lor = ae["log_or"][source] + b_lor[a_i] if roles[arm] == "msc" else 0.0
            p = _expit(base + lor)
            ev = int(rng.binomial(n, p))
            if not adverse_events:
                continue
            true_ae.append({"trial_id": sid, "arm_id": arm, "p": _r6(p), "log_or": _r6(lor)})
            out_rows.append({
                "trial_id": sid, "arm_id": arm, "outcome": ae["outcome"],
                "lower_is_better": "true", "time_months": _num_text(t_ae),
                "value_type": "final", "n": str(n), "events": str(ev), "stat_reported": "events",
                "source": _source_text(seed, real_source[arm]),
                "source_location": "simulated (bayes_koa.simulate); see "
                                   "bayes_koa/koa/data/simulated/README.md",
                "notes": "SIMULATED. Patients with any adverse event by the end of follow-up"
                         + ("" if not _na(fu) else " (follow-up not known: reported at "
                            f"{_num_text(t_ae)} months)") + ".",
            })

    trials_csv = _to_csv(trial_rows, "trials")
    outcomes_csv = _to_csv(out_rows, "outcomes")

    design_info = {
        "from": "bundled bayes_koa/koa/data/koa_msc/trials.csv" if design is None else "given design",
        "n_trials": int(kept["trial_id"].nunique()),
        "n_arms": len(kept),
        "trials": {s: [_sim_id(t) for t in kept.loc[kept["cell_source"] == s, "trial_id"].unique()]
                   for s in SIM_SOURCES},
        "left_out": left_out.to_dict("records"),
        "n_filled": [{"trial_id": _sim_id(r.trial_id), "arm_id": r.arm_id, "n": int(r.n),
                      "rule": r.rule} for r in sizes.itertuples() if r.filled],
        "n_fill_rule": "reported n = n_analysed if given, else n_randomized; an arm with neither "
                       "gets the median reported n of its trial's other arms (rounded half up), "
                       "else the median reported n over all simulated arms; the filled value is "
                       "written to n_randomized and the row's notes say 'n filled by rule: ...'",
    }
    msc = pd.DataFrame(comp_effects)
    full = {
        "SIMULATED": "These are the true parameters of SIMULATED data; nothing here is a trial "
                     "result.",
        "seed": seed,
        "generator": "numpy.random.SeedSequence(seed).spawn(number of trials); one "
                     "default_rng (PCG64) per trial, in design order",
        "call": {"outcomes": list(outcomes), "times": [float(t) for t in times],
                 "adverse_events": bool(adverse_events)},
        **tr,
        "cell_means": {s: {o: _r6(_cell_mean(tr, s, o)) for o in ("autologous", "allogeneic")}
                       for s in SIM_SOURCES},
        "sigma_source_implied": _r6(np.std([tr["source_means"][s] for s in SIM_SOURCES], ddof=1)),
        "implied_outcome_correlation": _implied_correlation(tr, times),
        "design": design_info,
        "design_mean_theta": {s: _r6(msc.loc[msc["cell_source"] == s, "expected_theta"].mean())
                              for s in SIM_SOURCES if (msc["cell_source"] == s).any()},
        "clips": {"count": len(clips), "rows": clips},
        "trial_effects": trial_effects,
        "comparison_effects": comp_effects,
        "true_effects": true_effects,
        "true_ae": true_ae,
    }
    truth_json = json.dumps(full, indent=1, ensure_ascii=False) + "\n"
    full = json.loads(truth_json)  # exactly what truth.json holds
    files = {"trials.csv": trials_csv, "outcomes.csv": outcomes_csv, "truth.json": truth_json}
    files["README.md"] = _readme(full, kept, sizes)
    return _from_files(files, f"SIMULATED by bayes_koa.simulate (seed {seed}): "
                              f"{design_info['n_trials']} trial designs, stated truth in .truth")


def _from_files(files: dict, source: str) -> SimulatedTrialData:
    td = read_trials(_read_text(files["trials.csv"]), _read_text(files["outcomes.csv"]))
    return SimulatedTrialData(
        trials=td.trials, outcomes=td.outcomes, contrasts=td.contrasts,
        pooled_targets=td.pooled_targets, source=source, data_hash=td.data_hash,
        warnings=td.warnings, truth=json.loads(files["truth.json"]), simulated=True,
        files=dict(files),
    )


def load_simulated() -> SimulatedTrialData:
    """The shipped SIMULATED data set (``bayes_koa/koa/data/simulated``, seed :data:`SEED`).

    Read like a user's extraction (validated by :func:`~bayes_koa.data.read_trials`), with
    ``simulated = True`` and ``truth`` from ``truth.json``.
    """
    root = resources.files("bayes_koa.koa").joinpath("data", SIMULATED_DIR)
    files = {name: root.joinpath(name).read_bytes().decode("utf-8") for name in FILES}
    seed = json.loads(files["truth.json"]).get("seed")
    return _from_files(files, f"SIMULATED data shipped in bayes_koa/koa/data/simulated (seed {seed}); "
                              "stated truth in .truth")


def write_simulated(directory, seed: int = SEED) -> dict:
    """Write ``simulate(seed=seed)``'s four files into ``directory``; returns name -> path."""
    import os

    os.makedirs(directory, exist_ok=True)
    sim = simulate(seed=seed)
    paths = {}
    for name in FILES:
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(sim.files[name])
        paths[name] = path
    return paths


# --------------------------------------------------------------------------- README


def _fmt(x) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


def _readme(truth: dict, kept: pd.DataFrame, sizes: pd.DataFrame) -> str:
    seed = truth["seed"]
    d = truth["design"]
    ae = truth["adverse_events"]
    times = truth["call"]["times"]
    outs = truth["call"]["outcomes"]
    L = [
        f"SIMULATED DATA: not trial results. Every outcome number here was drawn by "
        f"bayes_koa.simulate (seed {seed}) from the stated truth in truth.json.",
        "",
        "# Simulated arm-level data on the real in-scope trial designs",
        "",
        "Generated by `python scripts/make_simulated.py` (= `bayes_koa.simulation.simulate(seed="
        f"{seed})`); a test keeps these files equal to a fresh run. Load them with "
        "`bayes_koa.load_simulated()` (or `bayes_koa.read_trials('trials.csv', 'outcomes.csv')`, "
        "as a user's own extraction). The bundled real outcome data are far too thin to rank cell "
        "sources (four trials have numbers), so these data exist to demonstrate every feature "
        "(ranking, time course, four outcomes, origin, dose, number of injections, adverse events) "
        "and to test parameter recovery. Anything made from them must say SIMULATED.",
        "",
        "## Files",
        "",
        "| file | content |",
        "|---|---|",
        "| `trials.csv` | one row per trial x arm; the columns of `koa_msc/trials.csv` |",
        "| `outcomes.csv` | one row per trial x arm x outcome x time; the columns of "
        "`koa_msc/outcomes.csv` plus `events` (binary rows) |",
        "| `truth.json` | every true parameter, the design used, the realised true effects |",
        "| `README.md` | this file |",
        "",
        "How SIMULATED is marked: trial ids carry the prefix `SIM_` (`SIM_Vega_2015`); every row's "
        f"`source` is `SIMULATED by bayes_koa.simulate (seed {seed}); design from: <the real row's "
        "source>` and its `notes` start with `SIMULATED.`. `evidence` stays as in the real row in "
        "`trials.csv` (it describes where the design facts come from) and is empty in "
        "`outcomes.csv` (primary/secondary would be false for simulated numbers).",
        "",
        "## Design",
        "",
        f"{d['n_trials']} trials ({d['n_arms']} arms): the RCTs of `koa_msc/trials.csv` with "
        "`rct = yes`, `in_scope = yes` and cell source BM, UC or AD in every arm. Arms, cell "
        "source, origin, dose (`cells_per_injection`), `n_injections`, control type and "
        "follow-up are kept as curated, including their gaps: a missing origin, dose or number "
        "of injections stays missing (models that need it drop the trial with a reason), and is "
        "generated at the reference (origin midpoint, 4e7 cells, one injection).",
        "",
    ]
    for s in SIM_SOURCES:
        L.append(f"- {s} ({len(d['trials'][s])}): " + ", ".join(f"`{t}`" for t in d["trials"][s]))
    L += ["", "Left out:", ""]
    for r in d["left_out"]:
        L.append(f"- `{r['trial_id']}` ({r['cell_source']}): {r['reason']}")
    L += [
        "",
        "### Sample sizes",
        "",
        "The n behind each arm is `n_analysed` if given, else `n_randomized`. An arm with neither "
        "gets the median reported n of its trial's other arms (rounded half up); when no arm of "
        "the trial reports n, the median reported n over all simulated arms. The filled value is "
        "written to `n_randomized` and the row's `notes` say `n filled by rule: ...`. Totals "
        "given only in free-text notes are not used (so, e.g., Gupta_2016's four dose arms get "
        "the control arm's 20 each although the real trial split about 40 patients among them). "
        "Filled arms:",
        "",
        "| trial | arm | n | rule |",
        "|---|---|---|---|",
    ]
    for r in d["n_filled"]:
        L.append(f"| `{r['trial_id']}` | `{r['arm_id']}` | {r['n']} | "
                 f"{r['rule'].replace('n filled by rule: ', '')} |")
    sm = truth["source_means"]
    L += [
        "",
        "## True parameters (SMD units; MSC - control; negative = benefit)",
        "",
        "| parameter | value | meaning |",
        "|---|---|---|",
        f"| mu | {truth['mu']:g} | unweighted mean of the source means; size from Ma 2020 "
        "(WOMAC total SMD -0.66, `koa_msc/pooled_targets.csv`); -0.66 x 20 mm = -13.2 mm VAS, "
        "close to BoneJointRes 2020's VAS MD -13.24 |",
    ]
    for s in SIM_SOURCES:
        L.append(f"| source mean {s} | {sm[s]:g} | at 6 months, 1 injection of 4e7 cells, origin "
                 "midpoint |")
    L += [
        "| (ordering) | UC > AD > BM | TRUE in the simulation: the ordering the 2023 paper reports |",
        f"| origin offset AD | autologous {truth['origin_offsets']['AD']['autologous']:g}, "
        f"allogeneic {truth['origin_offsets']['AD']['allogeneic']:g} | autologous AD 0.15 better; "
        "BM and UC: no origin effect |",
        f"| beta log_dose | {truth['beta']['log_dose']:g} | per 10-fold more cells per injection "
        "(log10(cells / 4e7)) |",
        f"| beta n_injections | {truth['beta']['n_injections']:g} | per extra injection (4 beat 2 "
        "by 0.20) |",
        f"| tau | {truth['tau']:g} | between-trial SD (one trial effect shared by its MSC arms) |",
        "| time profile f(t) | " + ", ".join(f"f({k}) = {v:g}" for k, v in
                                             truth["time_profile"].items()) +
        " | a comparison's effect at t is f(t) x theta + trial x time deviation |",
        f"| sd trial x time | {truth['sd_trial_time']:g} | deviation shared by a trial's arms and "
        "outcomes at one time |",
        f"| sd trial x outcome | {truth['sd_trial_outcome']:g} | outcome-specific deviation of a "
        "trial (same at every time) |",
        f"| sd trial level | {truth['sd_trial_level']:g} | shift of both arms' true means per trial "
        "x outcome, in SD units (cancels in MSC - control) |",
        "",
        "Implied correlation between two outcomes' true SMDs in one comparison at one time "
        "(sampling error excluded), (f^2 tau^2 + 0.08^2) / (f^2 tau^2 + 0.08^2 + 0.10^2): " +
        ", ".join(f"{v:g} at {k} months" for k, v in truth["implied_outcome_correlation"].items())
        + ".",
        "",
        "Design-average expected effect per source (mean over the design's MSC arms of source "
        "mean + origin offset + dose and injection terms; what a model without moderators "
        "estimates at 6 months): " + ", ".join(f"{s} {v:.3f}" for s, v in
                                               truth["design_mean_theta"].items()) + ".",
        "",
        "## Arm-level values",
        "",
        "| outcome | scale | SD | lower is better | control true mean at " +
        ", ".join(["0"] + [_fmt(t) for t in times]) + " months | reported by |",
        "|---|---|---|---|---|---|",
    ]
    for k in outs:
        sc = truth["scales"][k]
        cm = ", ".join(_fmt(sc["control_mean"][_tkey(t)]) for t in (0.0, *times))
        p = truth["report_probability"][k]
        who = "every trial" if p >= 1 else f"a seeded random {p:.0%} of trials"
        L.append(f"| {k} | {sc['scale_min']:g}-{sc['scale_max']:g} | {sc['sd']:g} | "
                 f"{str(sc['lower_is_better']).lower()} | {cm} | {who} |")
    L += [
        "",
        "- MSC arm true mean = control true mean + theta x SD on lower-is-better scales, - theta x "
        "SD on Lysholm (benefit = higher score); at baseline (time 0) both arms share the control "
        "mean.",
        "- Observed mean ~ Normal(true, SD / sqrt(n)); observed SD = SD x sqrt(chi2(n-1) / (n-1)); "
        f"both rounded to {truth['decimals']} decimals. `value_type = final`, `stat_reported = "
        "mean_sd`, scale range, `lower_is_better` and `n` filled on every row; time 0 rows are "
        "baselines.",
        f"- Times {', '.join(_fmt(t) for t in times)} months; a time beyond the trial's "
        "`followup_months` (when known) is not reported.",
        "- A trial that reports only some outcomes still contributes the ones it reports.",
        f"- Means outside the scale range would be clipped and counted: {truth['clips']['count']} "
        "clipped in this data set.",
        "",
        "## Adverse events",
        "",
        f"`{ae['outcome']}` per arm: events ~ Binomial(n, p); control p = {ae['p_control']:g} on "
        f"average (trial-specific baseline log-odds, SD {ae['sd_trial_logit']:g}); log odds ratio "
        "MSC vs control " + ", ".join(f"{s} {ae['log_or'][s]:g}" for s in SIM_SOURCES) +
        f" (between-trial SD {ae['tau_log_or']:g}). {ae['basis']} Rows have `time_months` = the "
        "trial's follow-up (12 if unknown), `value_type = final`, `stat_reported = events`.",
        "",
        "## Simplifications (known, deliberate)",
        "",
        "- Sampling errors are independent across outcomes and times (in a real trial the same "
        "patients give all values, so they are correlated).",
        "- No dropout: every value of an arm has the arm's n.",
        "- Control type (HA, placebo, PRP, ...) has no effect; MSC + PRP arms have the MSC effect.",
        "- Multi-arm trials share one trial effect u_i across their MSC arms; two control arms "
        "have the same true mean.",
        "",
        "## Reproducibility",
        "",
        f"Seed {seed} (the date 2026-11-26 as a number). {truth['generator']}. Within a trial the "
        "draws follow a fixed order over the full outcome x time x arm grid, so the same seed gives "
        "identical files.",
        "",
    ]
    return "\n".join(L)
