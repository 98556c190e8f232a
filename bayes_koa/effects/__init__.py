"""Effect sizes (metafor's formulas): MD, SMD, logOR, logRR; SD and mean conversions; multi-arm handling."""

from .table import COLUMNS, effect_sizes

__all__ = ["effect_sizes", "COLUMNS"]
