-- Push micro-batches: remembered message ids, staging, one merge for every feed of a group.

-- name: remember_messages
-- The ids not seen before (now remembered, in this transaction); the others are repeats.
INSERT INTO processed_messages (message_id)
SELECT DISTINCT unnest($1::text[])
ON CONFLICT DO NOTHING
RETURNING message_id;

-- name: forget_messages
-- Retention: remembered ids older than $1 seconds, a bounded slice at a time.
DELETE FROM processed_messages
WHERE message_id IN (
    SELECT message_id FROM processed_messages
    WHERE processed_at < now() - make_interval(secs => $1)
    LIMIT $2
);

-- name: load_feeds
SELECT f.id, f.enabled, p.archived AS provider_archived, p.id AS provider_id,
       p.daily_sku_limit, f.mapping, f.resource_type, f.csv_has_header
FROM inventory_feeds f
JOIN dropship_providers p ON p.id = f.dropship_provider_id
WHERE f.id = ANY($1::bigint[]);

-- name: create_staging
-- One row per item of the group (folded in Python); `present` has a bit per column that
-- the update carries (see worker/mapping.py COLUMN_BIT). Blank = NULL.
CREATE TEMP TABLE IF NOT EXISTS push_staging (
    inventory_feed_id    bigint NOT NULL,
    external_id          text COLLATE "C" NOT NULL,
    present              integer NOT NULL,
    vendor_sku           text,
    barcode              text,
    name                 text,
    inventory_quantity   integer,
    inventory_policy     text,
    retail_price         numeric,
    cost_price           numeric,
    compare_at_price     numeric,
    grams                numeric,
    mpn                  text,
    external_group_id    text,
    options              jsonb,
    images               jsonb,
    extra                jsonb,
    currency             text,
    inventory_updated_at timestamptz,
    ordered_at           timestamptz
) ON COMMIT DELETE ROWS;  -- made once per connection: no catalog churn per batch

-- name: merge_settings
-- No JIT for the merge: compiling its expressions costs more than it saves (as for pulls).
SELECT set_config('jit', 'off', true);

-- name: merge
-- Insert new items, update changed ones, leave the rest unwritten; an update whose order
-- time is older than the item's (ordered_at; for items written before it existed, the
-- stored inventory_updated_at) is stale and skipped. An unchanged update with a newer order
-- time writes only that time, so that an older one arriving later is still stale.
-- Counts per feed.
-- $1 feed ids and $2 their push runs (history and held items are recorded against them);
-- $3 record quantity/price changes; $4 providers with a daily SKU limit and $5 the items
-- each may still write today ($6, the UTC day). A manual quantity override wins over the
-- update; new or re-keyed items connect to the store's variants (connect.sql).
-- include: push_merge.sql:body
-- The writes run whether or not they are read; their counts follow from the CTEs.
SELECT j.inventory_feed_id AS feed_id,
       count(*) AS distinct_rows,
       (SELECT count(*) FROM todo t WHERE t.inventory_feed_id = j.inventory_feed_id
            AND t.target_id IS NULL) AS inserted,
       (SELECT count(*) FROM todo t WHERE t.inventory_feed_id = j.inventory_feed_id
            AND t.target_id IS NOT NULL AND t.changed) AS updated,
       count(*) FILTER (WHERE j.changed AND j.stale) AS stale,
       (SELECT count(*) FROM held h WHERE h.inventory_feed_id = j.inventory_feed_id) AS held,
       (SELECT count(*) FROM links l WHERE l.inventory_feed_id = j.inventory_feed_id
            AND l.unique_match AND NOT EXISTS (
                SELECT 1 FROM held h WHERE h.inventory_feed_id = l.inventory_feed_id
                                       AND h.external_id = l.external_id)) AS connected,
       (SELECT count(*) FROM links l WHERE l.inventory_feed_id = j.inventory_feed_id
            AND NOT l.unique_match) AS ambiguous
FROM joined j
GROUP BY j.inventory_feed_id;

