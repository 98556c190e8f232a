"""The model-kind interface and its registry.

A *kind* is one module that declares everything about a family of models (like bambi's family
table): the keys of its ``[structure]`` table, its parameters and their default priors per effect
measure, how it picks rows (``prepare``), how it writes the PyMC model (``build``), the draws it adds
for new trials (``add_predictions``), the variables a summary shows with their labels, the roles its
variables play (overall effect, group means, cells, predictions, heterogeneity SDs) which rankings,
claims, forest plots and sweeps read, and its LOO unit. Code outside ``bayes_koa.kinds`` never names a
kind's variables: it asks the kind (:func:`get_kind`).

Writing a kind::

    class MyKind(Kind):
        name = "my_kind"
        structure_schema = {"levels": Option((), tuple, "grouping levels")}
        default_priors = {"default": {"mu": "Normal(mu=0, sigma=1)"}}
        def parameters(self, structure): return ["mu"]
        def prepare(self, spec, table, **selection): ...   # -> (design, rows left out)
        def build(self, spec, design): ...                  # -> pm.Model
        def roles(self, spec): return Roles(overall="mu")
    register(MyKind())

A design object (returned by ``prepare``) has ``coords`` (dict of dim -> labels), ``shape_key()``,
``rows`` (the table rows used, in model order) and ``data()`` (the ``pm.Data`` values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from ..spec.files import SpecError

__all__ = ["Kind", "Option", "Roles", "register", "get_kind", "registered_kinds", "GROUP_COLUMN", "group_dim",
           "LOG_LIKELIHOOD_ATTR"]

# The grouping column of the KOA application and the dim it becomes. Any other column name is its
# own dim name (``fit(..., group="district")`` gives dim ``district``).
GROUP_COLUMN = "cell_source"


def group_dim(column: str) -> str:
    """The dim name of a grouping column: ``cell_source`` -> ``source``, anything else as it is."""
    return "source" if column == GROUP_COLUMN else str(column)


# DataTree attribute a kind sets when its log_likelihood group is the density of y with the trial effects
# integrated out (value "integrated"); absent means the conditional density given the sampled effects
LOG_LIKELIHOOD_ATTR = "bayes_koa_log_likelihood"


@dataclass(frozen=True)
class Option:
    """One key of a kind's ``[structure]`` table: its default, its type or choices, what it means."""

    default: Any
    type: type | tuple[type, ...] = object
    doc: str = ""
    choices: tuple = ()

    def check(self, key: str, value: Any, where: str) -> Any:
        if self.type is tuple:
            if not isinstance(value, (list, tuple)):
                raise SpecError(f"{where}: structure.{key} must be a list, got {value!r}")
            value = tuple(value)
        elif self.type is not object:
            bool_mixup = isinstance(value, bool) and self.type is not bool
            if bool_mixup or not isinstance(value, self.type):
                name = getattr(self.type, "__name__", str(self.type))
                raise SpecError(f"{where}: structure.{key} must be of type {name}, got {value!r}")
        if self.choices:
            vals = value if isinstance(value, tuple) and self.type is tuple else (value,)
            bad = [v for v in vals if v not in self.choices]
            if bad:
                raise SpecError(f"{where}: structure.{key} = {value!r}: must be {'one of ' if len(self.choices) > 1 else ''}"
                                f"{', '.join(map(repr, self.choices))}")
        return value


@dataclass(frozen=True)
class Roles:
    """Which posterior variable plays which part. ``None`` / empty: the kind has no such variable."""

    overall: str | None = None             # the pooled effect (e.g. mu)
    group: str | None = None               # one mean per group (dim ``group_dim``)
    group_dim: str | None = None
    cell: str | None = None                # nested cells (dims ``cell_dims``), e.g. source x origin
    cell_dims: tuple[str, ...] = ()
    prediction: str | None = None          # effect in a new trial (of a new group)
    group_prediction: str | None = None    # effect in a new trial of each group
    trial: str | None = None               # shrunken trial effects (dim ``trial``)
    heterogeneity: tuple[str, ...] = ()    # between-trial SDs (tau)
    between_group: tuple[str, ...] = ()    # SDs of the group levels
    by_time: str | None = None             # the overall effect at each time (dim ``time``)
    ratio: tuple[str, ...] = ()            # variables that are ratios (exp of a log effect): not "effects"
    extra_levels: dict[str, tuple[str, str]] = field(default_factory=dict)  # other rankable levels: name -> (var, dim)

    def effect_vars(self) -> list[str]:
        return [v for v in (self.overall, self.group, self.cell, self.prediction, self.group_prediction) if v]


