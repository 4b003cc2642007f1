"""driftwatch: drift monitoring for embedding retrieval on PostgreSQL + pgvector."""

from driftwatch.config import Settings, load_config
from driftwatch.errors import ConfigError, DriftwatchError, StoreError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DriftwatchError",
    "Settings",
    "StoreError",
    "__version__",
    "load_config",
]
