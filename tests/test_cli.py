"""The CLI as a user meets it: help with examples, version, init, honest 'not yet'."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from driftwatch import __version__
from driftwatch.cli import cli

from helpers import run_cli


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = all_commands(cli)
CONTRACT = [
    ("init",), ("db", "upgrade"), ("baseline", "capture"), ("check",), ("run",), ("status",),
    ("history",), ("suite", "import"), ("querylog", "import"), ("candidates", "export"),
    ("adapter", "fit"), ("demo",),
]  # fmt: skip


def test_every_design_command_exists() -> None:
    assert set(CONTRACT) <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "driftwatch" for p in COMMANDS])
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    example = result.output.split("Example:", 1)[1].strip().splitlines()[0]
    assert example.startswith("driftwatch")


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "driftwatch.toml"
    target.write_text("# mine\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(target), "init"])
    assert result.exit_code == 2 and "--force" in result.output
    assert target.read_text() == "# mine\n"
    result = runner.invoke(cli, ["--config", str(target), "init", "--force"])
    assert result.exit_code == 0 and "[[collections]]" in target.read_text()


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "absent.toml"), "db", "upgrade")
    assert result.returncode == 2
    assert "absent.toml not found" in result.stderr and "driftwatch init" in result.stderr


def test_subprocess_init_then_upgrade_sqlite(tmp_path: Path) -> None:
    """The console script, as installed, end to end on the default SQLite store."""
    script = shutil.which("driftwatch", path=str(Path(sys.executable).parent))
    assert script is not None
    import subprocess

    config = tmp_path / "driftwatch.toml"
    done = subprocess.run([script, "--config", str(config), "init"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    upgraded = run_cli("--config", str(config), "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "driftwatch.db").exists()  # next to the config, not in the cwd
    version = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"driftwatch, version {__version__}"
