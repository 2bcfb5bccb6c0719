-- Figures for the metrics: read now and then by the daemon, never on a run's path.

-- name: count_stale_feeds
-- Scheduled feeds (feed_schedule's state is not 'not scheduled') whose last pull that
-- succeeded, or found the file unchanged (skipped), is older than twice their interval; a
-- feed that never had one counts from its creation.
SELECT count(*)::int
FROM feed_schedule s
JOIN inventory_feeds f ON f.id = s.inventory_feed_id
WHERE s.state <> 'not scheduled'
  AND coalesce((SELECT max(coalesce(r.finished_at, r.started_at)) FROM feed_runs r
                WHERE r.inventory_feed_id = f.id AND r.kind = 'pull'
                  AND r.status IN ('succeeded', 'skipped')),
               f.created_at) < now() - 2 * s.every;
