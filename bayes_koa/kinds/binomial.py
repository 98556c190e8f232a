"""The ``binomial`` kind: adverse events in an arm-based binomial model with trial baselines.

Smith, Spiegelhalter & Thomas (1995), Stat Med 14:2685-2699: every arm's events enter the
likelihood as binomial counts, so an arm with zero events needs **no continuity correction**
(the 0.5 that :func:`bayes_koa.effect_sizes` adds to ``yi``/``vi`` of a zero-cell table is never
used here: the model reads the raw counts ``events_msc``, ``n_msc``, ``events_control``,
``n_control`` of the effect table)::

    events[control arm of trial i] ~ Binomial(n, expit(alpha_i))
    events[MSC arm j of trial i]   ~ Binomial(n, expit(alpha_i + theta_j))
    alpha_i ~ prior "alpha"                   (trial baseline log odds; independent across trials)
    theta_j ~ Normal(source_mean[s(j)], tau)  (log odds ratio of MSC arm j vs its trial's control)
    source_mean[s] ~ Normal(mu, sigma_source) (levels = ["source"]; with levels = [] theta_j ~ Normal(mu, tau))

``theta`` and ``mu`` are log odds ratios MSC - control: **positive = more adverse events with
MSC** (harm); negative = fewer (benefit), as everywhere in the package. Deterministics:
``odds_ratio = exp(mu)`` and ``source_odds_ratio = exp(source_mean)``.

**Baselines** are independent across trials (the "fixed trial effects" of Smith et al.; the
contrast-based choice of Dias et al. 2013, NICE DSU TSD 2): the log odds ratios are then
informed by within-trial comparisons only, and a model for how baseline risks vary between
trials cannot bias them. Their prior (``alpha``, in the model file) only has to keep a
zero-event arm's baseline finite.

**Arms, each once.** The effect table has one row per comparison (MSC arm x control arm); the
model rebuilds the trial's arms from them and counts each arm once:

- an arm named in several rows with the *same* counts (``multiarm="keep"``, or a user table)
  is used once; different counts for one arm are an error naming the trial, arm and column;
- an arm split among its comparisons (``multiarm="split"``, the default of ``effect_sizes``;
  the row's ``multiarm`` text starts with "split") is put together again by summing its pieces:
  the events exactly (``effect_sizes`` apportions them in whole numbers), the n up to what the
  split's rounding down dropped (e.g. a control of 17 shared by 2 comparisons gives 8 + 8 = 16).
  Use ``effect_sizes(..., multiarm="keep")`` for the exact arm counts;
- all control arms of a trial share the trial's baseline ``alpha_i`` (the same likelihood as
  pooling them into one control group, Cochrane Handbook 23.3.4); each MSC arm has its own
  ``theta_j`` against it.

Dims: ``trial`` (baselines), ``comparison`` (one ``theta`` per MSC arm, labelled by the trial id,
or ``trial (msc_arm)`` when a trial has several MSC arms), ``arm`` (the observations,
``trial (arm)``), ``source``. The likelihood is one variable ``y_obs`` over ``arm`` (LOO leaves
out one arm).

Rows: one outcome (``outcome=``); by default each trial's last reported time (adverse events are
counted cumulatively to the end of follow-up, and trials differ in follow-up), or one time
(``time=``). Every row not used is listed with its reason.

**Double-zero tables** (no events in either arm) carry no information on a log odds ratio by
themselves, so :func:`bayes_koa.effect_sizes` excludes them. Their arms do carry information in
this model (the MSC arm of a multi-arm trial whose control has no events; an upper bound on both
risks), so ``double_zero = "include"`` (default) uses them; ``"exclude"`` keeps them out, as a
contrast-based analysis would. In a two-arm double-zero trial with independent baselines, what
the rows say about the odds ratio depends on the ``alpha`` prior (Kuss 2015, Stat Med 34:1097):
compare both settings when such trials matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from .common import prior_variable, SOURCE_ORDER, Selection, missing, normal_level, ordered
from ..data import DataValidationError
from ..spec.files import SpecError
from ..spec.model_spec import ModelSpec
from .base import Kind, Roles, register

__all__ = ["Design", "check_structure", "parameters", "prepare", "build", "add_predictions",
           "arms_from_effects", "p_or_above", "COUNT_COLUMNS"]

# the reason bayes_koa.effect_sizes gives a table with no events in either arm
_DOUBLE_ZERO = r"no events in either arm \(double-zero table: no information on \w+; not corrected\)"

COUNT_COLUMNS = ("events_msc", "n_msc", "events_control", "n_control")
"""Effect-table columns the binomial model reads (raw counts; ``yi``/``vi`` are not used)."""


@dataclass
class Design:
    """Arm-level arrays the binomial model is built from, with their labels."""

    trial: list[str]
    comparison: list[str]
    arm: list[str]
    events: np.ndarray  # per arm
    n: np.ndarray  # per arm
    trial_idx: np.ndarray  # arm -> trial
    comparison_idx: np.ndarray  # arm -> 0 for a control arm, 1 + comparison index for an MSC arm
    source: list[str] = field(default_factory=list)
    source_idx: np.ndarray | None = None  # comparison -> source
    arms: pd.DataFrame | None = None  # the arm table (see arms_from_effects)
    rows: pd.DataFrame | None = None  # the effect-table rows used

    @property
    def coords(self) -> dict[str, list[str]]:
        c = {"trial": self.trial, "comparison": self.comparison, "arm": self.arm}
        if self.source:
            c["source"] = self.source
        return c

    def shape_key(self) -> tuple:
        return tuple((k, len(v)) for k, v in self.coords.items())

    def data(self) -> dict[str, np.ndarray]:
        """Values of the model's observation containers (``pm.Data``)."""
        vals = {"events": self.events, "n_arm": self.n, "trial_idx": self.trial_idx,
                "comparison_idx": self.comparison_idx}
        if self.source_idx is not None:
            vals["source_idx"] = self.source_idx
        return vals


