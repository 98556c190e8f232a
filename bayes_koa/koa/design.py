"""How sure can a ranking of cell sources be? Design and power studies for the knee-OA meta-analysis.

Each *scenario* states a truth (the source effects, the comparator effects and the between-trial
SD) and a design (the bundled real trial designs, or a user's design table, either plus
hypothetical added trials). For each scenario :func:`design_study` simulates ``n_sims``
meta-analyses the way the shipped SIMULATED data set is made (:func:`bayes_koa.simulation.simulate`:
arm-level VAS summaries at month 6 on the real designs, then Hedges' g by
:func:`bayes_koa.effects.effect_sizes`), fits the model to each (``source_hierarchical`` by default)
and records whether the truly best source gets the largest P(best), the P(best) of the truly best
source, whether each true source effect lies in its 95% interval, the interval widths, the
probabilities of the 2023 paper's ranking claims, and the sampler's health. The fits run in
parallel on Dask (:func:`bayes_koa.workflows.design.run_study`), can be stored and resumed, and
give the same numbers for the same seed on any number of workers.

Truth (SMD, MSC - control, negative = benefit), defaults and their basis:

* ``source_means`` BM -0.45, UC -0.85, AD -0.68: the stated truth of the bundled simulated data
  (``bayes_koa/data/simulated/truth.json``; :data:`bayes_koa.simulation.DEFAULT_TRUTH`). Their mean
  is mu = -0.66, the pooled WOMAC total SMD of Ma 2020 (95% CI -1.09 to -0.23,
  ``koa_msc/pooled_targets.csv``); the three values are chosen, not estimated, so that the 2023
  paper's ordering UC > AD > BM is true.
* ``tau`` 0.25: the between-trial SD of the same truth (stated there, not estimated: the bundled
  pooled targets report no between-trial SD on the SMD scale). In a design study it is the whole
  between-trial SD of the month-6 VAS contrasts: the simulation's trial x time and trial x outcome
  deviations (``sd_trial_time``, ``sd_trial_outcome``) are set to 0, and so are the origin, dose and
  injection terms, so that with zero comparator effects the data come from exactly the model
  ``source_hierarchical`` fits (see :data:`STUDY_TRUTH`). Any of them can be put back per scenario
  with ``truth={...}`` (keys of ``DEFAULT_TRUTH``).
* ``comparator_effects`` (control type -> SMD; default none): the comparator's own benefit over an
  inert control as it enters MSC - comparator: ``0.2`` for PRP makes every MSC-vs-PRP contrast 0.2
  less beneficial. The bundled simulation assumes none ("Control type has no effect", its
  README); ``source_hierarchical`` ignores comparators, so non-zero values show what that costs.
  The true source effect (for coverage) stays ``source_means``: the effect against an inert control.

* ``between_source_sd`` (default None: the source means are fixed): when given, every simulated data
  set draws its own source means, independently Normal(mu, between_source_sd) with mu the mean of
  ``source_means``: the truth then comes from the model's own hierarchy (with fixed
  hyperparameters, no prior draws), and coverage, P(correct top rank) and the claims are averaged
  over those truths. The truth of each fit is kept (``true_value``, ``claim_holds``).

Hypothetical added trials: ``AddedTrial(source, comparator, n)``, two arms of ``n`` patients each
(one MSC arm, one control arm of that control type), 12 months of follow-up, origin, dose and
number of injections not stated (generated at the reference, as any trial without them).

Speed. A study re-uses the machinery of the shipped data but not its text round trip: the first
data set of a scenario is made by ``simulate`` + ``effect_sizes`` (this fixes the comparisons, their
n and the multi-arm splits), and every data set is then drawn by :func:`_draw_effects`, which
repeats ``simulate``'s random draws for VAS at month 6 in the same order from the same seed and
applies the same Hedges' g formula (:func:`bayes_koa.conversions.smd`): the same numbers, about
200 times faster (a unit test checks they are equal to ``simulate`` + ``effect_sizes``).
``generator="simulate"`` uses the slow reference path throughout (no comparator effects).
The model's shape is kept fixed: every data set of a scenario has the same comparisons, padded to
a multiple of :data:`SLOT_BLOCK` rows with rows of standard error :data:`PAD_SE` (they carry no
information: see :func:`_pad`), and the sources are always BM, UC and AD, so each worker compiles
the model once per slot count and only re-samples. Sampler default: 2 chains x 1000 draws after
1000 tuning steps (:data:`DEFAULT_SAMPLER`), and the health of every fit (divergences, largest R-hat,
smallest bulk/tail ESS) is recorded beside its results.

A source with no trial in a scenario's design is *not estimable*: its metrics are NaN, it is left
out of the ranking (P(best) is over the estimable sources) and the study's ``notes`` say so.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tomllib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..data import DataValidationWarning, TrialData, read_trials
from ..data.schema import CONTROL_TYPES, SCHEMA
from ..effects import conversions as cv
from ..kinds.common import ORIGIN_ORDER
from ..workflows.design import run_study
from .simulation import (
    DEFAULT_TRUTH,
    REF_CELLS,
    SIM_SOURCES,
    _bundled_trials,
    _cell_mean,
    _merge,
    _na,
    _sim_id,
    arm_sizes,
    select_design,
    simulate,
)

__all__ = [
    "AddedTrial",
    "Scenario",
    "bundled_design",
    "scenario",
    "default_scenarios",
    "scenarios_adding",
    "read_scenarios",
    "design_study",
    "summary",
    "by_source",
    "plot_power",
    "compare_additions",
    "rank_additions",
    "AdditionsComparison",
    "clopper_pearson",
    "DEFAULT_SAMPLER",
    "STUDY_TRUTH",
    "CLAIMS",
]

OUTCOME, TIME, MEASURE = "VAS", 6.0, "SMD"
SOURCES = tuple(SIM_SOURCES)
CLAIMS = ("uc_first", "uc_ad_bm")  # the paper's ranking claims a source-level model estimates
PAD_SE = 1.0e3
SLOT_BLOCK = 10
ADDED_FOLLOWUP_MONTHS = 12.0

STUDY_TRUTH: dict = {
    "origin_offsets": {s: {"autologous": 0.0, "allogeneic": 0.0} for s in SOURCES},
    "beta": {"log_dose": 0.0, "n_injections": 0.0},
    "sd_trial_time": 0.0,
    "sd_trial_outcome": 0.0,
}
"""What a design study changes in :data:`~bayes_koa.simulation.DEFAULT_TRUTH` by default: no
origin, dose or injection terms and no trial x time / trial x outcome deviations, so the month-6
VAS contrasts come from the model source_hierarchical fits (its ``tau`` is the whole between-trial
SD). A scenario's ``truth`` overrides these."""

DEFAULT_SAMPLER = {"draws": 1000, "tune": 1000, "chains": 2, "target_accept": 0.99}
"""Short runs for many fits (the package default is 4 x 2000). Measured on 12 data sets of the
bundled design (source_hierarchical, nutpie): with 2 x 500 (+500 tuning) only 5 of 12 fits had
R-hat <= 1.01 and bulk/tail ESS >= 200 for the source means and tau; with 2 x 1000 (+1000) 10 of
12 did, at about 0.45 s of sampling per fit. target_accept 0.99 as the package default (the funnel
of sigma_source). Every fit's health is recorded and summary() gives the share of healthy fits."""


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class AddedTrial:
    """A hypothetical trial: one MSC arm of ``source`` against one ``comparator`` arm, ``n`` per arm."""

    source: str
    comparator: str = "placebo"
    n: int = 50

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"added trial: source {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.comparator not in CONTROL_TYPES:
            raise ValueError(f"added trial: comparator {self.comparator!r} is not a control type "
                             f"({', '.join(CONTROL_TYPES)})")
        if not (isinstance(self.n, (int, np.integer)) and self.n >= 2):
            raise ValueError(f"added trial: n per arm must be an integer >= 2, got {self.n!r}")

    @property
    def label(self) -> str:
        return f"{self.source} vs {self.comparator} (n={self.n}/arm)"


