"""``fit``: effect table + model file -> :class:`~bayes_koa.api.result.MetaAnalysis`.

prepare rows (the kind) -> build or reuse the compiled model -> sample (``bayes_koa.inference``) ->
predictions for new trials (the kind) -> provenance in the DataTree's attrs -> the result object.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..data import validate_effect_table
from ..inference.diagnostics import SamplingWarning, diagnose
from ..inference.fit_cache import RECORD_ATTR
from ..inference.provenance import data_hash, versions
from ..inference.sampling import ADAPTATION_ATTR, DEFAULT_SETTINGS, default_settings, sample_spec
from ..kinds import GROUP_COLUMN, get_kind, load_spec, prepare
from .result import MetaAnalysis

__all__ = ["fit", "fit_spec"]


def _measure_of(effects: pd.DataFrame, measure: str | None) -> str | None:
    if measure is not None or "measure" not in effects:
        return measure
    usable = effects.get("excluded_reason", pd.Series("", index=effects.index)).fillna("") == ""
    m = effects.loc[usable, "measure"].dropna().unique()
    if len(m) > 1:
        raise ValueError(f"the effect table mixes measures {sorted(m)}; fit one at a time")
    return m[0] if len(m) else None


def fit(effects: pd.DataFrame, model: str = "source_hierarchical", priors: Mapping[str, Any] | None = None, *,
        outcome: str | None = None, time: float | None = None, measure: str | None = None,
        group: str | None = None, lower_is_better: bool = True,
        seed: int | None = None, draws: int | None = None, tune: int | None = None, chains: int | None = None,
        sampler: str | None = None, target_accept: float | None = None, progress: bool = False,
        structure: Mapping[str, Any] | None = None, warn: bool = True, adapt: bool = True,
        groups: tuple[str, ...] = ("prior",), cache: bool | str | None = None, **selection: Any) -> MetaAnalysis:
    """Fit a model file to a table and return a :class:`~bayes_koa.api.result.MetaAnalysis`.

    ``effects``: the table of :func:`bayes_koa.effect_sizes`, or any DataFrame with ``trial_id``,
    ``yi`` and ``vi`` (or ``sei``) plus the columns the model needs (the grouping column, moderators);
    an arm table for the network kind. Rows the model cannot use are left out and listed in
    ``result.excluded`` with their reason.
    ``priors``: ``{"tau": "HalfNormal(sigma=0.3)", ...}`` or a prior set name; they win over the model
    file, which wins over the kind's defaults.
    ``measure``: the effect measure (taken from the table's ``measure`` column when present); it picks
    the priors of that scale. A table without one needs ``measure=`` or priors for every parameter.
    ``group``: the grouping column of the group level (default ``cell_source``, dim ``source``; any
    other column is its own dim name). ``lower_is_better``: the direction, set once here and honoured
    by ranks, SUCRA, P(best), claims, plots and labels.
    ``seed``: fixes the result; when None a seed is drawn and recorded. Sampler settings not given
    come from the kind (``Kind.sampler_defaults``, chosen by benchmarks/sampler_settings.md), then
    :data:`bayes_koa.inference.sampling.DEFAULT_SETTINGS`; ``provenance["sampler_settings"]`` records
    the ones used and where each came from. ``adapt``: a fit with divergences is refitted once at a
    higher target_accept; the record (``provenance["sampler_settings"]["adaptive_refit"]``,
    ``diagnostics().attrs``) says so. ``groups``: extra groups stored at once (default the prior draws);
    the others ("log_likelihood", "log_prior") are computed when first asked for (``result.require``).
    ``cache``: the fit cache (:mod:`bayes_koa.inference.fit_cache`, like brms's ``file=``): None/True
    return the stored draws of an identical earlier fit (same model, data, priors, seed, settings and
    versions; ``provenance["fit_cache"]`` says it was reused, from which file, fitted when), "refit"
    samples again and replaces the entry, False neither reads nor writes. ``BAYES_KOA_FIT_CACHE=off``
    (or ``BAYES_KOA_CACHE=off``) switches it off.
    ``selection``: kind-specific options for picking rows (e.g. the network kind's ``study=``,
    ``treatment=``, ``reference=``).
    """
    measure = _measure_of(effects, measure)
    st = dict(structure or {})
    if group is not None and group != GROUP_COLUMN:
        st["group"] = group
    spec = load_spec(model, priors=priors, measure=measure or "default", **st)
    settings = {k: v for k, v in dict(draws=draws, tune=tune, chains=chains, sampler=sampler,
                                      target_accept=target_accept).items() if v is not None}
    return fit_spec(spec, effects, outcome=outcome, time=time, lower_is_better=lower_is_better, seed=seed,
                    settings=settings, progress=progress, warn=warn, adapt=adapt, groups=groups, cache=cache,
                    **selection)


def _fitted_time(dt) -> str:
    record = json.loads(dt.attrs.get(RECORD_ATTR, "{}") or "{}")
    if record.get("fitted"):
        return pd.Timestamp(record["fitted"]).isoformat()
    return pd.Timestamp.now(tz="UTC").floor("s").isoformat()


def fit_spec(spec, effects: pd.DataFrame, *, outcome=None, time=None, lower_is_better: bool = True,
             seed: int | None = None, settings: Mapping[str, Any] | None = None, progress: bool = False,
             warn: bool = True, adapt: bool = True, groups: tuple[str, ...] = ("prior",),
             cache: bool | str | None = None, **selection: Any) -> MetaAnalysis:
    """:func:`fit` for a resolved :class:`~bayes_koa.spec.ModelSpec`."""
    kind_defaults = get_kind(spec.kind).sampler_defaults(spec)
    given = dict(settings or {})
    settings = {**DEFAULT_SETTINGS, **kind_defaults, **given}
    origin = {k: "argument" if k in given else "kind default" if k in kind_defaults else "package default"
              for k in ("draws", "tune", "chains", "target_accept")}
    if int(settings["chains"]) < 1 or int(settings["draws"]) < 1 or int(settings["tune"]) < 0:
        raise ValueError(f"chains and draws must be >= 1 and tune >= 0, got chains={settings['chains']}, "
                         f"draws={settings['draws']}, tune={settings['tune']}")
    kind = get_kind(spec.kind)
    # every route into a fit passes the same checks (labels, duplicated columns, cell rules)
    attrs = dict(effects.attrs)
    effects = validate_effect_table(effects, require_effects=kind.normal_likelihood(spec))
    effects.attrs.update({k: v for k, v in attrs.items() if k not in effects.attrs})
    sel = {k: v for k, v in dict(outcome=outcome, time=time, **selection).items() if v is not None}
    design, excluded = prepare(spec, effects, **sel)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    dt = sample_spec(spec, design, seed=seed, draws=int(settings["draws"]), tune=int(settings["tune"]),
                     chains=int(settings["chains"]), sampler=str(settings["sampler"]),
                     target_accept=float(settings["target_accept"]), progress=progress, adapt=adapt,
                     extra_groups=tuple(groups), cache=cache)  # the others: result.require(), when asked
    adaptation = json.loads(dt.attrs.pop(ADAPTATION_ATTR))
    if adaptation["refit"]:  # the draws kept are the refit's: record its target_accept
        settings = {**settings, "target_accept": adaptation["refit_target_accept"]}
        origin["target_accept"] = "adaptive refit"
    before = set(dt["posterior"].data_vars)
    kind.add_predictions(dt, spec, seed)
    post = dt["posterior"].to_dataset()
    for v in set(post.data_vars) - before:  # drawn after sampling: not diagnosed as sampled quantities
        post[v].attrs["bayes_koa_role"] = "prediction"
    dt["posterior"] = type(dt)(post)
    simulated = bool(effects.attrs.get("simulated", False))
    dt.attrs.update({
        "bayes_koa_model": spec.name,
        "bayes_koa_model_version": spec.version,
        "bayes_koa_model_file": spec.file_text,
        "bayes_koa_model_file_sha256": spec.file_hash,
        "bayes_koa_model_path": spec.path,
        "bayes_koa_structure": json.dumps(spec.structure_json()),
        "bayes_koa_measure": spec.measure,
        "bayes_koa_priors": json.dumps({p: {"prior": str(pr), "from": pr.origin} for p, pr in spec.priors}),
        "bayes_koa_data_sha256": data_hash(effects),
        "bayes_koa_raw_data_sha256": str(effects.attrs.get("data_sha256", "")),
        "bayes_koa_data_source": str(effects.attrs.get("source", "user DataFrame")),
        "bayes_koa_simulated": int(simulated),
        "bayes_koa_outcome": "" if outcome is None else str(outcome),
        "bayes_koa_time": "" if time is None else str(time),
        "bayes_koa_selection": json.dumps({k: v for k, v in selection.items()}, default=str),
        "bayes_koa_lower_is_better": int(bool(lower_is_better)),
        "bayes_koa_seed": int(seed),
        "bayes_koa_sampler": str(settings["sampler"]),
        # the settings used, where each came from, and the adaptive-refit record (inference.sampling)
        "bayes_koa_sampler_settings": json.dumps({**{k: settings[k] for k in ("draws", "tune", "chains", "target_accept")},
                                                  "from": origin, "adaptive_refit": adaptation}),
        "bayes_koa_versions": json.dumps(versions()),
        # when the draws were made (an earlier process's time when the fit cache served them)
        "bayes_koa_created": _fitted_time(dt),
    })
    result = MetaAnalysis(dt=dt, spec=spec, effects=design.rows, excluded=excluded, _design=design)
    diag = result.diagnostics()
    if warn and diag.attrs["problems"]:
        warnings.warn("Sampling problems:\n- " + "\n- ".join(diag.attrs["problems"]), SamplingWarning, stacklevel=3)
    return result
