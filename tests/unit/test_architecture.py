"""Layer contracts: the folder names are the pipeline, lower layers never import higher ones.

`lint-imports` (import-linter) checks the contracts declared in pyproject.toml, function-level
imports included; a second, independent check looks for any import cycle between modules.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports (import-linter, a test dependency) is not installed")
    out = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def _edges() -> dict[str, set[str]]:
    mods = {}
    for path in (ROOT / "bayes_koa").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts)
        mods[name.removesuffix(".__init__")] = path
    edges = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if pkg else m.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                cands = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            for t in cands:
                if t in mods and t != m and not m.startswith(t + "."):
                    edges[m].add(t)
    return edges


def test_no_import_cycles():
    edges = _edges()
    state: dict[str, int] = {}

    def visit(v, stack):
        state[v] = 1
        for w in edges[v]:
            if state.get(w) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(w):] + [w]))
            if w not in state:
                visit(w, stack + [w])
        state[v] = 2

    for v in edges:
        if v not in state:
            visit(v, [v])


def test_a_kinds_variables_are_named_only_inside_kinds():
    """Outside bayes_koa/kinds no module names a kind's posterior variables: it asks the kind (its roles)."""
    names = ("source_mean", "cell_mean", "theta_new", "odds_ratio", "overall_by_time", "sigma_source")
    bad = []
    for path in (ROOT / "bayes_koa").rglob("*.py"):
        rel = path.relative_to(ROOT / "bayes_koa")
        if rel.parts[0] == "kinds":
            continue
        if rel.as_posix() == "inference/exact.py":  # the exact oracle is its own closed-form model (mu, tau, theta_new)
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                bad.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not bad, "kind variables named outside kinds/: " + "; ".join(bad)
