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
