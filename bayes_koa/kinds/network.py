"""The ``network`` kind: network meta-analysis (NMA) of arm-level data, with the MSC treatments as a
nested class.

**Arm-based, and why.** Every arm of every trial enters the likelihood with its own data (an arm
mean with its known SE, or events out of n), against a trial baseline (Dias et al. 2013, NICE DSU
TSD2, the "binomial / normal with trial baselines" models; Smith, Spiegelhalter & Thomas 1995):

- a multi-arm trial is ONE trial whose arms share one baseline, so the correlation of its
  contrasts (they share an arm) is exact, with no covariance to compute;
- arm-level continuous and binomial data are used as reported: zero-event arms need no
  continuity correction;
- trials that report only contrasts (an estimate and its SE or CI, like the KOA ``contrasts.csv``)
  enter as contrast-level likelihood terms in the same model: each such trial is its own trial,
  its contrasts against its baseline arm are multivariate normal with ``Var = se_k^2`` and, for a
  multi-arm contrast trial, ``Cov = se_b^2`` (the variance of the shared baseline arm's mean;
  Franchini et al. 2012, Res Synth Methods 3:142), the multinma convention for contrast data.

The baselines are independent across trials with a vague prior ("fixed study effects", TSD2),
so the relative effects are informed by within-trial comparisons only.

Model (trial i, arm k, treatment t_ik; arm 1 = the trial's baseline arm, its treatment b_i)::

    eta_ik = baseline_i + delta_ik,            delta_i1 = 0
    delta_ik = d[t_ik] - d[b_i] + tau * u_ik   (random effects; fixed: tau = 0)
    u_i ~ MVN(0, (I + J) / 2)                  (one u per non-baseline arm: the contrasts of a
                                                multi-arm trial have correlation 1/2, i.e. the
                                                usual homogeneous-variance assumption)
    arm mean  y_ik ~ Normal(eta_ik, se_ik)     (measure "MD"; se = sd / sqrt(n) or the se column)
    events    r_ik ~ Binomial(n_ik, expit(eta_ik))           (measure "logOR")
    contrasts y_i ~ MVN(delta_i, S_i)          (contrast-only trials; no baseline_i)

``d`` are the basic parameters: each treatment's effect against the reference (``reference``,
default "placebo", d = 0), in the data's own direction: treatment minus reference on the outcome
scale (arm means) or the log odds ratio (events). ``u`` is written non-centred as ``B z`` with ``B``
the Cholesky factor of ``(I + J)/2`` per trial, ``z ~ N(0, 1)``.

**SMD** (measure "SMD"): each trial's arm means are divided by the trial's pooled SD (all arms,
``df = N - a``) and multiplied by Hedges' exact ``J(df)``; the arm SE becomes ``1/sqrt(n)``. A
two-arm trial's implied contrast is then exactly Hedges' g and its variance ``1/n_1 + 1/n_2``:
metafor's ``vi`` without the ``g^2 / (2 N)`` term for the uncertainty of the pooled SD, which an
arm-level model with known SEs cannot carry (stated, and tested against metafor). Contrast-only
trials cannot be standardised (no SD) and are left out with that reason under SMD.

**The MSC class** (``levels = ["msc", "source", "origin"]``): treatments whose row has a value in
the grouping column (``cell_source``; any column with ``group=``) are the MSC class. Their effects
are nested exchangeable levels::

    d_msc                                         all-MSC mean effect vs the reference (prior d_msc)
    source_effect[s]   ~ Normal(d_msc, sigma_source)             dim source (the group dim)
    cell_effect[s, o]  ~ Normal(source_effect[s], sigma_origin)  dims (source, origin)
    d[node]            ~ Normal(cell_effect[s, o], sigma_class)  each MSC treatment node

``common`` makes a level common (its SD 0: its members share their parent's effect): the default
``["node"]`` gives every MSC node of one source x origin cell the cell's effect (with the KOA
adapter's default nodes, one node per cell, so ``sigma_class`` would not be identified). Without the
origin level a node sits directly in its source; ``levels = ["msc"]`` puts the nodes directly around
``d_msc``; ``levels = []`` gives every treatment its own ``d`` (a plain NMA). Comparators
(placebo, HA, PRP, corticosteroid, conservative care, analgesic, any other) have their own ``d``
with prior ``d``, or ``d[<label>]`` for one of them (element priors: informative comparator evidence).

**Unrelated mean effects** (``consistency = "ume"``): every contrast of a treatment with its trial's
baseline treatment gets its own effect ``d_pair`` (dim ``pair``, "t vs b"; TSD4), no consistency and
no class model; compared with the consistency model by LOO in
:func:`bayes_koa.workflows.network.inconsistency`.

Dims: ``trial`` (every trial), ``baseline_trial`` (trials with arm data), ``arm``, ``contrast`` (the
non-baseline arms: one random effect each), ``obs`` (the likelihood ``y_obs``: arm rows, then the
contrast rows of contrast-only trials, decorrelated by the Cholesky factor of ``S_i`` with the scale
kept, so each term is the exact conditional density ``p(y_ik | y_i,<k)`` and their sum per trial the
exact joint; ``constant_data/trial_idx`` says each observation's trial, so LOO can leave a trial out),
``treatment`` (the non-reference nodes) with ``reference`` (one label) for ``d``, ``node`` (every
node, the reference first, 0) for ``node_effect`` (added after sampling: ranks and league tables),
``comparator``, ``msc_node``, ``source``, ``origin``.

Inputs: a plain arm table, columns named by arguments of ``fit``/``prepare`` (``study``,
``treatment``, ``mean``/``sd``/``n`` or ``se``, ``events``/``n``, ``diff``/``se_diff`` for
contrast-only trials: the baseline arm's row has no ``diff``, its ``se_diff`` is the SE of its mean
when the trial has three or more arms). :func:`bayes_koa.koa.network.network_arms` makes that table
from the KOA trial data. Rows left out are listed with their reasons; a disconnected network is an
error naming its pieces.

Helpers (pure functions of a result): :func:`league_table`, :func:`network_graph`,
:func:`direct_evidence`, :func:`indirect_only`, :func:`loops`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..data import DataValidationError
from ..effects.conversions import hedges_j
from ..spec.files import SpecError
from ..spec.model_spec import element_key
from .base import GROUP_COLUMN, Kind, Option, Roles, group_dim, register
from .common import ORIGIN_ORDER, SOURCE_ORDER, Selection, missing, normal_level, ordered, pick_rows, prior_variable

__all__ = ["NetworkDesign", "NetworkKind", "DEFAULT_PRIORS", "COMPARATOR_ORDER", "league_table",
           "network_graph", "direct_evidence", "indirect_only", "loops", "components"]

COMPARATOR_ORDER = ("placebo", "HA", "PRP", "corticosteroid", "conservative", "analgesic")
"""Comparator nodes in display order (the ``control_type`` values of the KOA data); others follow."""

# Package defaults per measure, in that measure's units; the MD/SMD/logOR scales as in the univariate
# kinds (bayes_koa.kinds.univariate.DEFAULT_PRIORS): d and d_msc as mu there, tau and the class SDs as
# tau / sigma_source / sigma_origin there (sigma_class as sigma_origin). baseline: an arm mean on a
# 0-100 scale (MD), a standardised arm mean (SMD: VAS means of 50 with SD 20 are 2.5), the log odds
# of an event in a trial's baseline arm (logOR, as the binomial kind's alpha: risks between 2% and 98%).
DEFAULT_PRIORS: dict[str, dict[str, str]] = {
    "MD": {"d": "Normal(mu=0, sigma=50)", "d_msc": "Normal(mu=0, sigma=50)", "tau": "HalfNormal(sigma=25)",
           "sigma_source": "HalfNormal(sigma=25)", "sigma_origin": "HalfNormal(sigma=10)",
           "sigma_class": "HalfNormal(sigma=10)", "baseline": "Normal(mu=0, sigma=100)",
           "beta_n_injections": "Normal(mu=0, sigma=25)"},
    "SMD": {"d": "Normal(mu=0, sigma=1)", "d_msc": "Normal(mu=0, sigma=1)", "tau": "HalfNormal(sigma=0.5)",
            "sigma_source": "HalfNormal(sigma=0.5)", "sigma_origin": "HalfNormal(sigma=0.25)",
            "sigma_class": "HalfNormal(sigma=0.25)", "baseline": "Normal(mu=0, sigma=100)",
            "beta_n_injections": "Normal(mu=0, sigma=0.5)"},
    "logOR": {"d": "Normal(mu=0, sigma=2)", "d_msc": "Normal(mu=0, sigma=2)", "tau": "HalfNormal(sigma=1)",
              "sigma_source": "HalfNormal(sigma=1)", "sigma_origin": "HalfNormal(sigma=0.5)",
              "sigma_class": "HalfNormal(sigma=0.5)", "baseline": "Normal(mu=0, sigma=2)",
              "beta_n_injections": "Normal(mu=0, sigma=1)"},
}
MEASURES = ("MD", "SMD", "logOR")
# MSC-arm covariates of the network meta-regression: name -> (column, meaning). The covariate enters each
# MSC arm's effect as beta * (x - 1) (comparator arms 0), so d and the class effects are at one injection
# (as the univariate kinds' n_injections moderator).
MSC_COVARIATES = {"n_injections": ("n_injections", "per extra injection (MSC arms), relative to one injection")}
_LEVEL_CHAINS = ((), ("msc",), ("msc", "source"), ("msc", "source", "origin"))
_LOG_2PI = float(np.log(2.0 * np.pi))


# ---------------------------------------------------------------------------------------------
# design
# ---------------------------------------------------------------------------------------------
@dataclass
class NetworkDesign:
    """Arrays the network model is built from, with their labels (see the module docstring).

    Trials with arm data come first (``baseline_trial``), contrast-only trials after them, so the
    baselines padded with zeros index by trial.
    """

    trial: list[str]
    treatment: list[str]                     # every node, the reference first
    free: list[str]                          # nodes with their own d (prior d or d[label])
    msc: list[str]                           # class nodes
    arm: list[str]
    arm_trial: np.ndarray                    # arm -> trial
    arm_treat: np.ndarray                    # arm -> node (0 = reference)
    arm_base_treat: np.ndarray               # arm -> node of its trial's baseline arm
    contrast: list[str]                      # non-baseline arms: one random effect each
    R: np.ndarray                            # (arm, contrast): u_arm = R z (0 on baseline arms)
    baseline_trial: list[str]
    obs: list[str]
    family: str                              # "normal", "binomial" or "mixed"
    y: np.ndarray
    sd: np.ndarray                           # normal rows: SD (1 on binomial rows)
    n_obs: np.ndarray                        # binomial rows: n (0 on normal rows)
    G: np.ndarray                            # (contrast rows, arms of contrast-only trials): decorrelating map
    n_arm_data: int                          # arms of trials with arm data (they come first; one obs each)
    obs_trial: np.ndarray
    reference: str
    gdim: str = "source"
    source: list[str] = field(default_factory=list)
    origin: list[str] = field(default_factory=list)
    C: np.ndarray | None = None              # (msc node, cells or sources): the node's lowest class group
    pair: list[str] = field(default_factory=list)
    arm_pair: np.ndarray | None = None       # arm -> unrelated-mean-effect pair (len(pair) for none)
    M: np.ndarray | None = None              # (obs, v): each observation's mean = M v + its trial's baseline
    baseline_rows: np.ndarray | None = None  # the obs rows of the baseline arms (baseline_prior = "trial_level")
    rows: pd.DataFrame | None = None
    unused_parameters: tuple[str, ...] = ()  # priors the model does not use (no container is made)
    x_mod: np.ndarray | None = None          # (arm,): covariate of the arm minus its trial's baseline arm's

    @property
    def coords(self) -> dict[str, list[str]]:
        c = {"trial": self.trial, "arm": self.arm, "obs": self.obs, "treatment": self.treatment[1:],
             "reference": [self.reference], "arm_field": ["node", "baseline_node", "trial"]}
        if self.baseline_trial:
            c["baseline_trial"] = self.baseline_trial
        if self.contrast:
            c["contrast"] = self.contrast
        if self.free:
            c["comparator"] = self.free
        if self.msc:
            c["msc_node"] = self.msc
            c["class_group"] = self.class_groups
        if self.source:
            c[self.gdim] = self.source
        if self.origin:
            c["origin"] = self.origin
        if self.pair:
            c["pair"] = self.pair
        return c

    def shape_key(self) -> tuple:
        return tuple((k, len(v)) for k, v in self.coords.items()) + (self.family,)

    @property
    def class_groups(self) -> list[str]:
        """Labels of the columns of C: the source x origin cells, the sources, or the one MSC class."""
        if self.origin:
            return [f"{s} {o}" for s in self.source for o in self.origin]
        return list(self.source) if self.source else ["msc"]

    @property
    def arm_index(self) -> np.ndarray:
        """(3, arm): each arm's node, its trial's baseline node, its trial."""
        return np.stack([self.arm_treat, self.arm_base_treat, self.arm_trial]).astype(np.int64)

    @property
    def trial_base_treat(self) -> np.ndarray:
        """trial -> node of its baseline arm."""
        out = np.zeros(len(self.trial), dtype=np.int64)
        out[self.arm_trial] = self.arm_base_treat
        return out

    def data(self) -> dict[str, np.ndarray]:
        """Values of the model's ``pm.Data`` containers (exactly those the model uses)."""
        vals = {"y": self.y, "trial_idx": self.obs_trial, "M": self.M}
        if self.arm_pair is None:  # consistency: the Deterministic delta reads them (the UME model has the
            vals["arm_index"] = self.arm_index  # trial_base_node container only for its trial dim: unused,
            vals["trial_base_node"] = self.trial_base_treat  # so not a shared variable of the compiled model)
        if self.family != "binomial":
            vals["sd_obs"] = self.sd
        if self.family != "normal":
            vals["n_obs"] = self.n_obs
        if self.family == "mixed":
            vals["is_binomial"] = (self.n_obs > 0).astype("float64")
        if self.R.shape[1] and self.arm_pair is None:
            vals["R"] = self.R
        if self.x_mod is not None:
            vals["x_mod"] = self.x_mod
        if self.C is not None:
            vals["C"] = self.C
        return vals

    def blocks(self, spec) -> list[tuple[str, int]]:
        """The pieces of ``v`` (``mean = M v + baseline``), in order, with their lengths."""
        st = spec.struct
        out = []
        if self.arm_pair is not None:
            out.append(("d_pair", len(self.pair)))
        else:
            if self.free:
                out.append(("d_comparator", len(self.free)))
            if self.msc:
                out.append(("group", self.C.shape[1]))
                if "node" not in st.get("common", ()):
                    out.append(("z_node", len(self.msc)))
            if self.x_mod is not None:
                out.append(("beta_n_injections", 1))
        if self.R.shape[1]:
            out.append(("z", self.R.shape[1]))
        return out

    def make_M(self, spec) -> np.ndarray:
        """``M = S [X_free | X_msc C | X_msc | R]`` (blocks as :meth:`blocks`), S = arm rows and decorrelated
        contrast rows."""
        n_arm, nodes = len(self.arm), len(self.treatment)
        X = np.zeros((n_arm, nodes))
        X[np.arange(n_arm), self.arm_treat] += 1.0
        X[np.arange(n_arm), self.arm_base_treat] -= 1.0
        X = X[:, 1:]  # the reference is 0
        cols = []
        for name, k in self.blocks(spec):
            if name == "d_pair":
                P = np.zeros((n_arm, k))
                has = self.arm_pair < k
                P[np.flatnonzero(has), self.arm_pair[has]] = 1.0
                cols.append(P)
            elif name == "d_comparator":
                cols.append(X[:, :k])
            elif name == "group":
                cols.append(X[:, len(self.free):] @ self.C)
            elif name == "z_node":
                cols.append(X[:, len(self.free):])
            elif name == "beta_n_injections":
                cols.append(self.x_mod[:, None])
            else:
                cols.append(self.R)
        B = np.concatenate(cols, axis=1) if cols else np.zeros((n_arm, 0))
        n_a = self.n_arm_data
        arm_part = B[:n_a]
        if spec.get("baseline_prior", "trial_level") == "trial_level" and n_a:
            # the free baseline is the trial's weighted mean level: subtract each trial's weighted mean of
            # its arms' rows, so the level is (nearly) orthogonal to the contrasts in the likelihood
            arm_part = arm_part - self.level_weights() @ arm_part
        return np.concatenate([arm_part, self.G @ B[n_a:]], axis=0) if self.G.shape[0] else arm_part

    def level_weights(self) -> np.ndarray:
        """(arm rows, arm rows): row k holds the weights of the arms of k's trial (1/se^2, or n for events)."""
        n_a = self.n_arm_data
        prec = self.n_obs[:n_a] if self.family != "normal" else 1.0 / self.sd[:n_a] ** 2
        t = self.obs_trial[:n_a]
        same = (t[:, None] == t[None, :]).astype(float)
        w = same * prec[None, :]
        return w / w.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------------------------
