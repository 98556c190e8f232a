"""Model files -> :class:`ModelSpec`: structure and resolved priors, as pure data (no PyMC).

A model is a small TOML file in ``models/``::

    schema_version = 1
    name = "source_hierarchical"
    version = "1.0.0"
    description = "..."
    [structure]
    kind = "hierarchical"          # a registered model kind (bayes_koa.kinds)
    ...                            # keys the kind declares in its structure schema
    [priors.SMD]                   # one table per effect measure, in that measure's units
    mu = "Normal(mu=0, sigma=1)"

**Prior precedence** (the one rule): call argument > model file > the kind's default, each looked up
for the effect measure first and then under ``default``. Every resolved prior remembers where it came
from. This module knows nothing about any kind: the kind layer hands in its parameter list and
default priors (:func:`resolve_priors`).
"""

from __future__ import annotations

import difflib
import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .files import MEASURES, SpecError
from .priors import Prior, PriorError, PriorSet, load_prior_set, parse_prior, read_prior_tables

__all__ = ["ModelSpec", "SpecError", "read_model_text", "resolve_priors", "element_key", "TOP_LEVEL_KEYS"]

TOP_LEVEL_KEYS = ("schema_version", "name", "version", "description", "structure", "priors")


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        close = [c for c in choices if c.lower() == word.lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class ModelSpec:
    """A model's structure and its resolved priors. Hashable; never fits anything.

    ``structure`` holds the kind's validated ``[structure]`` table as sorted items; read it with
    :meth:`get`. What the keys mean is the kind's business (``bayes_koa.kinds``).
    """

    name: str
    version: str
    description: str
    kind: str
    structure: tuple[tuple[str, Any], ...]
    measure: str
    priors: tuple[tuple[str, Prior], ...]
    path: str = field(default="", compare=False)
    file_text: str = field(default="", compare=False, repr=False)

    # -- derived ------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """A structure setting (``spec.get("levels", ())``)."""
        return dict(self.structure).get(key, default)

    @property
    def struct(self) -> dict[str, Any]:
        return dict(self.structure)

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
        """What a compiled model depends on: kind, structure and prior families, not prior values."""
        return (self.kind, self.structure, tuple((p, pr.dist) for p, pr in self.priors))

    def structure_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.structure}}

    def priors_table(self) -> pd.DataFrame:
        return pd.DataFrame([(p, str(pr), pr.origin) for p, pr in self.priors],
                            columns=["parameter", "prior", "from"])

    def describe(self) -> str:
        struct = "; ".join(f"{k} = {', '.join(map(str, v)) if isinstance(v, tuple) else v}"
                           for k, v in self.structure)
        lines = [f"model {self.name} v{self.version} ({self.path or 'in memory'})",
                 f"  {self.description.strip()}",
                 f"  structure: kind {self.kind}; {struct}",
                 f"  priors ({self.measure} scale; call argument > model file > kind default):"]
        lines += [f"    {p:<18} ~ {str(pr):<36} [{pr.origin}]" for p, pr in self.priors]
        return "\n".join(lines)

    def with_priors(self, priors: Mapping[str, Any] | PriorSet | None, origin: str = "argument") -> "ModelSpec":
        """A copy with some priors replaced (same precedence: these win)."""
        if not priors:
            return self
        new = _overrides(priors, self.measure, origin, self.parameters)
        _check_known(new, self.parameters, self.name)
        positive = {p for p, pr in self.priors if pr.support == "positive"}
        for k, pr in new.items():
            el = element_key(k)
            if el is not None and el[0] in positive and pr.support != "positive":
                raise PriorError(f"prior for {k} must be on positive values (e.g. HalfNormal), got {pr}")
        merged = [(p, new.get(p, pr)) for p, pr in self.priors]
        added = {k: v for k, v in new.items() if k not in dict(merged) and element_key(k) is not None}
        merged = _with_elements(merged, added)
        return ModelSpec(**{**self.__dict__, "priors": tuple(merged)})

    def with_structure(self, **changes: Any) -> "ModelSpec":
        items = {**dict(self.structure), **changes}
        return ModelSpec(**{**self.__dict__, "structure": tuple(sorted(items.items()))})


