"""Reading the bundled and user data: counts, parsed values, hash, Excel, DataFrames, schema doc.

Independent references: the CSV files themselves, read with the standard library's csv module.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

import bayes_koa
from bayes_koa.data import OUTCOMES, SCHEMA, DataValidationError, DataValidationWarning, TrialData, read_trials, schema_markdown
from bayes_koa.koa.bundled import load_koa_msc

DOC = Path(__file__).resolve().parents[2] / "docs" / "data_schema.md"
FILES = ("trials.csv", "outcomes.csv", "contrasts.csv", "pooled_targets.csv")


def _csv_rows(filename: str) -> tuple[list[str], list[dict]]:
    raw = resources.files("bayes_koa.koa").joinpath("data", "koa_msc", filename).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(raw))
    rows = list(reader)
    return list(reader.fieldnames), rows


@pytest.fixture(scope="module")
def bundled() -> TrialData:
    with pytest.warns(DataValidationWarning):
        return load_koa_msc()


@pytest.fixture
def csv_dir(tmp_path) -> Path:
    """A copy of the bundled CSVs in a temporary folder."""
    src = resources.files("bayes_koa.koa").joinpath("data", "koa_msc")
    for f in FILES:
        (tmp_path / f).write_bytes(src.joinpath(f).read_bytes())
    return tmp_path


def _paths(d: Path) -> list[Path]:
    return [d / f for f in FILES]


def test_public_names_resolve_from_the_package():
    assert bayes_koa.load_koa_msc is load_koa_msc
    assert bayes_koa.TrialData is TrialData
    assert bayes_koa.DataValidationError is DataValidationError
    assert issubclass(DataValidationError, ValueError)


def test_bundled_counts(bundled):
    # README "Files" table: 78 rows (33 trials), 115 outcome rows (4 trials), 5 contrasts, 11 targets
    _, trials = _csv_rows("trials.csv")
    _, outcomes = _csv_rows("outcomes.csv")
    assert bundled.n_arms == len(trials) == 78
    assert bundled.n_trials == len({r["trial_id"] for r in trials}) == 33
    assert len(bundled.outcomes) == len(outcomes) == 115
    assert len(bundled.contrasts) == len(_csv_rows("contrasts.csv")[1]) == 5
    assert len(bundled.pooled_targets) == len(_csv_rows("pooled_targets.csv")[1]) == 11


def test_bundled_trials_with_numbers(bundled):
    # README "Which trials have numbers"
    assert set(bundled.trials_with_outcomes) == {"LamoEspinosa_2016", "LamoEspinosa_2020", "Kuah_2018", "LeeBW_2025"}
    assert set(bundled.trials_with_contrasts) == {"Wong_2013", "Ruane_2021"}


def test_bundled_warnings_are_the_documented_caveats(bundled):
    # README: JSW_mm sign convention unclear (LamoEspinosa_2016); Ruane 2021 CI excludes the estimate
    assert len(bundled.warnings) == 2
    assert bundled.warnings[0].startswith("LamoEspinosa_2016 / arms msc_low, msc_high, control / column lower_is_better")
    assert bundled.warnings[1].startswith("Ruane_2021 / contrast bmac_prp_change_from_baseline / column estimate")


@pytest.mark.parametrize("name", list(SCHEMA))
def test_columns_follow_the_schema_and_the_files(bundled, name):
    header, _ = _csv_rows(SCHEMA[name].filename)
    frame = getattr(bundled, name)
    assert list(frame.columns) == list(SCHEMA[name].names)
    # every column of the file is in the schema, in the file's order; the only schema column
    # not in the bundled files is the optional `events` (added empty)
    assert [c for c in SCHEMA[name].names if c in header] == header
    assert set(SCHEMA[name].names) - set(header) == ({"events"} if name == "outcomes" else set())
    if name == "outcomes":
        assert frame["events"].isna().all()


@pytest.mark.parametrize("name", list(SCHEMA))
def test_every_cell_keeps_its_printed_value(bundled, name):
    """Each cell equals the csv module's text: parsed as a number, a yes/no or kept as text."""
    _, rows = _csv_rows(SCHEMA[name].filename)
    frame = getattr(bundled, name)
    for col in SCHEMA[name].columns:
        if col.name not in rows[0]:
            continue
        for i, row in enumerate(rows):
            text, got = row[col.name].strip(), frame.at[i, col.name]
            if text == "":
                assert pd.isna(got), (name, i, col.name)
            elif col.kind in ("float", "int"):
                assert got == float(text), (name, i, col.name)  # exact: same decimal string parsed
            elif col.kind == "bool":
                assert bool(got) is (text in ("yes", "true")), (name, i, col.name)
            else:
                assert got == text, (name, i, col.name)