# -- structure ----------------------------------------------------------------------------------


def check_structure(st: dict, path) -> dict:
    """Validate the ``[structure]`` table of a binomial model."""
    levels = tuple(st.get("levels", []))
    if levels not in ((), ("source",)):
        raise SpecError(f"{path}: levels of a binomial model must be [] or ['source'], got {list(levels)}")
    bsd = st.get("between_trial_sd", "shared")
    if bsd not in ("shared", "per_source") or (bsd == "per_source" and "source" not in levels):
        raise SpecError(f"{path}: between_trial_sd must be 'shared' or 'per_source' (the latter needs "
                        "levels = ['source'])")
    param = st.get("parameterization", "noncentered")
    if param not in ("noncentered", "centered"):
        raise SpecError(f"{path}: parameterization of a binomial model must be 'noncentered' or 'centered'")
    if st.get("moderators"):
        raise SpecError(f"{path}: the binomial model takes no moderators (got {list(st['moderators'])})")
    double_zero = st.get("double_zero", "include")
    if double_zero not in ("include", "exclude"):
        raise SpecError(f"{path}: double_zero must be 'include' or 'exclude', got {double_zero!r}")
    unknown = set(st) - {"kind", "levels", "between_trial_sd", "parameterization", "moderators", "double_zero"}
    if unknown:
        raise SpecError(f"{path}: unknown structure key(s) {sorted(unknown)} for kind {kind!r}")
    return {"levels": levels, "between_trial_sd": bsd, "parameterization": param, "double_zero": double_zero}


def parameters(structure: dict) -> list[str]:
    """Parameters needing a prior: ``mu``, ``tau``, ``sigma_source`` (source level), ``alpha``."""
    params = ["mu", "tau"]
    if "source" in structure.get("levels", ()):
        params.append("sigma_source")
    return params + ["alpha"]


