-- Connections and databases.

-- name: ping
-- Answers when the server does: readiness probes and `feed-worker check`.
SELECT 1;

-- name: quote_ident
-- The database name ($1) quoted as an identifier, for CREATE DATABASE (which takes no
-- parameters).
SELECT quote_ident($1);
