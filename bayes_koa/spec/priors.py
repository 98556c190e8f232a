"""Priors written as PyMC reads them: ``"HalfNormal(sigma=0.5)"``.

A prior string is parsed with :mod:`ast` (never ``eval``) into a :class:`Prior`: a distribution name
from a fixed table plus numeric keyword arguments. The same object

- prints as the string it came from (so resolved priors are shown exactly as a user would write them),
- creates the PyMC variable, with every numeric argument held in a ``pm.Data`` container so that a
  compiled model can be refitted under other values of the same family (prior sweeps compile once),
- gives its log density with SciPy (``Prior.logp``) for the exact quadrature path.

Named prior sets (``models/priors/*.toml``) are read here too.
"""

from __future__ import annotations

import ast
import math
import tomllib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from .files import models_dir

__all__ = [
    "Prior",
    "PriorError",
    "parse_prior",
    "DISTRIBUTIONS",
    "load_prior_set",
    "list_prior_sets",
    "PriorSet",
    "tau_from_tau2",
]


class PriorError(ValueError):
    """A prior string or a prior set that cannot be used."""


@dataclass(frozen=True)
class _Family:
    params: tuple[str, ...]  # keyword names, in PyMC's order
    support: str  # "real" or "positive"
    positive_params: tuple[str, ...] = ()
    note: str = ""


# The distributions a prior may use: PyMC names and PyMC parameter names. "LogStudentT" is ours:
# log(x) ~ StudentT(nu, mu, sigma), the log-t prior of Turner et al. (2015) on a variance or SD.
DISTRIBUTIONS: dict[str, _Family] = {
    "Normal": _Family(("mu", "sigma"), "real", ("sigma",)),
    "StudentT": _Family(("nu", "mu", "sigma"), "real", ("nu", "sigma")),
    "Cauchy": _Family(("alpha", "beta"), "real", ("beta",)),
    "Uniform": _Family(("lower", "upper"), "real"),
    "Flat": _Family((), "real", note="improper"),
    "HalfNormal": _Family(("sigma",), "positive", ("sigma",)),
    "HalfCauchy": _Family(("beta",), "positive", ("beta",)),
    "HalfStudentT": _Family(("nu", "sigma"), "positive", ("nu", "sigma")),
    "Exponential": _Family(("lam",), "positive", ("lam",)),
    "LogNormal": _Family(("mu", "sigma"), "positive", ("sigma",)),
    "LogStudentT": _Family(("nu", "mu", "sigma"), "positive", ("nu", "sigma")),
    "Gamma": _Family(("alpha", "beta"), "positive", ("alpha", "beta")),
    "InverseGamma": _Family(("alpha", "beta"), "positive", ("alpha", "beta")),
    "HalfFlat": _Family((), "positive", note="improper"),
}


