"""Evidence sensitivity, cumulative meta-analysis and a small-study (PET) robustness model: refits.

All refits of the fitted model go through :func:`bayes_koa.inference.sampling.sample_spec`.

**Dropping rows cheaply ("masked refits").** A refit without some rows would change the model's
shape, and each new shape is a new compiled model (seconds to compile). Instead a dropped row keeps
its place and gets no weight: its sampling SD is set to :data:`MASK_SD_FACTOR` x the largest SD of the
fit, so its likelihood is flat to ~1e-12 over any plausible effect and the posterior of every other
parameter equals that of the model without the row (its own trial effect then follows its prior and
is not used). The design keeps the fit's labels and shape, so every masked refit reuses the fit's
compiled model (no compilation). A group (source) whose rows are all dropped is prior-only in that
refit and is left out of its ranking. ``tests/unit/test_evidence.py`` checks a masked refit against
the exact quadrature posterior of the model fitted to the kept rows only.

**Settings.** Refits use :data:`QUICK` (2 chains x 400 draws after 400 tuning steps, or the fit's own
numbers where smaller; the fit's seed and target acceptance) unless ``settings="fit"`` (the fit's own settings) or a dict is given; every
row of a table carries its Monte Carlo SE and its sampler problems.

* :func:`evidence_sensitivity` -- refit without secondary-source rows (``evidence`` column), without
  the highest-risk trials (a user-named risk-of-bias column) and without each trial in turn (all rows
  of the trial); a table of scenarios and a table of which conclusions survive.
* :func:`cumulative` -- the pooled effect and P(best) per source as trials accrue by year.
* :func:`small_study_model` -- the model with the trials' standard error as a moderator (PET,
  Stanley & Doucouliagos 2014, Res Synth Methods 5:60-78; ``"peese"``: the variance), whose group
  means are then the effects of an infinitely precise trial; the ranking with and without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ..analysis.cumulative import cumulative_steps
from ..analysis.ranking import rank_summary
from ..inference.diagnostics import diagnose
from ..inference.sampling import sample_spec, sampler_settings
from ..kinds import get_kind, prepare, spec_from_text
from ..util.draws import mcse_mean

__all__ = ["QUICK", "MASK_SD_FACTOR", "EvidenceSensitivity", "masked_refit", "evidence_sensitivity",
           "cumulative", "small_study_model", "PET_SLOPE_PRIOR", "refit_settings"]

QUICK = {"draws": 400, "tune": 400, "chains": 2}
MASK_SD_FACTOR = 1e6
P_CONCLUSIVE = 0.95  # "the overall effect favours MSC" when P(benefit) >= this
# PET slope prior: the slope is in effect units per unit of standard error (scale-free). A slope of 2
# shifts a trial's effect by two of its SEs, about what selection on two-sided p < 0.05 (z = 1.96)
# produces (Stanley & Doucouliagos 2014); Normal(0, 2) keeps slopes of that size plausible.
PET_SLOPE_PRIOR = "Normal(mu=0, sigma=2)"

Progress = Callable[[int, int, str], None] | None


def refit_settings(result, settings="quick") -> dict:
    """Seed and sampler settings of the refits: the fit's, with draws/tune/chains of :data:`QUICK`
    (``"quick"``), the fit's own (``"fit"``), or a dict overriding the fit's."""
    st = sampler_settings(result)
    if settings == "quick":  # never more than the fit itself had
        st.update({k: min(int(st[k]), v) for k, v in QUICK.items()})
    elif settings == "fit":
        pass
    elif isinstance(settings, Mapping):
        unknown = set(settings) - set(st)
        if unknown:
            raise ValueError(f"refit settings: unknown keys {sorted(unknown)}; known {sorted(st)}")
        st.update(settings)
    else:
        raise ValueError(f"settings must be 'quick', 'fit' or a dict; got {settings!r}")
    return st


def _check_kind(result) -> None:
    if not get_kind(result.spec.kind).normal_likelihood(result.spec):
        raise NotImplementedError(f"model {result.spec.name} (kind {result.spec.kind}): masked refits need a "
                                  "normal likelihood with one row per trial entry (the univariate kinds)")


def _design(result, spec=None):
    """The design of ``spec`` (default the fit's) on the fit's rows, and those rows; prepared once per result
    and spec (the report's ~50 masked refits and group look-ups each took a ``prepare`` of 35 ms), handed
    out as a copy because refits change it (``design.se``)."""
    import copy

    spec = spec or result.spec
    memo = result.__dict__.setdefault("_evidence_designs", {})
    hit = memo.get(id(spec))
    if hit is None or hit[0] is not spec or hit[1] is not result.effects:
        eff = result.effects.reset_index(drop=True)
        design, excluded = prepare(spec, eff, **result.selection)
        if len(excluded):
            raise RuntimeError(f"refit of {result.spec.name}: rows the fit used are now left out "
                               f"({', '.join(sorted(set(excluded['excluded_reason'])))})")
        hit = memo[id(spec)] = (spec, result.effects, design, eff)
    return copy.deepcopy(hit[2]), hit[3].copy()


def masked_refit(result, keep, settings="quick", spec=None) -> xr.DataTree:
    """Refit ``result``'s model giving no weight to the rows of ``result.effects`` where ``keep`` is
    False (see the module docstring). Returns the DataTree (posterior, constant data) with
    ``attrs["kept"]`` (row mask) and ``attrs["problems"]`` (sampler problems of the overall effect and
    the group means)."""
    _check_kind(result)
    design, eff = _design(result, spec)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (len(eff),):
        raise ValueError(f"keep must have one entry per row used by the fit ({len(eff)}); got shape {keep.shape}")
    if not keep.any():
        raise ValueError("a refit needs at least one row; every row was dropped")
    se = np.asarray(design.se, dtype=float).copy()
    se[~keep] = MASK_SD_FACTOR * float(se.max())
    design.se = se
    st = refit_settings(result, settings)
    dt = sample_spec(spec or result.spec, design, adapt=True, seed=st["seed"], draws=st["draws"], tune=st["tune"],
                     chains=st["chains"], sampler=st["sampler"], target_accept=st["target_accept"],
                     extra_groups=False)
    roles = get_kind(result.spec.kind).roles(result.spec)
    watch = [v for v in (roles.overall, roles.group) if v and v in dt["posterior"]]
    dt.attrs["problems"] = " ".join(diagnose(dt, var_names=watch).attrs["problems"])
    dt.attrs["kept"] = keep.astype(int).tolist()
    return dt


def _groups_with_rows(result, keep: np.ndarray) -> list[str] | None:
    roles = get_kind(result.spec.kind).roles(result.spec)
    if not roles.group:
        return None
    design, _ = _design(result)
    if design.source_idx is None:
        return None
    kept = set(np.asarray(design.source_idx)[keep].tolist())
    return [s for i, s in enumerate(design.source) if i in kept]


def _quantities(result, dt: xr.DataTree, keep: np.ndarray, mcid: float | None, lower: bool) -> dict:
    """Overall effect, P(benefit), P(best) per group with rows, first-ranked group (of one refit or the fit)."""
    roles = get_kind(result.spec.kind).roles(result.spec)
    post = dt["posterior"]
    mu = post[roles.overall]
    better = (mu < 0) if lower else (mu > 0)
    out = {"mu_mean": float(mu.mean()), "mu_lb": float(mu.quantile(0.025)), "mu_ub": float(mu.quantile(0.975)),
           "mu_mcse": float(mcse_mean(mu)), "p_benefit": float(better.mean()),
           "p_benefit_mcse": float(mcse_mean(better.astype(float)))}
    if mcid is not None:
        t = abs(float(mcid))
        ind = ((mu < -t) if lower else (mu > t)).astype(float)
        out["p_benefit_gt_mcid"] = float(ind.mean())
    groups = _groups_with_rows(result, keep)
    out["groups"] = groups
    if groups is not None and len(groups) >= 2:
        da = post[roles.group].sel({roles.group_dim: groups})
        rk = rank_summary(da, dim=roles.group_dim, lower_is_better=lower)
        out["p_best"] = dict(zip(rk[roles.group_dim].astype(str), rk["p_best"]))
        first = max(out["p_best"], key=out["p_best"].get)
        out["first_ranked"] = first
        out["p_best_first"] = out["p_best"][first]
    else:
        out["p_best"] = {}
        out["first_ranked"] = groups[0] if groups else ""
        out["p_best_first"] = np.nan
    return out


def _psis_by_trial(result, tid: pd.Series):
    """PSIS weights for leaving out each trial (all its rows): log-likelihoods (integrated over the
    trial effects where the kind allows) summed per trial id. Returns (trial ids, normalised weights
    with dims (trial_id, chain, draw), Pareto k per trial)."""
    import warnings

    import arviz_stats as az  # the statistics only: the arviz meta-package also imports arviz_plots

    from ..analysis.checks import LIKELIHOOD, _log_likelihood, _resolve_integrated

    ll = _log_likelihood(result, _resolve_integrated(result, None))
    ids = list(dict.fromkeys(tid))
    arr = tid.to_numpy()
    summed = xr.concat([ll.isel(trial=np.flatnonzero(arr == t)).sum("trial") for t in ids], dim="trial_id")
    summed = summed.assign_coords(trial_id=ids).transpose("chain", "draw", "trial_id")
    post = result.dt["posterior"].to_dataset()
    roles = get_kind(result.spec.kind).roles(result.spec)
    tree = xr.DataTree.from_dict({"posterior": post[[roles.overall]],
                                  "log_likelihood": xr.Dataset({LIKELIHOOD: summed})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # high k is handled below (refits), not warned about
        elpd = az.loo(tree, pointwise=True, var_name=LIKELIHOOD)
    w = np.exp(elpd.log_weights).transpose("trial_id", "chain", "draw")
    w = w / w.sum(("chain", "draw"))
    return ids, w, np.asarray(elpd.pareto_k.values, dtype=float)


def _wquantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    o = np.argsort(x)
    c = np.cumsum(w[o])
    return float(x[o][min(np.searchsorted(c, q * c[-1]), len(x) - 1)])


def _weighted_quantities(result, w: xr.DataArray, keep: np.ndarray, mcid, lower: bool) -> dict:
    """:func:`_quantities` of the fit's draws reweighted by ``w`` (dims chain, draw; sums to 1)."""
    from ..analysis.checks import _is_mcse, _r_eff

    roles = get_kind(result.spec.kind).roles(result.spec)
    post = result.dt["posterior"]
    mu = post[roles.overall]
    better = ((mu < 0) if lower else (mu > 0)).astype(float)
    wf, mf = w.values.ravel(), mu.values.ravel()
    out = {"mu_mean": float((w * mu).sum()), "mu_lb": _wquantile(mf, wf, 0.025), "mu_ub": _wquantile(mf, wf, 0.975),
           "mu_mcse": float(_is_mcse(w, mu, _r_eff(mu))), "p_benefit": float((w * better).sum()),
           "p_benefit_mcse": float(_is_mcse(w, better, _r_eff(better)))}
    if mcid is not None:
        t = abs(float(mcid))
        out["p_benefit_gt_mcid"] = float((w * ((mu < -t) if lower else (mu > t))).sum())
    groups = _groups_with_rows(result, keep)
    out["groups"] = groups
    out["p_best"], out["first_ranked"], out["p_best_first"] = {}, (groups[0] if groups else ""), np.nan
    if groups is not None and len(groups) >= 2:
        da = post[roles.group].sel({roles.group_dim: groups})
        best = da.argmin(roles.group_dim) if lower else da.argmax(roles.group_dim)
        pb = {g: float((w * (best == i)).sum()) for i, g in enumerate(groups)}
        first = max(pb, key=pb.get)
        out.update(p_best=pb, first_ranked=first, p_best_first=pb[first])
    return out


@dataclass
class EvidenceSensitivity:
    """``scenarios``: one row per refit (what was dropped, the estimates, the conclusions' values);
    ``conclusions``: one row per conclusion of the full fit (holds in how many scenarios, which not)."""

    scenarios: pd.DataFrame
    conclusions: pd.DataFrame


def _high_risk_mask(col: pd.Series, high_risk) -> np.ndarray:
    if high_risk is not None:
        vals = {str(v).strip().lower() for v in (high_risk if isinstance(high_risk, (list, tuple, set)) else [high_risk])}
        return col.astype(str).str.strip().str.lower().isin(vals).to_numpy()
    num = pd.to_numeric(col, errors="coerce")
    if num.notna().all():
        return (num == num.max()).to_numpy()
    return col.astype(str).str.strip().str.lower().eq("high").to_numpy()


def _borderline(q: dict) -> bool:
    """P(benefit) within 2 Monte Carlo SEs of the threshold: a flip there may be sampling noise."""
    return abs(q["p_benefit"] - P_CONCLUSIVE) <= 2 * q["p_benefit_mcse"]


def _conclusion_values(q: dict, full: dict, mcid: float | None) -> dict:
    out = {"overall benefit (P >= 0.95)": q["p_benefit"] >= P_CONCLUSIVE}
    if full.get("first_ranked") and full.get("p_best"):
        out[f"{full['first_ranked']} ranked first"] = q.get("first_ranked") == full["first_ranked"]
    if mcid is not None:
        out["overall benefit > MCID more likely than not"] = q.get("p_benefit_gt_mcid", np.nan) > 0.5
    return out


def evidence_sensitivity(result, risk_of_bias: str | None = None, *, high_risk=None,
                         evidence: str = "evidence", leave_one_out: str | bool = "psis", mcid: float | None = None,
                         settings="quick", progress: Progress = None) -> EvidenceSensitivity:
    """Which conclusions survive dropping weaker evidence.

    Scenarios (each a masked refit, module docstring): ``all rows`` (the same refit settings, nothing
    dropped: the like-for-like reference), ``without secondary-source rows`` (rows whose ``evidence``
    column is ``secondary``), ``without highest risk of bias`` (``risk_of_bias``: a column of
    ``result.effects``; its rows equal to ``high_risk``, default: ``"high"`` for text, the largest value
    for numbers; a trial is dropped whole when any of its rows is high-risk) and ``without <trial>``
    for each trial (all rows of the trial): ``leave_one_out="psis"`` (default) reweights the fit's draws
    by PSIS (log-likelihoods integrated over the trial effects, summed over the trial's rows) and makes
    a masked refit only where Pareto k > 0.7; ``"refit"`` refits every trial; False skips them. The
    ``method`` column says which each row is. A scenario that cannot be made (no
    such column, nothing to drop, nothing left) is listed with its reason. Conclusions: the overall
    effect favours MSC with P >= 0.95; the first-ranked group stays first; with ``mcid``, P(overall
    benefit > MCID) > 0.5."""
    _check_kind(result)
    eff = result.effects.reset_index(drop=True)
    lower = result.lower_is_better
    n = len(eff)
    tid = eff["trial_id"].astype(str)
    plans: list[tuple[str, np.ndarray | None, str]] = [("all rows", np.ones(n, bool), "")]
    if evidence in eff:
        sec = eff[evidence].astype(str).str.strip().str.lower().eq("secondary").to_numpy()
        plans.append(("without secondary-source rows", ~sec if sec.any() else None,
                      "" if sec.any() else f"no row has {evidence} = secondary"))
    else:
        plans.append(("without secondary-source rows", None, f"the effect table has no {evidence!r} column"))
    if risk_of_bias is not None:
        if risk_of_bias not in eff:
            raise ValueError(f"risk_of_bias: the effect table has no column {risk_of_bias!r}; it has "
                             f"{', '.join(map(str, eff.columns))}")
        high = _high_risk_mask(eff[risk_of_bias], high_risk)
        high = tid.isin(set(tid[high])).to_numpy()  # the whole trial
        plans.append(("without highest risk of bias", ~high if high.any() else None,
                      "" if high.any() else f"no row is high risk in {risk_of_bias!r}"))
    if leave_one_out not in (False, None, "psis", "refit", True):
        raise ValueError(f"leave_one_out must be 'psis', 'refit' or False; got {leave_one_out!r}")
    psis = {}
    if leave_one_out:
        if leave_one_out == "psis":
            ids, w, ks = _psis_by_trial(result, tid)
            psis = {t: (w.sel(trial_id=t, drop=True), float(k)) for t, k in zip(ids, ks)}
        for t in dict.fromkeys(tid):
            plans.append((f"without {t}", (tid != t).to_numpy(), t))
    from ..analysis.checks import K_THRESHOLD

    rows, full = [], None
    for i, (name, keep, why) in enumerate(plans):
        if progress:
            progress(i + 1, len(plans), name)
        trial = why if name == f"without {why}" else None
        why = "" if trial else why
        if keep is not None and not keep.any():
            keep, why = None, "no row would be left"
        base = {"scenario": name, "rows_dropped": 0 if keep is None else int((~keep).sum()),
                "trials_dropped": "" if keep is None else ", ".join(dict.fromkeys(tid[~keep])),
                "rows_used": 0 if keep is None else int(keep.sum())}
        if keep is None:
            rows.append({**base, "method": "", "note": why})
            continue
        if trial in psis and psis[trial][1] <= K_THRESHOLD:
            q = _weighted_quantities(result, psis[trial][0], keep, mcid, lower)
            base.update(method="psis", pareto_k=psis[trial][1])
            problems = ""
        else:
            dt = masked_refit(result, keep, settings)
            q = _quantities(result, dt, keep, mcid, lower)
            base.update(method="refit", pareto_k=psis[trial][1] if trial in psis else np.nan)
            problems = dt.attrs["problems"]
        if full is None:
            full = q
        r = {**base, **{k: v for k, v in q.items() if k not in ("p_best", "groups")}}
        r.update(_conclusion_values(q, full, mcid))
        r["p_benefit_borderline"] = _borderline(q)
        r["note"] = problems
        rows.append(r)
    scen = pd.DataFrame(rows)
    names = list(_conclusion_values(full, full, mcid))
    made = scen[scen["rows_used"] > 0]
    conc = []
    for c in names:
        holds_full = bool(made.iloc[0][c])
        others = made.iloc[1:]
        flip = others[others[c].astype(bool) != holds_full]
        if c.startswith("overall benefit (P"):  # flips within 2 MC SEs of 0.95 are not counted as real
            noisy = flip[flip["p_benefit_borderline"].astype(bool)]
            flip = flip[~flip["p_benefit_borderline"].astype(bool)]
        else:
            noisy = flip.iloc[:0]
        fails = flip["scenario"].tolist()
        conc.append({"conclusion": c, "in all rows": holds_full, "scenarios": len(others),
                     "same in": len(others) - len(fails) - len(noisy), "survives": not fails,
                     "changes without": "; ".join(s.removeprefix("without ") for s in fails),
                     "within MC error of the threshold": "; ".join(s.removeprefix("without ") for s in noisy["scenario"])})
    conc = pd.DataFrame(conc)
    st = refit_settings(result, settings)
    for t in (scen, conc):
        t.attrs.update(refit_settings=st, method="masked refits on the fit's compiled model",
                       risk_of_bias=risk_of_bias or "", mcid=mcid)
    return EvidenceSensitivity(scenarios=scen, conclusions=conc)


def cumulative(result, by: str = "year", *, min_trials: int = 2, mcid: float | None = None,
               settings="quick", progress: Progress = None) -> pd.DataFrame:
    """Cumulative meta-analysis: one masked refit per step of :func:`bayes_koa.analysis.cumulative.
    cumulative_steps` (trials accrued up to each ``by`` value, e.g. year). Rows without a ``by`` value
    (registry-only trials have no publication year) never enter; they are named in ``attrs["no_year"]``.
    Columns: ``step``, ``year``, ``n_trials``, ``added``, ``mu_mean``, ``mu_lb``, ``mu_ub``, ``p_benefit``
    (and its MC SE), ``first_ranked``, ``P(best) <group>`` for each group with rows at that step."""
    _check_kind(result)
    eff = result.effects.reset_index(drop=True)
    if by not in eff:
        raise ValueError(f"cumulative by {by!r}: the effect table has no {by!r} column (for the bundled data, "
                         "bayes_koa.effects.with_trial_columns adds year and evidence)")
    has = pd.to_numeric(eff[by], errors="coerce").notna().to_numpy()
    no_year = list(dict.fromkeys(eff.loc[~has, "trial_id"].astype(str)))
    steps = cumulative_steps(eff[has], year=by, min_trials=min_trials)
    tid = eff["trial_id"].astype(str)
    rows = []
    for i, s in enumerate(steps):
        if progress:
            progress(i + 1, len(steps), f"{by} {s.year}")
        keep = tid.isin(set(s.trial_ids)).to_numpy() & has
        dt = masked_refit(result, keep, settings)
        q = _quantities(result, dt, keep, mcid, result.lower_is_better)
        r = {"step": s.step, by: s.year, "n_trials": s.n_trials, "rows_used": int(keep.sum()),
             "added": ", ".join(s.added), **{k: v for k, v in q.items() if k not in ("p_best", "groups", "p_best_first")}}
        for g, p in q["p_best"].items():
            r[f"P(best) {g}"] = p
        r["note"] = dt.attrs["problems"]
        rows.append(r)
    table = pd.DataFrame(rows)
    table.attrs.update(no_year=no_year, by=by, refit_settings=refit_settings(result, settings),
                       method="masked refits on the fit's compiled model")
    return table


def small_study_model(result, moderator: str = "pet", *, prior: str | None = None, settings="quick",
                      progress: Progress = None):
    """The fitted model plus a precision moderator: ``"pet"`` adds the rows' standard error (column
    ``sei``), ``"peese"`` their variance (``vi``), as a meta-regression term. The group means (and the
    overall effect) are then those of a trial with SE 0. Returns ``(ranking, summary)``: the ranking
    with and without the moderator (columns ``group``, ``p_best``, ``sucra``, ``mean``, and the same
    ``*_adjusted``), and a small table of the overall effect, the slope and its P(slope in the
    small-study direction: smaller trials show larger benefits)."""
    _check_kind(result)
    col = {"pet": "sei", "peese": "vi"}.get(moderator)
    if col is None:
        raise ValueError(f"moderator must be 'pet' or 'peese'; got {moderator!r}")
    eff = result.effects.reset_index(drop=True)
    if col not in eff:
        eff[col] = np.sqrt(eff["vi"]) if col == "sei" else eff["sei"] ** 2
    spec0 = result.spec
    mods = tuple(spec0.get("moderators", ()))
    if col in mods:
        raise ValueError(f"model {spec0.name} already has {col!r} as a moderator")
    if prior is None:
        prior = PET_SLOPE_PRIOR if col == "sei" else \
            f"Normal(mu=0, sigma={2.0 / float(np.median(np.sqrt(eff['vi']))):.4g})"  # 2 SEs at the median SE
    priors = {p: str(pr) for p, pr in spec0.priors}
    priors[f"beta_{col}"] = prior
    structure = {k: v for k, v in spec0.structure if k != "kind"}
    structure["moderators"] = (*mods, col)
    spec = spec_from_text(spec0.file_text, path=spec0.path, priors=priors, measure=spec0.measure, **structure)
    if progress:
        progress(1, 1, f"{moderator.upper()} model")
    design, excluded = prepare(spec, eff, **result.selection)
    if len(excluded):
        raise RuntimeError(f"{moderator.upper()} model: rows of the fit are left out ({set(excluded['excluded_reason'])})")
    st = refit_settings(result, settings)
    dt = sample_spec(spec, design, adapt=True, seed=st["seed"], draws=st["draws"], tune=st["tune"], chains=st["chains"],
                     sampler=st["sampler"], target_accept=st["target_accept"], extra_groups=False)
    roles = get_kind(spec.kind).roles(spec)
    lower = result.lower_is_better
    post, post0 = dt["posterior"], result.dt["posterior"]
    beta = post[f"beta_{col}"]
    # small-study effect: smaller (less precise) trials show larger benefits -> slope in the benefit direction
    ss = ((beta < 0) if lower else (beta > 0)).astype(float)
    mu, mu0 = post[roles.overall], post0[roles.overall]
    summary = pd.DataFrame([
        {"quantity": f"overall effect, {spec0.name}", "mean": float(mu0.mean()), "lb": float(mu0.quantile(0.025)),
         "ub": float(mu0.quantile(0.975)), "p": float(((mu0 < 0) if lower else (mu0 > 0)).mean())},
        {"quantity": f"overall effect at SE 0 ({moderator.upper()})", "mean": float(mu.mean()),
         "lb": float(mu.quantile(0.025)), "ub": float(mu.quantile(0.975)),
         "p": float(((mu < 0) if lower else (mu > 0)).mean())},
        {"quantity": f"slope on {col} ({moderator.upper()}); p = P(small-study direction)", "mean": float(beta.mean()),
         "lb": float(beta.quantile(0.025)), "ub": float(beta.quantile(0.975)), "p": float(ss.mean())},
    ])
    summary.attrs.update(prior=prior, moderator=moderator, refit_settings=st,
                         problems=" ".join(diagnose(dt, var_names=[roles.overall, f"beta_{col}"]).attrs["problems"]))
    if not roles.group:
        return pd.DataFrame(), summary
    groups = [s for s in design.source if s in set(np.asarray(design.source)[design.source_idx])]
    g = roles.group_dim
    if len(groups) < 2:
        return pd.DataFrame(), summary
    r0 = rank_summary(post0[roles.group].sel({g: groups}), dim=g, lower_is_better=lower).set_index(g)
    r1 = rank_summary(post[roles.group].sel({g: groups}), dim=g, lower_is_better=lower).set_index(g)
    m0 = post0[roles.group].sel({g: groups}).mean(("chain", "draw")).to_pandas()
    m1 = post[roles.group].sel({g: groups}).mean(("chain", "draw")).to_pandas()
    ranking = pd.DataFrame({"mean": m0, "mean_rank": r0["mean_rank"], "p_best": r0["p_best"], "sucra": r0["sucra"],
                            "mean_adjusted": m1, "mean_rank_adjusted": r1["mean_rank"],
                            "p_best_adjusted": r1["p_best"], "sucra_adjusted": r1["sucra"]})
    ranking.index = ranking.index.astype(str)
    ranking.index.name = g
    ranking = ranking.reset_index()
    ranking["first_without"] = ranking["p_best"] == ranking["p_best"].max()
    ranking["first_with"] = ranking["p_best_adjusted"] == ranking["p_best_adjusted"].max()
    ranking.attrs.update(summary.attrs)
    return ranking, summary
