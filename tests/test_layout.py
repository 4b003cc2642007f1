"""The layout is the architecture: detect/ is pure math, so a statistic can be read, tested and
reused without a database, a network or driftwatch's own store."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import driftwatch

DETECT = Path(driftwatch.__file__).parent / "detect"
ALLOWED_ROOTS = {"numpy", "scipy", "__future__"}
FORBIDDEN = ("psycopg", "sqlalchemy", "pgvector", "socket", "ssl", "http", "urllib", "httpx", "alembic")


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module)
    return roots


def test_detect_imports_only_the_standard_library_numpy_scipy_and_itself() -> None:
    modules = sorted(DETECT.glob("*.py"))
    assert len(modules) >= 5
    for path in modules:
        for name in _imported_roots(path):
            root = name.split(".")[0]
            if name.startswith("driftwatch."):
                assert name.startswith("driftwatch.detect"), f"{path.name} imports {name}"
            else:
                assert root in ALLOWED_ROOTS or root in sys.stdlib_module_names, f"{path.name} imports {name}"
                assert root not in FORBIDDEN, f"{path.name} imports {name}"


def test_importing_detect_loads_no_driver_and_no_network() -> None:
    """Transitively too: whatever `import driftwatch` loads first, detect/ adds no driver."""
    probe = (
        "import sys, pkgutil, importlib\n"
        "import driftwatch\n"
        "before = set(sys.modules)\n"
        "import driftwatch.detect as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module('driftwatch.detect.' + m.name)\n"
        f"bad = sorted(n for n in set(sys.modules) - before if n.split('.')[0] in {FORBIDDEN!r})\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
