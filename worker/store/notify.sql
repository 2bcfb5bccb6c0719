-- Notifications: who a feed's notifications go to, deciding each once, and a feed
-- disabled after too many failed pulls in a row.

-- name: feed_target
-- A feed's own notification settings (NULL: the worker's).
SELECT f.id, f.name, f.enabled, f.notify_url, f.notify_secret, f.notify_rejected_share,
       f.disabled_reason
FROM inventory_feeds f
WHERE f.id = $1;

-- name: claim
-- The notification of key $1 is this caller's to send when it inserts the row; a replica
-- or a retry that finds it there sends nothing.
INSERT INTO notifications (key, inventory_feed_id, run_id, event)
VALUES ($1, $2, $3, $4)
ON CONFLICT (key) DO NOTHING
RETURNING id;

-- name: finish
-- How the delivery of notification $1 ended: $2 'sent' or 'failed', after $3 tries; $4 the
-- last error (no secret in it).
UPDATE notifications
SET status = $2, attempts = $3, error = $4,
    sent_at = CASE WHEN $2 = 'sent' THEN now() END
WHERE id = $1;

-- name: auto_disable
-- After failed pull run $1: its feed is disabled when its failed pulls in a row (since the
-- last pull that did not fail, and since it was last disabled) reach its auto_disable_after,
-- or $2 when that is NULL (0: never). Returns the reason stored, or no row.
WITH r AS (
    SELECT inventory_feed_id AS feed_id, error
    FROM feed_runs
    WHERE id = $1 AND kind = 'pull' AND status = 'failed'
), f AS (
    SELECT f.id, coalesce(f.auto_disable_after, $2::int) AS after, f.disabled_at
    FROM inventory_feeds f
    JOIN r ON r.feed_id = f.id
    WHERE f.enabled
    FOR NO KEY UPDATE OF f
), fails AS (
    SELECT count(*)::int AS n
    FROM feed_runs x, f
    WHERE x.inventory_feed_id = f.id AND x.kind = 'pull' AND x.status = 'failed'
      AND x.started_at > greatest(
          coalesce(f.disabled_at, '-infinity'),
          coalesce((SELECT max(o.started_at) FROM feed_runs o
                    WHERE o.inventory_feed_id = f.id AND o.kind = 'pull'
                      AND o.status NOT IN ('failed', 'running')), '-infinity'))
)
UPDATE inventory_feeds g
SET enabled = false, disabled_at = now(), updated_at = now(),
    disabled_reason = left(format('disabled after %s failed pulls in a row; last error: %s',
                                  fails.n, r.error), 2000)
FROM f, fails, r
WHERE g.id = f.id AND f.after > 0 AND fails.n >= f.after
RETURNING g.disabled_reason;

-- name: claim_stale
-- Feeds pulled on a schedule with no succeeded pull for twice their interval (since they
-- were created when none ever succeeded), that have somewhere to send to ($1: the worker
-- has a URL), at most $2: their 'feed.stale' notifications claimed, one per feed until it
-- next succeeds. Returns the feeds, with the last success and the interval in seconds.
WITH stale AS (
    SELECT f.id AS feed_id, ok.id AS ok_id, ok.finished_at AS ok_at,
           extract(epoch FROM s.every)::double precision AS every_s,
           format('stale-%s-%s', f.id, coalesce(ok.id, 0)) AS key
    FROM feed_schedule s
    JOIN inventory_feeds f ON f.id = s.inventory_feed_id
    LEFT JOIN LATERAL (
        SELECT r.id, r.finished_at FROM feed_runs r
        WHERE r.inventory_feed_id = f.id AND r.kind = 'pull' AND r.status = 'succeeded'
        ORDER BY r.finished_at DESC NULLS LAST
        LIMIT 1
    ) ok ON true
    WHERE s.state <> 'not scheduled'
      AND ($1::boolean OR f.notify_url IS NOT NULL)
      AND coalesce(ok.finished_at, f.created_at) < now() - 2 * s.every
), fresh AS (
    SELECT * FROM stale
    WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.key = stale.key)
    ORDER BY feed_id
    LIMIT $2
), claimed AS (
    INSERT INTO notifications (key, inventory_feed_id, event)
    SELECT key, feed_id, 'feed.stale' FROM fresh
    ON CONFLICT (key) DO NOTHING
    RETURNING id, key
)
SELECT c.id, fresh.feed_id, fresh.ok_id, fresh.ok_at, fresh.every_s
FROM claimed c JOIN fresh ON fresh.key = c.key;