def _class_on(st) -> bool:
    return "msc" in st.get("levels", ()) and st.get("consistency", "consistency") == "consistency"


def _parameters(st: dict) -> list[str]:
    params = ["d"]
    if _class_on(st):
        levels, common = st.get("levels", ()), st.get("common", ())
        params.append("d_msc")
        for lev, sd in (("source", "sigma_source"), ("origin", "sigma_origin")):
            if lev in levels and lev not in common:
                params.append(sd)
        if "node" not in common:
            params.append("sigma_class")
    if st.get("consistency", "consistency") == "consistency":
        params += [f"beta_{m}" for m in st.get("moderators", ())]
    if st.get("effects", "random") == "random":
        params.append("tau")
    return params + ["baseline"]


# ---------------------------------------------------------------------------------------------
# prepare: rows -> design
# ---------------------------------------------------------------------------------------------
def _num(df: pd.DataFrame, col: str | None) -> pd.Series:
    if col is None or col not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[col], errors="coerce").astype(float)


def _bad_number(df, col, where_rows, what, arm_col, study_col):
    """DataValidationError naming trial, arm, column and row for the first row in ``where_rows``."""
    i = where_rows[where_rows].index[0]
    r = df.loc[i]
    arm = r[arm_col] if arm_col in df else r.get("nma_treatment", "")
    raise DataValidationError(f"trial {r[study_col]}, arm {arm}, column {col}, row {i}: {r[col]} {what}")


def _check_text_numbers(df, cols, arm_col, study_col):
    for col in cols:
        if col is None or col not in df:
            continue
        raw = df[col]
        x = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna() & ~(raw.astype(str).str.strip() == "") & x.isna()
        if bad.any():
            _bad_number(df, col, bad, "is not a number", arm_col, study_col)


def components(edges: list[tuple[str, str]], nodes: list[str]) -> list[list[str]]:
    """Connected pieces of a graph (union-find), each a sorted list, largest first."""
    parent = {v: v for v in nodes}

    def find(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    groups: dict[str, list[str]] = {}
    for v in nodes:
        groups.setdefault(find(v), []).append(v)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g))


