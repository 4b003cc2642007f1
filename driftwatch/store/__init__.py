"""driftwatch's own database: the engine and migrations, the tables, the queries, the locks.

Nothing here knows a detector's internals or talks to the monitored vector store.
"""

from driftwatch.store.engine import (
    create_store_engine,
    current_revision,
    describe_error,
    downgrade,
    ensure_current,
    head_revision,
    upgrade,
)

__all__ = [
    "create_store_engine",
    "current_revision",
    "describe_error",
    "downgrade",
    "ensure_current",
    "head_revision",
    "upgrade",
]