# -- rows -> arms -------------------------------------------------------------------------------


def _pick_outcome(df: pd.DataFrame, outcome: str | None) -> pd.DataFrame:
    if "outcome" not in df:
        return df
    if outcome is None:
        vals = df.loc[df["excluded_reason"] == "", "outcome"].dropna().unique()
        if len(vals) > 1:
            raise SpecError(f"the effect table holds {len(vals)} outcomes ({', '.join(map(str, sorted(vals)))}); "
                            "the binomial model pools one: pass outcome=...")
        return df if len(vals) == 0 else df[df["outcome"] == vals[0]]
    if outcome not in set(df["outcome"].dropna()):
        raise SpecError(f"outcome {outcome!r} is not in the effect table; it has {sorted(set(df['outcome'].dropna()))}")
    return df[df["outcome"] == outcome]


def _whole(df: pd.DataFrame, col: str, role: str) -> pd.Series:
    """A count column as float; non-numbers, fractions and negatives are errors naming the row."""
    x = pd.to_numeric(df[col], errors="coerce").astype(float)
    arm_col = "msc_arm" if role == "msc" else "control_arm"
    bad = df[col].notna() & (x.isna() | (x < 0) | (x != np.floor(x)))
    if bad.any():
        r = df[bad].iloc[0]
        raise DataValidationError(f"trial {r['trial_id']}, arm {r[arm_col]}, column {col}: "
                                  f"{r[col]} is not a whole number >= 0")
    return x


def arms_from_effects(rows: pd.DataFrame) -> pd.DataFrame:
    """The arms behind usable effect-table rows of one outcome: one row per arm, each arm once.

    ``rows`` need ``trial_id``, ``msc_arm``, ``control_arm`` and :data:`COUNT_COLUMNS`
    (``cell_source`` and ``multiarm`` when present). Returns ``trial_id``, ``arm_id``, ``role``
    (msc/control), ``events``, ``n``, ``cell_source`` (MSC arms), ``rows`` (effect rows naming
    the arm) and ``how`` (empty, "same counts in k rows, used once" or "k split pieces summed").
    See the module docstring for the rules; raises :class:`DataValidationError` naming the trial,
    the arm and the column when one arm has different counts in different rows, or more events
    than patients.
    """
    split = rows["multiarm"].fillna("").astype(str).str.startswith("split") if "multiarm" in rows \
        else pd.Series(False, index=rows.index)
    parts = []
    for role, arm_col, ev, n in (("control", "control_arm", "events_control", "n_control"),
                                 ("msc", "msc_arm", "events_msc", "n_msc")):
        parts.append(pd.DataFrame({
            "trial_id": rows["trial_id"].astype(str).to_numpy(), "arm_id": rows[arm_col].astype(str).to_numpy(),
            "role": role, "events": rows[ev].to_numpy(float), "n": rows[n].to_numpy(float),
            "cell_source": (rows["cell_source"].astype(str).to_numpy() if "cell_source" in rows and role == "msc"
                            else ""),
            "split": split.to_numpy(), "ev_col": ev, "n_col": n, "order": np.arange(len(rows)),
        }))
    long = pd.concat(parts, ignore_index=True)
    out = []
    for (trial, arm), g in long.groupby(["trial_id", "arm_id"], sort=False):
        where = f"trial {trial}, arm {arm}"
        if g["role"].nunique() > 1:
            raise DataValidationError(f"{where}, columns msc_arm/control_arm: the arm is named both as an "
                                      "MSC arm and as a control arm")
        if g["cell_source"].nunique() > 1:
            raise DataValidationError(f"{where}, column cell_source: rows disagree "
                                      f"({', '.join(sorted(g['cell_source'].unique()))})")
        k = len(g)
        if k > 1 and g["split"].all():
            events, n, how = g["events"].sum(), g["n"].sum(), f"{k} split pieces summed"
        elif k > 1 and g["split"].any():
            raise DataValidationError(f"{where}, column multiarm: some rows split the arm and others do not")
        else:
            for col, c in (("events", g["ev_col"].iloc[0]), ("n", g["n_col"].iloc[0])):
                if g[col].nunique() > 1:
                    raise DataValidationError(
                        f"{where}, column {c}: the arm has different counts in different rows "
                        f"({', '.join(f'{v:g}' for v in g[col])}); an arm must carry the same counts in "
                        "every comparison (effect_sizes(..., multiarm='keep')) or be split pieces "
                        "(multiarm='split')")
            events, n = g["events"].iloc[0], g["n"].iloc[0]
            how = f"same counts in {k} rows, used once" if k > 1 else ""
        if not n >= 1:
            raise DataValidationError(f"{where}, column {g['n_col'].iloc[0]}: n must be >= 1, got {n:g}")
        if events > n:
            raise DataValidationError(f"{where}, column {g['ev_col'].iloc[0]}: events ({events:g}) > n ({n:g})")
        out.append({"trial_id": trial, "arm_id": arm, "role": g["role"].iloc[0], "events": int(events),
                    "n": int(n), "cell_source": g["cell_source"].iloc[0], "rows": k, "how": how,
                    "order": g["order"].min()})
    arms = pd.DataFrame(out)
    # model order: trials as they first appear; in each, control arms then MSC arms
    first = arms.groupby("trial_id", sort=False)["order"].transform("min")
    arms = arms.assign(_t=first, _r=(arms["role"] == "msc").astype(int)).sort_values(
        ["_t", "_r", "order"], kind="stable").drop(columns=["_t", "_r", "order"])
    return arms.reset_index(drop=True)