def _chol_equi(m: int) -> np.ndarray:
    """Cholesky factor of (I + J) / 2 (m x m): the correlation 1/2 of a multi-arm trial's random effects."""
    return np.linalg.cholesky((np.eye(m) + np.ones((m, m))) / 2.0)


def prepare(spec, table: pd.DataFrame, *, study: str | None = None, treatment: str = "treatment",
            reference: str | None = None, mean: str = "mean", sd: str = "sd", n: str = "n", se: str = "se",
            events: str = "events", diff: str = "diff", se_diff: str = "se_diff", arm: str | None = None,
            outcome=None, time=None) -> tuple[NetworkDesign, pd.DataFrame]:
    """Arms (and contrast rows) the network model can use, and every row left out with its reason.

    Column arguments name the table's columns; ``study`` defaults to ``study`` (or ``trial_id`` when
    the table has no ``study`` column); ``arm`` (optional) names an arm id column used in labels and
    messages. ``reference`` overrides the model file's ``reference``.
    """
    measure = spec.measure
    if measure not in MEASURES:
        raise SpecError(f"model {spec.name} (network) takes measure 'MD', 'SMD' or 'logOR', got {measure!r}")
    df = table.copy()
    if study is None:
        study = "study" if "study" in df or "trial_id" not in df else "trial_id"
    for col, what in ((study, "study (trial)"), (treatment, "treatment")):
        if col not in df:
            raise SpecError(f"model {spec.name}: the arm table has no {what} column {col!r} "
                            f"(its columns: {', '.join(map(str, df.columns))}); name it with {what.split()[0]}=...")
    ref = reference if reference is not None else spec.get("reference", "placebo")
    df["excluded_reason"] = df["excluded_reason"].fillna("").astype(str) if "excluded_reason" in df else ""
    pick = dict(table="arm table", pools="a network pools one", narrow=False)
    df = pick_rows(df, "outcome", outcome, "outcome", **pick)
    df = pick_rows(df, "time_months", time, "time point", **pick)
    arm_col = arm if arm is not None else ("arm_id" if "arm_id" in df else None)
    _check_text_numbers(df, (mean, sd, n, se, events, diff, se_diff), arm_col or treatment, study)
    df["nma_trial"] = df[study].astype("string").fillna("").str.strip().astype(object)
    df["nma_treatment"] = df[treatment].astype("string").fillna("").str.strip().astype(object)
    df["nma_arm"] = (df[arm_col].astype(str) if arm_col else df["nma_treatment"])
    sel = Selection(df)
    sel.drop(sel.rows["nma_trial"] == "", f"study ({study}) not given")
    sel.drop(sel.rows["nma_treatment"] == "", f"treatment ({treatment}) not given: the arm has no node")
    rows = sel.rows

    # contrast rows vs arm rows: a trial is one or the other
    dval, dse = _num(rows, diff), _num(rows, se_diff)
    has_diff = dval.notna()
    con_trial = set(rows.loc[has_diff, "nma_trial"])
    arm_vals = _num(rows, mean).notna() | _num(rows, events).notna()
    mixed = rows["nma_trial"].isin(con_trial) & arm_vals
    if mixed.any():
        r = rows[mixed].iloc[0]
        raise DataValidationError(f"trial {r['nma_trial']}, arm {r['nma_arm']}, column {diff}, row {rows[mixed].index[0]}: "
                                  "the trial has both contrast rows (diff) and arm-level values; give one or the other")
    is_con = rows["nma_trial"].isin(con_trial)

    # -- arm-level rows
    if measure == "logOR":
        ev, nn = _num(rows, events), _num(rows, n)
        for col, x in ((events, ev), (n, nn)):
            bad = ~is_con & x.notna() & ((x < 0) | (x != np.floor(x)))
            if bad.any():
                _bad_number(rows, col, bad, "is not a whole number >= 0", arm_col or "nma_treatment", study)
        bad = ~is_con & ev.notna() & nn.notna() & (ev > nn)
        if bad.any():
            _bad_number(rows, events, bad, f"events exceed n ({n})", arm_col or "nma_treatment", study)
        sel.drop(~is_con & (ev.isna() | nn.isna()), f"events or n not reported ({events}, {n})")
        rows = sel.rows
        sel.drop(~rows["nma_trial"].isin(con_trial) & (_num(rows, n) < 1), f"n ({n}) must be >= 1")
    else:
        m, s, nn, s_e = _num(rows, mean), _num(rows, sd), _num(rows, n), _num(rows, se)
        for col, x in ((sd, s), (se, s_e), (n, nn)):
            bad = ~is_con & x.notna() & (x <= 0)
            if bad.any():
                _bad_number(rows, col, bad, "must be > 0", arm_col or "nma_treatment", study)
        sel.drop(~is_con & m.isna(), f"mean not reported ({mean})")
        rows = sel.rows
        m, s, nn, s_e = _num(rows, mean), _num(rows, sd), _num(rows, n), _num(rows, se)
        is_con = rows["nma_trial"].isin(con_trial)
        if measure == "SMD":
            sel.drop(~is_con & (s.isna() | nn.isna()), f"SMD needs the arm's SD and n ({sd}, {n})")
        else:
            sel.drop(~is_con & s_e.isna() & (s.isna() | nn.isna()), f"no SE: needs {sd} and {n}, or {se}")
    rows = sel.rows
    is_con = rows["nma_trial"].isin(con_trial)
    if measure == "SMD":
        sel.drop(is_con, "a contrast on the raw scale cannot be standardised (no SD): not used under SMD")
        rows = sel.rows
        is_con = rows["nma_trial"].isin(con_trial)
    # -- contrast rows: a positive SE on every contrast; one baseline row per trial
    if is_con.any():
        dval, dse = _num(rows, diff), _num(rows, se_diff)
        bad = is_con & dse.notna() & (dse <= 0)
        if bad.any():
            _bad_number(rows, se_diff, bad, "must be > 0", arm_col or "nma_treatment", study)
        sel.drop(is_con & dval.notna() & dse.isna(), f"contrast without its SE ({se_diff})")
        rows = sel.rows
        is_con = rows["nma_trial"].isin(con_trial)
        base_rows = rows[is_con & _num(rows, diff).isna()]
        nb = base_rows.groupby("nma_trial").size()
        two = nb[nb > 1]
        if len(two):
            raise DataValidationError(f"trial {two.index[0]}, column {diff}: {int(two.iloc[0])} rows without a "
                                      "diff; a contrast-only trial has exactly one (its baseline arm)")
        no_base = sorted(con_trial & set(rows["nma_trial"]) - set(nb.index))
        sel.drop(rows["nma_trial"].isin(no_base), "contrast-only trial without its baseline arm (the row "
                 "with no diff): the contrasts have no arm to be against")
        rows = sel.rows
        is_con = rows["nma_trial"].isin(con_trial)
        k = rows[is_con].groupby("nma_trial")["nma_trial"].transform("size")
        need_v = is_con & (rows["nma_trial"].map(rows[is_con].groupby("nma_trial").size()) > 2) \
            & _num(rows, diff).isna() & _num(rows, se_diff).isna()
        bad_t = set(rows.loc[need_v, "nma_trial"])
        sel.drop(rows["nma_trial"].isin(bad_t), f"multi-arm contrast-only trial without the SE of its baseline "
                 f"arm ({se_diff} on the row without diff): the covariance of its contrasts is unknown")
        del k
    rows = sel.rows

    # -- the class
    gcol = spec.get("group", GROUP_COLUMN)
    class_on = _class_on(spec.struct)
    levels = spec.get("levels", ())
    if class_on:
        if gcol not in rows or not (~missing(rows[gcol])).any():
            raise SpecError(f"model {spec.name}: no arm has a value in the class column {gcol!r}, so the MSC class "
                            "levels have nothing to hold; fit with structure={'levels': []} for a network without "
                            "classes (or name the class column with group=...)")
        in_class = ~missing(rows[gcol])
        if "origin" in levels:
            if "origin" not in rows:
                raise SpecError(f"model {spec.name} needs an 'origin' column for the origin level")
            sel.drop(in_class & missing(rows["origin"]), "origin not reported (needed by the origin level)")
            rows = sel.rows
        in_class = ~missing(rows[gcol])
        cols = [gcol] + (["origin"] if "origin" in levels else [])
        for col in cols:
            vals = rows[in_class].groupby("nma_treatment")[col].agg(lambda s: sorted(set(s.astype(str))))
            for t, v in vals.items():
                if len(v) > 1:
                    i = rows[in_class & (rows["nma_treatment"] == t)].index[0]
                    raise DataValidationError(f"trial {rows.loc[i, 'nma_trial']}, arm {rows.loc[i, 'nma_arm']}, "
                                              f"column {col}, row {i}: treatment {t!r} has {col} values "
                                              f"{', '.join(v)}; one treatment node has one")
        both = set(rows.loc[in_class, "nma_treatment"]) & set(rows.loc[~in_class, "nma_treatment"])
        if both:
            t = sorted(both)[0]
            i = rows[(rows["nma_treatment"] == t) & ~in_class].index[0]
            raise DataValidationError(f"trial {rows.loc[i, 'nma_trial']}, arm {rows.loc[i, 'nma_arm']}, column {gcol}, "
                                      f"row {i}: treatment {t!r} is in the class on some rows and not on others")
    # -- MSC-arm covariates (network meta-regression)
    for m in spec.get("moderators", ()):
        col = MSC_COVARIATES[m][0]
        if gcol not in rows:
            raise SpecError(f"model {spec.name}: the covariate {m} is of MSC arms, and the arm table has no class "
                            f"column {gcol!r}")
        if col not in rows:
            raise SpecError(f"model {spec.name} needs a {col!r} column for the covariate {m} (MSC arms)")
        _check_text_numbers(rows, (col,), arm_col or treatment, study)
        x = _num(rows, col)
        in_cls = ~missing(rows[gcol])
        bad = in_cls & x.notna() & (x < 1)
        if bad.any():
            _bad_number(rows, col, bad, "must be >= 1 (injections)", arm_col or "nma_treatment", study)
        sel.drop(in_cls & x.isna(), f"{col} not reported (needed by the covariate {m} of MSC arms)")
        rows = sel.rows
    # -- trials with fewer than two arms
    for _ in range(2):
        size = rows.groupby("nma_trial")["nma_trial"].transform("size")
        sel.drop(size < 2, "fewer than two usable arms in the trial: a trial informs the network only "
                 "through a comparison")
        rows = sel.rows
    if rows.empty:
        raise SpecError(f"no usable rows for model {spec.name}: {sel.reasons()}")

    # -- nodes
    labels = list(dict.fromkeys(rows["nma_treatment"]))
    if class_on:
        in_class = ~missing(rows[gcol])
        cls = rows[in_class].drop_duplicates("nma_treatment")
        src_of = dict(zip(cls["nma_treatment"], cls[gcol].astype(str)))
        org_of = dict(zip(cls["nma_treatment"], cls["origin"].astype(str))) if "origin" in levels else {}
    else:
        src_of, org_of = {}, {}
    if ref not in labels:
        raise SpecError(f"reference {ref!r} is not a treatment of the network; its treatments are "
                        f"{', '.join(ordered(labels))} (pass reference=...)")
    if ref in src_of:
        raise SpecError(f"reference {ref!r} is in the MSC class ({gcol} {src_of[ref]}); the class effects are "
                        "relative to a comparator: choose one (e.g. reference='placebo')")
    free = [t for t in ordered([t for t in labels if t not in src_of], COMPARATOR_ORDER) if t != ref]
    sources = ordered(src_of.values(), SOURCE_ORDER if gcol == GROUP_COLUMN else ())
    origins = ordered(org_of.values(), ORIGIN_ORDER) if org_of else []
    msc = sorted(src_of, key=lambda t: (sources.index(src_of[t]),
                                         origins.index(org_of[t]) if org_of else 0, t))
    nodes = [ref] + free + msc
    node_idx = {t: i for i, t in enumerate(nodes)}

    # element priors name nodes
    for key, _ in spec.priors:
        el = element_key(key)
        if el is None:
            continue
        base, label = el
        if base != "d":
            raise SpecError(f"prior {key!r}: element priors are for d (d[<treatment>]), not {base!r}")
        if label not in nodes:
            raise SpecError(f"prior {key!r}: {label!r} is not a treatment of the network; its treatments "
                            f"are {', '.join(nodes)}")
        if label == ref:
            raise SpecError(f"prior {key!r}: {label!r} is the reference (d = 0 by definition)")
        if label in src_of:
            raise SpecError(f"prior {key!r}: {label!r} is in the MSC class, whose effects come from the class "
                            "levels; give priors on d_msc and the class SDs instead")

    # -- connectivity
    trials = list(dict.fromkeys(rows["nma_trial"]))
    by_trial = rows.groupby("nma_trial", sort=False)["nma_treatment"].agg(lambda s: list(dict.fromkeys(s)))
    edges = [(ts[0], t) for ts in by_trial for t in ts[1:]]
    pieces = components(edges, nodes)
    if len(pieces) > 1:
        n_tr = [sum(1 for ts in by_trial if ts[0] in p) for p in pieces]
        order = sorted(range(len(pieces)), key=lambda j: (-n_tr[j], pieces[j]))  # most trials first
        pieces, n_tr = [pieces[j] for j in order], [n_tr[j] for j in order]
        text = "; ".join(f"piece {j + 1}: {', '.join(p)} ({k} trial{'s' * (k != 1)})"
                         for j, (p, k) in enumerate(zip(pieces, n_tr)))
        raise SpecError(f"the network is disconnected ({len(pieces)} pieces): {text}. Effects between pieces "
                        "are not estimable from the trials; fit each piece on its own, or add a trial that "
                        "connects them")

    # -- arms, in trial order (trials with arm data first, then contrast-only trials); in each trial
    # the baseline arm first
    con_trials = set(rows.loc[rows["nma_trial"].isin(con_trial), "nma_trial"])
    trials = [t for t in trials if t not in con_trials] + [t for t in trials if t in con_trials]
    rows = rows.assign(_node=rows["nma_treatment"].map(node_idx), _order=np.arange(len(rows)),
                       _t=rows["nma_trial"].map({t: i for i, t in enumerate(trials)}))
    if con_trials:
        is_base = rows["nma_trial"].isin(con_trials) & _num(rows, diff).isna()
        rows["_b"] = np.where(rows["nma_trial"].isin(con_trials), (~is_base).astype(int), 0)
    else:
        rows["_b"] = 0
    rows = rows.sort_values(["_t", "_b", "_node", "_order"], kind="stable")
    rows["nma_baseline"] = ~rows.duplicated("nma_trial")
    rows = rows.reset_index(drop=False).rename(columns={"index": "nma_row"})
    a_trial = rows["_t"].to_numpy(np.int64)
    a_treat = rows["_node"].to_numpy(np.int64)
    base_treat = rows.groupby("_t")["_node"].transform("first").to_numpy(np.int64)
    is_b = rows["nma_baseline"].to_numpy(bool)
    dup_lab = rows.duplicated(["nma_trial", "nma_arm"], keep=False)
    if dup_lab.any():
        r = rows[dup_lab].iloc[0]
        if arm_col:
            raise DataValidationError(f"trial {r['nma_trial']}, arm {r['nma_arm']}, column {arm_col}, row "
                                      f"{r['nma_row']}: the arm is listed twice")
    arm_lab = [f"{t}: {a}" for t, a in zip(rows["nma_trial"], rows["nma_arm"])]
    if len(set(arm_lab)) < len(arm_lab):  # several arms of one treatment, no arm ids: number them
        cnt: dict[str, int] = {}
        out = []
        for lab in arm_lab:
            cnt[lab] = cnt.get(lab, 0) + 1
            out.append(lab if cnt[lab] == 1 else f"{lab} ({cnt[lab]})")
        arm_lab = out
    non_b = np.flatnonzero(~is_b)
    contrast = [arm_lab[i] for i in non_b]
    R = np.zeros((len(rows), len(non_b)))
    col = {a: j for j, a in enumerate(non_b)}
    for t in range(len(trials)):
        k = np.flatnonzero((a_trial == t) & ~is_b)
        if len(k):
            R[np.ix_(k, [col[a] for a in k])] = _chol_equi(len(k))
    if spec.get("effects", "random") == "fixed":  # no random effects
        R = np.zeros((len(rows), 0))
    is_con_arm = rows["nma_trial"].isin(con_trials).to_numpy(bool)
    baseline_trial = [t for t in trials if t not in con_trials]

    # -- observations: arm rows
    arm_rows = np.flatnonzero(~is_con_arm)
    y_arm = np.zeros(len(arm_rows))
    sd_arm = np.ones(len(arm_rows))
    n_arm = np.zeros(len(arm_rows))
    rows["nma_n"] = _num(rows, n)
    if measure == "logOR":
        y_arm = _num(rows, events).to_numpy(float)[arm_rows]
        n_arm = _num(rows, n).to_numpy(float)[arm_rows]
    else:
        mm, ss, nn, ee = (_num(rows, c).to_numpy(float) for c in (mean, sd, n, se))
        if measure == "MD":
            se_all = np.where(np.isfinite(ee), ee, ss / np.sqrt(nn))
            y_arm, sd_arm = mm[arm_rows], se_all[arm_rows]
            rows["nma_y"], rows["nma_se"] = mm, se_all
        else:  # SMD: the trial's pooled SD over all its arms, Hedges' J(N - a)
            ys, ses = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
            for t in set(a_trial[arm_rows]):
                k = np.flatnonzero((a_trial == t) & ~is_con_arm)
                dfree = float(np.sum(nn[k] - 1.0))
                s_pool = float(np.sqrt(np.sum((nn[k] - 1.0) * ss[k] ** 2) / dfree))
                j = float(hedges_j(dfree))
                ys[k] = j * mm[k] / s_pool
                ses[k] = 1.0 / np.sqrt(nn[k])
            y_arm, sd_arm = ys[arm_rows], ses[arm_rows]
            rows["nma_y"], rows["nma_se"] = ys, ses
    # -- observations: contrast rows, decorrelated
    g_rows, y_con, sd_con, con_trial_idx, con_lab = [], [], [], [], []
    dv, dsev = _num(rows, diff).to_numpy(float), _num(rows, se_diff).to_numpy(float)
    for t in range(len(trials)):
        if trials[t] not in con_trials:
            continue
        k = np.flatnonzero((a_trial == t) & ~is_b)
        b = np.flatnonzero((a_trial == t) & is_b)[0]
        m_k = len(k)
        S = np.diag(dsev[k] ** 2)
        if m_k > 1:
            vb = dsev[b] ** 2
            S = S + vb * (np.ones((m_k, m_k)) - np.eye(m_k))
            if np.any(dsev[k] ** 2 <= vb):
                raise DataValidationError(f"trial {trials[t]}, column {se_diff}: a contrast's SE "
                                          f"({min(dsev[k]):g}) must exceed the baseline arm's SE ({np.sqrt(vb):g}): "
                                          "the contrast variance is the sum of two arms' variances")
        L = np.linalg.cholesky(S)
        W = np.diag(np.diag(L)) @ np.linalg.inv(L)
        for r_, kk in enumerate(k):
            g = np.zeros(len(rows))
            g[k] = W[r_]
            g_rows.append(g)
            y_con.append(float(W[r_] @ dv[k]))
            sd_con.append(float(L[r_, r_]))
            con_trial_idx.append(t)
            con_lab.append(f"{arm_lab[kk]} vs {rows['nma_treatment'].iloc[b]}" + (" (decorrelated)" if r_ else ""))
    n_a = len(arm_rows)
    assert np.array_equal(arm_rows, np.arange(n_a))  # trials with arm data come first
    G = np.array(g_rows)[:, n_a:] if g_rows else np.zeros((0, len(rows) - n_a))
    obs = [arm_lab[i] for i in arm_rows] + con_lab
    binom_arm = measure == "logOR" and len(arm_rows) > 0
    family = "binomial" if binom_arm and not g_rows else ("mixed" if binom_arm else "normal")
    design = NetworkDesign(
        trial=trials, treatment=nodes, free=free, msc=msc, arm=arm_lab, arm_trial=a_trial, arm_treat=a_treat,
        arm_base_treat=base_treat, contrast=contrast, R=R, baseline_trial=baseline_trial, obs=obs, family=family,
        y=np.concatenate([y_arm, np.array(y_con, dtype=float)]),
        sd=np.concatenate([sd_arm if measure != "logOR" else np.ones(len(arm_rows)), np.array(sd_con, dtype=float)]),
        n_obs=np.concatenate([n_arm, np.zeros(len(y_con))]), G=G, n_arm_data=n_a,
        obs_trial=np.concatenate([a_trial[arm_rows], np.array(con_trial_idx, dtype=np.int64)]).astype(np.int64),
        reference=ref, gdim=group_dim(gcol),
    )
    if class_on:
        if "source" in levels:
            design.source = sources
        if "origin" in levels:
            design.origin = origins
            C = np.zeros((len(msc), len(sources) * len(origins)))  # cell_effect flattened row-major
            for j, t in enumerate(msc):
                C[j, sources.index(src_of[t]) * len(origins) + origins.index(org_of[t])] = 1.0
            design.C = C
        elif "source" in levels:
            C = np.zeros((len(msc), len(sources)))
            for j, t in enumerate(msc):
                C[j, sources.index(src_of[t])] = 1.0
            design.C = C
        else:  # every node around d_msc
            design.C = np.ones((len(msc), 1))
    if spec.get("consistency") == "ume":
        pairs, keyed = [], []
        for i in range(len(rows)):
            if is_b[i] or a_treat[i] == base_treat[i]:
                keyed.append(None)
                continue
            lab = f"{nodes[a_treat[i]]} vs {nodes[base_treat[i]]}"
            if lab not in pairs:
                pairs.append(lab)
            keyed.append(lab)
        order = {p: (node_idx[p.split(" vs ")[1]], node_idx[p.split(" vs ")[0]]) for p in pairs}
        pairs = sorted(pairs, key=order.get)
        arm_pair = np.array([len(pairs) if lab is None else pairs.index(lab) for lab in keyed], dtype=np.int64)
        design.pair, design.arm_pair = pairs, arm_pair
        design.free, design.msc, design.C, design.source, design.origin = [], [], None, [], []
    mods = spec.get("moderators", ())
    if mods and spec.get("consistency") != "ume":
        col = MSC_COVARIATES[mods[0]][0]
        is_msc_arm = (~missing(rows[gcol])).to_numpy(bool)  # the class column, with or without class levels
        x = np.where(is_msc_arm, _num(rows, col).to_numpy(float) - 1.0, 0.0)
        first = np.array([int(np.flatnonzero(a_trial == t)[0]) for t in range(len(trials))], dtype=np.int64)
        design.x_mod = x - x[first[a_trial]]
        if not np.any(np.abs(design.x_mod) > 0):
            raise SpecError(f"model {spec.name}: the covariate {mods[0]} never differs between the arms of a trial "
                            "and an MSC arm's injections are all 1 or the same everywhere: beta_"
                            f"{mods[0]} is not informed by these rows")
    design.M = design.make_M(spec)
    if design.n_arm_data:
        design.baseline_rows = np.array([int(np.flatnonzero(design.obs_trial[:design.n_arm_data] == i)[0])
                                         for i in range(len(baseline_trial))], dtype=np.int64)
    unused = []
    if not design.pair and all(f"d[{t}]" in spec.prior_dict for t in design.free):
        unused.append("d")  # no comparator takes the generic d prior
    if not baseline_trial:
        unused.append("baseline")
    design.unused_parameters = tuple(unused)
    keep = [c for c in rows.columns if not c.startswith("_")]
    out_rows = rows[keep].copy()
    out_rows["nma_node"] = [nodes[i] for i in a_treat]
    if "trial_id" not in out_rows:  # refits (leave one trial out) find a trial's rows by trial_id
        out_rows["trial_id"] = out_rows["nma_trial"]
    design.rows = out_rows.reset_index(drop=True)
    return design, sel.excluded()


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
def _prior_data(prior, key: str):
    """The ``pm.Data`` scalars of a prior's parameters, named for parameter ``key``."""
    import pymc as pm

    return {k: pm.Data(dn, np.asarray(v, dtype="float64")) for (k, v), dn in
            zip(prior.params, prior.data_names(key).values())}


