"""Model files -> :class:`ModelSpec` (structure + resolved priors).

A model is a small TOML file in ``models/`` (shipped in the wheel as ``bayes_koa/models``)::

    schema_version = 1
    name = "source_hierarchical"
    version = "1.0.0"
    description = "..."
    [structure]
    kind = "hierarchical"          # fixed | random | hierarchical
    levels = ["source"]            # [] | ["source"] | ["source", "origin"]
    between_trial_sd = "shared"    # shared | per_source
    parameterization = "noncentered"
    moderators = []                # names from MODERATORS
    [priors.SMD]                   # one table per effect measure, in that measure's units
    mu = "Normal(mu=0, sigma=1)"
    ...

**Prior precedence** (the one rule): call argument > model file > package default
(:data:`DEFAULT_PRIORS`), each looked up for the effect measure first and then under ``default``.
Every resolved prior remembers where it came from and is shown in every summary.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .priors import Prior, PriorError, PriorSet, parse_prior, read_prior_tables

__all__ = [
    "ModelSpec",
    "load_spec",
    "spec_from_text",
    "list_models",
    "models_dir",
    "DEFAULT_PRIORS",
    "MODERATORS",
    "SpecError",
]


class SpecError(ValueError):
    """A model file or a model name that cannot be used."""


# Package defaults, per effect measure, in that measure's units. SMD: weakly informative on the
# standardised scale (|SMD| > 2 is rare in KOA trials; tau ~ 0.5 is "large" heterogeneity). MD: VAS
# in mm on 0-100 (the published pooled VAS MDs are -13 to -19 mm; pooled_targets.csv); 1 SMD is about
# 20 mm (arm-level VAS SDs of LamoEspinosa_2020 in the bundled outcomes.csv), and the MD defaults are
# the SMD defaults x 20 mm widened about 2.5-fold: vaguer, as package defaults should be. logOR/logRR:
# odds ratios between 1/50 and 50 a priori; tau 1 is very large heterogeneity on the log-odds scale.
DEFAULT_PRIORS: dict[str, dict[str, str]] = {
    "SMD": {
        "mu": "Normal(mu=0, sigma=1)",
        "tau": "HalfNormal(sigma=0.5)",
        "sigma_source": "HalfNormal(sigma=0.5)",
        "sigma_origin": "HalfNormal(sigma=0.25)",
        "beta": "Normal(mu=0, sigma=0.5)",
    },
    "MD": {
        "mu": "Normal(mu=0, sigma=50)",
        "tau": "HalfNormal(sigma=25)",
        "sigma_source": "HalfNormal(sigma=25)",
        "sigma_origin": "HalfNormal(sigma=10)",
        "beta": "Normal(mu=0, sigma=25)",
    },
    "logOR": {
        "alpha": "Normal(mu=0, sigma=2)",  # baseline log-odds of an adverse event (arm-based models)
        "mu": "Normal(mu=0, sigma=2)",
        "tau": "HalfNormal(sigma=1)",
        "sigma_source": "HalfNormal(sigma=1)",
        "sigma_origin": "HalfNormal(sigma=0.5)",
        "beta": "Normal(mu=0, sigma=1)",
    },
}
DEFAULT_PRIORS["logRR"] = DEFAULT_PRIORS["logOR"]

# Meta-regression terms a model file may switch on: name -> (effect-table column, transform, meaning).
MODERATORS: dict[str, tuple[str, str, str]] = {
    "log_dose": ("cells_per_injection", "log10(x / 4e7)",
                 "per 10-fold more cells per injection, relative to 4x10^7 cells"),
    "n_injections": ("n_injections", "x - 1", "per extra injection, relative to one injection"),
}

# Structure kinds: kind -> the module that implements it. A kind module provides
#   check_structure(kind, structure, path) -> dict   (validated structure: levels, between_trial_sd,
#                                                     parameterization, moderators, options)
#   parameters(kind, structure) -> list[str]         (parameters that need a prior, in order)
#   prepare(spec, effects, outcome=None, time=None) -> (design, excluded rows)
#   build(spec, design) -> pm.Model
#   add_predictions(dt, spec, seed) -> None          (draws for a new trial, if any)
# and its designs provide .coords, .shape_key(), .rows and .data() (the pm.Data values).
KIND_MODULES: dict[str, str] = {
    "fixed": "bayes_koa.build_univariate",
    "random": "bayes_koa.build_univariate",
    "hierarchical": "bayes_koa.build_univariate",
    "multivariate": "bayes_koa.build_multivariate",
    "binomial": "bayes_koa.build_binomial",
}
KINDS = set(KIND_MODULES)
LEVELS = ("source", "origin")


def kind_module(kind: str):
    """The module implementing a structure kind (see :data:`KIND_MODULES`)."""
    import importlib

    try:
        return importlib.import_module(KIND_MODULES[kind])
    except KeyError:
        raise SpecError(f"structure.kind must be one of {sorted(KIND_MODULES)}, got {kind!r}") from None


def models_dir() -> Path:
    """The folder holding the model files: ``bayes_koa/models`` in a wheel, ``models/`` in a checkout."""
    shipped = Path(str(resources.files("bayes_koa"))) / "models"
    if shipped.is_dir():
        return shipped
    checkout = Path(__file__).resolve().parent.parent / "models"
    if checkout.is_dir():
        return checkout
    raise SpecError("model files not found: neither bayes_koa/models nor ../models exists")


def list_models() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.toml"))


@dataclass(frozen=True)
class ModelSpec:
    """A model's structure and its resolved priors. Hashable; never fits anything."""

    name: str
    version: str
    description: str
    kind: str
    levels: tuple[str, ...]
    between_trial_sd: str
    parameterization: str
    moderators: tuple[str, ...]
    measure: str
    priors: tuple[tuple[str, Prior], ...]
    options: tuple[tuple[str, Any], ...] = ()  # kind-specific structure settings (sorted items)
    path: str = field(default="", compare=False)
    file_text: str = field(default="", compare=False, repr=False)

    # -- derived ------------------------------------------------------------------------------
    @property
    def file_hash(self) -> str:
        return hashlib.sha256(self.file_text.encode()).hexdigest()

    @property
    def prior_dict(self) -> dict[str, Prior]:
        return dict(self.priors)

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.priors)

    def structure_key(self) -> tuple:
        """What the compiled model depends on: structure and prior families, not prior values."""
        return (self.kind, self.levels, self.between_trial_sd, self.parameterization,
                self.moderators, self.options, tuple((p, pr.dist) for p, pr in self.priors))

    @property
    def option(self) -> dict[str, Any]:
        return dict(self.options)

    def priors_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(p, str(pr), pr.origin) for p, pr in self.priors],
            columns=["parameter", "prior", "from"],
        )

    def describe(self) -> str:
        lines = [f"model {self.name} v{self.version} ({self.path or 'in memory'})",
                 f"  {self.description.strip()}",
                 f"  structure: {self.kind}; levels: {', '.join(self.levels) or 'none'}; "
                 f"between-trial SD: {self.between_trial_sd}; {self.parameterization}; "
                 f"moderators: {', '.join(self.moderators) or 'none'}"
                 + "".join(f"; {k} = {v}" for k, v in self.options),
                 f"  priors ({self.measure} scale; call argument > model file > package default):"]
        lines += [f"    {p:<18} ~ {str(pr):<36} [{pr.origin}]" for p, pr in self.priors]
        return "\n".join(lines)

    def with_priors(self, priors: Mapping[str, Any] | PriorSet | None, origin: str = "argument") -> "ModelSpec":
        """A copy with some priors replaced (same precedence: these win)."""
        if not priors:
            return self
        new = _overrides(priors, self.measure, origin, self.parameters)
        _check_known(new, self.parameters, self.name)
        merged = tuple((p, new.get(p, pr)) for p, pr in self.priors)
        return ModelSpec(**{**self.__dict__, "priors": merged})