def prepare(spec: ModelSpec, effects: pd.DataFrame, outcome: str | None = None,
            time: float | None = None) -> tuple[Design, pd.DataFrame]:
    """Rows of one outcome the binomial model can use, as arms; and every row left out, with its reason."""
    if spec.measure != "logOR":
        raise SpecError(f"model {spec.name} estimates log odds ratios from event counts: fit it with "
                        f"measure='logOR' (got {spec.measure!r})")
    df = effects.copy()
    absent = [c for c in ("trial_id",) + COUNT_COLUMNS if c not in df]
    if absent:
        raise SpecError(f"model {spec.name} reads arm counts: the effect table lacks {', '.join(absent)} "
                        "(bayes_koa.effect_sizes(..., measure='logOR') writes them)")
    if "excluded_reason" not in df:
        df["excluded_reason"] = ""
    df["excluded_reason"] = df["excluded_reason"].fillna("").astype(str)
    df = _pick_outcome(df, outcome)
    if time is not None and "time_months" in df:
        if float(time) not in set(pd.to_numeric(df["time_months"], errors="coerce")):
            raise SpecError(f"time point {time!r} is not in the effect table; it has "
                            f"{sorted(set(df['time_months'].dropna()))}")
        df = df[pd.to_numeric(df["time_months"], errors="coerce") == float(time)]
    if spec.struct.get("double_zero", "include") == "include":
        # a double-zero table has no information on a log odds ratio by itself, so effect_sizes
        # excludes it; the arm-based model uses its arms (each arm's binomial likelihood)
        rest = df["excluded_reason"].str.replace(_DOUBLE_ZERO, "", regex=True).str.strip("; ")
        rescued = (df["excluded_reason"] != "") & (rest == "")
        df.loc[rescued, "excluded_reason"] = ""
    sel = Selection(df)
    df = sel.rows

    for col in ("msc_arm", "control_arm"):
        if col not in df:
            df[col] = ""
        df[col] = df[col].fillna("").astype(str)
    several = df["trial_id"].duplicated(keep=False)
    unnamed = (df["msc_arm"] == "") | (df["control_arm"] == "")
    if (several & unnamed).any():
        t = df.loc[several & unnamed, "trial_id"].iloc[0]
        raise SpecError(f"trial {t} has several rows for this outcome: give msc_arm and control_arm so "
                        "that an arm shared by comparisons is counted once")
    df.loc[df["msc_arm"] == "", "msc_arm"] = "msc"
    df.loc[df["control_arm"] == "", "control_arm"] = "control"

    counts = {}
    for col in COUNT_COLUMNS:
        counts[col] = _whole(df, col, "msc" if col.endswith("msc") else "control")
    sel.drop(pd.concat(counts, axis=1).isna().any(axis=1),
             "events or n missing (the binomial model needs events_msc, n_msc, events_control, n_control)")
    df = sel.rows
    for col in COUNT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    if time is None and "time_months" in df:
        t = pd.to_numeric(df["time_months"], errors="coerce")
        sel.drop(t < t.groupby(df["trial_id"]).transform("max"),
                 "earlier time point: the binomial model uses each trial's last reported time "
                 "(events counted to the end of follow-up); pass time=... to choose one")
        df = sel.rows
    if "source" in spec.get("levels", ()):
        if "cell_source" not in df:
            raise SpecError(f"model {spec.name} needs a 'cell_source' column")
        sel.drop(missing(df["cell_source"]), f"cell source not reported (needed by {spec.name})")
        df = sel.rows
    if df.empty:
        raise SpecError(f"no usable rows for model {spec.name}: {sel.reasons()}")

    rows = df.reset_index(drop=True)
    arms = arms_from_effects(rows)
    trials = list(dict.fromkeys(arms["trial_id"]))
    msc = arms[arms["role"] == "msc"]
    n_msc = msc.groupby("trial_id")["arm_id"].transform("size")
    comparison = [t if k == 1 else f"{t} ({a})" for t, a, k in zip(msc["trial_id"], msc["arm_id"], n_msc)]
    comp_of = {(t, a): i + 1 for i, (t, a) in enumerate(zip(msc["trial_id"], msc["arm_id"]))}
    design = Design(
        trial=trials, comparison=comparison,
        arm=[f"{t} ({a})" for t, a in zip(arms["trial_id"], arms["arm_id"])],
        events=arms["events"].to_numpy(np.int64), n=arms["n"].to_numpy(np.int64),
        trial_idx=np.array([trials.index(t) for t in arms["trial_id"]], dtype=np.int64),
        comparison_idx=np.array([comp_of.get((t, a), 0) for t, a in zip(arms["trial_id"], arms["arm_id"])],
                                dtype=np.int64),
        arms=arms, rows=rows,
    )
    if "source" in spec.get("levels", ()):
        design.source = ordered(msc["cell_source"], SOURCE_ORDER)
        design.source_idx = np.array([design.source.index(s) for s in msc["cell_source"]], dtype=np.int64)
    excluded = sel.excluded()
    return design, excluded


