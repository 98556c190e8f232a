"""Model files and priors as pure data: reading, prior grammar, prior sets, precedence. Imports no PyMC."""

from .files import MEASURES, SpecError, list_models, model_path, models_dir
from .model_spec import ModelSpec, read_model_text, resolve_priors
from .priors import DISTRIBUTIONS, Prior, PriorError, PriorSet, list_prior_sets, load_prior_set, parse_prior

__all__ = ["MEASURES", "SpecError", "list_models", "model_path", "models_dir", "ModelSpec", "read_model_text",
           "resolve_priors", "DISTRIBUTIONS", "Prior", "PriorError", "PriorSet", "list_prior_sets",
           "load_prior_set", "parse_prior"]
