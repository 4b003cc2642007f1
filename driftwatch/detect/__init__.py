"""The statistics: pure numpy and scipy. Nothing in this package opens a connection, reads a
file or imports a database driver; `tests/test_layout.py` holds it to that."""