def _added(x) -> AddedTrial:
    if isinstance(x, AddedTrial):
        return x
    if isinstance(x, Mapping):
        unknown = set(x) - {"source", "comparator", "n"}
        if unknown:
            raise ValueError(f"added trial: unknown key(s) {sorted(unknown)} (source, comparator, n)")
        return AddedTrial(**{k: (int(v) if k == "n" else v) for k, v in x.items()})
    if isinstance(x, (tuple, list)) and 1 <= len(x) <= 3:
        return AddedTrial(*x)
    raise TypeError(f"an added trial is an AddedTrial, a dict or a (source, comparator, n) tuple, "
                    f"got {x!r}")


@dataclass(frozen=True)
class Scenario:
    """One truth and one design of a design study (see the module docstring)."""

    name: str = "published"
    source_means: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TRUTH["source_means"]))
    tau: float = float(DEFAULT_TRUTH["tau"])
    comparator_effects: Mapping[str, float] = field(default_factory=dict)
    added: tuple[AddedTrial, ...] = ()
    truth: Mapping[str, Any] = field(default_factory=dict)
    between_source_sd: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "added", tuple(_added(a) for a in self.added))
        object.__setattr__(self, "source_means", {str(k): float(v) for k, v in self.source_means.items()})
        object.__setattr__(self, "comparator_effects",
                           {str(k): float(v) for k, v in self.comparator_effects.items()})
        object.__setattr__(self, "tau", float(self.tau))
        where = f"scenario {self.name!r}"
        missing = [s for s in SOURCES if s not in self.source_means]
        unknown = [s for s in self.source_means if s not in SOURCES]
        if missing or unknown:
            raise ValueError(f"{where}: source_means needs exactly {', '.join(SOURCES)}"
                             + (f"; missing {', '.join(missing)}" if missing else "")
                             + (f"; unknown {', '.join(unknown)}" if unknown else ""))
        if not all(math.isfinite(v) for v in self.source_means.values()):
            raise ValueError(f"{where}: source_means must be finite")
        if not (math.isfinite(self.tau) and self.tau >= 0):
            raise ValueError(f"{where}: tau must be >= 0, got {self.tau}")
        if self.between_source_sd is not None:
            object.__setattr__(self, "between_source_sd", float(self.between_source_sd))
            if not (math.isfinite(self.between_source_sd) and self.between_source_sd > 0):
                raise ValueError(f"{where}: between_source_sd must be > 0 (or absent: fixed source means), "
                                 f"got {self.between_source_sd}")
        bad = [k for k in self.comparator_effects if k not in CONTROL_TYPES]
        if bad:
            raise ValueError(f"{where}: comparator_effects has unknown control type(s) {bad} "
                             f"(known: {', '.join(CONTROL_TYPES)})")
        for k in ("source_means", "tau"):
            if k in self.truth:
                raise ValueError(f"{where}: set {k} as a scenario field, not inside truth")
        if "report_probability" in self.truth:
            raise ValueError(f"{where}: truth.report_probability cannot be set: every trial reports "
                             "VAS in a design study (the model's shape must not change between data sets)")
        unknown = [k for k in self.truth if k not in DEFAULT_TRUTH]
        if unknown:
            raise ValueError(f"{where}: truth has unknown key(s) {unknown} (keys of "
                             "bayes_koa.simulation.DEFAULT_TRUTH)")

    @property
    def drawn(self) -> bool:
        """The source means are drawn per simulated data set (``between_source_sd`` given)."""
        return self.between_source_sd is not None

    def draw_means(self, sim_seed: int) -> dict:
        """This data set's source means: the fixed ones, or Normal(mu, between_source_sd) draws from a
        stream of their own (``SeedSequence(sim_seed, spawn_key=(2**31,))``; ``simulate``'s trial
        streams are its children 0, 1, ...)."""
        if not self.drawn:
            return dict(self.source_means)
        mu = float(np.mean([self.source_means[s] for s in SOURCES]))
        z = np.random.default_rng(np.random.SeedSequence(int(sim_seed), spawn_key=(2**31,))).standard_normal(len(SOURCES))
        return {s: mu + self.between_source_sd * float(v) for s, v in zip(SOURCES, z)}

    @property
    def n_added_trials(self) -> int:
        return len(self.added)

    @property
    def n_added_patients(self) -> int:
        return sum(2 * a.n for a in self.added)

    @property
    def series(self) -> str:
        """The kind of trial added ("" if none; "mixed" if several kinds)."""
        kinds = sorted({(a.source, a.comparator, a.n) for a in self.added})
        if not kinds:
            return ""
        return AddedTrial(*kinds[0]).label if len(kinds) == 1 else "mixed"

    def with_added(self, trials: Iterable, name: str | None = None) -> "Scenario":
        more = tuple(_added(a) for a in trials)
        return replace(self, added=self.added + more, name=name or _added_name(self.name, self.added + more))

    def full_truth(self) -> dict:
        over = _merge(STUDY_TRUTH, {}, "study")  # deep copy
        for k, v in self.truth.items():
            over[k] = copy.deepcopy(v) if not (isinstance(v, dict) and isinstance(over.get(k), dict)) \
                else _merge(over[k], v, f"truth.{k}")
        over.update(source_means=dict(self.source_means), tau=self.tau)
        return _merge(DEFAULT_TRUTH, over)


def _added_name(base: str, added) -> str:
    if not added:
        return base
    counts: dict[str, int] = {}
    for a in added:
        counts[a.label] = counts.get(a.label, 0) + 1
    return base + " + " + " + ".join(f"{k} x {v}" if k > 1 else v for v, k in counts.items())


def scenario(name: str = "published", **kwargs) -> Scenario:
    """A :class:`Scenario`; unknown keys are refused with their name."""
    known = {"source_means", "tau", "comparator_effects", "added", "truth", "between_source_sd"}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"scenario {name!r}: unknown key(s) {sorted(unknown)} (known: name, "
                         f"{', '.join(sorted(known))})")
    return Scenario(name=name, **kwargs)


def default_scenarios() -> list[Scenario]:
    """One scenario: the stated truth of the bundled simulated data on the bundled design."""
    return [Scenario()]


def scenarios_adding(source: str, comparator: str = "placebo", n: int = 50,
                     counts: Sequence[int] = (0, 1, 2, 4), base: Scenario | None = None) -> list[Scenario]:
    """``base`` (default :class:`Scenario`) plus k trials of ``source`` vs ``comparator``, for k in ``counts``."""
    base = base or Scenario()
    out = []
    for k in counts:
        if k < 0:
            raise ValueError(f"counts must be >= 0, got {k}")
        out.append(base.with_added([AddedTrial(source, comparator, n)] * int(k)) if k else base)
    return out


def _as_scenarios(scenarios) -> list[Scenario]:
    if scenarios is None:
        return default_scenarios()
    if isinstance(scenarios, (Scenario, Mapping)):
        scenarios = [scenarios]
    out = []
    for i, s in enumerate(scenarios):
        if isinstance(s, Scenario):
            out.append(s)
        elif isinstance(s, Mapping):
            d = dict(s)
            out.append(scenario(str(d.pop("name", f"scenario {i}")), **d))
        else:
            raise TypeError(f"a scenario is a Scenario or a dict, got {type(s).__name__}")
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"scenario names must be unique; repeated: {', '.join(dup)}")
    return out


STUDY_KEYS = {"n_sims": int, "seed": int, "model": str, "design": str, "workers": int,
              "draws": int, "tune": int, "chains": int, "target_accept": float, "paired": bool}


