"""Notebooks are documentation that runs: each is executed top to bottom (BAYES_KOA_FAST=1).

One test file per notebook so that pytest-xdist (`--dist loadfile`) runs them on different workers.
"""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parents[2] / "notebooks"


def run_notebook(name: str, tmp_path):
    path = FOLDER / name
    os.environ["BAYES_KOA_FAST"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    return nb


def shown(nb, tag: str) -> str:
    """The text a tagged cell shows (its text/plain outputs, joined)."""
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    out = []
    for o in cells[0].outputs:
        if o.output_type in ("execute_result", "display_data"):
            out.append(o.get("data", {}).get("text/plain", ""))
        elif o.output_type == "stream":
            out.append(o.get("text", ""))
    return "\n".join(out)


def shown_frame(nb, tag: str):
    """The DataFrame a tagged cell shows, read back from its text (pandas wraps wide frames in blocks)."""
    import pandas as pd

    blocks = [b for b in shown(nb, tag).split("\n\n") if b.strip()]
    parts = []
    for b in blocks:
        lines = [ln.rstrip(" \\") for ln in b.splitlines() if ln.strip()]
        header = lines[0].split()
        rows = {ln.split()[0]: ln.split()[1:] for ln in lines[1:]}
        parts.append(pd.DataFrame.from_dict(rows, orient="index", columns=header))
    return pd.concat(parts, axis=1)