# -- model --------------------------------------------------------------------------------------


def build(spec: ModelSpec, design: Design):
    """The arm-based binomial model (see the module docstring)."""
    import pymc as pm
    import pytensor.tensor as pt

    pr = spec.prior_dict
    nc = spec.get("parameterization") == "noncentered"
    with pm.Model(coords=design.coords) as model:
        events = pm.Data("events", design.events, dims="arm")
        n = pm.Data("n_arm", design.n, dims="arm")
        t_idx = pm.Data("trial_idx", design.trial_idx, dims="arm")
        c_idx = pm.Data("comparison_idx", design.comparison_idx, dims="arm")
        mu = prior_variable(pr["mu"], "mu")
        pm.Deterministic("odds_ratio", pt.exp(mu))
        if "source" in spec.get("levels", ()):
            s_idx = pm.Data("source_idx", design.source_idx, dims="comparison")
            source_mean = normal_level("source_mean", mu, prior_variable(pr["sigma_source"], "sigma_source"), "source",
                                       nc, "z_source")
            pm.Deterministic("source_odds_ratio", pt.exp(source_mean), dims="source")
            loc = source_mean[s_idx]
        else:
            loc = mu * pt.ones(len(design.comparison))
        if spec.get("between_trial_sd") == "per_source":
            tau = prior_variable(pr["tau"], "tau", dims="source")[s_idx]
        else:
            tau = prior_variable(pr["tau"], "tau")
        theta = normal_level("theta", loc, tau, "comparison", nc, "z")
        alpha = prior_variable(pr["alpha"], "alpha", dims="trial")
        # control arms take 0, MSC arm j takes theta[j]
        theta_arm = pt.concatenate([pt.zeros(1), theta])[c_idx]
        pm.Binomial("y_obs", n=n, logit_p=alpha[t_idx] + theta_arm, observed=events, dims="arm")
    return model