def read_scenarios(path) -> tuple[list[Scenario], dict]:
    """Scenarios (and study settings) from a TOML file.

    ``[study]`` (optional) may set ``n_sims``, ``seed``, ``model``, ``design`` (a trials CSV, relative
    to the file), ``workers``, ``draws``, ``tune``, ``chains``, ``target_accept``, ``paired``. Each
    ``[[scenario]]`` has ``name`` and any of ``source_means`` (table BM/UC/AD), ``tau``,
    ``comparator_effects`` (table control type -> SMD), ``added`` (array of tables with ``source``,
    ``comparator``, ``n`` per arm, and optionally ``count`` = that many such trials), ``truth``,
    ``between_source_sd`` (draw the source means per data set).
    Returns ``(scenarios, study settings)``.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML ({e})") from None
    unknown = set(raw) - {"study", "scenario"}
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {sorted(unknown)} (use [study] and [[scenario]])")
    study = dict(raw.get("study", {}))
    for k, v in study.items():
        if k not in STUDY_KEYS:
            raise ValueError(f"{path}: [study] has unknown key {k!r} (known: {', '.join(STUDY_KEYS)})")
        if not isinstance(v, STUDY_KEYS[k]) and not (STUDY_KEYS[k] is float and isinstance(v, int)):
            raise ValueError(f"{path}: [study] {k} must be a {STUDY_KEYS[k].__name__}, got {v!r}")
    if "design" in study:
        study["design"] = str((path.parent / study["design"]).resolve())
    items = raw.get("scenario", [])
    if not items:
        raise ValueError(f"{path}: no [[scenario]] table")
    out = []
    for i, item in enumerate(items):
        d = dict(item)
        name = str(d.pop("name", f"scenario {i + 1}"))
        added = []
        for a in d.pop("added", []):
            a = dict(a)
            count = int(a.pop("count", 1))
            try:
                added.extend([_added(a)] * count)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: scenario {name!r}: {e}") from None
        try:
            out.append(scenario(name, added=tuple(added), **d))
        except (TypeError, ValueError) as e:
            msg = str(e)
            raise ValueError(f"{path}: {msg if msg.startswith('scenario') else f'scenario {name!r}: {msg}'}") from None
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{path}: scenario names must be unique; repeated: {', '.join(dup)}")
    return out, study


# --------------------------------------------------------------------------- designs and plans


def _trial_columns() -> list[str]:
    return list(SCHEMA["trials"].names)


def _empty_outcomes() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in SCHEMA["outcomes"].names})


def _design_frame(design) -> tuple[pd.DataFrame, str]:
    """The base design as a trials table of text cells, and where it came from."""
    if design is None:
        return _bundled_trials().copy(), "the bundled real designs (bayes_koa/data/koa_msc/trials.csv)"
    if isinstance(design, TrialData):
        return design.trials.copy(), f"given TrialData ({design.source})"
    if isinstance(design, (str, os.PathLike)):
        p = Path(design)
        if not p.exists():
            raise FileNotFoundError(f"design table {p} does not exist")
        return read_trials(p, _empty_outcomes()).trials, f"design table {p}"
    if isinstance(design, pd.DataFrame):
        return design.copy(), "given design DataFrame"
    raise TypeError(f"design must be None, a TrialData, a trials DataFrame or a CSV path, got "
                    f"{type(design).__name__}")


def bundled_design() -> pd.DataFrame:
    """The bundled real designs (``koa_msc/trials.csv``, validated): the default design; filter or
    edit it and pass it as ``design=``."""
    return _design_frame(None)[0]


def _added_frame(added: Sequence[AddedTrial]) -> pd.DataFrame:
    rows = []
    for k, a in enumerate(added, start=1):
        tid = f"ADDED_{k}_{a.source}_vs_{a.comparator}"
        note = "Hypothetical trial added by a design study (bayes_koa.koa.design); not a real trial."
        common = {"trial_id": tid, "cell_source": a.source, "rct": "yes", "in_scope": "yes",
                  "scope_note": "hypothetical added trial", "n_randomized": str(a.n),
                  "followup_months": f"{ADDED_FOLLOWUP_MONTHS:g}", "source": "design study (hypothetical)",
                  "notes": note}
        rows.append({**common, "arm_id": "msc", "arm_role": "msc", "arm_label": f"{a.source}-MSC"})
        rows.append({**common, "arm_id": "control", "arm_role": "control", "arm_label": a.comparator,
                     "control_type": a.comparator})
    return pd.DataFrame(rows, columns=_trial_columns(), dtype=object).fillna("")


def _validated(base: pd.DataFrame, added: Sequence[AddedTrial]) -> TrialData:
    cols = _trial_columns()
    df = base.copy()
    for c in cols:
        if c not in df.columns:
            df[c] = ""
    df = df[cols]
    if added:
        df = pd.concat([df.astype(object), _added_frame(added).astype(object)], ignore_index=True)
    with warnings.catch_warnings():
        # only the trials table is used; an outcome-free extraction warns about nothing else here
        warnings.simplefilter("ignore", DataValidationWarning)
        return read_trials(df, _empty_outcomes())


@dataclass
class _Trial:
    sim_id: str
    source: str
    arms: list
    roles: dict
    n: dict
    fixed: dict       # msc arm -> expected effect without the trial effect (at the plan's truth)
    covariates: dict  # msc arm -> (origin, x_dose, x_inj), to recompute fixed at another truth
    control_type: dict
    reported: bool    # has a month-6 value (follow-up unknown or >= 6 months)


@dataclass
class _Plan:
    """Everything a worker needs to simulate one scenario's meta-analyses (fixed across sims)."""

    scenario: Scenario
    truth: dict
    design_td: TrialData
    trials: list
    template: pd.DataFrame
    n_slots: int
    estimable: dict
    generator: str
    left_out: pd.DataFrame

    @property
    def name(self) -> str:
        return self.scenario.name


def _template(td: TrialData, truth: dict) -> pd.DataFrame:
    """The month-6 VAS comparisons a scenario's data sets have (from one reference run)."""
    sim = simulate(td, truth=_public_truth(truth), seed=0, outcomes=(OUTCOME,), times=(TIME,),
                   adverse_events=False)
    from ..effects import effect_sizes

    eff = effect_sizes(sim, measure=MEASURE, outcomes=[OUTCOME], times=[TIME])
    ok = (eff["excluded_reason"].fillna("") == "") & (eff["time_months"] == TIME)
    rows = eff[ok].reset_index(drop=True)
    return rows[["trial_id", "comparison", "msc_arm", "control_arm", "n_msc", "n_control", "cell_source",
                 "origin", "cells_per_injection", "n_injections", "control_type"]].copy()


def _public_truth(truth: dict) -> dict:
    """The overrides ``simulate`` accepts (it refuses its own derived keys)."""
    return {k: v for k, v in truth.items() if k in DEFAULT_TRUTH}


