"""Reading and validating trial data against the column contract in :mod:`bayes_koa.data.schema`.

``load_koa_msc()`` reads the bundled curated tables; ``read_trials(...)`` reads a user's own
extraction (CSV, .xlsx, or DataFrames). Both parse every column to its schema kind, keep every
row in order, and run :func:`validate`'s checks: every problem is collected and raised once as a
:class:`DataValidationError` whose lines name the trial, the arm and the column.
"""

from __future__ import annotations

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
    Column,
    Table,
    trial_level_columns,
)

__all__ = [
    "TrialData",
    "DataValidationError",
    "DataValidationWarning",
    "load_koa_msc",
    "read_trials",
    "validate",
]

BUNDLED_SOURCE = "bundled koa_msc"
_MISSING = frozenset(t.lower() for t in MISSING_TOKENS)
_TRUE = frozenset(TRUE_TOKENS)
_FALSE = frozenset(FALSE_TOKENS)
# columns that hold a number reported for an arm (used to say which trials have outcome numbers)
_STAT_COLUMNS = ("mean", "sd", "se", "median", "q1", "q3", "ci_low", "ci_high", "events")
_CHANGE_SUFFIX = "_change_from_baseline"

Source = str | os.PathLike | pd.DataFrame


# --------------------------------------------------------------------------- errors


class DataValidationError(ValueError):
    """Bad trial data. ``.problems`` is a list of dicts with keys ``table``, ``row``,
    ``trial_id``, ``arm_id``, ``column``, ``message`` (and ``line``, the full text line).

    ``row`` is the row number in the file with the header as row 1 (the spreadsheet row), or the
    index label when the table was given as a DataFrame; None for whole-table problems.

    Other modules may raise it with a plain message (``DataValidationError("text")``): the text
    is then the message and the one entry of ``.problems``.
    """

    def __init__(self, problems: list[dict] | str):
        if isinstance(problems, str):
            self.problems = [_plain_problem(problems)]
            super().__init__(problems)
            return
        self.problems = [_plain_problem(p) if isinstance(p, str) else dict(p) for p in problems]
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the trial data:"
        super().__init__("\n".join([head] + [f"- {p.get('line') or p.get('message')}" for p in self.problems]))


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
        if self.arm_id is None:
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


def _text_frame(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    return df.astype(object).map(lambda v: "" if v is None else str(v).strip())


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
            df = pd.read_excel(book, sheet_name=sheet, dtype=str, na_filter=False)
        else:
            df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError,
            zipfile.BadZipFile) as exc:
        issue = _Issue(label, (), None, None, None, f"cannot read the file ({exc})")
        raise DataValidationError([issue.as_dict()]) from exc
    text = _text_frame(df)
    return _Input(table, text, label, False, list(range(2, len(text) + 2)), raw)


def _cell_text(v: Any, col: Column | None) -> str:
    if v is None or (not isinstance(v, str) and pd.api.types.is_scalar(v) and pd.isna(v)):
        return ""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "true" if v else "false"
    if isinstance(v, float) or type(v).__name__.startswith("float"):
        f = float(v)
        if col is not None and col.kind == "int" and f.is_integer():
            return str(int(f))
        return repr(f)
    return str(v).strip()


def _from_frame(df: pd.DataFrame, table: Table) -> _Input:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{table.name}: expected a path or a pandas DataFrame, got {type(df).__name__}")
    cols = {}
    for name in df.columns:
        key = str(name).strip()
        col = table.column(key) if key in table.names else None
        cols[key] = [_cell_text(v, col) for v in df[name].tolist()]
    text = pd.DataFrame(cols, columns=list(cols), dtype=object)
    if len(text) == 0:
        text = pd.DataFrame({k: pd.Series([], dtype=object) for k in cols})
    raw = text.to_csv(index=False, lineterminator="\n").encode("utf-8")
    return _Input(table, text, table.name, True, list(df.index), raw)


def _from_path(path: str | os.PathLike, table: Table) -> _Input:
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".xls":
        raise ValueError(f"{path}: old .xls workbooks are not read; save it as .xlsx or CSV")
    with open(path, "rb") as fh:
        raw = fh.read()
    return _from_bytes(raw, table, os.path.basename(path), excel=suffix in (".xlsx", ".xlsm"))


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
        lower = {n.lower(): n for n in table.names}
        extras = []
        for c in text.columns:
            if c in table.names:
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
            if col.allowed and s not in col.allowed:
                self.err(inp, [i], col.name,
                         f"unknown {col.display} {s!r} (allowed: {', '.join(col.allowed)})")
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
        lo_bad = col.minimum is not None and (x <= col.minimum if col.minimum_exclusive else x < col.minimum)
        hi_bad = col.maximum is not None and (x >= col.maximum if col.maximum_exclusive else x > col.maximum)
        if lo_bad or hi_bad:
            self.err(inp, [i], col.name, f"{col.display} must be {col.range_text()} (got {s})")
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
    keyed = df["trial_id"].notna() & df["arm_id"].notna()
    # a trial + arm listed twice
    for (trial, arm), idx in df[keyed].groupby(["trial_id", "arm_id"], sort=False).groups.items():
        if len(idx) > 1:
            ck.err(inp, list(idx), "arm_id", f"trial {trial} arm {arm} is listed {len(idx)} times")
    # trial-level columns must agree across arms
    for trial, idx in df[df["trial_id"].notna()].groupby("trial_id", sort=False).groups.items():
        idx = list(idx)
        if len(idx) < 2:
            continue
        sub = df.loc[idx]
        for c in trial_level_columns():
            if c not in inp.text.columns:
                continue
            if c == "cell_source" and "arm_role" in inp.text.columns:
                _check_cell_source(ck, inp, sub)
                continue
            vals = [_key(v) for v in sub[c]]
            if len(set(vals)) > 1:
                arms = ", ".join(str(a) for a in sub["arm_id"])
                detail = "; ".join(f"{a}: {_fmt(v)}" for a, v in zip(sub["arm_id"], vals))
                ck.err(inp, idx, c, f"arms disagree on a trial-level column ({detail})", arm=arms)


