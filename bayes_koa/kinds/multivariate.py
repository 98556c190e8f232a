"""The ``multivariate`` kind: several outcomes over several follow-up times in one model.

Rows of the effect table are trial x comparison x outcome x time (``yi``, ``vi``; SMD scale when
outcomes are pooled; negative = benefit of MSC). A comparison contributes whichever of the modelled
outcomes and times it reports; rows of other outcomes or times are listed as left out with a reason.

Model (``c`` a comparison of trial ``i`` and source ``s``; ``o`` outcome; ``t`` time; ``r`` the
row (c, o, t))::

    y_c ~ MvNormal(theta_c, Sigma_c)                 rows of one comparison, known Sigma_c
    theta_r = overall_by_time[t]                      time course of the overall effect
            + b[s] + b_time[s, t]                     source, source x time
            + gamma[o] + d[s, o]                      outcome, source x outcome (several outcomes)
            + u[i] + v[i, t] + w[i, o]                trial, trial x time, trial x outcome

    b ~ N(0, sigma_source); b_time ~ N(0, sigma_source_time); gamma ~ N(0, sigma_outcome);
    d ~ N(0, sigma_source_outcome); u ~ N(0, tau); v ~ N(0, tau_time); w ~ N(0, tau_outcome).

**Known within-comparison sampling correlation.** The rows of one comparison come from the same
patients, so their sampling errors are correlated. ``Sigma_c = D R D`` with ``D = diag(se)`` and
the separable (Kronecker) correlation ``R[(o,t), (o',t')] = rho_o^[o != o'] * rho_t^[t != t']``:
``rho_outcome`` between two outcomes at one time, ``rho_time`` between two times of one outcome,
their product between different outcomes at different times. ``R`` is the matching principal
submatrix of ``R_outcome (x) R_time`` (two exchangeable correlation matrices), so it is positive
definite for any ``0 <= rho < 1``; ``rho = 0`` gives the independent model. The correlations are
rarely reported; the model file states them and a sensitivity analysis should vary them.

**Whitening.** ``Sigma_c`` is known (no parameters), so :func:`whiten` factorises it once in
:func:`prepare`: ``L = chol(Sigma_c)``, ``M = diag(L) L^-1`` (unit lower triangular). The model
then has independent rows ``y_white = M y ~ Normal(M theta, diag(L))``, which is exact: the sum of
the row log densities equals ``log MvNormal(y | theta, Sigma_c)`` (the quadratic form is
``|L^-1 (y - theta)|^2`` and ``log det Sigma_c = 2 sum log L_ii``). This is the brief's
``y* = L^-1 y ~ N(L^-1 theta, 1)`` with each row scaled by ``L_ii`` so that the normalising
constant is exact too. Row ``i``'s term is ``log p(y_i | earlier rows of its comparison, theta)``
(chain-rule decomposition), so the pointwise ``log_likelihood`` sums to the exact joint log
likelihood per comparison; for LOO, group it by comparison (the rows of one comparison are not
exchangeable units). The gather ``M theta`` costs (rows x block size), not rows^2. With
``rho = 0``, ``M = I`` and ``y_white = y``. The model holds the raw ``y`` and ``se`` as
``pm.Data`` (in ``constant_data``) with ``W_idx``/``W_val`` (the gather for ``M``) and
``sd_unit = diag(L) / se``, and computes ``y_white`` in the graph, so ``observed_data.y_obs`` is the
whitened ``M y`` (equal to ``y`` when both rhos are 0).

**Multi-arm trials.** The trial effects ``u, v, w`` belong to the trial, so the MSC arms of a
multi-arm trial share them (as in ``bayes_koa.simulation``); counting each comparison as a trial of
its own would overstate how many trials inform a source. Differences between the arms of one trial
(dose, injections) are not modelled. Their comparisons are separate whitening blocks, i.e. their
sampling errors are treated as independent: use the default ``effect_sizes(..., multiarm="split")``
(a shared arm's n is divided among the comparisons, Cochrane Handbook 23.3.4).

**Implied correlations of true effects within a trial** (given the source-level terms), with
``V = tau^2 + tau_time^2 + tau_outcome^2``:
two outcomes at one time ``(tau^2 + tau_time^2) / V``; one outcome at two times
``(tau^2 + tau_outcome^2) / V``; different outcome and time ``tau^2 / V``. (The same form as the
simulation's implied correlation, ``bayes_koa.simulation``.)

**Time course of the overall effect** (``time_prior``):

- ``"random_walk"`` (default): a Brownian motion in months anchored at the reference time:
  ``overall_by_time[ref] = mu`` and the change over a gap of ``g`` months is
  ``Normal(0, sigma_time * sqrt(g / 6))``, so ``sigma_time`` is the SD of the change over 6 months.
  Chosen because effects at neighbouring times are similar and the times trials report are
  irregular (3, 6, 12, maybe 9 or 24): nearer times share more strength, and ``mu`` keeps the
  meaning (and the prior) of the univariate models' overall mean at the reference time. The
  standard normal of the reference time (``z_time[ref]``) is unused (it samples its prior).
- ``"exchangeable"``: ``overall_by_time[t] ~ Normal(mu, sigma_time)``; ``mu`` is the mean over
  times. No ordering of times is assumed.

The source deviation ``b[s] + b_time[s, t]`` is mostly shared across times (a good source is good at
every time); ``sigma_source_time`` lets a source's time course differ. ``gamma[o]`` is exchangeable
over outcomes, so ``overall_by_time`` is the effect on a typical outcome of the modelled set (with
one outcome: that outcome). ``d[s, o]`` (``source_by_outcome``) lets sources differ by outcome.

Deterministics: ``overall_by_time`` (time), ``source_time_mean`` (source, time), ``source_mean``
(source; at ``reference_time``, default 6 months, so ranking and claims work unchanged),
``outcome_effect`` (outcome; overall effect on each outcome at the reference time),
``source_outcome_mean`` (source, outcome; at the reference time, with ``source_by_outcome``),
``theta`` (row; each row's true effect). Likelihood: ``y_obs`` (row). Dims: ``trial`` (one entry per
trial), ``comparison`` (one per comparison; ``source_idx`` lives on it, so summaries count
comparisons per source as the univariate kinds do), ``row`` (one per row used; labelled
"trial (comparison) | outcome | t mo"), ``block_pos`` (position in the whitening gather).

Every random effect is non-centred by default. ``parameterization = "mixed"`` centres the source
level (``source_level[s] ~ Normal(overall_by_time[ref], sigma_source)``, the source's effect at the
reference time before its source x time deviation) and keeps the rest non-centred, as the univariate
kinds' "mixed"; it samples better when every source has many rows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from .common import prior_variable, SOURCE_ORDER, Selection, ordered
from ..spec.files import SpecError
from ..spec.model_spec import ModelSpec
from .base import Kind, Roles, register

__all__ = ["MultiDesign", "check_structure", "parameters", "prepare", "build", "add_predictions",
           "within_correlation", "whiten", "p_better_by_time", "TIME_UNIT_MONTHS", "OPTION_DEFAULTS"]

TIME_UNIT_MONTHS = 6.0
"""The random walk's ``sigma_time`` is the SD of the change of the overall effect over this many months."""

