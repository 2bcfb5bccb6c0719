-- name: lock
SELECT pg_advisory_lock($1::int, 0);

-- name: unlock
SELECT pg_advisory_unlock($1::int, 0);

-- name: create_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied
SELECT version FROM schema_migrations;

-- name: record
INSERT INTO schema_migrations (version, name) VALUES ($1, $2);