-- name: merge__citus
-- As merge; Citus plans no correlated subquery beside CTEs: the counts per feed are
-- grouped first and joined.
-- include: push_merge.sql:body
, todo_counts AS (
    SELECT inventory_feed_id, count(*) FILTER (WHERE target_id IS NULL) AS inserted,
           count(*) FILTER (WHERE target_id IS NOT NULL AND changed) AS updated
    FROM todo GROUP BY inventory_feed_id
), held_counts AS (
    SELECT inventory_feed_id, count(*) AS held FROM held GROUP BY inventory_feed_id
), link_counts AS (
    SELECT l.inventory_feed_id,
           count(*) FILTER (WHERE l.unique_match AND h.external_id IS NULL) AS connected,
           count(*) FILTER (WHERE NOT l.unique_match) AS ambiguous
    FROM links l
    LEFT JOIN held h ON h.inventory_feed_id = l.inventory_feed_id
                    AND h.external_id = l.external_id
    GROUP BY l.inventory_feed_id
), joined_counts AS (
    SELECT inventory_feed_id, count(*) AS distinct_rows,
           count(*) FILTER (WHERE changed AND stale) AS stale
    FROM joined GROUP BY inventory_feed_id
)
SELECT j.inventory_feed_id AS feed_id, j.distinct_rows,
       coalesce(t.inserted, 0) AS inserted, coalesce(t.updated, 0) AS updated, j.stale,
       coalesce(h.held, 0) AS held, coalesce(l.connected, 0) AS connected,
       coalesce(l.ambiguous, 0) AS ambiguous
FROM joined_counts j
LEFT JOIN todo_counts t ON t.inventory_feed_id = j.inventory_feed_id
LEFT JOIN held_counts h ON h.inventory_feed_id = j.inventory_feed_id
LEFT JOIN link_counts l ON l.inventory_feed_id = j.inventory_feed_id;

-- name: merge_items
-- The merge (as `merge`), its outcome per item: `inserted`, `updated`, `unchanged`,
-- `stale` (an older update of a changed item), `held` (the daily SKU limit); whether it
-- connected to a store variant or matched several. The caller sums them per feed.
-- include: push_merge.sql:body
SELECT j.inventory_feed_id AS feed_id, j.external_id,
       CASE WHEN h.external_id IS NOT NULL THEN 'held'
            WHEN j.target_id IS NULL THEN 'inserted'
            WHEN j.changed AND j.stale THEN 'stale'
            WHEN j.changed THEN 'updated'
            ELSE 'unchanged' END AS outcome,
       coalesce(l.unique_match AND h.external_id IS NULL, false) AS connected,
       coalesce(NOT l.unique_match, false) AS ambiguous
FROM joined j
LEFT JOIN held h ON h.inventory_feed_id = j.inventory_feed_id AND h.external_id = j.external_id
LEFT JOIN links l ON l.inventory_feed_id = j.inventory_feed_id AND l.external_id = j.external_id;

-- name: stored_items
-- Items as the HTTP API shows them, by key ($1 feed ids, $2 external ids, pairwise): read
-- in the merge's transaction, after it.
SELECT v.id, v.inventory_feed_id, v.external_id, v.vendor_sku, v.barcode, v.name,
       v.inventory_quantity, v.inventory_policy, v.retail_price, v.cost_price,
       v.compare_at_price, v.grams, v.mpn, v.external_group_id, v.options, v.images, v.extra,
       v.currency, v.variant_id, v.inventory_updated_at, v.inventory_quantity_override,
       v.missing_since, v.available, v.last_fetched_at, v.created_at, v.updated_at
FROM unnest($1::bigint[], $2::text[]) AS k (inventory_feed_id, external_id)
JOIN inventory_feed_variants v
    ON v.inventory_feed_id = k.inventory_feed_id AND v.external_id = k.external_id;


-- name: open_push_runs
-- Takes the merge lock of each feed $1 (lock class $2; in id order, as every writer: no
-- deadlocks), then opens the feed's push run of this minute when missing; their ids.
WITH locked AS MATERIALIZED (
    SELECT f, pg_advisory_xact_lock($2::int, (f % 2147483648)::int)
    FROM unnest($1::bigint[]) AS f
    ORDER BY f
)
INSERT INTO feed_runs (inventory_feed_id, kind, status, started_at, finished_at, details)
SELECT f, 'push', 'succeeded', date_trunc('minute', now()), clock_timestamp(),
       jsonb_build_object('batches', 0, 'messages', 0, 'stale', 0)