def _vector_rv(name: str, key: str, labels: list[str], dim: str, pr: dict, element: bool = True):
    """One vector variable ``name`` over ``dim`` with prior ``pr[key]``, or ``pr[f"{key}[label]"]`` for
    elements that have their own prior (element priors). Elements of one family share one variable
    (their parameters stacked); with several families each has its variable (``{name}_{family}``) and
    ``name`` is their Deterministic in label order."""
    import pymc as pm
    import pytensor.tensor as pt

    default = pr[key]
    per = [pr.get(f"{key}[{lab}]", default) if element else default for lab in labels]
    for lab, p in zip(labels, per):
        if p.family.support != "real" or p.dist == "LogStudentT":
            what = f"{key}[{lab}]" if p is not default else key
            raise SpecError(f"prior for {what} must be on real values (e.g. Normal), got {p}")
    keys = [f"{key}[{lab}]" if p is not default else key for lab, p in zip(labels, per)]
    containers = {k: _prior_data(p, k) for k, p in dict(zip(keys, per)).items()}
    if all(p is default for p in per):
        return getattr(pm, default.dist)(name, **containers[key], dims=dim)
    families = list(dict.fromkeys(p.dist for p in per))
    if len(families) == 1:
        vals = {par: pt.stack([containers[k][par] for k in keys]) for par, _ in per[0].params}
        return getattr(pm, families[0])(name, **vals, dims=dim)
    parts, where = [], []
    for fam in families:
        idx = [i for i, p in enumerate(per) if p.dist == fam]
        vals = {par: pt.stack([containers[keys[i]][par] for i in idx]) for par, _ in per[idx[0]].params}
        parts.append(getattr(pm, fam)(f"{name}_{fam.lower()}", **vals, shape=len(idx)))
        where += idx
    return pm.Deterministic(name, pt.concatenate(parts)[np.argsort(where)], dims=dim)


