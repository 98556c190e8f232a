"""The univariate kinds: ``fixed``, ``random`` and ``hierarchical`` (normal likelihood, known SEs).

- :func:`prepare` chooses the rows a model can use (one outcome at one time, finite ``yi`` and
  ``vi``, the moderators and levels it needs) and returns a :class:`Design` plus a table of every
  row left out with its reason. Nothing is dropped silently.
- :func:`build` writes the model; :func:`add_predictions` adds draws for a new trial.

Dims: ``trial`` (one entry per comparison row; a multi-arm trial contributes one per MSC arm),
``source``, ``origin``. Effects keep their sign: negative = benefit of MSC (ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from .build import ORIGIN_ORDER, SOURCE_ORDER, Selection, missing, normal_level, ordered
from .spec import MODERATORS, ModelSpec, SpecError

__all__ = ["Design", "check_structure", "parameters", "prepare", "build", "add_predictions"]


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

    def data(self) -> dict[str, np.ndarray]:
        """Values of the model's observation containers (``pm.Data``)."""
        vals: dict[str, np.ndarray] = {"y": self.y, "se": self.se}
        if self.source_idx is not None:
            vals["source_idx"] = self.source_idx
        if self.origin_idx is not None:
            vals["origin_idx"] = self.origin_idx
        for m, x in self.X.items():
            vals[f"X_{m}"] = x
        return vals

    def cell_counts(self) -> pd.DataFrame:
        """Trials per source x origin cell (0 = the cell is prior-only)."""
        ct = pd.crosstab(pd.Categorical(np.asarray(self.source)[self.source_idx], self.source),
                         pd.Categorical(np.asarray(self.origin)[self.origin_idx], self.origin),
                         dropna=False)
        ct.index.name, ct.columns.name = "source", "origin"
        return ct


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
    """Rows of one outcome at one time that a fixed/random/hierarchical model can use."""
    df = effects.copy()
    if "yi" not in df:
        raise SpecError("the effect table needs a 'yi' column (and 'vi' or 'sei')")
    if "trial_id" not in df:
        raise SpecError("the effect table needs a 'trial_id' column")
    if "vi" not in df:
        if "sei" not in df:
            raise SpecError("the effect table needs 'vi' (sampling variance) or 'sei' (standard error)")
        df["vi"] = df["sei"].astype(float) ** 2
    df["excluded_reason"] = df["excluded_reason"].fillna("").astype(str) if "excluded_reason" in df else ""
    df = _pick(df, "outcome", outcome, "outcome")
    df = _pick(df, "time_months", time, "time point")
    # rows of this outcome and time that the effect-size step already ruled out start the log
    sel = Selection(df)
    y = pd.to_numeric(sel.rows["yi"], errors="coerce")
    v = pd.to_numeric(sel.rows["vi"], errors="coerce")
    sel.drop(~np.isfinite(y) | ~np.isfinite(v), "yi or vi not finite")
    sel.drop(pd.to_numeric(sel.rows["vi"], errors="coerce") <= 0, "vi must be > 0")
    for level, col, what in (("source", "cell_source", "cell source"),
                             ("origin", "origin", "origin (autologous/allogeneic)")):
        if level in spec.levels:
            if col not in sel.rows:
                raise SpecError(f"model {spec.name} needs a {col!r} column")
            sel.drop(missing(sel.rows[col]), f"{what} not reported (needed by {spec.name})")
    for m in spec.moderators:
        col = MODERATORS[m][0]
        if col not in sel.rows:
            raise SpecError(f"model {spec.name} needs a {col!r} column for moderator {m}")
        sel.drop(pd.to_numeric(sel.rows[col], errors="coerce").isna(), f"{col} not reported (needed by moderator {m})")
    if sel.rows.empty:
        raise SpecError(f"no usable rows for model {spec.name}: {sel.reasons()}")
    rows = sel.rows.reset_index(drop=True)
    design = Design(trial=_labels(rows), y=rows["yi"].to_numpy(float),
                    se=np.sqrt(rows["vi"].to_numpy(float)), rows=rows)
    if "source" in spec.levels:
        design.source = ordered(rows["cell_source"].astype(str), SOURCE_ORDER)
        design.source_idx = np.array([design.source.index(s) for s in rows["cell_source"].astype(str)])
    if "origin" in spec.levels:
        design.origin = ordered(rows["origin"].astype(str), ORIGIN_ORDER)
        design.origin_idx = np.array([design.origin.index(s) for s in rows["origin"].astype(str)])
    for m in spec.moderators:
        x = pd.to_numeric(rows[MODERATORS[m][0]], errors="coerce").to_numpy(float)
        design.X[m] = np.log10(x / 4e7) if m == "log_dose" else x - 1.0
    return design, sel.excluded()