def _make_plan(sc: Scenario, base: pd.DataFrame, generator: str) -> _Plan:
    if generator == "simulate" and any(v != 0 for v in sc.comparator_effects.values()):
        raise ValueError(f"scenario {sc.name!r}: comparator effects need generator='fast' "
                         "(simulate() has no comparator effects)")
    truth = sc.full_truth()
    td = _validated(base, sc.added)
    kept, left_out = select_design(td.trials)
    if kept.empty:
        raise ValueError(f"scenario {sc.name!r}: the design has no trial that can be simulated")
    sizes = arm_sizes(kept)
    n_arm = dict(zip(zip(sizes["trial_id"], sizes["arm_id"]), sizes["n"]))
    template = _template(td, truth)
    beta = truth["beta"]
    trials = []
    for trial, sub in kept.groupby("trial_id", sort=False):
        source, origin, fu = sub["cell_source"].iloc[0], sub["origin"].iloc[0], sub["followup_months"].iloc[0]
        fixed, covariates = {}, {}
        for _, a in sub[sub["arm_role"] == "msc"].iterrows():
            cells, ninj = a["cells_per_injection"], a["n_injections"]
            x_dose = 0.0 if _na(cells) else math.log10(float(cells) / REF_CELLS)
            x_inj = 0.0 if _na(ninj) else float(ninj) - 1.0
            covariates[a["arm_id"]] = (origin, x_dose, x_inj)
            fixed[a["arm_id"]] = _fixed_effect(truth, source, origin, x_dose, x_inj)
        trials.append(_Trial(
            sim_id=_sim_id(trial), source=source, arms=list(sub["arm_id"]),
            roles=dict(zip(sub["arm_id"], sub["arm_role"])),
            n={a: int(n_arm[(trial, a)]) for a in sub["arm_id"]}, fixed=fixed, covariates=covariates,
            control_type={a: ("" if _na(c) else str(c)) for a, c in zip(sub["arm_id"], sub["control_type"])},
            reported=_na(fu) or not TIME > float(fu)))
    n_rows = len(template)
    estimable = {s: bool((template["cell_source"] == s).any()) for s in SOURCES}
    return _Plan(scenario=sc, truth=truth, design_td=_kept_td(td, kept), trials=trials, template=template,
                 n_slots=int(math.ceil(max(n_rows, 1) / SLOT_BLOCK) * SLOT_BLOCK), estimable=estimable,
                 generator=generator, left_out=left_out)


def _fixed_effect(truth: dict, source: str, origin, x_dose: float, x_inj: float) -> float:
    """An MSC arm's expected effect, as ``simulate`` computes it (same operations, same order)."""
    beta = truth["beta"]
    return _cell_mean(truth, source, origin) + beta["log_dose"] * x_dose + beta["n_injections"] * x_inj


def _kept_td(td: TrialData, kept: pd.DataFrame) -> TrialData:
    return replace(td, trials=td.trials[td.trials["trial_id"].isin(set(kept["trial_id"]))].reset_index(drop=True))


# --------------------------------------------------------------------------- simulating one data set


def _draw_arms(plan: _Plan, seed: int, truth: dict | None = None) -> dict:
    """Month-6 VAS mean and SD of every arm: ``simulate``'s draws for ``outcomes=("VAS",),
    times=(6,)``, in its order from its seed (see the module docstring), plus comparator effects."""
    tr = plan.truth if truth is None else truth
    sc = tr["scales"][OUTCOME]
    sd, lo, hi, dec = float(sc["sd"]), float(sc["scale_min"]), float(sc["scale_max"]), int(tr["decimals"])
    orient = 1.0 if sc["lower_is_better"] else -1.0
    ctrl_mean = sc["control_mean"][f"{TIME:g}"]
    f_t = tr["time_profile"][f"{TIME:g}"]
    ae = tr["adverse_events"]
    comp = plan.scenario.comparator_effects
    children = np.random.SeedSequence(int(seed)).spawn(len(plan.trials))
    out = {}
    for t, child in zip(plan.trials, children):
        rng = np.random.default_rng(child)
        # the draws of simulate(), in its order (outcomes = VAS, times = 6)
        u = rng.normal(0.0, tr["tau"])
        rng.random(1)                                    # report_u (VAS is always reported)
        d_time = rng.normal(0.0, tr["sd_trial_time"], 1)
        e_out = rng.normal(0.0, tr["sd_trial_outcome"], 1)
        c_level = rng.normal(0.0, tr["sd_trial_level"], 1)
        rng.normal(0.0, ae["sd_trial_logit"])            # b_ae
        rng.normal(0.0, ae["tau_log_or"], len(t.arms))   # b_lor
        grid = (1, 2, len(t.arms))
        z_mean = rng.standard_normal(grid)
        chi = rng.chisquare(np.broadcast_to(np.array([t.n[a] - 1 for a in t.arms], float), grid))
        if not t.reported:
            continue
        ctrl = ctrl_mean + c_level[0] * sd
        for a_i, arm in enumerate(t.arms):
            n = t.n[arm]
            true = ctrl
            if t.roles[arm] == "msc":
                fixed = t.fixed[arm] if truth is None else _fixed_effect(tr, t.source, *t.covariates[arm])
                delta = f_t * (fixed + u) + d_time[0] + e_out[0]
                true = ctrl + orient * delta * sd
            elif comp.get(t.control_type[arm], 0.0) != 0.0:
                true = ctrl - orient * comp[t.control_type[arm]] * sd
            mean = true + z_mean[0, 1, a_i] * sd / math.sqrt(n)
            sdo = sd * math.sqrt(chi[0, 1, a_i] / (n - 1))
            mean = round(mean, dec)
            sdo = max(round(sdo, dec), 10.0 ** -dec)
            mean = min(max(mean, lo), hi)
            out[(t.sim_id, arm)] = (mean, sdo, n)
    return out


def _draw_effects(plan: _Plan, seed: int, truth: dict | None = None) -> pd.DataFrame:
    """One data set: the template's comparisons with Hedges' g (``yi``) and its variance (``vi``)."""
    arms = _draw_arms(plan, seed, truth)
    tp = plan.template
    m = np.array([arms[(t, a)] for t, a in zip(tp["trial_id"], tp["msc_arm"])], float)
    c = np.array([arms[(t, a)] for t, a in zip(tp["trial_id"], tp["control_arm"])], float)
    n_mv = tp["n_msc"].to_numpy(float)
    n_cv = tp["n_control"].to_numpy(float)
    with np.errstate(all="ignore"):
        yi = cv.smd(m[:, 0], m[:, 1], m[:, 2], c[:, 0], c[:, 1], c[:, 2])[0]
        vi = cv.smd(m[:, 0], m[:, 1], n_mv, c[:, 0], c[:, 1], n_cv)[1]
    if not plan.truth["scales"][OUTCOME]["lower_is_better"]:
        yi = -yi
    return _effect_table(tp, yi, vi)


def _effect_table(tp: pd.DataFrame, yi, vi) -> pd.DataFrame:
    eff = tp.copy()
    eff["yi"], eff["vi"] = np.asarray(yi, float), np.asarray(vi, float)
    eff["outcome"], eff["time_months"], eff["measure"], eff["excluded_reason"] = OUTCOME, TIME, MEASURE, ""
    return eff


def _reference_effects(plan: _Plan, seed: int, truth: dict | None = None) -> pd.DataFrame:
    """One data set by ``simulate`` + ``effect_sizes`` (the slow reference path)."""
    from ..effects import effect_sizes

    tr = plan.truth if truth is None else truth
    sim = simulate(plan.design_td, truth=_public_truth(tr), seed=int(seed), outcomes=(OUTCOME,),
                   times=(TIME,), adverse_events=False)
    eff = effect_sizes(sim, measure=MEASURE, outcomes=[OUTCOME], times=[TIME])
    ok = (eff["excluded_reason"].fillna("") == "") & (eff["time_months"] == TIME)
    got = eff[ok].set_index(["trial_id", "comparison"])
    key = pd.MultiIndex.from_frame(plan.template[["trial_id", "comparison"]])
    got = got.reindex(key)
    return _effect_table(plan.template, got["yi"].to_numpy(float), got["vi"].to_numpy(float))


@dataclass
class _SimData:
    plan: _Plan
    effects: pd.DataFrame
    means: dict  # the true source means of this data set


def _simulate_one(plan: _Plan, seed: int) -> _SimData:
    sc = plan.scenario
    means = sc.draw_means(seed)
    truth = {**plan.truth, "source_means": means} if sc.drawn else None
    draw = _draw_effects if plan.generator == "fast" else _reference_effects
    return _SimData(plan, draw(plan, seed, truth), means)


# --------------------------------------------------------------------------- fitting one data set


