"""The package's import structure (docs/architecture.md): the import-linter contracts declared in
pyproject.toml ([tool.importlinter]: the layers and the independence of the tasks) hold, and the
module import graph has no cycle (../shared/tools/import_graph.py, where that checkout is present)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
IMPORT_GRAPH = ROOT.parent / "shared" / "tools" / "import_graph.py"


def _lint_imports() -> str:
    if LINT_IMPORTS.exists():
        return str(LINT_IMPORTS)
    found = shutil.which("lint-imports")
    if found is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return found


def test_import_linter_contracts_are_kept():
    p = subprocess.run([_lint_imports()],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", p.stdout)
    assert kept and int(kept.group(2)) == 0, p.stdout
    assert int(kept.group(1)) >= 2, p.stdout  # the layers and the task independence, at least


@pytest.mark.skipif(not IMPORT_GRAPH.exists(), reason=f"{IMPORT_GRAPH} not present (no ../shared checkout)")
def test_the_import_graph_has_no_cycle():
    p = subprocess.run([sys.executable, str(IMPORT_GRAPH), "src", "snagkg"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    summary = p.stdout.strip().splitlines()[-1]
    cycles = re.match(r"cycles (\d+) ", summary)
    assert cycles, summary
    assert int(cycles.group(1)) == 0, p.stdout


def test_imports_inside_functions_are_deferred_extras_with_a_reason():
    """Every import made inside a function names why it is deferred (``# deferred: <reason>``: an
    optional extra, a platform module); everything else is imported at the top of its module."""
    import ast

    missing = []
    for path in sorted((ROOT / "src" / "snagkg").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                        if module.startswith("snagkg") or "# deferred:" not in lines[node.lineno - 1]:
                            missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert missing == []
