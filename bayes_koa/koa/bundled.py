"""The bundled knee-OA MSC data (``bayes_koa/koa/data/koa_msc``): real extracted numbers, each row sourced."""

from __future__ import annotations

from importlib import resources

from ..data.reader import BUNDLED_SOURCE, TrialData, read_bundle

__all__ = ["load_koa_msc", "bundled_dir"]


def bundled_dir():
    """The folder of the bundled curated tables (an importlib resource)."""
    return resources.files("bayes_koa.koa").joinpath("data", "koa_msc")


def load_koa_msc() -> TrialData:
    """The bundled curated data, parsed and validated.

    Warns (DataValidationWarning) about the rows kept as documented but not poolable
    (JSW_mm, direction unclear) and the Ruane_2021 CI printed around the wrong estimate.
    """
    return read_bundle(bundled_dir(), BUNDLED_SOURCE)