def _pad(design, n_slots: int, sources: Sequence[str] = SOURCES):
    """The univariate design padded to ``n_slots`` rows, with all of ``sources`` as its source labels.

    A padded row has y = 0 and standard error :data:`PAD_SE` (1000 SMD). Its trial effect theta_p
    is drawn from the model like any other, and its likelihood is flat where the posterior lives:
    integrating theta_p out leaves Normal(0 | source_mean, sqrt(PAD_SE^2 + tau^2)) for the rest,
    whose log changes by less than (3^2 + 3^2) / (2 x 10^6) = 1e-5 over |source_mean|, tau <= 3. So
    the posterior of every other parameter is unchanged to that precision, while the model keeps
    one shape for every data set (one compiled model per worker).
    """
    from ..kinds.univariate import Design

    if not isinstance(design, Design):
        raise TypeError(f"a design study pads univariate designs, got {type(design).__name__}")
    k = len(design.y)
    if k > n_slots:
        raise ValueError(f"{k} comparisons do not fit in {n_slots} slots")
    pad = n_slots - k
    src = list(sources)
    out = replace(design, trial=[f"slot_{i:03d}" for i in range(n_slots)],
                  y=np.concatenate([design.y, np.zeros(pad)]), se=np.concatenate([design.se, np.full(pad, PAD_SE)]),
                  X=dict(design.X))
    if design.source_idx is not None:
        labels = [design.source[i] for i in design.source_idx]
        out.source = src
        out.source_idx = np.array([src.index(s) for s in labels] + [0] * pad, dtype=int)
    if design.origin_idx is not None:
        origins = list(ORIGIN_ORDER) + [o for o in design.origin if o not in ORIGIN_ORDER]
        labels = [design.origin[i] for i in design.origin_idx]
        out.origin = origins
        out.origin_idx = np.array([origins.index(o) for o in labels] + [0] * pad, dtype=int)
    out.X = {m: np.concatenate([x, np.zeros((pad,) + x.shape[1:])]) for m, x in design.X.items()}
    return out


class _Fitter:
    """``fit_one``: fit the model to one simulated data set and return its metrics.

    The model spec is read once per worker (not pickled); the compiled model is the package's
    compile cache (one per model structure and slot count, per worker process)."""

    def __init__(self, model: str, priors: Mapping | None, sampler: dict):
        self.model, self.priors, self.sampler = model, dict(priors or {}), dict(sampler)
        self._spec = None

    def __getstate__(self):
        return {**self.__dict__, "_spec": None}

    @property
    def spec(self):
        if self._spec is None:
            self._spec = _load_study_spec(self.model, self.priors)
        return self._spec

    def __call__(self, data: _SimData, seed: int) -> xr.Dataset:
        from ..inference.sampling import sample_spec
        from ..kinds import kind_of, prepare

        plan = data.plan
        design, _ = prepare(self.spec, data.effects, outcome=OUTCOME, time=TIME)
        k = len(design.y)
        design = _pad(design, plan.n_slots)
        s = self.sampler
        dt = sample_spec(self.spec, design, seed=int(seed), draws=s["draws"], tune=s["tune"], chains=s["chains"],
                         target_accept=s["target_accept"], extra_groups=False, cores=1,
                         cache=False)  # thousands of one-off simulated fits: not worth a fit-cache entry each
        return _metrics(dt, plan, data.means, s["chains"], kind_of(self.spec).roles(self.spec))


def _load_study_spec(model, priors):
    from ..kinds import kind_of, load_spec

    spec = load_spec(model, priors=priors or None, measure=MEASURE)
    kind, roles = kind_of(spec), kind_of(spec).roles(spec)
    if not (kind.normal_likelihood(spec) and roles.group and roles.group_dim == "source" and roles.heterogeneity):
        raise ValueError(f"model {spec.name}: a design study ranks cell sources, so it needs a model with "
                         "one normal likelihood per comparison, a mean per cell source and a between-trial "
                         f"SD (e.g. source_hierarchical); got kind {spec.kind!r}")
    return spec


def _true_best(means: Mapping[str, float], estimable: Mapping[str, bool]):
    est = [s for s in SOURCES if estimable[s]]
    vals = np.array([means[s] for s in est])
    best = np.flatnonzero(np.isclose(vals, vals.min(), rtol=0, atol=1e-12))
    return est[int(best[0])] if len(best) == 1 else None


def _claim_truth(means: Mapping[str, float], estimable: Mapping[str, bool]) -> dict:
    est = [s for s in SOURCES if estimable[s]]
    out = {}
    out["uc_first"] = (float(all(means["UC"] < means[s] for s in est if s != "UC"))
                       if estimable["UC"] else math.nan)
    out["uc_ad_bm"] = (float(means["UC"] < means["AD"] < means["BM"])
                       if all(estimable[s] for s in ("UC", "AD", "BM")) else math.nan)
    return out


def _health(dt: xr.DataTree, est: Sequence[str], chains: int, roles) -> dict:
    """Sampler health of one fit.

    The metrics are functions of the draws of the estimable source means and tau only, so a fit is
    ``healthy`` when those pass the package's thresholds (R-hat <= 1.01, bulk and tail ESS >= 100
    per chain; :func:`bayes_koa.inference.diagnostics.diagnose`) and no transition diverged. ``max_rhat_hyper``
    and ``min_ess_hyper`` cover mu and sigma_source, which mix more slowly (three sources identify
    them weakly). The trial effects are not checked per fit: R-hat and ESS cost about 15 ms per
    parameter here, and there are 40 of them.
    """
    from ..inference.diagnostics import ESS_PER_CHAIN_MIN, RHAT_MAX

    post = dt["posterior"]
    sd = ["chain", "draw"]

    def stats(parts) -> tuple[float, float, float]:
        """(largest R-hat, smallest bulk ESS, smallest tail ESS); NaN if any is NaN (stuck chains)."""
        da = xr.concat([x.drop_vars([c for c in x.coords if c not in sd]) for x in parts],
                       dim="p").transpose("chain", "draw", "p")
        r = da.azstats.rhat(sample_dims=sd).values
        eb = da.azstats.ess(sample_dims=sd, method="bulk").values
        et = da.azstats.ess(sample_dims=sd, method="tail").values
        if not (np.isfinite(r).all() and np.isfinite(eb).all() and np.isfinite(et).all()):
            return math.nan, math.nan, math.nan
        return float(r.max()), float(eb.min()), float(et.min())

    tau = post[roles.heterogeneity[0]]
    used = [post[roles.group].sel(source=list(est)).rename(source="p"),
            tau.sel(source=list(est)).rename(source="p") if "source" in tau.dims else tau.expand_dims(p=1)]
    rhat, ess_b, ess_t = stats(used)
    hyper = [post[v].expand_dims(p=1) for v in (roles.overall, *roles.between_group)
             if v and v in post.data_vars and post[v].dims == ("chain", "draw")]
    rh, eb_h, et_h = stats(hyper) if hyper else (math.nan, math.nan, math.nan)
    st = dt["sample_stats"]
    n_div = int(st["diverging"].sum()) if "diverging" in st.data_vars else 0
    # written as "not <= / not >=" would be the package's style; NaN compares False here, so a NaN
    # statistic makes the fit unhealthy as well
    healthy = n_div == 0 and rhat <= RHAT_MAX and min(ess_b, ess_t) >= ESS_PER_CHAIN_MIN * chains
    return {"divergences": n_div, "max_rhat": rhat, "min_ess_bulk": ess_b, "min_ess_tail": ess_t,
            "healthy": float(healthy), "max_rhat_hyper": rh, "min_ess_hyper": min(eb_h, et_h)}


