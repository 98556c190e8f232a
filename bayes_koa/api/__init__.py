"""The user-facing objects: ``fit`` and the result object ``MetaAnalysis`` (which only delegates), ``load``."""
