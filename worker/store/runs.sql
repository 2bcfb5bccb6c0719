-- Run records: claiming a pull with a lease, renewing it, finishing it.

-- name: load_feed
-- include: runs.sql:feed_row

-- name: load_feed_claiming
-- load_feed's row, with the run pull-request message $2 made (seen_run; NULL: none):
-- claiming a pull reads both in one round trip.
SELECT l.*, (SELECT id FROM feed_runs WHERE kind = 'pull' AND message_id = $2) AS seen_run
FROM (
-- include: runs.sql:feed_row
) l

-- name: feed_row
-- A feed with its provider's settings (model.Feed's fields), feed $1.
SELECT f.id, f.name, f.enabled, f.resource_type, f.resource_location, f.delimiter,
       f.csv_has_header, f.decimal_notation, f.encoding, f.mapping, f.cache_imports,
       f.authentication_token, f.fetch_cleanup,
       f.automatically_connect, f.automatically_connect_by_barcode,
       f.automatically_connect_prefix, f.case_insensitive_skus,
       f.breaker_max_zeroed_share, f.breaker_max_quantity_drop, f.breaker_max_rows_drop,
       f.breaker_max_bytes_drop,
       f.download_deadline_s, f.run_deadline_s,
       p.archived AS provider_archived, p.id AS provider_id, p.daily_sku_limit,
       nullif(btrim(p.sku_prefix), '') AS sku_prefix
FROM inventory_feeds f
JOIN dropship_providers p ON p.id = f.dropship_provider_id
WHERE f.id = $1

-- name: run_by_message
SELECT id, status FROM feed_runs WHERE kind = 'pull' AND message_id = $1;

-- name: running_pull
SELECT id, owner, lease_expires_at FROM feed_runs
WHERE kind = 'pull' AND status = 'running' AND inventory_feed_id = $1;

-- name: claim_pull
-- $1 feed, $2 message id, $3 owner, $4 lease seconds, $5 masked source URL, $6 forced.
-- No row when a pull of the feed is already running (or this message made a run: the
-- unique indexes of feed_runs). With the new run's id, the feed's last succeeded pull (as
-- last_succeeded_pull; its id NULL when there is none): while this run is running, no
-- other pull of the feed can succeed, so it stands until the run's breaker reads it.
WITH last AS MATERIALIZED (
    SELECT id, rows_read, bytes, details ->> 'compression' AS compression FROM feed_runs
    WHERE inventory_feed_id = $1 AND kind = 'pull' AND status = 'succeeded'
    ORDER BY id DESC LIMIT 1
)
INSERT INTO feed_runs (inventory_feed_id, kind, status, message_id, owner, lease_expires_at,
                       source, details)
VALUES ($1, 'pull', 'running', $2, $3, now() + make_interval(secs => $4), $5,
        CASE WHEN $6::boolean THEN '{"force": true}'::jsonb ELSE '{}'::jsonb END)
ON CONFLICT DO NOTHING
RETURNING id, (SELECT id FROM last) AS last_id, (SELECT rows_read FROM last) AS last_rows,
          (SELECT bytes FROM last) AS last_bytes,
          (SELECT compression FROM last) AS last_compression;

