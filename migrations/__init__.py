"""Alembic migrations for driftwatch's own store (shipped as `driftwatch.migrations`)."""