def add_predictions(dt: xr.DataTree, spec: ModelSpec, seed: int) -> None:
    """Add the log odds ratio of a new trial to the posterior (seeded generator).

    ``theta_new``: a new trial (of a new source when the model has the source level);
    ``theta_new_source``: a new trial of each source (source level only).
    """
    post = dt["posterior"].to_dataset()
    rng = np.random.default_rng([seed, 7])
    shape = (post.sizes["chain"], post.sizes["draw"])
    tau = post["tau"]
    # per-source tau: a new source gets the average of the sources' between-trial SDs (stated simplification)
    tau_overall = tau.mean("source") if "source" in tau.dims else tau
    if "source" in spec.get("levels", ()):
        post["theta_new"] = (post["mu"] + post["sigma_source"] * rng.standard_normal(shape)
                             + tau_overall * rng.standard_normal(shape))
        noise = xr.DataArray(rng.standard_normal(shape + (post.sizes["source"],)),
                             dims=("chain", "draw", "source"))
        post["theta_new_source"] = post["source_mean"] + tau * noise
    else:
        post["theta_new"] = post["mu"] + tau_overall * rng.standard_normal(shape)
    dt["posterior"] = xr.DataTree(post)


# -- results ------------------------------------------------------------------------------------


def p_or_above(result, threshold: float = 1.0) -> pd.DataFrame:
    """Posterior probability that the odds ratio of an adverse event exceeds ``threshold``.

    ``result``: a :class:`~bayes_koa.result.MetaAnalysis` of a binomial model (or its DataTree).
    ``threshold``: an odds ratio > 0; 1 (default) asks "more adverse events with MSC than with
    control?", 1.5 asks "odds of an adverse event more than 50% higher?".
    One row for the overall odds ratio ``exp(mu)`` and one per source ``exp(source_mean)``:
    ``level`` ("overall" or the source), ``threshold``, ``p`` = P(OR > threshold), ``mcse``
    (Monte Carlo SE, ``sqrt(p (1 - p) / ESS)`` with the ESS of the indicator; 0 when every draw
    falls on one side, i.e. p is beyond the resolution of the draws), ``ess`` and ``draws``.
    """
    from ..util.draws import mcse_mean

    threshold = float(threshold)
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be an odds ratio > 0, got {threshold!r}")
    dt = getattr(result, "dt", result)
    post = dt["posterior"]
    if "mu" not in post.data_vars:
        raise ValueError("the result has no 'mu': p_or_above needs a fitted binomial model")
    cut = np.log(threshold)
    items = [("overall", "odds_ratio", post["mu"])]
    if "source_mean" in post.data_vars:
        sm = post["source_mean"]
        items += [(str(s), f"source_odds_ratio[{s}]", sm.sel(source=s, drop=True)) for s in sm["source"].values]
    rows = []
    for level, name, d in items:
        event = (d > cut).astype(float)
        p, se = float(event.mean()), float(mcse_mean(event, ("chain", "draw")))
        rows.append({"parameter": name, "level": level, "threshold": threshold, "p": p, "mcse": se,
                     "ess": p * (1 - p) / se**2 if se > 0 else float(event.size), "draws": int(event.size)})
    table = pd.DataFrame(rows).set_index("parameter")
    table.attrs["simulated"] = bool(int(dt.attrs.get("bayes_koa_simulated", 0)))
    return table


