"""The `driftwatch` command: thin click commands that parse, call one library function, print."""

from driftwatch.cli.main import cli, main

__all__ = ["cli", "main"]
