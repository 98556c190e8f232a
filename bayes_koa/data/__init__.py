"""Trial data: the column contract (:mod:`.schema`), reading and validation (:mod:`.reader`)."""

from .reader import (
    DataValidationError,
    DataValidationWarning,
    TrialData,
    read_bundle,
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
    "read_bundle",
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
