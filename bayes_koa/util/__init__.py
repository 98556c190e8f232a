"""The lowest layer: helpers for posterior draws and orderings used by every other layer."""
