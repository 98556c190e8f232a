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
    "load_koa_msc": "bayes_koa.data",
    "read_trials": "bayes_koa.data",
    "TrialData": "bayes_koa.data",
    "DataValidationError": "bayes_koa.data",
    # effect sizes
    "effect_sizes": "bayes_koa.effects",
    # model spec and priors
    "load_spec": "bayes_koa.spec",
    "list_models": "bayes_koa.spec",
    "ModelSpec": "bayes_koa.spec",
    "parse_prior": "bayes_koa.priors",
    "Prior": "bayes_koa.priors",
    "load_prior_set": "bayes_koa.priors",
    "list_prior_sets": "bayes_koa.priors",
    # model building and fitting
    "build_model": "bayes_koa.build",
    "fit": "bayes_koa.fitting",
    "MetaAnalysis": "bayes_koa.result",
    "load": "bayes_koa.result",
    # reference and summaries
    "exact_normal_normal": "bayes_koa.exact",
    "rank_probabilities": "bayes_koa.ranking",
    "sucra": "bayes_koa.ranking",
    "rank_summary": "bayes_koa.ranking",
    
    "claims_table": "bayes_koa.claims",
    "compare": "bayes_koa.checks",
    "p_or_above": "bayes_koa.build_binomial",
    "simulate": "bayes_koa.simulation",
    "load_simulated": "bayes_koa.simulation",
    "sensitivity": "bayes_koa.prior_sensitivity",
    "sensitivity_grid": "bayes_koa.prior_sensitivity",
    "power_scaling": "bayes_koa.prior_sensitivity",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'bayes_koa' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