OPTION_DEFAULTS = {
    "times": "all",            # "all" (every time with data) or a list of months
    "reference_time": 6.0,     # months: source_mean, outcome_effect, theta_new are at this time
    "time_prior": "random_walk",
    "rho_outcome": 0.5,        # sampling correlation between two outcomes at one time (same patients)
    "rho_time": 0.5,           # sampling correlation between two times of one outcome
    "source_by_outcome": True,  # source x outcome deviations (only with several outcomes)
}
_OPTION_KEYS = {"outcomes", *OPTION_DEFAULTS}
_GENERAL_KEYS = {"kind", "levels", "between_trial_sd", "parameterization", "moderators"}


# ------------------------------------------------------------------------------------------------
# structure
# ------------------------------------------------------------------------------------------------


def _number(v, what: str, path) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SpecError(f"{path}: {what} must be a finite number, got {v!r}")
    return float(v)


def check_structure(st: dict, path) -> dict:
    """Validate the ``[structure]`` table of a multivariate model (see the module docstring)."""
    unknown = set(st) - _GENERAL_KEYS - _OPTION_KEYS
    if unknown:
        raise SpecError(f"{path}: unknown structure key(s) {sorted(unknown)} for kind 'multivariate'; "
                        f"its keys are {sorted(_OPTION_KEYS | _GENERAL_KEYS)}")
    if tuple(st.get("levels", ["source"])) != ("source",):
        raise SpecError(f"{path}: a multivariate model has levels = ['source'] (got {st.get('levels')!r})")
    if st.get("between_trial_sd", "shared") != "shared":
        raise SpecError(f"{path}: a multivariate model has between_trial_sd = 'shared'")
    if list(st.get("moderators", [])):
        raise SpecError(f"{path}: a multivariate model takes no moderators (got {st['moderators']!r})")
    param = st.get("parameterization", "noncentered")
    if param not in ("noncentered", "mixed"):
        raise SpecError(f"{path}: parameterization must be 'noncentered' or 'mixed' (source level centred, "
                        f"everything else non-centred), got {param!r}")

    outcomes = st.get("outcomes")
    if isinstance(outcomes, str):
        outcomes = [outcomes]
    if not outcomes or not all(isinstance(o, str) and o for o in outcomes):
        raise SpecError(f"{path}: structure.outcomes must be a non-empty list of outcome names, "
                        f"e.g. ['VAS'] (got {outcomes!r})")
    if len(set(outcomes)) != len(outcomes):
        raise SpecError(f"{path}: structure.outcomes repeats a name: {outcomes}")
    opts = {**OPTION_DEFAULTS, **{k: st[k] for k in OPTION_DEFAULTS if k in st}}
    times = opts["times"]
    if times != "all":
        if not isinstance(times, (list, tuple)) or not times:
            raise SpecError(f"{path}: structure.times must be 'all' or a non-empty list of months, got {times!r}")
        times = tuple(sorted(_number(t, "each of structure.times", path) for t in times))
        if len(set(times)) != len(times) or times[0] <= 0:
            raise SpecError(f"{path}: structure.times must be distinct months > 0, got {list(times)}")
    ref = _number(opts["reference_time"], "structure.reference_time", path)
    if times != "all" and not any(math.isclose(ref, t) for t in times):
        raise SpecError(f"{path}: reference_time {ref:g} is not one of structure.times {list(times)}")
    if opts["time_prior"] not in ("random_walk", "exchangeable"):
        raise SpecError(f"{path}: time_prior must be 'random_walk' or 'exchangeable', got {opts['time_prior']!r}")
    for k in ("rho_outcome", "rho_time"):
        r = _number(opts[k], f"structure.{k}", path)
        if not 0.0 <= r < 1.0:
            raise SpecError(f"{path}: structure.{k} must be in [0, 1) (a within-comparison sampling "
                            f"correlation), got {r}")
        opts[k] = r
    if not isinstance(opts["source_by_outcome"], bool):
        raise SpecError(f"{path}: structure.source_by_outcome must be true or false")
    options = {"outcomes": tuple(outcomes), "times": times, "reference_time": ref,
               "time_prior": opts["time_prior"], "rho_outcome": opts["rho_outcome"],
               "rho_time": opts["rho_time"],
               "source_by_outcome": bool(opts["source_by_outcome"]) and len(outcomes) > 1}
    return {"levels": ("source",), "parameterization": param, **options}


