"""The monitored PostgreSQL + pgvector store: the only package that reads it."""
