"""The conclusions of the 2023 meta-analysis (J Orthop Res 2023, 16 RCTs, 875 patients) as posterior
probabilities.

Each claim is an event defined draw by draw on posterior draws (DataArrays with ``chain`` and/or
``draw`` dims); its probability is the share of draws in which it holds, with a Monte Carlo SE
(``sd / sqrt(ESS)``, see :mod:`bayes_koa.ranking`). Effects follow the package convention
(MSC - control, negative = benefit), so with ``lower_is_better=True`` "better" means "more
negative"; ``lower_is_better=False`` flips every comparison.

=========================================  ==========================================================
claim (as the paper states it)             event per draw (lower is better)
=========================================  ==========================================================
UC-MSC ranks first                         ``source_mean[UC]`` smallest of all sources present (ties split)
UC > AD > BM                               ``source_mean[UC] < source_mean[AD] < source_mean[BM]``
autologous AD better than allogeneic AD    ``cell_mean[AD, autologous] < cell_mean[AD, allogeneic]``
autologous and allogeneic BM similar       ``|cell_mean[BM, autologous] - cell_mean[BM, allogeneic]|``
                                           ``< margin``
4 injections better than 2                 ``effect(4) - effect(2) = 2 * beta_injections < 0``
MSC better than control at month 3         ``overall_by_time[time = 3] < 0``
=========================================  ==========================================================

Inputs are a dict of named DataArrays: ``source_mean`` (dim ``source``), ``cell_mean`` (dims
``source`` and ``origin``), ``beta_injections`` (no entity dim: the effect change per extra
injection), ``overall_by_time`` (dim ``time``, in months). Names, dims, labels, the margin and the
time point are set by :class:`ClaimSpec`. A claim whose draws are missing (no such array, dim or
label) is still listed, with ``probability = NaN`` and ``interpretation = "not estimable: needs
..."``; malformed draws (NaN, unexpected extra dims) raise ``ValueError``.

The margin of the equivalence claim is in the units of the draws: 0.2 by default, meant for
standardised mean differences (SMD; 0.2 is Cohen's "small" effect). Change it for other scales.

``interpretation`` words a probability with the calibrated likelihood scale of the IPCC AR5
uncertainty guidance (Mastrandrea et al. 2010): >= 0.99 virtually certain, >= 0.95 extremely likely,
>= 0.90 very likely, >= 0.66 likely, > 0.33 about as likely as not, > 0.10 unlikely, > 0.05 very
unlikely, > 0.01 extremely unlikely, otherwise exceptionally unlikely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import xarray as xr

from ..analysis.ranking import _indicator_array
from ..inference.diagnostics import diagnose, diagnostics_flag
from ..kinds import get_kind
from ..util.draws import mcse_mean, sample_dims_of

__all__ = ["ClaimSpec", "claims", "prob", "prob_mcse", "verbal_probability", "CLAIM_COLUMNS"]

CLAIM_COLUMNS = ["claim", "quantity", "probability", "mc_se", "interpretation"]

_VERBAL = (
    (0.99, "virtually certain"),
    (0.95, "extremely likely"),
    (0.90, "very likely"),
    (0.66, "likely"),
)
_VERBAL_LOW = (
    (0.33, "about as likely as not"),
    (0.10, "unlikely"),
    (0.05, "very unlikely"),
    (0.01, "extremely unlikely"),
)


@dataclass(frozen=True)
class ClaimSpec:
    """Where the claims find their draws and labels, and their two tuning constants."""

    source_mean: str = "group"        # keys of the draws dict the claims read (claims_from_result fills
    cell_mean: str = "cell"           # them from the kind's roles: group means, cells, time course)
    beta_injections: str = "beta_injections"
    overall_by_time: str = "by_time"
    source_dim: str = "source"
    origin_dim: str = "origin"
    time_dim: str = "time"
    uc: str = "UC"
    ad: str = "AD"
    bm: str = "BM"
    autologous: str = "autologous"
    allogeneic: str = "allogeneic"
    margin: float = 0.2  # equivalence margin, in the units of the draws (SMD by default)
    unit: str = "SMD"
    time_months: float = 3.0
    lower_is_better: bool = True


class _NotEstimable(Exception):
    """A claim's draws are absent; the message says what is needed."""


