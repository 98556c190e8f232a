"""bayes_koa: Bayesian meta-analysis of MSC injections for knee osteoarthritis.

The public API is imported lazily: ``import bayes_koa`` is fast, and PyMC (slow to import) is
loaded only when a model is built or fitted. See ARCHITECTURE.md for the pipeline.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (one place; keeps the package import cheap)
_EXPORTS = {
    # data
    "load_koa_msc": "bayes_koa.koa.bundled",
    "read_trials": "bayes_koa.data",
    "TrialData": "bayes_koa.data",
    "DataValidationError": "bayes_koa.data",
    "validate_effect_table": "bayes_koa.data",
    # effect sizes
    "effect_sizes": "bayes_koa.effects",
    # model spec, priors, kinds
    "load_spec": "bayes_koa.kinds",
    "list_models": "bayes_koa.spec",
    "ModelSpec": "bayes_koa.spec",
    "parse_prior": "bayes_koa.spec",
    "Prior": "bayes_koa.spec",
    "load_prior_set": "bayes_koa.spec",
    "list_prior_sets": "bayes_koa.spec",
    "Kind": "bayes_koa.kinds",
    "Option": "bayes_koa.kinds",
    "Roles": "bayes_koa.kinds",
    "register_kind": "bayes_koa.kinds",
    "get_kind": "bayes_koa.kinds",
    "build_model": "bayes_koa.kinds",
    # fitting and results
    "fit": "bayes_koa.api.fitting",
    "MetaAnalysis": "bayes_koa.api.result",
    "load": "bayes_koa.api.result",
    "SamplingWarning": "bayes_koa.inference.diagnostics",
    "SamplingInterrupted": "bayes_koa.inference.sampling",
    # reference and summaries
    "exact_normal_normal": "bayes_koa.inference.exact",
    "rank_probabilities": "bayes_koa.analysis.ranking",
    "sucra": "bayes_koa.analysis.ranking",
    "rank_summary": "bayes_koa.analysis.ranking",
    "compare": "bayes_koa.analysis.checks",
    "claims_table": "bayes_koa.koa.claims",
    "p_or_above": "bayes_koa.kinds.binomial",
    "simulate": "bayes_koa.koa.simulation",
    "load_simulated": "bayes_koa.koa.simulation",
    "sensitivity": "bayes_koa.workflows.sensitivity",
    "design_study": "bayes_koa.koa.design",
    "compare_additions": "bayes_koa.koa.design",
    "sensitivity_grid": "bayes_koa.workflows.sensitivity",
    "power_scaling": "bayes_koa.workflows.sensitivity",
    # issue 13: heterogeneity, clinical relevance, small-study effects, evidence sensitivity, report
    "with_trial_columns": "bayes_koa.effects.trial_info",
    "mcid_table": "bayes_koa.koa.mcid",
    "default_mcid": "bayes_koa.koa.mcid",
    "egger_test": "bayes_koa.analysis.small_study",
    "peters_test": "bayes_koa.analysis.small_study",
    "evidence_sensitivity": "bayes_koa.workflows.evidence",
    "small_study_model": "bayes_koa.workflows.evidence",
    "report_parts": "bayes_koa.api.report",
    "write_report": "bayes_koa.api.report",
}

_ALIASES = {"register_kind": "register"}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'bayes_koa' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return __all__
