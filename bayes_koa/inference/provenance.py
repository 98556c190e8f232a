"""Provenance: what a result was fitted to and with (data hash, versions), written into DataTree attrs."""

from __future__ import annotations

import hashlib
import platform

import pandas as pd

__all__ = ["data_hash", "versions"]


def data_hash(effects: pd.DataFrame) -> str:
    """sha256 of the effect table as CSV (columns sorted): the data a result was fitted to."""
    df = effects.reindex(sorted(effects.columns), axis=1)
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("bayes_koa", "pymc", "pytensor", "arviz", "nutpie", "numpy", "pandas", "xarray"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