def check_structure(kind: str, st: dict, path) -> dict:
    """Validate the ``[structure]`` table of a fixed / random / hierarchical model."""
    levels = tuple(st.get("levels", []))
    if kind != "hierarchical" and levels:
        raise SpecError(f"{path}: levels are only for kind = 'hierarchical'")
    if levels not in ((), ("source",), ("source", "origin")):
        raise SpecError(f"{path}: levels must be [], ['source'] or ['source', 'origin'], got {list(levels)}")
    if kind == "hierarchical" and not levels:
        raise SpecError(f"{path}: a hierarchical model needs levels = ['source'] or ['source', 'origin']")
    bsd = st.get("between_trial_sd", "shared")
    if bsd not in ("shared", "per_source") or (bsd == "per_source" and "source" not in levels):
        raise SpecError(f"{path}: between_trial_sd must be 'shared' or 'per_source' (the latter needs the source level)")
    param = st.get("parameterization", "noncentered")
    if param not in ("noncentered", "centered", "mixed"):
        raise SpecError(f"{path}: parameterization must be 'noncentered', 'centered' or 'mixed' "
                        "(mixed: source/origin means centred, trial effects non-centred)")
    mods = tuple(st.get("moderators", []))
    bad = [m for m in mods if m not in MODERATORS]
    if bad:
        raise SpecError(f"{path}: unknown moderator(s) {bad}; known: {sorted(MODERATORS)}")
    unknown = set(st) - {"kind", "levels", "between_trial_sd", "parameterization", "moderators"}
    if unknown:
        raise SpecError(f"{path}: unknown structure key(s) {sorted(unknown)} for kind {kind!r}")
    return {"levels": levels, "between_trial_sd": bsd, "parameterization": param, "moderators": mods}


def parameters(kind: str, structure: dict) -> list[str]:
    """Parameters of a fixed / random / hierarchical model, in the order priors are shown."""
    levels, moderators = structure.get("levels", ()), structure.get("moderators", ())
    params = ["mu"]
    if kind in ("random", "hierarchical"):
        params.append("tau")
    if kind == "hierarchical":
        if "source" in levels:
            params.append("sigma_source")
        if "origin" in levels:
            params.append("sigma_origin")
    params += [f"beta_{m}" for m in moderators]
    return params


def build(spec: ModelSpec, design: Design):
    """The fixed / random / hierarchical model (normal likelihood with known standard errors)."""
    import pymc as pm
    import pytensor.tensor as pt

    pr = spec.prior_dict
    # "mixed": group means centred (many trials per source inform them), trial effects non-centred
    nc = spec.parameterization == "noncentered"
    nc_trial = spec.parameterization in ("noncentered", "mixed")
    with pm.Model(coords=design.coords) as model:
        y = pm.Data("y", design.y, dims="trial")
        se = pm.Data("se", design.se, dims="trial")
        mu = pr["mu"].create("mu")
        loc = mu
        if spec.kind == "hierarchical":
            s_idx = pm.Data("source_idx", design.source_idx, dims="trial")
            source_mean = normal_level("source_mean", mu, pr["sigma_source"].create("sigma_source"), "source",
                                       nc, "z_source")
            loc = source_mean[s_idx]
            if "origin" in spec.levels:
                o_idx = pm.Data("origin_idx", design.origin_idx, dims="trial")
                cell_mean = normal_level("cell_mean", source_mean[:, None], pr["sigma_origin"].create("sigma_origin"),
                                         ("source", "origin"), nc, "z_cell")
                loc = cell_mean[s_idx, o_idx]
        for m in spec.moderators:
            x = pm.Data(f"X_{m}", design.X[m], dims="trial")
            loc = loc + pr[f"beta_{m}"].create(f"beta_{m}") * x
        if spec.kind == "fixed":
            theta = pm.Deterministic("theta", loc * pt.ones_like(y), dims="trial")  # one effect, per trial
        else:
            if spec.between_trial_sd == "per_source":
                tau = pr["tau"].create("tau", dims="source")[s_idx]
            else:
                tau = pr["tau"].create("tau")
            theta = normal_level("theta", loc, tau, "trial", nc_trial, "z")
        pm.Normal("y_obs", mu=theta, sigma=se, observed=y, dims="trial")
    return model


def add_predictions(dt: xr.DataTree, spec: ModelSpec, seed: int) -> None:
    """Add the effect of a new trial to the posterior (drawn with a seeded generator).

    ``theta_new``: a new trial (from a new source in hierarchical models); ``theta_new_source``:
    a new trial of each source (hierarchical models).
    """
    if spec.kind == "fixed":
        return
    post = dt["posterior"].to_dataset()
    rng = np.random.default_rng([seed, 7])
    shape = (post.sizes["chain"], post.sizes["draw"])

    def noise(*extra):
        return rng.standard_normal(shape + extra)

    tau = post["tau"]
    if spec.kind == "random":
        new = post["mu"] + tau * noise()
        post["theta_new"] = new
    else:
        # per-source tau: a trial of a new source gets the average of the sources' between-trial SDs
        # (a stated simplification; drawing a new source's tau would need a hyperprior on the taus)
        tau_overall = tau.mean("source") if "source" in tau.dims else tau
        new = post["mu"] + post["sigma_source"] * noise() + tau_overall * noise()
        post["theta_new"] = new
        ns = post.sizes["source"]
        post["theta_new_source"] = post["source_mean"] + tau * xr.DataArray(noise(ns), dims=("chain", "draw", "source"))
    dt["posterior"] = xr.DataTree(post)
