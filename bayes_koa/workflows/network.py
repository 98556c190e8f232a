"""Inconsistency check of a network meta-analysis: unrelated mean effects (UME) against consistency.

:func:`inconsistency` refits a ``network`` result as the unrelated-mean-effects model of NICE DSU
TSD4 (Dias et al. 2011/2013): every contrast of a treatment with its trial's baseline treatment gets
its own effect ``d_pair``, with the same priors for ``d`` (on every pair), ``tau`` and the
baselines, the same rows, seed and sampler settings. The two are compared by PSIS-LOO
(:func:`bayes_koa.analysis.checks.compare`, leave one trial out, its arms together, as
:func:`bayes_koa.analysis.checks.loo`; the same data in both). A UME fit that predicts clearly better (its elpd higher by more than twice the SE of the
difference) points to inconsistency: compare each pair's UME estimate with the consistency model's
(``pairs``). The consistency model's between-trial SD against the UME one's (``tau``): a UME tau
much smaller also signals inconsistency (TSD4 sec. 2.3).

Where the network has no loops of independent evidence (:func:`bayes_koa.kinds.network.loops`), the
two models are the same model and nothing is refitted: the statement says so.

With the MSC class model on, the consistency fit also shrinks the MSC nodes towards their class;
the UME fit has no class model, so a difference can come from the class assumption too. To isolate
inconsistency, pass a fit with ``structure={"levels": []}``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis.checks import ParetoKWarning, compare
from ..inference.sampling import sample_spec, sampler_settings
from ..kinds import get_kind, prepare
from ..kinds.network import loops, node_effects
from ..spec.model_spec import ModelSpec

__all__ = ["inconsistency", "InconsistencyCheck", "ume_spec"]


@dataclass
class InconsistencyCheck:
    """What :func:`inconsistency` found (``comparison`` and ``ume`` are None without loops)."""

    statement: str
    loops: dict
    comparison: pd.DataFrame | None = None    # arviz.compare table: consistency vs UME
    pairs: pd.DataFrame | None = None         # each UME pair: UME and consistency estimates
    tau: pd.DataFrame | None = None           # between-trial SD under both models
    ume: object | None = None                 # the UME result

    def __repr__(self) -> str:
        return self.statement


def ume_spec(spec: ModelSpec) -> ModelSpec:
    """The UME version of a network spec: same priors for d, tau and baseline; no class, no element priors."""
    kind = get_kind(spec.kind)
    st = {**spec.struct, "consistency": "ume"}
    params = kind.parameters(st)
    new = spec.with_structure(consistency="ume")
    return ModelSpec(**{**new.__dict__, "priors": tuple((p, pr) for p, pr in new.priors if p in params)})


def _interval(x: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    a = (1 - ci) / 2
    return float(np.quantile(x, a)), float(np.quantile(x, 1 - a))


def inconsistency(result, ci: float = 0.95) -> InconsistencyCheck:
    """UME against consistency by LOO where the network has loops; a plain statement where it has none."""
    if result.spec.kind != "network":
        raise ValueError(f"inconsistency needs a result of the network kind, got kind {result.spec.kind!r}")
    if result.spec.get("consistency") == "ume":
        raise ValueError("this result is already the UME model; pass the consistency fit")
    info = loops(result)
    if not info["has_loops"]:
        return InconsistencyCheck(statement=info["statement"], loops=info)
    spec = ume_spec(result.spec)
    design, excluded = prepare(spec, result.effects, **result.selection)
    st = sampler_settings(result)
    # the comparison needs only the UME fit's log-likelihood; the prior groups come when asked (ume.require)
    dt = sample_spec(spec, design, adapt=True, seed=st["seed"], draws=st["draws"], tune=st["tune"], chains=st["chains"],
                     sampler=st["sampler"], target_accept=st["target_accept"], extra_groups=("log_likelihood",))
    get_kind(spec.kind).add_predictions(dt, spec, st["seed"])
    dt.attrs.update(result.dt.attrs)
    dt.attrs["bayes_koa_structure"] = json.dumps(spec.structure_json())
    dt.attrs["bayes_koa_priors"] = json.dumps({p: {"prior": str(pr), "from": pr.origin} for p, pr in spec.priors})
    ume = type(result)(dt=dt, spec=spec, effects=design.rows, excluded=result.excluded)
    with warnings.catch_warnings():  # high Pareto k is stated in the statement below
        warnings.simplefilter("ignore", ParetoKWarning)
        table = compare({"consistency": result, "UME": ume})
    post_c, post_u = result.dt["posterior"], dt["posterior"]
    ne = node_effects(post_c.to_dataset())
    draws_c = ne.transpose("chain", "draw", "node").values.reshape(-1, ne.sizes["node"])
    nodes = [str(x) for x in ne["node"].values]
    rows = []
    dp = post_u["d_pair"]
    for p in [str(x) for x in dp["pair"].values]:
        t, b = p.split(" vs ")
        u = dp.sel(pair=p).values.ravel()
        c = draws_c[:, nodes.index(t)] - draws_c[:, nodes.index(b)]
        lo_u, hi_u = _interval(u, ci)
        lo_c, hi_c = _interval(c, ci)
        rows.append({"pair": p, "ume_mean": float(u.mean()), "ume_lower": lo_u, "ume_upper": hi_u,
                     "consistency_mean": float(c.mean()), "consistency_lower": lo_c, "consistency_upper": hi_c,
                     "difference": float(u.mean() - c.mean())})
    pairs = pd.DataFrame(rows)
    tau = None
    if "tau" in post_c and "tau" in post_u:
        tau = pd.DataFrame([{"model": name, "median": float(np.median(x)), "lower": _interval(x, ci)[0],
                             "upper": _interval(x, ci)[1]}
                            for name, x in (("consistency", post_c["tau"].values.ravel()),
                                            ("UME", post_u["tau"].values.ravel()))]).set_index("model")
    best = table.index[0]
    diff = float(table.loc["UME", "elpd"] - table.loc["consistency", "elpd"])
    dse = float(table["dse"].max())
    if best == "UME" and diff > 2 * dse:
        verdict = ("the UME model predicts clearly better (elpd difference more than twice its SE): evidence of "
                   "inconsistency; look at the pairs whose UME and consistency estimates differ most")
    else:
        verdict = ("no evidence of inconsistency by LOO (the UME model does not predict better by more than twice "
                   "the SE of the difference)")
    text = (f"{info['statement']} elpd_loo UME - consistency = {diff:.2f} (SE {dse:.2f}): {verdict}."
            + ("" if tau is None else f" Between-trial SD: consistency {tau.loc['consistency', 'median']:.3g}, "
               f"UME {tau.loc['UME', 'median']:.3g} (posterior medians)."))
    n_high = {m: int(table.loc[m, "n_high_k"]) for m in table.index}
    if any(n_high.values()):
        n_units = int(result.dt["posterior"]["trial"].size)
        text += (f" Caution: PSIS-LOO is over the {n_units} trials (each left out whole), and {n_high['consistency']} "
                 f"(consistency) / {n_high['UME']} (UME) of them have Pareto k above the threshold (a trial that alone "
                 "informs a node or a pair changes the posterior too much to be importance-sampled), so the elpd "
                 "difference is approximate.")
    if result.spec.get("levels", ()):
        text += (" The consistency fit has the MSC class model, the UME fit has not: refit with levels = [] to "
                 "separate inconsistency from the class assumption.")
    return InconsistencyCheck(statement=text, loops=info, comparison=table, pairs=pairs, tau=tau, ume=ume)