def _mixed_logp(value, mu, sd, n, is_binom):
    import pytensor.tensor as pt
    from pymc.math import log1pexp

    b = pt.gt(is_binom, 0.5)
    k = pt.switch(b, value, 0.0)
    nn = pt.switch(b, n, 1.0)
    lb = (pt.gammaln(nn + 1.0) - pt.gammaln(k + 1.0) - pt.gammaln(nn - k + 1.0)
          - k * log1pexp(-mu) - (nn - k) * log1pexp(mu))
    s = pt.switch(b, 1.0, sd)
    x = pt.switch(b, 0.0, value)
    ln = -0.5 * _LOG_2PI - pt.log(s) - 0.5 * ((x - mu) / s) ** 2
    return pt.switch(b, lb, ln)


def _mixed_random(mu, sd, n, is_binom, rng=None, size=None):
    rng = np.random.default_rng() if rng is None else rng
    mu, sd, n, is_binom = np.broadcast_arrays(mu, sd, n, is_binom)
    shape = size if size is not None else mu.shape
    p = 1.0 / (1.0 + np.exp(-mu))
    binom = rng.binomial(np.where(is_binom > 0.5, n, 1).astype(np.int64), p, size=shape)
    norm = rng.normal(mu, np.where(is_binom > 0.5, 1.0, sd), size=shape)
    return np.where(is_binom > 0.5, binom, norm).astype("float64")


