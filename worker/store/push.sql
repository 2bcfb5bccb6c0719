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
SELECT f.id, f.enabled, p.archived AS provider_archived
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
    inventory_updated_at timestamptz
) ON COMMIT DELETE ROWS;  -- made once per connection: no catalog churn per batch

-- name: merge
-- Insert new items, update changed ones, leave the rest unwritten; an update older than
-- the stored inventory_updated_at is stale and skipped. Counts per feed.
WITH joined AS MATERIALIZED (
    SELECT s.*, t.id AS target_id,
        coalesce(s.inventory_updated_at < t.inventory_updated_at, false) AS stale,
        t.id IS NOT NULL AND ((
            CASE WHEN s.present & 1 <> 0 THEN s.vendor_sku ELSE t.vendor_sku END,
            CASE WHEN s.present & 2 <> 0 THEN s.barcode ELSE t.barcode END,
            CASE WHEN s.present & 4 <> 0 THEN s.name ELSE t.name END,
            CASE WHEN s.present & 8 <> 0 THEN s.inventory_quantity ELSE t.inventory_quantity END,
            CASE WHEN s.present & 16 <> 0 THEN coalesce(s.inventory_policy, 'track')
                 ELSE t.inventory_policy END,
            CASE WHEN s.present & 32 <> 0 THEN s.retail_price ELSE t.retail_price END,
            CASE WHEN s.present & 64 <> 0 THEN s.cost_price ELSE t.cost_price END,
            CASE WHEN s.present & 128 <> 0 THEN s.compare_at_price ELSE t.compare_at_price END,
            CASE WHEN s.present & 256 <> 0 THEN coalesce(s.grams, 0) ELSE t.grams END,
            CASE WHEN s.present & 512 <> 0 THEN s.mpn ELSE t.mpn END,
            CASE WHEN s.present & 1024 <> 0 THEN s.external_group_id ELSE t.external_group_id END,
            CASE WHEN s.present & 2048 <> 0 THEN coalesce(s.options, '[]') ELSE t.options END,
            CASE WHEN s.present & 4096 <> 0 THEN coalesce(s.images, '[]') ELSE t.images END,
            CASE WHEN s.present & 8192 <> 0 THEN t.extra || coalesce(s.extra, '{}')
                 ELSE t.extra END,
            CASE WHEN s.present & 16384 <> 0 THEN s.currency ELSE t.currency END
        ) IS DISTINCT FROM (
            t.vendor_sku, t.barcode, t.name, t.inventory_quantity, t.inventory_policy,
            t.retail_price, t.cost_price, t.compare_at_price, t.grams, t.mpn,
            t.external_group_id, t.options, t.images, t.extra, t.currency
        -- A newer time alone is written too, so that an older update arriving later
        -- is still recognised as stale.
        ) OR coalesce(s.inventory_updated_at > t.inventory_updated_at, false)) AS changed
    FROM push_staging s
    LEFT JOIN inventory_feed_variants t
        ON t.inventory_feed_id = s.inventory_feed_id AND t.external_id = s.external_id
), ins AS (
    INSERT INTO inventory_feed_variants (
        inventory_feed_id, external_id, vendor_sku, barcode, name, inventory_quantity,
        inventory_policy, retail_price, cost_price, compare_at_price, grams, mpn,
        external_group_id, options, images, extra, currency, inventory_updated_at)
    SELECT inventory_feed_id, external_id, vendor_sku, barcode, name, inventory_quantity,
           coalesce(inventory_policy, 'track'), retail_price, cost_price, compare_at_price,
           coalesce(grams, 0), mpn, external_group_id, coalesce(options, '[]'),
           coalesce(images, '[]'), coalesce(extra, '{}'), currency,
           coalesce(inventory_updated_at, now())
    FROM joined
    WHERE target_id IS NULL
    ORDER BY inventory_feed_id, external_id
), upd AS (
    UPDATE inventory_feed_variants t SET
        vendor_sku = CASE WHEN j.present & 1 <> 0 THEN j.vendor_sku ELSE t.vendor_sku END,
        barcode = CASE WHEN j.present & 2 <> 0 THEN j.barcode ELSE t.barcode END,
        name = CASE WHEN j.present & 4 <> 0 THEN j.name ELSE t.name END,
        inventory_quantity = CASE WHEN j.present & 8 <> 0 THEN j.inventory_quantity
                                  ELSE t.inventory_quantity END,
        inventory_policy = CASE WHEN j.present & 16 <> 0 THEN coalesce(j.inventory_policy, 'track')
                                ELSE t.inventory_policy END,
        retail_price = CASE WHEN j.present & 32 <> 0 THEN j.retail_price ELSE t.retail_price END,
        cost_price = CASE WHEN j.present & 64 <> 0 THEN j.cost_price ELSE t.cost_price END,
        compare_at_price = CASE WHEN j.present & 128 <> 0 THEN j.compare_at_price
                                ELSE t.compare_at_price END,
        grams = CASE WHEN j.present & 256 <> 0 THEN coalesce(j.grams, 0) ELSE t.grams END,
        mpn = CASE WHEN j.present & 512 <> 0 THEN j.mpn ELSE t.mpn END,
        external_group_id = CASE WHEN j.present & 1024 <> 0 THEN j.external_group_id
                                 ELSE t.external_group_id END,
        options = CASE WHEN j.present & 2048 <> 0 THEN coalesce(j.options, '[]') ELSE t.options END,
        images = CASE WHEN j.present & 4096 <> 0 THEN coalesce(j.images, '[]') ELSE t.images END,
        extra = CASE WHEN j.present & 8192 <> 0 THEN t.extra || coalesce(j.extra, '{}')
                     ELSE t.extra END,
        currency = CASE WHEN j.present & 16384 <> 0 THEN j.currency ELSE t.currency END,
        inventory_updated_at = coalesce(
            j.inventory_updated_at,
            CASE WHEN j.present & 8 <> 0
                      AND j.inventory_quantity IS DISTINCT FROM t.inventory_quantity
                 THEN now() ELSE t.inventory_updated_at END),
        updated_at = now()
    FROM joined j
    WHERE t.id = j.target_id AND j.changed AND NOT j.stale
)
-- The writes run whether or not they are read; their counts follow from `joined`.
SELECT inventory_feed_id AS feed_id,
       count(*) AS distinct_rows,
       count(*) FILTER (WHERE target_id IS NULL) AS inserted,
       count(*) FILTER (WHERE changed AND NOT stale) AS updated,
       count(*) FILTER (WHERE changed AND stale) AS stale
