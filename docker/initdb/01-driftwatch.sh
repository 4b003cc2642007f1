#!/bin/bash
# Runs once, when the db volume is first created: the application's tables, a read-only
# role for driftwatch's sampling, and driftwatch's own database.
set -euo pipefail
# The password goes in as a psql variable, quoted by psql (:'pw'), so any character is safe.
psql -v ON_ERROR_STOP=1 -v pw="$DRIFTWATCH_PASSWORD" --username "$POSTGRES_USER" <<'SQL'
CREATE ROLE driftwatch_ro LOGIN PASSWORD :'pw';
CREATE ROLE driftwatch LOGIN PASSWORD :'pw';
CREATE DATABASE app;
CREATE DATABASE driftwatch OWNER driftwatch;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname app <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE documents (
  id bigint PRIMARY KEY,
  embedding vector(384),
  model_version text,
  content text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON documents USING hnsw (embedding vector_cosine_ops);
-- The query-log contract (`driftwatch querylog ddl` prints the same).
CREATE TABLE query_log (
  ts timestamptz NOT NULL DEFAULT now(),
  query_id text NOT NULL,
  query_text text,
  query_embedding vector(384),
  model_version text,
  result_ids text[] NOT NULL,
  result_scores real[] NOT NULL,
  clicked_ids text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX ON query_log (ts);
-- Least privilege: driftwatch only ever reads these two tables.
GRANT CONNECT ON DATABASE app TO driftwatch_ro;
GRANT USAGE ON SCHEMA public TO driftwatch_ro;
GRANT SELECT ON documents, query_log TO driftwatch_ro;
ALTER ROLE driftwatch_ro SET default_transaction_read_only = on;
SQL
