"""Workflows that refit: prior sensitivity sweeps, power scaling, leave-one-trial-out influence."""