def _overrides(priors: Mapping[str, Any] | PriorSet, measure: str, origin: str,
               params: tuple[str, ...] | list[str] = ()) -> dict[str, Prior]:
    """Priors given at the call. A prior set applies to any model: parameters the model lacks are skipped."""
    if isinstance(priors, str):
        from .priors import load_prior_set

        priors = load_prior_set(priors)
    if isinstance(priors, PriorSet):
        return {k: v.with_origin(f"prior set {priors.name}" + (f" ({v.origin.split(', ', 1)[1]})"
                                                               if ", from tau^2" in v.origin else ""))
                for k, v in priors.for_measure(measure).items()
                if k in params or (k == "beta" and any(p.startswith("beta_") for p in params))}
    return {k: parse_prior(v, origin=origin) for k, v in priors.items()}


def _check_known(new: Mapping[str, Prior], params: tuple[str, ...] | list[str], model: str) -> None:
    unknown = [k for k in new if k not in params and not (k == "beta" and any(p.startswith("beta_") for p in params))]
    if unknown:
        raise PriorError(f"model {model!r} has no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters are {', '.join(params)}")


def _lookup(tables: Mapping[str, Mapping[str, Any]], measure: str, param: str):
    generic = "beta" if param.startswith("beta_") else None
    for table in (tables.get(measure, {}), tables.get("default", {})):
        if param in table:
            return table[param]
        if generic and generic in table:
            return table[generic]
    return None


