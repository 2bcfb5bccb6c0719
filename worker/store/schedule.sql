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
-- the feeds stay due. Which feeds are due, and when they fell due, is the view
-- feed_schedule's (schemas/sql/0008_schedule.sql): a feed pulled on a schedule that neither
-- the scheduler nor a pull touched for its interval (longer while its pulls keep failing);
-- however many slots a downtime missed, it is queued once. `due_at` stays the same until
-- the feed is queued, so a pull-request published again after a failed commit carries the
-- same message id.
WITH due AS (
    SELECT f.id, s.next_pull_at AS due_at
    FROM inventory_feeds f
    JOIN feed_schedule s ON s.inventory_feed_id = f.id
    WHERE s.state = 'due'
    ORDER BY f.id
    LIMIT $1
    FOR NO KEY UPDATE OF f SKIP LOCKED
)
UPDATE inventory_feeds f SET last_scheduled_at = now()
FROM due
WHERE f.id = due.id
RETURNING f.id, due.due_at;
