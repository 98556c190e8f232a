"""Reading and validating trial data against the column contract in :mod:`bayes_koa.data.schema`.

``load_koa_msc()`` reads the bundled curated tables; ``read_trials(...)`` reads a user's own
extraction (CSV, .xlsx, or DataFrames). Both parse every column to its schema kind, keep every
row in order, and run :func:`validate`'s checks: every problem is collected and raised once as a
:class:`DataValidationError` whose lines name the trial, the arm and the column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import io
import math
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from .schema import (
    FALSE_TOKENS,
    MISSING_TOKENS,
    OUTCOMES,
    SCHEMA,
    TRUE_TOKENS,
    EFFECTS,
    Column,
    _num,
    check_label,
    Table,
    trial_level_columns,
)

__all__ = [
    "TrialData",
    "DataValidationError",
    "DataValidationWarning",
    "read_bundle",
    "read_trials",
    "validate",
    "as_trial_data",
    "validate_effect_table",
]

BUNDLED_SOURCE = "bundled koa_msc"
_MISSING = frozenset(t.lower() for t in MISSING_TOKENS)
_TRUE = frozenset(TRUE_TOKENS)
_FALSE = frozenset(FALSE_TOKENS)
# columns that hold a number reported for an arm (used to say which trials have outcome numbers)
_STAT_COLUMNS = ("mean", "sd", "se", "median", "q1", "q3", "ci_low", "ci_high", "events")
_CHANGE_SUFFIX = "_change_from_baseline"
_MAX_INT = 2**53  # whole numbers above this are not exact in a float64 (and overflow Int64 soon after)

Source = str | os.PathLike | pd.DataFrame


# --------------------------------------------------------------------------- errors


class DataValidationError(ValueError):
    """Bad trial data. ``.problems`` is a list of dicts with keys ``table``, ``row``,
    ``trial_id``, ``arm_id``, ``column``, ``message`` (and ``line``, the full text line).

    ``row`` is the row number in the file with the header as row 1 (the spreadsheet row), or the
    index label when the table was given as a DataFrame; None for whole-table problems; ``rows``
    lists every row of a problem that spans several (e.g. a row listed twice).
    The message is one line per problem: the problem itself when there is one, else a count
    followed by one ``- problem`` line each.

    Other modules may raise it with a plain message (``DataValidationError("text")``): the text
    is then the message and the one entry of ``.problems``.
    """

    def __init__(self, problems: list[dict] | str):
        if isinstance(problems, str):
            self.problems = [_plain_problem(problems)]
            super().__init__(problems)
            return
        self.problems = [_plain_problem(p) if isinstance(p, str) else dict(p) for p in problems]
        lines = [p.get("line") or p.get("message") for p in self.problems]
        if len(lines) == 1:  # one problem: one line
            super().__init__(lines[0])
            return
        head = f"{len(lines)} problems in the trial data:"
        super().__init__("\n".join([head] + [f"- {line}" for line in lines]))


def _plain_problem(text: str) -> dict:
    return {"table": None, "row": None, "trial_id": None, "arm_id": None, "column": None,
            "message": text, "line": text}


class DataValidationWarning(UserWarning):
    """Kept but suspect data (e.g. an outcome with no known direction, JSW_mm)."""


@dataclass
class _Issue:
    table: str  # label used in messages, e.g. "outcomes.csv" or "outcomes"
    rows: tuple  # row numbers / index labels; empty for whole-table problems
    trial_id: str | None
    arm_id: str | None
    column: str | None
    message: str
    from_frame: bool = False
    arm_word: str = "arm"

    def line(self) -> str:
        trial = self.trial_id if self.trial_id else "(no trial_id)"
        if self.arm_id is None and self.arm_word == "comparison":
            who = trial if self.trial_id else "(all rows)"
        elif self.arm_id is None:
            who = f"{trial} / all arms" if self.trial_id else "(all rows)"
        else:
            who = f"{trial} / {self.arm_word} {self.arm_id if self.arm_id != '' else '(no arm_id)'}"
        col = f" / column {self.column}" if self.column else ""
        if not self.rows:
            where = f"in {self.table}"
        else:
            word = "index" if self.from_frame else ("rows" if len(self.rows) > 1 else "row")
            where = f"in {self.table} {word} {', '.join(str(r) for r in self.rows)}"
        return f"{who}{col}: {self.message} {where}"

    def as_dict(self) -> dict:
        return {
            "table": self.table,
            "row": self.rows[0] if self.rows else None,
            "rows": list(self.rows),
            "trial_id": self.trial_id,
            "arm_id": self.arm_id,
            "column": self.column,
            "message": self.message,
            "line": self.line(),
        }


# --------------------------------------------------------------------------- TrialData


@dataclass(frozen=True, eq=False, repr=False)
class TrialData:
    """Validated trial tables.

    ``trials`` (one row per trial x arm), ``outcomes`` (trial x arm x outcome x time),
    ``contrasts`` and ``pooled_targets`` (possibly empty, with the schema's columns);
    ``source``: where the tables came from; ``data_hash``: sha256 over the raw bytes read.
    """

    trials: pd.DataFrame
    outcomes: pd.DataFrame
    contrasts: pd.DataFrame
    pooled_targets: pd.DataFrame
    source: str
    data_hash: str
    warnings: tuple[str, ...] = field(default=())
    locations: dict = field(default_factory=dict, repr=False)
    """table -> (label, row numbers) of the file each table was read from, so that a later
    check of the tables (:func:`as_trial_data`) names the same file rows."""

    def __post_init__(self):
        # what the tables held when they were made: a later check tells whether they were changed
        object.__setattr__(self, "_frames_sha256", _frames_hash(self))

    @property
    def n_trials(self) -> int:
        return int(self.trials["trial_id"].nunique())

    @property
    def n_arms(self) -> int:
        return len(self.trials)

    @property
    def trials_with_outcomes(self) -> list[str]:
        """Trials with at least one arm-level number in ``outcomes`` (first-appearance order)."""
        return _trials_with_numbers(self.outcomes, _STAT_COLUMNS)

    @property
    def trials_with_contrasts(self) -> list[str]:
        """Trials with at least one estimate in ``contrasts``."""
        return _trials_with_numbers(self.contrasts, ("estimate", "ci_low", "ci_high"))

    def _summary(self) -> list[str]:
        return [
            f"{self.n_trials} trials, {self.n_arms} arms; {len(self.outcomes)} outcome rows, "
            f"{len(self.contrasts)} contrast rows, {len(self.pooled_targets)} pooled targets",
            "arm-level outcome numbers: " + (", ".join(self.trials_with_outcomes) or "none"),
            "contrasts: " + (", ".join(self.trials_with_contrasts) or "none"),
        ]

    def __repr__(self) -> str:
        head = f"TrialData(source={self.source!r}, data_hash={self.data_hash[:12]!r})"
        return "\n".join([head] + ["  " + s for s in self._summary()])

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(s)}</li>" for s in self._summary())
        return (
            f"<div><b>TrialData</b> from {html.escape(self.source)} "
            f"<code>{html.escape(self.data_hash[:12])}</code><ul>{items}</ul></div>"
        )


def _frames_hash(td) -> str:
    h = hashlib.sha256()
    for name in SCHEMA:
        df = getattr(td, name, None)
        text = df.to_csv(index=False, lineterminator="\n") if isinstance(df, pd.DataFrame) else ""
        h.update(f"{name}:{len(text)}\n{text}".encode())
    return h.hexdigest()


def _trials_with_numbers(df: pd.DataFrame, columns) -> list[str]:
    cols = [c for c in columns if c in df.columns]
    if df.empty or not cols:
        return []
    has = df[cols].notna().any(axis=1)
    return list(dict.fromkeys(df.loc[has, "trial_id"].dropna().tolist()))


# --------------------------------------------------------------------------- reading


@dataclass
class _Input:
    table: Table
    text: pd.DataFrame  # every cell a str ("" = empty), columns stripped
    label: str  # name used in messages
    from_frame: bool
    rows: list  # row number (header = 1) or index label of each row
    raw: bytes  # what is hashed


def _header_issues(names: list[str], label: str, header_row) -> list[dict]:
    """A column name given more than once (after removing white space): pandas would silently
    rename the copies ``mean.1``, ``mean.2``, so the second column would never be read."""
    seen: dict[str, list[int]] = {}
    for pos, n in enumerate(names, start=1):
        if n != "":
            seen.setdefault(n, []).append(pos)
    rows = () if header_row is None else (header_row,)
    return [
        _Issue(label, rows, None, None, n,
               f"column name {n!r} is given {len(pos)} times (columns {', '.join(map(str, pos))}); "
               "keep one").as_dict()
        for n, pos in seen.items() if len(pos) > 1
    ]


def _text_frame(grid: pd.DataFrame, label: str) -> pd.DataFrame:
    """A sheet read without a header (every cell text) -> text frame named by its first row."""
    grid = grid.fillna("").astype(object).map(lambda v: str(v).strip())
    if len(grid) == 0:
        raise DataValidationError([_Issue(label, (), None, None, None,
                                          "cannot read the file (it is empty)").as_dict()])
    names = [str(v).strip() for v in grid.iloc[0]]
    body = grid.iloc[1:].reset_index(drop=True)
    problems = _header_issues(names, label, 1)
    keep = []
    for pos, n in enumerate(names):
        if n == "":
            if (body.iloc[:, pos] != "").any():
                problems.append(_Issue(label, (1,), None, None, None,
                                       f"column {pos + 1} holds values but has no name").as_dict())
            continue  # an empty column without a name (e.g. a trailing comma): nothing to read
        keep.append(pos)
    if problems:
        raise DataValidationError(problems)
    text = body.iloc[:, keep].copy()
    text.columns = [names[p] for p in keep]
    return text


def _from_bytes(raw: bytes, table: Table, name: str, excel: bool) -> _Input:
    label = name
    try:
        if excel:
            try:
                import openpyxl  # noqa: F401
            except ImportError:
                raise ImportError(
                    f"Reading {name} (an .xlsx file) needs openpyxl, which is not installed: "
                    "`pip install openpyxl` (or `pip install bayes_koa[excel]`), or save the sheet as CSV."
                ) from None
            book = pd.ExcelFile(io.BytesIO(raw), engine="openpyxl")
            sheets = book.sheet_names
            named = [sh for sh in sheets if sh.strip().lower() == table.name]
            if len(sheets) > 1 and not named:
                issue = _Issue(name, (), None, None, None,
                               f"the workbook has several sheets ({', '.join(sheets)}) and none is "
                               f"named {table.name!r}")
                raise DataValidationError([issue.as_dict()])
            sheet = named[0] if named else sheets[0]
            if len(sheets) > 1:
                label = f"{name} sheet {sheet}"
            grid = pd.read_excel(book, sheet_name=sheet, dtype=str, na_filter=False, header=None)
        else:
            # header=None: the header is read as a row, so duplicated names are seen (not renamed)
            grid = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8-sig",
                               header=None)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError,
            zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        issue = _Issue(label, (), None, None, None, f"cannot read the file ({first})")
        raise DataValidationError([issue.as_dict()]) from None
    text = _text_frame(grid, label)
    return _Input(table, text, label, False, list(range(2, len(text) + 2)), raw)


def _cell_text(v: Any, col: Column | None) -> str:
    if v is None or (not isinstance(v, str) and pd.api.types.is_scalar(v) and pd.isna(v)):
        return ""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "true" if v else "false"
    if isinstance(v, float) or type(v).__name__.startswith("float"):
        f = float(v)
        if col is not None and col.kind == "int" and f.is_integer() and abs(f) < 2**63:
            return str(int(f))
        return repr(f)
    return str(v).strip()


def _from_frame(df: pd.DataFrame, table: Table, label: str | None = None,
                rows: list | None = None) -> _Input:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{table.name}: expected a path or a pandas DataFrame, got {type(df).__name__}")
    label = label or table.name
    names = [str(c).strip() for c in df.columns]
    problems = _header_issues(names, label, None)
    if problems:
        raise DataValidationError(problems)
    cols = {}
    for pos, key in enumerate(names):
        col = table.column(key) if key in table.all_names else None
        cols[key] = [_cell_text(v, col) for v in df.iloc[:, pos].tolist()]
    text = pd.DataFrame(cols, columns=list(cols), dtype=object)
    if len(text) == 0:
        text = pd.DataFrame({k: pd.Series([], dtype=object) for k in cols})
    raw = text.to_csv(index=False, lineterminator="\n").encode("utf-8")
    from_frame = rows is None
    return _Input(table, text, label, from_frame, list(df.index) if rows is None else list(rows), raw)


def _from_path(path: str | os.PathLike, table: Table) -> _Input:
    path = os.fspath(path)
    name = os.path.basename(path.rstrip(os.sep)) or path
    suffix = os.path.splitext(path)[1].lower()

    def refuse(message: str):
        line = f"{table.name} file {path}: {message}"
        return DataValidationError([_plain_problem(line) | {"table": table.name}])

    if suffix == ".xls":
        raise refuse("old .xls workbooks are not read; save it as .xlsx or CSV")
    if os.path.isdir(path):
        raise refuse(f"{name} is a folder, not a data file; give the {table.filename} inside it")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise refuse("no such file") from None
    except OSError as exc:  # permission, device, ...: say what, no traceback
        raise refuse(f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
    return _from_bytes(raw, table, name, excel=suffix in (".xlsx", ".xlsm"))


def _empty_input(table: Table) -> _Input:
    text = pd.DataFrame({c: pd.Series([], dtype=object) for c in table.names})
    return _Input(table, text, table.filename, False, [], b"")


def _hash(inputs: dict[str, _Input | None]) -> str:
    h = hashlib.sha256()
    for name in SCHEMA:  # fixed order: trials, outcomes, contrasts, pooled_targets
        raw = inputs[name].raw if inputs.get(name) is not None else b""
        h.update(f"{name}:{len(raw)}\n".encode())
        h.update(raw)
    return h.hexdigest()


# --------------------------------------------------------------------------- parsing


_NUM_HINT = re.compile("[\u2212\u2013\u2014]")


class _Checker:
    """Parses the text tables and collects every problem (errors) and warning."""

    def __init__(self):
        self.errors: list[_Issue] = []
        self.warnings: list[_Issue] = []

    # -- helpers
    def _who(self, inp: _Input, i: int) -> tuple[str, str, str]:
        """(trial id, arm text, the word for the arm) of row position i."""
        t = inp.text
        name = inp.table.name
        get = lambda c: t[c].iat[i] if c in t.columns else ""  # noqa: E731
        if name in ("trials", "outcomes"):
            return get("trial_id"), get("arm_id"), "arm"
        if name == "contrasts":
            return get("trial_id"), get("contrast"), "contrast"
        if name == "effects":
            return get("trial_id"), (get("comparison") if "comparison" in t.columns else None), "comparison"
        return get("meta_analysis"), get("outcome"), "outcome"

    def err(self, inp: _Input, positions, column: str | None, message: str, warn: bool = False,
            arm: str | None = "__row__") -> None:
        positions = list(positions)
        if positions:
            trial, arm_text, word = self._who(inp, positions[0])
            if arm != "__row__":
                arm_text = arm
                word = "arms" if arm and ", " in arm else word
        else:
            trial, arm_text, word = None, None, "arm"
        issue = _Issue(inp.label, tuple(inp.rows[p] for p in positions), trial, arm_text, column,
                       message, inp.from_frame, word)
        (self.warnings if warn else self.errors).append(issue)

    # -- one table: columns and cells
    def parse(self, inp: _Input) -> pd.DataFrame:
        table, text = inp.table, inp.text
        lower = {n.lower(): n for n in table.all_names}
        extras = []
        for c in text.columns:
            if c in table.all_names:
                continue
            if c.lower() in lower and lower[c.lower()] not in text.columns:
                self.err(inp, [], c, f"column {c!r} should be named {lower[c.lower()]!r}")
            else:
                extras.append(c)
        for c in table.required:
            if c not in text.columns and c.lower() not in {x.lower() for x in text.columns}:
                self.err(inp, [], c, "required column is missing")
        if extras:
            self.err(inp, [], None, "columns not in the schema, kept as text: " + ", ".join(extras),
                     warn=True)

        out = {}
        for col in table.columns:
            if not col.added and col.name not in text.columns:
                continue  # an extension column: only where given
            if col.name in text.columns:
                out[col.name] = self._parse_column(inp, col)
            else:
                out[col.name] = pd.Series([None] * len(text), dtype=col.pandas_dtype)
        for c in extras:
            out[c] = pd.Series([v if v != "" else None for v in text[c]], dtype="str")
        frame = pd.DataFrame(out)
        frame.index = pd.RangeIndex(len(frame))
        return frame

    def _parse_column(self, inp: _Input, col: Column) -> pd.Series:
        values = []
        for i, s in enumerate(inp.text[col.name].tolist()):
            v = self._parse_cell(inp, i, col, s)
            values.append(v)
        if col.kind == "str":
            return pd.Series(values, dtype="str")
        na = float("nan") if col.kind == "float" else pd.NA
        return pd.Series([na if v is None else v for v in values], dtype=col.pandas_dtype)

    def _parse_cell(self, inp: _Input, i: int, col: Column, s: str):
        if col.kind == "str":
            if s == "":
                if col.key:
                    self.err(inp, [i], col.name, f"{col.display} is empty (a key column)")
                return None
            if col.allowed:
                s, problem = check_label(s, col.allowed, col.display)
                if problem:
                    self.err(inp, [i], col.name, problem)
            return s
        if s.lower() in _MISSING:
            if col.key:
                self.err(inp, [i], col.name, f"{col.display} is empty (a key column)")
            return None
        if col.kind == "bool":
            if s.lower() in _TRUE:
                return True
            if s.lower() in _FALSE:
                return False
            self.err(inp, [i], col.name, f"expected yes/no or true/false (got {s!r})")
            return None
        try:
            x = float(s)
        except ValueError:
            hint = " (use an ASCII minus sign)" if _NUM_HINT.search(s) else ""
            self.err(inp, [i], col.name, f"{col.display} is not a number (got {s!r}){hint}")
            return None
        if not math.isfinite(x):
            self.err(inp, [i], col.name, f"{col.display} is not a finite number (got {s!r})")
            return None
        if col.kind == "int" and not x.is_integer():
            self.err(inp, [i], col.name, f"{col.display} must be a whole number (got {s})")
            return None
        if col.kind == "int" and abs(x) > _MAX_INT:
            self.err(inp, [i], col.name, f"{col.display} is too large to be a count (got {s})")
            return None
        lo_bad = col.minimum is not None and (x <= col.minimum if col.minimum_exclusive else x < col.minimum)
        hi_bad = col.maximum is not None and (x >= col.maximum if col.maximum_exclusive else x > col.maximum)
        if lo_bad or hi_bad:  # name the bound that is broken
            bound = (f"{'>' if col.minimum_exclusive else '>='} {_num(col.minimum)}" if lo_bad
                     else f"{'<' if col.maximum_exclusive else '<='} {_num(col.maximum)}")
            self.err(inp, [i], col.name, f"{col.display} must be {bound} (got {s})")
        return int(x) if col.kind == "int" else x


# --------------------------------------------------------------------------- cross-row checks


def _key(v):
    return None if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)) else v


def _fmt(v) -> str:
    v = _key(v)
    if v is None:
        return "empty"
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v) if isinstance(v, str) else str(v)


def _check_trials(ck: _Checker, inp: _Input, df: pd.DataFrame) -> None:
    # an arm's columns must fit its role: swapped roles would flip the sign of every effect
    for i, row in enumerate(df[["arm_role", "control_type", "cells_per_injection"]].to_dict("records")):
        role = _key(row["arm_role"])
        ctype, cells = _key(row["control_type"]), _key(row["cells_per_injection"])
        if role == "msc" and ctype is not None:
            ck.err(inp, [i], "control_type",
                   f"an msc arm has a control_type ({ctype!r}): arm_role or control_type is wrong "
                   "(swapped roles flip the sign of every effect)")
        if role == "control" and cells is not None:
            ck.err(inp, [i], "cells_per_injection",
                   f"a control arm has a cell dose ({cells:g} cells per injection): arm_role or "
                   "cells_per_injection is wrong (swapped roles flip the sign of every effect)")
    records = df.to_dict("records")
    by_trial: dict = {}
    by_arm: dict = {}
    for i, r in enumerate(records):
        t, a = _key(r["trial_id"]), _key(r["arm_id"])
        if t is None:
            continue
        by_trial.setdefault(t, []).append(i)
        if a is not None:
            by_arm.setdefault((t, a), []).append(i)
    # a trial + arm listed twice
    for (trial, arm), idx in by_arm.items():
        if len(idx) > 1:
            ck.err(inp, idx, "arm_id", f"trial {trial} arm {arm} is listed {len(idx)} times")
    # trial-level columns must agree across arms
    for trial, idx in by_trial.items():
        if len(idx) < 2:
            continue
        sub = [records[i] for i in idx]
        arm_ids = [r["arm_id"] for r in sub]
        for c in trial_level_columns():
            if c not in inp.text.columns:
                continue
            if c == "cell_source" and "arm_role" in inp.text.columns:
                _check_cell_source(ck, inp, sub, idx)
                continue
            vals = [_key(r[c]) for r in sub]
            if len(set(vals)) > 1:
                arms = ", ".join(str(a) for a in arm_ids)
                detail = "; ".join(f"{a}: {_fmt(v)}" for a, v in zip(arm_ids, vals))
                ck.err(inp, idx, c, f"arms disagree on a trial-level column ({detail})", arm=arms)


def _check_cell_source(ck: _Checker, inp: _Input, sub: list[dict], idx: list[int]) -> None:
    msc_sources = list(dict.fromkeys(_key(r["cell_source"]) for r in sub if r["arm_role"] == "msc"))
    if len([s for s in msc_sources if s is not None]) > 1:
        # multi-source trial: each cell arm has its own source; control arms carry `other`
        for i, r in zip(idx, sub):
            if r["arm_role"] == "control" and r["cell_source"] != "other":
                ck.err(inp, [i], "cell_source",
                       f"in a multi-source trial (msc arms: {', '.join(map(str, msc_sources))}) "
                       f"control arms must be 'other' (got {_fmt(r['cell_source'])})")
        return
    vals = [_key(r["cell_source"]) for r in sub]
    if len(set(vals)) > 1:
        arm_ids = [r["arm_id"] for r in sub]
        arms = ", ".join(str(a) for a in arm_ids)
        detail = "; ".join(f"{a}: {_fmt(v)}" for a, v in zip(arm_ids, vals))
        ck.err(inp, idx, "cell_source",
               f"arms disagree on a trial-level column ({detail}); only a trial whose msc arms have "
               "several sources may differ, with control arms 'other'", arm=arms)


def _arms_by_trial(trials: pd.DataFrame | None) -> dict[str, list[str]] | None:
    if trials is None:
        return None
    ok = trials["trial_id"].notna() & trials["arm_id"].notna()
    out: dict[str, list[str]] = {}
    for t, a in zip(trials.loc[ok, "trial_id"], trials.loc[ok, "arm_id"]):
        out.setdefault(t, []).append(a)
    return out


def _check_direction(ck: _Checker, inp: _Input, df: pd.DataFrame, has_lib: bool) -> None:
    """Unknown direction (error, or warning for registry outcomes marked unknown, e.g. JSW_mm);
    lower_is_better contradicting the registry or itself."""
    flagged: dict[tuple, list[int]] = {}
    for outcome, idx in df[df["outcome"].notna()].groupby("outcome", sort=False).groups.items():
        info = OUTCOMES.get(outcome)
        lib = df.loc[idx, "lower_is_better"] if has_lib else pd.Series([pd.NA] * len(idx), index=idx)
        for i in idx:
            v = _key(lib.at[i])
            if v is None:
                if info is None:
                    ck.err(inp, [i], "lower_is_better",
                           f"outcome {outcome!r} is not in the registry and lower_is_better is "
                           "empty: its direction is unknown (give true or false)")
                elif info.lower_is_better is None:
                    flagged.setdefault((df.at[i, "trial_id"], outcome), []).append(i)
            elif info is not None and info.lower_is_better is not None and v != info.lower_is_better:
                ck.err(inp, [i], "lower_is_better",
                       f"lower_is_better is {str(v).lower()} but {outcome} is "
                       f"{'lower' if info.lower_is_better else 'higher'}-is-better in the registry")
        if info is None and has_lib:
            seen = {_key(v) for v in lib} - {None}
            if len(seen) > 1:
                ck.err(inp, list(idx), "lower_is_better",
                       f"outcome {outcome!r} is marked both true and false", arm="several arms")
    for (trial, outcome), idx in flagged.items():
        arms = ", ".join(dict.fromkeys(str(a) for a in df.loc[idx, "arm_id"]))
        ck.err(inp, idx, "lower_is_better",
               f"{outcome} has no known direction ({OUTCOMES[outcome].note})", warn=True, arm=arms)


def _check_outcomes(ck: _Checker, inp: _Input, df: pd.DataFrame, trials: pd.DataFrame | None) -> None:
    df = df.reindex(columns=list(df.columns) + [c for c in inp.table.all_names if c not in df.columns])
    # joins to trials
    arms = _arms_by_trial(trials)
    if arms is not None:
        for i, (t, a) in enumerate(zip(df["trial_id"].tolist(), df["arm_id"].tolist())):
            if _key(t) is None or _key(a) is None:
                continue
            if t not in arms:
                ck.err(inp, [i], "trial_id", f"trial {t} is not in trials")
            elif a not in arms[t]:
                ck.err(inp, [i], "arm_id", f"trial {t} has no arm {a!r} in trials (arms: {', '.join(arms[t])})")
    # the same trial + arm + outcome + time + value_type twice
    key = ["trial_id", "arm_id", "outcome", "time_months", "value_type"]
    ok = df[key].notna().all(axis=1)
    for k, idx in df[ok].groupby(key, sort=False).groups.items():
        if len(idx) > 1:
            ck.err(inp, list(idx), "outcome",
                   f"outcome {k[2]} at {k[3]:g} months ({k[4]}) is listed {len(idx)} times for this arm")
    _check_direction(ck, inp, df, has_lib="lower_is_better" in inp.text.columns)

    records = df.to_dict("records")  # plain dicts: much faster than a df.at lookup per cell
    num = lambda c, i: _key(records[i][c])  # noqa: E731
    arm_n = _arm_n(trials)
    for i, row in enumerate(records):
        lo, hi = num("scale_min", i), num("scale_max", i)
        change = row["value_type"] == "change_from_baseline"
        info = OUTCOMES.get(row["outcome"]) if _key(row["outcome"]) is not None else None
        if lo is not None and hi is not None and lo >= hi:
            ck.err(inp, [i], "scale_max", f"scale_max ({hi:g}) must be > scale_min ({lo:g})")
        elif lo is not None or hi is not None:
            if change:  # a change lies within +/- the width of the scale
                width = hi - lo if lo is not None and hi is not None else None
                bounds = (-width, width) if width is not None else (None, None)
                what = f"a change on the stated scale {_fmt(lo)}-{_fmt(hi)} (so within +/-{_fmt(width)})"
            else:
                bounds = (lo, hi)
                what = f"the stated scale {_fmt(lo)}-{_fmt(hi)}"
            _check_within(ck, inp, row, i, bounds, what)
        elif info is not None and info.bounds is not None:
            # no stated range: every version of a known scale still lies within its bounds
            blo, bhi = info.bounds
            rng = f"{_fmt(float(blo))}-{_fmt(float(bhi))}" if bhi is not None else f">= {_fmt(float(blo))}"
            if change:
                bounds = (-(bhi - blo), bhi - blo) if bhi is not None else (None, None)
                what = f"what a change on any version of {info.name} ({rng}) can be"
            else:
                bounds = (blo, bhi)
                what = f"the range of every version of {info.name} ({rng}; scale_min/scale_max empty)"
            _check_within(ck, inp, row, i, bounds, what)
        _check_stat_columns(ck, inp, row, i)
        _check_se_sd(ck, inp, row, i, arm_n)
        mean, cl, ch = num("mean", i), num("ci_low", i), num("ci_high", i)
        if mean is not None and cl is not None and ch is not None and cl <= ch and not cl <= mean <= ch:
            ck.err(inp, [i], "mean",
                   f"mean {mean:g} lies outside its own CI ({cl:g}, {ch:g}); kept as printed", warn=True)
        mn, mx = num("min", i), num("max", i)
        if mn is not None and mx is not None and mn > mx:
            ck.err(inp, [i], "min", f"min ({mn:g}) > max ({mx:g})")
        elif mn is not None or mx is not None:
            for c in ("mean", "median", "q1", "q3"):
                v = num(c, i)
                if v is not None and ((mn is not None and v < mn) or (mx is not None and v > mx)):
                    ck.err(inp, [i], c, f"{c} {v:g} is outside the printed sample range "
                                        f"({_fmt(mn)}, {_fmt(mx)})")
        q1, med, q3 = num("q1", i), num("median", i), num("q3", i)
        if q1 is not None and med is not None and q1 > med:
            ck.err(inp, [i], "q1", f"q1 ({q1:g}) > median ({med:g})")
        if med is not None and q3 is not None and med > q3:
            ck.err(inp, [i], "q3", f"median ({med:g}) > q3 ({q3:g})")
        if q1 is not None and q3 is not None and q1 > q3 and med is None:
            ck.err(inp, [i], "q1", f"q1 ({q1:g}) > q3 ({q3:g})")
        cl, ch = num("ci_low", i), num("ci_high", i)
        if cl is not None and ch is not None and cl > ch:
            ck.err(inp, [i], "ci_low", f"ci_low ({cl:g}) > ci_high ({ch:g})")
        ev, n = num("events", i), num("n", i)
        if ev is not None:
            if n is None:
                ck.err(inp, [i], "n", "an events row needs n (patients in the arm)")
            elif ev > n:
                ck.err(inp, [i], "events", f"events ({ev}) > n ({n})")
            vt = _key(row["value_type"])
            if vt is not None and vt != "final":
                ck.err(inp, [i], "value_type", f"an events row must have value_type final (got {vt!r})")
            sr = _key(row["stat_reported"])
            if sr != "events":
                ck.err(inp, [i], "stat_reported",
                       f"an events row must have stat_reported events (got {_fmt(sr)})")


_SPREAD = {  # where each way of reporting puts its spread
    "mean_sd": ("sd",),
    "mean_pm_unlabelled": ("sd",),
    "mean_se": ("se",),
    "mean_ci": ("ci_low", "ci_high"),
    "median_iqr": ("q1", "q3", "min", "max"),
}
_SPREAD_WORD = {"sd": "SD", "se": "SE", "ci_low": "CI", "ci_high": "CI", "q1": "IQR", "q3": "IQR",
                "min": "range", "max": "range"}
_SE_SD_FACTOR = 1.25
"""How far SD and SE * sqrt(n) may disagree (beyond the rounding of the printed digits) before the
row is refused: n may be the randomized rather than the analysed count (1.25 allows a third of an arm
lost), while an SE typed as an SD, or the reverse, is off by sqrt(n) >= 1.41 (n >= 2)."""


def _arm_n(trials: pd.DataFrame | None) -> dict:
    """(trial, arm) -> (n, which column): n_analysed, else n_randomized."""
    if trials is None:
        return {}
    out = {}
    for r in trials.itertuples(index=False):
        for c in ("n_analysed", "n_randomized"):
            v = _key(getattr(r, c, None))
            if v is not None:
                out[(r.trial_id, r.arm_id)] = (int(v), c)
                break
    return out


def _check_within(ck: _Checker, inp: _Input, row: dict, i, bounds, what: str) -> None:
    for c in ("mean", "median", "q1", "q3", "min", "max"):
        v = _key(row[c])
        if v is None:
            continue
        if (bounds[0] is not None and v < bounds[0]) or (bounds[1] is not None and v > bounds[1]):
            ck.err(inp, [i], c, f"{c} {v:g} is outside {what}")


def _check_stat_columns(ck: _Checker, inp: _Input, row: dict, i) -> None:
    """The spread is under the column that ``stat_reported`` names: an SE typed under ``sd`` with
    ``stat_reported = mean_se`` would be used as an SD (a weight n times too large)."""
    sr = _key(row["stat_reported"])
    own = _SPREAD.get(sr)
    if own is None or any(_key(row[c]) is not None for c in own):
        return
    for c in ("sd", "se", "ci_low", "ci_high", "q1", "q3", "min", "max"):
        if c not in own and _key(row[c]) is not None:
            want = " and ".join(dict.fromkeys(o for o in own if o not in ("min", "max"))) or own[0]
            ck.err(inp, [i], c,
                   f"stat_reported is {sr} but {want} {'are' if ' and ' in want else 'is'} empty "
                   f"and {c} is filled: put the printed "
                   f"{_SPREAD_WORD[own[0]]} under {want}, or correct stat_reported")
            return


def _half_unit(text: str) -> float:
    """Half a unit in the last printed digit of a number written as text ('11.5' -> 0.05)."""
    t = text.strip().lower()
    if "e" in t or "." not in t:
        return 0.5 if t.replace("-", "").isdigit() else 0.0
    return 0.5 * 10.0 ** -len(t.split(".")[1])


def _check_se_sd(ck: _Checker, inp: _Input, row: dict, i, arm_n: dict) -> None:
    sd, se = _key(row["sd"]), _key(row["se"])
    if sd is None or se is None or _key(row["stat_reported"]) == "mean_pm_unlabelled":
        return
    n, n_from = _key(row["n"]), "outcome n"
    if n is None:
        n, n_from = arm_n.get((row["trial_id"], row["arm_id"]), (None, None))
    if n is None:
        return
    root = math.sqrt(n)
    h_sd, h_se = _half_unit(inp.text["sd"].iat[i]), _half_unit(inp.text["se"].iat[i])
    sd_lo, sd_hi = sd - h_sd, sd + h_sd
    from_se_lo, from_se_hi = (se - h_se) * root, (se + h_se) * root
    if sd_hi * _SE_SD_FACTOR < from_se_lo or from_se_hi * _SE_SD_FACTOR < sd_lo:
        ck.err(inp, [i], "se",
               f"SE {se:g} contradicts SD {sd:g}: SE x sqrt(n) = {se * root:.4g} with n = {n} "
               f"({n_from}); one of them is wrong (e.g. an SE typed as an SD)")


def _check_contrasts(ck: _Checker, inp: _Input, df: pd.DataFrame, trials: pd.DataFrame | None) -> None:
    arms = _arms_by_trial(trials)
    for i in df.index:
        t, c = _key(df.at[i, "trial_id"]), _key(df.at[i, "contrast"])
        if arms is not None and t is not None:
            if t not in arms:
                ck.err(inp, [i], "trial_id", f"trial {t} is not in trials")
            elif c is not None and c != "msc_minus_control":
                if not c.endswith(_CHANGE_SUFFIX):
                    ck.err(inp, [i], "contrast",
                           f"contrast {c!r} is neither msc_minus_control nor <arm_id>{_CHANGE_SUFFIX}")
                elif c[: -len(_CHANGE_SUFFIX)] not in arms[t]:
                    ck.err(inp, [i], "contrast",
                           f"trial {t} has no arm {c[:-len(_CHANGE_SUFFIX)]!r} in trials "
                           f"(arms: {', '.join(arms[t])})")
    _check_direction(ck, inp, df, has_lib=False)
    _check_ci(ck, inp, df)


def _check_ci(ck: _Checker, inp: _Input, df: pd.DataFrame) -> None:
    for i in df.index:
        est, cl, ch = (_key(df.at[i, c]) for c in ("estimate", "ci_low", "ci_high"))
        if cl is not None and ch is not None:
            if cl > ch:
                ck.err(inp, [i], "ci_low", f"ci_low ({cl:g}) > ci_high ({ch:g})")
            elif est is not None and not (cl <= est <= ch):
                ck.err(inp, [i], "estimate",
                       f"estimate {est:g} lies outside its own CI ({cl:g}, {ch:g}); kept as printed",
                       warn=True)


def _check(inputs: dict[str, _Input | None]) -> tuple[dict[str, pd.DataFrame], _Checker]:
    ck = _Checker()
    frames: dict[str, pd.DataFrame] = {}
    for name, inp in inputs.items():
        if inp is not None:
            frames[name] = ck.parse(inp)
    has = lambda name, cols: name in frames and all(c in inputs[name].text.columns for c in cols)  # noqa: E731
    # joins need the keys of trials; every other check runs whatever is missing (an absent column
    # is an empty one here), so one reading reports every problem it can
    trials = frames.get("trials") if has("trials", ("trial_id", "arm_id")) else None
    if "trials" in frames:
        _check_trials(ck, inputs["trials"], frames["trials"])
    if "outcomes" in frames:
        _check_outcomes(ck, inputs["outcomes"], frames["outcomes"], trials)
    if "contrasts" in frames:
        _check_contrasts(ck, inputs["contrasts"], frames["contrasts"], trials)
    if "pooled_targets" in frames:
        _check_ci(ck, inputs["pooled_targets"], frames["pooled_targets"])
    return frames, ck


def _finish(ck: _Checker, stacklevel: int) -> tuple[str, ...]:
    if ck.errors:
        raise DataValidationError([e.as_dict() for e in ck.errors])
    lines = tuple(w.line() for w in ck.warnings)
    if lines:
        warnings.warn(
            "trial data kept with warnings:\n" + "\n".join(f"- {s}" for s in lines),
            DataValidationWarning,
            stacklevel=stacklevel,
        )
    return lines


# --------------------------------------------------------------------------- public


def validate(
    trials: pd.DataFrame,
    outcomes: pd.DataFrame,
    contrasts: pd.DataFrame | None = None,
    pooled_targets: pd.DataFrame | None = None,
) -> None:
    """Check tables against the schema; raise :class:`DataValidationError` listing every problem.

    The tables may hold text as read from a sheet or the typed columns of a :class:`TrialData`.
    Missing values are not errors. Suspect but usable data (e.g. ``JSW_mm``, whose direction is
    unknown) give one :class:`DataValidationWarning`. Row references are index labels.
    """
    given = {"trials": trials, "outcomes": outcomes, "contrasts": contrasts, "pooled_targets": pooled_targets}
    inputs = {k: (_from_frame(v, SCHEMA[k]) if v is not None else None) for k, v in given.items()}
    _, ck = _check(inputs)
    _finish(ck, stacklevel=3)


def _build(inputs: dict[str, _Input | None], source: str, stacklevel: int = 4) -> TrialData:
    filled = {k: (v if v is not None else _empty_input(SCHEMA[k])) for k, v in inputs.items()}
    frames, ck = _check(filled)
    found = _finish(ck, stacklevel=stacklevel)
    return TrialData(
        trials=frames["trials"],
        outcomes=frames["outcomes"],
        contrasts=frames["contrasts"],
        pooled_targets=frames["pooled_targets"],
        source=source,
        data_hash=_hash(inputs),
        warnings=found,
        locations={k: (v.label, list(v.rows), v.from_frame) for k, v in filled.items()},
    )


def _revalidate(td: TrialData, stacklevel: int) -> TrialData:
    """Check a TrialData's tables again (they are DataFrames, and may have been changed since)."""
    inputs = {}
    for name, table in SCHEMA.items():
        df = getattr(td, name)
        label, rows, from_frame = td.locations.get(name, (table.name, None, True))
        same_rows = rows is not None and df.index.equals(pd.RangeIndex(len(rows)))
        inputs[name] = (_from_frame(df, table, label=label, rows=rows) if same_rows and not from_frame
                        else _from_frame(df, table, label=label))
    frames, ck = _check(inputs)
    if ck.errors:
        raise DataValidationError([e.as_dict() for e in ck.errors])
    new = [w for w in ck.warnings if w.line() not in td.warnings]
    if new:
        warnings.warn("trial data kept with warnings:\n" + "\n".join(f"- {w.line()}" for w in new),
                      DataValidationWarning, stacklevel=stacklevel)
    changes = {name: frames[name] for name in SCHEMA}
    if _frames_hash(td) != getattr(td, "_frames_sha256", None):
        # changed after reading: the hash of the files read no longer describes these tables
        changes.update(source=f"{td.source} (tables changed after reading)", data_hash=_hash(inputs))
    return dataclasses.replace(td, **changes)


def as_trial_data(data, stacklevel: int = 3) -> TrialData:
    """Any form of trial data, validated by the one set of checks of :func:`read_trials`.

    ``data``: a :class:`TrialData` (its tables are checked again: they are DataFrames and may have
    been edited since they were read; if so, ``source`` says so and ``data_hash`` is recomputed),
    a ``(trials, outcomes[, contrasts[, pooled_targets]])`` tuple or list of DataFrames or file
    paths, or any object with ``trials`` and ``outcomes`` DataFrame attributes (and optional
    ``contrasts``, ``pooled_targets``). Raises :class:`DataValidationError` for bad data and
    ``TypeError`` for anything else.
    """
    if isinstance(data, TrialData):
        return _revalidate(data, stacklevel)
    if isinstance(data, (tuple, list)):
        if not 2 <= len(data) <= 4:
            raise TypeError(f"trial data as a tuple needs 2 to 4 tables (trials, outcomes[, contrasts"
                            f"[, pooled_targets]]), got {len(data)}")
        return _read(list(data) + [None] * (4 - len(data)), stacklevel + 1)
    if isinstance(data, (str, os.PathLike)):
        raise TypeError("trial data: give (trials_path, outcomes_path) or read_trials(...), "
                        f"not one path ({os.fspath(data)})")
    if hasattr(data, "trials") and hasattr(data, "outcomes"):
        tables = [getattr(data, n, None) for n in SCHEMA]
        return _read(tables, stacklevel + 1)
    raise TypeError("trial data must be a TrialData, a (trials, outcomes) tuple of DataFrames or "
                    f"paths, or have DataFrame attributes .trials and .outcomes; got {type(data).__name__}")


def read_bundle(root, source: str) -> TrialData:
    """Read and validate the tables of a folder (a path or an importlib resource) named as in the schema."""
    inputs = {
        name: _from_bytes(root.joinpath(t.filename).read_bytes(), t, t.filename, excel=False)
        for name, t in SCHEMA.items()
    }
    return _build(inputs, source)


def read_trials(
    trials_path: Source,
    outcomes_path: Source,
    contrasts_path: Source | None = None,
    pooled_targets_path: Source | None = None,
) -> TrialData:
    """Read a trial extraction: CSV files, .xlsx workbooks (needs openpyxl) or DataFrames.

    An .xlsx file is read from its only sheet, or from the sheet named after the table
    (``trials``, ``outcomes``, ``contrasts``, ``pooled_targets``; any case), so one workbook may
    hold all tables. Missing ``contrasts`` / ``pooled_targets`` give empty tables. Every row is
    kept; nothing is imputed. Raises :class:`DataValidationError` listing every problem.

    ``data_hash`` is a sha256 over the raw bytes of the files (for a DataFrame: its CSV text).
    """
    return _read([trials_path, outcomes_path, contrasts_path, pooled_targets_path], stacklevel=4)


def _read(sources: list, stacklevel: int) -> TrialData:
    inputs: dict[str, _Input | None] = {}
    described = []
    for (name, table), src in zip(SCHEMA.items(), sources):
        if src is None:
            inputs[name] = None
            continue
        if isinstance(src, pd.DataFrame):
            inputs[name] = _from_frame(src, table)
            described.append(f"{name}=DataFrame")
        elif isinstance(src, (str, os.PathLike)):
            inputs[name] = _from_path(src, table)
            described.append(f"{name}={os.fspath(src)}")
        else:
            raise TypeError(f"{name}: expected a path or a pandas DataFrame, got {type(src).__name__}")
    return _build(inputs, "; ".join(described), stacklevel + 1)


# --------------------------------------------------------------------------- effect tables


def validate_effect_table(effects: pd.DataFrame, require_effects: bool = True) -> pd.DataFrame:
    """Check an effect table (from :func:`bayes_koa.effect_sizes` or a user's own) before a fit.

    The columns of :data:`~bayes_koa.data.schema.EFFECTS` are checked where present, with the
    same cell rules as :func:`read_trials` (numbers, whole numbers, yes/no, ranges, and one rule
    for labels such as ``cell_source``: surrounding white space is removed, anything else must be
    an allowed value exactly, so ``'uc'`` is refused with "did you mean 'UC'?"). Also refused:
    ``trial_id`` or ``yi`` missing, neither ``vi`` nor ``sei``, a column name given twice or
    differing from a known one only in case or white space, ``sei`` contradicting ``sqrt(vi)``,
    and a row listed twice (same trial, comparison, outcome, time, measure and value type; without
    a ``comparison`` column: identical rows). A missing value is not an error (rows without
    ``yi``/``vi`` are left out by the model with a reason).

    ``require_effects=False`` (a table that is not an effect table, e.g. the arm table of the
    network kind): ``trial_id``, ``yi`` and ``vi``/``sei`` are not required; every other rule holds.

    Returns a copy with column names and every text cell stripped of surrounding white space (as
    ``read_trials`` does: also in columns it does not know, such as a grouping column for
    ``fit(..., group=...)``), and number / yes-no columns given as text converted; everything else
    and ``attrs`` untouched (so the table of ``effect_sizes`` comes back equal). Raises :class:`DataValidationError`, one line per problem naming the trial,
    the comparison, the column and the index label.
    """
    if not isinstance(effects, pd.DataFrame):
        raise TypeError(f"an effect table must be a pandas DataFrame, got {type(effects).__name__}")
    label = "effect table"
    names = [str(c).strip() for c in effects.columns]
    problems = _header_issues(names, label, None)
    if problems:
        raise DataValidationError(problems)
    df = effects.copy()
    df.columns = names
    inp = _from_frame(df, EFFECTS, label=label)
    ck = _Checker()
    known = {c.lower(): c for c in EFFECTS.names}
    for c in names:
        if c not in EFFECTS.names and c.lower() in known and known[c.lower()] not in names:
            ck.err(inp, [], c, f"column {c!r} should be named {known[c.lower()]!r}")
    for c in ("trial_id", "yi") if require_effects else ():
        if c not in names:
            ck.err(inp, [], c, "required column is missing (an effect table needs trial_id, yi and vi or sei)")
    if require_effects and "vi" not in names and "sei" not in names:
        ck.err(inp, [], "vi", "an effect table needs vi (sampling variance) or sei (standard error)")
    parsed = {c.name: ck._parse_column(inp, c) for c in EFFECTS.columns if c.name in names}
    for c, values in parsed.items():
        kind = EFFECTS.column(c).kind
        col = df[c]
        if kind == "str":
            df[c] = col.map(lambda v: v.strip() if isinstance(v, str) else v)
        elif kind in ("float", "int") and not (pd.api.types.is_numeric_dtype(col)
                                               and not pd.api.types.is_bool_dtype(col)):
            df[c] = values.astype("float64") if kind == "float" else values
        elif kind == "bool" and not pd.api.types.is_bool_dtype(col):
            df[c] = values
    for c in names:  # other text columns (e.g. a grouping column for fit's group=): white space too
        if c not in parsed and (pd.api.types.is_string_dtype(df[c]) or df[c].dtype == object):
            df[c] = df[c].map(lambda v: v.strip() if isinstance(v, str) else v)
    if "vi" in parsed and "sei" in parsed:
        for i, (v, se) in enumerate(zip(parsed["vi"], parsed["sei"])):
            if pd.isna(v) or pd.isna(se) or v <= 0 or se <= 0:
                continue
            h_v, h_se = _half_unit(inp.text["vi"].iat[i]), _half_unit(inp.text["sei"].iat[i])
            lo, hi = math.sqrt(max(v - h_v, 0.0)), math.sqrt(v + h_v)
            if (se + h_se) * 1.01 < lo or hi * 1.01 < se - h_se:
                ck.err(inp, [i], "sei", f"sei {se:g} contradicts vi {v:g} (sqrt(vi) = {math.sqrt(v):.4g})")
    _check_effect_duplicates(ck, inp, df)
    if ck.errors:
        raise DataValidationError([e.as_dict() for e in ck.errors])
    return df


def _check_effect_duplicates(ck: _Checker, inp: _Input, df: pd.DataFrame) -> None:
    text = inp.text
    if "comparison" in text.columns:
        key = [c for c in ("trial_id", "comparison", "outcome", "time_months", "measure", "value_type")
               if c in text.columns]
        what = "same " + ", ".join(key)
    else:
        key, what = list(text.columns), "identical rows; add a comparison column if they differ"
    if "trial_id" not in text.columns or not key:
        return
    keyed = text[text["trial_id"] != ""]
    for _, idx in keyed.groupby(key, sort=False).groups.items():
        if len(idx) > 1:
            pos = [text.index.get_loc(j) for j in idx]
            ck.err(inp, pos, "trial_id", f"row listed {len(idx)} times ({what})")
