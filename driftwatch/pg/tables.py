"""Names and shapes of the monitored tables: quoted identifiers built once from the config,
and what the catalog says about a collection's vector column (type, dimension, ANN index).

Every identifier that reaches SQL goes through `qualified` or `sql.Identifier` here, so a
hostile table or column name in the config is a name that does not exist, never SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from driftwatch.config import CollectionSettings, split_qualified_name
from driftwatch.errors import SourceError

VECTOR_TYPES = ("vector", "halfvec")
_NOT_ANN = ("btree", "hash", "brin")  # index methods that cannot answer a nearest-neighbour ORDER BY


def qualified(name: str) -> sql.Identifier:
    """`schema.table` or `table` (as written in the config) as one quoted identifier."""
    schema, table = split_qualified_name(name)
    return sql.Identifier(schema, table) if schema else sql.Identifier(table)


@dataclass(frozen=True)
class Source:
    """Quoted SQL pieces for one collection's table; built once from the config."""

    table: sql.Composable
    id_col: sql.Composable
    vec_col: sql.Composable
    version_col: sql.Composable | None
    text_col: sql.Composable | None
    label: str  # the table as the config names it, for messages

    @classmethod
    def of(cls, collection: CollectionSettings) -> Source:
        version, text = collection.model_version_column, collection.text_column
        return cls(
            table=qualified(collection.table),
            id_col=sql.Identifier(collection.id_column),
            vec_col=sql.Identifier(collection.vector_column),
            version_col=sql.Identifier(version) if version else None,
            text_col=sql.Identifier(text) if text else None,
            label=collection.table,
        )


@dataclass(frozen=True)
class AnnIndex:
    """An index on the vector column that can serve `ORDER BY vec <op> q` (HNSW, IVFFlat, ...)."""

    name: str
    method: str  # hnsw | ivfflat | another access method's name
    opclass: str  # e.g. vector_cosine_ops, halfvec_l2_ops: which metric the index answers
    partial: bool  # has a WHERE clause: serves only queries that repeat it


@dataclass(frozen=True)
class VectorColumn:
    """What the catalog says about a collection's columns, read once per snapshot."""

    kind: str  # vector | halfvec
    dim: int | None  # the declared dimension, vector(768); None when unconstrained
    indexes: tuple[AnnIndex, ...]  # whole-table indexes first; expression indexes are not listed
    id_type: sql.Composable  # the id column's own type, so `id = ANY(%s::text[]::type[])` uses its index
    relid: int = 0  # the table's oid
    partitioned: bool = False  # a partitioned parent: sampled over its leaves (`pg.partitions`)

    @property
    def opclass(self) -> str | None:
        """The operator class of the first ANN index on the column, if any."""
        return self.indexes[0].opclass if self.indexes else None

    def as_vector(self, expr: sql.Composable) -> sql.Composable:
        """`expr` as float4 `vector` (halfvec is widened, exactly), for the binary COPY decode."""
        return sql.SQL("{}::vector").format(expr) if self.kind == "halfvec" else expr

    def like_column(self, expr: sql.Composable) -> sql.Composable:
        """A query vector `expr` cast to the column's type, so the column's index matches it."""
        return sql.SQL("{}::halfvec").format(expr) if self.kind == "halfvec" else expr


_OPCLASS_METRIC = {"cosine_ops": "cosine", "l2_ops": "l2", "ip_ops": "inner_product"}


def opclass_metric(opclass: str) -> str | None:
    """The `metric` whose operator an index of this operator class answers
    (vector_cosine_ops and halfvec_cosine_ops: cosine); None for another kind (l1, bit)."""
    return next((m for suffix, m in _OPCLASS_METRIC.items() if opclass.endswith(suffix)), None)


def check_index_metric(column: VectorColumn, metric: str, where: str) -> str | None:
    """Refuse a `metric` that no whole-table ANN index on the column answers: every suite
    query would scan the table and end in statement_timeout (a baseline capture after a
    minute). Returns a warning when there is no such index at all (exact scans: slow, but
    correct), else None."""
    whole = [ix for ix in column.indexes if not ix.partial]
    if not whole:
        return (
            f"{where} has no ANN index (hnsw or ivfflat): the reference suite and index health "
            "scan the whole table; create one with the operator class of metric "
            f"{metric!r} (e.g. USING hnsw (... vector_{_suffix(metric)}))"
        )
    if any(opclass_metric(ix.opclass) == metric for ix in whole):
        return None
    ix = whole[0]
    right = opclass_metric(ix.opclass)
    fix = (
        f'set metric = "{right}"' if right else "use an index of a cosine, l2 or inner-product operator class"
    )
    raise SourceError(
        f"metric: {metric!r} does not match the ANN index on {where}: {ix.name} ({ix.method}) uses "
        f"{ix.opclass}, which answers only {right or 'another'} distance; {fix} (or create an index with "
        f"vector_{_suffix(metric)})"
    )


