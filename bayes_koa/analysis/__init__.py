"""Pure functions of a fitted DataTree: summaries, rankings, model checks (PPC, LOO, compare)."""