def _metrics(dt: xr.DataTree, plan: _Plan, means: Mapping[str, float], chains: int, roles) -> xr.Dataset:
    from ..analysis.ranking import p_best
    from .claims import CLAIM_IDS, ClaimSpec
    from .claims import claims as claim_table

    post = dt["posterior"]
    sm = post[roles.group]
    est = [s for s in SOURCES if plan.estimable[s]]
    mask = xr.DataArray([plan.estimable[s] for s in SOURCES], dims="source", coords={"source": list(SOURCES)})
    truth = xr.DataArray([means[s] for s in SOURCES], dims="source", coords={"source": list(SOURCES)})
    sm = sm.assign_coords(source=list(SOURCES))
    q = sm.quantile([0.025, 0.975], dim=("chain", "draw"))
    lower = q.isel(quantile=0, drop=True).where(mask)
    upper = q.isel(quantile=1, drop=True).where(mask)
    estimate = sm.mean(("chain", "draw")).where(mask)
    covered = ((lower <= truth) & (truth <= upper)).astype(float).where(mask)
    pb = p_best(sm.sel(source=est)).reindex(source=list(SOURCES))
    best = _true_best(means, plan.estimable)
    if best is None:
        top, pbt = math.nan, math.nan
    else:
        v = pb.sel(source=est).values
        winners = [s for s, x in zip(est, v) if x == v.max()]
        top = (1.0 / len(winners)) if best in winners else 0.0
        pbt = float(pb.sel(source=best))
    ct = claim_table({ClaimSpec().source_mean: sm.sel(source=est)})
    probs = dict(zip(CLAIM_IDS, ct["probability"].to_numpy(float)))
    claim_p = xr.DataArray([probs[c] for c in CLAIMS], dims="claim", coords={"claim": list(CLAIMS)})
    holds = _claim_truth(means, plan.estimable)
    out = {"p_best": pb, "estimate": estimate, "lower": lower, "upper": upper, "width": upper - lower,
           "covered": covered, "top_correct": top, "p_best_true": pbt, "claim_probability": claim_p,
           "true_value": truth.where(mask),
           "claim_holds": xr.DataArray([holds[c] for c in CLAIMS], dims="claim", coords={"claim": list(CLAIMS)})}
    tau = post[roles.heterogeneity[0]]
    if tau.dims == ("chain", "draw"):
        tq = tau.quantile([0.025, 0.975], dim=("chain", "draw")).values
        out.update(tau_estimate=float(tau.mean()), tau_lower=float(tq[0]), tau_upper=float(tq[1]),
                   tau_covered=float(tq[0] <= plan.scenario.tau <= tq[1]))
    out.update(_health(dt, est, chains, roles))
    ds = xr.Dataset({k_: (v if isinstance(v, xr.DataArray) else xr.DataArray(v)) for k_, v in out.items()})
    return ds.drop_vars([c for c in ds.coords if c not in ds.dims])


# --------------------------------------------------------------------------- the study


def _sampler(sampler: Mapping | None) -> dict:
    s = {**DEFAULT_SAMPLER, **dict(sampler or {})}
    unknown = set(s) - set(DEFAULT_SAMPLER)
    if unknown:
        raise ValueError(f"sampler: unknown setting(s) {sorted(unknown)} (known: {', '.join(DEFAULT_SAMPLER)})")
    return {"draws": int(s["draws"]), "tune": int(s["tune"]), "chains": int(s["chains"]),
            "target_accept": float(s["target_accept"])}


def design_study(design=None, scenarios=None, n_sims: int = 200, model: str = "source_hierarchical",
                 seed: int = 0, workers: int | None = None, client=None, store=None, *,
                 priors: Mapping | None = None, sampler: Mapping | None = None, generator: str = "fast",
                 paired: bool = False, progress=True, retry_failed: bool = False) -> xr.Dataset:
    """Simulate and fit ``n_sims`` meta-analyses per scenario; see the module docstring.

    Parameters
    ----------
    design : None (the bundled real designs), a trials DataFrame, a TrialData or a trials CSV path.
        Each scenario's ``added`` trials are appended to it.
    scenarios : a list of :class:`Scenario` (or dicts with its fields); default
        :func:`default_scenarios`.
    n_sims, seed, workers, client, store : as :func:`bayes_koa.workflows.design.run_study`.
    model : a model with the source level (``source_hierarchical``, ``source_origin``, ...).
    priors : prior overrides, as :func:`bayes_koa.fit`.
    sampler : overrides of :data:`DEFAULT_SAMPLER` (draws, tune, chains, target_accept).
    generator : ``"fast"`` (default) or ``"simulate"`` (the slow reference path; same numbers).
    paired : the same random numbers for sim j in every scenario (common random numbers): the
        base trials of two scenarios that differ by added trials then get identical data.

    Returns
    -------
    xarray.Dataset, dims ``scenario``, ``sim``, ``source``, ``claim``:

    - per fit: ``top_correct`` (1 if the truly best source has the largest P(best); NaN if the truth
      has a tie), ``p_best_true``, ``p_best``, ``estimate`` (posterior mean), ``lower``/``upper``
      (95% equal-tailed interval), ``width``, ``covered`` (true effect inside it), ``tau_*``,
      ``claim_probability`` (P of the paper's claims ``uc_first``, ``uc_ad_bm``), ``true_value`` (the
      true source means of this data set) and ``claim_holds`` (whether each claim is true in it: they
      vary only with ``between_source_sd``), ``divergences``,
      ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` (over the source means and tau: what the
      metrics use), ``healthy`` (those pass R-hat <= 1.01, ESS >= 100 per chain, no divergence),
      ``max_rhat_hyper``, ``min_ess_hyper`` (mu and sigma_source; see :func:`_health`), plus
      ``done``/``failed``/``seconds``;
    - per scenario: ``true_effect`` and ``estimable`` (by source), ``claim_true`` (NaN where the truth
      is drawn per data set), coordinates
      ``n_added_trials``, ``n_added_patients``, ``n_comparisons``, ``n_slots``, ``series``,
      ``true_best``;
    - ``attrs``: ``notes`` (JSON list: sources not estimable, trials left out), the basis of the
      truth and of the sampler settings, model, design, generator, and the study attrs of
      ``run_study`` (seed, fits run and reused, elapsed seconds, workers).
    """
    if generator not in ("fast", "simulate"):
        raise ValueError(f"generator must be 'fast' or 'simulate', got {generator!r}")
    scs = _as_scenarios(scenarios)
    samp = _sampler(sampler)
    spec = _load_study_spec(model, priors)  # fail early, on the client
    base, design_from = _design_frame(design)
    plans = [_make_plan(sc, base, generator) for sc in scs]
    notes = []
    for p in plans:
        missing = [s for s in SOURCES if not p.estimable[s]]
        for s in missing:
            notes.append(f"{p.name}: {s} has no trial in the design: not estimable (NaN), not ranked")
        if sum(p.estimable.values()) < 2:
            raise ValueError(f"scenario {p.name!r}: fewer than two cell sources have trials "
                             f"({', '.join(s for s in SOURCES if p.estimable[s]) or 'none'}); nothing to rank")
    if len(plans[0].left_out):
        notes.append("trials of the design left out (not simulated): " + "; ".join(
            f"{r.trial_id} ({r.reason})" for r in plans[0].left_out.itertuples()))
    settings = {"model": spec.name, "model_file_sha256": spec.file_hash,
                "priors": {k: str(v) for k, v in spec.priors}, "sampler": samp, "generator": generator,
                "outcome": OUTCOME, "time_months": TIME, "measure": MEASURE, "pad_se": PAD_SE,
                "slot_block": SLOT_BLOCK, "design": design_from}
    fitter = _Fitter(model, priors, samp)
    ds = run_study(_simulate_one, fitter, {p.name: p for p in plans}, n_sims=n_sims, seed=seed,
                   workers=workers, client=client, store=store, progress=progress, paired=paired,
                   settings=settings, retry_failed=retry_failed)
    return _decorate(ds, plans, notes, design_from, spec, samp, generator)