def read_model_text(text: str, path: str | Path = "<text>") -> dict[str, Any]:
    """Parse a model file's TOML and check its top-level keys (typos are errors, never ignored)."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    if raw.get("schema_version") != 1:
        raise SpecError(f"{path}: schema_version must be 1 (got {raw.get('schema_version')!r})")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise SpecError(f"{path}: unknown top-level key {key!r}{_suggest(key, TOP_LEVEL_KEYS)}; "
                            f"a model file has {', '.join(TOP_LEVEL_KEYS)}")
    if not isinstance(raw.get("structure", {}), dict):
        raise SpecError(f"{path}: [structure] must be a table")
    priors = raw.get("priors", {})
    if not isinstance(priors, dict):
        raise SpecError(f"{path}: [priors] must be a table")
    for key, value in priors.items():
        if isinstance(value, dict) and key not in MEASURES:
            raise SpecError(f"{path}: [priors.{key}]: unknown effect measure {key!r}{_suggest(key, MEASURES)}; "
                            f"measures are {', '.join(MEASURES)}")
    return raw


def _overrides(priors: Mapping[str, Any] | PriorSet | str, measure: str, origin: str,
               params: tuple[str, ...] | list[str] = ()) -> dict[str, Prior]:
    """Priors given at the call. A prior set applies to any model: parameters the model lacks are skipped."""
    if isinstance(priors, str):
        priors = load_prior_set(priors)
    if isinstance(priors, PriorSet):
        return {k: v.with_origin(f"prior set {priors.name}" + (f" ({v.origin.split(', ', 1)[1]})"
                                                               if ", from tau^2" in v.origin else ""))
                for k, v in priors.for_measure(measure).items() if _known(k, params)}
    return {k: parse_prior(v, origin=origin) for k, v in priors.items()}


def element_key(key: str) -> tuple[str, str] | None:
    """``"d[HA]"`` -> ``("d", "HA")``: a prior on one element of a vector parameter; else None.

    Element priors are the prior grammar's one extension for vector parameters whose labels come
    from the data (the network kind's basic parameters ``d``, one per treatment): the element's
    prior wins over the parameter's, with the same precedence (call > model file > default). The
    model decides whether the label exists (this module knows no data).
    """
    if not (isinstance(key, str) and key.endswith("]") and "[" in key):
        return None
    base, _, label = key[:-1].partition("[")
    base, label = base.strip(), label.strip()
    if not base or not label or "[" in label or "]" in label:
        return None
    return base, label


def _known(key: str, params) -> bool:
    el = element_key(key)
    return (key in params or (key == "beta" and any(p.startswith("beta_") for p in params))
            or (el is not None and el[0] in params))


def _with_elements(resolved: list[tuple[str, Prior]], elements: Mapping[str, Prior]) -> list[tuple[str, Prior]]:
    """Put element priors (``d[HA]``) right after their parameter, labels in sorted order."""
    out = []
    for p, pr in resolved:
        out.append((p, pr))
        out += sorted(((k, v) for k, v in elements.items() if element_key(k)[0] == p), key=lambda kv: kv[0])
    return out


def _check_known(new: Mapping[str, Prior], params, model: str, where: str = "") -> None:
    unknown = [k for k in new if not _known(k, params)]
    if unknown:
        hint = "".join(_suggest(k, params) for k in unknown[:1])
        raise PriorError(f"{where}model {model!r} has no parameter {', '.join(map(repr, unknown))}{hint}; "
                         f"its parameters are {', '.join(params)}")


def _lookup(tables: Mapping[str, Mapping[str, Any]], measure: str, param: str):
    generic = "beta" if param.startswith("beta_") else None
    for table in (tables.get(measure, {}), tables.get("default", {})):
        if param in table:
            return table[param]
        if generic and generic in table:
            return table[generic]
    return None


def resolve_priors(params: list[str] | tuple[str, ...], measure: str, *, model: str,
                   call: Mapping[str, Any] | PriorSet | str | None, file_priors: Mapping[str, Any],
                   file_name: str, defaults: Mapping[str, Mapping[str, str]],
                   positive: tuple[str, ...] = (), vocabulary: tuple[str, ...] = ()) -> tuple[tuple[str, Prior], ...]:
    """Resolve every parameter's prior: call argument > model file > kind default.

    ``file_priors`` is the file's raw ``[priors]`` table; a parameter in it that the model lacks is
    an error (a typo never falls back silently to a default) unless it is in ``vocabulary`` (the
    kind's parameters under other structure settings, e.g. ``sigma_source`` of a model file whose
    source level is switched off at the call). ``positive`` lists parameters whose prior must be on
    positive values (SDs).
    """
    file_tables = read_prior_tables(file_priors, f"model file {file_name}")
    known = tuple(params) + tuple(vocabulary)
    for meas, table in file_tables.items():
        _check_known(table, known, model, where=f"model file {file_name} [priors{'' if meas == 'default' else '.' + meas}]: ")
    call_priors = _overrides(call, measure, "argument", params) if call else {}
    _check_known(call_priors, params, model)
    resolved: list[tuple[str, Prior]] = []
    for p in params:
        pr = call_priors.get(p) or (call_priors.get("beta") if p.startswith("beta_") else None)
        if pr is None:
            pr = _lookup(file_tables, measure, p)
        if pr is None:
            default = _lookup(defaults, measure, p)
            if default is None:
                scales = ", ".join(m for m in defaults if m != "default") or "none"
                raise PriorError(
                    f"no prior for {p!r} on the {measure!r} scale: the model file and the kind's defaults "
                    f"(measures {scales}) have none; pass measure= (one of {scales}) to fit, or give "
                    f"priors={{{p!r}: '...'}} for every parameter ({', '.join(params)})")
            pr = parse_prior(default, origin=f"package default ({measure})")
        if p in positive and pr.support != "positive":
            raise PriorError(f"prior for {p} must be on positive values (e.g. HalfNormal), got {pr}")
        resolved.append((p, pr))
    # element priors (d[HA]): call argument > model file (measure table, then default table)
    elements: dict[str, Prior] = {}
    for table in (file_tables.get("default", {}), file_tables.get(measure, {}), call_priors):
        elements.update({k: v for k, v in table.items()
                         if (el := element_key(k)) is not None and el[0] in params and k not in params})
    for k, pr in elements.items():
        if element_key(k)[0] in positive and pr.support != "positive":
            raise PriorError(f"prior for {k} must be on positive values (e.g. HalfNormal), got {pr}")
    return tuple(_with_elements(resolved, elements))
