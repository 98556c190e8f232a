"""Orderings of group labels: as given by a preferred order, then naturally (11 before 108)."""

from __future__ import annotations

import re

__all__ = ["natural_key", "ordered"]


def natural_key(label) -> tuple:
    """Sort key that compares digit runs as numbers: 'district 11' < 'district 108', 2 < 10."""
    parts = re.split(r"(\d+(?:\.\d+)?)", str(label))
    return tuple((0, float(p), p) if i % 2 else (1, 0.0, p.lower()) for i, p in enumerate(parts) if p != "")


def ordered(values, order=()) -> list[str]:
    """Distinct ``values``: those in ``order`` first (in that order), the rest in natural order."""
    vals = list(dict.fromkeys(values))
    return [v for v in order if v in vals] + sorted((v for v in vals if v not in order), key=natural_key)