def _decorate(ds, plans, notes, design_from, spec, samp, generator) -> xr.Dataset:
    names = [p.name for p in plans]
    src = list(SOURCES)
    ds = ds.assign_coords(source=src) if "source" in ds.dims else ds
    ds["true_effect"] = xr.DataArray([[math.nan if p.scenario.drawn else p.scenario.source_means[s] for s in src]
                                      for p in plans],
                                     dims=("scenario", "source"), coords={"scenario": names, "source": src})
    ds["estimable"] = xr.DataArray([[p.estimable[s] for s in src] for p in plans], dims=("scenario", "source"),
                                   coords={"scenario": names, "source": src})
    ct = [{c: math.nan for c in CLAIMS} if p.scenario.drawn else _claim_truth(p.scenario.source_means, p.estimable)
          for p in plans]
    ds["claim_true"] = xr.DataArray([[c[k] for k in CLAIMS] for c in ct], dims=("scenario", "claim"),
                                    coords={"scenario": names, "claim": list(CLAIMS)})
    best = ["" if p.scenario.drawn else (_true_best(p.scenario.source_means, p.estimable) or "") for p in plans]
    ds = ds.assign_coords(
        n_added_trials=("scenario", [p.scenario.n_added_trials for p in plans]),
        n_added_patients=("scenario", [p.scenario.n_added_patients for p in plans]),
        n_comparisons=("scenario", [len(p.template) for p in plans]),
        n_slots=("scenario", [p.n_slots for p in plans]),
        series=("scenario", np.array([p.scenario.series for p in plans], dtype=object)),
        true_best=("scenario", np.array(best, dtype=object)),
        tau_true=("scenario", [p.scenario.tau for p in plans]),
        between_source_sd_true=("scenario", [math.nan if p.scenario.between_source_sd is None else p.scenario.between_source_sd
                                        for p in plans]),
    )
    ds.attrs.update(
        title="Design study: SIMULATED meta-analyses (not trial results)",
        notes=json.dumps(notes), model=spec.name, outcome=OUTCOME, time_months=TIME, measure=MEASURE,
        design=design_from, generator=generator, sampler=json.dumps(samp),
        truth_basis=" ".join(("Truth (SMD" + __doc__.split("Truth (SMD")[1].split("Hypothetical added trials")[0]).split()),
        sampler_basis=DEFAULT_SAMPLER_BASIS,
        scenarios=json.dumps([_scenario_dict(p.scenario) for p in plans]),
    )
    return ds


DEFAULT_SAMPLER_BASIS = (
    "2 chains x 1000 draws after 1000 tuning steps (target_accept 0.99) per fit (the package default is "
    "4 x 2000). Measured on 12 data sets of the bundled design: 2 x 500 gave R-hat <= 1.01 and ESS >= "
    "200 for the source means and tau in 5 of 12 fits, 2 x 1000 in 10 of 12. Each fit's health "
    "(divergences, largest R-hat, smallest bulk and tail ESS) is recorded; summary() gives the share "
    "of healthy fits.")


def _scenario_dict(sc: Scenario) -> dict:
    return {"name": sc.name, "source_means": dict(sc.source_means), "tau": sc.tau, "between_source_sd": sc.between_source_sd,
            "comparator_effects": dict(sc.comparator_effects),
            "added": [{"source": a.source, "comparator": a.comparator, "n": a.n} for a in sc.added],
            "truth": dict(sc.truth)}


# --------------------------------------------------------------------------- summaries and plot