def build(spec, design: NetworkDesign):
    """Write the network model (see the module docstring); samples nothing.

    The log density needs one product: every observation's mean is ``M v`` plus its trial's
    baseline, with ``v`` = (comparators' d, the class's lowest groups, the class nodes' and the
    trials' standardised random effects times their SDs) and ``M`` (data) holding how each arm
    reads them (``+1`` its node, ``-1`` its trial's baseline node, the Cholesky rows of its random
    effect, the decorrelating rows of contrast-only trials). The Deterministics ``d`` and ``delta``
    are computed once per draw.
    """
    import pymc as pm
    import pytensor.tensor as pt

    pr = spec.prior_dict
    st = spec.struct
    levels, common = st.get("levels", ()), st.get("common", ())
    g = design.gdim
    ume = design.arm_pair is not None
    nc = st.get("parameterization", "noncentered") == "noncentered"  # the class levels
    with pm.Model(coords=design.coords) as model:
        trial_idx = pm.Data("trial_idx", design.obs_trial, dims="obs")
        # each trial's baseline node (= arm_index[1] by arm); its dim keeps the trial labels in constant_data,
        # which leave-one-trial-out reads (no posterior variable is over trials), in the UME model too
        trial_base_node = pm.Data("trial_base_node", design.trial_base_treat, dims="trial")
        pieces = {}
        d_parts = []
        if ume:
            pieces["d_pair"] = _vector_rv("d_pair", "d", design.pair, "pair", pr, element=False)
        if design.free:
            d_free = _vector_rv("d_comparator", "d", design.free, "comparator", pr)
            pieces["d_comparator"] = d_free
            d_parts.append(d_free)
        if design.msc:
            d_msc = prior_variable(pr["d_msc"], "d_msc")
            group = d_msc[None]
            if "source" in levels:
                ns = len(design.source)
                if "source" in common:
                    source_effect = pm.Deterministic("source_effect", d_msc * pt.ones(ns), dims=g)
                else:
                    source_effect = normal_level("source_effect", d_msc,
                                                 prior_variable(pr["sigma_source"], "sigma_source"), g, nc, "z_source")
                group = source_effect
                if "origin" in levels:
                    no = len(design.origin)
                    if "origin" in common:
                        cell_effect = pm.Deterministic("cell_effect", source_effect[:, None] * pt.ones((1, no)),
                                                       dims=(g, "origin"))
                    else:
                        cell_effect = normal_level("cell_effect", source_effect[:, None],
                                                   prior_variable(pr["sigma_origin"], "sigma_origin"),
                                                   (g, "origin"), nc, "z_cell")
                    group = cell_effect.flatten()
            pieces["group"] = group
            lowest = pt.dot(pm.Data("C", design.C, dims=("msc_node", "class_group")), group)
            if "node" in common:
                d_parts.append(lowest)
            else:
                sigma_class = prior_variable(pr["sigma_class"], "sigma_class")
                z_node = pm.Normal("z_node", 0.0, 1.0, dims="msc_node")
                pieces["z_node"] = sigma_class * z_node
                d_parts.append(pm.Deterministic("msc_effect", lowest + sigma_class * z_node, dims="msc_node"))
        if design.x_mod is not None:
            beta = prior_variable(pr["beta_n_injections"], "beta_n_injections")
            pieces["beta_n_injections"] = pt.atleast_1d(beta)
        if design.R.shape[1]:
            tau = prior_variable(pr["tau"], "tau")
            z = pm.Normal("z", 0.0, 1.0, dims="contrast")
            pieces["z"] = tau * z
        v = pt.concatenate([pieces[name] for name, _ in design.blocks(spec)])
        M = pm.Data("M", design.M)
        mu_obs = pt.dot(M, v)
        n_a = design.n_arm_data
        if n_a:  # arm rows: + their trial's baseline (contrast-only trials, last, have none)
            # baseline_prior "trial_level": each trial's weighted mean arm level; "baseline_arm": its baseline arm
            baseline = _vector_rv("baseline", "baseline", design.baseline_trial, "baseline_trial", pr, element=False)
            n_con = len(design.trial) - len(design.baseline_trial)
            full = pt.concatenate([baseline, pt.zeros(n_con)]) if n_con else baseline
            mu_obs = mu_obs + full[trial_idx]
        else:
            mu_obs = mu_obs + 0.0 * pt.cast(trial_idx, "float64")  # keeps trial_idx (for LOO) in the model
        if not ume:  # per draw only: the basic parameters and the trial-specific effects
            d_nonref = pt.concatenate(d_parts) if len(d_parts) > 1 else d_parts[0]
            pm.Deterministic("d", d_nonref[:, None], dims=("treatment", "reference"))
            d_full = pt.concatenate([pt.zeros(1), d_nonref])
            arm_index = pm.Data("arm_index", design.arm_index, dims=("arm_field", "arm"))
            non_b = np.array([design.arm.index(a) for a in design.contrast], dtype=np.int64)
            delta = d_full[arm_index[0]] - d_full[trial_base_node[arm_index[2]]]
            if design.R.shape[1]:
                delta = delta + tau * pt.dot(pm.Data("R", design.R, dims=("arm", "contrast")), z)
            if design.x_mod is not None:
                delta = delta + beta * pm.Data("x_mod", design.x_mod, dims="arm")
            pm.Deterministic("delta", delta[non_b], dims="contrast")
        y = pm.Data("y", design.y, dims="obs")
        if design.family == "normal":
            sd_obs = pm.Data("sd_obs", design.sd, dims="obs")
            pm.Normal("y_obs", mu=mu_obs, sigma=sd_obs, observed=y, dims="obs")
        elif design.family == "binomial":
            n_obs = pm.Data("n_obs", design.n_obs, dims="obs")
            pm.Binomial("y_obs", n=n_obs, logit_p=mu_obs, observed=y, dims="obs")
        else:
            sd_obs = pm.Data("sd_obs", design.sd, dims="obs")
            n_obs = pm.Data("n_obs", design.n_obs, dims="obs")
            is_b = pm.Data("is_binomial", (design.n_obs > 0).astype("float64"), dims="obs")
            pm.CustomDist("y_obs", mu_obs, sd_obs, n_obs, is_b, logp=_mixed_logp, random=_mixed_random,
                          observed=y, dims="obs")
    return model


# ---------------------------------------------------------------------------------------------
# after sampling
# ---------------------------------------------------------------------------------------------
def _reference(post) -> str:
    return str(post["d"]["reference"].values[0])


def node_effects(post) -> xr.DataArray:
    """Every node's effect against the reference (the reference first, 0), dims (chain, draw, node)."""
    d = post["d"].isel(reference=0, drop=True)
    ref = _reference(post)
    zero = xr.zeros_like(d.isel(treatment=0, drop=True)).expand_dims(treatment=[ref], axis=-1)
    out = xr.concat([zero, d], dim="treatment").rename(treatment="node")
    return out.transpose("chain", "draw", "node")


def observation_parts(dt, spec) -> dict:
    """Per draw, the mean of every observation of ``y_obs`` (the linear predictor: ``M v`` plus the trial's
    baseline, rebuilt from the posterior and ``constant_data/M``), with what the likelihood needs:
    ``{"mu": (chain, draw, obs), "sd": (obs,) (1 on binomial rows), "n": (obs,) (0 on normal rows),
    "binomial": (obs,) bool, "trial_idx": (obs,)}``. For the posterior predictive check by trial."""
    post = dt["posterior"]
    cd = dt["constant_data"]
    st = spec.struct
    levels, common = st.get("levels", ()), st.get("common", ())
    S = post.sizes["chain"], post.sizes["draw"]

    def flat(name):
        return np.asarray(post[name].transpose("chain", "draw", ...).values, dtype=float).reshape(*S, -1)

    parts = []
    if "d_pair" in post.data_vars:
        parts.append(flat("d_pair"))
    else:
        if "comparator" in post.coords and "d_comparator" in post.data_vars:
            parts.append(flat("d_comparator"))
        if "d_msc" in post.data_vars:
            if "origin" in levels and "cell_effect" in post.data_vars:
                parts.append(flat("cell_effect"))  # (source, origin) row-major, as C's columns
            elif "source" in levels and "source_effect" in post.data_vars:
                parts.append(flat("source_effect"))
            else:
                parts.append(flat("d_msc"))
            if "node" not in common:
                parts.append(flat("sigma_class") * flat("z_node"))
        if "beta_n_injections" in post.data_vars:
            parts.append(flat("beta_n_injections"))
    if "z" in post.data_vars:
        parts.append(flat("tau") * flat("z"))
    v = np.concatenate(parts, axis=-1) if parts else np.zeros((*S, 0))
    M = np.asarray(cd["M"].values, dtype=float)
    if M.shape[1] != v.shape[-1]:
        raise ValueError(f"model {spec.name}: constant_data/M has {M.shape[1]} columns, the posterior gives "
                         f"{v.shape[-1]}: the result does not match its model")
    mu = v @ M.T
    idx = np.asarray(cd["trial_idx"].values, dtype=np.int64)
    if "baseline" in post.data_vars:
        base = flat("baseline")
        n_con = int(cd["trial"].size) - base.shape[-1]
        full = np.concatenate([base, np.zeros((*S, n_con))], axis=-1)
        mu = mu + full[..., idx]
    n_obs = mu.shape[-1]
    n = np.asarray(cd["n_obs"].values, dtype=float) if "n_obs" in cd else np.zeros(n_obs)
    sd = np.asarray(cd["sd_obs"].values, dtype=float) if "sd_obs" in cd else np.ones(n_obs)
    return {"mu": mu, "sd": sd, "n": n, "binomial": n > 0, "trial_idx": idx}


def trial_log_likelihood(dt, spec) -> xr.DataArray | None:
    """Per draw and trial, the log-likelihood of the trial's data with its baseline integrated out
    (normal likelihoods; None when any row is binomial, whose baseline has no closed form).

    A trial with arm data: its arm means ``y_1..y_a`` (arm 1 the baseline arm) are ``baseline + delta_k``
    plus independent errors (SD ``s_k``), so the contrasts ``c_k = y_k - y_1`` (k >= 2) are multivariate
    normal with mean ``delta_k`` and covariance ``diag(s_k^2) + s_1^2 J``, free of the baseline. Under
    the baselines' vague independent priors ("fixed study effects"), leaving a trial out leaves its
    baseline with its prior only, so ``p(y_i | y_-i)`` is this contrast density times a factor of the
    baseline prior that no other trial informs: the same for every model with the same baseline prior.
    Contrast-only trials: their (decorrelated) rows, whose sum is already the exact joint density.
    For PSIS-LOO by trial (:func:`bayes_koa.analysis.checks.loo`): with the conditional sum the trial's
    own baseline would dominate the importance ratios (Pareto k high for most trials).
    """
    parts = observation_parts(dt, spec)
    if np.any(parts["binomial"]):
        return None
    y = np.asarray(dt["observed_data"]["y_obs"].values, dtype=float)
    mu, sd, idx = parts["mu"], parts["sd"], parts["trial_idx"]
    post = dt["posterior"]
    labels = [str(x) for x in dt["constant_data"]["trial"].values]
    n_base = int(post.sizes.get("baseline_trial", 0)) if "baseline" in post.data_vars else 0
    out = np.zeros(mu.shape[:2] + (len(labels),))
    for t in range(len(labels)):
        k = np.flatnonzero(idx == t)
        if t >= n_base:  # contrast-only trial: the decorrelated rows
            z = (y[k] - mu[..., k]) / sd[k]
            out[..., t] = np.sum(-0.5 * _LOG_2PI - np.log(sd[k]) - 0.5 * z ** 2, axis=-1)
            continue
        b, rest = k[0], k[1:]
        c = y[rest] - y[b]
        m = mu[..., rest] - mu[..., b:b + 1]
        S = np.diag(sd[rest] ** 2) + sd[b] ** 2
        L = np.linalg.cholesky(S)
        r = np.linalg.solve(L, (c - m).reshape(-1, len(rest)).T).T
        out[..., t] = (-0.5 * len(rest) * _LOG_2PI - np.log(np.diag(L)).sum()
                       - 0.5 * (r ** 2).sum(axis=-1).reshape(mu.shape[:2]))
    return xr.DataArray(out, dims=("chain", "draw", "trial"),
                        coords={"chain": post["chain"].values, "draw": post["draw"].values, "trial": labels},
                        name="y_obs")