# ----------------------------------------------------------------------------------------------
# probability helpers
# ----------------------------------------------------------------------------------------------
def prob(event: xr.DataArray) -> float:
    """Posterior probability of an event given draw by draw (bool, or a share in [0, 1])."""
    return prob_mcse(event)[0]


def prob_mcse(event: xr.DataArray) -> tuple[float, float]:
    """(probability, Monte Carlo SE) of a per-draw event; it must have only sample dims."""
    sdims = sample_dims_of(event)
    extra = [d for d in event.dims if d not in sdims]
    if extra:
        raise ValueError(f"an event must have only sample dims; {event.name or 'event'} also has {extra}")
    x = event.astype(float)
    if bool(x.isnull().any()):
        raise ValueError(f"event {event.name or ''} is NaN in some draws")
    return float(x.mean()), float(mcse_mean(x, sdims))


def verbal_probability(p: float) -> str:
    """The IPCC AR5 likelihood term for ``p`` (see module docstring)."""
    if not np.isfinite(p):
        return "not estimable"
    for cut, word in _VERBAL:
        if p >= cut:
            return word
    for cut, word in _VERBAL_LOW:
        if p > cut:
            return word
    return "exceptionally unlikely"


# ----------------------------------------------------------------------------------------------
# access to the draws
# ----------------------------------------------------------------------------------------------
def _get(draws: Mapping[str, xr.DataArray], name: str, dims: tuple[str, ...]) -> xr.DataArray:
    need = f"draws {name!r} with dims (chain, draw{''.join(', ' + d for d in dims)})"
    if name not in draws or draws[name] is None:
        raise _NotEstimable(need)
    da = draws[name]
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"draws[{name!r}] must be an xarray.DataArray, got {type(da).__name__}")
    sdims = sample_dims_of(da.rename(name))
    missing = [d for d in dims if d not in da.dims]
    if missing:
        raise _NotEstimable(f"{need}; {name!r} has dims {tuple(da.dims)}")
    extra = [d for d in da.dims if d not in sdims and d not in dims]
    if extra:
        raise ValueError(f"draws {name!r} have extra dims {extra} (expected {dims} besides chain/draw): "
                         "select one coordinate of each first, e.g. .sel(outcome=...)")
    if bool(da.isnull().any()):
        raise ValueError(f"draws {name!r} contain NaN")
    return da


def _at(da: xr.DataArray, name: str, dim: str, label: str) -> xr.DataArray:
    labels = [str(v) for v in da[dim].values] if dim in da.coords else []
    if str(label) not in labels:
        raise _NotEstimable(f"{dim} {label!r} in {name!r} (it has: {', '.join(labels) or 'no labels'})")
    return da.isel({dim: labels.index(str(label))}, drop=True)


def _at_time(da: xr.DataArray, name: str, dim: str, months: float) -> xr.DataArray:
    coord = da[dim].values if dim in da.coords else np.array([])
    try:
        numeric = np.asarray(coord, dtype=float)
    except (TypeError, ValueError):
        numeric = np.full(len(coord), np.nan)
    hits = np.flatnonzero(np.isclose(numeric, months))
    if hits.size != 1:
        have = ", ".join(str(v) for v in coord) or "no labels"
        raise _NotEstimable(f"{dim} = {months:g} (months) in {name!r} (it has: {have})")
    return da.isel({dim: int(hits[0])}, drop=True)


