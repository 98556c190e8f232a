"""Cumulative meta-analysis by year: which trials have accrued at each step, and the results table.

The refitting is not done here (this layer fits nothing): :func:`cumulative_steps` lists, year by
year, the trials published up to that year; the caller fits each step's rows
(:func:`step_rows`) and hands the per-step summaries to :func:`assemble_cumulative`::

    steps = cumulative_steps(effects)                      # effects has trial_id and year
    fits = [summarise(fit(step_rows(effects, s))) for s in steps]
    table = assemble_cumulative(steps, fits)

A trial enters in its year; trials of the same year enter together (natural order of their ids
within a year). An effect table has one row per comparison, so a trial may have several rows;
they must agree on the year. Rows with a non-empty ``excluded_reason`` (when the column exists)
are left out, as a model would leave them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..util.order import natural_key

__all__ = ["CumulativeStep", "cumulative_steps", "step_rows", "assemble_cumulative"]


@dataclass(frozen=True)
class CumulativeStep:
    """One step of a cumulative meta-analysis: every trial published up to ``year``."""

    step: int                     # 1, 2, ... in year order
    year: int
    trial_ids: tuple[str, ...]    # all trials accrued so far (in order of entry)
    added: tuple[str, ...]        # trials first included at this step

    @property
    def n_trials(self) -> int:
        return len(self.trial_ids)


def _usable(effects: pd.DataFrame) -> pd.DataFrame:
    if "excluded_reason" in effects.columns:
        return effects[(effects["excluded_reason"].fillna("").astype(str) == "").to_numpy()]
    return effects


def _years(effects: pd.DataFrame, trial: str, year: str, years) -> dict[str, int]:
    """One year per trial, checked: present, finite, whole, the same on every row of a trial."""
    if trial not in effects.columns:
        raise KeyError(f"the effect table has no {trial!r} column; it has {list(effects.columns)}")
    if years is not None:
        lookup = dict(years.items()) if isinstance(years, (Mapping, pd.Series)) else None
        if lookup is None:
            raise TypeError("years must be a mapping or Series from trial id to year")
        col = effects[trial].map(lambda t: lookup.get(t, np.nan))
        where = "the years mapping"
    else:
        if year not in effects.columns:
            raise KeyError(f"the effect table has no {year!r} column (pass years={{trial_id: year}}); "
                           f"it has {list(effects.columns)}")
        col = effects[year]
        where = f"column {year!r}"
    out: dict[str, int] = {}
    for pos, (tid, y) in enumerate(zip(effects[trial], col)):
        row = effects.index[pos]
        try:
            yf = float(y)
        except (TypeError, ValueError):
            yf = np.nan
        if not np.isfinite(yf) or yf != int(yf):
            raise ValueError(f"trial {tid!r} (row {row}): {where} has year {y!r}, not a whole number")
        yi = int(yf)
        if out.setdefault(str(tid), yi) != yi:
            raise ValueError(f"trial {tid!r} (row {row}): {where} has year {yi}, but an earlier row of "
                             f"the same trial has {out[str(tid)]}")
    return out


def cumulative_steps(effects: pd.DataFrame, *, year: str = "year", trial: str = "trial_id",
                     years=None, min_trials: int = 1) -> list[CumulativeStep]:
    """Ordered steps of a cumulative meta-analysis by year.

    ``effects``: an effect table with a trial column (``trial``) and a year column (``year``), or
    give ``years`` (mapping/Series trial id -> year). Steps with fewer than ``min_trials`` trials
    are skipped (the first step returned then adds every trial accrued so far). Raises if no step
    has ``min_trials`` trials."""
    if min_trials < 1:
        raise ValueError(f"min_trials must be at least 1; got {min_trials}")
    usable = _usable(effects)
    if usable.empty:
        raise ValueError("the effect table has no usable rows (all excluded or empty)")
    by_trial = _years(usable, trial, year, years)
    order = sorted(by_trial, key=lambda t: (by_trial[t], natural_key(t)))
    steps: list[CumulativeStep] = []
    accrued: list[str] = []
    shown = 0
    for y in sorted(set(by_trial.values())):
        accrued.extend(t for t in order if by_trial[t] == y)
        if len(accrued) < min_trials:
            continue
        steps.append(CumulativeStep(step=len(steps) + 1, year=y, trial_ids=tuple(accrued),
                                    added=tuple(accrued[shown:])))
        shown = len(accrued)
    if not steps:
        raise ValueError(f"only {len(accrued)} trials in all; no step reaches min_trials={min_trials}")
    return steps


def step_rows(effects: pd.DataFrame, step: CumulativeStep, *, trial: str = "trial_id") -> pd.DataFrame:
    """The rows of ``effects`` of the trials accrued by ``step`` (excluded rows kept, so a fit
    reports them as usual)."""
    return effects[effects[trial].astype(str).isin(step.trial_ids).to_numpy()]


def assemble_cumulative(steps: Sequence[CumulativeStep], summaries: Sequence) -> pd.DataFrame:
    """One table from per-step summaries: columns ``step``, ``year``, ``n_trials``, ``added``
    (comma-separated ids), then the summary's columns.

    Each summary is a dict (one row), a Series (one row) or a DataFrame (its rows, e.g. one per
    parameter; its index is kept as columns). ``summaries[i]`` belongs to ``steps[i]``."""
    if len(steps) != len(summaries):
        raise ValueError(f"{len(steps)} steps but {len(summaries)} summaries")
    parts = []
    for step, summ in zip(steps, summaries):
        if isinstance(summ, pd.DataFrame):
            frame = summ.reset_index() if not isinstance(summ.index, pd.RangeIndex) else summ.copy()
        elif isinstance(summ, pd.Series):
            frame = summ.to_frame().T.reset_index(drop=True)
        elif isinstance(summ, Mapping):
            frame = pd.DataFrame([dict(summ)])
        else:
            raise TypeError(f"step {step.step}: a summary must be a DataFrame, Series or dict; got "
                            f"{type(summ).__name__}")
        clash = {"step", "year", "n_trials", "added"} & set(frame.columns)
        if clash:
            raise ValueError(f"step {step.step}: summary columns {sorted(clash)} clash with the step columns")
        frame.insert(0, "added", ", ".join(step.added))
        frame.insert(0, "n_trials", step.n_trials)
        frame.insert(0, "year", step.year)
        frame.insert(0, "step", step.step)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)
