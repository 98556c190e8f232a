"""What the kinds share: the log of rows left out (:class:`Selection`) and hierarchical levels.

Every kind's ``prepare`` logs the rows it leaves out through :class:`Selection` (nothing is dropped
silently) and writes its hierarchical levels with :func:`normal_level`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec.files import SpecError
from ..util.order import ordered

__all__ = ["SOURCE_ORDER", "ORIGIN_ORDER", "ordered", "Selection", "missing", "normal_level", "prior_variable",
           "pick_rows"]

SOURCE_ORDER = ("BM", "UC", "AD", "placenta", "BMAC", "other")
ORIGIN_ORDER = ("autologous", "allogeneic")




def pick_rows(df: pd.DataFrame, col: str, wanted, what: str, *, table: str = "effect table",
              pools: str = "this model pools one", narrow: bool = True) -> pd.DataFrame:
    """The rows of one ``col`` value (an outcome, a time point) that a model pools.

    ``wanted`` None: the usable rows (empty ``excluded_reason``) must hold at most one value, else a
    one-line error lists them; with ``narrow`` the table is then narrowed to that value, otherwise it is
    returned whole (the network kind keeps rows the Selection log reports). A ``time_months`` value is
    compared as a number (6 and 6.0 and "6" are one time point). A wanted value the table lacks is an
    error naming what the table has.
    """
    if col not in df:
        return df
    if wanted is None:
        vals = df.loc[df["excluded_reason"] == "", col].dropna().unique()
        if len(vals) > 1:
            raise SpecError(f"the {table} holds {len(vals)} {what}s ({', '.join(map(str, sorted(vals)))}); "
                            f"{pools}: pass {col.replace('_months', '')}=...")
        if len(vals) == 0 or not narrow:
            return df
        wanted = vals[0]
    values = pd.to_numeric(df[col], errors="coerce") if col == "time_months" else df[col]
    if col == "time_months":
        wanted = float(wanted)
    present = set(values.dropna())
    if wanted not in present:
        raise SpecError(f"{what} {wanted!r} is not in the {table}; it has {sorted(present)}")
    return df[values == wanted]


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


def prior_variable(prior, name: str, dims=None, as_data: bool = True):
    """Create the PyMC variable ``name`` with ``prior`` (a :class:`bayes_koa.spec.Prior`) in the current model.

    With ``as_data`` (the default) each parameter is a ``pm.Data`` scalar named
    ``prior__<name>__<param>`` so it can be changed without rebuilding or recompiling.
    """
    import pymc as pm
    import pytensor.tensor as pt

    if as_data:
        values = {k: pm.Data(dn, np.asarray(v, dtype="float64")) for (k, v), dn in
                  zip(prior.params, prior.data_names(name).values())}
    else:
        values = dict(prior.params)
    if prior.dist == "LogStudentT":
        log_x = pm.StudentT(f"log_{name}", nu=values["nu"], mu=values["mu"], sigma=values["sigma"], dims=dims)
        return pm.Deterministic(name, pt.exp(log_x), dims=dims)
    return getattr(pm, prior.dist)(name, **values, dims=dims)
