"""The column contract of the trial data, written once.

Four tables (``trials``, ``outcomes``, ``contrasts``, ``pooled_targets``), each a tuple of
:class:`Column` (name, kind, required or optional, allowed values or range, description), as in
``bayes_koa/koa/data/koa_msc/README.md``; and :data:`OUTCOMES`, the registry of known outcome scales
(direction, family, standard range). The reader parses and validates against these objects, and
``docs/data_schema.md`` is rendered from them by :func:`schema_markdown` (a test keeps the two equal).

Terms used below:

* *kind*: ``str`` (text), ``float`` (number), ``int`` (whole number; pandas ``Int64``) or ``bool``
  (``yes``/``no`` or ``true``/``false``; pandas ``boolean``). Missing values are ``NA``.
* *required*: the column must be present. Its cells may still be empty (a missing value is not
  an error) unless the column is also a *key* (a blank key cell is an error).
* *level* (``trials`` only): ``trial`` columns describe the whole trial, so every arm of a trial
  must carry the same value (``cell_source`` is the documented exception for multi-source trials).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Column",
    "Table",
    "OutcomeInfo",
    "SCHEMA",
    "OUTCOMES",
    "MISSING_TOKENS",
    "TRUE_TOKENS",
    "FALSE_TOKENS",
    "EFFECTS",
    "EFFECT_MEASURES",
    "MAX_PATIENTS",
    "MAX_INJECTIONS",
    "check_label",
    "CELL_SOURCES",
    "ORIGINS",
    "ARM_ROLES",
    "CONTROL_TYPES",
    "VALUE_TYPES",
    "STAT_REPORTED",
    "trial_level_columns",
    "outcome_info",
    "schema_markdown",
]

KINDS = ("str", "float", "int", "bool")

# Cell text read as "missing" in number and yes/no columns (case-insensitive, after stripping).
# In text columns only an empty cell is missing.
MISSING_TOKENS = ("", "NA", "N/A", "NaN", "NR")
TRUE_TOKENS = ("yes", "true")
FALSE_TOKENS = ("no", "false")

CELL_SOURCES = ("BM", "UC", "AD", "placenta", "BMAC", "other")
ORIGINS = ("autologous", "allogeneic")
ARM_ROLES = ("msc", "control")
CONTROL_TYPES = ("HA", "placebo", "PRP", "corticosteroid", "conservative", "analgesic")
EVIDENCE = ("primary", "secondary")
VALUE_TYPES = ("final", "change_from_baseline")
STAT_REPORTED = ("mean_sd", "mean_se", "median_iqr", "mean_pm_unlabelled", "mean_ci", "events")
MEASURES = ("MD", "SMD")
EFFECT_MEASURES = ("MD", "SMD", "SMDH", "ROM", "logOR", "logRR")

# Plausibility bounds that turn typing and unit errors into errors (not data: no trial arm holds a
# million patients, and no arm gets a hundred injections; 1e30 or a cell count typed into n is caught).
MAX_PATIENTS = 1_000_000
MAX_INJECTIONS = 100


@dataclass(frozen=True)
class Column:
    """One column of one table.

    ``allowed``: the only values a non-empty cell may take (text columns). ``minimum`` /
    ``maximum``: bounds for number columns (``*_exclusive`` makes the bound strict).
    ``key``: a blank cell is an error. ``level``: ``"trial"`` for trial-level columns of
    ``trials`` (all arms of a trial must agree), else ``"row"``. ``label``: the name used in
    error messages (defaults to the column name). ``added``: an absent column is added empty
    (False: an extension column, read and checked where present, else left out, so tables and
    files written from :attr:`Table.names` keep their columns).
    """

    name: str
    kind: str
    required: bool
    description: str
    allowed: tuple[str, ...] | None = None
    minimum: float | None = None
    minimum_exclusive: bool = False
    maximum: float | None = None
    maximum_exclusive: bool = False
    key: bool = False
    level: str = "row"
    label: str | None = None
    added: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.level not in ("row", "trial"):
            raise ValueError(f"column {self.name}: level must be 'row' or 'trial'")

    @property
    def display(self) -> str:
        return self.label or self.name

    @property
    def pandas_dtype(self) -> str:
        return {"str": "str", "float": "float64", "int": "Int64", "bool": "boolean"}[self.kind]

    def range_text(self) -> str:
        """The bounds as text, e.g. ``> 0`` or ``>= 0 and < 100``; empty if none."""
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.minimum_exclusive else '>='} {_num(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.maximum_exclusive else '<='} {_num(self.maximum)}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Table:
    """One table: its name, default file name, what one row is, and its columns."""

    name: str
    filename: str
    one_row_per: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """The columns every table read has (absent optional ones are added empty)."""
        return tuple(c.name for c in self.columns if c.added)

    @property
    def all_names(self) -> tuple[str, ...]:
        """:attr:`names` and the extension columns (read only where present)."""
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


@dataclass(frozen=True)
class OutcomeInfo:
    """A known outcome scale.

    ``lower_is_better``: True, False, or None (direction unknown: kept, not poolable).
    ``scale_min``/``scale_max``: the standard range where the scale has one fixed range; None
    where it depends on the version used (then the range must come from the data).
    ``binary``: counted as events per arm (``events`` and ``n``), not as a continuous score.
    ``bounds``: ``(low, high)`` that every version of the scale lies within (``high`` None if some
    versions have no fixed top); checked on rows that state no ``scale_min``/``scale_max``.
    """

    name: str
    family: str
    lower_is_better: bool | None
    scale_min: float | None = None
    scale_max: float | None = None
    binary: bool = False
    note: str = ""
    bounds: tuple[float, float | None] | None = None


def _c(name, kind, required, description, **kw) -> Column:
    return Column(name=name, kind=kind, required=required, description=description, **kw)


_SOURCE_DESC = "DOI / PMID / PMCID / registry id of each source used for the row, separated by `;`."

TRIALS = Table(
    name="trials",
    filename="trials.csv",
    one_row_per="trial x arm: design, cell product, dose, n, follow-up, scope",
    columns=(
        _c("trial_id", "str", True,
           "FirstAuthor_Year (e.g. `LamoEspinosa_2016`); for trials with no identified publication, "
           "Sponsor_RegistryId or Acronym_RegistryId (e.g. `NatureCell_NCT02674399`).", key=True),
        _c("year", "int", False, "Publication year; empty for registry-only trials.", level="trial"),
        _c("country", "str", False,
           "Country where the trial was run, as stated by a cited source; empty if not stated.",
           level="trial"),
        _c("cell_source", "str", True,
           "Describes the trial, so control arms carry the trial's source. In multi-source trials "
           "(MILES) each cell arm has its own source and the control arm is `other`.",
           allowed=CELL_SOURCES, level="trial"),
        _c("origin", "str", True, "Autologous or allogeneic; empty if not stated.",
           allowed=ORIGINS, level="trial"),
        _c("culture_expanded", "bool", False,
           "yes if a source says the cells were cultured or culture-expanded; no for BMAC, "
           "bone-marrow mononuclear and G-CSF-mobilised cells, and non-expanded tissue products; "
           "empty if not stated.", level="trial"),
        _c("rct", "bool", False, "yes/no (randomized controlled trial).", level="trial"),
        _c("in_scope", "bool", False,
           "yes if randomized, MSC, knee OA; no for single-arm studies, BMAC, mononuclear or other "
           "non-expanded cells.", level="trial"),
        _c("scope_note", "str", False,
           "Design in a few words, and why the trial is or is not in scope.", level="trial"),
        _c("arm_id", "str", True, "Short snake_case id, unique within the trial.", key=True),
        _c("arm_role", "str", True,
           "`msc` (the cell-therapy arm, whatever the product) or `control`.",
           allowed=ARM_ROLES, key=True),
        _c("arm_label", "str", False, "The arm as described in the source."),
        _c("control_type", "str", True,
           "Comparator of a control arm; empty for msc arms and for control arms whose comparator "
           "is not reported.", allowed=CONTROL_TYPES),
        _c("cells_per_injection", "float", True,
           "Cells per injection in scientific notation (`4e7` = 40 x 10^6); empty if unknown or "
           "printed only as a range.", minimum=0, minimum_exclusive=True),
        _c("n_injections", "int", True,
           "Number of injections in the arm (cell injections in msc arms, comparator injections in "
           "control arms).", minimum=0, maximum=MAX_INJECTIONS),
        _c("n_randomized", "int", True,
           "Patients randomized (or listed as allocated) to the arm.", minimum=2,
           maximum=MAX_PATIENTS),
        _c("n_analysed", "int", False,
           "Patients analysed in the arm, where a source gives a count that is clearly not the "
           "randomized count.", minimum=2, maximum=MAX_PATIENTS),
        _c("followup_months", "float", False,
           "Longest follow-up in months, only where a source states it in months (or years).",
           minimum=0, minimum_exclusive=True, level="trial"),
        _c("evidence", "str", False,
           "primary if all numbers on the row come from the trial's own publication or registry "
           "record; secondary if any comes from a review table or press release.",
           allowed=EVIDENCE),
        _c("source", "str", False, _SOURCE_DESC),
        _c("source_location", "str", False,
           "Where in each source (abstract, Table 1, registry record), with what was taken from it."),
        _c("source_url", "str", False, "Public web address(es) of the source copies, separated by `;`."),
        _c("notes", "str", False,
           "Conflicts, caveats and any number not put into a column."),
    ),
)

OUTCOMES_TABLE = Table(
    name="outcomes",
    filename="outcomes.csv",
    one_row_per="trial x arm x outcome x time point: arm-level summary statistics",
    columns=(
        _c("trial_id", "str", True, "Joins to `trials`.", key=True),
        _c("arm_id", "str", True, "Joins to `trials` (with `trial_id`).", key=True),
        _c("outcome", "str", True,
           "Outcome name; known names and their direction are in the outcome registry below. "
           "Any other name needs `lower_is_better`.", key=True),
        _c("scale_min", "float", False, "Lower end of the scale, only where the source prints it."),
        _c("scale_max", "float", False, "Upper end of the scale, only where the source prints it."),
        _c("lower_is_better", "bool", False,
           "true/false; a property of the outcome scale, not of the value type (for a change score "
           "under true, a more negative change is better). Must agree with the registry; empty "
           "means: take it from the registry."),
        _c("time_months", "float", True, "Months after injection; 0 = baseline.",
           minimum=0, key=True),
        _c("value_type", "str", True,
           "`final` (score at that time, including baseline) or `change_from_baseline`.",
           allowed=VALUE_TYPES, key=True),
        _c("n", "int", False,
           "Patients behind the value, only where the source states it for that outcome "
           "(required on `events` rows).", minimum=2, maximum=MAX_PATIENTS),
        _c("mean", "float", False, "Mean, as printed."),
        _c("sd", "float", False,
           "SD, as printed (for `mean_pm_unlabelled`, the unlabelled x of mean +/- x).",
           minimum=0, minimum_exclusive=True, label="SD"),
        _c("se", "float", False, "Standard error, as printed.",
           minimum=0, minimum_exclusive=True, label="SE"),
        _c("median", "float", False, "Median, as printed."),
        _c("q1", "float", False, "First quartile (lower IQR bound), as printed."),
        _c("q3", "float", False, "Third quartile (upper IQR bound), as printed."),
        _c("ci_low", "float", False, "Lower confidence limit of the mean, as printed."),
        _c("ci_high", "float", False, "Upper confidence limit of the mean, as printed."),
        _c("ci_level", "float", False,
           "Confidence level of `ci_low`/`ci_high` in percent; empty means 95.",
           minimum=0, minimum_exclusive=True, maximum=100, maximum_exclusive=True, added=False),
        _c("min", "float", False, "Smallest value in the arm (sample range), as printed.",
           added=False),
        _c("max", "float", False, "Largest value in the arm (sample range), as printed.",
           added=False),
        _c("events", "int", False,
           "Patients with the event in the arm, for binary outcomes (e.g. `AE_any`, `AE_serious`); "
           "such rows need `n`, `value_type = final` and `stat_reported = events`.", minimum=0,
           maximum=MAX_PATIENTS),
        _c("stat_reported", "str", True,
           "`mean_sd`, `mean_se`, `median_iqr`, `mean_pm_unlabelled` (printed as mean +/- x with x "
           "not defined; x is stored in `sd`), `mean_ci`, or `events`.", allowed=STAT_REPORTED),
        _c("evidence", "str", False, "primary or secondary, as in `trials`.", allowed=EVIDENCE),
        _c("source", "str", False, "Identifiers of the source."),
        _c("source_location", "str", False, "Table or abstract location."),
        _c("notes", "str", False, "Significance markers, scale caveats, conflicts."),
    ),
)

CONTRASTS = Table(
    name="contrasts",
    filename="contrasts.csv",
    one_row_per="result reported only as a contrast or per-arm change with CI",
    columns=(
        _c("trial_id", "str", True, "Joins to `trials`.", key=True),
        _c("outcome", "str", True, "Outcome name (registry below), e.g. Lysholm, IKDC, Tegner, NPRS.",
           key=True),
        _c("time_months", "float", False,
           "Months after injection; empty when the estimate comes from a model over several visits.",
           minimum=0),
        _c("contrast", "str", True,
           "`msc_minus_control` for a between-arm difference; `<arm_id>_change_from_baseline` for a "
           "within-arm change (the arm must exist in `trials`).", key=True),
        _c("estimate", "float", True, "Estimate, as printed."),
        _c("ci_low", "float", False, "Lower confidence limit, as printed."),
        _c("ci_high", "float", False, "Upper confidence limit, as printed."),
        _c("ci_level", "float", False, "Confidence level in percent.",
           minimum=0, minimum_exclusive=True, maximum=100, maximum_exclusive=True),
        _c("adjusted", "bool", False, "yes if the estimate is covariate-adjusted."),
        _c("source", "str", False, "Identifiers of the source."),
        _c("source_location", "str", False, "Table or abstract location."),
        _c("notes", "str", False, "Caveats."),
    ),
)

POOLED_TARGETS = Table(
    name="pooled_targets",
    filename="pooled_targets.csv",
    one_row_per="pooled estimate from a published meta-analysis, with a verbatim quote",
    columns=(
        _c("meta_analysis", "str", True, "Short id (FirstAuthor_Year or Journal_Year).", key=True),
        _c("n_trials", "int", True, "Number of trials, as stated in the abstract.", minimum=1),
        _c("n_patients", "int", True, "Number of patients, as stated in the abstract.", minimum=1),
        _c("outcome", "str", True,
           "VAS, WOMAC_total, WOMAC_pain, WOMAC_stiffness, WOMAC_function, WOMAC_unspecified, "
           "knee_pain, physical_function.", key=True),
        _c("measure", "str", True, "MD or SMD, as printed.", allowed=MEASURES),
        _c("estimate", "float", True, "Pooled estimate."),
        _c("ci_low", "float", True, "Lower confidence limit."),
        _c("ci_high", "float", True, "Upper confidence limit."),
        _c("timepoint", "str", True, "Empty; no abstract states one."),
        _c("quote", "str", True, "Verbatim sentence from the abstract."),
        _c("source", "str", True, "Citation and identifiers."),
        _c("ci_level", "float", False, "Confidence level in percent.",
           minimum=0, minimum_exclusive=True, maximum=100, maximum_exclusive=True),
        _c("p_reported", "str", False, "p as printed (text)."),
        _c("design", "str", False, "Trials pooled."),
        _c("comparison", "str", False, "Comparison, where the abstract names one."),
        _c("source_url", "str", False, "Public web address of the source."),
        _c("notes", "str", False, "Caveats."),
    ),
)

SCHEMA: dict[str, Table] = {
    t.name: t for t in (TRIALS, OUTCOMES_TABLE, CONTRASTS, POOLED_TARGETS)
}
"""Table name -> :class:`Table`, in the fixed order the reader reads and hashes them."""

EFFECTS = Table(
    name="effects",
    filename="effects.csv",
    one_row_per="trial x comparison x outcome x time: an effect size (the table `fit` reads)",
    columns=(
        _c("trial_id", "str", True, "Trial.", key=True),
        _c("comparison", "str", False, "`<msc arm> vs <control arm>`."),
        _c("msc_arm", "str", False, "MSC arm."),
        _c("control_arm", "str", False, "Control arm."),
        _c("outcome", "str", False, "Outcome name."),
        _c("time_months", "float", False, "Months after injection.", minimum=0),
        _c("measure", "str", False, "Effect measure.", allowed=EFFECT_MEASURES),
        _c("yi", "float", True, "Effect, MSC minus control, negative = benefit of MSC."),
        _c("vi", "float", False, "Sampling variance of yi.", minimum=0, minimum_exclusive=True),
        _c("sei", "float", False, "Standard error of yi.", minimum=0, minimum_exclusive=True),
        _c("n_msc", "int", False, "Patients in the MSC arm (as used in vi).", minimum=2,
           maximum=MAX_PATIENTS),
        _c("n_control", "int", False, "Patients in the control arm (as used in vi).", minimum=2,
           maximum=MAX_PATIENTS),
        _c("events_msc", "float", False, "Events in the MSC arm.", minimum=0, maximum=MAX_PATIENTS),
        _c("events_control", "float", False, "Events in the control arm.", minimum=0,
           maximum=MAX_PATIENTS),
        _c("cell_source", "str", False, "Cell source.", allowed=CELL_SOURCES),
        _c("origin", "str", False, "Autologous or allogeneic.", allowed=ORIGINS),
        _c("cells_per_injection", "float", False, "Cells per injection.", minimum=0,
           minimum_exclusive=True),
        _c("n_injections", "float", False, "Injections in the MSC arm.", minimum=0,
           maximum=MAX_INJECTIONS),
        _c("control_type", "str", False, "Comparator.", allowed=CONTROL_TYPES),
        _c("value_type", "str", False, "final or change_from_baseline.", allowed=VALUE_TYPES),
        _c("flipped", "bool", False, "yi multiplied by -1 (higher-is-better scale)."),
        _c("in_scope", "bool", False, "Trial in scope."),
        _c("excluded_reason", "str", False, "Why the row cannot be used; empty if usable."),
    ),
)
"""The columns of an effect table that :func:`bayes_koa.data.validate_effect_table` checks where
present (``bayes_koa.effect_sizes`` writes all of them; a user's own table needs ``trial_id``,
``yi`` and ``vi`` or ``sei``). Not part of :data:`SCHEMA` (not read from files)."""

def check_label(value: str, allowed: tuple[str, ...], column: str) -> tuple[str, str | None]:
    """The one rule for a cell of a fixed vocabulary (``cell_source``, ``origin``, ...).

    Surrounding white space is removed (``'BM '`` is ``'BM'``: invisible in a sheet, never
    meaningful); anything else must match an allowed value exactly. Returns ``(value, problem)``:
    ``problem`` is None when the (stripped) value is allowed, else a message, which for a value
    that differs from an allowed one only in case (``'uc'``) names it: labels are case-sensitive,
    as column names are, so ``'uc'`` is refused, not guessed.
    """
    v = value.strip()
    if v in allowed:
        return v, None
    near = [a for a in allowed if a.lower() == v.lower()]
    hint = f"; did you mean {near[0]!r}? labels are case-sensitive" if near else ""
    return v, f"unknown {column} {v!r} (allowed: {', '.join(allowed)}{hint})"


def _o(name, family, lower, lo=None, hi=None, note="", binary=False, bounds=None) -> OutcomeInfo:
    if bounds is None and lo is not None and hi is not None and family != "WOMAC":
        bounds = (lo, hi)  # one fixed range: the standard range is the only one
    return OutcomeInfo(name, family, lower, lo, hi, binary, note, bounds)


_WOMAC_NOTE = "Likert (3.1) range; the VAS format has other ranges, and most sources do not say which."

OUTCOMES: dict[str, OutcomeInfo] = {
    o.name: o
    for o in (
        _o("VAS", "VAS", True,
           note="0-10 cm or 0-100 mm: the range must come from the data (scale_min/scale_max).",
           bounds=(0, 100)),
        _o("WOMAC_total", "WOMAC", True, 0, 96, _WOMAC_NOTE, bounds=(0, None)),
        _o("WOMAC_pain", "WOMAC", True, 0, 20, _WOMAC_NOTE, bounds=(0, None)),
        _o("WOMAC_stiffness", "WOMAC", True, 0, 8, _WOMAC_NOTE, bounds=(0, None)),
        _o("WOMAC_function", "WOMAC", True, 0, 68, _WOMAC_NOTE, bounds=(0, None)),
        _o("WOMAC_unspecified", "WOMAC", True, note="Total or subscale not stated.", bounds=(0, None)),
        _o("Lequesne", "Lequesne", True, 0, 24),
        _o("Lysholm", "Lysholm", False, 0, 100),
        _o("KOOS_unspecified", "KOOS", False, 0, 100,
           "Total or subscale not stated; every KOOS subscale is 0-100."),
        _o("NPRS", "NPRS", True, 0, 10, "Numeric pain rating scale (11 points)."),
        _o("IKDC", "IKDC", False, 0, 100, "IKDC subjective knee form."),
        _o("Tegner", "Tegner", False, 0, 10, "Tegner activity level."),
        _o("JSW_mm", "JSW", None,
           note="Joint space width (change) in mm; sign convention unclear (README): kept, "
                "not poolable."),
        _o("AE_any", "AE", True, binary=True, note="Patients with any adverse event."),
        _o("AE_serious", "AE", True, binary=True, note="Patients with a serious adverse event."),
    )
}
"""Known outcomes: name -> :class:`OutcomeInfo`."""


def outcome_info(name: str) -> OutcomeInfo | None:
    """The registry entry of an outcome, or None if the name is not known."""
    return OUTCOMES.get(name)


def trial_level_columns() -> tuple[str, ...]:
    """Columns of ``trials`` that describe the whole trial (all arms must agree)."""
    return tuple(c.name for c in TRIALS.columns if c.level == "trial")


# --------------------------------------------------------------------------- markdown


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table_markdown(t: Table) -> list[str]:
    lines = [
        f"## {t.name} (`{t.filename}`)",
        "",
        f"One row per {t.one_row_per}.",
        "",
        "| column | kind | required | allowed values / range | description |",
        "|---|---|---|---|---|",
    ]
    for c in t.columns:
        req = "required (key: no blank cells)" if c.key else ("required" if c.required else "optional")
        if not c.added:
            req = "optional (extension: not added when absent)"
        rules = []
        if c.allowed:
            rules.append(", ".join(f"`{a}`" for a in c.allowed))
        if c.kind == "bool":
            rules.append("yes/no or true/false")
        if c.range_text():
            rules.append(c.range_text())
        if c.level == "trial":
            rules.append("same in all arms of a trial")
        lines.append(
            f"| `{c.name}` | {c.kind} | {req} | {_cell('; '.join(rules))} | {_cell(c.description)} |"
        )
    lines.append("")
    return lines


def schema_markdown() -> str:
    """The column contract and the outcome registry as Markdown (the text of docs/data_schema.md)."""
    lines = [
        "# bayes_koa data schema",
        "",
        "<!-- Generated by bayes_koa.data.schema.schema_markdown(); do not edit by hand. -->",
        "",
        "The column contract that `bayes_koa.read_trials` and `bayes_koa.load_koa_msc` check. "
        "The curated data and their sources are described in `bayes_koa/koa/data/koa_msc/README.md`.",
        "",
        "Reading rules:",
        "",
        "- *kind*: `str` (text), `float` (number), `int` (whole number, pandas `Int64`), "
        "`bool` (pandas `boolean`). Missing values become `NA`.",
        "- An empty cell is a missing value, and a missing value is not an error. In number and "
        "yes/no columns these cells also count as missing (any case): "
        + ", ".join(f"`{m}`" for m in MISSING_TOKENS if m) + ".",
        "- yes/no columns accept " + ", ".join(f"`{t}`" for t in TRUE_TOKENS + FALSE_TOKENS)
        + " (any case).",
        "- *required* columns must be present; *key* columns must also have no blank cells. "
        "Absent optional columns are added as empty columns (extension columns only where given); "
        "columns not listed here are kept as text. "
        "A column name may appear only once (after removing surrounding white space).",
        "- Labels (columns with allowed values): surrounding white space is removed (`'BM '` is `BM`); "
        "anything else must match exactly, so `uc` is refused (\"did you mean 'UC'?\"): the same rule "
        "for effect tables given to `fit` (`bayes_koa.data.validate_effect_table`).",
        "- The same checks run on every way into `effect_sizes`: a `TrialData` (checked again), a "
        "`(trials, outcomes)` tuple of DataFrames or file paths, or an object with such tables.",
        "- Every row is kept, in order; nothing is imputed or converted.",
        "",
    ]
    for t in SCHEMA.values():
        lines += _table_markdown(t)
    lines += [
        "## Outcome registry",
        "",
        "Direction (`lower_is_better`), family and standard range of known outcomes. A `lower_is_better` "
        "in `outcomes` that contradicts the registry is an error; an outcome not listed here needs "
        "`lower_is_better` on its rows. A stated `scale_min`/`scale_max` on a row is checked against "
        "`mean`, `median`, `q1`, `q3`, `min` and `max` (final values within the range, changes within "
        "+/- its width); a row that states no range is checked against the range every version of "
        "the scale lies within (column *values within*).",
        "",
        "| outcome | family | lower is better | standard range | values within | binary | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in OUTCOMES.values():
        lib = {True: "true", False: "false", None: "unknown"}[o.lower_is_better]
        rng = f"{_num(o.scale_min)}-{_num(o.scale_max)}" if o.scale_min is not None else ""
        within = ("" if o.bounds is None else f">= {_num(o.bounds[0])}" if o.bounds[1] is None
                  else f"{_num(o.bounds[0])}-{_num(o.bounds[1])}")
        lines.append(
            f"| `{o.name}` | {o.family} | {lib} | {rng} | {within} | {'yes' if o.binary else ''} "
            f"| {_cell(o.note)} |"
        )
    lines += [
        "",
        "## Checks (errors)",
        "",
        "All problems are collected and raised once as `DataValidationError`, one line per problem, "
        "each naming the trial, the arm, the column and the file row (header = row 1; the index label "
        "for a DataFrame).",
        "",
        "- a file that cannot be read (missing, a folder, not CSV/.xlsx); a column name given twice;",
        "- a required column is missing, or a column name differs from the schema only in case;",
        "- a key cell is blank; a non-numeric value in a number column; a non-whole number in an "
        "`int` column; an unreadable yes/no; a value not in the allowed list; a value outside the "
        "range above (e.g. SD or SE <= 0, n < 2, events < 0, n above "
        f"{MAX_PATIENTS:,}".replace(",", " ") + ");",
        "- an `msc` arm with a `control_type`, or a `control` arm with `cells_per_injection` "
        "(swapped roles would flip the sign of every effect);",
        "- `events` > `n`; an `events` row without `n`, with `value_type` other than `final`, or "
        "`stat_reported` other than `events`;",
        "- a trial + arm listed twice in `trials`; the same trial + arm + outcome + time + value_type "
        "listed twice in `outcomes`;",
        "- an `outcomes` or `contrasts` row whose trial or arm does not join to `trials`;",
        "- arms of one trial that disagree on a trial-level column (for `cell_source`: in a trial whose "
        "msc arms have several sources, the control arms must be `other`);",
        "- an outcome with no known direction (not in the registry and `lower_is_better` empty), "
        "or a `lower_is_better` contradicting the registry;",
        "- a value outside the stated scale range (or, with no stated range, outside the registry's "
        "*values within*), `scale_min` >= `scale_max`, `q1` > `median`, `median` > `q3`, `q1` > `q3`, "
        "`ci_low` > `ci_high`, `min` > `max`, a mean or quartile outside `min`-`max`;",
        "- the spread not under the column `stat_reported` names (e.g. `mean_se` with the number "
        "under `sd` and `se` empty: an SE used as an SD weights the arm n times too much);",
        "- `sd` and `se` both given and contradicting each other: `se` x sqrt(n) and `sd` more than "
        "a factor 1.25 apart beyond the rounding of their printed digits (n: the row's `n`, else the "
        "arm's `n_analysed`, else `n_randomized`).",
        "",
        "Warnings (`DataValidationWarning`), not errors: an outcome whose direction the registry "
        "marks unknown (`JSW_mm`: kept, not poolable); an estimate or a mean outside its own CI; "
        "columns not in the schema.",
        "",
    ]
    return "\n".join(lines)