def clopper_pearson(k: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) interval of a binomial proportion k / n."""
    from scipy import stats

    if n <= 0:
        return math.nan, math.nan
    a = (1 - level) / 2
    lo = 0.0 if k <= 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k >= n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def _ok(ds: xr.Dataset) -> xr.DataArray:
    return ds["done"] & ~ds["failed"]


def summary(ds: xr.Dataset, level: float = 0.95) -> pd.DataFrame:
    """One row per scenario: P(correct top rank) with its Clopper-Pearson interval, P(best) of the
    truly best source, coverage and mean width of the 95% intervals (pooled over estimable sources
    and by source), the claims' mean probabilities, and the sampler's health."""
    rows = []
    for name in ds["scenario"].values:
        d = ds.sel(scenario=name)
        ok = _ok(d).values
        n_ok = int(ok.sum())
        top = d["top_correct"].values[ok]
        top = top[np.isfinite(top)]
        lo, hi = clopper_pearson(float(top.sum()), len(top), level)
        est = [s for s in SOURCES if bool(d["estimable"].sel(source=s))]
        cov = d["covered"].sel(source=est).values[ok]
        wid = d["width"].sel(source=est).values[ok]
        row = {
            "scenario": str(name), "n_added_trials": int(d["n_added_trials"]),
            "n_added_patients": int(d["n_added_patients"]), "n_comparisons": int(d["n_comparisons"]),
            "fits": n_ok, "failed": int(d["failed"].sum()), "missing": int((~d["done"]).sum()),
            "healthy": float(np.nanmean(d["healthy"].values[ok])) if n_ok else math.nan,
            "true_best": str(d["true_best"].values) or ("drawn per data set" if n_ok else ""),
            "p_top_correct": float(top.mean()) if len(top) else math.nan,
            "p_top_lower": lo, "p_top_upper": hi,
            "mean_p_best_true": float(np.nanmean(d["p_best_true"].values[ok])) if n_ok else math.nan,
            "coverage": float(np.nanmean(cov)) if cov.size else math.nan,
            "mean_width": float(np.nanmean(wid)) if wid.size else math.nan,
        }
        for s in SOURCES:
            c = d["covered"].sel(source=s).values[ok]
            w = d["width"].sel(source=s).values[ok]
            fine = bool(d["estimable"].sel(source=s)) and n_ok
            row[f"coverage_{s}"] = float(np.mean(c)) if fine else math.nan
            row[f"width_{s}"] = float(np.mean(w)) if fine else math.nan
        for c in CLAIMS:
            p = d["claim_probability"].sel(claim=c).values[ok]
            row[f"p_{c}"] = float(np.nanmean(p)) if n_ok and np.isfinite(p).any() else math.nan
            h = d["claim_holds"].sel(claim=c).values[ok]
            row[f"{c}_true"] = float(np.nanmean(h)) if n_ok and np.isfinite(h).any() else math.nan
        row["mean_divergences"] = float(np.nanmean(d["divergences"].values[ok])) if n_ok else math.nan
        row["max_rhat"] = float(np.nanmax(d["max_rhat"].values[ok])) if n_ok else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(level=level, interval="Clopper-Pearson (exact binomial)", title=ds.attrs.get("title", ""))
    return out


def by_source(ds: xr.Dataset, level: float = 0.95) -> pd.DataFrame:
    """One row per scenario x source: estimable, true effect, mean estimate (bias), coverage with its
    Clopper-Pearson interval, mean width, mean P(best); not-estimable sources say so."""
    rows = []
    for name in ds["scenario"].values:
        d = ds.sel(scenario=name)
        ok = _ok(d).values
        for s in SOURCES:
            e = bool(d["estimable"].sel(source=s))
            c = d["covered"].sel(source=s).values[ok]
            lo, hi = clopper_pearson(float(np.sum(c)), len(c), level) if e else (math.nan, math.nan)
            tv = d["true_value"].sel(source=s).values[ok]
            est_ = d["estimate"].sel(source=s).values[ok]
            fine = e and ok.any()
            rows.append({
                "scenario": str(name), "source": s, "estimable": e,
                "note": "" if e else "not estimable: no trial of this source in the design",
                "true_effect": float(d["true_effect"].sel(source=s)),
                "mean_true_value": float(np.mean(tv)) if fine else math.nan,
                "mean_estimate": float(np.mean(est_)) if fine else math.nan,
                "bias": float(np.mean(est_ - tv)) if fine else math.nan,
                "coverage": float(np.mean(c)) if e and len(c) else math.nan, "coverage_lower": lo, "coverage_upper": hi,
                "mean_width": float(np.mean(d["width"].sel(source=s).values[ok])) if e and ok.any() else math.nan,
                "mean_p_best": float(np.mean(d["p_best"].sel(source=s).values[ok])) if e and ok.any() else math.nan,
            })
    return pd.DataFrame(rows)


def plot_power(ds: xr.Dataset, x: str = "n_added_trials", ax=None, target: float | None = None,
               level: float = 0.95, save=None):
    """P(correct top rank) with its Clopper-Pearson interval against the number of added trials
    (``x="n_added_trials"``) or added patients (``x="n_added_patients"``); one line per kind of
    added trial (the scenario without additions starts every line). Returns the figure."""
    import matplotlib.pyplot as plt

    if x not in ("n_added_trials", "n_added_patients"):
        raise ValueError(f"x must be 'n_added_trials' or 'n_added_patients', got {x!r}")
    tab = summary(ds, level)
    tab["series"] = [str(v) for v in ds["series"].values]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    else:
        fig = ax.figure
    base = tab[tab["series"] == ""]
    kinds = [s for s in dict.fromkeys(tab["series"]) if s] or [""]
    for kind in kinds:
        part = pd.concat([base, tab[tab["series"] == kind]]) if kind else base
        part = part.sort_values(x)
        err = np.vstack([part["p_top_correct"] - part["p_top_lower"], part["p_top_upper"] - part["p_top_correct"]])
        ax.errorbar(part[x], part["p_top_correct"], yerr=err, marker="o", capsize=3,
                    label=f"+ {kind}" if kind else "design as is")
    if target is not None:
        ax.axhline(target, color="grey", ls="--", lw=1)
        ax.text(ax.get_xlim()[0], target, f" target {target:g}", va="bottom", color="grey", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("added trials" if x == "n_added_trials" else "added patients")
    ax.set_ylabel("P(correct top rank)")
    n = int(_ok(ds).sum("sim").min())
    ax.set_title(f"SIMULATED design study: truly best source ranked first\n({n} meta-analyses per point, "
                 f"{level:.0%} Clopper-Pearson intervals)", fontsize=9)
    if len(kinds) > 1 or kinds != [""]:
        ax.legend(fontsize=8)
    if save is not None:
        fig.savefig(save, dpi=120)
    return fig


# --------------------------------------------------------------------------- value of the next trial


@dataclass
class AdditionsComparison:
    """Candidate additions ranked by the gain in P(correct top rank) (``table``), the study behind
    it (``study``), the target, and the smallest addition reaching it (``smallest``: a row of
    ``table``, or None with the reason in ``note``)."""

    table: pd.DataFrame
    study: xr.Dataset
    target: float
    smallest: pd.Series | None
    note: str

    def __repr__(self) -> str:
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            head = f"AdditionsComparison (SIMULATED design study; target P(correct top rank) >= {self.target:g})"
            return "\n".join([head, self.table.to_string(index=False), self.note])


def _candidate(c) -> tuple[AddedTrial, ...]:
    if isinstance(c, (AddedTrial, Mapping)) or (isinstance(c, (tuple, list)) and c and isinstance(c[0], str)):
        return (_added(c),)
    return tuple(_added(a) for a in c)


def rank_additions(study: xr.Dataset, base: str, target: float = 0.9, level: float = 0.95) -> tuple[pd.DataFrame, pd.Series | None, str]:
    """Rank the scenarios of ``study`` other than ``base`` by the gain in P(correct top rank) over
    ``base`` (paired per sim where the study is paired), then by the shrinkage of the truly best
    source's 95% interval. Returns ``(table, smallest, note)``: ``smallest`` is the candidate with
    the fewest added patients whose P(correct top rank) reaches ``target`` (None if none does)."""
    tab = summary(study, level).set_index("scenario")
    ok = _ok(study)
    tb = study.sel(scenario=base)
    best = str(tb["true_best"].values)
    rows = []
    for name in tab.index:
        if name == base:
            continue
        d = study.sel(scenario=name)
        both = (ok.sel(scenario=name) & ok.sel(scenario=base)).values
        diff = d["top_correct"].values[both] - tb["top_correct"].values[both]
        diff = diff[np.isfinite(diff)]
        w_c = d["width"].sel(source=best).values[both] if best else np.array([])
        w_b = tb["width"].sel(source=best).values[both] if best else np.array([])
        mw_c = np.nanmean(d["width"].where(d["estimable"]).values[both], axis=1) if both.any() else np.array([])
        mw_b = np.nanmean(tb["width"].where(tb["estimable"]).values[both], axis=1) if both.any() else np.array([])
        r = tab.loc[name]
        rows.append({
            "candidate": name, "added_trials": int(r["n_added_trials"]), "added_patients": int(r["n_added_patients"]),
            "p_top_correct": r["p_top_correct"], "p_top_lower": r["p_top_lower"], "p_top_upper": r["p_top_upper"],
            "gain": float(diff.mean()) if len(diff) else math.nan,
            "gain_se": float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan,
            "shrinkage_best": float(1 - np.mean(w_c) / np.mean(w_b)) if len(w_b) else math.nan,
            "shrinkage_mean": float(1 - np.mean(mw_c) / np.mean(mw_b)) if len(mw_b) else math.nan,
            "reaches_target": bool(r["p_top_correct"] >= target),
            "reaches_target_surely": bool(r["p_top_lower"] >= target),
        })
    out = pd.DataFrame(rows)
    if out.empty:
        return out, None, "no candidate besides the base scenario"
    out = out.sort_values(["gain", "shrinkage_best"], ascending=False, kind="stable").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    base_p = tab.loc[base, "p_top_correct"]
    reach = out[out["reaches_target"]].sort_values(["added_patients", "p_top_correct"], ascending=[True, False],
                                                   kind="stable")
    if len(reach):
        s = reach.iloc[0]
        note = (f"Base design: P(correct top rank) = {base_p:.2f}. Smallest addition reaching {target:g}: "
                f"{s['candidate']} ({s['added_patients']} patients): P = {s['p_top_correct']:.2f} "
                f"[{s['p_top_lower']:.2f}, {s['p_top_upper']:.2f}]"
                + ("" if s["reaches_target_surely"] else "; its interval still reaches below the target"))
        return out, s, note
    return out, None, (f"Base design: P(correct top rank) = {base_p:.2f}. No candidate reaches {target:g} "
                       f"(best: {out.iloc[0]['candidate']}, P = {out.iloc[0]['p_top_correct']:.2f}).")


def compare_additions(candidates, design=None, base: Scenario | Mapping | None = None, n_sims: int = 200,
                      model: str = "source_hierarchical", seed: int = 0, target: float = 0.9,
                      workers: int | None = None, client=None, store=None, *, paired: bool = True,
                      **kwargs) -> AdditionsComparison:
    """Value of the next trial: which candidate addition raises P(correct top rank) most?

    ``candidates``: each an added trial (``AddedTrial``, ``(source, comparator, n)`` or a dict) or a
    list of them (a package of trials). The study has the base scenario (``base``, default
    :class:`Scenario`: the stated truth on the design) plus one scenario per candidate, with common
    random numbers (``paired=True``): in sim j every scenario has the same data for the base trials,
    so the gain is measured on the same meta-analyses. Other keywords go to :func:`design_study`.
    """
    base_sc = _as_scenarios([base])[0] if base is not None else Scenario(name="base")
    cands = [_candidate(c) for c in candidates]
    if not cands:
        raise ValueError("compare_additions needs at least one candidate")
    scs = [base_sc] + [base_sc.with_added(c, name=_added_name("base", c)) for c in cands]
    names = [s.name for s in scs]
    if len(set(names)) != len(names):
        raise ValueError("candidates must differ from each other")
    study = design_study(design, scs, n_sims=n_sims, model=model, seed=seed, workers=workers, client=client,
                         store=store, paired=paired, **kwargs)
    table, smallest, note = rank_additions(study, base_sc.name, target)
    return AdditionsComparison(table=table, study=study, target=target, smallest=smallest, note=note)