class Kind:
    """Base class of a model kind. Subclasses set the class attributes and override what they need."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    structure_schema: ClassVar[dict[str, Option]] = {}
    default_priors: ClassVar[dict[str, dict[str, str]]] = {}
    labels: ClassVar[dict[str, str]] = {}       # variable -> label, in the order a summary shows them
    loo_dim: ClassVar[str] = "trial"            # the unit that leave-one-out leaves out
    # True when the likelihood is over sub-trial observations (arms) that LOO and PPC sum per trial
    # (constant_data/trial_idx); the kind then has observation_parts(dt, spec) for the PPC
    loo_by_trial: ClassVar[bool] = False
    likelihood: ClassVar[str] = "y_obs"         # name of the observed variable

    # -- the model file -------------------------------------------------------------------------
    def check_structure(self, structure: dict, where: str) -> dict:
        """Validate the ``[structure]`` table: unknown or mistyped keys are errors. Returns all keys."""
        st = {k: v for k, v in structure.items() if k != "kind"}
        unknown = sorted(set(st) - set(self.structure_schema))
        if unknown:
            import difflib

            hint = difflib.get_close_matches(unknown[0], list(self.structure_schema), n=1)
            raise SpecError(f"{where}: unknown structure key {unknown[0]!r} for kind {self.name!r}"
                            + (f" (did you mean {hint[0]!r}?)" if hint else "")
                            + f"; its keys are {', '.join(self.structure_schema) or '(none)'}")
        return {k: opt.check(k, st.get(k, opt.default), where) for k, opt in self.structure_schema.items()}

    def parameters(self, structure: dict) -> list[str]:
        """Parameters that need a prior, in the order they are shown."""
        raise NotImplementedError

    def prior_vocabulary(self) -> tuple[str, ...]:
        """Every parameter name the kind has under some structure (a model file may give priors for them)."""
        names = {p for table in self.default_priors.values() for p in table}
        names |= {v for v in self.labels if v.startswith(("tau", "sigma", "mu", "alpha", "beta"))}
        return tuple(sorted(names))

    def positive_parameters(self, structure: dict) -> tuple[str, ...]:
        """Parameters whose prior must be on positive values (SDs)."""
        return tuple(p for p in self.parameters(structure) if p.startswith(("tau", "sigma")))

    # -- data and model -------------------------------------------------------------------------
    def prepare(self, spec, table: pd.DataFrame, **selection):
        """Pick the rows the model can use: ``(design, rows left out with excluded_reason)``."""
        raise NotImplementedError

    def build(self, spec, design):
        """Write the ``pm.Model``; samples nothing."""
        raise NotImplementedError

    def add_predictions(self, dt, spec, seed: int) -> None:
        """Add draws for new trials to ``dt['posterior']`` (seeded). Default: none."""

    def generated_quantities(self, dt, spec, design, seed: int) -> None:
        """Add posterior quantities drawn after sampling to ``dt['posterior']`` (seeded). Default: none.

        For variables a kind integrates out of the model it samples (e.g. trial effects of a marginal
        likelihood) and draws afterwards from their exact conditional given the sampled parameters, so the
        posterior still holds them with the same dims. ``inference.sampling.sample_spec`` calls it for every
        fit and refit, after the data groups are attached and before any extra group; ``seed`` is the fit's.
        Unlike :meth:`add_predictions` these are part of the posterior of the fitted trials, and they are
        diagnosed like the sampled draws (their mixing is that of the parameters they are drawn from).
        """

    def sampler_defaults(self, spec) -> dict[str, Any]:
        """Sampler settings a fit of this kind starts from (``draws``, ``tune``, ``chains``, ``target_accept``).

        Keys left out come from ``inference.sampling.DEFAULT_SETTINGS`` (4 x (2000 + 2000) at 0.99, the
        cautious setting for a kind nobody has measured). A kind that lowers them says which measurement
        chose them (``benchmarks/sampler_settings.md``); a fit that then shows divergences is refitted once
        at a higher target_accept (``inference.sampling.sample_spec(adapt=True)``), recorded, never hidden.
        """
        return {}

    # -- what the results mean ------------------------------------------------------------------
    def roles(self, spec) -> Roles:
        return Roles()

    def summary_vars(self, spec) -> dict[str, str]:
        """Variables a summary shows, with their labels, in order."""
        return dict(self.labels)

    def sweep_vars(self, spec) -> list[str]:
        """Quantities a prior sweep tracks."""
        r = self.roles(spec)
        return [v for v in (r.overall, *r.between_group, *r.heterogeneity, r.group) if v]

    def rank_levels(self, spec) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Rankable levels: name -> (variable, dims). A level with two dims is ranked over its cells."""
        r = self.roles(spec)
        out: dict[str, tuple[str, tuple[str, ...]]] = {}
        if r.group:
            out[r.group_dim or "group"] = (r.group, (r.group_dim,))
        if r.cell:
            out["cell"] = (r.cell, tuple(r.cell_dims))
        for name, (var, dim) in r.extra_levels.items():
            out[name] = (var, (dim,))
        return out

    def trial_location(self, dt, spec):
        """Draws of (loc_i, tau_i) with theta_i ~ Normal(loc_i, tau_i), or None. For normal-likelihood kinds."""
        return None

    def normal_likelihood(self, spec) -> bool:
        """True when the likelihood is Normal(theta_i, se_i) with one effect per trial."""
        return False

    def group_counts(self, dt, spec) -> dict[str, dict[tuple, int]]:
        """Rows behind each group (and cell): variable -> {labels: count}; 0 = prior-only."""
        return {}

    def __repr__(self) -> str:
        return f"<model kind {self.name!r}>"


_REGISTRY: dict[str, Kind] = {}


def register(kind: Kind, *, replace: bool = False) -> Kind:
    """Register a kind under ``kind.name`` (model files then use ``kind = "<name>"``)."""
    if not isinstance(kind, Kind):
        raise TypeError(f"register() takes a Kind instance, got {type(kind).__name__}")
    if not kind.name:
        raise ValueError("a kind needs a name")
    if kind.name in _REGISTRY and not replace and type(_REGISTRY[kind.name]) is not type(kind):
        raise ValueError(f"a kind named {kind.name!r} is already registered; pass replace=True")
    _REGISTRY[kind.name] = kind
    return kind


def get_kind(name: str) -> Kind:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SpecError(f"structure.kind must be one of {sorted(_REGISTRY)}, got {name!r}") from None


def registered_kinds() -> list[str]:
    return sorted(_REGISTRY)
