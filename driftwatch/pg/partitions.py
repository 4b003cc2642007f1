"""Partitioned parents: their leaf tables, how a sample is shared among them, and what
changed in the set of leaves since the baseline.

A partitioned parent has no heap of its own, so it cannot be sampled by tuple id; its leaves
can. A uniform sample of the parent's rows is, exactly, a multivariate hypergeometric split
of the sample size over the leaves' row counts followed by a simple random sample inside
each leaf (`allocate`): every set of `size` rows of the union is then equally likely. The
counts are the catalog's live-row estimates (`reltuples` per `relpages`, kept by ANALYZE
and autovacuum, times the pages the leaf has now, as the planner estimates; a leaf never
analyzed is counted), so the union is as uniform as those estimates are right.

The leaves are listed with a recursive query over `pg_inherits` (sub-partitions included),
so the list comes from the cycle's REPEATABLE READ snapshot like every other read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from driftwatch.errors import SourceError

_LEAVES = """
WITH RECURSIVE tree(relid) AS (
    SELECT inhrelid FROM pg_inherits WHERE inhparent = %(parent)s AND NOT inhdetachpending
    UNION ALL
    SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid WHERE NOT i.inhdetachpending
)
SELECT n.nspname, c.relname, c.relkind,
       pg_relation_size(c.oid) / current_setting('block_size')::int, c.reltuples, c.relpages
FROM tree JOIN pg_class c ON c.oid = tree.relid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind <> 'p'
ORDER BY n.nspname, c.relname
"""
_KINDS = {"f": "a foreign table", "v": "a view", "m": "a materialized view"}


@dataclass(frozen=True)
class Leaf:
    """One leaf partition: its schema-qualified name and the catalog's size of it."""

    name: str  # schema.table, as reported
    table: sql.Identifier
    pages: int
    rows_estimate: int  # live rows (reltuples scaled to the pages now); -1 when unknown


def leaves(conn: psycopg.Connection, parent_oid: int, label: str) -> list[Leaf]:
    """The leaf partitions under a partitioned parent, at any depth, in name order.

    A foreign-table leaf (a partition on another server) cannot be sampled by tuple id and
    is refused by name rather than silently left out of a sample called uniform."""
    found = []
    for schema, name, kind, pages, reltuples, relpages in conn.execute(
        _LEAVES, {"parent": parent_oid}
    ).fetchall():
        if kind != "r":
            raise SourceError(
                f"{label}: partition {schema}.{name} is {_KINDS.get(kind, 'not a table')}; driftwatch "
                "samples heap tables by tuple id: monitor the other partitions' own tables instead"
            )
        found.append(
            Leaf(
                f"{schema}.{name}",
                sql.Identifier(schema, name),
                int(pages),
                _estimate(reltuples, relpages, pages),
            )
        )
    return found


def _estimate(reltuples: float | None, relpages: int, pages: int) -> int:
    """Live rows now, as the planner estimates them: the rows per page of the last ANALYZE
    (or VACUUM) times the pages the leaf has now, so a leaf that grew since is not
    under-drawn; -1 when there is nothing to scale (never analyzed, or analyzed empty)."""
    if reltuples is None or reltuples < 0 or (relpages <= 0 and pages > 0):
        return -1
    return round(reltuples / relpages * pages) if relpages > 0 else 0


def counted(conn: psycopg.Connection, leaf: Leaf) -> int:
    """A leaf's live rows: the catalog estimate, or a count when there is none (a partition
    created, or emptied and refilled, since autovacuum last analyzed it)."""
    if leaf.rows_estimate >= 0 or leaf.pages == 0:
        return max(leaf.rows_estimate, 0)
    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(leaf.table)).fetchone()[0])


def allocate(rows: list[int], size: int, rng: np.random.Generator) -> np.ndarray:
    """How many of `size` sampled rows each leaf gives: a multivariate hypergeometric draw
    over the leaves' row counts, which is how a simple random sample of the union falls on
    them (a fixed proportional split would not be: its shares never vary)."""
    counts = np.asarray(rows, dtype=np.int64)
    if size >= counts.sum():
        return counts
    return rng.multivariate_hypergeometric(counts, size)


def changes_since(before: dict[str, int], now: dict[str, int]) -> list[str]:
    """Notes on the leaves attached and detached since the baseline (`before` and `now`: leaf
    -> live-row estimate). A detached leaf is not a change in the remaining rows: the
    sample is drawn over the leaves present now, and the note says what is gone."""
    notes = []
    gone, new = sorted(set(before) - set(now)), sorted(set(now) - set(before))
    if gone:
        listed = ", ".join(f"{name} (~{before[name]:,} rows then)" for name in gone)
        notes.append(f"partitions detached since the baseline: {listed}; sampled over the remaining leaves")
    if new:
        listed = ", ".join(f"{name} (~{now[name]:,} rows)" for name in new)
        notes.append(f"partitions attached since the baseline: {listed}; their rows are in the sample")
    return notes


__all__ = ["Leaf", "allocate", "changes_since", "counted", "leaves"]
