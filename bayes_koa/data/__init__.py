"""Trial data: the column contract (:mod:`.schema`), reading and validation (:mod:`.reader`)."""

from .reader import (
    DataValidationError,
    DataValidationWarning,
    TrialData,
    as_trial_data,
    read_bundle,
    read_trials,
    validate,
    validate_effect_table,
)
from .schema import (
    EFFECTS,
    OUTCOMES,
    SCHEMA,
    Column,
    OutcomeInfo,
    Table,
    check_label,
    outcome_info,
    schema_markdown,
    trial_level_columns,
)

__all__ = [
    "TrialData",
    "read_bundle",
    "read_trials",
    "validate",
    "as_trial_data",
    "validate_effect_table",
    "DataValidationError",
    "DataValidationWarning",
    "SCHEMA",
    "OUTCOMES",
    "EFFECTS",
    "check_label",
    "Column",
    "Table",
    "OutcomeInfo",
    "outcome_info",
    "schema_markdown",
    "trial_level_columns",
]
