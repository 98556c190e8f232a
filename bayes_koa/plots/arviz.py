"""Standard Bayesian plots, drawn by arviz-plots (ArviZ does what ArviZ does).

Each function takes a fitted result and returns ArviZ's ``PlotCollection``; the variables shown are the
kind's (its sweep quantities and the group means), never names written here. The meta-analytic forest
plot and the rankogram stay in :mod:`bayes_koa.plots.figures`.
"""

from __future__ import annotations

import xarray as xr

from ..analysis.checks import posterior_predictive
from ..kinds import get_kind
from ..kinds.base import LOG_LIKELIHOOD_ATTR

__all__ = ["with_posterior_predictive", "plot_trace", "plot_prior_vs_posterior", "plot_ppc_dist", "plot_loo_pit",
           "plot_psense"]


class _LazyArviz:
    """``arviz`` imported on first use: the meta-package pulls in arviz_plots (about a second), which only
    these plots need, not every run that imports bayes_koa."""

    def __getattr__(self, name):
        import arviz

        return getattr(arviz, name)


az = _LazyArviz()


def _vars(result, var_names=None) -> list[str]:
    if var_names is not None:
        return list(var_names)
    kind = get_kind(result.spec.kind)
    post = result.dt["posterior"]
    return [v for v in kind.sweep_vars(result.spec) if v in post.data_vars]


def with_posterior_predictive(result, seed: int | None = None, predictive: str = "conditional") -> xr.DataTree:
    """A copy of the result's DataTree with ``posterior_predictive`` (y_rep under the likelihood's name)."""
    dt = result.dt.copy()
    if "posterior_predictive" not in dt.children:
        name = get_kind(result.spec.kind).likelihood
        y_rep = posterior_predictive(result, seed=seed, predictive=predictive).rename(name)
        dt["posterior_predictive"] = xr.DataTree(xr.Dataset({name: y_rep}))
    return dt


def plot_trace(result, var_names=None, **kwargs):
    """Trace and marginal densities per chain (``az.plot_trace_dist``)."""
    return az.plot_trace_dist(result.dt, var_names=_vars(result, var_names), **kwargs)


def plot_prior_vs_posterior(result, var_names=None, **kwargs):
    """Prior and posterior densities of the model's parameters (``az.plot_prior_posterior``)."""
    if hasattr(result, "require"):
        result.require("prior")
    names = [v for v in _vars(result, var_names) if v in result.dt["prior"].data_vars]
    return az.plot_prior_posterior(result.dt, var_names=names, **kwargs)


def plot_ppc_dist(result, seed: int | None = None, **kwargs):
    """Observed vs replicated data (``az.plot_ppc_dist``), y_rep from :func:`bayes_koa.analysis.checks.posterior_predictive`."""
    return az.plot_ppc_dist(with_posterior_predictive(result, seed), **kwargs)


def plot_loo_pit(result, seed: int | None = None, **kwargs):
    """LOO-PIT ECDF (``az.plot_loo_pit``): uniform when the model predicts each left-out trial well."""
    return az.plot_loo_pit(loo_pit_tree(result, seed), **kwargs)


def loo_pit_tree(result, seed: int | None = None) -> xr.DataTree:
    """The DataTree :func:`plot_loo_pit` hands to ArviZ: log-likelihood and a matching replicate."""
    if hasattr(result, "require"):
        result.require("log_likelihood")
    # the PSIS weights come from the log_likelihood group: when it is the integrated density (theta_i
    # integrated out while sampling), the replicate must not condition on y_i through theta_i either, so
    # it is the mixed one (y_rep from loc_i and sqrt(tau_i^2 + se_i^2)); otherwise the conditional one
    integrated = result.dt.attrs.get(LOG_LIKELIHOOD_ATTR) == "integrated"
    return with_posterior_predictive(result, seed, predictive="mixed" if integrated else "conditional")


def plot_psense(result, var_names=None, **kwargs):
    """Power-scaling prior/likelihood sensitivity (``az.plot_psense_dist``)."""
    if hasattr(result, "require"):
        result.require("log_prior", "log_likelihood")
    return az.plot_psense_dist(result.dt, var_names=_vars(result, var_names), **kwargs)