def test_dtypes(bundled):
    t, o = bundled.trials, bundled.outcomes
    assert t["n_randomized"].dtype == "Int64" and o["n"].dtype == "Int64"
    assert t["rct"].dtype == "boolean" and o["lower_is_better"].dtype == "boolean"
    assert o["sd"].dtype == "float64"
    # documented example: `4e7` = 40 x 10^6 cells (Vega_2015 msc arm)
    vega = t[(t["trial_id"] == "Vega_2015") & (t["arm_id"] == "msc")]
    assert vega["cells_per_injection"].item() == 40e6
    # JSW_mm rows keep lower_is_better empty (README: sign convention unclear)
    assert o.loc[o["outcome"] == "JSW_mm", "lower_is_better"].isna().all()


def test_registry_covers_the_bundled_outcomes(bundled):
    names = set(bundled.outcomes["outcome"]) | set(bundled.contrasts["outcome"])
    assert names <= set(OUTCOMES)
    # README: lower_is_better is true for VAS, WOMAC*, Lequesne, NPRS; false for Lysholm, KOOS
    assert all(OUTCOMES[n].lower_is_better for n in ("VAS", "WOMAC_total", "WOMAC_pain", "Lequesne", "NPRS"))
    assert not any(OUTCOMES[n].lower_is_better for n in ("Lysholm", "KOOS_unspecified"))
    assert OUTCOMES["JSW_mm"].lower_is_better is None
    # WOMAC Likert 3.1: 5 pain items, 2 stiffness, 17 function, each scored 0-4
    assert (OUTCOMES["WOMAC_pain"].scale_max, OUTCOMES["WOMAC_stiffness"].scale_max,
            OUTCOMES["WOMAC_function"].scale_max, OUTCOMES["WOMAC_total"].scale_max) == (5 * 4, 2 * 4, 17 * 4, 24 * 4)


def test_repr_tells_counts_and_trials_with_numbers(bundled):
    text = repr(bundled)
    assert "bundled koa_msc" in text
    assert "33 trials, 78 arms; 115 outcome rows" in text
    assert "LamoEspinosa_2020" in text and "Wong_2013" in text
    assert len(text.splitlines()) <= 5
    assert "33 trials, 78 arms" in bundled._repr_html_()


def test_data_hash_is_stable_and_matches_reading_the_same_files(bundled, csv_dir):
    with pytest.warns(DataValidationWarning):
        again = load_koa_msc()
        from_files = read_trials(*_paths(csv_dir))
    assert len(bundled.data_hash) == 64 and int(bundled.data_hash, 16) >= 0
    assert again.data_hash == bundled.data_hash
    assert from_files.data_hash == bundled.data_hash  # same bytes, same hash
    assert str(csv_dir) in from_files.source


def test_data_hash_changes_when_one_byte_changes(bundled, csv_dir):
    path = csv_dir / "trials.csv"
    raw = bytearray(path.read_bytes())
    i = raw.index(b"Barcelona")  # a byte inside a notes field (Vega_2015)
    raw[i] = ord("b")
    path.write_bytes(bytes(raw))
    with pytest.warns(DataValidationWarning):
        changed = read_trials(*_paths(csv_dir))
    assert changed.data_hash != bundled.data_hash
    # the hash also depends on which file holds the bytes: dropping pooled targets changes it
    with pytest.warns(DataValidationWarning):
        fewer = read_trials(*_paths(csv_dir)[:3])
    assert fewer.data_hash != changed.data_hash


def test_error_rows_are_spreadsheet_rows(csv_dir):
    """A bad SD in a file is reported with the file's row number (header = row 1)."""
    path = csv_dir / "outcomes.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    target = "LamoEspinosa_2020,msc,VAS,,,true,0,final,,5.3,1.9,"
    (k,) = [k for k, line in enumerate(lines) if line.startswith(target)]
    lines[k] = lines[k].replace(target, target.replace(",1.9,", ",-1.9,"))
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        read_trials(*_paths(csv_dir))
    assert str(info.value) == (  # one problem: one line
        f"LamoEspinosa_2020 / arm msc / column sd: SD must be > 0 (got -1.9) in outcomes.csv row {k + 1}"
    )
    assert info.value.problems[0]["row"] == k + 1


def test_optional_tables_default_to_empty_frames(csv_dir):
    with pytest.warns(DataValidationWarning, match="JSW_mm"):
        data = read_trials(csv_dir / "trials.csv", csv_dir / "outcomes.csv")
    assert data.contrasts.empty and list(data.contrasts.columns) == list(SCHEMA["contrasts"].names)
    assert data.pooled_targets.empty and list(data.pooled_targets.columns) == list(SCHEMA["pooled_targets"].names)
    assert data.contrasts["estimate"].dtype == "float64"


def _assert_same_tables(a: TrialData, b: TrialData) -> None:
    for name in SCHEMA:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_dataframes_round_trip(bundled):
    with pytest.warns(DataValidationWarning):
        again = read_trials(bundled.trials, bundled.outcomes, bundled.contrasts, bundled.pooled_targets)
    _assert_same_tables(again, bundled)
    assert "trials=DataFrame" in again.source


