"""Minimal clinically important differences shipped with the package (``koa/data/mcid.csv``).

Every number in the file carries its published source (``source``, ``citation``); :func:`default_mcid`
returns one only when it fits the fitted scale: an absolute MCID (``unit`` in score points or mm) for
a mean difference (``MD``) on the scale the row states (the VAS row: mm on 0-100; the WOMAC rows: the
0-100 normalised scale, so not for the bundled Likert-scale WOMAC data), never for standardised
measures (SMD) or ratios, where the user must give the value. Sign convention as in the file:
negative = improvement (the package's orientation). Caveat written beside the value: these are
within-patient minimal important improvements (MCII, MPCI), used here as a threshold for a
between-group difference, which is stricter than a between-group MCID would usually be.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

__all__ = ["mcid_table", "default_mcid", "MCID_CAVEAT"]

MCID_CAVEAT = ("a within-patient minimal clinically important improvement used as the threshold for the "
               "between-group difference (stricter than a between-group MCID)")


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    with resources.files("bayes_koa.koa").joinpath("data/mcid.csv").open() as fh:
        return pd.read_csv(fh)


def mcid_table() -> pd.DataFrame:
    """The shipped MCIDs with their sources (a copy)."""
    return _table().copy()


def _scale_ok(row, scale: str | None) -> bool:
    text = str(row["scale_range"])
    if row["outcome"] == "VAS":  # "mm VAS": the package's VAS MDs are in mm on 0-100
        return scale in (None, "0-100")
    if "0-100" in text:
        return scale == "0-100"
    return False  # scale range not stated in the source: not used as a default


def default_mcid(outcome: str | None, measure: str | None, scale: str | None = None) -> dict | None:
    """The shipped MCID for ``outcome`` on ``measure`` (and the effect table's ``scale``, e.g. ``"0-100"``),
    as a dict (``mcid``, ``unit``, ``source``, ``citation``, ``notes``, ``caveat``); None when none fits."""
    if not outcome or measure != "MD":
        return None
    t = _table()
    rows = t[(t["outcome"] == outcome) & ~t["unit"].astype(str).str.startswith("%")]
    rows = [r for _, r in rows.iterrows() if _scale_ok(r, scale)]
    if not rows:
        return None
    r = rows[0]
    return {"mcid": float(r["mcid"]), "unit": str(r["unit"]), "source": str(r["source"]),
            "citation": str(r["citation"]), "notes": str(r["notes"]), "caveat": MCID_CAVEAT,
            "outcome": outcome, "scale_range": str(r["scale_range"])}