def add_predictions(dt, spec, seed: int) -> None:
    """``node_effect`` (every node vs the reference, the reference 0: ranks and league tables) and,
    with the class model, ``theta_new`` (an MSC product of a new source in a new trial, vs the
    reference: every class SD and tau enter) and ``theta_new_source`` (a new product of each source
    in a new trial; the origin SD enters too)."""
    post = dt["posterior"].to_dataset()
    if "constant_data" in dt.children and "trial" in dt["constant_data"].coords and "trial" not in post.coords:
        # no posterior variable is over trials (baselines are over baseline_trial): give the posterior the
        # trial labels, which leave-one-trial-out reads with constant_data/trial_idx
        post = post.assign_coords(trial=dt["constant_data"]["trial"].values)
    if "d" not in post:
        dt["posterior"] = xr.DataTree(post)
        return
    post["node_effect"] = node_effects(post)
    if "d_msc" in post:
        rng = np.random.default_rng([seed, 7])
        shape = (post.sizes["chain"], post.sizes["draw"])

        def noise(*extra):
            return rng.standard_normal(shape + extra)

        sds = [v for v in ("sigma_origin", "sigma_class", "tau") if v in post]
        new = post["d_msc"] + (post["sigma_source"] * noise() if "sigma_source" in post else 0.0)
        for v in sds:
            new = new + post[v] * noise()
        post["theta_new"] = new
        if "source_effect" in post:
            g = [d for d in post["source_effect"].dims if d not in ("chain", "draw")][0]
            ns = post.sizes[g]
            dims = ("chain", "draw", g)
            ts = post["source_effect"]
            for v in sds:
                ts = ts + post[v] * xr.DataArray(noise(ns), dims=dims)
            post["theta_new_source"] = ts
    dt["posterior"] = xr.DataTree(post)


# ---------------------------------------------------------------------------------------------
# helpers on a fitted result
# ---------------------------------------------------------------------------------------------
def _dt(result):
    return getattr(result, "dt", result)


def _rows(result) -> pd.DataFrame:
    rows = result if isinstance(result, pd.DataFrame) else getattr(result, "effects", None)
    if rows is None or "nma_trial" not in rows or "nma_node" not in rows:
        raise ValueError("need a network result (bayes_koa.fit(..., model='network')) or its design rows")
    return rows