def _fmt(v: float) -> str:
    return repr(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


@dataclass(frozen=True)
class Prior:
    """A prior distribution: a name from :data:`DISTRIBUTIONS` and its numeric parameters."""

    dist: str
    params: tuple[tuple[str, float], ...] = ()
    origin: str = field(default="", compare=False)  # where it came from: argument, model file, default

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_string(cls, text: str, origin: str = "") -> "Prior":
        return parse_prior(text, origin=origin)

    def with_origin(self, origin: str) -> "Prior":
        return Prior(self.dist, self.params, origin)

    # -- description --------------------------------------------------------------------------
    @property
    def kwargs(self) -> dict[str, float]:
        return dict(self.params)

    @property
    def family(self) -> _Family:
        return DISTRIBUTIONS[self.dist]

    @property
    def support(self) -> str:
        """``"positive"`` or ``"real"``; a Uniform with ``lower >= 0`` lives on non-negative values, so
        it may be the prior of an SD (the ``sd ~ dunif(0, 5)`` of the NICE DSU TSD2 WinBUGS code)."""
        if self.dist == "Uniform" and self.kwargs["lower"] >= 0:
            return "positive"
        return self.family.support

    def __str__(self) -> str:
        return f"{self.dist}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in self.params) + ")"

    def __repr__(self) -> str:
        return f"Prior({str(self)!r})"

    # -- PyMC ---------------------------------------------------------------------------------
    def data_names(self, name: str) -> dict[str, str]:
        """Names of the ``pm.Data`` containers holding this prior's parameters in a model."""
        return {k: f"prior__{name}__{k}" for k, _ in self.params}

    # -- SciPy --------------------------------------------------------------------------------
    def logp(self, x: np.ndarray | float) -> np.ndarray:
        """Log density at ``x`` (``-inf`` outside the support; 0 for an improper flat prior)."""
        x = np.asarray(x, dtype=float)
        p = self.kwargs
        d = self.dist
        if d == "Normal":
            return stats.norm.logpdf(x, p["mu"], p["sigma"])
        if d == "StudentT":
            return stats.t.logpdf(x, p["nu"], p["mu"], p["sigma"])
        if d == "Cauchy":
            return stats.cauchy.logpdf(x, p["alpha"], p["beta"])
        if d == "Uniform":
            return stats.uniform.logpdf(x, p["lower"], p["upper"] - p["lower"])
        if d == "Flat":
            return np.zeros_like(x)
        if d == "HalfFlat":
            return np.where(x > 0, 0.0, -np.inf)
        if d == "HalfNormal":
            return stats.halfnorm.logpdf(x, scale=p["sigma"])
        if d == "HalfCauchy":
            return stats.halfcauchy.logpdf(x, scale=p["beta"])
        if d == "HalfStudentT":
            return np.where(x > 0, np.log(2.0) + stats.t.logpdf(x, p["nu"], 0.0, p["sigma"]), -np.inf)
        if d == "Exponential":
            return stats.expon.logpdf(x, scale=1.0 / p["lam"])
        if d == "LogNormal":
            return stats.lognorm.logpdf(x, s=p["sigma"], scale=math.exp(p["mu"]))
        if d == "LogStudentT":
            with np.errstate(divide="ignore", invalid="ignore"):
                safe = np.where(x > 0, x, 1.0)
                out = stats.t.logpdf(np.log(safe), p["nu"], p["mu"], p["sigma"]) - np.log(safe)
            return np.where(x > 0, out, -np.inf)
        if d == "Gamma":
            return stats.gamma.logpdf(x, a=p["alpha"], scale=1.0 / p["beta"])
        if d == "InverseGamma":
            return stats.invgamma.logpdf(x, a=p["alpha"], scale=p["beta"])
        raise PriorError(f"no density for {d}")  # pragma: no cover (table and branches agree)

    def is_proper(self) -> bool:
        return self.dist not in ("Flat", "HalfFlat")


def _number(node: ast.AST, text: str) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _number(node.operand, text)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Name) and node.id in ("inf",):
        return math.inf
    raise PriorError(f"prior {text!r}: parameter values must be plain numbers, got {ast.unparse(node)!r}")


def parse_prior(text: "str | Prior", origin: str = "") -> Prior:
    """Parse ``"HalfNormal(sigma=0.5)"`` into a :class:`Prior`.

    Only distribution names in :data:`DISTRIBUTIONS` and numeric keyword arguments are accepted;
    the error message lists what is allowed.
    """
    if isinstance(text, Prior):
        return text.with_origin(origin or text.origin)
    if not isinstance(text, str):
        raise PriorError(f"a prior must be a string like 'HalfNormal(sigma=0.5)', got {text!r}")
    src = text.strip()
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError:
        raise PriorError(f"cannot read prior {text!r}: write it like 'HalfNormal(sigma=0.5)'") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise PriorError(f"cannot read prior {text!r}: write it like 'HalfNormal(sigma=0.5)'")
    name = call.func.id
    if name not in DISTRIBUTIONS:
        raise PriorError(f"prior {text!r}: unknown distribution {name!r}; "
                         f"known: {', '.join(sorted(DISTRIBUTIONS))}")
    fam = DISTRIBUTIONS[name]
    if call.args:
        raise PriorError(f"prior {text!r}: give parameters by name, e.g. "
                         f"{name}({', '.join(f'{p}=...' for p in fam.params)})")
    given = {}
    for kw in call.keywords:
        if kw.arg is None or kw.arg not in fam.params:
            raise PriorError(f"prior {text!r}: {name} has parameters {', '.join(fam.params) or '(none)'}, "
                             f"not {kw.arg!r}")
        if kw.arg in given:
            raise PriorError(f"prior {text!r}: parameter {kw.arg!r} given twice")
        given[kw.arg] = _number(kw.value, text)
    bad = [p for p, v in given.items() if not math.isfinite(v)]
    if bad:
        raise PriorError(f"prior {text!r}: {', '.join(bad)} must be a finite number")
    missing = [p for p in fam.params if p not in given]
    if missing:
        raise PriorError(f"prior {text!r}: {name} needs {', '.join(missing)}")
    for p in fam.positive_params:
        if not given[p] > 0 or not math.isfinite(given[p]):
            raise PriorError(f"prior {text!r}: {p} must be a finite positive number, got {given[p]}")
    if name == "Uniform" and not given["lower"] < given["upper"]:
        raise PriorError(f"prior {text!r}: lower must be below upper")
    return Prior(name, tuple((p, given[p]) for p in fam.params), origin)


