"""ModelSpec + effect table -> ``pm.Model`` with named dims. The only PyMC-building code.

Two steps:

- :func:`prepare` chooses the rows a model can use (one outcome at one time, finite ``yi`` and
  ``vi``, the moderators and levels it needs) and returns a :class:`Design` plus a table of every
  row left out with its reason. Nothing is dropped silently.
- :func:`build_model` writes the model. Observed values, standard errors, indices and every prior
  parameter are ``pm.Data`` containers, so one compiled model serves many fits of the same shape
  (prior sweeps, simulation studies).

Dims: ``trial`` (one entry per comparison row; a multi-arm trial contributes one per MSC arm),
``source``, ``origin``. Effects keep their sign: negative = benefit of MSC (ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .spec import MODERATORS, ModelSpec, SpecError

__all__ = ["Design", "prepare", "build_model", "SOURCE_ORDER", "ORIGIN_ORDER", "data_values"]

SOURCE_ORDER = ("BM", "UC", "AD", "placenta", "BMAC", "other")
ORIGIN_ORDER = ("autologous", "allogeneic")


@dataclass
class Design:
    """Arrays the model is built from, with their labels."""

    trial: list[str]
    y: np.ndarray
    se: np.ndarray
    source: list[str] = field(default_factory=list)
    origin: list[str] = field(default_factory=list)
    source_idx: np.ndarray | None = None
    origin_idx: np.ndarray | None = None
    X: dict[str, np.ndarray] = field(default_factory=dict)
    rows: pd.DataFrame | None = None  # the effect-table rows used, in model order

    @property
    def coords(self) -> dict[str, list[str]]:
        c = {"trial": self.trial}
        if self.source:
            c["source"] = self.source
        if self.origin:
            c["origin"] = self.origin
        return c

    def shape_key(self) -> tuple:
        return tuple((k, len(v)) for k, v in self.coords.items()) + (tuple(sorted(self.X)),)

    def cell_counts(self) -> pd.DataFrame:
        """Trials per source x origin cell (0 = the cell is prior-only)."""
        ct = pd.crosstab(pd.Categorical(np.asarray(self.source)[self.source_idx], self.source),
                         pd.Categorical(np.asarray(self.origin)[self.origin_idx], self.origin),
                         dropna=False)
        ct.index.name, ct.columns.name = "source", "origin"
        return ct


def _ordered(values, order) -> list[str]:
    vals = list(dict.fromkeys(values))
    return [v for v in order if v in vals] + sorted(v for v in vals if v not in order)


def _labels(rows: pd.DataFrame) -> list[str]:
    ids = rows["trial_id"].astype(str)
    if "comparison" in rows and ids.duplicated(keep=False).any():
        dup = ids.duplicated(keep=False)
        ids = ids.where(~dup, ids + " (" + rows["comparison"].astype(str) + ")")
    if ids.duplicated().any():
        d = ids[ids.duplicated()].tolist()
        raise SpecError(f"trial {d[0]!r} has more than one row for this outcome and time; "
                        "give each comparison its own 'comparison' label")
    return ids.tolist()


def _pick(df: pd.DataFrame, col: str, wanted, what: str) -> pd.DataFrame:
    """Keep the rows of one outcome (or time); with ``wanted`` None the usable rows must agree."""
    if col not in df:
        return df
    if wanted is None:
        vals = df.loc[df["excluded_reason"] == "", col].dropna().unique()
        if len(vals) > 1:
            raise SpecError(f"the effect table holds {len(vals)} {what}s ({', '.join(map(str, sorted(vals)))}); "
                            f"this model pools one: pass {col.replace('_months', '')}=...")
        if len(vals) == 0:
            return df
        wanted = vals[0]
    elif wanted not in set(df[col]):
        raise SpecError(f"{what} {wanted!r} is not in the effect table; it has {sorted(set(df[col].dropna()))}")
    return df[df[col] == wanted]


def prepare(spec: ModelSpec, effects: pd.DataFrame, outcome: str | None = None,
            time: float | None = None) -> tuple[Design, pd.DataFrame]:
    """Pick the rows ``spec`` can use; return the design and the rows left out with reasons."""
    df = effects.copy()
    if "yi" not in df:
        raise SpecError("the effect table needs a 'yi' column (and 'vi' or 'sei')")
    if "trial_id" not in df:
        raise SpecError("the effect table needs a 'trial_id' column")
    if "vi" not in df:
        if "sei" not in df:
            raise SpecError("the effect table needs 'vi' (sampling variance) or 'sei' (standard error)")
        df["vi"] = df["sei"].astype(float) ** 2
    if "excluded_reason" not in df:
        df["excluded_reason"] = ""
    df["excluded_reason"] = df["excluded_reason"].fillna("").astype(str)
    df = _pick(df, "outcome", outcome, "outcome")
    df = _pick(df, "time_months", time, "time point")
    # rows of this outcome and time that the effect-size step already ruled out
    out = [df[df["excluded_reason"] != ""]]
    df = df[df["excluded_reason"] == ""].copy()

    def drop(mask: pd.Series, reason: str):
        nonlocal df
        if mask.any():
            gone = df[mask].copy()
            gone["excluded_reason"] = reason
            out.append(gone)
            df = df[~mask]

    y = pd.to_numeric(df["yi"], errors="coerce")
    v = pd.to_numeric(df["vi"], errors="coerce")
    drop(~np.isfinite(y) | ~np.isfinite(v), "yi or vi not finite")
    drop(pd.to_numeric(df["vi"], errors="coerce") <= 0, "vi must be > 0")
    if "source" in spec.levels:
        if "cell_source" not in df:
            raise SpecError(f"model {spec.name} needs a 'cell_source' column")
        drop(df["cell_source"].isna() | (df["cell_source"].astype(str) == ""),
             f"cell source not reported (needed by {spec.name})")
    if "origin" in spec.levels:
        if "origin" not in df:
            raise SpecError(f"model {spec.name} needs an 'origin' column")
        drop(df["origin"].isna() | (df["origin"].astype(str) == ""),
             f"origin (autologous/allogeneic) not reported (needed by {spec.name})")
    for m in spec.moderators:
        col = MODERATORS[m][0]
        if col not in df:
            raise SpecError(f"model {spec.name} needs a {col!r} column for moderator {m}")
        drop(pd.to_numeric(df[col], errors="coerce").isna(), f"{col} not reported (needed by moderator {m})")
    if df.empty:
        raise SpecError(f"no usable rows for model {spec.name}: "
                        + "; ".join(sorted(set(pd.concat(out)["excluded_reason"]))) if out else "empty table")
    rows = df.reset_index(drop=True)
    design = Design(trial=_labels(rows), y=rows["yi"].to_numpy(float),
                    se=np.sqrt(rows["vi"].to_numpy(float)), rows=rows)
    if "source" in spec.levels:
        design.source = _ordered(rows["cell_source"].astype(str), SOURCE_ORDER)
        design.source_idx = np.array([design.source.index(s) for s in rows["cell_source"].astype(str)])
    if "origin" in spec.levels:
        design.origin = _ordered(rows["origin"].astype(str), ORIGIN_ORDER)
        design.origin_idx = np.array([design.origin.index(s) for s in rows["origin"].astype(str)])
    for m in spec.moderators:
        x = pd.to_numeric(rows[MODERATORS[m][0]], errors="coerce").to_numpy(float)
        design.X[m] = np.log10(x / 4e7) if m == "log_dose" else x - 1.0
    excluded = pd.concat(out, ignore_index=True) if out else effects.iloc[0:0]
    return design, excluded


def data_values(spec: ModelSpec, design: Design) -> dict[str, np.ndarray]:
    """Values of every ``pm.Data`` container of the model: observations and prior parameters."""
    vals: dict[str, np.ndarray] = {"y": design.y, "se": design.se}
    if design.source_idx is not None:
        vals["source_idx"] = design.source_idx
    if design.origin_idx is not None:
        vals["origin_idx"] = design.origin_idx
    for m, x in design.X.items():
        vals[f"X_{m}"] = x
    for name, prior in spec.priors:
        for (_, value), dn in zip(prior.params, prior.data_names(name).values()):
            vals[dn] = np.asarray(value, dtype="float64")
    return vals


def build_model(spec: ModelSpec, design: Design):
    """Write the PyMC model for ``spec`` on ``design``. Returns a ``pm.Model``; samples nothing."""
    import pymc as pm

    pr = spec.prior_dict
    # "mixed": group means centred (many trials per source inform them), trial effects non-centred
    nc = spec.parameterization == "noncentered"
    nc_trial = spec.parameterization in ("noncentered", "mixed")
    with pm.Model(coords=design.coords) as model:
        y = pm.Data("y", design.y, dims="trial")
        se = pm.Data("se", design.se, dims="trial")
        mu = pr["mu"].create("mu")
        if spec.kind == "fixed":
            loc = mu
        elif spec.kind == "random":
            loc = mu
        else:
            s_idx = pm.Data("source_idx", design.source_idx, dims="trial")
            sigma_source = pr["sigma_source"].create("sigma_source")
            if nc:
                z_s = pm.Normal("z_source", 0.0, 1.0, dims="source")
                source_mean = pm.Deterministic("source_mean", mu + sigma_source * z_s, dims="source")
            else:
                source_mean = pm.Normal("source_mean", mu, sigma_source, dims="source")
            if "origin" in spec.levels:
                o_idx = pm.Data("origin_idx", design.origin_idx, dims="trial")
                sigma_origin = pr["sigma_origin"].create("sigma_origin")
                if nc:
                    z_c = pm.Normal("z_cell", 0.0, 1.0, dims=("source", "origin"))
                    cell_mean = pm.Deterministic("cell_mean", source_mean[:, None] + sigma_origin * z_c,
                                                 dims=("source", "origin"))
                else:
                    cell_mean = pm.Normal("cell_mean", source_mean[:, None], sigma_origin,
                                          dims=("source", "origin"))
                loc = cell_mean[s_idx, o_idx]
            else:
                loc = source_mean[s_idx]
        for m in spec.moderators:
            x = pm.Data(f"X_{m}", design.X[m], dims="trial")
            loc = loc + pr[f"beta_{m}"].create(f"beta_{m}") * x
        if spec.kind == "fixed":
            theta = pm.Deterministic("theta", loc + 0.0 * y, dims="trial")
        else:
            if spec.between_trial_sd == "per_source":
                tau_s = pr["tau"].create("tau", dims="source")
                tau = tau_s[s_idx]
            else:
                tau = pr["tau"].create("tau")
            if nc_trial:
                z = pm.Normal("z", 0.0, 1.0, dims="trial")
                theta = pm.Deterministic("theta", loc + tau * z, dims="trial")
            else:
                theta = pm.Normal("theta", loc, tau, dims="trial")
        pm.Normal("y_obs", mu=theta, sigma=se, observed=y, dims="trial")
    return model