def _suffix(metric: str) -> str:
    return next(suffix for suffix, m in _OPCLASS_METRIC.items() if m == metric)


def _relation(conn: psycopg.Connection, table: sql.Composable) -> tuple[int | None, str | None]:
    row = conn.execute(
        "SELECT c.oid, c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)", (table.as_string(conn),)
    ).fetchone()
    return (int(row[0]), row[1]) if row else (None, None)


def column_names(conn: psycopg.Connection, table: sql.Composable) -> set[str] | None:
    """The table's column names, or None when it does not exist (or is not visible)."""
    oid, _ = _relation(conn, table)
    if oid is None:
        return None
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", (oid,)
    ).fetchall()
    return {r[0] for r in rows}


def describe(conn: psycopg.Connection, source: Source, collection: CollectionSettings) -> VectorColumn:
    """Check the table and its configured columns exist, and describe the vector column."""
    oid, relkind = _relation(conn, source.table)
    if oid is None:
        raise SourceError(f"table {source.label} does not exist or is not visible to this role")
    if relkind not in ("r", "m", "p"):
        what = {"v": "a view", "f": "a foreign table"}.get(relkind or "", "not a table")
        raise SourceError(
            f"{source.label} is {what}; driftwatch samples heap tables (or partitioned tables' "
            "leaves) by tuple id: point it at the table itself"
        )
    columns = {
        name: (attnum, typname, schema, typmod)
        for name, attnum, typname, schema, typmod in conn.execute(
            """SELECT a.attname, a.attnum, t.typname, n.nspname, a.atttypmod
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
               JOIN pg_namespace n ON n.oid = t.typnamespace
               WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped""",
            (oid,),
        ).fetchall()
    }
    wanted = [("id_column", collection.id_column), ("vector_column", collection.vector_column)]
    if collection.model_version_column:
        wanted.append(("model_version_column", collection.model_version_column))
    for key, column in wanted:
        if column not in columns:
            raise SourceError(f"{key}: column {column!r} does not exist in {source.label}")
    attnum, kind, _, typmod = columns[collection.vector_column]
    if kind not in VECTOR_TYPES:
        raise SourceError(
            f"vector_column: column {collection.vector_column!r} in {source.label} is of type {kind}, "
            "not vector or halfvec"
        )
    _, id_type, id_schema, _ = columns[collection.id_column]
    return VectorColumn(
        kind=kind,
        dim=int(typmod) if typmod and typmod > 0 else None,
        indexes=_ann_indexes(conn, oid, attnum),
        id_type=sql.Identifier(id_schema, id_type),
        relid=oid,
        partitioned=relkind == "p",
    )


def _ann_indexes(conn: psycopg.Connection, oid: int, attnum: int) -> tuple[AnnIndex, ...]:
    """Valid single-column indexes on the vector column itself (pgvector's are all single-column)."""
    rows = conn.execute(
        """SELECT ic.relname, am.amname, opc.opcname, i.indpred IS NOT NULL
           FROM pg_index i
           JOIN pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_am am ON am.oid = ic.relam
           JOIN pg_opclass opc ON opc.oid = i.indclass[0]
           WHERE i.indrelid = %s AND i.indnatts = 1 AND i.indkey[0] = %s AND i.indisvalid
             AND NOT am.amname = ANY(%s)
           ORDER BY i.indpred IS NOT NULL, ic.relname""",
        (oid, attnum, list(_NOT_ANN)),
    ).fetchall()
    return tuple(AnnIndex(name, method, opclass, partial) for name, method, opclass, partial in rows)


def table_size(conn: psycopg.Connection, source: Source) -> tuple[int, int]:
    """(heap pages, estimated rows) from the catalog: no scan; -1 rows when never analyzed."""
    pages, reltuples = conn.execute(
        """SELECT pg_relation_size(c.oid) / current_setting('block_size')::int, c.reltuples
           FROM pg_class c WHERE c.oid = to_regclass(%s)""",
        (source.table.as_string(conn),),
    ).fetchone()
    return int(pages), int(reltuples) if reltuples is not None and reltuples >= 0 else -1


__all__ = [
    "AnnIndex",
    "Source",
    "VectorColumn",
    "check_index_metric",
    "column_names",
    "describe",
    "opclass_metric",
    "qualified",
    "table_size",
]
