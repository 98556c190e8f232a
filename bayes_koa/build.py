"""Model spec + effect table -> ``pm.Model``: the model-building step.

:func:`prepare` picks the rows a model can use and returns its design plus a table of every row
left out with its reason (nothing is dropped silently); :func:`build_model` writes the PyMC model.
Both dispatch on the model file's ``structure.kind`` to one small module per kind
(``spec.KIND_MODULES``): ``build_univariate`` (fixed, random, hierarchical), ``build_multivariate``
(outcomes x times), ``build_binomial`` (arm-level adverse events). These modules are the only
PyMC-building code. Observed values and every prior parameter are ``pm.Data`` containers, so one
compiled model serves many fits of the same shape (prior sweeps, simulation studies).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .spec import ModelSpec, kind_module

__all__ = ["prepare", "build_model", "data_values", "SOURCE_ORDER", "ORIGIN_ORDER", "ordered", "Selection",
           "missing", "normal_level"]

SOURCE_ORDER = ("BM", "UC", "AD", "placenta", "BMAC", "other")
ORIGIN_ORDER = ("autologous", "allogeneic")


def ordered(values, order) -> list[str]:
    vals = list(dict.fromkeys(values))
    return [v for v in order if v in vals] + sorted(v for v in vals if v not in order)


def missing(values: pd.Series) -> pd.Series:
    """True where a text cell is empty (NA or blank)."""
    return values.isna() | (values.astype(str).str.strip() == "")


class Selection:
    """The rows a model still uses, and every row left out with its reason.

    Start from an effect table (rows with a non-empty ``excluded_reason`` are left out at once);
    each :meth:`drop` moves rows from ``rows`` to the left-out log with the reason. Every kind's
    ``prepare`` uses it, so nothing is dropped silently.
    """

    def __init__(self, df: pd.DataFrame):
        reason = (df["excluded_reason"].fillna("").astype(str) if "excluded_reason" in df
                  else pd.Series("", index=df.index))
        df = df.assign(excluded_reason=reason)
        self._out = [df[reason != ""]]
        self.rows = df[reason == ""].copy()

    def drop(self, mask, reason: str) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=self.rows.index)
        if mask.any():
            self._out.append(self.rows[mask].assign(excluded_reason=reason))
            self.rows = self.rows[~mask]

    def excluded(self) -> pd.DataFrame:
        return pd.concat(self._out, ignore_index=True)

    def reasons(self) -> str:
        return "; ".join(sorted(set(self.excluded()["excluded_reason"]))) or "empty table"


def normal_level(name: str, loc, sd, dims, noncentered: bool, z_name: str):
    """``name ~ Normal(loc, sd)`` over ``dims``; non-centred as ``loc + sd * z_name`` with standard normal z.

    The one way every kind writes a hierarchical level (source means, cells, trial effects).
    """
    import pymc as pm

    if not noncentered:
        return pm.Normal(name, loc, sd, dims=dims)
    z = pm.Normal(z_name, 0.0, 1.0, dims=dims)
    return pm.Deterministic(name, loc + sd * z, dims=dims)


def data_values(spec: ModelSpec, design) -> dict[str, np.ndarray]:  # noqa: D103
    """Values of every ``pm.Data`` container of the model: observations and prior parameters."""
    vals = dict(design.data())
    for name, prior in spec.priors:
        for (_, value), dn in zip(prior.params, prior.data_names(name).values()):
            vals[dn] = np.asarray(value, dtype="float64")
    return vals


# -- dispatch over structure kinds (spec.KIND_MODULES) ---------------------------------------------


def prepare(spec: ModelSpec, effects: pd.DataFrame, outcome: str | None = None, time: float | None = None):
    """Pick the rows ``spec`` can use; return its design and the rows left out with reasons."""
    return kind_module(spec.kind).prepare(spec, effects, outcome=outcome, time=time)


def build_model(spec: ModelSpec, design):
    """Write the PyMC model for ``spec`` on ``design``. Returns a ``pm.Model``; samples nothing."""
    return kind_module(spec.kind).build(spec, design)


