"""Every error driftwatch raises on purpose, in one place.

    DriftwatchError
    ├── ConfigError        the config file or an env override is invalid (one line per problem)
    ├── StoreError         driftwatch's own database (the "store") cannot be reached or migrated
    ├── SourceError        a monitored PostgreSQL + pgvector database (a "source") failed:
    │                      unreachable, missing table or column, wrong type, statement_timeout
    ├── SuiteError         a reference-suite JSONL file is invalid (one line per problem)
    ├── QueryLogError      a query-log JSONL file is invalid (one line per problem)
    ├── BaselineError      no baseline to compare with, or one that does not fit the data
    ├── PairsError         `adapter fit` finds too few rows embedded by both models (says how to add them)
    ├── NotifyError        a notifier could not deliver (the alert stays owed and is retried)
    └── MissingExtraError  an optional part is not installed; the message names the pip extra

They subclass built-ins where one fits, carry the data that explains them, and become
`click.ClickException` only at the CLI edge.
"""

from __future__ import annotations


class DriftwatchError(Exception):
    """Base class: anything driftwatch knows how to explain to a person."""


class ConfigError(DriftwatchError, ValueError):
    """The configuration is invalid; `problems` holds one `key.path: what is wrong` per line."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid configuration{where}:\n{lines}")


class StoreError(DriftwatchError):
    """driftwatch's own time-series store failed (unreachable, or a migration failed)."""


class SourceError(DriftwatchError):
    """Reading a monitored database (a source of vectors) failed; the message names the table
    and the cause. Not to be confused with StoreError: the store is driftwatch's own database."""


class SuiteError(DriftwatchError, ValueError):
    """A reference-suite file is invalid; `problems` holds `line N: field: what is wrong`."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        where = f" {source}" if source else ""
        super().__init__(f"invalid reference suite{where}:\n" + "\n".join(f"  {p}" for p in self.problems))


class QueryLogError(DriftwatchError, ValueError):
    """A query-log JSONL file is invalid; `problems` holds `line N: field: what is wrong`."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        where = f" {source}" if source else ""
        super().__init__(f"invalid query log{where}:\n" + "\n".join(f"  {p}" for p in self.problems))


class PairsError(DriftwatchError, ValueError):
    """Too few (or no) rows carry vectors of both model versions for a Drift-Adapter: a matter
    of what the user has re-embedded, not a failure of the database."""


class BaselineError(DriftwatchError):
    """A check needs a baseline that is missing or does not match the data."""


class NotifyError(DriftwatchError):
    """A notifier failed; the message names the notifier (never a secret URL) and the cause."""


class MissingExtraError(DriftwatchError, ImportError):
    """An optional part of driftwatch is not installed; the message names the extra that brings it.

    An ImportError too, so code that treats "not installed" as ImportError keeps working.
    """

    def __init__(self, part: str, extra: str) -> None:
        self.part = part
        self.extra = extra
        super().__init__(
            f"{part} is not installed; it is an optional extra: pip install 'driftwatch[{extra}]'"
        )
