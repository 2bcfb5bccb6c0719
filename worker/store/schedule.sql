-- Schedules: the leader lock, and queuing the pulls of feeds that are due.

-- name: try_lead
-- Session-level: held until unlocked or until the session ends (the replica died).
SELECT pg_try_advisory_lock($1::int, 0);

-- name: unlock
SELECT pg_advisory_unlock($1::int, 0);

-- name: name_session
-- Shown in pg_stat_activity, so that an operator sees which replica leads.
SELECT set_config('application_name', $1, false);

-- name: claim_due
-- At most $1 due feeds, marked queued (last_scheduled_at = now()) and locked until the
-- transaction ends: it commits once their pull-requests are confirmed, or rolls back and
-- the feeds stay due. A feed is due when it is pulled on a schedule and neither the
-- scheduler nor a pull touched it for its interval; however many slots a downtime missed,
-- it is queued once. `due_at` (when it fell due) stays the same until the feed is queued,
-- so a pull-request published again after a failed commit carries the same message id.
WITH due AS (
    SELECT f.id,
           coalesce(greatest(f.last_scheduled_at, last_pull.started_at) + every.i,
                    f.created_at) AS due_at
    FROM inventory_feeds f
    JOIN dropship_providers p ON p.id = f.dropship_provider_id
    CROSS JOIN LATERAL (
        SELECT CASE f.fetch_frequency
                   WHEN 'hourly' THEN interval '1 hour'
                   WHEN 'daily' THEN interval '1 day'
                   WHEN 'custom' THEN f.fetch_interval
               END AS i
    ) every
    LEFT JOIN LATERAL (
        SELECT r.started_at FROM feed_runs r
        WHERE r.inventory_feed_id = f.id AND r.kind = 'pull'
        ORDER BY r.started_at DESC
        LIMIT 1
    ) last_pull ON true
    WHERE f.enabled
      AND NOT p.archived
      AND f.automated_fetching = 'enabled'
      AND f.resource_type <> 'webhook'
      AND f.resource_location IS NOT NULL
      AND every.i > interval '0'
      AND coalesce(greatest(f.last_scheduled_at, last_pull.started_at) + every.i
                   <= now(), true)
      AND NOT EXISTS (
          SELECT 1 FROM feed_runs r
          WHERE r.inventory_feed_id = f.id AND r.kind = 'pull' AND r.status = 'running')
    ORDER BY f.id
    LIMIT $1
    FOR NO KEY UPDATE OF f SKIP LOCKED
)
UPDATE inventory_feeds f SET last_scheduled_at = now()
FROM due
WHERE f.id = due.id
RETURNING f.id, due.due_at;