def parameters(structure: dict) -> list[str]:
    """Parameters that need a prior, in the order priors are shown."""
    opts = structure
    multi = len(opts.get("outcomes", ())) > 1
    params = ["mu", "sigma_time", "sigma_source", "sigma_source_time"]
    if multi:
        params.append("sigma_outcome")
        if opts.get("source_by_outcome", True):
            params.append("sigma_source_outcome")
    params += ["tau", "tau_time"]
    if multi:
        params.append("tau_outcome")
    return params


# ------------------------------------------------------------------------------------------------
# design
# ------------------------------------------------------------------------------------------------


@dataclass
class MultiDesign:
    """Arrays the multivariate model is built from, with their labels (rows in model order)."""

    trial: list[str]          # one label per trial (trial_id)
    comparison: list[str]     # one label per comparison (trial_id, plus the comparison if the trial has several)
    source: list[str]
    outcome: list[str]
    time: list[float]
    row: list[str]
    y: np.ndarray
    se: np.ndarray
    trial_idx: np.ndarray       # row -> trial
    comparison_idx: np.ndarray  # row -> comparison (the whitening blocks)
    outcome_idx: np.ndarray
    time_idx: np.ndarray
    source_idx: np.ndarray    # per comparison (dim comparison)
    y_white: np.ndarray
    sd_white: np.ndarray
    W_idx: np.ndarray         # (row, block_pos): rows entering M theta (padding: own row, weight 0)
    W_val: np.ndarray
    reference_time: float = 6.0
    rows: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def coords(self) -> dict[str, list]:
        return {"trial": self.trial, "comparison": self.comparison, "source": self.source,
                "outcome": self.outcome, "time": self.time, "row": self.row,
                "block_pos": list(range(self.W_idx.shape[1]))}

    def shape_key(self) -> tuple:
        return tuple((k, len(v)) for k, v in self.coords.items())

    @property
    def ref_idx(self) -> int:
        return int(np.flatnonzero(np.isclose(self.time, self.reference_time))[0])

    def data(self) -> dict[str, np.ndarray]:
        """Values of the model's observation containers (``pm.Data``)."""
        vals = {"y": self.y, "se": self.se, "sd_unit": self.sd_white / self.se,
                "W_idx": self.W_idx, "W_val": self.W_val, "trial_idx": self.trial_idx,
                "comparison_idx": self.comparison_idx, "time_idx": self.time_idx,
                "source_idx": self.source_idx}
        if len(self.outcome) > 1:  # with one outcome the model has no outcome terms
            vals["outcome_idx"] = self.outcome_idx
        return vals