def load_spec(model: str | Path = "source_hierarchical", priors: Mapping[str, Any] | PriorSet | None = None,
              measure: str | None = "SMD", **structure: Any) -> ModelSpec:
    """Read a model file and resolve its priors for ``measure``.

    ``model`` is a name from :func:`list_models` or a path to a TOML file (copy one, change it, fit
    it). ``priors`` maps parameter names to prior strings (or is a :class:`PriorSet`); they win
    over the model file, which wins over :data:`DEFAULT_PRIORS`. ``structure`` overrides keys of
    the file's ``[structure]`` table (e.g. ``between_trial_sd="per_source"``).
    """
    path = Path(model)
    if path.suffix != ".toml":
        path = models_dir() / f"{model}.toml"
        if not path.exists():
            raise SpecError(f"unknown model {str(model)!r}; known models: {', '.join(list_models())} "
                            f"(or pass the path of a .toml model file)")
    elif not path.exists():
        raise SpecError(f"model file {path} does not exist")
    return spec_from_text(path.read_text(), path=path, priors=priors, measure=measure, **structure)


def spec_from_text(text: str, path: str | Path = "<text>", priors: Mapping[str, Any] | PriorSet | None = None,
                   measure: str | None = "SMD", **structure: Any) -> ModelSpec:
    """:func:`load_spec` on the text of a model file (used to restore a saved result)."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    if raw.get("schema_version") != 1:
        raise SpecError(f"{path}: schema_version must be 1 (got {raw.get('schema_version')!r})")
    st = {**raw.get("structure", {}), **structure}
    kind = st.get("kind", "")
    module = kind_module(kind)
    checked = module.check_structure(kind, st, path)
    levels, bsd = tuple(checked.get("levels", ())), checked.get("between_trial_sd", "shared")
    param, mods = checked.get("parameterization", "noncentered"), tuple(checked.get("moderators", ()))
    options = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                           for k, v in checked.get("options", {}).items()))

    measure = measure or "default"
    params = module.parameters(kind, {**checked, "levels": levels, "moderators": mods})
    file_tables = read_prior_tables(raw.get("priors", {}), f"model file {path.name}")
    call = _overrides(priors, measure, "argument", params) if priors else {}
    _check_known(call, params, raw.get("name", path.stem))
    resolved: list[tuple[str, Prior]] = []
    for p in params:
        pr = call.get(p) or (call.get("beta") if p.startswith("beta_") else None)
        if pr is None:
            pr = _lookup(file_tables, measure, p)
        if pr is None:
            default = _lookup(DEFAULT_PRIORS, measure, p)
            if default is None:
                raise PriorError(
                    f"no prior for {p!r} on the {measure!r} scale: the model file and the package "
                    f"defaults (measures {', '.join(DEFAULT_PRIORS)}) have none; pass priors={{{p!r}: '...'}}")
            pr = parse_prior(default, origin=f"package default ({measure})")
        if p.startswith(("tau", "sigma")) and pr.support != "positive":
            raise PriorError(f"prior for {p} must be on positive values (e.g. HalfNormal), got {pr}")
        resolved.append((p, pr))
    return ModelSpec(
        name=raw.get("name", path.stem), version=str(raw.get("version", "0")),
        description=raw.get("description", ""), kind=kind, levels=levels, between_trial_sd=bsd,
        parameterization=param, moderators=mods, measure=measure, priors=tuple(resolved),
        options=options, path=str(path), file_text=text,
    )
