-- Each scheduled feed's state: when its next pull is due and why. A feed whose pulls keep
-- failing backs off: after the second failure in a row its interval doubles with each
-- failure, up to a day (or its interval, when that is longer). The scheduler queues the
-- feeds this view calls 'due'; operators read the rest:
--   SELECT * FROM feed_schedule WHERE state = 'backing off';
CREATE VIEW feed_schedule AS
SELECT f.id AS inventory_feed_id,
       every.i AS every,
       last_pull.started_at AS last_pull_at,
       last_pull.status AS last_pull_status,
       fails.n AS consecutive_failures,
       fails.last_error,
       wait.w AS wait,
       coalesce(greatest(f.last_scheduled_at, last_pull.started_at) + wait.w, f.created_at)
           AS next_pull_at,
       CASE
           WHEN NOT (f.enabled AND NOT p.archived AND f.automated_fetching = 'enabled'
                     AND f.resource_type <> 'webhook' AND f.resource_location IS NOT NULL
                     AND coalesce(every.i > interval '0', false)) THEN 'not scheduled'
           WHEN EXISTS (SELECT 1 FROM feed_runs r
                        WHERE r.inventory_feed_id = f.id AND r.kind = 'pull'
                          AND r.status = 'running') THEN 'running'
           WHEN coalesce(greatest(f.last_scheduled_at, last_pull.started_at) + wait.w
                         <= now(), true) THEN 'due'
           WHEN fails.n > 1 THEN 'backing off'
           ELSE 'waiting'
       END AS state,
       CASE WHEN fails.n > 1
            THEN format('%s failed pulls in a row: waits %s instead of %s; last error: %s',
                        fails.n, wait.w, every.i, fails.last_error)
       END AS why
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
    SELECT r.started_at, r.status FROM feed_runs r
    WHERE r.inventory_feed_id = f.id AND r.kind = 'pull'
    ORDER BY r.started_at DESC
    LIMIT 1
) last_pull ON true
CROSS JOIN LATERAL (
    -- the failed pulls since the last one that was not a failure
    SELECT count(*)::int AS n, (array_agg(r.error ORDER BY r.started_at DESC))[1] AS last_error
    FROM feed_runs r
    WHERE r.inventory_feed_id = f.id AND r.kind = 'pull' AND r.status = 'failed'
      AND r.started_at > coalesce((
          SELECT max(o.started_at) FROM feed_runs o
          WHERE o.inventory_feed_id = f.id AND o.kind = 'pull'
            AND o.status NOT IN ('failed', 'running')), '-infinity')
) fails
CROSS JOIN LATERAL (
    SELECT CASE WHEN fails.n > 1
                THEN least(every.i * 2 ^ (least(fails.n, 30) - 1),
                           greatest(every.i, interval '1 day'))
                ELSE every.i
           END AS w
) wait;
