"""Model kinds: the interface and registry (:mod:`.base`), one module per kind, and the spec loader.

``load_spec`` reads a model file (``bayes_koa.spec``), lets the file's kind validate its
``[structure]`` table and name its parameters, and resolves the priors (call argument > model file >
the kind's defaults). ``prepare`` and ``build_model`` dispatch to the kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..spec.files import model_path
from ..spec.model_spec import ModelSpec, read_model_text, resolve_priors
from ..spec.priors import PriorSet
from . import binomial as _binomial  # noqa: F401  (registers the built-in kinds)
from . import multivariate as _multivariate  # noqa: F401
from . import network as _network  # noqa: F401
from . import univariate as _univariate  # noqa: F401
from .base import GROUP_COLUMN, Kind, Option, Roles, get_kind, group_dim, register, registered_kinds

__all__ = ["Kind", "Option", "Roles", "register", "get_kind", "registered_kinds", "load_spec", "spec_from_text",
           "prepare", "build_model", "data_values", "kind_of", "GROUP_COLUMN", "group_dim"]


def load_spec(model: str | Path = "source_hierarchical", priors: Mapping[str, Any] | PriorSet | str | None = None,
              measure: str | None = "SMD", **structure: Any) -> ModelSpec:
    """Read a model file and resolve its priors for ``measure``.

    ``model`` is a name from :func:`bayes_koa.list_models` or a path to a TOML file (copy one, change
    it, fit it). ``priors`` maps parameter names to prior strings (or is a prior set); they win over
    the model file, which wins over the kind's defaults. ``structure`` overrides keys of the file's
    ``[structure]`` table (e.g. ``between_trial_sd="per_source"``, ``group="district"``).
    """
    path = model_path(model)
    return spec_from_text(path.read_text(), path=path, priors=priors, measure=measure, **structure)


def spec_from_text(text: str, path: str | Path = "<text>", priors: Mapping[str, Any] | PriorSet | str | None = None,
                   measure: str | None = "SMD", **structure: Any) -> ModelSpec:
    """:func:`load_spec` on the text of a model file (also used to restore a saved result)."""
    path = Path(path)
    raw = read_model_text(text, path)
    st = {**raw.get("structure", {}), **{k: v for k, v in structure.items() if v is not None}}
    kind = get_kind(st.get("kind", ""))
    checked = kind.check_structure(st, str(path))
    measure = measure or "default"
    params = kind.parameters(checked)
    name = raw.get("name", path.stem)
    resolved = resolve_priors(params, measure, model=name, call=priors, file_priors=raw.get("priors", {}),
                              file_name=path.name, defaults=kind.default_priors,
                              positive=kind.positive_parameters(checked), vocabulary=kind.prior_vocabulary())
    return ModelSpec(name=name, version=str(raw.get("version", "0")), description=raw.get("description", ""),
                     kind=kind.name, structure=tuple(sorted(checked.items())), measure=measure,
                     priors=resolved, path=str(path), file_text=text)


def kind_of(spec: ModelSpec) -> Kind:
    return get_kind(spec.kind)


def prepare(spec: ModelSpec, table, **selection):
    """Pick the rows ``spec`` can use; return its design and the rows left out with reasons."""
    return get_kind(spec.kind).prepare(spec, table, **selection)


def build_model(spec: ModelSpec, design):
    """Write the PyMC model for ``spec`` on ``design``. Returns a ``pm.Model``; samples nothing."""
    return get_kind(spec.kind).build(spec, design)


def data_values(spec: ModelSpec, design) -> dict[str, np.ndarray]:
    """Values of every ``pm.Data`` container of the model: observations and prior parameters.

    A design may list ``unused_parameters``: priors its model does not use (the network kind's
    ``baseline`` when every trial reports contrasts only), which get no container."""
    vals = dict(design.data())
    unused = set(getattr(design, "unused_parameters", ()))  # priors the design's model does not have
    for name, prior in spec.priors:
        if name in unused:
            continue
        for (_, value), dn in zip(prior.params, prior.data_names(name).values()):
            vals[dn] = np.asarray(value, dtype="float64")
    return vals