-- name: claim_pull__citus
-- As claim_pull; Citus plans no subquery in an INSERT's RETURNING: the insert is a CTE
-- joined with the last succeeded pull (one shard: the feed's).
WITH last AS MATERIALIZED (
    SELECT id, rows_read, bytes, details ->> 'compression' AS compression FROM feed_runs
    WHERE inventory_feed_id = $1 AND kind = 'pull' AND status = 'succeeded'
    ORDER BY id DESC LIMIT 1
), claimed AS (
    INSERT INTO feed_runs (inventory_feed_id, kind, status, message_id, owner,
                           lease_expires_at, source, details)
    VALUES ($1, 'pull', 'running', $2, $3, now() + make_interval(secs => $4), $5,
            CASE WHEN $6::boolean THEN '{"force": true}'::jsonb ELSE '{}'::jsonb END)
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT c.id, l.id AS last_id, l.rows_read AS last_rows, l.bytes AS last_bytes,
       l.compression AS last_compression
FROM claimed c LEFT JOIN last l ON true;

-- name: record_skipped
INSERT INTO feed_runs (inventory_feed_id, kind, status, message_id, finished_at, error)
VALUES ($1, 'pull', 'skipped', $2, now(), $3)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: record_attempts
UPDATE feed_runs SET details = details || jsonb_build_object('attempts', $3::jsonb)
WHERE id = $1 AND owner = $2 AND status = 'running';

-- name: renew_lease
UPDATE feed_runs SET lease_expires_at = now() + make_interval(secs => $3)
WHERE id = $1 AND owner = $2 AND status = 'running'
RETURNING id;

-- name: release_lease
-- Hand a run back (shutdown): any replica may take it over at once.
UPDATE feed_runs SET lease_expires_at = now(), owner = NULL
WHERE id = $1 AND owner = $2 AND status = 'running';

-- name: take_over
-- One run whose owner stopped renewing its lease, claimed for $1.
UPDATE feed_runs r SET owner = $1, lease_expires_at = now() + make_interval(secs => $2),
                       attempts = r.attempts + 1, started_at = now()
WHERE r.id = (
    SELECT id FROM feed_runs
    WHERE status = 'running' AND kind = 'pull' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING r.id, r.inventory_feed_id, r.attempts, r.message_id,
          coalesce((r.details ->> 'force')::boolean, false) AS force;

-- name: finish_run
-- The run's end, in its writing transaction, only while the run is still ours ($17 owner):
-- no row when another replica took it over (the transaction then rolls back).
UPDATE feed_runs SET
    status = $2, finished_at = clock_timestamp(), owner = NULL, lease_expires_at = NULL,
    rows_read = $3, inserted = $4, updated = $5, unchanged = $6, rejected = $7,
    duplicates = $8, bytes = $9, timings = $10::jsonb, details = $11::jsonb, error = $12,
    zeroed = $13, connected = $14, ambiguous = $15, skipped = $16
WHERE id = $1 AND owner = $17 AND status = 'running'
RETURNING started_at, finished_at;

-- name: hold_run
-- The circuit breaker held the run: its writes rolled back; what they would have been is
-- kept with the reason. Only while the run is still ours.
UPDATE feed_runs SET
    status = 'held', finished_at = clock_timestamp(), owner = NULL, lease_expires_at = NULL,
    rows_read = $3, inserted = $4, updated = $5, unchanged = $6, rejected = $7,
    duplicates = $8, bytes = $9, timings = $10::jsonb, details = $11::jsonb, error = $12,
    zeroed = $13, connected = $14, ambiguous = $15, skipped = $16
WHERE id = $1 AND owner = $2 AND status = 'running'
RETURNING id;

-- name: fail_run
-- Outside the run's transaction (which rolled back); only while the run is still ours.
UPDATE feed_runs SET
    status = 'failed', finished_at = clock_timestamp(), owner = NULL, lease_expires_at = NULL,
    rows_read = $3, rejected = $4, bytes = $5, timings = $6::jsonb, details = $7::jsonb,
    error = $8
WHERE id = $1 AND (owner = $2 OR $2 IS NULL) AND status = 'running'
RETURNING id;

-- name: get_run
SELECT * FROM feed_runs WHERE id = $1;

-- name: last_validators
-- What the last succeeded pull of the feed saw of its file (ETag, Last-Modified, size, mtime).
SELECT id, details -> 'validators' AS validators FROM feed_runs
WHERE inventory_feed_id = $1 AND kind = 'pull' AND status = 'succeeded'
  AND details ? 'validators'
ORDER BY id DESC LIMIT 1;

-- name: last_succeeded_pull
-- What the feed's last succeeded pull read (the breaker's rows and bytes rules compare
-- against it): failed, held and skipped runs do not count. `compression` as detected then.
SELECT id, rows_read, bytes, details ->> 'compression' AS compression FROM feed_runs
WHERE inventory_feed_id = $1 AND kind = 'pull' AND status = 'succeeded'
ORDER BY id DESC LIMIT 1;

-- name: skip_run
UPDATE feed_runs SET
    status = 'skipped', finished_at = clock_timestamp(), owner = NULL, lease_expires_at = NULL,
    bytes = $3, timings = $4::jsonb, details = $5::jsonb, error = $6
WHERE id = $1 AND owner = $2 AND status = 'running'
RETURNING id;

-- name: run_feed
SELECT inventory_feed_id FROM feed_runs WHERE id = $1;

-- name: held_items
-- The items run $1 held back by the daily SKU limit, as feed-update variants, in order.
SELECT raw FROM feed_run_rejects
WHERE run_id = $1 AND reason = 'daily limit'
ORDER BY position, id;