def test_excel_round_trip_one_workbook(bundled, tmp_path):
    pytest.importorskip("openpyxl")
    book = tmp_path / "extraction.xlsx"
    with pd.ExcelWriter(book, engine="openpyxl") as writer:
        for name in SCHEMA:
            getattr(bundled, name).to_excel(writer, sheet_name=name, index=False)
    with pytest.warns(DataValidationWarning):
        data = read_trials(book, book, book, book)
    _assert_same_tables(data, bundled)


def test_excel_workbook_without_the_named_sheet(bundled, tmp_path):
    pytest.importorskip("openpyxl")
    book = tmp_path / "extraction.xlsx"
    with pd.ExcelWriter(book, engine="openpyxl") as writer:
        bundled.trials.to_excel(writer, sheet_name="Trials", index=False)  # any case is accepted
        bundled.outcomes.to_excel(writer, sheet_name="arm data", index=False)
    with pytest.raises(DataValidationError, match="none is named 'outcomes'"):
        read_trials(book, book)


def test_plain_message_error():
    """Other modules may raise the error with a plain message."""
    err = DataValidationError("trial X, arm msc: no SD")
    assert str(err) == "trial X, arm msc: no SD"
    assert err.problems[0]["message"] == "trial X, arm msc: no SD"


def test_excel_one_file_per_table(bundled, tmp_path):
    pytest.importorskip("openpyxl")
    paths = []
    for name in ("trials", "outcomes"):
        p = tmp_path / f"{name}.xlsx"
        getattr(bundled, name).to_excel(p, index=False, sheet_name="Sheet1")
        paths.append(p)
    with pytest.warns(DataValidationWarning):
        data = read_trials(*paths)
    pd.testing.assert_frame_equal(data.outcomes, bundled.outcomes)
    assert data.data_hash == read_trials_hash(paths)


def read_trials_hash(paths: list[Path]) -> str:
    """The documented hash: sha256 over `name:length\\n` + raw bytes, tables in schema order."""
    h = hashlib.sha256()
    raws = [p.read_bytes() for p in paths] + [b""] * (4 - len(paths))
    for name, raw in zip(SCHEMA, raws):
        h.update(f"{name}:{len(raw)}\n".encode())
        h.update(raw)
    return h.hexdigest()


def test_excel_errors_name_the_spreadsheet_row(bundled, tmp_path):
    pytest.importorskip("openpyxl")
    outcomes = bundled.outcomes.copy()
    outcomes.loc[3, "sd"] = -2.0  # data row 4 = spreadsheet row 5 (header on row 1)
    p = tmp_path / "outcomes.xlsx"
    outcomes.to_excel(p, index=False)
    with pytest.raises(DataValidationError, match=r"column sd: SD must be > 0 \(got -2\) in outcomes\.xlsx row 5"):
        read_trials(bundled.trials, p)


def test_excel_without_openpyxl_says_what_to_install(tmp_path, monkeypatch):
    p = tmp_path / "trials.xlsx"
    p.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # makes `import openpyxl` fail
    with pytest.raises(ImportError, match="needs openpyxl"):
        read_trials(p, p)


def test_unreadable_file_is_a_validation_error(tmp_path, csv_dir):
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    with pytest.raises(DataValidationError, match="empty.csv"):
        read_trials(bad, csv_dir / "outcomes.csv")


def test_missing_tokens_and_booleans(csv_dir):
    """NA/NR in number columns are missing values; yes/no/true/false parse to booleans."""
    path = csv_dir / "trials.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    vega = df["trial_id"] == "Vega_2015"
    df.loc[vega, "n_randomized"] = ["NR", "NA"]
    df.loc[vega, "rct"] = "TRUE"
    df.to_csv(path, index=False)
    with pytest.warns(DataValidationWarning):
        data = read_trials(*_paths(csv_dir))
    got = data.trials[data.trials["trial_id"] == "Vega_2015"]
    assert got["n_randomized"].isna().all()
    assert got["rct"].tolist() == [True, True]


def test_extra_columns_are_kept_with_a_warning(bundled):
    trials = bundled.trials.assign(reviewer="AB")
    with pytest.warns(DataValidationWarning, match="columns not in the schema, kept as text: reviewer"):
        data = read_trials(trials, bundled.outcomes)
    assert (data.trials["reviewer"] == "AB").all()


def test_schema_doc_is_the_rendered_schema():
    assert DOC.read_text(encoding="utf-8") == schema_markdown(), (
        "docs/data_schema.md is out of date; regenerate it with: python -c \"from bayes_koa.data.schema "
        "import schema_markdown; open('docs/data_schema.md', 'w').write(schema_markdown())\""
    )


def test_schema_doc_mentions_every_column_and_outcome():
    text = schema_markdown()
    for table in SCHEMA.values():
        for c in table.names:
            assert f"| `{c}` |" in text
    for name in OUTCOMES:
        assert f"| `{name}` |" in text