# ----------------------------------------------------------------------------------------------
# the claims
# ----------------------------------------------------------------------------------------------
def _better(spec: ClaimSpec) -> tuple[Callable[[xr.DataArray, xr.DataArray], xr.DataArray], str]:
    if spec.lower_is_better:
        return (lambda a, b: a < b), "<"
    return (lambda a, b: a > b), ">"


def _uc_first(draws, spec):
    s = spec.source_mean
    da = _get(draws, s, (spec.source_dim,))
    _at(da, s, spec.source_dim, spec.uc)  # presence check with a clear message
    k = da.sizes[spec.source_dim]
    if k < 2:
        raise _NotEstimable(f"at least 2 sources in {s!r} (it has {k})")
    ind = _indicator_array(da, spec.source_dim, spec.lower_is_better)
    labels = [str(v) for v in da[spec.source_dim].values]
    event = ind.isel({spec.source_dim: labels.index(spec.uc)}, drop=True).sel(rank=1, drop=True)
    word = "smallest" if spec.lower_is_better else "largest"
    return event, f"P({s}[{spec.uc}] is the {word} of {k} sources: {', '.join(labels)})"


def _uc_ad_bm(draws, spec):
    s = spec.source_mean
    da = _get(draws, s, (spec.source_dim,))
    uc, ad, bm = (_at(da, s, spec.source_dim, lab) for lab in (spec.uc, spec.ad, spec.bm))
    better, op = _better(spec)
    return better(uc, ad) & better(ad, bm), f"P({s}[{spec.uc}] {op} {s}[{spec.ad}] {op} {s}[{spec.bm}])"


def _cell(draws, spec, source):
    c = spec.cell_mean
    da = _get(draws, c, (spec.source_dim, spec.origin_dim))
    da = _at(da, c, spec.source_dim, source)
    return (_at(da, c, spec.origin_dim, spec.autologous), _at(da, c, spec.origin_dim, spec.allogeneic))


def _ad_auto_better(draws, spec):
    auto, allo = _cell(draws, spec, spec.ad)
    better, op = _better(spec)
    c = spec.cell_mean
    return better(auto, allo), (f"P({c}[{spec.ad}, {spec.autologous}] {op} "
                                f"{c}[{spec.ad}, {spec.allogeneic}])")


def _bm_similar(draws, spec):
    if not (spec.margin > 0 and math.isfinite(spec.margin)):
        raise ValueError(f"margin must be positive and finite, got {spec.margin}")
    auto, allo = _cell(draws, spec, spec.bm)
    c = spec.cell_mean
    return abs(auto - allo) < spec.margin, (f"P(|{c}[{spec.bm}, {spec.autologous}] - "
                                            f"{c}[{spec.bm}, {spec.allogeneic}]| < {spec.margin:g} "
                                            f"{spec.unit})")


def _four_vs_two(draws, spec):
    b = spec.beta_injections
    beta = _get(draws, b, ())
    op = "<" if spec.lower_is_better else ">"
    event = (2 * beta < 0) if spec.lower_is_better else (2 * beta > 0)
    return event, f"P(effect(4) - effect(2) = 2 * {b} {op} 0)"


def _better_at_time(draws, spec):
    o = spec.overall_by_time
    da = _get(draws, o, (spec.time_dim,))
    at = _at_time(da, o, spec.time_dim, spec.time_months)
    op = "<" if spec.lower_is_better else ">"
    event = (at < 0) if spec.lower_is_better else (at > 0)
    return event, f"P({o}[{spec.time_dim}={spec.time_months:g}] {op} 0)"


