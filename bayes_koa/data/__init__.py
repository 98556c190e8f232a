"""Trial data: the column contract (:mod:`.schema`), reading and validation (:mod:`.reader`),
and the bundled curated tables (``koa_msc/``)."""

from .reader import (
    DataValidationError,
    DataValidationWarning,
    TrialData,
    load_koa_msc,
    read_trials,
    validate,
)
from .schema import (
    OUTCOMES,
    SCHEMA,
    Column,
    OutcomeInfo,
    Table,
    outcome_info,
    schema_markdown,
    trial_level_columns,
)

__all__ = [
    "TrialData",
    "load_koa_msc",
    "read_trials",
    "validate",
    "DataValidationError",
    "DataValidationWarning",
    "SCHEMA",
    "OUTCOMES",
    "Column",
    "Table",
    "OutcomeInfo",
    "outcome_info",
    "schema_markdown",
    "trial_level_columns",
]