def network_graph(result) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Nodes and edges of the network a result was fitted to.

    ``nodes``: ``treatment``, ``n_trials``, ``n_arms``, ``n_patients`` (sum of the arms' n; NaN where
    an arm's n is not given); ``edges``: ``treatment``, ``comparator``, ``n_trials`` (trials with both),
    ``trials`` (their labels). Every pair of arms of a trial is an edge (multi-arm trials count on
    each of their pairs).
    """
    rows = _rows(result)
    nn = pd.to_numeric(rows.get("nma_n", pd.Series(np.nan, index=rows.index)), errors="coerce")
    nodes_order = list(dict.fromkeys(rows["nma_node"]))
    dt = _dt(result)
    if hasattr(dt, "children") and "posterior" in dt.children and "node_effect" in dt["posterior"]:
        nodes_order = [str(x) for x in dt["posterior"]["node"].values]
    nodes = pd.DataFrame({
        "treatment": nodes_order,
        "n_trials": [rows.loc[rows["nma_node"] == t, "nma_trial"].nunique() for t in nodes_order],
        "n_arms": [int((rows["nma_node"] == t).sum()) for t in nodes_order],
        "n_patients": [float(nn[rows["nma_node"] == t].sum(min_count=1)) if nn[rows["nma_node"] == t].notna().all()
                       else np.nan for t in nodes_order],
    })
    pos = {t: i for i, t in enumerate(nodes_order)}
    pairs: dict[tuple[str, str], list[str]] = {}
    for trial, g in rows.groupby("nma_trial", sort=False):
        ts = sorted(set(g["nma_node"]), key=pos.get)
        for i, a in enumerate(ts):
            for b in ts[i + 1:]:
                pairs.setdefault((b, a), []).append(str(trial))
    edges = pd.DataFrame([{"treatment": a, "comparator": b, "n_trials": len(t), "trials": "; ".join(t)}
                          for (a, b), t in sorted(pairs.items(), key=lambda kv: (pos[kv[0][1]], pos[kv[0][0]]))],
                         columns=["treatment", "comparator", "n_trials", "trials"])
    return nodes, edges


def direct_evidence(result) -> dict[frozenset, int]:
    """{frozenset({a, b}): number of trials comparing a and b directly}."""
    _, edges = network_graph(result)
    return {frozenset((a, b)): int(k) for a, b, k in zip(edges["treatment"], edges["comparator"], edges["n_trials"])}


def indirect_only(result) -> pd.DataFrame:
    """Pairs of treatments that no trial compares directly: their relative effect is informed only
    indirectly, through the network (and, for MSC nodes, the class model). Columns ``treatment``,
    ``comparator``."""
    nodes, _ = network_graph(result)
    direct = direct_evidence(result)
    labels = list(nodes["treatment"])
    out = [(b, a) for i, a in enumerate(labels) for b in labels[i + 1:] if frozenset((a, b)) not in direct]
    return pd.DataFrame(out, columns=["treatment", "comparator"])


def loops(result) -> dict:
    """Whether the network has loops of independent evidence (where inconsistency can show).

    The inconsistency degrees of freedom (TSD4): the number of distinct contrasts of a treatment with
    its trial's baseline treatment (the unrelated-mean-effects parameters) minus the number of basic
    parameters (treatments - 1). A multi-arm trial alone closes no loop of independent evidence (it is
    consistent by construction), so its pairs beyond its baseline are not counted. Returns
    ``{"inconsistency_df", "ume_pairs", "basic_parameters", "has_loops", "statement"}``.
    """
    rows = _rows(result)
    nodes, _ = network_graph(result)
    pos = {t: i for i, t in enumerate(nodes["treatment"])}
    pairs = set()
    for _, g in rows.groupby("nma_trial", sort=False):
        ts = sorted(set(g["nma_node"]), key=pos.get)
        pairs |= {(ts[0], t) for t in ts[1:]}
    k = len(nodes) - 1
    icdf = len(pairs) - k
    if icdf > 0:
        text = (f"The network has loops of independent evidence: {len(pairs)} distinct contrasts with a trial "
                f"baseline for {k} basic parameters ({icdf} inconsistency degree{'s' * (icdf != 1)} of freedom); "
                "consistency can be checked (UME model compared by LOO).")
    else:
        text = ("The network has no loops of independent evidence (every contrast with a trial baseline is "
                "a basic parameter; loops inside a multi-arm trial are consistent by construction): "
                "inconsistency cannot be checked, and the consistency assumption is untestable here.")
    return {"inconsistency_df": icdf, "ume_pairs": sorted(f"{b} vs {a}" for a, b in pairs),
            "basic_parameters": k, "has_loops": icdf > 0, "statement": text}


def league_table(result, ci: float = 0.95, lower_is_better: bool | None = None, wide: bool = False,
                 digits: int = 2) -> pd.DataFrame:
    """All pairwise relative effects ``treatment - comparator`` with equal-tailed ``ci`` intervals.

    Long form (default): one row per ordered pair: ``treatment``, ``comparator``, ``mean``, ``sd``,
    ``median``, ``lower``, ``upper``, ``p_better`` (P(treatment better than comparator) in the
    direction set at fit), ``n_direct`` (trials comparing the two directly) and ``evidence`` ("direct"
    or "indirect only"). ``wide=True``: the league matrix of strings ``"mean (lower, upper)"``, rows
    = treatment, columns = comparator (the row's effect against the column's).
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    dt = _dt(result)
    post = dt["posterior"]
    if "d" not in post.data_vars or "reference" not in post["d"].dims:
        raise ValueError("league_table needs a network result with basic parameters d")
    ne = post["node_effect"] if "node_effect" in post.data_vars else node_effects(post.to_dataset())
    lower = (bool(int(dt.attrs.get("bayes_koa_lower_is_better", 1))) if lower_is_better is None
             else bool(lower_is_better))
    labels = [str(x) for x in ne["node"].values]
    vals = ne.transpose("chain", "draw", "node").values.reshape(-1, len(labels))
    try:
        direct = direct_evidence(result)
    except ValueError:
        direct = {}
    a = (1 - ci) / 2
    out = []
    for i, t in enumerate(labels):
        for j, c in enumerate(labels):
            if i == j:
                continue
            x = vals[:, i] - vals[:, j]
            k = direct.get(frozenset((t, c)), 0)
            out.append({"treatment": t, "comparator": c, "mean": float(x.mean()), "sd": float(x.std(ddof=1)),
                        "median": float(np.median(x)), "lower": float(np.quantile(x, a)),
                        "upper": float(np.quantile(x, 1 - a)),
                        "p_better": float(((x < 0) if lower else (x > 0)).mean()),
                        "n_direct": k, "evidence": "direct" if k else "indirect only"})
    table = pd.DataFrame(out)
    table.attrs.update(ci=ci, lower_is_better=lower, reference=labels[0])
    if not wide:
        return table
    fmt = f"{{:.{digits}f}} ({{:.{digits}f}}, {{:.{digits}f}})"
    m = pd.DataFrame("", index=pd.Index(labels, name="treatment"), columns=pd.Index(labels, name="comparator"))
    for r in table.itertuples():
        m.loc[r.treatment, r.comparator] = fmt.format(r.mean, r.lower, r.upper)
    for t in labels:
        m.loc[t, t] = t
    m.attrs.update(table.attrs)
    return m


# ---------------------------------------------------------------------------------------------
# the kind
# ---------------------------------------------------------------------------------------------
class NetworkKind(Kind):
    """Arm-based network meta-analysis with trial baselines and a nested MSC class (module docstring)."""

    name = "network"
    description = "arm-based network meta-analysis, MSC treatments as a nested class"
    loo_dim = "trial"
    # LOO and PPC leave out and check a whole trial: its arm (and contrast) terms summed. A multi-arm trial is
    # one unit (its arms share one baseline and correlated random effects), and in the arm-based form the trial
    # baseline belongs to the trial: leaving out one arm would leave the baseline informed by its other arms.
    loo_by_trial = True
    likelihood = "y_obs"
    default_priors = DEFAULT_PRIORS
    structure_schema = {
        "effects": Option("random", str, "random trial effects (SD tau) or fixed (tau = 0)",
                          choices=("random", "fixed")),
        "consistency": Option("consistency", str, "consistency (basic parameters d) or unrelated mean effects",
                              choices=("consistency", "ume")),
        "reference": Option("placebo", str, "the reference treatment (d = 0); fit(reference=...) overrides it"),
        "levels": Option(("msc", "source", "origin"), tuple, "class levels: [], ['msc'], ['msc', 'source'] or "
                         "['msc', 'source', 'origin']", choices=("msc", "source", "origin")),
        "common": Option(("node",), tuple, "class levels whose members share their parent's effect (SD 0)",
                         choices=("source", "origin", "node")),
        "group": Option(GROUP_COLUMN, str, "the column whose values put a treatment in the class (its source)"),
        "baseline_prior": Option("trial_level", str, "what the baseline prior is on: each trial's weighted mean "
                                 "arm level (decorrelated from the contrasts: faster sampling) or its baseline arm "
                                 "(as TSD2 writes it)", choices=("trial_level", "baseline_arm")),
        "parameterization": Option("noncentered", str, "class levels non-centred, or centred ('mixed'; the "
                                   "trial effects stay non-centred)", choices=("noncentered", "mixed")),
        "moderators": Option((), tuple, "MSC-arm covariates (network meta-regression): n_injections, "
                             "beta_n_injections per extra injection relative to one", choices=tuple(MSC_COVARIATES)),
    }
    labels = {
        "d_msc": "all-MSC mean effect vs the reference",
        "sigma_source": "between-source SD (MSC class)",
        "sigma_origin": "between-origin SD within a source (MSC class)",
        "sigma_class": "between-product SD within a class cell (MSC class)",
        "source_effect": "source mean effect vs the reference",
        "cell_effect": "source x origin effect vs the reference",
        "d": "effect vs the reference (basic parameter)",
        "d_pair": "unrelated mean effect (treatment vs trial baseline)",
        "tau": "between-trial SD",
        "beta_n_injections": MSC_COVARIATES["n_injections"][1],
        "theta_new": "new MSC source, new trial, vs the reference (prediction)",
        "theta_new_source": "new trial of this source vs the reference (prediction)",
    }

    def check_structure(self, structure: dict, where: str) -> dict:
        st = super().check_structure(structure, where)
        if st["levels"] not in _LEVEL_CHAINS:
            raise SpecError(f"{where}: levels of a network must be [], ['msc'], ['msc', 'source'] or "
                            f"['msc', 'source', 'origin'], got {list(st['levels'])}")
        if "msc" in st["levels"]:
            bad = [c for c in st["common"] if c != "node" and c not in st["levels"]]
            if bad:
                raise SpecError(f"{where}: common = {list(st['common'])} names level {bad[0]!r}, which is not in "
                                f"levels {list(st['levels'])}")
        if not str(st["reference"]).strip():
            raise SpecError(f"{where}: reference must name a treatment")
        return st

    def parameters(self, structure: dict) -> list[str]:
        return _parameters(structure)

    def prior_vocabulary(self) -> tuple[str, ...]:
        return ("baseline", "beta_n_injections", "d", "d_msc", "sigma_class", "sigma_origin", "sigma_source", "tau")

    def prepare(self, spec, table, **selection):
        return prepare(spec, table, **selection)

    def build(self, spec, design):
        return build(spec, design)

    def add_predictions(self, dt, spec, seed: int) -> None:
        add_predictions(dt, spec, seed)

    def observation_parts(self, dt, spec) -> dict:
        return observation_parts(dt, spec)

    def trial_log_likelihood(self, dt, spec):
        return trial_log_likelihood(dt, spec)

    def sampler_defaults(self, spec) -> dict:
        """The package defaults (4 x (2000 + 2000) at 0.99), kept by measurement: the main job's network on
        SIMULATED data, 5 seeds (benchmarks/sampler_settings.md, section "Network"). Every target below 0.99
        diverged in some seed (0.9 to 0.98), and 0.99 with 1000 or 1500 draws left the worst seed at R-hat
        1.011-1.013; only 0.99 x (2000 + 2000) had no divergence, R-hat <= 1.006 and bulk ESS >= 400.
        """
        return {}

    def roles(self, spec) -> Roles:
        st = spec.struct
        cls = _class_on(st)
        levels, common = st.get("levels", ()), st.get("common", ())
        g = group_dim(st.get("group", GROUP_COLUMN))
        src, org = cls and "source" in levels, cls and "origin" in levels
        between = tuple(v for v, on in (("sigma_source", src and "source" not in common),
                                        ("sigma_origin", org and "origin" not in common),
                                        ("sigma_class", cls and "node" not in common)) if on)
        ume = st.get("consistency") == "ume"
        return Roles(overall="d_msc" if cls else None,
                     group="source_effect" if src else None, group_dim=g if src else None,
                     cell="cell_effect" if org else None, cell_dims=(g, "origin") if org else (),
                     prediction="theta_new" if cls else None,
                     group_prediction="theta_new_source" if src else None,
                     heterogeneity=("tau",) if st.get("effects", "random") == "random" else (),
                     between_group=between,
                     extra_levels={} if ume else {"treatment": ("node_effect", "node")})

    def summary_vars(self, spec) -> dict[str, str]:
        r = self.roles(spec)
        params = set(self.parameters(spec.struct))
        shown = {"d_msc", *r.between_group, "source_effect" if r.group else "", "cell_effect" if r.cell else "",
                 "tau" if "tau" in params else "", "theta_new" if r.prediction else "",
                 "theta_new_source" if r.group_prediction else ""}
        shown.add("d_pair" if spec.get("consistency") == "ume" else "d")
        shown |= {p for p in params if p.startswith("beta_")}
        if r.overall is None:
            shown.discard("d_msc")
        return {k: v for k, v in self.labels.items() if k in shown}

    def group_counts(self, dt, spec) -> dict[str, dict[tuple, int]]:
        """Trials behind each source, cell and node (0 = prior only)."""
        if "constant_data" not in dt.children or "posterior" not in dt.children:
            return {}
        cd, post = dt["constant_data"], dt["posterior"]
        if "arm_index" not in cd or "d" not in post.data_vars:
            return {}
        ref = _reference(post)
        nodes = [ref] + [str(x) for x in post["d"]["treatment"].values]
        a_treat, _, a_trial = np.asarray(cd["arm_index"].values).astype(int)

        def n_trials(mask):
            return int(len(set(a_trial[mask])))

        per_node = {t: n_trials(a_treat == i) for i, t in enumerate(nodes)}
        out = {"d": {(t, ref): per_node[t] for t in nodes[1:]}, "node_effect": {(t,): k for t, k in per_node.items()}}
        r = self.roles(spec)
        if r.group and "C" in cd:
            C = np.asarray(cd["C"].values)
            msc = [str(x) for x in cd["C"]["msc_node"].values]
            labels = [str(x) for x in post[r.group_dim].values]
            node_pos = np.array([nodes.index(t) for t in msc])
            if r.cell:
                origins = [str(x) for x in post["origin"].values]
                cell = C.argmax(axis=1)
                s_idx, o_idx = cell // len(origins), cell % len(origins)
                out[r.cell] = {(s, o): n_trials(np.isin(a_treat, node_pos[(s_idx == i) & (o_idx == j)]))
                               for i, s in enumerate(labels) for j, o in enumerate(origins)}
            else:
                s_idx = C.argmax(axis=1)
            counts = {(s,): n_trials(np.isin(a_treat, node_pos[s_idx == i])) for i, s in enumerate(labels)}
            out[r.group] = counts
            out[r.group_prediction] = counts
        return out


register(NetworkKind())