FROM joined
GROUP BY inventory_feed_id;

-- name: record_push_run
-- The feed's push run of this minute, created or added to; its id for the rejects.
INSERT INTO feed_runs (inventory_feed_id, kind, status, started_at, finished_at, rows_read,
                       inserted, updated, unchanged, rejected, duplicates, details)
VALUES ($1, 'push', 'succeeded', date_trunc('minute', now()), clock_timestamp(), $2, $3, $4,
        $5, $6, $7, jsonb_build_object('batches', 1, 'messages', $8::int, 'stale', $9::int))
ON CONFLICT (inventory_feed_id, started_at) WHERE kind = 'push' DO UPDATE SET
    finished_at = excluded.finished_at,
    rows_read = feed_runs.rows_read + excluded.rows_read,
    inserted = feed_runs.inserted + excluded.inserted,
    updated = feed_runs.updated + excluded.updated,
    unchanged = feed_runs.unchanged + excluded.unchanged,
    rejected = feed_runs.rejected + excluded.rejected,
    duplicates = feed_runs.duplicates + excluded.duplicates,
    details = jsonb_build_object(
        'batches', coalesce((feed_runs.details ->> 'batches')::int, 0) + 1,
        'messages', coalesce((feed_runs.details ->> 'messages')::int, 0) + $8::int,
        'stale', coalesce((feed_runs.details ->> 'stale')::int, 0) + $9::int)
RETURNING id;