# ---------------------------------------------------------------------------------------------
# Named prior sets: models/priors/<name>.toml
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriorSet:
    """A named set of priors with its rationale, read from ``models/priors/<name>.toml``."""

    name: str
    description: str
    citation: str
    priors: dict[str, dict[str, Prior]]  # measure ("SMD", "MD", "default", ...) -> parameter -> Prior
    path: str = ""

    def for_measure(self, measure: str | None) -> dict[str, Prior]:
        """Priors of this set for an effect measure: the measure's table over the ``default`` table."""
        out = dict(self.priors.get("default", {}))
        if measure and measure in self.priors:
            out.update(self.priors[measure])
        return out


def tau_from_tau2(prior: Prior, origin: str = "") -> Prior:
    """The prior on tau implied by a log-normal or log-t prior on tau^2.

    Empirical heterogeneity priors (Turner et al. 2015, Rhodes et al. 2015) are published for the
    between-trial variance: log(tau^2) = m + s * e. Then log(tau) = m/2 + (s/2) * e, so
    LogNormal(mu=m, sigma=s) on tau^2 is LogNormal(mu=m/2, sigma=s/2) on tau, and the same for
    LogStudentT. Other families have no such closed form here and are refused.
    """
    if prior.dist not in ("LogNormal", "LogStudentT"):
        raise PriorError(f"a prior on tau2 must be LogNormal or LogStudentT (got {prior}); "
                         "give a prior on tau instead")
    k = prior.kwargs
    params = tuple((n, k[n] / 2 if n in ("mu", "sigma") else k[n]) for n, _ in prior.params)
    return Prior(prior.dist, params, origin or prior.origin)


def _read_table(table: dict[str, Any], where: str) -> dict[str, Prior]:
    out = {}
    for p, s in table.items():
        if p == "tau2":
            given = parse_prior(s)
            out["tau"] = tau_from_tau2(given, origin=f"{where}, from tau^2 ~ {given}")
        else:
            out[p] = parse_prior(s, origin=where)
    return out


def read_prior_tables(raw: dict[str, Any], where: str) -> dict[str, dict[str, Prior]]:
    """Read a ``[priors]`` table: either ``param = "..."`` or ``[priors.<measure>]`` sub-tables.

    ``tau2 = "LogNormal(...)"`` (a prior on the between-trial variance) becomes the equivalent
    prior on ``tau`` (:func:`tau_from_tau2`), and says so in its origin.
    """
    tables: dict[str, dict[str, Prior]] = {}
    flat = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    if flat:
        tables["default"] = _read_table(flat, where)
    for key, value in raw.items():
        if isinstance(value, dict):
            tables[key] = _read_table(value, where)
    return tables


def list_prior_sets() -> list[str]:
    return sorted(p.stem for p in (models_dir() / "priors").glob("*.toml"))


def load_prior_set(name_or_path: str) -> PriorSet:
    """Load a named prior set (``models/priors/<name>.toml``) or a prior-set file by path."""
    from pathlib import Path

    path = Path(name_or_path)
    if not path.suffix:
        path = models_dir() / "priors" / f"{name_or_path}.toml"
    if not path.exists():
        raise PriorError(f"unknown prior set {name_or_path!r}; known: {', '.join(list_prior_sets())}")
    raw = tomllib.loads(path.read_text())
    if raw.get("schema_version") != 1:
        raise PriorError(f"{path}: schema_version must be 1")
    where = f"prior set {raw.get('name', path.stem)}"
    return PriorSet(
        name=raw.get("name", path.stem),
        description=raw.get("description", ""),
        citation=raw.get("citation", ""),
        priors=read_prior_tables(raw.get("priors", {}), where),
        path=str(path),
    )
