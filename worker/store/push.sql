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
WITH runs AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS r (inventory_feed_id, run_id)
), joined AS MATERIALIZED (
    SELECT s.*, t.id AS target_id,
        t.inventory_quantity AS old_quantity, t.retail_price AS old_price,
        CASE WHEN s.present & {bit.inventory_quantity} = 0 OR t.inventory_quantity_override = 'manual'
             THEN t.inventory_quantity ELSE s.inventory_quantity END AS new_quantity,
        CASE WHEN s.present & {bit.retail_price} <> 0 THEN s.retail_price ELSE t.retail_price END AS new_price,
        coalesce(s.ordered_at < t.ordered_at,
                 s.inventory_updated_at < t.inventory_updated_at, false) AS stale,
        s.ordered_at IS NOT NULL AND t.id IS NOT NULL
            AND (t.ordered_at IS NULL OR s.ordered_at > t.ordered_at) AS newer,
        t.id IS NULL OR (t.variant_id IS NULL AND (
            (s.present & {bit.vendor_sku} <> 0 AND s.vendor_sku IS DISTINCT FROM t.vendor_sku)
            OR (s.present & {bit.barcode} <> 0 AND s.barcode IS DISTINCT FROM t.barcode))) AS rekeyed,
        t.id IS NOT NULL AND (t.missing_since IS NOT NULL OR (
            CASE WHEN s.present & {bit.vendor_sku} <> 0 THEN s.vendor_sku ELSE t.vendor_sku END,
            CASE WHEN s.present & {bit.barcode} <> 0 THEN s.barcode ELSE t.barcode END,
            CASE WHEN s.present & {bit.name} <> 0 THEN s.name ELSE t.name END,
            CASE WHEN s.present & {bit.inventory_quantity} = 0 OR t.inventory_quantity_override = 'manual'
                 THEN t.inventory_quantity ELSE s.inventory_quantity END,
            CASE WHEN s.present & {bit.inventory_policy} <> 0 THEN coalesce(s.inventory_policy, 'track')
                 ELSE t.inventory_policy END,
            CASE WHEN s.present & {bit.retail_price} <> 0 THEN s.retail_price ELSE t.retail_price END,
            CASE WHEN s.present & {bit.cost_price} <> 0 THEN s.cost_price ELSE t.cost_price END,
            CASE WHEN s.present & {bit.compare_at_price} <> 0 THEN s.compare_at_price ELSE t.compare_at_price END,
            CASE WHEN s.present & {bit.grams} <> 0 THEN coalesce(s.grams, 0) ELSE t.grams END,
            CASE WHEN s.present & {bit.mpn} <> 0 THEN s.mpn ELSE t.mpn END,
            CASE WHEN s.present & {bit.external_group_id} <> 0 THEN s.external_group_id ELSE t.external_group_id END,
            CASE WHEN s.present & {bit.options} <> 0 THEN coalesce(s.options, '[]') ELSE t.options END,
            CASE WHEN s.present & {bit.images} <> 0 THEN coalesce(s.images, '[]') ELSE t.images END,
            CASE WHEN s.present & {bit.extra} <> 0 THEN t.extra || coalesce(s.extra, '{}')
                 ELSE t.extra END,
            CASE WHEN s.present & {bit.currency} <> 0 THEN s.currency ELSE t.currency END
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
), fresh AS MATERIALIZED (
    -- Daily SKU limit: writes of items their provider has not written today, in key order.
    SELECT j.inventory_feed_id, j.external_id, a.provider_id,
           row_number() OVER (PARTITION BY a.provider_id
                              ORDER BY j.inventory_feed_id, j.external_id) AS n,
           a.remaining
    FROM joined j
    JOIN inventory_feeds f ON f.id = j.inventory_feed_id
    JOIN unnest($4::bigint[], $5::int[]) AS a (provider_id, remaining)
        ON a.provider_id = f.dropship_provider_id
    WHERE (j.target_id IS NULL OR (j.changed AND NOT j.stale))
      AND NOT EXISTS (SELECT 1 FROM provider_daily_items d
                      WHERE d.dropship_provider_id = a.provider_id AND d.day = $6::date
                        AND d.inventory_feed_id = j.inventory_feed_id
                        AND d.external_id = j.external_id)
), held AS MATERIALIZED (
    SELECT inventory_feed_id, external_id FROM fresh WHERE n > remaining
), todo AS NOT MATERIALIZED (
    SELECT j.* FROM joined j
    WHERE (j.target_id IS NULL OR ((j.changed OR j.newer) AND NOT j.stale))
      AND NOT EXISTS (SELECT 1 FROM held h WHERE h.inventory_feed_id = j.inventory_feed_id
                                            AND h.external_id = j.external_id)
), feeds AS (
    SELECT inventory_feed_id FROM runs
),
-- include: connect.sql:conf
, cand AS NOT MATERIALIZED (
    SELECT inventory_feed_id, external_id, vendor_sku, barcode FROM todo WHERE rekeyed
),
-- include: connect.sql:links
, ins AS (
    INSERT INTO inventory_feed_variants (
        inventory_feed_id, external_id, vendor_sku, barcode, name, inventory_quantity,
        inventory_policy, retail_price, cost_price, compare_at_price, grams, mpn,
        external_group_id, options, images, extra, currency, variant_id, inventory_updated_at,
        ordered_at)
    SELECT j.inventory_feed_id, j.external_id, j.vendor_sku, j.barcode, j.name,
           j.inventory_quantity, coalesce(j.inventory_policy, 'track'), j.retail_price,
           j.cost_price, j.compare_at_price, coalesce(j.grams, 0), j.mpn, j.external_group_id,
           coalesce(j.options, '[]'), coalesce(j.images, '[]'), coalesce(j.extra, '{}'),
           j.currency, l.variant_id, coalesce(j.inventory_updated_at, now()), j.ordered_at
    FROM todo j
    LEFT JOIN links l ON l.inventory_feed_id = j.inventory_feed_id
                     AND l.external_id = j.external_id AND l.unique_match
    WHERE j.target_id IS NULL
    ORDER BY j.inventory_feed_id, j.external_id
), upd AS (
    UPDATE inventory_feed_variants t SET
        vendor_sku = CASE WHEN j.present & {bit.vendor_sku} <> 0 THEN j.vendor_sku ELSE t.vendor_sku END,
        barcode = CASE WHEN j.present & {bit.barcode} <> 0 THEN j.barcode ELSE t.barcode END,
        name = CASE WHEN j.present & {bit.name} <> 0 THEN j.name ELSE t.name END,
        inventory_quantity = j.new_quantity,
        inventory_policy = CASE WHEN j.present & {bit.inventory_policy} <> 0 THEN coalesce(j.inventory_policy, 'track')
                                ELSE t.inventory_policy END,
        retail_price = j.new_price,
        cost_price = CASE WHEN j.present & {bit.cost_price} <> 0 THEN j.cost_price ELSE t.cost_price END,
        compare_at_price = CASE WHEN j.present & {bit.compare_at_price} <> 0 THEN j.compare_at_price
                                ELSE t.compare_at_price END,
        grams = CASE WHEN j.present & {bit.grams} <> 0 THEN coalesce(j.grams, 0) ELSE t.grams END,
        mpn = CASE WHEN j.present & {bit.mpn} <> 0 THEN j.mpn ELSE t.mpn END,
        external_group_id = CASE WHEN j.present & {bit.external_group_id} <> 0 THEN j.external_group_id
                                 ELSE t.external_group_id END,
        options = CASE WHEN j.present & {bit.options} <> 0 THEN coalesce(j.options, '[]') ELSE t.options END,
        images = CASE WHEN j.present & {bit.images} <> 0 THEN coalesce(j.images, '[]') ELSE t.images END,
        extra = CASE WHEN j.present & {bit.extra} <> 0 THEN t.extra || coalesce(j.extra, '{}')
                     ELSE t.extra END,
        currency = CASE WHEN j.present & {bit.currency} <> 0 THEN j.currency ELSE t.currency END,
        variant_id = coalesce(t.variant_id, l.variant_id),
        missing_since = NULL,
        inventory_updated_at = coalesce(
            j.inventory_updated_at,
            CASE WHEN j.new_quantity IS DISTINCT FROM t.inventory_quantity
                 THEN now() ELSE t.inventory_updated_at END),
        ordered_at = greatest(t.ordered_at, j.ordered_at),
        updated_at = CASE WHEN j.changed THEN now() ELSE t.updated_at END
    FROM todo j
    LEFT JOIN links l ON l.inventory_feed_id = j.inventory_feed_id
                     AND l.external_id = j.external_id AND l.unique_match
    WHERE t.id = j.target_id
), hist AS (
    INSERT INTO variant_inventory_updates (
        inventory_feed_variant_id, inventory_feed_id, run_id, action_type,
        old_quantity, new_quantity, old_retail_price, new_retail_price)
    SELECT j.target_id, j.inventory_feed_id, r.run_id, 'update', j.old_quantity,
           j.new_quantity, j.old_price, j.new_price
    FROM todo j JOIN runs r ON r.inventory_feed_id = j.inventory_feed_id
    WHERE $3::boolean AND j.target_id IS NOT NULL
      AND (j.old_quantity IS DISTINCT FROM j.new_quantity
           OR j.old_price IS DISTINCT FROM j.new_price)
), daily AS (
    INSERT INTO provider_daily_items (dropship_provider_id, day, inventory_feed_id, external_id)
    SELECT provider_id, $6::date, inventory_feed_id, external_id FROM fresh WHERE n <= remaining
), held_rejects AS (
    -- Kept whole (as a feed-update variant) so that they can be applied on a later day.
    INSERT INTO feed_run_rejects (run_id, position, raw, reason)
    SELECT r.run_id, 0,
-- include: items.sql:held_variant
         , 'daily limit'
    FROM held h
    JOIN joined j ON j.inventory_feed_id = h.inventory_feed_id AND j.external_id = h.external_id
    JOIN runs r ON r.inventory_feed_id = h.inventory_feed_id
)
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
