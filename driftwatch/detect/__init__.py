"""The statistics: pure numpy and scipy. Nothing in this package opens a connection, reads a
file or imports a database driver; tests/test_layout.py holds it to that.

Importing the package registers the built-in detectors (`catalog`) in `registry.REGISTRY`.
"""

from driftwatch.detect import catalog as _catalog  # noqa: F401  (registers the built-ins)