def within_correlation(outcome_idx, time_idx, rho_outcome: float, rho_time: float) -> np.ndarray:
    """Sampling correlation of the rows of one comparison: ``rho_o^[o != o'] * rho_t^[t != t']``."""
    o, t = np.asarray(outcome_idx), np.asarray(time_idx)
    return (np.where(o[:, None] == o[None, :], 1.0, rho_outcome)
            * np.where(t[:, None] == t[None, :], 1.0, rho_time))


def whiten(y, se, block, outcome_idx, time_idx, rho_outcome: float, rho_time: float):
    """Whiten rows with a known block covariance (one block per comparison).

    Per block: ``Sigma = diag(se) R diag(se)`` (:func:`within_correlation`), ``L = chol(Sigma)``,
    ``M = diag(L) L^-1``. Returns ``(y_white, sd_white, W_idx, W_val)`` with ``y_white = M y``,
    ``sd_white = diag(L)`` and ``(M theta)_i = sum_k W_val[i, k] * theta[W_idx[i, k]]``; the rows
    of a block must be contiguous. ``sum_i log N(y_white_i | (M theta)_i, sd_white_i)`` equals
    ``sum_blocks log MvNormal(y | theta, Sigma)`` exactly.
    """
    from scipy.linalg import solve_triangular

    y, se = np.asarray(y, float), np.asarray(se, float)
    block = np.asarray(block)
    n = len(y)
    starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
    ends = np.r_[starts[1:], n]
    if len(set(block[starts].tolist())) != len(starts):
        raise ValueError("the rows of each block (comparison) must be contiguous")
    width = int((ends - starts).max()) if n else 1
    y_white, sd_white = np.empty(n), np.empty(n)
    W_idx = np.repeat(np.arange(n)[:, None], width, axis=1)
    W_val = np.zeros((n, width))
    for a, b in zip(starts, ends):
        sl = slice(a, b)
        R = within_correlation(np.asarray(outcome_idx)[sl], np.asarray(time_idx)[sl], rho_outcome, rho_time)
        L = np.linalg.cholesky(se[sl, None] * R * se[None, sl])
        d = np.diag(L)
        M = d[:, None] * solve_triangular(L, np.eye(b - a), lower=True)
        y_white[sl], sd_white[sl] = M @ y[sl], d
        for i in range(b - a):
            # diagonal first (M_ii = 1), then the earlier rows of the block
            W_idx[a + i, : i + 1] = [a + i] + list(range(a, a + i))
            W_val[a + i, : i + 1] = [1.0] + list(M[i, :i])
    # drop trailing columns that carry no weight (all of them but the diagonal when both rhos are 0)
    used = np.flatnonzero((W_val != 0).any(axis=0))
    keep = int(used.max()) + 1 if used.size else 1
    return y_white, sd_white, W_idx[:, :keep], W_val[:, :keep]


def _opt(spec: ModelSpec) -> dict:
    return {**OPTION_DEFAULTS, **spec.struct}


def _comparison_labels(df: pd.DataFrame) -> pd.Series:
    ids = df["trial_id"].astype(str)
    if "comparison" not in df:
        return ids
    comp = df["comparison"].fillna("").astype(str)
    n_comp = comp.groupby(ids).transform("nunique")
    return ids.where(n_comp <= 1, ids + " (" + comp + ")")