class BinomialKind(Kind):
    """Arm-level events, trial baselines, log odds ratios (see the module docstring)."""

    name = "binomial"
    description = "arm-based binomial model with trial baselines (adverse events)"
    loo_dim = "trial"
    likelihood = "y_obs"
    labels = {
        "mu": "overall log odds ratio",
        "odds_ratio": "overall odds ratio (exp mu)",
        "tau": "between-trial SD (log odds ratio)",
        "sigma_source": "between-source SD (log odds ratio)",
        "source_mean": "source mean log odds ratio",
        "source_odds_ratio": "source odds ratio (exp source mean)",
        "theta_new": "new trial log odds ratio (prediction)",
        "theta_new_source": "new trial of this source, log odds ratio (prediction)",
    }
    default_priors = {m: {"alpha": "Normal(mu=0, sigma=2)", "mu": "Normal(mu=0, sigma=2)", "tau": "HalfNormal(sigma=1)",
                          "sigma_source": "HalfNormal(sigma=1)"} for m in ("logOR", "default")}

    def check_structure(self, structure, where):
        st = {k: v for k, v in structure.items() if k != "kind"}
        return check_structure(st, where)

    def parameters(self, structure):
        return parameters(structure)

    def positive_parameters(self, structure):
        return tuple(p for p in parameters(structure) if p.startswith(("tau", "sigma")))

    def prepare(self, spec, table, *, outcome=None, time=None, **ignored):
        return prepare(spec, table, outcome=outcome, time=time)

    def build(self, spec, design):
        return build(spec, design)

    def sampler_defaults(self, spec) -> dict:
        """Measured on SIMULATED data (AE_any, logOR; benchmarks/bench_safety_settings.py, 5 seeds, RESULTS.md).

        The safety structure (one source level, shared tau, non-centred): 0.99 with tune 1000 and 1500 draws
        had no divergence, worst-seed max R-hat 1.008 and min bulk ESS 636 in 0.66x the time of 0.99 x
        (2000 + 2000); 0.99 x (1000 + 1000) reached R-hat 1.013 in one of 3 seeds and 0.9 diverged in every
        seed (benchmarks/multivariate_binomial_settings.txt). Other structures keep the package defaults.
        """
        if (spec.get("levels") == ("source",) and spec.get("between_trial_sd") == "shared"
                and spec.get("parameterization", "noncentered") == "noncentered"):
            return {"draws": 1500, "tune": 1000, "target_accept": 0.99}
        return {}

    def add_predictions(self, dt, spec, seed):
        add_predictions(dt, spec, seed)

    def roles(self, spec):
        src = "source" in spec.get("levels", ())
        return Roles(overall="mu", group="source_mean" if src else None, group_dim="source" if src else None,
                     prediction="theta_new", group_prediction="theta_new_source" if src else None,
                     heterogeneity=("tau",), between_group=("sigma_source",) if src else (),
                     ratio=("odds_ratio", "source_odds_ratio"))

    def summary_vars(self, spec):
        src = "source" in spec.get("levels", ())
        return {k: v for k, v in self.labels.items()
                if src or k not in ("sigma_source", "source_mean", "source_odds_ratio", "theta_new_source")}

    def group_counts(self, dt, spec):
        cd = dt["constant_data"] if "constant_data" in dt.children else None
        if cd is None or "source_idx" not in cd:
            return {}
        labels = [str(x) for x in dt["posterior"]["source"].values]
        idx = np.asarray(cd["source_idx"].values).astype(int)
        counts = {(s,): int((idx == i).sum()) for i, s in enumerate(labels)}
        return {"source_mean": counts, "theta_new_source": counts, "source_odds_ratio": counts}


register(BinomialKind())
