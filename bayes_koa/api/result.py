"""The result of a fit: wraps the ArviZ DataTree and delegates to pure functions.

``MetaAnalysis`` holds four things (the DataTree, the ModelSpec, the rows used, the rows left out)
and computes nothing itself: summaries, rankings and checks come from :mod:`bayes_koa.analysis`,
claims from :mod:`bayes_koa.koa.claims`, plots from :mod:`bayes_koa.plots`, refits from
:mod:`bayes_koa.workflows`, diagnostics from :mod:`bayes_koa.inference`. It never fits anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from ..analysis import checks as _checks
from ..analysis import clinical as _clinical
from ..analysis import small_study as _small_study
from ..analysis import ranking as _ranking
from ..analysis import summaries as _summaries
from ..inference.diagnostics import diagnose, diagnostics_flag
from ..inference.store import load_datatree, save_datatree, table_from_attr, table_to_attr
from ..kinds import get_kind, spec_from_text
from ..kinds import binomial as _binomial
from ..kinds import multivariate as _multivariate
from ..kinds import network as _network
from ..koa import claims as _claims
from ..koa import mcid as _mcid
from ..plots import arviz as _azplots
from ..plots import figures as _plots
from ..plots import funnel as _funnel
from ..plots import network as _netplots
from ..spec.model_spec import ModelSpec
from ..workflows import evidence as _evidence
from ..workflows import influence as _influence
from ..workflows import network as _netcheck
from ..workflows import sensitivity as _sensitivity

__all__ = ["MetaAnalysis", "load"]

SIMULATED_BANNER = "SIMULATED DATA: results below come from data simulated by bayes_koa.simulate, not from trials."


@dataclass
class MetaAnalysis:
    dt: xr.DataTree
    spec: ModelSpec
    effects: pd.DataFrame
    excluded: pd.DataFrame
    # the kind's design the fit sampled (not saved; rebuilt from ``effects`` after load when needed)
    _design: Any = field(default=None, repr=False, compare=False)

    # -- provenance ---------------------------------------------------------------------------
    @property
    def simulated(self) -> bool:
        return bool(int(self.dt.attrs.get("bayes_koa_simulated", 0)))

    @property
    def provenance(self) -> dict:
        a = self.dt.attrs
        out = {k.removeprefix("bayes_koa_"): a[k] for k in a if k.startswith("bayes_koa_")
               and k not in ("bayes_koa_model_file", "bayes_koa_effects", "bayes_koa_excluded")}
        for k in ("priors", "versions", "structure", "sampler_settings", "fit_cache"):
            if k in out:
                out[k] = json.loads(out[k])
        return out

    @property
    def priors(self) -> pd.DataFrame:
        """The resolved priors and where each came from (argument, model file, package default)."""
        return self.spec.priors_table()

    @property
    def posterior(self) -> xr.DataTree:
        return self.dt["posterior"]

    # -- delegation ---------------------------------------------------------------------------
    def summary(self, ci: float = 0.95, include_trials: bool = True) -> pd.DataFrame:
        """Posterior summary; ``pi95_lb``/``pi95_ub``: the prediction interval of a new trial on the
        overall effect's row and of a new trial of each group on the group rows."""
        table = _summaries.summary_table(self.dt, self.spec, ci=ci, include_trials=include_trials)
        if get_kind(self.spec.kind).roles(self.spec).prediction:
            table = _clinical.add_prediction_columns(table, self.dt, self.spec, ci)
        return self._with_diagnostics(table)

    def contraction(self) -> pd.DataFrame:
        """How much the data narrowed each prior (1 - var post / var prior); ``weak`` = the prior decides."""
        return _summaries.prior_contraction(self.dt, self.spec)

    def diagnostics(self) -> pd.DataFrame:
        """:func:`~bayes_koa.inference.diagnostics.diagnose`, computed once per set of draws (a copy is returned)."""
        post = self.dt["posterior"]
        key = tuple((k, id(v.variable._data)) for k, v in post.data_vars.items())
        cached = self.__dict__.get("_diagnostics_cache")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_diagnostics_cache"] = (key, diagnose(self.dt))
        return cached[1].copy()

    def require(self, *groups: str) -> "MetaAnalysis":
        """Add the extra groups asked for ("prior", "log_likelihood", "log_prior"), once, when first needed.

        A fit stores the prior draws; log-likelihood and log-prior are computed here on the cached
        compiled model (LOO, PPC, power scaling ask for them). Returns the result itself."""
        from ..inference.sampling import add_groups

        missing = [g for g in groups if g not in self.dt.children]
        if missing and "posterior" in self.dt.children:  # nothing to compute from without draws
            if self._design is None:
                from ..kinds import prepare

                p = self.provenance
                sel = {**self.selection, "outcome": p.get("outcome") or None,
                       "time": float(p["time"]) if p.get("time") else None}
                self._design = prepare(self.spec, self.effects, **{k: v for k, v in sel.items() if v is not None})[0]
            add_groups(self.dt, self.spec, self._design, missing, seed=int(self.provenance.get("seed", 0)),
                       sampler=str(self.provenance.get("sampler", "nutpie")))
        return self

    def draws(self, var: str) -> xr.DataArray:
        return _summaries.draws(self.dt, var)

    @property
    def lower_is_better(self) -> bool:
        """The direction set at fit: True when a smaller effect is better (ranks, SUCRA, P(best), labels)."""
        return bool(int(self.dt.attrs.get("bayes_koa_lower_is_better", 1)))

    @property
    def selection(self) -> dict:
        """Kind-specific row-selection options the fit was given (re-used by refits)."""
        return json.loads(self.dt.attrs.get("bayes_koa_selection", "{}") or "{}")

    @property
    def kind(self):
        return get_kind(self.spec.kind)

    def level_draws(self, level: str | None = None):
        """Draws to rank at ``level`` (default: the kind's group level) and the dim they are ranked over."""
        return _ranking.level_draws(self.dt, self.spec, level)

    def _direction(self, lower_is_better: bool | None) -> bool:
        return self.lower_is_better if lower_is_better is None else bool(lower_is_better)

    def _diagnostics_flag(self) -> dict:
        """``diagnostics_flag`` of this fit, computed once per DataTree (az.summary of every variable takes
        about a second on 8000 draws, and every table carries the flag)."""
        cached = self.__dict__.get("_flag_cache")
        if cached is None or cached[0] is not self.dt:
            cached = (self.dt, diagnostics_flag(self.diagnostics()))
            self.__dict__["_flag_cache"] = cached
        return {**cached[1], "problems": list(cached[1]["problems"])}  # a copy per table

    def _with_diagnostics(self, table):
        table.attrs["diagnostics"] = self._diagnostics_flag()
        table.attrs["simulated"] = self.simulated
        return table

    def rank(self, level: str | None = None, lower_is_better: bool | None = None) -> pd.DataFrame:
        """Mean rank, P(best), SUCRA with its interval, and P(rank = k) per group (or cell).

        Rank 1 = best in the direction set at fit (``lower_is_better``). Only cells with at least one
        trial are ranked (prior-only cells are left out). ``attrs["diagnostics"]`` carries the fit's health.
        """
        d, dim = self.level_draws(level)
        return self._with_diagnostics(_ranking.rank_summary(d, dim=dim, lower_is_better=self._direction(lower_is_better)))

    def rank_probabilities(self, level: str | None = None, lower_is_better: bool | None = None) -> xr.DataArray:
        d, dim = self.level_draws(level)
        return _ranking.rank_probabilities(d, dim=dim, lower_is_better=self._direction(lower_is_better))

    def pairwise(self, level: str | None = None, lower_is_better: bool | None = None):
        """P(row better than column)."""
        d, dim = self.level_draws(level)
        return self._with_diagnostics(_ranking.pairwise_better(d, dim=dim, lower_is_better=self._direction(lower_is_better)))

    def sensitivity(self, prior_sets=None, **kwargs):
        """Refit under other priors (compiled once): see :func:`bayes_koa.sensitivity`."""
        return _sensitivity.sensitivity(self, prior_sets, **kwargs)

    def claims(self, **kwargs) -> pd.DataFrame:
        return _claims.claims_from_result(self, **kwargs)

    # -- model checks (bayes_koa.checks) -----------------------------------------------------
    def posterior_predictive(self, **kwargs):
        return _checks.posterior_predictive(self, **kwargs)

    def ppc(self, **kwargs) -> pd.DataFrame:
        """Per trial: observed y, predictive interval, posterior predictive p-value and LOO-PIT."""
        return _checks.ppc_table(self, **kwargs)

    def plot_ppc(self, **kwargs):
        return _plots.plot_ppc(self, **kwargs)

    def loo(self, **kwargs) -> pd.DataFrame:
        """PSIS-LOO per trial with Pareto k; totals in ``.attrs``."""
        return _checks.loo(self, **kwargs)

    def influence(self, **kwargs) -> pd.DataFrame:
        """Leave-one-trial-out change in the pooled effect and the ranking (PSIS, refits where k is high)."""
        return _influence.influence(self, **kwargs)

    def p_better_by_time(self, by_source: bool = False, ci: float = 0.95) -> pd.DataFrame:
        """Time-course models: P(MSC better than control) at each time (overall, or per source)."""
        return _multivariate.p_better_by_time(self, by_source=by_source, ci=ci)

    def p_or_above(self, threshold: float = 1.0) -> pd.DataFrame:
        """Adverse-event models: P(odds ratio > threshold) overall and per source, with MC SE."""
        return _binomial.p_or_above(self, threshold=threshold)

    # -- heterogeneity, clinical relevance, small-study effects, evidence sensitivity (issue 13) --
    def heterogeneity(self, ci: float = 0.95) -> pd.DataFrame:
        """tau^2, I^2 (fraction) and H^2 per level and in total (Higgins-Thompson typical within-trial
        variance of the rows used); ``attrs["prediction"]``: :meth:`predictions`."""
        table = _clinical.fit_heterogeneity(self.dt, self.spec, self.effects["vi"].to_numpy(float), ci=ci)
        table.attrs["prediction"] = self.predictions(ci)
        return self._with_diagnostics(table)

    def predictions(self, ci: float = 0.95) -> pd.DataFrame:
        """Prediction intervals of a new trial (of a new group) and of a new trial of each group
        (columns ``pi_lb``, ``pi_ub``) beside the interval of the mean (``mean_lb``, ``mean_ub``)."""
        return self._with_diagnostics(_clinical.prediction_table(self.dt, self.spec, ci))

    def default_mcid(self) -> dict | None:
        """The shipped, sourced MCID for this fit's outcome, measure and scale (None when none fits)."""
        scale = None
        if "scale" in self.effects and self.effects["scale"].notna().any():
            vals = self.effects["scale"].dropna().astype(str).unique()
            scale = vals[0] if len(vals) == 1 else None
        return _mcid.default_mcid(self.provenance.get("outcome") or None, self.spec.measure, scale)

    def p_mcid(self, mcid: float | None = None) -> pd.DataFrame:
        """P(benefit larger than the MCID) for the overall effect, each group, a new trial and a new trial
        of each group, with its Monte Carlo SE. ``mcid`` None: the shipped MCID for this outcome and scale
        (its source in ``attrs["mcid_source"]``); an error when none fits (then give ``mcid=``)."""
        info = None
        if mcid is None:
            info = self.default_mcid()
            if info is None:
                raise ValueError(f"no shipped MCID for outcome {self.provenance.get('outcome')!r} on measure "
                                 f"{self.spec.measure}: give mcid= (in {self.spec.measure} units)")
            mcid = info["mcid"]
        table = _clinical.clinical_table(self.dt, self.spec, float(mcid), lower_is_better=self.lower_is_better)
        table.attrs["mcid_source"] = info or {"mcid": float(mcid), "source": "given by the user"}
        return self._with_diagnostics(table)

    def _ni(self):
        if {"n_msc", "n_control"} <= set(self.effects):
            n = pd.to_numeric(self.effects["n_msc"], errors="coerce") + pd.to_numeric(self.effects["n_control"], errors="coerce")
            return n.to_numpy(float)
        return None

    def small_study(self, model: str = "rma") -> pd.DataFrame:
        """Egger's and Peters' regression tests (as metafor's ``regtest``, ``model`` "rma" or "lm") on the
        rows used. A test that cannot be run (e.g. sample sizes missing for Peters) has its reason in
        ``note``. Multi-arm trials contribute correlated rows (shared control arm), which the tests
        ignore, as metafor's do."""
        eff = self.effects
        y, v = eff["yi"].to_numpy(float), eff["vi"].to_numpy(float)
        ids = eff["trial_id"].astype(str).tolist()
        rows = []
        for name, fn in (("Egger (predictor: SE)", lambda: _small_study.egger_test(y, v, model=model, trial_ids=ids)),
                         ("Peters (predictor: 1/n)", lambda: _small_study.peters_test(y, v, ni=self._ni(), model=model,
                                                                                    trial_ids=ids))):
            try:
                r = fn().to_dict()
                lim = r.pop("limit_ci")
                r["limit_lb"], r["limit_ub"] = (lim if lim else (None, None))
                rows.append({"test": name, **r, "note": ""})
            except (TypeError, ValueError) as e:
                rows.append({"test": name, "model": model, "k": len(eff), "note": str(e).splitlines()[0]})
        return self._with_diagnostics(pd.DataFrame(rows))

    def plot_funnel(self, ax=None, **kwargs):
        """Contour-enhanced funnel plot of the rows used, the pooled mean as a dashed line."""
        roles = get_kind(self.spec.kind).roles(self.spec)
        est = float(self.dt["posterior"][roles.overall].mean()) if roles.overall else None
        kwargs.setdefault("xlabel", f"effect ({self.spec.measure}; treatment - control)")
        kwargs.setdefault("estimate", est)
        if self.simulated:
            kwargs.setdefault("title", "SIMULATED DATA: contour-enhanced funnel plot")
        return _funnel.funnel(self.effects["yi"].to_numpy(float), self.effects["sei"].to_numpy(float)
                              if "sei" in self.effects else None, ax,
                              **({} if "sei" in self.effects else {"vi": self.effects["vi"].to_numpy(float)}), **kwargs)

    def small_study_model(self, moderator: str = "pet", **kwargs):
        """Bayesian PET (``"pet"``: SE as moderator) or PEESE (``"peese"``: variance) model: ``(ranking with
        and without it, summary of the overall effect and the slope)``; see
        :func:`bayes_koa.workflows.evidence.small_study_model`."""
        ranking, summary = _evidence.small_study_model(self, moderator, **kwargs)
        return self._with_diagnostics(ranking), self._with_diagnostics(summary)

    def evidence_sensitivity(self, risk_of_bias: str | None = None, **kwargs):
        """Refits without secondary-source rows, without the highest-risk trials (``risk_of_bias``: a column)
        and without each trial: :func:`bayes_koa.workflows.evidence.evidence_sensitivity`."""
        out = _evidence.evidence_sensitivity(self, risk_of_bias, **kwargs)
        self._with_diagnostics(out.scenarios)
        self._with_diagnostics(out.conclusions)
        return out

    def cumulative(self, by: str = "year", **kwargs) -> pd.DataFrame:
        """Cumulative meta-analysis by ``by`` (year): :func:`bayes_koa.workflows.evidence.cumulative`."""
        return self._with_diagnostics(_evidence.cumulative(self, by, **kwargs))

    # -- network models (bayes_koa.kinds.network, workflows.network, plots.network) -------------
    def league(self, **kwargs) -> pd.DataFrame:
        """Network models: every pairwise relative effect (league table); ``wide=True`` for the matrix."""
        return _network.league_table(self, **kwargs)

    def indirect_only(self) -> pd.DataFrame:
        """Network models: the pairs of treatments no trial compares directly."""
        return _network.indirect_only(self)

    def network_graph(self):
        """Network models: (nodes, edges) tables of the network fitted."""
        return _network.network_graph(self)

    def inconsistency(self, **kwargs):
        """Network models: UME vs consistency by LOO where the network has loops, else a statement."""
        return _netcheck.inconsistency(self, **kwargs)

    def plot_network(self, **kwargs):
        """Network models: the network graph (node area = patients, edge width = trials)."""
        return _netplots.plot_network(self, **kwargs)

    # -- standard Bayesian plots, drawn by arviz-plots (bayes_koa.plots.arviz) -------------------
    def plot_trace(self, var_names=None, **kwargs):
        return _azplots.plot_trace(self, var_names, **kwargs)

    def plot_prior_vs_posterior(self, var_names=None, **kwargs):
        return _azplots.plot_prior_vs_posterior(self, var_names, **kwargs)

    def plot_ppc_dist(self, seed: int | None = None, **kwargs):
        return _azplots.plot_ppc_dist(self, seed, **kwargs)

    def plot_loo_pit(self, seed: int | None = None, **kwargs):
        return _azplots.plot_loo_pit(self, seed, **kwargs)

    def plot_psense(self, var_names=None, **kwargs):
        return _azplots.plot_psense(self, var_names, **kwargs)

    def plot_forest(self, **kwargs):
        return _plots.forest(self, **kwargs)

    def plot_rankogram(self, level: str | None = None, **kwargs):
        return _plots.rankogram(self, level=level, **kwargs)

    def plot_prior_posterior(self, var: str = "tau", **kwargs):
        return _plots.prior_posterior(self, var=var, **kwargs)

    def plot_densities(self, **kwargs):
        return _plots.source_densities(self, **kwargs)

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the whole result (draws, data used, left-out rows, provenance) to one netCDF file.

        Atomic (a temporary file in the same folder, then renamed) and with a checksum of the draws
        that :func:`load` verifies (:mod:`bayes_koa.inference.store`)."""
        from ..inference import fit_cache

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        dt = self.dt
        record = dt.attrs.get(fit_cache.RECORD_ATTR)
        if record:  # whether this process sampled the draws is the run's business, not the file's
            dt = dt.copy()
            dt.attrs[fit_cache.RECORD_ATTR] = json.dumps({k: v for k, v in json.loads(record).items() if k != "reused"})
        # an identical file saved before (a second run served by the fit cache) is linked, not rewritten
        return save_datatree(dt, path, {"bayes_koa_effects": table_to_attr(self.effects),
                                        "bayes_koa_excluded": table_to_attr(self.excluded)},
                             reuse=fit_cache.results_dir())

    @classmethod
    def load(cls, path: str | Path) -> "MetaAnalysis":
        return load(path)

    # -- display ------------------------------------------------------------------------------
    def _header(self) -> list[str]:
        p = self.provenance
        lines = [SIMULATED_BANNER] if self.simulated else []
        what = ", ".join(x for x in (p.get("outcome") and f"outcome {p['outcome']}",
                                     p.get("time") and f"month {p['time']}") if x)
        lines.append(f"bayes_koa MetaAnalysis: model {self.spec.name} v{self.spec.version}, "
                     f"{len(self.effects)} comparisons used, {len(self.excluded)} left out"
                     + (f" ({what})" if what else "") + f", measure {self.spec.measure}")
        lines.append(f"data sha256 {p['data_sha256'][:12]} ({p['data_source']}); seed {p['seed']}; "
                     f"sampler {p['sampler']}")
        return lines

    def __repr__(self) -> str:
        diag = self.diagnostics()
        lines = self._header()
        lines.append("priors: " + "; ".join(f"{r.parameter} ~ {r.prior} [{r['from']}]"
                                             for _, r in self.priors.iterrows()))
        s = self.summary(include_trials=False)
        cols = [c for c in s.columns if c.startswith("eti") or c in ("mean", "median", "p_benefit")]
        lines.append(s[cols].round(3).to_string())
        probs = diag.attrs["problems"]
        lines.append("diagnostics: " + ("OK (no divergences, R-hat <= 1.01, ESS sufficient)" if not probs
                                        else "PROBLEMS\n  - " + "\n  - ".join(probs)))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        diag = self.diagnostics()
        parts = [f"<p><b>{html.escape(l)}</b></p>" for l in self._header()]
        parts.append("<details><summary>priors</summary>" + self.priors.to_html(index=False) + "</details>")
        parts.append(self.summary(include_trials=False).round(3).to_html())
        probs = diag.attrs["problems"]
        parts.append("<p>diagnostics: " + ("OK" if not probs else "<b>PROBLEMS</b><ul>" + "".join(
            f"<li>{html.escape(p)}</li>" for p in probs) + "</ul>") + "</p>")
        if len(self.excluded):
            parts.append(f"<details><summary>{len(self.excluded)} rows left out</summary>"
                         + self.excluded[[c for c in ("trial_id", "comparison", "outcome", "time_months",
                                                      "excluded_reason") if c in self.excluded]].to_html(index=False)
                         + "</details>")
        return "\n".join(parts)


def load(path: str | Path) -> MetaAnalysis:
    """Read a result written by :meth:`MetaAnalysis.save`: checksum verified, file closed, groups present."""
    dt = load_datatree(path)
    a = dict(dt.attrs)
    missing = [k for k in ("bayes_koa_effects", "bayes_koa_excluded", "bayes_koa_model_file", "bayes_koa_structure",
                           "bayes_koa_priors", "bayes_koa_measure") if k not in a]
    if missing:
        raise ValueError(f"{path}: not a bayes_koa result (missing {', '.join(missing)})")
    effects = table_from_attr(a.pop("bayes_koa_effects"))
    excluded = table_from_attr(a.pop("bayes_koa_excluded"))
    dt.attrs = a
    structure = json.loads(a["bayes_koa_structure"])
    saved = json.loads(a["bayes_koa_priors"])
    spec = spec_from_text(a["bayes_koa_model_file"], path=a.get("bayes_koa_model_path", "<saved>"),
                          measure=a["bayes_koa_measure"], priors={p: v["prior"] for p, v in saved.items()},
                          **{k: v for k, v in structure.items() if k != "kind"})
    if spec.structure_json() != structure:
        raise ValueError(f"{path}: the saved model structure {structure} does not match its model file's {spec.structure_json()}")
    # keep where each prior came from when it was fitted
    spec = ModelSpec(**{**spec.__dict__, "priors": tuple(
        (p, pr.with_origin(saved[p]["from"])) for p, pr in spec.priors)})
    return MetaAnalysis(dt=dt, spec=spec, effects=effects, excluded=excluded)