def prepare(spec: ModelSpec, effects: pd.DataFrame, outcome: str | None = None,
            time: float | None = None) -> tuple[MultiDesign, pd.DataFrame]:
    """Rows of the modelled outcomes and times; returns the design and every row left out with its reason."""
    opt = _opt(spec)
    if outcome is not None or time is not None:
        raise SpecError(f"model {spec.name} models outcomes {list(opt['outcomes'])} over time together; "
                        "do not pass outcome= or time=. Choose them with the structure options, e.g. "
                        "fit(..., structure={'outcomes': ['VAS'], 'times': [3, 6, 12]})")
    outcomes = list(opt["outcomes"])
    if len(outcomes) > 1 and spec.measure not in ("SMD", "default"):
        raise SpecError(f"model {spec.name} pools {len(outcomes)} outcomes on different scales; that "
                        f"needs standardised mean differences (measure SMD), not {spec.measure}")
    df = effects.copy()
    for col in ("trial_id", "yi", "outcome", "time_months"):
        if col not in df:
            raise SpecError(f"the effect table needs a {col!r} column for model {spec.name}")
    if "vi" not in df:
        if "sei" not in df:
            raise SpecError("the effect table needs 'vi' (sampling variance) or 'sei' (standard error)")
        df["vi"] = pd.to_numeric(df["sei"], errors="coerce") ** 2
    if "cell_source" not in df:
        raise SpecError(f"model {spec.name} needs a 'cell_source' column")
    sel = Selection(df)
    # one reason per outcome (or time) left out; masks are recomputed on the rows still in use
    for o in sorted(set(sel.rows["outcome"].astype(str)) - set(outcomes)):
        sel.drop(sel.rows["outcome"].astype(str) == o,
                 f"outcome {o} is not modelled by {spec.name} (outcomes: {', '.join(outcomes)})")
    sel.drop(pd.to_numeric(sel.rows["time_months"], errors="coerce").isna(), "time_months not reported")
    if opt["times"] != "all":
        def months():
            return pd.to_numeric(sel.rows["time_months"], errors="coerce").to_numpy(float)

        modelled = np.asarray(opt["times"])
        for t in sorted(set(t for t in months() if not np.isclose(t, modelled).any())):
            sel.drop(months() == t, f"time {t:g} months is not modelled by {spec.name} "
                     f"(times: {', '.join(f'{x:g}' for x in opt['times'])})")
    y = pd.to_numeric(sel.rows["yi"], errors="coerce")
    v = pd.to_numeric(sel.rows["vi"], errors="coerce")
    sel.drop(~np.isfinite(y) | ~np.isfinite(v), "yi or vi not finite")
    sel.drop(pd.to_numeric(sel.rows["vi"], errors="coerce") <= 0, "vi must be > 0")
    src = sel.rows["cell_source"]
    sel.drop(src.isna() | (src.astype(str).str.strip() == ""), f"cell source not reported (needed by {spec.name})")
    excluded, df = sel.excluded(), sel.rows.copy()
    if df.empty:
        raise SpecError(f"no usable rows for model {spec.name}: {sel.reasons()}")
    if "cov_group" in df and (df["cov_group"].fillna("").astype(str) != "").any():
        warnings.warn(f"model {spec.name}: comparisons that share an arm (cov_group) are treated as "
                      "independent; compute effects with effect_sizes(..., multiarm='split') so no "
                      "patient is counted twice", UserWarning, stacklevel=3)

    absent = [o for o in outcomes if o not in set(df["outcome"].astype(str))]
    if absent:
        warnings.warn(f"model {spec.name}: no usable rows for outcome(s) {', '.join(absent)}; their "
                      "outcome effects are prior only", UserWarning, stacklevel=3)
    df["_label"] = _comparison_labels(df)
    df["_t"] = pd.to_numeric(df["time_months"]).astype(float)
    dup = df.duplicated(["_label", "outcome", "_t"], keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise SpecError(f"trial {r['trial_id']!r} has more than one row for outcome {r['outcome']} at "
                        f"{r['_t']:g} months (comparison {r.get('comparison', '')!r}); give each comparison "
                        "its own 'comparison' label")
    src = df.groupby("_label", sort=False)["cell_source"].agg(lambda s: sorted(set(map(str, s))))
    bad = src[src.map(len) > 1]
    if len(bad):
        raise SpecError(f"trial {bad.index[0]!r}: its rows disagree on column cell_source ({bad.iloc[0]})")

    time_grid = sorted(set(df["_t"])) if opt["times"] == "all" else [t for t in opt["times"] if (np.isclose(df["_t"], t)).any()]
    ref = float(opt["reference_time"])
    if not any(math.isclose(ref, t) for t in time_grid):
        raise SpecError(f"model {spec.name}: reference_time {ref:g} months has no data (times with data: "
                        f"{', '.join(f'{t:g}' for t in time_grid)}); set structure reference_time")
    # model order: trials as they first appear, their comparisons as they first appear, then
    # outcomes as listed, then time (the rows of a comparison are contiguous: one whitening block)
    trials = list(dict.fromkeys(df["trial_id"].astype(str)))
    df["_i"] = df["trial_id"].astype(str).map({l: i for i, l in enumerate(trials)})
    labels = list(dict.fromkeys(df.sort_values("_i", kind="stable")["_label"]))
    df["_c"] = df["_label"].map({l: i for i, l in enumerate(labels)})
    df["_o"] = df["outcome"].astype(str).map({o: i for i, o in enumerate(outcomes)})
    df["_ti"] = [int(np.flatnonzero(np.isclose(time_grid, t))[0]) for t in df["_t"]]
    df = df.sort_values(["_c", "_o", "_ti"], kind="stable")
    sources = ordered(df["cell_source"].astype(str), SOURCE_ORDER)
    comp_source = df.groupby("_c", sort=True)["cell_source"].first().astype(str)
    yv, se = df["yi"].to_numpy(float), np.sqrt(df["vi"].to_numpy(float))
    i_idx, c_idx, o_idx, t_idx = (df[k].to_numpy(int) for k in ("_i", "_c", "_o", "_ti"))
    y_w, sd_w, W_idx, W_val = whiten(yv, se, c_idx, o_idx, t_idx, opt["rho_outcome"], opt["rho_time"])
    row_labels = [f"{l} | {o} | {t:g} mo" for l, o, t in zip(df["_label"], df["outcome"].astype(str), df["_t"])]
    rows = df.drop(columns=["_label", "_t", "_i", "_c", "_o", "_ti"]).reset_index(drop=True)
    design = MultiDesign(
        trial=trials, comparison=labels, source=sources, outcome=outcomes, time=[float(t) for t in time_grid],
        row=row_labels, y=yv, se=se, trial_idx=i_idx, comparison_idx=c_idx, outcome_idx=o_idx, time_idx=t_idx,
        source_idx=np.array([sources.index(s) for s in comp_source]),
        y_white=y_w, sd_white=sd_w, W_idx=W_idx, W_val=W_val, reference_time=ref, rows=rows)
    return design, excluded


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------


def _walk_matrix(times: list[float], ref_idx: int) -> tuple[np.ndarray, np.ndarray]:
    """``A`` and step scales ``g`` so that ``overall = mu + sigma_time * A @ (g * z)`` is a Brownian
    motion in months anchored at the reference time (``g_k = sqrt(gap_k / TIME_UNIT_MONTHS)``)."""
    k = len(times)
    A, gap = np.zeros((k, k)), np.zeros(k)
    for j in range(k):
        if j > ref_idx:
            gap[j] = times[j] - times[j - 1]
        elif j < ref_idx:
            gap[j] = times[j + 1] - times[j]
    for i in range(k):
        lo, hi = (ref_idx + 1, i + 1) if i > ref_idx else (i, ref_idx)
        A[i, lo:hi] = 1.0
    return A, np.sqrt(gap / TIME_UNIT_MONTHS)


def build(spec: ModelSpec, design: MultiDesign):
    """The multivariate model (see the module docstring). Returns a ``pm.Model``."""
    import pymc as pm
    import pytensor.tensor as pt

    pr, opt = spec.prior_dict, _opt(spec)
    multi = len(design.outcome) > 1
    by_outcome = multi and opt["source_by_outcome"]
    r = design.ref_idx

    def effect(name, sd, dims):
        """A non-centred N(0, sd) random effect ``sd * z_<name>``."""
        return sd * pm.Normal(f"z_{name}", 0.0, 1.0, dims=dims)

    with pm.Model(coords=design.coords) as model:
        y = pm.Data("y", design.y, dims="row")
        se = pm.Data("se", design.se, dims="row")
        sd_unit = pm.Data("sd_unit", design.sd_white / design.se, dims="row")
        W_idx = pm.Data("W_idx", design.W_idx, dims=("row", "block_pos"))
        W_val = pm.Data("W_val", design.W_val, dims=("row", "block_pos"))
        i_idx = pm.Data("trial_idx", design.trial_idx, dims="row")
        c_idx = pm.Data("comparison_idx", design.comparison_idx, dims="row")
        t_idx = pm.Data("time_idx", design.time_idx, dims="row")
        s_of_c = pm.Data("source_idx", design.source_idx, dims="comparison")
        s_idx = s_of_c[c_idx]

        mu = prior_variable(pr["mu"], "mu")
        sigma_time = prior_variable(pr["sigma_time"], "sigma_time")
        if opt["time_prior"] == "random_walk":
            A, g = _walk_matrix(design.time, r)
            z_time = pm.Normal("z_time", 0.0, 1.0, dims="time")  # z_time[ref] is unused
            overall = pm.Deterministic("overall_by_time", mu + sigma_time * pt.dot(A, g * z_time), dims="time")
        else:
            overall = pm.Deterministic("overall_by_time",
                                       mu + sigma_time * pm.Normal("z_time", 0.0, 1.0, dims="time"), dims="time")

        sigma_source = prior_variable(pr["sigma_source"], "sigma_source")
        sigma_source_time = prior_variable(pr["sigma_source_time"], "sigma_source_time")
        if spec.get("parameterization") == "mixed":
            # centred source level: the source's effect at the reference time before its source x time
            # deviation (efficient when each source has many rows, as in the bundled data)
            level = pm.Normal("source_level", overall[r], sigma_source, dims="source")
        else:
            level = overall[r] + effect("source", sigma_source, "source")
        b_time = effect("source_time", sigma_source_time, ("source", "time"))
        stm = pm.Deterministic("source_time_mean", level[:, None] + (overall - overall[r])[None, :] + b_time,
                               dims=("source", "time"))
        source_mean = pm.Deterministic("source_mean", stm[:, r], dims="source")

        loc = stm[s_idx, t_idx]
        if multi:
            o_idx = pm.Data("outcome_idx", design.outcome_idx, dims="row")
            sigma_outcome = prior_variable(pr["sigma_outcome"], "sigma_outcome")
            gamma = effect("outcome", sigma_outcome, "outcome")
            pm.Deterministic("outcome_effect", overall[r] + gamma, dims="outcome")
            loc = loc + gamma[o_idx]
            if by_outcome:
                sigma_so = prior_variable(pr["sigma_source_outcome"], "sigma_source_outcome")
                d = effect("source_outcome", sigma_so, ("source", "outcome"))
                pm.Deterministic("source_outcome_mean", source_mean[:, None] + gamma[None, :] + d,
                                 dims=("source", "outcome"))
                loc = loc + d[s_idx, o_idx]
        else:
            pm.Deterministic("outcome_effect", overall[r] + pt.zeros(1), dims="outcome")

        tau = prior_variable(pr["tau"], "tau")
        tau_time = prior_variable(pr["tau_time"], "tau_time")
        u = effect("trial", tau, "trial")
        v = effect("trial_time", tau_time, ("trial", "time"))
        loc = loc + u[i_idx] + v[i_idx, t_idx]
        if multi:
            tau_outcome = prior_variable(pr["tau_outcome"], "tau_outcome")
            w = effect("trial_outcome", tau_outcome, ("trial", "outcome"))
            loc = loc + w[i_idx, o_idx]
        theta = pm.Deterministic("theta", loc, dims="row")
        # whitened rows (module docstring): M y ~ Normal(M theta, diag(L)), diag(L) = se * sd_unit
        y_white = (W_val * y[W_idx]).sum(axis=1)
        theta_white = (W_val * theta[W_idx]).sum(axis=1)
        pm.Normal("y_obs", mu=theta_white, sigma=se * sd_unit, observed=y_white, dims="row")
    return model


def add_predictions(dt: xr.DataTree, spec: ModelSpec, seed: int) -> None:
    """Add draws for a new trial at the reference time (seeded; like the univariate kinds).

    ``theta_new``: a new trial of a new source on a typical outcome of the modelled set;
    ``theta_new_source`` (source): a new trial of each source (typical outcome);
    ``theta_new_outcome`` (outcome, several outcomes only): a new trial of a new source on each
    outcome. A typical outcome adds the outcome SDs (``sigma_outcome``, ``sigma_source_outcome``,
    ``tau_outcome``) to the trial and source SDs.
    """
    post = dt["posterior"].to_dataset()
    opt = _opt(spec)
    rng = np.random.default_rng([seed, 7])
    shape = (post.sizes["chain"], post.sizes["draw"])

    def sd(name):
        return post[name] if name in post else 0.0

    def noise(*names):
        return sum(sd(n) * rng.standard_normal(shape) for n in names)

    ref = post["overall_by_time"].sel(time=float(opt["reference_time"]), method="nearest", drop=True)
    trial_sds = ("tau", "tau_time", "tau_outcome")
    outcome_sds = ("sigma_outcome", "sigma_source_outcome")
    post["theta_new"] = ref + noise("sigma_source", "sigma_source_time", *outcome_sds, *trial_sds)
    ns = post.sizes["source"]
    extra = xr.DataArray(sum(sd(n).values[..., None] * rng.standard_normal(shape + (ns,)) if n in post else 0.0
                             for n in (*trial_sds, *outcome_sds)), dims=("chain", "draw", "source"))
    post["theta_new_source"] = post["source_mean"] + extra
    if "sigma_outcome" in post:
        no = post.sizes["outcome"]
        extra = xr.DataArray(sum(sd(n).values[..., None] * rng.standard_normal(shape + (no,)) if n in post else 0.0
                                 for n in ("sigma_source", "sigma_source_time", "sigma_source_outcome",
                                           *trial_sds)), dims=("chain", "draw", "outcome"))
        post["theta_new_outcome"] = post["outcome_effect"] + extra
    dt["posterior"] = xr.DataTree(post)


# ------------------------------------------------------------------------------------------------
# time-course summaries
# ------------------------------------------------------------------------------------------------


def p_better_by_time(result, by_source: bool = False, ci: float = 0.95) -> pd.DataFrame:
    """P(MSC better than control) at each time: ``P(overall_by_time[t] < 0)`` with mean and interval.

    ``result``: a fitted :class:`~bayes_koa.result.MetaAnalysis` (or its DataTree) of a
    multivariate model. ``by_source=True`` gives the same per source from ``source_time_mean``.
    Columns: (``source``,) ``time_months``, ``p_benefit`` (P(effect < 0), or > 0 when the fit says
    higher is better), ``mc_se`` (Monte Carlo SE of that probability), ``mean``, and the equal-tailed
    ``ci`` interval (``eti95_lb``, ``eti95_ub`` by default). ``attrs["simulated"]`` says whether the data were
    SIMULATED.
    """
    from ..util.draws import mcse_mean

    dt = getattr(result, "dt", result)
    post = dt["posterior"]
    var = "source_time_mean" if by_source else "overall_by_time"
    if var not in post.data_vars:
        raise ValueError(f"the posterior has no {var!r}: fit a multivariate model (time_course, multi_outcome)")
    da = post[var]
    lo, hi = (1 - ci) / 2, 1 - (1 - ci) / 2
    sdims = ("chain", "draw")
    lower = bool(int(dt.attrs.get("bayes_koa_lower_is_better", 1)))
    ben = ((da < 0) if lower else (da > 0)).astype(float)
    p, se = ben.mean(sdims), mcse_mean(ben, sdims)
    q = da.quantile([lo, hi], dim=sdims)
    mean = da.mean(sdims)
    rows = []
    sources = [str(s) for s in da["source"].values] if by_source else [None]
    for s in sources:
        for t in da["time"].values:
            sel = {"time": t} | ({"source": s} if s is not None else {})
            row = {"source": s} if s is not None else {}
            row |= {"time_months": float(t), "p_benefit": float(p.sel(sel)), "mc_se": float(se.sel(sel)),
                    "mean": float(mean.sel(sel)), f"eti{ci * 100:g}_lb": float(q.sel(sel).isel(quantile=0)),
                    f"eti{ci * 100:g}_ub": float(q.sel(sel).isel(quantile=1))}
            rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(quantity=f"P({var} {'<' if lower else '>'} 0)", ci=ci,
                       simulated=bool(int(dt.attrs.get("bayes_koa_simulated", 0))))
    return table


class MultivariateKind(Kind):
    """Outcomes x times per comparison, with a known within-comparison covariance (see the module docstring)."""

    name = "multivariate"
    description = "several outcomes and times per comparison; random-walk time course"
    loo_dim = "row"
    likelihood = "y_obs"
    labels = {
        "mu": "overall mean effect (reference time)",
        "overall_by_time": "overall effect at this time (months)",
        "sigma_time": "time-course SD of the overall effect",
        "sigma_source": "between-source SD",
        "sigma_source_time": "source x time SD",
        "sigma_outcome": "between-outcome SD",
        "sigma_source_outcome": "source x outcome SD",
        "tau": "between-trial SD",
        "tau_time": "trial x time SD",
        "tau_outcome": "trial x outcome SD",
        "source_mean": "source mean (reference time)",
        "source_time_mean": "source mean at this time (months)",
        "outcome_effect": "overall effect on this outcome (reference time)",
        "source_outcome_mean": "source mean on this outcome (reference time)",
        "theta_new": "new trial (prediction)",
        "theta_new_source": "new trial of this source (prediction)",
        "theta_new_outcome": "new trial, this outcome (prediction)",
    }
    default_priors = {
        "SMD": {"mu": "Normal(mu=0, sigma=1)", "tau": "HalfNormal(sigma=0.5)", "sigma_source": "HalfNormal(sigma=0.5)"},
        "MD": {"mu": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=25)", "sigma_source": "HalfNormal(sigma=25)"},
    }

    def check_structure(self, structure, where):
        st = {k: v for k, v in structure.items() if k != "kind"}
        return check_structure(st, where)

    def parameters(self, structure):
        return parameters(structure)

    def prepare(self, spec, table, *, outcome=None, time=None, **ignored):
        return prepare(spec, table, outcome=outcome, time=time)

    def sampler_defaults(self, spec) -> dict:
        """Measured on the shipped SIMULATED data (time_course: VAS, SMD, all times; 3 seeds, 4 chains;
        benchmarks/RESULTS.md): at 0.99 with 1000 + 1000 no divergence and worst-seed bulk ESS 853 (>= 400),
        in half the time of 2000 + 2000; at 0.9 every seed diverged (3-18). Only the one-outcome,
        non-centred structure was measured; others keep the package defaults."""
        if len(spec.get("outcomes", ())) == 1 and spec.get("parameterization", "noncentered") == "noncentered":
            return {"draws": 1000, "tune": 1000, "target_accept": 0.99}
        return {}

    def build(self, spec, design):
        return build(spec, design)

    def add_predictions(self, dt, spec, seed):
        add_predictions(dt, spec, seed)

    def roles(self, spec):
        return Roles(overall="mu", group="source_mean", group_dim="source", prediction="theta_new", by_time="overall_by_time",
                     group_prediction="theta_new_source", heterogeneity=("tau",), between_group=("sigma_source",))

    def summary_vars(self, spec):
        return {k: v for k, v in self.labels.items() if k in self.parameters(spec.struct) or not k.startswith(("sigma", "tau"))}

    def group_counts(self, dt, spec):
        cd = dt["constant_data"] if "constant_data" in dt.children else None
        if cd is None or "source_idx" not in cd:
            return {}
        labels = [str(x) for x in dt["posterior"]["source"].values]
        idx = np.asarray(cd["source_idx"].values).astype(int)
        counts = {(s,): int((idx == i).sum()) for i, s in enumerate(labels)}
        return {"source_mean": counts, "theta_new_source": counts}


register(MultivariateKind())
