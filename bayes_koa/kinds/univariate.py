"""The univariate kinds: ``fixed``, ``random`` and ``hierarchical`` (normal likelihood, known SEs).

- :func:`prepare` chooses the rows a model can use (one outcome at one time, finite ``yi`` and
  ``vi``, the moderators and levels it needs) and returns a :class:`Design` plus a table of every
  row left out with its reason. Nothing is dropped silently.
- :func:`build` writes the model; :func:`add_predictions` adds draws for a new trial.

Parameterisations (``structure.parameterization``): ``noncentered`` (theta_i = loc_i + tau z_i), ``centered``,
``mixed`` (group means centred), and ``marginal`` (the ``random_effects`` default): theta_i integrated out of the
likelihood, ``y_i ~ Normal(loc_i, sqrt(tau^2 + se_i^2))``, so only mu, tau (group levels, moderators) are
sampled; theta_i is then drawn from its exact conditional normal given the sampled draws and y_i
(:meth:`UnivariateKind.generated_quantities`), so ``posterior["theta"]`` has the same dims as in the other
parameterisations. The ``log_likelihood`` group of a marginal fit is the marginal density of y_i (what
PSIS-LOO uses by default for every normal random-effects fit); the conditional form is computed from theta.
Likelihood power-scaling (``power_scaling``) therefore scales the marginal likelihood of such a fit.

Dims: ``trial`` (one entry per comparison row; a multi-arm trial contributes one per MSC arm),
``source``, ``origin``. Effects keep their sign: negative = benefit of MSC (ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..spec.files import SpecError
from ..spec.model_spec import ModelSpec
from .base import GROUP_COLUMN, LOG_LIKELIHOOD_ATTR, Kind, Option, Roles, group_dim, register
from .common import prior_variable, ORIGIN_ORDER, SOURCE_ORDER, Selection, missing, normal_level, ordered, pick_rows

__all__ = ["Design", "UnivariateKind", "DEFAULT_PRIORS", "MODERATORS", "moderator_columns"]

# Package defaults, per effect measure, in that measure's units. SMD: weakly informative on the
# standardised scale (|SMD| > 2 is rare in KOA trials; tau ~ 0.5 is "large" heterogeneity). MD: VAS
# in mm on 0-100 (the published pooled VAS MDs are -13 to -19 mm; pooled_targets.csv); 1 SMD is about
# 20 mm (arm-level VAS SDs of LamoEspinosa_2020 in the bundled outcomes.csv), and the MD defaults are
# the SMD defaults x 20 mm widened about 2.5-fold: vaguer, as package defaults should be. logOR/logRR:
# odds ratios between 1/50 and 50 a priori; tau 1 is very large heterogeneity on the log-odds scale.
DEFAULT_PRIORS: dict[str, dict[str, str]] = {
    "SMD": {"mu": "Normal(mu=0, sigma=1)", "tau": "HalfNormal(sigma=0.5)", "sigma_source": "HalfNormal(sigma=0.5)",
            "sigma_origin": "HalfNormal(sigma=0.25)", "beta": "Normal(mu=0, sigma=0.5)"},
    "MD": {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=25)", "sigma_source": "HalfNormal(sigma=25)",
           "sigma_origin": "HalfNormal(sigma=10)", "beta": "Normal(mu=0, sigma=25)"},
    "logOR": {"alpha": "Normal(mu=0, sigma=2)", "mu": "Normal(mu=0, sigma=2)", "tau": "HalfNormal(sigma=1)",
              "sigma_source": "HalfNormal(sigma=1)", "sigma_origin": "HalfNormal(sigma=0.5)",
              "beta": "Normal(mu=0, sigma=1)"},
}
DEFAULT_PRIORS["logRR"] = DEFAULT_PRIORS["logOR"]

# Named meta-regression terms: name -> (effect-table column, transform, meaning). Any other moderator
# is a column name: numeric columns enter as they are, text columns as indicators against their first
# level (natural order).
MODERATORS: dict[str, tuple[str, str, str]] = {
    "log_dose": ("cells_per_injection", "log10(x / 4e7)",
                 "per 10-fold more cells per injection, relative to 4x10^7 cells"),
    "n_injections": ("n_injections", "x - 1", "per extra injection, relative to one injection"),
}


def moderator_columns(moderators) -> dict[str, str]:
    """moderator name -> the table column it reads."""
    return {m: MODERATORS[m][0] if m in MODERATORS else m for m in moderators}


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
    gdim: str = "source"  # the grouping dim's name (``source`` for cell_source)
    X_levels: dict[str, list[str]] = field(default_factory=dict)  # categorical moderators: levels vs reference

    @property
    def coords(self) -> dict[str, list[str]]:
        c = {"trial": self.trial}
        if self.source:
            c[self.gdim] = self.source
        if self.origin:
            c["origin"] = self.origin
        for m, levels in self.X_levels.items():
            c[f"{m}_level"] = levels
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


def _prepare(spec: ModelSpec, effects: pd.DataFrame, outcome: str | None = None,
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
        df["vi"] = pd.to_numeric(df["sei"], errors="coerce") ** 2
    df["excluded_reason"] = df["excluded_reason"].fillna("").astype(str) if "excluded_reason" in df else ""
    df = pick_rows(df, "outcome", outcome, "outcome")
    df = pick_rows(df, "time_months", time, "time point")
    if "multiarm" in df and "cov_group" in df:
        keep = df["excluded_reason"] == ""
        shared = df.loc[keep & df["multiarm"].astype(str).str.startswith("keep"), "cov_group"].fillna("").astype(str)
        shared = shared[shared != ""]
        if shared.duplicated().any():
            g = shared[shared.duplicated()].iloc[0]
            raise SpecError(f"comparisons of cov_group {g!r} share an arm with its full n "
                            "(effect_sizes(..., multiarm='keep')): a univariate model would count that arm "
                            "twice; use multiarm='split' (the default) or the network kind, which models "
                            "the shared arm")
    # rows of this outcome and time that the effect-size step already ruled out start the log
    sel = Selection(df)
    y = pd.to_numeric(sel.rows["yi"], errors="coerce")
    v = pd.to_numeric(sel.rows["vi"], errors="coerce")
    sel.drop(~np.isfinite(y) | ~np.isfinite(v), "yi or vi not finite")
    sel.drop(pd.to_numeric(sel.rows["vi"], errors="coerce") <= 0, "vi must be > 0")
    levels, gcol = spec.get("levels", ()), spec.get("group", GROUP_COLUMN)
    for level, col, what in (("source", gcol, "group" if gcol != GROUP_COLUMN else "cell source"),
                             ("origin", "origin", "origin (autologous/allogeneic)")):
        if level in levels:
            if col not in sel.rows:
                raise SpecError(f"model {spec.name} needs a {col!r} column" +
                                (" (pass group='<column>' to fit on another grouping column)" if level == "source" else ""))
            sel.drop(missing(sel.rows[col]), f"{what} not reported (needed by {spec.name})")
    mods = moderator_columns(spec.get("moderators", ()))
    for m, col in mods.items():
        if col not in sel.rows:
            raise SpecError(f"model {spec.name} needs a {col!r} column for moderator {m}")
        if m in MODERATORS or pd.api.types.is_numeric_dtype(sel.rows[col]):
            sel.drop(pd.to_numeric(sel.rows[col], errors="coerce").isna(), f"{col} not reported (needed by moderator {m})")
        else:
            sel.drop(missing(sel.rows[col]), f"{col} not reported (needed by moderator {m})")
    if sel.rows.empty:
        raise SpecError(f"no usable rows for model {spec.name}: {sel.reasons()}")
    rows = sel.rows.reset_index(drop=True)
    design = Design(trial=_labels(rows), y=rows["yi"].to_numpy(float),
                    se=np.sqrt(rows["vi"].to_numpy(float)), rows=rows, gdim=group_dim(gcol))
    if "source" in levels:
        labels = rows[gcol].astype(str)
        design.source = ordered(labels, SOURCE_ORDER if gcol == GROUP_COLUMN else ())
        design.source_idx = np.array([design.source.index(s) for s in labels])
    if "origin" in levels:
        design.origin = ordered(rows["origin"].astype(str), ORIGIN_ORDER)
        design.origin_idx = np.array([design.origin.index(s) for s in rows["origin"].astype(str)])
    for m, col in mods.items():
        if m in MODERATORS or pd.api.types.is_numeric_dtype(rows[col]):
            x = pd.to_numeric(rows[col], errors="coerce").to_numpy(float)
            design.X[m] = np.log10(x / 4e7) if m == "log_dose" else (x - 1.0 if m == "n_injections" else x)
        else:
            labels = rows[col].astype(str)
            levs = ordered(labels)
            if len(levs) < 2:
                raise SpecError(f"moderator {m!r} has one level ({levs[0]!r}) in the rows used: nothing to compare")
            design.X_levels[m] = levs[1:]
            design.X[m] = np.stack([(labels == lv).to_numpy(float) for lv in levs[1:]], axis=1)
    return design, sel.excluded()


_LEVELS = ((), ("source",), ("source", "origin"))

# random effects, parameterization = "marginal" (only mu and tau sampled; no funnel): measured in
# benchmarks/sampler_settings.md (section "marginal random effects").
_MARGINAL_RANDOM_SETTINGS = {"draws": 1000, "tune": 1000, "target_accept": 0.9}


class UnivariateKind(Kind):
    """``fixed``, ``random`` and ``hierarchical``: normal likelihood with known standard errors."""

    likelihood = "y_obs"
    loo_dim = "trial"
    default_priors = DEFAULT_PRIORS
    structure_schema = {
        "levels": Option((), tuple, "grouping levels: [], ['source'] or ['source', 'origin']",
                         choices=("source", "origin")),
        "group": Option(GROUP_COLUMN, str, "the table column whose values are the groups of the 'source' level"),
        "between_trial_sd": Option("shared", str, "one tau, or one per group", choices=("shared", "per_source")),
        "parameterization": Option("noncentered", str, "mixed: group means centred, trial effects non-centred; "
                                   "marginal: trial effects integrated out of the likelihood (drawn after "
                                   "sampling from their exact conditional), group means non-centred",
                                   choices=("noncentered", "centered", "mixed", "marginal")),
        "moderators": Option((), tuple, "named terms (log_dose, n_injections) or column names"),
    }

    def __init__(self, name: str, description: str):
        self.name = name
        self.description = description

    def check_structure(self, structure: dict, where: str) -> dict:
        st = super().check_structure(structure, where)
        levels = st["levels"]
        if self.name != "hierarchical" and levels:
            raise SpecError(f"{where}: levels are only for kind = 'hierarchical'")
        if levels not in _LEVELS:
            raise SpecError(f"{where}: levels must be [], ['source'] or ['source', 'origin'], got {list(levels)}")
        if self.name == "hierarchical" and not levels:
            raise SpecError(f"{where}: a hierarchical model needs levels = ['source'] or ['source', 'origin']")
        if st["between_trial_sd"] == "per_source" and "source" not in levels:
            raise SpecError(f"{where}: between_trial_sd = 'per_source' needs the source level")
        return st

    def parameters(self, structure: dict) -> list[str]:
        levels = structure.get("levels", ())
        params = ["mu"]
        if self.name in ("random", "hierarchical"):
            params.append("tau")
        if "source" in levels:
            params.append("sigma_source")
        if "origin" in levels:
            params.append("sigma_origin")
        return params + [f"beta_{m}" for m in structure.get("moderators", ())]

    def prepare(self, spec, table, *, outcome=None, time=None, **ignored):
        return _prepare(spec, table, outcome=outcome, time=time)

    def normal_likelihood(self, spec) -> bool:
        return True

    def roles(self, spec) -> Roles:
        levels = spec.get("levels", ())
        g = group_dim(spec.get("group", GROUP_COLUMN))
        return Roles(
            overall="mu", trial="theta",
            group="source_mean" if "source" in levels else None, group_dim=g if "source" in levels else None,
            cell="cell_mean" if "origin" in levels else None, cell_dims=(g, "origin") if "origin" in levels else (),
            prediction="theta_new" if self.name != "fixed" else None,
            group_prediction="theta_new_source" if "source" in levels else None,
            heterogeneity=("tau",) if self.name != "fixed" else (),
            between_group=tuple(v for v, lv in (("sigma_source", "source"), ("sigma_origin", "origin")) if lv in levels),
        )

    def summary_vars(self, spec) -> dict[str, str]:
        r = self.roles(spec)
        g = "group" if spec.get("group", GROUP_COLUMN) != GROUP_COLUMN else "source"
        out = {"mu": "overall mean effect"}
        out.update({"sigma_source": f"between-{g} SD", "sigma_origin": f"between-origin SD (within {g})"})
        out.update({f"beta_{m}": MODERATORS[m][2] if m in MODERATORS else f"moderator {m}"
                    for m in spec.get("moderators", ())})
        out.update({"tau": "between-trial SD", "source_mean": f"{g} mean", "cell_mean": f"{g} x origin mean",
                    "theta_new": "new trial (prediction)" + (f", new {g}" if r.group else ""),
                    "theta_new_source": f"new trial of this {g} (prediction)", "theta": "trial effect (shrunken)"})
        return {k: v for k, v in out.items() if k in self.parameters(spec.struct) or k in r.effect_vars() or k == "theta"}

    def group_counts(self, dt, spec) -> dict[str, dict[tuple, int]]:
        cd = dt["constant_data"] if "constant_data" in dt.children else None
        r = self.roles(spec)
        if cd is None or r.group is None or "source_idx" not in cd:
            return {}
        post = dt["posterior"]
        labels = [str(x) for x in post[r.group_dim].values]
        s_idx = np.asarray(cd["source_idx"].values).astype(int)
        counts = {(s,): int((s_idx == i).sum()) for i, s in enumerate(labels)}
        out = {r.group: counts, r.group_prediction: counts}
        if spec.get("between_trial_sd") == "per_source":
            out["tau"] = counts
        if r.cell and "origin_idx" in cd:
            o_idx = np.asarray(cd["origin_idx"].values).astype(int)
            origins = [str(x) for x in post["origin"].values]
            out[r.cell] = {(s, o): int(((s_idx == i) & (o_idx == j)).sum())
                           for i, s in enumerate(labels) for j, o in enumerate(origins)}
        return out

    def build(self, spec, design: Design):
        return _build(self.name, spec, design)

    def add_predictions(self, dt, spec, seed: int) -> None:
        _add_predictions(self.name, dt, spec, seed)

    def generated_quantities(self, dt, spec, design, seed: int) -> None:
        """``parameterization = "marginal"``: the trial effects theta, drawn from their exact conditional.

        The marginal model samples only mu, tau (and the group levels, moderators) with the likelihood
        ``y_i ~ Normal(loc_i, sqrt(tau_i^2 + se_i^2))``, theta_i integrated out. Given a draw of them,
        ``theta_i | loc_i, tau_i, y_i ~ Normal(loc_i + w_i (y_i - loc_i), w_i se_i^2)`` with
        ``w_i = tau_i^2 / (tau_i^2 + se_i^2)`` (BDA3 eq. 5.17, normal prior x normal likelihood); one
        draw per posterior draw makes exact joint draws of (parameters, theta), one vectorised NumPy pass
        (seeded: stream ``[seed, 11]``). The ``log_likelihood`` group of such a fit is the marginal one
        (the density of y_i given the parameters, theta_i integrated out), which is also what PSIS-LOO
        uses by default for every normal random-effects fit (``analysis.checks``, integrated LOO).
        """
        if self.name != "fixed" and spec.get("parameterization") == "marginal":
            _draw_trial_effects(self.name, dt, spec, seed)
            # generic marker (kinds/base.py LOG_LIKELIHOOD_ATTR): the log_likelihood group is the
            # integrated density, so LOO-PIT pairs it with the mixed replicate (plots/arviz.py)
            dt.attrs[LOG_LIKELIHOOD_ATTR] = "integrated"

    def sampler_defaults(self, spec) -> dict:
        """Measured in benchmarks/sampler_settings.md (SIMULATED data, 4 chains, 5 seeds, ESS/s and divergences).

        random (non-centred): 0.9 with 1000 + 1000 gave the best bulk ESS/s (1.9x the 0.99/2000 setting),
        no divergence in any seed and worst-seed bulk ESS 801; fixed has no between-trial SD (no funnel)
        and takes the same. hierarchical (one source level, shared tau, non-centred): every target below
        0.99 diverged in some seed or left the worst seed under ESS 400, so it keeps 0.99 with 2000 + 2000.
        Structures nobody measured (centred, per-source tau, origin level) keep the package defaults.
        """
        param = spec.get("parameterization", "noncentered")
        if param == "marginal" and self.name in ("fixed", "random"):
            return dict(_MARGINAL_RANDOM_SETTINGS)
        if param != "noncentered":
            return {}
        if self.name in ("fixed", "random"):
            return {"draws": 1000, "tune": 1000, "target_accept": 0.9}
        if spec.get("levels") == ("source",) and spec.get("between_trial_sd") == "shared":
            return {"draws": 2000, "tune": 2000, "target_accept": 0.99}
        return {}

    def trial_location(self, dt, spec):
        return _trial_location(self.name, dt, spec)


def _build(kind: str, spec: ModelSpec, design: Design):
    """The fixed / random / hierarchical model (normal likelihood with known standard errors)."""
    import pymc as pm
    import pytensor.tensor as pt

    pr = spec.prior_dict
    param = spec.get("parameterization", "noncentered")
    # "mixed": group means centred (many trials per source inform them), trial effects non-centred
    nc = param in ("noncentered", "marginal")
    nc_trial = param in ("noncentered", "mixed")
    marginal = param == "marginal" and kind != "fixed"
    g = design.gdim
    with pm.Model(coords=design.coords) as model:
        y = pm.Data("y", design.y, dims="trial")
        se = pm.Data("se", design.se, dims="trial")
        mu = prior_variable(pr["mu"], "mu")
        loc = mu
        if design.source_idx is not None:
            s_idx = pm.Data("source_idx", design.source_idx, dims="trial")
            source_mean = normal_level("source_mean", mu, prior_variable(pr["sigma_source"], "sigma_source"), g,
                                       nc, "z_source")
            loc = source_mean[s_idx]
            if design.origin_idx is not None:
                o_idx = pm.Data("origin_idx", design.origin_idx, dims="trial")
                cell_mean = normal_level("cell_mean", source_mean[:, None], prior_variable(pr["sigma_origin"], "sigma_origin"),
                                         (g, "origin"), nc, "z_cell")
                loc = cell_mean[s_idx, o_idx]
        for m in spec.get("moderators", ()):
            if m in design.X_levels:
                x = pm.Data(f"X_{m}", design.X[m], dims=("trial", f"{m}_level"))
                loc = loc + pt.dot(x, prior_variable(pr[f"beta_{m}"], f"beta_{m}", dims=f"{m}_level"))
            else:
                x = pm.Data(f"X_{m}", design.X[m], dims="trial")
                loc = loc + prior_variable(pr[f"beta_{m}"], f"beta_{m}") * x
        if kind == "fixed":
            theta = pm.Deterministic("theta", loc * pt.ones_like(y), dims="trial")  # one effect, per trial
        else:
            if spec.get("between_trial_sd") == "per_source":
                tau = prior_variable(pr["tau"], "tau", dims=g)[s_idx]
            else:
                tau = prior_variable(pr["tau"], "tau")
            if marginal:  # theta_i integrated out: drawn after sampling (generated_quantities)
                pm.Normal("y_obs", mu=loc, sigma=pt.sqrt(tau**2 + se**2), observed=y, dims="trial")
                return model
            theta = normal_level("theta", loc, tau, "trial", nc_trial, "z")
        pm.Normal("y_obs", mu=theta, sigma=se, observed=y, dims="trial")
    return model


def _add_predictions(kind: str, dt: xr.DataTree, spec: ModelSpec, seed: int) -> None:
    """Add the effect of a new trial to the posterior (drawn with a seeded generator).

    ``theta_new``: a new trial (of a new group in hierarchical models: every level's SD enters, the
    origin level too); ``theta_new_source``: a new trial of each group (of a new origin cell within it
    when the model has the origin level).
    """
    if kind == "fixed":
        return
    post = dt["posterior"].to_dataset()
    rng = np.random.default_rng([seed, 7])
    shape = (post.sizes["chain"], post.sizes["draw"])

    def noise(*extra):
        return rng.standard_normal(shape + extra)

    tau = post["tau"]
    if kind == "random":
        post["theta_new"] = post["mu"] + tau * noise()
    else:
        g = group_dim(spec.get("group", GROUP_COLUMN))
        # per-source tau: a trial of a new group gets the average of the groups' between-trial SDs
        # (a stated simplification; drawing a new group's tau would need a hyperprior on the taus)
        tau_overall = tau.mean(g) if g in tau.dims else tau
        origin_sd = post["sigma_origin"] if "sigma_origin" in post else 0.0
        new = post["mu"] + post["sigma_source"] * noise() + origin_sd * noise() + tau_overall * noise()
        post["theta_new"] = new
        ns = post.sizes[g]
        dims = ("chain", "draw", g)
        post["theta_new_source"] = (post["source_mean"] + origin_sd * xr.DataArray(noise(ns), dims=dims)
                                    + tau * xr.DataArray(noise(ns), dims=dims))
    dt["posterior"] = xr.DataTree(post)


def _trial_location(kind: str, dt, spec):
    """Draws of (loc_i, tau_i), dims (chain, draw, trial), with theta_i ~ Normal(loc_i, tau_i).

    None for the fixed-effect kind (theta_i = loc_i: nothing to integrate). Checked against
    theta = loc + tau z when the trial effects are non-centred.
    """
    if kind == "fixed":
        return None
    sdims = ("chain", "draw")
    post = dt["posterior"].to_dataset()
    loc, tau = _location_parts(kind, dt, spec)
    zero = xr.DataArray(np.zeros((post.sizes["chain"], post.sizes["draw"], post.sizes["trial"])),
                        dims=(*sdims, "trial"), coords={"trial": post["trial"].values})  # every draw x trial
    loc, tau = (loc + zero).transpose(*sdims, "trial"), (tau + zero).transpose(*sdims, "trial")
    if "z" in post and spec.get("parameterization") in ("noncentered", "mixed"):
        rebuilt = loc + tau * post["z"].transpose(*sdims, "trial")
        err = float(np.max(np.abs(rebuilt.values - post["theta"].transpose(*sdims, "trial").values)))
        scale = 1.0 + float(np.max(np.abs(post["theta"].values)))
        if not err <= 1e-8 * scale:  # theta is a Deterministic of the same float64 values
            raise RuntimeError(f"model {spec.name}: the trial means rebuilt from the posterior do not "
                               f"reproduce theta (max error {err:.3g}); use integrated=False")
    return loc, tau


def _location_parts(kind: str, dt, spec):
    """(loc_i, tau_i) as DataArrays over (chain, draw) and, where they vary by trial, ``trial`` (not broadcast)."""
    post = dt["posterior"].to_dataset()
    cd = dt["constant_data"].to_dataset() if "constant_data" in dt.children else None
    trial = post["trial"]
    g = group_dim(spec.get("group", GROUP_COLUMN))

    def by_trial(values):
        return xr.DataArray(np.asarray(values), dims="trial", coords={"trial": trial.values})

    def idx(name: str) -> xr.DataArray:
        if cd is None or name not in cd:
            raise ValueError(f"model {spec.name}: constant_data/{name} is missing; cannot rebuild "
                             "the trial means (use integrated=False)")
        return by_trial(cd[name].values.astype(int))

    levels = spec.get("levels", ())
    if kind == "random":
        loc = post["mu"]
    elif "origin" in levels:
        loc = post["cell_mean"].isel({g: idx("source_idx"), "origin": idx("origin_idx")})
    else:
        loc = post["source_mean"].isel({g: idx("source_idx")})
    for m in spec.get("moderators", ()):
        beta, x = post[f"beta_{m}"], cd[f"X_{m}"]
        if x.ndim == 2:
            term = (beta * xr.DataArray(np.asarray(x.values), dims=("trial", f"{m}_level"),
                                        coords={"trial": trial.values})).sum(f"{m}_level")
        else:
            term = beta * by_trial(x.values)
        loc = loc + term
    tau = post["tau"]
    if g in tau.dims:
        tau = tau.isel({g: idx("source_idx")})
    drop = [c for c in (g, "origin") if c in loc.coords or c in tau.coords]
    loc = loc.drop_vars([c for c in drop if c in loc.coords])
    tau = tau.drop_vars([c for c in drop if c in tau.coords])
    loc = loc.assign_coords(trial=trial.values) if "trial" in loc.dims else loc
    tau = tau.assign_coords(trial=trial.values) if "trial" in tau.dims else tau
    return loc, tau


def _draw_trial_effects(kind: str, dt, spec, seed: int) -> None:
    """theta_i from Normal(loc_i + w_i (y_i - loc_i), w_i se_i^2), w_i = tau_i^2 / (tau_i^2 + se_i^2), per draw."""
    post = dt["posterior"].to_dataset()
    cd, obs = dt["constant_data"], dt["observed_data"]
    trial = obs["trial"].values
    post = post.assign_coords(trial=trial)  # the marginal model has no sampled variable over trials
    dt["posterior"] = xr.DataTree(post)
    loc, tau = _location_parts(kind, dt, spec)
    sdims = ("chain", "draw")
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]

    def full(da):  # (chain, draw, 1 or trial) float64 array, no copy of a broadcast
        extra = [d for d in da.dims if d not in (*sdims, "trial")]
        if extra:
            raise ValueError(f"model {spec.name}: trial location has unexpected dims {extra}")
        da = da.transpose(*sdims, *[d for d in ("trial",) if d in da.dims])
        a = np.asarray(da.values, dtype=float)
        return a if "trial" in da.dims else a[..., None]

    y = np.asarray(obs["y_obs"].values, dtype=float)
    se2 = np.asarray(cd["se"].values, dtype=float) ** 2
    m, t2 = full(loc), full(tau) ** 2
    w = t2 / (t2 + se2)  # in [0, 1); 0 at tau = 0 (theta_i = loc_i exactly)
    rng = np.random.default_rng([int(seed), 11])
    theta = rng.standard_normal((n_chain, n_draw, len(trial)))
    theta *= np.sqrt(w * se2)
    theta += m + w * (y - m)
    post["theta"] = xr.DataArray(theta, dims=(*sdims, "trial"), coords={"trial": trial})
    post["theta"].attrs["bayes_koa_role"] = "conditional draw"
    dt["posterior"] = xr.DataTree(post)


register(UnivariateKind("fixed", "one common effect"))
register(UnivariateKind("random", "normal-normal random effects"))
register(UnivariateKind("hierarchical", "trials within groups (and origin cells), groups from an overall distribution"))
