-- Connections and databases.

-- name: ping
-- Answers when the server does: readiness probes and `feed-worker check`.
SELECT 1;

-- name: quote_ident
-- The database name ($1) quoted as an identifier, for CREATE DATABASE (which takes no
-- parameters).
SELECT quote_ident($1);

-- name: citus
-- Whether the database is a Citus coordinator's (the store's `__citus` query variants).
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus');

-- name: custom_plans
-- A Citus connection: each statement planned for its parameters, and a transaction's SET
-- LOCAL sent on to the workers (merge_settings__citus).
SET plan_cache_mode = force_custom_plan;
SET citus.propagate_set_commands = 'local';
