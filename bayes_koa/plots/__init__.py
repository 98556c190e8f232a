"""Figures: forest, rankogram, densities, prior vs posterior, posterior predictive check. Returned, never shown."""