def _check_cell_source(ck: _Checker, inp: _Input, sub: pd.DataFrame) -> None:
    roles = sub["arm_role"]
    msc_sources = list(dict.fromkeys(_key(v) for v in sub.loc[roles == "msc", "cell_source"]))
    if len([s for s in msc_sources if s is not None]) > 1:
        # multi-source trial: each cell arm has its own source; control arms carry `other`
        for i in sub.index[roles == "control"]:
            if sub.at[i, "cell_source"] != "other":
                ck.err(inp, [i], "cell_source",
                       f"in a multi-source trial (msc arms: {', '.join(map(str, msc_sources))}) "
                       f"control arms must be 'other' (got {_fmt(sub.at[i, 'cell_source'])})")
        return
    vals = [_key(v) for v in sub["cell_source"]]
    if len(set(vals)) > 1:
        arms = ", ".join(str(a) for a in sub["arm_id"])
        detail = "; ".join(f"{a}: {_fmt(v)}" for a, v in zip(sub["arm_id"], vals))
        ck.err(inp, list(sub.index), "cell_source",
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
    # joins to trials
    arms = _arms_by_trial(trials)
    if arms is not None:
        for i in df.index:
            t, a = df.at[i, "trial_id"], df.at[i, "arm_id"]
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

    num = lambda c, i: _key(df.at[i, c])  # noqa: E731
    for i in df.index:
        lo, hi = num("scale_min", i), num("scale_max", i)
        if lo is not None and hi is not None and lo >= hi:
            ck.err(inp, [i], "scale_max", f"scale_max ({hi:g}) must be > scale_min ({lo:g})")
        elif lo is not None or hi is not None:
            change = df.at[i, "value_type"] == "change_from_baseline"
            if change:  # a change lies within +/- the width of the scale
                width = hi - lo if lo is not None and hi is not None else None
                bounds = (-width, width) if width is not None else (None, None)
                what = f"a change on the stated scale {_fmt(lo)}-{_fmt(hi)} (so within +/-{_fmt(width)})"
            else:
                bounds = (lo, hi)
                what = f"the stated scale {_fmt(lo)}-{_fmt(hi)}"
            for c in ("mean", "median", "q1", "q3"):
                v = num(c, i)
                if v is None:
                    continue
                if (bounds[0] is not None and v < bounds[0]) or (bounds[1] is not None and v > bounds[1]):
                    ck.err(inp, [i], c, f"{c} {v:g} is outside {what}")
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
            vt = _key(df.at[i, "value_type"])
            if vt is not None and vt != "final":
                ck.err(inp, [i], "value_type", f"an events row must have value_type final (got {vt!r})")
            sr = _key(df.at[i, "stat_reported"])
            if sr != "events":
                ck.err(inp, [i], "stat_reported",
                       f"an events row must have stat_reported events (got {_fmt(sr)})")


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
    trials = frames.get("trials") if has("trials", ("trial_id", "arm_id")) else None
    if trials is not None:
        _check_trials(ck, inputs["trials"], frames["trials"])
    if has("outcomes", ("trial_id", "arm_id", "outcome", "time_months", "value_type")):
        _check_outcomes(ck, inputs["outcomes"], frames["outcomes"], trials)
    if has("contrasts", ("trial_id", "outcome", "contrast")):
        _check_contrasts(ck, inputs["contrasts"], frames["contrasts"], trials)
    if has("pooled_targets", ("estimate",)):
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


def _build(inputs: dict[str, _Input | None], source: str) -> TrialData:
    filled = {k: (v if v is not None else _empty_input(SCHEMA[k])) for k, v in inputs.items()}
    frames, ck = _check(filled)
    found = _finish(ck, stacklevel=4)
    return TrialData(
        trials=frames["trials"],
        outcomes=frames["outcomes"],
        contrasts=frames["contrasts"],
        pooled_targets=frames["pooled_targets"],
        source=source,
        data_hash=_hash(inputs),
        warnings=found,
    )


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
    given = {
        "trials": trials_path,
        "outcomes": outcomes_path,
        "contrasts": contrasts_path,
        "pooled_targets": pooled_targets_path,
    }
    inputs: dict[str, _Input | None] = {}
    described = []
    for name, src in given.items():
        if src is None:
            inputs[name] = None
            continue
        if isinstance(src, pd.DataFrame):
            inputs[name] = _from_frame(src, SCHEMA[name])
            described.append(f"{name}=DataFrame")
        else:
            inputs[name] = _from_path(src, SCHEMA[name])
            described.append(f"{name}={os.fspath(src)}")
    return _build(inputs, "; ".join(described))