FROM locked
ON CONFLICT (inventory_feed_id, started_at) WHERE kind = 'push' DO UPDATE SET
    finished_at = excluded.finished_at
RETURNING inventory_feed_id, id;

-- name: record_push_run
-- Adds one micro-batch's figures to the feed's push run of this minute (open_push_runs).
UPDATE feed_runs SET
    finished_at = clock_timestamp(),
    rows_read = rows_read + $2, inserted = inserted + $3, updated = updated + $4,
    unchanged = unchanged + $5, rejected = rejected + $6, duplicates = duplicates + $7,
    connected = connected + $10, ambiguous = ambiguous + $11, skipped = skipped + $12,
    details = jsonb_build_object(
        'batches', coalesce((details ->> 'batches')::int, 0) + 1,
        'messages', coalesce((details ->> 'messages')::int, 0) + $8::int,
        'stale', coalesce((details ->> 'stale')::int, 0) + $9::int)
    -- what each value rule changed or rejected, summed over the batches ($13: {rule: n})
    || jsonb_strip_nulls(jsonb_build_object('rules', (
        SELECT jsonb_object_agg(k, coalesce((details #>> ARRAY['rules', k])::bigint, 0)
                                   + coalesce(($13::jsonb ->> k)::bigint, 0))
        FROM jsonb_object_keys(coalesce(details -> 'rules', '{}') || $13::jsonb) AS k)))
WHERE id = $1;

-- name: record_push_run__citus
-- As record_push_run; Citus calls no STABLE function on a column in an UPDATE (jsonb's
-- are): the new details are read first, in a CTE.
WITH n AS MATERIALIZED (
    SELECT id, jsonb_build_object(
        'batches', coalesce((details ->> 'batches')::int, 0) + 1,
        'messages', coalesce((details ->> 'messages')::int, 0) + $8::int,
        'stale', coalesce((details ->> 'stale')::int, 0) + $9::int)
    || jsonb_strip_nulls(jsonb_build_object('rules', (
        SELECT jsonb_object_agg(k, coalesce((details #>> ARRAY['rules', k])::bigint, 0)
                                   + coalesce(($13::jsonb ->> k)::bigint, 0))
        FROM jsonb_object_keys(coalesce(details -> 'rules', '{}') || $13::jsonb) AS k)))
        AS details
    FROM feed_runs WHERE id = $1
)
UPDATE feed_runs r SET
    finished_at = clock_timestamp(),
    rows_read = rows_read + $2, inserted = inserted + $3, updated = updated + $4,
    unchanged = unchanged + $5, rejected = rejected + $6, duplicates = duplicates + $7,
    connected = connected + $10, ambiguous = ambiguous + $11, skipped = skipped + $12,
    details = n.details
FROM n WHERE r.id = n.id;

-- name: order_times
-- The stored order time of items ($1 feed ids, $2 external ids, pairwise).
SELECT t.inventory_feed_id, t.external_id, t.ordered_at
FROM unnest($1::bigint[], $2::text[]) AS k (inventory_feed_id, external_id)
JOIN inventory_feed_variants t
    ON t.inventory_feed_id = k.inventory_feed_id AND t.external_id = k.external_id;

-- name: record_replay_outcome
-- What a replayed message came to (see replay_outcomes in schemas/sql/0005_ordering.sql).
INSERT INTO replay_outcomes (replay_id, message_id, outcome, variants, applied, stale,
                             rejected, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (replay_id, message_id) DO UPDATE SET
    outcome = excluded.outcome, variants = excluded.variants, applied = excluded.applied,
    stale = excluded.stale, rejected = excluded.rejected, reason = excluded.reason,
    recorded_at = now()
-- A redelivery found already applied keeps the outcome (and counts) of when it was.
WHERE excluded.outcome <> 'repeat';