def _claim_table(spec: ClaimSpec):
    """(claim text, function, what it needs) in the paper's order."""
    return [
        (f"{spec.uc}-MSC ranks first among cell sources", _uc_first,
         f"{spec.source_mean!r} over {spec.source_dim!r}"),
        (f"{spec.uc} > {spec.ad} > {spec.bm} in benefit", _uc_ad_bm,
         f"{spec.source_mean!r} over {spec.source_dim!r}"),
        (f"{spec.autologous} {spec.ad}-MSC better than {spec.allogeneic} {spec.ad}-MSC", _ad_auto_better,
         f"{spec.cell_mean!r} over ({spec.source_dim!r}, {spec.origin_dim!r})"),
        (f"{spec.autologous} and {spec.allogeneic} {spec.bm}-MSC similar "
         f"(|difference| < {spec.margin:g} {spec.unit})", _bm_similar,
         f"{spec.cell_mean!r} over ({spec.source_dim!r}, {spec.origin_dim!r})"),
        ("4 injections better than 2", _four_vs_two, f"{spec.beta_injections!r} (per-injection slope)"),
        (f"MSC better than control at month {spec.time_months:g}", _better_at_time,
         f"{spec.overall_by_time!r} over {spec.time_dim!r}"),
    ]


def claims(draws: Mapping[str, xr.DataArray], spec: ClaimSpec | None = None, *,
           margin: float | None = None, lower_is_better: bool | None = None) -> pd.DataFrame:
    """The paper's conclusions as posterior probabilities, one row per claim, always all six.

    ``margin`` and ``lower_is_better`` override the fields of ``spec`` (default :class:`ClaimSpec`).
    Columns: ``claim``, ``quantity`` (the event), ``probability``, ``mc_se``, ``interpretation``.
    """
    spec = spec or ClaimSpec()
    overrides = {}
    if margin is not None:
        overrides["margin"] = float(margin)
    if lower_is_better is not None:
        overrides["lower_is_better"] = bool(lower_is_better)
    if overrides:
        spec = ClaimSpec(**{**spec.__dict__, **overrides})
    rows = []
    for text, fn, needs in _claim_table(spec):
        try:
            event, quantity = fn(draws, spec)
        except _NotEstimable as missing:
            rows.append({"claim": text, "quantity": needs, "probability": math.nan,
                         "mc_se": math.nan, "interpretation": f"not estimable: needs {missing}"})
            continue
        p, se = prob_mcse(event.rename(text))
        rows.append({"claim": text, "quantity": quantity, "probability": p, "mc_se": se,
                     "interpretation": f"{verbal_probability(p)} (P = {p:.3f})"})
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


# Equivalence margins used when the caller gives none, per effect measure: 0.2 SMD is Cohen's
# "small" effect; 5 mm on a 0-100 VAS is a quarter of a typical 20 mm SD, well under the 10-20 mm
# minimal clinically important differences reported for knee OA pain.
DEFAULT_MARGINS = {"SMD": 0.2, "MD": 5.0}


# stable ids of the six claims (their texts carry units and labels that vary between models)
CLAIM_IDS = ["uc_first", "uc_ad_bm", "ad_autologous_better", "bm_origins_similar", "four_vs_two_injections",
             "better_at_month_3"]
SAFETY_CLAIM = "MSC do not raise the odds of an adverse event by more than {pct:g}% (OR < {t:g})"


def _safety_row(result, threshold: float, ratio_var: str) -> pd.DataFrame:
    """The paper's 'the cells were safe' as P(OR < threshold) from an adverse-event model."""
    post = result.dt["posterior"]
    event = post[ratio_var] < threshold
    p, se = prob_mcse(event)
    return pd.DataFrame([{"claim": SAFETY_CLAIM.format(pct=(threshold - 1) * 100, t=threshold),
                          "quantity": f"P(exp(mu) < {threshold:g}), mu = overall log odds ratio of any AE",
                          "probability": p, "mc_se": se,
                          "interpretation": f"{verbal_probability(p)} (P = {p:.3f})"}], columns=CLAIM_COLUMNS)


