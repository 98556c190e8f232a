"""Sampling (compile once, cache), diagnostics, provenance, exact normal-normal quadrature."""