def claims_from_result(result, margin: float | None = None, time_months: float = 3.0,
                       extra_draws: Mapping[str, xr.DataArray] | None = None,
                       or_threshold: float = 1.5, diagnostics: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`claims` on a fitted :class:`~bayes_koa.result.MetaAnalysis`, with where it came from.

    ``diagnostics``: the sampler diagnostics the table carries when the caller has them already
    (a prior sweep passes the fitted result's for reweighted draws); default ``result.diagnostics()``.

    Picks the draws the claims need from the result's posterior (``source_mean``, ``cell_mean``,
    ``beta_n_injections``, ``overall_by_time``); claims whose draws the model lacks are listed as
    not estimable, naming what they need. Adds the model, outcome, time, data source and data hash.
    An adverse-event (binomial) model answers none of the efficacy claims but adds the safety
    claim P(OR < ``or_threshold``).
    """
    post = result.dt["posterior"]
    roles = get_kind(result.spec.kind).roles(result.spec)
    draws: dict[str, xr.DataArray] = {}
    safety = bool(roles.ratio)  # an adverse-event model's group means are odds ratios of harm, not benefit
    if not safety:
        for name, var in (("group", roles.group), ("cell", roles.cell),
                          ("beta_injections", "beta_n_injections"), ("by_time", roles.by_time)):
            if var and var in post.data_vars:
                draws[name] = post[var]
        draws.update(extra_draws or {})
    measure = result.spec.measure
    unit = "mm" if measure == "MD" else measure
    if margin is None:
        margin = DEFAULT_MARGINS.get(measure, 0.2)
    table = claims(draws, ClaimSpec(margin=margin, unit=unit, time_months=time_months,
                                    lower_is_better=bool(getattr(result, "lower_is_better", True))))
    table.insert(0, "claim_id", CLAIM_IDS)
    inj = table["claim_id"] == "four_vs_two_injections"
    if not safety and table.loc[inj, "probability"].isna().all():
        table.loc[inj, "interpretation"] = (
            "not estimable: this model has no per-injection slope (beta_n_injections); fit one with the covariate "
            "n_injections (structure moderators = ['n_injections']: model source_regression, or network_regression "
            "for the network)")
    if safety:
        table["interpretation"] = "not estimable: an efficacy claim; this is an adverse-event model"
        table = pd.concat([table, _safety_row(result, or_threshold, roles.ratio[0]).assign(claim_id="safety")],
                          ignore_index=True)
    p = result.provenance
    table["model"] = result.spec.name
    table["measure"] = measure
    table["outcome"] = p.get("outcome", "")
    table["time_months"] = p.get("time", "")
    table["data"] = ("SIMULATED: " if result.simulated else "") + str(p.get("data_source", ""))
    table["data_sha256"] = p.get("data_sha256", "")
    # the result's own (cached) diagnostics when it has them: diagnose once per fit
    diag = diagnostics if diagnostics is not None else (
        result.diagnostics() if hasattr(result, "diagnostics") else diagnose(result.dt))
    table.attrs["diagnostics"] = diagnostics_flag(diag)
    table["diagnostics_ok"] = table.attrs["diagnostics"]["ok"]
    return table


def claims_table(results, margin: float | None = None) -> pd.DataFrame:
    """One row per claim, each taken from the first result (in the order given) that estimates it.

    ``results``: fitted results (a list, or a dict name -> result). The paper's six conclusions need
    different models (source ranking: source_hierarchical; origin: source_origin; injections:
    source_regression; month 3: a time-course model), so the full table combines them; each row
    names the model, outcome, time and data it came from. Claims no result can estimate stay, with
    the reason.
    """
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    if not items:
        raise ValueError("claims_table needs at least one fitted result")
    tables = [claims_from_result(r, margin=margin).set_index("claim_id", drop=False) for r in items]
    names = list(dict.fromkeys(c for t in tables for c in t.index))  # the six, then safety if present
    rows = []
    for name in names:
        have = [t.loc[name] for t in tables if name in t.index]
        rows.append(next((r for r in have if not math.isnan(r["probability"])), have[0]))
    return pd.DataFrame(rows).reset_index(drop=True)
